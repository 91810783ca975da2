// CUDA device facts and event timing for bench/gpu.py (bench.hpp): CUDA runtime calls only, no
// kernels, so g++ compiles this against cuda_runtime.h; without CUDA every entry point throws.
#include <stdexcept>
#include <string>

#include "bench.hpp"

#ifdef FASTNPLM_WITH_CUDA
#include <cuda_runtime.h>

namespace fastnplm::bench {
namespace {

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

}  // namespace

CudaDeviceFacts cuda_device_facts(int device) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || device < 0 || device >= count)
        throw std::runtime_error("CUDA: no device " + std::to_string(device));
    cudaDeviceProp p{};
    check(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
    auto attr = [device](cudaDeviceAttr a) {
        int v = 0;
        check(cudaDeviceGetAttribute(&v, a, device), "cudaDeviceGetAttribute");
        return static_cast<double>(v);
    };
    CudaDeviceFacts f;
    f.name = p.name;
    f.cc_major = p.major;
    f.cc_minor = p.minor;
    f.multiprocessors = p.multiProcessorCount;
    f.global_memory_bytes = static_cast<double>(p.totalGlobalMem);
    f.clock_khz = attr(cudaDevAttrClockRate);
    f.memory_clock_khz = attr(cudaDevAttrMemoryClockRate);
    f.bus_width_bits = attr(cudaDevAttrGlobalMemoryBusWidth);
    const int fp64_units = (f.cc_major == 8 && f.cc_minor == 0) || f.cc_major == 9 ? 64 : 2;
    f.peak_fp64_flops = f.multiprocessors * fp64_units * 2.0 * f.clock_khz * 1e3;
    f.peak_bandwidth = 2.0 * f.memory_clock_khz * 1e3 * f.bus_width_bits / 8.0;
    return f;
}

struct CudaEventTimer::Impl {
    cudaEvent_t a = nullptr, b = nullptr;
};

CudaEventTimer::CudaEventTimer() : impl_(std::make_unique<Impl>()) {
    check(cudaEventCreate(&impl_->a), "cudaEventCreate");
    check(cudaEventCreate(&impl_->b), "cudaEventCreate");
}

CudaEventTimer::~CudaEventTimer() {
    if (impl_->a) cudaEventDestroy(impl_->a);
    if (impl_->b) cudaEventDestroy(impl_->b);
}

void CudaEventTimer::start() { check(cudaEventRecord(impl_->a, nullptr), "cudaEventRecord"); }

double CudaEventTimer::stop() {
    check(cudaEventRecord(impl_->b, nullptr), "cudaEventRecord");
    check(cudaEventSynchronize(impl_->b), "cudaEventSynchronize");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, impl_->a, impl_->b), "cudaEventElapsedTime");
    return ms;
}

}  // namespace fastnplm::bench

#else

namespace fastnplm::bench {
namespace {

[[noreturn]] void not_built() {
    throw std::runtime_error(
        "fastnplm was built without the CUDA backend (rebuild with nvcc and FASTNPLM_CUDA=AUTO or ON)");
}

}  // namespace

CudaDeviceFacts cuda_device_facts(int) { not_built(); }
struct CudaEventTimer::Impl {};
CudaEventTimer::CudaEventTimer() { not_built(); }
CudaEventTimer::~CudaEventTimer() = default;
void CudaEventTimer::start() { not_built(); }
double CudaEventTimer::stop() { not_built(); }

}  // namespace fastnplm::bench

#endif
