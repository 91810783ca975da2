"""A second implementation of the Newton fit's subproblem, in numpy: the oracle of the core's
_core.box_qp (cpp/include/fastnplm/box_qp.hpp). Approximately minimise q(s) = g.s + s.H.s / 2
over lo <= s <= hi by projected Newton from s = 0; the same algorithm, written with numpy and
scipy's LAPACK (Cholesky, symmetric eigen-decomposition by another driver), so the two agree to
rounding on a single subproblem."""
import numpy as np
from scipy.linalg import cho_factor, cho_solve

ARMIJO = 1e-4
MAX_HALVINGS = 50
QP_ITER = 20
MAX_DOUBLINGS = 10


def _project(s, lo, hi):
    return np.minimum(np.maximum(s, lo), hi)


def _arc(H, gq, s, q, d, lo, hi, expand):
    """The search along the projection arc P(s + a d) of the model q (value q at s, gradient
    gq): a = 1 halved until q falls by ARMIJO of its linear prediction, then (``expand``)
    doubled while q keeps falling. Returns (s_new, q_new), or None."""
    Hd = H @ d
    gd, dHd = float(gq @ d), float(d @ Hd)

    def model(a):
        sn = _project(s + a * d, lo, hi)
        step = sn - s
        if np.array_equal(step, a * d):  # not bent by the box: q along the line, no product
            return sn, q + a * gd + 0.5 * a * a * dHd
        return sn, q + float(gq @ step) + 0.5 * float(step @ (H @ step))

    a, best = 1.0, None
    for _ in range(MAX_HALVINGS):
        sn, qn = model(a)
        if qn <= q + ARMIJO * float(gq @ (sn - s)):
            best = (sn, qn)
            break
        a *= 0.5
    if best is None:
        return None
    for _ in range(MAX_DOUBLINGS if expand else 0):
        a *= 2.0
        sn, qn = model(a)
        if qn >= best[1] or np.array_equal(sn, best[0]):
            break
        best = (sn, qn)
    return best


def _damped_newton(H, g):
    """-H~^-1 g and whether H has negative curvature: H~ = H where H is positive definite (a
    Cholesky factorisation succeeds), else V diag(max(|lam|, mu)) V^T (mu = 1e-10 max |lam|)."""
    try:
        return -cho_solve(cho_factor(H), g), False
    except np.linalg.LinAlgError:
        lam, V = np.linalg.eigh(H)
        # a floor far above the underflow range: where H vanishes on the free coordinates the
        # direction is huge but finite, and the box and the trust region bound the step
        mu = max(1e-10 * float(np.max(np.abs(lam))), 1e-150)
        return -(V @ ((V.T @ g) / np.maximum(np.abs(lam), mu))), bool(lam[0] < 0)


def box_qp(g, H, lo, hi, rtol):
    """Approximately minimise q(s) = g.s + s.H.s / 2 over lo <= s <= hi (lo <= 0 <= hi).

    Projected Newton on q from s = 0: the first direction is -g (a Cauchy step), the next ones
    damped Newton directions on the free coordinates; stops when the projected gradient of q is
    at most ``rtol`` times its value at s = 0, or when q stops decreasing.
    """
    s = np.zeros_like(g)
    q = 0.0
    gq = g.copy()
    pg0 = float(np.max(np.abs(_project(-gq, lo, hi))))
    for it in range(QP_ITER):
        pg = float(np.max(np.abs(s - _project(s - gq, lo, hi))))
        if pg <= rtol * pg0 or pg == 0.0:
            break
        if it == 0:  # the projected-gradient (Cauchy) direction, scaled by the curvature along it
            curv = float(gq @ (H @ gq))
            d = -gq * (float(gq @ gq) / curv if curv > 0 else max(hi.max() - lo.min(), 1.0) / max(pg, 1e-300))
            expand = True
        else:
            free = ~(((s <= lo) & (gq > 0)) | ((s >= hi) & (gq < 0)))
            d = np.zeros_like(s)
            d[free], expand = _damped_newton(H[np.ix_(free, free)], gq[free])
        width = float(np.max(hi - lo))  # no step need be longer than the box is wide
        dmax = float(np.max(np.abs(d)))
        if dmax > width:
            d *= width / dmax
        best = _arc(H, gq, s, q, d, lo, hi, expand)
        if best is None or best[1] >= q:
            break
        s, q = best
        gq = g + H @ s
    return s, q
