"""Input validation with messages that say what was wrong and what was expected.

Runs before any heavy work; the core validates again (std::invalid_argument -> ValueError).
"""
from __future__ import annotations

import numbers

import numpy as np


def as_events(x, name: str, d: int | None = None) -> np.ndarray:
    """(n, d) float64 C-contiguous array of finite values; a 1-D array is n events of one feature."""
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (events, features) or 1-D (events,), got {arr.ndim}-D shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 events)")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 features")
    if d is not None and arr.shape[1] != d:
        raise ValueError(f"{name} has {arr.shape[1]} features but the reference has {d}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at event {bad[0]}, feature {bad[1]})")
    return arr


def positive_number(value, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    ok = np.isfinite(v) and (v >= 0 if allow_zero else v > 0)
    if not ok:
        raise ValueError(f"{name} must be finite and {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def threads_arg(threads) -> int:
    """None -> 0 (all cores), else a positive integer."""
    return 0 if threads is None else positive_int(threads, "threads")


def reference_weights(weights, n_expected, n_reference: int, n_data: int) -> np.ndarray:
    """Per-event reference weights: given (scalar or (N_R,)), or N(R)/N_R with N(R) = n_expected or N_D.

    Given weights may have either sign (simulated events of NLO generators carry negative ones):
    each must be finite and their total N(R) positive."""
    if weights is not None and n_expected is not None:
        raise ValueError("give either reference_weights or n_expected, not both "
                         "(n_expected only sets equal weights N(R)/N_R)")
    if weights is None:
        total = float(n_data) if n_expected is None else positive_number(n_expected, "n_expected")
        return np.full(n_reference, total / n_reference)
    w = np.asarray(weights)
    if w.dtype == object or not (np.issubdtype(w.dtype, np.floating) or np.issubdtype(w.dtype, np.integer)):
        raise TypeError(f"reference_weights must be a real number or array, got dtype {w.dtype}")
    if w.ndim == 0:
        w = np.full(n_reference, float(w))
    elif w.shape != (n_reference,):
        raise ValueError(f"reference_weights must be a scalar or have shape ({n_reference},), got {w.shape}")
    w = np.ascontiguousarray(w, dtype=np.float64)
    if not np.isfinite(w).all():
        i = int(np.argmax(~np.isfinite(w)))
        raise ValueError(f"reference_weights must be finite (event {i} has {float(w[i])})")
    total = float(np.sum(w))
    if not total > 0:
        raise ValueError(f"reference_weights must sum to a positive total N(R) (weights of either sign are "
                         f"accepted), got sum {total:.6g} over {w.size} events ({int((w < 0).sum())} negative)")
    return w
