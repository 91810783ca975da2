"""Command line: ``fastnplm fit | demo | calibrate | test | report | tune-clip | monitor | bench``.

Exit codes: 0 success; 2 usage error or bad input (unknown option, unreadable file,
missing column, invalid setting, CUDA requested where there is none); 1 runtime failure
(anything else, e.g. a missing optional package or a failed computation). ``main(argv)``
returns the code; usage errors and unreadable inputs raise ``SystemExit(2)`` from it, as
argparse does, after printing the message.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading


from ..calibration._run import AGGREGATIONS, aggregate, calibrate, load_calibration, nuisance_spec, verdict
from ..models.kernel import CENTER_POOLS, DEFAULT_CENTER_POOL, KernelNPLM

log = logging.getLogger("fastnplm")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

EXIT_CODES = """exit codes:
  0  success
  2  usage error or bad input (unreadable file, missing column, invalid setting)
  1  runtime failure (a missing optional package, a failed computation)"""

MAIN_EPILOG = f"""examples:
  fastnplm demo                                   # the 1-D toy problem of the papers
  fastnplm demo --real                            # CMS open-data dimuons: null and injected resonance
  fastnplm fit --reference R.npy --data D.npy --M 1000 --lam 1e-6 --json
  fastnplm calibrate --reference R.npy --pool P.npy --n-expected 2000 --toys 300 --store toys.fnplm
  fastnplm test --reference R.npy --data D.npy --calibration toys.fnplm
  fastnplm report --reference R.parquet --data D.parquet --pool P.parquet --columns pt1,pt2 --out r.html
  fastnplm monitor dqm.toml --serve               # many channels, a SQLite history, a dashboard
  fastnplm bench --quick
  fastnplm --cite > nplm.bib

global options (--threads, --seed, --quiet, --json) go before or after the command.

{EXIT_CODES}"""

EPILOGS = {
    "fit": """examples:
  fastnplm fit --reference R.npy --data D.npy --n-expected 2000 --M 1000 --lam 1e-6 --json
  fastnplm fit --reference ref.root --data data.root --tree Events --columns pt1,pt2,eta1 --standardize
  fastnplm fit --reference R.npy --data D.npy --nuisance norm:0.15 --nuisance scale:0.1:scale.npz \\
      --auxiliary scale=0.02 --json     # t = tau - Delta with the fitted nuisances

Inputs: .npy, .npz, .csv(.gz), .parquet, .h5 or .root (see fastnplm.load); --columns and
--tree apply to every input file.""",
    "demo": """examples:
  fastnplm demo                                 # reference Exp(1), 10 signal events at 6.4: the whole test
  fastnplm demo --signal 0 --no-report          # a null data set, numbers only
  fastnplm demo --real                          # writes fastnplm-demo-real.html (+ .json)
  fastnplm demo --real --toys 100 --signal 150 --report my.html --json

The 1-D demo calibrates 300 toys from a disjoint Exp(1) pool, fits the data with the toys'
model, prints the verdict, t, p and Z, and writes fastnplm-demo.html (+ .json). The 10-event
bump is a hard signal: at sigma = 0.3 it reaches Z >= 2 in about 60% of data sets
(docs/centers.md), so --seed changes the verdict.

--real: 20000 CMS 2011 open-data Upsilon -> mu mu candidates (bundled, CC0), features pt1,
pt2, eta1, eta2, delta-phi (not the mass). A random split into reference, toy pool and data
(the null: modest Z expected), then the same data plus events from the Upsilon(1S) mass
window (an injected narrow resonance: detected).""",
    "calibrate": """examples:
  fastnplm calibrate --reference R.npy --pool P.npy --n-expected 2000 --toys 300 \\
      --sigmas 0.3,0.7,1.4 --store toys.fnplm --json

  fastnplm calibrate --reference R.npy --pool P.npy --n-expected 2000 --toys 300 \\
      --nuisance norm:0.15 --nuisance scale:0.1:scale.npz --store toys-nu.fnplm

Re-running the same command resumes the store. With --nuisance every toy is fitted with
the nuisances (t = tau - Delta), each toy drawing its own auxiliary measurements.""",
    "test": """examples:
  fastnplm test --reference R.npy --data D.npy --calibration toys.fnplm --json
  fastnplm test --reference R.npy --data D.npy --calibration toys-nu.fnplm \\
      --nuisance norm:0.15 --nuisance scale:0.1:scale.npz --auxiliary scale=0.02

A store made with nuisances needs the same --nuisance options (checked against the store).""",
    "report": """examples:
  fastnplm report --reference R.npy --data D.npy --pool P.npy --n-expected 2000 --toys 200 \\
      --sigmas 0.5,1.0 --out report.html
  fastnplm report --reference R.npy --data D.npy --calibration toys.fnplm --out report.html

