"""The monitoring service's configuration: a TOML file (or the same structure as a dict), checked
key by key before any work, and the channels' event selections.

Layout of the file (every key is described in docs/dqm.md)::

    [service]   database, threads
    [source]    directory, pattern, poll_seconds, tree
    [alarm]     p, run_p, run_length
    [dashboard] folder, history, refresh_seconds, reconstruction, bins
    [defaults]  any channel key, taken by every channel that does not set it
    [[channel]] name, reference, columns, tree, selection, preprocessing, pool, calibration,
                toys, n_expected, toy_seed, model = {M, sigma, sigmas, lam, ...}

Relative paths are relative to the configuration file's folder (for a dict: ``base``).
"""
from __future__ import annotations

import ast
import copy
import os
import re

import numpy as np

# section -> {key: default}; None marks a key without default (optional or required below)
SERVICE = {"database": "dqm.sqlite", "threads": 1}
SOURCE = {"directory": None, "pattern": "*.npz", "poll_seconds": 1.0, "tree": None}
ALARM = {"p": 0.01, "run_p": 0.05, "run_length": 3}
DASHBOARD = {"folder": "dashboard", "history": 200, "refresh_seconds": 5.0, "reconstruction": True, "bins": 30}
CHANNEL = {"name": None, "reference": None, "columns": None, "tree": None, "selection": None, "preprocessing": None,
           "pool": None, "calibration": None, "toys": 100, "n_expected": None, "toy_seed": 0, "model": None}
# the KernelNPLM settings a channel may choose (sigmas: several widths, calibrated together)
MODEL = {"M": 50, "sigma": None, "sigmas": None, "lam": 1e-6, "solver": "newton-step", "center_pool": None,
         "seed": 0, "cg_tol": None, "max_iter": None, "grad_tol": None, "max_newton": None, "spectral_tol": None}
PREPROCESSING = (None, "standardize", "divide-by-mean")
SECTIONS: dict = {"service": SERVICE, "source": SOURCE, "alarm": ALARM, "dashboard": DASHBOARD}

# a channel's name is used in file names, SQL rows, and HTML ids
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(ValueError):
    """A configuration that cannot run: the message names the file, the section or channel, and the key."""


def load_config(source, base=None) -> dict:
    """Read and check a monitoring configuration.

    Parameters
    ----------
    source : str, os.PathLike or dict
        A TOML file, or its content as a dict (sections as nested dicts, channels as the list
        ``"channel"``).
    base : str or None
        Folder that relative paths start from (default: the file's folder, or the current
        directory for a dict).

    Returns
    -------
    dict
        Every section with its defaults filled in, paths made absolute, and ``"channels"``: one
        dict per channel with the defaults merged in (``model`` merged key by key) and its
        selection parsed (``"selection_columns"``).

    Raises
    ------
    ConfigError
        Unknown sections or keys, wrong types, missing required keys, duplicate channel names,
        a selection outside the allowed expressions.
    """
    if isinstance(source, dict):
        raw, where = copy.deepcopy(source), "config"
        base = os.path.abspath(base or os.getcwd())
    else:
        import tomllib

        path = os.fspath(source)
        where = path
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"no such configuration file: {path!r}") from None
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from None
        base = os.path.abspath(base or os.path.dirname(os.path.abspath(path)))
    known = set(SECTIONS) | {"defaults", "channel"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown section{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(known))})")
    out: dict = {"base": base, "file": None if isinstance(source, dict) else os.path.abspath(where)}
    for section, keys in SECTIONS.items():
        out[section] = _section(raw.get(section, {}), keys, f"{where}: [{section}]")
    svc, src, alarm, dash = out["service"], out["source"], out["alarm"], out["dashboard"]
    svc["database"] = _path(base, _string(svc["database"], f"{where}: [service] database"))
    svc["threads"] = _count(svc["threads"], f"{where}: [service] threads")
    if src["directory"] is not None:
        src["directory"] = _path(base, _string(src["directory"], f"{where}: [source] directory"))
    _string(src["pattern"], f"{where}: [source] pattern")
    _number(src["poll_seconds"], f"{where}: [source] poll_seconds")
    _probability(alarm["p"], f"{where}: [alarm] p")
    _probability(alarm["run_p"], f"{where}: [alarm] run_p")
    if isinstance(alarm["run_length"], bool) or not isinstance(alarm["run_length"], int) or alarm["run_length"] < 0:
        raise ConfigError(f"{where}: [alarm] run_length must be an integer >= 0 (0: no run alarm), "
                          f"got {alarm['run_length']!r}")
    if dash["folder"] not in (None, ""):
        dash["folder"] = _path(base, _string(dash["folder"], f"{where}: [dashboard] folder"))
    else:
        dash["folder"] = None
    _count(dash["history"], f"{where}: [dashboard] history")
    _count(dash["bins"], f"{where}: [dashboard] bins")
    _number(dash["refresh_seconds"], f"{where}: [dashboard] refresh_seconds")
    if not isinstance(dash["reconstruction"], bool):
        raise ConfigError(f"{where}: [dashboard] reconstruction must be true or false")

    defaults = raw.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{where}: [defaults] must be a table")
    _keys(defaults, CHANNEL, f"{where}: [defaults]")
    if "name" in defaults:
        raise ConfigError(f"{where}: [defaults] cannot set a channel's name")
    channels = raw.get("channel", [])
    if isinstance(channels, dict) or not isinstance(channels, list) or not channels:
        raise ConfigError(f"{where}: no channels: add one [[channel]] table per channel")
    out["channels"], seen = [], set()
    for i, ch in enumerate(channels):
        label = f"{where}: channel {ch.get('name', i + 1)!r}" if isinstance(ch, dict) else f"{where}: channel {i + 1}"
        if not isinstance(ch, dict):
            raise ConfigError(f"{label} must be a table")
        _keys(ch, CHANNEL, label)
        model = {**(defaults.get("model") or {}), **(ch.get("model") or {})}
        merged = {**CHANNEL, **defaults, **ch, "model": model}
        parsed = _channel(merged, base, label)
        if parsed["name"] in seen:
            raise ConfigError(f"{label}: the name is used by another channel")
        seen.add(parsed["name"])
        out["channels"].append(parsed)
    return out


