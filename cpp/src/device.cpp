// The backend choice (fastnplm/device.hpp) and the two factories that take it: make_ops for the
// kernel solver's primitives, make_mlp_ops for the MLP trainer's.
#include "fastnplm/device.hpp"

#include <stdexcept>
#include <string>

#include "backends.hpp"
#include "fastnplm/cuda.hpp"
#include "fastnplm/kernel_ops.hpp"
#include "fastnplm/mlp.hpp"

namespace fastnplm {

Device parse_device(const std::string& name) {
    if (name == "cpu") return Device::cpu;
    if (name == "cuda") return Device::cuda;
    if (name == "auto") return Device::automatic;
    throw std::invalid_argument("unknown backend '" + name + "': expected 'cpu', 'cuda' or 'auto'");
}

const char* device_name(Device device) {
    switch (device) {
        case Device::cpu:
            return "cpu";
        case Device::cuda:
            return "cuda";
        case Device::automatic:
            return "auto";
    }
    throw std::invalid_argument("device_name: not a Device value");
}

Device resolve_device(Device device) {
    switch (device) {
        case Device::cpu:
            return Device::cpu;
        case Device::automatic:
            return cuda_device_available() ? Device::cuda : Device::cpu;
        case Device::cuda:
            if (!cuda_built())
                throw std::runtime_error(
                    "backend='cuda' requested but fastnplm was built without the CUDA backend (rebuild with nvcc "
                    "and FASTNPLM_CUDA=AUTO or ON); use backend='cpu' or 'auto'");
            if (!cuda_device_available())
                throw std::runtime_error(
                    "backend='cuda' requested but no CUDA device is available (no driver or no GPU); use "
                    "backend='cpu' or 'auto'");
            return Device::cuda;
    }
    throw std::invalid_argument("resolve_device: not a Device value");
}

std::unique_ptr<KernelOps> make_ops(Device device, int threads) {
    if (resolve_device(device) == Device::cuda) return detail::make_cuda_kernel_ops(0);
    return detail::make_cpu_kernel_ops(threads);
}

std::unique_ptr<MlpOps> make_mlp_ops(Device device, int threads) {
    if (resolve_device(device) == Device::cuda) return detail::make_cuda_mlp_ops();
    return detail::make_cpu_mlp_ops(threads);
}

}  // namespace fastnplm
