#pragma once
// exp(x) without a libm call and without branches, so that loops over it vectorise, for every
// width the CPU backends use: double and float (scalar code the compiler vectorises) and, with
// GCC vector extensions, f64x4, f32x8 and, in AVX-512 builds (FASTNPLM_V4), f32x16 (SIMD vectors
// kept in registers, simd.hpp). Each lane of a vector rounds as the scalar form of its width
// does, so f32x8 and f32x16 give the same bits lane for lane.
//
// One range reduction: exp(x) = 2^k exp(r), k = round(x / ln 2), r = x - k ln 2 in
// [-ln2/2, ln2/2] (Cody-Waite split of ln 2 so that k * ln2_hi is exact), exp(r) by a
// polynomial, 2^k built directly in the exponent bits. x is clamped first, so that 2^k is a
// normal number and the loop has no branch:
//   double: x in [-708, 709]; exp(r) by its degree-12 Taylor polynomial (truncation
//           r^13/13! < 1.7e-16 relative); below -708 it returns exp(-708) = 3.3e-308 (an
//           absolute error below that), above 709 exp(709) = 8.2e307.
//   float:  x in [-87, 88]; Cephes' expf polynomial (degree 5 on [-ln2/2, ln2/2], relative
//           error ~1 ulp = 6e-8); callers that need overflow beyond 88 put inf in themselves.
// The clamps keep a NaN argument NaN (max/min with the argument first), so a NaN loss is
// reported, not clamped into a finite one. tests/cpp compares every variant with std::exp.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "hot.hpp"
#include "simd.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"  // vectors only cross always-inline boundaries
#endif

namespace fastnplm::detail {

/// Which ends of the range exp clamps its argument to.
enum class ExpClamp {
    both,  ///< [lo, hi]: any x
    low,   ///< lo only: the caller guarantees x <= hi (x <= 0 for a sigmoid's exp(-|z|)) or replaces results above
};

/// How the double polynomial is evaluated (float has one form).
enum class ExpPoly {
    estrin,  ///< Estrin's scheme: dependency depth 5 instead of 13, for exp chains bound by latency (the MLP pass)
    horner,  ///< Horner's scheme, scalar double: the Gaussian kernel's exp (kernel_ops_cpu.cpp) rounds as this does
};

/// The constants of the reduction for double and float.
template <class S>
struct ExpConsts;

template <>
struct ExpConsts<double> {
    static constexpr double log2e = 1.4426950408889634074;
    static constexpr double ln2_hi = 6.93147180369123816490e-01;
    static constexpr double ln2_lo = 1.90821492927058770002e-10;
    static constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: x + shifter rounds x to an integer
    static constexpr double lo = -708.0, hi = 709.0;       // k in [-1022, 1023]
    static constexpr int bias = 1023, mantissa_bits = 52;
};

template <>
struct ExpConsts<float> {
    static constexpr float log2e = 1.44269504088896341f;
    static constexpr float ln2_hi = 0.693359375f;
    static constexpr float ln2_lo = -2.12194440e-4f;
    static constexpr float shifter = 12582912.0f;    // 1.5 * 2^23
    static constexpr float lo = -87.0f, hi = 88.0f;  // k in [-126, 127]
    static constexpr int bias = 127, mantissa_bits = 23;
};

/// A width of exp's argument: its scalar type S, the integer type U of its bits, and how the
/// exponent bias reaches 2^k. Scalars add the bias to k's bits after the rounding; vectors fold
/// it into the rounding shifter (the low bits of x log2e + shifter are then k + bias, and 2^k is
/// one shift). The two shifters round an x log2e that is exactly half an integer to different k
/// (either exp is as accurate); each width keeps its form so that its results are reproducible
/// bit for bit from one release to the next.
template <class T>
struct ExpWidth;

template <>
struct ExpWidth<double> {
    using S = double;
    using U = std::uint64_t;
    static constexpr bool kFoldBias = false;
    FASTNPLM_INLINE static double splat(double s) { return s; }
    FASTNPLM_INLINE static U bits(double x) {
        U u;
        std::memcpy(&u, &x, sizeof u);
        return u;
    }
    FASTNPLM_INLINE static double real(U u) {
        double x;
        std::memcpy(&x, &u, sizeof x);
        return x;
    }
};

template <>
struct ExpWidth<float> {
    using S = float;
    using U = std::uint32_t;
    static constexpr bool kFoldBias = false;
    FASTNPLM_INLINE static float splat(float s) { return s; }
    FASTNPLM_INLINE static U bits(float x) {
        U u;
        std::memcpy(&u, &x, sizeof u);
        return u;
    }
    FASTNPLM_INLINE static float real(U u) {
        float x;
        std::memcpy(&x, &u, sizeof x);
        return x;
    }
};

#ifdef FASTNPLM_HAVE_SIMD
template <>
struct ExpWidth<f64x4> {
    using S = double;
    using U = i64x4;
    static constexpr bool kFoldBias = true;
    FASTNPLM_INLINE static f64x4 splat(double s) { return detail::splat<f64x4>(s); }
    FASTNPLM_INLINE static U bits(f64x4 x) { return (U)x; }
    FASTNPLM_INLINE static f64x4 real(U u) { return (f64x4)u; }
};

template <>
struct ExpWidth<f32x8> {
    using S = float;
    using U = i32x8;
    static constexpr bool kFoldBias = true;
    FASTNPLM_INLINE static f32x8 splat(float s) { return detail::splat<f32x8>(s); }
    FASTNPLM_INLINE static U bits(f32x8 x) { return (U)x; }
    FASTNPLM_INLINE static f32x8 real(U u) { return (f32x8)u; }
};

/// 16 floats (one AVX-512 register; FASTNPLM_V4 functions only): f32x8's form, lane for lane.
template <>
struct ExpWidth<f32x16> {
    using S = float;
    using U = i32x16;
    static constexpr bool kFoldBias = true;
    FASTNPLM_INLINE static f32x16 splat(float s) { return detail::splat<f32x16>(s); }
    FASTNPLM_INLINE static U bits(f32x16 x) { return (U)x; }
    FASTNPLM_INLINE static f32x16 real(U u) { return (f32x16)u; }
};

#endif

/// exp(r) for |r| <= ln2/2 by its degree-12 Taylor polynomial in Estrin's scheme; T is double
/// or f64x4.
template <class T>
FASTNPLM_INLINE inline T exp_taylor12(T r) {
    const T r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    const T p01 = 1.0 + r;
    const T p23 = 0.5 + r * (1.0 / 6.0);
    const T p45 = 1.0 / 24.0 + r * (1.0 / 120.0);
    const T p67 = 1.0 / 720.0 + r * (1.0 / 5040.0);
    const T p89 = 1.0 / 40320.0 + r * (1.0 / 362880.0);
    const T p1011 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0);
    const T p03 = p01 + r2 * p23;
    const T p47 = p45 + r2 * p67;
    const T p811 = p89 + r2 * p1011;
    const T p07 = p03 + r4 * p47;
    const T p812 = p811 + r4 * (1.0 / 479001600.0);
    return p07 + r8 * p812;
}

