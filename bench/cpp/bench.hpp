#pragma once
// Measurement helpers of the benchmark scripts (bench/*.py, through fastnplm._core): not part of
// the core library fastnplm::fastnplm, built as the static library fastnplm_bench
// (bench/cpp/CMakeLists.txt) that the Python module and the C++ tests link.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fastnplm::bench {

/// Benchmark floor (bench/neural_fit.py): milliseconds, best of `repeats`, that `exps_per_event`
/// float32 sigmoid exponentials exp(-|a x + b|) per event alone take over n_events events with
/// `threads` threads -- the exp and the vectorisation of the float32 pass, none of its other
/// work. An epoch of a network with that many exps per event cannot be faster on this machine.
/// lanes: 8 (AVX2 vectors) or 16 (AVX-512; std::invalid_argument where avx512_lanes() is false).
double mlp_exp_floor_ms(std::int64_t n_events, int exps_per_event, int threads = 0, int repeats = 20, int lanes = 8);

/// Whether this build runs 16-lane float32 code on this CPU (AVX-512, GCC x86-64 build).
bool avx512_lanes();

/// The lanes (8 or 16) of the float32 MLP pass of a d-hidden-1 network here, with the
/// environment (FASTNPLM_F32_LANES) as it is now.
int mlp_float32_lanes(std::int64_t d, const std::vector<std::int64_t>& hidden);

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

/// Facts of CUDA device `device`; throws std::runtime_error without one (or when the library was
/// built without CUDA).
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

}  // namespace fastnplm::bench
