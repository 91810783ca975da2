"""Repeated tests of small batches against one reference: data-quality monitoring.

A monitoring loop tests every few seconds a new batch of events against the same reference,
with the same calibrated model. When the calibration's model takes the shared-reference
(spectral) path — centers from the reference, one penalty, ``newton-step`` — the reference's
part of the fit (eigen-decomposition of K_MM, reference features) does not depend on the
batch: :class:`Monitor` computes it once, and each test then costs a pass over the batch,
giving the same t as ``calibration.model().fit(reference, batch)``.
"""
from __future__ import annotations

import time

import numpy as np
from scipy import stats

from . import _checks
from .calibration._run import check_weights


class Monitor:
    """Calibrated goodness-of-fit tests of batches against one reference.

    Parameters
    ----------
    calibration : fastnplm.Calibration
        Toys of a kernel model (``calibrate(model, reference, pool, n_expected=...)``); its
        ``n_expected`` is the expected number of events per batch.
    reference : array_like (N_R, d)
        The reference the toys were fitted against.
    sigma_index : int or None
        Which width (None: the only one).
    threads : int or None
    reference_weights : array_like (N_R,) or None
        The reference's per-event weights, when the calibration's toys used them
        (``calibrate(..., reference_weights=w)``): the same weights, checked against the hash
        the calibration records. None: equal weights N(R)/N_R.

    Examples
    --------
    >>> mon = Monitor(cal, reference)
    >>> out = mon.test(batch)          # {'t', 'p', 'z', 'converged', 'seconds'}
    """

    def __init__(self, calibration, reference, sigma_index=None, threads=None, reference_weights=None):
        from .models.kernel import KernelNPLM

        self.calibration = calibration
        self.sigma_index = 0 if sigma_index is None and len(calibration.sigmas) == 1 else sigma_index
        self.model = calibration.model(sigma_index, threads=threads)
        if not isinstance(self.model, KernelNPLM):
            raise TypeError("Monitor needs a calibration of a kernel model")
        self.reference = _checks.as_events(reference, "reference")
        self.n_expected = calibration.settings.get("n_expected")
        if self.n_expected is None:
            raise ValueError("the calibration does not record n_expected")
        n_r = self.reference.shape[0]
        check_weights(calibration.settings, self.reference, reference_weights)
        if reference_weights is None:
            self.w = np.full(n_r, float(self.n_expected) / n_r)
        else:
            self.w = _checks.reference_weights(reference_weights, None, n_r, 1)
        self.shared = None
        self._sorted_toys = None
        m = self.model
        if m.hessian in ("spectral", "shared") and m.centers is None and m.shared_centers:
            # the reference's share of every batch's fit, once (the calibration's own solver)
            self.shared = m.reference_solver(self.reference, self.w)

    def fit(self, batch):
        """The fit of one batch: a KernelFitResult equal to ``calibration.model().fit(reference, batch)``."""
        dat = _checks.as_events(batch, "batch", d=self.reference.shape[1])
        if self.shared is None:
            return self.model.fit(self.reference, dat, reference_weights=self.w)
        return self.model.fit_with(self.shared, dat)

    def test(self, batch) -> dict:
        """t of the batch, its toy p-value and Z, convergence, and the seconds the test took.

        On the shared-reference paths a test is the batch's Newton step and one pass over the
        reference for sum_R w (e^f - 1): the same t as :meth:`fit`, without the fit result's
        extras (f on the reference, the objective). p = (1 + #{toys >= t}) / (B + 1).
        """
        start = time.perf_counter()
        dat = _checks.as_events(batch, "batch", d=self.reference.shape[1])
        if self.shared is None:
            res = self.fit(dat)
            t, converged, n = float(res.t), bool(res.converged), int(res.n_data)
        else:
            t, converged, _ = self.shared.t_batch([dat])[0]
            t, converged, n = float(t), bool(converged), dat.shape[0]
        if self._sorted_toys is None:
            self._sorted_toys = np.sort(self.calibration.t[:, self.sigma_index or 0])
        b = self._sorted_toys.size
        k = b - int(np.searchsorted(self._sorted_toys, t, side="left"))  # toys with t_toy >= t
        p = (1 + k) / (b + 1)
        return {"t": t, "p": p, "z": float(stats.norm.isf(p)), "converged": converged, "n_events": n,
                "seconds": time.perf_counter() - start}
