#!/usr/bin/env python
"""NPLM's power on raw features, in a learned embedding and in a PCA of the same dimension.

    python bench/embed_evidence.py [--out FILE] [--toys 200] [--signal-toys 100] [--only cms|synthetic]

Each case: an embedder is trained (supervised contrastive loss) on labelled events of the
known classes only; NPLM (kernel, M = 300, lam = 1e-6, widths 0.5 and 1 times the heuristic
of each representation's reference, fixed in advance) is calibrated with ``--toys`` null toys
of Poisson(N(R)) events drawn from a pool of known-class events, and run on
``--signal-toys`` toys of the same background plus n_sig events of a class the embedder never
saw. Power = the fraction of signal toys with Z >= 2 (Clopper-Pearson 68% interval), per width
and for the min-p over the two widths (calibrated on the same toys). Three representations of
the same events: (a) raw, the standardised features; (b) embed, the learned embedding (unit
sphere); (c) pca, the projection of the standardised features on as many principal
components as the embedding has dimensions. Preprocessing, embedder and PCA are fitted on the
training split only; reference, pool, signal events are disjoint from it and from each other.

cms: the bundled CMS 2011A dimuon events; features log pt1, log pt2, eta1, eta2, delta-phi
(the invariant mass is never an input: it only defines the classes). Classes from the
Upsilon file's mass windows: continuum below (8-9.1 GeV), Upsilon(1S) (9.25-9.65), Upsilon(2S)
(9.85-10.15), Upsilon(3S) (10.25-10.5), continuum above (10.65-12); events between windows are
not used. Z file: the Z peak (60-120 GeV).
  * "upsilon2s_unseen": known = the two continua, 1S, 3S; signal = 2S-window events.
  * "z_unseen": known = the five Upsilon-file windows; signal = Z events.
synthetic: D correlated features (AR(1), rho = 0.9, unit variance) plus a 2-D latent
structure placed along two random orthonormal directions: four known classes (Gaussian
clusters, sd 0.5, at (+-1.5, +-1.5)), the signal a cluster (sd 0.3) at (0, 2.2) that the
embedder never sees; D = 5 ... 60.
"""
from __future__ import annotations

import argparse
import datetime
import os
import time

import numpy as np
import torch
from scipy import stats

import fastnplm
from fastnplm._bench import cpuinfo
from fastnplm.calibration.null import clopper_pearson
from fastnplm.embed import PCA, Embedder, Pipeline
from fastnplm.io import datasets

from _report import emit  # bench/_report.py

WINDOWS = {"continuum_low": (8.0, 9.1), "upsilon1s": (9.25, 9.65), "upsilon2s": (9.85, 10.15),
           "upsilon3s": (10.25, 10.5), "continuum_high": (10.65, 12.0)}


def cms_events():
    """{class: (n, 5) features log pt1, log pt2, eta1, eta2, dphi}."""
    out = {}
    x, m = datasets.cms_dimuon("ymumu")
    for name, (lo, hi) in WINDOWS.items():
        out[name] = x[(m >= lo) & (m < hi)]
    z, mz = datasets.cms_dimuon("zmumu")
    out["z"] = z[(mz >= 60) & (mz < 120)]
    return {k: np.column_stack([np.log(v[:, 0]), np.log(v[:, 1]), v[:, 2:]]) for k, v in out.items()}


def split_known(classes, known, rng, fractions=(0.35, 0.35)):
    """Training (x, labels), reference and pool from the known classes (shuffled, disjoint)."""
    x = np.concatenate([classes[k] for k in known])
    y = np.concatenate([np.full(len(classes[k]), i) for i, k in enumerate(known)])
    order = rng.permutation(len(x))
    a, b = int(fractions[0] * len(x)), int((fractions[0] + fractions[1]) * len(x))
    tr, ref, pool = order[:a], order[a:b], order[b:]
    return x[tr], y[tr], x[ref], x[pool]


def min_p_z(cal, ts):
    """Z of the min-p over widths of one t vector, calibrated on the same toys."""
    return float(stats.norm.isf(fastnplm.aggregate(cal, list(ts))["min-p"]["p"]))


def power_table(z_values, z=2.0):
    z_values = np.asarray(z_values)
    k = int((z_values >= z).sum())
    lo, hi = clopper_pearson(k, z_values.size)
    return {"power": k / z_values.size, "interval_68": [float(lo), float(hi)], "median_z": float(np.median(z_values)),
            "signal_toys": int(z_values.size)}


