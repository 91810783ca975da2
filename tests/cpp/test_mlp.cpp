// MLP primitives and trainer: gradients against central finite differences, a naive
// scalar forward pass (std::exp), and the invariances the toys rely on (thread count,
// batch composition).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "check.hpp"
#include "samples.hpp"
#include "fastnplm/mlp.hpp"
#include "hot.hpp"
#include "mlp_pass.hpp"
#include "simd.hpp"
#include "vexp.hpp"

#if defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"  // SIMD vectors cross only always-inline boundaries
#endif

using fastnplm::MatrixView;
using fastnplm::MlpShape;

namespace {

using samples::normal;

// f(x) by the textbook loops, std::exp.
double naive_f(const MlpShape& s, const double* p, const double* x) {
    std::vector<double> a(x, x + s.d);
    std::int64_t off = 0;
    const std::size_t layers = s.hidden.size() + 1;
    for (std::size_t l = 0; l < layers; ++l) {
        const std::int64_t nin = static_cast<std::int64_t>(a.size()), nout = l + 1 < layers ? s.hidden[l] : 1;
        std::vector<double> z(nout);
        for (std::int64_t j = 0; j < nout; ++j) {
            double acc = p[off + nin * nout + j];
            for (std::int64_t k = 0; k < nin; ++k) acc += p[off + j * nin + k] * a[k];
            z[j] = l + 1 < layers ? 1.0 / (1.0 + std::exp(-acc)) : acc;
        }
        off += nin * nout + nout;
        a = z;
    }
    return a[0];
}

double naive_loss(const MlpShape& s, const double* p, const std::vector<double>& r, const std::vector<double>& w,
                  const std::vector<double>& d) {
    double l = 0.0;
    for (std::size_t i = 0; i < w.size(); ++i) l += w[i] * (std::exp(naive_f(s, p, &r[i * s.d])) - 1.0);
    for (std::size_t i = 0; i < d.size() / s.d; ++i) l -= naive_f(s, p, &d[i * s.d]);
    return l;
}

struct Problem {
    MlpShape s;
    std::vector<double> r, w, d;
    std::int64_t nr, nd;
    Problem(std::int64_t dim, std::vector<std::int64_t> hidden, std::int64_t nr_, std::int64_t nd_, unsigned seed)
        : nr(nr_), nd(nd_) {
        s.d = dim;
        s.hidden = std::move(hidden);
        r = normal(nr * dim, seed);
        d = normal(nd * dim, seed + 1, 1.3);
        w.resize(nr);
        std::mt19937_64 g(seed + 2);
        std::uniform_real_distribution<double> U(0.5, 1.5);
        for (auto& e : w) e = U(g) * nd / nr;
    }
    MatrixView ref() const { return MatrixView(r.data(), nr, s.d); }
    MatrixView dat() const { return MatrixView(d.data(), nd, s.d); }
};

}  // namespace

TEST(vexp_general_matches_std_exp) {
    double worst = 0;
    for (int i = 0; i <= 200000; ++i) {
        const double x = -708.0 + 1417.0 * i / 200000.0;
        worst = std::max(worst, std::fabs(fastnplm::detail::vexp(x) - std::exp(x)) / std::exp(x));
    }
    CHECK(worst < 1e-15);
    CHECK(std::isfinite(fastnplm::detail::vexp(1e6)));
}

TEST(vexp_float_matches_std_exp) {
    double worst = 0;
    for (int i = 0; i <= 200000; ++i) {
        const float x = -87.0f + 175.0f * static_cast<float>(i) / 200000.0f;
        const double ref = std::exp(static_cast<double>(x));
        worst = std::max(worst, std::fabs(fastnplm::detail::vexp(x) - ref) / ref);
        // the variant without the upper clamp (x <= 88 is its caller's) is the same below 88
        if (x <= 88.0f) CHECK(fastnplm::detail::vexp<fastnplm::detail::ExpClamp::low>(x) == fastnplm::detail::vexp(x));
    }
    CHECK(worst < 3e-7);  // a few float ulps (2^-24 = 6e-8)
    CHECK(std::isnan(fastnplm::detail::vexp<fastnplm::detail::ExpClamp::low>(std::nanf(""))));  // the clamp keeps NaN
    CHECK(fastnplm::detail::vexp<fastnplm::detail::ExpClamp::low>(-1e30f) == fastnplm::detail::vexp(-87.0f));
}