def _channel(ch: dict, base: str, label: str) -> dict:
    name = ch["name"]
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{label}: name must be 1-64 letters, digits, '_', '.' or '-' (starting with a letter "
                          f"or digit), got {name!r}")
    for key in ("reference", "columns", "n_expected"):
        if ch[key] is None:
            raise ConfigError(f"{label}: {key!r} is required")
    ch["reference"] = _path(base, _string(ch["reference"], f"{label}: reference"))
    cols = ch["columns"]
    if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols):
        raise ConfigError(f"{label}: columns must be a non-empty list of column names, got {cols!r}")
    if len(set(cols)) != len(cols):
        raise ConfigError(f"{label}: columns repeats a name: {cols}")
    if ch["tree"] is not None:
        _string(ch["tree"], f"{label}: tree")
    if ch["pool"] is not None:
        ch["pool"] = _path(base, _string(ch["pool"], f"{label}: pool"))
    cal = ch["calibration"] if ch["calibration"] is not None else os.path.join("calibrations", f"{name}.fnplm")
    ch["calibration"] = _path(base, _string(cal, f"{label}: calibration"))
    if ch["preprocessing"] not in PREPROCESSING:
        raise ConfigError(f"{label}: preprocessing must be one of \"standardize\", \"divide-by-mean\" "
                          f"(or absent), got {ch['preprocessing']!r}")
    ch["toys"] = _count(ch["toys"], f"{label}: toys")
    ch["n_expected"] = _number(ch["n_expected"], f"{label}: n_expected")
    if isinstance(ch["toy_seed"], bool) or not isinstance(ch["toy_seed"], int):
        raise ConfigError(f"{label}: toy_seed must be an integer, got {ch['toy_seed']!r}")
    ch["selection_columns"] = []
    if ch["selection"] is not None:
        sel = Selection(_string(ch["selection"], f"{label}: selection"), label)
        ch["selection_columns"] = sel.columns
    model = ch["model"]
    _keys(model, MODEL, f"{label}: model")
    if model.get("sigma") is not None and model.get("sigmas") is not None:
        raise ConfigError(f"{label}: model sets both sigma and sigmas; give one")
    sigmas = model.get("sigmas")
    if sigmas is not None and (not isinstance(sigmas, list) or not sigmas
                               or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0
                                          for s in sigmas)):
        raise ConfigError(f"{label}: model sigmas must be a non-empty list of positive numbers, got {sigmas!r}")
    ch["model"] = {**{k: v for k, v in MODEL.items() if v is not None}, **model}
    return ch


def _section(raw, keys: dict, label: str) -> dict:
    if not isinstance(raw, dict):
        raise ConfigError(f"{label} must be a table")
    _keys(raw, keys, label)
    return {**keys, **raw}


