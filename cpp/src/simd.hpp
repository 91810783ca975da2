#pragma once
// Fixed-width SIMD vectors (GCC/Clang vector extensions, 32 bytes: one AVX2 register; the
// baseline clone of a FASTNPLM_HOT function splits them into SSE halves) for the
// one-hidden-layer MLP pass; their exp is vexp.hpp's.
//
// Simd<double>: 4 lanes; Simd<float>: 8 lanes. Wide<T> holds the lanes of a vector as
// double (one f64x4 per 4 lanes): sums are accumulated in double whatever T is.
#include <cstdint>
#include <cstring>

#include "hot.hpp"

#if defined(__GNUC__)
#define FASTNPLM_HAVE_SIMD 1
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // vectors only cross always-inline boundaries

namespace fastnplm::detail {

typedef double f64x4 __attribute__((vector_size(32)));
typedef float f32x8 __attribute__((vector_size(32)));
typedef float f32x4 __attribute__((vector_size(16)));
typedef std::int64_t i64x4 __attribute__((vector_size(32)));
typedef std::int32_t i32x8 __attribute__((vector_size(32)));

template <class T>
struct Simd;

template <>
struct Simd<double> {
    using V = f64x4;
    static constexpr int N = 4;
};

template <>
struct Simd<float> {
    using V = f32x8;
    static constexpr int N = 8;
};

template <class V, class S>
FASTNPLM_INLINE inline V splat(S s) {
    return V{} + static_cast<decltype(V{}[0])>(s);
}

template <class V, class T>
FASTNPLM_INLINE inline V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <class V, class T>
FASTNPLM_INLINE inline void store(T* p, V v) {
    std::memcpy(p, &v, sizeof v);
}

// max/min that keep a NaN in a (as std::max/std::min with the value first): a NaN input of
// the exps stays NaN, so a NaN loss is reported, not clamped into a finite one.
template <class V>
FASTNPLM_INLINE inline V vmax(V a, V b) {
    return a < b ? b : a;
}

template <class V>
FASTNPLM_INLINE inline V vmin(V a, V b) {
    return b < a ? b : a;
}

template <class V>
FASTNPLM_INLINE inline V vabs(V a) {
    return a < V{} ? -a : a;
}

// -|x|: the sign bit set (one OR).
FASTNPLM_INLINE inline f64x4 neg_abs(f64x4 x) {
    return (f64x4)((i64x4)x | static_cast<std::int64_t>(0x8000000000000000ull));
}
FASTNPLM_INLINE inline f32x8 neg_abs(f32x8 x) { return (f32x8)((i32x8)x | static_cast<std::int32_t>(0x80000000u)); }

// The lanes of a vector as doubles.
template <class T>
struct Wide;

template <>
struct Wide<double> {
    static constexpr int H = 1;
    f64x4 v[1];
    FASTNPLM_INLINE static Wide of(f64x4 x) { return Wide{{x}}; }
};

template <>
struct Wide<float> {
    static constexpr int H = 2;
    f64x4 v[2];
    FASTNPLM_INLINE static Wide of(f32x8 x) {
        // through a scalar loop: GCC's vectoriser turns it into two vcvtps2pd ymm, where
        // __builtin_convertvector is lowered to 2-wide conversions inside target clones
        float f[8];
        double d[8];
        store(f, x);
        for (int i = 0; i < 8; ++i) d[i] = static_cast<double>(f[i]);
        return Wide{{load<f64x4>(d), load<f64x4>(d + 4)}};
    }
};

template <class T>
FASTNPLM_INLINE inline Wide<T> operator*(const Wide<T>& a, const Wide<T>& b) {
    Wide<T> r;
    for (int h = 0; h < Wide<T>::H; ++h) r.v[h] = a.v[h] * b.v[h];
    return r;
}

template <class T>
FASTNPLM_INLINE inline Wide<T> operator-(const Wide<T>& a, double b) {
    Wide<T> r;
    for (int h = 0; h < Wide<T>::H; ++h) r.v[h] = a.v[h] - b;
    return r;
}

template <class T>
FASTNPLM_INLINE inline Wide<T> operator-(const Wide<T>& a) {
    Wide<T> r;
    for (int h = 0; h < Wide<T>::H; ++h) r.v[h] = -a.v[h];
    return r;
}

// N doubles from memory.
template <class T>
FASTNPLM_INLINE inline Wide<T> load_wide(const double* p) {
    Wide<T> r;
    for (int h = 0; h < Wide<T>::H; ++h) r.v[h] = load<f64x4>(p + 4 * h);
    return r;
}

// a[0 .. N) += x * y, a double lanes in memory.
template <class T>
FASTNPLM_INLINE inline void acc_fma(double* a, const Wide<T>& x, const Wide<T>& y) {
    for (int h = 0; h < Wide<T>::H; ++h) store(a + 4 * h, load<f64x4>(a + 4 * h) + x.v[h] * y.v[h]);
}

template <class T>
FASTNPLM_INLINE inline void acc_add(double* a, const Wide<T>& x) {
    for (int h = 0; h < Wide<T>::H; ++h) store(a + 4 * h, load<f64x4>(a + 4 * h) + x.v[h]);
}

}  // namespace fastnplm::detail

#pragma GCC diagnostic pop
#endif
