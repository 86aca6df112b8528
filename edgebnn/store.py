"""The results database: one SQLite file (default ``results.db`` in the working directory).

Table ``results`` holds one row per model sha256 x device x threads x kind with the latency statistics (ms), the
board facts (JSON), model name and size, target, runner, tool versions and time; table ``op_profile`` holds the
per-op rows of a result. Every result is written in its own transaction, so an interrupted sweep keeps what it
finished; a re-run skips what is there unless forced.

``kind`` says where a figure came from, and rows of different kinds are never mixed without it:

- ``board``: measured on an ARM board by its own runner (``lce_benchmark_model`` over SSH);
- ``host``: measured on this host (LCE's Python interpreter or a runner on an x86 machine; a functional check);
- ``estimate``: estimated for a named board (``device`` is the board, e.g. ``pi4b``) from the aarch64 instructions
  LCE's real kernels execute under emulation; ``estimate`` (JSON) says from what: instructions, calibration, its
  leave-one-out error, the runner's sha256, and any flag (ops the calibration never saw).

``load`` (JSON) records the machine's load around a measurement and ``flags`` (JSON list) why a figure should not
be trusted (spread, load, throttling); both are empty when nothing was recorded. ``cpu`` names the CPU a figure
came from (an estimate: the QEMU core its instructions were counted on, e.g. ``cortex-a72``; a measurement: the
machine's CPU) and ``precision`` the flatbuffer's (``float`` or ``int8``, from its ``edgebnn`` metadata). Schema
version 1 and 2 databases are migrated in place to version 3 on first open (their estimates were counted on
QEMU's default core: cpu ``max``; a read-only version-2 database is read as it is, with the same defaults).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from pathlib import Path

from edgebnn.devices.parse import op_kind
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.outputs import write_atomic
from edgebnn.tflite import fields
from edgebnn.tflite.describe import read_metadata, read_ops

SCHEMA_VERSION = 3
KINDS = ("board", "host", "estimate")
PRECISIONS = ("float", "int8")
UNKNOWN_CPU = "unknown"
OLD_ESTIMATE_CPU = "max"  # estimates stored before schema 3 were counted on QEMU's default core
DEFAULT_DB = "results.db"

# The columns of ``results`` (besides ``id``), declared once: name and SQL type, in table order.
_RESULT_FIELDS = (
    ("model_sha256", "TEXT NOT NULL"), ("model_name", "TEXT NOT NULL"), ("model_path", "TEXT"),
    ("model_size_mb", "REAL"), ("device", "TEXT NOT NULL"), ("threads", "INTEGER NOT NULL"), ("target", "TEXT"),
    ("runner", "TEXT"), ("machine", "TEXT NOT NULL"), ("kernels", "TEXT NOT NULL"), ("runs", "INTEGER NOT NULL"),
    ("warmup", "INTEGER"), ("min_ms", "REAL NOT NULL"), ("median_ms", "REAL"), ("mean_ms", "REAL NOT NULL"),
    ("p90_ms", "REAL"), ("std_ms", "REAL"), ("max_ms", "REAL"), ("first_ms", "REAL"), ("init_ms", "REAL"),
    ("board", "TEXT NOT NULL DEFAULT '{}'"), ("warnings", "TEXT NOT NULL DEFAULT '[]'"),
    ("versions", "TEXT NOT NULL DEFAULT '{}'"), ("created_at", "TEXT NOT NULL"),
    # schema 2
    ("kind", "TEXT NOT NULL DEFAULT 'host' CHECK (kind IN ('board', 'host', 'estimate'))"),
    ("estimate", "TEXT NOT NULL DEFAULT '{}'"), ("load", "TEXT NOT NULL DEFAULT '{}'"),
    ("flags", "TEXT NOT NULL DEFAULT '[]'"),
    # schema 3: the CPU the figure came from (an estimate: the QEMU core it was counted on; a measurement: the
    # machine's CPU) and the flatbuffer's precision (its ``edgebnn`` metadata's ``precision``; float when absent)
    ("cpu", f"TEXT NOT NULL DEFAULT '{UNKNOWN_CPU}'"), ("precision", "TEXT NOT NULL DEFAULT 'float'"),
)
_RESULT_COLUMNS = tuple(name for name, _ in _RESULT_FIELDS)
_V1_COLUMNS = _RESULT_COLUMNS[:_RESULT_COLUMNS.index("kind")]
_V2_COLUMNS = _RESULT_COLUMNS[:_RESULT_COLUMNS.index("cpu")]
_V3_FIELDS = _RESULT_FIELDS[len(_V2_COLUMNS):]

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    {", ".join(f"{name} {sql}" for name, sql in _RESULT_FIELDS)},
    UNIQUE (model_sha256, device, threads, kind)
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
    instructions REAL,
    PRIMARY KEY (result_id, position)
);
"""

