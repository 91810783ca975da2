#!/usr/bin/env python
"""Neural NPLM CPU benchmark: ms per epoch of fastnplm's trainer against, in the same run,
a plain PyTorch CPU loop of the same model (float64 and float32) and the original `NPLM`
package from PyPI (TensorFlow/Keras, its BSMfinderNet with clipping, float32).

    python bench/neural_fit.py [--quick] [--full-fit] [--threads N]

Peers: pip install '.[bench-neural]' (torch, NPLM, tensorflow). A peer that cannot be
imported is reported as such, with the error. Prints one JSON document to stdout.
Cases (issue 3): 1D 1-4-1 with N_R = 200000, N_D = 2000; 5D 5-5-5-5-1 with N_R = 100000,
N_D = 20000. fastnplm runs in float64 and float32 (dtype=; best of 3 fits each, all kept).
--full-fit also times one full 300000-epoch 1D fit in float32, the fastest mode (minutes).
Each case also reports exp_floor: the time of the epoch's float32 exponentials alone (one per
hidden unit and one for e^f, per event), the bound no implementation of the pass can beat here.
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


def cpu_model():
    return _bench.cpuinfo()["model"]


def data(case, seed=0):
    return _bench.exp_data(case["d"], case["n_r"], case["n_d"], seed)


def time_fastnplm(case, ref, dat, epochs, threads, dtype="float64", repeats=3):
    """Best of `repeats` fits (the machine may be shared); all timings are kept. The data are
    data(case), which _bench.neural_epochs regenerates (same seed)."""
    return _bench.neural_epochs(case["d"], case["hidden"], case["n_r"], case["n_d"], case["clip"], epochs, threads,
                                dtype, repeats)


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
    args = ap.parse_args()
    ep = QUICK_EPOCHS if args.quick else EPOCHS
    doc = {"benchmark": "neural_fit", "mode": "quick" if args.quick else "full",
           "machine": {"cpu": cpu_model(), "cpuinfo": _bench.cpuinfo(), "nproc": os.cpu_count(),
                       "threads_used": args.threads,
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
        n_exps = sum(case["hidden"]) + 1
        floor = _core.mlp_exp_floor_ms(case["n_r"] + case["n_d"], n_exps, args.threads, 50)
        row = {"case": {k: list(v) if isinstance(v, tuple) else v for k, v in case.items()},
               "fastnplm": ours, "fastnplm_float32": ours32,
               "torch_float64": time_torch(case, ref, dat, ep["torch"], args.threads, "float64"),
               "torch_float32": time_torch(case, ref, dat, ep["torch"], args.threads, "float32"),
               "nplm_tensorflow": time_tf(case, ref, dat, ep["tf"], args.threads),
               "exp_floor": {"exps_per_event": n_exps, "ms": floor,
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
    print(json.dumps(doc, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


if __name__ == "__main__":
    main()
