// Device facts and event timing (see device_info.hpp).
#include <stdexcept>
#include <string>

#include "device_info.hpp"
#include "device.cuh"

namespace fastnplm::FASTNPLM_CUDA_NS {

double DeviceFacts::peak_fp64_flops() const {
    const int units = (cc_major == 8 && cc_minor == 0) || cc_major == 9 ? 64 : 2;
    return static_cast<double>(multiprocessors) * units * 2.0 * clock_khz * 1e3;
}

double DeviceFacts::peak_bandwidth() const { return 2.0 * memory_clock_khz * 1e3 * bus_width_bits / 8.0; }

DeviceFacts device_facts(int device) {
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
    DeviceFacts f;
    f.name = p.name;
    f.cc_major = p.major;
    f.cc_minor = p.minor;
    f.multiprocessors = p.multiProcessorCount;
    f.global_memory_bytes = static_cast<double>(p.totalGlobalMem);
    f.clock_khz = attr(cudaDevAttrClockRate);
    f.memory_clock_khz = attr(cudaDevAttrMemoryClockRate);
    f.bus_width_bits = attr(cudaDevAttrGlobalMemoryBusWidth);
    return f;
}

struct EventTimer::Impl {
    cudaEvent_t a = nullptr, b = nullptr;
};

EventTimer::EventTimer() : impl_(std::make_unique<Impl>()) {
    check(cudaEventCreate(&impl_->a), "cudaEventCreate");
    check(cudaEventCreate(&impl_->b), "cudaEventCreate");
}

EventTimer::~EventTimer() {
    if (impl_->a) cudaEventDestroy(impl_->a);
    if (impl_->b) cudaEventDestroy(impl_->b);
}

void EventTimer::start() { check(cudaEventRecord(impl_->a, nullptr), "cudaEventRecord"); }

double EventTimer::stop() {
    check(cudaEventRecord(impl_->b, nullptr), "cudaEventRecord");
    check(cudaEventSynchronize(impl_->b), "cudaEventSynchronize");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, impl_->a, impl_->b), "cudaEventElapsedTime");
    return ms;
}

}  // namespace fastnplm::FASTNPLM_CUDA_NS