_JSON_COLUMNS = ("board", "warnings", "versions", "estimate", "load", "flags")
_JSON_LISTS = ("warnings", "flags")
_OP_COLUMNS = ("result_id", "position", "node_type", "kind", "name", "node_index", "first_ms", "avg_ms", "pct",
               "mem_kb", "times_called", "instructions")


def _table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def _schema_version(conn: sqlite3.Connection) -> int | None:
    """The stored schema version; None for an empty database. A ``results`` table edgebnn did not write is refused."""
    if "key" in _table_columns(conn, "meta"):
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None:
            try:
                return int(row[0])
            except (TypeError, ValueError):
                raise EdgebnnError(f"is damaged: its schema version is {str(row[0])[:40]!r}, not a number") from None
    if _table_columns(conn, "results"):
        raise EdgebnnError("holds a `results` table that edgebnn did not write")
    return None


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Version 1 -> 3: add kind (board when the optimized ARM kernels ran, else host), estimate, load, flags,
    per-op instructions, cpu (see :func:`_cpu_of`) and precision (float); the unique key gains kind."""
    with conn:
        conn.execute("ALTER TABLE results RENAME TO results_v1")
        conn.execute("ALTER TABLE op_profile RENAME TO op_profile_v1")
    conn.executescript(_SCHEMA)
    with conn:
        cols = ", ".join(_V1_COLUMNS)
        conn.execute(f"INSERT INTO results (id, {cols}, kind) SELECT id, {cols}, CASE WHEN kernels LIKE "
                     "'LCE optimized kernels%' THEN 'board' ELSE 'host' END FROM results_v1")
        ops = ", ".join(_OP_COLUMNS[:-1])
        conn.execute(f"INSERT INTO op_profile ({ops}) SELECT {ops} FROM op_profile_v1")
        conn.execute("DROP TABLE op_profile_v1")
        conn.execute("DROP TABLE results_v1")
        rows = conn.execute("SELECT id, kind, board FROM results").fetchall()
        conn.executemany("UPDATE results SET cpu = ? WHERE id = ?", [(_cpu_of(k, b), i) for i, k, b in rows])
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _cpu_of(kind: str, board_json: str | None) -> str:
    """The ``cpu`` of a row stored before schema 3: ``max`` for an estimate (QEMU's default core, where every
    estimate was counted then), else the CPU in its board facts, else unknown."""
    if kind == "estimate":
        return OLD_ESTIMATE_CPU
    try:
        facts = json.loads(board_json or "{}")
    except (json.JSONDecodeError, RecursionError):
        facts = {}
    return str(facts.get("cpu") or UNKNOWN_CPU) if isinstance(facts, dict) else UNKNOWN_CPU


def _migrate_v2(conn: sqlite3.Connection) -> None:
    """Version 2 -> 3: add ``cpu`` (see :func:`_cpu_of`) and ``precision`` (float: no int8 flatbuffer was marked
    before), in one transaction."""
    with conn:
        have = set(_table_columns(conn, "results"))
        for name, sql in _V3_FIELDS:
            if name not in have:
                conn.execute(f"ALTER TABLE results ADD COLUMN {name} {sql}")
        rows = conn.execute("SELECT id, kind, board FROM results").fetchall()
        conn.executemany("UPDATE results SET cpu = ? WHERE id = ?", [(_cpu_of(k, b), i) for i, k, b in rows])
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _read_only(err: sqlite3.DatabaseError) -> bool:
    return "readonly" in str(err) or "read-only" in str(err)


def connect(path: str | Path = DEFAULT_DB) -> sqlite3.Connection:
    """Open (creating when needed) the results database at ``path``; migrates version 1, refuses a newer or
    foreign schema."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise OptionError("results database folder {folder} does not exist: create it or pass another {db}",
                          folder=path.parent)
    try:
        conn = sqlite3.connect(str(path), timeout=30)
        try:
            version = _schema_version(conn)
            if version == 1:
                _migrate_v1(conn)
            elif version == 2:
                try:
                    _migrate_v2(conn)
                except sqlite3.DatabaseError as err:  # a read-only version-2 database still reads
                    if not _read_only(err):
                        raise
            elif version not in (None, SCHEMA_VERSION):
                raise OptionError("has schema version {version}, this edgebnn reads {ours}: use another {db} or the "
                                  "matching edgebnn version", version=version, ours=SCHEMA_VERSION)
            conn.executescript(_SCHEMA)
            if version is None:  # a new database; an existing one is not written on open (a read-only one reads)
                with conn:
                    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            if not set(_V2_COLUMNS) <= set(_table_columns(conn, "results")):
                raise EdgebnnError("holds a `results` table that edgebnn did not write")
        except BaseException:
            conn.close()
            raise
    except EdgebnnError as err:
        template, values = (err.template, err.values) if isinstance(err, OptionError) else ("{why}", {"why": err})
        raise OptionError("results database {path} " + template + ": pass another {db}", path=path,
                          **values) from None
    except sqlite3.DatabaseError as err:
        if "readonly" in str(err):
            raise OptionError("results database {path} cannot be written ({why}): make it writable or pass "
                              "another {db}", path=path, why=err) from None
        raise OptionError("results database {path} cannot be opened ({why}): pass another {db}", path=path,
                          why=err) from None
    conn.execute("PRAGMA foreign_keys = ON")
    conn.row_factory = sqlite3.Row
    return conn


