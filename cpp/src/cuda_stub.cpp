// The CUDA entry points of a build without CUDA (the real ones are in cuda/backend.cu).
#ifndef FASTNPLM_WITH_CUDA
#include <stdexcept>

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

std::unique_ptr<KernelOps> make_cuda_ops(int) { not_built(); }
void cuda_mlp_loss_grad(const MlpShape&, MatrixView, const double*, const std::vector<MatrixView>&, const double*,
                        double*, double*, MlpPrecision) {
    not_built();
}
MlpTrainResult cuda_mlp_train_adam(const MlpShape&, MatrixView, const double*, const std::vector<MatrixView>&, double*,
                                   const MlpTrainOptions&, MlpAdamState*) {
    not_built();
}
CudaDeviceFacts cuda_device_facts(int) { not_built(); }
struct CudaEventTimer::Impl {};
CudaEventTimer::CudaEventTimer() { not_built(); }
CudaEventTimer::~CudaEventTimer() = default;
void CudaEventTimer::start() { not_built(); }
double CudaEventTimer::stop() { not_built(); }

}  // namespace fastnplm
#endif
