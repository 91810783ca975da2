#!/usr/bin/env python
"""Center policies: power at Z = 2 across model seeds, per width and for min-p over widths.

    python bench/centers.py [--seeds 8] [--problems 1d,5d] [--policies uniform,coverage] [--out FILE] [--quick]

For each policy (``KernelNPLM(center_pool=...)``) and each model seed (the seed draws the
centers), the null distribution comes from ``fastnplm.calibrate`` (toys from a disjoint pool,
the shared-reference path) and the signal toys -- the same events for every policy and seed,
so differences come from the centers alone -- are fitted through the same estimator. The
power of a (policy, seed) is the fraction of signal toys with p <= Phi(-2), p = (1 + #{null
toys >= t}) / (B + 1); min-p combines the widths on the same toys (as ``fastnplm.aggregate``).
Reported per signal and policy: the mean power over seeds, its spread (standard deviation
across seeds, min and max) and the standard error of each seed's power from its signal toys,
so the spread beyond toy noise is the lottery of where the centers land.

Problems:
- 1D: reference Exp(1), N_R = 200000, pool 1e6, N(R) = 2000, M = 1000, lambda = 1e-6,
  sigma in (0.1, 0.3, 0.7); signals: a bulk bump (60 events at 1.6, s = 0.16), a narrow tail
  excess (10 events at 6.4, s = 0.16), a wide excess (40 events at 4.0, s = 0.64) and a
  non-resonant tail (90 events from Gamma(3, 1), the reference times x^2 / 2).
- 5D: correlated Gaussian reference (correlation 0.5^|i-j|), N_R = 100000, N(R) = 2000,
  M = 500, sigma in (0.5, 1) x the 90th-percentile heuristic; signals: a cluster off-centre in
  x1 (40 events at x1 = 2.5, s = 0.3) and a cluster off the axes, against the x1-x2
  correlation (40 events at x1 = 1.2, x2 = -1.2, s = 0.25).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import numpy as np
from scipy import stats

import fastnplm
from fastnplm._bench import cpuinfo
from fastnplm.calibration._toys import Toys

from _report import emit  # bench/_report.py

Z_LEVEL = 2.0


def problem_1d(quick):
    rng = np.random.default_rng(2024)
    ref = rng.exponential(size=(200_000, 1))
    pool = rng.exponential(size=(1_000_000, 1))

    def bump(mu, sd, n):
        return lambda g: g.normal(mu, sd, size=(n, 1))
    signals = {"bulk bump x=1.6 s=0.16 (60 ev)": bump(1.6, 0.16, 60),
               "narrow tail excess x=6.4 s=0.16 (10 ev)": bump(6.4, 0.16, 10),
               "wide excess x=4.0 s=0.64 (40 ev)": bump(4.0, 0.64, 40),
               "non-resonant tail x^2 e^-x (90 ev)": lambda g: g.gamma(3.0, 1.0, size=(90, 1))}
    return {"name": "1d", "reference": ref, "pool": pool, "n_expected": 2000.0, "M": 1000 if not quick else 300,
            "sigmas": [0.1, 0.3, 0.7], "signals": signals, "null_toys": 500, "signal_toys": 100}


def problem_5d(quick):
    rng = np.random.default_rng(2025)
    d = 5
    cov = 0.5 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
    ref = rng.multivariate_normal(np.zeros(d), cov, size=100_000)
    pool = rng.multivariate_normal(np.zeros(d), cov, size=400_000)
    s90 = fastnplm.models.sigma_heuristic(ref)
    signals = {"cluster x1=2.5 s=0.3 (40 ev)": lambda g: g.normal([2.5, 0, 0, 0, 0], 0.3, size=(40, d)),
               "off-axes cluster x1=1.2 x2=-1.2 s=0.25 (40 ev)":
                   lambda g: g.normal([1.2, -1.2, 0, 0, 0], [0.25, 0.25, 1, 1, 1], size=(40, d))}
    return {"name": "5d", "reference": ref, "pool": pool, "n_expected": 2000.0, "M": 500 if not quick else 200,
            "sigmas": [0.5 * s90, s90], "signals": signals, "null_toys": 300, "signal_toys": 100}


def signal_sets(prob, n_toys):
    """The signal toys of each signal: Poisson(N(R)) pool events plus the signal's events."""
    out = {}
    for si, (name, sampler) in enumerate(prob["signals"].items()):
        sets = []
        for k in range(n_toys):
            rng = np.random.default_rng(np.random.SeedSequence([77, si, k]))
            n = int(rng.poisson(prob["n_expected"]))
            bkg = prob["pool"][rng.choice(prob["pool"].shape[0], size=n, replace=False)]
            sets.append(np.vstack([bkg, sampler(rng)]))
        out[name] = sets
    return out


def run_policy_seed(prob, policy, seed, sets, null_toys):
    """Null toys and signal toys' t at every width for one (policy, model seed)."""
    model = fastnplm.KernelNPLM(M=prob["M"], lam=1e-6, center_pool=policy, seed=seed)
    t0 = time.perf_counter()
    cal = fastnplm.calibrate(model, prob["reference"], prob["pool"], toys=null_toys,
                             n_expected=prob["n_expected"], sigmas=prob["sigmas"], seed=1000 + seed,
                             fast=True, progress=False)
    path = cal.settings["path"]  # the shared-reference path calibrate took: the signal toys go through it too
    job = Toys(cal._models, prob["reference"], None, prob["pool"], prob["n_expected"], 1000 + seed,
               prob["reference"].shape[1], path)
    sig_t = {}
    kept = []
    for name, datasets in sets.items():
        cols = []
        for j in range(len(prob["sigmas"])):
            cols.append([t for t, _, _ in job.shared(j).t_batch(datasets)])
        sig_t[name] = np.array(cols).T
    kept = [getattr(job.shared(j), "r", None) for j in range(len(prob["sigmas"]))]  # spectral: kept directions
    return cal.t, sig_t, kept, time.perf_counter() - t0


