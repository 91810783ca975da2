#!/usr/bin/env python
"""Neural NPLM's Newton fit (optimizer="newton") against L-BFGS-B in the same run, and a study
of the two against Adam's published 300000-epoch training.

    python bench/neural_newton.py [--threads N] [--fits 3] [--fits-5d 1] [--out FILE]
    python bench/neural_newton.py --study [--toys 20] [--adam-toys 6 | --adam-from FILE] [--out FILE]

Timing (issue 18): 1D 1-4-1, clip 9, N_R = 200000, N_D = 2000 (target <= 0.25 s per fit,
restarts included); 5D 5-5-5-5-1, clip 2, N_R = 100000, N_D = 20000 (target <= 2 s). Data
from _bench.exp_data (reference and data Exp(1) in every coordinate), seeds 0, 1, ...; each
data set fitted by Newton (the model's defaults: restarts and the coarse stage), by Newton on
the full sample throughout (``coarse=False``) and by L-BFGS-B (one start, to convergence) one
after the other. Also the cost of one loss-gradient-Hessian pass
(_core.mlp_loss_grad_hess) against one loss-gradient pass (_core.mlp_loss_grad), best of 5.

Study (--study): the 1D setting, ``--toys`` data sets against one reference (even k null:
2000 events of Exp(1); odd k with a signal: 100 of them from N(2, 0.2)), fitted by Newton (with
and without the coarse stage) and L-BFGS-B from seed k's initialisation; the first
``--adam-toys`` of them (half null, half signal) also by Adam, 300000 epochs at lr 1e-3 in
float32 (the published training; its final loss recomputed in float64), all in one batched
call. The data sets are the same in every run, so ``--adam-from`` takes those Adam rows from an
earlier study's JSON instead of training again (15 minutes for 3). Reports per data set the three final
losses and how often Newton's is lower or equal (within 1e-6), and how often Newton's starts
agree with its best.

Prints one JSON document with the machine's facts (``--out`` also writes it).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

import fastnplm
from fastnplm import _bench, _core

from _report import emit  # bench/_report.py

CASES = {"1d": dict(d=1, hidden=(4,), n_r=200_000, n_d=2_000, clip=9.0, target_s=0.25),
         "5d": dict(d=5, hidden=(5, 5, 5), n_r=100_000, n_d=20_000, clip=2.0, target_s=2.0)}
AGREE = 1e-6


def best_ms(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def pass_costs(case, threads):
    ref, dat = _bench.exp_data(case["d"], case["n_r"], case["n_d"], 0)
    w = np.full(case["n_r"], case["n_d"] / case["n_r"])
    h = list(case["hidden"])
    p = _core.mlp_init(case["d"], h, 1, case["clip"])
    return {"events": case["n_r"] + case["n_d"], "n_params": int(p.shape[0]),
            "loss_grad_hess_ms": best_ms(lambda: _core.mlp_loss_grad_hess(ref, w, dat, h, p, threads)),
            "loss_grad_ms_same_pass": best_ms(lambda: _core.mlp_loss_grad_hess(ref, w, dat, h, p, threads, True, False)),
            "loss_grad_ms_mlp_loss_grad": best_ms(lambda: _core.mlp_loss_grad(ref, w, [dat], h, p[None, :], True,
                                                                                threads))}


def fit_record(res, seconds):
    rec = {"seconds": seconds, "loss": res.loss, "t": res.t, "iterations": res.epochs_done,
           "converged": res.converged, "message": res.message}
    if res.optimizer == "newton":
        rec["restart_losses"] = res.restart_losses.tolist()
        rec["restarts_at_best"] = res.restarts_at_best
    return rec


def timing(name, case, fits, threads, newton_iter):
    rows = []
    for seed in range(fits):
        ref, dat = _bench.exp_data(case["d"], case["n_r"], case["n_d"], seed)
        kw = dict(hidden=case["hidden"], clip=case["clip"], threads=threads)
        c0, t0 = time.process_time(), time.perf_counter()
        nw = fastnplm.NeuralNPLM(optimizer="newton", epochs=newton_iter, **kw).fit(ref, dat)
        c1, t1 = time.process_time(), time.perf_counter()
        nd = fastnplm.NeuralNPLM(optimizer="newton", coarse=False, epochs=newton_iter, **kw).fit(ref, dat)
        c2, t2 = time.process_time(), time.perf_counter()
        lb = fastnplm.NeuralNPLM(optimizer="lbfgsb", epochs=20000, **kw).fit(ref, dat)
        c3, t3 = time.process_time(), time.perf_counter()
        rows.append({"data_seed": seed, "newton": {**fit_record(nw, t1 - t0), "cpu_seconds": c1 - c0},
                     "newton_full_sample": {**fit_record(nd, t2 - t1), "cpu_seconds": c2 - c1},
                     "lbfgsb": {**fit_record(lb, t3 - t2), "cpu_seconds": c3 - c2}})
        print(f"{name} seed {seed}: newton {t1 - t0:.2f} s (L {nw.loss:.6f}), without the coarse stage "
              f"{t2 - t1:.2f} s (L {nd.loss:.6f}), lbfgsb {t3 - t2:.2f} s (L {lb.loss:.6f})", flush=True)
    sec_n = float(np.median([r["newton"]["seconds"] for r in rows]))
    sec_d = float(np.median([r["newton_full_sample"]["seconds"] for r in rows]))
    sec_l = float(np.median([r["lbfgsb"]["seconds"] for r in rows]))
    # CPU seconds of this process: with --threads 1, the fit's cost however loaded the machine is
    cpu = {k: float(np.median([r[k]["cpu_seconds"] for r in rows])) for k in ("newton", "newton_full_sample", "lbfgsb")}
    return {"case": {k: list(v) if isinstance(v, tuple) else v for k, v in case.items()},
            "newton_restarts": fastnplm.NeuralNPLM(optimizer="newton").restarts, "newton_iteration_limit": newton_iter,
            "fits": rows, "newton_median_s_per_fit": sec_n, "newton_full_sample_median_s_per_fit": sec_d,
            "lbfgsb_median_s_per_fit": sec_l, "newton_over_lbfgsb_time": sec_n / sec_l,
            "full_sample_over_newton_time": sec_d / sec_n, "median_cpu_seconds_per_fit": cpu,
            "target_s_per_fit": case["target_s"],
            "target_met": sec_n <= case["target_s"],
            "newton_lower_or_equal_loss": sum(r["newton"]["loss"] <= r["lbfgsb"]["loss"] + AGREE for r in rows)}


def study_toys(n_toys):
    ref = np.random.default_rng(2024).exponential(size=(200_000, 1))
    toys = []
    for k in range(n_toys):
        rng = np.random.default_rng(5000 + k)
        x = rng.exponential(size=(2000, 1))
        if k % 2:
            x[:100] = rng.normal(2.0, 0.2, size=(100, 1))
        toys.append(x)
    return ref, toys


def study(n_toys, n_adam, threads, adam_from=None):
    ref, toys = study_toys(n_toys)
    seeds = list(range(n_toys))
    kw = dict(hidden=(4,), clip=9.0, threads=threads)
    t0 = time.perf_counter()
    nw = fastnplm.NeuralNPLM(optimizer="newton", **kw).fit_batch(ref, toys, n_expected=2000, seeds=seeds)
    t1 = time.perf_counter()
    nd = fastnplm.NeuralNPLM(optimizer="newton", coarse=False, **kw).fit_batch(ref, toys, n_expected=2000,
                                                                                 seeds=seeds)
    t2 = time.perf_counter()
    lb = fastnplm.NeuralNPLM(optimizer="lbfgsb", epochs=20000, **kw).fit_batch(ref, toys, n_expected=2000, seeds=seeds)
    t3 = time.perf_counter()
    print(f"study: newton {t1 - t0:.0f} s, newton without the coarse stage {t2 - t1:.0f} s, lbfgsb {t3 - t2:.0f} s "
          f"for {n_toys} toys", flush=True)
    earlier = {}
    if adam_from:
        earlier = {r["toy"]: r["adam_300k"] for r in json.load(open(adam_from))["study_1d"]["rows"] if "adam_300k" in r}
        n_adam = 0
    adam = fastnplm.NeuralNPLM(epochs=300_000, lr=1e-3, history_every=0, dtype="float32", **kw).fit_batch(
        ref, toys[:n_adam], n_expected=2000, seeds=seeds[:n_adam]) if n_adam else []
    t4 = time.perf_counter()
    w = np.full(ref.shape[0], 2000 / ref.shape[0])
    rows = []
    for k in range(n_toys):
        row = {"toy": k, "signal": bool(k % 2), "newton": fit_record(nw[k], None),
               "newton_full_sample": fit_record(nd[k], None), "lbfgsb": fit_record(lb[k], None)}
        if k < n_adam:  # Adam's end point in float64, as the others' losses
            loss64 = float(_core.mlp_loss_grad(ref, w, [toys[k]], [4], adam[k].params[None, :], False, threads)[0][0])
            row["adam_300k"] = {"loss": loss64, "loss_float32_pass": adam[k].loss, "t": -2 * loss64}
        elif k in earlier:
            row["adam_300k"] = dict(earlier[k], from_file=adam_from)
        rows.append(row)
    n_le_lb = sum(r["newton"]["loss"] <= r["lbfgsb"]["loss"] + AGREE for r in rows)
    n_le_nd = sum(r["newton"]["loss"] <= r["newton_full_sample"]["loss"] + AGREE for r in rows)
    nd_le_n = sum(r["newton_full_sample"]["loss"] <= r["newton"]["loss"] + AGREE for r in rows)
    adam_rows = [r for r in rows if "adam_300k" in r]
    n_le_ad = sum(r["newton"]["loss"] <= r["adam_300k"]["loss"] + AGREE for r in adam_rows)
    lb_le_ad = sum(r["lbfgsb"]["loss"] <= r["adam_300k"]["loss"] + AGREE for r in adam_rows)
    at_best = [r["newton"]["restarts_at_best"] for r in rows]
    return {"toys": n_toys, "adam_toys": len(adam_rows),
            "seconds": {"newton": t1 - t0, "newton_full_sample": t2 - t1, "lbfgsb": t3 - t2, "adam": t4 - t3},
            "rows": rows,
            "newton_lower_or_equal_lbfgsb": n_le_lb, "newton_lower_or_equal_full_sample": n_le_nd,
            "full_sample_lower_or_equal_newton": nd_le_n, "newton_lower_or_equal_adam": n_le_ad,
            "lbfgsb_lower_or_equal_adam": lb_le_ad,
            "newton_restarts": nw[0].restart_losses.size, "restarts_at_best": at_best,
            "fits_where_all_starts_agree": sum(a == nw[0].restart_losses.size for a in at_best),
            "starts_disagreeing_with_best_fraction": 1 - sum(at_best) / (n_toys * nw[0].restart_losses.size),
            "median_loss_gap_lbfgsb_minus_newton": float(np.median([r["lbfgsb"]["loss"] - r["newton"]["loss"]
                                                                    for r in rows]))}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="default: all cores")
    ap.add_argument("--fits", type=int, default=3, help="1D data sets timed")
    ap.add_argument("--fits-5d", type=int, default=1, help="5D data sets timed (0: skip the case)")
    ap.add_argument("--newton-iter", type=int, default=1000, help="Newton's step limit per start")
    ap.add_argument("--study", action="store_true", help="the loss study instead of the timing")
    ap.add_argument("--toys", type=int, default=20)
    ap.add_argument("--adam-toys", type=int, default=6)
    ap.add_argument("--adam-from", help="take the Adam rows from this earlier --study JSON")
    ap.add_argument("--out", help="also write the JSON document to this file")
    args = ap.parse_args()
    threads = args.threads or _core.default_threads()
    out = {"benchmark": "neural_newton", "machine": _bench.machine(threads)}
    if args.study:
        out["study_1d"] = study(args.toys, args.adam_toys, threads, args.adam_from)
    else:
        out["pass_cost"] = {name: pass_costs(case, threads) for name, case in CASES.items()}
        out["timing"] = {"1d": timing("1d", CASES["1d"], args.fits, threads, args.newton_iter)}
        if args.fits_5d:
            out["timing"]["5d"] = timing("5d", CASES["5d"], args.fits_5d, threads, args.newton_iter)
    out["machine"]["loadavg_at_end"] = __import__("os").getloadavg()
    emit(out, args.out)


if __name__ == "__main__":
    main()
