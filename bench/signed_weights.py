#!/usr/bin/env python
"""Negative reference weights: how 10-20% of them change the null distribution of t and the power.

    python bench/signed_weights.py [--toys 600] [--signal-toys 200] [--seeds 6]
                                   [--fractions 0.1,0.2] [--out FILE] [--quick]

The 1D problem of the published kernel studies: the target is Exp(1), N(R) = 2000 expected
events, a reference of N_R = 20000 events, M = 200 centers drawn from the reference, sigma =
0.3, lambda = 1e-6 (the newton-step estimator at the published CG tolerance, on the spectral
path that calibrate takes for it). Per reference seed, references of the same size N_R:

- "unweighted": N_R events of Exp(1), each weighing N(R)/N_R;
- "signed f": a fraction f of the N_R events weighs -c, the rest +c, with the negative events
  drawn from a second component Exp(2) that the positive sample carries too and subtracts:
  positive events from (Exp(1) + r Exp(2)) / (1 + r), negative ones from Exp(2), r =
  f / (1 - 2 f), so that the weighted density is c N_R (1 - 2 f) Exp(1) exactly; c = N(R) /
  (N_R (1 - 2 f)). Its Kish effective size (sum w)^2 / sum w^2 is N_R (1 - 2 f)^2.

The same toys are fitted against every reference (toy k: Poisson(N(R)) events of Exp(1) from
toy_rng(seed, k)), so differences are paired. Reported per reference: the null's mean, sd,
quantiles 5/25/50/75/95%, the maximum-likelihood chi2 dof with a bootstrap 68% interval and
the chi2 KS p; against the unweighted reference of the same seed: two-sample KS and AD p
(scipy's, floored at 0.001), the paired mean difference of t; the yardstick, the same between
the unweighted references of consecutive seeds (how much the reference's draw alone moves the
null); the power at Z = 2 of a signal (N(4, 0.2^2), 25 events added to each toy), each
reference calibrated by its own null, with Clopper-Pearson 68% intervals. Over the seeds: the
spread of the null's mean and of the power from one reference draw to the next, per fraction.
"""
from __future__ import annotations

import argparse
import datetime
import os
import time
import warnings

import numpy as np
from scipy import optimize, stats

import fastnplm
from fastnplm._bench import cpuinfo
from fastnplm.calibration import clopper_pearson, toy_rng

from _report import emit  # bench/_report.py