/// The same polynomial in Horner's scheme (scalar double).
FASTNPLM_INLINE inline double exp_taylor12_horner(double r) {
    double p = 1.0 / 479001600.0;  // 1/12!
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    return p;
}

/// exp(r) for |r| <= ln2/2 by Cephes' expf polynomial in Estrin's form; T is float, f32x8 or
/// f32x16.
template <class T>
FASTNPLM_INLINE inline T expf_cephes(T r) {
    const T r2 = r * r;
    const T p45 = 1.3981999507e-3f + r * 1.9875691500e-4f;
    const T p23 = 4.1665795894e-2f + r * 8.3334519073e-3f;
    const T p01 = 5.0000001201e-1f + r * 1.6666665459e-1f;
    const T p = p01 + r2 * (p23 + r2 * p45);
    return (1.0f + r) + r2 * p;
}

/// exp(x) of a double, float, f64x4, f32x8 or f32x16, clamped as kClamp says (see the top of the
/// file).
template <ExpClamp kClamp = ExpClamp::both, ExpPoly kPoly = ExpPoly::estrin, class T>
FASTNPLM_INLINE inline T vexp(T x) {
    using W = ExpWidth<T>;
    using S = typename W::S;
    using C = ExpConsts<S>;
    constexpr S shifter = W::kFoldBias ? C::shifter + C::bias : C::shifter;
    const T lo = W::splat(C::lo);
    x = x < lo ? lo : x;
    if constexpr (kClamp == ExpClamp::both) {
        const T hi = W::splat(C::hi);
        x = hi < x ? hi : x;
    }
    T kd = x * C::log2e + shifter;
    const typename W::U kbits = W::bits(kd);  // low bits: k (+ bias where folded)
    kd -= shifter;                            // k
    const T r = (x - kd * C::ln2_hi) - kd * C::ln2_lo;
    T p;
    if constexpr (std::is_same_v<S, float>) {
        p = expf_cephes(r);
    } else if constexpr (kPoly == ExpPoly::horner) {
        static_assert(std::is_same_v<T, double>, "the Horner form is scalar double");
        p = exp_taylor12_horner(r);
    } else {
        p = exp_taylor12(r);
    }
    // 2^k: (k + bias) in the exponent field; the upper bits of kbits shift out
    typename W::U ebits = kbits;
    if constexpr (!W::kFoldBias) ebits = ebits + static_cast<typename W::U>(C::bias);
    return p * W::real(ebits << C::mantissa_bits);
}

/// expm1(x) = e^x - 1 without the cancellation of vexp(x) - 1 near 0, branch-free: its Taylor
/// series to x^14/14! for |x| < 1/4 (truncation < 0.25^14/15! < 3e-21 relative), vexp(x) - 1
/// elsewhere (relative error <= e^x/(e^x - 1) ulp, at most ~5e-16 for |x| >= 1/4). tests/cpp
/// compares it with std::expm1.
FASTNPLM_INLINE inline double vexpm1(double x) {
    const double y = std::min(std::max(x, -0.25), 0.25);
    double p = 1.0 / 87178291200.0;  // 1/14!
    p = p * y + 1.0 / 6227020800.0;
    p = p * y + 1.0 / 479001600.0;
    p = p * y + 1.0 / 39916800.0;
    p = p * y + 1.0 / 3628800.0;
    p = p * y + 1.0 / 362880.0;
    p = p * y + 1.0 / 40320.0;
    p = p * y + 1.0 / 5040.0;
    p = p * y + 1.0 / 720.0;
    p = p * y + 1.0 / 120.0;
    p = p * y + 1.0 / 24.0;
    p = p * y + 1.0 / 6.0;
    p = p * y + 0.5;
    p = p * y + 1.0;
    const double small = p * y;
    const double large = vexp(x) - 1.0;
    return (x > -0.25 && x < 0.25) ? small : large;
}

}  // namespace fastnplm::detail

#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
