"""Reading events: one function, ``load``, from the file formats physicists keep events in.

Every path returns an ``(n, d)`` float64 C-contiguous array, one column per requested feature
in the requested order. The optional readers (uproot, h5py, pyarrow) are imported only when
a file of their format is read.
"""
from __future__ import annotations

import csv
import gzip
import logging
import os

import numpy as np

from .._optional import require

log = logging.getLogger("fastnplm")

FORMATS = {".npy": "npy", ".npz": "npz", ".csv": "csv", ".csv.gz": "csv", ".txt": "csv", ".parquet": "parquet",
           ".pq": "parquet", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".root": "root"}


def load(path, columns=None, tree=None) -> np.ndarray:
    """Events from a file as an ``(n, d)`` float64 array.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy``, ``.npz``, ``.csv`` / ``.csv.gz`` / ``.txt`` (comma-separated, optional
        header line), ``.parquet`` / ``.pq`` (needs ``fastnplm[parquet]``), ``.h5`` /
        ``.hdf5`` / ``.hdf`` (``fastnplm[hdf5]``) or ``.root`` (a TTree, ``fastnplm[root]``).
    columns : sequence of str or int, or None
        Features to read, in this order: names (CSV header, Parquet columns, ROOT branches,
        HDF5 fields or datasets, fields of a structured .npy, arrays of a .npz) or integer
        positions (plain arrays, headerless CSV). None: every column, which must then all be
        numeric.
    tree : str or None
        Which object in the file: the ROOT TTree, the HDF5 dataset or group, the .npz array.
        None: the only one there (an error lists them when there are several).

    Returns
    -------
    numpy.ndarray, shape (n, d), float64

    Raises
    ------
    ValueError
        Unknown extension, missing columns (named, with the available ones), jagged
        (variable-length) branches, an ambiguous or missing ``tree``.
    TypeError
        Non-numeric columns (strings, objects).
    ImportError
        The optional reader is not installed (the message names the extra).
    """
    fname = os.fspath(path)
    fmt = _format(fname)
    if not os.path.exists(fname):
        raise FileNotFoundError(f"no such file: {fname!r}")
    if columns is not None:
        if isinstance(columns, (str, int)):
            columns = [columns]
        columns = list(columns)
        if not columns:
            raise ValueError("columns is empty: pass None for every column or a list of names")
    out = _READERS[fmt](fname, columns, tree)
    if out.ndim == 1:
        out = out.reshape(-1, 1)
    log.debug("loaded %s: %d events x %d features", fname, *out.shape)
    return np.ascontiguousarray(out, dtype=np.float64)


def _format(fname: str) -> str:
    low = fname.lower()
    for ext in sorted(FORMATS, key=len, reverse=True):
        if low.endswith(ext):
            return FORMATS[ext]
    raise ValueError(f"cannot tell the format of {fname!r} from its extension; known: {', '.join(FORMATS)}")


def _numeric(arr: np.ndarray, what: str) -> np.ndarray:
    """float64 view of a numeric or boolean array; TypeError naming ``what`` otherwise."""
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{what} is not numeric (dtype {arr.dtype}); pass columns= with numeric features only")
    return arr.astype(np.float64, copy=False)


def _missing(asked, available, what="column"):
    missing = [c for c in asked if c not in available]
    if missing:
        raise ValueError(f"{what}{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not found; "
                         f"available: {', '.join(map(str, available))}")


def _pick_positions(arr: np.ndarray, columns, what: str) -> np.ndarray:
    """Columns of a plain (n,) or (n, d) array by integer position."""
    arr2 = arr.reshape(-1, 1) if arr.ndim == 1 else arr
    if arr2.ndim != 2:
        raise ValueError(f"{what} has shape {arr.shape}: expected (events,) or (events, features)")
    if columns is None:
        return arr2
    bad = [c for c in columns if isinstance(c, str)]
    if bad:
        raise ValueError(f"{what} is a plain array without column names; select columns by integer position "
                         f"0..{arr2.shape[1] - 1}, not {', '.join(map(repr, bad))}")
    _missing(columns, list(range(arr2.shape[1])), "column position")
    return arr2[:, columns]


