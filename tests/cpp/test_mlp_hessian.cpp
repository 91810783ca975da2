// The loss-gradient-Hessian pass (mlp_hessian.hpp): its gradient against mlp_loss_grad, its
// Hessian against central differences of mlp_loss_grad's gradient, symmetry, and the
// invariances (thread count, with or without the Hessian) bit for bit.
#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "check.hpp"
#include "samples.hpp"
#include "fastnplm/mlp.hpp"
#include "fastnplm/mlp_hessian.hpp"

using fastnplm::MatrixView;
using fastnplm::MlpShape;

namespace {

struct Net {
    MlpShape s;
    std::vector<double> r, w, d;
    std::int64_t nr, nd;
    Net(std::int64_t dim, std::vector<std::int64_t> hidden, std::int64_t nr_, std::int64_t nd_, unsigned seed)
        : nr(nr_), nd(nd_) {
        s.d = dim;
        s.hidden = std::move(hidden);
        r = samples::normal(nr * dim, seed);
        d = samples::normal(nd * dim, seed + 1, 1.3);
        const auto u = samples::uniform(nr, seed + 2, 0.5, 1.5);
        w.resize(nr);
        for (std::int64_t i = 0; i < nr; ++i) w[i] = u[i] * nd / nr;
    }
    MatrixView ref() const { return MatrixView(r.data(), nr, s.d); }
    MatrixView dat() const { return MatrixView(d.data(), nd, s.d); }
    // parameters away from the initialisation: saturated units, non-zero biases, some negative curvature
    std::vector<double> params(unsigned seed, double spread) const {
        std::vector<double> p = fastnplm::mlp_init(s, seed);
        const auto noise = samples::normal(p.size(), seed + 100, spread);
        for (std::size_t j = 0; j < p.size(); ++j) p[j] += noise[j];
        return p;
    }
    void loss_grad(const std::vector<double>& p, double* loss, double* grad) const {
        fastnplm::mlp_loss_grad(s, ref(), w.data(), {dat()}, p.data(), loss, grad, 2);
    }
    // sum over events of |dL/df| (w e^f on R, 1 on D) and the largest |x|: the scales of the
    // rounding of a gradient component (each term is dL/df times a product of O(1) factors and x)
    std::pair<double, double> scales(const std::vector<double>& p) const {
        std::vector<double> fr(nr);
        fastnplm::mlp_predict(s, p.data(), ref(), fr.data(), 1);
        double c = static_cast<double>(nd), xm = 0.0;
        for (std::int64_t i = 0; i < nr; ++i) c += w[i] * std::exp(fr[i]);
        for (double x : r) xm = std::max(xm, std::fabs(x));
        for (double x : d) xm = std::max(xm, std::fabs(x));
        return {c, xm};
    }
};

// H against central differences of the exact gradient at steps h and h / 2: the truncation error
// of the h / 2 difference is O(h^2) and about a third of their gap (Richardson), the rounding
// error at most 2 eps_g / h with eps_g the gradient's rounding, ~1e-14 of its scale sum |c| (1 +
// max|x|)^2; the Hessian must match within twice both.
void check_against_differences(const Net& n, unsigned seed, double spread, double h) {
    const std::vector<double> p = n.params(seed, spread);
    const std::int64_t P = n.s.n_params();
    double loss = 0, loss_ref = 0;
    std::vector<double> g(P), g_ref(P), H(P * P);
    fastnplm::mlp_loss_grad_hess(n.s, n.ref(), n.w.data(), n.dat(), p.data(), &loss, g.data(), H.data(), 2);
    n.loss_grad(p, &loss_ref, g_ref.data());
    const auto [csum, xmax] = n.scales(p);
    const double eps_g = 1e-14 * csum * (1 + xmax) * (1 + xmax);
    CHECK_CLOSE(loss, loss_ref, 1e-13, 1e-14 * csum);
    for (std::int64_t j = 0; j < P; ++j) CHECK_CLOSE(g[j], g_ref[j], 0.0, eps_g);
    double worst = 0;
    for (std::int64_t i = 0; i < P; ++i) {
        std::vector<double> diff[2];
        for (int k = 0; k < 2; ++k) {
            const double step = k == 0 ? h : h / 2;
            std::vector<double> pp = p, pm = p, gp(P), gm(P);
            pp[i] += step;
            pm[i] -= step;
            double l;
            n.loss_grad(pp, &l, gp.data());
            n.loss_grad(pm, &l, gm.data());
            diff[k].resize(P);
            for (std::int64_t j = 0; j < P; ++j) diff[k][j] = (gp[j] - gm[j]) / (2 * step);
        }
        for (std::int64_t j = 0; j < P; ++j) {
            const double trunc = std::fabs(diff[0][j] - diff[1][j]) / 3, round = 2 * eps_g / (h / 2);
            CHECK_CLOSE(H[i * P + j], diff[1][j], 0.0, 2 * (trunc + round));
            worst = std::max(worst, std::fabs(H[i * P + j] - diff[1][j]) / (trunc + round));
            CHECK(H[i * P + j] == H[j * P + i]);  // symmetric bit for bit
        }
    }
    CHECK(worst > 0 && worst < 2);
}

}  // namespace

