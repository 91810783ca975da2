"""Pictures of an NPLM test: the null distribution, per-width and aggregated results, the
reconstruction of the data by the reweighted reference, neural loss histories, nuisance pulls.

matplotlib is imported when a function is called (``pip install 'fastnplm[plot]'``); nothing
here sets a global style. Every function draws into the ``ax=`` (or ``axes=``) it is given,
creating a figure only when none is given, and returns it. For the HEP look use
``with fastnplm.ui.plot.hep_style(): ...`` (needs ``mplhep``).
"""
from __future__ import annotations


import numpy as np
from scipy import stats

from .._optional import require


def _plt():
    return require("matplotlib.pyplot", "plotting")


def _axes(ax):
    if ax is None:
        _, ax = _plt().subplots()
    return ax


def hep_style(experiment: str = "CMS"):
    """Context manager applying mplhep's style of ``experiment`` (``"CMS"``, ``"ATLAS"``, ...).

    Raises ImportError naming ``pip install mplhep`` when mplhep is absent.
    """
    try:
        import mplhep
    except ImportError as err:
        raise ImportError("the HEP style needs the optional package 'mplhep': pip install mplhep") from err
    import matplotlib.style
    style = getattr(mplhep.style, experiment, None)
    if style is None:
        raise ValueError(f"mplhep has no style {experiment!r}")
    return matplotlib.style.context(style)


def _toys(cal, sigma_index):
    """Toy t values of one width, from a Calibration or an array."""
    if hasattr(cal, "t") and hasattr(cal, "sigmas"):
        t = cal.t[:, 0 if sigma_index is None and cal.t.shape[1] == 1 else sigma_index]
        return np.asarray(t, dtype=float), cal
    t = np.asarray(cal, dtype=float).ravel()
    if t.size == 0:
        raise ValueError("no toy t values to plot")
    return t, None


def null_distribution(cal, t_obs=None, sigma_index=None, bins=30, chi2=True, ax=None, label="toys"):
    """Histogram of the toy t values (density), the fitted chi2 and the observed t.

    Parameters
    ----------
    cal : fastnplm.Calibration or array_like
        The toys (one width: ``sigma_index`` picks it in a several-width calibration).
    t_obs : float or None
        Observed t: a vertical line labelled with t, the toy p-value and Z (from ``cal``).
    bins : int or sequence
        numpy.histogram bins of the toy t values.
    chi2 : bool
        Overlay the chi2 density whose degrees of freedom maximise the toys' likelihood.
    ax : matplotlib Axes or None

    Returns
    -------
    matplotlib Axes
    """
    if sigma_index is None and hasattr(cal, "sigmas") and len(cal.sigmas) != 1:
        raise ValueError(f"this calibration has {len(cal.sigmas)} widths: pass sigma_index")
    t, calib = _toys(cal, sigma_index)
    ax = _axes(ax)
    heights, edges = np.histogram(t, bins=bins, density=True)
    ax.stairs(heights, edges, fill=True, alpha=0.4, label=f"{label} ({t.size})")
    hi = max(edges[-1], t_obs if t_obs is not None else -np.inf)
    if chi2 and (t > 0).all():
        dof = _chi2_dof(t, calib, sigma_index)
        x = np.linspace(max(edges[0], 0.0), hi * 1.05, 300)
        ax.plot(x, stats.chi2.pdf(x, dof), color="C1", label=f"fitted $\\chi^2$, {dof:.3g} dof")
    if t_obs is not None:
        text = f"$t_{{obs}}$ = {t_obs:.4g}"
        if calib is not None:
            pv = calib.p_value(t_obs, sigma_index)
            z = stats.norm.isf(pv["p"])
            if pv["exceeded"] == 0:  # no toy reached t_obs: the toys give a bound only
                text += f", p < {pv['p']:.3g}, Z > {z:.2f}"
            else:
                text += f", p = {pv['p']:.3g}, Z = {z:.2f}"
        ax.axvline(t_obs, color="C3", ls="--", label=text)
    ax.set_xlabel("t")
    ax.set_ylabel("density")
    ax.legend(fontsize="small")
    return ax