def _structured(arr: np.ndarray, columns, what: str) -> np.ndarray:
    names = list(arr.dtype.names or ())
    cols = names if columns is None else columns
    _missing(cols, names, "field")
    return np.column_stack([_numeric(arr[c], f"field {c!r} of {what}") for c in cols])


def _read_array(arr: np.ndarray, columns, what: str) -> np.ndarray:
    if arr.dtype.names:
        return _structured(arr, columns, what)
    return _numeric(_pick_positions(arr, columns, what), what)


def _read_npy(fname, columns, tree):
    if tree is not None:
        raise ValueError(f"tree={tree!r} does not apply to a .npy file (it holds one array)")
    return _read_array(np.load(fname, allow_pickle=False), columns, fname)


def _read_npz(fname, columns, tree):
    with np.load(fname, allow_pickle=False) as z:
        keys = list(z.files)
        if tree is None and columns is not None and all(isinstance(c, str) and c in keys for c in columns):
            # one 1-D array per feature
            arrays = [z[c] for c in columns]
            for c, a in zip(columns, arrays):
                if a.ndim != 1 or len(a) != len(arrays[0]):
                    raise ValueError(f"array {c!r} of {fname} has shape {a.shape}; per-feature arrays must be 1-D "
                                     f"of equal length ({len(arrays[0])})")
            return np.column_stack([_numeric(a, f"array {c!r}") for c, a in zip(columns, arrays)])
        if tree is None:
            if len(keys) != 1:
                raise ValueError(f"{fname} holds {len(keys)} arrays ({', '.join(keys)}): pass tree= to choose one, "
                                 "or columns= naming 1-D arrays")
            tree = keys[0]
        _missing([tree], keys, "array")
        return _read_array(z[tree], columns, f"array {tree!r} of {fname}")


def _open_text(fname):
    return gzip.open(fname, "rt", newline="") if fname.lower().endswith(".gz") else open(fname, newline="")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _read_csv(fname, columns, tree):
    if tree is not None:
        raise ValueError(f"tree={tree!r} does not apply to a CSV file")
    with _open_text(fname) as fh:
        reader = csv.reader(fh)
        first = next(reader, None)
        second = next(reader, None)
    if first is None:
        raise ValueError(f"{fname} is empty")
    header = not all(_is_number(s) for s in first)
    names = [s.strip() for s in first] if header else list(range(len(first)))
    if columns is None:
        cols = names
    else:
        if not header:
            return _read_csv_positions(fname, columns, names)
        cols = [c if isinstance(c, str) else names[c] if isinstance(c, int) and 0 <= c < len(names) else c
                for c in columns]
    _missing(cols, names)
    idx = [names.index(c) for c in cols]
    row = second if header else first
    if row is None:
        raise ValueError(f"{fname} has a header but no events")
    bad = [names[i] for i in idx if i < len(row) and not _is_number(row[i])]
    if bad:
        raise TypeError(f"column{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))} of {fname} "
                        f"{'are' if len(bad) > 1 else 'is'} not numeric (first event: "
                        f"{', '.join(repr(row[names.index(b)]) for b in bad)}); choose numeric columns with columns=")
    try:
        out = np.loadtxt(fname, delimiter=",", skiprows=1 if header else 0, usecols=idx, ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise TypeError(f"non-numeric value in the selected columns of {fname}: {err}") from err
    return out


def _read_csv_positions(fname, columns, names):
    bad = [c for c in columns if not isinstance(c, int)]
    if bad:
        raise ValueError(f"{fname} has no header line; select columns by integer position 0..{len(names) - 1}, "
                         f"not {', '.join(map(repr, bad))}")
    _missing(columns, names, "column position")
    return np.loadtxt(fname, delimiter=",", usecols=columns, ndmin=2, dtype=np.float64)


def _read_parquet(fname, columns, tree):
    if tree is not None:
        raise ValueError(f"tree={tree!r} does not apply to a Parquet file")
    pq = require("pyarrow.parquet", "reading Parquet files")
    pa = require("pyarrow", "reading Parquet files")
    schema = pq.read_schema(fname)
    names = list(schema.names)
    cols = names if columns is None else [names[c] if isinstance(c, int) and 0 <= c < len(names) else c
                                          for c in columns]
    _missing(cols, names)
    for c in cols:
        typ = schema.field(c).type
        if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
            raise ValueError(f"column {c!r} of {fname} is a list per event ({typ}), a jagged column: "
                             "flatten it to fixed features first")
        if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ)):
            raise TypeError(f"column {c!r} of {fname} is not numeric ({typ}); choose numeric columns with columns=")
    table = pq.read_table(fname, columns=cols)
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in cols])


