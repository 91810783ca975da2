// Newton-step fits of many datasets against one shared reference (see kernel_shared.hpp).
//
// The CG below is fit_kernel_nplm's (kernel_nplm.cpp) run on a block of datasets in lockstep:
// per iteration, one many-column product for the reference's share of every active dataset's
// Hessian product, one fused pass per dataset over its own events, and the four triangular
// solves of the two-sided preconditioner as many-column sweeps. A dataset leaves the block when
// its residual norm falls below cg_tol; the others go on.
#include "fastnplm/kernel_shared.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "checks.hpp"
#include "dense.hpp"

namespace fastnplm {
namespace {

using detail::require;
using detail::Sum;

// Columns of a lane matrix (m x ld, row-major) to and from separate m-vectors.
void pack(const std::vector<std::vector<double>*>& cols, std::int64_t m, std::int64_t ld, std::vector<double>& out) {
    out.assign(static_cast<size_t>(m * ld), 0.0);
    for (size_t q = 0; q < cols.size(); ++q)
        for (std::int64_t j = 0; j < m; ++j) out[j * ld + q] = (*cols[q])[j];
}

void unpack(const std::vector<double>& in, std::int64_t m, std::int64_t ld, std::int64_t q, double* out) {
    for (std::int64_t j = 0; j < m; ++j) out[j] = in[j * ld + q];
}

std::int64_t lanes(std::int64_t b) { return (b + 7) / 8 * 8; }

}  // namespace

SharedReference::SharedReference(MatrixView reference, const double* weights, MatrixView centers,
                                 const double* center_scale, const SharedFitOptions& o)
    : ref_(reference), ctr_(centers), o_(o) {
    require(reference.rows > 0, "reference sample is empty");
    require(reference.cols > 0, "samples must have at least one feature");
    require(centers.cols == reference.cols, "feature dimension mismatch: reference has " +
                                                std::to_string(reference.cols) + " features, centers " +
                                                std::to_string(centers.cols));
    detail::require_kernel_inputs(reference.rows, weights, centers.rows, center_scale, o.sigma);
    require(std::isfinite(o.lam) && o.lam > 0, "lam must be finite and > 0");
    require(std::isfinite(o.cg_tol) && o.cg_tol > 0, "cg_tol must be finite and > 0");
    require(o.max_iter >= 1, "max_iter must be >= 1");
    require(std::isfinite(o.pc_epsilon) && o.pc_epsilon >= 0, "pc_epsilon must be finite and >= 0");

    ops_ = make_ops(Device::cpu, o.threads);
    m_ = static_cast<int>(centers.rows);
    gamma_ = 1.0 / (2.0 * o.sigma * o.sigma);
    w_.assign(weights, weights + reference.rows);
    signed_ = detail::any_negative(weights, reference.rows);
    w4_.resize(w_.size());
    wsum_ = 0.0;
    for (size_t i = 0; i < w_.size(); ++i) {
        wsum_ += w_[i];
        w4_[i] = 0.25 * w_[i];  // l''(0) = 1/4 on every event
    }
    n0_ = static_cast<double>(reference.rows) + wsum_;
    const size_t mm = static_cast<size_t>(m_) * m_;

    // T = chol(K_MM + eps M I), upper
    T_.assign(mm, 0.0);
    ops_->kernel_block(ctr_, ctr_, gamma_, T_.data(), m_);
    for (int j = 0; j < m_; ++j) T_[static_cast<size_t>(j) * m_ + j] += o.pc_epsilon * m_;
    const int threads = resolve_threads(o.threads);
    int info = dense::cholesky_upper(T_.data(), m_, threads);
    if (info != 0)
        throw std::runtime_error("Cholesky of K_MM + eps*M*I failed (pivot " + std::to_string(info) +
                                 "): centers are (nearly) duplicated or sigma is too large for them; "
                                 "increase pc_epsilon or use fewer centers");

    // A = chol(T C T^T / n0 + lam I) with C = diag(c_j l''(0)): columns of T scaled by sqrt(C), U U^T
    A_ = T_;
    for (int j = 0; j < m_; ++j) {
        // pooled: N_D -> sum(w); a given class weight by its magnitude (kernel_nplm.cpp: signed weights)
        const double cj = center_scale ? std::fabs(center_scale[j]) : 2.0 * wsum_ / n0_;
        const double s = std::sqrt(0.25 * cj);
        double* col = A_.data() + static_cast<size_t>(j) * m_;
        for (int i = 0; i <= j; ++i) col[i] *= s;
    }
    dense::lauum_upper(A_.data(), m_, threads);
    for (int j = 0; j < m_; ++j) {
        double* col = A_.data() + static_cast<size_t>(j) * m_;
        for (int i = 0; i <= j; ++i) col[i] /= n0_;
        col[j] += o.lam;
    }
    info = dense::cholesky_upper(A_.data(), m_, threads);
    if (info != 0)
        throw std::runtime_error("preconditioner: Cholesky of T W T^T/n + lambda I failed (pivot " +
                                 std::to_string(info) + "); lambda may be too small for these centers");

    g_ref_.resize(m_);
    ops_->kernel_tmv(ref_, ctr_, gamma_, w_.data(), g_ref_.data());
}

std::vector<SharedFitResult> SharedReference::fit(const std::vector<MatrixView>& datasets) const {
    const std::int64_t nb = static_cast<std::int64_t>(datasets.size()), m = m_;
    for (const MatrixView& d : datasets) {
        require(d.rows > 0, "data sample is empty");
        require(d.cols == ref_.cols, "feature dimension mismatch: reference has " + std::to_string(ref_.cols) +
                                         " features, data " + std::to_string(d.cols));
    }
    std::vector<SharedFitResult> res(nb);
    if (nb == 0) return res;
    const int threads = resolve_threads(o_.threads);
    std::int64_t max_rows = 0;
    for (const MatrixView& d : datasets) max_rows = std::max(max_rows, d.rows);
    const std::vector<double> quarter(max_rows, 0.25), minus_half(max_rows, -0.5);
    std::vector<double> n(nb);
    for (std::int64_t k = 0; k < nb; ++k) n[k] = static_cast<double>(ref_.rows + datasets[k].rows);

    // Right-hand sides A^-T T^-T g, g = (1/n) (K_R^T w/2 - K_D^T 1/2): the gradient at f = 0.
    const std::int64_t ld = lanes(nb);
    std::vector<double> lane(static_cast<size_t>(m * ld), 0.0), col(m);
    for (std::int64_t k = 0; k < nb; ++k) {
        ops_->kernel_tmv(datasets[k], ctr_, gamma_, minus_half.data(), col.data());
        for (std::int64_t j = 0; j < m; ++j) lane[j * ld + k] = (0.5 * g_ref_[j] + col[j]) / n[k];
    }
    dense::trsm_upper_lanes(T_.data(), m_, true, lane.data(), ld, threads);
    dense::trsm_upper_lanes(A_.data(), m_, true, lane.data(), ld, threads);

    std::vector<std::vector<double>> x(nb, std::vector<double>(m, 0.0)), r(nb), d(nb), ad(nb, std::vector<double>(m));
    std::vector<double> rs(nb);
    std::vector<bool> active(nb, true);
    for (std::int64_t k = 0; k < nb; ++k) {
        r[k].resize(m);
        unpack(lane, m, ld, k, r[k].data());
        d[k] = r[k];
        double s = 0.0;
        for (std::int64_t j = 0; j < m; ++j) s += r[k][j] * r[k][j];
        rs[k] = s;
        res[k].cg_residual = std::sqrt(s);
        if (res[k].cg_residual < o_.cg_tol) {
            res[k].converged = true;
            active[k] = false;
        }
    }

    std::vector<double> sa, v, h, hr, vcol(m), hd(m);
    for (int it = 0; it < o_.max_iter; ++it) {
        std::vector<std::int64_t> act;
        for (std::int64_t k = 0; k < nb; ++k)
            if (active[k]) act.push_back(k);
        if (act.empty()) break;
        const std::int64_t b = static_cast<std::int64_t>(act.size()), lb = lanes(b);
        std::vector<std::vector<double>*> cols;
        for (std::int64_t k : act) cols.push_back(&d[k]);
        pack(cols, m, lb, sa);
        dense::trsm_upper_lanes(A_.data(), m_, false, sa.data(), lb, threads);  // sa = A^-1 d
        v = sa;
        dense::trsm_upper_lanes(T_.data(), m_, false, v.data(), lb, threads);  // v = T^-1 sa
        // reference share K_R^T diag(w/4) K_R v of every active dataset, in one pass
        std::vector<double> vb(static_cast<size_t>(m * b));
        for (std::int64_t j = 0; j < m; ++j)
            for (std::int64_t q = 0; q < b; ++q) vb[j * b + q] = v[j * lb + q];
        hr.resize(static_cast<size_t>(m * b));
        ops_->kernel_gram_mm(ref_, ctr_, gamma_, vb.data(), b, w4_.data(), hr.data());
        h.assign(static_cast<size_t>(m * lb), 0.0);
        for (std::int64_t q = 0; q < b; ++q) {
            const std::int64_t k = act[q];
            unpack(v, m, lb, q, vcol.data());
            ops_->kernel_fused(datasets[k], ctr_, gamma_, vcol.data(), quarter.data(), hd.data());
            for (std::int64_t j = 0; j < m; ++j) h[j * lb + q] = (hr[j * b + q] + hd[j]) / n[k];
        }
        dense::trsm_upper_lanes(T_.data(), m_, true, h.data(), lb, threads);  // T^-T H T^-1 sa
        for (size_t i = 0; i < h.size(); ++i) h[i] += o_.lam * sa[i];
        dense::trsm_upper_lanes(A_.data(), m_, true, h.data(), lb, threads);

        for (std::int64_t q = 0; q < b; ++q) {
            const std::int64_t k = act[q];
            std::vector<double>& adk = ad[k];
            unpack(h, m, lb, q, adk.data());
            double dad = 0.0;
            for (std::int64_t j = 0; j < m; ++j) dad += d[k][j] * adk[j];
            if (!(dad > 0)) {  // SPD with positive weights: only roundoff gets here (as in kernel_nplm.cpp)
                if (signed_ && !std::isnan(dad)) throw detail::not_positive_definite(dad, o_.lam);
                active[k] = false;
                continue;
            }
            const double a = rs[k] / dad;
            double rs_new = 0.0;
            for (std::int64_t j = 0; j < m; ++j) {
                x[k][j] += a * d[k][j];
                r[k][j] -= a * adk[j];
                rs_new += r[k][j] * r[k][j];
            }
            res[k].cg_iterations = it + 1;
            res[k].cg_residual = std::sqrt(rs_new);
            if (res[k].cg_residual < o_.cg_tol) {
                res[k].converged = true;
                active[k] = false;
                continue;
            }
            const double bcoef = rs_new / rs[k];
            for (std::int64_t j = 0; j < m; ++j) d[k][j] = r[k][j] + bcoef * d[k][j];
            rs[k] = rs_new;
        }
    }

    // beta = -A^-1 x, alpha = T^-1 beta; f on the data per dataset, the reference term in one pass
    std::vector<std::vector<double>*> cols;
    for (std::int64_t k = 0; k < nb; ++k) cols.push_back(&x[k]);
    pack(cols, m, ld, lane);
    dense::trsm_upper_lanes(A_.data(), m_, false, lane.data(), ld, threads);
    for (double& e : lane) e = -e;
    for (std::int64_t k = 0; k < nb; ++k) {
        double s = 0.0;
        for (std::int64_t j = 0; j < m; ++j) s += lane[j * ld + k] * lane[j * ld + k];
        res[k].beta_sq = s;
    }
    dense::trsm_upper_lanes(T_.data(), m_, false, lane.data(), ld, threads);
    std::vector<double> alphas(static_cast<size_t>(m * nb)), terms(nb);
    for (std::int64_t j = 0; j < m; ++j)
        for (std::int64_t k = 0; k < nb; ++k) alphas[j * nb + k] = lane[j * ld + k];
    ops_->kernel_mm_expm1_sum(ref_, ctr_, gamma_, alphas.data(), nb, w_.data(), terms.data());
    for (std::int64_t k = 0; k < nb; ++k) {
        res[k].alpha.resize(m);
        unpack(lane, m, ld, k, res[k].alpha.data());
        res[k].f_data.resize(datasets[k].rows);
        ops_->kernel_mv(datasets[k], ctr_, gamma_, res[k].alpha.data(), res[k].f_data.data());
        Sum s;
        for (double f : res[k].f_data) s.add(f);
        res[k].t = 2.0 * (s.value() - terms[k]);
    }
    return res;
}

}  // namespace fastnplm
