"""Benchmark scenarios shared by ``fastnplm bench`` and the scripts in ``bench/``.

What is here times fastnplm alone (the peers — scikit-learn, PyTorch, the NPLM package — stay
in the bench/ scripts, which import these pieces): machine facts, a timer, the synthetic
problems, and four standard scenarios — a kernel fit, toy calibration, neural epochs and the
evaluation of fitted models on a batch of events.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import re
import statistics
import time

import numpy as np

log = logging.getLogger("fastnplm")

BUMP = {"fraction": 0.05, "mean_first_coordinate": 1.5, "width": 0.3}
LAM = 1e-6


def emit(out: dict, path=None, quiet=False) -> None:
    """Print the JSON document (unless quiet); also write it to ``path`` when given."""
    text = json.dumps(out, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    if not quiet:
        print(text)
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as fh:
            fh.write(text + "\n")


def timed(fn, repeats, budget_s=None):
    """Median wall time of fn() over ``repeats`` runs (fewer once ``budget_s`` is spent),
    the list of run times, and the last result."""
    runs, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - t0)
        if budget_s is not None and sum(runs) > budget_s:
            break
    return statistics.median(runs), runs, out


def cpuinfo() -> dict:
    """CPU model, family, clock and SIMD flags from /proc/cpuinfo (empty fields elsewhere)."""
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return {"model": platform.processor(), "family": "", "model_number": "", "mhz": None, "simd": []}
    field = lambda key: (re.findall(rf"^{key}\s*:\s*(.*)$", text, re.M) or [""])[0].strip()  # noqa: E731
    mhz = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*(\S+)", text, re.M)]
    flags = set(field("flags").split())
    return {"model": field("model name"), "family": field("cpu family"), "model_number": field("model"),
            "mhz": statistics.mean(mhz) if mhz else None,
            "simd": sorted(flags & {"avx", "avx2", "fma", "avx512f"})}


def compiler():
    """The GCC/clang version strings in the extension's .comment section, if cheaply found."""
    from . import _core
    with open(_core.__file__, "rb") as fh:
        hits = re.findall(rb"GCC: \([^)]*\) [\d.]+|clang version [\d.]+", fh.read())
    return sorted({h.decode() for h in hits}) or None


