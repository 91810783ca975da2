#!/usr/bin/env python
"""Throughput of the monitoring service: 50 channels of 5 features, batches of 5000 events.

    OPENBLAS_NUM_THREADS=1 python bench/monitor_service.py [--channels 50] [--batches 20] [--threads 1]
        [--n-reference 20000] [--toys 100] [--out FILE]

One synthetic detector (channels x 5 correlated Gaussian features, one reference and one pool
file), a ``fastnplm.MonitorService`` with M = 50 and one width per channel (the default model,
centers from the reference), batches of Poisson(5000) events carrying every channel, given
through the Python iterator (``service.run(batches)``) and, for a few, as .npz files. Reported:

- batches per second and the wall time of a batch (test of every channel, reconstruction,
  one SQLite transaction, the dashboard's data rewritten), against the goal of 1 s;
- per-channel latency: the ``Monitor.test`` time of one channel (median, 95th percentile), and the
  batch's time divided by the channels;
- the same without the dashboard's reconstruction (one fit fewer per channel);
- the dashboard's rewrite and the SQLite write on their own;
- start-up: first start (calibration of every channel) and restart (stores read back);
- memory: peak resident set size.
The goal is all channels tested within 1 s per batch on 2 cores.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np

import fastnplm
from fastnplm._bench import cpuinfo

from _report import emit  # bench/_report.py

D = 5


def rss_mb() -> float:
    """Peak resident set size of this process so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def detector(folder, channels, n_reference, n_pool, rng):
    """Reference and pool files: channel c has columns c{c:02d}_x0..x4, correlated Gaussians."""
    cov = 0.5 ** np.abs(np.subtract.outer(np.arange(D), np.arange(D)))
    chol = np.linalg.cholesky(cov)
    for name, n in (("reference", n_reference), ("pool", n_pool)):
        cols = {}
        for c in range(channels):
            x = rng.standard_normal((n, D)) @ chol.T
            cols.update({f"c{c:02d}_x{i}": x[:, i] for i in range(D)})
        np.savez(os.path.join(folder, f"{name}.npz"), **cols)
    return chol


def batch(channels, chol, rng, size, degraded=()):
    """One batch carrying every channel; the channels in ``degraded`` have a 30% wider feature 0."""
    n = rng.poisson(size)
    cols = {}
    for c in range(channels):
        x = rng.standard_normal((n, D)) @ chol.T
        if c in degraded:
            x[:, 0] *= 1.3
        cols.update({f"c{c:02d}_x{i}": x[:, i] for i in range(D)})
    return cols


def config(channels, toys, threads, reconstruction, database, dashboard):
    return {"service": {"database": database, "threads": threads},
            "dashboard": {"folder": dashboard, "reconstruction": reconstruction},
            "defaults": {"reference": "reference.npz", "pool": "pool.npz", "toys": toys, "n_expected": 5000,
                         "model": {"M": 50, "lam": 1e-6, "seed": 0}},
            "channel": [{"name": f"c{c:02d}", "columns": [f"c{c:02d}_x{i}" for i in range(D)],
                         "calibration": f"calibrations/c{c:02d}.fnplm"} for c in range(channels)]}


def run_batches(svc, batches, prefix):
    walls = []
    for k, cols in enumerate(batches):
        t0 = time.perf_counter()
        svc.process(cols, batch_id=f"{prefix}{k:04d}")
        walls.append(time.perf_counter() - t0)
    return walls