class WriteFailed(EdgebnnError):
    """The database refused a write (read-only file or folder, full disk, locked): the caller keeps the row."""


class InvalidResult(EdgebnnError):
    """A result whose timings are not times (negative, NaN or infinite): refused, never stored."""


TIMING_COLUMNS = ("min_ms", "median_ms", "mean_ms", "p90_ms", "std_ms", "max_ms", "first_ms", "init_ms")
OP_TIMINGS = ("first_ms", "avg_ms")


def _not_a_time(value) -> bool:

    if value is None:
        return False
    try:
        return not (math.isfinite(float(value)) and float(value) >= 0)
    except (TypeError, ValueError):
        return True


def check_timings(result: dict, ops: list[dict] | None = None) -> None:
    """Refuse a result (or one of its per-op rows) with a negative or non-finite time: a runner that prints one
    is broken, and a stored figure would be believed."""
    bad = [f"{k} = {result[k]}" for k in TIMING_COLUMNS if _not_a_time(result.get(k))]
    bad += [f"op {i} {k} = {op[k]}" for i, op in enumerate(ops or []) for k in OP_TIMINGS if _not_a_time(op.get(k))]
    if bad:
        raise InvalidResult(f"{result.get('model_name')} on {result.get('device')} x{result.get('threads')}: the "
                            f"runner reported {bad[0]}, not a time (negative or not finite); nothing stored: check "
                            "the runner")


def check_writable(path: str | Path = DEFAULT_DB) -> None:
    """Open ``path`` as :func:`connect` does and prove a write goes through, before anything is measured: a
    read-only file or folder is refused up front rather than after minutes of measuring."""

    path = Path(path)
    conn = connect(path)
    try:
        with conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_opened', ?)", (time.strftime("%Y-%m-%dT%H:%M:%S"),))
    except sqlite3.DatabaseError as err:
        raise OptionError("results database {path} cannot be written ({why}): make it writable or pass another "
                          "{db}", path=path, why=err) from None
    finally:
        conn.close()
    folder = path.resolve().parent
    if not os.access(folder, os.W_OK):
        raise OptionError("results database {path} lies in a folder that cannot be written ({folder}; SQLite "
                          "needs it for its journal): pass another {db}", path=path, folder=folder)


