"""The monitoring history: one SQLite file (the standard library's ``sqlite3``, WAL mode).

A batch is written in one transaction: its row in ``batches`` (the batch id is the primary
key), every channel's result, the per-width rows, the errors and the latest reconstructions.
Either all of it is in the file or none of it, so a service killed at any moment and started
again tests the unrecorded batches and never records one twice.

Tables
------
batches         batch (primary key), seq (1, 2, ... in recording order), time, source, channels
                tested, errors, seconds
results         one row per channel and batch: n_events, the headline test (one width: its p; several:
                min-p over the widths), p, p_lo, p_hi (Clopper-Pearson 68% interval of the fraction of toys
                at or above the batch), z, alarm ("", "p", "run", "p+run"), low_run (consecutive batches
                with p below the run threshold, this one included), converged, seconds, aggregated (JSON: the
                min-p, prod-p, avg-p and softmax-t tests), model and calibration fingerprints
widths          one row per channel, batch and width: sigma, t, p, p_lo, p_hi, z, exceeded (toys at or
                above t), converged, seconds
errors          batch ("" for a channel that failed to start), channel ("" for a whole unreadable batch),
                time, message
channels        name, status ("ok" or "error"), settings (JSON), fingerprints, updated
reconstruction  channel, batch, seq, sigma, data (JSON histograms of the latest batch)
"""
from __future__ import annotations

import json
import sqlite3
import time

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, time REAL NOT NULL, source TEXT,
    channels INTEGER NOT NULL, errors INTEGER NOT NULL, seconds REAL NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    batch TEXT NOT NULL REFERENCES batches(batch), channel TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL,
    n_events INTEGER NOT NULL, test TEXT NOT NULL, p REAL NOT NULL, p_lo REAL NOT NULL, p_hi REAL NOT NULL,
    z REAL NOT NULL, alarm TEXT NOT NULL, low_run INTEGER NOT NULL, converged INTEGER NOT NULL,
    seconds REAL NOT NULL, aggregated TEXT, model_fingerprint TEXT NOT NULL, calibration_fingerprint TEXT NOT NULL,
    PRIMARY KEY (batch, channel));
CREATE INDEX IF NOT EXISTS results_by_channel ON results (channel, seq);
CREATE TABLE IF NOT EXISTS widths (
    batch TEXT NOT NULL REFERENCES batches(batch), channel TEXT NOT NULL, seq INTEGER NOT NULL,
    width INTEGER NOT NULL, sigma REAL, t REAL NOT NULL, p REAL NOT NULL, p_lo REAL NOT NULL, p_hi REAL NOT NULL,
    z REAL NOT NULL, exceeded INTEGER NOT NULL, converged INTEGER NOT NULL, seconds REAL NOT NULL,
    PRIMARY KEY (batch, channel, width));
CREATE INDEX IF NOT EXISTS widths_by_channel ON widths (channel, seq);
CREATE TABLE IF NOT EXISTS errors (
    batch TEXT NOT NULL, channel TEXT NOT NULL, time REAL NOT NULL, message TEXT NOT NULL,
    PRIMARY KEY (batch, channel));
