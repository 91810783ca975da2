"""Every method on the same toys: null distributions, p-values and power side by side."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .. import _checks
from ..calibration._toys import Toys
from ..calibration._run import calibrate
from ..models.kernel import KernelNPLM
from ..calibration.null import power_of_p_values
from ._common import NullDistribution, check_method, draw_toy, prepared, signal_rng
from .bumphunter import BumpHunter
from .classical import AndersonDarling, BinnedChi2, KolmogorovSmirnov
from .gmm import FixedBackgroundGMM
from .gp import GPResonanceSearch

log = logging.getLogger("fastnplm")

METHODS = ("nplm", "ks", "ks-fisher", "ad", "ad-fisher", "chi2", "chi2-fisher", "bumphunter", "gmm", "gmm-l1", "gp")


class NPLM:
    """Kernel NPLM as a compared method: ``fastnplm.calibrate`` toys at each width, the widths
    combined by min-p (Grosso, Letizia et al. 2024) on the same toys.

    In ``compare`` its statistic is -min_sigma p_sigma: each null toy's per-width p-values
    against the other toys (as ``fastnplm.aggregate``), a signal toy's or the data's against all
    toys, each fitted through the solver path the toys took (the spectral fast path's shared
    reference, or one plain fit per data set); ``details`` keeps the widths and every null t.

    Parameters
    ----------
    model : fastnplm.KernelNPLM or None
        Default: M = 500 centers from the reference (``center_pool="reference"``, so the toys
        take the shared-reference fast path), lam = 1e-6.
    sigmas : sequence of float or None
        Widths; None: the 10th, 50th and 90th percentiles of pairwise reference distances.
    """

    name = "nplm"

    def __init__(self, model=None, sigmas=None):
        if model is None:
            model = KernelNPLM(M=500, lam=1e-6, center_pool="reference", seed=0)
        if not isinstance(model, KernelNPLM):
            raise TypeError(f"model must be a fastnplm.KernelNPLM, got {type(model).__name__}")
        self.model = model
        self.sigmas = None if sigmas is None else tuple(_checks.positive_number(s, "sigmas entry") for s in sigmas)

    def widths(self, reference, seed=0):
        """The widths the toys are fitted at: the given ones, or percentiles of reference distances."""
        if self.sigmas is not None:
            return self.sigmas
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x51]))
        x = reference[rng.choice(reference.shape[0], size=min(2000, reference.shape[0]), replace=False)]
        d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
        dist = np.sqrt(d2[np.triu_indices(x.shape[0], 1)])
        return tuple(float(v) for v in np.percentile(dist, [10, 50, 90]))

    def statistic(self, reference, data, reference_weights=None) -> float:
        """t of the model at its own width (the generic protocol; ``compare`` runs all widths)."""
        return float(self.model.fit(reference, data, reference_weights=reference_weights).t)


def _resolve(method, options):
    if isinstance(method, str):
        kw = dict(options.get(method, {}))
        if method == "nplm":
            return NPLM(**kw)
        table = {"ks": (KolmogorovSmirnov, {}), "ks-fisher": (KolmogorovSmirnov, {"combine": "fisher"}),
                 "ad": (AndersonDarling, {}), "ad-fisher": (AndersonDarling, {"combine": "fisher"}),
                 "chi2": (BinnedChi2, {}), "chi2-fisher": (BinnedChi2, {"combine": "fisher"}),
                 "bumphunter": (BumpHunter, {}), "gmm": (FixedBackgroundGMM, {}),
                 "gmm-l1": (FixedBackgroundGMM, {"penalty": "l1", "gamma": 2.0}), "gp": (GPResonanceSearch, {})}
        if method not in table:
            raise ValueError(f"unknown method {method!r}: expected one of {METHODS} or an object with "
                             "statistic(reference, data, reference_weights=None)")
        cls, base = table[method]
        m = cls(**{**base, **kw})
        m.name = method
        return m
    check_method(method)
    return method


@dataclass
class MethodResult:
    """One method's toys and what follows from them.

    Attributes
    ----------
    name : str
    null : NullDistribution, the statistic on the null toys
    signal_t : dict {signal: ndarray (signal_toys,)}
    signal_p : dict {signal: ndarray}, each signal toy's p-value against the null toys
    power : dict {signal: {"Z=2": {...}, "Z=3": {...}, "median_z": float}}: fraction of signal
        toys with p <= Phi(-Z), its Clopper-Pearson 68.27% interval, counts
    observed : dict or None, the observed data's statistic, p (with interval) and Z
    seconds : float, wall time of this method (null and signal toys)
    """

    name: str
    null: NullDistribution
    signal_t: dict = field(default_factory=dict)
    signal_p: dict = field(default_factory=dict)
    power: dict = field(default_factory=dict)
    observed: dict | None = None
    seconds: float = 0.0
    details: dict = field(default_factory=dict)


@dataclass
class Comparison:
    """The result of ``compare``: one ``MethodResult`` per method, on the same toys."""

    methods: dict
    signals: list
    toys: int
    signal_toys: int
    seed: int
    n_expected: float
    z: tuple

    def table(self) -> list:
        """Rows {method, signal, power at each Z with intervals, median Z}."""
        rows = []
        for s in self.signals:
            for name, r in self.methods.items():
                row = {"signal": s, "method": name, "median_z": r.power[s]["median_z"]}
                for z in self.z:
                    row[f"Z={z:g}"] = r.power[s][f"Z={z:g}"]
                rows.append(row)
        return rows

    def markdown(self) -> str:
        """The power table in markdown: power at each Z (68% Clopper-Pearson interval) per method and signal."""
        names = list(self.methods)
        lines = ["| signal | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for s in self.signals:
            cells = []
            for n in names:
                p = self.methods[n].power[s]
                cells.append(" / ".join(f"{p[f'Z={z:g}']['power']:.2f}" for z in self.z))
            lines.append(f"| {s} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-ready record: settings, and per method its null t, power, signal t and observation."""
        out: dict = {"toys": self.toys, "signal_toys": self.signal_toys, "seed": self.seed, "n_expected": self.n_expected,
               "z": list(self.z), "signals": list(self.signals), "methods": {}}
        for name, r in self.methods.items():
            out["methods"][name] = {"seconds": r.seconds, "null_t": r.null.t.tolist(), "power": r.power,
                                    "signal_t": {s: v.tolist() for s, v in r.signal_t.items()},
                                    "observed": r.observed, "details": r.details}
        return out


