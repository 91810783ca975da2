"""Gaussian-mixture fixed-background model: semi-supervised anomaly detection.

Kuusela, Vatanen, Malmi, Raiko, Aaltonen & Nagai, "Semi-supervised anomaly detection -
towards model-independent searches of new physics", J. Phys. Conf. Ser. 368 (2012) 012032,
arXiv:1112.3329; Vatanen et al., "Semi-supervised detection of collective anomalies with an
application in high energy particle physics", IJCNN 2012 (the fixed-background EM and the
penalised variant).

1. Background: a Gaussian mixture f_B fitted to the reference with scikit-learn's
   ``GaussianMixture`` (unweighted EM: a reference with unequal weights is first resampled
   by its weights, with the seed, so negative weights are refused; ``max_reference`` caps the
   events used).
2. Data: f(x) = (1 - lam) f_B(x) + lam f_A(x), f_A = sum_j pi_j N(x; mu_j, Sigma_j) a small
   free mixture, f_B frozen, fitted by the EM written below; several starts (the seed picks
   them), the best kept.
3. Test statistic: t = 2 [l(theta_hat) - l(lam = 0)], l the data log-likelihood (t >= 0,
   clipped at 0: lam = 0 lies in the model); its null distribution from toys. The per-event
   anomaly probability is the posterior P(anomaly | x_i) = sum_j r_ij.

The EM. E-step: r_i0 = (1 - lam) f_B(x_i) / f(x_i), r_ij = lam pi_j N_j(x_i) / f(x_i).
M-step (an ECM sequence, Meng & Rubin 1993: each block maximises the expected complete-data
objective Q given the others, so the (penalised) likelihood never decreases), with
R_j = sum_i r_ij, xbar_j = sum_i r_ij x_i / R_j:

- lam = sum_j R_j / n, pi_j = R_j / sum_k R_k (f_B frozen: only lam and f_A move);
- mu_j maximises -1/2 R_j (mu - xbar_j)^T P_j (mu - xbar_j) - gamma pen(mu), P_j = Sigma_j^-1
  (Sigma_j from the previous iteration). No penalty: mu_j = xbar_j.
  L2, pen = 1/2 sum_v ((mu_v - m_v) / s_v)^2 with m, s the reference mean and standard
  deviation: (R_j P_j + gamma S^-2) mu_j = R_j P_j xbar_j + gamma S^-2 m (S = diag(s)).
  L1, pen = sum_v |mu_v - m_v| / s_v: coordinate ascent; with the other coordinates fixed,
  Q in mu_v is -1/2 R_j P_vv (mu_v - c_v)^2 - gamma |mu_v - m_v| / s_v with
  c_v = xbar_v - sum_{u != v} P_vu (mu_u - xbar_u) / P_vv, maximised by the soft threshold
  mu_v = m_v + sign(c_v - m_v) max(|c_v - m_v| - gamma / (s_v R_j P_vv), 0). Sweeps until
  the means stop moving; variables whose anomaly means all stay at the background mean are
  not selected (``selected``).
- Sigma_j maximises Q given mu_j subject to Sigma_j >= D^2, D = diag(min_scale s) (a floor, so that
  a component cannot collapse on one event): with S_j = sum_i r_ij (x_i - mu_j)(x_i - mu_j)^T / R_j,
  the eigenvalues of D^-1 S_j D^-1 clipped at 1 (``_floored``); the floor keeps the M-step exact.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import special

from .. import _checks
from ._common import reference_and_weights, require_unsigned

log = logging.getLogger("fastnplm")
PENALTIES = (None, "l1", "l2")


def _sklearn_mixture():
    try:
        from sklearn.mixture import GaussianMixture
    except ImportError:
        raise ImportError("the Gaussian-mixture baseline needs scikit-learn: pip install \"fastnplm[baselines]\"") from None
    return GaussianMixture


def _log_gauss(x, mu, cov):
    """log N(x; mu, cov) for events x (n, d)."""
    chol = np.linalg.cholesky(cov)
    z = np.linalg.solve(chol, (x - mu).T)
    return -0.5 * (z * z).sum(axis=0) - np.log(np.diag(chol)).sum() - 0.5 * x.shape[1] * np.log(2 * np.pi)


@dataclass
class GMMFitResult:
    """A fixed-background fit.

    Attributes
    ----------
    t : float, 2 [l(theta_hat) - l(0)], clipped at 0
    lam : float, the fitted anomaly fraction
    loglik, loglik_null : float, data log-likelihood at the fit and with lam = 0
    means : ndarray (K_A, d), covariances : ndarray (K_A, d, d), mixing : ndarray (K_A,)
    anomaly_probability : ndarray (n,), P(anomaly | x_i)
    selected : ndarray (d,) of bool, variables where some anomaly mean leaves the background mean
    iterations : int, converged : bool
    """

    t: float
    lam: float
    loglik: float
    loglik_null: float
    means: np.ndarray
    covariances: np.ndarray
    mixing: np.ndarray
    anomaly_probability: np.ndarray
    selected: np.ndarray
    iterations: int
    converged: bool


class FixedBackgroundGMM:
    """Semi-supervised anomaly search with a frozen Gaussian-mixture background.

    Parameters
    ----------
    n_background : int, components of the background mixture f_B (fitted to the reference)
    n_anomaly : int, components of the free anomaly mixture f_A
    penalty : None, "l1" or "l2", on the anomaly means relative to the reference mean
        (in units of the reference standard deviation per variable)
    gamma : float >= 0, the penalty's strength
    n_init : int, EM starts on each data set: the first at the candidate event where the data's
        density smoothed at init_scale most significantly exceeds the equally smoothed background
        (``_excess_order``), the second at the next candidates, the others at random events
    max_iter : int, tol : float, EM stops when the objective gains less than tol per event
    min_scale : float, variance floor (min_scale x reference std)^2 of the anomaly components
    init_scale : float, starting standard deviation of the anomaly components (x reference std)
    covariance_type : str, of the background mixture (scikit-learn's)
    max_reference : int, reference events used for the background fit (drawn with the seed)
    seed : int
    """

    name = "gmm"

    def __init__(self, n_background: int = 6, n_anomaly: int = 1, penalty=None, gamma: float = 0.0, n_init: int = 3,
                 max_iter: int = 200, tol: float = 1e-6, min_scale: float = 0.03, init_scale: float = 0.2,
                 covariance_type: str = "full", max_reference: int = 50_000, seed=0):
        self.n_background = _checks.positive_int(n_background, "n_background")
        self.n_anomaly = _checks.positive_int(n_anomaly, "n_anomaly")
        if penalty not in PENALTIES:
            raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")
        self.penalty = penalty
        self.gamma = _checks.positive_number(gamma, "gamma", allow_zero=True)
        self.n_init = _checks.positive_int(n_init, "n_init")
        self.max_iter = _checks.positive_int(max_iter, "max_iter")
        self.tol = _checks.positive_number(tol, "tol")
        self.min_scale = _checks.positive_number(min_scale, "min_scale")
        self.init_scale = _checks.positive_number(init_scale, "init_scale")
        if covariance_type not in ("full", "tied", "diag", "spherical"):
            raise ValueError(f"covariance_type must be scikit-learn's full, tied, diag or spherical, got {covariance_type!r}")
        self.covariance_type = covariance_type
        self.max_reference = _checks.positive_int(max_reference, "max_reference")
        self.seed = int(seed)

    # -- the background ----------------------------------------------------------------------
    def fit_background(self, reference, reference_weights=None):
        """The frozen background: a scikit-learn GaussianMixture fitted to the reference."""
        GaussianMixture = _sklearn_mixture()
        ref, w = reference_and_weights(reference, reference_weights)
        require_unsigned(w, "FixedBackgroundGMM", "its background is fitted by EM on events resampled by their weights")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0xB6]))
        n = min(ref.shape[0], self.max_reference)
        if w is not None and not np.allclose(w, w[0], rtol=1e-12, atol=0):
            x = ref[rng.choice(ref.shape[0], size=n, replace=True, p=w / w.sum())]  # resample by weight
        elif n < ref.shape[0]:
            x = ref[rng.choice(ref.shape[0], size=n, replace=False)]
        else:
            x = ref
        if x.shape[0] < self.n_background:
            raise ValueError(f"the reference has {x.shape[0]} events, fewer than n_background={self.n_background}")
        gm = GaussianMixture(n_components=self.n_background, covariance_type=self.covariance_type,
                             random_state=self.seed % 2**32, n_init=1, max_iter=500, tol=1e-4).fit(x)
        return _Background(gm, x.mean(axis=0), x.std(axis=0))

    # -- the data fit ------------------------------------------------------------------------
    def fit(self, reference, data, reference_weights=None, background=None) -> GMMFitResult:
        """Fit f = (1 - lam) f_B + lam f_A to data (f_B from ``background`` or fitted to the reference)."""
        bg = background if background is not None else self.fit_background(reference, reference_weights)
        return self._fit_data(bg, _checks.as_events(data, "data", d=bg.mean.size))

    def prepare(self, reference, reference_weights=None):
        """callable(data) -> t: the background mixture fitted once for every data set."""
        bg = self.fit_background(reference, reference_weights)
        return lambda data: self._fit_data(bg, _checks.as_events(data, "data", d=bg.mean.size)).t

    def statistic(self, reference, data, reference_weights=None) -> float:
        """t = 2 [l(lambda_hat) - l(0)] of the data against the reference's mixture."""
        return self.fit(reference, data, reference_weights).t

    def _penalty(self, mu, bg):
        if self.penalty is None or self.gamma == 0:
            return 0.0
        dz = (mu - bg.mean) / bg.std
        return self.gamma * (np.abs(dz).sum() if self.penalty == "l1" else 0.5 * (dz * dz).sum())

    def _means_step(self, rj, xbar, cov, mu_old, bg):
        if self.penalty is None or self.gamma == 0:
            return xbar
        prec = np.linalg.inv(cov)
        if self.penalty == "l2":
            g = np.diag(self.gamma / bg.std ** 2)
            return np.linalg.solve(rj * prec + g, rj * prec @ xbar + g @ bg.mean)
        mu = mu_old.copy()
        for _ in range(100):
            prev = mu.copy()
            for v in range(mu.size):
                c = xbar[v] - (prec[v] @ (mu - xbar) - prec[v, v] * (mu[v] - xbar[v])) / prec[v, v]
                thr = self.gamma / (bg.std[v] * rj * prec[v, v])
                dv = c - bg.mean[v]
                mu[v] = bg.mean[v] + np.sign(dv) * max(abs(dv) - thr, 0.0)
            if np.max(np.abs(mu - prev) / bg.std) < 1e-10:
                break
        return mu

    def _fit_data(self, bg, x) -> GMMFitResult:
        n, d = x.shape
        log_fb = bg.gm.score_samples(x)
        ll0 = float(log_fb.sum())
        floor = self.min_scale * bg.std
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, n, 0xA7]))
        h = self.init_scale * bg.std
        order = self._excess_order(x, bg, h, rng, log_fb)
        best = None
        for s in range(self.n_init):
            k = self.n_anomaly
            if s == 0:  # where the data most exceed the background smoothed at the starting width
                idx = order[:k]
            elif s == 1 and order.size > k:  # the next candidates
                idx = order[k:2 * k] if order.size >= 2 * k else order[-k:]
            else:  # events drawn at random
                idx = rng.choice(n, size=k, replace=n < k)
            mu = x[np.resize(idx, k)].copy()
            cov = np.repeat(np.diag(h ** 2)[None], k, axis=0)
            fit = self._em(x, log_fb, bg, floor, 0.02, np.full(k, 1.0 / k), mu, cov)
            if best is None or fit[0] > best[0]:
                best = fit
        assert best is not None
        obj, ll, lam, pi, mu, cov, post, it, conv = best
        sel = np.any(np.abs(mu - bg.mean) > 1e-9 * bg.std, axis=0)
        return GMMFitResult(t=max(0.0, 2.0 * (ll - ll0)), lam=float(lam), loglik=float(ll), loglik_null=ll0, means=mu,
                            covariances=cov, mixing=pi, anomaly_probability=post, selected=sel, iterations=it,
                            converged=conv)

    def _excess_order(self, x, bg, h, rng, log_fb=None, candidates: int = 384, atypical: int = 64):
        """Candidate events, the most significant local excess first.

        Candidates: ``candidates`` events drawn with the seed and the ``atypical`` events of lowest
        f_B. At a candidate c, the data's Gaussian-smoothed density (width h) q(c) is compared
        with the background smoothed the same way, b(c) = sum_k w_k N(c; mu_k, Sigma_k + diag(h^2))
        (exact for the fitted mixture), in units of the smoothed density's sampling error under
        the background, z = (q - b) / sqrt(b / (n (2 sqrt(pi))^d prod h))."""
        n, d = x.shape
        cand = rng.choice(n, size=min(n, candidates), replace=False)
        if log_fb is not None and atypical:
            cand = np.union1d(cand, np.argsort(log_fb, kind="stable")[:atypical])
        c = x[cand]
        kde = np.empty(c.shape[0])
        step = max(1, 2_000_000 // max(n * d, 1))  # candidates per block: at most ~16 MB of differences
        for i in range(0, c.shape[0], step):
            z = (c[i:i + step, None, :] - x[None, :, :]) / h
            kde[i:i + step] = np.exp(-0.5 * (z * z).sum(-1)).mean(axis=1)
        kde /= np.prod(np.sqrt(2 * np.pi) * h)
        gm = bg.gm
        smooth = np.zeros(c.shape[0])
        for wk, mk, ck in zip(gm.weights_, gm.means_, _full_covariances(gm)):
            smooth += wk * np.exp(_log_gauss(c, mk, ck + np.diag(h ** 2)))
        err = np.sqrt(np.maximum(smooth, 1e-300) / (n * (2 * np.sqrt(np.pi)) ** d * np.prod(h)))
        return cand[np.argsort(-(kde - smooth) / err, kind="stable")]

    def _em(self, x, log_fb, bg, floor, lam, pi, mu, cov):
        n = x.shape[0]
        prev = -np.inf
        conv = False
        for it in range(1, self.max_iter + 2):  # the last pass only evaluates the final parameters
            log_a = np.stack([_log_gauss(x, mu[j], cov[j]) for j in range(mu.shape[0])], axis=1)
            log_a += np.log(max(lam, 1e-300)) + np.log(np.maximum(pi, 1e-300))
            log_b = np.log(max(1.0 - lam, 1e-300)) + log_fb
            log_anom = log_a[:, 0] if log_a.shape[1] == 1 else special.logsumexp(log_a, axis=1)
            log_f = np.logaddexp(log_b, log_anom)
            ll = float(log_f.sum())
            obj = ll - sum(self._penalty(mu[j], bg) for j in range(mu.shape[0]))
            if obj - prev < self.tol * n:
                conv = True
                break
            if it > self.max_iter:
                break
            prev = obj
            r = np.exp(log_a - log_f[:, None])
            rj = r.sum(axis=0)
            lam = float(rj.sum() / n)
            if lam <= 1e-12:  # the anomaly component has died: the background alone
                break
            pi = rj / rj.sum()
            for j in range(mu.shape[0]):
                if rj[j] <= 1e-12:
                    continue
                xbar = r[:, j] @ x / rj[j]
                mu[j] = self._means_step(rj[j], xbar, cov[j], mu[j], bg)
                dx = x - mu[j]
                cov[j] = _floored((r[:, j, None] * dx).T @ dx / rj[j], floor)
        post = np.exp(log_anom - log_f)
        return obj, ll, lam, pi, mu, cov, post, it, conv


def _full_covariances(gm):
    """(K, d, d) covariances of a scikit-learn GaussianMixture, whatever its covariance_type."""
    k, d = gm.means_.shape
    c = gm.covariances_
    if gm.covariance_type == "full":
        return c
    if gm.covariance_type == "tied":
        return np.repeat(c[None], k, axis=0)
    if gm.covariance_type == "diag":
        return np.stack([np.diag(v) for v in c])
    return np.stack([np.eye(d) * v for v in c])


def _floored(s, scale):
    """The covariance maximising the Gaussian likelihood with sample covariance s subject to
    Sigma >= D^2 (D = diag(scale)): in the coordinates z = D^-1 x the constraint is
    eigenvalues >= 1, and the constrained maximiser clips the eigenvalues of D^-1 s D^-1 at 1."""
    sz = s / np.outer(scale, scale)
    vals, vecs = np.linalg.eigh(0.5 * (sz + sz.T))
    sz = (vecs * np.maximum(vals, 1.0)) @ vecs.T
    return sz * np.outer(scale, scale)


class _Background:
    def __init__(self, gm, mean, std):
        self.gm, self.mean = gm, mean
        self.std = np.where(std > 0, std, 1.0)
