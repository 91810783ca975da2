#pragma once
// The backend interface for the Gaussian-kernel primitives. Algorithms (the Newton/CG
// solver) are written once against it; each backend implements only these primitives.
//
// k(x, c) = exp(-gamma * ||x - c||^2), gamma = 1 / (2 sigma^2).
// Every product that sums over the rows of x does so in a fixed order that depends
// on the number of rows only, so results do not depend on the number of threads.
#include <cstdint>
#include <memory>

#include "fastnplm/view.hpp"

namespace fastnplm {

class KernelOps {
public:
    virtual ~KernelOps() = default;

    /// out[i * ld + j] = k(x_i, c_j): x is (n, d), c is (m, d), out is (n, m) with leading dim ld >= m.
    virtual void kernel_block(MatrixView x, MatrixView c, double gamma, double* out,
                              std::int64_t ld) const = 0;

    /// out = K(x, c) v: v has m entries, out has n entries.
    virtual void kernel_mv(MatrixView x, MatrixView c, double gamma, const double* v,
                           double* out) const = 0;

    /// out_q = sum_i w_i (exp((K(x, c) V)_iq) - 1) for b columns of V (m, b) row-major: the
    /// reference term of t for b fits at once, without storing the (n, b) products.
    virtual void kernel_mm_expm1_sum(MatrixView x, MatrixView c, double gamma, const double* v, std::int64_t b,
                                     const double* w, double* out) const = 0;

    /// Projected kernel features in one pass: with F = K(x, c) G (G: m x r row-major), out_f (n x r,
    /// or nullptr) = F, out_w (r x r, or nullptr) = F^T diag(w) F, out_g (r, or nullptr) = F^T u.
    virtual void feature_project(MatrixView x, MatrixView c, double gamma, const double* g, std::int64_t r,
                                 const double* w, const double* u, double* out_f, double* out_w,
                                 double* out_g) const = 0;

    /// out (r x r) = F^T diag(w) F for stored feature rows F (n, r).
    virtual void features_gram(MatrixView f, const double* w, double* out) const = 0;

    /// out_q = sum_i w_i (exp((F V)_iq) - 1) for stored feature rows F (n, r) and b columns of V (r, b)
    /// row-major: the reference term of t for b fits in a precomputed feature basis.
    virtual void features_expm1_sum(MatrixView f, const double* v, std::int64_t b, const double* w,
                                    double* out) const = 0;

    /// out = K(x, c)^T u: u has n entries, out has m entries (overwritten).
    virtual void kernel_tmv(MatrixView x, MatrixView c, double gamma, const double* u,
                            double* out) const = 0;

    /// out = K(x, c)^T (w ∘ (K(x, c) v)), one kernel evaluation per pair: v, out have m entries, w has n.
    virtual void kernel_fused(MatrixView x, MatrixView c, double gamma, const double* v,
                              const double* w, double* out) const = 0;

    /// Nystrom-feature products in one pass: with B = K(x, c) T^{-1} (t_upper: the m x m upper
    /// Cholesky factor of K_MM, column-major), out_w (m x m) = B^T diag(w) B and out_g (m) = B^T u;
    /// w, u have n entries.
    virtual void feature_gram(MatrixView x, MatrixView c, double gamma, const double* t_upper,
                              const double* w, const double* u, double* out_w, double* out_g) const = 0;

    /// The preconditioner's O(M^3) work on an n x n column-major matrix a (upper triangle):
    /// Cholesky a = U^T U in place; returns 0, or LAPACK's info (1-based failing column).
    virtual int cholesky_upper(double* a, int n) const = 0;

    /// U <- U U^T in place for the upper-triangular U in u (n x n column-major).
    virtual void lauum_upper(double* u, int n) const = 0;

};

/// The multithreaded, vectorised CPU backend; threads <= 0 means all available cores.
std::unique_ptr<KernelOps> make_cpu_ops(int threads = 0);

/// Number of threads the CPU backend uses when asked for `threads` (<= 0: all cores).
int resolve_threads(int threads);

}  // namespace fastnplm
