// Device facts and event timing for bench/gpu.py (fastnplm/cuda.hpp); runtime calls only.
#include <stdexcept>
#include <string>

#include "device.cuh"
#include "fastnplm/cuda.hpp"

namespace fastnplm {

CudaDeviceFacts cuda_device_facts(int device) {
    using cuda::check;
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
    cuda::check(cudaEventCreate(&impl_->a), "cudaEventCreate");
    cuda::check(cudaEventCreate(&impl_->b), "cudaEventCreate");
}

CudaEventTimer::~CudaEventTimer() {
    if (impl_->a) cudaEventDestroy(impl_->a);
    if (impl_->b) cudaEventDestroy(impl_->b);
}

void CudaEventTimer::start() { cuda::check(cudaEventRecord(impl_->a, nullptr), "cudaEventRecord"); }

double CudaEventTimer::stop() {
    cuda::check(cudaEventRecord(impl_->b, nullptr), "cudaEventRecord");
    cuda::check(cudaEventSynchronize(impl_->b), "cudaEventSynchronize");
    float ms = 0.0f;
    cuda::check(cudaEventElapsedTime(&ms, impl_->a, impl_->b), "cudaEventElapsedTime");
    return ms;
}

}  // namespace fastnplm
