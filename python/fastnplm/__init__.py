"""fastnplm: the New Physics Learning Machine, fast.

A signal-agnostic likelihood-ratio goodness-of-fit test between a reference sample and
observed data (D'Agnolo & Wulzer 2019; kernel version: Letizia et al. 2022).
"""
from __future__ import annotations


def _preload_openblas() -> None:
    # The compiled core links libscipy_openblas.so from the scipy-openblas32 package. Its
    # RPATH finds it in a normal install; loading it here first also covers editable and
    # other layouts (the dynamic loader then reuses the loaded library by its soname).
    import ctypes
    import os

    try:
        import scipy_openblas32 as sob
    except ImportError:  # a build against a system LAPACK needs nothing here
        return
    path = os.path.join(sob.get_lib_dir(), sob.get_library(fullname=True))
    if os.path.exists(path):
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


_preload_openblas()

from ._core import version as __version__  # noqa: E402,F401
from ._info import build_info, cuda_available, cuda_built  # noqa: E402
from . import models, calibration, io, preprocessing, ui, baselines  # noqa: E402
from .models import KernelNPLM, NeuralNPLM, Nuisance  # noqa: E402
from .calibration import (  # noqa: E402
    Calibration, aggregate, calibrate, load_calibration, permutation_test, power, tune_clip)
from .io import load, load_model, save_model  # noqa: E402
from .monitor import Monitor  # noqa: E402
from .ui.dqm import MonitorService  # noqa: E402
from .ui import report  # noqa: E402
from .baselines import compare  # noqa: E402

# The everyday names; the rest lives in the subpackages: fastnplm.models (estimators, results,
# nuisances), fastnplm.calibration (toys, null distributions), fastnplm.io (files, saved models,
# ONNX, datasets), fastnplm.preprocessing, fastnplm.ui (plots, report, CLI), fastnplm.baselines.
__all__ = [
    "Calibration",
    "KernelNPLM",
    "Monitor",
    "MonitorService",
    "NeuralNPLM",
    "Nuisance",
    "aggregate",
    "baselines",
    "build_info",
    "calibrate",
    "calibration",
    "compare",
    "cuda_available",
    "cuda_built",
    "io",
    "load",
    "load_calibration",
    "load_model",
    "models",
    "permutation_test",
    "power",
    "preprocessing",
    "report",
    "save_model",
    "tune_clip",
    "ui",
]
