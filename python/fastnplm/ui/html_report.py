"""One self-contained HTML report (plots embedded as PNG) and a JSON record of a test.

``report(...)`` fits the data at each width with the calibration's own model, computes p and
Z per width and aggregated, draws the pictures of :mod:`fastnplm.ui.plot`, and writes

- ``<name>.html``: opens offline (no external scripts, styles or images);
- ``<name>.json``: inputs with their fingerprints (sha256 of the float64 arrays and of the
  input files, shapes), settings, t, p, Z per width and aggregated, timings and software
  versions, enough to reproduce the numbers from the same inputs and seed.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io as _io
import json
import logging
import os
import platform
import time

import numpy as np
import scipy

from .. import _checks
from .._info import build_info
from ..calibration._run import VERDICT_Z

log = logging.getLogger("fastnplm")


def fingerprint(x) -> dict:
    """Shape and sha256 of an array as float64 C-contiguous bytes (what the fits consume)."""
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    return {"shape": list(arr.shape), "dtype": "float64", "sha256": hashlib.sha256(arr.tobytes()).hexdigest()}


def file_fingerprint(path) -> dict:
    """Path, size and sha256 of a file's bytes."""
    from ..io.datasets import sha256_file
    return {"path": os.fspath(path), "bytes": os.path.getsize(path), "sha256": sha256_file(path)}


def versions() -> dict:
    """Software versions: fastnplm (and its build), numpy, scipy, matplotlib, Python."""
    out = {"fastnplm": build_info()["version"], "numpy": np.__version__, "scipy": scipy.__version__,
           "python": platform.python_version(), "platform": platform.platform(), "build_info": build_info()}
    try:
        import matplotlib
        out["matplotlib"] = matplotlib.__version__
    except ImportError:
        out["matplotlib"] = None
    return out


