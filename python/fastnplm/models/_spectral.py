"""The newton-step estimator in the eigenbasis of K_MM (``hessian="spectral"``), and toys that
share the reference.

Why a change of basis leaves the estimator alone. The core parametrises f by beta = T alpha
with T^T T = K~ = K_MM + eps M I (Cholesky) and runs CG preconditioned by
S = T diag(l''_c) T^T / n + lam I. Mapped back to alpha, the CG iterates minimise the same
quadratic over Krylov spaces built from K~ C K~ / n + lam K~ and H / n + lam K~, and the
stopping norm is r^T (K~ C K~ / n + lam K~)^-1 r: neither depends on which factor T of K~ is
used. So any T with T^T T = K~ gives the same step in exact arithmetic. Here T = Lambda^1/2 V^T
from K~ = V Lambda V^T: the Nystrom features are phi(x) = Lambda^-1/2 V^T k_M(x), and with equal
center weights the preconditioner is diagonal (otherwise it is diagonalised once, in the
kept directions).

What is dropped. On smooth kernels K_MM has few eigenvalues above the jitter eps M (in 1D,
M = 1000, sigma = 0.3: 51 of 1000 above 1e-14 of the largest). An eigen-direction is kept
when its energy in the reference Hessian, sum_R w/4 phi_i^2, reaches spectral_tol * n lam
(ranked on a fixed subsample of the reference). The dropped directions carry rounding-level
content: on the 1D bench problem two toys' exact steps moved by 5e-9 and 3.5e-8 relative in t
at the default spectral_tol = 1e-8 (76 of 1000 directions kept); 1.3e-8 at 1e-9 (182 kept),
6e-9 at 1e-10 (466 kept) and 5.5e-9 with every direction kept, the roundoff floor there.

Accuracy against the core's Cholesky basis: roundoff times the conditioning. Exact steps
agree to ~1e-9 relative while cond(K_MM) stays below ~1e12; when K_MM is singular to
working precision (cond ~1e18: many centers per width) independent exact solvers differ by
up to ~1e-6 (an 80-bit reference solve put both this path and the core ~5e-7 from it).
Observed data must go through this same solver (``Calibration.model``), so that the
calibration describes the estimator actually used.

Reference weights of either sign: as in the core, the preconditioner takes the magnitudes of the
centers' class weights, the ranking the magnitudes |w| of the reference weights (both equal to
the weights when all are positive), and CG meeting non-positive curvature with some weight
negative is ``NotPositiveDefiniteError``.

Cost, with r kept directions: once per width O(M^3 + N_R M r) (plus N_s M^2 for the ranking);
per toy O(N_D M r + N_D r^2 + N_R r). The reference term sum_R w (e^f - 1) of a batch of toys
is one pass over the stored reference features (``_core.features_expm1_sum``).
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import _core
from .._info import resolve_backend
from ._kernel_defs import PC_EPSILON, not_positive_definite

RANKING_EVENTS = 10000     # reference events that rank the directions (every k-th event)
FEATURE_BYTES = 2 << 30    # store the reference features up to this size; stream K otherwise


class Step:
    """One toy's (or dataset's) Newton step: beta in the kept basis, f on the data, CG record."""

    __slots__ = ("beta", "f_data", "iterations", "residual", "converged")

    def __init__(self, beta, f_data, iterations, residual, converged):
        self.beta, self.f_data = beta, f_data
        self.iterations, self.residual, self.converged = iterations, residual, converged


class SpectralReference:
    """Everything about one (centers, sigma, lam, reference) that no dataset changes.

    Parameters
    ----------
    centers : (M, d) array
    center_weights : (M,) class weight of each center (w_e for a reference event, 1 for a
        data event; its magnitude is used), or None for the pooled mean weight (N_D + sum w) / n
        of the core.
    sigma, lam : the model's width and penalty (lam > 0)
    ref, w : reference events (N_R, d) and their weights
    cg_tol, max_iter : CG stopping, as in the core
    threads : core threads (0: all)
    spectral_tol : directions with reference energy below spectral_tol * n * lam are dropped
    backend : "cpu" or "cuda" (resolved): where the projected-feature passes run
    """

    def __init__(self, centers, center_weights, sigma, lam, ref, w, cg_tol, max_iter, threads=0,
                 spectral_tol=1e-8, backend="cpu"):
        if not lam > 0:
            raise ValueError("hessian='spectral' needs lam > 0 (the kept directions are chosen relative to n * lam)")
        self.centers, self.sigma, self.lam = centers, float(sigma), float(lam)
        self.ref, self.w, self.w_sum = ref, w, float(w.sum())
        self.cg_tol, self.max_iter, self.threads, self.spectral_tol = cg_tol, max_iter, threads, spectral_tol
        self.backend = backend
        self.signed = bool((w < 0).any())  # the Hessian may be indefinite
        if center_weights is not None:
            center_weights = np.abs(center_weights)  # a preconditioner scale (see the module's notes)
        m = centers.shape[0]
        k = _core.kernel_matrix(centers, centers, self.sigma, threads)
        ev, vec = np.linalg.eigh(k + PC_EPSILON * m * np.eye(m))
        ev, vec = ev[::-1], vec[:, ::-1]  # descending
        if not ev[-1] > 0:
            raise ValueError("K_MM + eps*M*I is not positive definite: centers are (nearly) duplicated "
                             "or sigma is too large for them")
        g_full = vec / np.sqrt(ev)
        keep = self._rank(g_full)
        g = g_full[:, keep]
        root = vec[:, keep] * np.sqrt(ev[keep])  # T^T restricted to the kept directions
        self.uniform = center_weights is None or np.all(center_weights == center_weights[0])
        if self.uniform:
            # T diag(c) T^T = c Lambda: diagonal already
            self.p = ev[keep] * (0.25 if center_weights is None else 0.25 * center_weights[0])
        else:
            p, u = np.linalg.eigh((root.T * (0.25 * center_weights)) @ root)
            self.p, g = p, g @ u
        self.g = np.ascontiguousarray(g)  # alpha = g beta; phi(x) = k_M(x) g
        self.r = self.g.shape[1]
        self.pooled_weight = center_weights is None
        store = ref.shape[0] * self.r * 8 <= FEATURE_BYTES
        self.features, self.w_ref, self.g_ref = _core.feature_project(ref, centers, self.sigma, self.g, 0.25 * w,
                                                                      0.5 * w, store, threads, backend)
        # On a device, the stored features are copied there once for all batches of toys (on the
        # CPU they are used where they are: a second copy would only cost memory).
        self.resident = None
        if self.features is not None and resolve_backend(backend) == "cuda":
            self.resident = _core.ResidentFeatures(self.features, self.w, threads, backend)

    def _rank(self, g_full):
        """Indices of the eigen-directions whose reference energy reaches spectral_tol * n * lam."""
        n_r = self.ref.shape[0]
        idx = np.arange(0, n_r, max(1, n_r // RANKING_EVENTS))
        phi = _core.feature_project(self.ref[idx], self.centers, self.sigma, g_full, threads=self.threads,
                                    backend=self.backend)[0]
        ws = np.abs(self.w[idx])
        energy = (0.25 * ws) @ (phi * phi) * (np.abs(self.w).sum() / ws.sum())
        keep = np.flatnonzero(energy >= self.spectral_tol * (n_r + self.w_sum) * self.lam)
        return keep if keep.size else np.array([int(np.argmax(energy))])

    def solve(self, data) -> Step:
        """The Newton step from f = 0 for one dataset (its events (N_D, d))."""
        n_d = data.shape[0]
        n = self.ref.shape[0] + n_d
        phi, w_dat, g_dat = _core.feature_project(data, self.centers, self.sigma, self.g, np.full(n_d, 0.25),
                                                  np.full(n_d, -0.5), True, self.threads, self.backend)
        w_mat = (self.w_ref + w_dat) / n
        grad = (self.g_ref + g_dat) / n
        p = self.p * ((n_d + self.w_sum) / n if self.pooled_weight else 1.0)
        a = 1.0 / np.sqrt(p / n + self.lam)  # the diagonal preconditioner A^-1
        x, iters, resid, conv = _cg(w_mat, self.lam, a, a * grad, self.cg_tol, self.max_iter, self.signed)
        beta = -a * x
        return Step(beta, phi @ beta, iters, resid, conv)

    def alpha(self, beta):
        return self.g @ beta

    def reference_terms(self, betas):
        """sum_R w (e^f - 1) for each beta (list), in one pass; each value independent of the others."""
        b = np.ascontiguousarray(np.stack(betas, axis=1))
        if self.features is not None:
            if self.resident is not None:
                return self.resident.expm1_sum(b)
            return _core.features_expm1_sum(self.features, b, self.w, self.threads, self.backend)
        return _core.kernel_mm_expm1_sum(self.ref, self.centers, self.sigma, np.ascontiguousarray(self.g @ b),
                                         self.w, self.threads)

    def t_values(self, steps):
        """t of a batch of steps: 2 [sum_D f - sum_R w (e^f - 1)]."""
        terms = self.reference_terms([s.beta for s in steps])
        return [2.0 * (s.f_data.sum() - terms[k]) for k, s in enumerate(steps)]

    def t_batch(self, datasets):
        """(t, converged, CG iterations) per dataset, the reference term of all in one pass."""
        steps = [self.solve(d) for d in datasets]
        return [(t, s.converged, s.iterations) for t, s in zip(self.t_values(steps), steps)]

    def f_reference(self, beta):
        if self.features is not None:
            return self.features @ beta
        return _core.kernel_mv(self.ref, self.centers, self.sigma, self.alpha(beta), self.threads)

    def fit_result(self, data) -> SimpleNamespace:
        """The fields of the core's fit result for one dataset (KernelNPLM.fit, hessian="spectral")."""
        step = self.solve(data)
        f_ref = self.f_reference(step.beta)
        n = self.ref.shape[0] + data.shape[0]
        loss = (self.w @ np.logaddexp(0.0, f_ref) + np.logaddexp(0.0, -step.f_data).sum()) / n
        return SimpleNamespace(alpha=self.alpha(step.beta), t=self.t_values([step])[0],
                               objective=float(loss + 0.5 * self.lam * (step.beta @ step.beta)),
                               converged=step.converged, cg_iterations=[step.iterations],
                               cg_residuals=[step.residual], newton_iterations=1, grad_norm=float("nan"),
                               f_reference=f_ref, f_data=step.f_data)


