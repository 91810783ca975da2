#pragma once
// Where the hot primitives run: the one choice of backend, taken by both factories
// (make_ops in kernel_ops.hpp for the kernel solver, make_mlp_ops in mlp.hpp for the MLP
// trainer). Python's backend="cpu" / "cuda" / "auto" arguments are parsed here too.
#include <string>

namespace fastnplm {

/// A backend choice: the CPU, the CUDA device, or CUDA when it can be used and else the CPU.
enum class Device {
    cpu,        ///< the multithreaded, vectorised CPU backend
    cuda,       ///< CUDA device 0; an error when the library was built without CUDA or no device is usable
    automatic,  ///< cuda when built with CUDA and a device is usable, else cpu
};

/// The device named "cpu", "cuda" or "auto"; throws std::invalid_argument naming the value and the
/// allowed ones otherwise.
Device parse_device(const std::string& name);

/// The name parse_device reads for `device`: "cpu", "cuda" or "auto".
const char* device_name(Device device);

/// The backend a factory uses for `device`: automatic becomes cuda when the library was built with
/// CUDA and a device is usable (probed on the first call, cuda_device_available), else cpu. Throws
/// std::runtime_error for cuda when the library was built without it or no device is usable.
Device resolve_device(Device device);

}  // namespace fastnplm
