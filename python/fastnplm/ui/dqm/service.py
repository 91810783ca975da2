"""The monitoring service: many channels, each a calibrated :class:`fastnplm.Monitor`, every batch
tested on every channel it carries, the results recorded once in SQLite, a dashboard rewritten
after every batch.

``MonitorService(config)`` reads the configuration (:mod:`fastnplm.ui.dqm.config`), loads each
channel's reference, calibrates it on first start (a resumable store, so an interrupted
calibration resumes) and builds its monitors, one per width. ``run()`` then polls the source
directory (or consumes an iterator), ``process()`` tests one batch. A channel that cannot start,
a batch file that cannot be read, a channel that fails on a batch: each is recorded in the
history's ``errors`` table and shown on the dashboard, and the rest carry on.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import threading
import time

import numpy as np
from scipy import stats

from ...calibration._run import aggregate, calibrate, load_calibration, verdict
from ...io.files import load
from ...models.kernel import KernelNPLM
from ...monitor import Monitor
from ..html_report import jsonable
from .config import Selection, load_config
from .history import History

log = logging.getLogger("fastnplm")

# the reconstruction's bins span these quantiles of the reference (the end bins take the rest)
BIN_QUANTILES = (0.001, 0.999)


def digest(obj) -> str:
    """sha256 of an object's canonical JSON (sorted keys): the fingerprint of settings."""
    return hashlib.sha256(json.dumps(jsonable(obj), sort_keys=True).encode()).hexdigest()


