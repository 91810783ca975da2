#pragma once
// Attributes of the hot loops, shared by the CPU backends.

// Hot loops are compiled for AVX-512, AVX2 and baseline x86-64, chosen at load time.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(FASTNPLM_NO_TARGET_CLONES)
#define FASTNPLM_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
// An AVX-512 (x86-64-v4) build of a function that is called only where cpu_has_v4() says the CPU
// runs it: the 16-lane float32 MLP pass, beside the FASTNPLM_HOT one.
#define FASTNPLM_HAVE_V4 1
#define FASTNPLM_V4 __attribute__((target("arch=x86-64-v4")))
namespace fastnplm::detail {
/// Whether this CPU has what x86-64-v4 requires beyond v3 (AVX-512 F, BW, CD, DQ, VL).
inline bool cpu_has_v4() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
}
}  // namespace fastnplm::detail
#else
#define FASTNPLM_HOT
#endif

// Forces inlining into each target clone of the caller (functions and lambdas).
#if defined(__GNUC__)
#define FASTNPLM_INLINE __attribute__((always_inline))
#else
#define FASTNPLM_INLINE
#endif
