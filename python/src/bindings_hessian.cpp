// pybind11 binding of the loss-gradient-Hessian pass: convert arrays, release the GIL, call the core.
#include "bindings_hessian.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastnplm/box_qp.hpp"
#include "fastnplm/mlp_hessian.hpp"

#include "arrays.hpp"

namespace py = pybind11;
using namespace fastnplm;

namespace {

using fastnplm_bindings::Array;
using fastnplm_bindings::events;

py::tuple loss_grad_hess(const Array& reference, const Array& weights, const Array& data,
                         const std::vector<std::int64_t>& hidden, const Array& params, int threads, bool with_grad,
                         bool with_hess) {
    MlpShape s;
    const MatrixView ref = events(reference, "reference"), dat = events(data, "data");
    s.d = ref.cols;
    s.hidden = hidden;
    const std::int64_t P = s.n_params();  // validates the shape
    if (weights.ndim() != 1 || weights.shape(0) != ref.rows)
        throw std::invalid_argument("weights must be a 1-D array of length " + std::to_string(ref.rows));
    if (params.ndim() != 1 || params.shape(0) != P)
        throw std::invalid_argument("params must be a 1-D array of length " + std::to_string(P));
    const py::ssize_t n = static_cast<py::ssize_t>(P);
    py::array_t<double> grad(with_grad ? n : 0), hess(std::vector<py::ssize_t>{with_hess ? n : 0, with_hess ? n : 0});
    double loss = 0.0;
    double* gp = with_grad ? grad.mutable_data() : nullptr;
    double* hp = with_hess ? hess.mutable_data() : nullptr;
    {
        py::gil_scoped_release release;  // safe: the inputs are owned by the caller's frame, the outputs by ours
        mlp_loss_grad_hess(s, ref, weights.data(), dat, params.data(), &loss, gp, hp, threads);
    }
    return py::make_tuple(loss, with_grad ? py::object(grad) : py::object(py::none()),
                          with_hess ? py::object(hess) : py::object(py::none()));
}

py::tuple box_qp_py(const Array& g, const Array& H, const Array& lo, const Array& hi, double rtol) {
    if (g.ndim() != 1) throw std::invalid_argument("g must be a 1-D array");
    const py::ssize_t n = g.shape(0);
    if (H.ndim() != 2 || H.shape(0) != n || H.shape(1) != n)
        throw std::invalid_argument("H must be an array of shape (" + std::to_string(n) + ", " + std::to_string(n) +
                                    ")");
    for (const Array* b : {&lo, &hi})
        if (b->ndim() != 1 || b->shape(0) != n)
            throw std::invalid_argument("lo and hi must be 1-D arrays of length " + std::to_string(n));
    for (py::ssize_t i = 0; i < n; ++i)
        if (!(lo.data()[i] <= 0.0 && 0.0 <= hi.data()[i]))
            throw std::invalid_argument("the box must hold s = 0: lo <= 0 <= hi");
    py::array_t<double> s(n);
    double q = 0.0;
    double* sp = s.mutable_data();
    {
        py::gil_scoped_release release;
        q = box_qp(n, g.data(), H.data(), lo.data(), hi.data(), rtol, sp);
    }
    return py::make_tuple(s, q);
}

}  // namespace

void bind_hessian(py::module_& m) {
    m.def("mlp_loss_grad_hess", &loss_grad_hess, py::arg("reference"), py::arg("weights"), py::arg("data"),
          py::arg("hidden"), py::arg("params"), py::arg("threads") = 0, py::arg("with_grad") = true,
          py::arg("with_hess") = true,
          "NPLM loss, gradient (P,) and exact Hessian (P, P) of one network params (P,); grad/hess None when not "
          "asked for. Independent of threads bit for bit.");
    m.def("box_qp", &box_qp_py, py::arg("g"), py::arg("H"), py::arg("lo"), py::arg("hi"), py::arg("rtol"),
          "Approximately minimise g.s + s.H.s / 2 over lo <= s <= hi by projected Newton (fastnplm/box_qp.hpp): "
          "(s, q(s)).");
}
