"""Command line: ``fastnplm fit`` on .npy files and ``fastnplm demo`` on the bundled problem."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from .calibration import aggregate, calibrate, load_calibration
from .datasets import exp_bump
from .kernel import KernelNPLM


def _add_model_args(p):
    p.add_argument("--M", type=int, default=1000, help="number of Nystrom centers (default 1000)")
    p.add_argument("--sigma", type=float, default=None, help="Gaussian width (default: 90th percentile of reference pairwise distances)")
    p.add_argument("--lam", type=float, default=1e-6, help="ridge penalty lambda (default 1e-6)")
    p.add_argument("--solver", choices=["newton-step", "newton"], default="newton-step")
    p.add_argument("--seed", type=int, default=0, help="seed of the center draw (default 0)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _report(res, args, extra):
    out = {
        "t": res.t, "M": int(res.alpha.shape[0]), "sigma": res.sigma, "lam": res.lam, "solver": res.solver,
        "seed": args.seed, "converged": res.converged, "cg_iterations": res.cg_iterations,
        "n_reference": res.n_reference, "n_data": res.n_data, "n_expected": res.n_expected,
        "threads": res.threads, "seconds": res.seconds, **extra,
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        width = max(map(len, out))
        for k, v in out.items():
            print(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}")


def _load(path, what):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise SystemExit(f"fastnplm: cannot read {what} file {path!r}: {err}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fastnplm", description="New Physics Learning Machine goodness-of-fit test")
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit reference vs data (.npy arrays of shape (n, d) or (n,))")
    fit.add_argument("--reference", required=True)
    fit.add_argument("--data", required=True)
    fit.add_argument("--weights", default=None, help=".npy of per-event reference weights")
    fit.add_argument("--n-expected", type=float, default=None, help="N(R): expected data events under the reference")
    _add_model_args(fit)
    demo = sub.add_parser("demo", help="the bundled problem: Exp(1) reference, 2000 expected events + a 10-event bump at 6.4")
    _add_model_args(demo)
    cal = sub.add_parser("calibrate", help="toys under the reference hypothesis, recorded in a resumable store")
    cal.add_argument("--reference", required=True)
    cal.add_argument("--pool", required=True, help=".npy of reference-distributed events disjoint from the reference")
    cal.add_argument("--n-expected", type=float, required=True, help="N(R): expected events per toy")
    cal.add_argument("--toys", type=int, default=300)
    cal.add_argument("--sigmas", default=None, help="comma-separated widths (default: --sigma or the heuristic)")
    cal.add_argument("--store", default=None, help="append-only toy record; re-running resumes")
    cal.add_argument("--toy-seed", type=int, default=0, help="seed of the toys (default 0)")
    cal.add_argument("--hessian", choices=["auto", "stream", "dense", "spectral"], default="auto")
    cal.add_argument("--center-pool", choices=["pooled", "reference"], default="pooled",
                     help="'reference' enables the shared-reference fast toy path; 'fastnplm test' uses the same")
    _add_model_args(cal)
    tst = sub.add_parser("test", help="t, p and Z of data against a calibration store, per width and aggregated")
    tst.add_argument("--reference", required=True)
    tst.add_argument("--data", required=True)
    tst.add_argument("--calibration", required=True, help="store written by 'fastnplm calibrate'")
    tst.add_argument("--temperature", type=float, default=1.0, help="of the soft-max aggregation (default 1)")
    tst.add_argument("--threads", type=int, default=None)
    tst.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.command == "calibrate":
            return _calibrate(args)
        if args.command == "test":
            return _test(args)
    except (ValueError, TypeError) as err:
        print(f"fastnplm: error: {err}", file=sys.stderr)
        return 2

    model_kwargs = dict(M=args.M, sigma=args.sigma, lam=args.lam, solver=args.solver, seed=args.seed, threads=args.threads)
    try:
        if args.command == "fit":
            ref, dat = _load(args.reference, "reference"), _load(args.data, "data")
            w = None if args.weights is None else _load(args.weights, "weights")
            res = KernelNPLM(**model_kwargs).fit(ref, dat, reference_weights=w, n_expected=args.n_expected)
            _report(res, args, {"reference": args.reference, "data": args.data})
        else:
            ref, dat, n_exp = exp_bump(seed=args.seed)
            res = KernelNPLM(**model_kwargs).fit(ref, dat, n_expected=n_exp)
            _report(res, args, {"problem": "reference Exp(1), N_R=200000; data Poisson(2000) Exp(1) events "
                                           "+ 10 events N(6.4, 0.16)"})
    except (ValueError, TypeError) as err:
        print(f"fastnplm: error: {err}", file=sys.stderr)
        return 2
    return 0


def _print(out, as_json):
    print(json.dumps(out, indent=2) if as_json else "\n".join(f"{k}: {v}" for k, v in out.items()))


def _calibrate(args) -> int:
    ref, pool = _load(args.reference, "reference"), _load(args.pool, "pool")
    sigmas = None if args.sigmas is None else [float(s) for s in args.sigmas.split(",") if s.strip()]
    model = KernelNPLM(M=args.M, sigma=args.sigma, lam=args.lam, solver=args.solver, seed=args.seed,
                       threads=args.threads, hessian=args.hessian, center_pool=args.center_pool)
    cal = calibrate(model, ref, pool, toys=args.toys, n_expected=args.n_expected, sigmas=sigmas,
                    seed=args.toy_seed, store=args.store)
    out = {"toys": cal.toys, "sigmas": list(cal.sigmas), "store": args.store, "path": cal.settings["path"],
           "t_mean": cal.t.mean(axis=0).tolist(), "t_std": cal.t.std(axis=0, ddof=1).tolist() if cal.toys > 1 else None,
           "chi2_dof": [cal.chi2_fit(i)["dof"] for i in range(len(cal.sigmas))] if (cal.t > 0).all() else None,
           "all_converged": bool(cal.converged.all())}
    _print(out, args.json)
    return 0


def _test(args) -> int:
    cal = load_calibration(args.calibration)
    ref, dat = _load(args.reference, "reference"), _load(args.data, "data")
    n_exp = cal.settings["n_expected"]
    t_obs = [cal.model(j, threads=args.threads).fit(ref, dat, n_expected=n_exp).t for j in range(len(cal.sigmas))]
    out = {"toys": cal.toys, **aggregate(cal, t_obs, temperature=args.temperature)}
    _print(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
