// pybind11 bindings of the MLP core: convert arrays, release the GIL, call the core.
#include "bindings_neural.hpp"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fastnplm/device.hpp"
#include "fastnplm/mlp.hpp"
#include "results.hpp"

#include "arrays.hpp"

namespace py = pybind11;
using namespace fastnplm;
using fastnplm_bindings::ResultClass;

namespace {

using fastnplm_bindings::Array;
using fastnplm_bindings::events;

MlpPrecision precision_of(const std::string& dtype) {
    if (dtype == "float64") return MlpPrecision::float64;
    if (dtype == "float32") return MlpPrecision::float32;
    throw std::invalid_argument("dtype must be 'float64' or 'float32', got '" + dtype + "'");
}

MlpShape shape_of(std::int64_t d, const std::vector<std::int64_t>& hidden) {
    MlpShape s;
    s.d = d;
    s.hidden = hidden;
    s.validate();
    return s;
}

// The (B, P) parameter array and the B data views; checks shapes against each other.
struct Batch {
    MlpShape shape;
    MatrixView ref;
    const double* w;
    std::vector<MatrixView> data;
    std::int64_t P;
};

Batch batch(const Array& reference, const Array& weights, const std::vector<Array>& data,
            const std::vector<std::int64_t>& hidden, const Array& params) {
    Batch b;
    b.ref = events(reference, "reference");
    b.shape = shape_of(b.ref.cols, hidden);
    b.P = b.shape.n_params();
    if (weights.ndim() != 1 || weights.shape(0) != b.ref.rows)
        throw std::invalid_argument("reference_weights must be a 1-D array of length " + std::to_string(b.ref.rows));
    b.w = weights.data();
    for (std::size_t i = 0; i < data.size(); ++i) b.data.push_back(events(data[i], "data[" + std::to_string(i) + "]"));
    if (params.ndim() != 2 || params.shape(0) != static_cast<py::ssize_t>(data.size()) || params.shape(1) != b.P)
        throw std::invalid_argument("params must have shape (" + std::to_string(data.size()) + ", " +
                                    std::to_string(b.P) + "): one row per data set");
    return b;
}

py::array_t<double> init(std::int64_t d, const std::vector<std::int64_t>& hidden, std::uint64_t seed, double clip) {
    const std::vector<double> p = mlp_init(shape_of(d, hidden), seed, clip);
    py::array_t<double> out(static_cast<py::ssize_t>(p.size()));
    std::copy(p.begin(), p.end(), out.mutable_data());
    return out;
}

py::tuple loss_grad(const Array& reference, const Array& weights, const std::vector<Array>& data,
                    const std::vector<std::int64_t>& hidden, const Array& params, bool with_grad, int threads,
                    const std::string& dtype, const std::string& backend) {
    const MlpPrecision prec = precision_of(dtype);
    const std::unique_ptr<MlpOps> ops = make_mlp_ops(parse_device(backend), threads);
    const Batch b = batch(reference, weights, data, hidden, params);
    const py::ssize_t B = static_cast<py::ssize_t>(data.size());
    py::array_t<double> loss(B), grad(std::vector<py::ssize_t>{B, static_cast<py::ssize_t>(b.P)});
    double* lp = loss.mutable_data();
    double* gp = with_grad ? grad.mutable_data() : nullptr;
    {
        py::gil_scoped_release release;  // safe: the arrays are owned by this frame's callers, read-only here
        ops->loss_grad(b.shape, b.ref, b.w, b.data, params.data(), lp, gp, prec);
    }
    return py::make_tuple(loss, with_grad ? py::object(grad) : py::object(py::none()));
}

// What mlp_train returns for B networks of P parameters: the core's MlpTrainResult, the trained
// parameters and Adam's state after the last update (to continue from).
struct TrainResult {
    std::vector<double> params, loss, history, m, v;  // (B, P), (B), (B, n_history), (B, P), (B, P)
    std::vector<std::uint8_t> finite;                 // (B)
    std::vector<std::int64_t> epochs_done;            // (B)
    std::int64_t steps = 0, B = 0, P = 0, n_history = 0;
};

TrainResult train(const Array& reference, const Array& weights, const std::vector<Array>& data,
                  const std::vector<std::int64_t>& hidden, const Array& params, double clip, double lr, double beta1,
                  double beta2, double eps, std::int64_t epochs, std::int64_t history_every, int threads,
                  const std::string& dtype, const std::string& backend, std::int64_t steps,
                  const std::optional<Array>& m, const std::optional<Array>& v) {
    const Batch b = batch(reference, weights, data, hidden, params);
    // Adam's state of a resumed training (fastnplm.NeuralNPLM.fit(checkpoint=...)): steps taken, moments
    MlpAdamState state;
    state.steps = steps;
    if (m.has_value() != v.has_value()) throw std::invalid_argument("give both Adam moments m and v, or neither");
    if (m) {
        const std::size_t n = static_cast<std::size_t>(data.size()) * static_cast<std::size_t>(b.P);
        if (m->size() != static_cast<py::ssize_t>(n) || v->size() != static_cast<py::ssize_t>(n))
            throw std::invalid_argument("Adam moments m and v must have the shape of params");
        state.m.assign(m->data(), m->data() + n);
        state.v.assign(v->data(), v->data() + n);
    }
    MlpTrainOptions o;
    o.clip = clip;
    o.lr = lr;
    o.beta1 = beta1;
    o.beta2 = beta2;
    o.eps = eps;
    o.epochs = epochs;
    o.history_every = history_every;
    o.threads = threads;
    o.precision = precision_of(dtype);
    const std::unique_ptr<MlpOps> ops = make_mlp_ops(parse_device(backend), threads);
    TrainResult out;
    out.B = static_cast<std::int64_t>(data.size());
    out.P = b.P;
    out.params.assign(params.data(), params.data() + out.B * out.P);
    MlpTrainResult r;
    {
        py::gil_scoped_release release;  // safe: inputs owned by the caller's frame; out is ours
        r = mlp_train_adam(b.shape, b.ref, b.w, b.data, out.params.data(), o, &state, *ops);
    }
    out.loss = std::move(r.loss);
    out.history = std::move(r.history);
    out.n_history = r.n_history;
    out.finite = std::move(r.finite);
    out.epochs_done = std::move(r.epochs_done);
    out.m = std::move(state.m);
    out.v = std::move(state.v);
    out.steps = state.steps;
    return out;
}

py::array_t<double> predict(const Array& x, const std::vector<std::int64_t>& hidden, const Array& params, int threads) {
    const MatrixView xv = events(x, "x");
    const MlpShape s = shape_of(xv.cols, hidden);
    if (params.ndim() != 1 || params.shape(0) != s.n_params())
        throw std::invalid_argument("params must be a 1-D array of length " + std::to_string(s.n_params()));
    py::array_t<double> out(xv.rows);
    double* o = out.mutable_data();
    {
        py::gil_scoped_release release;  // safe: x and params are owned by the caller's frame
        mlp_predict(s, params.data(), xv, o, threads);
    }
    return out;
}

}  // namespace

