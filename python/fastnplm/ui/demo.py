"""The bundled demos: the 1-D problem of the NPLM papers (``fastnplm demo``) and NPLM on CMS
open-data dimuon events (``fastnplm demo --real``).

The 1-D demo (:func:`run_exp`) runs the whole test: reference Exp(1) (N_R = 200000), data of
Poisson(2000) Exp(1) events plus a 10-event Gaussian bump at 6.4, toys from a disjoint pool,
then t, p with its interval, Z, a one-line verdict and the report with the reconstruction.

The real-data demo (:func:`run`):

Sample: 20000 Υ → μμ candidates (8 < M < 12 GeV) of the CMS 2011A open data (CC0, bundled
in ``fastnplm/io/data``). Features: pt1, pt2, η1, η2 and Δφ of the two muons; the invariant
mass is *not* a feature, it only defines the injected signal.

1. **Null**: the events (minus a reserve, below) are shuffled and split into a reference,
   a toy pool and the data; all three come from the same real sample, so the test must
   find no departure (a modest Z).
2. **Injected resonance**: the same data plus events from the Υ(1S) mass window
   (9.30 < M < 9.60 GeV), taken from a reserve set aside before the split (so no event is
   used twice). These are real resonance decays: the data then hold more Υ(1S) than the
   reference predicts, the situation of a narrow resonance on top of the expected spectrum.
   Without the mass among the features the test must find it from the muons' momenta and
   angles (a narrow mass constrains pt1·pt2·(cosh Δη − cos Δφ)).

Both are tested with toys drawn from the disjoint pool (one calibration serves both, each
toy fitted at every width), features standardised with the reference's mean and standard
deviation. Multiple widths are aggregated (min-p, Fisher, avg-p, soft-max).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from ..calibration._run import aggregate, calibrate, verdict
from ..io.datasets import CMS_FEATURES, cms_dimuon, cms_dimuon_path
from ..models.kernel import DEFAULT_CENTER_POOL, KernelNPLM, sigma_heuristic
from ..preprocessing import Standardize

log = logging.getLogger("fastnplm")

WINDOW = (9.30, 9.60)  # GeV: the Υ(1S) peak (9.460 GeV) at the CMS dimuon resolution here
# The toys share one pool, so their spread is the null's only if a toy is a small part of the
# pool (the pool's own fluctuation is common to every toy): a toy is 1000 of its 10000 events.
DEFAULTS = dict(n_reference=8000, n_pool=10000, n_data=1000, n_signal=200, n_reserve=400, M=300, lam=1e-6,
                width_factors=(0.5, 1.0), toys=200)


EXP_DEFAULTS: dict[str, float] = dict(M=1000, sigma=0.3, lam=1e-6, toys=300, n_signal=10, n_pool=500_000)


def run_exp(seed=0, M=EXP_DEFAULTS["M"], sigma=EXP_DEFAULTS["sigma"], lam=EXP_DEFAULTS["lam"],
            toys=EXP_DEFAULTS["toys"], n_signal=EXP_DEFAULTS["n_signal"], center_pool=DEFAULT_CENTER_POOL,
            solver="newton-step", threads=None, report_path=None) -> dict:
    """The 1-D demo, start to finish: calibrate, fit the data with the toys' model, test.

    Parameters
    ----------
    seed : int
        Seeds the problem (``fastnplm.io.datasets.exp_bump``), the pool, the centers and the toys.
    M, sigma, lam, center_pool, solver : the kernel model (``sigma=None``: the heuristic)
    toys : int
        Toys of the calibration (Poisson(2000) events each from a disjoint Exp(1) pool).
    n_signal : int
        Events of the bump N(6.4, 0.16) in the data (0: a null data set).
    threads : int or None
    report_path : str or None
        Write the HTML report (verdict, tables, null distribution, reconstruction) and its
        JSON record next to it.

    Returns
    -------
    dict
        ``verdict`` (see :func:`fastnplm.calibration.verdict`), ``t``, ``p``, ``p_interval``, ``z``,
        the fit's diagnostics, ``settings`` and ``timings``.
    """
    from ..io.datasets import exp_bump
    from .html_report import analyse, report

    start = time.perf_counter()
    n_signal = int(n_signal)
    if n_signal < 0:
        raise ValueError(f"n_signal must be >= 0, got {n_signal}")
    ref, dat, n_exp = exp_bump(seed=seed, n_signal=n_signal)
    pool = np.random.default_rng([seed, 2]).exponential(size=(int(EXP_DEFAULTS["n_pool"]), 1))
    model = KernelNPLM(M=M, sigma=sigma, lam=lam, solver=solver, center_pool=center_pool, seed=seed, threads=threads)
    kw = dict(pool=pool, toys=toys, n_expected=n_exp, seed=seed + 1, threads=threads)
    if report_path is not None:
        summary = rec = report(ref, dat, model, path=report_path, names=["x"],
                               title="fastnplm demo: Exp(1) reference, data with a bump at 6.4", **kw)
    else:
        summary = analyse(ref, dat, model, **kw)["summary"]
    row = summary["per_width"][0]
    out = {"verdict": summary["verdict"]["text"], "t": float(row["t"]), "p": row["p"], "p_interval": row["p_interval"],
           "z": row["z"], "toys_exceeding": row["toys_exceeding"], "converged": row["converged"],
           "n_reference": ref.shape[0], "n_data": dat.shape[0], "n_expected": n_exp,
           "settings": {"problem": f"reference Exp(1), N_R={ref.shape[0]}; data Poisson({n_exp:g}) Exp(1) events + "
                                   f"{n_signal} events N(6.4, 0.16); toys from a disjoint pool of "
                                   f"{pool.shape[0]} Exp(1) events",
                        "M": M, "sigma": row["sigma"], "lam": lam, "center_pool": center_pool, "solver": solver,
                        "toys": toys, "path": summary["settings"]["path"], "seed": seed},
           "timings": {**summary["timings"], "total_seconds": time.perf_counter() - start}}
    if report_path is not None:
        out["report"] = {"html": rec["html"], "json": rec["json"]}
    return out


def split(seed=0, n_reference=DEFAULTS["n_reference"], n_pool=DEFAULTS["n_pool"], n_data=DEFAULTS["n_data"],
          n_reserve=DEFAULTS["n_reserve"], window=WINDOW):
    """Disjoint reference, toy pool, data and signal reserve from the bundled Υ sample.

    Returns
    -------
    dict of arrays (n, 5) in GeV/radians: ``reference``, ``pool``, ``data``, ``signal``
    (the reserve: Υ(1S)-window events), and ``mass_data``, ``mass_signal``.
    """
    x, mass = cms_dimuon("ymumu")
    rng = np.random.default_rng(seed)
    in_window = np.flatnonzero((mass > window[0]) & (mass < window[1]))
    if n_reserve > in_window.size:
        raise ValueError(f"n_reserve={n_reserve} but the window holds {in_window.size} events")
    reserve = rng.choice(in_window, size=n_reserve, replace=False)
    rest = rng.permutation(np.setdiff1d(np.arange(x.shape[0]), reserve))
    need = n_reference + n_pool + n_data
    if need > rest.size:
        raise ValueError(f"reference + pool + data = {need} events but only {rest.size} are left after the reserve")
    i_ref, i_pool = rest[:n_reference], rest[n_reference:n_reference + n_pool]
    i_dat = rest[n_reference + n_pool:need]
    return {"reference": x[i_ref], "pool": x[i_pool], "data": x[i_dat], "signal": x[reserve],
            "mass_data": mass[i_dat], "mass_signal": mass[reserve]}


def run(seed=0, toys=DEFAULTS["toys"], n_signal=DEFAULTS["n_signal"], M=DEFAULTS["M"], lam=DEFAULTS["lam"],
        width_factors=DEFAULTS["width_factors"], threads=None, report_path=None) -> dict:
    """Both cases of the demo: numbers, and optionally the HTML report.

    Parameters
    ----------
    seed : int
        Seeds the split, the signal draw, the centers and the toys.
    toys : int
        Toys of the calibration (shared by both cases).
    n_signal : int
        Υ(1S)-window events injected into the data (at most the reserve, 400). The window
        holds ~16 % of the sample, so the default 200 on 1000 data events about doubles the
        Υ(1S) peak.
    M, lam : kernel model settings; widths: ``width_factors`` × the heuristic on the
        standardised reference.
    threads : int or None
    report_path : str or None
        Write the HTML report (both cases, plots embedded) and its JSON next to it.

    Returns
    -------
    dict with ``null`` and ``injected`` (per-width t, p, Z and the aggregated tests),
    ``settings``, ``timings``.
    """
    start = time.perf_counter()
    parts = split(seed)
    if not 0 <= n_signal <= parts["signal"].shape[0]:
        raise ValueError(f"n_signal must be in [0, {parts['signal'].shape[0]}], got {n_signal}")
    pre = Standardize().fit(parts["reference"])
    ref, pool, dat = (pre.transform(parts[k]) for k in ("reference", "pool", "data"))
    sig = pre.transform(parts["signal"][np.random.default_rng([seed, 1]).permutation(parts["signal"].shape[0])[:n_signal]])
    sigma0 = sigma_heuristic(ref, seed=seed)
    sigmas = [float(f * sigma0) for f in width_factors]
    n_exp = float(dat.shape[0])
    model = KernelNPLM(M=M, lam=lam, seed=seed, threads=threads)
    t0 = time.perf_counter()
    cal = calibrate(model, ref, pool, toys=toys, n_expected=n_exp, sigmas=sigmas, seed=seed + 1, progress=False)
    timings = {"calibration_seconds": time.perf_counter() - t0}
    cases = {"null": dat, "injected": np.vstack([dat, sig])}
    out = {"settings": {"sample": "CMS 2011A open data, Upsilon -> mu mu candidates (bundled, CC0)",
                        "features": list(CMS_FEATURES), "preprocessing": pre.to_dict(), "seed": seed,
                        "n_reference": ref.shape[0], "n_pool": pool.shape[0], "n_data": dat.shape[0],
                        "n_signal": int(n_signal), "signal_window_gev": list(WINDOW), "n_expected": n_exp,
                        "toys": toys, "M": M, "lam": lam, "sigmas": sigmas, "path": cal.settings["path"],
                        "file_sha256": _sha(cms_dimuon_path("ymumu"))}}
    fits = {}
    for name, data in cases.items():
        t0 = time.perf_counter()
        fits[name] = [cal.model(j, threads=threads).fit(ref, data, n_expected=n_exp) for j in range(len(sigmas))]
        timings[f"{name}_fit_seconds"] = time.perf_counter() - t0
        out[name] = _summary(cal, fits[name])
    timings["total_seconds"] = time.perf_counter() - start
    out["timings"] = timings
    if report_path is not None:
        raw = {"reference": parts["reference"], "null": parts["data"],
               "injected": np.vstack([parts["data"], pre.inverse_transform(sig)])}
        out["report"] = _write_report(report_path, raw, cases, cal, fits, out)
    return out


def _sha(path):
    from ..io.datasets import sha256_file
    return sha256_file(path)


def _summary(cal, fits):
    agg = aggregate(cal, [f.t for f in fits])
    rows = []
    for j, (row, fit) in enumerate(zip(agg["per_width"], fits)):
        pv = cal.p_value(fit.t, j)
        row = dict(row, exceeded=pv["exceeded"], converged=bool(fit.converged))
        if pv["exceeded"] == 0:
            row["chi2_extrapolation_z"] = float(_z(pv["chi2_extrapolation"]["p"]))
        rows.append(row)
    out = {"per_width": rows, **{k: v for k, v in agg.items() if k != "per_width"}}
    out["verdict"] = verdict({"settings": {"toys": cal.toys}, "per_width": rows,
                              "aggregated": {k: v for k, v in agg.items() if k != "per_width"}})
    return out


def _z(p):
    from scipy import stats
    return stats.norm.isf(p)


def _write_report(path, raw, cases, cal, fits, out):
    """Both cases on one page; the reconstruction drawn in GeV and radians (``raw``)."""
    import json
    import os

    from .html_report import jsonable, figures, fingerprint, section_html, versions, write_html

    sections = []
    for name in cases:
        summary = {"per_width": [{"sigma": r["sigma"], "t": r["t"], "p": r["p"], "z": r["z"],
                                  "toys_exceeding": r["exceeded"], "converged": r["converged"],
                                  "toy_t_mean": float(cal.t[:, j].mean())} for j, r in enumerate(out[name]["per_width"])],
                   "aggregated": {k: v for k, v in out[name].items() if k not in ("per_width", "verdict")},
                   "verdict": out[name]["verdict"]}
        result = {"summary": summary, "calibration": cal, "fits": fits[name],
                  "aggregate": {"per_width": out[name]["per_width"], **summary["aggregated"]}}
        title = ("Null: a random split of the real events" if name == "null" else
                 f"Injected: + {out['settings']['n_signal']} Υ(1S)-window events")
        names = ["pt1 [GeV]", "pt2 [GeV]", "eta1", "eta2", "delta phi"]
        sections.append(section_html(title, summary, figures(raw["reference"], raw[name], result, names=names,
                                                             quantile=0.002)))
    record = jsonable({**out, "inputs": {"reference": fingerprint(raw["reference"]),
                                               **{k: fingerprint(v) for k, v in cases.items()}},
                            "versions": versions()})
    write_html(path, "fastnplm real-data demo: CMS open-data dimuons", sections, record)
    json_path = os.path.splitext(os.fspath(path))[0] + ".json"
    with open(json_path, "w") as fh:
        json.dump(record, fh, indent=1)
    return {"html": os.fspath(path), "json": json_path}
