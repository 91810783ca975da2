"""Calibration without a pool: the permutation test of two samples.

Two samples A (the reference's role, optionally weighted) and B (the data's role) are compared
with NPLM; under the null hypothesis that both come from one distribution every relabelling of
the pooled events that keeps the two sizes is equally likely, so the t of random relabellings
is the null distribution of the observed t (the standard permutation test). The p-value is
p = (1 + #{t_perm >= t_obs}) / (B + 1) for B permutations.

Reference weights. Every event of the pooled sample carries a base weight: A's given weights
(1 when none), 1 for B's events. In each relabelling the events labelled A keep their base
weights, rescaled so that they sum to N_B (the test compares shapes: the expected count under
the null is the observed one). With unequal base weights the labels are no longer exchangeable
in general, and the test is then approximate. A's weights may have either sign (a positive
total); a relabelling whose A-labelled weights do not sum to a positive total, or whose Newton
step's Hessian is not positive definite, is an error.

The fast path. For the published newton-step estimator with one penalty, centers drawn once
from the pooled sample (fixed for every relabelling, as the kernel of the test must be), the
step of a relabelling solves

    H alpha = -g,   H = (1/n) sum_i l''_i k_i k_i^T + lam (K_MM + eps M I),   g = (1/n) sum_i l'_i k_i

with l'' = w/4, l' = w/2 for events labelled A (weight w) and l'' = 1/4, l' = -1/2 for events
labelled B (method.md section 2: one Newton step from f = 0; eps M I is the jitter of the
core's Nystrom factor, part of its penalty). The Gram matrices of the whole
pooled sample (sum_i k_i k_i^T, and sum_i b_i k_i k_i^T with the base weights b) are the same
for every relabelling, so a relabelling only needs the Gram matrix of its smaller class: O(n_s M^2)
for n_s events of the smaller sample, one M x M Cholesky solve, and f = K alpha on the pooled
events for t (one matrix product for a block of relabellings). The step is solved exactly (a
dense Cholesky factorisation), where a fit stops CG at ``cg_tol``: the two agree to the CG
tolerance (tests/python/test_permutation.py), and the observed t goes through the same solver
as its permutations.
"""
from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import scipy.linalg

from .. import _checks, _core
from ..models._kernel_defs import PC_EPSILON, not_positive_definite
from ..models.kernel import KernelNPLM, sigma_heuristic
from ..models.neural import NeuralNPLM
from ._run import Calibration, _progress_bar, _with_sigma, aggregate, record_blocks, toy_rng
from ._store import STORE_VERSION, model_spec, read_store
from ._toys import run_blocks
from .null import ToyNull

log = logging.getLogger("fastnplm")

#: Permutations whose f the fast path computes in one matrix product (see Permutations.groups).
GROUP = 8
#: Most memory (bytes) the fast path may hold for the pooled sample's matrices; above it, refits.
FAST_MEMORY_LIMIT = 4 * 2**30


