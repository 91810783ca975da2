// Projected Newton on a box-constrained quadratic model (fastnplm/box_qp.hpp).
#include "fastnplm/box_qp.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "blas_names.hpp"

namespace fastnplm {
namespace {

constexpr double ARMIJO = 1e-4;  // sufficient decrease of q along the arc, of its linear prediction
constexpr int MAX_HALVINGS = 50;
constexpr int MAX_DOUBLINGS = 10;
constexpr int QP_ITER = 20;

using Vec = std::vector<double>;

double dot(const Vec& a, const Vec& b) {
    double acc = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) acc += a[i] * b[i];
    return acc;
}

// y = H x (H row-major n x n)
void symv(const double* H, const Vec& x, Vec& y) {
    const std::size_t n = x.size();
    for (std::size_t i = 0; i < n; ++i) {
        double acc = 0.0;
        const double* row = H + i * n;
        for (std::size_t j = 0; j < n; ++j) acc += row[j] * x[j];
        y[i] = acc;
    }
}

double clip(double v, double lo, double hi) { return std::min(std::max(v, lo), hi); }

struct Problem {
    std::size_t n;
    const double *g, *H, *lo, *hi;
};

// -H~^-1 g on the free coordinates (H~ = H_FF where positive definite, else its eigenvalues
// replaced by max(|lam|, mu)); returns whether H_FF has negative curvature.
bool damped_newton(const Problem& p, const std::vector<std::size_t>& free, const Vec& gq, Vec& d) {
    const int m = static_cast<int>(free.size());
    std::fill(d.begin(), d.end(), 0.0);
    if (m == 0) return false;
    Vec a(static_cast<std::size_t>(m) * m), rhs(static_cast<std::size_t>(m));
    for (int i = 0; i < m; ++i) {
        rhs[i] = gq[free[i]];
        for (int j = 0; j < m; ++j) a[static_cast<std::size_t>(i) * m + j] = p.H[free[i] * p.n + free[j]];
    }
    Vec chol = a;
    int info = 0, one = 1;
    FASTNPLM_F77(dpotrf_)("U", &m, chol.data(), &m, &info, 1);
    if (info == 0) {
        Vec x = rhs;
        FASTNPLM_F77(dpotrs_)("U", &m, &one, chol.data(), &m, x.data(), &m, &info, 1);
        for (int i = 0; i < m; ++i) d[free[i]] = -x[i];
        return false;
    }
    // eigen-decomposition (column-major in LAPACK's view: a symmetric matrix is its own transpose)
    Vec lam(static_cast<std::size_t>(m));
    int lwork = -1;
    double query = 0.0;
    FASTNPLM_F77(dsyev_)("V", "U", &m, a.data(), &m, lam.data(), &query, &lwork, &info, 1, 1);
    lwork = static_cast<int>(query);
    Vec work(static_cast<std::size_t>(std::max(lwork, 1)));
    FASTNPLM_F77(dsyev_)("V", "U", &m, a.data(), &m, lam.data(), work.data(), &lwork, &info, 1, 1);
    if (info != 0) throw std::runtime_error("box_qp: the eigen-decomposition of the free Hessian failed");
    double lam_max = 0.0;
    for (double l : lam) lam_max = std::max(lam_max, std::fabs(l));
    // a floor far above the underflow range: where H vanishes on the free coordinates the
    // direction is huge but finite, and the box and the trust region bound the step
    const double mu = std::max(1e-10 * lam_max, 1e-150);
    // eigenvector k is column k of a (column-major): a[k * m + i]
    Vec coef(static_cast<std::size_t>(m));
    for (int k = 0; k < m; ++k) {
        double c = 0.0;
        for (int i = 0; i < m; ++i) c += a[static_cast<std::size_t>(k) * m + i] * rhs[i];
        coef[k] = c / std::max(std::fabs(lam[k]), mu);
    }
    for (int i = 0; i < m; ++i) {
        double acc = 0.0;
        for (int k = 0; k < m; ++k) acc += a[static_cast<std::size_t>(k) * m + i] * coef[k];
        d[free[i]] = -acc;
    }
    return lam[0] < 0;
}

// q at P(s + a d): along the line when the box does not bend the step, else from the step.
double model_at(const Problem& p, const Vec& s, double q, const Vec& gq, const Vec& d, double gd, double dHd, double a,
                Vec& sn, Vec& step, Vec& Hstep) {
    bool straight = true;
    for (std::size_t i = 0; i < p.n; ++i) {
        sn[i] = clip(s[i] + a * d[i], p.lo[i], p.hi[i]);
        step[i] = sn[i] - s[i];
        straight = straight && step[i] == a * d[i];
    }
    if (straight) return q + a * gd + 0.5 * a * a * dHd;
    symv(p.H, step, Hstep);
    return q + dot(gq, step) + 0.5 * dot(step, Hstep);
}

// The arc search; returns false when no a >= 2^-50 gives sufficient decrease.
bool arc(const Problem& p, const Vec& gq, Vec& s, double& q, const Vec& d, bool expand) {
    const std::size_t n = p.n;
    Vec Hd(n), sn(n), step(n), Hstep(n), best_s(n);
    symv(p.H, d, Hd);
    const double gd = dot(gq, d), dHd = dot(d, Hd);
    double a = 1.0, best_q = 0.0;
    bool found = false;
    for (int h = 0; h < MAX_HALVINGS; ++h) {
        const double qn = model_at(p, s, q, gq, d, gd, dHd, a, sn, step, Hstep);
        if (qn <= q + ARMIJO * dot(gq, step)) {
            best_s = sn;
            best_q = qn;
            found = true;
            break;
        }
        a *= 0.5;
    }
    if (!found) return false;
    for (int k = 0; k < (expand ? MAX_DOUBLINGS : 0); ++k) {
        a *= 2.0;
        const double qn = model_at(p, s, q, gq, d, gd, dHd, a, sn, step, Hstep);
        if (qn >= best_q || sn == best_s) break;
        best_s = sn;
        best_q = qn;
    }
    if (best_q >= q) return false;
    s = best_s;
    q = best_q;
    return true;
}

}  // namespace

