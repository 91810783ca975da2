"""Fitted models on disk: the versioned binary format the C++ core reads and writes.

A saved model is f(x) alone -- kernel (centers, alpha, sigma) or neural (layer sizes and
weights) -- plus the feature preprocessing it was fitted with, so that software without
Python (trigger or data-quality code linking ``fastnplm::fastnplm``, class
``fastnplm::Model``) evaluates exactly the f that was fitted. The layout (version 1,
little-endian, float64) is specified in ``cpp/include/fastnplm/model.hpp``; this module is a
second, independent implementation of it (tests cross-check the two).
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field

import numpy as np

from .. import _checks, _core

MAGIC = b"FNPLMMOD"
FORMAT_VERSION = 1
KIND_KERNEL, KIND_NEURAL = 1, 2
_MAX_COUNT = 1 << 40


def _fnv1a(data: bytes) -> int:
    """FNV-1a 64-bit hash (the format's integrity check)."""
    h = 14695981039346656037
    for chunk in (data[i:i + 65536] for i in range(0, len(data), 65536)):
        for b in chunk:
            h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


@dataclass
class SavedModel:
    """A model read from (or ready to be written to) a model file.

    ``predict(x)`` evaluates f at events x given in the original feature space: the stored
    preprocessing ``(x - shift) / scale`` is applied first.
    """

    kind: str                      # "kernel" or "neural"
    d: int
    metadata: dict = field(default_factory=dict)
    shift: np.ndarray | None = None
    scale: np.ndarray | None = None
    sigma: float | None = None     # kernel
    centers: np.ndarray | None = None
    alpha: np.ndarray | None = None
    hidden: tuple | None = None    # neural
    params: np.ndarray | None = None

    def predict(self, x, threads=None) -> np.ndarray:
        """f(x) at events x, shape (n, d) or (n,) for one feature."""
        x = _checks.as_events(x, "x", d=self.d)
        if self.shift is not None:
            x = np.ascontiguousarray((x - self.shift) / self.scale)
        th = _checks.threads_arg(threads)
        if self.kind == "kernel":
            assert self.centers is not None and self.sigma is not None and self.alpha is not None
            return _core.kernel_mv(x, self.centers, self.sigma, self.alpha, th)
        assert self.hidden is not None and self.params is not None
        return _core.mlp_predict(x, list(self.hidden), self.params, th)


def _preprocessing_arrays(preprocessing, d):
    if preprocessing is None:
        return None, None
    if isinstance(preprocessing, (tuple, list)) and len(preprocessing) == 2:
        shift, scale = preprocessing
    elif hasattr(preprocessing, "offset_") and hasattr(preprocessing, "scale_"):  # Standardize, DivideByMean
        if preprocessing.scale_ is None:
            raise ValueError(f"{type(preprocessing).__name__} is not fitted: call .fit(reference) first")
        shift, scale = preprocessing.offset_, preprocessing.scale_
    else:
        raise TypeError("preprocessing must be a fitted fastnplm.preprocessing.Standardize/DivideByMean or a (shift, scale) pair "
                        f"(x is mapped to (x - shift) / scale), got {type(preprocessing).__name__}")
    shift = np.broadcast_to(np.asarray(shift, dtype=np.float64), (d,)).copy()
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (d,)).copy()
    if not (np.isfinite(shift).all() and np.isfinite(scale).all()) or (scale <= 0).any():
        raise ValueError("preprocessing shift and scale must be finite, with every scale > 0")
    return shift, scale


def as_saved_model(fit, preprocessing=None, metadata=None) -> SavedModel:
    """The SavedModel of a kernel or neural fit result (``KernelFitResult``/``NeuralFitResult``)."""
    if isinstance(fit, SavedModel):
        return fit
    meta = {"fastnplm": _core.version, **(metadata or {})}
    if hasattr(fit, "centers") and hasattr(fit, "alpha"):
        centers = np.ascontiguousarray(fit.centers, dtype=np.float64)
        d = centers.shape[1]
        shift, scale = _preprocessing_arrays(preprocessing, d)
        meta.setdefault("t", float(fit.t))
        return SavedModel("kernel", d, meta, shift, scale, sigma=float(fit.sigma), centers=centers,
                          alpha=np.ascontiguousarray(fit.alpha, dtype=np.float64))
    if hasattr(fit, "params") and hasattr(fit, "hidden"):
        d = int(fit.d)
        shift, scale = _preprocessing_arrays(preprocessing, d)
        meta.setdefault("t", float(fit.t))
        return SavedModel("neural", d, meta, shift, scale, hidden=tuple(int(h) for h in fit.hidden),
                          params=np.ascontiguousarray(fit.params, dtype=np.float64))
    raise TypeError(f"cannot save a {type(fit).__name__}: expected a KernelFitResult, NeuralFitResult or SavedModel")


