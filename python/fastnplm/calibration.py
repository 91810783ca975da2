"""Toy calibration: from t to a p-value (method.md section 4).

Toys are pseudo-datasets drawn from a reference-distributed pool disjoint from the training
reference, N ~ Poisson(N(R)) events each, fitted exactly as observed data are. Toy k's
randomness is a function of (seed, k) only, so results do not depend on how many toys ran
before, in what order, or how the run was split and resumed.

Two paths compute the same estimator: one plain ``fit`` per toy and width, and the
shared-reference fast path of ``_toys_fast`` (used when the model allows it). Statistics:
``Calibration`` (p-value, Z, chi2 fit), ``power`` and ``aggregate`` (multiple testing across
widths). Dask executors and progress bars are not written yet.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special, stats

from . import _checks
from . import _toys_fast
from .kernel import KernelNPLM, sigma_heuristic

log = logging.getLogger("fastnplm")

STORE_VERSION = 1


def toy_rng(seed: int, k: int) -> np.random.Generator:
    """The random stream of toy k: a function of (seed, k) only."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(k)]))


@dataclass
class Calibration:
    """Toy t values under the reference hypothesis, one column per width.

    Attributes
    ----------
    t : ndarray (toys, len(sigmas))
    sigmas : tuple of float
    n_events : ndarray (toys,) the Poisson-drawn size of each toy
    converged : ndarray (toys, len(sigmas)) of bool
    seed : int
    """

    t: np.ndarray
    sigmas: tuple
    n_events: np.ndarray
    converged: np.ndarray
    seed: int
    settings: dict = field(default_factory=dict)

    @property
    def toys(self) -> int:
        return self.t.shape[0]

    def _column(self, sigma_index):
        if sigma_index is None:
            if self.t.shape[1] != 1:
                raise ValueError(f"this calibration has {self.t.shape[1]} widths: pass sigma_index")
            sigma_index = 0
        return self.t[:, sigma_index]

    def p_value(self, t_obs: float, sigma_index=None, cl: float = 0.6827):
        """Empirical p-value (1 + #{t_toy >= t_obs}) / (B + 1) and its Clopper-Pearson interval.

        Returns a dict with ``p``, ``interval`` (at confidence ``cl``, for the fraction of
        toys above t_obs), ``exceeded`` (#toys >= t_obs), ``toys`` and, when no toy reaches
        t_obs, ``bound`` (the p-value is below it) and ``chi2_extrapolation`` (the p-value
        of the fitted chi2, labelled as an extrapolation beyond the toys).
        """
        t = self._column(sigma_index)
        b = t.size
        k = int(np.count_nonzero(t >= t_obs))
        alpha = 1.0 - cl
        lo = 0.0 if k == 0 else stats.beta.ppf(alpha / 2, k, b - k + 1)
        hi = 1.0 if k == b else stats.beta.ppf(1 - alpha / 2, k + 1, b - k)
        out = {"p": (1 + k) / (b + 1), "interval": (float(lo), float(hi)), "exceeded": k, "toys": b}
        if k == 0:
            dof = self.chi2_fit(sigma_index)["dof"]
            out["bound"] = 1.0 / (b + 1)
            out["chi2_extrapolation"] = {"p": float(stats.chi2.sf(t_obs, dof)), "dof": dof,
                                         "note": "extrapolation beyond the toys, not a toy-based p-value"}
        return out

    def z(self, t_obs: float, sigma_index=None) -> float:
        """Z = Phi^-1(1 - p) of the empirical p-value."""
        return float(stats.norm.isf(self.p_value(t_obs, sigma_index)["p"]))

    def chi2_fit(self, sigma_index=None) -> dict:
        """Maximum-likelihood chi2 degrees of freedom of the toys, with a KS test against it."""
        t = self._column(sigma_index)
        if np.any(t <= 0):
            raise ValueError("chi2_fit needs positive toy t values")
        nll = lambda k: -(stats.chi2.logpdf(t, k).sum()) if k > 0 else np.inf  # noqa: E731
        mean = float(t.mean())
        res = optimize.minimize_scalar(nll, bounds=(1e-3, max(10 * mean, 10.0)), method="bounded",
                                       options={"xatol": 1e-8})
        dof = float(res.x)
        ks = stats.kstest(t, stats.chi2(dof).cdf)
        return {"dof": dof, "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue)}


AGGREGATIONS = ("min-p", "prod-p", "avg-p", "softmax-t")


def _aggregate_stat(p, zt, method, temperature):
    """Aggregated statistic, larger = more tension; p and zt are (..., widths)."""
    if method == "min-p":
        return -p.min(axis=-1)
    if method == "prod-p":  # Fisher
        return -np.log(p).sum(axis=-1)
    if method == "avg-p":
        return -p.mean(axis=-1)
    return temperature * special.logsumexp(zt / temperature, axis=-1)  # soft-max of standardised t


def aggregate(cal: Calibration, t_obs, temperature: float = 1.0) -> dict:
    """Multiple testing across widths (Grosso, Letizia et al. 2024): per-width p and Z, and the
    min-p, prod-p (Fisher), avg-p and soft-max-of-standardised-t tests, each calibrated on the
    same toys: a toy's per-width p-values are computed against the other toys.

    Parameters
    ----------
    cal : Calibration with one column per width
    t_obs : sequence of float, one t per width (the observed data fitted at each width)
    temperature : float, of the soft-max (small: the max of the standardised t; large: their mean)
    """
    t_obs = np.asarray(t_obs, dtype=float).ravel()
    b, s = cal.t.shape
    if t_obs.size != s:
        raise ValueError(f"t_obs has {t_obs.size} values but the calibration has {s} widths")
    if b < 2:
        raise ValueError("aggregation needs at least 2 toys")
    temperature = _checks.positive_number(temperature, "temperature")
    t = cal.t
    # per-width p of each toy against the other b - 1 toys, and of the observation against all b
    # 1 + #{j != i: t_j >= t_i} = #{j: t_j >= t_i}, counted on the sorted column
    p_toys = np.empty_like(t)
    for c in range(s):
        col = np.sort(t[:, c])
        p_toys[:, c] = (b - np.searchsorted(col, t[:, c], side="left")) / b
    p_obs = (1.0 + (t >= t_obs[None, :]).sum(axis=0)) / (b + 1)
    mean, std = t.mean(axis=0), t.std(axis=0, ddof=1)
    std = np.where(std > 0, std, 1.0)
    z_toys, z_obs = (t - mean) / std, (t_obs - mean) / std
    out = {"per_width": [{"sigma": sg, "t": float(to), "p": float(po), "z": float(stats.norm.isf(po))}
                         for sg, to, po in zip(cal.sigmas, t_obs, p_obs)]}
    for method in AGGREGATIONS:
        a_toys = _aggregate_stat(p_toys, z_toys, method, temperature)
        a_obs = float(_aggregate_stat(p_obs, z_obs, method, temperature))
        p = (1.0 + np.count_nonzero(a_toys >= a_obs)) / (b + 1)
        out[method] = {"statistic": a_obs, "p": p, "z": float(stats.norm.isf(p))}
    out["softmax-t"]["temperature"] = temperature
    return out


def power(t_signal, cal: Calibration, z: float = 2.0, sigma_index=None) -> dict:
    """Fraction of signal toys whose Z reaches ``z``, with its binomial standard error, and
    the median Z of the signal toys."""
    ts = np.asarray(t_signal, dtype=float).ravel()
    if ts.size == 0:
        raise ValueError("t_signal is empty")
    zs = np.array([cal.z(t, sigma_index) for t in ts])
    frac = float(np.mean(zs >= z))
    return {"power": frac, "error": float(np.sqrt(frac * (1 - frac) / ts.size)), "median_z": float(np.median(zs)),
            "signal_toys": int(ts.size), "z": z}


def _fingerprint(model: KernelNPLM, reference, pool, n_expected, sigmas, seed) -> dict:
    """What a store's toys depend on; a store written with anything else is refused."""
    h = hashlib.sha256()
    for arr in (reference, pool):
        if callable(arr):
            h.update(repr(arr).encode())
        else:
            h.update(np.ascontiguousarray(arr).tobytes())
    if model.centers is not None:
        h.update(np.ascontiguousarray(model.centers).tobytes())
    keys = ("M", "lam", "solver", "penalties", "cg_tol", "max_iter", "grad_tol", "max_newton", "seed", "hessian",
            "center_pool")
    return {"version": STORE_VERSION, "model": {k: getattr(model, k) for k in keys}, "sigmas": list(sigmas),
            "n_expected": float(n_expected), "seed": int(seed), "data_sha256": h.hexdigest()}


def load_calibration(path) -> Calibration:
    """The calibration recorded in a store file (its finished toys, in toy order)."""
    with open(path, "rb") as fh:
        first = fh.readline()
    if not first.strip():
        raise ValueError(f"{path!r} is not a fastnplm calibration store (empty)")
    try:
        header = json.loads(first)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path!r} is not a fastnplm calibration store: {err}") from None
    if not isinstance(header, dict) or header.get("version") != STORE_VERSION:
        raise ValueError(f"{path!r} is not a fastnplm calibration store (version {STORE_VERSION})")
    recs = _read_store(path, header)
    if not recs:
        raise ValueError(f"{path!r} holds no finished toys")
    ks = sorted(recs)
    return Calibration(t=np.array([recs[k]["t"] for k in ks], dtype=float), sigmas=tuple(header["sigmas"]),
                       n_events=np.array([recs[k]["n"] for k in ks]),
                       converged=np.array([recs[k]["converged"] for k in ks]), seed=header["seed"], settings=header)


