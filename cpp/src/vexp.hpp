#pragma once
// A branch-free exp(x) for x <= 0 that compilers vectorise (no libm call in the loop).
//
// exp(x) = 2^k * exp(r), k = round(x / ln 2), r = x - k ln 2 in [-ln2/2, ln2/2]
// (Cody-Waite split of ln 2 so k * ln2_hi is exact for |k| < 2^11); exp(r) by its
// Taylor polynomial of degree 12, whose truncation error r^13/13! < 1.7e-16 relative;
// 2^k built directly in the exponent bits. Inputs are clamped at -708, so anything below
// returns exp(-708) = 3.3e-308 instead of a subnormal or 0 (an absolute error below
// 3.3e-308; it keeps the loop free of branches, which would stop vectorisation).
// tests/cpp compares it with std::exp over [-708, 0].
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "hot.hpp"

namespace fastnplm::detail {

// exp(r) for |r| <= ln2/2 by its degree-12 Taylor polynomial (truncation < 1.7e-16 relative)
// in Estrin's scheme (dependency depth 5 instead of 13 FMAs); T is double or a GCC vector of
// doubles (simd.hpp), so the scalar and SIMD exps share it.
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

FASTNPLM_INLINE inline double vexp_nonpos(double x) {
    constexpr double log2e = 1.4426950408889634074;
    constexpr double ln2_hi = 6.93147180369123816490e-01;
    constexpr double ln2_lo = 1.90821492927058770002e-10;
    constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: rounds to integer
    x = std::max(x, -708.0);
    double kd = x * log2e + shifter;
    std::uint64_t kbits;
    std::memcpy(&kbits, &kd, sizeof kbits);  // low bits hold round(x / ln 2)
    kd -= shifter;
    const double r = (x - kd * ln2_hi) - kd * ln2_lo;
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
    const std::uint64_t ebits = (kbits + 1023u) << 52;  // 2^k; upper bits of kbits shift out
    double scale;
    std::memcpy(&scale, &ebits, sizeof scale);
    return p * scale;
}

// exp(x) for any x, clamped to [-708, 709] (exp(709) = 8.2e307 for anything above): the same
// reduction and degree-12 Taylor polynomial as vexp_nonpos, evaluated in Estrin's scheme
// (dependency depth 5 instead of 13 FMAs). The MLP pass is bound by the latency of its exp
// chains, where this runs ~1.4x faster; tests/cpp compares it with std::exp over the range.
FASTNPLM_INLINE inline double vexp(double x) {
    constexpr double log2e = 1.4426950408889634074;
    constexpr double ln2_hi = 6.93147180369123816490e-01;
    constexpr double ln2_lo = 1.90821492927058770002e-10;
    constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: rounds to integer
    x = std::min(std::max(x, -708.0), 709.0);
    double kd = x * log2e + shifter;
    std::uint64_t kbits;
    std::memcpy(&kbits, &kd, sizeof kbits);
    kd -= shifter;
    const double r = (x - kd * ln2_hi) - kd * ln2_lo;
    const double p = exp_taylor12(r);
    const std::uint64_t ebits = (kbits + 1023u) << 52;  // 2^k, k in [-1022, 1023]
    double scale;
    std::memcpy(&scale, &ebits, sizeof scale);
    return p * scale;
}

}  // namespace fastnplm::detail

namespace fastnplm::detail {

// expm1(x) = e^x - 1 without the cancellation of vexp(x) - 1 near 0, branch-free: its Taylor
// series to x^14/14! for |x| < 1/4 (truncation < 0.25^14/15! < 3e-21 relative), vexp(x) - 1
// elsewhere (relative error <= e^x/(e^x - 1) ulp, at most ~5e-16 for |x| >= 1/4). tests/cpp
// compares it with std::expm1.
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

namespace fastnplm::detail {

// expf(x) for float, x clamped to [-87, 88]: the reduction and Cephes polynomial of the
// SIMD vexp_simd(f32x8) in simd.hpp, written for loops that the compiler vectorises
// (the float32 mode of the MLP pass). Relative error ~1 ulp of float (tests/cpp).
// kNonPos, as in vexp_simd: no upper clamp, x <= 88 is the caller's (x <= 0 for a sigmoid's
// exp(-|z|), or results above 88 replaced).
template <bool kNonPos = false>
inline float vexpf(float x) {
    constexpr float log2e = 1.44269504088896341f;
    constexpr float c1 = 0.693359375f;
    constexpr float c2 = -2.12194440e-4f;
    constexpr float shifter = 12582912.0f;  // 1.5 * 2^23: rounds to integer
    x = std::max(x, -87.0f);
    if (!kNonPos) x = std::min(x, 88.0f);
    float kd = x * log2e + shifter;
    std::uint32_t kbits;
    std::memcpy(&kbits, &kd, sizeof kbits);
    kd -= shifter;
    const float r = (x - kd * c1) - kd * c2;
    const float r2 = r * r;
    const float p45 = 1.3981999507e-3f + r * 1.9875691500e-4f;
    const float p23 = 4.1665795894e-2f + r * 8.3334519073e-3f;
    const float p01 = 5.0000001201e-1f + r * 1.6666665459e-1f;
    const float p = p01 + r2 * (p23 + r2 * p45);
    const float y = (1.0f + r) + r2 * p;
    const std::uint32_t ebits = (kbits + 127u) << 23;  // 2^k, k in [-126, 127]
    float scale;
    std::memcpy(&scale, &ebits, sizeof scale);
    return y * scale;
}

inline float vexp(float x) { return vexpf<false>(x); }

}  // namespace fastnplm::detail
