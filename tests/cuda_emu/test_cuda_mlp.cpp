// The CUDA MLP kernels (cuda/mlp.cu) run through the CPU emulation, against the CPU
// backend's pass and trainer: loss and gradient of several networks at sizes that are not
// multiples of the tile, a training run step for step, and the stop of a network whose loss
// overflows; in float64 and in the float32 mode.
#include <algorithm>
#include <cmath>
#include <cstdio>
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

// The emulated CUDA MlpOps, the one make_mlp_ops(Device::cuda) gives in a CUDA build.
const fastnplm::MlpOps& emu_mlp() {
    static const auto ops = fastnplm::cuda_emu::make_mlp_ops();
    return *ops;
}

void emu_loss_grad(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                   const std::vector<MatrixView>& data, const double* params, double* loss, double* grad,
                   fastnplm::MlpPrecision precision = fastnplm::MlpPrecision::float64) {
    emu_mlp().loss_grad(shape, reference, reference_weights, data, params, loss, grad, precision);
}

fastnplm::MlpTrainResult emu_train_adam(const MlpShape& shape, MatrixView reference, const double* reference_weights,
                                        const std::vector<MatrixView>& data, double* params,
                                        const fastnplm::MlpTrainOptions& options,
                                        fastnplm::MlpAdamState* state = nullptr) {
    return fastnplm::mlp_train_adam(shape, reference, reference_weights, data, params, options, state, emu_mlp());
}

