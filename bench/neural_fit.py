#!/usr/bin/env python
"""Neural NPLM CPU benchmark: ms per epoch of fastnplm's trainer against, in the same run,
a plain PyTorch CPU loop of the same model (float64 and float32) and the original `NPLM`
package from PyPI (TensorFlow/Keras, its BSMfinderNet with clipping, float32).

    python bench/neural_fit.py [--quick] [--full-fit] [--threads N] [--toys N] [--toy-epochs E]
                               [--newton-toys-1d N] [--newton-toys-5d N] [--out FILE]

Peers: pip install '.[bench-neural]' (torch, NPLM, tensorflow). A peer that cannot be
imported is reported as such, with the error. Prints one JSON document to stdout.
Cases (issue 3): 1D 1-4-1 with N_R = 200000, N_D = 2000; 5D 5-5-5-5-1 with N_R = 100000,
N_D = 20000. fastnplm runs in float64 and float32 (dtype=; best of 3 fits each, all kept).
--full-fit also times one full 300000-epoch 1D fit in float32, the fastest mode (minutes).
Each case also reports exp_floor: the time of the epoch's float32 exponentials alone (one per
hidden unit and one for e^f, per event), the bound no implementation of the pass can beat here,
in 8-lane vectors and, on CPUs with AVX-512, 16-lane ones; and float32_lanes: the float32 epoch
with the pass forced to 16 lanes and to 8 (FASTNPLM_F32_LANES; the same bits), alternated, in
wall and CPU time (on a machine other work shares, run --threads 1 and read the CPU times).

toys_per_hour (issue 18): null toys of each case (data Exp(1), N_D ~ Poisson(N_D), n_expected =
N_D) fitted by the published Adam (300000 epochs, lr 1e-3), --toys of them in one batched call
(NeuralNPLM.fit_batch), timed for 1 and for --toy-epochs epochs: the call's time for 300000
epochs is t(1) + (300000 - 1) * (t(E) - t(1)) / (E - 1) (every epoch costs the same: Adam runs
them all, the pass does the same work), in float64 and float32; next to optimizer="newton" (float64,
its default restarts), the first --newton-toys-1d / --newton-toys-5d of the same toys fitted one
after the other to convergence (5D default 0: one 5D Newton fit takes minutes).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import numpy as np

import fastnplm
from fastnplm import _bench, _core

CASES = {"1d": dict(d=1, hidden=(4,), n_r=200_000, n_d=2_000, clip=9.0),
         "5d": dict(d=5, hidden=(5, 5, 5), n_r=100_000, n_d=20_000, clip=2.0)}
EPOCHS = {"fastnplm": 300, "torch": 30, "tf": 20}
QUICK_EPOCHS = {"fastnplm": 50, "torch": 5, "tf": 5}
PUBLISHED_EPOCHS = 300_000
LANES_ENV = "FASTNPLM_F32_LANES"


def cpu_model():
    return _bench.cpuinfo()["model"]


def data(case, seed=0):
    return _bench.exp_data(case["d"], case["n_r"], case["n_d"], seed)


def time_fastnplm(case, ref, dat, epochs, threads, dtype="float64", repeats=3):
    """Best of `repeats` fits (the machine may be shared); all timings are kept. The data are
    data(case), which _bench.neural_epochs regenerates (same seed)."""
    return _bench.neural_epochs(case["d"], case["hidden"], case["n_r"], case["n_d"], case["clip"], epochs, threads,
                                dtype, repeats)


def with_lanes(lanes, fn):
    """fn() with the float32 pass forced to `lanes` (an MlpPass reads FASTNPLM_F32_LANES when made)."""
    old = os.environ.get(LANES_ENV)
    os.environ[LANES_ENV] = str(lanes)
    try:
        return fn()
    finally:
        if old is None:
            del os.environ[LANES_ENV]
        else:
            os.environ[LANES_ENV] = old


def time_lanes(case, ref, dat, epochs, threads, rounds=5):
    """Float32 ms per epoch with the pass forced to 16 lanes and to 8, alternated, `rounds` fits
    each, best kept: wall time, and the process's CPU time (the fairer measure where other work
    shares the cores, with one thread), and the lanes the pass takes by default."""
    default = _core.mlp_float32_lanes(case["d"], list(case["hidden"]))
    if not _core.avx512_lanes():
        return {"default_lanes": default, "note": "no AVX-512 on this CPU or in this build: 8 lanes only"}
    m = fastnplm.NeuralNPLM(hidden=case["hidden"], clip=case["clip"], epochs=epochs, history_every=0,
                            threads=threads, dtype="float32")
    wall, cpu = {16: [], 8: []}, {16: [], 8: []}
    for lanes in wall:
        with_lanes(lanes, lambda: m.fit(ref[:1000], dat[:100]))  # warm-up
    for _ in range(rounds):
        for lanes in wall:
            w0, c0 = time.perf_counter(), time.process_time()
            with_lanes(lanes, lambda: m.fit(ref, dat))
            wall[lanes].append(1e3 * (time.perf_counter() - w0) / epochs)
            cpu[lanes].append(1e3 * (time.process_time() - c0) / epochs)
    return {"default_lanes": default, "epochs": epochs, "threads": threads, "rounds": rounds,
            "ms_per_epoch_16_lanes": min(wall[16]), "ms_per_epoch_8_lanes": min(wall[8]),
            "speedup_16_over_8": min(wall[8]) / min(wall[16]),
            "cpu_ms_per_epoch_16_lanes": min(cpu[16]), "cpu_ms_per_epoch_8_lanes": min(cpu[8]),
            "cpu_speedup_16_over_8": min(cpu[8]) / min(cpu[16]),
            "ms_per_epoch_all_16_lanes": wall[16], "ms_per_epoch_all_8_lanes": wall[8]}


def null_toys(case, n, seed=1000):
    """n null data sets of the case: N_D ~ Poisson(N_D) events, Exp(1) in every coordinate."""
    out = []
    for k in range(n):
        rng = np.random.default_rng(seed + k)
        out.append(rng.exponential(size=(rng.poisson(case["n_d"]), case["d"])))
    return out


def toys_per_hour(case, ref, toys, toy_epochs, threads, newton_toys):
    """Toys per hour of the published Adam (batched, scaled from toy_epochs to 300000 epochs) in
    float64 and float32, and of optimizer="newton" (float64) on the first newton_toys of them."""
    n_exp = float(case["n_d"])
    row = {"toys": len(toys), "n_expected": n_exp, "threads": threads}
    for dtype in ("float64", "float32"):
        secs = {}
        for epochs in (1, toy_epochs):
            m = fastnplm.NeuralNPLM(hidden=case["hidden"], clip=case["clip"], epochs=epochs, history_every=0,
                                    threads=threads, dtype=dtype)
            m.fit_batch(ref[:1000], [t[:100] for t in toys[:2]], n_expected=100.0)  # warm-up
            t0 = time.perf_counter()
            m.fit_batch(ref, toys, n_expected=n_exp, seeds=list(range(len(toys))))
            secs[epochs] = time.perf_counter() - t0
        per_epoch = (secs[toy_epochs] - secs[1]) / (toy_epochs - 1)
        projected = secs[1] + (PUBLISHED_EPOCHS - 1) * per_epoch
        row[f"adam_{dtype}"] = {
            "epochs_timed": [1, toy_epochs], "seconds": [secs[1], secs[toy_epochs]],
            "ms_per_epoch_of_the_batch": 1e3 * per_epoch, "projected_epochs": PUBLISHED_EPOCHS,
            "projected_seconds_per_batch": projected, "toys_per_hour": 3600.0 * len(toys) / projected,
            "lanes": _core.mlp_float32_lanes(case["d"], list(case["hidden"])) if dtype == "float32" else None}
    def newton(seed):
        return fastnplm.NeuralNPLM(hidden=case["hidden"], clip=case["clip"], optimizer="newton", seed=seed,
                                   threads=threads)

    if newton_toys == 0:
        row["newton_float64"] = {"note": "not timed in this run (--newton-toys-1d / --newton-toys-5d)"}
        return row
    newton(0).fit(ref[:1000], toys[0][:100], n_expected=100.0)  # warm-up
    times, ts, conv = [], [], []
    for k, dat in enumerate(toys[:newton_toys]):
        m = newton(k)
        t0 = time.perf_counter()
        r = m.fit(ref, dat, n_expected=n_exp)
        times.append(time.perf_counter() - t0)
        ts.append(r.t)
        conv.append(bool(r.converged))
    row["newton_float64"] = {"toys": len(times), "restarts": m.restarts, "seconds_per_fit": times,
                             "seconds_total": sum(times), "toys_per_hour": 3600.0 * len(times) / sum(times),
                             "t": ts, "converged": conv}
    for dtype in ("float64", "float32"):
        row[f"newton_over_adam_{dtype}_toys_per_hour"] = (row["newton_float64"]["toys_per_hour"]
                                                          / row[f"adam_{dtype}"]["toys_per_hour"])
    return row


def time_torch(case, ref, dat, epochs, threads, dtype_name):
    try:
        import torch
    except ImportError as e:
        return {"error": f"torch not importable: {e}"}
    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    sizes = (case["d"], *case["hidden"], 1)
    torch.manual_seed(0)
    layers = [torch.nn.Linear(i, o, dtype=dtype) for i, o in zip(sizes[:-1], sizes[1:])]
    params = [p for lin in layers for p in lin.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    xr, xd = torch.from_numpy(ref).to(dtype), torch.from_numpy(dat).to(dtype)
    w = case["n_d"] / case["n_r"]
    clip = case["clip"]

    def f(x):
        for lin in layers[:-1]:
            x = torch.sigmoid(lin(x))
        return layers[-1](x)

    def epoch():
        opt.zero_grad()
        loss = w * torch.sum(torch.exp(f(xr)) - 1) - torch.sum(f(xd))
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p in params:
                p.clamp_(-clip, clip)
        return loss

    epoch()
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    s = time.perf_counter() - t0
    return {"version": torch.__version__, "dtype": dtype_name, "threads": threads, "epochs": epochs,
            "ms_per_epoch": 1e3 * s / epochs}


def time_tf(case, ref, dat, epochs, threads):
    """The NPLM package's own network (BSMfinderNet: sigmoid layers, WeightClip), trained the way
    its examples do: Keras fit, one full batch per epoch, loss sum_R w (e^f - 1) - sum_D f."""
    try:
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        from NPLM.NNutils import BSMfinderNet
    except Exception as e:  # noqa: BLE001 - any import failure means: no peer
        return {"error": f"NPLM/tensorflow not importable: {type(e).__name__}: {e}"}
    try:
        arch = [case["d"], *case["hidden"], 1]
        model = BSMfinderNet((None, case["d"]), arch, case["clip"])
        x = np.concatenate([ref, dat]).astype(np.float32)
        y = np.concatenate([np.zeros(len(ref)), np.ones(len(dat))])
        wt = np.concatenate([np.full(len(ref), case["n_d"] / case["n_r"]), np.ones(len(dat))])
        target = np.stack([y, wt], axis=1).astype(np.float32)

        def nplm_loss(true, pred):
            f = pred[:, 0]
            yy, ww = true[:, 0], true[:, 1]
            return tf.reduce_sum((1 - yy) * ww * (tf.exp(f) - 1) - yy * ww * f)

        model.compile(loss=nplm_loss, optimizer="adam")
        model.fit(x, target, batch_size=x.shape[0], epochs=2, verbose=0)  # warm-up (tracing)
        t0 = time.perf_counter()
        model.fit(x, target, batch_size=x.shape[0], epochs=epochs, verbose=0)
        s = time.perf_counter() - t0
        import NPLM  # noqa: F401
        from importlib.metadata import version
        return {"tensorflow": tf.__version__, "keras": tf.keras.__version__ if hasattr(tf.keras, "__version__") else None,
                "NPLM": version("NPLM"), "dtype": "float32", "threads": threads, "epochs": epochs,
                "ms_per_epoch": 1e3 * s / epochs}
    except Exception as e:  # noqa: BLE001
        return {"error": f"NPLM training failed: {type(e).__name__}: {e}"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--full-fit", action="store_true", help="also time one full 300000-epoch 1D fit")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--toys", type=int, default=8, help="null toys per case for toys_per_hour (0: none)")
    ap.add_argument("--newton-toys-1d", type=int, default=4, help="of them fitted by Newton in 1D")
    ap.add_argument("--newton-toys-5d", type=int, default=0,
                    help="of them fitted by Newton in 5D (default 0: one such fit takes minutes)")
    ap.add_argument("--toy-epochs", type=int, default=None,
                    help="Adam epochs timed per toy batch (default 100 with --quick, else 300)")
    ap.add_argument("--out", default=None, help="also write the JSON document here")
    args = ap.parse_args()
    ep = QUICK_EPOCHS if args.quick else EPOCHS
    toy_epochs = args.toy_epochs or (100 if args.quick else 300)
    if toy_epochs < 2:
        ap.error(f"--toy-epochs must be >= 2, got {toy_epochs}")
    doc = {"benchmark": "neural_fit", "mode": "quick" if args.quick else "full",
           "machine": {"cpu": cpu_model(), "cpuinfo": _bench.cpuinfo(), "nproc": os.cpu_count(),
                       "threads_used": args.threads, "avx512_lanes": _core.avx512_lanes(),
                       "env_" + LANES_ENV: os.environ.get(LANES_ENV),
                       "loadavg_at_start": os.getloadavg(), "python": platform.python_version(),
                       "numpy": np.__version__, "fastnplm_build_info": fastnplm.build_info(),
                       "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
           "cases": {}}
    for name, case in CASES.items():
        ref, dat = data(case)
        ours = time_fastnplm(case, ref, dat, ep["fastnplm"], args.threads)
        ours32 = time_fastnplm(case, ref, dat, ep["fastnplm"], args.threads, "float32")
        # the floor: the float32 sigmoid/output exps of one epoch alone (n_r + n_d events), with
        # the same threads -- no epoch of this network can be faster here, in any implementation
        # with float-accurate exps. Measured before the peers, whose thread pools may linger.
        # The floor in 8-lane vectors and, where the CPU has AVX-512, 16-lane ones; "ms" is the
        # lower of the two (this machine's floor).
        n_exps = sum(case["hidden"]) + 1
        n_ev = case["n_r"] + case["n_d"]
        floor8 = _core.mlp_exp_floor_ms(n_ev, n_exps, args.threads, 50, 8)
        floor16 = _core.mlp_exp_floor_ms(n_ev, n_exps, args.threads, 50, 16) if _core.avx512_lanes() else None
        floor = min(floor8, floor16 or floor8)
        lanes = time_lanes(case, ref, dat, ep["fastnplm"], args.threads)
        n_newton = min(args.toys, args.newton_toys_1d if name == "1d" else args.newton_toys_5d)
        toys = (toys_per_hour(case, ref, null_toys(case, args.toys), toy_epochs, args.threads, n_newton)
                if args.toys > 0 else None)
        row = {"case": {k: list(v) if isinstance(v, tuple) else v for k, v in case.items()},
               "fastnplm": ours, "fastnplm_float32": ours32, "float32_lanes": lanes,
               "toys_per_hour": toys,
               "torch_float64": time_torch(case, ref, dat, ep["torch"], args.threads, "float64"),
               "torch_float32": time_torch(case, ref, dat, ep["torch"], args.threads, "float32"),
               "nplm_tensorflow": time_tf(case, ref, dat, ep["tf"], args.threads),
               "exp_floor": {"exps_per_event": n_exps, "ms": floor, "ms_8_lanes": floor8, "ms_16_lanes": floor16,
                             "speedup_16_over_8": floor8 / floor16 if floor16 else None,
                             "float32_epoch_over_floor": ours32["ms_per_epoch"] / floor,
                             "projected_300000_epoch_s": floor * 300}}
        for peer in ("torch_float64", "torch_float32", "nplm_tensorflow"):
            if "ms_per_epoch" in row[peer]:
                row[f"speedup_vs_{peer}"] = row[peer]["ms_per_epoch"] / ours["ms_per_epoch"]
                row[f"float32_speedup_vs_{peer}"] = row[peer]["ms_per_epoch"] / ours32["ms_per_epoch"]
        row["projected_300000_epoch_fit_s"] = ours["ms_per_epoch"] * 300
        row["float32_projected_300000_epoch_fit_s"] = ours32["ms_per_epoch"] * 300
        if name == "1d":
            # the clipped model's maximum-likelihood fit next to a (shorter) Adam run
            t0 = time.perf_counter()
            lb = fastnplm.NeuralNPLM(hidden=case["hidden"], clip=case["clip"], epochs=20000, optimizer="lbfgsb",
                                     threads=args.threads).fit(ref, dat)
            row["lbfgsb"] = {"t": lb.t, "iterations": lb.epochs_done, "converged": lb.converged,
                             "message": lb.message, "seconds": time.perf_counter() - t0}
            n_adam = 2000 if args.quick else 20000
            t0 = time.perf_counter()
            ad = fastnplm.NeuralNPLM(hidden=case["hidden"], clip=case["clip"], epochs=n_adam, history_every=0,
                                     threads=args.threads).fit(ref, dat)
            row["adam_for_comparison"] = {"epochs": n_adam, "t": ad.t, "seconds": time.perf_counter() - t0}
            if args.full_fit:  # the fastest mode: float32
                t0 = time.perf_counter()
                full = fastnplm.NeuralNPLM(hidden=case["hidden"], clip=case["clip"], epochs=300000,
                                           threads=args.threads, dtype="float32").fit(ref, dat)
                row["full_300000_epoch_fit"] = {"dtype": "float32", "seconds": time.perf_counter() - t0,
                                                "t": full.t, "loadavg_after": os.getloadavg()}
        doc["cases"][name] = row
        print(json.dumps({name: {"ours_ms": ours["ms_per_epoch"]}}), flush=True, file=__import__("sys").stderr)
    doc["machine"]["loadavg_at_end"] = os.getloadavg()
    _bench.emit(doc, args.out)


if __name__ == "__main__":
    main()
