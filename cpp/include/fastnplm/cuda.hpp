#pragma once
// The CUDA backend, seen from the host: no CUDA headers here, so any C++ user can include
// it whether or not the library was built with CUDA. See cuda/README.md.
#include <memory>
#include <string>
#include <vector>

#include "fastnplm/kernel_ops.hpp"

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

/// The CUDA backend on `device`. The host-pointer interface of KernelOps; events and centers
/// are copied to the device once and cached, keyed by (pointer, shape, stride): the object
/// assumes that an array it has seen is not modified (or freed and reused) while it lives,
/// so use one object per fit. Not safe to call from several host threads at once.
/// Throws std::runtime_error when the library was built without CUDA or no device is usable.
std::unique_ptr<KernelOps> make_cuda_ops(int device = 0);

}  // namespace fastnplm