#ifdef FASTNPLM_HAVE_V4
namespace {
// exp(-|x|) of n floats (n a multiple of 16) in f32x8 and in f32x16 vectors, as the float32 pass
// takes it (AVX-512 code: call only where cpu_has_v4())
FASTNPLM_V4 void vexp_8_and_16_lanes(const float* x, std::int64_t n, float* e8, float* e16) {
    using fastnplm::detail::ExpClamp;
    namespace dt = fastnplm::detail;
    for (std::int64_t i = 0; i < n; i += 8)
        dt::store(e8 + i, dt::vexp<ExpClamp::low>(dt::neg_abs(dt::load<dt::f32x8>(x + i))));
    for (std::int64_t i = 0; i < n; i += 16)
        dt::store(e16 + i, dt::vexp<ExpClamp::low>(dt::neg_abs(dt::load<dt::f32x16>(x + i))));
}
}  // namespace
#endif

TEST(vexp_16_lanes_give_the_8_lane_bits) {
#ifdef FASTNPLM_HAVE_V4
    if (!fastnplm::detail::cpu_has_v4()) {
        std::printf("  (no AVX-512 on this CPU: 16 lanes not compared) ");
        return;
    }
    const std::int64_t n = 200000;
    std::vector<float> x(n), e8(n), e16(n);
    for (std::int64_t i = 0; i < n; ++i) x[i] = -90.0f + 180.0f * static_cast<float>(i) / n;
    x[7] = std::nanf("");
    vexp_8_and_16_lanes(x.data(), n, e8.data(), e16.data());
    CHECK(std::memcmp(e8.data(), e16.data(), n * sizeof(float)) == 0);
    double worst = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        const double ref = std::exp(-std::fabs(static_cast<double>(x[i])));
        if (std::fabs(x[i]) <= 87.0f) worst = std::max(worst, std::fabs(e16[i] - ref) / ref);
    }
    CHECK(worst < 3e-7 && std::isnan(e16[7]));
#else
    std::printf("  (no AVX-512 build: 16 lanes not compared) ");
#endif
}

TEST(mlp_loss_and_gradient_match_naive_and_finite_differences) {
    // sizes not multiples of any block or group; two hidden layers
    const Problem pb(3, {5, 4}, 5003, 611, 7);
    std::vector<double> p = fastnplm::mlp_init(pb.s, 3);
    const std::int64_t P = pb.s.n_params();
    CHECK(P == (3 + 1) * 5 + (5 + 1) * 4 + 4 + 1);
    auto noise = normal(P, 11, 0.3);
    for (std::int64_t j = 0; j < P; ++j) p[j] += noise[j];  // non-zero biases too
    double loss;
    std::vector<double> grad(P);
    fastnplm::mlp_loss_grad(pb.s, pb.ref(), pb.w.data(), {pb.dat()}, p.data(), &loss, grad.data(), 2);
    CHECK_CLOSE(loss, naive_loss(pb.s, p.data(), pb.r, pb.w, pb.d), 1e-12, 1e-10);
    for (std::int64_t j = 0; j < P; ++j) {
        const double h = 1e-5;
        std::vector<double> pp = p, pm = p;
        pp[j] += h;
        pm[j] -= h;
        double lp, lm;
        fastnplm::mlp_loss_grad(pb.s, pb.ref(), pb.w.data(), {pb.dat()}, pp.data(), &lp, nullptr, 2);
        fastnplm::mlp_loss_grad(pb.s, pb.ref(), pb.w.data(), {pb.dat()}, pm.data(), &lm, nullptr, 2);
        // central difference: truncation O(h^2 L''') and rounding ~ 1e-16 |L| / h
        CHECK_CLOSE(grad[j], (lp - lm) / (2 * h), 1e-6, 1e-6 * (1 + std::fabs(loss)));
    }
}

