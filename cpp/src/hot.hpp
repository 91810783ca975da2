#pragma once
// Attributes of the hot loops, shared by the CPU backends.

// Hot loops are compiled for AVX-512, AVX2 and baseline x86-64, chosen at load time.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(FASTNPLM_NO_TARGET_CLONES)
#define FASTNPLM_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FASTNPLM_HOT
#endif

// Forces inlining into each target clone of the caller (functions and lambdas).
#if defined(__GNUC__)
#define FASTNPLM_INLINE __attribute__((always_inline))
#else
#define FASTNPLM_INLINE
#endif
