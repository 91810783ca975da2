"""NPLM on embedded events: preprocessing, a frozen embedder and an NPLM model in one object.

The events go through ``preprocessing`` (fitted on the embedder's training sample only),
then the frozen embedder, and the NPLM model sees only the embedding. Every sample -- the
reference, the pool of the toys, the data, each monitored batch -- is embedded by the same
map, once, so calibration, fit, test and monitoring are exactly those of the model on the
embedded arrays, and their cost is NPLM's plus one embedding pass per sample.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

from .. import _checks
from ..calibration._run import calibrate
from ..monitor import Monitor


class Pipeline:
    """Preprocessing, a frozen embedder and an NPLM model, applied to events in their original features.

    Parameters
    ----------
    embedder : Embedder, PCA or any object with ``fit(x, labels)`` and ``transform(x)``
        Trained by :meth:`train`, or already trained (e.g. :meth:`Embedder.load`).
    model : KernelNPLM or NeuralNPLM or None
        The NPLM model fitted in the embedding (default: ``KernelNPLM(M=300, seed=0)``, width
        from the heuristic on the embedded reference).
    preprocessing : Standardize, DivideByMean or None
        Fitted by :meth:`train` on the training sample (default ``Standardize()``); pass a
        fitted one with an already trained embedder.

    Examples
    --------
    >>> pipe = Pipeline(Embedder(dim=4), KernelNPLM(M=300)).train(x_train, labels)
    >>> cal = pipe.calibrate(reference, pool, toys=200, n_expected=1000)
    >>> out = pipe.test(reference, data)              # as Calibration.test, on embedded events
    """

    def __init__(self, embedder, model=None, preprocessing=None):
        from ..models.kernel import KernelNPLM
        from ..preprocessing import Standardize

        if not (callable(getattr(embedder, "fit", None)) and callable(getattr(embedder, "transform", None))):
            raise TypeError("embedder must have fit(x, labels) and transform(x) methods")
        self.embedder = embedder
        self.model = KernelNPLM(M=300, seed=0) if model is None else model
        self.preprocessing = Standardize() if preprocessing is None else preprocessing
        self.calibration = None

    def train(self, x, labels=None, augment=None):
        """Fit the preprocessing on x, then the embedder on the preprocessed x (then frozen).

        Parameters
        ----------
        x : array_like (n, d)
            The training sample (labelled simulation of the known processes), disjoint from
            the reference, the pool and the data of the test.
        labels, augment
            As in :meth:`Embedder.fit`.

        Returns
        -------
        self
        """
        arr = _checks.as_events(x, "x")
        if labels is not None and np.asarray(labels).shape != (arr.shape[0],):
            raise ValueError(f"labels must have shape ({arr.shape[0]},), got {np.asarray(labels).shape}")
        self.preprocessing.fit(arr)
        if augment is None:
            self.embedder.fit(self.preprocessing.transform(arr), labels)
        else:
            self.embedder.fit(self.preprocessing.transform(arr), labels, augment)
        return self

    def transform(self, x) -> np.ndarray:
        """Events in the original features -> the embedding the model sees."""
        return np.asarray(self.embedder.transform(self.preprocessing.transform(x)), dtype=np.float64)

    def fit(self, reference, data, **kwargs):
        """``model.fit(transform(reference), transform(data), **kwargs)``: the fit result."""
        return self.model.fit(self.transform(reference), self.transform(data), **kwargs)

    def calibrate(self, reference, pool, **kwargs):
        """Toys in the embedding: :func:`fastnplm.calibrate` on the embedded reference and pool.

        ``reference`` and ``pool`` are arrays of events (each embedded once); the keyword
        arguments are :func:`fastnplm.calibrate`'s. The calibration is kept as
        ``self.calibration`` for :meth:`test`, :meth:`monitor` and :meth:`report`.
        """
        self.calibration = calibrate(self.model, self.transform(reference), self.transform(pool), **kwargs)
        return self.calibration

    def _calibration(self, calibration):
        cal = self.calibration if calibration is None else calibration
        if cal is None:
            raise ValueError("no calibration: call calibrate(reference, pool, ...) first or pass calibration=")
        return cal

    def test(self, reference, data, calibration=None, **kwargs) -> dict:
        """:meth:`fastnplm.Calibration.test` on the embedded reference and data (keyword arguments are its)."""
        return self._calibration(calibration).test(self.transform(reference), self.transform(data), **kwargs)

    def monitor(self, reference, calibration=None, **kwargs) -> EmbeddedMonitor:
        """A :class:`fastnplm.Monitor` whose batches are events in the original features."""
        return EmbeddedMonitor(self, self._calibration(calibration), reference, **kwargs)

    def flagged(self, reference, data, fit, quantile: float = 0.99) -> dict:
        """Events where the fit puts the largest excess: f̂ above its ``quantile`` over the reference.

        Returns
        -------
        dict
            ``threshold`` (of f̂), boolean masks ``reference`` and ``data``, ``f_reference`` and
            ``f_data`` (f̂ per event), ``n_data`` (flagged data events) and ``n_expected``
            (the reference's weight N(R)/N_R times its flagged events: the count the
            reference predicts there).
        """
        q = float(quantile)
        if not 0 < q < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
        f_ref = np.asarray(fit.predict(self.transform(reference)), dtype=float).ravel()
        f_dat = np.asarray(fit.predict(self.transform(data)), dtype=float).ravel()
        thr = float(np.quantile(f_ref, q))
        m_ref, m_dat = f_ref > thr, f_dat > thr
        n_exp = getattr(fit, "n_expected", None)
        w = (float(n_exp) if n_exp is not None else float(f_dat.size)) / f_ref.size
        return {"threshold": thr, "quantile": q, "reference": m_ref, "data": m_dat, "f_reference": f_ref,
                "f_data": f_dat, "n_data": int(m_dat.sum()), "n_expected": float(w * m_ref.sum())}

    def export_onnx(self, fit, path):
        """One ONNX graph from raw events to f̂: preprocessing, embedding, then the fit's f.

        Input ``x`` (n, d) float64 in the original features; output ``f`` (n,). Needs the
        ``onnx`` package; the embedder must be an :class:`Embedder`.

        Returns
        -------
        onnx.ModelProto
        """
        import tempfile

        from .._optional import require
        from ..io.onnx_export import export_onnx
        onnx = require("onnx", "Pipeline.export_onnx")
        if not hasattr(self.embedder, "export_onnx"):
            raise TypeError(f"{type(self.embedder).__name__} has no ONNX export")
        with tempfile.TemporaryDirectory() as tmp:
            emb = self.embedder.export_onnx(os.path.join(tmp, "embedding.onnx"), preprocessing=self.preprocessing)
            f = export_onnx(fit, os.path.join(tmp, "f.onnx"))
        f = onnx.compose.add_prefix(f, prefix="f_")
        merged = onnx.compose.merge_models(emb, f, io_map=[("embedding", "f_x")])
        for n in merged.graph.node:
            n.output[:] = ["f" if o == "f_f" else o for o in n.output]
        merged.graph.output[0].name = "f"
        onnx.checker.check_model(merged)
        onnx.save(merged, os.fspath(path))
        return merged

    def to_dict(self) -> dict:
        """The preprocessing and the embedder's settings (JSON-friendly)."""
        pre = self.preprocessing.to_dict() if hasattr(self.preprocessing, "to_dict") else repr(self.preprocessing)
        emb = self.embedder.to_dict() if hasattr(self.embedder, "to_dict") else repr(self.embedder)
        return {"preprocessing": pre, "embedder": emb}

    def report(self, reference, data, *, calibration=None, pool=None, toys=200, n_expected=None, sigmas=None,
               seed=0, names=None, path="nplm_report.html", title="NPLM test in a learned embedding",
               quantile=0.99, extra=None) -> dict:
        """:func:`fastnplm.report` for embedded events, with the original features of the flagged events.

        The page holds the null distribution and t, p, Z per width (as ``fastnplm.report``),
        the reconstruction in the embedding (coordinates e1..ek), the reconstruction in the
        original features (the same f̂ per reference event, histogrammed in the raw
        features), and the original features of the events where f̂ is largest
        (:meth:`flagged`): data against the reference's prediction there.

        Parameters
        ----------
        reference, data : array_like (n, d)
            Events in the original features.
        calibration, pool, toys, n_expected, sigmas, seed
            As in :func:`fastnplm.report` (default calibration: ``self.calibration``; else
            ``pool`` is embedded and calibrated).
        names : sequence of str or None
            Names of the original features.
        path, title
            The HTML file (the JSON record next to it, ``.json``) and its title.
        quantile : float
            Flag the events with f̂ above this quantile of f̂ over the reference.
        extra : dict or None
            More JSON-ready entries for the record.

        Returns
        -------
        dict
            The JSON record (also written), with ``"html"`` and ``"json"`` paths.
        """
        from ..ui import html_report as hr

        start = time.perf_counter()
        ref = _checks.as_events(reference, "reference")
        dat = _checks.as_events(data, "data", d=ref.shape[1])
        if names is not None and len(names) != ref.shape[1]:
            raise ValueError(f"names has {len(names)} entries but the events have {ref.shape[1]} features")
        t0 = time.perf_counter()
        ref_e, dat_e = self.transform(ref), self.transform(dat)
        pool_e = None if pool is None else self.transform(pool)
        embed_seconds = time.perf_counter() - t0
        cal = calibration if calibration is not None else self.calibration
        res = hr.analyse(ref_e, dat_e, self.model, calibration=cal, pool=pool_e, toys=toys, n_expected=n_expected,
                         sigmas=sigmas, seed=seed)
        res["summary"]["timings"]["embedding_seconds"] = embed_seconds
        k = ref_e.shape[1]
        figs = hr.figures(ref_e, dat_e, res, names=[f"e{i + 1}" for i in range(k)])
        best = int(np.argmin([row["p"] for row in res["summary"]["per_width"]]))
        fit = res["fits"][best]
        flag = self.flagged(ref, dat, fit, quantile)
        figs += _raw_figures(ref, dat, fit, flag, names)
        summary = res["summary"]
        flagged = {"quantile": flag["quantile"], "threshold": flag["threshold"], "n_data": flag["n_data"],
                   "n_expected": flag["n_expected"], "data_events": np.flatnonzero(flag["data"]).tolist()}
        record = {"title": title, "inputs": {"reference": hr.fingerprint(ref), "data": hr.fingerprint(dat),
                                             **({} if pool is None else {"pool": hr.fingerprint(pool)})},
                  "feature_names": list(names) if names is not None else None, "embedding": self.to_dict(),
                  "embedding_dim": k, **summary, "flagged": flagged, "versions": hr.versions(), **(extra or {})}
        section = hr.section_html(title, summary, figs)
        note = (f"<p>Flagged: {flagged['n_data']} data events with f̂ above its {100 * quantile:g}% quantile over "
                f"the reference (threshold {flagged['threshold']:.3g}), where the reference predicts "
                f"{flagged['n_expected']:.1f}.</p>")
        record["timings"]["total_seconds"] = time.perf_counter() - start
        record = hr.jsonable(record)
        html_path = os.fspath(path)
        json_path = os.path.splitext(html_path)[0] + ".json"
        hr.write_html(html_path, title, [section, note], record)
        with open(json_path, "w") as fh:
            json.dump(record, fh, indent=1)
        return {**record, "html": html_path, "json": json_path}