struct Problem {
    MlpShape shape;
    std::vector<double> ref, w;
    std::vector<std::vector<double>> dat;
    std::vector<MatrixView> views;
    std::int64_t nr;
    Problem(std::int64_t d, std::vector<std::int64_t> hidden, std::int64_t nr_, std::vector<std::int64_t> nd,
            unsigned seed)
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

// Error scales of the float32 mode, network `p` on the problem's reference and data set b,
// summed over events: loss (entry P) and gradient terms (entries 0..P-1). Either float32
// pass (the CPU's, the emulated CUDA one) computes each per-event term from float inputs
// with float roundings, each <= u = 2^-24 relative to the quantity rounded; to first order a
// term is then off by <= c u S_e, where S_e is the sum over every rounded quantity on its
// path of |quantity| x |what carries it into the term|, bounded by propagating magnitudes
// through the network in double:
//   inputs Sa = |x|;  a layer z = b + W a:  Sz = |b| + |W| (|a| + Sa)   (params, products and
//   sums rounded, plus what the inputs carry);  sigmoid a' = s(z):  Sa' = s + s' Sz;
//   output f:  Sf = Sz;  loss term w (e^f - 1): w e^f (1 + Sf), data term -f: Sf;
//   q = dL/df: w e^f (1 + Sf) (reference), 0 (data: -1 exactly);  deltas backwards
//   delta_k = s'_k sum_j W_jk delta_j:  Sd_k = s'_k (1 + Sz_k) |W|^T (|delta| + Sd)   (s'
//   varies by at most s' per unit of z);  a weight's term delta_j in_k: (|delta_j| + Sd_j)
//   (|in_k| + Sa_k), a bias's |delta_j| + Sd_j.
// c counts the roundings per step, as in tests/python/test_neural.py: a dot product of n
// terms (n <= the widest layer w or d), exp (~2 ulp), the CPU's one-division sigmoid (~2w + 3;
// the CUDA one ~4), the CPU's float sum over 4 events of a lane (3): c = 2w + d + 16. The
// sums over events are double on both sides (~1e-16 relative), so
//   |cuda - cpu| <= 2 c u sum_e S_e   (each side within c u sum_e S_e of the exact value).
std::vector<double> float32_error_scales(const Problem& pr, const double* p, std::size_t b) {
    const MlpShape& s = pr.shape;
    const std::int64_t L = static_cast<std::int64_t>(s.hidden.size()) + 1, P = s.n_params();
    std::vector<std::int64_t> in(L), out(L), w_off(L), b_off(L);
    for (std::int64_t l = 0, nin = s.d, off = 0; l < L; ++l) {
        in[l] = nin;
        out[l] = l + 1 < L ? s.hidden[l] : 1;
        w_off[l] = off;
        b_off[l] = off + in[l] * out[l];
        off = b_off[l] + out[l];
        nin = out[l];
    }
    std::vector<double> S(P + 1, 0.0);
    auto event = [&](const double* x, double w, bool ref) {
        std::vector<std::vector<double>> a(L), Sa(L), ds(L - 1), Sz(L - 1);  // a[l], Sa[l]: inputs of layer l
        a[0].assign(x, x + s.d);
        Sa[0].resize(s.d);
        for (std::int64_t k = 0; k < s.d; ++k) Sa[0][k] = std::fabs(x[k]);
        double f = 0, Sf = 0;
        for (std::int64_t l = 0; l < L; ++l) {
            std::vector<double> z(out[l]), sz(out[l]);
            for (std::int64_t j = 0; j < out[l]; ++j) {
                z[j] = p[b_off[l] + j];
                sz[j] = std::fabs(p[b_off[l] + j]);
                for (std::int64_t k = 0; k < in[l]; ++k) {
                    const double W = p[w_off[l] + j * in[l] + k];
                    z[j] += W * a[l][k];
                    sz[j] += std::fabs(W) * (std::fabs(a[l][k]) + Sa[l][k]);
                }
            }
            if (l + 1 == L) {
                f = z[0];
                Sf = sz[0];
                break;
            }
            a[l + 1].resize(out[l]);
            Sa[l + 1].resize(out[l]);
            ds[l].resize(out[l]);
            Sz[l] = sz;
            for (std::int64_t j = 0; j < out[l]; ++j) {
                const double sg = 1.0 / (1.0 + std::exp(-z[j]));
                a[l + 1][j] = sg;
                ds[l][j] = sg * (1.0 - sg);
                Sa[l + 1][j] = sg + ds[l][j] * sz[j];
            }
        }
        const double ef = ref ? w * std::exp(f) : 0.0;
        S[P] += ref ? ef * (1.0 + Sf) : Sf;
        std::vector<double> delta = {ref ? ef : -1.0}, Sd = {ref ? ef * (1.0 + Sf) : 0.0};
        for (std::int64_t l = L - 1; l >= 0; --l) {
            for (std::int64_t j = 0; j < out[l]; ++j) {
                const double dj = std::fabs(delta[j]) + Sd[j];
                S[b_off[l] + j] += dj;
                for (std::int64_t k = 0; k < in[l]; ++k)
                    S[w_off[l] + j * in[l] + k] += dj * (std::fabs(a[l][k]) + Sa[l][k]);
            }
            if (l == 0) break;
            std::vector<double> nd(in[l], 0.0), nS(in[l], 0.0);
            for (std::int64_t k = 0; k < in[l]; ++k) {
                double sum = 0, mag = 0;
                for (std::int64_t j = 0; j < out[l]; ++j) {
                    const double W = p[w_off[l] + j * in[l] + k];
                    sum += W * delta[j];
                    mag += std::fabs(W) * (std::fabs(delta[j]) + Sd[j]);
                }
                nd[k] = ds[l - 1][k] * sum;
                nS[k] = ds[l - 1][k] * (1.0 + Sz[l - 1][k]) * mag;
            }
            delta.swap(nd);
            Sd.swap(nS);
        }
    };
    for (std::int64_t e = 0; e < pr.nr; ++e) event(pr.ref.data() + e * s.d, pr.w[e], true);
    const std::int64_t nd = static_cast<std::int64_t>(pr.dat[b].size()) / s.d;
    for (std::int64_t e = 0; e < nd; ++e) event(pr.dat[b].data() + e * s.d, 1.0, false);
    return S;
}

// c of the bound above.
double float32_rounding_count(const MlpShape& s) {
    const std::int64_t w = *std::max_element(s.hidden.begin(), s.hidden.end());
    return static_cast<double>(2 * w + s.d + 16);
}

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
        emu_loss_grad(pr.shape, pr.refv(), pr.w.data(), pr.views, p.data(), le.data(), ge.data());
        // same terms summed in another order: roundoff of sums of ~1000 terms of size <= ~30
        for (std::int64_t b = 0; b < B; ++b) {
            CHECK_CLOSE(le[b], lc[b], 1e-12, 1e-11);
            for (std::int64_t j = 0; j < P; ++j) CHECK_CLOSE(ge[b * P + j], gc[b * P + j], 1e-11, 1e-11);
        }
        std::vector<double> lo(B);
        emu_loss_grad(pr.shape, pr.refv(), pr.w.data(), pr.views, p.data(), lo.data(), nullptr);
        for (std::int64_t b = 0; b < B; ++b) CHECK(lo[b] == le[b]);
    }
}

