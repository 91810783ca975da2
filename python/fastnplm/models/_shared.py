"""The newton-step estimator for many datasets against one reference at any M (``hessian="shared"``).

A thin layer over the core's ``SharedReference`` (cpp/include/fastnplm/kernel_shared.hpp): the
Falkon-preconditioned CG of the core's streamed fit, run on a block of datasets in lockstep. The
reference's work is shared: the factors of K_MM and of the preconditioner once per width, the
reference's share of every Hessian product once per CG iteration for the whole block, and the
reference term of t in one pass for the block. Each dataset keeps its own passes over its events.

The estimator differs from the core's plain fit in one definition: the preconditioner is built
for the expected size n0 = N_R + sum(w) rather than each dataset's N_R + N_D, so that one factor
serves every toy. The system solved is each dataset's own; a tight ``cg_tol`` gives the same step
as the plain fit, and at the published tolerance the two early-stopped steps agree to ~1e-5 in t
(tests/python/test_shared.py). Observed data go through this same solver (``Calibration.model``).

Where it pays: large M, where the spectral path's eigendecomposition (10 M^3) and its per-toy
O(N_D M r) projection cost more than a plain fit; see the cost model in ``_spectral``.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from .. import _core
from ._kernel_defs import PC_EPSILON


class SharedSolver:
    """Everything about one (centers, sigma, lam, reference) that no dataset changes.

    Parameters
    ----------
    centers : (M, d) array
    center_weights : (M,) class weight of each center, or None for the pooled weight
    sigma, lam : the model's width and penalty (lam > 0)
    ref, w : reference events (N_R, d) and their weights
    cg_tol, max_iter : CG stopping, as in the core
    threads : core threads (0: all)
    """

    def __init__(self, centers, center_weights, sigma, lam, ref, w, cg_tol, max_iter, threads=0):
        if not lam > 0:
            raise ValueError("hessian='shared' needs lam > 0")
        self.centers, self.sigma, self.lam = centers, float(sigma), float(lam)
        self.ref, self.w = ref, w
        self.threads = threads or 0
        self.core = _core.SharedReference(ref, w, centers, center_weights, self.sigma, self.lam, cg_tol, max_iter,
                                          PC_EPSILON, self.threads)

    def fit_many(self, datasets) -> list:
        """The core's results (``_core.SharedFitResult``: alpha, f_data, t, beta_sq, cg_iterations,
        cg_residual, converged), one per dataset; each independent of the others in the list."""
        return self.core.fit([np.ascontiguousarray(d, dtype=np.float64) for d in datasets])

    def t_batch(self, datasets) -> list:
        """(t, converged, CG iterations) per dataset."""
        return [(r.t, r.converged, r.cg_iterations) for r in self.fit_many(datasets)]

    def fit_result(self, data) -> SimpleNamespace:
        """The fields of the core's fit result for one dataset (KernelNPLM.fit, hessian="shared")."""
        r = self.fit_many([data])[0]
        f_ref = _core.kernel_mv(self.ref, self.centers, self.sigma, r.alpha, self.threads)
        n = self.ref.shape[0] + data.shape[0]
        loss = (self.w @ np.logaddexp(0.0, f_ref) + np.logaddexp(0.0, -r.f_data).sum()) / n
        penalty = 0.5 * self.lam * r.beta_sq
        return SimpleNamespace(alpha=r.alpha, t=r.t, objective=float(loss + penalty), converged=r.converged,
                               cg_iterations=[r.cg_iterations], cg_residuals=[r.cg_residual], newton_iterations=1,
                               grad_norm=float("nan"), f_reference=f_ref, f_data=r.f_data)
