// pybind11 bindings of the measurement helpers the bench scripts use (bench/cpp/bench.hpp).
#include "bindings_bench.hpp"

#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench.hpp"
#include "results.hpp"

namespace py = pybind11;
using namespace fastnplm::bench;
using fastnplm_bindings::ResultClass;

void bind_bench(py::module_& m) {
    m.def(
        "mlp_exp_floor_ms",
        [](std::int64_t n_events, int exps_per_event, int threads, int repeats, int lanes) {
            py::gil_scoped_release nogil;  // safe: no Python object is touched
            return mlp_exp_floor_ms(n_events, exps_per_event, threads, repeats, lanes);
        },
        py::arg("n_events"), py::arg("exps_per_event"), py::arg("threads") = 0, py::arg("repeats") = 20,
        py::arg("lanes") = 8,
        "Benchmark floor: ms (best of repeats) of exps_per_event float32 sigmoid exps per event alone, "
        "in vectors of 8 or 16 (AVX-512) lanes.");
    m.def("avx512_lanes", &avx512_lanes, "Whether this build runs 16-lane float32 code on this CPU.");
    m.def("mlp_float32_lanes", &mlp_float32_lanes, py::arg("d"), py::arg("hidden"),
          "Lanes (8 or 16) of the float32 MLP pass of a d-hidden-1 network here (FASTNPLM_F32_LANES as now).");
    ResultClass<CudaDeviceFacts>(m, "CudaDeviceFacts", "What bench/gpu.py puts achieved rates against.")
        .field("name", &CudaDeviceFacts::name, "the device's name")
        .property(
            "compute_capability",
            [](const CudaDeviceFacts& f) { return std::to_string(f.cc_major) + "." + std::to_string(f.cc_minor); },
            "major.minor")
        .field("multiprocessors", &CudaDeviceFacts::multiprocessors, "SMs")
        .field("clock_khz", &CudaDeviceFacts::clock_khz, "SM clock")
        .field("memory_clock_khz", &CudaDeviceFacts::memory_clock_khz, "memory clock")
        .field("bus_width_bits", &CudaDeviceFacts::bus_width_bits, "memory bus width")
        .field("global_memory_bytes", &CudaDeviceFacts::global_memory_bytes, "device memory")
        .field("peak_fp64_flops", &CudaDeviceFacts::peak_fp64_flops, "SMs x FP64 FMA units per SM x 2 x clock")
        .field("peak_bandwidth", &CudaDeviceFacts::peak_bandwidth, "2 x memory clock x bus width / 8, bytes/s");
    m.def("cuda_device_facts", &cuda_device_facts, py::arg("device") = 0,
          "Facts and peak rates of a CUDA device (RuntimeError without one).");
    py::class_<CudaEventTimer>(m, "CudaEventTimer", "Device time by CUDA events on the default stream.")
        .def(py::init<>())
        .def("start", &CudaEventTimer::start)
        .def("stop", &CudaEventTimer::stop, "Milliseconds since start() (waits for the device).");
}
