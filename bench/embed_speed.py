#!/usr/bin/env python
"""Embedder training time, embedding throughput (events/s, CPU) and the embedding's share of an embedded test.

    python bench/embed_speed.py [--out FILE] [--threads 1] [--events 1000000]

Events of the ADC2021 trigger-level size: 57 features (19 objects x (pT, eta, phi)),
synthetic (four Gaussian classes in correlated features). The embedder is the default MLP
(57 -> 64 -> 64 -> 8, ReLU) trained with the supervised contrastive loss, batch 512, for a
fixed number of epochs (no early stopping, so the epochs are comparable).

* training: seconds per epoch and training events per second;
* throughput of ``Embedder.transform`` (float64 layers, rounded to float32) on ``--events``
  events, against the peer in the same run: the same network as a float32 torch module
  (``torch.no_grad``), the plain way to run it;
* the embedded test: a Pipeline with KernelNPLM(M=500) calibrated with 100 toys of
  N(R) = 2000 against N_R = 50000 reference events, then the data test and 20 monitored
  batches: the seconds spent embedding against the seconds of NPLM.
"""
from __future__ import annotations

import argparse
import datetime
import os
import time

import numpy as np
import torch

import fastnplm
from fastnplm._bench import cpuinfo
from fastnplm.embed import Embedder, Pipeline

from _report import emit  # bench/_report.py


def events(n, rng, d=57):
    y = rng.integers(0, 4, n)
    cov = 0.5 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
    x = rng.multivariate_normal(np.zeros(d), cov, size=n)
    x[:, :4] += 1.5 * np.eye(4)[y]
    return x, y


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="also write the JSON document to this file")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x_train, y_train = events(20000, rng)

    emb = Embedder(dim=8, widths=(64, 64), epochs=args.epochs, batch_size=512, patience=args.epochs, seed=0)
    pipe = Pipeline(emb, fastnplm.KernelNPLM(M=500, lam=1e-6, seed=0))
    t0 = time.perf_counter()
    pipe.train(x_train, y_train)
    train_seconds = time.perf_counter() - t0
    n_fit = int(round(0.8 * len(x_train)))
    training = {"events": len(x_train), "training_events": n_fit, "epochs": len(emb.history_["train"]),
                "seconds": train_seconds, "seconds_per_epoch": train_seconds / len(emb.history_["train"]),
                "training_events_per_second": n_fit * len(emb.history_["train"]) / train_seconds}

    x, _ = events(args.events, rng)
    z_pre = pipe.preprocessing.transform(x)
    t0 = time.perf_counter()
    emb.transform(z_pre)
    ours = time.perf_counter() - t0
    # the peer: the same weights in a float32 torch module, the usual way to run a network
    net = torch.nn.Sequential(*[m for (w, b) in emb.weights()
                                for m in (torch.nn.Linear(w.shape[1], w.shape[0]), torch.nn.ReLU())][:-1])
    with torch.no_grad():
        for layer, (w, b) in zip([m for m in net if isinstance(m, torch.nn.Linear)], emb.weights()):
            layer.weight.copy_(torch.from_numpy(w))
            layer.bias.copy_(torch.from_numpy(b))
        xt = torch.from_numpy(z_pre.astype(np.float32))
        t0 = time.perf_counter()
        for a in range(0, len(xt), 65536):
            torch.nn.functional.normalize(net(xt[a:a + 65536]), dim=1)
        peer = time.perf_counter() - t0
    throughput = {"events": args.events, "transform_seconds": ours, "transform_events_per_second": args.events / ours,
                  "torch_float32_seconds": peer, "torch_float32_events_per_second": args.events / peer,
                  "transform_over_float32": ours / peer}

    reference, _ = events(50000, rng)
    pool, _ = events(50000, rng)
    data, _ = events(2000, rng)
    t0 = time.perf_counter()
    ref_e, pool_e = pipe.transform(reference), pipe.transform(pool)
    embed_ref_pool = time.perf_counter() - t0
    t0 = time.perf_counter()
    cal = fastnplm.calibrate(pipe.model, ref_e, pool_e, toys=100, n_expected=2000.0, seed=1, progress=False)
    calibration = time.perf_counter() - t0
    t0 = time.perf_counter()
    pipe.calibration = cal
    out_test = pipe.test(reference, data)
    test_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    data_e = pipe.transform(data)
    embed_test = (time.perf_counter() - t0) + embed_ref_pool / 2  # the test embeds the reference and the data
    mon = pipe.monitor(reference)
    batches = [mon.test(events(2000, rng)[0]) for _ in range(20)]
    assert data_e.shape == (2000, 8)
    test = {"n_reference": 50000, "n_pool": 50000, "n_expected": 2000, "M": 500, "toys": 100,
            "embed_reference_and_pool_seconds": embed_ref_pool, "calibration_seconds": calibration,
            "embedding_share_of_calibration": embed_ref_pool / (embed_ref_pool + calibration),
            "pipeline_test_seconds": test_seconds, "embedding_seconds_in_test": embed_test,
            "t": out_test["per_width"][0]["t"], "path": cal.settings.get("path"),
            "monitor_batch_seconds_median": float(np.median([b["seconds"] for b in batches])),
            "monitor_embed_seconds_median": float(np.median([b["embed_seconds"] for b in batches]))}
    out = {"benchmark": "embed_speed", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "nproc": os.cpu_count(), "cpu": cpuinfo(), "torch": torch.__version__, "torch_threads": args.threads,
           "build": fastnplm.build_info(), "network": {"features": 57, "widths": [64, 64], "dim": 8},
           "training": training, "throughput": throughput, "embedded_test": test}
    emit(out, args.out)


if __name__ == "__main__":
    main()
