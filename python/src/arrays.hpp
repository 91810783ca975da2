#pragma once
// The array type the bindings take (float64, C-ordered: numpy converts anything else once) and
// its view as a matrix of events, shared by the binding files.
#include <pybind11/numpy.h>

#include <stdexcept>
#include <string>

#include "fastnplm/view.hpp"

namespace fastnplm_bindings {

using Array = pybind11::array_t<double, pybind11::array::c_style | pybind11::array::forcecast>;

/// The (events, features) view of a 2-D array; std::invalid_argument naming `name` otherwise.
inline fastnplm::MatrixView events(const Array& a, const std::string& name) {
    if (a.ndim() != 2)
        throw std::invalid_argument(name + " must be a 2-D array (events, features), got " + std::to_string(a.ndim()) +
                                    "-D");
    return fastnplm::MatrixView(a.data(), a.shape(0), a.shape(1));
}

}  // namespace fastnplm_bindings
