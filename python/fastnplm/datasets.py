"""Bundled toy problems."""
from __future__ import annotations

import numpy as np


def exp_bump(seed=0, n_reference=200_000, n_expected=2000, n_signal=10, mean=6.4, width=0.16):
    """The 1-D benchmark of the NPLM papers: reference Exp(1), data = Poisson(n_expected)
    Exp(1) events plus ``n_signal`` events of a Gaussian bump N(mean, width).

    Returns ``(reference, data, n_expected)`` with arrays of shape (n, 1).
    """
    rng = np.random.default_rng(seed)
    reference = rng.exponential(size=(n_reference, 1))
    background = rng.exponential(size=(rng.poisson(n_expected), 1))
    signal = rng.normal(mean, width, size=(n_signal, 1))
    return reference, np.concatenate([background, signal]), float(n_expected)
