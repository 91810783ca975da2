#pragma once
// Host-side entry points of the CUDA backend (host pointers, no CUDA types), in
// fastnplm::cuda for the real build and fastnplm::cuda_emu for the CPU emulation of the
// tests, so one test binary can hold both. The public entry points are in fastnplm/cuda.hpp
// and the factory make_ops (fastnplm/kernel_ops.hpp).
#include <memory>
#include <string>
#include <vector>

#include "fastnplm/kernel_ops.hpp"

#if defined(FASTNPLM_CUDA_EMU)
#define FASTNPLM_CUDA_NS cuda_emu
#else
#define FASTNPLM_CUDA_NS cuda
#endif

namespace fastnplm::FASTNPLM_CUDA_NS {

/// The CUDA KernelOps on `device` (see make_ops for the caching rule).
std::unique_ptr<KernelOps> make_ops(int device);

/// Lazy device probe (first call only).
bool device_available();

/// Names of the __global__ functions in cuda/*.cu.
const std::vector<std::string>& kernel_names();

}  // namespace fastnplm::FASTNPLM_CUDA_NS