CREATE TABLE IF NOT EXISTS channels (
    name TEXT PRIMARY KEY, status TEXT NOT NULL, settings TEXT NOT NULL, model_fingerprint TEXT,
    calibration_fingerprint TEXT, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reconstruction (
    channel TEXT PRIMARY KEY, batch TEXT NOT NULL, seq INTEGER NOT NULL, sigma REAL, data TEXT NOT NULL);
"""

RESULT_KEYS = ("n_events", "test", "p", "p_lo", "p_hi", "z", "alarm", "low_run", "converged", "seconds",
               "aggregated", "model_fingerprint", "calibration_fingerprint")
WIDTH_KEYS = ("width", "sigma", "t", "p", "p_lo", "p_hi", "z", "exceeded", "converged", "seconds")


class History:
    """The service's SQLite history: record batches exactly once, and read them back.

    Parameters
    ----------
    path : str or os.PathLike
        The database file (created with its tables when absent).
    readonly : bool
        Open for reading only (e.g. a dashboard next to a running service).
    """

    def __init__(self, path, readonly=False):
        self.path = str(path)
        if readonly:
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30.0, isolation_level=None)
        else:
            # autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE) in record_batch
            self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")  # a committed batch survives a power cut too
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise ValueError(f"{self.path}: a history of schema version {version}, this fastnplm "
                                 f"writes version {SCHEMA_VERSION}")
            self.db.executescript(SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- writing ----------------------------------------------------------------------------

    def recorded(self) -> set:
        """The ids of every recorded batch."""
        return {r[0] for r in self.db.execute("SELECT batch FROM batches")}

    def is_recorded(self, batch: str) -> bool:
        """Whether the batch is in the history."""
        return self.db.execute("SELECT 1 FROM batches WHERE batch = ?", (batch,)).fetchone() is not None

    def low_runs(self) -> dict:
        """{channel: low_run of its latest recorded result}: where the run alarms resume."""
        rows = self.db.execute("SELECT channel, low_run FROM results r WHERE seq = "
                               "(SELECT MAX(seq) FROM results WHERE channel = r.channel)")
        return {r[0]: r[1] for r in rows}

    def record_batch(self, batch: str, source, results: dict, widths: dict, errors: dict, reconstructions: dict,
                     seconds: float, now=None):
        """Write one batch in one transaction; return its seq, or None when it was already recorded.

        Parameters
        ----------
        batch : str
            The batch id (unique).
        source : str or None
            Where it came from (a file path).
        results : dict {channel: dict of RESULT_KEYS}
        widths : dict {channel: list of dicts of WIDTH_KEYS}
        errors : dict {channel or "": message}
        reconstructions : dict {channel: (sigma, JSON-ready dict)}
        seconds : float
            The batch's processing time.
        now : float or None
            Its time (default: now, seconds since the epoch).
        """
        now = time.time() if now is None else now
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM batches WHERE batch = ?", (batch,)).fetchone():
                db.execute("ROLLBACK")
                return None
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM batches").fetchone()[0]
            db.execute("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (batch, seq, now, source, len(results), len(errors), seconds))
            for channel, r in results.items():
                agg = None if r["aggregated"] is None else json.dumps(r["aggregated"])
                db.execute(f"INSERT INTO results VALUES (?, ?, ?, ?, {', '.join('?' * len(RESULT_KEYS))})",
                           (batch, channel, seq, now, *[agg if k == "aggregated" else r[k] for k in RESULT_KEYS]))
                db.executemany(f"INSERT INTO widths VALUES (?, ?, ?, {', '.join('?' * len(WIDTH_KEYS))})",
                               [(batch, channel, seq, *[w[k] for k in WIDTH_KEYS]) for w in widths[channel]])
            db.executemany("INSERT INTO errors VALUES (?, ?, ?, ?)",
                           [(batch, ch, now, msg) for ch, msg in errors.items()])
            db.executemany("INSERT OR REPLACE INTO reconstruction VALUES (?, ?, ?, ?, ?)",
                           [(ch, batch, seq, sigma, json.dumps(data)) for ch, (sigma, data) in reconstructions.items()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return seq

    def set_channel(self, name: str, status: str, settings: dict, model_fingerprint=None,
                    calibration_fingerprint=None, error=None) -> None:
        """Record a channel's settings and state at start-up (with its error, when it could not start)."""
        now = time.time()
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("INSERT OR REPLACE INTO channels VALUES (?, ?, ?, ?, ?, ?)",
                       (name, status, json.dumps(settings), model_fingerprint, calibration_fingerprint, now))
            if error is not None:
                db.execute("INSERT OR REPLACE INTO errors VALUES ('', ?, ?, ?)", (name, now, error))
            else:
                db.execute("DELETE FROM errors WHERE batch = '' AND channel = ?", (name,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ---- reading ----------------------------------------------------------------------------

    def channels(self) -> list:
        """Every channel's row (name, status, settings as a dict, fingerprints), by name."""
        rows = self.db.execute("SELECT * FROM channels ORDER BY name").fetchall()
        return [{**dict(r), "settings": json.loads(r["settings"])} for r in rows]

    def results(self, channel: str, limit=None) -> list:
        """A channel's results, oldest first (the latest ``limit`` when given), as dicts."""
        q = "SELECT * FROM results WHERE channel = ? ORDER BY seq DESC" + (" LIMIT ?" if limit else "")
        rows = self.db.execute(q, (channel, limit) if limit else (channel,)).fetchall()
        return [{**dict(r), "aggregated": json.loads(r["aggregated"]) if r["aggregated"] else None}
                for r in reversed(rows)]

    def widths(self, channel: str, since_seq: int = 0) -> list:
        """A channel's per-width rows with seq > since_seq, in order of seq and width."""
        rows = self.db.execute("SELECT * FROM widths WHERE channel = ? AND seq > ? ORDER BY seq, width",
                               (channel, since_seq))
        return [dict(r) for r in rows]

    def alarms(self, limit: int = 100) -> list:
        """The latest results in alarm, newest first."""
        rows = self.db.execute("SELECT batch, channel, seq, time, p, z, alarm, low_run FROM results "
                               "WHERE alarm != '' ORDER BY seq DESC, channel LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def errors(self, limit: int = 100) -> list:
        """The latest errors, newest first."""
        rows = self.db.execute("SELECT * FROM errors ORDER BY time DESC, batch, channel LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def reconstruction(self, channel: str):
        """The latest batch's reconstruction of a channel (a dict), or None."""
        r = self.db.execute("SELECT * FROM reconstruction WHERE channel = ?", (channel,)).fetchone()
        return None if r is None else {**dict(r), "data": json.loads(r["data"])}

    def batches(self, limit=None) -> list:
        """Recorded batches, oldest first (the latest ``limit`` when given)."""
        q = "SELECT * FROM batches ORDER BY seq DESC" + (" LIMIT ?" if limit else "")
        rows = self.db.execute(q, (limit,) if limit else ()).fetchall()
        return [dict(r) for r in reversed(rows)]

    def count(self) -> int:
        """The number of recorded batches."""
        return self.db.execute("SELECT COUNT(*) FROM batches").fetchone()[0]
