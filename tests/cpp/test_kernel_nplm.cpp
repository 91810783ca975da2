// The solver against a dense exact Newton step computed here by Gaussian elimination.
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "fastnplm/kernel_nplm.hpp"

using fastnplm::MatrixView;

namespace {

struct Problem {
    int nr = 500, nd = 120, d = 2, m = 20;
    std::vector<double> ref, dat, ctr, w;
    Problem() {
        std::mt19937_64 g(11);
        std::normal_distribution<double> N;
        ref.resize(nr * d);
        dat.resize(nd * d);
        for (auto& e : ref) e = N(g);
        for (auto& e : dat) e = 0.8 * N(g) + 0.3;
        ctr.assign(ref.begin(), ref.begin() + m * d);
        w.assign(nr, double(nd) / nr);
    }
};

std::vector<double> solve(std::vector<double> a, std::vector<double> b) {  // Gaussian elimination, pivoting
    const int n = static_cast<int>(b.size());
    for (int k = 0; k < n; ++k) {
        int p = k;
        for (int i = k + 1; i < n; ++i)
            if (std::fabs(a[i * n + k]) > std::fabs(a[p * n + k])) p = i;
        for (int j = 0; j < n; ++j) std::swap(a[k * n + j], a[p * n + j]);
        std::swap(b[k], b[p]);
        for (int i = k + 1; i < n; ++i) {
            const double f = a[i * n + k] / a[k * n + k];
            for (int j = k; j < n; ++j) a[i * n + j] -= f * a[k * n + j];
            b[i] -= f * b[k];
        }
    }
    std::vector<double> x(n);
    for (int i = n - 1; i >= 0; --i) {
        double s = b[i];
        for (int j = i + 1; j < n; ++j) s -= a[i * n + j] * x[j];
        x[i] = s / a[i * n + i];
    }
    return x;
}

// The exact Newton step from f = 0 at penalty lam by Gaussian elimination, and its t.
struct DenseStep {
    std::vector<double> alpha;
    double t = 0.0;
};

DenseStep dense_step(const Problem& p, double sigma, double lam) {
    const double eps = 1e-13, gamma = 1 / (2 * sigma * sigma);
    const int n = p.nr + p.nd, m = p.m;
    // H = (1/n) K^T D K + lam (K_MM + eps m I), g = (1/n) K^T l'(0); l' = w/2 (ref), -1/2 (data); l'' = w/4, 1/4.
    std::vector<double> H(m * m, 0.0), g(m, 0.0);
    auto k = [&](const double* x, const double* c) {
        double s = 0;
        for (int q = 0; q < p.d; ++q) s += (x[q] - c[q]) * (x[q] - c[q]);
        return std::exp(-gamma * s);
    };
    for (int i = 0; i < n; ++i) {
        const bool is_ref = i < p.nr;
        const double* x = is_ref ? &p.ref[i * p.d] : &p.dat[(i - p.nr) * p.d];
        const double d1 = is_ref ? p.w[i] / 2 : -0.5, d2 = is_ref ? p.w[i] / 4 : 0.25;
        std::vector<double> row(m);
        for (int j = 0; j < m; ++j) row[j] = k(x, &p.ctr[j * p.d]);
        for (int a = 0; a < m; ++a) {
            g[a] += row[a] * d1 / n;
            for (int b = 0; b < m; ++b) H[a * m + b] += row[a] * d2 * row[b] / n;
        }
    }
    for (int a = 0; a < m; ++a) {
        for (int b = 0; b < m; ++b) H[a * m + b] += lam * k(&p.ctr[a * p.d], &p.ctr[b * p.d]);
        H[a * m + a] += lam * eps * m;
        g[a] = -g[a];
    }
    DenseStep out;
    out.alpha = solve(H, g);
    double t = 0;
    for (int i = 0; i < n; ++i) {
        const bool is_ref = i < p.nr;
        const double* x = is_ref ? &p.ref[i * p.d] : &p.dat[(i - p.nr) * p.d];
        double f = 0;
        for (int j = 0; j < m; ++j) f += out.alpha[j] * k(x, &p.ctr[j * p.d]);
        t += is_ref ? -p.w[i] * std::expm1(f) : f;
    }
    out.t = 2 * t;
    return out;
}

fastnplm::KernelFitResult fit(const Problem& p, double sigma, double lam, int dense_max,
                              const double* center_scale = nullptr) {
    fastnplm::KernelFitOptions o;
    o.sigma = sigma;
    o.penalties = {lam};
    o.cg_tol = 1e-13;
    o.max_iter = 10000;
    o.threads = 2;
    o.dense_hessian_max_m = dense_max;
    return fastnplm::fit_kernel_nplm(MatrixView(p.ref.data(), p.nr, p.d), p.w.data(),
                                     MatrixView(p.dat.data(), p.nd, p.d), MatrixView(p.ctr.data(), p.m, p.d),
                                     center_scale, o);
}

void check_matches_dense_step(const Problem& p, const double* center_scale) {
    const double sigma = 0.9, lam = 1e-3;
    const DenseStep exact = dense_step(p, sigma, lam);
    double amax = 0;
    for (double a : exact.alpha) amax = std::max(amax, std::fabs(a));
    for (int dense_max : {0, 1000}) {  // streamed Hessian products, then the dense M x M Hessian
        const fastnplm::KernelFitResult res = fit(p, sigma, lam, dense_max, center_scale);
        CHECK(res.converged);
        for (int j = 0; j < p.m; ++j) CHECK_CLOSE(res.alpha[j], exact.alpha[j], 1e-7, 1e-8 * amax);
        CHECK_CLOSE(res.t, exact.t, 1e-7, 1e-10);
    }
}

}  // namespace