TEST(mlp_results_independent_of_threads_and_batch) {
    const Problem a(2, {4}, 9000, 700, 21), b(2, {4}, 9000, 1500, 22);
    const std::int64_t P = a.s.n_params();
    std::vector<double> pa = fastnplm::mlp_init(a.s, 1), pb = fastnplm::mlp_init(a.s, 2);
    std::vector<double> both(pa);
    both.insert(both.end(), pb.begin(), pb.end());
    double l1, l2[2], lb;
    std::vector<double> g1(P), g2(2 * P), gb(P);
    fastnplm::mlp_loss_grad(a.s, a.ref(), a.w.data(), {a.dat()}, pa.data(), &l1, g1.data(), 1);
    fastnplm::mlp_loss_grad(a.s, a.ref(), a.w.data(), {a.dat(), b.dat()}, both.data(), l2, g2.data(), 2);
    fastnplm::mlp_loss_grad(a.s, a.ref(), a.w.data(), {b.dat()}, pb.data(), &lb, gb.data(), 2);
    CHECK(l1 == l2[0] && lb == l2[1]);
    for (std::int64_t j = 0; j < P; ++j) CHECK(g1[j] == g2[j] && gb[j] == g2[P + j]);

    fastnplm::MlpTrainOptions o;
    o.epochs = 50;
    o.history_every = 10;
    o.clip = 0.5;  // small enough that clipping acts
    o.lr = 0.05;
    o.threads = 1;
    auto r1 = fastnplm::mlp_train_adam(a.s, a.ref(), a.w.data(), {a.dat()}, pa.data(), o);
    o.threads = 2;
    auto r2 = fastnplm::mlp_train_adam(a.s, a.ref(), a.w.data(), {a.dat(), b.dat()}, both.data(), o);
    CHECK(r1.loss[0] == r2.loss[0]);
    CHECK(r1.n_history == 6 && r2.n_history == 6);
    for (std::int64_t j = 0; j < P; ++j) CHECK(pa[j] == both[j]);
    double maxabs = 0;
    for (double x : both) maxabs = std::max(maxabs, std::fabs(x));
    CHECK(maxabs <= 0.5);
    CHECK(r2.finite[0] == 1 && r2.finite[1] == 1 && r2.epochs_done[1] == 50);
}