def _chi2_dof(t, calib, sigma_index):
    if calib is not None:
        return calib.chi2_fit(sigma_index)["dof"]
    from ..calibration._run import Calibration  # the same maximum-likelihood fit on bare toys
    return Calibration(t=t[:, None], sigmas=(0.0,), n_events=np.zeros(t.size), converged=np.ones((t.size, 1), bool),
                       seed=0).chi2_fit(0)["dof"]


def aggregated(result, ax=None, toys=None):
    """Z per width and of the aggregated tests, from :func:`fastnplm.aggregate`'s output.

    Parameters
    ----------
    result : dict
        ``aggregate(cal, t_obs)``: ``per_width`` entries and one entry per aggregation.
    ax : matplotlib Axes or None
    toys : int or None
        The calibration's number of toys: bars whose p is 1/(toys + 1) (no toy reached the
        observation) are hatched, their Z being a lower bound.

    Returns
    -------
    matplotlib Axes
        Bars: per-width Z (C0) then the aggregated tests' Z (C1), in that order.
    """
    from ..calibration._run import AGGREGATIONS

    if not isinstance(result, dict) or "per_width" not in result:
        raise TypeError("result must be the dict returned by fastnplm.aggregate")
    ax = _axes(ax)
    labels = [f"σ={w['sigma']:.3g}" for w in result["per_width"]]
    z = [w["z"] for w in result["per_width"]]
    methods = [m for m in AGGREGATIONS if m in result]
    labels += methods
    z += [result[m]["z"] for m in methods]
    colors = ["C0"] * len(result["per_width"]) + ["C1"] * len(methods)
    bars = ax.bar(np.arange(len(z)), z, color=colors)
    if toys is not None:
        ps = [w["p"] for w in result["per_width"]] + [result[m]["p"] for m in methods]
        bound = [p * (toys + 1) < 1 + 1e-9 for p in ps]
        for bar, b in zip(bars, bound):
            if b:
                bar.set_hatch("//")
        if any(bound):
            ax.text(0.01, 0.99, "hatched: no toy above, Z is a lower bound", transform=ax.transAxes, va="top",
                    fontsize="x-small")
    ax.set_xticks(np.arange(len(z)), labels, rotation=30, ha="right")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("Z (toys)")
    ax.set_title("per width (blue) and aggregated (orange)", fontsize="small")
    return ax


def _reference_weights(fit, reference, reference_weights):
    n_r = reference.shape[0]
    if reference_weights is not None:
        w = np.broadcast_to(np.asarray(reference_weights, dtype=float), (n_r,)).astype(float)
    else:
        inner = getattr(fit, "fit", None) or fit  # a NuisanceFitResult carries the kernel fit
        n_exp = getattr(inner, "n_expected", None)
        if n_exp is None:
            raise ValueError("pass reference_weights: the fit result does not record n_expected")
        w = np.full(n_r, float(n_exp) / n_r)
    return w


