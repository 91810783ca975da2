"""Weight-clip tuning of neural NPLM (D'Agnolo et al. 2021; docs/method.md section 3).

The clip bounds the network's flexibility. The published model selection fixes it where the null
distribution of t follows a chi2 with as many degrees of freedom as the network has trainable
parameters n_w: a smaller clip gives a null with fewer effective degrees of freedom, a larger one
lets the network fit the fluctuations of the reference and the null runs above chi2(n_w).
``tune_clip`` runs null toys at each clip value and reports, per clip, the fitted chi2 dof and
the Kolmogorov-Smirnov p-value of the toys against chi2(n_w).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .. import _checks
from ..models.neural import NeuralNPLM
from ._run import Calibration, calibrate
from .null import ToyNull


@dataclass
class ClipScan:
    """The null toys of a neural model at several clip values.

    Attributes
    ----------
    clips : (C,) array
        The clip values scanned, increasing.
    n_params : int
        n_w, the trainable parameters of the network.
    dof : (C,) array
        Maximum-likelihood chi2 degrees of freedom of each clip's toys.
    ks_pvalue : (C,) array
        KS p-value of each clip's toys against chi2(n_w).
    ks_pvalue_fit : (C,) array
        KS p-value of each clip's toys against the chi2 with the fitted dof.
    best_clip : float
        The clip whose toys match chi2(n_w) best: the largest KS p-value against it.
    calibrations : list of Calibration
        Each clip's toys (``t`` (toys, 1)), usable to test data at that clip.
    """

    clips: np.ndarray
    n_params: int
    dof: np.ndarray
    ks_pvalue: np.ndarray
    ks_pvalue_fit: np.ndarray
    best_clip: float
    calibrations: list = field(repr=False)

    def table(self) -> list:
        """One dict per clip: clip, toys, fitted dof, KS p-values, mean and std of t."""
        return [{"clip": float(c), "toys": int(cal.t.shape[0]), "dof": float(k), "ks_pvalue": float(p),
                 "ks_pvalue_fit": float(q), "mean_t": float(cal.t[:, 0].mean()), "std_t": float(cal.t[:, 0].std())}
                for c, k, p, q, cal in zip(self.clips, self.dof, self.ks_pvalue, self.ks_pvalue_fit, self.calibrations)]


def tune_clip(reference, pool, hidden, clips, toys: int = 200, n_expected=None, seed: int = 0, store=None,
              executor=None, progress=None, **model_options) -> ClipScan:
    """Null toys of ``NeuralNPLM(hidden, clip)`` for each clip, and the clip where they follow chi2(n_w).

    Parameters
    ----------
    reference : array_like (N_R, d)
        The training reference, shared by all toys.
    pool : array_like (N_P, d)
        Reference-distributed events disjoint from ``reference``; every clip's toys are drawn
        from it with the same seeds (the same toy data at every clip).
    hidden : sequence of int
        Hidden layer widths of the network.
    clips : sequence of float
        Clip values to scan (> 0).
    toys : int
        Toys per clip.
    n_expected : float
        N(R): each toy has Poisson(N(R)) events.
    seed : int
        Seed of the toys and of the networks' initialisations.
    store : path or None
        A directory: each clip's toys go to an append-only store there (``clip_<value>.jsonl``),
        so an interrupted scan resumes where it stopped.
    executor : dask.distributed.Client or None
        As for :func:`fastnplm.calibrate`.
    progress : bool or None
        A progress bar per clip (None: only when stderr is a terminal).
    **model_options
        Further :class:`~fastnplm.NeuralNPLM` settings; ``optimizer`` defaults to "newton",
        the exact fit of the clipped model.

    Returns
    -------
    ClipScan
    """
    clips = np.asarray(clips, dtype=float).ravel()
    if clips.size == 0:
        raise ValueError("clips is empty: give at least one clip value")
    if not np.all(np.isfinite(clips)) or np.any(clips <= 0):
        raise ValueError(f"every clip must be a finite number > 0, got {clips.tolist()}")
    if np.unique(clips).size != clips.size:
        raise ValueError(f"clips has repeated values: {clips.tolist()}")
    clips = np.sort(clips)
    toys = _checks.positive_int(toys, "toys")
    if "clip" in model_options:
        raise TypeError("tune_clip scans the clip: give clips=..., not clip=")
    model_options.setdefault("optimizer", "newton")
    ref = _checks.as_events(reference, "reference")
    if store is not None:
        os.makedirs(store, exist_ok=True)
    cals: list[Calibration] = []
    n_params = 0
    for c in clips:
        model = NeuralNPLM(hidden=hidden, clip=float(c), seed=seed, **model_options)
        n_params = model.n_params(ref.shape[1])
        path = None if store is None else os.path.join(os.fspath(store), f"clip_{c:g}.jsonl")
        cals.append(calibrate(model, ref, pool, toys=toys, n_expected=n_expected, seed=seed, store=path,
                              executor=executor, progress=progress))
    dof, ks, ks_fit = [], [], []
    for cal in cals:
        t = cal.t[:, 0]
        fit = ToyNull(t).chi2_fit() if np.all(t > 0) else {"dof": float("nan"), "ks_pvalue": float("nan")}
        dof.append(fit["dof"])
        ks_fit.append(fit["ks_pvalue"])
        ks.append(float(stats.kstest(t, stats.chi2(n_params).cdf).pvalue))
    ks_arr = np.array(ks)
    return ClipScan(clips=clips, n_params=int(n_params), dof=np.array(dof), ks_pvalue=ks_arr,
                    ks_pvalue_fit=np.array(ks_fit), best_clip=float(clips[int(np.argmax(ks_arr))]), calibrations=cals)
