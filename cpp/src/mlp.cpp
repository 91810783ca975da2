// Neural NPLM training loop: initialisation, full-batch Adam with weight clipping, for B
// networks at once. The loop (mlp_train_adam) is written once against MlpOps; the epoch -- the
// pass over the events, the Adam update, the clip and the non-finite stop -- is the backend
// primitive (MlpEpochs: mlp_cpu.cpp on the CPU, cuda/mlp.cu on the device). What runs here is
// O(1) per epoch plus O(B * n_params) once.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastnplm/mlp.hpp"
#include "mlp_pass.hpp"

namespace fastnplm {

namespace {

std::uint64_t splitmix64(std::uint64_t& state) {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void check_train_options(const MlpTrainOptions& o) {
    auto bad = [](const std::string& what) { throw std::invalid_argument("mlp_train_adam: " + what); };
    if (!(o.clip > 0) || !std::isfinite(o.clip)) bad("clip must be finite and > 0, got " + std::to_string(o.clip));
    if (!(o.lr > 0) || !std::isfinite(o.lr)) bad("lr must be finite and > 0, got " + std::to_string(o.lr));
    if (!(o.beta1 >= 0 && o.beta1 < 1)) bad("beta1 must be in [0, 1), got " + std::to_string(o.beta1));
    if (!(o.beta2 >= 0 && o.beta2 < 1)) bad("beta2 must be in [0, 1), got " + std::to_string(o.beta2));
    if (!(o.eps > 0) || !std::isfinite(o.eps)) bad("eps must be finite and > 0, got " + std::to_string(o.eps));
    if (o.epochs < 1) bad("epochs must be >= 1, got " + std::to_string(o.epochs));
    if (o.history_every < 0) bad("history_every must be >= 0, got " + std::to_string(o.history_every));
}

}  // namespace

std::vector<double> mlp_init(const MlpShape& shape, std::uint64_t seed, double clip) {
    std::vector<double> p(static_cast<size_t>(shape.n_params()), 0.0);
    std::uint64_t state = seed;
    std::int64_t nin = shape.d, off = 0;
    const std::int64_t layers = static_cast<std::int64_t>(shape.hidden.size()) + 1;
    for (std::int64_t l = 0; l < layers; ++l) {
        const std::int64_t nout = l + 1 < layers ? shape.hidden[l] : 1;
        const double a = std::sqrt(6.0 / static_cast<double>(nin + nout));
        for (std::int64_t i = 0; i < nin * nout; ++i) {
            const double u = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
            double v = a * (2.0 * u - 1.0);
            if (clip > 0) v = std::min(clip, std::max(-clip, v));
            p[off + i] = v;
        }
        off += nin * nout + nout;  // biases stay zero
        nin = nout;
    }
    return p;
}

MlpTrainResult mlp_train_adam(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                              const std::vector<MatrixView>& data, double* params, const MlpTrainOptions& o,
                              MlpAdamState* state, const MlpOps& ops) {
    using detail::all_finite;
    check_train_options(o);
    const std::int64_t P = shape.n_params(), B = static_cast<std::int64_t>(data.size());
    if (B < 1) throw std::invalid_argument("mlp_train_adam: no networks (data list is empty)");
    if (params == nullptr) throw std::invalid_argument("mlp_train_adam: params is null");
    if (!all_finite(params, B * P))
        throw std::invalid_argument("mlp_train_adam: initial parameters contain NaN or inf");
    const bool resume = state != nullptr && !(state->m.empty() && state->v.empty());
    if (state != nullptr) {
        if (state->steps < 0) throw std::invalid_argument("mlp_train_adam: state.steps must be >= 0");
        if (resume && (static_cast<std::int64_t>(state->m.size()) != B * P ||
                       static_cast<std::int64_t>(state->v.size()) != B * P))
            throw std::invalid_argument("mlp_train_adam: state moments must hold B * n_params = " +
                                        std::to_string(B * P) + " values each (or be empty)");
        if (resume && !(all_finite(state->m.data(), B * P) && all_finite(state->v.data(), B * P)))
            throw std::invalid_argument("mlp_train_adam: state moments contain NaN or inf");
    }
    const std::int64_t first_step = state != nullptr ? state->steps : 0;

    MlpTrainResult res;
    const std::int64_t h = o.history_every;
    res.n_history = h > 0 ? o.epochs / h + 1 : 0;
    const std::unique_ptr<MlpEpochs> net =
        ops.epochs(shape, reference, reference_weights, data, params, res.n_history, o.precision);
    if (resume) net->set_moments(state->m.data(), state->v.data());
    const std::int64_t check_every = net->stop_check_every();

    // torch.optim.Adam (single-tensor path): m <- lerp(m, g, 1 - beta1),
    // v <- beta2 v + (1 - beta2) g^2, p <- p - lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps); then the clip.
    MlpAdamStep a;
    a.c1 = 1.0 - o.beta1;
    a.c2 = 1.0 - o.beta2;
    a.beta2 = o.beta2;
    a.eps = o.eps;
    a.clip = o.clip;
    std::int64_t ran = 0;
    for (std::int64_t epoch = 0; epoch < o.epochs; ++epoch) {
        const double step = static_cast<double>(first_step + epoch + 1);
        const double bc1 = 1.0 - std::pow(o.beta1, step), bc2 = 1.0 - std::pow(o.beta2, step);
        a.step_size = o.lr / bc1;
        a.bc2_sqrt = std::sqrt(bc2);
        a.epoch = epoch;
        a.record = h > 0 && epoch % h == 0 ? epoch / h : -1;
        net->epoch(a);
        ran = epoch + 1;
        if (check_every > 0 && (epoch + 1) % check_every == 0 && net->all_stopped()) break;
    }
    if (state != nullptr) {
        state->m.resize(static_cast<size_t>(B * P));
        state->v.resize(static_cast<size_t>(B * P));
        net->moments(state->m.data(), state->v.data());
        state->steps = first_step + ran;
    }

    std::vector<double> loss(static_cast<size_t>(B));
    net->final_loss(loss.data());
    res.history.assign(static_cast<size_t>(B * res.n_history), 0.0);
    res.finite.assign(static_cast<size_t>(B), 0);
    res.epochs_done.assign(static_cast<size_t>(B), 0);
    net->results(params, res.finite.data(), res.epochs_done.data(), res.history.data());
    res.loss.assign(static_cast<size_t>(B), std::numeric_limits<double>::quiet_NaN());
    for (std::int64_t b = 0; b < B; ++b) {
        if (!std::isfinite(loss[b])) {  // stopped before, or a non-finite loss after the last update
            res.finite[b] = 0;
            continue;
        }
        res.loss[b] = loss[b];
        if (h > 0 && o.epochs % h == 0) res.history[b * res.n_history + o.epochs / h] = loss[b];
    }
    return res;
}

MlpTrainResult mlp_train_adam(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                              const std::vector<MatrixView>& data, double* params, const MlpTrainOptions& o,
                              MlpAdamState* state) {
    return mlp_train_adam(shape, reference, reference_weights, data, params, o, state,
                          *make_mlp_ops(Device::cpu, o.threads));
}

}  // namespace fastnplm
