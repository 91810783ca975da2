"""Calibration: toys of the null hypothesis, their append-only store, p-values and Z.

``calibrate`` runs the toys (``_toys``: each toy's data and the solver path; ``_store``: the
resumable store); :class:`~fastnplm.calibration.null.ToyNull` turns toys into p-values with
intervals, Z, the chi2 fit and power, for the calibration and the baselines alike.
"""
from ._run import AGGREGATIONS, Calibration, aggregate, calibrate, load_calibration, power, toy_rng, verdict
from .clip_scan import ClipScan, tune_clip
from .null import ToyNull, clopper_pearson
from .permutation import PermutationResult, permutation_test

__all__ = [
    "AGGREGATIONS",
    "Calibration",
    "PermutationResult",
    "ClipScan",
    "ToyNull",
    "aggregate",
    "calibrate",
    "clopper_pearson",
    "load_calibration",
    "permutation_test",
    "power",
    "toy_rng",
    "tune_clip",
    "verdict",
]
