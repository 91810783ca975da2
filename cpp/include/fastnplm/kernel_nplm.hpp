#pragma once
// Kernel NPLM (Letizia et al. 2022) with the Falkon logistic solver (Meanti et al. 2020;
// Marteau-Ferey et al. 2019). See docs: docs/method.md section 2.
//
// Model f(x) = sum_j alpha_j exp(-||x - c_j||^2 / (2 sigma^2)). Objective
//   J(alpha) = (1/n) sum_i l_i(f(x_i)) + (lam/2) alpha^T (K_MM + eps M I) alpha,
// l = log(1 + e^{-f}) on data, w_e log(1 + e^{f}) on reference event e, n = N_R + N_D.
// (The jitter eps M I is the preconditioner's, as in Falkon; eps = 1e-13 by default.)
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "fastnplm/kernel_ops.hpp"
#include "fastnplm/view.hpp"

namespace fastnplm {

/// Thrown when a Newton step's weighted Hessian is not positive definite: with reference weights
/// of either sign, negative ones outweighing the rest near some center (Python: a ValueError,
/// fastnplm.models.NotPositiveDefiniteError).
class NotPositiveDefinite : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class Solver {
    NewtonStep,  ///< one Newton step per penalty, the first from f = 0 (published estimator)
    Newton,      ///< damped Newton iterations to the minimiser of J at the last penalty
};

struct KernelFitOptions {
    double sigma = 1.0;                   ///< Gaussian width, > 0
    std::vector<double> penalties{1e-6};  ///< penalty list; the last one is lambda
    Solver solver = Solver::NewtonStep;
    double cg_tol = 3.1622776601683794e-4;  ///< absolute tolerance on the preconditioned residual norm
    int max_iter = 1000;                    ///< CG iterations per Newton step
    double grad_tol = 1e-12;                ///< Newton solver: stop when ||dJ/dbeta|| falls below
    int max_newton = 100;                   ///< Newton solver: maximum Newton iterations
    double pc_epsilon = 1e-13;              ///< jitter: T = chol(K_MM + pc_epsilon * M * I)
    int threads = 0;                        ///< <= 0: all cores
    /// Hessian products: with M <= this, each Newton step makes one pass that forms the data
    /// Hessian in the preconditioned coordinates, W = B^T diag(l''/n) B with the Nystrom
    /// features B = K T^{-1} (and the gradient with it); CG iterations then cost O(M^2)
    /// instead of a pass over the data each. Same step, other rounding. 0: always stream.
    int dense_hessian_max_m = 0;
};

struct KernelFitResult {
    std::vector<double> alpha;         ///< (M,) coefficients
    double t = 0.0;                    ///< 2 [sum_D f - sum_R w (e^f - 1)]
    double objective = 0.0;            ///< J at the fitted alpha
    bool converged = false;            ///< every CG solve met cg_tol (and, Newton, the gradient met grad_tol)
    std::vector<int> cg_iterations;    ///< CG iterations of each Newton step
    std::vector<double> cg_residuals;  ///< final preconditioned residual norm of each Newton step
    int newton_iterations = 0;         ///< Newton steps taken
    double grad_norm = 0.0;            ///< Newton solver: ||dJ/dbeta|| at the fit (beta = T alpha); NaN for newton-step
    std::vector<double> f_reference;   ///< (N_R,) f at the reference events
    std::vector<double> f_data;        ///< (N_D,) f at the data events
};

/// Fits kernel NPLM. reference (N_R, d), data (N_D, d), centers (M, d); reference_weights
/// (N_R,) finite, of either sign, with a positive total; center_scale (M,) the class weight of each
/// center in the preconditioner (1 for a data event, w_e for reference event e; its magnitude is
/// used), or nullptr for the pooled mean weight. Throws std::invalid_argument on bad input,
/// NotPositiveDefinite when CG meets non-positive curvature with some weight negative (with
/// positive weights the Hessian is positive definite and only roundoff gets there: CG stops),
/// std::runtime_error if a factorisation fails.
KernelFitResult fit_kernel_nplm(MatrixView reference, const double* reference_weights, MatrixView data,
                                MatrixView centers, const double* center_scale, const KernelFitOptions& options,
                                const KernelOps& ops);

/// Same, on the CPU backend with options.threads threads.
KernelFitResult fit_kernel_nplm(MatrixView reference, const double* reference_weights, MatrixView data,
                                MatrixView centers, const double* center_scale, const KernelFitOptions& options);

/// NPLM test statistic 2 [sum_D f - sum_R w (e^f - 1)] from f on both samples.
double nplm_t(const double* f_reference, const double* reference_weights, std::int64_t n_reference,
              const double* f_data, std::int64_t n_data);

/// Name of the BLAS/LAPACK library the core was built with.
const char* blas_name();

}  // namespace fastnplm
