"""What the kernel estimator and its solvers share: the Nystrom jitter, the width heuristic and the
error of an indefinite Newton step.

A leaf of the package's module graph (the estimator in ``kernel`` imports its solvers,
``_spectral`` and ``_shared``, and the nuisance fits, which all need these).
"""
from __future__ import annotations

import numpy as np

from .. import _checks, _core

PC_EPSILON = 1e-13  # Falkon's float64 jitter: T = chol(K_MM + eps * M * I)

#: A Newton step's weighted Hessian is not positive definite (reference weights of either sign,
#: negative ones outweighing the rest near some center); a ValueError, raised by the core's
#: solvers (NotPositiveDefinite in C++) and by the Python ones alike.
NotPositiveDefiniteError = _core.NotPositiveDefiniteError


def not_positive_definite(detail: str) -> ValueError:
    """The error of a Newton step whose weighted Hessian is not positive definite, in the core's
    words; ``detail`` says how it showed (the curvature CG met, an eigenvalue)."""
    return NotPositiveDefiniteError(
        f"the weighted Hessian of the Newton step is not positive definite: {detail} (negative reference "
        "weights outweigh the rest near some center); use a larger lam, fewer negative weights, or merge each "
        "negative-weight event with its positive neighbours")


def sigma_heuristic(reference, quantile: float = 0.9, max_points: int = 2000, seed=0) -> float:
    """Gaussian width from the pairwise distances of the reference sample.

    Parameters
    ----------
    reference : array_like, (N_R, d) or (N_R,)
        Reference events.
    quantile : float
        Quantile of the distances between distinct events (0.9: the 90th percentile, the
        usual NPLM choice).
    max_points : int
        At most this many events, drawn without replacement with ``seed``, enter the
        pairwise distances (their number grows as max_points**2 / 2).
    seed : int or numpy.random.Generator

    Returns
    -------
    float
        The requested quantile of the Euclidean distances (numpy's linear interpolation).
    """
    x = _checks.as_events(reference, "reference")
    q = _checks.positive_number(quantile, "quantile")
    if q > 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    max_points = _checks.positive_int(max_points, "max_points")
    if x.shape[0] < 2:
        raise ValueError("sigma_heuristic needs at least 2 reference events")
    if x.shape[0] > max_points:
        rng = np.random.default_rng(seed)
        x = x[np.sort(rng.choice(x.shape[0], size=max_points, replace=False))]
    # Distances through the Gram matrix (a different route from scipy's pdist, which the
    # tests compare with); clipped at 0 against roundoff.
    sq = np.einsum("ij,ij->i", x, x)
    iu = np.triu_indices(x.shape[0], k=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T))[iu]
    return float(np.quantile(np.sqrt(np.maximum(d2, 0.0)), q))