class Channel:
    """One monitored channel: its selected (and preprocessed) reference, its calibration, and a
    :class:`fastnplm.Monitor` per width.

    Parameters
    ----------
    spec : dict
        The channel's checked settings (an entry of ``load_config(...)["channels"]``).
    threads : int
        CPU threads of each test.
    bins : int
        Bins per feature of the dashboard's reconstruction.
    progress : bool or None
        The calibration's progress bar (None: on a terminal).
    """

    def __init__(self, spec: dict, threads: int = 1, bins: int = 30, progress=None):
        self.spec = spec
        self.name = spec["name"]
        self.columns = list(spec["columns"])
        self.selection = None if spec["selection"] is None else Selection(spec["selection"], f"channel {self.name!r}")
        # every column the channel reads from a batch: its features, then those only the selection uses
        self.needs = self.columns + [c for c in spec["selection_columns"] if c not in self.columns]
        self.reference_raw = self._read(spec["reference"], "reference")
        self.preprocessing = None
        if spec["preprocessing"] is not None:
            from ...preprocessing import DivideByMean, Standardize
            scaler = Standardize() if spec["preprocessing"] == "standardize" else DivideByMean()
            self.preprocessing = scaler.fit(self.reference_raw)
        reference = self._pre(self.reference_raw)
        self.calibration = self._calibration(reference, threads, progress)
        self.monitors = [Monitor(self.calibration, reference, sigma_index=j, threads=threads)
                         for j in range(len(self.calibration.sigmas))]
        self.n_expected = float(self.calibration.settings["n_expected"])
        cal = self.calibration
        self.model_fingerprint = digest({
            "model": cal.settings.get("model"), "sigmas": list(cal.sigmas), "n_expected": self.n_expected,
            "columns": self.columns, "selection": spec["selection"],
            "preprocessing": None if self.preprocessing is None else self.preprocessing.to_dict(),
            "reference_sha256": hashlib.sha256(reference.tobytes()).hexdigest()})
        self.calibration_fingerprint = hashlib.sha256(json.dumps(cal.settings, sort_keys=True).encode()
                                                      + np.ascontiguousarray(cal.t).tobytes()).hexdigest()
        self._bins(bins)

    def _read(self, path, what) -> np.ndarray:
        try:
            cols = load(path, columns=self.needs, tree=self.spec["tree"])
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"cannot read the {what} {path!r}: {err}") from err
        x = self.events({c: cols[:, i] for i, c in enumerate(self.needs)})
        if x.shape[0] < 2:
            raise ValueError(f"the {what} {path!r} has {x.shape[0]} events after the selection")
        return x

    def _pre(self, x):
        return x if self.preprocessing is None else self.preprocessing.transform(x)

    def events(self, columns: dict) -> np.ndarray:
        """The channel's events of a batch, from ``{name: 1-D array}``: selected, features in order,
        in the original units."""
        sizes = {c: np.shape(columns[c]) for c in self.needs}
        bad = {c: s for c, s in sizes.items() if len(s) != 1 or s != sizes[self.needs[0]]}
        if bad:
            raise ValueError("columns must be 1-D arrays of one length: "
                             + ", ".join(f"{c!r} has shape {s}" for c, s in sizes.items()))
        if self.selection is not None:
            mask = self.selection.mask(columns)
            return np.column_stack([np.asarray(columns[c], dtype=np.float64)[mask] for c in self.columns])
        return np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in self.columns])

    def _calibration(self, reference, threads, progress):
        spec, m = self.spec, dict(self.spec["model"])
        sigmas = m.pop("sigmas", None)
        model = KernelNPLM(threads=threads, **m)
        store = spec["calibration"]
        if spec["pool"] is not None:
            pool = self._pre(self._read(spec["pool"], "pool"))
            os.makedirs(os.path.dirname(store) or ".", exist_ok=True)
            log.info("channel %s: calibration (%d toys) in %s", self.name, spec["toys"], store)
            return calibrate(model, reference, pool, toys=spec["toys"], n_expected=spec["n_expected"], sigmas=sigmas,
                             seed=spec["toy_seed"], store=store, progress=progress)
        if not os.path.exists(store):
            raise ValueError(f"calibration store {store!r} does not exist, and no pool is given to calibrate it")
        cal = load_calibration(store)
        # a store calibrated elsewhere must be of this channel's settings
        want = {"n_expected": float(spec["n_expected"]), "M": model.M, "lam": model.lam, "solver": model.solver,
                "seed": model.seed, "center_pool": model.center_pool}
        have = {"n_expected": cal.settings.get("n_expected"), **{k: cal.settings["model"].get(k) for k in want
                                                                   if k != "n_expected"}}
        if sigmas is not None or model.sigma is not None:
            want["sigmas"], have["sigmas"] = list(sigmas or [model.sigma]), list(cal.sigmas)
        differ = [k for k in want if want[k] != have[k]]
        if differ:
            raise ValueError(f"calibration store {store!r} was made with other settings: "
                             + ", ".join(f"{k} {have[k]!r} (the channel's: {want[k]!r})" for k in differ))
        if cal.toys < spec["toys"]:
            log.warning("channel %s: the store holds %d toys, fewer than the %d asked (no pool to add more)",
                        self.name, cal.toys, spec["toys"])
        return cal

    def _bins(self, bins):
        """Fixed bins per feature for the reconstruction, and the reference's bin of every event."""
        ref = self.reference_raw
        self.edges = []
        self.reference_bin = np.empty(ref.shape, dtype=np.intp)
        for i in range(ref.shape[1]):
            lo, hi = np.quantile(ref[:, i], BIN_QUANTILES)
            if not hi > lo:
                lo, hi = lo - 0.5, hi + 0.5
            edges = np.linspace(lo, hi, bins + 1)
            self.edges.append(edges)
            self.reference_bin[:, i] = self._bin(edges, ref[:, i])
        n_r = ref.shape[0]
        self.reference_counts = [np.bincount(self.reference_bin[:, i], minlength=bins) * (self.n_expected / n_r)
                                 for i in range(ref.shape[1])]

    @staticmethod
    def _bin(edges, x):
        """Bin of each value in equal-width ``edges``; the end bins take what lies beyond."""
        nb = edges.size - 1
        with np.errstate(invalid="ignore"):
            idx = np.floor((x - edges[0]) * (nb / (edges[-1] - edges[0])))
        return np.clip(np.nan_to_num(idx), 0, nb - 1).astype(np.intp)

    def settings(self) -> dict:
        """The channel's settings and calibration, JSON-ready (for the history and the dashboard)."""
        cal = self.calibration
        out = {k: v for k, v in self.spec.items() if k != "selection_columns"}
        out["calibration_toys"] = cal.toys
        out["calibration_path"] = cal.settings.get("path")
        out["sigmas"] = [float(s) for s in cal.sigmas]
        out["n_reference"] = int(self.reference_raw.shape[0])
        out["preprocessing_fitted"] = None if self.preprocessing is None else self.preprocessing.to_dict()
        return jsonable(out)

    def test(self, events: np.ndarray, reconstruction: bool = True):
        """Test one batch's events (original units) at every width.

        Returns
        -------
        (dict, list, dict or None)
            The headline result (test, p, its interval, Z, aggregated tests, diagnostics), one
            row per width (t, p, interval, Z, toys exceeded, converged, seconds), and the
            reconstruction at the width of smallest p (per feature: edges, reference,
            reweighted reference and data counts), or None.
        """
        if events.shape[0] == 0:
            raise ValueError("no events in this batch (after the selection)")
        cal = self.calibration
        x = self._pre(events)
        widths, fits = [], []
        for j, (mon, sigma) in enumerate(zip(self.monitors, cal.sigmas)):
            start = time.perf_counter()
            if reconstruction:  # the whole fit (f on the reference too), at the cost of a test on this path
                fit = mon.fit(x)
                t, converged = float(fit.t), bool(fit.converged)
                fits.append(fit)
            else:
                out = mon.test(x)
                t, converged = out["t"], out["converged"]
            seconds = time.perf_counter() - start
            pv = cal.null(j).p_value(t)  # p = (1 + #{toys >= t}) / (B + 1), as Monitor.test
            widths.append({"width": j, "sigma": None if sigma is None else float(sigma), "t": t, "p": pv["p"],
                           "p_lo": pv["interval"][0], "p_hi": pv["interval"][1], "z": float(stats.norm.isf(pv["p"])),
                           "exceeded": pv["exceeded"], "converged": int(converged), "seconds": seconds})
        agg = aggregate(cal, [w["t"] for w in widths]) if len(widths) > 1 else None
        rows = [{"sigma": w["sigma"], "p": w["p"], "z": w["z"], "toys_exceeding": w["exceeded"]} for w in widths]
        head = verdict({"settings": {"toys": cal.toys}, "per_width": rows,
                        **({"aggregated": agg} if agg is not None else {})})
        result = {"n_events": int(events.shape[0]), "test": head["test"], "p": head["p"],
                  "p_lo": head["interval"][0], "p_hi": head["interval"][1], "z": head["z"],
                  "converged": int(all(w["converged"] for w in widths)), "seconds": sum(w["seconds"] for w in widths),
                  "aggregated": None if agg is None else jsonable({k: v for k, v in agg.items() if k != "per_width"}),
                  "model_fingerprint": self.model_fingerprint, "calibration_fingerprint": self.calibration_fingerprint}
        reco = None
        if reconstruction:
            best = int(np.argmin([w["p"] for w in widths]))
            reco = (widths[best]["sigma"], self.reconstruction(events, np.asarray(fits[best].f_reference)))
        return result, widths, reco

    def reconstruction(self, events: np.ndarray, f_reference: np.ndarray) -> dict:
        """Per feature: bin edges, and the counts of the reference, of the reference reweighted by
        exp f on the reference events (the fit's picture of the data), and of the data."""
        n_r = self.reference_raw.shape[0]
        weights = (self.n_expected / n_r) * np.exp(f_reference)
        feats = []
        for i, name in enumerate(self.columns):
            edges, nb = self.edges[i], self.edges[i].size - 1
            feats.append({"name": name, "edges": np.round(edges, 6).tolist(),
                          "reference": np.round(self.reference_counts[i], 4).tolist(),
                          "reweighted": np.round(np.bincount(self.reference_bin[:, i], weights=weights,
                                                             minlength=nb), 4).tolist(),
                          "data": np.bincount(self._bin(edges, events[:, i]), minlength=nb).tolist()})
        return {"features": feats}


