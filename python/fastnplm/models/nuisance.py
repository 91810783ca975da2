"""Systematic uncertainties: nuisance parameters, the shape coefficients, and tau / Delta
(method.md section 6; D'Agnolo et al. 2022, "Learning New Physics from an Imperfect Machine").

The reference depends on nuisances nu through r(x; nu) = n(x|R_nu) / n(x|R_0) with

    log r(x; nu) = sum_i [ nu_i delta_i1(x) + nu_i^2 delta_i2(x) / 2 ]

(a normalisation nuisance: delta_1 = 1, delta_2 = 0, exactly), each nu_i constrained by a
Gaussian auxiliary likelihood of width sigma_i around the measured central value A_i:
-log L(nu|A)/L(0|A) = sum_i [(nu_i - A_i)^2 - A_i^2] / (2 sigma_i^2). Then

    tau   = -2 min_{f, nu} { sum_R w (e^{f + log r} - 1) - sum_D (f + log r) - log L(nu|A)/L(0|A) }
    Delta = -2 min_nu      { sum_R w (r - 1)           - sum_D log r        - log L(nu|A)/L(0|A) }
    t     = tau - Delta.

Shape coefficients delta_k(x) are learnt before looking at the data, from reference samples
generated at several nu, with the parametrised classifier of Chen, Glioti, Panico & Wulzer
(2021): c(x; nu) = 1 / (1 + r(x; nu)), loss sum_nu [sum_{S_nu} w c^2 + sum_{S_0} w (1 - c)^2]
with S_0 the nominal (nu = 0) sample, whose pointwise minimiser c = n_0 / (n_0 + n_nu) gives
r = n(x|nu) / n(x|0) (:func:`learn_coefficients`; method.md's sentence names the two samples
the other way round, which would learn 1/r). We model each delta_k as a Gaussian-kernel
expansion on M centers, written in the eigen-features of K_MM: the loss is smooth in the
order x r linear coefficients, the features come from the compiled core, and Gauss-Newton
converges in a handful of iterations (no epochs to tune, unlike a small network).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import _checks, _core
from ._kernel_defs import sigma_heuristic
from ._newton import projected_newton, restart_seed
from ._spectral import SpectralReference

KINDS = ("normalization", "shape")


class ShapeCoefficients:
    """Learnt shape coefficients delta_1..delta_order of one nuisance: delta_k(x) =
    sum_j a[k-1, j] exp(-||x - c_j||^2 / (2 sigma^2)). Save with :meth:`save`, reload with
    :meth:`load`."""

    def __init__(self, centers, sigma, a, info=None):
        self.centers = _checks.as_events(centers, "centers")
        self.sigma = _checks.positive_number(sigma, "sigma")
        self.a = np.ascontiguousarray(np.atleast_2d(np.asarray(a, dtype=float)))
        if self.a.shape[1] != self.centers.shape[0] or not np.isfinite(self.a).all():
            raise ValueError(f"coefficients must be finite with one column per center, got shape {self.a.shape}")
        self.info = dict(info or {})

    @property
    def order(self) -> int:
        """1 (delta_1 only) or 2 (delta_1 and delta_2)."""
        return self.a.shape[0]

    def __call__(self, x, threads=None) -> np.ndarray:
        """delta_k(x) for k = 1..order: shape (order, n)."""
        x = _checks.as_events(x, "x", d=self.centers.shape[1])
        k = _core.kernel_matrix(x, self.centers, self.sigma, _checks.threads_arg(threads))
        return (k @ self.a.T).T

    def save(self, path):
        """Write the coefficients to an .npz file (:meth:`load` reads it back)."""
        np.savez(path, centers=self.centers, sigma=self.sigma, a=self.a, kind="fastnplm.models.ShapeCoefficients")

    @classmethod
    def load(cls, path):
        """Read coefficients written by :meth:`save`; other files are refused."""
        with np.load(path, allow_pickle=False) as z:
            if "kind" not in z or str(z["kind"]) != "fastnplm.models.ShapeCoefficients":
                raise ValueError(f"{path!r} is not a saved fastnplm.models.ShapeCoefficients")
            return cls(z["centers"], float(z["sigma"]), z["a"])


@dataclass(frozen=True)
class Nuisance:
    """A nuisance parameter with a Gaussian auxiliary likelihood of width ``sigma``.

    kind="normalization": log r = nu exactly. kind="shape": log r = nu delta_1(x) +
    nu^2 delta_2(x) / 2 with ``coefficients`` from :func:`learn_coefficients` (order 1 or 2).
    ``central`` is the auxiliary measurement's default central value (0).
    """

    name: str
    sigma: float
    kind: str = "normalization"
    coefficients: ShapeCoefficients | None = None
    central: float = 0.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError("a nuisance needs a non-empty name")
        _checks.positive_number(self.sigma, f"nuisance {self.name!r} sigma")
        if self.kind not in KINDS:
            raise ValueError(f"unknown nuisance kind {self.kind!r}: expected one of {KINDS}")
        if self.kind == "shape":
            if not isinstance(self.coefficients, ShapeCoefficients):
                raise ValueError(f"shape nuisance {self.name!r} needs coefficients (fastnplm.models.learn_coefficients)")
            if self.coefficients.order > 2:
                raise ValueError("shape coefficients beyond order 2 are not supported")
        elif self.coefficients is not None:
            raise ValueError(f"normalization nuisance {self.name!r} takes no coefficients")
        if not np.isfinite(float(self.central)):
            raise ValueError(f"nuisance {self.name!r} central value must be finite")

    def deltas(self, x) -> np.ndarray:
        """(2, n): delta_1 and delta_2 at the events x (n, d)."""
        n = x.shape[0]
        if self.kind == "normalization":
            return np.stack([np.ones(n), np.zeros(n)])
        assert self.coefficients is not None  # a shape nuisance always has them (checked at construction)
        d = self.coefficients(x)
        return d if d.shape[0] == 2 else np.vstack([d, np.zeros(n)])


def _nuisance_list(nuisances, auxiliary):
    """Checked nuisances, their widths and auxiliary central values (A)."""
    nus = list(nuisances)
    if not nus:
        raise ValueError("nuisances is empty")
    for nu in nus:
        if not isinstance(nu, Nuisance):
            raise TypeError(f"nuisances must be fastnplm.Nuisance objects, got {type(nu).__name__}")
    names = [nu.name for nu in nus]
    if len(set(names)) != len(names):
        raise ValueError(f"nuisance names must be unique, got {names}")
    aux = {nu.name: float(nu.central) for nu in nus}
    if auxiliary is not None:
        unknown = set(auxiliary) - set(names)
        if unknown:
            raise ValueError(f"auxiliary values for unknown nuisances {sorted(unknown)}")
        for k, v in auxiliary.items():
            v = float(v)
            if not np.isfinite(v):
                raise ValueError(f"auxiliary value of {k!r} must be finite, got {v}")
            aux[k] = v
    return nus, np.array([nu.sigma for nu in nus]), np.array([aux[n] for n in names])


class _LogRatio:
    """log r(x; nu) on a fixed sample: its delta_1, delta_2 columns (n, p) and derivatives."""

    def __init__(self, nus, x):
        d = np.stack([nu.deltas(x) for nu in nus], axis=2)  # (2, n, p)
        self.d1, self.d2 = np.ascontiguousarray(d[0]), np.ascontiguousarray(d[1])

    def value(self, nu):
        return self.d1 @ nu + 0.5 * (self.d2 @ (nu * nu))

    def grad(self, nu):  # (n, p): d log r / d nu_i
        return self.d1 + self.d2 * nu


def _constraint(nu, sig, aux):
    """-log L(nu|A)/L(0|A) and its gradient and (diagonal) Hessian."""
    return (float(np.sum(((nu - aux) ** 2 - aux**2) / (2 * sig**2))), (nu - aux) / sig**2, 1.0 / sig**2)


def _newton(fun, x0, tol, max_iter=100):
    """Damped Newton with Armijo backtracking on a smooth function: fun(x) -> value, and
    fun(x, True) -> (value, grad, hess). Converged when |grad| < tol or the Newton decrement
    -grad.step falls to roundoff of the value."""
    x = np.array(x0, dtype=float)
    v, g, h = fun(x, True)
    for it in range(max_iter):
        if np.linalg.norm(g) < tol:
            return x, v, it, True
        try:
            step = -np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            step = -g
        if not g @ step < 0:  # not a descent direction (indefinite Hessian): gradient step
            step = -g
        if -(g @ step) <= 1e-13 * max(1.0, abs(v)):  # the predicted decrease is below roundoff of v
            return x, v, it, True
        t = 1.0
        for _ in range(60):
            v_new = fun(x + t * step)
            if np.isfinite(v_new) and v_new <= v + 1e-4 * t * (g @ step):
                break
            t *= 0.5
        else:
            return x, v, it, False
        x = x + t * step
        v, g, h = fun(x, True)
    return x, v, max_iter, np.linalg.norm(g) < tol


def delta_statistic(reference, data, nuisances, reference_weights=None, n_expected=None, auxiliary=None,
                    tol=1e-10):
    """Delta = -2 min_nu {sum_R w (r - 1) - sum_D log r - log L(nu|A)/L(0|A)}: the reference
    model's own best description of the data with the nuisances alone.

    Returns ``(Delta, nu_hat)`` with nu_hat a dict by nuisance name.
    """
    ref = _checks.as_events(reference, "reference")
    dat = _checks.as_events(data, "data", d=ref.shape[1])
    w = _checks.reference_weights(reference_weights, n_expected, ref.shape[0], dat.shape[0])
    nus, sig, aux = _nuisance_list(nuisances, auxiliary)
    value, nu = _delta(_LogRatio(nus, ref), _LogRatio(nus, dat), w, sig, aux, tol)
    return value, dict(zip([n.name for n in nus], nu.tolist()))


def _delta(lr_ref, lr_dat, w, sig, aux, tol):
    def fun(nu, derivatives=False):
        lr = lr_ref.value(nu)
        if lr.max() > 700:
            return (np.inf, None, None) if derivatives else np.inf
        c, cg, ch = _constraint(nu, sig, aux)
        v = w @ np.expm1(lr) - lr_dat.value(nu).sum() + c
        if not derivatives:
            return v
        wr = w * np.exp(lr)
        gr, gd = lr_ref.grad(nu), lr_dat.grad(nu)
        g = gr.T @ wr - gd.sum(axis=0) + cg
        h = (gr.T * wr) @ gr + np.diag(lr_ref.d2.T @ wr - lr_dat.d2.sum(axis=0) + ch)
        return v, g, h

    nu, v, _, ok = _newton(fun, np.zeros(len(sig)), tol * max(1.0, float(w.sum())))
    if not ok:
        raise RuntimeError("the Delta fit over the nuisances did not converge")
    return -2.0 * v, nu


@dataclass(repr=False)
class NuisanceFitResult:
    """tau, Delta and t = tau - Delta with the fitted nuisances (the pulls).

    ``nu_tau`` / ``nu_delta``: fitted nu in the tau (with f) and Delta (nuisances alone) fits;
    ``auxiliary``: the central values A used; ``fit``: the kernel fit of f (its ``predict``
    gives f without the nuisance term); ``f_reference``/``f_data``: f + log r at the events.
    """

    tau: float
    delta: float
    nu_tau: dict
    nu_delta: dict
    auxiliary: dict
    converged: bool
    newton_iterations: int
    fit: object = None
    f_reference: np.ndarray | None = field(default=None)
    f_data: np.ndarray | None = field(default=None)

    @property
    def t(self) -> float:
        """t = tau - Delta."""
        return self.tau - self.delta

    def predict(self, x, threads=None):
        """f at events x (the fitted f, without log r)."""
        return self.fit.predict(x, threads)

    def __repr__(self):
        return (f"NuisanceFitResult(t={self.t:.6g}, tau={self.tau:.6g}, delta={self.delta:.6g}, "
                f"nu_tau={self.nu_tau}, nu_delta={self.nu_delta}, converged={self.converged})")


def fit_kernel_with_nuisances(model, ref, dat, w, centers, center_scale, sigma, nuisances, auxiliary, tol=1e-10,
                              shared=None):
    """tau, Delta and t of a kernel model (``shared``: a SpectralReference of these centers and
    reference, reused across toys). (alpha, nu) minimise, jointly,

        J = (1/n) [sum_R w softplus(F) + sum_D softplus(-F)] + (lam/2) |beta|^2
            + (1/n) sum_i [(nu_i - A_i)^2 - A_i^2] / (4 sigma_i^2),     F = f + log r(x; nu),

    in the spectral feature basis (f = phi(x) . beta, |beta|^2 = alpha^T K~ alpha). The constraint
    enters with half its weight in the likelihood because near F = 0 the weighted logistic loss
    is half the NPLM loss plus a constant (expand softplus to second order: w F/2 + w F^2/8 on
    the reference, -F/2 + F^2/8 on the data, against w F + w F^2/2 and -F for (2), with
    sum_D F^2 ~ sum_R w F^2 near the null), so the surrogate weighs data against the auxiliary
    measurement as the likelihood does. The fitted F then goes into (1) for tau. Without
    nuisances this is the full minimiser of the kernel objective (solver="newton"), not the
    single Newton step: nu enters nonlinearly, and a step from nu = 0 has no fixed meaning.
    """

    nus, sig, aux = _nuisance_list(nuisances, auxiliary)
    p = len(nus)
    lr_ref, lr_dat = _LogRatio(nus, ref), _LogRatio(nus, dat)
    sr = shared  # toys with data-independent centers share the reference's features
    if sr is None:
        sr = SpectralReference(centers, center_scale, sigma, model.lam, ref, w, model.cg_tol, model.max_iter,
                               model.threads, model.spectral_tol)
    phi_r = sr.features if sr.features is not None else _core.feature_project(ref, centers, sigma, sr.g, threads=model.threads)[0]
    phi_d = _core.feature_project(dat, centers, sigma, sr.g, threads=model.threads)[0]
    n, r = ref.shape[0] + dat.shape[0], sr.r

    def fun(theta, derivatives=False):
        beta, nu = theta[:r], theta[r:]
        fr, fd = phi_r @ beta + lr_ref.value(nu), phi_d @ beta + lr_dat.value(nu)
        c, cg, ch = _constraint(nu, sig, aux)
        v = (w @ np.logaddexp(0.0, fr) + np.logaddexp(0.0, -fd).sum() + 0.5 * c) / n + 0.5 * model.lam * beta @ beta
        if not derivatives:
            return v
        sr_, sd_ = _sigmoid(fr), _sigmoid(-fd)
        ur, ud = w * sr_, -sd_  # dl/dF on the reference and the data
        hr, hd = w * sr_ * (1 - sr_), sd_ * (1 - sd_)  # d2l/dF2
        gr, gd = lr_ref.grad(nu), lr_dat.grad(nu)  # dF/dnu
        g = np.concatenate([phi_r.T @ ur + phi_d.T @ ud + n * model.lam * beta,
                            gr.T @ ur + gd.T @ ud + 0.5 * cg]) / n
        h = np.empty((r + p, r + p))
        h[:r, :r] = (_core.features_gram(phi_r, hr, model.threads) + _core.features_gram(phi_d, hd, model.threads)
                     + n * model.lam * np.eye(r))
        hgr, hgd = gr * hr[:, None], gd * hd[:, None]
        h[:r, r:] = phi_r.T @ hgr + phi_d.T @ hgd
        h[r:, :r] = h[:r, r:].T
        h[r:, r:] = gr.T @ hgr + gd.T @ hgd + np.diag(lr_ref.d2.T @ ur + lr_dat.d2.T @ ud + 0.5 * ch)
        return v, g, h / n

    theta, _, iters, ok = _newton(fun, np.zeros(r + p), tol)
    beta, nu = theta[:r], theta[r:]
    fr, fd = phi_r @ beta + lr_ref.value(nu), phi_d @ beta + lr_dat.value(nu)
    c, _, _ = _constraint(nu, sig, aux)
    tau = -2.0 * (w @ np.expm1(fr) - fd.sum() + c)
    delta, nu_d = _delta(lr_ref, lr_dat, w, sig, aux, tol)
    names = [x.name for x in nus]
    return NuisanceFitResult(tau=float(tau), delta=float(delta), nu_tau=dict(zip(names, nu.tolist())),
                             nu_delta=dict(zip(names, nu_d.tolist())),
                             auxiliary=dict(zip(names, aux.tolist())), converged=bool(ok),
                             newton_iterations=int(iters), f_reference=fr, f_data=fd,
                             fit=_KernelF(centers, sigma, sr.alpha(beta)))


class _KernelF:
    """f(x) = K(x, centers) alpha of a nuisance fit (without the nuisance term)."""

    def __init__(self, centers, sigma, alpha):
        self.centers, self.sigma, self.alpha = centers, sigma, alpha

    def predict(self, x, threads=None):
        x = _checks.as_events(x, "x", d=self.centers.shape[1])
        return _core.kernel_mv(x, self.centers, self.sigma, self.alpha, _checks.threads_arg(threads))


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def learn_coefficients(samples, order=2, weights=None, M=100, sigma=None, lam=1e-8, seed=0, threads=None,
                       max_iter=100) -> ShapeCoefficients:
    """Shape coefficients delta_1..delta_order of one nuisance from reference samples generated
    at several values of it (the parametrised classifier of Chen, Glioti, Panico & Wulzer 2021).

    Parameters
    ----------
    samples : dict {nu: array (n, d)}
        Reference samples generated at each nu; must include nu = 0 and at least ``order``
        other values (e.g. -2s, -s, +s, +2s for a nuisance of width s).
    order : 1 or 2
    weights : dict {nu: array (n,)} or None
        Event weights; None: each sample weighs 1 in total (the shape-only case: every sample
        stands for the same expected yield). Give weights to learn yield changes too. Weights
        may have either sign (a positive total per sample): the Newton iteration then takes a
        gradient step where the Gauss-Newton step is not a descent direction.
    M, sigma, lam, seed
        The kernel expansion: M centers drawn (with ``seed``) from the pooled samples; width
        ``sigma`` (default: the 90th-percentile heuristic on the nu = 0 sample); ridge lam on
        sum_k a_k^T K_MM a_k.
    """
    if not isinstance(samples, dict) or not samples:
        raise TypeError("samples must be a dict {nu: events} that includes nu = 0")
    order = _checks.positive_int(order, "order")
    if order > 2:
        raise ValueError("order must be 1 or 2")
    keys = [float(k) for k in samples]
    if 0.0 not in keys:
        raise ValueError("samples must include the nominal sample at nu = 0")
    if any(not np.isfinite(k) for k in keys):
        raise ValueError("sample nu values must be finite")
    others = sorted(k for k in keys if k != 0.0)
    if len(others) < order:
        raise ValueError(f"order {order} needs at least {order} samples at nu != 0, got {len(others)}")
    by_nu = {float(k): v for k, v in samples.items()}
    x0 = _checks.as_events(by_nu[0.0], "samples[0]")
    xs = {k: _checks.as_events(by_nu[k], f"samples[{k}]", d=x0.shape[1]) for k in others}
    ws = {}
    for k, x in [(0.0, x0), *xs.items()]:
        if weights is None:
            ws[k] = np.full(x.shape[0], 1.0 / x.shape[0])
        else:
            wk = np.asarray(weights[[kk for kk in weights if float(kk) == k][0]], dtype=float)
            if wk.shape != (x.shape[0],) or not (np.isfinite(wk).all() and wk.sum() > 0):
                raise ValueError(f"weights for nu={k} must be finite, one per event, of either sign with a "
                                 "positive total")
            ws[k] = wk
    threads = _checks.threads_arg(threads)
    lam = _checks.positive_number(lam, "lam", allow_zero=True)
    if sigma is None:
        sigma = sigma_heuristic(x0, seed=seed)
    sigma = _checks.positive_number(sigma, "sigma")
    pooled = np.vstack([x0, *xs.values()])
    M = _checks.positive_int(M, "M")
    if M > pooled.shape[0]:
        raise ValueError(f"M={M} is larger than the pooled samples ({pooled.shape[0]} events)")
    centers = pooled[np.sort(np.random.default_rng(seed).choice(pooled.shape[0], size=M, replace=False))]
    # eigen-features of the kernel basis (well conditioned; directions below 1e-12 of the
    # largest eigenvalue dropped): delta_k = phi b_k, a_k = G b_k, |b_k|^2 = a_k^T K_MM a_k
    ev, vec = np.linalg.eigh(_core.kernel_matrix(centers, centers, sigma, threads))
    keep = ev > 1e-12 * ev[-1]
    G = np.ascontiguousarray(vec[:, keep] / np.sqrt(ev[keep]))
    r = G.shape[1]
    phi = {k: _core.feature_project(x, centers, sigma, G, threads=threads)[0] for k, x in [(0.0, x0), *xs.items()]}
    coef = np.array([[nu**j / math.factorial(j) for j in range(1, order + 1)] for nu in others])  # (S, order)

    def fun(flat, derivatives=False):
        b = flat.reshape(order, r)
        d = {k: f @ b.T for k, f in phi.items()}  # delta_k on each sample, (n, order)
        v, g, h = lam * flat @ flat, 2 * lam * flat, 2 * lam * np.eye(order * r)
        for si, k in enumerate(others):
            # c = 1/(1 + r): pushed to 0 on the sample at nu, to 1 on the nominal one, so that the
            # minimiser is c = n_0 / (n_0 + n_nu), i.e. r = n(x|nu) / n(x|0)
            for key, target in ((k, 0.0), (0.0, 1.0)):
                c = _sigmoid(-(d[key] @ coef[si]))
                res = c - target
                dres = -c * (1 - c)  # d res / d log r
                wk = ws[key]
                v += wk @ (res * res)
                if not derivatives:
                    continue
                gs = 2 * wk * res * dres
                jac = np.kron(coef[si], phi[key])  # d log r / d b, (n, order * r)
                g += jac.T @ gs
                h += 2 * (jac.T * (wk * dres * dres)) @ jac  # Gauss-Newton
        return (v, g, h) if derivatives else v

    flat, v, iters, ok = _newton(fun, np.zeros(order * r), 1e-12, max_iter=max_iter)
    a = (G @ flat.reshape(order, r).T).T
    return ShapeCoefficients(centers, sigma, a, info={"loss": float(v), "iterations": int(iters),
                                                      "converged": bool(ok), "nu": others})


def fit_neural_with_nuisances(model, ref, dat, w, nuisances, auxiliary, rounds=20, tol=1e-10):
    """tau, Delta and t of a neural model: the minimum over (network, nu) of
    L = sum_R w (e^{f + log r} - 1) - sum_D (f + log r) - log L(nu|A)/L(0|A).

    For fixed nu, L is the plain NPLM loss with reference weights w r(x; nu), up to a constant.
    optimizer="lbfgsb": one L-BFGS-B run over the network parameters (boxed at the clip) and nu
    (free) together, with the core's loss and gradient at weights w r(nu) and d L / d nu from
    f on the events. optimizer="adam": ``rounds`` alternations of Adam on the network at fixed
    nu (epochs / rounds updates each, its moments restarting every round) and the exact nu step
    at fixed f (Delta's problem with reference weights w e^f). optimizer="newton": the
    projected Newton fit (fastnplm/models/_newton.py) of network and nu together, on the exact
    joint Hessian (:func:`_newton_joint`). tau = -2 L at the end.
    """
    nus, sig, aux = _nuisance_list(nuisances, auxiliary)
    lr_ref, lr_dat = _LogRatio(nus, ref), _LogRatio(nus, dat)
    hidden, threads, dtype = list(model.hidden), model.threads, getattr(model, "dtype", "float64")
    backend = model.resolved_backend()
    params, nu, p = model.init_params(ref.shape[1]), np.zeros(len(nus)), len(nus)
    n_par = params.shape[0]

    def joint(theta):  # theta = (network parameters, nu / sigma): nu in units of its width
        q, v = theta[:n_par], theta[n_par:] * sig
        wr = w * np.exp(lr_ref.value(v))
        loss, grad = _core.mlp_loss_grad(ref, wr, [dat], hidden, q.reshape(1, -1), True, threads, dtype, backend)
        c, cg, _ = _constraint(v, sig, aux)
        f_ref = _core.mlp_predict(ref, hidden, q, threads)
        value = float(loss[0]) + (wr - w).sum() - lr_dat.value(v).sum() + c
        g_nu = lr_ref.grad(v).T @ (wr * np.exp(f_ref)) - lr_dat.grad(v).sum(axis=0) + cg
        return value, np.concatenate([grad[0], g_nu * sig])

    if model.optimizer == "lbfgsb":
        from scipy.optimize import minimize
        bounds = [(-model.clip, model.clip)] * n_par + [(None, None)] * p
        res = minimize(joint, np.concatenate([params, nu]), jac=True, method="L-BFGS-B", bounds=bounds,
                       options=dict(maxiter=model.epochs, maxfun=10 * model.epochs, ftol=1e-12, gtol=1e-7,
                                    maxcor=20))
        params, nu, done = res.x[:n_par], res.x[n_par:] * sig, int(res.nit)
        ok = bool(np.isfinite(res.fun)) and (res.success or "ABNORMAL" in str(res.message))
    elif model.optimizer == "newton":
        params, nu, done, ok = _newton_joint(model, ref, dat, w, lr_ref, lr_dat, sig, aux)
    else:
        rounds, epochs, done, ok = max(1, min(int(rounds), model.epochs)), model.epochs, 0, True
        for k in range(rounds):
            n_k = epochs // rounds + (1 if k < epochs % rounds else 0)
            out = model.train_adam(ref, w * np.exp(lr_ref.value(nu)), [dat], params[None, :], epochs=n_k)[0]
            params, done, ok = out["params"], done + out["epochs_done"], ok and out["converged"]
            f_ref = _core.mlp_predict(ref, hidden, params, threads)
            _, nu = _delta(lr_ref, lr_dat, w * np.exp(f_ref), sig, aux, tol)
    f_ref, f_dat = _core.mlp_predict(ref, hidden, params, threads), _core.mlp_predict(dat, hidden, params, threads)
    fr, fd = f_ref + lr_ref.value(nu), f_dat + lr_dat.value(nu)
    c, _, _ = _constraint(nu, sig, aux)
    tau = -2.0 * (w @ np.expm1(fr) - fd.sum() + c)
    delta, nu_d = _delta(lr_ref, lr_dat, w, sig, aux, tol)
    names = [x.name for x in nus]
    return NuisanceFitResult(tau=float(tau), delta=float(delta), nu_tau=dict(zip(names, nu.tolist())),
                             nu_delta=dict(zip(names, nu_d.tolist())), auxiliary=dict(zip(names, aux.tolist())),
                             converged=bool(ok), newton_iterations=int(done), f_reference=fr, f_data=fd,
                             fit=_NeuralF(hidden, params, ref.shape[1]))


def _newton_joint(model, ref, dat, w, lr_ref, lr_dat, sig, aux):
    """tau's minimum over (network, nu) by projected Newton on theta = (network parameters, nu /
    sigma), the network boxed at the clip and nu free, from the model's ``restarts`` starts (nu =
    0 in each); the lowest loss kept. With w' = w r(nu), e = w' e^f on the reference and
    l_i = d log r / d nu_i:

        L       = L_core(w') + sum_R (w' - w) - sum_D log r + C(nu)
        dL/dnu  = sum_R e l - sum_D l + C'
        d2L/dnu_i dnu_j = sum_R e (l_i l_j + delta_ij d2_i) - delta_ij sum_D d2_i + C''
        d2L/dtheta dnu_i = sum_R e l_i grad f

    the last from the core's gradient, linear in the reference weights: the gradient at weights
    w' (1 + l_i) less the one at w'. Returns (params, nu, steps, converged)."""
    fun, loss, bound, n_par = joint_problem(model, ref, dat, w, lr_ref, lr_dat, sig, aux)
    noise = 1e-13 * (float(np.abs(w).sum()) + dat.shape[0])
    best = None
    for r in range(model.restarts):
        start = model.init_params(ref.shape[1], model.seed if r == 0 else restart_seed(model.seed, r))
        run = projected_newton(fun, loss, np.concatenate([start, np.zeros(sig.size)]), bound, model.newton_tol,
                               model.epochs, noise)
        if best is None or run["loss"] < best["loss"]:
            best = run
    return best["x"][:n_par], best["x"][n_par:] * sig, int(best["iterations"]), bool(best["converged"])


def joint_problem(model, ref, dat, w, lr_ref, lr_dat, sig, aux):
    """The joint Newton fit's functions of theta = (network parameters, nu / sigma): fun -> (L,
    gradient, Hessian) and loss -> L (see :func:`_newton_joint`), the box half-widths (the clip,
    then inf for nu) and the number of network parameters."""
    hidden, threads = list(model.hidden), model.threads or 0
    n_par, p = model.n_params(ref.shape[1]), sig.size
    bound = np.concatenate([np.full(n_par, model.clip), np.full(p, np.inf)])

    def parts(theta):
        q, v = theta[:n_par], theta[n_par:] * sig
        return q, v, w * np.exp(lr_ref.value(v))

    def loss(theta):
        q, v, wr = parts(theta)
        core = _core.mlp_loss_grad_hess(ref, wr, dat, hidden, q, threads, False, False)[0]
        return core + float((wr - w).sum()) - float(lr_dat.value(v).sum()) + _constraint(v, sig, aux)[0]

    def fun(theta):
        q, v, wr = parts(theta)
        core, g, h = _core.mlp_loss_grad_hess(ref, wr, dat, hidden, q, threads)
        e = wr * np.exp(_core.mlp_predict(ref, hidden, q, threads))
        lr, ld = lr_ref.grad(v), lr_dat.grad(v)
        c, cg, ch = _constraint(v, sig, aux)
        value = core + float((wr - w).sum()) - float(lr_dat.value(v).sum()) + c
        g_nu = lr.T @ e - ld.sum(axis=0) + cg
        h_nn = (lr * e[:, None]).T @ lr
        h_nn = 0.5 * (h_nn + h_nn.T) + np.diag(lr_ref.d2.T @ e - lr_dat.d2.sum(axis=0) + ch)  # symmetric bits
        cross = np.stack([_core.mlp_loss_grad_hess(ref, wr * (1.0 + lr[:, i]), dat, hidden, q, threads, True,
                                                   False)[1] - g for i in range(p)], axis=1)
        grad = np.concatenate([g, g_nu * sig])
        hess = np.block([[h, cross * sig], [(cross * sig).T, h_nn * np.outer(sig, sig)]])
        return value, grad, hess

    return fun, loss, bound, n_par


class _NeuralF:
    """f(x) of a neural nuisance fit (without the nuisance term)."""

    def __init__(self, hidden, params, d):
        self.hidden, self.params, self.d = hidden, params, d

    def predict(self, x, threads=None):
        x = _checks.as_events(x, "x", d=self.d)
        return _core.mlp_predict(x, self.hidden, self.params, _checks.threads_arg(threads))