def summary(walls, svc, prefix, channels):
    ids = tuple(svc.history.db.execute("SELECT batch FROM batches WHERE batch LIKE ?", (prefix + "%",)))
    test_s = [r[0] for r in svc.history.db.execute(
        "SELECT seconds FROM results WHERE batch LIKE ?", (prefix + "%",))]
    before_db = [r[0] for r in svc.history.db.execute("SELECT seconds FROM batches WHERE batch LIKE ?",
                                                      (prefix + "%",))]
    med = statistics.median(walls)
    return {"batches": len(ids), "batch_seconds_median": med, "batch_seconds_max": max(walls),
            "batches_per_second": 1.0 / med, "goal_seconds": 1.0, "goal_met": max(walls) <= 1.0,
            "channel_test_ms_median": 1e3 * statistics.median(test_s),
            "channel_test_ms_p95": 1e3 * float(np.percentile(test_s, 95)),
            "batch_ms_per_channel": 1e3 * med / channels,
            "tests_and_reconstruction_seconds_median": statistics.median(before_db),
            "record_and_dashboard_seconds_median": med - statistics.median(before_db)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--channels", type=int, default=50)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-reference", type=int, default=20_000)
    ap.add_argument("--toys", type=int, default=100)
    ap.add_argument("--out", help="also write the JSON document to this file")
    args = ap.parse_args()
    logging.getLogger("fastnplm").setLevel(logging.ERROR)  # the alarms of the degraded channels: not news here
    rng = np.random.default_rng(0)
    out = {"benchmark": "monitor_service",
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "cpu": cpuinfo(),
           "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "build": fastnplm.build_info(),
           "python": sys.version.split()[0], "loadavg_at_start": os.getloadavg(),
           "settings": {"channels": args.channels, "features": D, "M": 50, "widths": 1, "batch_events": 5000,
                        "n_reference": args.n_reference, "toys": args.toys, "threads": args.threads}}
    with tempfile.TemporaryDirectory() as tmp:
        chol = detector(tmp, args.channels, args.n_reference, 2 * args.n_reference, rng)
        batches = [batch(args.channels, chol, rng, 5000, degraded=range(0, args.channels, 10) if k >= args.batches // 2
                         else ()) for k in range(args.batches)]
        out["rss_mb_after_data"] = rss_mb()
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            cfg = config(args.channels, args.toys, args.threads, True, "dqm.sqlite", "dashboard")
            t0 = time.perf_counter()
            svc = fastnplm.MonitorService(cfg, progress=False)
            out["first_start_seconds"] = time.perf_counter() - t0
            out["rss_mb_after_start"] = rss_mb()
            svc.process(batches[0], batch_id="warmup")
            walls = run_batches(svc, batches, "with-reco-")
            out["with_reconstruction"] = summary(walls, svc, "with-reco-", args.channels)
            t0 = time.perf_counter()
            for _ in range(5):
                svc.update_dashboard()
            out["dashboard_rewrite_seconds"] = (time.perf_counter() - t0) / 5
            out["data_js_kb"] = os.path.getsize(os.path.join("dashboard", "data.js")) / 1024
            out["alarms"] = len(svc.history.alarms(10**6))
            out["rss_mb_after_batches"] = rss_mb()
            svc.close()
            del svc

            # restart without the reconstruction: the stores are read back, not recalibrated
            cfg = config(args.channels, args.toys, args.threads, False, "dqm.sqlite", "dashboard")
            t0 = time.perf_counter()
            svc = fastnplm.MonitorService(cfg, progress=False)
            out["restart_seconds"] = time.perf_counter() - t0
            walls = run_batches(svc, batches, "no-reco-")
            out["without_reconstruction"] = summary(walls, svc, "no-reco-", args.channels)

            # the same batches as .npz files: reading each file once for all channels
            os.makedirs("incoming")
            for k, cols in enumerate(batches[:5]):
                np.savez(os.path.join("incoming", f"file{k:04d}.npz"), **cols)
            walls = []
            for path in sorted(os.listdir("incoming")):
                t0 = time.perf_counter()
                svc.process(os.path.join("incoming", path))
                walls.append(time.perf_counter() - t0)
            out["npz_files_batch_seconds_median"] = statistics.median(walls)
            svc.close()
        finally:
            os.chdir(cwd)
    out["rss_mb_peak"] = rss_mb()
    emit(out, args.out)


if __name__ == "__main__":
    main()
