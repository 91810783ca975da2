#!/usr/bin/env python
"""Toy-calibration throughput of fastnplm.calibrate (the plain path: one fit per toy and width).

    python bench/calibration.py [--toys N] [--out FILE]

Prints one JSON document. Scenarios of the calibration issue: 1D (reference Exp(1),
N_R = 200000, N(R) = 2000, M = 1000, lambda = 1e-6) and DQM-like (d = 5, N_R = 200000,
N(R) = 5000, M = 50), plus nine widths on the same DQM toys against one width. The
shared-reference fast path is not written yet; these are the figures it must beat.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import numpy as np

import fastnplm


def _toys_per_second(model, ref, pool, toys, n_expected, sigmas=None):
    start = time.perf_counter()
    cal = fastnplm.calibrate(model, ref, pool, toys=toys, n_expected=n_expected, sigmas=sigmas, seed=0)
    seconds = time.perf_counter() - start
    return {"toys": toys, "widths": len(cal.sigmas), "seconds": seconds, "toys_per_second": toys / seconds,
            "t_mean": cal.t.mean(axis=0).tolist(), "all_converged": bool(cal.converged.all())}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--toys", type=int, default=10, help="toys per scenario (default 10)")
    ap.add_argument("--out", help="also write the JSON document to this file")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    out = {"benchmark": "calibration", "path": "plain (one fit per toy and width)",
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "nproc": os.cpu_count(), "build": fastnplm.build_info(), "scenarios": {}}

    ref, pool = rng.exponential(size=(200_000, 1)), rng.exponential(size=(1_000_000, 1))
    model = fastnplm.KernelNPLM(M=1000, sigma=0.3, lam=1e-6)
    out["scenarios"]["1d_M1000"] = {**_toys_per_second(model, ref, pool, args.toys, 2000.0),
                                    "target_toys_per_second": 20}

    ref, pool = rng.normal(size=(200_000, 5)), rng.normal(size=(500_000, 5))
    sigma = fastnplm.sigma_heuristic(ref)
    model = fastnplm.KernelNPLM(M=50, sigma=sigma, lam=1e-6)
    one = _toys_per_second(model, ref, pool, args.toys, 5000.0)
    nine = _toys_per_second(model, ref, pool, args.toys, 5000.0, sigmas=list(sigma * np.geomspace(0.25, 4, 9)))
    out["scenarios"]["dqm_M50"] = {**one, "target_toys_per_second": 100}
    out["scenarios"]["dqm_9_widths"] = {**nine, "time_ratio_9_over_1": nine["seconds"] / one["seconds"],
                                        "target_ratio": 9}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