def _cg(w_mat, lam, a, b, tol, max_iter, signed=False):
    """The core's CG on A^-T (W + lam I) A^-1 x = b from x = 0, A^-1 = diag(a), stopping when ||r|| < tol.
    Curvature d^T A d <= 0 stops it (roundoff, with positive weights), or with ``signed`` (some
    weight negative) raises NotPositiveDefiniteError."""
    a2lam = lam * a * a

    def op(v):
        return a * (w_mat @ (a * v)) + a2lam * v

    x = np.zeros_like(b)
    r, d = b.copy(), b.copy()
    rs = r @ r
    if np.sqrt(rs) < tol:
        return x, 0, float(np.sqrt(rs)), True
    for it in range(max_iter):
        ad = op(d)
        dad = d @ ad
        if not dad > 0:
            if signed and not np.isnan(dad):
                raise not_positive_definite(f"conjugate gradient met curvature {dad:.6g} <= 0 at lam = {lam:.6g}")
            return x, it, float(np.sqrt(rs)), False
        step = rs / dad
        x += step * d
        r -= step * ad
        rs_new = r @ r
        if np.sqrt(rs_new) < tol:
            return x, it + 1, float(np.sqrt(rs_new)), True
        d = r + (rs_new / rs) * d
        rs = rs_new
    return x, max_iter, float(np.sqrt(rs)), False


