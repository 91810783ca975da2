// pybind11 bindings of the measurement helpers the bench scripts use (bench/cpp/bench.hpp).
#include "bindings_bench.hpp"

#include <cstdint>
#include <string>

#include "bench.hpp"

namespace py = pybind11;
using namespace fastnplm::bench;

void bind_bench(py::module_& m) {
    m.def(
        "mlp_exp_floor_ms",
        [](std::int64_t n_events, int exps_per_event, int threads, int repeats) {
            py::gil_scoped_release nogil;  // safe: no Python object is touched
            return mlp_exp_floor_ms(n_events, exps_per_event, threads, repeats);
        },
        py::arg("n_events"), py::arg("exps_per_event"), py::arg("threads") = 0, py::arg("repeats") = 20,
        "Benchmark floor: ms (best of repeats) of exps_per_event float32 sigmoid exps per event alone.");
    m.def(
        "cuda_device_facts",
        [](int device) {
            const CudaDeviceFacts f = cuda_device_facts(device);
            py::dict d;
            d["name"] = f.name;
            d["compute_capability"] = std::to_string(f.cc_major) + "." + std::to_string(f.cc_minor);
            d["multiprocessors"] = f.multiprocessors;
            d["clock_khz"] = f.clock_khz;
            d["memory_clock_khz"] = f.memory_clock_khz;
            d["bus_width_bits"] = f.bus_width_bits;
            d["global_memory_bytes"] = f.global_memory_bytes;
            d["peak_fp64_flops"] = f.peak_fp64_flops;
            d["peak_bandwidth"] = f.peak_bandwidth;
            return d;
        },
        py::arg("device") = 0, "Facts and peak rates of a CUDA device (RuntimeError without one).");
    py::class_<CudaEventTimer>(m, "CudaEventTimer", "Device time by CUDA events on the default stream.")
        .def(py::init<>())
        .def("start", &CudaEventTimer::start)
        .def("stop", &CudaEventTimer::stop, "Milliseconds since start() (waits for the device).");
}
