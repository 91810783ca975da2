"""Toy null distributions and binomial intervals: one implementation of the p-value with its
interval, Z, the chi2 fit and power, shared by the calibration of NPLM and by the baselines."""
from __future__ import annotations

import numpy as np
from scipy import optimize, stats


def clopper_pearson(k: int, n: int, cl: float = 0.6827):
    """Central Clopper-Pearson interval for a binomial fraction k/n at confidence ``cl``."""
    a = 1.0 - cl
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


class ToyNull:
    """The toy values of a statistic under the reference hypothesis (larger = more anomalous).

    The empirical p-value of an observation is p = (1 + #{t_toy >= t_obs}) / (B + 1) for B toys.
    """

    def __init__(self, t):
        self.t = np.asarray(t, dtype=float).ravel()

    @property
    def toys(self) -> int:
        """The number of toys B."""
        return int(self.t.size)

    def p_value(self, t_obs: float, cl: float = 0.6827, extrapolate: bool = False) -> dict:
        """p, the Clopper-Pearson interval (at ``cl``) of the fraction of toys at or above t_obs,
        ``exceeded`` and ``toys``. With ``extrapolate`` and no toy at or above t_obs: also
        ``bound`` (p is below it) and ``chi2_extrapolation`` (the fitted chi2's p-value, labelled
        as an extrapolation beyond the toys)."""
        b = self.toys
        k = int(np.count_nonzero(self.t >= t_obs))
        out = {"p": (1 + k) / (b + 1), "interval": clopper_pearson(k, b, cl), "exceeded": k, "toys": b}
        if extrapolate and k == 0:
            dof = self.chi2_fit()["dof"]
            out["bound"] = 1.0 / (b + 1)
            out["chi2_extrapolation"] = {"p": float(stats.chi2.sf(t_obs, dof)), "dof": dof,
                                         "note": "extrapolation beyond the toys, not a toy-based p-value"}
        return out

    def p_values(self, t_obs) -> np.ndarray:
        """Empirical p-values of many observations at once (the same values as p_value)."""
        srt = np.sort(self.t)
        t_obs = np.asarray(t_obs, dtype=float)
        return (1.0 + self.toys - np.searchsorted(srt, t_obs, side="left")) / (self.toys + 1)

    def z(self, t_obs: float) -> float:
        """Z = Phi^-1(1 - p) of the empirical p-value."""
        return float(stats.norm.isf(self.p_value(t_obs)["p"]))

    def chi2_fit(self) -> dict:
        """Maximum-likelihood chi2 degrees of freedom of the toys, and the KS test against it."""
        t = self.t
        if np.any(t <= 0):
            raise ValueError("chi2_fit needs positive toy t values")
        nll = lambda k: -(stats.chi2.logpdf(t, k).sum()) if k > 0 else np.inf  # noqa: E731
        mean = float(t.mean())
        res = optimize.minimize_scalar(nll, bounds=(1e-3, max(10 * mean, 10.0)), method="bounded",
                                       options={"xatol": 1e-8})
        dof = float(res.x)
        ks = stats.kstest(t, stats.chi2(dof).cdf)
        return {"dof": dof, "ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue)}

    def power(self, t_signal, zs=(2.0, 3.0)) -> dict:
        """Power of signal toys: see :func:`power_of_p_values`."""
        return power_of_p_values(self.p_values(np.asarray(t_signal, dtype=float).ravel()), zs)


def power_of_p_values(p, zs) -> dict:
    """For each Z in ``zs``, the fraction of signal toys with p <= Phi(-Z) ("Z={z:g}": power, its
    68% Clopper-Pearson interval, k of n), and the median Z of the signal toys."""
    p = np.asarray(p, dtype=float)
    n = p.size
    if n == 0:
        raise ValueError("no signal toys")
    out: dict = {}
    for z in zs:
        k = int(np.count_nonzero(p <= stats.norm.sf(z)))
        out[f"Z={z:g}"] = {"power": k / n, "interval": clopper_pearson(k, n), "k": k, "n": n}
    out["median_z"] = float(np.median(stats.norm.isf(p)))
    return out
