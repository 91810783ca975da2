#pragma once
// The CUDA backend, seen from the host: no CUDA headers here, so any C++ user can include
// it whether or not the library was built with CUDA. Its primitives come from the factories
// make_ops and make_mlp_ops with Device::cuda (fastnplm/device.hpp). See cuda/README.md.
#include <string>
#include <vector>

namespace fastnplm {

/// Whether the library was compiled with the CUDA backend (CMake FASTNPLM_CUDA).
bool cuda_built();

/// Whether a CUDA device can be used now: probed (cudaGetDeviceCount) on the first call
/// only, never at load time; false without a driver, without a device, or when not built.
bool cuda_device_available();

/// The CUDA architectures the kernels were compiled for, e.g. "80;90" (empty when not built).
std::string cuda_architectures();

/// Names of the compiled-in CUDA kernels (empty when not built).
std::vector<std::string> cuda_kernel_names();

}  // namespace fastnplm