double box_qp(std::int64_t n_, const double* g, const double* H, const double* lo, const double* hi, double rtol,
              double* s_out) {
    if (n_ < 0) throw std::invalid_argument("box_qp: n must be >= 0");
    const std::size_t n = static_cast<std::size_t>(n_);
    const Problem p{n, g, H, lo, hi};
    Vec s(n, 0.0), gq(g, g + n), d(n), Hs(n);
    double q = 0.0;
    double pg0 = 0.0, width = 0.0, span = 0.0;
    double hi_max = -INFINITY, lo_min = INFINITY;
    for (std::size_t i = 0; i < n; ++i) {
        pg0 = std::max(pg0, std::fabs(clip(-gq[i], lo[i], hi[i])));
        width = std::max(width, hi[i] - lo[i]);
        hi_max = std::max(hi_max, hi[i]);
        lo_min = std::min(lo_min, lo[i]);
    }
    span = std::max(hi_max - lo_min, 1.0);
    std::vector<std::size_t> free;
    for (int it = 0; it < QP_ITER; ++it) {
        double pg = 0.0;
        for (std::size_t i = 0; i < n; ++i) pg = std::max(pg, std::fabs(s[i] - clip(s[i] - gq[i], lo[i], hi[i])));
        if (pg <= rtol * pg0 || pg == 0.0) break;
        bool expand;
        if (it == 0) {  // the projected-gradient (Cauchy) direction, scaled by the curvature along it
            symv(H, gq, d);
            const double curv = dot(gq, d), gg = dot(gq, gq);
            const double scale = curv > 0 ? gg / curv : span / std::max(pg, 1e-300);
            for (std::size_t i = 0; i < n; ++i) d[i] = -gq[i] * scale;
            expand = true;
        } else {
            free.clear();
            for (std::size_t i = 0; i < n; ++i)
                if (!((s[i] <= lo[i] && gq[i] > 0) || (s[i] >= hi[i] && gq[i] < 0))) free.push_back(i);
            expand = damped_newton(p, free, gq, d);
        }
        double dmax = 0.0;
        for (double v : d) dmax = std::max(dmax, std::fabs(v));
        if (dmax > width)  // no step need be longer than the box is wide
            for (double& v : d) v *= width / dmax;
        if (!arc(p, gq, s, q, d, expand)) break;
        symv(H, s, Hs);
        for (std::size_t i = 0; i < n; ++i) gq[i] = g[i] + Hs[i];
    }
    std::copy(s.begin(), s.end(), s_out);
    return q;
}

}  // namespace fastnplm
