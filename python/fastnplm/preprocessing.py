"""Feature preprocessing of the published NPLM analyses, fitted on the reference only.

The transformation is learnt from the reference sample and then applied, unchanged, to the
reference, the data and every toy: fitting it on the data would let the data shape their
own test. Both scalers are affine, ``(x - offset) / scale`` per feature, and serialise to a
plain dict (JSON-friendly) so the exact transformation travels with the result.
"""
from __future__ import annotations

import json

import numpy as np

from . import _checks


class _AffineScaler:
    """``(x - offset) / scale`` per feature, with offset and scale fitted on the reference."""

    kind = "affine"

    def __init__(self):
        self.offset_ = None
        self.scale_ = None

    def _fit_params(self, x, w):  # pragma: no cover - defined by the subclasses
        raise NotImplementedError

    def fit(self, reference, weights=None):
        """Learn offset and scale from the reference events.

        Parameters
        ----------
        reference : array_like, (N_R, d) or (N_R,)
        weights : array_like (N_R,) or None
            Per-event reference weights (the weighted moments are used), of either sign with a
            positive total; None: unweighted.

        Returns
        -------
        self
        """
        x = _checks.as_events(reference, "reference")
        w = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64).ravel()
            if w.shape != (x.shape[0],):
                raise ValueError(f"weights has {w.size} entries but the reference has {x.shape[0]} events")
            if not np.isfinite(w).all() or not w.sum() > 0:
                raise ValueError("weights must be finite, of either sign, with a positive total")
        with np.errstate(invalid="ignore"):  # a negative weighted variance (signed weights): NaN, refused below
            offset, scale = self._fit_params(x, w)
        bad = np.flatnonzero(~np.isfinite(scale) | (scale == 0))
        if bad.size:
            why = self._zero_reason + (", or a negative weighted moment" if w is not None and (w < 0).any() else "")
            raise ValueError(f"{type(self).__name__}: feature(s) {bad.tolist()} of the reference give a zero scale "
                             f"({why}); drop them or use another preprocessing")
        self.offset_, self.scale_ = offset, scale
        return self

    def _fitted(self):
        if self.scale_ is None:
            raise ValueError(f"{type(self).__name__} is not fitted: call fit(reference) first")

    def transform(self, x) -> np.ndarray:
        """Apply the reference-fitted transformation to events x, shape (n, d) or (n,)."""
        self._fitted()
        arr = _checks.as_events(x, "x", d=self.scale_.size)
        return (arr - self.offset_) / self.scale_

    def fit_transform(self, reference, weights=None) -> np.ndarray:
        """``fit(reference, weights).transform(reference)``."""
        return self.fit(reference, weights).transform(reference)

    def inverse_transform(self, z) -> np.ndarray:
        """Back to the original units: ``z * scale + offset``."""
        self._fitted()
        arr = _checks.as_events(z, "z", d=self.scale_.size)
        return arr * self.scale_ + self.offset_

    def to_dict(self) -> dict:
        """JSON-friendly description, restored by :func:`scaler_from_dict`."""
        self._fitted()
        return {"kind": self.kind, "offset": self.offset_.tolist(), "scale": self.scale_.tolist()}

    @classmethod
    def from_dict(cls, d: dict):
        """Rebuild from :meth:`to_dict` output."""
        if d.get("kind") != cls.kind:
            raise ValueError(f"this dict describes a {d.get('kind')!r} scaler, not {cls.kind!r}")
        obj = cls()
        obj.offset_ = np.asarray(d["offset"], dtype=np.float64)
        obj.scale_ = np.asarray(d["scale"], dtype=np.float64)
        if obj.offset_.shape != obj.scale_.shape or obj.scale_.ndim != 1:
            raise ValueError("offset and scale must be 1-D lists of the same length")
        return obj

    def save(self, path) -> None:
        """Write :meth:`to_dict` as JSON."""
        with open(path, "w") as fh:
            json.dump(self.to_dict(), fh, indent=1)

    @classmethod
    def load(cls, path):
        """Read a scaler written by :meth:`save`."""
        with open(path) as fh:
            return cls.from_dict(json.load(fh))

    def __repr__(self):
        if self.scale_ is None:
            return f"{type(self).__name__}(unfitted)"
        return f"{type(self).__name__}(offset={self.offset_.tolist()}, scale={self.scale_.tolist()})"


def _weighted_mean(x, w):
    return x.mean(axis=0) if w is None else (w[:, None] * x).sum(axis=0) / w.sum()


class Standardize(_AffineScaler):
    """Zero mean and unit standard deviation per feature, as measured on the reference.

    ``z = (x - mean_R) / std_R`` (population standard deviation, ddof = 0; weighted moments
    when weights are given).

    Examples
    --------
    >>> pre = Standardize().fit(reference)
    >>> ref_z, data_z = pre.transform(reference), pre.transform(data)
    """

    kind = "standardize"
    _zero_reason = "constant in the reference"

    def _fit_params(self, x, w):
        mean = _weighted_mean(x, w)
        var = _weighted_mean((x - mean) ** 2, w)
        return mean, np.sqrt(var)


class DivideByMean(_AffineScaler):
    """Each feature divided by its reference mean, ``z = x / mean_R`` (no shift).

    The choice of the 5D dimuon NPLM study (D'Agnolo et al. 2021) for positive features such
    as transverse momenta.
    """

    kind = "divide-by-mean"
    _zero_reason = "zero reference mean"

    def _fit_params(self, x, w):
        mean = _weighted_mean(x, w)
        return np.zeros_like(mean), mean


SCALERS = {cls.kind: cls for cls in (Standardize, DivideByMean)}


def scaler_from_dict(d: dict):
    """The scaler that :meth:`to_dict` described (either kind)."""
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind not in SCALERS:
        raise ValueError(f"unknown scaler kind {kind!r}; known: {', '.join(SCALERS)}")
    return SCALERS[kind].from_dict(d)
