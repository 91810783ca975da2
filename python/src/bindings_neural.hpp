#pragma once
// Bindings of the neural NPLM core (bindings_neural.cpp), added to the module by bindings.cpp.
#include <pybind11/pybind11.h>

void bind_neural(pybind11::module_& m);