def _raw_figures(ref, dat, fit, flag, names):
    """The reconstruction and the flagged events in the original features (matplotlib Figures)."""
    from .._optional import require
    require("matplotlib", "the report's plots")
    from matplotlib.figure import Figure

    from ..ui import plot

    d = ref.shape[1]
    n_exp = getattr(fit, "n_expected", None)
    w = np.full(ref.shape[0], (float(n_exp) if n_exp is not None else float(dat.shape[0])) / ref.shape[0])
    fig = Figure(figsize=(3.2 * d, 4.4))
    axes = fig.subplots(2, d, squeeze=False, sharex="col", gridspec_kw={"height_ratios": [3, 1]})
    plot.reconstruction(ref, dat, fit, names=names, axes=axes, f_reference=flag["f_reference"], reference_weights=w,
                        quantile=0.005)
    out = [("Reconstruction in the original features: the same f̂ per reference event, "
            "histogrammed in the raw features", fig)]
    fig = Figure(figsize=(3.2 * d, 3.0))
    for i, ax in enumerate(np.atleast_1d(fig.subplots(1, d, squeeze=False)[0])):
        lo, hi = np.quantile(np.concatenate([ref[:, i], dat[:, i]]), [0.005, 0.995])
        edges = np.linspace(lo, hi, 21)
        ax.hist(ref[flag["reference"], i], edges, weights=w[flag["reference"]], histtype="step", color="C0",
                label="reference (prediction)")
        counts, _ = np.histogram(dat[flag["data"], i], edges)
        ax.errorbar(0.5 * (edges[1:] + edges[:-1]), counts, yerr=np.sqrt(counts), fmt="o", ms=3, color="k",
                    label="data")
        ax.set_xlabel(names[i] if names is not None else f"feature {i}")
        if i == 0:
            ax.set_ylabel("flagged events per bin")
            ax.legend(fontsize="x-small")
    out.append((f"Original features of the flagged events (f̂ above its {100 * flag['quantile']:g}% quantile "
                f"over the reference): {flag['n_data']} in the data, {flag['n_expected']:.1f} predicted", fig))
    return out


