#pragma once
// The one switch between a real CUDA build (nvcc) and the CPU emulation of the tests
// (emu/cuda_emu.hpp, FASTNPLM_CUDA_EMU defined). Everything else in cuda/ is
// written once and compiles both ways.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "backend.hpp"  // FASTNPLM_CUDA_NS

#if defined(FASTNPLM_CUDA_EMU)
#include "emu/cuda_emu.hpp"
#elif defined(__CUDACC__)
#include <cuda_runtime.h>
#define FASTNPLM_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#else
#error "cuda/ sources compile with nvcc, or as C++20 with FASTNPLM_CUDA_EMU (tests/cuda_emu)"
#endif

namespace fastnplm::FASTNPLM_CUDA_NS {

#if defined(FASTNPLM_CUDA_EMU)
template <class T>
inline T* dynamic_smem() {
    return static_cast<T*>(emu::dynamic_smem_base());
}
#else
extern __shared__ double fastnplm_dynamic_smem[];  // 8-byte aligned; sized at launch
template <class T>
__device__ __forceinline__ T* dynamic_smem() {
    return reinterpret_cast<T*>(fastnplm_dynamic_smem);
}
#endif

/// Throws std::runtime_error naming the call when a CUDA runtime call failed.
inline void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

/// Checks the launch that was just issued (configuration errors surface here).
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

}  // namespace fastnplm::FASTNPLM_CUDA_NS
