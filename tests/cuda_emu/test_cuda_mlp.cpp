// The CUDA MLP kernels (cuda/mlp.cu) run through the CPU emulation, against the CPU
// backend's float64 pass and trainer: loss and gradient of several networks at sizes that are
// not multiples of the tile, a training run step for step, and the stop of a network whose
// loss overflows.
#include <cmath>
#include <random>
#include <vector>

#include "check.hpp"
#include "samples.hpp"
#include "fastnplm/mlp.hpp"
#include "mlp_cuda.hpp"

using fastnplm::MatrixView;
using fastnplm::MlpShape;

namespace {

using samples::normal;

struct Problem {
    MlpShape shape;
    std::vector<double> ref, w;
    std::vector<std::vector<double>> dat;
    std::vector<MatrixView> views;
    std::int64_t nr;
    Problem(std::int64_t d, std::vector<std::int64_t> hidden, std::int64_t nr_, std::vector<std::int64_t> nd, unsigned seed)
        : nr(nr_) {
        shape.d = d;
        shape.hidden = std::move(hidden);
        ref = normal(nr * d, seed);
        w.assign(nr, 0.0);
        std::mt19937_64 g(seed + 1);
        std::uniform_real_distribution<double> U(0.05, 0.2);
        for (auto& x : w) x = U(g);
        for (std::size_t b = 0; b < nd.size(); ++b) dat.push_back(normal(nd[b] * d, seed + 2 + b, 1.3));
        for (std::size_t b = 0; b < nd.size(); ++b) views.emplace_back(dat[b].data(), nd[b], d);
    }
    MatrixView refv() const { return {ref.data(), nr, shape.d}; }
    std::vector<double> params(unsigned seed) const {
        std::vector<double> p;
        for (std::size_t b = 0; b < dat.size(); ++b) {
            auto q = fastnplm::mlp_init(shape, seed + b, 9.0);
            for (auto& x : q) x += 0.3;  // nonzero biases too
            p.insert(p.end(), q.begin(), q.end());
        }
        return p;
    }
};

}  // namespace

TEST(cuda_mlp_loss_and_gradient_match_the_cpu) {
    // tiles of 128 events: sizes below, at and across tile and block boundaries
    const Problem cases[] = {Problem(1, {4}, 301, {45, 1, 130}, 10), Problem(3, {5, 3}, 257, {129, 64}, 20),
                             Problem(2, {7, 5, 5}, 1000, {333}, 30)};
    for (const Problem& pr : cases) {
        const std::int64_t P = pr.shape.n_params(), B = static_cast<std::int64_t>(pr.dat.size());
        const auto p = pr.params(5);
        std::vector<double> lc(B), gc(B * P), le(B), ge(B * P);
        fastnplm::mlp_loss_grad(pr.shape, pr.refv(), pr.w.data(), pr.views, p.data(), lc.data(), gc.data(), 1);
        fastnplm::cuda_emu::mlp_loss_grad(pr.shape, pr.refv(), pr.w.data(), pr.views, p.data(), le.data(), ge.data());
        // same terms summed in another order: roundoff of sums of ~1000 terms of size <= ~30
        for (std::int64_t b = 0; b < B; ++b) {
            CHECK_CLOSE(le[b], lc[b], 1e-12, 1e-11);
            for (std::int64_t j = 0; j < P; ++j) CHECK_CLOSE(ge[b * P + j], gc[b * P + j], 1e-11, 1e-11);
        }
        std::vector<double> lo(B);
        fastnplm::cuda_emu::mlp_loss_grad(pr.shape, pr.refv(), pr.w.data(), pr.views, p.data(), lo.data(), nullptr);
        for (std::int64_t b = 0; b < B; ++b) CHECK(lo[b] == le[b]);
    }
}

TEST(cuda_mlp_training_matches_the_cpu_step_for_step) {
    const Problem pr(2, {4, 3}, 200, {37, 80}, 40);
    const std::int64_t P = pr.shape.n_params();
    fastnplm::MlpTrainOptions o;
    o.epochs = 40;
    o.history_every = 7;
    o.lr = 0.01;
    o.clip = 0.8;  // some parameters pinned at the clip
    o.threads = 1;
    auto pc = pr.params(9), pe = pc;
    const auto rc = fastnplm::mlp_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pc.data(), o);
    const auto re = fastnplm::cuda_emu::mlp_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pe.data(), o);
    CHECK(re.n_history == rc.n_history && re.epochs_done == rc.epochs_done && re.finite == rc.finite);
    for (std::size_t i = 0; i < pc.size(); ++i) CHECK_CLOSE(pe[i], pc[i], 1e-10, 1e-12);
    for (std::size_t b = 0; b < 2; ++b) CHECK_CLOSE(re.loss[b], rc.loss[b], 1e-11, 1e-11);
    for (std::size_t i = 0; i < rc.history.size(); ++i) {
        CHECK(std::isnan(re.history[i]) == std::isnan(rc.history[i]));
        if (!std::isnan(rc.history[i])) CHECK_CLOSE(re.history[i], rc.history[i], 1e-11, 1e-11);
    }
    bool clipped = false;
    for (double x : pe) clipped = clipped || std::fabs(x) == 0.8;
    CHECK(clipped);
    (void)P;
}

TEST(cuda_mlp_stops_a_network_whose_loss_overflows) {
    const Problem pr(1, {3}, 150, {20, 20}, 50);
    const std::int64_t P = pr.shape.n_params();
    auto p = pr.params(3);
    p[P + P - 1] = 800.0;  // network 1: output bias 800, e^f overflows at once
    fastnplm::MlpTrainOptions o;
    o.epochs = 5;
    o.clip = 1000.0;
    o.history_every = 1;
    auto pc = p, pe = p;
    const auto rc = fastnplm::mlp_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pc.data(), o);
    const auto re = fastnplm::cuda_emu::mlp_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pe.data(), o);
    CHECK(rc.finite[0] == 1 && rc.finite[1] == 0 && re.finite == rc.finite && re.epochs_done == rc.epochs_done);
    for (std::int64_t j = 0; j < P; ++j) CHECK(pe[P + j] == p[P + j]);  // never updated
    CHECK(std::isnan(re.loss[1]) && std::isfinite(re.loss[0]));
    // every network stops: the loop ends early on both backends (the CUDA one notices at its
    // first stop check, after 64 epochs), with the same results
    auto q0 = p;
    q0[P - 1] = 800.0;
    auto qc = q0, qe = q0;
    o.epochs = 100;
    const auto sc = fastnplm::mlp_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, qc.data(), o);
    const auto se = fastnplm::cuda_emu::mlp_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, qe.data(), o);
    CHECK(sc.finite == std::vector<std::uint8_t>(2, 0) && se.finite == sc.finite && se.epochs_done == sc.epochs_done);
    CHECK(qe == q0 && qc == q0);  // never updated
    for (std::size_t i = 0; i < se.history.size(); ++i) CHECK(std::isnan(se.history[i]) && std::isnan(sc.history[i]));
    CHECK_THROWS(fastnplm::cuda_emu::mlp_train_adam(pr.shape, pr.refv(), pr.w.data(), {}, pe.data(), o),
                 std::invalid_argument);
    o.precision = fastnplm::MlpPrecision::float32;
    CHECK_THROWS(fastnplm::cuda_emu::mlp_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pe.data(), o),
                 std::invalid_argument);
}