def reconstruction(reference, data, fit, features=None, names=None, bins=30, reference_weights=None, axes=None,
                   f_reference=None, quantile=None):
    """Per feature: data, reference, and reference reweighted by exp f̂, with a ratio panel.

    The reweighted reference, bin by bin Σ_R w e^{f̂(x_R)}, is the fit's reconstruction of
    the data: where it follows the data and not the reference, the fit found the departure.

    Parameters
    ----------
    reference, data : array_like (n, d) or (n,)
        The samples the fit used, event for event, in any units (e.g. before the
        preprocessing: f̂ is taken per reference event, not recomputed from these values
        when ``fit.f_reference`` exists).
    fit : fit result
        Kernel, neural or nuisance result; ``fit.f_reference`` (f̂ at the reference events)
        is used when present, else ``fit.predict(reference)``.
    features : sequence of int or None
        Which features to draw (default: all).
    names : sequence of str or None
        Axis labels, one per feature of the data.
    bins : int
        Equal-width bins over the range of reference and data together (see ``quantile``).
    quantile : float or None
        Bin over the [quantile, 1 - quantile] range of reference and data together instead
        (heavy tails: events outside are not drawn).
    reference_weights : float, array_like (N_R,) or None
        The weights of the fit (default: N(R)/N_R from ``fit.n_expected``).
    axes : array of matplotlib Axes, shape (2, len(features)), or None
        Top row: distributions; bottom row: ratios to the reference.
    f_reference : array_like (N_R,) or None
        f̂ at the reference events, overriding the fit's.

    Returns
    -------
    numpy.ndarray of matplotlib Axes, shape (2, len(features))
    """
    from .. import _checks

    ref = _checks.as_events(reference, "reference")
    dat = _checks.as_events(data, "data", d=ref.shape[1])
    d = ref.shape[1]
    features = list(range(d)) if features is None else [int(i) for i in features]
    bad = [i for i in features if not 0 <= i < d]
    if bad:
        raise ValueError(f"features {bad} out of range for {d} features")
    if names is not None and len(names) != d:
        raise ValueError(f"names has {len(names)} entries but the data have {d} features")
    f = f_reference if f_reference is not None else getattr(fit, "f_reference", None)
    f = np.asarray(fit.predict(ref) if f is None else f, dtype=float).ravel()
    if f.shape != (ref.shape[0],):
        raise ValueError(f"f_reference has {f.size} values but the reference has {ref.shape[0]} events")
    w = _reference_weights(fit, ref, reference_weights)
    if axes is None:
        _, axes = _plt().subplots(2, len(features), figsize=(3.2 * len(features), 4.2), squeeze=False,
                                  sharex="col", gridspec_kw={"height_ratios": [3, 1]})
    axes = np.asarray(axes).reshape(2, len(features))
    for col, i in enumerate(features):
        both = np.concatenate([ref[:, i], dat[:, i]])
        lo, hi = (both.min(), both.max()) if quantile is None else np.quantile(both, [quantile, 1 - quantile])
        edges = np.linspace(lo, hi, int(bins) + 1)
        n_dat, _ = np.histogram(dat[:, i], edges)
        n_ref, _ = np.histogram(ref[:, i], edges, weights=w)
        n_rw, _ = np.histogram(ref[:, i], edges, weights=w * np.exp(f))
        centers = 0.5 * (edges[1:] + edges[:-1])
        top, bottom = axes[0, col], axes[1, col]
        top.stairs(n_ref, edges, color="C0", label="reference")
        top.stairs(n_rw, edges, color="C1", label=r"reference $\times e^{\hat f}$")
        top.errorbar(centers, n_dat, yerr=np.sqrt(n_dat), fmt="o", ms=3, color="k", label="data")
        top.set_yscale("log" if n_ref.max() > 50 * max(n_ref[n_ref > 0].min(), 1e-300) else "linear")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_dat = np.where(n_ref > 0, n_dat / n_ref, np.nan)
            ratio_rw = np.where(n_ref > 0, n_rw / n_ref, np.nan)
            err = np.where(n_ref > 0, np.sqrt(n_dat) / n_ref, np.nan)
        bottom.stairs(ratio_rw, edges, color="C1")
        bottom.errorbar(centers, ratio_dat, yerr=err, fmt="o", ms=3, color="k")
        bottom.axhline(1.0, color="C0", lw=0.8)
        finite = np.concatenate([ratio_dat[np.isfinite(ratio_dat)], ratio_rw[np.isfinite(ratio_rw)]])
        if finite.size and finite.max() > 3:  # sparse tail bins would flatten the panel
            bottom.set_ylim(0, 3)
        bottom.set_ylabel("/ reference", fontsize="small")
        bottom.set_xlabel(names[i] if names is not None else f"feature {i}")
        if col == 0:
            top.set_ylabel("events per bin")
            top.legend(fontsize="x-small")
    return axes


