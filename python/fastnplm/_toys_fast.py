"""Toys that share the reference: the calibration fast path of the newton-step estimator.

With the centers fixed (drawn from the reference, or given) and f = 0 at the start of the
single Newton step, the reference's part of the step is the same for every toy:

    W = (W_R + W_D) / n,   g = (g_R + g_D) / n,   n = N_R + N_D,

in the Nystrom-feature coordinates of the core's dense mode (B = K T^-1, T = chol(K_MM + eps M I)):
W_R = B_R^T diag(w/4) B_R and g_R = B_R^T (w/2) once per width; each toy adds its data part
W_D = B_D^T B_D / 4, g_D = -B_D^T 1 / 2 (O(N_D M^2)) and runs the same preconditioned CG
(A = chol(T diag(l''_c) T^T / n + lam I), stop on ||r|| < cg_tol) on M x M matrices. f on the
reference for a batch of toys is one pass over K_R [alpha_1 .. alpha_b]. This is the step the
core computes with hessian="dense" (tests check toy by toy against plain fits).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular as _solve_triangular

from . import _core
from .kernel import PC_EPSILON, KernelNPLM, reference_center_indices


def applicable(models) -> bool:
    """Whether every width's model is a single dense-mode Newton step on data-independent centers."""
    for m in models:
        if m.solver != "newton-step" or len(m.penalties) != 1:
            return False
        if m.centers is None and m.center_pool != "reference":
            return False
        dense = m.hessian == "dense" or (m.hessian == "auto" and m.M <= 200)
        if not dense:
            return False
    return True


class SharedReference:
    """The toy-independent part of one width: centers, T, and the reference's W_R, g_R."""

    def __init__(self, model: KernelNPLM, ref: np.ndarray, w: np.ndarray):
        self.model, self.ref, self.w = model, ref, w
        if model.centers is not None:
            self.centers, self.center_w = model.centers, None  # classes unknown: pooled mean weight
        else:
            if model.M > ref.shape[0]:
                raise ValueError(f"M={model.M} is larger than the reference sample ({ref.shape[0]} events)")
            idx = reference_center_indices(ref.shape[0], model.M, model.seed)
            self.centers, self.center_w = ref[idx], w[idx]
        self.sigma, m = model.sigma, self.centers.shape[0]
        k = _core.kernel_matrix(self.centers, self.centers, self.sigma, model.threads)
        self.L = np.linalg.cholesky(k + PC_EPSILON * m * np.eye(m))  # T = L^T (upper)
        self.T = np.ascontiguousarray(self.L.T)
        self.W_R, self.g_R = _core.feature_gram(ref, self.centers, self.sigma, self.L, w / 4, w / 2, model.threads)
        self.w_sum = float(w.sum())

    def alpha(self, data: np.ndarray):
        """alpha of one toy's Newton step, f on its data, and CG diagnostics."""
        m = self.model
        n_d = data.shape[0]
        n = self.ref.shape[0] + n_d
        W_D, g_D = _core.feature_gram(data, self.centers, self.sigma, self.L, np.full(n_d, 0.25),
                                      np.full(n_d, -0.5), m.threads)
        W = (self.W_R + W_D) / n
        g = (self.g_R + g_D) / n
        cw = (self.center_w if self.center_w is not None
              else np.full(self.centers.shape[0], (n_d + self.w_sum) / n)) / 4.0  # l''(0) at the centers
        S = (self.T * cw[None, :]) @ self.T.T / n + m.lam * np.eye(self.centers.shape[0])
        A = np.linalg.cholesky(S).T
        x, iters, resid, converged = _cg(W, m.lam, A, solve_triangular(A, g, trans="T"), m.cg_tol, m.max_iter)
        beta = -solve_triangular(A, x)
        alpha = solve_triangular(self.T, beta)
        return alpha, _core.kernel_mv(data, self.centers, self.sigma, alpha, m.threads), iters, converged

    def t_batch(self, alphas, f_data):
        """t of a batch of toys: the reference term sum_R w (e^f - 1) of all of them in one pass,
        without storing f on the reference (kernel_mm_expm1_sum)."""
        V = np.ascontiguousarray(np.stack(alphas, axis=1))
        ref_terms = _core.kernel_mm_expm1_sum(self.ref, self.centers, self.sigma, V, self.w, self.model.threads)
        return [2.0 * (fd.sum() - ref_terms[k]) for k, fd in enumerate(f_data)]


def solve_triangular(a, b, trans="N"):
    """Upper-triangular solve; inputs are finite by construction, so scipy's check is skipped."""
    return _solve_triangular(a, b, trans=trans, check_finite=False)


def _cg(W, lam, A, b, tol, max_iter):
    """The core's CG on A^-T (W + lam I) A^-1 x = b from x = 0, stopping when ||r|| < tol.
    A^-1 is applied by triangular solves, as in the core: an explicit inverse of the
    preconditioner factor moved t by 1e-3 relative at M = 1000, lambda = 1e-6."""
    def hp(s):
        sa = solve_triangular(A, s)
        return solve_triangular(A, W @ sa + lam * sa, trans="T")

    x = np.zeros_like(b)
    r, d = b.copy(), b.copy()
    rs = r @ r
    if np.sqrt(rs) < tol:
        return x, 0, float(np.sqrt(rs)), True
    for it in range(max_iter):
        ad = hp(d)
        dad = d @ ad
        if not dad > 0:
            return x, it, float(np.sqrt(rs)), False
        a = rs / dad
        x += a * d
        r -= a * ad
        rs_new = r @ r
        if np.sqrt(rs_new) < tol:
            return x, it + 1, float(np.sqrt(rs_new)), True
        d = r + (rs_new / rs) * d
        rs = rs_new
    return x, max_iter, float(np.sqrt(rs)), False