def _signal_toy(pool, n_exp, seed, k, index, sampler, d):
    rng = signal_rng(seed, k, index)
    n = int(rng.poisson(n_exp))
    if n > pool.shape[0]:
        raise ValueError(f"signal toy {k} needs {n} background events but the pool has {pool.shape[0]}")
    bkg = pool[rng.choice(pool.shape[0], size=n, replace=False)]
    sig = np.asarray(sampler(rng), dtype=float)
    if sig.size == 0:
        return bkg
    sig = _checks.as_events(sig, "signal_sampler(rng)", d=d)
    return np.concatenate([bkg, sig])


def _nplm_results(method, ref, pool, n_exp, toys, seed, signal_sets, observed):
    """Null toys through fastnplm.calibrate, the signal toys and the data through the same solver
    path; widths combined by min-p on the same toys."""
    sigmas = method.widths(ref, seed)
    cal = calibrate(method.model, ref, pool, toys=toys, n_expected=n_exp, sigmas=sigmas, seed=seed, progress=False)
    models, path = [cal.model(j) for j in range(len(cal.sigmas))], cal.settings["path"]
    job = Toys(models, ref, None, pool, n_exp, seed, ref.shape[1], path)

    def t_of(datasets):
        out = np.zeros((len(datasets), len(models)))
        for j, m in enumerate(models):
            if path in ("spectral", "shared"):  # the solver the null toys went through
                out[:, j] = [t for t, _, _ in job.shared(j).t_batch(datasets)]
            else:
                out[:, j] = [m.fit(ref, x, n_expected=n_exp).t for x in datasets]
        return out

    t0 = cal.t  # (B, S)
    b = t0.shape[0]
    srt = np.sort(t0, axis=0)
    # null toys' per-width p against the other toys (as fastnplm.aggregate does); others against all toys
    p_null = np.column_stack([(b - np.searchsorted(srt[:, c], t0[:, c], side="left")) / b for c in range(t0.shape[1])])
    a_null = -p_null.min(axis=1)

    def agg(t):
        p = np.column_stack([(1.0 + b - np.searchsorted(srt[:, c], t[:, c], side="left")) / (b + 1)
                             for c in range(t.shape[1])])
        return -p.min(axis=1)

    null = NullDistribution(t=a_null, n_events=cal.n_events, seed=int(seed), name="nplm",
                            settings={"sigmas": list(sigmas), "path": path, "aggregation": "min-p"})
    sig_t = {s: agg(t_of(sets)) for s, sets in signal_sets.items()}
    obs = None if observed is None else float(agg(t_of([observed]))[0])
    details = {"sigmas": list(sigmas), "path": path, "per_width_null_t": t0.tolist()}
    return null, sig_t, obs, details