class _Columns:
    """The columns of one batch, read once: a mapping (dict, np.load of a .npz, a structured array, a
    pandas DataFrame) or a file read with :func:`fastnplm.load`."""

    def __init__(self, data, needs, tree=None):
        if isinstance(data, (str, os.PathLike)) and os.fspath(data).lower().endswith(".npz") and tree is None:
            with np.load(data, allow_pickle=False) as z:  # one array per column, each checked by its channels
                self.data = {c: z[c] for c in needs if c in z.files}
        elif isinstance(data, (str, os.PathLike)):
            names = _file_columns(os.fspath(data))
            wanted = list(needs) if names is None else [c for c in needs if c in names]
            arr = load(data, columns=wanted, tree=tree) if wanted else np.empty((0, 0))
            self.data = {c: arr[:, i] for i, c in enumerate(wanted)}
        elif getattr(getattr(data, "dtype", None), "names", None):
            self.data = data  # a structured array: columns by field name
        elif hasattr(data, "keys") and hasattr(data, "__getitem__"):
            self.data = data
        else:
            raise TypeError(f"a batch must be a file path or a mapping of column names to arrays, "
                            f"got {type(data).__name__}")
        names = data.dtype.names if getattr(getattr(data, "dtype", None), "names", None) else list(self.data.keys())
        self.names = set(names)

    def take(self, columns) -> dict | None:
        """{name: array} of the columns, or None when the batch carries none of them; ValueError
        naming the missing ones when it carries only some."""
        missing = [c for c in columns if c not in self.names]
        if len(missing) == len(columns):
            return None
        if missing:
            raise ValueError(f"the batch lacks column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
        return {c: np.asarray(self.data[c]) for c in columns}


def _file_columns(path):
    """The column names of a batch file, read cheaply (None: a format where every column is tried)."""
    low = path.lower()
    if low.endswith(".csv") or low.endswith(".csv.gz") or low.endswith(".txt"):
        import csv
        import gzip
        opener = gzip.open if low.endswith(".gz") else open
        with opener(path, "rt", newline="") as fh:
            return {s.strip() for s in next(csv.reader(fh), [])}
    if low.endswith(".parquet") or low.endswith(".pq"):
        from ..._optional import require
        return set(require("pyarrow.parquet", "reading Parquet files").read_schema(path).names)
    return None


class MonitorService:
    """Data-quality monitoring of many channels: test batches, record them in SQLite, draw a dashboard.

    Parameters
    ----------
    config : str, os.PathLike or dict
        A TOML configuration file, or its content (see :func:`fastnplm.ui.dqm.load_config` and
        docs/dqm.md).
    progress : bool or None
        Progress bars of first-start calibrations (None: on a terminal).
    base : str or None
        Folder of relative paths in a dict ``config`` (default: the current directory).
    threads : int or None
        CPU threads of each test, instead of ``[service] threads``.

    Examples
    --------
    >>> with MonitorService("dqm.toml") as service:
    ...     service.run(once=True)                         # the batch files there now, then return
    >>> with MonitorService(config) as service:
    ...     service.run(iter([("run1-ls5", {"x": x, "y": y})]))   # batches from Python
    """

    def __init__(self, config, progress=None, base=None, threads=None) -> None:
        self.config = load_config(config, base=base)
        if threads is not None:
            self.config["service"]["threads"] = threads
        db = self.config["service"]["database"]
        os.makedirs(os.path.dirname(db) or ".", exist_ok=True)
        self.history = History(db)
        self.channels: dict = {}
        self.failed: dict = {}
        threads, bins = self.config["service"]["threads"], self.config["dashboard"]["bins"]
        for spec in self.config["channels"]:
            name = spec["name"]
            try:
                ch = Channel(spec, threads=threads, bins=bins, progress=progress)
            except Exception as err:  # one bad channel is recorded and the others start
                msg = f"channel could not start: {type(err).__name__}: {err}"
                log.error("channel %s: %s", name, msg)
                self.failed[name] = msg
                self.history.set_channel(name, "error", jsonable({k: v for k, v in spec.items()
                                                                  if k != "selection_columns"}), error=msg)
                continue
            self.channels[name] = ch
            self.history.set_channel(name, "ok", ch.settings(), ch.model_fingerprint, ch.calibration_fingerprint)
        if not self.channels:
            self.history.close()
            raise RuntimeError("no channel could start: " + "; ".join(f"{k}: {v}" for k, v in self.failed.items()))
        self.needs = list(dict.fromkeys(c for ch in self.channels.values() for c in ch.needs))
        self.low_run = self.history.low_runs()
        self.recorded = self.history.recorded()
        self._stop = threading.Event()
        self.update_dashboard()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        """Close the history."""
        self.history.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the batch in progress (safe from another thread or a signal handler)."""
        self._stop.set()

    def update_dashboard(self) -> None:
        """Rewrite the dashboard's data from the history (when a dashboard folder is configured)."""
        folder = self.config["dashboard"]["folder"]
        if folder is not None:
            from .dashboard import write_dashboard
            write_dashboard(self.history, folder, self.config)

    def process(self, data, batch_id=None, source=None):
        """Test one batch on every channel it carries and record it.

        Parameters
        ----------
        data : str, os.PathLike or mapping
            A batch file (any format of :func:`fastnplm.load`; the columns it holds decide which
            channels it carries), or ``{column name: 1-D array}`` (also an ``np.load`` of a .npz,
            a structured array or a DataFrame).
        batch_id : str or None
            Unique id of the batch (default: a file's name).
        source : str or None
            Recorded with the batch (default: a file's path).

        Returns
        -------
        dict or None
            ``batch``, ``seq``, ``results`` {channel: headline result with ``alarm`` and
            ``widths``} and ``errors`` {channel ("" for the whole batch): message}; None when the
            batch was already recorded (nothing is done).
        """
        is_file = isinstance(data, (str, os.PathLike))
        if batch_id is None:
            if not is_file:
                raise ValueError("a batch given as arrays needs a batch_id")
            batch_id = os.path.basename(os.fspath(data))
        batch_id = str(batch_id)
        if source is None and is_file:
            source = os.path.abspath(os.fspath(data))
        if batch_id in self.recorded:
            return None
        start = time.perf_counter()
        results, widths, errors, recos = {}, {}, {}, {}
        low_run = {}
        try:
            cols = _Columns(data, self.needs, self.config["source"]["tree"])
        except Exception as err:  # an unreadable batch is recorded as such, once
            errors[""] = f"cannot read the batch: {type(err).__name__}: {err}"
            cols = None
        alarm = self.config["alarm"]
        for name, ch in self.channels.items() if cols is not None else ():
            try:
                taken = cols.take(ch.needs)
                if taken is None:
                    continue  # the batch does not carry this channel
                res, rows, reco = ch.test(ch.events(taken), self.config["dashboard"]["reconstruction"])
            except Exception as err:  # one channel's failure is recorded; the others are tested
                errors[name] = f"{type(err).__name__}: {err}"
                continue
            run = self.low_run.get(name, 0) + 1 if res["p"] < alarm["run_p"] else 0
            kinds = [k for k, on in (("p", res["p"] < alarm["p"]),
                                     ("run", alarm["run_length"] > 0 and run >= alarm["run_length"])) if on]
            res.update(alarm="+".join(kinds), low_run=run)
            results[name], widths[name], low_run[name] = res, rows, run
            if reco is not None:
                recos[name] = reco
        for name, msg in errors.items():
            log.error("batch %s%s: %s", batch_id, f", channel {name}" if name else "", msg)
        seq = self.history.record_batch(batch_id, source, results, widths, errors, recos,
                                        seconds=time.perf_counter() - start)
        self.recorded.add(batch_id)
        if seq is None:  # another writer recorded it first
            return None
        self.low_run.update(low_run)
        for name, res in results.items():
            if res["alarm"]:
                log.warning("ALARM batch %s channel %s: %s (p = %.3g, Z = %.2f)", batch_id, name, res["alarm"],
                            res["p"], res["z"])
        self.update_dashboard()
        return {"batch": batch_id, "seq": seq, "errors": errors,
                "results": {k: {**v, "widths": widths[k]} for k, v in results.items()}}

    def pending(self) -> list:
        """Batch files in the source directory not yet recorded, in name order."""
        src = self.config["source"]
        folder = src["directory"]
        if folder is None:
            raise ValueError("the configuration has no [source] directory: pass batches to run()")
        if not os.path.isdir(folder):
            return []
        names = sorted(n for n in os.listdir(folder) if fnmatch.fnmatch(n, src["pattern"]) and not n.startswith(".")
                       and n not in self.recorded and os.path.isfile(os.path.join(folder, n)))
        return [os.path.join(folder, n) for n in names]

    def run(self, batches=None, once=False, max_batches=None) -> int:
        """Test batches until stopped; return how many were recorded by this call.

        Parameters
        ----------
        batches : iterable or None
            Batches from Python: each item ``(batch_id, data)`` or ``data`` (its id is then its
            position, "0", "1", ..., so that a restarted iterator skips what was recorded). None:
            poll the configured source directory, every ``poll_seconds``.
        once : bool
            With the directory: test the files there now, then return (no waiting for more).
        max_batches : int or None
            Return after recording this many.
        """
        done = 0

        def finished():
            return self._stop.is_set() or (max_batches is not None and done >= max_batches)

        if batches is not None:
            for k, item in enumerate(batches):
                if finished():
                    break
                bid, data = item if isinstance(item, tuple) and len(item) == 2 else (str(k), item)
                done += self.process(data, batch_id=bid) is not None
            return done
        poll = self.config["source"]["poll_seconds"]
        while not finished():
            files = self.pending()
            for path in files:
                if finished():
                    break
                done += self.process(path) is not None
            if once and not files:
                break
            if not files:
                self._stop.wait(poll)
        return done