TEST(cuda_mlp_training_resumes_from_the_adam_state) {
    // on the device too, 12 epochs in one call == 5 + 7 with the state passed on, bit for bit
    const Problem pr(2, {4, 3}, 200, {37, 80}, 41);
    fastnplm::MlpTrainOptions o;
    o.lr = 0.01;
    o.clip = 0.8;
    o.history_every = 3;
    auto pw = pr.params(5), ps = pw;
    fastnplm::MlpAdamState sw, ss;
    o.epochs = 12;
    const auto rw = emu_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pw.data(), o, &sw);
    o.epochs = 5;
    emu_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, ps.data(), o, &ss);
    o.epochs = 7;
    const auto rs = emu_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, ps.data(), o, &ss);
    CHECK(ss.steps == 12 && sw.steps == 12 && rs.loss == rw.loss);
    for (std::size_t i = 0; i < pw.size(); ++i) CHECK(ps[i] == pw[i] && ss.m[i] == sw.m[i] && ss.v[i] == sw.v[i]);
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
    const auto re = emu_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pe.data(), o);
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
    const auto re = emu_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pe.data(), o);
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
    const auto se = emu_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, qe.data(), o);
    CHECK(sc.finite == std::vector<std::uint8_t>(2, 0) && se.finite == sc.finite && se.epochs_done == sc.epochs_done);
    CHECK(qe == q0 && qc == q0);  // never updated
    for (std::size_t i = 0; i < se.history.size(); ++i) CHECK(std::isnan(se.history[i]) && std::isnan(sc.history[i]));
    CHECK_THROWS(emu_train_adam(pr.shape, pr.refv(), pr.w.data(), {}, pe.data(), o), std::invalid_argument);
}

TEST(cuda_mlp_float32_loss_and_gradient_match_the_cpu_float32_pass) {
    // Both float32 passes against each other, within the bound derived at
    // float32_error_scales; the float64 pass shows that the float32 mode really rounds.
    constexpr double u = 0x1.0p-24;
    const Problem cases[] = {Problem(1, {4}, 301, {45, 1, 130}, 11), Problem(3, {5, 3}, 257, {129, 64}, 21),
                             Problem(2, {7, 5, 5}, 1000, {333}, 31)};
    const auto f32 = fastnplm::MlpPrecision::float32;
    double worst = 0.0, worst_abs = 0.0, seen32 = 0.0, seen32e = 0.0;
    for (const Problem& pr : cases) {
        const std::int64_t P = pr.shape.n_params(), B = static_cast<std::int64_t>(pr.dat.size());
        const auto p = pr.params(6);
        std::vector<double> lc(B), gc(B * P), le(B), ge(B * P), l64(B), g64(B * P);
        fastnplm::mlp_loss_grad(pr.shape, pr.refv(), pr.w.data(), pr.views, p.data(), lc.data(), gc.data(), 1, f32);
        fastnplm::mlp_loss_grad(pr.shape, pr.refv(), pr.w.data(), pr.views, p.data(), l64.data(), g64.data(), 1);
        emu_loss_grad(pr.shape, pr.refv(), pr.w.data(), pr.views, p.data(), le.data(), ge.data(), f32);
        const double K = 2.0 * float32_rounding_count(pr.shape) * u;
        for (std::int64_t b = 0; b < B; ++b) {
            const auto S = float32_error_scales(pr, p.data() + b * P, static_cast<std::size_t>(b));
            for (std::int64_t j = 0; j <= P; ++j) {
                const double c = j == P ? le[b] : ge[b * P + j], r = j == P ? lc[b] : gc[b * P + j];
                const double d64 = j == P ? l64[b] : g64[b * P + j];
                CHECK_CLOSE(c, r, 0.0, K * S[j]);
                worst = std::max(worst, std::fabs(c - r) / (K * S[j]));
                worst_abs = std::max(worst_abs, std::fabs(c - r) / S[j]);
                seen32 = std::max(seen32, std::fabs(r - d64));
                seen32e = std::max(seen32e, std::fabs(c - d64));
            }
        }
        std::vector<double> lo(B);
        emu_loss_grad(pr.shape, pr.refv(), pr.w.data(), pr.views, p.data(), lo.data(), nullptr, f32);
        for (std::int64_t b = 0; b < B; ++b) CHECK(lo[b] == le[b]);
    }
    // both float32 passes differ from float64 (the mode is not double in disguise)
    CHECK(seen32 > 0.0 && seen32e > 0.0);
    std::printf(
        "  float32 cuda vs cpu: largest |diff| / bound %.3g, |diff| / sum_e S_e %.3g (bound: 2 c u = %.3g..%.3g)\n",
        worst, worst_abs, 2.0 * float32_rounding_count(cases[0].shape) * u,
        2.0 * float32_rounding_count(cases[2].shape) * u);
}