def compare(reference, pool, signal_sampler=None, methods=("nplm", "ks", "ad", "chi2", "bumphunter", "gmm", "gp"),
            toys: int = 300, signal_toys: int = 100, n_expected=None, seed=0, data=None, z=(2.0, 3.0),
            options=None, reference_weights=None) -> Comparison:
    """Run several tests on the same (reference, toys) and compare p-values and power.

    Parameters
    ----------
    reference : array_like (N_R, d)
    pool : array_like (N_P, d), reference-distributed events disjoint from ``reference``;
        null toys and the background of signal toys are drawn from it
    signal_sampler : callable(rng) -> (n_s, d) signal events, or dict {name: callable}, or None
        Each signal toy is a null-like toy (Poisson(N(R)) pool events) plus the sampler's events;
        signal toy k of signal i draws everything from SeedSequence([seed, k, 1 + i]).
    methods : sequence of names (``METHODS``) or method objects
        (``statistic(reference, data, reference_weights=None) -> float``, larger = more
        anomalous; optional ``prepare``)
    toys : int, null toys (toy k = fastnplm.calibrate's toy k for the same seed)
    signal_toys : int, per signal
    n_expected : float, N(R); required
    seed : int
    data : array_like or None, observed data: its statistic and p-value for each method
    z : sequence of float, significances at which power is reported
    options : dict {method name: keyword arguments} for methods given by name
    reference_weights : None or (N_R,), for the baselines (NPLM's toys need equal weights)

    Returns
    -------
    Comparison
    """
    if n_expected is None:
        raise ValueError("n_expected (N(R), the expected number of events) is required")
    n_exp = _checks.positive_number(n_expected, "n_expected")
    toys = _checks.positive_int(toys, "toys")
    signal_toys = _checks.positive_int(signal_toys, "signal_toys")
    ref = _checks.as_events(reference, "reference")
    d = ref.shape[1]
    pool = _checks.as_events(pool, "pool", d=d)
    options = dict(options or {})
    if isinstance(methods, (str, bytes)) or not hasattr(methods, "__iter__"):
        raise TypeError("methods must be a sequence of method names or objects")
    resolved = [_resolve(m, options) for m in methods]
    if not resolved:
        raise ValueError("methods is empty")
    names = []
    for m in resolved:
        nm = getattr(m, "name", type(m).__name__)
        base, i = nm, 2
        while nm in names:
            nm, i = f"{base}-{i}", i + 1
        names.append(nm)
    if signal_sampler is None:
        samplers = {}
    elif callable(signal_sampler):
        samplers = {"signal": signal_sampler}
    elif isinstance(signal_sampler, dict) and all(callable(v) for v in signal_sampler.values()):
        samplers = dict(signal_sampler)
    else:
        raise TypeError("signal_sampler must be callable(rng) -> events, a dict of them, or None")
    zs = tuple(float(v) for v in z)
    w = None
    if reference_weights is not None:
        w = _checks.reference_weights(reference_weights, None, ref.shape[0], 0)
        if any(isinstance(m, NPLM) for m in resolved) and not np.allclose(w, w[0], rtol=1e-12, atol=0):
            raise ValueError("the NPLM toys (fastnplm.calibrate) use equal reference weights N(R)/N_R: drop "
                             "reference_weights or the 'nplm' method")
    else:
        w = np.full(ref.shape[0], n_exp / ref.shape[0])
    observed = None if data is None else _checks.as_events(data, "data", d=d)

    null_sets = [draw_toy(ref, pool, n_exp, seed, k) for k in range(toys)]
    signal_sets = {s: [_signal_toy(pool, n_exp, seed, k, i, f, d) for k in range(signal_toys)]
                   for i, (s, f) in enumerate(samplers.items())}
    results = {}
    for name, m in zip(names, resolved):
        start = time.perf_counter()
        details = {}
        if isinstance(m, NPLM):
            null, sig_t, obs_t, details = _nplm_results(m, ref, pool, n_exp, toys, seed, signal_sets, observed)
        else:
            stat = prepared(m, ref, w)
            t = np.array([stat(x) if x.shape[0] else 0.0 for x in null_sets])
            null = NullDistribution(t=t, n_events=np.array([x.shape[0] for x in null_sets]), seed=int(seed), name=name)
            sig_t = {s: np.array([stat(x) for x in sets]) for s, sets in signal_sets.items()}
            obs_t = None if observed is None else float(stat(observed))
        res = MethodResult(name=name, null=null, details=details)
        for s, ts in sig_t.items():
            res.signal_t[s] = ts
            res.signal_p[s] = null.p_values(ts)
            res.power[s] = power_of_p_values(res.signal_p[s], zs)
        if obs_t is not None:
            pv = null.p_value(obs_t)
            res.observed = {"t": obs_t, **pv, "z": float(stats.norm.isf(pv["p"]))}
        res.seconds = time.perf_counter() - start
        log.info("compare: %s done in %.1f s", name, res.seconds)
        results[name] = res
    return Comparison(methods=results, signals=list(samplers), toys=toys, signal_toys=signal_toys, seed=int(seed),
                      n_expected=n_exp, z=zs)
