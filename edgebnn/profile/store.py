"""The results database: one SQLite file (default ``results.db`` in the working directory).

Table ``results`` holds one row per model sha256 x device x threads with the latency statistics (ms), the
board facts (JSON), model name and size, target, runner, tool versions and time; table ``op_profile`` holds the
per-op rows of a result. Every result is written in its own transaction, so an interrupted sweep keeps what it
finished; a re-run skips what is there unless forced.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from edgebnn.errors import EdgebnnError

SCHEMA_VERSION = 1
DEFAULT_DB = "results.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    model_sha256 TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_path TEXT,
    model_size_mb REAL,
    device TEXT NOT NULL,
    threads INTEGER NOT NULL,
    target TEXT,
    runner TEXT,
    machine TEXT NOT NULL,
    kernels TEXT NOT NULL,
    runs INTEGER NOT NULL,
    warmup INTEGER,
    min_ms REAL NOT NULL,
    median_ms REAL,
    mean_ms REAL NOT NULL,
    p90_ms REAL,
    std_ms REAL,
    max_ms REAL,
    first_ms REAL,
    init_ms REAL,
    board TEXT NOT NULL DEFAULT '{}',
    warnings TEXT NOT NULL DEFAULT '[]',
    versions TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    UNIQUE (model_sha256, device, threads)
);
CREATE TABLE IF NOT EXISTS op_profile (
    result_id INTEGER NOT NULL REFERENCES results(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    node_type TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT,
    node_index INTEGER,
    first_ms REAL,
    avg_ms REAL,
    pct REAL,
    mem_kb REAL,
    times_called INTEGER,
    PRIMARY KEY (result_id, position)
);
"""

_RESULT_COLUMNS = ("model_sha256", "model_name", "model_path", "model_size_mb", "device", "threads", "target",
                   "runner", "machine", "kernels", "runs", "warmup", "min_ms", "median_ms", "mean_ms", "p90_ms",
                   "std_ms", "max_ms", "first_ms", "init_ms", "board", "warnings", "versions", "created_at")
_JSON_COLUMNS = ("board", "warnings", "versions")


def connect(path: str | Path = DEFAULT_DB) -> sqlite3.Connection:
    """Open (creating when needed) the results database at ``path``; refuses a newer or foreign schema."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise EdgebnnError(f"results database folder {path.parent} does not exist: create it or pass another --db")
    try:
        conn = sqlite3.connect(str(path), timeout=30)
        conn.execute("PRAGMA foreign_keys = ON")
        with conn:
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise EdgebnnError(f"results database {path} has schema version {row[0]}, this edgebnn reads "
                                   f"{SCHEMA_VERSION}: use another --db or the matching edgebnn version")
    except sqlite3.DatabaseError as err:
        raise EdgebnnError(f"results database {path} cannot be opened ({err}): pass another --db") from None
    conn.row_factory = sqlite3.Row
    return conn


def exists(conn: sqlite3.Connection, model_sha256: str, device: str, threads: int) -> bool:
    """Whether a result for this model x device x threads is stored."""
    q = "SELECT 1 FROM results WHERE model_sha256 = ? AND device = ? AND threads = ?"
    return conn.execute(q, (model_sha256, device, int(threads))).fetchone() is not None


def save(conn: sqlite3.Connection, result: dict, ops: list[dict] | None = None) -> int:
    """Store one result and its per-op rows in one transaction, replacing an older row with the same key."""
    from edgebnn.profile.parse import op_kind

    row = {k: result.get(k) for k in _RESULT_COLUMNS}
    row["created_at"] = row["created_at"] or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for key in _JSON_COLUMNS:
        row[key] = json.dumps(row[key] if row[key] is not None else ({} if key != "warnings" else []),
                              sort_keys=True, default=str)
    missing = [k for k in ("model_sha256", "model_name", "device", "threads", "machine", "kernels", "runs",
                           "min_ms", "mean_ms") if row[k] is None]
    if missing:
        raise ValueError(f"result lacks {', '.join(missing)}")
    with conn:
        conn.execute("DELETE FROM results WHERE model_sha256 = ? AND device = ? AND threads = ?",
                     (row["model_sha256"], row["device"], int(row["threads"])))
        cur = conn.execute(f"INSERT INTO results ({', '.join(_RESULT_COLUMNS)}) "
                           f"VALUES ({', '.join('?' * len(_RESULT_COLUMNS))})",
                           [row[k] for k in _RESULT_COLUMNS])
        rid = cur.lastrowid
        conn.executemany(
            "INSERT INTO op_profile VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(rid, i, op["node_type"], op_kind(op["node_type"]), op.get("name"), op.get("index"),
              op.get("first_ms"), op.get("avg_ms"), op.get("pct"), op.get("mem_kb"), op.get("times_called"))
             for i, op in enumerate(ops or [])])
    return rid


def _decode(row: sqlite3.Row) -> dict:
    out = dict(row)
    for key in _JSON_COLUMNS:
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


def results(conn: sqlite3.Connection, model_sha256: str | None = None, device: str | None = None) -> list[dict]:
    """Stored results (optionally of one model and/or device), oldest first, JSON columns decoded."""
    where, args = [], []
    if model_sha256:
        where.append("model_sha256 = ?")
        args.append(model_sha256)
    if device:
        where.append("device = ?")
        args.append(device)
    q = "SELECT * FROM results" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id"
    return [_decode(r) for r in conn.execute(q, args)]


def ops(conn: sqlite3.Connection, result_id: int) -> list[dict]:
    """The per-op rows of one result, in run order."""
    q = "SELECT * FROM op_profile WHERE result_id = ? ORDER BY position"
    return [dict(r) for r in conn.execute(q, (result_id,))]


def op_totals(conn: sqlite3.Connection, result_id: int) -> list[dict]:
    """The per-op rows of one result summed by node type (LceBconv2d, LceQuantize, float ops), slowest first."""
    q = ("SELECT node_type, kind, COUNT(*) AS nodes, SUM(avg_ms) AS avg_ms FROM op_profile WHERE result_id = ? "
         "GROUP BY node_type, kind ORDER BY avg_ms DESC")
    rows = [dict(r) for r in conn.execute(q, (result_id,))]
    whole = sum(r["avg_ms"] or 0.0 for r in rows)
    for r in rows:
        r["pct"] = 100.0 * (r["avg_ms"] or 0.0) / whole if whole > 0 else 0.0
    return rows
