#pragma once
// The CUDA backend, seen from the host: no CUDA headers here, so any C++ user can include
// it whether or not the library was built with CUDA. Its primitives come from the factories
// make_ops and make_mlp_ops with Device::cuda (fastnplm/device.hpp). See cuda/README.md.
#include <memory>
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

/// What bench/gpu.py puts achieved rates against.
struct CudaDeviceFacts {
    std::string name;
    int cc_major = 0, cc_minor = 0, multiprocessors = 0;
    double clock_khz = 0, memory_clock_khz = 0, bus_width_bits = 0, global_memory_bytes = 0;
    /// SMs x FP64 FMA units per SM (64 on compute capability 8.0 and 9.x, 2 otherwise) x 2 x clock.
    double peak_fp64_flops = 0;
    /// 2 (double data rate) x memory clock x bus width / 8, bytes/s.
    double peak_bandwidth = 0;
};

/// Facts of `device`; throws std::runtime_error without one (or when not built).
CudaDeviceFacts cuda_device_facts(int device = 0);

/// Device time between start() and stop() by CUDA events on the default stream; stop()
/// waits for the end event. Throws std::runtime_error when not built or without a device.
class CudaEventTimer {
public:
    CudaEventTimer();
    ~CudaEventTimer();
    CudaEventTimer(const CudaEventTimer&) = delete;
    CudaEventTimer& operator=(const CudaEventTimer&) = delete;
    void start();
    /// Milliseconds since start().
    double stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fastnplm
