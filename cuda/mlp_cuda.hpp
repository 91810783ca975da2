#pragma once
// Host-side entry points of the CUDA MLP (cuda/mlp.cu): the same contracts as the CPU
// functions of fastnplm/mlp.hpp (float64 and float32), host pointers in and out. In
// fastnplm::cuda for the real build and fastnplm::cuda_emu for the CPU emulation of the tests.
#include <string>
#include <vector>

#include "backend.hpp"  // FASTNPLM_CUDA_NS
#include "fastnplm/mlp.hpp"

namespace fastnplm::FASTNPLM_CUDA_NS {

/// As fastnplm::mlp_loss_grad: loss (B) and grad (B, n_params, or nullptr).
void mlp_loss_grad(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                   const std::vector<MatrixView>& data, const double* params, double* loss, double* grad,
                   MlpPrecision precision = MlpPrecision::float64);

/// As fastnplm::mlp_train_adam, every epoch on the device (options.threads is ignored).
MlpTrainResult mlp_train_adam(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                              const std::vector<MatrixView>& data, double* params, const MlpTrainOptions& options,
                              MlpAdamState* state = nullptr);

/// Names of the __global__ functions in cuda/mlp.cu.
const std::vector<std::string>& mlp_kernel_names();

}  // namespace fastnplm::FASTNPLM_CUDA_NS
