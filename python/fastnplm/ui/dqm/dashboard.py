"""The monitoring dashboard: a static site rewritten after every batch, and a read-only server for it.

The folder holds two files: ``index.html`` (the page: styles and script inline, no external
resources, so it works offline and from ``file://``) and ``data.js`` (``window.DQM_DATA = {...}``,
the snapshot of the history, replaced atomically). The open page re-reads ``data.js`` every
``refresh_seconds`` and redraws: per channel the Z history with the alarm threshold, the latest
batch's reconstruction, the settings; the lists of alarms and errors.

:func:`serve` serves that folder over HTTP, read-only (:mod:`fastnplm.ui.dqm.server`): GET and
HEAD of the files directly in it, nothing else (no listing, no sub-folders, no path outside it;
other methods get 405).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from importlib import resources

from scipy import stats


log = logging.getLogger("fastnplm")

def template() -> str:
    """The page (``index.html``), shipped with the package."""
    return resources.files(__package__).joinpath("dashboard.html").read_text(encoding="utf-8")


def snapshot(history, config: dict) -> dict:
    """The dashboard's data from the history: per channel (in the configuration's order) its
    status, settings, fingerprints, the latest ``[dashboard] history`` results (Z, p, alarm, per
    width Z), the latest result and reconstruction; the latest alarms and errors."""
    alarm, dash = config["alarm"], config["dashboard"]
    rows = {r["name"]: r for r in history.channels()}
    channels = []
    for spec in config["channels"]:
        name = spec["name"]
        row = rows.get(name, {"status": "unknown", "settings": {}, "model_fingerprint": None,
                              "calibration_fingerprint": None})
        res = history.results(name, limit=dash["history"])
        first = res[0]["seq"] - 1 if res else 0
        per_width: dict = {}
        for w in history.widths(name, since_seq=first):
            per_width.setdefault(w["width"], {"sigma": w["sigma"], "seq": [], "z": []})
            per_width[w["width"]]["seq"].append(w["seq"])
            per_width[w["width"]]["z"].append(w["z"])
        reco = history.reconstruction(name)
        channels.append({
            "name": name, "status": row["status"], "settings": row["settings"],
            "model_fingerprint": row["model_fingerprint"], "calibration_fingerprint": row["calibration_fingerprint"],
            "history": {k: [r[k] for r in res] for k in ("seq", "batch", "time", "n_events", "p", "z", "alarm")},
            "widths": [per_width[k] for k in sorted(per_width)],
            "latest": res[-1] if res else None,
            "reconstruction": reco})
    batches = history.batches(limit=1)
    return {
        "generated": time.time(), "config_file": config.get("file"), "database": config["service"]["database"],
        "refresh_seconds": dash["refresh_seconds"],
        "alarm": {**alarm, "z_threshold": float(stats.norm.isf(alarm["p"])),
                  "run_z_threshold": float(stats.norm.isf(alarm["run_p"]))},
        "batches": {"count": history.count(), "latest": batches[-1] if batches else None},
        "channels": channels, "alarms": history.alarms(100), "errors": history.errors(100)}


def write_dashboard(history, folder, config: dict) -> None:
    """Write ``index.html`` (when missing or changed) and replace ``data.js`` with a fresh snapshot."""
    import json

    os.makedirs(folder, exist_ok=True)
    mine = f".{os.getpid()}.tmp"
    for name in os.listdir(folder):  # what a killed writer left half-written
        if name.endswith(".tmp") and not name.endswith(mine):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass
    page = template()
    index = os.path.join(folder, "index.html")
    try:
        with open(index, encoding="utf-8") as fh:
            same = fh.read() == page
    except OSError:
        same = False
    if not same:
        _replace(index, page)
    # JavaScript, not JSON: a non-finite number is written NaN or Infinity, which the page reads
    text = "window.DQM_DATA = " + json.dumps(snapshot(history, config), separators=(",", ":")) + ";\n"
    _replace(os.path.join(folder, "data.js"), text)


def _replace(path, text):
    """Write a file atomically: a reader sees the old or the new content, never a part."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def serve(folder, host="127.0.0.1", port=8765, background=False):
    """Serve the dashboard folder read-only.

    Parameters
    ----------
    folder : str or os.PathLike
        The dashboard's folder (``[dashboard] folder`` of the configuration).
    host : str
        The address to listen on: 127.0.0.1 (this machine only) unless told otherwise.
    port : int
        0: any free port (read it from ``server.url``).
    background : bool
        Serve from a daemon thread and return at once (else serve until interrupted).

    Returns
    -------
    fastnplm.ui.dqm.server.DashboardServer
        Stop it with ``server.shutdown()`` and ``server.server_close()``.
    """
    from .server import DashboardServer  # http.server only when serving

    server = DashboardServer(os.fspath(folder), host, port)
    log.info("dashboard at %s (read-only, folder %s)", server.url, server.root)
    if background:
        threading.Thread(target=server.serve_forever, name="fastnplm-dashboard", daemon=True).start()
    else:
        try:
            server.serve_forever()
        finally:
            server.server_close()
    return server
