#pragma once
// The backends behind the two factories of device.cpp (make_ops, make_mlp_ops): the CPU ones
// in kernel_ops_cpu.cpp and mlp_cpu.cpp, the CUDA ones in cuda/backend.cu and cuda/mlp.cu (or
// cuda_stub.cpp's, which throw, in a build without CUDA).
#include <memory>

#include "fastnplm/kernel_ops.hpp"
#include "fastnplm/mlp.hpp"

namespace fastnplm::detail {

/// The CPU KernelOps on `threads` threads (<= 0: all cores).
std::unique_ptr<KernelOps> make_cpu_kernel_ops(int threads);
/// The CPU MlpOps on `threads` threads (<= 0: all cores).
std::unique_ptr<MlpOps> make_cpu_mlp_ops(int threads);
/// The CUDA KernelOps on CUDA device `device` (see make_ops for the caching rule).
std::unique_ptr<KernelOps> make_cuda_kernel_ops(int device);
/// The CUDA MlpOps on the current CUDA device.
std::unique_ptr<MlpOps> make_cuda_mlp_ops();

}  // namespace fastnplm::detail
