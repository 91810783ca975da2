// The kernel-NPLM solver, written once against the KernelOps backend interface.
//
// Parametrisation and preconditioner follow Falkon's logistic solver so that published
// (M, sigma, lambda) settings carry over: with T = chol(K_MM + eps M I) (upper, K ~ T^T T)
// the unknown is beta = T alpha; the Newton system for a step in beta is preconditioned
// on both sides by A^{-1}, A = chol(T diag(l''(f_c)) T^T / n + lambda I), where f_c = T^T beta
// is f at the centers. CG runs on  A^-T (T^-T H T^-1 + lambda I) A^-1 x = A^-T g_beta  and
// stops when the residual norm falls below cg_tol (absolute), as Falkon's does.
//
// Reference weights of either sign. The loss w log(1 + e^f) of an event with w < 0 is concave, so
// the Hessian of a step, sum_i l''_i k_i k_i^T / n + lam K, is positive definite only while the
// negative weights near every center are outweighed by the rest (and the penalty). The
// preconditioner takes the magnitude |w| of a center's class weight: it must stay positive
// definite for CG, any such choice leaves the solution alone, and |w| keeps each center's scale
// (equal to w when every weight is positive). CG meeting a direction of non-positive curvature
// then means the Hessian is not positive definite, and the fit stops with NotPositiveDefinite
// (CG detects it along the directions it explores: an early-stopped CG that converges before
// reaching a negative direction solves the step as a positive definite one would).
//
// Where the data lives: the factors T and A, dense mode's W, the step's Hessian weights and
// the CG vectors are Buffers in the backend's memory (device memory on CUDA), so a CG
// iteration moves only its two dot products to the host. The once-per-step work (f, the
// gradient, the weights, the line search) runs on host vectors, with M-vector round trips
// (solve, multiply) and the n-vector weights uploaded once per step.
#include "fastnplm/kernel_nplm.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "checks.hpp"
#include "dense.hpp"  // blas_name

