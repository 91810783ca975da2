"""Command line: ``fastnplm fit`` on .npy files and ``fastnplm demo`` on the bundled problem."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    sys.exit(main())