TEST(mlp_training_resumes_bit_for_bit_from_the_adam_state) {
    // 50 epochs in one call == 20 + 30 with the Adam state passed on (bias corrections and moments
    // continue), in both precisions and for two networks at once
    const Problem a(2, {4}, 3000, 300, 31), b(2, {4}, 3000, 500, 32);
    const std::int64_t P = a.s.n_params();
    for (auto prec : {fastnplm::MlpPrecision::float64, fastnplm::MlpPrecision::float32}) {
        std::vector<double> p0 = fastnplm::mlp_init(a.s, 3), p1 = fastnplm::mlp_init(a.s, 4);
        p0.insert(p0.end(), p1.begin(), p1.end());
        std::vector<double> whole(p0), split(p0);
        fastnplm::MlpTrainOptions o;
        o.lr = 0.02;
        o.clip = 0.7;
        o.threads = 2;
        o.history_every = 10;
        o.precision = prec;
        o.epochs = 50;
        fastnplm::MlpAdamState sw;
        const auto rw = fastnplm::mlp_train_adam(a.s, a.ref(), a.w.data(), {a.dat(), b.dat()}, whole.data(), o, &sw);
        fastnplm::MlpAdamState ss;
        o.epochs = 20;
        fastnplm::mlp_train_adam(a.s, a.ref(), a.w.data(), {a.dat(), b.dat()}, split.data(), o, &ss);
        CHECK(ss.steps == 20 && ss.m.size() == static_cast<std::size_t>(2 * P));
        o.epochs = 30;
        const auto rs = fastnplm::mlp_train_adam(a.s, a.ref(), a.w.data(), {a.dat(), b.dat()}, split.data(), o, &ss);
        CHECK(ss.steps == 50 && sw.steps == 50);
        for (std::size_t i = 0; i < whole.size(); ++i) CHECK(split[i] == whole[i]);
        for (std::size_t i = 0; i < sw.m.size(); ++i) CHECK(ss.m[i] == sw.m[i] && ss.v[i] == sw.v[i]);
        CHECK(rs.loss == rw.loss && rs.epochs_done[0] == 30);
        // the second call's history is the tail of the whole one's (rows of 4 and 6 entries)
        for (std::int64_t k = 0; k < 2; ++k)
            for (std::int64_t j = 0; j < rs.n_history; ++j)
                CHECK(rs.history[k * rs.n_history + j] == rw.history[k * rw.n_history + 2 + j]);
        // restarting from the same parameters without the state is a different training
        std::vector<double> fresh(p0);
        o.epochs = 20;
        fastnplm::mlp_train_adam(a.s, a.ref(), a.w.data(), {a.dat(), b.dat()}, fresh.data(), o);
        o.epochs = 30;
        fastnplm::mlp_train_adam(a.s, a.ref(), a.w.data(), {a.dat(), b.dat()}, fresh.data(), o);
        bool differs = false;
        for (std::size_t i = 0; i < fresh.size(); ++i) differs = differs || fresh[i] != whole[i];
        CHECK(differs);
    }
    // a state of the wrong size is refused
    fastnplm::MlpAdamState bad;
    bad.m.assign(3, 0.0);
    bad.v.assign(3, 0.0);
    std::vector<double> p = fastnplm::mlp_init(a.s, 3);
    fastnplm::MlpTrainOptions o;
    o.epochs = 2;
    CHECK_THROWS(fastnplm::mlp_train_adam(a.s, a.ref(), a.w.data(), {a.dat()}, p.data(), o, &bad),
                 std::invalid_argument);
}

TEST(mlp_one_hidden_layer_path_matches_general_path) {
    // the chunked d-h-1 path against the layer-by-layer pass, both precisions; sizes not
    // multiples of a block (nor of a chunk); h up to the widest the path takes. Each path's
    // gradient-only pass (the training epoch's) gives its full pass's gradient bit for bit.
    for (auto [dim, h] : std::vector<std::pair<std::int64_t, std::int64_t>>{{3, 1}, {3, 4}, {1, 4}, {3, 7}, {2, 32}}) {
        const Problem pb(dim, {h}, 3001, 457, 31);
        std::vector<double> p = fastnplm::mlp_init(pb.s, 4);
        const std::int64_t P = pb.s.n_params();
        auto noise = normal(P, 12, 0.5);
        for (std::int64_t j = 0; j < P; ++j) p[j] += noise[j];
        for (auto prec : {fastnplm::MlpPrecision::float64, fastnplm::MlpPrecision::float32}) {
            double ls, lg;
            std::vector<double> gs(P), gg(P);
            std::int64_t net = 0;
            fastnplm::detail::MlpPass(pb.s, pb.ref(), pb.w.data(), {pb.dat()}, 2, prec, true)
                .run(p.data(), &net, 1, &ls, gs.data());
            fastnplm::detail::MlpPass(pb.s, pb.ref(), pb.w.data(), {pb.dat()}, 2, prec, false)
                .run(p.data(), &net, 1, &lg, gg.data());
            // double: a few ulps of the terms; float: float roundings in a different order
            const double tol = prec == fastnplm::MlpPrecision::float64 ? 1e-12 : 1e-5;
            double gmax = 0;
            for (double g : gg) gmax = std::max(gmax, std::fabs(g));
            CHECK_CLOSE(ls, lg, tol, tol * (1 + std::fabs(lg)));
            for (std::int64_t j = 0; j < P; ++j) CHECK_CLOSE(gs[j], gg[j], tol, tol * (1 + gmax));
            for (bool specialised : {true, false}) {
                const fastnplm::detail::MlpPass pass(pb.s, pb.ref(), pb.w.data(), {pb.dat()}, 2, prec, specialised);
                std::vector<double> g_only(P), g_full(P);
                double l_full;
                pass.run(p.data(), &net, 1, nullptr, g_only.data());
                pass.run(p.data(), &net, 1, &l_full, g_full.data());
                CHECK(g_only == g_full);
                // a NaN parameter gives a NaN loss (the exps' clamps keep NaN) and, without the
                // loss, a non-finite gradient (what stops a training epoch that skips the loss)
                std::vector<double> pn = p;
                pn[0] = std::nan("");
                pass.run(pn.data(), &net, 1, &ls, nullptr);
                CHECK(std::isnan(ls));
                pass.run(pn.data(), &net, 1, nullptr, g_only.data());
                CHECK(!fastnplm::detail::all_finite(g_only.data(), P));
                CHECK_THROWS(pass.run(p.data(), &net, 1, nullptr, nullptr), std::invalid_argument);
            }
        }
    }
}

