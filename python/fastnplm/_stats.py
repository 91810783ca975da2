"""Binomial intervals shared by the calibration and the baselines."""
from __future__ import annotations

from scipy import stats


def clopper_pearson(k: int, n: int, cl: float = 0.6827):
    """Central Clopper-Pearson interval for a binomial fraction k/n at confidence ``cl``."""
    a = 1.0 - cl
    lo = 0.0 if k == 0 else float(stats.beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi
