#!/usr/bin/env python
"""Monitoring latency: one ``Monitor.test`` of a batch against the calibration model's ``fit`` of
the same batch (what a loop without ``Monitor`` would call), measured in the same run.

    python bench/monitor.py [--out FILE] [--repeats 30]

Scenarios of the issue on fast defaults:
- DQM: d = 5 (correlated Gaussian), N_R = 200000, batches of Poisson(5000) events, M = 50,
  sigma = the heuristic; target <= 5 ms per batch;
- 1D: reference Exp(1), N_R = 200000, batches of Poisson(2000), M = 1000, sigma = 0.3;
  target <= 10 ms per batch.
Default models (centers from the reference), 50 toys each (the calibration's cost is not
timed here: bench/calibration.py does that). Each figure is the median over ``repeats``
batches, after one warm-up batch.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time

import numpy as np

import fastnplm
from fastnplm._bench import cpuinfo

from _report import emit  # bench/_report.py


def scenario(ref, pool, model, n_exp, repeats, target_ms):
    cal = fastnplm.calibrate(model, ref, pool, toys=50, n_expected=n_exp, seed=1, progress=False)
    t0 = time.perf_counter()
    mon = fastnplm.Monitor(cal, ref)
    setup = time.perf_counter() - t0
    fit_model = cal.model()
    rng = np.random.default_rng(5)
    batches = [pool[rng.choice(pool.shape[0], size=rng.poisson(n_exp), replace=False)] for _ in range(repeats + 1)]
    mon.test(batches[0])
    tests, fits = [], []
    for b in batches[1:]:
        t0 = time.perf_counter()
        out = mon.test(b)
        tests.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref_t = fit_model.fit(ref, b, n_expected=n_exp).t
        fits.append(time.perf_counter() - t0)
        assert abs(out["t"] - ref_t) <= 1e-9 * abs(ref_t), (out["t"], ref_t)
    ms = 1e3 * statistics.median(tests)
    floor = {}
    if mon.shared is not None and mon.shared.features is not None:
        # the reference pass alone (sum_R w (e^f - 1) over the stored features), the bytes it
        # reads, and numpy reading the same array (np.sum, one thread) for the memory's pace
        sr, beta = mon.shared, np.ascontiguousarray(mon.shared.solve(batches[0]).beta[:, None])
        passes, reads = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fastnplm._core.features_expm1_sum(sr.features, beta, sr.w, 0, "cpu")
            passes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            float(sr.features.sum())
            reads.append(time.perf_counter() - t0)
        nbytes = sr.features.nbytes
        floor = {"reference_features_mb": nbytes / 1e6, "reference_pass_ms": 1e3 * statistics.median(passes),
                 "reference_pass_gb_per_s": nbytes / statistics.median(passes) / 1e9,
                 "numpy_sum_same_array_gb_per_s": nbytes / statistics.median(reads) / 1e9}
    return {**floor, "M": model.M, "n_reference": ref.shape[0], "d": ref.shape[1], "batch_events": n_exp,
            "path": cal.settings["path"], "kept_directions": None if mon.shared is None else mon.shared.r,
            "monitor_setup_seconds": setup, "monitor_test_ms": ms, "calibrated_fit_ms": 1e3 * statistics.median(fits),
            "speedup_vs_fit": statistics.median(fits) / statistics.median(tests),
            "target_ms": target_ms, "target_met": ms <= target_ms}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="also write the JSON document to this file")
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    out = {"benchmark": "monitor", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "nproc": os.cpu_count(), "cpu": cpuinfo(), "build": fastnplm.build_info(), "scenarios": {}}
    rng = np.random.default_rng(0)
    d = 5
    cov = 0.5 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
    ref = rng.multivariate_normal(np.zeros(d), cov, size=200_000)
    pool = rng.multivariate_normal(np.zeros(d), cov, size=400_000)
    out["scenarios"]["dqm_5d_M50"] = scenario(ref, pool, fastnplm.KernelNPLM(M=50, lam=1e-6), 5000.0, args.repeats, 5.0)
    ref, pool = rng.exponential(size=(200_000, 1)), rng.exponential(size=(1_000_000, 1))
    out["scenarios"]["1d_M1000"] = scenario(ref, pool, fastnplm.KernelNPLM(M=1000, sigma=0.3, lam=1e-6), 2000.0,
                                            args.repeats, 10.0)
    emit(out, args.out)


if __name__ == "__main__":
    main()
