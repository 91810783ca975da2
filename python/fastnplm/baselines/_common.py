"""The small protocol every baseline follows, and toy calibration of any statistic.

A *method* is any object with

    statistic(reference, data, reference_weights=None) -> float   (larger = more anomalous)

and, optionally, ``prepare(reference, reference_weights=None) -> callable(data) -> float``:
the reference-only work (sorting, a background fit) done once and shared by all toys.
Toys are drawn exactly as ``fastnplm.calibrate`` draws them (toy k from (seed, k) only:
Poisson(N(R)) events from the pool without replacement), so toy k is the same data set
for NPLM and for every baseline.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .. import _checks
from ..calibration.null import ToyNull, clopper_pearson  # noqa: F401  (clopper_pearson: re-exported by fastnplm.baselines)
from ..calibration._toys import Toys

log = logging.getLogger("fastnplm")


def range_arg(range):
    """A histogram range: None, or (lo, hi) as floats with lo < hi, both finite."""
    if range is None:
        return None
    lo, hi = (float(v) for v in range)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"range must be (lo, hi) with lo < hi, got {range!r}")
    return lo, hi


def feature_arg(feature) -> int:
    """The index of the scanned feature: a non-negative integer."""
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) or feature < 0:
        raise TypeError(f"feature must be a non-negative integer, got {feature!r}")
    return int(feature)


def reference_and_weights(reference, reference_weights):
    """Validated (N_R, d) reference and its weights, or None for "N(R) = N_D of each data set".
    Weights may have either sign (with a positive total): each method says what it does with them."""
    ref = _checks.as_events(reference, "reference")
    if reference_weights is None:
        return ref, None
    return ref, _checks.reference_weights(reference_weights, None, ref.shape[0], 0)


def require_unsigned(weights, method: str, why: str) -> None:
    """Refuse reference weights with a negative entry, for a method that cannot use them (``why``)."""
    if weights is not None and (weights < 0).any():
        i = int(np.argmax(weights < 0))
        raise ValueError(f"{method} does not take negative reference weights (event {i} has {weights[i]:.6g}): "
                         f"{why}; merge negative weights with positive neighbours first, or use a method that "
                         "takes them (NPLM, KolmogorovSmirnov, BinnedChi2, BumpHunter)")


def require_nonnegative_bins(expected, method: str, edges=None) -> None:
    """With signed weights, every bin's expected count (the reference weights summed in it) must be >= 0."""
    bad = np.flatnonzero(np.asarray(expected) < 0)
    if bad.size:
        i = int(bad[0])
        where = "" if edges is None else f" [{edges[i]:.6g}, {edges[i + 1]:.6g})"
        raise ValueError(f"{method}: the reference weights sum to {expected[i]:.6g} < 0 in bin {i}{where} "
                         f"({bad.size} such bins): with weights of either sign each bin's expected count must "
                         "be >= 0; use wider bins, or merge negative weights with positive neighbours")


def expected_total(weights, n_data: int) -> float:
    """N(R): the weights' sum, or N_D when no weights were given (fastnplm's default)."""
    return float(n_data) if weights is None else float(weights.sum())


def prepared(method, reference, reference_weights=None):
    """callable(data) -> float for ``method`` on this reference (its ``prepare`` when it has one)."""
    if hasattr(method, "prepare"):
        return method.prepare(reference, reference_weights)
    if not callable(getattr(method, "statistic", None)):
        raise TypeError(f"a method needs statistic(reference, data, reference_weights=None); got {type(method).__name__}")
    return lambda data: float(method.statistic(reference, data, reference_weights))


def check_method(method):
    if not (callable(getattr(method, "statistic", None)) or callable(getattr(method, "prepare", None))):
        raise TypeError("a method must have statistic(reference, data, reference_weights=None) -> float "
                        f"(larger = more anomalous); got {type(method).__name__}")


def draw_toy(reference, pool, n_expected, seed, k):
    """Toy k's events: the same draw as ``fastnplm.calibrate`` (Poisson(N(R)) events from the
    pool without replacement, from toy_rng(seed, k))."""
    ref = np.asarray(reference)
    return Toys([], ref, None, pool, float(n_expected), int(seed), ref.shape[1], "plain").draw(k)[0]


def signal_rng(seed, k, index=0) -> np.random.Generator:
    """Signal toy k of signal ``index``: a stream disjoint from the null toys' toy_rng(seed, k)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(k), 1 + int(index)]))


@dataclass
class NullDistribution:
    """Toy values of a statistic under the reference hypothesis.

    Attributes
    ----------
    t : ndarray (toys,)
    n_events : ndarray (toys,)
    seed : int
    name : str
    """

    t: np.ndarray
    n_events: np.ndarray
    seed: int
    name: str = ""
    settings: dict = field(default_factory=dict)

    @property
    def toys(self) -> int:
        return int(self.t.size)

    def null(self) -> ToyNull:
        return ToyNull(self.t)

    def p_value(self, t_obs: float, cl: float = 0.6827) -> dict:
        """(1 + #{t_toy >= t_obs}) / (B + 1), with the Clopper-Pearson interval of the exceeding fraction."""
        return self.null().p_value(t_obs, cl)

    def p_values(self, t_obs) -> np.ndarray:
        """Empirical p-values of many observations at once."""
        return self.null().p_values(t_obs)

    def z(self, t_obs: float) -> float:
        return self.null().z(t_obs)


def calibrate_method(method, reference, pool, toys: int = 300, n_expected=None, seed=0,
                     reference_weights=None) -> NullDistribution:
    """Null distribution of a baseline's statistic from toys.

    Parameters
    ----------
    method : a baseline object (``statistic`` / ``prepare``), e.g. ``KolmogorovSmirnov()``
    reference : array_like (N_R, d) the reference sample, shared by all toys
    pool : array_like (N_P, d) reference-distributed events disjoint from ``reference``
    toys : int
    n_expected : float, N(R): each toy has Poisson(N(R)) events
    seed : int, toy k uses toy_rng(seed, k) only (the same toys as ``fastnplm.calibrate``)
    reference_weights : None, scalar or (N_R,), passed to the method (None: N(R)/N_R each)
    """
    check_method(method)
    toys = _checks.positive_int(toys, "toys")
    if n_expected is None:
        raise ValueError("n_expected (N(R), the expected number of events) is required for toys")
    n_exp = _checks.positive_number(n_expected, "n_expected")
    ref = _checks.as_events(reference, "reference")
    pool = _checks.as_events(pool, "pool", d=ref.shape[1])
    w = _checks.reference_weights(reference_weights, None if reference_weights is not None else n_exp,
                                  ref.shape[0], 0)
    stat = prepared(method, ref, w)
    t = np.empty(toys)
    n = np.empty(toys, dtype=int)
    for k in range(toys):
        data = draw_toy(ref, pool, n_exp, seed, k)
        n[k] = data.shape[0]
        t[k] = stat(data) if data.shape[0] else 0.0
    return NullDistribution(t=t, n_events=n, seed=int(seed), name=getattr(method, "name", type(method).__name__))