def powers(null_t, sig_t):
    """Power at Z_LEVEL per width and for min-p, from the null (B, S) and signal (n, S) t."""
    b, s = null_t.shape
    srt = np.sort(null_t, axis=0)
    p_sig = np.column_stack([(1.0 + b - np.searchsorted(srt[:, c], sig_t[:, c], side="left")) / (b + 1)
                             for c in range(s)])
    p_null = np.column_stack([(b - np.searchsorted(srt[:, c], null_t[:, c], side="left")) / b for c in range(s)])
    a_null, a_sig = -p_null.min(axis=1), -p_sig.min(axis=1)
    p_minp = (1.0 + (a_null[None, :] >= a_sig[:, None]).sum(axis=1)) / (b + 1)
    level = stats.norm.sf(Z_LEVEL)
    out = {f"sigma_{c}": float(np.mean(p_sig[:, c] <= level)) for c in range(s)}
    out["min-p"] = float(np.mean(p_minp <= level))
    return out


def summarise(per_seed, n_signal):
    """Mean over seeds, spread (sd across seeds, min, max) and the mean binomial standard error."""
    keys = per_seed[0].keys()
    out = {}
    for key in keys:
        v = np.array([ps[key] for ps in per_seed])
        out[key] = {"mean": float(v.mean()), "sd_across_seeds": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                    "min": float(v.min()), "max": float(v.max()),
                    "toy_se": float(np.mean(np.sqrt(v * (1 - v) / n_signal))), "per_seed": v.tolist()}
    return out


def markdown(doc) -> str:
    """Power table of a recorded run: mean over seeds, sd across seeds [min-max], per column."""
    lines = []
    for pname, res in doc["problems"].items():
        st = res["settings"]
        cols = [f"sigma_{j}" for j in range(len(st["sigmas"]))] + ["min-p"]
        heads = [f"σ = {s:.3g}" for s in st["sigmas"]] + ["min-p"]
        lines += [f"**{pname}** (M = {st['M']}, {doc['seeds']} model seeds, {st['null_toys']} null toys and "
                  f"{st['signal_toys']} signal toys per seed): power at Z = {doc['z_level']:g}, mean ± sd across "
                  "seeds [min-max]", "", "| signal | policy | " + " | ".join(heads) + " |",
                  "|---|---|" + "---|" * len(heads)]
        policies = list(res["policies"])
        for sig in res["policies"][policies[0]]["signals"]:
            for pol in policies:
                v = res["policies"][pol]["signals"][sig]
                cells = [f"{v[c]['mean']:.2f} ± {v[c]['sd_across_seeds']:.2f} [{v[c]['min']:.2f}-{v[c]['max']:.2f}]"
                         for c in cols]
                lines.append(f"| {sig} | {pol} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--problems", default="1d,5d")
    ap.add_argument("--policies", default="uniform,coverage")
    ap.add_argument("--out", help="also write the JSON document to this file")
    ap.add_argument("--quick", action="store_true", help="small sizes and few toys (a smoke run, not a measurement)")
    ap.add_argument("--table", metavar="JSON", help="print the markdown table of a recorded run and exit")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as fh:
            print(markdown(json.load(fh)))
        return
    policies = [p for p in args.policies.split(",") if p]
    out = {"benchmark": "centers", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "nproc": os.cpu_count(), "cpu": cpuinfo(), "z_level": Z_LEVEL, "seeds": args.seeds, "problems": {}}
    makers = {"1d": problem_1d, "5d": problem_5d}
    for pname in args.problems.split(","):
        prob = makers[pname](args.quick)
        n_null = 60 if args.quick else prob["null_toys"]
        n_sig = 20 if args.quick else prob["signal_toys"]
        sets = signal_sets(prob, n_sig)
        res = {"settings": {"M": prob["M"], "sigmas": prob["sigmas"], "lam": 1e-6, "n_expected": prob["n_expected"],
                            "n_reference": prob["reference"].shape[0], "null_toys": n_null, "signal_toys": n_sig},
               "policies": {}}
        for policy in policies:
            per_signal = {name: [] for name in sets}
            kept, secs = [], []
            for seed in range(args.seeds):
                null_t, sig_t, r, sec = run_policy_seed(prob, policy, seed, sets, n_null)
                kept.append(r)
                secs.append(sec)
                for name, t in sig_t.items():
                    per_signal[name].append(powers(null_t, t))
                print(f"# {pname} {policy} seed {seed}: {sec:.1f} s, kept {r}, "
                      + ", ".join(f"{n[:12]} {per_signal[n][-1]['min-p']:.2f}" for n in per_signal), flush=True)
            res["policies"][policy] = {"signals": {n: summarise(v, n_sig) for n, v in per_signal.items()},
                                       "kept_directions": kept, "seconds_per_seed": secs}
        out["problems"][pname] = res
    emit(out, args.out)


if __name__ == "__main__":
    main()
