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

namespace fastnplm::detail {

// exp(x) for -708 <= x <= 709 (no clamp: callers clamp).
inline double vexp_core(double x) {
    constexpr double log2e = 1.4426950408889634074;
    constexpr double ln2_hi = 6.93147180369123816490e-01;
    constexpr double ln2_lo = 1.90821492927058770002e-10;
    constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: rounds to integer
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

inline double vexp_nonpos(double x) { return vexp_core(std::max(x, -708.0)); }

// exp(x) for any x, clamped to [-708, 709]: exp(709) = 8.2e307 for anything above.
inline double vexp(double x) { return vexp_core(std::min(std::max(x, -708.0), 709.0)); }

}  // namespace fastnplm::detail
