"""Gaussian-process resonance search in a 1D spectrum.

After Frate, Cranmer, Kalia, Vandenberg-Rodes & Whiteson, "Modeling smooth backgrounds and
generic localized signals with Gaussian processes", arXiv:1709.05681 (2017): a GP with a
smooth, falling-spectrum kernel models the background of a binned spectrum; a localized
signal kernel added to it, with the background hyper-parameters frozen, extracts a
resonance. The GP machinery is scikit-learn's ``GaussianProcessRegressor`` (its
log-marginal likelihood, Cholesky solves and kernel algebra), with the two kernels below
written as scikit-learn ``Kernel`` classes.

Kernels (inputs are bin centres mapped to u in [0, 1] over the histogram range):

- background, ``FallingGibbsKernel``: k_B(u, u') = A exp(-(u + u') / (2 d))
  sqrt(2 l(u) l(u') / (l(u)^2 + l(u')^2)) exp(-(u - u')^2 / (l(u)^2 + l(u')^2)), with the
  input-dependent length scale l(u) = l0 + l1 u of Gibbs (1997); the factor exp(-u/2d)
  exp(-u'/2d) lets the prior amplitude fall with the spectrum. A product of a Gibbs kernel
  and g(u) g(u'), so positive semi-definite. Gradient by central differences in log theta.
- signal, ``SignalKernel`` (Frate et al.'s form): k_S(u, u') = A exp(-(u - u')^2 / 2 l^2)
  exp(-((u - m)^2 + (u' - m)^2) / 2 t^2): a squared-exponential times g(u) g(u') with
  g(u) = exp(-(u - m)^2 / 2 t^2), so positive semi-definite; analytic gradient.

The search on one data set: counts y_i in the bins, noise variance per bin the expected
Poisson variance b_i (from the reference; at least ``min_variance``). The background
hyper-parameters are fitted by maximum marginal likelihood to the reference's expected
spectrum (``background="reference"``, once; or to each data set, ``"data"``) and frozen. The
signal hyper-parameters (A, l, m, t) maximise the marginal likelihood of the data with
k_B + k_S: a grid over (m, t, A) picks the starts, L-BFGS-B refines the best two. The
statistic is t = 2 [LML(k_B + k_S) - LML(k_B)] (0 when the extracted signal, the summed
posterior mean of the signal component, is a deficit and ``excess_only``); calibrated by
toys like every baseline.

Speed: each fit is a few hundred marginal-likelihood evaluations on bins x bins matrices;
multithreaded BLAS only adds hand-offs there (2-3x slower on a busy machine): run toys under
``threadpoolctl.threadpool_limits(1, user_api="blas")``, as ``bench/sensitivity.py`` does.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from .. import _checks
from ._common import feature_arg, range_arg, reference_and_weights, require_nonnegative_bins

log = logging.getLogger("fastnplm")


def _sklearn_gp():
    try:
        from sklearn.gaussian_process import GaussianProcessRegressor, kernels
    except ImportError:
        raise ImportError("the Gaussian-process baseline needs scikit-learn: pip install \"fastnplm[baselines]\"") from None
    return GaussianProcessRegressor, kernels


_KERNELS = None


def _kernel_classes():
    """The two kernels, built on scikit-learn's Kernel base class (imported lazily); once built
    they are also module attributes (``fastnplm.baselines.gp.SignalKernel``), so they pickle."""
    global _KERNELS, SignalKernel, FallingGibbsKernel
    if _KERNELS is not None:
        return _KERNELS
    _, kernels = _sklearn_gp()
    Hyperparameter = kernels.Hyperparameter

    class _Base(kernels.Kernel):
        def diag(self, X):
            return np.diag(self(X))

        def is_stationary(self):
            return False

        def _free(self):
            return [h for h in self.hyperparameters if not h.fixed]

    class SignalKernel(_Base):
        """A exp(-(x - x')^2 / 2 l^2) exp(-((x - m)^2 + (x' - m)^2) / 2 t^2) (Frate et al. 2017).

        Parameters
        ----------
        amplitude, length_scale, location, width : float > 0 (A, l, m, t)
        *_bounds : (lo, hi) or "fixed"
        """

        def __init__(self, amplitude=1.0, length_scale=0.05, location=0.5, width=0.05,
                     amplitude_bounds=(1e-6, 1e6), length_scale_bounds=(1e-3, 1.0), location_bounds=(1e-3, 1.0),
                     width_bounds=(1e-3, 1.0)):
            self.amplitude, self.length_scale, self.location, self.width = amplitude, length_scale, location, width
            self.amplitude_bounds, self.length_scale_bounds = amplitude_bounds, length_scale_bounds
            self.location_bounds, self.width_bounds = location_bounds, width_bounds

        @property
        def hyperparameter_amplitude(self):
            return Hyperparameter("amplitude", "numeric", self.amplitude_bounds)

        @property
        def hyperparameter_length_scale(self):
            return Hyperparameter("length_scale", "numeric", self.length_scale_bounds)

        @property
        def hyperparameter_location(self):
            return Hyperparameter("location", "numeric", self.location_bounds)

        @property
        def hyperparameter_width(self):
            return Hyperparameter("width", "numeric", self.width_bounds)

        def __call__(self, X, Y=None, eval_gradient=False):
            X = np.atleast_2d(X)[:, :1]
            same = Y is None
            Y = X if same else np.atleast_2d(Y)[:, :1]
            if eval_gradient and not same:
                raise ValueError("gradient can only be evaluated when Y is None")
            a, l, m, t = self.amplitude, self.length_scale, self.location, self.width
            dx2 = (X - Y.T) ** 2
            sx2 = (X - m) ** 2 + ((Y - m) ** 2).T
            k = a * np.exp(-dx2 / (2 * l * l) - sx2 / (2 * t * t))
            if not eval_gradient:
                return k
            grads = {"amplitude": k, "length_scale": k * dx2 / (l * l),
                     "location": k * m * ((X - m) + (Y - m).T) / (t * t), "width": k * sx2 / (t * t)}
            g = [grads[h.name] for h in self._free()]
            return k, (np.stack(g, axis=2) if g else np.empty(k.shape + (0,)))

    class FallingGibbsKernel(_Base):
        """A exp(-(x + x') / 2d) sqrt(2 l l' / (l^2 + l'^2)) exp(-(x - x')^2 / (l^2 + l'^2)), l(x) = l0 + l1 x.

        Parameters
        ----------
        amplitude, decay, length_scale (l0), length_slope (l1) : float > 0
        *_bounds : (lo, hi) or "fixed"
        """

        def __init__(self, amplitude=1.0, decay=0.2, length_scale=0.2, length_slope=0.2,
                     amplitude_bounds=(1e-6, 1e9), decay_bounds=(1e-3, 1e3), length_scale_bounds=(1e-3, 1e2),
                     length_slope_bounds=(1e-4, 1e2)):
            self.amplitude, self.decay, self.length_scale, self.length_slope = amplitude, decay, length_scale, length_slope
            self.amplitude_bounds, self.decay_bounds = amplitude_bounds, decay_bounds
            self.length_scale_bounds, self.length_slope_bounds = length_scale_bounds, length_slope_bounds

        @property
        def hyperparameter_amplitude(self):
            return Hyperparameter("amplitude", "numeric", self.amplitude_bounds)

        @property
        def hyperparameter_decay(self):
            return Hyperparameter("decay", "numeric", self.decay_bounds)

        @property
        def hyperparameter_length_scale(self):
            return Hyperparameter("length_scale", "numeric", self.length_scale_bounds)

        @property
        def hyperparameter_length_slope(self):
            return Hyperparameter("length_slope", "numeric", self.length_slope_bounds)

        def _value(self, X, Y, a, d, l0, l1):
            lx, ly = l0 + l1 * X, (l0 + l1 * Y).T
            s2 = lx * lx + ly * ly
            return a * np.exp(-(X + Y.T) / (2 * d)) * np.sqrt(2 * lx * ly / s2) * np.exp(-(X - Y.T) ** 2 / s2)

        def __call__(self, X, Y=None, eval_gradient=False):
            X = np.atleast_2d(X)[:, :1]
            same = Y is None
            Y = X if same else np.atleast_2d(Y)[:, :1]
            if eval_gradient and not same:
                raise ValueError("gradient can only be evaluated when Y is None")
            names = ("amplitude", "decay", "length_scale", "length_slope")
            vals = {n: getattr(self, n) for n in names}
            k = self._value(X, Y, *vals.values())
            if not eval_gradient:
                return k
            g = []
            for h in self._free():  # central differences in log theta
                step = 1e-5
                up, dn = dict(vals), dict(vals)
                up[h.name] *= np.exp(step)
                dn[h.name] *= np.exp(-step)
                g.append((self._value(X, Y, *up.values()) - self._value(X, Y, *dn.values())) / (2 * step))
            return k, (np.stack(g, axis=2) if g else np.empty(k.shape + (0,)))

    SignalKernel.__module__ = FallingGibbsKernel.__module__ = __name__
    _KERNELS = (SignalKernel, FallingGibbsKernel)
    return _KERNELS


def signal_kernel(**kwargs):
    """A ``SignalKernel`` (scikit-learn Kernel) with the given hyper-parameters."""
    return _kernel_classes()[0](**kwargs)


def falling_kernel(**kwargs):
    """A ``FallingGibbsKernel`` (scikit-learn Kernel) with the given hyper-parameters."""
    return _kernel_classes()[1](**kwargs)


@dataclass
class GPFitResult:
    """A GP resonance fit.

    Attributes
    ----------
    t : float, 2 [LML(background + signal) - LML(background)] (0 for a deficit when excess_only)
    location, width : float, the signal kernel's m and t in the feature's units
    strength : float, the extracted signal: summed posterior mean of the signal component (events)
    amplitude, length_scale : float, the signal kernel's A (counts^2) and l (feature units)
    lml_background, lml_signal : float
    background_mean, signal_mean : ndarray (bins,), posterior means of the two components
    edges : ndarray (bins + 1,), counts : ndarray (bins,)
    """

    t: float
    location: float
    width: float
    strength: float
    amplitude: float
    length_scale: float
    lml_background: float
    lml_signal: float
    background_mean: np.ndarray
    signal_mean: np.ndarray
    edges: np.ndarray
    counts: np.ndarray


class GPResonanceSearch:
    """Gaussian-process resonance search on one feature.

    Parameters
    ----------
    bins : int, equal-width bins over ``range``
    range : (lo, hi) or None (None: the reference's [min, max] of the feature)
    feature : int
    background : {"reference", "data"}, what the background hyper-parameters are fitted to
    width_bounds : (lo, hi), the signal width t in the feature's units (default: half a bin
        width to a tenth of the range)
    excess_only : bool, a deficit gives t = 0
    min_variance : float, floor of the per-bin noise variance
    seed : int, of the background hyper-parameter fit's restarts
    """

    name = "gp"

    def __init__(self, bins: int = 40, range=None, feature: int = 0, background: str = "reference", width_bounds=None,
                 excess_only: bool = True, min_variance: float = 1.0, seed=0):
        self.bins = _checks.positive_int(bins, "bins")
        if self.bins < 5:
            raise ValueError(f"bins must be >= 5, got {bins}")
        self.range = range_arg(range)
        self.feature = feature_arg(feature)
        if background not in ("reference", "data"):
            raise ValueError(f"background must be 'reference' or 'data', got {background!r}")
        self.background = background
        if width_bounds is not None:
            wl, wh = (float(v) for v in width_bounds)
            if not (0 < wl < wh):
                raise ValueError(f"width_bounds must be (lo, hi) with 0 < lo < hi, got {width_bounds!r}")
            width_bounds = (wl, wh)
        self.width_bounds = width_bounds
        self.excess_only = bool(excess_only)
        self.min_variance = _checks.positive_number(min_variance, "min_variance")
        self.seed = int(seed)

    # -- setup -------------------------------------------------------------------------------
    def _spectrum(self, reference, reference_weights):
        ref, w = reference_and_weights(reference, reference_weights)
        if self.feature >= ref.shape[1]:
            raise ValueError(f"feature {self.feature} out of range for {ref.shape[1]} features")
        x = ref[:, self.feature]
        lo, hi = self.range if self.range is not None else (float(x.min()), float(x.max()))
        edges = np.linspace(lo, hi, self.bins + 1)
        hist = np.histogram(x, bins=edges, weights=w)[0]
        require_nonnegative_bins(hist, "GPResonanceSearch", edges)  # signed weights: bin sums >= 0
        return ref, w, edges, hist

    def _fit_background(self, u, y, noise):
        GPR, _ = _sklearn_gp()
        k0 = falling_kernel(amplitude=max(float(np.max(y)), 1.0), decay=0.2, length_scale=0.3, length_slope=0.3)
        with warnings.catch_warnings(record=True) as caught:  # hyper-parameters at a bound: logged
            warnings.simplefilter("always")
            gpr = GPR(kernel=k0, alpha=noise, optimizer="fmin_l_bfgs_b", n_restarts_optimizer=2,
                      random_state=self.seed % 2**32, normalize_y=False).fit(u, y)
        for c in caught:
            log.debug("GP background fit: %s", c.message)
        return gpr.kernel_

    def prepare(self, reference, reference_weights=None):
        """callable(data) -> t: the reference spectrum binned once for every data set."""
        ref, w, edges, hist = self._spectrum(reference, reference_weights)
        state = {"edges": edges, "hist": hist, "w": w, "kb": None}

        def stat(data):
            return self._fit(state, _checks.as_events(data, "data", d=ref.shape[1])).t
        stat.state, stat.d = state, ref.shape[1]
        return stat

    def statistic(self, reference, data, reference_weights=None) -> float:
        """t = 2 delta log marginal likelihood of the signal kernel (0 for a deficit)."""
        return self.prepare(reference, reference_weights)(data)

    def fit(self, reference, data, reference_weights=None) -> GPFitResult:
        """Background and signal fit of the data's spectrum; the extracted resonance."""
        stat = self.prepare(reference, reference_weights)
        return self._fit(stat.state, _checks.as_events(data, "data", d=stat.d))

    # -- the fit -----------------------------------------------------------------------------
    def _fit(self, state, data) -> GPFitResult:
        GPR, _ = _sklearn_gp()
        edges, hist = state["edges"], state["hist"]
        nb = self.bins
        expected = hist if state["w"] is not None else hist * (data.shape[0] / max(hist.sum(), 1e-300))
        counts = np.histogram(data[:, self.feature], bins=edges)[0].astype(float)
        u = ((np.arange(nb) + 0.5) / nb)[:, None]
        noise = np.maximum(expected, self.min_variance)
        if self.background == "data":
            kb = self._fit_background(u, counts, noise)
        else:
            if state["kb"] is None or state.get("scale") != expected.sum():
                state["kb"] = self._fit_background(u, expected, noise)
                state["scale"] = expected.sum()
            kb = state["kb"]
        kb_fixed = kb.clone_with_theta(kb.theta)
        for name in ("amplitude", "decay", "length_scale", "length_slope"):
            setattr(kb_fixed, name + "_bounds", "fixed")
        span = edges[-1] - edges[0]
        bw = 1.0 / nb
        wlo, whi = ((0.5 * bw, 0.1) if self.width_bounds is None
                    else (self.width_bounds[0] / span, self.width_bounds[1] / span))
        amp_scale = float(max(noise.max(), 1.0))
        ks = signal_kernel(amplitude=amp_scale, length_scale=max(2 * bw, wlo), location=0.5, width=max(2 * bw, wlo),
                           amplitude_bounds=(1e-4, 1e3 * amp_scale), length_scale_bounds=(0.5 * bw, 0.5),
                           location_bounds=(0.5 * bw, 1.0 - 0.5 * bw), width_bounds=(wlo, whi))
        gpr_b = GPR(kernel=kb_fixed, alpha=noise, optimizer=None, normalize_y=False).fit(u, counts)
        lml_b = float(gpr_b.log_marginal_likelihood_value_)
        gpr = GPR(kernel=kb_fixed + ks, alpha=noise, optimizer=None, normalize_y=False).fit(u, counts)
        bounds = gpr.kernel_.bounds  # log space: (A, l, m, t) of the signal, the background fixed

        def nlml(theta):
            v, g = gpr.log_marginal_likelihood(theta, eval_gradient=True, clone_kernel=False)
            return -v, -g

        # starts: a grid over location m, width t (and l = t) and amplitude A
        grid = []
        for m in u[:, 0][::max(1, nb // 20)]:
            for t in np.geomspace(max(wlo, bw), min(whi, 6 * bw), 3):
                for a in (0.1, 1.0):
                    grid.append(np.clip(np.log([a * amp_scale, t, m, t]), bounds[:, 0], bounds[:, 1]))
        vals = [-gpr.log_marginal_likelihood(th, clone_kernel=False) for th in grid]
        order = np.argsort(vals)[:2]
        best = (np.inf, None)
        for i in order:
            res = optimize.minimize(nlml, grid[i], jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 100})
            if res.fun < best[0]:
                best = (float(res.fun), res.x)
        lml_s = -best[0]
        gpr.kernel_ = gpr.kernel_.clone_with_theta(best[1])
        gpr = GPR(kernel=gpr.kernel_, alpha=noise, optimizer=None, normalize_y=False).fit(u, counts)
        ksf = gpr.kernel_.k2
        alpha_vec = gpr.alpha_
        sig_mean = ksf(u) @ alpha_vec
        bkg_mean = kb_fixed(u) @ alpha_vec
        strength = float(sig_mean.sum())
        t = max(0.0, 2.0 * (lml_s - lml_b))
        if self.excess_only and strength <= 0:
            t = 0.0
        return GPFitResult(t=t, location=float(edges[0] + ksf.location * span), width=float(ksf.width * span),
                           strength=strength, amplitude=float(ksf.amplitude), length_scale=float(ksf.length_scale * span),
                           lml_background=lml_b, lml_signal=lml_s, background_mean=bkg_mean, signal_mean=sig_mean,
                           edges=edges, counts=counts)


def __getattr__(name):  # the kernel classes exist once scikit-learn is imported
    if name in ("SignalKernel", "FallingGibbsKernel"):
        return dict(zip(("SignalKernel", "FallingGibbsKernel"), _kernel_classes()))[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
