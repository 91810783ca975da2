#pragma once
// Kernel-NPLM newton-step fits of many datasets against one reference: the calibration's toys,
// and the observed data through the same solver, at any M.
//
// Same estimator as fit_kernel_nplm with Solver::NewtonStep and one penalty (a single Newton step
// from f = 0, CG on the Falkon-preconditioned system, stopping at cg_tol), with one definition
// fixed for all datasets: the preconditioner is built for the expected size n0 = N_R + sum(w)
// instead of each dataset's own n = N_R + N_D (with the pooled center weight, N_D is likewise
// replaced by sum(w)). Preconditioning changes only how fast CG gets there: with a tight cg_tol
// both give the same step; at the published tolerance the two early-stopped steps differ by a
// fraction of it (measured in bench/calibration.py and tests/python/test_shared.py).
//
// What is shared, once per (reference, centers, sigma, lam): the factors T = chol(K_MM + eps M I)
// and A = chol(T C T^T / n0 + lam I), and the reference's gradient K_RM^T w. Per dataset: the data
// passes (gradient, one fused Hessian product per CG iteration, f on the data). Per block of
// datasets solved together: the reference's Hessian products of all of them in one pass
// (kernel_gram_mm, one kernel evaluation per reference-center pair per CG iteration), the
// triangular solves as many-column sweeps, and f on the reference (the t term) in one pass.
// Each dataset's result is independent of the block it is solved in and of the thread count.
#include <cstdint>
#include <memory>
#include <vector>

#include "fastnplm/kernel_nplm.hpp"  // NotPositiveDefinite
#include "fastnplm/kernel_ops.hpp"
#include "fastnplm/view.hpp"

namespace fastnplm {

struct SharedFitOptions {
    double sigma = 1.0;                     ///< Gaussian width, > 0
    double lam = 1e-6;                      ///< penalty, > 0
    double cg_tol = 3.1622776601683794e-4;  ///< absolute tolerance on the preconditioned residual norm
    int max_iter = 1000;                    ///< CG iterations
    double pc_epsilon = 1e-13;              ///< jitter: T = chol(K_MM + pc_epsilon * M * I)
    int threads = 0;                        ///< <= 0: all cores
};

struct SharedFitResult {
    std::vector<double> alpha;   ///< (M,) coefficients
    std::vector<double> f_data;  ///< (N_D,) f at the data events
    double t = 0.0;              ///< 2 [sum_D f - sum_R w (e^f - 1)]
    double beta_sq = 0.0;        ///< ||beta||^2 = alpha^T (K_MM + eps M I) alpha: the penalty is lam/2 of it
    int cg_iterations = 0;
    double cg_residual = 0.0;
    bool converged = false;
};

class SharedReference {
public:
    /// reference (N_R, d) with weights (N_R,) of either sign summing to a positive total; centers
    /// (M, d); center_scale (M,) the class weight of each center, or nullptr for the pooled weight.
    /// The views must outlive the object. Throws std::invalid_argument on bad input,
    /// std::runtime_error if a factorisation fails; fit throws NotPositiveDefinite (kernel_nplm.hpp)
    /// when a dataset's CG meets non-positive curvature with some weight negative.
    SharedReference(MatrixView reference, const double* weights, MatrixView centers, const double* center_scale,
                    const SharedFitOptions& options);

    /// Fits each dataset (N_D >= 1 events, d features); all are solved together.
    std::vector<SharedFitResult> fit(const std::vector<MatrixView>& datasets) const;

    int m() const { return m_; }
    /// The expected size n0 = N_R + sum(w) the preconditioner is built for.
    double n0() const { return n0_; }

private:
    MatrixView ref_, ctr_;
    std::vector<double> w_, w4_;
    SharedFitOptions o_;
    std::unique_ptr<KernelOps> ops_;
    int m_;
    double gamma_, wsum_, n0_;
    bool signed_ = false;        // some weight < 0: non-positive curvature is an error
    std::vector<double> T_, A_;  // upper factors, column-major M x M
    std::vector<double> g_ref_;  // K_RM^T w
};

}  // namespace fastnplm