def fallback_path(db: str | Path) -> Path:
    """Where measurements go when the database refuses them: ``<db>.unsaved.json`` beside it, else in the
    working directory."""
    return Path(str(db) + ".unsaved.json")


def save_fallback(db: str | Path, result: dict, ops: list[dict] | None = None) -> Path:
    """Append one result the database refused to the fallback JSON (a list); returns where it went."""

    path = fallback_path(db)
    if not os.access(path.resolve().parent, os.W_OK) and not os.access(path, os.W_OK):
        path = Path.cwd() / path.name
    try:
        kept = json.loads(path.read_text()) if path.is_file() else []
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        kept = []
    kept.append({"result": {k: v for k, v in result.items() if k != "path"}, "ops": ops or []})
    write_atomic(path, json.dumps(kept, indent=1, default=str), "{db} fallback")
    return path


def kind_of(result: dict) -> str:
    """A result's kind: its own ``kind``, else ``board`` when LCE's optimized ARM kernels ran, else ``host``."""
    if result.get("kind"):
        return result["kind"]
    return "board" if str(result.get("kernels") or "").startswith("LCE optimized kernels") else "host"


def exists(conn: sqlite3.Connection, model_sha256: str, device: str, threads: int, kind: str | None = None) -> bool:
    """Whether a result for this model x device x threads (x kind, when given) is stored."""
    q = "SELECT 1 FROM results WHERE model_sha256 = ? AND device = ? AND threads = ?"
    args = [model_sha256, device, int(threads)]
    if kind:
        q += " AND kind = ?"
        args.append(kind)
    return conn.execute(q, args).fetchone() is not None


def precision_of(model_path) -> str:
    """A flatbuffer's precision: its ``edgebnn`` metadata's ``precision`` (``int8`` or ``float``, which
    ``edgebnn convert --precision`` writes); without it (a flatbuffer made elsewhere), ``int8`` when a
    CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED reads an int8 tensor (:func:`tensor_precision`), else ``float``;
    ``float`` when the file cannot be read."""
    if not model_path:
        return "float"
    try:
        data = Path(model_path).read_bytes()
        value = (read_metadata(data) or {}).get("precision")
        return value if value in PRECISIONS else tensor_precision(data)
    except (OSError, ValueError, EdgebnnError):
        return "float"


INT8_TENSOR = 9  # TFLite TensorType INT8
_WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def tensor_precision(flatbuffer: bytes) -> str:
    """``int8`` when any CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED of the main subgraph takes an int8 input
    tensor (the flatbuffer's own tensor types, read by :mod:`edgebnn.tflite`), else ``float``."""
    ops = read_ops(flatbuffer)
    graph = fields.parse(bytes(flatbuffer)).subgraphs[0]
    for op, raw in zip(ops, graph.operators, strict=True):
        if op["type"] in _WEIGHTED_OPS and raw.inputs and raw.inputs[0] >= 0 \
                and graph.tensors[raw.inputs[0]].type == INT8_TENSOR:
            return "int8"
    return "float"


def save(conn: sqlite3.Connection, result: dict, ops: list[dict] | None = None) -> int:
    """Store one result and its per-op rows in one transaction, replacing an older row with the same key; a write
    the database refuses raises :class:`WriteFailed` (the caller keeps the result, see :func:`save_fallback`).
    A result without ``cpu`` / ``precision`` gets them here (its board facts' CPU; its flatbuffer's metadata)."""
    check_timings(result, ops)
    row = {k: result.get(k) for k in _RESULT_COLUMNS}
    row["created_at"] = row["created_at"] or time.strftime("%Y-%m-%dT%H:%M:%S%z")
    row["kind"] = kind_of(result)
    row["cpu"] = result["cpu"] = row["cpu"] or str((result.get("board") or {}).get("cpu") or UNKNOWN_CPU)
    row["precision"] = result["precision"] = row["precision"] or precision_of(result.get("model_path"))
    if row["kind"] not in KINDS:
        raise ValueError(f"result kind {row['kind']!r} is not one of {', '.join(KINDS)}")
    for key in _JSON_COLUMNS:
        row[key] = json.dumps(row[key] if row[key] is not None else ([] if key in _JSON_LISTS else {}),
                              sort_keys=True, default=str)
    missing = [k for k in ("model_sha256", "model_name", "device", "threads", "machine", "kernels", "runs",
                           "min_ms", "mean_ms") if row[k] is None]
    if missing:
        raise ValueError(f"result lacks {', '.join(missing)}")
    try:
        return _insert(conn, row, ops)
    except sqlite3.OperationalError as err:
        raise WriteFailed(f"the results database refused the result ({err})") from None


