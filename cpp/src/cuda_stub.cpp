// The CUDA entry points of a build without CUDA (the real ones are in cuda/backend.cu).
#ifndef FASTNPLM_WITH_CUDA
#include <stdexcept>

#include "fastnplm/cuda.hpp"

namespace fastnplm {

bool cuda_built() { return false; }
bool cuda_device_available() { return false; }
std::string cuda_architectures() { return {}; }
std::vector<std::string> cuda_kernel_names() { return {}; }
std::unique_ptr<KernelOps> make_cuda_ops(int) {
    throw std::runtime_error("fastnplm was built without the CUDA backend (rebuild with nvcc and FASTNPLM_CUDA=AUTO or ON)");
}

}  // namespace fastnplm
#endif
