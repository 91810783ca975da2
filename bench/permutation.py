#!/usr/bin/env python
"""The permutation test's fast path against the naive loop of refits, in the same run.

    python bench/permutation.py [--out FILE] [--permutations 64] [--naive 4]
    python bench/permutation.py --cms [--out FILE]

Scenario of the issue on two samples: a generated sample of n = 1e4 events against a
validation sample of m = 1e5 (4-D correlated Gaussians from one distribution), M = 500
centers from the pooled sample, sigma = the heuristic, lam = 1e-6, the newton-step estimator.
The fast path (shared Gram matrices, the smaller class's rows per permutation, an exact step)
is timed on ``--permutations`` relabellings after its one-off setup; the naive loop refits
``--naive`` relabellings with ``KernelNPLM.fit`` (centers fixed, the same model). Both compute
the same relabellings (toy_rng(seed, k)), so their t are compared too. Target: a permutation
at least 20x cheaper than a refit.

--cms: the real-data check on the bundled CMS 2011A Z -> mu mu candidates (10000 events, 19
runs): the events of the earlier runs (run number below the median) against the later ones,
and, as a control, random halves of the same events; features log pt1, log pt2, eta1, eta2,
delta-phi, standardised; three widths, min-p over them, 999 permutations; the per-feature
two-sample KS p-values beside them.
"""
from __future__ import annotations

import argparse
import datetime
import os
import time

import numpy as np

import fastnplm
from fastnplm._bench import cpuinfo
from fastnplm.calibration.permutation import permutation_test

from _report import emit  # bench/_report.py


def cms(permutations=999):
    from scipy import stats

    from fastnplm.io import datasets, load

    run = load(datasets.cms_dimuon_path("zmumu"), columns=["Run"])[:, 0]
    x, _ = datasets.cms_dimuon("zmumu")
    z = np.column_stack([np.log(x[:, 0]), np.log(x[:, 1]), x[:, 2], x[:, 3], x[:, 4]])
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    early = run < np.median(run)
    half = np.zeros(run.size, dtype=bool)
    half[np.random.default_rng(2).permutation(run.size)[: run.size // 2]] = True
    model = fastnplm.KernelNPLM(M=300, lam=1e-6, seed=0)
    out = {"data": "CMS 2011A Z -> mu mu (bundled, CERN Open Data record 545)", "events": int(run.size),
           "runs": int(np.unique(run).size), "median_run": float(np.median(run)),
           "features": ["log pt1", "log pt2", "eta1", "eta2", "delta-phi"], "M": model.M, "lam": model.lam,
           "sigmas": [0.7, 1.5, 3.0], "permutations": permutations}
    for name, mask in (("early_vs_late_runs", early), ("random_halves", half)):
        t0 = time.perf_counter()
        res = permutation_test(model, z[mask], z[~mask], permutations=permutations, seed=1, sigmas=[0.7, 1.5, 3.0])
        out[name] = {**res.summary(), "seconds": time.perf_counter() - t0, "n_a": int(mask.sum()),
                     "n_b": int((~mask).sum()),
                     "ks_per_feature": [float(stats.ks_2samp(z[mask, i], z[~mask, i]).pvalue) for i in range(5)]}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="also write the JSON document to this file")
    ap.add_argument("--permutations", type=int, default=64)
    ap.add_argument("--naive", type=int, default=4)
    ap.add_argument("--cms", action="store_true", help="the real-data check instead of the timing")
    ap.add_argument("--threads", type=int, default=None,
                    help="core threads of the refits (default all; set OPENBLAS_NUM_THREADS to the same for numpy)")
    args = ap.parse_args()
    if args.cms:
        emit({"benchmark": "permutation_cms", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"), "cpu": cpuinfo(), **cms()}, args.out)
        return
    rng = np.random.default_rng(0)
    d = 4
    cov = 0.4 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
    a = rng.multivariate_normal(np.zeros(d), cov, size=100_000)
    b = rng.multivariate_normal(np.zeros(d), cov, size=10_000)
    model = fastnplm.KernelNPLM(M=500, lam=1e-6, seed=1, threads=args.threads)
    sigma = fastnplm.models.sigma_heuristic(np.concatenate([a, b]), seed=1)

    t0 = time.perf_counter()
    permutation_test(model, a, b, permutations=1, seed=3, sigmas=[sigma], fast=True)
    setup_plus_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    many = permutation_test(model, a, b, permutations=1 + args.permutations, seed=3, sigmas=[sigma], fast=True)
    setup_plus_many = time.perf_counter() - t0
    per_permutation = (setup_plus_many - setup_plus_one) / args.permutations
    setup = setup_plus_one - per_permutation

    t0 = time.perf_counter()
    naive = permutation_test(model, a, b, permutations=args.naive, seed=3, sigmas=[sigma], fast=False)
    naive_seconds = time.perf_counter() - t0
    per_refit = naive_seconds / (args.naive + 1)  # the observed data are one more fit
    rel = np.abs(naive.null.t[:, 0] - many.null.t[: args.naive, 0]) / np.abs(naive.null.t[:, 0])

    out = {"benchmark": "permutation", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "nproc": os.cpu_count(), "cpu": cpuinfo(), "build": fastnplm.build_info(),
           "threads": {"core": args.threads or fastnplm._core.default_threads(),
                       "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")},
           "setting": {"n_a": a.shape[0], "n_b": b.shape[0], "d": d, "M": model.M, "sigma": sigma, "lam": model.lam},
           "fast": {"setup_seconds": setup, "seconds_per_permutation": per_permutation,
                    "permutations_timed": args.permutations, "t_obs": float(many.t_obs[0])},
           "naive_refit": {"seconds_per_fit": per_refit, "fits_timed": args.naive + 1, "t_obs": float(naive.t_obs[0])},
           "speedup_per_permutation": per_refit / per_permutation,
           "speedup_including_setup_for_1000": 1000 * per_refit / (setup + 1000 * per_permutation),
           "max_relative_t_difference": float(rel.max()), "target_speedup": 20.0,
           "target_met": per_refit / per_permutation >= 20.0}
    emit(out, args.out)


if __name__ == "__main__":
    main()