class PermutationResult:
    """The observed t of two samples and its permutation null distribution, per width.

    Attributes
    ----------
    t_obs : (S,) array
        The observed t at each width.
    null : Calibration
        The permutations' t, (B, S): ``null.t``; its ``settings`` record how they were made.
    sigmas : tuple of float
        The widths (``(None,)`` for a neural model).
    path : str
        "fast" (the shared Gram matrices) or "refit" (one fit per permutation and width).
    """

    def __init__(self, t_obs, null: Calibration, path: str):
        self.t_obs = np.asarray(t_obs, dtype=float)
        self.null, self.sigmas, self.path = null, null.sigmas, path

    @property
    def permutations(self) -> int:
        """The number of permutations B."""
        return int(self.null.t.shape[0])

    def p_value(self, sigma_index=None, cl: float = 0.6827) -> dict:
        """p = (1 + #{t_perm >= t_obs}) / (B + 1) at one width, with the Clopper-Pearson interval
        of the fraction of permutations at or above t_obs."""
        j = self._index(sigma_index)
        return ToyNull(self.null.t[:, j]).p_value(self.t_obs[j], cl=cl)

    def z(self, sigma_index=None) -> float:
        """Z = Phi^-1(1 - p) at one width."""
        j = self._index(sigma_index)
        return ToyNull(self.null.t[:, j]).z(self.t_obs[j])

    def aggregate(self, temperature: float = 1.0) -> dict:
        """Per-width p and Z and the min-p, prod-p, avg-p and soft-max combinations across the
        widths, calibrated on the same permutations (see :func:`fastnplm.aggregate`)."""
        return aggregate(self.null, self.t_obs, temperature=temperature)

    def summary(self) -> dict:
        """t, p with its interval, and Z per width; the aggregated tests when there are several widths."""
        out: dict = {"permutations": self.permutations, "path": self.path, "per_width": []}
        for j, s in enumerate(self.sigmas):
            p = self.p_value(j)
            out["per_width"].append({"sigma": s, "t": float(self.t_obs[j]), "p": p["p"], "interval": p["interval"],
                                     "z": self.z(j)})
        if len(self.sigmas) > 1 and self.permutations > 1:
            agg = self.aggregate()
            out["aggregated"] = {k: agg[k] for k in agg if k != "per_width"}
        return out

    def _index(self, sigma_index):
        if sigma_index is None:
            if len(self.sigmas) != 1:
                raise ValueError(f"this result has {len(self.sigmas)} widths: pass sigma_index")
            return 0
        return int(sigma_index)

    def __repr__(self):
        return f"PermutationResult(permutations={self.permutations}, sigmas={self.sigmas}, t_obs={self.t_obs})"


def permutation_test(model, sample_a, sample_b, permutations: int = 1000, seed: int = 0, weights_a=None,
                     sigmas=None, store=None, executor=None, progress=None, fast=None,
                     batch: int = 32) -> PermutationResult:
    """Test two samples against each other, calibrated by relabelling their pooled events.

    Parameters
    ----------
    model : KernelNPLM or NeuralNPLM
        The test's settings. A kernel model's centers are drawn once from the pooled sample
        (M of them, with the model's seed) unless given, and serve the observed t and every
        permutation.
    sample_a : array_like (N_A, d)
        The sample in the reference's role (e.g. the validation sample, the good run).
    sample_b : array_like (N_B, d)
        The sample in the data's role (e.g. the generated events, the run under test).
    permutations : int
        Random relabellings B.
    seed : int
        Permutation k uses ``toy_rng(seed, k)`` only: a result does not depend on the batch,
        the executor or the thread count.
    weights_a : array_like (N_A,) or None
        Per-event weights of sample A (relative; rescaled to sum N_B in every relabelling), of
        either sign with a positive total.
    sigmas : sequence of float or None
        Kernel widths; every permutation is fitted at each. None: the model's sigma, or the
        heuristic on the pooled sample.
    store : path or None
        Append-only record of finished permutations; the same call resumes it.
    executor : dask.distributed.Client or None
        Run blocks of ``batch`` permutations on the cluster.
    progress : bool or None
        A progress bar (None: only on a terminal).
    fast : bool or None
        The shared-Gram path (see the module's documentation): None uses it where it applies (a
        single-penalty newton-step kernel model, lam > 0, the pooled kernel matrix within
        ``FAST_MEMORY_LIMIT``); True requires it; False refits every permutation.
    batch : int
        Permutations per block.

    Returns
    -------
    PermutationResult
    """
    a = _checks.as_events(sample_a, "sample_a")
    b = _checks.as_events(sample_b, "sample_b", d=a.shape[1])
    n_a, n_b = a.shape[0], b.shape[0]
    permutations = _checks.positive_int(permutations, "permutations")
    batch = _checks.positive_int(batch, "batch")
    if fast is not None and not isinstance(fast, bool):
        raise TypeError(f"fast must be None, True or False, got {fast!r}")
    if not isinstance(model, (KernelNPLM, NeuralNPLM)):
        raise TypeError(f"model must be a fastnplm.KernelNPLM or NeuralNPLM, got {type(model).__name__}")
    base = np.ones(n_a) if weights_a is None else _checks.reference_weights(weights_a, None, n_a, n_b)
    pooled = np.concatenate([a, b])
    base_w = np.concatenate([base, np.ones(n_b)])
    models: list
    if isinstance(model, NeuralNPLM):
        if sigmas is not None:
            raise ValueError("sigmas is for kernel models; a NeuralNPLM has no width")
        models, sigmas = [model], (None,)
    else:
        if sigmas is None:
            sigmas = (model.sigma if model.sigma is not None else sigma_heuristic(pooled, seed=model.seed),)
        sigmas = tuple(_checks.positive_number(s, "sigmas entry") for s in sigmas)
        if not sigmas:
            raise ValueError("sigmas is empty")
        centers = model.centers
        if centers is None:
            if model.M > pooled.shape[0]:
                raise ValueError(f"M={model.M} is larger than the pooled sample ({pooled.shape[0]} events)")
            rng = np.random.default_rng(model.seed)
            centers = pooled[np.sort(rng.choice(pooled.shape[0], size=model.M, replace=False))]
        models = [_with_sigma(_with_centers(model, centers), s) for s in sigmas]
    path = _choose_path(models, pooled.shape[0], fast)

    h = hashlib.sha256()
    for arr in (a, b, base):
        h.update(np.ascontiguousarray(arr).tobytes())
    header = json.loads(json.dumps({
        "version": STORE_VERSION, "kind": "permutation", "model": model_spec(model, "plain"),
        "sigmas": list(sigmas), "seed": int(seed), "path": path, "n_a": n_a, "n_b": n_b,
        "n_expected": float(n_b), "data_sha256": h.hexdigest()}))
    done = read_store(store, header) if store is not None else {}
    job = Permutations(models, pooled, base_w, n_a, seed, path)
    t_obs = np.array([r for r in job.observed()])
    todo = [k for k in range(permutations) if k not in done]
    blocks = [todo[i:i + batch] for i in range(0, len(todo), batch)]
    bar = _progress_bar(progress, permutations, permutations - len(todo))
    record_blocks(run_blocks(job, blocks, executor), done, store, header, bar)
    recs = [done[k] for k in range(permutations)]
    null = Calibration(t=np.array([r["t"] for r in recs], dtype=float), sigmas=tuple(sigmas),
                       n_events=np.full(permutations, n_b), converged=np.array([r["converged"] for r in recs]),
                       seed=int(seed), settings=header, _models=models)
    return PermutationResult(t_obs, null, path)