def _read_hdf5(fname, columns, tree):
    h5py = require("h5py", "reading HDF5 files")
    with h5py.File(fname, "r") as f:
        if tree is None:
            datasets = [k for k, v in f.items() if isinstance(v, h5py.Dataset)]
            if len(datasets) == 1 and len(f) == 1:
                obj = f[datasets[0]]
            elif columns is not None and all(isinstance(c, str) for c in columns):
                obj = f  # one 1-D dataset per feature at the top level
            else:
                raise ValueError(f"{fname} holds {', '.join(f.keys()) or 'nothing'}: pass tree= naming the dataset "
                                 "or group, or columns= naming 1-D datasets")
        else:
            _missing([tree], _hdf5_names(f), "dataset or group")
            obj = f[tree]
        if isinstance(obj, h5py.Dataset):
            return _read_array(obj[()], columns, f"dataset {obj.name!r} of {fname}")
        names = [k for k, v in obj.items() if isinstance(v, h5py.Dataset)]
        cols = names if columns is None else columns
        _missing(cols, names, "dataset")
        arrays = [obj[c][()] for c in cols]
        for c, a in zip(cols, arrays):
            if a.ndim != 1 or len(a) != len(arrays[0]):
                raise ValueError(f"dataset {c!r} of {fname} has shape {a.shape}; per-feature datasets must be 1-D "
                                 f"of equal length ({len(arrays[0])})")
        return np.column_stack([_numeric(a, f"dataset {c!r} of {fname}") for c, a in zip(cols, arrays)])


def _hdf5_names(f):
    names = []
    f.visit(names.append)
    return names


def _read_root(fname, columns, tree):
    uproot = require("uproot", "reading ROOT files")
    ak = require("awkward", "reading ROOT files")
    with uproot.open(fname) as f:
        kinds = ("TTree", "TNtuple", "TNtupleD", "ROOT::RNTuple")
        trees = list(dict.fromkeys(k.split(";")[0] for k, cls in f.classnames().items() if cls in kinds))
        if tree is None:
            if len(trees) != 1:
                raise ValueError(f"{fname} holds {len(trees)} trees ({', '.join(trees) or 'none'}): pass tree=")
            tree = trees[0]
        _missing([tree], trees, "tree")
        t = f[tree]
        names = list(t.keys())
        cols = names if columns is None else [names[c] if isinstance(c, int) and 0 <= c < len(names) else c
                                              for c in columns]
        _missing(cols, names, "branch")
        return np.column_stack([_root_branch(ak, t[c].array(), f"branch {c!r} of {fname}:{tree}") for c in cols])


def _root_branch(ak, arr, what):
    """One scalar-per-event branch as a float64 array; jagged or non-numeric branches refused."""
    typ = ak.type(arr).content
    if typ.parameter("__array__") in ("string", "bytestring"):
        raise TypeError(f"{what} holds strings, not numbers")
    if isinstance(typ, (ak.types.ListType,)):
        raise ValueError(f"{what} is jagged (a variable number of values per event, type {typ}); "
                         "select scalar numeric branches, or reduce it to fixed features first")
    if isinstance(typ, ak.types.RegularType):
        raise ValueError(f"{what} has {typ.size} values per event (type {typ}); select scalar branches")
    if not isinstance(typ, ak.types.NumpyType):
        raise TypeError(f"{what} is not a number per event (type {typ})")
    return _numeric(np.asarray(ak.to_numpy(arr)), what)


_READERS = {"npy": _read_npy, "npz": _read_npz, "csv": _read_csv, "parquet": _read_parquet, "hdf5": _read_hdf5,
            "root": _read_root}