# --- the cost model: shared spectral toys or one plain fit per toy -------------------------------
# Rough per-thread rates of this project's CPU backend and of BLAS-3 (bench/kernel_fit.py,
# bench/calibration.py on the 2-core bench machine); only their ratios matter for the choice.
_KERNEL_S = lambda d: (1.0 + 0.3 * d) * 1e-9  # noqa: E731  one kernel evaluation
_GEMM_S = 1.0 / 25e9                           # one flop in a BLAS-3 product
_GRAM_S = 1.0 / 8e9                            # one flop in the core's feature-Gram pass
_EIGH_FLOPS = 10.0                             # x M^3
_CG_ITERATIONS = 20                            # assumed for a streamed plain fit


def spectral_seconds(m, n_ref, n_data, d, toys):
    """Estimated single-thread seconds of one width on the shared path (r = M: an upper bound)."""
    ns = min(n_ref, RANKING_EVENTS)
    setup = _EIGH_FLOPS * m**3 * _GEMM_S + (ns + n_ref) * m * (_KERNEL_S(d) + 2 * m * _GEMM_S)
    per_toy = n_data * m * (_KERNEL_S(d) + 2 * m * _GEMM_S) + 2 * n_data * m * m * _GEMM_S + 2 * n_ref * m * _GEMM_S
    if n_ref * m * 8 > FEATURE_BYTES:  # the reference term streams the kernel instead
        per_toy += n_ref * m * (_KERNEL_S(d) / 32 + 2 * _GEMM_S)
    return setup + toys * per_toy


def shared_seconds(m, n_ref, n_data, d, toys, block=32):
    """Estimated single-thread seconds of one width on the shared path (``fastnplm.models._shared``):
    three M^3/3 factorisations, then per toy its own data passes and its share of the block's
    reference pass (the kernel once per block, four flops per reference-center pair per toy)
    and triangular sweeps."""
    setup = 3 * m**3 / 3 * _GEMM_S * 2 + n_ref * m * _KERNEL_S(d)  # factorisations: about half the BLAS-3 rate
    it = _CG_ITERATIONS
    per_toy = ((it + 2) * n_data * m * (_KERNEL_S(d) + 4 * _GEMM_S)
               + (it + 1) * n_ref * m * (_KERNEL_S(d) / block + 4 * _GEMM_S)
               + it * 4 * m * m * _GEMM_S)
    return setup + toys * per_toy


def plain_seconds(m, n_ref, n_data, d, toys, dense):
    """Estimated single-thread seconds of one width fitted toy by toy through the core."""
    n = n_ref + n_data
    if dense:
        per_toy = n * m * (3 * _KERNEL_S(d) + 2 * m * _GRAM_S)  # feature-Gram pass, then f on both samples
    else:
        per_toy = (_CG_ITERATIONS + 3) * n * m * (_KERNEL_S(d) + 4 * _GEMM_S)
    return toys * (per_toy + 3 * m**3 / 3 * _GEMM_S * 2)  # as shared_seconds: the factorisations, per toy
