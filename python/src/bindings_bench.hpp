#pragma once
// Bindings of the benchmark helpers (bench/cpp, bindings_bench.cpp), added to the module by bindings.cpp.
#include <pybind11/pybind11.h>

void bind_bench(pybind11::module_& m);
