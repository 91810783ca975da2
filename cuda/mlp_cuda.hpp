#pragma once
// Host-side entry points of the CUDA MLP (cuda/mlp.cu): its MlpOps, with the contracts of
// fastnplm/mlp.hpp (float64 and float32), host pointers in and out. In fastnplm::cuda for the
// real build and fastnplm::cuda_emu for the CPU emulation of the tests.
#include <memory>
#include <string>
#include <vector>

#include "backend.hpp"  // FASTNPLM_CUDA_NS
#include "fastnplm/mlp.hpp"

namespace fastnplm::FASTNPLM_CUDA_NS {

/// The CUDA MlpOps (fastnplm/mlp.hpp) on the current device: the pass and every epoch of
/// mlp_train_adam (pass, Adam, clip) on the device.
std::unique_ptr<MlpOps> make_mlp_ops();

/// Names of the __global__ functions in cuda/mlp.cu.
const std::vector<std::string>& mlp_kernel_names();

}  // namespace fastnplm::FASTNPLM_CUDA_NS