Writes one self-contained HTML page (plots embedded, opens offline) and the JSON record
next to it (report.json): input fingerprints, settings, t/p/Z per width and aggregated,
timings, versions.""",
    "tune-clip": """examples:
  fastnplm tune-clip --reference R.npy --pool P.npy --n-expected 2000 --hidden 4 \
      --clips 1,2,4,9,20 --toys 200 --store clipscan/ --plot clipscan.png --json

For each clip, null toys of the network (optimizer "newton" unless --optimizer says
otherwise), the fitted chi2 dof and the KS p-value of the toys against chi2(|w|), |w| the
network's parameters; the best clip is the one whose toys match chi2(|w|) best. --store
keeps one resumable store per clip in the directory.""",
    "monitor": """examples:
  fastnplm monitor dqm.toml                      # poll the source directory until interrupted
  fastnplm monitor dqm.toml --serve --port 8765  # ... and serve the dashboard on 127.0.0.1:8765
  fastnplm monitor dqm.toml --once               # test the batch files there now, then exit
  fastnplm monitor dqm.toml --serve-only         # only serve the dashboard (e.g. next to a running service)

The configuration (TOML, docs/dqm.md) lists the channels (reference file, columns, selection,
preprocessing, model, calibration store: calibrated on first start when a pool is given), the
source directory, the alarm thresholds and the dashboard folder. Every batch file is tested on
every channel it carries and recorded once in the SQLite history (stop and restart at any
moment: nothing is lost or recorded twice). The dashboard is a static page, rewritten after
every batch; it opens from its folder (file://) or, with --serve, over HTTP (read-only, on
127.0.0.1 unless --host says otherwise). Interrupt (Ctrl-C) or SIGTERM: stop after the batch
in progress.""",
    "bench": """examples:
  fastnplm bench --quick              # a few seconds: the four scenarios at small sizes
  fastnplm bench --json --out bench.json

