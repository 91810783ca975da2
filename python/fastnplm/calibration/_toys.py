"""The toys of a calibration: toy k's data from (seed, k) only, the path that fits them (one plain
fit per toy and width, or a shared-reference path chosen by a cost model), and blocks of toys run
here or on a dask cluster.
"""
from __future__ import annotations

import logging
import threading
import warnings

import numpy as np

from .. import _checks
from ..models import _spectral
from .._info import resolve_backend
from ..models.kernel import HESSIAN_MODES, ConvergenceWarning, KernelNPLM
from ..models.neural import NeuralNPLM
from ..models.nuisance import fit_kernel_with_nuisances, fit_neural_with_nuisances

log = logging.getLogger("fastnplm")


def toy_rng(seed: int, k: int) -> np.random.Generator:
    """The random stream of toy k: a function of (seed, k) only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(k)]))


class Toys:
    """Everything a block of toys needs, picklable (it travels to dask workers once)."""

    def __init__(self, models, reference, n_reference, pool, n_exp, seed, d, path, nuisances=None, nu_true=None,
                 weights=None):
        self.models, self.reference, self.n_reference = models, reference, n_reference
        self.pool, self.n_exp, self.seed, self.d, self.path = pool, n_exp, seed, d, path
        self.nuisances, self.nu_true = nuisances, nu_true
        self.weights = weights  # the reference's given weights (summing to n_exp), or None: equal ones
        self._shared, self._lock = {}, threading.Lock()

    def __getstate__(self):  # the per-process spectral state is rebuilt where the job lands
        return {k: v for k, v in self.__dict__.items() if k not in ("_shared", "_lock")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._shared, self._lock = {}, threading.Lock()

    def draw(self, k):
        """Toy k's events (Poisson(N(R)) of them, from the pool without replacement or the
        generator) and, for a reference generator, its fresh reference: from toy_rng(seed, k)."""
        rng = toy_rng(self.seed, k)
        n_exp = self.n_exp
        if self.nu_true:  # normalisation nuisances scale the expected yield by e^nu*
            n_exp *= np.exp(sum(self.nu_true[x.name] for x in self.nuisances if x.kind == "normalization"))
        n = int(rng.poisson(n_exp))
        if n == 0:
            data = np.empty((0, self.d))
        elif callable(self.pool):
            made = self.pool(rng, n, dict(self.nu_true)) if self.nu_true else self.pool(rng, n)
            data = _checks.as_events(made, "pool(rng, n)", d=self.d)
            if data.shape[0] != n:
                raise ValueError(f"pool(rng, n) returned {data.shape[0]} events, expected n={n}")
        else:
            if n > self.pool.shape[0]:
                raise ValueError(f"toy {k} needs {n} events but the pool has {self.pool.shape[0]}")
            data = self.pool[rng.choice(self.pool.shape[0], size=n, replace=False)]
        ref = self.reference
        if callable(ref):
            ref = _checks.as_events(ref(rng, self.n_reference), "reference(rng, n)", d=self.d)
        extra = int(rng.integers(2**63))  # a network's initialisation seed
        if self.nuisances:  # the auxiliary measurements of this toy: A ~ N(nu*, sigma)
            extra = {x.name: float(rng.normal(self.nu_true.get(x.name, 0.0) if self.nu_true else 0.0, x.sigma))
                     for x in self.nuisances}
        return data, ref, extra

    def ref_weights(self, ref) -> np.ndarray:
        """The reference weights of every toy: the given ones, or N(R)/N_R each."""
        return self.weights if self.weights is not None else np.full(ref.shape[0], self.n_exp / ref.shape[0])

    def _size(self) -> dict:
        """How a plain fit is told the reference weights (n_expected alone when they are equal)."""
        return {"reference_weights": self.weights} if self.weights is not None else {"n_expected": self.n_exp}

    def shared(self, j):
        """The shared-reference state of width j (spectral or shared path), built once per process
        that runs this job."""
        with self._lock:
            if j not in self._shared:
                m, ref = self.models[j], self.reference
                self._shared[j] = m.reference_solver(ref, self.ref_weights(ref), self.path)
            return self._shared[j]

    def groups(self, ks):
        """Records of toys ks (t, convergence and CG iterations or epochs at every width), in
        groups as they complete: one toy at a time on the plain path, the block on the others
        (whose toys share a pass over the reference)."""
        s = len(self.models)
        drawn = {k: self.draw(k) for k in ks}
        recs = {k: {"k": k, "seed": int(self.seed), "n": int(drawn[k][0].shape[0]), "t": [0.0] * s,
                    "converged": [True] * s, "cg_iterations": [0] * s} for k in ks}  # no events: f = 0, t = 0
        busy = [k for k in ks if drawn[k][0].shape[0] > 0]
        idle = [recs[k] for k in ks if k not in busy]
        if idle:
            yield idle
        if not busy:
            return
        if self.nuisances:  # tau, Delta and t per toy, with its own auxiliary values
            for k in busy:
                for j, m in enumerate(self.models):
                    data, ref, aux = drawn[k]
                    w = self.ref_weights(ref)
                    if isinstance(m, NeuralNPLM):
                        r = fit_neural_with_nuisances(m, ref, data, w, self.nuisances, aux)
                    else:
                        centers, center_w = m.select_centers(ref, data, w)
                        shared = self.shared(j) if self.path == "spectral" else None
                        r = fit_kernel_with_nuisances(m, ref, data, w, centers, center_w, m.sigma, self.nuisances,
                                                      aux, shared=shared)
                    recs[k]["t"][j], recs[k]["converged"][j] = r.t, r.converged
                    recs[k]["cg_iterations"][j] = r.newton_iterations
                    recs[k].setdefault("tau", [0.0] * s)[j] = r.tau
                    recs[k].setdefault("delta", [0.0] * s)[j] = r.delta
                    recs[k].setdefault("nu_tau", [None] * s)[j] = r.nu_tau
                    recs[k].setdefault("nu_delta", [None] * s)[j] = r.nu_delta
                    recs[k]["auxiliary"] = aux
                yield [recs[k]]
            return
        if self.path == "plain" and not isinstance(self.models[0], NeuralNPLM):
            for k in busy:
                for j, m in enumerate(self.models):
                    with warnings.catch_warnings():  # recorded per toy instead
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        r = m.fit(drawn[k][1], drawn[k][0], **self._size())
                    recs[k]["t"][j], recs[k]["converged"][j] = r.t, bool(r.converged)
                    recs[k]["cg_iterations"][j] = int(sum(r.cg_iterations))
                yield [recs[k]]
            return
        for j, m in enumerate(self.models):
            if isinstance(m, NeuralNPLM):  # the toys of the block trained together, the reference read once
                for sub in ([busy] if not callable(self.reference) else [[k] for k in busy]):
                    res = m.fit_batch(drawn[sub[0]][1], [drawn[k][0] for k in sub], **self._size(),
                                      seeds=[drawn[k][2] for k in sub])
                    for k, r in zip(sub, res):
                        recs[k]["t"][j], recs[k]["converged"][j] = float(r.t), bool(r.converged)
                        recs[k]["cg_iterations"][j] = int(r.epochs_done)
            else:
                for k, (t, conv, iters) in zip(busy, self.shared(j).t_batch([drawn[k][0] for k in busy])):
                    recs[k]["t"][j], recs[k]["converged"][j], recs[k]["cg_iterations"][j] = \
                        float(t), bool(conv), int(iters)
        yield [recs[k] for k in busy]


def run_block(toys, ks):
    return [rec for group in toys.groups(ks) for rec in group]


def choose_path(models, n_ref, n_exp, d, toys, fast, generator):
    """'spectral' or 'shared' (toys sharing the reference's work) or 'plain' (one fit per toy and
    width), by the cost model."""
    applicable = not generator and all(
        isinstance(m, KernelNPLM) and m.solver == "newton-step" and len(m.penalties) == 1 and m.lam > 0
        and m.shared_centers for m in models)
    if fast and not applicable:
        raise ValueError("fast=True needs a single-penalty newton-step model with lam > 0 and centers "
                         "independent of the data (center_pool other than 'pooled', or given centers), and a "
                         "reference sample (not a generator)")
    if fast is False or not applicable:
        return "plain"
    for mode in ("spectral", "shared"):  # (only kernel models get here)
        if any(m.hessian == mode for m in models):
            return mode
    cpu = all(resolve_backend(m.backend) == "cpu" for m in models)
    cost = {"spectral": 0.0, "shared": 0.0 if cpu else float("inf"), "plain": 0.0 if not fast else float("inf")}
    for m in models:
        dense = m.hessian == "dense" or (m.hessian == "auto" and m.M <= HESSIAN_MODES["auto"])
        cost["spectral"] += _spectral.spectral_seconds(m.M, n_ref, n_exp, d, toys)
        cost["shared"] += _spectral.shared_seconds(m.M, n_ref, n_exp, d, toys)
        cost["plain"] += _spectral.plain_seconds(m.M, n_ref, n_exp, d, toys, dense)
    log.info("calibrate cost model (single-thread seconds): %s", {k: f"{v:.3g}" for k, v in cost.items()})
    return min(cost, key=cost.get)


def run_blocks(job, blocks, executor):
    """Records of each block, locally in order, or from a dask cluster as blocks complete. ``job``
    is a picklable object whose ``groups(ks)`` yields the records of ks (Toys, Permutations)."""
    if executor is None:
        for ks in blocks:
            yield from job.groups(ks)
        return
    try:
        from distributed import as_completed
    except ImportError:
        raise ImportError("executor= needs dask.distributed: pip install fastnplm[dask]") from None
    if not blocks:
        return
    shared = executor.scatter(job, broadcast=True)
    futures = [executor.submit(run_block, shared, ks, pure=False) for ks in blocks]
    try:
        for fut in as_completed(futures):
            yield fut.result()
    finally:
        for fut in futures:
            fut.cancel()