def _with_centers(model: KernelNPLM, centers) -> KernelNPLM:
    out = _with_sigma(model, model.sigma)
    out.centers = np.ascontiguousarray(centers, dtype=np.float64)
    return out


def _choose_path(models, n_pooled, fast):
    applicable = all(isinstance(m, KernelNPLM) and m.solver == "newton-step" and len(m.penalties) == 1
                     and m.lam > 0 for m in models)
    if fast and not applicable:
        raise ValueError("fast=True needs a single-penalty newton-step KernelNPLM with lam > 0")
    if fast is False or not applicable:
        return "refit"
    # the features (n, M) and, while they are formed, the kernel matrix of the same size
    need = 2 * n_pooled * models[0].centers.shape[0] * 8
    if need > FAST_MEMORY_LIMIT:
        if fast:
            raise MemoryError(f"the fast permutation path holds two {n_pooled} x {models[0].centers.shape[0]} "
                              f"matrices of the pooled sample ({need / 2**30:.1f} GiB) in memory, more than "
                              f"FAST_MEMORY_LIMIT ({FAST_MEMORY_LIMIT / 2**30:.1f} GiB); use fast=False or fewer centers")
        return "refit"
    return "fast"


class Permutations:
    """Everything a block of permutations needs, picklable (it travels to dask workers once)."""

    def __init__(self, models, pooled, base_w, n_a, seed, path):
        self.models, self.pooled, self.base_w, self.n_a = models, pooled, base_w, n_a
        self.seed, self.path = seed, path
        self._gram = {}

    def __getstate__(self):  # the per-width Gram state is rebuilt where the job lands
        return {k: v for k, v in self.__dict__.items() if k != "_gram"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._gram = {}

    def labels(self, k):
        """Permutation k's class of each pooled event: True for A (from toy_rng(seed, k))."""
        is_a = np.zeros(self.pooled.shape[0], dtype=bool)
        is_a[toy_rng(self.seed, k).permutation(self.pooled.shape[0])[: self.n_a]] = True
        return is_a

    def observed(self):
        """The observed t at each width, by the path the permutations take (alone in its group)."""
        is_a = np.zeros(self.pooled.shape[0], dtype=bool)
        is_a[: self.n_a] = True
        return [self.t_values(j, [is_a])[0][0] for j in range(len(self.models))]

    def t_values(self, j, labellings):
        """(t, converged) of width j for each labelling (boolean mask of class A)."""
        if self.path == "fast":
            return self.gram(j).t_values(labellings)
        out = []
        for is_a in labellings:
            w = self.base_w[is_a] * _a_scale(self.base_w, is_a)
            res = self.models[j].fit(self.pooled[is_a], self.pooled[~is_a], reference_weights=w)
            out.append((float(res.t), bool(res.converged)))
        return out

    def gram(self, j):
        """The shared Gram state of width j, built once per process that runs this job."""
        if j not in self._gram:
            m = self.models[j]
            self._gram[j] = SharedGram(self.pooled, self.base_w, m.centers, m.sigma, m.lam, m.threads)
        return self._gram[j]

    def groups(self, ks):
        """Records of permutations ks (t and convergence at every width), one group per block.

        The fast path computes f for GROUP permutations in one matrix product, always the same
        ones together (k // GROUP): BLAS may round a column differently in products of other
        widths, so a permutation's t must not depend on the block or the resumption it is
        computed in. A group that is only partly asked for is computed whole."""
        s = len(self.models)
        recs = {k: {"k": k, "t": [0.0] * s, "converged": [True] * s} for k in ks}
        if self.path == "fast":
            units = [list(range(q * GROUP, (q + 1) * GROUP)) for q in sorted({k // GROUP for k in ks})]
        else:
            units = [[k] for k in ks]
        for unit in units:
            labellings = [self.labels(k) for k in unit]
            for j in range(s):
                for k, (t, ok) in zip(unit, self.t_values(j, labellings)):
                    if k in recs:
                        recs[k]["t"][j], recs[k]["converged"][j] = float(t), bool(ok)
        yield [recs[k] for k in ks]


class SharedGram:
    """The pooled sample's Nystrom features and their Gram matrices at one width: the
    newton-step of any labelling from its smaller class's rows (see the module's documentation).

    The estimator is the core's: its penalty is lam alpha^T (K_MM + eps M I) alpha, with Falkon's
    jitter eps = PC_EPSILON (the core solves for beta = T alpha, T^T T = K_MM + eps M I, with the
    penalty lam |beta|^2). Here alpha = G beta with G = V (Lambda + eps M)^-1/2 from the
    eigendecomposition K_MM = V Lambda V^T, so that G^T (K_MM + eps M I) G = I: on the features
    B = K G the system is (1/n) B^T D B + lam I, well conditioned where K_MM is not, and
    f = B beta is formed without going through alpha.
    """

    def __init__(self, pooled, base_w, centers, sigma, lam, threads=0):
        self.threads = threads or 0
        m = centers.shape[0]
        ev, v = np.linalg.eigh(_core.kernel_matrix(centers, centers, float(sigma), self.threads))
        ev = np.maximum(ev, 0.0)  # K_MM is positive semidefinite: what is below 0 is rounding
        self.g = v / np.sqrt(ev + PC_EPSILON * m)  # alpha = G beta
        self.b = _core.kernel_matrix(pooled, centers, float(sigma), self.threads) @ self.g  # K G: (n, M)
        self.base_w, self.lam = base_w, float(lam)
        self.uniform = bool(np.all(base_w == 1.0))  # unweighted: the b-weighted sums are the plain ones
        # Gram matrices: upper triangles only (the Cholesky factorisation reads no more)
        self.g1 = _gram(self.b)  # sum_i phi_i phi_i^T
        self.gb = self.g1 if self.uniform else self.b.T @ (self.base_w[:, None] * self.b)  # sum_i b_i phi_i phi_i^T
        self.s1, self.sb = self.b.sum(axis=0), self.base_w @ self.b

    def beta(self, is_a):
        """The exact newton-step in the preconditioned coordinates for one labelling, and the
        scale of A's weights."""
        n = is_a.size
        n_b = int(n - is_a.sum())
        scale = _a_scale(self.base_w, is_a)  # A's weights sum to N_B
        small_is_a = is_a.sum() <= n_b
        rows = is_a if small_is_a else ~is_a
        bs_rows, ws = self.b[rows], self.base_w[rows]
        g1_s = _gram(bs_rows)
        gb_s = g1_s if self.uniform else bs_rows.T @ (ws[:, None] * bs_rows)
        s1_s, sb_s = bs_rows.sum(axis=0), ws @ bs_rows
        if small_is_a:  # the sums over A directly, B's as the pool's minus A's
            ga_b, g_b = gb_s, self.g1 - g1_s
            sa_b, s_b = sb_s, self.s1 - s1_s
        else:
            ga_b, g_b = self.gb - gb_s, g1_s
            sa_b, s_b = self.sb - sb_s, s1_s
        h = (0.25 * (scale * ga_b + g_b)) / n + self.lam * np.eye(ga_b.shape[0])
        g = (0.5 * (scale * sa_b - s_b)) / n
        try:
            factor = scipy.linalg.cho_factor(h, lower=False, check_finite=False)
            return -scipy.linalg.cho_solve(factor, g, check_finite=False), scale
        except np.linalg.LinAlgError:
            return _semidefinite_solve(h, g), scale

    def t_values(self, labellings):
        """(t, finite) per labelling: t = 2 [sum_B f - sum_A w (e^f - 1)] with f = B beta, f of
        up to GROUP labellings in one matrix product of GROUP columns (zeros where fewer)."""
        if len(labellings) > GROUP:
            raise ValueError(f"at most {GROUP} labellings at once")
        steps = [self.beta(is_a) for is_a in labellings]
        betas = np.zeros((self.b.shape[1], GROUP))
        for q, (beta, _) in enumerate(steps):
            betas[:, q] = beta
        f_block = self.b @ betas
        out = []
        for q, (is_a, (_, scale)) in enumerate(zip(labellings, steps)):
            f = f_block[:, q]
            w = self.base_w[is_a] * scale
            t = 2.0 * (f[~is_a].sum() - w @ np.expm1(f[is_a]))
            out.append((float(t), bool(np.isfinite(t))))
        return out


def _semidefinite_solve(h_upper, g):
    """-h^+ g for a positive semidefinite h singular to working precision (where K_MM is: its
    null directions carry no f, and the step has no component along them), from the
    eigendecomposition of h without the eigenvalues below its rounding; a clearly negative
    eigenvalue is an indefinite Hessian and an error."""
    h = np.triu(h_upper) + np.triu(h_upper, 1).T
    lam, v = np.linalg.eigh(h)
    floor = h.shape[0] * np.finfo(float).eps * max(float(np.abs(lam).max()), 1e-300)
    if lam[0] < -1e3 * floor:
        raise not_positive_definite(f"a relabelling's Hessian has eigenvalue {lam[0]:.6g} < 0")
    keep = lam > floor
    return -(v[:, keep] @ ((v[:, keep].T @ g) / lam[keep]))


def _a_scale(base_w, is_a) -> float:
    """The factor that makes the base weights of the events labelled A sum to N_B."""
    total = float(base_w[is_a].sum())
    if not total > 0:
        raise ValueError(f"the events a relabelling puts in sample A have weights summing to {total:.6g} <= 0 "
                         "(weights_a of either sign need a positive total in every relabelling); use fewer "
                         "negative weights or merge them with positive neighbours")
    return float((~is_a).sum()) / total


def _gram(x):
    """The upper triangle of x^T x (x: (n, M) C-ordered), by BLAS syrk on the Fortran view x^T."""
    return scipy.linalg.blas.dsyrk(1.0, x.T, trans=0, lower=0)