class EmbeddedMonitor:
    """:class:`fastnplm.Monitor` on embedded batches: each batch is embedded, then tested.

    Parameters
    ----------
    pipeline : Pipeline
    calibration : fastnplm.Calibration
        Toys of the pipeline's model in the embedding (:meth:`Pipeline.calibrate`).
    reference : array_like (N_R, d)
        The reference in the original features (embedded once here).
    **kwargs
        :class:`fastnplm.Monitor`'s (``sigma_index``, ``threads``, ``reference_weights``).
    """

    def __init__(self, pipeline, calibration, reference, **kwargs):
        self.pipeline = pipeline
        self.monitor = Monitor(calibration, pipeline.transform(reference), **kwargs)

    def fit(self, batch):
        """The fit of one batch (events in the original features)."""
        return self.monitor.fit(self.pipeline.transform(batch))

    def test(self, batch) -> dict:
        """:meth:`fastnplm.Monitor.test` of the embedded batch; ``embed_seconds`` is the embedding's share of ``seconds``."""
        t0 = time.perf_counter()
        z = self.pipeline.transform(batch)
        embed_seconds = time.perf_counter() - t0
        out = self.monitor.test(z)
        out["embed_seconds"] = embed_seconds
        out["seconds"] += embed_seconds
        return out
