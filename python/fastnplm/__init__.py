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
from .calibration import Calibration, aggregate, calibrate, load_calibration, power  # noqa: E402
from ._info import build_info, cuda_available, cuda_built  # noqa: E402
from .model_io import SavedModel, load_model, save_model  # noqa: E402
from .onnx_export import export_onnx  # noqa: E402
from .kernel import ConvergenceWarning, KernelFitResult, KernelNPLM, sigma_heuristic  # noqa: E402
from .nuisance import Nuisance, ShapeCoefficients, delta_statistic, learn_coefficients  # noqa: E402
from .neural import NeuralFitResult, NeuralNPLM  # noqa: E402
from .io import load  # noqa: E402
from . import plot  # noqa: E402,F401  (matplotlib is imported only when a plot is drawn)
from .report import report  # noqa: E402
from .monitor import Monitor  # noqa: E402
from .preprocessing import DivideByMean, Standardize, scaler_from_dict  # noqa: E402
from . import baselines  # noqa: E402
from .baselines import compare  # noqa: E402

__all__ = [
    "Calibration",
    "ConvergenceWarning",
    "DivideByMean",
    "KernelFitResult",
    "KernelNPLM",
    "Nuisance",
    "ShapeCoefficients",
    "NeuralFitResult",
    "NeuralNPLM",
    "SavedModel",
    "aggregate",
    "build_info",
    "baselines",
    "calibrate",
    "compare",
    "cuda_available",
    "cuda_built",
    "delta_statistic",
    "export_onnx",
    "learn_coefficients",
    "load",
    "load_calibration",
    "load_model",
    "Monitor",
    "power",
    "report",
    "save_model",
    "scaler_from_dict",
    "sigma_heuristic",
    "Standardize",
]