def machine(threads) -> dict:
    """Machine and software facts recorded with every benchmark."""
    import scipy

    from ._info import build_info
    info = {"cpu": cpuinfo(), "nproc": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
            "threads_used": threads, "loadavg_at_start": os.getloadavg(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "fastnplm_build_info": build_info(),
            "compiler": compiler(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads", "filepath")}
                               for p in threadpool_info()]
    except ImportError:
        pass
    return info


def bump_data(d, n_r, n_d, rng):
    """Reference ~ N(0, I); data ~ N(0, I) with a narrow Gaussian bump in BUMP['fraction'] of events."""
    ref = rng.standard_normal((n_r, d))
    dat = rng.standard_normal((n_d, d))
    nb = int(BUMP["fraction"] * n_d)
    mean = np.zeros(d)
    mean[0] = BUMP["mean_first_coordinate"]
    dat[:nb] = mean + BUMP["width"] * rng.standard_normal((nb, d))
    return ref, dat


def exp_data(d, n_r, n_d, seed=0):
    """Reference and data both Exp(1) in every coordinate (the neural benchmark's problem)."""
    rng = np.random.default_rng(seed)
    return rng.exponential(size=(n_r, d)), rng.exponential(size=(n_d, d))


def kernel_fit(d, n_r, n_d, M, threads, repeats=3, warmup=True, seed=0, backend="cpu") -> dict:
    """Median time of one kernel fit (newton-step, the heuristic width) on the bump problem."""
    from .models.kernel import KernelNPLM, sigma_heuristic
    ref, dat = bump_data(d, n_r, n_d, np.random.default_rng(seed))
    sigma = sigma_heuristic(ref)
    model = KernelNPLM(M=M, sigma=sigma, lam=LAM, solver="newton-step", seed=0, threads=threads, backend=backend)
    if warmup:
        model.fit(ref, dat)
    s, runs, res = timed(lambda: model.fit(ref, dat), repeats)
    return {"config": {"d": d, "n_r": n_r, "n_d": n_d, "M": M, "lam": LAM, "sigma": sigma},
            "seconds_median": s, "seconds_runs": runs, "t": res.t, "cg_iterations": list(res.cg_iterations),
            "converged": bool(res.converged)}


def calibrate_run(model, ref, pool, toys, n_expected, fast=None, sigmas=None, seed=0):
    """One ``calibrate`` call timed: path taken, toys per second; returns (record, calibration)."""
    from .calibration._run import calibrate
    start = time.perf_counter()
    cal = calibrate(model, ref, pool, toys=toys, n_expected=n_expected, sigmas=sigmas, seed=seed, fast=fast,
                    progress=False)
    seconds = time.perf_counter() - start
    return {"path": cal.settings["path"], "toys": toys, "widths": len(cal.sigmas), "seconds": seconds,
            "toys_per_second": toys / seconds, "all_converged": bool(cal.converged.all())}, cal


def naive_toys(model, ref, pool, toys, n_expected, seed=0):
    """The loop a user would write: one plain fit per toy, the same toy data as calibrate draws."""
    from .calibration._run import toy_rng
    start = time.perf_counter()
    ts = []
    for k in range(toys):
        rng = toy_rng(seed, k)
        data = pool[rng.choice(len(pool), rng.poisson(n_expected), replace=False)]
        ts.append(model.fit(ref, data, n_expected=n_expected).t)
    seconds = time.perf_counter() - start
    return {"path": f"naive loop of fit(hessian={model.hessian!r})", "toys": toys, "seconds": seconds,
            "toys_per_second": toys / seconds}, np.array(ts)


def toys_scenario(n_r, n_pool, n_expected, M, sigma, toys, naive, threads, seed=0, backend="cpu") -> dict:
    """1D toys (reference Exp(1)): calibrate's path against the naive loop of fits."""
    from .models.kernel import KernelNPLM
    rng = np.random.default_rng(seed)
    ref, pool = rng.exponential(size=(n_r, 1)), rng.exponential(size=(n_pool, 1))
    model = KernelNPLM(M=M, sigma=sigma, lam=LAM, center_pool="reference", threads=threads, backend=backend)
    slow, _ = naive_toys(model, ref, pool, naive, n_expected)
    fast, _ = calibrate_run(model, ref, pool, toys, n_expected)
    return {"config": {"n_r": n_r, "n_expected": n_expected, "M": M, "sigma": sigma}, "calibrate": fast,
            "naive": slow, "speedup": fast["toys_per_second"] / slow["toys_per_second"]}


def neural_epochs(d, hidden, n_r, n_d, clip, epochs, threads, dtype="float64", repeats=3, backend="cpu") -> dict:
    """Best-of-``repeats`` ms per Adam epoch of a neural fit on Exp(1) data (after a warm-up)."""
    from .models.neural import NeuralNPLM
    ref, dat = exp_data(d, n_r, n_d)
    m = NeuralNPLM(hidden=hidden, clip=clip, epochs=epochs, history_every=0, threads=threads, dtype=dtype,
                   backend=backend)
    m.fit(ref[:1000], dat[:100])  # warm-up (page-in, thread pool)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = m.fit(ref, dat)
        times.append(time.perf_counter() - t0)
    s = min(times)
    return {"network": "-".join(map(str, (d, *hidden, 1))), "n_r": n_r, "n_d": n_d, "threads": threads,
            "dtype": dtype, "epochs": epochs, "seconds": s, "ms_per_epoch": 1e3 * s / epochs,
            "ms_per_epoch_all_repeats": [1e3 * x / epochs for x in times], "t": r.t}


def evaluation(n_events, d, M, hidden, threads, repeats=3, seed=0) -> dict:
    """Events per second of f(x) for a fitted kernel model (M centers) and network."""
    from .models.kernel import KernelNPLM
    from .models.neural import NeuralNPLM
    rng = np.random.default_rng(seed)
    ref, dat = bump_data(d, 5 * M, M, rng)
    x = rng.standard_normal((n_events, d))
    kfit = KernelNPLM(M=M, sigma=1.0, lam=LAM, threads=threads).fit(ref, dat)
    nfit = NeuralNPLM(hidden=hidden, epochs=10, threads=threads).fit(ref, dat)
    ks, kruns, _ = timed(lambda: kfit.predict(x, threads=threads), repeats)
    ns, nruns, _ = timed(lambda: nfit.predict(x, threads=threads), repeats)
    return {"n_events": n_events, "d": d,
            "kernel": {"M": M, "seconds_median": ks, "events_per_second": n_events / ks},
            "neural": {"network": "-".join(map(str, (d, *hidden, 1))), "seconds_median": ns,
                       "events_per_second": n_events / ns}}


QUICK: dict[str, dict] = {"kernel_fit": dict(d=5, n_r=20_000, n_d=1_000, M=50, repeats=3),
         "toys": dict(n_r=20_000, n_pool=100_000, n_expected=200.0, M=100, sigma=0.3, toys=32, naive=3),
         "neural": dict(d=1, hidden=(4,), n_r=20_000, n_d=200, clip=9.0, epochs=50, repeats=2),
         "evaluation": dict(n_events=100_000, d=5, M=200, hidden=(5, 5, 5))}
FULL: dict[str, dict] = {"kernel_fit": dict(d=5, n_r=200_000, n_d=5_000, M=50, repeats=5),
        "toys": dict(n_r=200_000, n_pool=1_000_000, n_expected=2000.0, M=1000, sigma=0.3, toys=100, naive=2),
        "neural": dict(d=1, hidden=(4,), n_r=200_000, n_d=2_000, clip=9.0, epochs=300, repeats=3),
        "evaluation": dict(n_events=1_000_000, d=5, M=1000, hidden=(5, 5, 5))}


def standard(quick=False, threads=None, device="cpu") -> dict:
    """The four standard scenarios (``fastnplm bench``): one JSON-ready document.

    device="cuda": the kernel fit, the toys and the neural epochs run on the CUDA backend
    (wall-clock timing; ``bench/gpu.py`` times with CUDA events); evaluation stays on the CPU.
    """
    threads = threads or os.cpu_count()
    sizes = QUICK if quick else FULL
    start = time.perf_counter()
    doc = {"benchmark": "fastnplm bench", "mode": "quick" if quick else "full", "device": device,
           "machine": machine(threads), "scenarios": {}}
    k = sizes["kernel_fit"]
    doc["scenarios"]["kernel_fit"] = kernel_fit(k["d"], k["n_r"], k["n_d"], k["M"], threads, repeats=k["repeats"],
                                                backend=device)
    doc["scenarios"]["toys"] = toys_scenario(threads=threads, backend=device, **sizes["toys"])
    doc["scenarios"]["neural_epochs"] = neural_epochs(threads=threads, backend=device, **sizes["neural"])
    doc["scenarios"]["evaluation"] = evaluation(threads=threads, **sizes["evaluation"])
    doc["machine"]["loadavg_at_end"] = os.getloadavg()
    doc["total_seconds"] = time.perf_counter() - start
    return doc


def table(doc) -> str:
    """The standard document as a plain-text table (one line per scenario)."""
    s = doc["scenarios"]
    k, t, n, e = s["kernel_fit"], s["toys"], s["neural_epochs"], s["evaluation"]
    kc, tc = k["config"], t["config"]
    rows = [("kernel fit", f"d={kc['d']} N_R={kc['n_r']} N_D={kc['n_d']} M={kc['M']}",
             f"{k['seconds_median'] * 1e3:.1f} ms per fit"),
            ("toys", f"1D N_R={tc['n_r']} N(R)={tc['n_expected']:g} M={tc['M']} ({t['calibrate']['path']})",
             f"{t['calibrate']['toys_per_second']:.1f} toys/s ({t['speedup']:.1f}x the loop of fits)"),
            ("neural epochs", f"{n['network']} {n['dtype']}, N_R={n['n_r']}, {n['epochs']} epochs",
             f"{n['ms_per_epoch']:.3f} ms per epoch"),
            ("evaluation, kernel", f"{e['n_events']} events, d={e['d']}, M={e['kernel']['M']}",
             f"{e['kernel']['events_per_second']:.3g} events/s"),
            ("evaluation, neural", f"{e['n_events']} events, {e['neural']['network']}",
             f"{e['neural']['events_per_second']:.3g} events/s")]
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    m = doc["machine"]
    head = (f"fastnplm {m['fastnplm_build_info']['version']} on {m['cpu']['model'] or 'unknown CPU'}, "
            f"{m['threads_used']} threads ({doc['mode']}, {doc['total_seconds']:.1f} s)")
    return "\n".join([head, *(f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows)])