def _keys(raw: dict, keys: dict, label: str) -> None:
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise ConfigError(f"{label}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(keys)})")


def _path(base: str, value: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(value)))


def _string(value, label: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{label} must be a non-empty string, got {value!r}")
    return value


def _number(value, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{label} must be a positive number, got {value!r}")
    return float(value)


def _count(value, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{label} must be an integer >= 1, got {value!r}")
    return value


def _probability(value, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(f"{label} must be a probability between 0 and 1, got {value!r}")
    return float(value)


# The selection language: a Python expression over column names with numbers, arithmetic,
# comparisons (chains too), and/or/not, and a few numpy functions. Nothing else is evaluated:
# the configuration cannot run code.
FUNCTIONS = {"abs": np.abs, "sqrt": np.sqrt, "log": np.log, "exp": np.exp, "sin": np.sin, "cos": np.cos,
             "tan": np.tan, "arctan2": np.arctan2, "hypot": np.hypot, "minimum": np.minimum, "maximum": np.maximum}
_BINARY = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power,
           ast.Mod: np.mod}
_COMPARE = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
            ast.Eq: np.equal, ast.NotEq: np.not_equal}


class Selection:
    """An event selection such as ``"q > 0 and abs(eta) < 2.4"``, evaluated on named columns.

    Parameters
    ----------
    text : str
        A Python expression using column names, numbers, ``+ - * / ** %``, comparisons,
        ``and``, ``or``, ``not`` and the functions of ``FUNCTIONS`` (abs, sqrt, log, ...).
    label : str
        Where the expression comes from, for error messages.

    Attributes
    ----------
    columns : list of str
        The column names the expression reads, in order of appearance.
    """

    def __init__(self, text: str, label: str = "selection"):
        self.text = text
        try:
            self.tree = ast.parse(text, mode="eval").body
        except SyntaxError as err:
            raise ConfigError(f"{label}: selection {text!r} is not an expression: {err.msg}") from None
        self.columns: list = []
        self._check(self.tree, label)

    def _check(self, node, label) -> None:
        if isinstance(node, ast.Name):
            if node.id not in FUNCTIONS and node.id not in self.columns:
                self.columns.append(node.id)
            return
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
                raise ConfigError(f"{label}: selection {self.text!r}: only the functions "
                                  f"{', '.join(FUNCTIONS)} may be called, with positional arguments")
            for a in node.args:
                self._check(a, label)
            return
        allowed: tuple = (ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp, ast.Compare,
                   *_BINARY, *_COMPARE)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return
        if not isinstance(node, allowed):
            raise ConfigError(f"{label}: selection {self.text!r}: {ast.unparse(node) or type(node).__name__!r} "
                              "is not allowed (column names, numbers, arithmetic, comparisons, and/or/not, "
                              f"{', '.join(FUNCTIONS)})")
        for child in ast.iter_child_nodes(node):
            self._check(child, label)

    def mask(self, columns: dict) -> np.ndarray:
        """Boolean mask of the events passing, from ``{name: 1-D array}``."""
        with np.errstate(all="ignore"):  # sqrt(-1) or x / 0 is NaN or inf: fails every comparison
            out = self._eval(self.tree, columns)
        out = np.asarray(out)
        if out.dtype != bool:
            raise ValueError(f"selection {self.text!r} is not a condition (it gives numbers, not true/false)")
        return out

    def _eval(self, node, cols):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return cols[node.id]
        if isinstance(node, ast.Call):
            return FUNCTIONS[node.func.id](*[self._eval(a, cols) for a in node.args])  # type: ignore[union-attr]
        if isinstance(node, ast.BoolOp):
            values = [self._eval(v, cols) for v in node.values]
            op = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            out = values[0]
            for v in values[1:]:
                out = op(out, v)
            return out
        if isinstance(node, ast.UnaryOp):
            v = self._eval(node.operand, cols)
            return np.logical_not(v) if isinstance(node.op, ast.Not) else (-v if isinstance(node.op, ast.USub) else v)
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](self._eval(node.left, cols), self._eval(node.right, cols))
        if isinstance(node, ast.Compare):  # a < b < c: (a < b) and (b < c)
            left, out = self._eval(node.left, cols), True
            for op, right_node in zip(node.ops, node.comparators):
                right = self._eval(right_node, cols)
                out = np.logical_and(out, _COMPARE[type(op)](left, right))
                left = right
            return out
        raise ValueError(f"cannot evaluate {ast.unparse(node)!r}")  # unreachable: _check refused it