TEST(cuda_mlp_float32_training_matches_the_cpu_float32_trainer) {
    // The two float32 trainers step for step. Their gradients differ by the pass bound above
    // (relative ~1e-7 of sum |terms|); Adam turns a gradient difference dg into a step
    // difference ~lr dg / sqrt(v), so after k epochs the parameters differ by ~k lr (dg/g)
    // where the gradient is not small. Tolerance empirical: ~30x the largest difference
    // measured here (7e-8 in the parameters over 40 epochs at lr 0.01; loss and history 2e-7
    // relative).
    const Problem pr(2, {4, 3}, 200, {37, 80}, 40);
    fastnplm::MlpTrainOptions o;
    o.epochs = 40;
    o.history_every = 7;
    o.lr = 0.01;
    o.clip = 0.8;
    o.threads = 1;
    o.precision = fastnplm::MlpPrecision::float32;
    auto pc = pr.params(9), pe = pc;
    const auto rc = fastnplm::mlp_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pc.data(), o);
    const auto re = emu_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pe.data(), o);
    CHECK(re.n_history == rc.n_history && re.epochs_done == rc.epochs_done && re.finite == rc.finite);
    CHECK(rc.finite == std::vector<std::uint8_t>(2, 1));
    double dp = 0.0, dl = 0.0;
    for (std::size_t i = 0; i < pc.size(); ++i) dp = std::max(dp, std::fabs(pe[i] - pc[i]));
    for (std::size_t i = 0; i < rc.history.size(); ++i) {
        CHECK(std::isnan(re.history[i]) == std::isnan(rc.history[i]));
        if (!std::isnan(rc.history[i]))
            dl = std::max(dl, std::fabs(re.history[i] - rc.history[i]) / std::fabs(rc.history[i]));
    }
    for (std::size_t b = 0; b < 2; ++b) dl = std::max(dl, std::fabs(re.loss[b] - rc.loss[b]) / std::fabs(rc.loss[b]));
    std::printf("  float32 training cuda vs cpu: max |dparams| %.3g, max relative |dL| %.3g\n", dp, dl);
    CHECK(dp <= 2e-6);
    CHECK(dl <= 7e-6);
}

TEST(cuda_mlp_float32_stops_where_the_cpu_float32_trainer_stops) {
    // e^f is inf beyond f = 88 in float32 on both backends (a float's exp overflows at 88.72;
    // the CPU's saturates at 88, and the CUDA pass follows it): an output of 88.5 stops a
    // network in float32 at once, while float64 trains it (e^88.5 ~ 3e38 is finite in double).
    const Problem pr(1, {3}, 150, {20, 20}, 50);
    const std::int64_t P = pr.shape.n_params();
    auto p = pr.params(3);
    for (std::int64_t j = 0; j < 3; ++j) p[P + 3 + 3 + j] = 0.0;  // network 1: hidden-to-output weights 0,
    p[P + P - 1] = 88.5;                                          // so f = the output bias = 88.5
    fastnplm::MlpTrainOptions o;
    o.epochs = 5;
    o.clip = 1000.0;
    o.history_every = 1;
    o.precision = fastnplm::MlpPrecision::float32;
    auto pc = p, pe = p;
    const auto rc = fastnplm::mlp_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pc.data(), o);
    const auto re = emu_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pe.data(), o);
    CHECK(rc.finite[0] == 1 && rc.finite[1] == 0 && rc.epochs_done[1] == 0);
    CHECK(re.finite == rc.finite && re.epochs_done == rc.epochs_done);
    for (std::int64_t j = 0; j < P; ++j) CHECK(pe[P + j] == p[P + j]);  // never updated
    CHECK(std::isnan(re.loss[1]) && std::isfinite(re.loss[0]));
    o.precision = fastnplm::MlpPrecision::float64;
    auto pd = p;
    const auto rd = emu_train_adam(pr.shape, pr.refv(), pr.w.data(), pr.views, pd.data(), o);
    CHECK(rd.finite[1] == 1 && rd.epochs_done[1] == 5);
}