namespace {

// FASTNPLM_F32_LANES set for a scope (an MlpPass reads it when made), then as it was.
struct LanesEnv {
    std::string old;
    bool had;
    explicit LanesEnv(const char* lanes) : had(std::getenv("FASTNPLM_F32_LANES") != nullptr) {
        if (had) old = std::getenv("FASTNPLM_F32_LANES");
        setenv("FASTNPLM_F32_LANES", lanes, 1);
    }
    ~LanesEnv() {
        if (had)
            setenv("FASTNPLM_F32_LANES", old.c_str(), 1);
        else
            unsetenv("FASTNPLM_F32_LANES");
    }
};

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0;
}

}  // namespace

TEST(mlp_float32_16_lanes_give_the_8_lane_bits) {
    // AVX-512 CPUs run the float32 pass in 16-lane vectors (one hidden layer by default, every
    // network when forced): loss, gradient and training the same bits as 8 lanes, for the
    // published 1-4-1 and 5-4-1 and for the other shapes the paths take; event counts not
    // multiples of 16 (nor of a block or a chunk), two networks, the pass on two threads
    {
        const LanesEnv x16("16");
        const Problem tiny(1, {4}, 20, 3, 1);
        const fastnplm::detail::MlpPass pass(tiny.s, tiny.ref(), tiny.w.data(), {tiny.dat()}, 1,
                                             fastnplm::MlpPrecision::float32);
        if (pass.float32_lanes() != 16) {
            std::printf("  (no AVX-512 on this CPU or in this build: 16 lanes not compared) ");
            return;
        }
    }
    struct Case {
        std::int64_t d;
        std::vector<std::int64_t> hidden;
        std::int64_t nr, nd;
        bool specialised;
    };
    const std::vector<Case> cases = {{1, {4}, 6007, 1999, true},     {5, {4}, 3001, 457, true},
                                     {1, {4}, 17, 5, true},          {3, {7}, 1000, 33, true},
                                     {2, {32}, 3001, 457, true},     {2, {4}, 3001, 457, false},
                                     {5, {5, 5, 5}, 2003, 511, true}};
    for (const Case& c : cases) {
        const Problem a(c.d, c.hidden, c.nr, c.nd, 41), b(c.d, c.hidden, c.nr, c.nd + 100, 42);
        const std::int64_t P = a.s.n_params();
        std::vector<double> p = fastnplm::mlp_init(a.s, 5), p1 = fastnplm::mlp_init(a.s, 6);
        const auto noise = normal(2 * P, 13, 0.5);
        p.insert(p.end(), p1.begin(), p1.end());
        for (std::int64_t j = 0; j < 2 * P; ++j) p[j] += noise[j];
        std::vector<double> big(p);  // e^f beyond float's range: a non-finite loss at either width
        big[P - 1] = 100.0;
        std::vector<double> loss[2], grad[2], grad_only[2], loss_big[2];
        for (int wide = 0; wide < 2; ++wide) {
            const LanesEnv env(wide ? "16" : "8");
            const fastnplm::detail::MlpPass pass(a.s, a.ref(), a.w.data(), {a.dat(), b.dat()}, 2,
                                                 fastnplm::MlpPrecision::float32, c.specialised);
            CHECK(pass.float32_lanes() == (wide ? 16 : 8));
            const std::int64_t nets[2] = {0, 1};
            loss[wide].resize(2);
            grad[wide].resize(2 * P);
            grad_only[wide].resize(2 * P);
            loss_big[wide].resize(2);
            pass.run(p.data(), nets, 2, loss[wide].data(), grad[wide].data());
            pass.run(p.data(), nets, 2, nullptr, grad_only[wide].data());
            pass.run(big.data(), nets, 2, loss_big[wide].data(), nullptr);
        }
        CHECK(same_bits(loss[0], loss[1]));
        CHECK(same_bits(grad[0], grad[1]));
        CHECK(same_bits(grad_only[0], grad_only[1]));
        CHECK(same_bits(loss_big[0], loss_big[1]) && !std::isfinite(loss_big[0][0]));
        // training: parameters, loss history and stop state
        fastnplm::MlpTrainOptions o;
        o.epochs = 40;
        o.history_every = 7;
        o.clip = 0.8;
        o.lr = 0.03;
        o.threads = 1;
        o.precision = fastnplm::MlpPrecision::float32;
        std::vector<double> trained[2], history[2];
        for (int wide = 0; wide < 2; ++wide) {
            const LanesEnv env(wide ? "16" : "8");
            trained[wide] = p;
            const auto r =
                fastnplm::mlp_train_adam(a.s, a.ref(), a.w.data(), {a.dat(), b.dat()}, trained[wide].data(), o);
            history[wide] = r.history;
            history[wide].insert(history[wide].end(), r.loss.begin(), r.loss.end());
            CHECK(r.epochs_done[0] == 40 && r.epochs_done[1] == 40);
        }
        CHECK(same_bits(trained[0], trained[1]));
        CHECK(same_bits(history[0], history[1]));
    }
}