def _read_store(path, header):
    """Finished toys of a store; a torn last line is dropped, other settings are refused."""
    records = {}
    if not os.path.exists(path):
        return records
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    if not lines or not lines[0].strip():
        return records
    stored = json.loads(lines[0])
    if stored != json.loads(json.dumps(header)):
        raise ValueError(f"store {path!r} was written with other settings (model, widths, data, n_expected "
                         f"or seed); use a new store path.\n stored: {stored}\n now:    {header}")
    for line in lines[1:]:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            log.warning("store %s: dropping a partial record (interrupted write)", path)
            continue
        records[rec["k"]] = rec
    return records


def _draw_toy(seed, k, n_exp, pool_arr, pool, d):
    """Toy k's events: Poisson(N(R)) of them, from the pool without replacement or the generator."""
    rng = toy_rng(seed, k)
    n = int(rng.poisson(n_exp))
    if n == 0:
        return np.empty((0, d))
    if pool_arr is not None:
        if n > pool_arr.shape[0]:
            raise ValueError(f"toy {k} needs {n} events but the pool has {pool_arr.shape[0]}")
        return pool_arr[rng.choice(pool_arr.shape[0], size=n, replace=False)]
    return _checks.as_events(pool(rng, n), "pool(rng, n)", d=d)


def calibrate(model: KernelNPLM, reference, pool, toys: int = 300, n_expected=None, sigmas=None, seed=0,
              store=None, executor=None, progress=None, fast=None, batch: int = 32) -> Calibration:
    """Null distribution of t from toys.

    Parameters
    ----------
    model : KernelNPLM
        Settings used for every toy, exactly as for the observed data (its ``sigma`` is
        replaced by each entry of ``sigmas`` when given).
    reference : array_like (N_R, d)
        The training reference, shared by all toys.
    pool : array_like (N_P, d) or callable(rng, n) -> (n, d)
        Reference-distributed events disjoint from ``reference`` (toys draw without
        replacement from it), or a generator.
    toys : int
    n_expected : float
        N(R): each toy has Poisson(N(R)) events and reference weights N(R)/N_R.
    sigmas : sequence of float or None
        Widths; every toy is fitted at each (same toy data). None: the model's sigma (or
        the heuristic on the reference).
    seed : int
        Toy k uses ``toy_rng(seed, k)`` only.
    store : path or None
        Append-only record of finished toys (JSON lines, flushed and fsynced per toy);
        re-running the same call resumes, and ends identical to an uninterrupted run.
    executor, progress
        Not supported yet (dask executors and progress bars come with the calibration issue).
    fast : bool or None
        The shared-reference path (see ``fastnplm._toys_fast``): the reference's part of the
        Newton step is computed once per width and toys are batched. It applies to a
        single-penalty "newton-step" model in dense Hessian mode with centers drawn from the
        reference (``center_pool="reference"``) or given; fit the observed data with the same
        model. None: use it whenever it applies; False: one plain ``fit`` per toy.
    batch : int
        Toys per batch of the fast path (f on the reference for a batch is one pass).
    """
    if executor is not None:
        raise ValueError("executor= is not supported yet: toys run in this process")
    if progress:
        raise ValueError("progress= is not supported yet")
    if not isinstance(model, KernelNPLM):
        raise TypeError(f"model must be a fastnplm.KernelNPLM, got {type(model).__name__}")
    if callable(reference):
        raise ValueError("a reference generator is not supported yet: pass the reference sample")
    ref = _checks.as_events(reference, "reference")
    toys = _checks.positive_int(toys, "toys")
    batch = _checks.positive_int(batch, "batch")
    if n_expected is None:
        raise ValueError("n_expected (N(R), the expected number of events) is required for toys")
    n_exp = _checks.positive_number(n_expected, "n_expected")
    pool_arr = None if callable(pool) else _checks.as_events(pool, "pool", d=ref.shape[1])
    if sigmas is None:
        sigmas = (model.sigma if model.sigma is not None else sigma_heuristic(ref, seed=model.seed),)
    sigmas = tuple(_checks.positive_number(s, "sigmas entry") for s in sigmas)
    if not sigmas:
        raise ValueError("sigmas is empty")

    header = _fingerprint(model, ref, pool if callable(pool) else pool_arr, n_exp, sigmas, seed)
    done = _read_store(store, header) if store is not None else {}
    fh = None
    if store is not None:
        new = not os.path.exists(store) or os.path.getsize(store) == 0
        fh = open(store, "ab")
        if new:
            fh.write((json.dumps(header) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
        else:  # a torn last line must not glue itself to the next record (blank lines are skipped)
            fh.write(b"\n")
    models = [KernelNPLM(M=model.M, sigma=s, lam=model.lam, solver=model.solver, penalties=model.penalties,
                         cg_tol=model.cg_tol, max_iter=model.max_iter, seed=model.seed, centers=model.centers,
                         threads=model.threads or None, grad_tol=model.grad_tol, max_newton=model.max_newton,
                         hessian=model.hessian, center_pool=model.center_pool) for s in sigmas]
    use_fast = fast if fast is not None else _toys_fast.applicable(models)
    if use_fast and not _toys_fast.applicable(models):
        raise ValueError("fast=True needs a single-penalty newton-step model in dense Hessian mode "
                         "(hessian='dense', or 'auto' with M <= 200) with centers from the reference "
                         "(center_pool='reference') or given")
    weights = np.full(ref.shape[0], n_exp / ref.shape[0])
    shared = [_toys_fast.SharedReference(m, ref, weights) for m in models] if use_fast else None
    todo = [k for k in range(toys) if k not in done]
    try:
        for start in range(0, len(todo), batch):
            block = todo[start:start + batch]
            drawn = {k: _draw_toy(seed, k, n_exp, pool_arr, pool, ref.shape[1]) for k in block}
            ts = {k: [0.0] * len(sigmas) for k in block}  # a toy with no events: f = 0, t = 0
            conv = {k: [True] * len(sigmas) for k in block}
            busy = [k for k in block if drawn[k].shape[0] > 0]
            for j, m in enumerate(models):
                if use_fast and busy:
                    steps = [shared[j].alpha(drawn[k]) for k in busy]
                    for k, t, st in zip(busy, shared[j].t_batch([s[0] for s in steps], [s[1] for s in steps]), steps):
                        ts[k][j], conv[k][j] = float(t), bool(st[3])
                else:
                    for k in busy:
                        r = m.fit(ref, drawn[k], n_expected=n_exp)
                        ts[k][j], conv[k][j] = r.t, bool(r.converged)
            for k in block:
                done[k] = {"k": k, "seed": int(seed), "n": int(drawn[k].shape[0]), "t": ts[k], "converged": conv[k]}
                if fh is not None:
                    fh.write((json.dumps(done[k]) + "\n").encode())
                    fh.flush()
                    os.fsync(fh.fileno())
    finally:
        if fh is not None:
            fh.close()
    recs = [done[k] for k in range(toys)]
    return Calibration(t=np.array([r["t"] for r in recs], dtype=float), sigmas=sigmas,
                       n_events=np.array([r["n"] for r in recs]), converged=np.array([r["converged"] for r in recs]),
                       seed=int(seed), settings=header)