def run_case(name, train, labels, reference, pool, signal, n_expected, n_signals, dim, args, embed_kw):
    """Power of the three representations on the same toys."""
    torch.manual_seed(0)
    reps = {"raw": None, "embed": Embedder(dim=dim, seed=0, **embed_kw), "pca": PCA(dim=dim)}
    out = {"case": name, "n_train": len(train), "n_reference": len(reference), "n_pool": len(pool),
           "n_signal_available": len(signal), "n_expected": n_expected, "dim": dim, "features": train.shape[1],
           "representations": {}}
    for rep, emb in reps.items():
        t0 = time.perf_counter()
        if emb is None:
            pre = fastnplm.preprocessing.Standardize().fit(train)
            transform = pre.transform
            train_seconds = 0.0
        else:
            pipe = Pipeline(emb).train(train, labels)
            transform = pipe.transform
            train_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref_e, pool_e, sig_e = transform(reference), transform(pool), transform(signal)
        embed_seconds = time.perf_counter() - t0
        s0 = fastnplm.models.sigma_heuristic(ref_e, seed=0)
        model = fastnplm.KernelNPLM(M=300, lam=1e-6, seed=0)
        t0 = time.perf_counter()
        cal = fastnplm.calibrate(model, ref_e, pool_e, toys=args.toys, n_expected=n_expected,
                                 sigmas=[0.5 * s0, s0], seed=1, progress=False)
        cal_seconds = time.perf_counter() - t0
        rec = {"train_seconds": train_seconds, "embed_seconds": embed_seconds, "calibration_seconds": cal_seconds,
               "sigmas": list(cal.sigmas), "null_t_mean": cal.t.mean(axis=0).tolist(), "by_n_signal": {}}
        if emb is not None and hasattr(emb, "history_"):
            rec["embedder"] = {"epochs_run": len(emb.history_["train"]), "best_epoch": emb.best_epoch_,
                               "validation_loss": emb.history_["validation"][emb.best_epoch_]}
        if isinstance(emb, PCA):
            rec["pca_explained_variance_ratio"] = emb.explained_variance_ratio_.tolist()
        # the calibrated model's fit of each signal toy, the reference's share computed once
        monitors = [fastnplm.Monitor(cal, ref_e, sigma_index=j) for j in range(2)]
        t0 = time.perf_counter()
        for n_sig in n_signals:
            ts = []
            for k in range(args.signal_toys):
                rng = np.random.default_rng([7, n_sig, k])
                bkg = pool_e[rng.choice(len(pool_e), rng.poisson(n_expected), replace=False)]
                sig = sig_e[rng.choice(len(sig_e), n_sig, replace=False)]
                data = np.concatenate([bkg, sig])
                ts.append([m.test(data)["t"] for m in monitors])
            ts = np.array(ts)
            rec["by_n_signal"][str(n_sig)] = {
                "per_width": [{"sigma": float(cal.sigmas[j]), **fastnplm.power(ts[:, j], cal, z=2.0, sigma_index=j)}
                              for j in range(2)],
                "min_p": power_table([min_p_z(cal, t) for t in ts])}
        rec["signal_fit_seconds"] = time.perf_counter() - t0
        out["representations"][rep] = rec
        print(name, rep, {n: v["min_p"]["power"] for n, v in rec["by_n_signal"].items()}, flush=True)
    return out


def cms(args):
    classes = cms_events()
    cases = []
    embed_kw = dict(widths=(64, 64), epochs=60, batch_size=512, patience=8, temperature=0.1)
    rng = np.random.default_rng(0)
    known = ["continuum_low", "upsilon1s", "upsilon3s", "continuum_high"]
    train, y, ref, pool = split_known(classes, known, rng)
    cases.append(run_case("upsilon2s_unseen", train, y, ref, pool, classes["upsilon2s"], 500.0, (10, 25, 50),
                          4, args, embed_kw))
    known = ["continuum_low", "upsilon1s", "upsilon2s", "upsilon3s", "continuum_high"]
    train, y, ref, pool = split_known(classes, known, rng)
    cases.append(run_case("z_unseen", train, y, ref, pool, classes["z"], 500.0, (2, 5, 10), 4, args, embed_kw))
    return {"classes": {k: int(len(v)) for k, v in classes.items()}, "windows_gev": WINDOWS,
            "features": ["log pt1", "log pt2", "eta1", "eta2", "delta-phi"], "cases": cases}


def synthetic_sample(d, n_per_class, rng, basis, chol):
    centres = np.array([[1.5, 1.5], [1.5, -1.5], [-1.5, 1.5], [-1.5, -1.5]])
    y = np.repeat(np.arange(4), n_per_class)
    u = centres[y] + rng.normal(scale=0.5, size=(y.size, 2))
    x = rng.normal(size=(y.size, d)) @ chol.T + u @ basis
    return x, y


def synthetic(args):
    cases = []
    embed_kw = dict(widths=(64, 64), epochs=40, batch_size=512, patience=6, temperature=0.1)
    for d in args.dims:
        rng = np.random.default_rng([11, d])
        basis = np.linalg.qr(rng.normal(size=(d, 2)))[0].T          # two orthonormal directions
        cov = 0.9 ** np.abs(np.subtract.outer(np.arange(d), np.arange(d)))
        chol = np.linalg.cholesky(cov)
        train, y = synthetic_sample(d, 1500, rng, basis, chol)
        ref, _ = synthetic_sample(d, 1500, rng, basis, chol)
        pool, _ = synthetic_sample(d, 1500, rng, basis, chol)
        u = np.array([0.0, 2.2]) + rng.normal(scale=0.3, size=(2000, 2))
        signal = rng.normal(size=(2000, d)) @ chol.T + u @ basis
        cases.append(run_case(f"synthetic_d{d}", train, y, ref, pool, signal, 500.0, (25, 50), 4, args, embed_kw))
    return {"setting": "AR(1) rho=0.9 noise in D features + 2-D latent clusters on two orthonormal directions",
            "cases": cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="also write the JSON document to this file")
    ap.add_argument("--toys", type=int, default=200)
    ap.add_argument("--signal-toys", type=int, default=100)
    ap.add_argument("--only", choices=["cms", "synthetic"])
    ap.add_argument("--dims", type=lambda s: [int(v) for v in s.split(",")], default=[5, 20, 60])
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    out = {"benchmark": "embed_evidence",
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "nproc": os.cpu_count(), "cpu": cpuinfo(), "torch": torch.__version__, "torch_threads": 1,
           "toys": args.toys, "signal_toys": args.signal_toys, "z": 2.0, "interval": "Clopper-Pearson 68%"}
    if args.only in (None, "cms"):
        out["cms"] = cms(args)
    if args.only in (None, "synthetic"):
        out["synthetic"] = synthetic(args)
    out["seconds"] = time.perf_counter() - start
    emit(out, args.out, quiet=True)
    print("written", args.out)


if __name__ == "__main__":
    main()
