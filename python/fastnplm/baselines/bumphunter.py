"""BumpHunter (Choudalakis 2011, arXiv:1101.0390): the most significant excess in a 1D spectrum.

The reference gives the expected count b_i in each bin (its weights summed: weights of either
sign are accepted as long as every bin's sum is >= 0), the data the observed count d_i. Every
window of contiguous bins with width between ``width_min`` and ``width_max`` bins is scanned;
a window with d observed over b expected gets the excess-only Poisson p-value

    p = P(n >= d | b) = gammainc(d, b)   (the regularised lower incomplete gamma)  if d > b,
    p = 1                                                                          if d <= b,

(windows with b = 0 get p = 1, as in ``pyBumpHunter``; unlike it, empty reference bins at the
ends of the range are not trimmed, which matters only when the reference leaves them empty). The
test statistic is
t = -log(min p) over all windows; its distribution over background-only pseudo-experiments
gives the global p-value, look-elsewhere effect included (``pseudo_experiments``: Poisson
counts in every bin, as in the paper; ``calibrate_method`` / ``compare``: toys of events from
a pool, the NPLM toys).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from .. import _checks
from ._common import NullDistribution, feature_arg, range_arg, reference_and_weights, require_nonnegative_bins

_TINY = np.finfo(float).tiny


@dataclass
class BumpScan:
    """Result of one scan.

    Attributes
    ----------
    t : float, -log(min p)
    min_p : float, the smallest window p-value
    lo, hi : int, the best window's bins [lo, hi)
    edges : (lo_edge, hi_edge) of the best window
    observed, expected : float, counts in the best window
    p_windows : dict {width: ndarray of p for windows starting at bin 0, 1, ...}
    """

    t: float
    min_p: float
    lo: int
    hi: int
    edges: tuple
    observed: float
    expected: float
    p_windows: dict


def window_pvalues(data_counts, expected, width):
    """Excess-only Poisson p-values of all windows of ``width`` bins (window j = bins [j, j+width))."""
    d = np.asarray(data_counts, dtype=float)
    b = np.asarray(expected, dtype=float)
    cd = np.concatenate([[0.0], np.cumsum(d)])
    cb = np.concatenate([[0.0], np.cumsum(b)])
    dw = cd[width:] - cd[:-width]
    bw = cb[width:] - cb[:-width]
    p = np.ones_like(dw)
    ex = (dw > bw) & (bw > 0)
    p[ex] = special.gammainc(dw[ex], bw[ex])
    return p, dw, bw


def scan(data_counts, expected, width_min: int = 1, width_max=None) -> BumpScan:
    """BumpHunter scan of a binned spectrum (observed counts against expected counts)."""
    d = np.asarray(data_counts, dtype=float).ravel()
    b = np.asarray(expected, dtype=float).ravel()
    if d.shape != b.shape or d.size == 0:
        raise ValueError(f"data_counts and expected must be 1-D of the same non-zero length, got {d.shape} and {b.shape}")
    if not (np.isfinite(d).all() and np.isfinite(b).all()) or (d < 0).any() or (b < 0).any():
        raise ValueError("counts must be finite and >= 0")
    width_min, width_max = _widths(width_min, width_max, d.size)
    best = (np.inf, 0, 0, 0.0, 0.0)
    windows = {}
    for w in range(width_min, width_max + 1):
        p, dw, bw = window_pvalues(d, b, w)
        windows[w] = p
        j = int(np.argmin(p))
        if p[j] < best[0]:
            best = (float(p[j]), j, j + w, float(dw[j]), float(bw[j]))
    min_p, lo, hi, obs, exp = best
    return BumpScan(t=float(-np.log(max(min_p, _TINY))), min_p=min_p, lo=lo, hi=hi, edges=(lo, hi), observed=obs,
                    expected=exp, p_windows=windows)


def _widths(width_min, width_max, nbins):
    width_min = _checks.positive_int(width_min, "width_min")
    width_max = max(1, nbins // 2) if width_max is None else _checks.positive_int(width_max, "width_max")
    if width_min > width_max:
        raise ValueError(f"width_min ({width_min}) must not exceed width_max ({width_max})")
    if width_max > nbins:
        raise ValueError(f"width_max ({width_max}) exceeds the number of bins ({nbins})")
    return width_min, width_max


class BumpHunter:
    """BumpHunter on one feature of (reference, data).

    Parameters
    ----------
    bins : int or sequence of float
        Equal-width bins over ``range``, or explicit edges.
    range : (lo, hi) or None
        None: the reference's [min, max] of the feature. Events outside are not counted.
    width_min, width_max : int
        Window widths scanned, in bins (width_max None: half the bins, pyBumpHunter's default).
    feature : int
        The column scanned.
    """

    name = "bumphunter"

    def __init__(self, bins=40, range=None, width_min: int = 1, width_max=None, feature: int = 0):
        self.bins: int | np.ndarray
        if isinstance(bins, (int, np.integer)) and not isinstance(bins, bool):
            self.bins = _checks.positive_int(int(bins), "bins")
        else:
            edges = np.asarray(bins, dtype=float)
            if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0) or not np.isfinite(edges).all():
                raise ValueError("bins must be an integer or a strictly increasing sequence of >= 2 finite edges")
            self.bins = edges
        self.range = range_arg(range)
        self.width_min, self.width_max = width_min, width_max
        self.feature = feature_arg(feature)
        nb = self.bins if isinstance(self.bins, int) else self.bins.size - 1
        _widths(width_min, width_max, nb)

    def edges(self, reference):
        """The bin edges used for this reference."""
        if not isinstance(self.bins, int):
            return self.bins
        x = reference[:, self.feature]
        lo, hi = self.range if self.range is not None else (float(x.min()), float(x.max()))
        return np.linspace(lo, hi, self.bins + 1)

    def _setup(self, reference, reference_weights):
        ref, w = reference_and_weights(reference, reference_weights)
        if self.feature >= ref.shape[1]:
            raise ValueError(f"feature {self.feature} out of range for {ref.shape[1]} features")
        edges = self.edges(ref)
        hist = np.histogram(ref[:, self.feature], bins=edges, weights=w)[0]
        require_nonnegative_bins(hist, "BumpHunter", edges)
        return ref, w, edges, hist

    def expected(self, reference, reference_weights=None, n_data=None):
        """Expected counts per bin: the reference weights summed per bin (no weights: scaled to n_data)."""
        _, w, _, hist = self._setup(reference, reference_weights)
        if w is not None:
            return hist
        if n_data is None:
            raise ValueError("without reference_weights, give n_data (the expected counts are scaled to it)")
        return hist * (n_data / hist.sum())

    def prepare(self, reference, reference_weights=None):
        """callable(data) -> t: the reference's histogram built once for every data set."""
        ref, w, edges, hist = self._setup(reference, reference_weights)
        frac = hist / (hist.sum() if w is None else 1.0)  # no weights: a shape, scaled to N_D below

        def stat(data):
            data = _checks.as_events(data, "data", d=ref.shape[1])
            b = frac * data.shape[0] if w is None else frac
            counts = np.histogram(data[:, self.feature], bins=edges)[0]
            return scan(counts, b, self.width_min, self.width_max).t
        return stat

    def statistic(self, reference, data, reference_weights=None) -> float:
        """t = -log(min window p) on (reference, data)."""
        return self.prepare(reference, reference_weights)(data)

    def scan(self, reference, data, reference_weights=None) -> BumpScan:
        """The full scan (best window in bins and in the feature's units, every window's p)."""
        ref, w, edges, hist = self._setup(reference, reference_weights)
        data = _checks.as_events(data, "data", d=ref.shape[1])
        b = hist if w is not None else hist * data.shape[0] / hist.sum()
        counts = np.histogram(data[:, self.feature], bins=edges)[0]
        res = scan(counts, b, self.width_min, self.width_max)
        res.edges = (float(edges[res.lo]), float(edges[res.hi]))
        return res

    def pseudo_experiments(self, reference, toys: int = 1000, seed=0, reference_weights=None,
                           n_expected=None) -> NullDistribution:
        """Null distribution of t from background-only pseudo-experiments as in Choudalakis
        (2011): each bin's count Poisson(b_i), toy k from toy_rng(seed, k) only."""
        from ..calibration._run import toy_rng
        toys = _checks.positive_int(toys, "toys")
        ref, w, edges, hist = self._setup(reference, reference_weights)
        if w is None:
            if n_expected is None:
                raise ValueError("pseudo_experiments needs reference_weights or n_expected (N(R))")
            hist = hist * (_checks.positive_number(n_expected, "n_expected") / hist.sum())
        t = np.empty(toys)
        n = np.empty(toys, dtype=int)
        for k in range(toys):
            counts = toy_rng(seed, k).poisson(hist)
            n[k] = counts.sum()
            t[k] = scan(counts, hist, self.width_min, self.width_max).t
        return NullDistribution(t=t, n_events=n, seed=int(seed), name=self.name)