TEST(mlp_hessian_matches_differences_of_the_gradient_1_4_1) {
    const Net n(1, {4}, 3001, 257, 5);
    check_against_differences(n, 1, 1.5, 1e-4);
}

TEST(mlp_hessian_matches_differences_of_the_gradient_2_3_4_1) {
    const Net n(2, {3, 4}, 1500, 301, 9);
    check_against_differences(n, 2, 1.0, 1e-4);
}

TEST(mlp_hessian_matches_differences_of_the_gradient_5_5_5_5_1) {
    const Net n(5, {5, 5, 5}, 700, 150, 13);
    check_against_differences(n, 3, 1.0, 1e-4);
}

TEST(mlp_hessian_independent_of_threads_and_of_what_is_asked) {
    // several groups on both sets (4096 events a group), sizes not multiples of a block
    const Net n(3, {5, 4}, 20011, 5003, 17);
    const std::vector<double> p = n.params(4, 0.7);
    const std::int64_t P = n.s.n_params();
    double l1, l2, l3, l4, l5;
    std::vector<double> g1(P), g2(P), g3(P), g4(P), H1(P * P), H2(P * P), H3(P * P);
    fastnplm::mlp_loss_grad_hess(n.s, n.ref(), n.w.data(), n.dat(), p.data(), &l1, g1.data(), H1.data(), 1);
    fastnplm::mlp_loss_grad_hess(n.s, n.ref(), n.w.data(), n.dat(), p.data(), &l2, g2.data(), H2.data(), 2);
    fastnplm::mlp_loss_grad_hess(n.s, n.ref(), n.w.data(), n.dat(), p.data(), &l3, g3.data(), H3.data(), 3);
    fastnplm::mlp_loss_grad_hess(n.s, n.ref(), n.w.data(), n.dat(), p.data(), &l4, g4.data(), nullptr, 2);
    fastnplm::mlp_loss_grad_hess(n.s, n.ref(), n.w.data(), n.dat(), p.data(), &l5, nullptr, nullptr, 3);
    CHECK(l1 == l2 && l1 == l3 && l1 == l4 && l1 == l5);
    for (std::int64_t j = 0; j < P; ++j) CHECK(g1[j] == g2[j] && g1[j] == g3[j] && g1[j] == g4[j]);
    for (std::int64_t j = 0; j < P * P; ++j) CHECK(H1[j] == H2[j] && H1[j] == H3[j]);
}

TEST(mlp_hessian_checks_its_inputs) {
    const Net n(2, {3}, 50, 20, 3);
    const std::vector<double> p = n.params(1, 0.1);
    double l;
    const MatrixView empty(n.d.data(), 0, 2), wrong(n.d.data(), 10, 1);
    CHECK_THROWS(fastnplm::mlp_loss_grad_hess(n.s, n.ref(), n.w.data(), empty, p.data(), &l, nullptr, nullptr),
                 std::invalid_argument);
    CHECK_THROWS(fastnplm::mlp_loss_grad_hess(n.s, n.ref(), n.w.data(), wrong, p.data(), &l, nullptr, nullptr),
                 std::invalid_argument);
    CHECK_THROWS(fastnplm::mlp_loss_grad_hess(n.s, n.ref(), nullptr, n.dat(), p.data(), &l, nullptr, nullptr),
                 std::invalid_argument);
}
