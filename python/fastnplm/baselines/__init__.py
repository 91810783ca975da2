"""Baselines: the other model-independent tests, on the same toys as NPLM.

Every method follows one small protocol, ``statistic(reference, data, reference_weights=None)
-> float`` (larger = more anomalous), with an optional ``prepare(reference,
reference_weights=None) -> callable(data)`` doing the reference-only work once. Toys come
from the same draw as ``fastnplm.calibrate`` (toy k from (seed, k) only), so
``calibrate_method`` and ``compare`` put every method on the same pseudo-data sets.

- ``KolmogorovSmirnov``, ``AndersonDarling``, ``BinnedChi2``: per-feature two-sample tests,
  Bonferroni or Fisher across features, calibrated by toys.
- ``BumpHunter``: Choudalakis (2011) window scan of a 1D spectrum.
- ``FixedBackgroundGMM``: semi-supervised fixed-background Gaussian mixture (Kuusela et al. 2012).
- ``GPResonanceSearch``: Gaussian-process background + signal kernel (Frate et al. 2017).
- ``compare``: all of them (and kernel NPLM) on the same toys; power at Z = 2 and 3.

scikit-learn is needed for the last two (``pip install "fastnplm[baselines]"``), imported
only when they are used.
"""
from ._common import NullDistribution, calibrate_method, clopper_pearson, draw_toy
from .bumphunter import BumpHunter, BumpScan, scan, window_pvalues
from .classical import AndersonDarling, BinnedChi2, KolmogorovSmirnov, ad_asymptotic_sf, combine
from .compare import METHODS, NPLM, Comparison, MethodResult, compare
from .gmm import FixedBackgroundGMM, GMMFitResult
from .gp import GPFitResult, GPResonanceSearch, falling_kernel, signal_kernel

__all__ = ["AndersonDarling", "BinnedChi2", "BumpHunter", "BumpScan", "Comparison", "FixedBackgroundGMM",
           "GMMFitResult", "GPFitResult", "GPResonanceSearch", "KolmogorovSmirnov", "METHODS", "MethodResult", "NPLM",
           "NullDistribution", "ad_asymptotic_sf", "calibrate_method", "clopper_pearson", "combine", "compare",
           "draw_toy", "falling_kernel", "scan", "signal_kernel", "window_pvalues"]
