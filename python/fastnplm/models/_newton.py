"""A box-constrained second-order minimiser: Newton with a trust region and an active set.

It minimises a smooth L(theta) under abs(theta) <= bound, given a function that returns L, its
gradient g and its exact Hessian H (for the neural NPLM the core's ``mlp_loss_grad_hess``) and a
cheaper one that returns L alone (trial points). Each iteration:

1. Stop when the projected gradient ``max|P(theta - g) - theta|`` is at most ``tol`` (P clips
   to the box): the first-order optimality (KKT) conditions to within tol -- free coordinates
   have abs(g) <= tol, coordinates at +bound g <= tol, at -bound g >= -tol.
2. The step s approximately minimises the quadratic model q(s) = g.s + s.H.s / 2 over the box
   intersected with the trust region max|s| <= radius (an l-infinity region, itself a box). That
   bound-constrained, possibly nonconvex, quadratic program is solved in the core
   (``_core.box_qp``, cpp/include/fastnplm/box_qp.hpp) by projected Newton on q (Bertsekas
   1982): an active set (coordinates at a face of the box whose model gradient pushes
   outwards), a Newton direction on the free coordinates -- damped where the free-variable
   Hessian is not positive definite, H_FF = V diag(lam) V^T replaced by V diag(max(|lam|,
   mu)) V^T so that negative curvature is followed downhill -- and a search along the
   projection arc P(s + a d) (a = 1, halved until q decreases enough, doubled while q keeps
   decreasing along negative curvature). The first of these iterations starts along -g, so the
   step decreases the model at least as much as the projected-gradient (Cauchy) step.
3. The step is taken when the loss falls by at least 1e-4 of the model's decrease; the radius
   shrinks when the model predicted poorly, grows when it predicted well and the step reached
   the region's edge. A step whose predicted and actual changes are both below the loss's
   rounding (``noise``) is taken as it is. Where the box QP leaves no coordinate at a face and
   the free Hessian is positive definite, the step is Newton's: the convergence is quadratic.
4. At a point that meets the tolerance, the free Hessian's most negative eigenvalue, when it is
   clearly negative, is tried as a direction (both signs): a saddle point is left rather than
   reported. Only a point with no such descent is returned as converged.
"""
from __future__ import annotations

import numpy as np

from .. import _core

ETA = 1e-4  # accept a step when the loss falls by at least this fraction of the model's decrease
MAX_HALVINGS = 50  # the saddle escape's halvings of its step
_MASK = (1 << 64) - 1


def restart_seed(seed: int, r: int) -> int:
    """The seed of a Newton fit's start r: ``seed`` for r = 0, else the r-th output of splitmix64
    seeded with ``seed`` (the generator of ``mlp_init``), so every start follows from ``seed``."""
    if r == 0:
        return int(seed)
    z = (int(seed) + r * 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def projected_newton(fun, loss, x0, bound, tol, max_iter, noise):
    """Minimise L(x) under abs(x) <= bound from x0 (clipped into the box).

    Parameters
    ----------
    fun : callable
        ``fun(x) -> (L, gradient, Hessian)`` at x.
    loss : callable
        ``loss(x) -> L`` alone (trial points).
    x0 : ndarray
        Starting point.
    bound : float or ndarray
        The box half-width (> 0), or one per coordinate (np.inf: a free coordinate).
    tol : float
        Stopping tolerance on the projected-gradient norm (max norm).
    max_iter : int
        Iteration limit (steps taken).
    noise : float
        The rounding of L: changes below it are not told apart.

    Returns
    -------
    dict
        x, loss, grad, iterations, converged, message, history (L after each step taken,
        the start first), pg_norm (the final projected-gradient norm), trials (losses computed
        at trial points).
    """
    x = np.clip(np.asarray(x0, dtype=np.float64), -bound, bound)
    scale = _scale(bound)
    L, g, H = fun(x)
    history = [L]
    radius, it, trials, message, converged = min(1.0, float(np.min(bound))), 0, 0, "", False
    if not np.isfinite(L) or not np.all(np.isfinite(g)):
        return dict(x=x, loss=L, grad=g, iterations=0, converged=False, history=np.asarray(history), trials=0,
                    message="the loss or gradient is not finite at the start", pg_norm=np.inf)
    while True:
        pgn = float(np.max(np.abs(x - np.clip(x - g, -bound, bound))))
        if pgn <= tol:
            moved = _leave_saddle(loss, x, g, H, L, bound, scale, noise)
            trials += 1 if moved is None else 0
            if moved is None:
                converged, message = True, f"projected gradient {pgn:.3g} <= tol {tol:.3g}"
                break
            x = moved
        else:
            if it >= max_iter:
                message = f"iteration limit {max_iter} reached (projected gradient {pgn:.3g})"
                break
            lo = np.maximum(-bound - x, -radius)
            hi = np.minimum(bound - x, radius)
            s, q = _core.box_qp(g, H, lo, hi, min(0.5, np.sqrt(pgn)))
            xn = np.clip(x + s, -bound, bound)
            Ln = loss(xn)
            trials += 1
            pred = -q
            ok = np.isfinite(Ln) and ((pred > 0 and L - Ln >= ETA * pred) or (pred <= noise and Ln <= L + noise))
            rho = (L - Ln) / pred if pred > 0 and np.isfinite(Ln) else -np.inf
            sn = float(np.max(np.abs(s)))
            if rho < 0.25:
                radius = 0.25 * sn
            elif rho > 0.75 and sn >= 0.99 * radius:
                radius = min(2.0 * radius, 2.0 * scale)
            if not ok:
                if radius < 1e-15 * max(scale, 1.0):
                    message = f"the trust region collapsed (projected gradient {pgn:.3g} > tol {tol:.3g})"
                    break
                continue
            x = xn
        L, g, H = fun(x)
        history.append(L)
        it += 1
        if not (np.isfinite(L) and np.all(np.isfinite(g))):
            message = "the loss or gradient became non-finite"
            break
    pgn = float(np.max(np.abs(x - np.clip(x - g, -bound, bound))))
    return dict(x=x, loss=L, grad=g, iterations=it, converged=converged, message=message,
                history=np.asarray(history), pg_norm=pgn, trials=trials)


def _scale(bound) -> float:
    """The box's size for the trust region's limits: its largest finite half-width (1 if none)."""
    b = np.atleast_1d(np.asarray(bound, dtype=np.float64))
    finite = b[np.isfinite(b)]
    return float(finite.max()) if finite.size else 1.0


def _leave_saddle(loss, x, g, H, L, bound, scale, noise):
    """At a first-order point: a step along the free Hessian's lowest eigenvector, when its
    eigenvalue is clearly negative, that lowers L by at least a quarter of the model's -a^2
    lam / 2 (either sign, backtracking), or None."""
    eps = 1e-12 * scale
    free = ~(((x <= -bound + eps) & (g > 0)) | ((x >= bound - eps) & (g < 0)))
    if not free.any():
        return None
    lam, V = np.linalg.eigh(H[np.ix_(free, free)])
    if lam[0] >= -1e-8 * max(1.0, float(np.max(np.abs(lam)))):
        return None
    u = np.zeros_like(x)
    u[free] = V[:, 0]
    a = scale
    for _ in range(MAX_HALVINGS):
        for sign in (1.0, -1.0):
            xn = np.clip(x + sign * a * u, -bound, bound)
            Ln = loss(xn)
            if np.isfinite(Ln) and L - Ln >= max(0.25 * a * a * (-lam[0]), noise):
                return xn
        a *= 0.5
    return None
