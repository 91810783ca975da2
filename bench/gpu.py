#!/usr/bin/env python
"""GPU benchmark: the kernel-fit, calibration and neural scenarios of the CPU benches on the CUDA
backend, timed with CUDA events after a warm-up, with achieved rates against the device's peaks
and the CPU backend measured in the same run.

    python bench/gpu.py [--out bench/results/gpu.json] [--cpu-peer/--no-cpu-peer]
    python bench/gpu.py --smoke          # tiny sizes on the CPU backend: checks this script only

Needs a CUDA build of fastnplm (``fastnplm.cuda_built()``) and a device
(``fastnplm.cuda_available()``); otherwise it says so and exits with status 2. Until a run on a
GPU is recorded in bench/results/, this project has no GPU figure: none is estimated here.

Each case reports its time on stderr as it finishes and, with --out, the document so far is
rewritten after every case ("complete": false until the end), so a run stopped by a time limit
(bench/device_run.sh) keeps what it measured. A case that raises is recorded as {"error": ...},
the other cases still run, and the exit status is 1.

Achieved rates use nominal operation counts, stated in the output:
* kernel fits: kernel evaluations = (events) x M x (passes over the events); each costs
  3d + 2 FLOPs (differences, squares, sums, scale) plus one exp, counted as 1, and a fused
  Hessian product adds 4 (two multiply-adds); bytes = 8 (d + 2) per event per pass.
* neural epochs: 6 P FLOPs per event (forward, backward and gradient multiply-adds of P
  parameters) plus one exp per hidden unit and per reference event, counted as 1 each;
  bytes = 8 (d + 1) per event per epoch (events and weights read once). The float32 rows
  (dtype="float32": per-event arithmetic in float) count the same operations; they carry no
  fraction of the FP64 peak.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import traceback

import numpy as np

import fastnplm

from _report import emit

KERNEL = {"1d": dict(d=1, n_r=200_000, n_d=2_000, M=1000, sigma=0.3),
          "5d": dict(d=5, n_r=100_000, n_d=20_000, M=2000, sigma=1.0)}
NEURAL = {"1d": dict(d=1, hidden=(4,), n_r=200_000, n_d=2_000, clip=9.0),
          "5d": dict(d=5, hidden=(5, 5, 5), n_r=100_000, n_d=20_000, clip=2.0)}
TOYS = dict(d=1, n_r=200_000, n_expected=2000, M=1000, sigma=0.3, toys=300)
# the DIMUON size of Letizia et al. 2022 (Table 1: 44.9 s per toy on two Titan Xp): CUDA only,
# one timed fit after the warm-up, last in the run so that a slow first attempt costs no other row
LARGE = dict(d=5, n_r=100_000, n_d=20_000, M=20000, sigma=1.0)
NEURAL_TOYS = dict(d=1, hidden=(4,), n_r=200_000, n_expected=2000, clip=9.0, toys=32, epochs=2000)
SMOKE_SCALE = 100  # --smoke divides event counts by this (and uses small M, few epochs/toys)


class Timer:
    """CUDA events on the device; perf_counter on the CPU backend."""

    def __init__(self, device: bool):
        self._ev = fastnplm._core.CudaEventTimer() if device else None

    def __enter__(self):
        if self._ev is not None:
            self._ev.start()
        else:
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = self._ev.stop() / 1e3 if self._ev is not None else time.perf_counter() - self._t0


def timed(fn, backend, repeats=3):
    fn()  # warm-up: module load, allocations, device caches
    best = float("inf")
    for _ in range(repeats):
        with Timer(backend == "cuda") as t:
            out = fn()
        best = min(best, t.seconds)
    return best, out


def kernel_case(c, backend, smoke, repeats=3):
    rng = np.random.default_rng(0)
    n_r, n_d = (c["n_r"] // SMOKE_SCALE, c["n_d"] // SMOKE_SCALE) if smoke else (c["n_r"], c["n_d"])
    M = 50 if smoke else c["M"]
    ref = rng.exponential(size=(n_r, c["d"]))
    dat = rng.exponential(size=(n_d, c["d"]))
    # the published centers policy, as in the recorded CPU kernel-fit benches: this times the solver
    model = fastnplm.KernelNPLM(M=M, sigma=c["sigma"], lam=1e-6, hessian="stream", backend=backend,
                                center_pool="pooled")
    s, res = timed(lambda: model.fit(ref, dat), backend, repeats=repeats)
    passes = sum(res.cg_iterations) + 2  # CG products plus the gradient and the final f
    evals = (n_r + n_d) * M * passes
    flops = evals * (3 * c["d"] + 3 + 4)
    return {"N_R": n_r, "N_D": n_d, "M": M, "seconds": s, "t": res.t, "cg_iterations": res.cg_iterations,
            "kernel_evaluations_per_s": evals / s, "flops_per_s": flops / s,
            "bytes_per_s": 8 * (c["d"] + 2) * (n_r + n_d) * passes / s}


def neural_case(c, backend, smoke, dtype="float64"):
    rng = np.random.default_rng(0)
    n_r, n_d = (c["n_r"] // SMOKE_SCALE, c["n_d"] // SMOKE_SCALE) if smoke else (c["n_r"], c["n_d"])
    epochs = 20 if smoke else 2000
    ref = rng.exponential(size=(n_r, c["d"]))
    dat = rng.exponential(size=(n_d, c["d"]))
    model = fastnplm.NeuralNPLM(hidden=c["hidden"], clip=c["clip"], epochs=epochs, history_every=0, backend=backend,
                                dtype=dtype)
    s, res = timed(lambda: model.fit(ref, dat), backend)
    P, units, n = res.n_params, sum(c["hidden"]), n_r + n_d
    flops_epoch = n * (6 * P + units) + n_r
    return {"N_R": n_r, "N_D": n_d, "epochs": epochs, "dtype": dtype, "seconds": s, "ms_per_epoch": 1e3 * s / epochs,
            "t": res.t, "flops_per_s": flops_epoch * epochs / s, "bytes_per_s": 8 * (c["d"] + 1) * n * epochs / s}


def neural_toys_case(backend, smoke, dtype="float32"):
    """Batched Adam toys (one call trains a block of networks against the shared reference):
    toys per hour at the published 300000 epochs, extrapolated from the timed epochs."""
    c = NEURAL_TOYS
    rng = np.random.default_rng(2)
    n_r = c["n_r"] // SMOKE_SCALE if smoke else c["n_r"]
    n_exp = c["n_expected"] // (10 if smoke else 1)
    epochs = 20 if smoke else c["epochs"]
    ref = rng.exponential(size=(n_r, c["d"]))
    toys = [rng.exponential(size=(rng.poisson(n_exp), c["d"])) for _ in range(c["toys"])]
    model = fastnplm.NeuralNPLM(hidden=c["hidden"], clip=c["clip"], epochs=epochs, history_every=0, backend=backend,
                                dtype=dtype)
    s, _ = timed(lambda: model.fit_batch(ref, toys, n_expected=n_exp, seeds=range(len(toys))), backend, repeats=1)
    return {"N_R": n_r, "toys": len(toys), "epochs": epochs, "dtype": dtype, "seconds": s,
            "ms_per_epoch_per_toy": 1e3 * s / epochs / len(toys),
            "toys_per_hour_at_300000_epochs": 3600.0 / (s / epochs * 300_000 / len(toys))}


def toys_case(backend, smoke):
    c = TOYS
    rng = np.random.default_rng(1)
    n_r = c["n_r"] // SMOKE_SCALE if smoke else c["n_r"]
    n_exp = c["n_expected"] // (10 if smoke else 1)
    toys = 10 if smoke else c["toys"]
    ref = rng.exponential(size=(n_r, 1))
    pool = rng.exponential(size=(5 * n_r, 1))
    model = fastnplm.KernelNPLM(M=50 if smoke else c["M"], sigma=c["sigma"], lam=1e-6)  # the default centers

    def run():
        return fastnplm.calibrate(model, ref, pool, toys=toys, n_expected=n_exp, seed=0, backend=backend)

    s, cal = timed(run, backend, repeats=1)
    return {"N_R": n_r, "toys": toys, "path": cal.settings["path"], "seconds": s, "toys_per_second": toys / s}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU backend (checks the script)")
    ap.add_argument("--no-cpu-peer", action="store_true", help="skip the CPU backend measurements")
    args = ap.parse_args(argv)
    if args.smoke:
        backends = ["cpu"]
        facts = None
    else:
        if not fastnplm.cuda_built():
            print("fastnplm was built without CUDA: not yet measured on a GPU", file=sys.stderr)
            return 2
        if not fastnplm.cuda_available():
            print("no CUDA device available: not yet measured on a GPU", file=sys.stderr)
            return 2
        backends = ["cuda"] if args.no_cpu_peer else ["cuda", "cpu"]
        facts = fastnplm._core.cuda_device_facts().to_dict()
    doc = {"benchmark": "gpu", "mode": "smoke" if args.smoke else "full", "complete": False,
           "machine": {"cpu": platform.processor() or platform.machine(), "nproc": os.cpu_count(),
                       "fastnplm_build_info": fastnplm.build_info(), "device": facts,
                       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
           "operation_counts": "see the docstring of bench/gpu.py", "cases": {}}
    plan = []
    for backend in backends:
        doc["cases"][backend] = {}
        # the cases run after this loop: each lambda binds its backend (and case) now
        cases = [(f"kernel_fit_{name}", lambda c=c, b=backend: kernel_case(c, b, args.smoke))
                 for name, c in KERNEL.items()]
        for name, c in NEURAL.items():
            cases.append((f"neural_epochs_{name}", lambda c=c, b=backend: neural_case(c, b, args.smoke)))
            cases.append((f"neural_epochs_{name}_float32",
                          lambda c=c, b=backend: neural_case(c, b, args.smoke, "float32")))
        cases.append(("toys_1d", lambda b=backend: toys_case(b, args.smoke)))
        for dtype in ("float32", "float64"):
            cases.append((f"neural_toys_1d_{dtype}",
                          lambda dtype=dtype, b=backend: neural_toys_case(b, args.smoke, dtype)))
        plan += [(backend, key, case) for key, case in cases]
    # the large-M fit last, on the first backend only (the device; its CPU peer takes minutes)
    plan.append((backends[0], "kernel_fit_5d_M20000", lambda: kernel_case(LARGE, backends[0], args.smoke, repeats=1)))
    for backend, key, case in plan:
        rows = doc["cases"][backend]
        t0 = time.perf_counter()
        try:
            row = rows[key] = case()
        except Exception as exc:  # a first run on a device: record the failure, go on with the other cases
            traceback.print_exc()
            rows[key] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"gpu.py: {backend} {key}: FAILED ({rows[key]['error']})", file=sys.stderr, flush=True)
            if args.out:
                _write(doc, args.out)
            continue
        if backend == "cuda" and facts:
            if "flops_per_s" in row and row.get("dtype", "float64") == "float64":
                row["fraction_of_peak_fp64"] = row["flops_per_s"] / facts["peak_fp64_flops"]
            if "bytes_per_s" in row:
                row["fraction_of_peak_bandwidth"] = row["bytes_per_s"] / facts["peak_bandwidth"]
        # progress on stderr, and the document so far written to --out after every case: a run
        # stopped by a time limit (bench/device_run.sh) keeps the rows it finished
        print(f"gpu.py: {backend} {key}: {row['seconds']:.4g} s timed, {time.perf_counter() - t0:.1f} s with "
              "warm-up and repeats", file=sys.stderr, flush=True)
        if args.out:
            _write(doc, args.out)
    if "cuda" in doc["cases"] and "cpu" in doc["cases"]:
        doc["speedup_cuda_vs_cpu"] = {
            k: doc["cases"]["cpu"][k]["seconds"] / v["seconds"] for k, v in doc["cases"]["cuda"].items()
            if "seconds" in v and "seconds" in doc["cases"]["cpu"].get(k, {})}
    failed = [f"{b} {k}" for b, rows in doc["cases"].items() for k, r in rows.items() if "error" in r]
    doc["complete"] = True
    doc["failed_cases"] = failed
    emit(doc, args.out)
    if failed:
        print(f"gpu.py: {len(failed)} case(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _write(doc, path):
    """The document so far, to ``path`` (replaced atomically; emit writes the final one)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.partial"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))
        fh.write("\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
