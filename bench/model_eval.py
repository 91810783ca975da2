#!/usr/bin/env python
"""Evaluation of saved models on batches of events: events/s of fastnplm's core (through
SavedModel.predict, the same Model::evaluate code path C++ software links) against a numpy
implementation of the same f in the same run.

    python bench/model_eval.py [--threads N] [--out bench/results/model_eval_cpu.json]

Models: kernel M = 1000 in d = 1 and d = 5; neural 1-4-1 and 5-5-5-5-1. Batches of 1000
events (an online loop's unit) and 100000. Prints one JSON document.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

import fastnplm
from _report import emit


def numpy_kernel(m, x):
    d2 = (x * x).sum(1)[:, None] - 2 * x @ m.centers.T + (m.centers * m.centers).sum(1)[None, :]
    return np.exp(-d2 / (2 * m.sigma ** 2)) @ m.alpha


def numpy_neural(m, x):
    a, off, nin = x, 0, m.d
    for i, nout in enumerate((*m.hidden, 1)):
        W = m.params[off:off + nin * nout].reshape(nout, nin)
        b = m.params[off + nin * nout:off + nin * nout + nout]
        off += nin * nout + nout
        a = a @ W.T + b
        if i < len(m.hidden):
            a = 1 / (1 + np.exp(-a))
        nin = nout
    return a[:, 0]


def rate(fn, x, min_seconds=0.3):
    fn(x)
    reps, t0 = 0, time.perf_counter()
    while True:
        fn(x)
        reps += 1
        s = time.perf_counter() - t0
        if s >= min_seconds:
            return len(x) * reps / s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, d in (("kernel_1d_M1000", 1), ("kernel_5d_M1000", 5)):
            ref, dat = rng.normal(size=(20000, d)), rng.normal(size=(2000, d))
            fit = fastnplm.KernelNPLM(M=1000, sigma=0.5 * np.sqrt(d), lam=1e-6, seed=0).fit(ref, dat)
            cases[name] = (fit, numpy_kernel, d)
        for name, d, hidden in (("neural_1-4-1", 1, (4,)), ("neural_5-5-5-5-1", 5, (5, 5, 5))):
            ref, dat = rng.normal(size=(20000, d)), rng.normal(size=(2000, d))
            cases[name] = (fastnplm.NeuralNPLM(hidden=hidden, epochs=10, seed=0).fit(ref, dat), numpy_neural, d)
        rows = {}
        for name, (fit, peer, d) in cases.items():
            path = os.path.join(tmp, name + ".fnplm")
            fastnplm.save_model(fit, path)
            m = fastnplm.load_model(path)
            row = {}
            for n in (1000, 100000):
                x = rng.normal(size=(n, d))
                np.testing.assert_allclose(m.predict(x, threads=args.threads), peer(m, x), rtol=1e-9, atol=1e-9)
                ours = rate(lambda v: m.predict(v, threads=args.threads), x)
                theirs = rate(lambda v: peer(m, v), x)
                row[f"batch_{n}"] = {"fastnplm_events_per_s": ours, "numpy_events_per_s": theirs,
                                     "speedup_vs_numpy": ours / theirs}
            rows[name] = row
    emit({"benchmark": "model_eval", "machine": {"cpu": platform.processor() or platform.machine(),
                                                 "nproc": os.cpu_count(), "threads_used": args.threads,
                                                 "numpy": np.__version__, "fastnplm": fastnplm.build_info()},
          "cases": rows}, args.out)


if __name__ == "__main__":
    main()