Scenarios: a kernel fit (d=5, M=50), toy calibration (1D) against the loop of fits, neural
epochs (1-4-1), and the evaluation of fitted models on a batch of events (events/s).""",
}


class InputError(SystemExit):
    """Bad input: exits with status 2; the message was printed to stderr when raised."""

    def __init__(self, message):
        super().__init__(EXIT_USAGE)
        self.message = message
        print(f"fastnplm: error: {message}", file=sys.stderr)

    def __str__(self):
        return self.message


def _load(path, what, columns=None, tree=None):
    from ..io.files import load
    try:
        return load(path, columns=columns, tree=tree)
    except (OSError, ValueError, TypeError) as err:
        raise InputError(f"cannot read {what} file {path!r}: {err}") from err


def _columns(text):
    return None if text is None else [c.strip() for c in text.split(",") if c.strip()]


def _floats(text, what):
    if text is None:
        return None
    try:
        return [float(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise InputError(f"{what} must be comma-separated numbers, got {text!r}") from err


# options that may stand before or after the command: the command's copy has no default, so
# it does not overwrite a value given before the command
def _common(p, top=False):
    d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=d(None), help="CPU threads (default: all cores)")
    p.add_argument("--seed", type=int, default=d(0), help="seed of every random choice: centers, toys, splits (default 0)")
    p.add_argument("--quiet", "-q", action="store_true", default=d(False),
                   help="no log messages, progress bars or text results (JSON output, with --json, stays)")
    p.add_argument("--verbose", "-v", action="store_true", default=d(False), help="log the library's progress messages")
    p.add_argument("--json", action="store_true", default=d(False), help="print one JSON document instead of text")


def _add_model_args(p):
    p.add_argument("--M", type=int, default=1000, help="number of Nystrom centers (default 1000)")
    p.add_argument("--sigma", type=float, default=None,
                   help="Gaussian width (default: 90th percentile of reference pairwise distances)")
    p.add_argument("--lam", type=float, default=1e-6, help="ridge penalty lambda (default 1e-6)")
    p.add_argument("--solver", choices=["newton-step", "newton"], default="newton-step")
    p.add_argument("--center-pool", choices=CENTER_POOLS, default=DEFAULT_CENTER_POOL,
                   help=f"where the centers come from (default {DEFAULT_CENTER_POOL}: the reference, so toys share "
                        "its work; 'pooled': reference and data, as published)")


def _add_nuisance_args(p, auxiliary=True):
    p.add_argument("--nuisance", action="append", default=[], metavar="NAME:SIGMA[:COEF.npz]",
                   help="a systematic uncertainty of width SIGMA (repeatable): a normalisation, or a shape "
                        "nuisance with coefficients saved by fastnplm.models.learn_coefficients(...).save(COEF.npz)")
    if auxiliary:
        p.add_argument("--auxiliary", action="append", default=[], metavar="NAME=VALUE",
                       help="measured central value of a nuisance (repeatable; default 0)")


def _add_input_args(p, pool=False):
    p.add_argument("--reference", required=True, help="reference events (any format of fastnplm.load)")
    p.add_argument("--data", required=True, help="observed events")
    if pool:
        p.add_argument("--pool", default=None, help="reference-distributed events disjoint from the reference, for toys")
    p.add_argument("--columns", default=None, help="comma-separated feature names (or positions) to read")
    p.add_argument("--tree", default=None, help="ROOT TTree / HDF5 dataset / .npz array to read")
    pre = p.add_mutually_exclusive_group()
    pre.add_argument("--standardize", action="store_true", help="standardise features with the reference's mean and std")
    pre.add_argument("--divide-by-mean", action="store_true", help="divide features by their reference mean")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="fastnplm", formatter_class=fmt, epilog=MAIN_EPILOG,
                                     description="New Physics Learning Machine: a signal-agnostic goodness-of-fit test "
                                                 "of data against a reference sample")
    parser.add_argument("--version", action="version", version=f"fastnplm {__version__}")
    parser.add_argument("--cite", action="store_true", help="print the BibTeX of the method's papers and exit")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOGS[name] + "\n\n" + EXIT_CODES,
                           formatter_class=fmt)
        _common(p)
        return p

    fit = command("fit", "fit reference vs data and print t")
    _add_input_args(fit)
    fit.add_argument("--weights", default=None, help="per-event reference weights (a file of one column)")
    fit.add_argument("--n-expected", type=float, default=None, help="N(R): expected data events under the reference")
    _add_nuisance_args(fit)
    _add_model_args(fit)

    demo = command("demo", "the bundled problems: the 1-D toy, or --real CMS open-data dimuons")
    demo.add_argument("--real", action="store_true", help="the real-data demo (CMS open-data dimuon events)")
    demo.add_argument("--toys", type=int, default=None, help="toys of the calibration (default 300; --real: 200)")
    demo.add_argument("--signal", type=int, default=None,
                      help="signal events in the data (default 10 at x = 6.4; --real: 200 Upsilon(1S)-window events)")
    demo.add_argument("--report", default=None,
                      help="HTML report to write (default fastnplm-demo.html, --real: fastnplm-demo-real.html; "
                           "JSON next to it)")
    demo.add_argument("--no-report", action="store_true", help="print only, draw nothing")
    _add_model_args(demo)

    cal = command("calibrate", "toys under the reference hypothesis, recorded in a resumable store")
    cal.add_argument("--reference", required=True)
    cal.add_argument("--pool", required=True, help="reference-distributed events disjoint from the reference")
    cal.add_argument("--columns", default=None, help="comma-separated feature names (or positions) to read")
    cal.add_argument("--tree", default=None, help="ROOT TTree / HDF5 dataset / .npz array to read")
    cal.add_argument("--n-expected", type=float, required=True, help="N(R): expected events per toy")
    cal.add_argument("--toys", type=int, default=300)
    cal.add_argument("--sigmas", default=None, help="comma-separated widths (default: --sigma or the heuristic)")
    cal.add_argument("--store", default=None, help="append-only toy record; re-running resumes")
    cal.add_argument("--toy-seed", type=int, default=None, help="seed of the toys (default: --seed)")
    cal.add_argument("--hessian", choices=["auto", "stream", "dense", "spectral"], default="auto")
    _add_nuisance_args(cal, auxiliary=False)  # each toy draws its own auxiliary values
    _add_model_args(cal)

    tst = command("test", "t, p and Z of data against a calibration store, or of two samples by permutations")
    tst.add_argument("--reference", required=True, help="the reference (with --permutations: sample A)")
    tst.add_argument("--data", required=True, help="the data (with --permutations: sample B)")
    tst.add_argument("--columns", default=None, help="comma-separated feature names (or positions) to read")
    tst.add_argument("--tree", default=None, help="ROOT TTree / HDF5 dataset / .npz array to read")
    how = tst.add_mutually_exclusive_group(required=True)
    how.add_argument("--calibration", default=None, help="store written by 'fastnplm calibrate'")
    how.add_argument("--permutations", type=int, default=None,
                     help="no pool: calibrate by N random relabellings of the pooled two samples (the model "
                          "options below apply)")
    tst.add_argument("--sigmas", default=None, help="with --permutations: comma-separated widths")
    tst.add_argument("--store", default=None, help="with --permutations: append-only record; re-running resumes")
    tst.add_argument("--temperature", type=float, default=1.0, help="of the soft-max aggregation (default 1)")
    _add_nuisance_args(tst)  # those of the calibration, and the measured central values
    _add_model_args(tst)

    rep = command("report", "run the test and write one self-contained HTML report plus its JSON record")
    _add_input_args(rep, pool=True)
    rep.add_argument("--calibration", default=None, help="store written by 'fastnplm calibrate' (instead of --pool)")
    rep.add_argument("--n-expected", type=float, default=None, help="N(R) (default: the number of data events)")
    rep.add_argument("--toys", type=int, default=200)
    rep.add_argument("--sigmas", default=None, help="comma-separated widths (default: --sigma or the heuristic)")
    rep.add_argument("--names", default=None, help="comma-separated feature names for the plots")
    rep.add_argument("--title", default="NPLM goodness-of-fit test")
    rep.add_argument("--out", default="nplm-report.html", help="HTML file (default nplm-report.html)")
    _add_model_args(rep)
    rep.set_defaults(M=500)

    tune = command("tune-clip", "scan a neural network's weight clip: null toys per clip against chi2(|w|)")
    tune.add_argument("--reference", required=True)
    tune.add_argument("--pool", required=True, help="reference-distributed events disjoint from the reference")
    tune.add_argument("--columns", default=None, help="comma-separated feature names (or positions) to read")
    tune.add_argument("--tree", default=None, help="ROOT TTree / HDF5 dataset / .npz array to read")
    tune.add_argument("--n-expected", type=float, required=True, help="N(R): expected events per toy")
    tune.add_argument("--hidden", default="4", help="comma-separated hidden widths (default 4: a 1-4-1 network in 1-D)")
    tune.add_argument("--clips", required=True, help="comma-separated clip values")
    tune.add_argument("--toys", type=int, default=200, help="toys per clip (default 200)")
    tune.add_argument("--optimizer", choices=["newton", "lbfgsb", "adam"], default="newton")
    tune.add_argument("--epochs", type=int, default=None, help="Adam epochs / iteration limit (default: the model's)")
    tune.add_argument("--store", default=None, help="directory of per-clip toy stores; re-running resumes")
    tune.add_argument("--plot", default=None, help="write the dof-against-clip figure to this file")

    mon = command("monitor", "data-quality monitoring: many channels, a SQLite history, a dashboard")
    mon.add_argument("config", help="the TOML configuration (docs/dqm.md)")
    mon.add_argument("--once", action="store_true", help="test the batch files in the source directory now, then exit")
    mon.add_argument("--max-batches", type=int, default=None, help="exit after recording this many batches")
    mon.add_argument("--serve", action="store_true", help="serve the dashboard over HTTP while monitoring (read-only)")
    mon.add_argument("--serve-only", action="store_true", help="serve the dashboard and do nothing else")
    mon.add_argument("--host", default="127.0.0.1", help="address the dashboard listens on (default 127.0.0.1)")
    mon.add_argument("--port", type=int, default=8765, help="port of the dashboard (default 8765; 0: any free one)")

    bench = command("bench", "time the standard scenarios on this machine (table + JSON)")
    bench.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    bench.add_argument("--quick", action="store_true", help="small sizes: a few seconds")
    bench.add_argument("--out", default=None, help="also write the JSON document to this file")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cite:
        from .._cite import BIBTEX
        print(BIBTEX, end="")
        return EXIT_OK
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("fastnplm: error: a command is required (fastnplm --help lists them)", file=sys.stderr)
        return EXIT_USAGE
    # log records to stderr for this call only (a library importing the CLI keeps its logging)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fastnplm: %(message)s"))
    level = logging.ERROR if args.quiet else logging.INFO if args.verbose else logging.WARNING
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(level)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError) as err:
        print(f"fastnplm: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (ImportError, RuntimeError, MemoryError, ArithmeticError, OSError) as err:
        print(f"fastnplm: failed: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def _emit(out, args, text=None):
    """The result: JSON with --json; else ``text`` (or key: value lines) unless --quiet."""
    if args.json:
        print(json.dumps(out, indent=2, default=_json_default))
    elif not args.quiet:
        print(text if text is not None else _lines(out))


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _lines(out):
    width = max(map(len, out)) if out else 0
    return "\n".join(f"{k:<{width}}  {v:.6g}" if isinstance(v, float) else f"{k:<{width}}  {v}" for k, v in out.items())


def _model(args, **extra):
    return KernelNPLM(M=args.M, sigma=args.sigma, lam=args.lam, solver=args.solver, seed=args.seed,
                      threads=args.threads, center_pool=args.center_pool, **extra)


def _inputs(args, keys):
    """Arrays for the given argument names, read with --columns/--tree, preprocessed (fitted on the reference)."""
    columns = _columns(getattr(args, "columns", None))
    columns = None if columns is None else [int(c) if c.isdigit() else c for c in columns]
    arrays = {k: _load(getattr(args, k), k, columns, getattr(args, "tree", None)) for k in keys
              if getattr(args, k, None) is not None}
    pre = None
    if getattr(args, "standardize", False) or getattr(args, "divide_by_mean", False):
        from ..preprocessing import DivideByMean, Standardize
        pre = (Standardize() if args.standardize else DivideByMean()).fit(arrays["reference"])
        arrays = {k: pre.transform(v) for k, v in arrays.items()}
    return arrays, pre


def _nuisances(args):
    """--nuisance NAME:SIGMA[:COEF.npz] and --auxiliary NAME=VALUE as fastnplm.Nuisance objects and a dict."""
    from ..models.nuisance import Nuisance, ShapeCoefficients
    out = []
    for text in args.nuisance:
        parts = text.split(":", 2)
        if len(parts) < 2 or not parts[0]:
            raise InputError(f"--nuisance must be NAME:SIGMA or NAME:SIGMA:COEF.npz, got {text!r}")
        try:
            sigma = float(parts[1])
        except ValueError as err:
            raise InputError(f"--nuisance {text!r}: SIGMA must be a number") from err
        if len(parts) == 2:
            out.append(Nuisance(parts[0], sigma))
            continue
        try:
            coef = ShapeCoefficients.load(parts[2])
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"--nuisance {text!r}: cannot read shape coefficients {parts[2]!r}: {err}") from err
        out.append(Nuisance(parts[0], sigma, "shape", coef))
    aux = {}
    for text in getattr(args, "auxiliary", []):  # calibrate has none: toys draw their own
        name, eq, value = text.partition("=")
        try:
            aux[name] = float(value)
        except ValueError:
            eq = ""
        if not eq or not name:
            raise InputError(f"--auxiliary must be NAME=VALUE, got {text!r}")
    unknown = set(aux) - {n.name for n in out}
    if unknown:
        raise InputError(f"--auxiliary names no --nuisance: {sorted(unknown)}")
    return out, aux


def _fit(args) -> int:
    nuisances, aux = _nuisances(args)
    arrays, pre = _inputs(args, ["reference", "data"])
    w = None if args.weights is None else _load(args.weights, "weights").ravel()
    res = _model(args).fit(arrays["reference"], arrays["data"], reference_weights=w, n_expected=args.n_expected,
                           nuisances=nuisances or None, auxiliary=aux or None)
    extra = {"reference": args.reference, "data": args.data}
    if pre is not None:
        extra["preprocessing"] = pre.to_dict()
    if nuisances:  # t = tau - Delta (method.md section 6) with the fitted nuisances
        record = {"t": res.t, "tau": res.tau, "delta": res.delta, "nu_tau": res.nu_tau, "nu_delta": res.nu_delta,
                  "auxiliary": res.auxiliary, "nuisances": [f"{n.name}:{n.sigma:g}:{n.kind}" for n in nuisances],
                  "M": int(res.fit.alpha.shape[0]), "sigma": float(res.fit.sigma), "lam": args.lam,
                  "seed": args.seed, "converged": res.converged, "newton_iterations": res.newton_iterations,
                  "n_reference": int(arrays["reference"].shape[0]), "n_data": int(arrays["data"].shape[0]), **extra}
    else:
        record = _fit_record(res, args, extra)
    _emit(record, args)
    return EXIT_OK


def _fit_record(res, args, extra):
    return {"t": res.t, "M": int(res.alpha.shape[0]), "sigma": res.sigma, "lam": res.lam, "solver": res.solver,
            "seed": args.seed, "converged": res.converged, "cg_iterations": res.cg_iterations,
            "n_reference": res.n_reference, "n_data": res.n_data, "n_expected": res.n_expected,
            "threads": res.threads, "seconds": res.seconds, **extra}


def _demo(args) -> int:
    if args.real:
        return _demo_real(args)
    from . import demo
    report_path = _report_path(args, "fastnplm-demo.html")
    kw = {} if args.toys is None else {"toys": args.toys}
    if args.signal is not None:
        kw["n_signal"] = args.signal
    log.info("reference Exp(1), data with a 10-event bump at 6.4: calibrating, then testing the data ...")
    out = demo.run_exp(seed=args.seed, M=args.M, sigma=0.3 if args.sigma is None else args.sigma, lam=args.lam,
                       center_pool=args.center_pool, solver=args.solver, threads=args.threads,
                       report_path=report_path, **kw)
    _emit(out, args, _demo_exp_text(out))
    return EXIT_OK


def _report_path(args, default):
    """The report file to write, or None (--no-report, or no matplotlib to draw it)."""
    if args.no_report:
        return None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning("matplotlib is not installed: no report drawn (pip install 'fastnplm[plot]')")
        return None
    return args.report or default


def _demo_exp_text(out):
    s = out["settings"]
    lo, hi = out["p_interval"]
    lines = [out["verdict"], "",
             f"{s['problem']}",
             f"M = {s['M']}, sigma = {s['sigma']:g}, lambda = {s['lam']:g}, centers '{s['center_pool']}', "
             f"{s['toys']} toys ({s['path']} path)",
             f"t = {out['t']:.2f}   p = {out['p']:.3g} (toys above: {out['toys_exceeding']}, 68% interval of "
             f"that fraction [{lo:.2g}, {hi:.2g}])   Z = {out['z']:.2f}",
             f"{out['timings']['total_seconds']:.1f} s" + (f"; report: {out['report']['html']}" if "report" in out else "")]
    return "\n".join(lines)


def _demo_real(args) -> int:
    from . import demo
    kw = {"seed": args.seed, "threads": args.threads}
    if args.toys is not None:
        kw["toys"] = args.toys
    if args.signal is not None:
        kw["n_signal"] = args.signal
    report_path = _report_path(args, "fastnplm-demo-real.html")
    if args.M != 1000:  # --M left at the 1-D demo's default: the real demo's own M
        kw["M"] = args.M
    log.info("CMS open-data dimuons: calibrating, then testing the null split and the injected resonance ...")
    out = demo.run(report_path=report_path, **kw)
    _emit(out, args, _demo_text(out))
    return EXIT_OK


def _demo_text(out):
    s = out["settings"]
    lines = [f"{s['sample']}; features {', '.join(s['features'])} (standardised on the reference)",
             f"reference {s['n_reference']}, toy pool {s['n_pool']} (disjoint), data {s['n_data']}; "
             f"{s['toys']} toys, M = {s['M']}, lambda = {s['lam']:g}, path {s['path']}"]
    for case, title in (("null", "null: a random split of the real events"),
                        ("injected", f"injected: + {s['n_signal']} events from the Upsilon(1S) window "
                                     f"{s['signal_window_gev'][0]}-{s['signal_window_gev'][1]} GeV")):
        lines.append("")
        lines.append(title)
        lines.append(f"  {out[case]['verdict']['text']}")
        for row in out[case]["per_width"]:
            bound = row["exceeded"] == 0
            z = f"p {'<' if bound else '='} {row['p']:.3g}  Z {'>' if bound else '='} {row['z']:.2f}"
            extra = (f"  (no toy above: chi2 extrapolation Z = {row['chi2_extrapolation_z']:.1f})"
                     if "chi2_extrapolation_z" in row else "")
            lines.append(f"  sigma = {row['sigma']:.3g}:  t = {row['t']:8.2f}  {z}{extra}")
        for m in ("min-p", "prod-p", "avg-p", "softmax-t"):
            p = out[case][m]["p"]
            bound = p * (s["toys"] + 1) < 1 + 1e-9  # no toy reached the observed statistic
            lines.append(f"  {m:<9}  p {'<' if bound else '='} {p:.3g}  Z {'>' if bound else '='} {out[case][m]['z']:.2f}")
    lines.append("")
    lines.append(f"{out['timings']['total_seconds']:.1f} s" +
                 (f"; report: {out['report']['html']} (+ {out['report']['json']})" if "report" in out else ""))
    return "\n".join(lines)


def _calibrate(args) -> int:
    columns = _columns(args.columns)
    ref = _load(args.reference, "reference", columns, args.tree)
    pool = _load(args.pool, "pool", columns, args.tree)
    sigmas = _floats(args.sigmas, "--sigmas")
    model = _model(args, hessian=args.hessian)
    toy_seed = args.seed if args.toy_seed is None else args.toy_seed
    nuisances, _ = _nuisances(args)
    cal = calibrate(model, ref, pool, toys=args.toys, n_expected=args.n_expected, sigmas=sigmas,
                    seed=toy_seed, store=args.store, progress=False if args.quiet else None,
                    nuisances=nuisances or None)
    out = {"toys": cal.toys, "sigmas": list(cal.sigmas), "store": args.store, "path": cal.settings["path"],
           "t_mean": cal.t.mean(axis=0).tolist(), "t_std": cal.t.std(axis=0, ddof=1).tolist() if cal.toys > 1 else None,
           "chi2_dof": [cal.chi2_fit(i)["dof"] for i in range(len(cal.sigmas))] if (cal.t > 0).all() else None,
           "all_converged": bool(cal.converged.all())}
    _emit(out, args)
    return EXIT_OK


def _test(args) -> int:
    if args.permutations is not None:
        return _test_permutations(args)
    try:
        cal = load_calibration(args.calibration)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read calibration store {args.calibration!r}: {err}") from err
    columns = _columns(args.columns)
    ref = _load(args.reference, "reference", columns, args.tree)
    dat = _load(args.data, "data", columns, args.tree)
    n_exp = cal.settings["n_expected"]
    nuisances, aux = _nuisances(args)
    recorded = cal.settings.get("nuisances") or []
    if nuisance_spec(nuisances) != recorded:
        has = ", ".join("{name}:{sigma:g}:{kind}".format(**x) for x in recorded) or "none"
        gave = ", ".join(f"{x.name}:{x.sigma:g}:{x.kind}" for x in nuisances) or "none"
        raise InputError(f"the data must be fitted with the calibration's nuisances: the store has [{has}], "
                         f"--nuisance gave [{gave}]" + (" (or other shape coefficients)" if recorded and nuisances
                                                         else ""))
    fit_kw = dict(nuisances=nuisances, auxiliary=aux or None) if nuisances else {}
    t_obs = [cal.model(j, threads=args.threads).fit(ref, dat, n_expected=n_exp, **fit_kw).t
             for j in range(len(cal.sigmas))]
    out = {"toys": cal.toys, **aggregate(cal, t_obs, temperature=args.temperature)}
    for j, row in enumerate(out["per_width"]):
        row["toys_exceeding"] = cal.p_value(t_obs[j], j)["exceeded"]
    agg = {m: out[m] for m in AGGREGATIONS} if len(t_obs) > 1 else None
    out["verdict"] = verdict({"settings": {"toys": cal.toys}, "per_width": out["per_width"],
                              **({"aggregated": agg} if agg else {})})
    _emit(out, args, _test_text(out))
    return EXIT_OK


def _test_permutations(args) -> int:
    from ..calibration.permutation import permutation_test
    if args.nuisance:
        raise InputError("--nuisance is not supported with --permutations")
    columns = _columns(args.columns)
    a = _load(args.reference, "reference", columns, args.tree)
    b = _load(args.data, "data", columns, args.tree)
    res = permutation_test(_model(args), a, b, permutations=args.permutations, seed=args.seed,
                           sigmas=_floats(args.sigmas, "--sigmas"), store=args.store,
                           progress=False if args.quiet else None)
    out = {"permutations": res.permutations, "path": res.path, **res.aggregate(temperature=args.temperature)}
    for j, row in enumerate(out["per_width"]):
        p = res.p_value(j)
        row["permutations_exceeding"], row["interval"] = p["exceeded"], p["interval"]
    agg = {m: out[m] for m in AGGREGATIONS} if len(res.sigmas) > 1 else None
    out["verdict"] = verdict({"settings": {"toys": res.permutations}, "per_width": out["per_width"],
                              **({"aggregated": agg} if agg else {})}, noun="permutations")
    _emit(out, args, _test_text(out))
    return EXIT_OK


def _test_text(out):
    lines = [out["verdict"]["text"], ""]
    lines += [f"sigma = {r['sigma']:.4g}: t = {r['t']:.4g}, p = {r['p']:.3g}, Z = {r['z']:.2f}" if r["sigma"] is not None
              else f"t = {r['t']:.4g}, p = {r['p']:.3g}, Z = {r['z']:.2f}" for r in out["per_width"]]
    if len(out["per_width"]) > 1:
        lines += [f"{m}: p = {out[m]['p']:.3g}, Z = {out[m]['z']:.2f}" for m in AGGREGATIONS]
    return "\n".join(lines)


def _report_cmd(args) -> int:
    from .html_report import report
    if (args.pool is None) == (args.calibration is None):
        raise InputError("report needs exactly one of --pool (toys are run) and --calibration (a store)")
    arrays, pre = _inputs(args, ["reference", "data", "pool"])
    cal = None
    if args.calibration is not None:
        try:
            cal = load_calibration(args.calibration)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read calibration store {args.calibration!r}: {err}") from err
    model = _model(args)
    files = {k: getattr(args, k) for k in ("reference", "data", "pool") if getattr(args, k) is not None}
    rec = report(arrays["reference"], arrays["data"], model, calibration=cal, pool=arrays.get("pool"), toys=args.toys,
                 n_expected=args.n_expected, sigmas=_floats(args.sigmas, "--sigmas"), seed=args.seed,
                 threads=args.threads, names=_columns(args.names) or _columns(args.columns), path=args.out,
                 title=args.title, input_files=files,
                 extra={"preprocessing": pre.to_dict() if pre is not None else None})
    text = "\n".join([f"sigma = {r['sigma']:.4g}: t = {r['t']:.4g}, p = {r['p']:.3g}, Z = {r['z']:.2f}"
                      for r in rec["per_width"]] +
                     [f"{m}: p = {v['p']:.3g}, Z = {v['z']:.2f}" for m, v in rec.get("aggregated", {}).items()] +
                     [f"report: {rec['html']} (+ {rec['json']})"])
    _emit(rec, args, text)
    return EXIT_OK


def _bench(args) -> int:
    from .. import _bench as bench
    from .._info import cuda_available, cuda_built
    if args.device == "cuda" and not cuda_available():
        why = "was built without the CUDA backend" if not cuda_built() else "finds no usable CUDA device"
        raise InputError(f"--device cuda: this fastnplm {why} (fastnplm.cuda_available() is False); "
                         "use --device cpu")
    log.info("running the %s benchmark scenarios ...", "quick" if args.quick else "full")
    doc = bench.standard(quick=args.quick, threads=args.threads, device=args.device)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(doc, fh, indent=2, default=_json_default)
    if args.json:
        _emit(doc, args)
    elif not args.quiet:
        print(bench.table(doc))
        print(json.dumps(doc, indent=2, default=_json_default))
    return EXIT_OK


def _tune_clip(args) -> int:
    from ..calibration.clip_scan import tune_clip
    columns = _columns(args.columns)
    ref = _load(args.reference, "reference", columns, args.tree)
    pool = _load(args.pool, "pool", columns, args.tree)
    hidden = [int(h) for h in _columns(args.hidden) or []]
    clips = _floats(args.clips, "--clips")
    options = {"optimizer": args.optimizer, "threads": args.threads}
    if args.epochs is not None:
        options["epochs"] = args.epochs
    scan = tune_clip(ref, pool, hidden, clips, toys=args.toys, n_expected=args.n_expected, seed=args.seed,
                     store=args.store, progress=False if args.quiet else None, **options)
    if args.plot:
        from . import plot
        ax = plot.clip_scan(scan)
        ax.figure.savefig(args.plot, dpi=120, bbox_inches="tight")
    rows = scan.table()
    out = {"n_params": scan.n_params, "best_clip": scan.best_clip, "clips": rows, "plot": args.plot}
    text = "\n".join([f"|w| = {scan.n_params}; best clip {scan.best_clip:g} (largest KS p against chi2(|w|))",
                      f"{'clip':>8} {'dof':>8} {'KS p':>10} {'mean t':>9}"]
                     + [f"{r['clip']:>8g} {r['dof']:>8.2f} {r['ks_pvalue']:>10.3g} {r['mean_t']:>9.2f}" for r in rows])
    _emit(out, args, text)
    return EXIT_OK


def _monitor(args) -> int:
    import signal

    from .dqm import ConfigError, MonitorService, load_config, serve
    try:
        config = load_config(args.config)
    except ConfigError as err:
        raise InputError(str(err)) from err
    folder = config["dashboard"]["folder"]
    if (args.serve or args.serve_only) and folder is None:
        raise InputError(f"{args.config}: [dashboard] folder is empty: there is no dashboard to serve")
    if args.serve_only:
        if not os.path.isdir(folder):
            raise InputError(f"no dashboard in {folder!r} yet: start the service first")
        server = serve(folder, args.host, args.port, background=True)
        _say(args, f"dashboard: {server.url} (read-only; Ctrl-C stops)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.shutdown()
            server.server_close()
        return EXIT_OK
    service = MonitorService(args.config, progress=False if args.quiet else None, threads=args.threads)
    server = None
    old = signal.signal(signal.SIGTERM, lambda *_: service.stop())  # finish the batch in progress, then exit
    try:
        if args.serve:
            server = serve(folder, args.host, args.port, background=True)
            _say(args, f"dashboard: {server.url} (read-only)")
        elif folder is not None:
            _say(args, f"dashboard: {os.path.join(folder, 'index.html')}")
        try:
            n = service.run(once=args.once, max_batches=args.max_batches)
        except KeyboardInterrupt:
            n = None
        out = {"batches_recorded": n, "batches_in_history": service.history.count(),
               "channels": sorted(service.channels), "failed_channels": service.failed,
               "alarms": len(service.history.alarms(10**9)), "database": config["service"]["database"],
               "dashboard": folder}
    finally:
        signal.signal(signal.SIGTERM, old)
        if server is not None:
            server.shutdown()
            server.server_close()
        service.close()
    _emit(out, args)
    return EXIT_OK


def _say(args, text):
    if not args.quiet and not args.json:
        print(text, flush=True)


COMMANDS = {"fit": _fit, "demo": _demo, "calibrate": _calibrate, "test": _test, "report": _report_cmd,
            "tune-clip": _tune_clip, "monitor": _monitor, "bench": _bench}


if __name__ == "__main__":
    sys.exit(main())
