"""Classical two-sample tests per feature, combined across features.

Per feature: the two-sample Kolmogorov-Smirnov distance, the two-sample Anderson-Darling
statistic (Scholz & Stephens 1987, the "right" ECDF variant), or Pearson's chi2 in bins
that are equiprobable under the reference. Each gives a per-feature p-value from its
asymptotic distribution; features are combined by Bonferroni (d * min p) or Fisher
(-2 sum log p). Features are usually correlated, so neither combination has a known null
distribution: the combined statistic is calibrated by toys (``calibrate_method`` or
``fastnplm.compare``) and the asymptotic per-feature p-values only order the data sets.

Weighted references. scipy's ``ks_2samp`` and ``anderson_ksamp`` take unweighted samples.
The statistics here are written with the reference's *weighted* empirical distribution
function F_R(x) = sum_{e: x_e <= x} w_e / sum w; with equal weights they are scipy's
statistics exactly (tested). The per-feature asymptotic p-values then use the Kish
effective size n_eff = (sum w)^2 / sum w^2 of the reference (an approximation, which the toy
calibration of the combined statistic does not rely on).

Weights of either sign (a positive total). F_R is then an unbiased estimate of the reference's
distribution function that need not be monotone. Kolmogorov-Smirnov takes it as it is (the
extremes of F_D - F_R still sit at the pooled points). The chi2 places its edges at the quantiles
of the running maximum of F_R and requires every bin's expected count to be >= 0.
Anderson-Darling weighs each point by the increment of the pooled distribution function,
which a negative weight makes negative: it refuses negative weights.
"""
from __future__ import annotations

import numpy as np
from scipy import special, stats

from .. import _checks
from ._common import expected_total, reference_and_weights, require_nonnegative_bins, require_unsigned

COMBINATIONS = ("bonferroni", "fisher")
_TINY = np.finfo(float).tiny


def ad_asymptotic_sf(a2):
    """P(A^2 > a2) for the limiting Anderson-Darling distribution (Marsaglia & Marsaglia 2004,
    J. Stat. Softw. 9(2), "ADinf"; absolute error below 2e-6). It is the limit of the
    two-sample statistic A^2_{2N} of Scholz & Stephens (1987) as both samples grow."""
    z = np.atleast_1d(np.asarray(a2, dtype=float))
    cdf = np.zeros_like(z)
    lo = (z > 0) & (z < 2)
    zl = z[lo]
    cdf[lo] = np.exp(-1.2337141 / zl) / np.sqrt(zl) * (
        2.00012 + (0.247105 - (0.0649821 - (0.0347962 - (0.011672 - 0.00168691 * zl) * zl) * zl) * zl) * zl)
    hi = z >= 2
    zh = z[hi]
    cdf[hi] = np.exp(-np.exp(1.0776 - (2.30695 - (0.43424 - (0.082433 - (0.008056 - 0.0003146 * zh) * zh) * zh)
                                       * zh) * zh))
    out = np.clip(1.0 - cdf, 0.0, 1.0)
    return out if np.ndim(a2) else float(out[0])


def combine(p, how: str) -> float:
    """Combined statistic of per-feature p-values, larger = more anomalous:
    Bonferroni -log(min(1, d * min p)), Fisher -2 sum log p."""
    p = np.maximum(np.asarray(p, dtype=float), _TINY)
    if how == "bonferroni":
        return float(-np.log(min(1.0, p.size * p.min())))
    return float(-2.0 * np.log(p).sum())


