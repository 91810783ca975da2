#pragma once
// Fixed-width SIMD vectors (GCC/Clang vector extensions, 32 bytes: one AVX2 register; the
// baseline clone of a FASTNPLM_HOT function splits them into SSE halves) and the vectorised
// exp the one-hidden-layer MLP pass keeps in registers.
//
// Simd<double>: 4 lanes; Simd<float>: 8 lanes. Wide<T> holds the lanes of a vector as
// double (one f64x4 per 4 lanes): sums are accumulated in double whatever T is.
#include <cstdint>
#include <cstring>

#include "hot.hpp"
#include "vexp.hpp"

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

// exp(x) for x in [lo, 709] (x clamped to it; lo >= -708): the reduction and degree-12 Taylor
// polynomial (Estrin) of the scalar vexp() in vexp.hpp. The exponent bias is folded into the
// rounding shifter, so the low bits of x log2e + shifter are k + 1023 and 2^k is one shift.
// kNonPos: the caller guarantees x <= 0 (the sigmoid's exp(-|z|)), the upper clamp is skipped.
template <bool kNonPos = false>
FASTNPLM_INLINE inline f64x4 vexp_simd(f64x4 x) {
    constexpr double log2e = 1.4426950408889634074;
    constexpr double ln2_hi = 6.93147180369123816490e-01;
    constexpr double ln2_lo = 1.90821492927058770002e-10;
    constexpr double shifter = 6755399441055744.0 + 1023.0;  // 1.5 * 2^52 (rounds to integer) + bias
    x = vmax(x, splat<f64x4>(-708.0));
    if (!kNonPos) x = vmin(x, splat<f64x4>(709.0));
    f64x4 kd = x * log2e + shifter;
    const i64x4 kbits = (i64x4)kd;
    kd -= shifter;  // k
    const f64x4 r = (x - kd * ln2_hi) - kd * ln2_lo;
    const f64x4 p = exp_taylor12(r);
    const i64x4 ebits = kbits << 52;  // (k + 1023) << 52 = 2^k, k in [-1022, 1023]; upper bits shift out
    return p * (f64x4)ebits;
}

// -|x|: the sign bit set (one OR).
FASTNPLM_INLINE inline f64x4 neg_abs(f64x4 x) {
    return (f64x4)((i64x4)x | static_cast<std::int64_t>(0x8000000000000000ull));
}
FASTNPLM_INLINE inline f32x8 neg_abs(f32x8 x) { return (f32x8)((i32x8)x | static_cast<std::int32_t>(0x80000000u)); }

// expf(x) for float lanes, x clamped to [-87, 88] (k = round(x / ln 2) in [-126, 127], so
// 2^k is a normal float): Cody-Waite reduction r = x - k ln 2 with ln 2 split as
// 0.693359375 - 2.12194440e-4, then Cephes' expf polynomial (degree 5 in r on
// [-ln2/2, ln2/2], relative error ~1 ulp = 6e-8); bias folded into the shifter as above.
// Callers that need overflow beyond 88 blend inf in themselves. kNonPos: no upper clamp (x <= 0
// guaranteed, or lanes above 88 replaced by the caller).
template <bool kNonPos = false>
FASTNPLM_INLINE inline f32x8 vexp_simd(f32x8 x) {
    constexpr float log2e = 1.44269504088896341f;
    constexpr float c1 = 0.693359375f;
    constexpr float c2 = -2.12194440e-4f;
    constexpr float shifter = 12582912.0f + 127.0f;  // 1.5 * 2^23 + bias
    x = vmax(x, splat<f32x8>(-87.0f));
    if (!kNonPos) x = vmin(x, splat<f32x8>(88.0f));
    f32x8 kd = x * log2e + shifter;
    const i32x8 kbits = (i32x8)kd;
    kd -= shifter;
    const f32x8 r = (x - kd * c1) - kd * c2;
    // P(r) = 0.5 + r/6 + r^2/24 + ... (Cephes' minimax coefficients) in Estrin's form
    const f32x8 r2 = r * r;
    const f32x8 p45 = 1.3981999507e-3f + r * 1.9875691500e-4f;
    const f32x8 p23 = 4.1665795894e-2f + r * 8.3334519073e-3f;
    const f32x8 p01 = 5.0000001201e-1f + r * 1.6666665459e-1f;
    const f32x8 p = p01 + r2 * (p23 + r2 * p45);
    const f32x8 y = (1.0f + r) + r2 * p;
    const i32x8 ebits = kbits << 23;
    return y * (f32x8)ebits;
}

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
