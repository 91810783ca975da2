// Neural NPLM training loop: initialisation, full-batch Adam with weight clipping, for B
// networks at once. The per-epoch pass over the events is the backend primitive
// (detail::MlpPass, mlp_cpu.cpp); everything here is O(B * n_params) per epoch.
#include <algorithm>
#include <cmath>
#include <limits>
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

}  // namespace

namespace detail {

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

}  // namespace detail

namespace {

bool all_finite(const double* v, std::int64_t n) {
    for (std::int64_t i = 0; i < n; ++i)
        if (!std::isfinite(v[i])) return false;
    return true;
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
                              const std::vector<MatrixView>& data, double* params, const MlpTrainOptions& o) {
    detail::check_train_options(o);
    const std::int64_t P = shape.n_params(), B = static_cast<std::int64_t>(data.size());
    if (B < 1) throw std::invalid_argument("mlp_train_adam: no networks (data list is empty)");
    if (params == nullptr) throw std::invalid_argument("mlp_train_adam: params is null");
    if (!all_finite(params, B * P)) throw std::invalid_argument("mlp_train_adam: initial parameters contain NaN or inf");

    MlpTrainResult res;
    const std::int64_t h = o.history_every;
    res.n_history = h > 0 ? o.epochs / h + 1 : 0;
    res.history.assign(static_cast<size_t>(B * res.n_history), std::numeric_limits<double>::quiet_NaN());
    res.loss.assign(B, std::numeric_limits<double>::quiet_NaN());
    res.finite.assign(B, 1);
    res.epochs_done.assign(B, 0);

    std::vector<double> m(B * P, 0.0), v(B * P, 0.0), grad(B * P), loss(B);
    std::vector<std::int64_t> active(B);
    for (std::int64_t b = 0; b < B; ++b) active[b] = b;
    const detail::MlpPass pass(shape, reference, reference_weights, data, o.threads, o.precision);

    const double c1 = 1.0 - o.beta1, c2 = 1.0 - o.beta2;
    for (std::int64_t epoch = 0; epoch < o.epochs && !active.empty(); ++epoch) {
        pass.run(params, active.data(), static_cast<std::int64_t>(active.size()), loss.data(), grad.data());
        // torch.optim.Adam (single-tensor path): m <- lerp(m, g, 1 - beta1),
        // v <- beta2 v + (1 - beta2) g^2, p <- p - lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps); then the clip.
        const double step = static_cast<double>(epoch + 1);
        const double bc1 = 1.0 - std::pow(o.beta1, step), bc2 = 1.0 - std::pow(o.beta2, step);
        const double step_size = o.lr / bc1, bc2_sqrt = std::sqrt(bc2);
        std::vector<std::int64_t> still;
        still.reserve(active.size());
        for (std::int64_t b : active) {
            double* g = grad.data() + b * P;
            if (!std::isfinite(loss[b]) || !all_finite(g, P)) {
                res.finite[b] = 0;
                continue;
            }
            if (h > 0 && epoch % h == 0) res.history[b * res.n_history + epoch / h] = loss[b];
            double* p = params + b * P;
            double* mb = m.data() + b * P;
            double* vb = v.data() + b * P;
            for (std::int64_t j = 0; j < P; ++j) {
                mb[j] += c1 * (g[j] - mb[j]);
                vb[j] = vb[j] * o.beta2 + c2 * g[j] * g[j];
                const double denom = std::sqrt(vb[j]) / bc2_sqrt + o.eps;
                const double pj = p[j] - step_size * (mb[j] / denom);
                p[j] = std::min(o.clip, std::max(-o.clip, pj));
            }
            res.epochs_done[b] = epoch + 1;
            still.push_back(b);
        }
        active.swap(still);
    }
    if (!active.empty()) {
        pass.run(params, active.data(), static_cast<std::int64_t>(active.size()), loss.data(), nullptr);
        for (std::int64_t b : active) {
            if (!std::isfinite(loss[b])) {
                res.finite[b] = 0;
                continue;
            }
            res.loss[b] = loss[b];
            if (h > 0 && o.epochs % h == 0) res.history[b * res.n_history + o.epochs / h] = loss[b];
        }
    }
    return res;
}

}  // namespace fastnplm
