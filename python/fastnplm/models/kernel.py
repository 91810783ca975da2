"""Kernel NPLM: the estimator, its result, and the width heuristic.

Model, objective and solver are those of docs/method.md section 2 (Letizia et al.
2022, with Falkon's logistic solver), so published (M, sigma, lambda) settings carry over.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .. import _checks, _core
from .._info import BACKENDS, resolve_backend
from ._kernel_defs import PC_EPSILON, sigma_heuristic  # noqa: F401 (public here)
from ._shared import SharedSolver
from ._spectral import SpectralReference
from .nuisance import fit_kernel_with_nuisances

log = logging.getLogger("fastnplm")

SOLVERS = ("newton-step", "newton")
# the core's dense_hessian_max_m: the largest M for which the Hessian is formed densely.
# "auto": the dense step costs ~ n M^2 flops once, the streamed one ~ iterations x n M kernel
# evaluations; with the ~10-20 CG iterations of the default tolerance they break even near
# M = 250 on the bench machine (bench/kernel_fit.py), so auto takes dense up to M = 200.
HESSIAN_MODES = {"auto": 200, "stream": 0, "dense": 2**31 - 1, "spectral": None, "shared": None}
DEFAULT_CG_TOL = float(np.sqrt(1e-7))  # Falkon's tolerance in the published NPLM fits
DEFAULT_MAX_ITER = 1000
DEFAULT_GRAD_TOL = 1e-12
DEFAULT_SPECTRAL_TOL = 1e-8  # hessian="spectral": keep directions with reference energy >= this * n * lam


# Where random centers come from. "pooled": uniformly from reference and data together (the
# published policy; centers then depend on the data). The others use the reference alone, so the
# centers are the same for the data and every toy and calibrate shares the reference's work:
# "uniform" (alias "reference"): uniformly, so centers follow the reference density;
# "coverage": half uniformly, half by D^2 sampling (k-means++ seeding, Arthur & Vassilvitskii
# 2007) continued from them, so that low-density regions of the support also hold centers.
# The default is "uniform": "coverage" gains power at small widths in the tails but loses some
# at large ones (bench/results/centers_cpu.json, docs/centers.md).
CENTER_POOLS = ("uniform", "reference", "coverage", "pooled")
DEFAULT_CENTER_POOL = "uniform"
# D^2 sampling draws among 20 M reference events (at least 20000, at most 200000, at most N_R)
COVERAGE_CANDIDATES = (20, 20_000, 200_000)


def reference_center_indices(n_reference: int, M: int, seed) -> np.ndarray:
    """Indices of M centers drawn uniformly from the reference (``center_pool="uniform"``)."""
    return np.sort(np.random.default_rng(seed).choice(n_reference, size=M, replace=False))


def coverage_center_indices(reference, M: int, seed) -> np.ndarray:
    """Indices of M centers for ``center_pool="coverage"``: M - M//2 drawn uniformly from the
    reference (exactly those of ``reference_center_indices(N_R, M - M//2, seed)``), then M//2
    drawn one at a time with probability proportional to the squared distance to the nearest
    center so far (D^2 sampling), among min(N_R, max(20000, min(20 M, 200000))) reference events
    drawn with the same seed.

    The uniform half keeps the bulk as densely covered as the uniform policy at M/2; the D^2
    half places centers wherever the reference has support but few centers (tails, edges),
    so that the test's sensitivity there no longer depends on which events the seed hits.
    A function of (reference, M, seed) only; never picks an event twice.
    """
    x = np.asarray(reference, dtype=float)
    n_r = x.shape[0]
    n_d2 = M // 2
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(n_r, size=M - n_d2, replace=False))  # = reference_center_indices(n_r, M - n_d2, seed)
    if n_d2 == 0:
        return chosen
    per_center, least, most = COVERAGE_CANDIDATES
    n_c = min(n_r, max(least, min(per_center * M, most)))
    cand = np.sort(rng.choice(n_r, size=n_c, replace=False)) if n_c < n_r else np.arange(n_r)
    xc = x[cand]
    d2 = np.full(n_c, np.inf)
    for lo in range(0, chosen.size, 256):  # nearest uniform center of each candidate, 256 centers at a time
        c = x[chosen[lo:lo + 256]]
        dist = (xc * xc).sum(1)[:, None] - 2.0 * xc @ c.T + (c * c).sum(1)[None, :]
        np.minimum(d2, dist.min(axis=1), out=d2)
    np.maximum(d2, 0.0, out=d2)
    d2[np.isin(cand, chosen)] = 0.0
    picked = np.empty(n_d2, dtype=np.int64)
    u = rng.random(n_d2)
    for i in range(n_d2):
        cum = np.cumsum(d2)
        if not cum[-1] > 0:  # every candidate coincides with a center: fall back to unused events
            rest = np.setdiff1d(np.arange(n_r), np.concatenate([chosen, picked[:i]]))
            picked[i:] = rng.choice(rest, size=n_d2 - i, replace=False)
            break
        j = min(int(np.searchsorted(cum, u[i] * cum[-1], side="right")), n_c - 1)
        picked[i] = cand[j]
        diff = xc - xc[j]
        np.minimum(d2, np.einsum("ij,ij->i", diff, diff), out=d2)
        d2[j] = 0.0
    return np.sort(np.concatenate([chosen, picked]))


class ConvergenceWarning(UserWarning):
    """A fit stopped before meeting its tolerance (see ``KernelFitResult.converged``)."""


@dataclass(repr=False)
class KernelFitResult:
    """Outcome of :meth:`KernelNPLM.fit`: the statistic, the fitted f, and diagnostics.

    ``t`` is 2 [sum_D f - sum_R w (e^f - 1)] at the fitted f; ``alpha`` and ``centers``
    define f(x) = sum_j alpha_j exp(-||x - c_j||^2 / (2 sigma^2)).
    """

    t: float
    alpha: np.ndarray
    centers: np.ndarray
    sigma: float
    lam: float
    solver: str
    penalties: tuple
    converged: bool
    cg_iterations: list
    cg_residuals: list
    newton_iterations: int
    grad_norm: float
    objective: float
    seconds: float
    n_reference: int
    n_data: int
    n_expected: float
    threads: int
    f_reference: np.ndarray | None = field(default=None)
    f_data: np.ndarray | None = field(default=None)
    backend: str = "cpu"

    def predict(self, x, threads=None) -> np.ndarray:
        """f(x) at new events x, shape (n, d) or (n,) for one feature."""
        x = _checks.as_events(x, "x", d=self.centers.shape[1])
        return _core.kernel_mv(x, self.centers, self.sigma, self.alpha, _checks.threads_arg(threads))

    def __repr__(self) -> str:
        return (f"KernelFitResult(t={self.t:.6g}, M={self.alpha.shape[0]}, sigma={self.sigma:.6g}, "
                f"lam={self.lam:.3g}, solver={self.solver!r}, converged={self.converged}, "
                f"cg_iterations={self.cg_iterations}, seconds={self.seconds:.3g})")


class KernelNPLM:
    """Kernel NPLM estimator (Letizia et al. 2022) on the compiled core.

    Parameters
    ----------
    M : int
        Number of Nystrom centers, drawn with ``seed`` by the ``center_pool`` policy.
        Ignored when ``centers`` is given.
    sigma : float or None
        Gaussian width; None applies :func:`sigma_heuristic` to the reference (90th
        percentile of pairwise distances, same seed).
    lam : float
        Ridge penalty lambda (Falkon's normalisation: J = mean loss + lam/2 alpha^T K_MM alpha).
    solver : {"newton-step", "newton"}
        "newton-step": one Newton step per penalty from f = 0, solved by preconditioned CG
        stopped at ``cg_tol`` -- the estimator of the published analyses. "newton": damped
        Newton to the minimiser of J (the penalised maximum-likelihood fit).
    penalties : sequence of float or None
        Penalty list for "newton-step", ending at ``lam`` (default ``[lam]``).
    cg_tol : float or None
        Absolute tolerance on the preconditioned CG residual norm (default sqrt(1e-7)).
    max_iter : int or None
        CG iterations per Newton step (default 1000).
    grad_tol : float
        "newton" only: stop when the gradient norm (in the preconditioned coordinates
        beta = T alpha) falls below this (default 1e-12).
    seed : int
        Seed of the center draw and of the sigma heuristic's subsample.
    centers : array_like (M, d) or None
        Explicit centers instead of a random draw.
    threads : int or None
        CPU threads (None: all cores). Results do not depend on it.
    hessian : {"auto", "stream", "dense", "spectral", "shared"}
        How CG applies the Hessian; the Newton step is the same, only the cost and the
        rounding differ. "stream": one pass over the data per CG iteration,
        T^-T K^T (l'' * (K T^-1 v)) (O(n M) time per iteration, O(n + M^2) memory), as Falkon
        does. "dense": one pass per Newton step forms the data Hessian in the preconditioned
        coordinates, B^T diag(l''/n) B with the Nystrom features B = K T^-1 (O(n M^2)), and
        the iterations cost O(M^2); it is also the more accurate of the two when K_MM is
        ill-conditioned. "auto" (default): dense for M <= 200, streamed above.
        "spectral": the same step in the eigenbasis of K_MM, keeping the directions that
        carry reference Hessian energy of at least ``spectral_tol`` n lam (``fastnplm.models._spectral``):
        O(M^3 + N M r) for r kept directions, far faster on smooth, low-dimensional problems.
        Single-penalty "newton-step" only, lam > 0.
        "shared": the streamed step with the preconditioner built for the expected size
        N_R + N(R) instead of N_R + N_D, so that one factorisation serves every toy
        (``fastnplm.models._shared``): the path of large M, where :func:`fastnplm.calibrate` solves
        blocks of toys together and reads the reference once per CG iteration for all of
        them. It agrees with "stream" to ~1e-5 in t at the default cg_tol and to the roundoff
        with a tight one. Single-penalty "newton-step" only, lam > 0, CPU only.
        :func:`fastnplm.calibrate` may pick "spectral" or "shared" by its cost model: then fit
        the observed data with ``Calibration.model(...)``.
    center_pool : {"uniform", "reference", "coverage", "pooled"}
        How random centers are drawn. "uniform" (default; alias "reference"): uniformly from
        the reference, following its density. "coverage": from the reference alone, half
        uniformly and half by D^2 sampling (:func:`coverage_center_indices`), so that the
        tails and edges of the support hold centers whatever the seed: more power at small
        widths in low-density regions, a little less at large widths (docs/centers.md). "pooled":
        uniformly from reference and data together, as in the published analyses; the
        centers then depend on the data and every toy needs a fit of its own. With any policy
        but "pooled" the centers are the same for the data and every toy, which lets
        :func:`fastnplm.calibrate` share the reference's work across toys. Toys and observed
        data must use the same policy: the calibration is of that estimator.
    spectral_tol : float
        hessian="spectral" only: eigen-directions of K_MM whose reference Hessian energy is
        below ``spectral_tol * n * lam`` are dropped (default 1e-8; 0 keeps every direction).
        On the 1D bench problem (M = 1000) the default keeps 76 directions and moves t by
        3.5e-8 relative from the exact step; 1e-10 keeps 466 (6e-9, the roundoff floor).
    backend : {"cpu", "auto", "cuda"}
        Where the kernel passes run. "cpu" (default); "auto": CUDA when
        :func:`fastnplm.cuda_available` (built with CUDA and a device present), else the CPU;
        "cuda" without a device raises RuntimeError at ``fit``. On CUDA: the streamed and dense
        Newton/CG fits (``hessian="auto"`` keeps the CPU's threshold, not tuned for a GPU) and
        the spectral step's projected-feature passes; fits with nuisances run on the CPU
        (``backend="cuda"`` with nuisances is a ValueError). The default stays "cpu" because
        the CUDA kernels are verified on the CPU through an emulation layer only: not yet run
        on a GPU (cuda/README.md; ``bench/gpu.py`` is the check to run on one).
    """

    def __init__(self, M=1000, sigma=None, lam=1e-6, solver="newton-step", penalties=None,
                 cg_tol=None, max_iter=None, seed=0, centers=None, threads=None,
                 grad_tol=DEFAULT_GRAD_TOL, max_newton=100, hessian="auto", center_pool=DEFAULT_CENTER_POOL,
                 spectral_tol=DEFAULT_SPECTRAL_TOL, backend="cpu"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: expected one of {BACKENDS}")
        self.backend = backend
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver {solver!r}: expected one of {SOLVERS}")
        self.solver = solver
        if hessian not in HESSIAN_MODES:
            raise ValueError(f"unknown hessian mode {hessian!r}: expected one of {tuple(HESSIAN_MODES)}")
        self.hessian = hessian
        if hessian in ("spectral", "shared") and (solver != "newton-step" or
                                                  (penalties is not None and len(penalties) != 1)):
            raise ValueError(f"hessian={hessian!r} computes a single-penalty 'newton-step' fit")
        if hessian == "shared" and backend == "cuda":
            raise ValueError("hessian='shared' runs on the CPU (backend='cpu' or 'auto')")
        if center_pool not in CENTER_POOLS:
            raise ValueError(f"unknown center_pool {center_pool!r}: expected one of {CENTER_POOLS}")
        self.center_pool = center_pool
        self.spectral_tol = _checks.positive_number(spectral_tol, "spectral_tol", allow_zero=True)
        self.lam = _checks.positive_number(lam, "lam", allow_zero=True)
        self.sigma = None if sigma is None else _checks.positive_number(sigma, "sigma")
        if penalties is None:
            self.penalties = (self.lam,)
        else:
            pens = tuple(_checks.positive_number(p, "penalties entry", allow_zero=True) for p in penalties)
            if not pens:
                raise ValueError("penalties is empty")
            if pens[-1] != self.lam:
                raise ValueError(f"penalties must end at lam={self.lam!r}, got {pens}")
            self.penalties = pens
        self.cg_tol = DEFAULT_CG_TOL if cg_tol is None else _checks.positive_number(cg_tol, "cg_tol")
        self.max_iter = DEFAULT_MAX_ITER if max_iter is None else _checks.positive_int(max_iter, "max_iter")
        self.grad_tol = _checks.positive_number(grad_tol, "grad_tol")
        self.max_newton = _checks.positive_int(max_newton, "max_newton")
        self.threads = _checks.threads_arg(threads)
        self.seed = seed
        if centers is None:
            self.M = _checks.positive_int(M, "M")
            self.centers = None
        else:
            self.centers = _checks.as_events(centers, "centers")
            self.M = self.centers.shape[0]

    @property
    def shared_centers(self) -> bool:
        """True when the centers do not depend on the data (given, or drawn from the reference
        alone): the data and every toy then share them, and the reference's work with them."""
        return self.centers is not None or self.center_pool != "pooled"

    def fit(self, reference, data, reference_weights=None, n_expected=None, nuisances=None, auxiliary=None):
        """Fit f on reference vs data and return t with the fitted model.

        Parameters
        ----------
        reference : array_like, (N_R, d) or (N_R,)
            Reference sample (float32 or float64; converted to float64).
        data : array_like, (N_D, d) or (N_D,)
            Observed data.
        reference_weights : float or array_like (N_R,) or None
            Per-event weights summing to N(R); a scalar gives every event that weight. Weights
            may have either sign (finite, with a positive total): where negative ones outweigh
            the rest near a center, the Newton step's weighted Hessian is not positive definite
            and the fit raises :class:`fastnplm.models.NotPositiveDefiniteError` (docs/signed-weights.md).
        n_expected : float or None
            N(R) when no weights are given: every weight is N(R)/N_R (default N(R) = N_D).
        nuisances : sequence of fastnplm.Nuisance or None
            Systematic uncertainties of the reference: returns a
            :class:`fastnplm.models.nuisance.NuisanceFitResult` with tau, Delta and t = tau - Delta
            (f and nu fitted jointly, see ``fastnplm.models.nuisance.fit_kernel_with_nuisances``).
        auxiliary : dict {name: float} or None
            Central values of the auxiliary measurements (default: each nuisance's ``central``).
        """
        start = time.perf_counter()
        if self.backend == "cuda" and nuisances is not None:
            raise ValueError("fits with nuisances run on backend='cpu' (backend='cuda' covers the Newton/CG fits "
                             "and the spectral step)")
        backend = resolve_backend(self.backend)
        ref = _checks.as_events(reference, "reference")
        dat = _checks.as_events(data, "data", d=ref.shape[1])
        n_r, n_d = ref.shape[0], dat.shape[0]
        w = _checks.reference_weights(reference_weights, n_expected, n_r, n_d)
        centers, center_scale = self.select_centers(ref, dat, w)
        sigma = self.sigma if self.sigma is not None else sigma_heuristic(ref, seed=self.seed)
        if nuisances is not None:
            if not self.lam > 0:
                raise ValueError("fits with nuisances need lam > 0")
            return fit_kernel_with_nuisances(self, ref, dat, w, centers, center_scale, sigma, nuisances, auxiliary)
        if auxiliary is not None:
            raise ValueError("auxiliary values without nuisances")
        if self.hessian == "spectral":
            sr = SpectralReference(centers, center_scale, sigma, self.lam, ref, w, self.cg_tol, self.max_iter,
                                   self.threads, self.spectral_tol, backend=backend)
            res = self._fit_result(sr.fit_result(dat), centers, sigma, n_r, n_d, w, start)
            res.backend = backend
            return res
        if self.hessian == "shared":
            sr = SharedSolver(centers, center_scale, sigma, self.lam, ref, w, self.cg_tol, self.max_iter, self.threads)
            res = self._fit_result(sr.fit_result(dat), centers, sigma, n_r, n_d, w, start)
            res.backend = "cpu"
            return res
        out = _core.fit_kernel(ref, w, dat, centers, center_scale, sigma, list(self.penalties), self.solver,
                               self.cg_tol, self.max_iter, self.grad_tol, self.max_newton, PC_EPSILON,
                               self.threads, HESSIAN_MODES[self.hessian], backend)
        res = self._fit_result(out, centers, sigma, n_r, n_d, w, start)
        res.backend = backend
        return res

    def _fit_result(self, out, centers, sigma, n_r, n_d, w, start):
        res = KernelFitResult(
            t=out.t, alpha=out.alpha, centers=centers, sigma=sigma, lam=self.lam, solver=self.solver,
            penalties=self.penalties, converged=out.converged, cg_iterations=out.cg_iterations,
            cg_residuals=out.cg_residuals, newton_iterations=out.newton_iterations,
            grad_norm=out.grad_norm, objective=out.objective, seconds=time.perf_counter() - start,
            n_reference=n_r, n_data=n_d, n_expected=float(w.sum()),
            threads=self.threads or _core.default_threads(),
            f_reference=out.f_reference, f_data=out.f_data)
        if not res.converged:
            what = (f"CG did not reach cg_tol={self.cg_tol:g} within max_iter={self.max_iter} "
                    f"(iterations {res.cg_iterations}, residuals {res.cg_residuals})")
            if self.solver == "newton":
                what = (f"Newton stopped with gradient norm {res.grad_norm:.3g} > grad_tol={self.grad_tol:g} "
                        f"after {res.newton_iterations} steps")
            warnings.warn(f"KernelNPLM fit did not converge: {what}", ConvergenceWarning, stacklevel=3)
        log.debug("kernel fit: %r", res)
        return res

    def reference_solver(self, reference, weights, path=None):
        """The reference's share of this model's fits, computed once for many datasets.

        For centers that do not depend on the data (:attr:`shared_centers`): the centers are
        drawn from the reference and the factorisations and reference passes of the spectral or
        the shared path are made here; :meth:`fit_with` then fits each dataset against it.

        Parameters
        ----------
        reference : (N_R, d) float64 array
            Reference events.
        weights : (N_R,) array
            Reference weights (summing to N(R)).
        path : {"spectral", "shared"} or None
            The solver; default the model's ``hessian`` (which must then be one of the two).

        Returns
        -------
        SpectralReference or SharedSolver
        """
        path = self.hessian if path is None else path
        if path not in ("spectral", "shared"):
            raise ValueError(f"a reference solver is 'spectral' or 'shared', got {path!r}")
        if not self.shared_centers:
            raise ValueError("center_pool='pooled' draws centers from the data: no solver can be shared")
        centers, center_w = self.select_centers(reference, reference[:1], weights)  # the data are not used
        if path == "shared":
            return SharedSolver(centers, center_w, self.sigma, self.lam, reference, weights, self.cg_tol,
                                self.max_iter, self.threads)
        return SpectralReference(centers, center_w, self.sigma, self.lam, reference, weights, self.cg_tol,
                                 self.max_iter, self.threads, self.spectral_tol, backend=resolve_backend(self.backend))

    def fit_with(self, solver, data) -> KernelFitResult:
        """Fit ``data`` against a :meth:`reference_solver`: the same result as :meth:`fit` with
        the solver's reference, weights and path."""
        start = time.perf_counter()
        dat = _checks.as_events(data, "data", d=solver.ref.shape[1])
        res = self._fit_result(solver.fit_result(dat), solver.centers, solver.sigma, solver.ref.shape[0],
                               dat.shape[0], solver.w, start)
        res.backend = getattr(solver, "backend", "cpu")
        return res

    def select_centers(self, reference, data, weights):
        """The M centers of a fit and their preconditioner class weights.

        Parameters
        ----------
        reference, data : (N_R, d), (N_D, d) float64 arrays
        weights : (N_R,) reference weights

        Returns
        -------
        centers : (M, d) array
            Given, or drawn by ``center_pool`` with the model's seed.
        center_weights : (M,) array or None
            1 for a center from the data, w_e for one from the reference (None for given centers:
            the core then uses the pooled mean weight). The solvers scale the preconditioner by
            their magnitudes.
        """
        ref, dat, w = reference, data, weights
        n_r, n_d = ref.shape[0], dat.shape[0]
        if self.centers is not None:
            if self.centers.shape[1] != ref.shape[1]:
                raise ValueError(f"centers have {self.centers.shape[1]} features but the reference has {ref.shape[1]}")
            return self.centers, None  # unknown classes: the core uses the pooled mean weight
        if self.center_pool != "pooled":
            if self.M > n_r:
                raise ValueError(f"M={self.M} is larger than the reference sample ({n_r} events)")
            if self.center_pool == "coverage":
                idx = coverage_center_indices(ref, self.M, self.seed)
            else:
                idx = reference_center_indices(n_r, self.M, self.seed)
            return ref[idx], w[idx]
        if self.M > n_r + n_d:
            raise ValueError(f"M={self.M} is larger than the pooled sample ({n_r} reference + {n_d} data events)")
        rng = np.random.default_rng(self.seed)
        idx = np.sort(rng.choice(n_r + n_d, size=self.M, replace=False))
        from_ref = idx < n_r
        centers = np.empty((self.M, ref.shape[1]))
        centers[from_ref] = ref[idx[from_ref]]
        centers[~from_ref] = dat[idx[~from_ref] - n_r]
        scale = np.where(from_ref, w[np.minimum(idx, n_r - 1)], 1.0)
        return centers, scale
