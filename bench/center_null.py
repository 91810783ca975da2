#!/usr/bin/env python
"""The default center policy against the published one: null distributions and power.

    python bench/center_null.py [--seeds 3] [--toys 500] [--signal-toys 100] [--problems 1d,5d]
                                [--policies uniform,coverage] [--out FILE] [--quick]

The published kernel-NPLM analyses draw the centers from the pooled sample (reference and
data, ``center_pool="pooled"``), so every toy has its own centers and needs a full fit. The
data-independent policies (``"uniform"``, ``"coverage"``) let the toys share the reference. For
each problem, model seed (which draws the centers) and policy, the same null toys (the toy
seed is fixed, so toy k holds the same events under every policy) and the same signal toys
are fitted; reported:

- two-sample KS and Anderson-Darling tests of each policy's null t against the pooled
  policy's, per seed and over all seeds together; as a yardstick, the same tests between two
  seeds of one policy (how much the centers' draw alone moves the null);
- the paired difference of t toy by toy (mean and its standard error);
- the chi2 fit of each null (dof, KS p);
- power at Z = 2 of each signal (each policy calibrated on its own null), with
  Clopper-Pearson 68% intervals, per seed and over the seeds.

Problems (those of bench/centers.py, one width each): 1D Exp(1), N_R = 200000, N(R) = 2000,
M = 1000, sigma = 0.3, lambda = 1e-6; 5D correlated Gaussian, N_R = 100000, N(R) = 2000,
M = 500, sigma = the 90th-percentile heuristic.
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
from fastnplm.models import _spectral
from fastnplm._bench import cpuinfo
from fastnplm.calibration import clopper_pearson

from _report import emit  # bench/_report.py
from centers import problem_1d, problem_5d, signal_sets

Z_LEVEL = 2.0


def two_sample(a, b):
    ks = stats.ks_2samp(a, b)
    ad = stats.anderson_ksamp([a, b])
    return {"ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
            "ad_statistic": float(ad.statistic), "ad_pvalue": float(ad.pvalue)}


def fit_t(model, ref, datasets, n_exp):
    """t of each dataset through the model (one plain fit each, or shared work on the spectral path)."""
    if model.center_pool == "pooled":
        return np.array([model.fit(ref, x, n_expected=n_exp).t for x in datasets])
    w = np.full(ref.shape[0], n_exp / ref.shape[0])
    centers, center_w = model.select_centers(ref, ref[:1], w)  # data-independent: the data are not used
    sr = _spectral.SpectralReference(centers, center_w, model.sigma, model.lam, ref, w, model.cg_tol,
                                     model.max_iter, model.threads, model.spectral_tol)
    return np.array(sr.t_values([sr.solve(x) for x in datasets]))


def null_sets(prob, toys):
    out = []
    for k in range(toys):
        rng = fastnplm.calibration.toy_rng(4242, k)
        n = int(rng.poisson(prob["n_expected"]))
        out.append(prob["pool"][rng.choice(prob["pool"].shape[0], size=n, replace=False)])
    return out


def markdown(doc) -> str:
    """Tables of a recorded run: the null of each policy against the pooled one, and the power."""
    lines = []
    for pname, res in doc["problems"].items():
        st = res["settings"]
        lines += [f"**{pname}** (M = {st['M']}, sigma = {st['sigma']:.3g}, {st['seeds']} model seeds, "
                  f"{st['null_toys_per_seed']} null toys and {st['signal_toys_per_seed']} signal toys per seed, "
                  "the same toys for every policy)", "",
                  "| policy | null mean t | null sd | chi2 dof | KS p vs pooled | AD p vs pooled | paired mean "
                  "difference of t | KS p, seed 0 vs seed 1 |", "|---|---|---|---|---|---|---|---|"]
        for pol, e in res["policies"].items():
            vs = e.get("vs_pooled_all_seeds")
            diff = e.get("paired_t_difference")
            yard = e.get("seed0_vs_seed1")
            lines.append(f"| {pol} | {e['null_mean']:.2f} | {e['null_sd']:.2f} | {e['chi2_fit']['dof']:.1f} | "
                         + (f"{vs['ks_pvalue']:.2g} | {vs['ad_pvalue']:.2g} | {diff['mean']:+.2f} ± {diff['se']:.2f}"
                            if vs else "- | - | -") + f" | {yard['ks_pvalue']:.2g} |" if yard else " - |")
        lines += ["", "| signal | " + " | ".join(res["policies"]) + " |", "|---|" + "---|" * len(res["policies"])]
        signals = next(iter(res["policies"].values()))["power"]
        for sig in signals:
            cells = []
            for e in res["policies"].values():
                pw = e["power"][sig]
                cells.append(f"{pw['power']:.2f} [{pw['interval'][0]:.2f}, {pw['interval'][1]:.2f}]")
            lines.append(f"| {sig} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--toys", type=int, default=500)
    ap.add_argument("--signal-toys", type=int, default=100)
    ap.add_argument("--problems", default="1d,5d")
    ap.add_argument("--policies", default="uniform,coverage")
    ap.add_argument("--out", help="also write the JSON document to this file")
    ap.add_argument("--quick", action="store_true", help="small sizes and few toys (a smoke run)")
    ap.add_argument("--table", metavar="JSON", help="print the markdown tables of a recorded run and exit")
    args = ap.parse_args()
    if args.table:
        with open(args.table) as fh:
            print(markdown(json.load(fh)))
        return
    policies = ["pooled"] + [p for p in args.policies.split(",") if p and p != "pooled"]
    out = {"benchmark": "center_null", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "nproc": os.cpu_count(), "cpu": cpuinfo(), "z_level": Z_LEVEL, "problems": {}}
    for pname in args.problems.split(","):
        prob = {"1d": problem_1d, "5d": problem_5d}[pname](args.quick)
        sigma = prob["sigmas"][1]
        toys = 40 if args.quick else args.toys
        n_sig = 10 if args.quick else args.signal_toys
        signals = dict(list(signal_sets(prob, n_sig).items())[:2])
        nulls = null_sets(prob, toys)
        ref, n_exp = prob["reference"], prob["n_expected"]
        t_null = {p: [] for p in policies}
        t_sig = {p: {s: [] for s in signals} for p in policies}
        seconds = {p: 0.0 for p in policies}
        for seed in range(args.seeds):
            for p in policies:
                model = fastnplm.KernelNPLM(M=prob["M"], sigma=sigma, lam=1e-6, center_pool=p, seed=seed)
                t0 = time.perf_counter()
                t_null[p].append(fit_t(model, ref, nulls, n_exp))
                for s, sets in signals.items():
                    t_sig[p][s].append(fit_t(model, ref, sets, n_exp))
                seconds[p] += time.perf_counter() - t0
                print(f"# {pname} seed {seed} {p}: mean null t {t_null[p][-1].mean():.2f}, "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
        res = {"settings": {"M": prob["M"], "sigma": sigma, "lam": 1e-6, "n_expected": n_exp,
                            "n_reference": ref.shape[0], "null_toys_per_seed": toys, "signal_toys_per_seed": n_sig,
                            "seeds": args.seeds}, "seconds": seconds, "policies": {}}
        for p in policies:
            allp = np.concatenate(t_null[p])
            entry = {"null_mean": float(allp.mean()), "null_sd": float(allp.std(ddof=1)),
                     "chi2_fit": fastnplm.Calibration(t=allp[:, None], sigmas=(sigma,), n_events=np.zeros(allp.size),
                                                      converged=np.ones((allp.size, 1), bool), seed=0).chi2_fit(),
                     "power": {}}
            if p != "pooled":
                ref_all = np.concatenate(t_null["pooled"])
                entry["vs_pooled_all_seeds"] = two_sample(allp, ref_all)
                entry["vs_pooled_per_seed"] = [two_sample(a, b) for a, b in zip(t_null[p], t_null["pooled"])]
                diff = allp - ref_all
                entry["paired_t_difference"] = {"mean": float(diff.mean()),
                                                "se": float(diff.std(ddof=1) / np.sqrt(diff.size))}
            if args.seeds > 1:
                entry["seed0_vs_seed1"] = two_sample(t_null[p][0], t_null[p][1])
            level = stats.norm.sf(Z_LEVEL)
            for s in signals:
                ks, ns = 0, 0
                per_seed = []
                for null, sig in zip(t_null[p], t_sig[p][s]):
                    pv = (1.0 + (null[None, :] >= sig[:, None]).sum(axis=1)) / (null.size + 1)
                    k = int(np.count_nonzero(pv <= level))
                    per_seed.append({"power": k / sig.size, "interval": clopper_pearson(k, sig.size)})
                    ks, ns = ks + k, ns + sig.size
                entry["power"][s] = {"power": ks / ns, "interval": clopper_pearson(ks, ns), "per_seed": per_seed}
            res["policies"][p] = entry
        out["problems"][pname] = res
    emit(out, args.out)


if __name__ == "__main__":
    main()