class _PerFeature:
    """Shared machinery: per-feature p-values, combined across features."""

    name = ""

    def _prepare_feature(self, x, w):
        """The reference-only work for one feature (x its values, w the weights)."""
        raise NotImplementedError

    def _feature(self, state, y, w):
        """(statistic, asymptotic p) of one feature's data y against its prepared reference."""
        raise NotImplementedError

    def __init__(self, combine: str = "bonferroni", features=None):
        if combine not in COMBINATIONS:
            raise ValueError(f"combine must be one of {COMBINATIONS}, got {combine!r}")
        self.combine = combine
        self.features = None if features is None else [int(f) for f in np.atleast_1d(features)]

    def _columns(self, d):
        cols = list(range(d)) if self.features is None else self.features
        for c in cols:
            if not 0 <= c < d:
                raise ValueError(f"feature index {c} out of range for {d} features")
        return cols

    def prepare(self, reference, reference_weights=None):
        """callable(data) -> combined statistic, with the reference-only work done once."""
        ref, w = reference_and_weights(reference, reference_weights)
        cols = self._columns(ref.shape[1])
        states = [self._prepare_feature(ref[:, c], w) for c in cols]

        def stat(data):
            data = _checks.as_events(data, "data", d=ref.shape[1])
            p = [self._feature(s, data[:, c], w)[1] for s, c in zip(states, cols)]
            return combine(p, self.combine)
        return stat

    def statistic(self, reference, data, reference_weights=None) -> float:
        """Combined statistic on (reference, data), larger = more anomalous."""
        return self.prepare(reference, reference_weights)(data)

    def per_feature(self, reference, data, reference_weights=None) -> dict:
        """Per-feature statistics and asymptotic p-values, and the combined statistic."""
        ref, w = reference_and_weights(reference, reference_weights)
        data = _checks.as_events(data, "data", d=ref.shape[1])
        cols = self._columns(ref.shape[1])
        out = [self._feature(self._prepare_feature(ref[:, c], w), data[:, c], w) for c in cols]
        p = [o[1] for o in out]
        return {"features": cols, "statistic": [o[0] for o in out], "p": p, "combined": combine(p, self.combine),
                "combine": self.combine}


