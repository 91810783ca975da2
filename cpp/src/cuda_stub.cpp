// The CUDA entry points of a build without CUDA (the real ones are in cuda/backend.cu and
// cuda/mlp.cu); device.cpp refuses Device::cuda before it would reach them.
#ifndef FASTNPLM_WITH_CUDA
#include <stdexcept>

#include "backends.hpp"
#include "fastnplm/cuda.hpp"

namespace fastnplm {

bool cuda_built() { return false; }
bool cuda_device_available() { return false; }
std::string cuda_architectures() { return {}; }
std::vector<std::string> cuda_kernel_names() { return {}; }
namespace {
[[noreturn]] void not_built() {
    throw std::runtime_error(
        "fastnplm was built without the CUDA backend (rebuild with nvcc and FASTNPLM_CUDA=AUTO or ON)");
}
}  // namespace

std::unique_ptr<KernelOps> detail::make_cuda_kernel_ops(int) { not_built(); }
std::unique_ptr<MlpOps> detail::make_cuda_mlp_ops() { not_built(); }

}  // namespace fastnplm
#endif
