// The kernel-NPLM solver, written once against the KernelOps backend interface.
//
// Parametrisation and preconditioner follow Falkon's logistic solver so that published
// (M, sigma, lambda) settings carry over: with T = chol(K_MM + eps M I) (upper, K ~ T^T T)
// the unknown is beta = T alpha; the Newton system for a step in beta is preconditioned
// on both sides by A^{-1}, A = chol(T diag(l''(f_c)) T^T / n + lambda I), where f_c = T^T beta
// is f at the centers. CG runs on  A^-T (T^-T H T^-1 + lambda I) A^-1 x = A^-T g_beta  and
// stops when the residual norm falls below cg_tol (absolute), as Falkon's does.
#include "fastnplm/kernel_nplm.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "dense.hpp"

namespace fastnplm {
namespace {

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

// Neumaier-compensated sum accumulator for the long sums over events.
struct Sum {
    double s = 0.0, c = 0.0;
    void add(double x) {
        const double t = s + x;
        c += std::fabs(s) >= std::fabs(x) ? (s - t) + x : (x - t) + s;
        s = t;
    }
    double value() const { return s + c; }
};

void require(bool ok, const std::string& what) {
    if (!ok) throw std::invalid_argument(what);
}

void validate(MatrixView reference, const double* weights, MatrixView data, MatrixView centers,
              const double* center_scale, const KernelFitOptions& o) {
    require(reference.rows > 0, "reference sample is empty");
    require(data.rows > 0, "data sample is empty");
    require(reference.cols > 0, "samples must have at least one feature");
    require(reference.cols == data.cols && centers.cols == data.cols,
            "feature dimension mismatch: reference has " + std::to_string(reference.cols) +
                ", data " + std::to_string(data.cols) + ", centers " + std::to_string(centers.cols));
    require(centers.rows > 0, "need at least one center");
    require(centers.rows <= std::numeric_limits<int>::max(), "too many centers");
    require(weights != nullptr, "reference weights are required");
    for (std::int64_t i = 0; i < reference.rows; ++i)  // message built only on failure
        if (!(std::isfinite(weights[i]) && weights[i] > 0))
            require(false, "reference weights must be finite and positive (index " + std::to_string(i) + ")");
    if (center_scale)
        for (std::int64_t j = 0; j < centers.rows; ++j)
            if (!(std::isfinite(center_scale[j]) && center_scale[j] > 0))
                require(false, "center scales must be finite and positive (index " + std::to_string(j) + ")");
    require(std::isfinite(o.sigma) && o.sigma > 0, "sigma must be finite and > 0");
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
        : ref_(ref), w_(w), dat_(dat), ctr_(ctr), o_(o), ops_(ops),
          m_(static_cast<int>(ctr.rows)),
          n_(static_cast<double>(ref.rows + dat.rows)),
          gamma_(1.0 / (2.0 * o.sigma * o.sigma)),
          dense_(ctr.rows <= o.dense_hessian_max_m) {
        double wsum = 0.0;
        for (std::int64_t i = 0; i < ref.rows; ++i) wsum += w[i];
        cscale_.assign(m_, (static_cast<double>(dat.rows) + wsum) / n_);
        if (cscale) cscale_.assign(cscale, cscale + m_);
        factor_kmm();
    }

    int m() const { return m_; }

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
        dense::trsv_upper(T_.data(), m_, true, g.data());
        for (int j = 0; j < m_; ++j) g[j] += lam * beta[j];
        return g;
    }

    // Gradient g_beta at the current f, and the Hessian data of this Newton step: the
    // weights l''(f)/n for the streamed product, or, in dense mode, W = B^T diag(l''/n) B
    // with the Nystrom features B = K T^{-1} (one pass, which also yields g_beta).
    std::vector<double> prepare_step(const std::vector<double>& f_ref, const std::vector<double>& f_dat,
                                     const std::vector<double>& beta, double lam) {
        d_ref_.resize(ref_.rows);
        d_dat_.resize(dat_.rows);
        for (std::int64_t i = 0; i < ref_.rows; ++i) d_ref_[i] = w_[i] * sigmoid_prime(f_ref[i]) / n_;
        for (std::int64_t i = 0; i < dat_.rows; ++i) d_dat_[i] = sigmoid_prime(f_dat[i]) / n_;
        if (!dense_) return gradient(f_ref, f_dat, beta, lam);
        std::vector<double> u_ref, u_dat;
        first_derivatives(f_ref, f_dat, u_ref, u_dat);
        W_.assign(static_cast<size_t>(m_) * m_, 0.0);
        std::vector<double> g(m_), w2(W_.size()), g2(m_);
        ops_.feature_gram(ref_, ctr_, gamma_, T_.data(), d_ref_.data(), u_ref.data(), W_.data(), g.data());
        ops_.feature_gram(dat_, ctr_, gamma_, T_.data(), d_dat_.data(), u_dat.data(), w2.data(), g2.data());
        for (size_t k = 0; k < W_.size(); ++k) W_[k] += w2[k];
        for (int j = 0; j < m_; ++j) g[j] += g2[j] + lam * beta[j];
        return g;
    }