TEST(mlp_predict_matches_naive) {
    const Problem pb(5, {5, 5, 5}, 2100, 10, 5);
    const std::vector<double> p = fastnplm::mlp_init(pb.s, 9);
    std::vector<double> out(pb.nr);
    fastnplm::mlp_predict(pb.s, p.data(), pb.ref(), out.data(), 2);
    for (std::int64_t i = 0; i < pb.nr; ++i) CHECK_CLOSE(out[i], naive_f(pb.s, p.data(), &pb.r[i * 5]), 1e-13, 1e-14);
}

TEST(mlp_rejects_bad_input) {
    const Problem pb(2, {3}, 100, 10, 1);
    MlpShape bad = pb.s;
    bad.hidden = {};
    CHECK_THROWS(bad.validate(), std::invalid_argument);
    bad.hidden = {3, 0};
    CHECK_THROWS(bad.n_params(), std::invalid_argument);
    std::vector<double> p = fastnplm::mlp_init(pb.s, 0);
    double l;
    const MatrixView wrong(pb.d.data(), 5, 1);
    CHECK_THROWS(fastnplm::mlp_loss_grad(pb.s, pb.ref(), pb.w.data(), {wrong}, p.data(), &l, nullptr),
                 std::invalid_argument);
    CHECK_THROWS(fastnplm::mlp_loss_grad(pb.s, pb.ref(), pb.w.data(), {}, p.data(), &l, nullptr),
                 std::invalid_argument);
    fastnplm::MlpTrainOptions o;
    o.clip = 0;
    CHECK_THROWS(fastnplm::mlp_train_adam(pb.s, pb.ref(), pb.w.data(), {pb.dat()}, p.data(), o), std::invalid_argument);
    o.clip = 1;
    o.epochs = 0;
    CHECK_THROWS(fastnplm::mlp_train_adam(pb.s, pb.ref(), pb.w.data(), {pb.dat()}, p.data(), o), std::invalid_argument);
    o.epochs = 1;
    o.lr = -1;
    CHECK_THROWS(fastnplm::mlp_train_adam(pb.s, pb.ref(), pb.w.data(), {pb.dat()}, p.data(), o), std::invalid_argument);
}
