"""The estimators and their fit machinery: kernel and neural NPLM, the spectral and shared
solvers of the kernel flavour's toys, and fits with nuisance parameters."""
from ._kernel_defs import NotPositiveDefiniteError
from .kernel import ConvergenceWarning, KernelFitResult, KernelNPLM, sigma_heuristic
from .neural import NeuralFitResult, NeuralNPLM
from .nuisance import Nuisance, NuisanceFitResult, ShapeCoefficients, delta_statistic, learn_coefficients

__all__ = [
    "ConvergenceWarning",
    "KernelFitResult",
    "KernelNPLM",
    "NeuralFitResult",
    "NeuralNPLM",
    "NotPositiveDefiniteError",
    "Nuisance",
    "NuisanceFitResult",
    "ShapeCoefficients",
    "delta_statistic",
    "learn_coefficients",
    "sigma_heuristic",
]
