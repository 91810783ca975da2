#pragma once
// Fixed-width SIMD vectors (GCC/Clang vector extensions, 32 bytes: one AVX2 register; the
// baseline clone of a FASTNPLM_HOT function splits them into SSE halves) for the
// one-hidden-layer MLP pass; their exp is vexp.hpp's. The 64-byte f32x16 (one AVX-512
// register) is for FASTNPLM_V4 functions only (hot.hpp), which run where the CPU has AVX-512.
//
// Simd<double>: 4 lanes; Simd<float>: 8 lanes; Simd<float, 16>: 16 lanes. Wide<T, N> holds
// the lanes of a vector as double (one f64x4 per 4 lanes, one f64x8 per 8 of a 16-lane
// vector): sums are accumulated in double whatever T is, in accumulators of at most 8 lanes.
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
typedef float f32x16 __attribute__((vector_size(64)));
typedef double f64x8 __attribute__((vector_size(64)));
typedef std::int32_t i32x16 __attribute__((vector_size(64)));

template <class T, int N = static_cast<int>(32 / sizeof(T))>
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

template <>
struct Simd<float, 16> {
    using V = f32x16;
    static constexpr int N = 16;
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

// The integer vector U of a float vector's bits, and its lanes' sign bit.
template <class V>
struct Bits;
template <>
struct Bits<f64x4> {
    using U = i64x4;
    static constexpr std::int64_t sign = static_cast<std::int64_t>(0x8000000000000000ull);
};
template <>
struct Bits<f32x8> {
    using U = i32x8;
    static constexpr std::int32_t sign = static_cast<std::int32_t>(0x80000000u);
};
template <>
struct Bits<f32x16> {
    using U = i32x16;
    static constexpr std::int32_t sign = static_cast<std::int32_t>(0x80000000u);
};

// -|x|: the sign bit set (one OR).
template <class V>
FASTNPLM_INLINE inline V neg_abs(V x) {
    return (V)((typename Bits<V>::U)x | Bits<V>::sign);
}

// The lanes of a vector as doubles: H parts of type D (L lanes each). A is the number of
// double lanes of the accumulators they add into (acc_add): N up to 8; the two halves of a
// 16-lane vector fold into the same 8 lanes, lanes 0-7 first -- the order in which two 8-lane
// vectors of the same events add, so that a sum comes out the same at either width.
template <class T, int N = Simd<T>::N>
struct Wide;

template <>
struct Wide<double, 4> {
    using D = f64x4;
    static constexpr int H = 1, L = 4, A = 4;
    D v[1];
    FASTNPLM_INLINE static Wide of(f64x4 x) { return Wide{{x}}; }
};

template <>
struct Wide<float, 8> {
    using D = f64x4;
    static constexpr int H = 2, L = 4, A = 8;
    D v[2];
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

template <>
struct Wide<float, 16> {
    using D = f64x8;
    static constexpr int H = 2, L = 8, A = 8;
    D v[2];
    FASTNPLM_INLINE static Wide of(f32x16 x) {
        // two vcvtps2pd zmm (FASTNPLM_V4 functions are not target clones)
        f32x8 lo, hi;
        std::memcpy(&lo, &x, sizeof lo);
        std::memcpy(&hi, reinterpret_cast<const char*>(&x) + sizeof lo, sizeof hi);
        return Wide{{__builtin_convertvector(lo, f64x8), __builtin_convertvector(hi, f64x8)}};
    }
};

template <class T, int N>
FASTNPLM_INLINE inline Wide<T, N> operator*(const Wide<T, N>& a, const Wide<T, N>& b) {
    Wide<T, N> r;
    for (int h = 0; h < Wide<T, N>::H; ++h) r.v[h] = a.v[h] * b.v[h];
    return r;
}

template <class T, int N>
FASTNPLM_INLINE inline Wide<T, N> operator-(const Wide<T, N>& a, double b) {
    Wide<T, N> r;
    for (int h = 0; h < Wide<T, N>::H; ++h) r.v[h] = a.v[h] - b;
    return r;
}

template <class T, int N>
FASTNPLM_INLINE inline Wide<T, N> operator-(const Wide<T, N>& a) {
    Wide<T, N> r;
    for (int h = 0; h < Wide<T, N>::H; ++h) r.v[h] = -a.v[h];
    return r;
}

// N doubles from memory.
template <class T, int N = Simd<T>::N>
FASTNPLM_INLINE inline Wide<T, N> load_wide(const double* p) {
    using W = Wide<T, N>;
    W r;
    for (int h = 0; h < W::H; ++h) r.v[h] = load<typename W::D>(p + W::L * h);
    return r;
}

// a[0 .. A) += x, a double lanes in memory: lane l of x into a[l % A], in lane order.
template <class T, int N>
FASTNPLM_INLINE inline void acc_add(double* a, const Wide<T, N>& x) {
    using W = Wide<T, N>;
    for (int h = 0; h < W::H; ++h) {
        double* ah = a + (W::L * h) % W::A;
        store(ah, load<typename W::D>(ah) + x.v[h]);
    }
}

}  // namespace fastnplm::detail

#pragma GCC diagnostic pop
#endif