TEST(newton_step_matches_dense_solution) {
    Problem p;
    check_matches_dense_step(p, nullptr);
}

TEST(signed_weights_newton_step_matches_dense_solution) {
    // every seventh reference event (14%) weighs -0.5 of the others' weight, the total N_D; the
    // centers are the first m reference events, two of them negative, with their signed class weights
    Problem p;
    double total = 0;
    for (int i = 0; i < p.nr; ++i) total += (p.w[i] = i % 7 == 0 ? -0.5 : 1.0);
    for (double& w : p.w) w *= p.nd / total;
    std::vector<double> cscale(p.w.begin(), p.w.begin() + p.m);
    check_matches_dense_step(p, nullptr);
    check_matches_dense_step(p, cscale.data());
}

TEST(indefinite_hessian_throws_not_positive_definite) {
    // the reference events within 0.5 of the first center weigh -3 times the rest, with no data
    // near them and a tiny penalty: the step's Hessian has a negative direction there
    Problem p;
    for (int i = 0; i < p.nr; ++i) {
        const double dx = p.ref[i * p.d] - p.ctr[0], dy = p.ref[i * p.d + 1] - p.ctr[1];
        p.w[i] = dx * dx + dy * dy < 0.25 ? -3.0 : 1.0;
    }
    for (int i = 0; i < p.nd; ++i) p.dat[i * p.d] += 4.0;
    for (int dense_max : {0, 1000}) {
        bool thrown = false;
        try {
            fit(p, 0.3, 1e-10, dense_max);
        } catch (const fastnplm::NotPositiveDefinite& e) {
            thrown = std::string(e.what()).find("not positive definite") != std::string::npos;
        }
        CHECK(thrown);
    }
}

TEST(t_of_constant_f_is_closed_form) {
    // f = c everywhere: t = 2 [N_D c - N(R) (e^c - 1)]
    const int nr = 1000, nd = 77;
    std::vector<double> fr(nr, 0.3), fd(nd, 0.3), w(nr, 0.05);
    CHECK_CLOSE(fastnplm::nplm_t(fr.data(), w.data(), nr, fd.data(), nd), 2 * (nd * 0.3 - 50.0 * std::expm1(0.3)),
                1e-14, 0);
}

TEST(bad_input_throws_invalid_argument) {
    Problem p;
    const MatrixView r(p.ref.data(), p.nr, p.d), d(p.dat.data(), p.nd, p.d), c(p.ctr.data(), p.m, p.d);
    fastnplm::KernelFitOptions o;
    o.sigma = -1;
    CHECK_THROWS(fastnplm::fit_kernel_nplm(r, p.w.data(), d, c, nullptr, o), std::invalid_argument);
    o.sigma = 1;
    o.penalties = {-1.0};
    CHECK_THROWS(fastnplm::fit_kernel_nplm(r, p.w.data(), d, c, nullptr, o), std::invalid_argument);
    o.penalties = {1e-3};
    CHECK_THROWS(fastnplm::fit_kernel_nplm(r, p.w.data(), MatrixView(p.dat.data(), p.nd, 1), c, nullptr, o),
                 std::invalid_argument);
    std::vector<double> bad_w(p.w);
    bad_w[3] = std::nan("");
    CHECK_THROWS(fastnplm::fit_kernel_nplm(r, bad_w.data(), d, c, nullptr, o), std::invalid_argument);
    for (double& w : bad_w) w = -1.0;  // signed weights are accepted, a non-positive total is not
    bad_w[0] = p.nr - 1.0;
    CHECK_THROWS(fastnplm::fit_kernel_nplm(r, bad_w.data(), d, c, nullptr, o), std::invalid_argument);
    CHECK_THROWS(fastnplm::fit_kernel_nplm(r, p.w.data(), MatrixView(p.dat.data(), 0, p.d), c, nullptr, o),
                 std::invalid_argument);
}
