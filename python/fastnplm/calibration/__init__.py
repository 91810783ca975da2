"""Calibration: toys of the null hypothesis, their append-only store, p-values and Z.

``calibrate`` runs the toys (``_toys``: each toy's data and the solver path; ``_store``: the
resumable store); :class:`~fastnplm.calibration.null.ToyNull` turns toys into p-values with
intervals, Z, the chi2 fit and power, for the calibration and the baselines alike.
"""
from ._run import AGGREGATIONS, Calibration, aggregate, calibrate, load_calibration, power, toy_rng, verdict
from .null import ToyNull, clopper_pearson

__all__ = [
    "AGGREGATIONS",
    "Calibration",
    "ToyNull",
    "aggregate",
    "calibrate",
    "clopper_pearson",
    "load_calibration",
    "power",
    "toy_rng",
    "verdict",
]