def jsonable(obj):
    """``obj`` with numpy scalars and arrays as Python numbers and lists, and non-finite floats
    as strings, so that ``json.dumps`` writes it as valid JSON."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else str(v)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _width_label(sigma) -> str:
    return "neural network" if sigma is None else f"σ = {sigma:.3g}"


def analyse(reference, data, model=None, calibration=None, pool=None, toys=200, n_expected=None, sigmas=None,
            seed=0, threads=None) -> dict:
    """Calibrate (unless given), fit the data at every width with the toys' model, and test.

    Parameters
    ----------
    reference, data : array_like (n, d) or (n,)
    model : KernelNPLM or None
        Settings of the toys and the data fit (default: ``KernelNPLM(M=min(500, N_R), seed=seed)``,
        width from the heuristic).
    calibration : fastnplm.Calibration or None
        Existing toys (then ``pool``, ``toys``, ``sigmas`` are not used).
    pool : array_like or None
        Reference-distributed events disjoint from ``reference`` for the toys.
    toys, n_expected, sigmas, seed : as in :func:`fastnplm.calibrate`
        ``n_expected`` defaults to the number of data events.
    threads : int or None

    Returns
    -------
    dict
        ``summary`` (JSON-ready numbers, :meth:`fastnplm.Calibration.test` without the fits, and
        the timings; ``summary["verdict"]``: the headline, :func:`fastnplm.calibration.verdict`),
        ``calibration``, ``fits`` (one per width),
        ``aggregate`` (or None for one width).
    """
    from ..calibration._run import calibrate
    from ..models.kernel import KernelNPLM

    ref = _checks.as_events(reference, "reference")
    dat = _checks.as_events(data, "data", d=ref.shape[1])
    timings = {}
    if calibration is None:
        if pool is None:
            raise ValueError("pass pool= (reference-distributed events disjoint from the reference) or calibration=")
        if model is None:
            model = KernelNPLM(M=min(500, ref.shape[0]), seed=seed, threads=threads)
        n_exp = float(dat.shape[0]) if n_expected is None else n_expected
        t0 = time.perf_counter()
        calibration = calibrate(model, ref, pool, toys=toys, n_expected=n_exp, sigmas=sigmas, seed=seed,
                                progress=False)
        timings["calibration_seconds"] = time.perf_counter() - t0
    n_exp = calibration.settings.get("n_expected", n_expected)
    if n_exp is None:
        raise ValueError("the calibration does not record n_expected: pass n_expected=")
    t0 = time.perf_counter()
    summary = calibration.test(ref, dat, n_expected=n_exp, threads=threads)
    timings["data_fit_seconds"] = time.perf_counter() - t0
    fits = summary.pop("fits")
    summary["timings"] = timings
    agg = None if "aggregated" not in summary else {"per_width": summary["per_width"], **summary["aggregated"]}
    return {"summary": summary, "calibration": calibration, "fits": fits, "aggregate": agg}


def _png(fig) -> str:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figures(reference, data, result, names=None, quantile=None) -> list:
    """(caption, matplotlib Figure) pairs for an :func:`analyse` result, drawn without pyplot.

    ``reference`` and ``data`` are drawn in the reconstruction, event for event as fitted
    (they may be in the original units of preprocessed inputs); ``quantile`` as in
    :func:`fastnplm.ui.plot.reconstruction`.
    """
    from .._optional import require
    require("matplotlib", "the report's plots")
    from matplotlib.figure import Figure

    from . import plot

    cal, fits = result["calibration"], result["fits"]
    out = []
    best = int(np.argmin([row["p"] for row in result["summary"]["per_width"]]))
    fig = Figure(figsize=(4.2 * len(fits), 3.2))
    for j, ax in enumerate(np.atleast_1d(fig.subplots(1, len(fits), squeeze=False)[0])):
        plot.null_distribution(cal, fits[j].t, sigma_index=j, ax=ax)
        ax.set_title(_width_label(cal.sigmas[j]), fontsize="small")
    out.append(("Null distribution of t (toys) with the fitted χ², and the observed t", fig))
    if result["aggregate"] is not None:
        fig = Figure(figsize=(5, 3.2))
        plot.aggregated(result["aggregate"], ax=fig.subplots(), toys=cal.toys)
        out.append(("Z per width and of the aggregated tests (same toys)", fig))
    d = np.asarray(reference).reshape(len(reference), -1).shape[1]
    fig = Figure(figsize=(3.2 * d, 4.4))
    axes = fig.subplots(2, d, squeeze=False, sharex="col", gridspec_kw={"height_ratios": [3, 1]})
    plot.reconstruction(reference, data, fits[best], names=names, axes=axes, quantile=quantile)
    at = f" at {_width_label(cal.sigmas[best])} (smallest p)" if len(fits) > 1 else ""
    out.append((f"Reconstruction{at}: data, reference, and the reference "
                "reweighted by exp f̂; bottom: ratios to the reference", fig))
    return out


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.2em .6em;text-align:right}"
        "th{background:#eee}img{max-width:100%}pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:small}"
        "figcaption{font-size:small;color:#444}")


def _table(rows, keys):
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(k)))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return "" if v is None else str(v)


def section_html(title, summary, figs) -> str:
    """HTML of one analysis: per-width and aggregated tables, then the embedded figures."""
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if "verdict" in summary:
        z = summary["verdict"]["z"]
        tone = "#b00" if z >= VERDICT_Z[1] else ("#a60" if z >= VERDICT_Z[0] else "#060")
        parts.append(f'<p class="verdict" style="font-size:1.2em;font-weight:bold;color:{tone}">'
                     f'{html.escape(summary["verdict"]["text"])}</p>')
    parts.append(_table(summary["per_width"], ["sigma", "t", "p", "z", "toys_exceeding", "converged", "toy_t_mean"]))
    if "aggregated" in summary:
        rows = [{"test": m, **v} for m, v in summary["aggregated"].items()]
        parts.append(_table(rows, ["test", "statistic", "p", "z"]))
    for caption, fig in figs:
        parts.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{_png(fig)}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return "\n".join(parts)


def write_html(path, title, sections_html, record) -> None:
    """The report page: title, sections, and the JSON record at the end."""
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n" + "\n".join(sections_html)
            + "<h2>Record</h2><pre>" + html.escape(json.dumps(record, indent=1)) + "</pre></body></html>\n")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)


def _input_record(x, path):
    rec = fingerprint(x)
    if path is not None:
        rec["file"] = file_fingerprint(path)
    return rec


def report(reference, data, model=None, *, calibration=None, pool=None, toys=200, n_expected=None, sigmas=None,
           seed=0, threads=None, names=None, path="nplm_report.html", title="NPLM goodness-of-fit test",
           input_files=None, extra=None) -> dict:
    """Run the test and write ``path`` (HTML) and the same name with ``.json``.

    Parameters
    ----------
    reference, data : array_like, or str / os.PathLike read with :func:`fastnplm.load`
    model, calibration, pool, toys, n_expected, sigmas, seed, threads
        As in :func:`analyse` (``pool`` may also be a path).
    names : sequence of str or None
        Feature names for the plots and the record.
    path : str or os.PathLike
        The HTML file; the JSON record goes next to it (``.json``).
    title : str
    input_files : dict {"reference": path, "data": path, "pool": path} or None
        Files the arrays came from (their sha256 enters the record); filled automatically
        for inputs given as paths.
    extra : dict or None
        More JSON-ready entries for the record (e.g. the preprocessing's ``to_dict()``).

    Returns
    -------
    dict
        The JSON record (also written), with ``"html"`` and ``"json"`` paths.
    """
    from ..io.files import load

    start = time.perf_counter()
    files = dict(input_files or {})
    arrays = {}
    for key, val in (("reference", reference), ("data", data), ("pool", pool)):
        if isinstance(val, (str, os.PathLike)):
            files[key] = val
            val = load(val)
        arrays[key] = val
    res = analyse(arrays["reference"], arrays["data"], model, calibration=calibration, pool=arrays["pool"],
                  toys=toys, n_expected=n_expected, sigmas=sigmas, seed=seed, threads=threads)
    t0 = time.perf_counter()
    figs = figures(arrays["reference"], arrays["data"], res, names=names)
    record = {"title": title,
              "inputs": {k: _input_record(v, files.get(k)) for k, v in arrays.items() if v is not None},
              "feature_names": list(names) if names is not None else None,
              **res["summary"], "versions": versions(), **(extra or {})}
    html_path = os.fspath(path)
    json_path = os.path.splitext(html_path)[0] + ".json"
    section = section_html(title, res["summary"], figs)
    record["timings"]["plots_seconds"] = time.perf_counter() - t0
    record["timings"]["total_seconds"] = time.perf_counter() - start
    record = jsonable(record)
    write_html(html_path, title, [section], record)
    with open(json_path, "w") as fh:
        json.dump(record, fh, indent=1)
    log.info("report written to %s and %s", html_path, json_path)
    return {**record, "html": html_path, "json": json_path}