void bind_neural(py::module_& m) {
    const auto by_network = [](const TrainResult& r) { return std::vector<py::ssize_t>{r.B}; };
    const auto by_param = [](const TrainResult& r) { return std::vector<py::ssize_t>{r.B, r.P}; };
    ResultClass<TrainResult>(m, "MlpTrainResult", "What mlp_train returns for B networks of P parameters.")
        .array("params", &TrainResult::params, by_param, "(B, P) the parameters after the last update")
        .array("loss", &TrainResult::loss, by_network, "(B) L after the last update (t = -2 L); NaN if not finite")
        .array(
            "history", &TrainResult::history,
            [](const TrainResult& r) { return std::vector<py::ssize_t>{r.B, r.n_history}; },
            "(B, n_history) L after 0, h, 2h, ... updates of this call (h = history_every)")
        .array("finite", &TrainResult::finite, by_network, "(B) training finished without a non-finite loss", "bool")
        .array("epochs_done", &TrainResult::epochs_done, by_network, "(B) updates made in this call")
        .array("m", &TrainResult::m, by_param, "(B, P) Adam's first moments after the last update")
        .array("v", &TrainResult::v, by_param, "(B, P) Adam's second moments after the last update")
        .field("steps", &TrainResult::steps, "Adam updates made in all, the steps to continue from");
    m.def(
        "mlp_n_params", [](std::int64_t d, const std::vector<std::int64_t>& h) { return shape_of(d, h).n_params(); },
        py::arg("d"), py::arg("hidden"), "Number of parameters of a d-hidden...-1 network.");
    m.def("mlp_init", &init, py::arg("d"), py::arg("hidden"), py::arg("seed"), py::arg("clip") = 0.0,
          "Glorot-uniform weights from splitmix64(seed), zero biases, clipped to [-clip, clip] (clip > 0).");
    m.def("mlp_loss_grad", &loss_grad, py::arg("reference"), py::arg("weights"), py::arg("data"), py::arg("hidden"),
          py::arg("params"), py::arg("with_grad") = true, py::arg("threads") = 0, py::arg("dtype") = "float64",
          py::arg("backend") = "cpu",
          "NPLM loss (B,) and gradient (B, P) of B networks params (B, P), data a list of B arrays.");
    m.def("mlp_train", &train, py::arg("reference"), py::arg("weights"), py::arg("data"), py::arg("hidden"),
          py::arg("params"), py::arg("clip"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
          py::arg("epochs"), py::arg("history_every"), py::arg("threads") = 0, py::arg("dtype") = "float64",
          py::arg("backend") = "cpu", py::arg("steps") = 0, py::arg("m") = py::none(), py::arg("v") = py::none(),
          "Adam + clipping for B networks at once, continuing from Adam's state (steps, m, v) when given.");
    m.def("mlp_predict", &predict, py::arg("x"), py::arg("hidden"), py::arg("params"), py::arg("threads") = 0,
          "f(x) of one network.");
}