def _sorted_weighted(x, w):
    """Sorted values, their cumulative weight fraction (the weighted ECDF right after each),
    each value's weight fraction and the Kish effective size."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    if w is None:
        n = xs.size
        frac = np.full(n, 1.0 / n)
        return xs, np.arange(1, n + 1) / n, frac, float(n)
    ws = w[order]
    frac = ws / ws.sum()
    return xs, np.cumsum(frac), frac, float(ws.sum() ** 2 / (ws ** 2).sum())


def _ecdf_at(sorted_x, cum, points):
    """The right-continuous ECDF of (sorted_x, cum) at points."""
    i = np.searchsorted(sorted_x, points, side="right")
    return np.where(i > 0, cum[np.maximum(i - 1, 0)], 0.0)


class KolmogorovSmirnov(_PerFeature):
    """Per-feature two-sample Kolmogorov-Smirnov test, combined across features.

    Per feature, D = sup_x |F_D(x) - F_R(x)| with F_R the reference's weighted ECDF (equal
    weights: ``scipy.stats.ks_2samp``'s statistic), and its asymptotic p-value
    ``scipy.stats.kstwo.sf(D, round(n m / (n + m)))`` (scipy's ``method="asymp"``), with m the
    reference's effective size.

    Parameters
    ----------
    combine : {"bonferroni", "fisher"}
    features : sequence of int or None, the columns tested (None: all)
    """

    name = "ks"

    def _prepare_feature(self, x, w):
        return _sorted_weighted(x, w)

    def _feature(self, state, y, w):
        xs, cum, _, m = state
        ys = np.sort(y)
        n = ys.size
        fd = np.arange(1, n + 1) / n
        # F_D - F_R is a right-continuous step function: its extremes sit at the pooled points
        d_at_data = np.abs(fd - _ecdf_at(xs, cum, ys))
        d_at_ref = np.abs(_ecdf_at(ys, fd, xs) - cum)
        d = float(max(d_at_data.max(), d_at_ref.max()))
        big, small = max(m, n), min(m, n)
        en = big * small / (big + small)
        return d, float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))


class AndersonDarling(_PerFeature):
    """Per-feature two-sample Anderson-Darling test, combined across features.

    Per feature, the Scholz-Stephens (1987) statistic with right-continuous ECDFs,

        A^2 = (m n / N) sum_z dH(z) (F_D(z) - F_R(z))^2 / (H(z) (1 - H(z))),

    summed over the pooled points z with H(z) < 1, H = (m F_R + n F_D) / N the pooled ECDF,
    N = m + n (equal weights: the unnormalised A^2_kN of ``scipy.stats.anderson_ksamp(...,
    variant="right")``, for k = 2). Weighted reference: F_R weighted, m its effective size,
    dH of a reference event m w_e / (N sum w). Per-feature p-value: the limiting distribution
    (``ad_asymptotic_sf``), uncapped, where scipy's interpolated p-value stops at [0.001, 0.25].

    Parameters
    ----------
    combine : {"bonferroni", "fisher"}
    features : sequence of int or None
    """

    name = "ad"

    def _prepare_feature(self, x, w):
        require_unsigned(w, "AndersonDarling", "it weighs each point by the increment of the pooled distribution "
                         "function, which a negative weight makes negative")
        return _sorted_weighted(x, w)

    def _feature(self, state, y, w):
        xs, cum, frac, m = state
        ys = np.sort(y)
        n = ys.size
        big_n = m + n
        fd = np.arange(1, n + 1) / n
        fr_ref, fd_ref = cum, _ecdf_at(ys, fd, xs)
        fr_dat, fd_dat = _ecdf_at(xs, cum, ys), fd
        total = 0.0
        for fr, fdd, dh in ((fr_ref, fd_ref, frac * (m / big_n)), (fr_dat, fd_dat, np.full(n, 1.0 / big_n))):
            h = (m * fr + n * fdd) / big_n
            ok = h < 1.0 - 1e-12
            total += float(np.sum(dh[ok] * (fdd[ok] - fr[ok]) ** 2 / (h[ok] * (1.0 - h[ok]))))
        a2 = m * n / big_n * total
        return a2, float(ad_asymptotic_sf(a2))


def weighted_quantiles(x, w, q):
    """Quantiles q of x under weights w (inverse of the weighted ECDF; None: equal weights). With
    weights of either sign, of the ECDF's running maximum (the ECDF itself when w >= 0)."""
    xs, cum, _, _ = _sorted_weighted(np.asarray(x, dtype=float), w)
    i = np.searchsorted(np.maximum.accumulate(cum), q, side="left")
    return xs[np.clip(i, 0, xs.size - 1)]


class BinnedChi2(_PerFeature):
    """Per-feature Pearson chi2 in bins equiprobable under the reference, combined across features.

    Bin edges e_j are the reference's weighted quantiles at j / bins, bins (e_{j-1}, e_j] (outer
    bins open to +-infinity, so every data event is counted); expected counts e_b = N(R) x (reference
    weight fraction in bin b), with N(R) the sum of the reference weights (or N_D when none
    are given). chi2 = sum_b (n_b - e_b)^2 / e_b; per-feature p-value chi2_sf(chi2, bins)
    (the normalisation is tested too: no degree of freedom is removed).

    Parameters
    ----------
    bins : int, bins per feature (>= 2)
    combine : {"bonferroni", "fisher"}
    features : sequence of int or None
    """

    name = "chi2"

    def __init__(self, bins: int = 20, combine: str = "bonferroni", features=None):
        super().__init__(combine, features)
        self.bins = _checks.positive_int(bins, "bins")
        if self.bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")

    def _prepare_feature(self, x, w):
        inner = weighted_quantiles(x, w, np.arange(1, self.bins) / self.bins)
        edges = np.concatenate([[-np.inf], inner, [np.inf]])
        idx = np.searchsorted(inner, x, side="left")  # bins (e_{j-1}, e_j]: the quantile edge closes its bin
        ww = np.ones_like(x) if w is None else w
        frac = np.bincount(idx, weights=ww, minlength=self.bins) / ww.sum()
        require_nonnegative_bins(frac * ww.sum(), "BinnedChi2", edges)
        return edges, inner, frac

    def _feature(self, state, y, w):
        edges, inner, frac = state
        counts = np.bincount(np.searchsorted(inner, y, side="left"), minlength=self.bins)
        expected = expected_total(w, y.size) * frac
        ok = expected > 0
        chi2 = float(np.sum((counts[ok] - expected[ok]) ** 2 / expected[ok]))
        return chi2, float(special.chdtrc(int(ok.sum()), chi2))