def loss_history(result, ax=None):
    """The neural fit's loss L (and t = -2L on the right axis) against the epoch.

    Parameters
    ----------
    result : fastnplm.models.NeuralFitResult
        With ``history_every > 0`` (Adam: L after ``i * history_every`` updates) or from
        L-BFGS-B (after each iteration) or Newton (the start, then after each step).
    ax : matplotlib Axes or None

    Returns
    -------
    matplotlib Axes
    """
    hist = np.asarray(getattr(result, "loss_history", None) if result is not None else None, dtype=float)
    if hist.ndim != 1 or hist.size == 0:
        raise ValueError("this result has no loss history (fit with history_every > 0)")
    ax = _axes(ax)
    if result.optimizer == "lbfgsb":
        x, xlabel = np.arange(1, hist.size + 1), "L-BFGS-B iteration"
    elif result.optimizer == "newton":  # the start, then every step of the best start
        x, xlabel = np.arange(hist.size), "Newton step"
    else:
        x, xlabel = np.arange(hist.size) * result.history_every, "epoch"
    ax.plot(x, hist, color="C0")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss L")
    ax.set_title(f"final t = {result.t:.4g}", fontsize="small")
    return ax


def clip_scan(scan, ax=None):
    """Fitted chi2 degrees of freedom of the null toys against the weight clip.

    Parameters
    ----------
    scan : fastnplm.calibration.clip_scan.ClipScan
        From :func:`fastnplm.tune_clip`.
    ax : matplotlib Axes or None

    Returns
    -------
    matplotlib Axes
        The fitted dof per clip, the line dof = n_w (the network's parameters), the best clip
        marked, and the KS p-value against chi2(n_w) on the right axis.
    """
    ax = _axes(ax)
    ax.plot(scan.clips, scan.dof, "o-", color="C0", label="fitted dof of the toys")
    ax.axhline(scan.n_params, color="k", ls="--", lw=1, label=f"|w| = {scan.n_params}")
    ax.axvline(scan.best_clip, color="C3", ls=":", lw=1, label=f"best clip {scan.best_clip:g}")
    ax.set_xscale("log")
    ax.set_xlabel("weight clip")
    ax.set_ylabel("chi2 dof")
    right = ax.twinx()
    right.plot(scan.clips, scan.ks_pvalue, "s--", color="C1", ms=4)
    right.set_yscale("log")
    right.set_ylabel("KS p-value vs chi2(|w|)", color="C1")
    ax.legend(fontsize="small")
    return ax


def pulls(result, nuisances, ax=None):
    """Nuisance pulls (ν̂ − A)/σ of the τ fit (with f) and the Δ fit (nuisances alone).

    Parameters
    ----------
    result : NuisanceFitResult (``nu_tau``, ``nu_delta``, ``auxiliary``)
    nuisances : sequence of fastnplm.Nuisance
        The nuisances of the fit (their widths σ).
    ax : matplotlib Axes or None

    Returns
    -------
    matplotlib Axes
        One row per nuisance; markers at the pulls, bands at ±1 and ±2.
    """
    sig = {n.name: n.sigma for n in nuisances}
    missing = [k for k in result.nu_tau if k not in sig]
    if missing:
        raise ValueError(f"no width for nuisance(s) {missing}: pass the fit's nuisances")
    ax = _axes(ax)
    names = list(result.nu_tau)
    y = np.arange(len(names))
    aux = result.auxiliary or {}
    pull_tau = [(result.nu_tau[k] - aux.get(k, 0.0)) / sig[k] for k in names]
    pull_delta = [(result.nu_delta[k] - aux.get(k, 0.0)) / sig[k] for k in names]
    ax.axvspan(-2, 2, color="gold", alpha=0.4)
    ax.axvspan(-1, 1, color="limegreen", alpha=0.4)
    ax.plot(pull_tau, y + 0.1, "o", color="k", label=r"$\tau$ fit (f and ν)")
    ax.plot(pull_delta, y - 0.1, "s", color="C3", mfc="none", label=r"$\Delta$ fit (ν alone)")
    ax.set_yticks(y, names)
    ax.set_xlabel(r"pull $(\hat\nu - A)/\sigma_\nu$")
    ax.set_xlim(min(-3, *pull_tau, *pull_delta) - 0.2, max(3, *pull_tau, *pull_delta) + 0.2)
    ax.legend(fontsize="small")
    return ax