N_EXPECTED, N_REFERENCE, M, SIGMA, LAM = 2000.0, 20000, 200, 0.3, 1e-6
SIGNAL = (4.0, 0.2, 25)  # mean, sd, events: power near 50% at Z = 2 with the unweighted reference
Z_LEVEL = 2.0
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def reference(seed, fraction, n_ref):
    """(events, weights) of a reference of n_ref events whose weighted density is N(R) Exp(1)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, int(round(1000 * fraction))]))
    if fraction == 0:
        return rng.exponential(size=(n_ref, 1)), np.full(n_ref, N_EXPECTED / n_ref)
    n_neg = int(round(fraction * n_ref))
    n_pos = n_ref - n_neg
    r = fraction / (1 - 2 * fraction)
    second = rng.random(n_pos) < r / (1 + r)
    pos = np.where(second, rng.exponential(0.5, n_pos), rng.exponential(1.0, n_pos))
    neg = rng.exponential(0.5, n_neg)
    x = np.concatenate([pos, neg])[:, None]
    c = N_EXPECTED / (n_ref * (1 - 2 * fraction))
    w = np.concatenate([np.full(n_pos, c), np.full(n_neg, -c)])
    order = rng.permutation(n_ref)
    return x[order], w[order]


def toys(count, seed, signal):
    out = []
    for k in range(count):
        rng = toy_rng(seed, k)
        x = rng.exponential(size=rng.poisson(N_EXPECTED))
        if signal:
            x = np.concatenate([x, rng.normal(SIGNAL[0], SIGNAL[1], SIGNAL[2])])
        out.append(x[:, None])
    return out


def chi2_dof(t):
    nll = lambda k: -(stats.chi2.logpdf(t, k).sum())  # noqa: E731
    return float(optimize.minimize_scalar(nll, bounds=(1e-3, max(10 * t.mean(), 10.0)), method="bounded",
                                          options={"xatol": 1e-6}).x)


def chi2_fit(t, boot=200, seed=0):
    rng = np.random.default_rng(seed)
    dof = chi2_dof(t)
    b = np.array([chi2_dof(t[rng.integers(0, t.size, t.size)]) for _ in range(boot)])
    return {"dof": dof, "interval_68": [float(np.quantile(b, 0.16)), float(np.quantile(b, 0.84))],
            "ks_pvalue": float(stats.kstest(t, stats.chi2(dof).cdf).pvalue)}


def two_sample(a, b):
    ks = stats.ks_2samp(a, b)
    with warnings.catch_warnings():  # scipy floors the AD p-value at 0.001 and clips it at 0.25, with a warning
        warnings.simplefilter("ignore")
        ad = stats.anderson_ksamp([a, b]).pvalue
    return {"ks_statistic": float(ks.statistic), "ks_pvalue": float(ks.pvalue), "ad_pvalue_floored": float(ad)}


def power(null, sig):
    p = (1.0 + (null[None, :] >= sig[:, None]).sum(axis=1)) / (null.size + 1)
    k = int(np.count_nonzero(p <= stats.norm.sf(Z_LEVEL)))
    return {"power": k / sig.size, "interval": clopper_pearson(k, sig.size), "median_z": float(np.median(stats.norm.isf(p)))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--toys", type=int, default=600)
    ap.add_argument("--signal-toys", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--fractions", default="0.1,0.2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="also write the JSON document to this file")
    ap.add_argument("--quick", action="store_true", help="few toys (a smoke run)")
    args = ap.parse_args()
    n_toys, n_sig = (60, 30) if args.quick else (args.toys, args.signal_toys)
    fractions = [0.0] + [float(f) for f in args.fractions.split(",") if f]
    null_sets, sig_sets = toys(n_toys, 4242, False), toys(n_sig, 7373, True)
    model = fastnplm.KernelNPLM(M=M, sigma=SIGMA, lam=LAM, hessian="spectral", seed=0, threads=args.threads)
    out = {"benchmark": "signed_weights",
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "nproc": os.cpu_count(), "cpu": cpuinfo(), "threads": args.threads,
           "settings": {"n_expected": N_EXPECTED, "n_reference": N_REFERENCE, "M": M, "sigma": SIGMA, "lam": LAM,
                        "cg_tol": model.cg_tol, "path": "spectral", "null_toys": n_toys, "signal_toys": n_sig,
                        "signal": {"mean": SIGNAL[0], "sd": SIGNAL[1], "events": SIGNAL[2]}, "z_level": Z_LEVEL},
           "references": {}}
    t_null: dict = {}
    for seed in range(args.seeds):
        for f in fractions:
            name = f"seed{seed}/" + ("unweighted" if f == 0 else f"signed{f:g}")
            ref, w = reference(seed, f, N_REFERENCE)
            start = time.perf_counter()
            solver = model.reference_solver(ref, w, path="spectral")
            null = solver.t_batch(null_sets)
            sig = solver.t_batch(sig_sets)
            t0 = np.array([t for t, _, _ in null])
            t1 = np.array([t for t, _, _ in sig])
            t_null[name] = t0
            entry = {"fraction_negative": float((w < 0).mean()), "sum_w": float(w.sum()),
                     "kish_effective_size": float(w.sum() ** 2 / (w ** 2).sum()),
                     "negative_center_weights": int((model.select_centers(ref, ref[:1], w)[1] < 0).sum()),
                     "kept_directions": int(solver.r),
                     "converged": int(sum(c for _, c, _ in null) + sum(c for _, c, _ in sig)),
                     "null_mean": float(t0.mean()), "null_sd": float(t0.std(ddof=1)),
                     "null_mean_se": float(t0.std(ddof=1) / np.sqrt(t0.size)),
                     "quantiles": dict(zip([f"{q:g}" for q in QUANTILES], np.quantile(t0, QUANTILES).tolist())),
                     "chi2_fit": chi2_fit(t0), "power_z2": power(t0, t1),
                     "seconds": time.perf_counter() - start}
            if f != 0:
                base = t_null[f"seed{seed}/unweighted"]
                entry["vs_unweighted"] = two_sample(t0, base)
                d = t0 - base
                entry["paired_difference"] = {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(d.size))}
            out["references"][name] = entry
            print(f"# {name}: null mean {t0.mean():.2f} sd {t0.std(ddof=1):.2f} dof {entry['chi2_fit']['dof']:.2f}, "
                  f"power {entry['power_z2']['power']:.2f}, {entry['seconds']:.0f} s", flush=True)
    if args.seeds > 1:  # how far another draw of the unweighted reference moves the null
        out["yardstick_unweighted_seed_s_vs_seed_s+1"] = [
            dict(two_sample(t_null[f"seed{s}/unweighted"], t_null[f"seed{s + 1}/unweighted"]),
                 mean_difference=float((t_null[f"seed{s}/unweighted"] - t_null[f"seed{s + 1}/unweighted"]).mean()))
            for s in range(args.seeds - 1)]
    summary = {}
    for f in fractions:
        label = "unweighted" if f == 0 else f"signed{f:g}"
        allt = np.concatenate([t_null[f"seed{s}/{label}"] for s in range(args.seeds)])
        means = np.array([t_null[f"seed{s}/{label}"].mean() for s in range(args.seeds)])
        dofs = np.array([out["references"][f"seed{s}/{label}"]["chi2_fit"]["dof"] for s in range(args.seeds)])
        powers = np.array([out["references"][f"seed{s}/{label}"]["power_z2"]["power"] for s in range(args.seeds)])
        summary[label] = {"null_mean_all_toys": float(allt.mean()), "null_sd_all_toys": float(allt.std(ddof=1)),
                          "null_mean_per_seed": means.tolist(), "sd_of_null_mean_across_references": float(means.std(ddof=1)),
                          "dof_per_seed": dofs.tolist(), "power_per_seed": powers.tolist(),
                          "power_mean": float(powers.mean()), "sd_of_power_across_references": float(powers.std(ddof=1))}
        if f != 0:
            summary[label]["chi2_ks_pvalues"] = [out["references"][f"seed{s}/{label}"]["chi2_fit"]["ks_pvalue"]
                                                 for s in range(args.seeds)]
            summary[label]["paired_difference_per_seed"] = [
                out["references"][f"seed{s}/{label}"]["paired_difference"]["mean"] for s in range(args.seeds)]
    out["summary"] = summary
    emit(out, args.out)


if __name__ == "__main__":
    main()
