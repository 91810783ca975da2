#pragma once
// Device facts and CUDA-event timing for bench/gpu.py (host API, no CUDA types).
#include <memory>
#include <string>

#include "backend.hpp"  // FASTNPLM_CUDA_NS

namespace fastnplm::FASTNPLM_CUDA_NS {

/// What bench/gpu.py needs to put achieved rates against the device's peaks.
struct DeviceFacts {
    std::string name;
    int cc_major = 0, cc_minor = 0, multiprocessors = 0;
    double clock_khz = 0, memory_clock_khz = 0, bus_width_bits = 0, global_memory_bytes = 0;
    /// Peak float64 FLOP/s: SMs x FP64 FMA units per SM (64 on compute capability 8.0 and
    /// 9.0, the data-centre parts; 2 on others) x 2 x clock.
    double peak_fp64_flops() const;
    /// Peak DRAM bandwidth (bytes/s): 2 (double data rate) x memory clock x bus width / 8.
    double peak_bandwidth() const;
};

/// Facts of `device`; throws std::runtime_error when there is none.
DeviceFacts device_facts(int device = 0);

/// Elapsed device time between start() and stop(), measured with CUDA events on the default
/// stream (stop() synchronises on the end event).
class EventTimer {
public:
    EventTimer();
    ~EventTimer();
    EventTimer(const EventTimer&) = delete;
    EventTimer& operator=(const EventTimer&) = delete;
    void start();
    /// Milliseconds since start().
    double stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace fastnplm::FASTNPLM_CUDA_NS
