#pragma once
// Bindings of the loss-gradient-Hessian pass (bindings_hessian.cpp), added to the module by bindings.cpp.
#include <pybind11/pybind11.h>

void bind_hessian(pybind11::module_& m);