def _insert(conn: sqlite3.Connection, row: dict, ops: list[dict] | None) -> int:

    with conn:
        conn.execute("DELETE FROM results WHERE model_sha256 = ? AND device = ? AND threads = ? AND kind = ?",
                     (row["model_sha256"], row["device"], int(row["threads"]), row["kind"]))
        cur = conn.execute(f"INSERT INTO results ({', '.join(_RESULT_COLUMNS)}) "
                           f"VALUES ({', '.join('?' * len(_RESULT_COLUMNS))})",
                           [row[k] for k in _RESULT_COLUMNS])
        rid = cur.lastrowid
        conn.executemany(
            f"INSERT INTO op_profile ({', '.join(_OP_COLUMNS)}) VALUES ({', '.join('?' * len(_OP_COLUMNS))})",
            [(rid, i, op["node_type"], op_kind(op["node_type"]), op.get("name"), op.get("index"),
              op.get("first_ms"), op.get("avg_ms"), op.get("pct"), op.get("mem_kb"), op.get("times_called"),
              op.get("instructions"))
             for i, op in enumerate(ops or [])])
    return rid


def _decode(row: sqlite3.Row) -> dict:
    """A row with its JSON columns decoded; a column that is not JSON (a damaged database) is left empty and named
    in the row's ``corrupt`` (a list of column names), so a reader can skip or name the row instead of failing."""
    out = dict(row)
    if "cpu" not in out:  # a read-only version-2 database, not migrated
        out["cpu"] = _cpu_of(out.get("kind") or "host", out.get("board"))
    out.setdefault("precision", "float")
    for key in _JSON_COLUMNS:
        if key in out and isinstance(out[key], str):
            kind = list if key in _JSON_LISTS else dict
            try:
                value = json.loads(out[key])
            except (json.JSONDecodeError, RecursionError):
                value = None
            if not isinstance(value, kind):
                value = kind()
                out.setdefault("corrupt", []).append(key)
            out[key] = value
    return out


def results(conn: sqlite3.Connection, model_sha256: str | None = None, device: str | None = None,
            kind: str | None = None) -> list[dict]:
    """Stored results (optionally of one model, device and/or kind), oldest first, JSON columns decoded."""
    where, args = [], []
    if kind:
        where.append("kind = ?")
        args.append(kind)
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
    """The per-op rows of one result summed by node type (LceBconv2d, LceQuantize, float ops), slowest first.

    A row's ``avg_ms`` is per call; a delegate row may stand for several calls (``times_called``), so a type's time
    is ``sum(avg_ms x times_called)``, as in :func:`edgebnn.devices.parse.op_totals`."""
    q = ("SELECT node_type, kind, COUNT(*) AS nodes, SUM(COALESCE(times_called, 1)) AS calls, "
         "SUM(avg_ms * COALESCE(times_called, 1)) AS avg_ms, SUM(instructions) AS instructions "
         "FROM op_profile WHERE result_id = ? GROUP BY node_type, kind ORDER BY avg_ms DESC")
    rows = [dict(r) for r in conn.execute(q, (result_id,))]
    whole = sum(r["avg_ms"] or 0.0 for r in rows)
    for r in rows:
        r["pct"] = 100.0 * (r["avg_ms"] or 0.0) / whole if whole > 0 else 0.0
    return rows
