#!/usr/bin/env python
"""Sensitivity of NPLM against the baselines, every method on the same toys (fastnplm.compare).

    python bench/sensitivity.py [--toys B] [--signal-toys S] [--out-dir bench/results] [--quick]

Problems:
- 1D: reference Exp(1) (N_R = 100000), pool of 400000 more, N(R) = 2000; signals: Gaussian
  bumps at several locations and widths and a non-resonant tail excess (extra events
  distributed as Gamma(3, 1) = x^2 e^-x / 2, i.e. the reference reweighted by 1 + c x^2).
- 5D: correlated Gaussian reference (unit variances, correlation 0.5^|i-j|), N_R = 100000,
  N(R) = 2000; signals: a localised cluster off-centre in x1 (visible in the x1 marginal), and
  a cluster at x1 = 1.2, x2 = -1.2, against the positive x1-x2 correlation: each marginal has
  plenty of background there, the joint density little.
Methods: NPLM (kernel, M = 500, three widths combined by min-p), per-feature KS/AD/binned chi2
(Bonferroni; Fisher in 5D), BumpHunter and the GP search on x1, the fixed-background GMM.
Writes sensitivity.json (every toy's statistic), sensitivity.md (the power table) and
sensitivity.png (power at Z = 2 per signal and method; matplotlib) into --out-dir.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import time

import numpy as np

import fastnplm

from _report import emit  # bench/_report.py


def one_d(toys, signal_toys, seed):
    rng = np.random.default_rng(seed)
    ref = rng.exponential(size=(100_000, 1))
    pool = rng.exponential(size=(400_000, 1))

    def bump(mu, sd, n):
        return lambda g: g.normal(mu, sd, size=(n, 1))
    signals = {
        "bump x=1.6 s=0.16 (60 ev)": bump(1.6, 0.16, 60),
        "bump x=4.0 s=0.16 (20 ev)": bump(4.0, 0.16, 20),
        "bump x=6.4 s=0.16 (10 ev)": bump(6.4, 0.16, 10),
        "wide bump x=4.0 s=0.64 (40 ev)": bump(4.0, 0.64, 40),
        "tail x^2 e^-x (90 ev)": lambda g: g.gamma(3.0, 1.0, size=(90, 1)),
    }
    methods = ["nplm", "ks", "ad", "chi2", "bumphunter", "gmm", "gp"]
    options = {"bumphunter": {"bins": 40, "range": (0.0, 8.0)}, "gp": {"bins": 40, "range": (0.0, 8.0)},
               "gmm": {"n_background": 10}}
    return fastnplm.compare(ref, pool, signals, methods=methods, toys=toys, signal_toys=signal_toys,
                            n_expected=2000, seed=seed, options=options)


def five_d(toys, signal_toys, seed):
    rng = np.random.default_rng(seed + 1)
    d = 5
    cov = 0.5 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
    ref = rng.multivariate_normal(np.zeros(d), cov, size=100_000)
    pool = rng.multivariate_normal(np.zeros(d), cov, size=400_000)
    signals = {
        "cluster at x1=2.5 (s=0.3, 40 ev)": lambda g: g.normal([2.5, 0, 0, 0, 0], 0.3, size=(40, d)),
        "anti-correlated cluster x1=1.2, x2=-1.2 (s=0.25, 40 ev)":
            lambda g: g.normal([1.2, -1.2, 0, 0, 0], [0.25, 0.25, 1, 1, 1], size=(40, d)),
    }
    methods = ["nplm", "ks", "ks-fisher", "ad", "ad-fisher", "chi2", "bumphunter", "gmm"]
    options = {"bumphunter": {"bins": 40, "range": (-4.0, 4.0), "feature": 0}, "gmm": {"n_background": 6}}
    return fastnplm.compare(ref, pool, signals, methods=methods, toys=toys, signal_toys=signal_toys,
                            n_expected=2000, seed=seed, options=options)


COLORS = {"nplm": "C0", "ks": "C1", "ks-fisher": "#ffbb78", "ad": "C2", "ad-fisher": "#98df8a", "chi2": "C3",
          "chi2-fisher": "#ff9896", "bumphunter": "C4", "gmm": "C5", "gmm-l1": "#c49c94", "gp": "C6"}


def _plot(problems, path):
    """Power at Z = 2 per signal and method, one panel per problem (problems: Comparison.to_dict()s)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.getLogger("fastnplm").warning("matplotlib not installed: no plot")
        return None
    fig, axes = plt.subplots(1, len(problems), figsize=(7.5 * len(problems), 5), squeeze=False)
    for ax, (title, cmp) in zip(axes[0], problems.items()):
        names = list(cmp["methods"])
        x = np.arange(len(cmp["signals"]))
        width = 0.8 / len(names)
        for i, n in enumerate(names):
            pw = [cmp["methods"][n]["power"][s]["Z=2"] for s in cmp["signals"]]
            y = np.array([p["power"] for p in pw])
            lo = y - np.array([p["interval"][0] for p in pw])
            hi = np.array([p["interval"][1] for p in pw]) - y
            ax.bar(x + (i - len(names) / 2 + 0.5) * width, y, width, yerr=[lo, hi], label=n, capsize=2,
                   color=COLORS.get(n))
        ax.set_xticks(x)
        ax.set_xticklabels([s.replace(" (", "\n(") for s in cmp["signals"]], fontsize=7, rotation=15)
        ax.set_ylabel("power at Z = 2 (68% Clopper-Pearson)")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{title}: {cmp['toys']} null, {cmp['signal_toys']} signal toys")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _markdown(problems, seconds=None):
    out = []
    for title, cmp in problems.items():
        names = list(cmp["methods"])
        out.append(f"**{title}** ({cmp['toys']} null toys, {cmp['signal_toys']} signal toys per signal): "
                   "power at Z = 2 / Z = 3\n")
        out.append("| signal | " + " | ".join(names) + " |")
        out.append("|---|" + "---|" * len(names))
        for s in cmp["signals"]:
            cells = []
            for n in names:
                p = cmp["methods"][n]["power"][s]
                cells.append(f"{p['Z=2']['power']:.2f} / {p['Z=3']['power']:.2f}")
            out.append(f"| {s} | " + " | ".join(cells) + " |")
        out.append("| seconds | " + " | ".join(f"{cmp['methods'][n]['seconds']:.0f}" for n in names) + " |")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--toys", type=int, default=1000)
    ap.add_argument("--signal-toys", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    ap.add_argument("--quick", action="store_true", help="60 null toys, 10 signal toys (a smoke run)")
    ap.add_argument("--replot", metavar="JSON", help="only redo the table and plot from a recorded sensitivity.json")
    args = ap.parse_args()
    if args.replot:
        with open(args.replot) as fh:
            doc = json.load(fh)
        with open(os.path.join(args.out_dir, "sensitivity.md"), "w") as fh:
            fh.write(_markdown(doc["problems"]) + "\n")
        _plot(doc["problems"], os.path.join(args.out_dir, "sensitivity.png"))
        return
    if args.quick:
        args.toys, args.signal_toys = 60, 10
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:  # one BLAS thread: the GP's 40x40 solves lose badly to thread hand-offs on a busy machine
        from threadpoolctl import threadpool_limits
        limits = threadpool_limits(1)
    except ImportError:
        limits = None
    start, cpu_start, load_start = time.perf_counter(), time.process_time(), os.getloadavg()
    results = {}
    t0 = time.perf_counter()
    results["1D: Exp(1), N(R) = 2000"] = one_d(args.toys, args.signal_toys, args.seed)
    t1 = time.perf_counter()
    results["5D: correlated Gaussian, N(R) = 2000"] = five_d(args.toys, args.signal_toys, args.seed)
    t2 = time.perf_counter()
    os.makedirs(args.out_dir, exist_ok=True)
    problems = {k: v.to_dict() for k, v in results.items()}
    md = _markdown(problems)
    with open(os.path.join(args.out_dir, "sensitivity.md"), "w") as fh:
        fh.write(md + "\n")
    png = _plot(problems, os.path.join(args.out_dir, "sensitivity.png"))
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "machine": platform.processor() or
           platform.machine(), "nproc": os.cpu_count(), "load_average_at_start": load_start,
           "build": fastnplm.build_info(), "blas_threads": 1 if limits is not None else None,
           "seconds": {"total": time.perf_counter() - start, "1D": t1 - t0, "5D": t2 - t1,
                       "cpu_total": time.process_time() - cpu_start},
           "load_average_at_end": os.getloadavg(),
           "binomial_error_note": ("power is a fraction of signal toys (68% Clopper-Pearson intervals in the JSON); "
                                   "with n signal toys its standard error is sqrt(P(1-P)/n) <= 0.05 for n = 100. "
                                   "Z = 3 needs p <= 1.35e-3: with B null toys that means exceeding every null toy "
                                   "when B < 2000"),
           "plot": png, "problems": problems}
    with open(os.path.join(args.out_dir, "sensitivity.json"), "w") as fh:
        json.dump(doc, fh)
    print(md)
    emit({k: v for k, v in doc.items() if k != "problems"})


if __name__ == "__main__":
    main()