namespace fastnplm {
namespace {

using detail::require;
using detail::Sum;

// f == 0 short-cuts: the first Newton step starts from f = 0 on every event, where these
// per-event transcendentals were a fifth of a 50-center fit.
double sigmoid(double f) {
    if (f == 0.0) return 0.5;
    return f >= 0 ? 1.0 / (1.0 + std::exp(-f)) : std::exp(f) / (1.0 + std::exp(f));
}

// sigma(f) sigma(-f), stable for large |f|.
double sigmoid_prime(double f) {
    if (f == 0.0) return 0.25;
    const double e = std::exp(-std::fabs(f));
    return e / ((1.0 + e) * (1.0 + e));
}

double softplus(double x) { return (x > 0 ? x : 0.0) + std::log1p(std::exp(-std::fabs(x))); }

double dotv(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

double norm(const std::vector<double>& a) { return std::sqrt(dotv(a, a)); }

void validate(MatrixView reference, const double* weights, MatrixView data, MatrixView centers,
              const double* center_scale, const KernelFitOptions& o) {
    require(reference.rows > 0, "reference sample is empty");
    require(data.rows > 0, "data sample is empty");
    require(reference.cols > 0, "samples must have at least one feature");
    require(reference.cols == data.cols && centers.cols == data.cols,
            "feature dimension mismatch: reference has " + std::to_string(reference.cols) + ", data " +
                std::to_string(data.cols) + ", centers " + std::to_string(centers.cols));
    detail::require_kernel_inputs(reference.rows, weights, centers.rows, center_scale, o.sigma);
    require(!o.penalties.empty(), "penalty list is empty");
    for (double p : o.penalties) require(std::isfinite(p) && p >= 0, "penalties must be finite and >= 0");
    require(std::isfinite(o.cg_tol) && o.cg_tol > 0, "cg_tol must be finite and > 0");
    require(o.max_iter >= 1, "max_iter must be >= 1");
    require(o.max_newton >= 1, "max_newton must be >= 1");
    require(std::isfinite(o.grad_tol) && o.grad_tol > 0, "grad_tol must be finite and > 0");
    require(std::isfinite(o.pc_epsilon) && o.pc_epsilon >= 0, "pc_epsilon must be finite and >= 0");
}

// Everything about one fit: the samples, the backend and the M x M factors.
class Problem {
public:
    Problem(MatrixView ref, const double* w, MatrixView dat, MatrixView ctr, const double* cscale,
            const KernelFitOptions& o, const KernelOps& ops)
        : ref_(ref),
          w_(w),
          dat_(dat),
          ctr_(ctr),
          o_(o),
          ops_(ops),
          m_(static_cast<int>(ctr.rows)),
          n_(static_cast<double>(ref.rows + dat.rows)),
          gamma_(1.0 / (2.0 * o.sigma * o.sigma)),
          dense_(ctr.rows <= o.dense_hessian_max_m),
          signed_(detail::any_negative(w, ref.rows)) {
        for (Buffer* b : {&sa_, &v_, &tmp_, &io_}) *b = ops.alloc(m_);
        double wsum = 0.0;
        for (std::int64_t i = 0; i < ref.rows; ++i) wsum += w[i];
        cscale_.assign(m_, (static_cast<double>(dat.rows) + wsum) / n_);
        if (cscale)
            for (int j = 0; j < m_; ++j) cscale_[j] = std::fabs(cscale[j]);
        factor_kmm();
    }

    int m() const { return m_; }
    const KernelOps& ops() const { return ops_; }
    /// Some reference weight is negative: the Hessian may be indefinite.
    bool signed_weights() const { return signed_; }

    // f = K alpha on both samples.
    void predict(const std::vector<double>& alpha, std::vector<double>& f_ref, std::vector<double>& f_dat) const {
        f_ref.resize(ref_.rows);
        f_dat.resize(dat_.rows);
        ops_.kernel_mv(ref_, ctr_, gamma_, alpha.data(), f_ref.data());
        ops_.kernel_mv(dat_, ctr_, gamma_, alpha.data(), f_dat.data());
    }

    // (1/n) sum_i l_i(f_i), compensated.
    double loss(const std::vector<double>& f_ref, const std::vector<double>& f_dat) const {
        Sum s;
        for (std::int64_t i = 0; i < ref_.rows; ++i) s.add(w_[i] * softplus(f_ref[i]));
        for (std::int64_t i = 0; i < dat_.rows; ++i) s.add(softplus(-f_dat[i]));
        return s.value() / n_;
    }

    // l'(f)/n on both samples.
    void first_derivatives(const std::vector<double>& f_ref, const std::vector<double>& f_dat,
                           std::vector<double>& u_ref, std::vector<double>& u_dat) const {
        u_ref.resize(ref_.rows);
        u_dat.resize(dat_.rows);
        for (std::int64_t i = 0; i < ref_.rows; ++i) u_ref[i] = w_[i] * sigmoid(f_ref[i]) / n_;
        for (std::int64_t i = 0; i < dat_.rows; ++i) u_dat[i] = -sigmoid(-f_dat[i]) / n_;
    }

    // g_beta = T^-T (1/n) K^T l'(f) + lam beta, streamed.
    std::vector<double> gradient(const std::vector<double>& f_ref, const std::vector<double>& f_dat,
                                 const std::vector<double>& beta, double lam) const {
        std::vector<double> u_ref, u_dat;
        first_derivatives(f_ref, f_dat, u_ref, u_dat);
        std::vector<double> g(m_), tmp(m_);
        ops_.kernel_tmv(ref_, ctr_, gamma_, u_ref.data(), g.data());
        ops_.kernel_tmv(dat_, ctr_, gamma_, u_dat.data(), tmp.data());
        for (int j = 0; j < m_; ++j) g[j] += tmp[j];
        solve(T_, g, true);
        for (int j = 0; j < m_; ++j) g[j] += lam * beta[j];
        return g;
    }

    // Gradient g_beta at the current f, and the Hessian data of this Newton step: the
    // weights l''(f)/n for the streamed product, or, in dense mode, W = B^T diag(l''/n) B
    // with the Nystrom features B = K T^{-1} (one pass, which also yields g_beta).
    std::vector<double> prepare_step(const std::vector<double>& f_ref, const std::vector<double>& f_dat,
                                     const std::vector<double>& beta, double lam) {
        std::vector<double> d_ref(ref_.rows), d_dat(dat_.rows);
        for (std::int64_t i = 0; i < ref_.rows; ++i) d_ref[i] = w_[i] * sigmoid_prime(f_ref[i]) / n_;
        for (std::int64_t i = 0; i < dat_.rows; ++i) d_dat[i] = sigmoid_prime(f_dat[i]) / n_;
        if (!dense_) {  // the weights of every streamed product of this step: uploaded once
            if (d_ref_.size() == 0) {
                d_ref_ = ops_.alloc(ref_.rows);
                d_dat_ = ops_.alloc(dat_.rows);
            }
            ops_.upload(d_ref.data(), d_ref_);
            ops_.upload(d_dat.data(), d_dat_);
            return gradient(f_ref, f_dat, beta, lam);
        }
        std::vector<double> u_ref, u_dat;
        first_derivatives(f_ref, f_dat, u_ref, u_dat);
        std::vector<double> w(static_cast<size_t>(m_) * m_), g(m_), w2(w.size()), g2(m_);
        ops_.feature_gram(ref_, ctr_, gamma_, T_host_.data(), d_ref.data(), u_ref.data(), w.data(), g.data());
        ops_.feature_gram(dat_, ctr_, gamma_, T_host_.data(), d_dat.data(), u_dat.data(), w2.data(), g2.data());
        for (size_t k = 0; k < w.size(); ++k) w[k] += w2[k];
        if (W_.size() == 0) W_ = ops_.alloc(static_cast<std::int64_t>(w.size()));
        ops_.upload(w.data(), W_);  // M^2 once per step; the CG iterations use it in place
        for (int j = 0; j < m_; ++j) g[j] += g2[j] + lam * beta[j];
        return g;
    }

    // A = chol(T diag(l''(f_c)) T^T / n + lam I) with f_c = T^T beta (Falkon's 1/n, not 1/M).
    // Formed in place in the backend's memory: only the M-vectors f_c and the scales cross.
    void precondition(const std::vector<double>& beta, double lam) {
        std::vector<double> fc(beta);
        multiply(T_, fc, true);
        std::vector<double> s(m_);  // column j of the upper factor is scaled by sqrt(W_j)
        for (int j = 0; j < m_; ++j) s[j] = std::sqrt(cscale_[j] * sigmoid_prime(fc[j]));
        ops_.upload(s.data(), io_);
        if (A_.size() == 0) A_ = ops_.alloc(T_.size());
        ops_.copy(T_, A_);
        ops_.scale_columns_upper(A_, io_);
        ops_.lauum_upper(A_, m_);
        ops_.divide_shift_upper(A_, m_, n_, lam);
        const int info = ops_.cholesky_upper(A_, m_);
        if (info != 0)
            throw std::runtime_error("preconditioner: Cholesky of T W T^T/n + lambda I failed (pivot " +
                                     std::to_string(info) + "); lambda may be too small for these centers");
    }

    // h = A^-T (T^-T H T^-1 + lam I) A^-1 s, the preconditioned Hessian product, all in the
    // backend's memory (s, h: m-entry Buffers).
    void hessian_product(const Buffer& s, Buffer& h, double lam) const {
        ops_.copy(s, sa_);
        ops_.trsv_upper(A_, false, sa_);
        if (dense_) {  // T^-T H T^-1 = W, formed once per step
            ops_.symv(W_, sa_, h);
        } else {  // streamed: T^-T K^T (l'' * (K T^-1 sa)), one pass over the data
            ops_.copy(sa_, v_);
            ops_.trsv_upper(T_, false, v_);
            ops_.kernel_fused(ref_, ctr_, gamma_, v_, d_ref_, h);
            ops_.kernel_fused(dat_, ctr_, gamma_, v_, d_dat_, tmp_);
            ops_.axpy(1.0, tmp_, h);
            ops_.trsv_upper(T_, true, h);
        }
        ops_.axpy(lam, sa_, h);
        ops_.trsv_upper(A_, true, h);
    }

    void solve_A(std::vector<double>& x, bool trans) const { solve(A_, x, trans); }
    void solve_T(std::vector<double>& x, bool trans) const { solve(T_, x, trans); }

private:
    // x <- U^-1 x or U^-T x for a host M-vector, through the backend (an M-vector each way).
    void solve(const Buffer& u, std::vector<double>& x, bool trans) const {
        ops_.upload(x.data(), io_);
        ops_.trsv_upper(u, trans, io_);
        ops_.download(io_, x.data());
    }
    // x <- U x or U^T x, likewise.
    void multiply(const Buffer& u, std::vector<double>& x, bool trans) const {
        ops_.upload(x.data(), io_);
        ops_.trmv_upper(u, trans, io_);
        ops_.download(io_, x.data());
    }

    void factor_kmm() {
        std::vector<double> kmm(static_cast<size_t>(m_) * m_, 0.0);
        ops_.kernel_block(ctr_, ctr_, gamma_, kmm.data(), m_);  // symmetric: row- = column-major
        const double jitter = o_.pc_epsilon * m_;
        for (int j = 0; j < m_; ++j) kmm[static_cast<size_t>(j) * m_ + j] += jitter;
        T_ = ops_.alloc(static_cast<std::int64_t>(kmm.size()));
        ops_.upload(kmm.data(), T_);
        const int info = ops_.cholesky_upper(T_, m_);
        if (info != 0)
            throw std::runtime_error("Cholesky of K_MM + eps*M*I failed (pivot " + std::to_string(info) +
                                     "): centers are (nearly) duplicated or sigma is too large for them; "
                                     "increase pc_epsilon or use fewer centers");
        if (dense_) {  // feature_gram takes the factor as a host array
            T_host_.resize(kmm.size());
            ops_.download(T_, T_host_.data());
        }
    }

    MatrixView ref_;
    const double* w_;
    MatrixView dat_, ctr_;
    const KernelFitOptions& o_;
    const KernelOps& ops_;
    int m_;
    double n_, gamma_;
    bool dense_, signed_;
    std::vector<double> cscale_, T_host_;  // cscale_: magnitudes of the centers' class weights
    // In the backend's memory: the factors (m x m), dense mode's W = T^-T H_data T^-1, the step's
    // weights l''/n on both samples; scratch M-vectors of hessian_product and of the round trips.
    Buffer T_, A_, W_, d_ref_, d_dat_;
    mutable Buffer sa_, v_, tmp_, io_;
};

struct CgOutcome {
    std::vector<double> x;
    int iterations = 0;
    double residual = 0.0;
    bool converged = false;
};

// Conjugate gradient from x = 0 on the preconditioned system; stops when ||r|| < tol. Its
// vectors live in the backend's memory: b goes in and x comes out once, and an iteration
// brings only the two dot products to the host. Curvature d^T A d <= 0: with every weight
// positive the operator is SPD and only roundoff gets there (CG stops); with some negative,
// the Hessian is not positive definite (NotPositiveDefinite).
CgOutcome conjugate_gradient(const Problem& p, const std::vector<double>& b, double lam, double tol, int max_iter) {
    const KernelOps& ops = p.ops();
    const int m = p.m();
    Buffer x = ops.alloc(m), r = ops.alloc(m), d = ops.alloc(m), ad = ops.alloc(m);
    ops.upload(b.data(), r);
    ops.copy(r, d);
    CgOutcome out;
    out.x.assign(m, 0.0);
    double rs = ops.dot(r, r);
    out.residual = std::sqrt(rs);
    if (out.residual < tol) {
        out.converged = true;
        return out;
    }
    for (int it = 0; it < max_iter; ++it) {
        p.hessian_product(d, ad, lam);
        const double dad = ops.dot(d, ad);
        if (!(dad > 0)) {
            if (p.signed_weights() && !std::isnan(dad)) throw detail::not_positive_definite(dad, lam);
            break;
        }
        const double a = rs / dad;
        ops.axpy(a, d, x);
        ops.axpy(-a, ad, r);  // r - a ad, exactly
        const double rs_new = ops.dot(r, r);
        out.iterations = it + 1;
        out.residual = std::sqrt(rs_new);
        if (out.residual < tol) {
            out.converged = true;
            break;
        }
        const double bcoef = rs_new / rs;
        ops.xpby(r, bcoef, d);
        rs = rs_new;
    }
    ops.download(x, out.x.data());
    return out;
}

}  // namespace

double nplm_t(const double* f_reference, const double* reference_weights, std::int64_t n_reference,
              const double* f_data, std::int64_t n_data) {
    Sum s;
    for (std::int64_t i = 0; i < n_data; ++i) s.add(f_data[i]);
    for (std::int64_t i = 0; i < n_reference; ++i) s.add(-reference_weights[i] * std::expm1(f_reference[i]));
    return 2.0 * s.value();
}

const char* blas_name() { return dense::blas_name(); }

KernelFitResult fit_kernel_nplm(MatrixView reference, const double* reference_weights, MatrixView data,
                                MatrixView centers, const double* center_scale, const KernelFitOptions& o,
                                const KernelOps& ops) {
    validate(reference, reference_weights, data, centers, center_scale, o);
    Problem p(reference, reference_weights, data, centers, center_scale, o, ops);
    const int m = p.m();

    KernelFitResult res;
    res.converged = true;
    std::vector<double> beta(m, 0.0), alpha(m, 0.0);
    std::vector<double>& f_ref = res.f_reference;
    std::vector<double>& f_dat = res.f_data;
    f_ref.assign(reference.rows, 0.0);
    f_dat.assign(data.rows, 0.0);

    auto record = [&](const CgOutcome& cg) {
        res.cg_iterations.push_back(cg.iterations);
        res.cg_residuals.push_back(cg.residual);
        res.converged = res.converged && cg.converged;
        ++res.newton_iterations;
    };

    const double lam_final = o.penalties.back();
    if (o.solver == Solver::NewtonStep) {
        for (double lam : o.penalties) {
            p.precondition(beta, lam);
            std::vector<double> g = p.prepare_step(f_ref, f_dat, beta, lam);
            p.solve_A(g, true);
            CgOutcome cg = conjugate_gradient(p, g, lam, o.cg_tol, o.max_iter);
            p.solve_A(cg.x, false);
            for (int j = 0; j < m; ++j) beta[j] -= cg.x[j];
            alpha = beta;
            p.solve_T(alpha, false);
            p.predict(alpha, f_ref, f_dat);
            record(cg);
        }
        res.grad_norm = std::numeric_limits<double>::quiet_NaN();  // not needed: saves a pass
    } else {
        // Damped Newton on J(beta) = loss(f) + (lam/2)||beta||^2 with an Armijo backtracking line
        // search; inexact CG solves with the forcing term min(0.5, sqrt||g||) ||g|| (Eisenstat-Walker).
        const double lam = lam_final;
        bool done = false;
        for (int it = 0; it < o.max_newton; ++it) {
            const std::vector<double> g = p.prepare_step(f_ref, f_dat, beta, lam);
            res.grad_norm = norm(g);
            if (res.grad_norm < o.grad_tol) {
                done = true;
                break;
            }
            p.precondition(beta, lam);
            std::vector<double> gp(g);
            p.solve_A(gp, true);
            const double gpn = norm(gp);
            const double tol = std::max(std::min(o.cg_tol, 0.1 * o.grad_tol), std::min(0.5, std::sqrt(gpn)) * gpn);
            CgOutcome cg = conjugate_gradient(p, gp, lam, tol, o.max_iter);
            record(cg);
            std::vector<double> dbeta(cg.x);
            p.solve_A(dbeta, false);
            for (double& v : dbeta) v = -v;
            std::vector<double> dalpha(dbeta);
            p.solve_T(dalpha, false);
            std::vector<double> kd_ref, kd_dat;
            p.predict(dalpha, kd_ref, kd_dat);

            const double j0 = p.loss(f_ref, f_dat) + 0.5 * lam * dotv(beta, beta);
            const double slope = dotv(g, dbeta);
            std::vector<double> fr(f_ref.size()), fd(f_dat.size()), bt(m);
            double step = 1.0;
            bool accepted = false;
            for (int ls = 0; ls < 50 && !accepted; ++ls, step *= 0.5) {
                for (size_t i = 0; i < fr.size(); ++i) fr[i] = f_ref[i] + step * kd_ref[i];
                for (size_t i = 0; i < fd.size(); ++i) fd[i] = f_dat[i] + step * kd_dat[i];
                for (int j = 0; j < m; ++j) bt[j] = beta[j] + step * dbeta[j];
                const double j1 = p.loss(fr, fd) + 0.5 * lam * dotv(bt, bt);
                accepted = j1 <= j0 + 1e-4 * step * slope;
            }
            if (!accepted) break;
            beta.swap(bt);
            f_ref.swap(fr);
            f_dat.swap(fd);
        }
        if (!done) {
            const std::vector<double> g = p.gradient(f_ref, f_dat, beta, lam);
            res.grad_norm = norm(g);
            done = res.grad_norm < o.grad_tol;
        }
        res.converged = done;
        alpha = beta;
        p.solve_T(alpha, false);
        p.predict(alpha, f_ref, f_dat);  // fresh f, free of the accumulated line-search updates
    }

    res.alpha = alpha;
    res.objective = p.loss(f_ref, f_dat) + 0.5 * lam_final * dotv(beta, beta);
    res.t = nplm_t(f_ref.data(), reference_weights, reference.rows, f_dat.data(), data.rows);
    return res;
}

KernelFitResult fit_kernel_nplm(MatrixView reference, const double* reference_weights, MatrixView data,
                                MatrixView centers, const double* center_scale, const KernelFitOptions& options) {
    const auto ops = make_ops(Device::cpu, options.threads);
    return fit_kernel_nplm(reference, reference_weights, data, centers, center_scale, options, *ops);
}

}  // namespace fastnplm
