"""Baselines: the other model-independent tests, calibrated with the same toys as NPLM."""
from ._common import NullDistribution, calibrate_method, draw_toy
from .classical import AndersonDarling, BinnedChi2, KolmogorovSmirnov, ad_asymptotic_sf
