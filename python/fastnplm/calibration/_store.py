"""The calibration's store: an append-only JSON-lines file, its header (a fingerprint of every
setting that changes the toys) and its records (one per finished toy), fsynced as toys complete.
A torn last record is dropped on read; a store of other settings is refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

import numpy as np

from .._info import resolve_backend
from ..models.neural import NeuralNPLM

log = logging.getLogger("fastnplm")

STORE_VERSION = 1


MODEL_KEYS = ("M", "lam", "solver", "penalties", "cg_tol", "max_iter", "grad_tol", "max_newton", "seed", "hessian",
               "center_pool", "spectral_tol")
NEURAL_KEYS = ("hidden", "clip", "epochs", "lr", "seed", "optimizer", "beta1", "beta2", "eps", "dtype",
               "restarts", "newton_tol", "coarse")  # the last three recorded for optimizer="newton" only


def model_spec(model, path) -> dict:
    if isinstance(model, NeuralNPLM):
        keys = NEURAL_KEYS if model.optimizer == "newton" else NEURAL_KEYS[:-3]  # older stores keep matching
        spec = {"kind": "neural", **{k: getattr(model, k) for k in keys}}
        if model.resolved_backend() == "cuda":
            spec["backend"] = "cuda"  # toys fitted on the device: resume and refit there too
        return spec
    spec = {k: getattr(model, k) for k in MODEL_KEYS}
    if resolve_backend(model.backend) == "cuda":
        spec["backend"] = "cuda"
    spec["centers"] = None if model.centers is None else "given"
    if path in ("spectral", "shared"):
        spec["hessian"] = path  # the solver the toys (and so the observed data) go through
    return spec


def fingerprint(model, reference, pool, n_expected, sigmas, seed, path, n_reference, nuisances=None,
                 nu_true=None, weights=None) -> dict:
    """What a store's toys depend on; a store written with anything else is refused."""
    h = hashlib.sha256()
    for arr in (reference, pool):
        if callable(arr):
            h.update(repr(arr).encode())
        else:
            h.update(np.ascontiguousarray(arr).tobytes())
    if getattr(model, "centers", None) is not None:
        h.update(np.ascontiguousarray(model.centers).tobytes())
    out = {"version": STORE_VERSION, "model": model_spec(model, path), "sigmas": list(sigmas),
           "n_expected": float(n_expected), "seed": int(seed), "path": path, "data_sha256": h.hexdigest()}
    if weights is not None:  # equal weights leave the fingerprint as it always was
        out["reference_weights_sha256"] = weights_sha256(weights)
    if n_reference is not None:
        out["n_reference"] = int(n_reference)  # a reference generator: each toy draws this many events
    if nuisances:
        out["nuisances"] = nuisance_spec(nuisances)
        out["nu_true"] = dict(nu_true or {})
    return json.loads(json.dumps(out))


def weights_sha256(weights) -> str:
    """The hash a store records of its reference weights (float64 bytes)."""
    return hashlib.sha256(np.ascontiguousarray(weights, dtype=np.float64).tobytes()).hexdigest()


def nuisance_spec(nuisances) -> list:
    """How a store records its nuisances (names, widths, kinds, central values, a hash of the
    shape coefficients): the data must be fitted with the same ones."""
    return json.loads(json.dumps([
        {"name": x.name, "sigma": x.sigma, "kind": x.kind, "central": x.central,
         "coefficients_sha256": None if x.coefficients is None else hashlib.sha256(
             np.ascontiguousarray(x.coefficients.a).tobytes()
             + np.ascontiguousarray(x.coefficients.centers).tobytes()).hexdigest()}
        for x in nuisances]))


def store_header(path):
    """The header of an existing store, or None."""
    if path is None or not os.path.exists(path):
        return None
    with open(path, "rb") as fh:
        first = fh.readline()
    if not first.strip():
        return None
    try:
        header = json.loads(first)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path!r} is not a fastnplm calibration store: {err}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path!r} is not a fastnplm calibration store")
    return header


def read_store(path, header):
    """Finished toys of a store; a torn last line is dropped, other settings are refused."""
    records = {}
    stored = store_header(path)
    if stored is None:
        return records
    if stored != header:
        raise ValueError(f"store {path!r} was written with other settings (model, widths, data, n_expected "
                         f"or seed); use a new store path.\n stored: {stored}\n now:    {header}")
    with open(path, "rb") as fh:
        lines = fh.read().split(b"\n")
    for line in lines[1:]:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            log.warning("store %s: dropping a partial record (interrupted write)", path)
            continue
        records[rec["k"]] = rec
    return records


def open_store(store, header):
    new = not os.path.exists(store) or os.path.getsize(store) == 0
    fh = open(store, "ab")
    if new:
        fh.write((json.dumps(header) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())
    else:  # a torn last line must not glue itself to the next record (blank lines are skipped)
        fh.write(b"\n")
    return fh