    // A = chol(T diag(l''(f_c)) T^T / n + lam I) with f_c = T^T beta (Falkon's 1/n, not 1/M).
    void precondition(const std::vector<double>& beta, double lam) {
        std::vector<double> fc(beta);
        dense::trmv_upper(T_.data(), m_, true, fc.data());
        A_ = T_;
        for (int j = 0; j < m_; ++j) {  // scale column j of the upper factor by sqrt(W_j)
            const double s = std::sqrt(cscale_[j] * sigmoid_prime(fc[j]));
            double* col = A_.data() + static_cast<size_t>(j) * m_;
            for (int i = 0; i <= j; ++i) col[i] *= s;
        }
        ops_.lauum_upper(A_.data(), m_);
        for (int j = 0; j < m_; ++j) {
            double* col = A_.data() + static_cast<size_t>(j) * m_;
            for (int i = 0; i <= j; ++i) col[i] /= n_;
            col[j] += lam;
        }
        const int info = ops_.cholesky_upper(A_.data(), m_);
        if (info != 0)
            throw std::runtime_error(
                "preconditioner: Cholesky of T W T^T/n + lambda I failed (pivot " + std::to_string(info) +
                "); lambda may be too small for these centers");
    }

    // The preconditioned Hessian product A^-T (T^-T H T^-1 + lam I) A^-1 s.
    std::vector<double> hessian_product(const std::vector<double>& s, double lam) const {
        std::vector<double> sa(s);
        dense::trsv_upper(A_.data(), m_, false, sa.data());
        std::vector<double> h(m_, 0.0);
        if (dense_) {  // T^-T H T^-1 = W, formed once per step
            for (int a = 0; a < m_; ++a) {
                const double* row = W_.data() + static_cast<size_t>(a) * m_;
                double acc = 0.0;
                for (int b = 0; b < m_; ++b) acc += row[b] * sa[b];
                h[a] = acc;
            }
        } else {  // streamed: T^-T K^T (l'' * (K T^-1 sa)), one pass over the data
            std::vector<double> v(sa), tmp(m_);
            dense::trsv_upper(T_.data(), m_, false, v.data());
            ops_.kernel_fused(ref_, ctr_, gamma_, v.data(), d_ref_.data(), h.data());
            ops_.kernel_fused(dat_, ctr_, gamma_, v.data(), d_dat_.data(), tmp.data());
            for (int j = 0; j < m_; ++j) h[j] += tmp[j];
            dense::trsv_upper(T_.data(), m_, true, h.data());
        }
        for (int j = 0; j < m_; ++j) h[j] += lam * sa[j];
        dense::trsv_upper(A_.data(), m_, true, h.data());
        return h;
    }

    void solve_A(std::vector<double>& x, bool trans) const { dense::trsv_upper(A_.data(), m_, trans, x.data()); }
    void solve_T(std::vector<double>& x, bool trans) const { dense::trsv_upper(T_.data(), m_, trans, x.data()); }

private:
    void factor_kmm() {
        T_.assign(static_cast<size_t>(m_) * m_, 0.0);
        ops_.kernel_block(ctr_, ctr_, gamma_, T_.data(), m_);  // symmetric: row- = column-major
        const double jitter = o_.pc_epsilon * m_;
        for (int j = 0; j < m_; ++j) T_[static_cast<size_t>(j) * m_ + j] += jitter;
        const int info = ops_.cholesky_upper(T_.data(), m_);
        if (info != 0)
            throw std::runtime_error(
                "Cholesky of K_MM + eps*M*I failed (pivot " + std::to_string(info) +
                "): centers are (nearly) duplicated or sigma is too large for them; "
                "increase pc_epsilon or use fewer centers");
    }

    MatrixView ref_;
    const double* w_;
    MatrixView dat_, ctr_;
    const KernelFitOptions& o_;
    const KernelOps& ops_;
    int m_;
    double n_, gamma_;
    bool dense_;
    std::vector<double> cscale_, T_, A_, d_ref_, d_dat_, W_;  // W_: dense mode's T^-T H_data T^-1
};

struct CgOutcome {
    std::vector<double> x;
    int iterations = 0;
    double residual = 0.0;
    bool converged = false;
};

// Conjugate gradient from x = 0 on the preconditioned system; stops when ||r|| < tol.
CgOutcome conjugate_gradient(const Problem& p, const std::vector<double>& b, double lam, double tol,
                             int max_iter) {
    CgOutcome out;
    const int m = p.m();
    out.x.assign(m, 0.0);
    std::vector<double> r(b), d(b);
    double rs = dotv(r, r);
    out.residual = std::sqrt(rs);
    if (out.residual < tol) {
        out.converged = true;
        return out;
    }
    for (int it = 0; it < max_iter; ++it) {
        const std::vector<double> ad = p.hessian_product(d, lam);
        const double dad = dotv(d, ad);
        if (!(dad > 0)) break;  // breakdown: the operator is SPD, so only roundoff gets here
        const double a = rs / dad;
        for (int j = 0; j < m; ++j) {
            out.x[j] += a * d[j];
            r[j] -= a * ad[j];
        }
        const double rs_new = dotv(r, r);
        out.iterations = it + 1;
        out.residual = std::sqrt(rs_new);
        if (out.residual < tol) {
            out.converged = true;
            break;
        }
        const double bcoef = rs_new / rs;
        for (int j = 0; j < m; ++j) d[j] = r[j] + bcoef * d[j];
        rs = rs_new;
    }
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

KernelFitResult fit_kernel_nplm(MatrixView reference, const double* reference_weights,
                                MatrixView data, MatrixView centers, const double* center_scale,
                                const KernelFitOptions& o, const KernelOps& ops) {
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

KernelFitResult fit_kernel_nplm(MatrixView reference, const double* reference_weights,
                                MatrixView data, MatrixView centers, const double* center_scale,
                                const KernelFitOptions& options) {
    const auto ops = make_cpu_ops(options.threads);
    return fit_kernel_nplm(reference, reference_weights, data, centers, center_scale, options, *ops);
}

}  // namespace fastnplm
