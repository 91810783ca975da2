#!/usr/bin/env python
"""Toy-calibration throughput: the shared-reference fast path against the naive loop of
independent fits, measured in the same run.

    python bench/calibration.py [--out FILE]

Prints one JSON document. Scenarios of the calibration issue: 1D (reference Exp(1),
N_R = 200000, N(R) = 2000, M = 1000, lambda = 1e-6, sigma = 0.3) and DQM-like (d = 5,
N_R = 200000, N(R) = 5000, M = 50), plus nine widths on the same DQM toys against one.
Both paths fit the same estimator (center_pool="reference", dense Hessian mode).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import numpy as np

import fastnplm


def _run(model, ref, pool, toys, n_expected, fast, sigmas=None):
    start = time.perf_counter()
    cal = fastnplm.calibrate(model, ref, pool, toys=toys, n_expected=n_expected, sigmas=sigmas, seed=0, fast=fast)
    seconds = time.perf_counter() - start
    return {"path": "fast" if fast else "naive loop", "toys": toys, "widths": len(cal.sigmas), "seconds": seconds,
            "toys_per_second": toys / seconds, "all_converged": bool(cal.converged.all())}, cal


def _scenario(model, ref, pool, n_expected, naive_toys, fast_toys, target):
    naive, cal_n = _run(model, ref, pool, naive_toys, n_expected, False)
    fast, cal_f = _run(model, ref, pool, fast_toys, n_expected, True)
    k = min(naive_toys, fast_toys)
    return {"naive": naive, "fast": fast, "speedup": fast["toys_per_second"] / naive["toys_per_second"],
            "max_rel_diff_t_common_toys": float(np.max(np.abs(cal_f.t[:k] - cal_n.t[:k]) / np.abs(cal_n.t[:k]))),
            "target_toys_per_second": target, "target_met": fast["toys_per_second"] >= target,
            "target_10x_naive_met": fast["toys_per_second"] >= 10 * naive["toys_per_second"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="also write the JSON document to this file")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    out = {"benchmark": "calibration", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "nproc": os.cpu_count(), "build": fastnplm.build_info(), "scenarios": {}}

    ref, pool = rng.exponential(size=(200_000, 1)), rng.exponential(size=(1_000_000, 1))
    model = fastnplm.KernelNPLM(M=1000, sigma=0.3, lam=1e-6, center_pool="reference", hessian="dense")
    out["scenarios"]["1d_M1000"] = _scenario(model, ref, pool, 2000.0, 3, 24, 20)
    out["scenarios"]["1d_M1000"]["note"] = ("fast-path seconds include the once-per-width reference pass "
                                            "(N_R M^2 work), amortised over the toys of the run")

    ref, pool = rng.normal(size=(200_000, 5)), rng.normal(size=(500_000, 5))
    sigma = fastnplm.sigma_heuristic(ref)
    model = fastnplm.KernelNPLM(M=50, sigma=sigma, lam=1e-6, center_pool="reference")
    out["scenarios"]["dqm_M50"] = _scenario(model, ref, pool, 5000.0, 8, 256, 100)
    one, _ = _run(model, ref, pool, 64, 5000.0, True)
    nine, _ = _run(model, ref, pool, 64, 5000.0, True, sigmas=list(sigma * np.geomspace(0.25, 4, 9)))
    out["scenarios"]["dqm_9_widths"] = {"one_width": one, "nine_widths": nine,
                                        "time_ratio_9_over_1": nine["seconds"] / one["seconds"], "target_ratio_max": 9}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