def save_model(fit, path, preprocessing=None, metadata=None) -> SavedModel:
    """Writes f of a fit (kernel or neural) to a model file that C++ and Python read.

    Parameters
    ----------
    fit : KernelFitResult, NeuralFitResult or SavedModel
    path : str or os.PathLike
        Replaced atomically (written to ``path + ".part"``, then renamed).
    preprocessing : Standardize, DivideByMean or (shift, scale), optional
        The map the model's features went through, ``x -> (x - shift) / scale``; stored so
        that evaluation takes events in the original feature space.
    metadata : dict, optional
        JSON-serialisable facts stored with the model (settings, provenance).

    Returns
    -------
    SavedModel
    """
    m = as_saved_model(fit, preprocessing, metadata)
    try:
        meta = json.dumps(m.metadata, sort_keys=True).encode("utf-8")
    except TypeError as err:
        raise TypeError(f"metadata must be JSON-serialisable: {err}") from None
    parts = [MAGIC, struct.pack("<IIQQ", FORMAT_VERSION, KIND_KERNEL if m.kind == "kernel" else KIND_NEURAL,
                                m.d, len(meta)), meta]
    if m.shift is None or m.scale is None:
        parts.append(struct.pack("<I", 0))
    else:
        parts += [struct.pack("<I", 1), m.shift.astype("<f8").tobytes(), m.scale.astype("<f8").tobytes()]
    if m.kind == "kernel":
        assert m.alpha is not None and m.centers is not None
        parts += [struct.pack("<Qd", m.alpha.shape[0], m.sigma), m.centers.astype("<f8").tobytes(),
                  m.alpha.astype("<f8").tobytes()]
    else:
        assert m.hidden is not None and m.params is not None
        parts += [struct.pack(f"<Q{len(m.hidden)}Q", len(m.hidden), *m.hidden), m.params.astype("<f8").tobytes()]
    body = b"".join(parts)
    path = os.fspath(path)
    tmp = path + ".part"
    with open(tmp, "wb") as fh:
        fh.write(body + struct.pack("<Q", _fnv1a(body)))
    os.replace(tmp, path)
    return m


class _Cursor:
    def __init__(self, buf, path):
        self.buf, self.pos, self.path = buf, 0, path

    def fail(self, why):
        raise ValueError(f"model file {self.path}: {why}")

    def take(self, n, what):
        if n > len(self.buf) - 8 - self.pos:
            self.fail(f"truncated in {what}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt, what):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def count(self, what, lo=1):
        (v,) = self.unpack("<Q", what)
        if not lo <= v <= _MAX_COUNT:
            self.fail(f"{what} = {v} is out of range")
        return v

    def reals(self, n, what):
        a = np.frombuffer(self.take(8 * n, what), dtype="<f8").astype(np.float64)
        if not np.isfinite(a).all():
            self.fail(f"{what} has a non-finite value")
        return a


def load_model(path) -> SavedModel:
    """Reads a model file written by :func:`save_model` or by C++ ``fastnplm::Model::save``.

    Raises ValueError naming the problem for a file that is not a model, of a newer format
    version, truncated or corrupt (hash mismatch).
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        buf = fh.read()
    c = _Cursor(buf, path)
    if len(buf) < 16 or buf[:8] != MAGIC:
        c.fail('not a fastnplm model (magic "FNPLMMOD" missing)')
    c.take(8, "magic")
    (version,) = c.unpack("<I", "version")
    if not 1 <= version <= FORMAT_VERSION:
        c.fail(f"format version {version} is not supported (this library reads up to {FORMAT_VERSION})")
    if _fnv1a(buf[:-8]) != struct.unpack("<Q", buf[-8:])[0]:
        c.fail("hash mismatch: the file is truncated or corrupt")
    (kind,) = c.unpack("<I", "kind")
    if kind not in (KIND_KERNEL, KIND_NEURAL):
        c.fail(f"unknown model kind {kind}")
    d = c.count("d")
    meta_len = c.count("metadata length", lo=0)
    try:
        metadata = json.loads(c.take(meta_len, "metadata").decode("utf-8")) if meta_len else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        metadata = {"raw": buf[c.pos - meta_len:c.pos].decode("utf-8", "replace")}
    (flag,) = c.unpack("<I", "preprocessing flag")
    if flag > 1:
        c.fail(f"bad preprocessing flag {flag}")
    shift = scale = None
    if flag:
        shift, scale = c.reals(d, "preprocessing shift"), c.reals(d, "preprocessing scale")
        if (scale <= 0).any():
            c.fail("preprocessing scale <= 0")
    if kind == KIND_KERNEL:
        m = c.count("M")
        (sigma,) = c.unpack("<d", "sigma")
        if not (np.isfinite(sigma) and sigma > 0):
            c.fail("sigma must be finite and > 0")
        centers = c.reals(m * d, "centers").reshape(m, d)
        model = SavedModel("kernel", d, metadata, shift, scale, sigma=float(sigma), centers=centers,
                           alpha=c.reals(m, "alpha"))
    else:
        k = c.count("hidden layer count")
        hidden = tuple(c.count("hidden width") for _ in range(k))
        n_params, nin = 0, d
        for h in (*hidden, 1):
            n_params += (nin + 1) * h
            nin = h
        model = SavedModel("neural", d, metadata, shift, scale, hidden=hidden, params=c.reals(n_params, "network parameters"))
    if c.pos != len(buf) - 8:
        c.fail(f"{len(buf) - 8 - c.pos} unexpected bytes before the hash")
    return model
