"""The results database: real sqlite, one row per model x device x threads, transactions, skip/force."""

import sqlite3

import pytest

import edgebnn  # noqa: F401
from edgebnn import store
from edgebnn.errors import EdgebnnError


def _result(**kw):
    r = dict(model_sha256="ab" * 32, model_name="tiny", model_path="/m/tiny.tflite", model_size_mb=0.03,
             device="local", threads=1, target="x86_64", runner="lce-python", machine="x86_64 test CPU, 2 cores",
             kernels="LCE reference kernels (not ARM64)", runs=20, warmup=3, min_ms=1.0, median_ms=1.2,
             mean_ms=1.25, p90_ms=1.5, std_ms=0.1, max_ms=2.0, first_ms=3.0, init_ms=0.5,
             board={"machine": "x86_64", "cores": 2}, warnings=["governor is powersave"], versions={"edgebnn": "0.1.0"})
    r.update(kw)
    return r


OPS = [dict(node_type="LceBconv2d", name="b1", index=1, first_ms=1.0, avg_ms=0.6, pct=60.0, mem_kb=0.0,
            times_called=1),
       dict(node_type="LceBconv2d", name="b2", index=2, avg_ms=0.2, pct=20.0),
       dict(node_type="CONV_2D", name="c", index=3, avg_ms=0.2, pct=20.0)]


def test_save_read_back_with_ops(tmp_path):
    db = tmp_path / "r.db"
    conn = store.connect(db)
    rid = store.save(conn, _result(), OPS)
    assert store.exists(conn, "ab" * 32, "local", 1) and not store.exists(conn, "ab" * 32, "local", 4)
    [row] = store.results(conn)
    assert row["id"] == rid and row["mean_ms"] == 1.25 and row["p90_ms"] == 1.5
    assert row["board"] == {"machine": "x86_64", "cores": 2} and row["warnings"] == ["governor is powersave"]
    assert [o["name"] for o in store.ops(conn, rid)] == ["b1", "b2", "c"]
    totals = store.op_totals(conn, rid)
    assert totals[0]["node_type"] == "LceBconv2d" and totals[0]["nodes"] == 2
    assert totals[0]["avg_ms"] == pytest.approx(0.8) and totals[0]["pct"] == pytest.approx(80.0)
    assert totals[0]["kind"] == "binary" and totals[1]["kind"] == "float"
    conn.close()
    # A fresh connection (another process, later) sees the same: it was committed.
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (str(store.SCHEMA_VERSION),)
    assert raw.execute("SELECT COUNT(*) FROM op_profile").fetchone() == (3,)


def test_one_row_per_key_and_replace_drops_old_ops(tmp_path):
    conn = store.connect(tmp_path / "r.db")
    store.save(conn, _result(), OPS)
    store.save(conn, _result(threads=4, mean_ms=0.7))
    rid = store.save(conn, _result(mean_ms=1.1), OPS[:1])
    rows = store.results(conn)
    assert [(r["threads"], r["mean_ms"]) for r in rows] == [(4, 0.7), (1, 1.1)]
    assert conn.execute("SELECT COUNT(*) FROM op_profile").fetchone()[0] == 1
    assert len(store.ops(conn, rid)) == 1
    assert len(store.results(conn, device="local")) == 2 and store.results(conn, device="pi") == []


def test_a_failed_write_keeps_what_was_there(tmp_path):
    conn = store.connect(tmp_path / "r.db")
    store.save(conn, _result(), OPS)
    bad_ops = [dict(OPS[0]), {"name": "no node type"}]
    with pytest.raises(KeyError):
        store.save(conn, _result(mean_ms=9.9), bad_ops)
    [row] = store.results(conn)
    assert row["mean_ms"] == 1.25 and len(store.ops(conn, row["id"])) == 3
    with pytest.raises(ValueError, match="lacks mean_ms"):
        store.save(conn, _result(mean_ms=None))
    assert len(store.results(conn)) == 1


def test_not_a_database_is_one_clear_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(EdgebnnError, match="junk.db cannot be opened"):
        store.connect(junk)
    with pytest.raises(EdgebnnError, match="folder .*nope does not exist"):
        store.connect(tmp_path / "nope" / "r.db")


def test_newer_schema_is_refused(tmp_path):
    db = tmp_path / "r.db"
    store.connect(db).close()
    raw = sqlite3.connect(db)
    with raw:
        raw.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    raw.close()
    with pytest.raises(EdgebnnError, match="schema version 99"):
        store.connect(db)


def test_kinds_are_separate_rows_and_inferred_when_missing(tmp_path):
    conn = store.connect(tmp_path / "r.db")
    store.save(conn, _result(device="pi4b"))  # reference kernels: a host figure
    store.save(conn, _result(device="pi4b", kernels="LCE optimized kernels (ARM64)", mean_ms=40.0))
    store.save(conn, _result(device="pi4b", kind="estimate", mean_ms=45.0,
                             estimate={"board": "pi4b", "instructions": 1.3e8, "loo_mean_pct": 2.0}))
    rows = store.results(conn, device="pi4b")
    assert [(r["kind"], r["mean_ms"]) for r in rows] == [("host", 1.25), ("board", 40.0), ("estimate", 45.0)]
    assert store.results(conn, kind="estimate")[0]["estimate"]["instructions"] == 1.3e8
    assert rows[0]["estimate"] == {} and rows[0]["flags"] == [] and rows[0]["load"] == {}
    assert store.exists(conn, "ab" * 32, "pi4b", 1, kind="estimate")
    assert not store.exists(conn, "ab" * 32, "local", 1, kind="estimate")
    with pytest.raises(ValueError, match="kind 'guess'"):
        store.save(conn, _result(kind="guess"))


_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE results (id INTEGER PRIMARY KEY, model_sha256 TEXT NOT NULL, model_name TEXT NOT NULL, model_path TEXT,
  model_size_mb REAL, device TEXT NOT NULL, threads INTEGER NOT NULL, target TEXT, runner TEXT, machine TEXT NOT NULL,
  kernels TEXT NOT NULL, runs INTEGER NOT NULL, warmup INTEGER, min_ms REAL NOT NULL, median_ms REAL,
  mean_ms REAL NOT NULL, p90_ms REAL, std_ms REAL, max_ms REAL, first_ms REAL, init_ms REAL,
  board TEXT NOT NULL DEFAULT '{}', warnings TEXT NOT NULL DEFAULT '[]', versions TEXT NOT NULL DEFAULT '{}',
  created_at TEXT NOT NULL, UNIQUE (model_sha256, device, threads));
CREATE TABLE op_profile (result_id INTEGER NOT NULL REFERENCES results(id) ON DELETE CASCADE,
  position INTEGER NOT NULL, node_type TEXT NOT NULL, kind TEXT NOT NULL, name TEXT, node_index INTEGER,
  first_ms REAL, avg_ms REAL, pct REAL, mem_kb REAL, times_called INTEGER, PRIMARY KEY (result_id, position));
INSERT INTO results (id, model_sha256, model_name, device, threads, machine, kernels, runs, min_ms, mean_ms,
  created_at) VALUES (7, 'aa', 'old-host', 'local', 1, 'x86_64', 'LCE reference kernels (not ARM64)', 5, 1, 2, 't'),
  (8, 'aa', 'old-pi', 'pi4', 4, 'Pi 4B', 'LCE optimized kernels (ARM64)', 5, 10, 20, 't');
INSERT INTO op_profile VALUES (8, 0, 'LceBconv2d', 'binary', 'b1', 1, 1.0, 0.5, 50.0, 0.0, 1);
"""


def test_version_1_database_is_migrated_keeping_every_row(tmp_path):
    db = tmp_path / "old.db"
    raw = sqlite3.connect(db)
    raw.executescript(_V1_SCHEMA)
    raw.close()
    conn = store.connect(db)
    rows = store.results(conn)
    assert [(r["id"], r["model_name"], r["kind"]) for r in rows] == [(7, "old-host", "host"), (8, "old-pi", "board")]
    assert [o["name"] for o in store.ops(conn, 8)] == ["b1"] and store.ops(conn, 8)[0]["instructions"] is None
    store.save(conn, _result(model_sha256="aa", device="pi4", threads=4, kind="estimate"))
    assert len(store.results(conn, device="pi4")) == 2
    conn.close()
    assert store.connect(db).execute("SELECT value FROM meta").fetchone()[0] == str(store.SCHEMA_VERSION)


def test_someone_elses_results_table_is_refused_untouched(tmp_path):
    db = tmp_path / "theirs.db"
    raw = sqlite3.connect(db)
    raw.executescript("CREATE TABLE results (x TEXT); INSERT INTO results VALUES ('keep me');")
    raw.close()
    with pytest.raises(EdgebnnError, match="theirs.db holds a `results` table that edgebnn did not write"):
        store.connect(db)
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT x FROM results").fetchall() == [("keep me",)]
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone() is None


def _version_2_database(db) -> None:
    """A schema-2 database as edgebnn wrote it before the cpu and precision columns: a host row and an estimate."""
    raw = sqlite3.connect(db)
    schema = store._SCHEMA
    for name, sql in store._V3_FIELDS:
        schema = schema.replace(f", {name} {sql}", "")
    raw.executescript(schema)
    raw.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    cols = ", ".join(store._V2_COLUMNS)
    for row in (_result(board={"cpu": "AMD EPYC test", "cores": 2}),
                _result(device="pi4b", kind="estimate", board={"label": "Raspberry Pi 4B", "cpu": "Cortex-A72"})):
        row = {**row, "created_at": "t", "kind": row.get("kind", "host"), "estimate": "{}", "load": "{}",
               "flags": "[]"}
        for key in ("board", "warnings", "versions"):
            row[key] = str(row[key]).replace("'", '"')
        raw.execute(f"INSERT INTO results ({cols}) VALUES ({', '.join('?' * len(store._V2_COLUMNS))})",
                    [row.get(k) for k in store._V2_COLUMNS])
    raw.commit()
    raw.close()


def test_version_2_database_gains_cpu_and_precision(tmp_path):
    db = tmp_path / "v2.db"
    _version_2_database(db)
    conn = store.connect(db)
    rows = store.results(conn)
    # an old estimate was counted on QEMU's default core (max); a measurement names its machine's CPU
    assert [(r["kind"], r["cpu"], r["precision"]) for r in rows] == [("host", "AMD EPYC test", "float"),
                                                                    ("estimate", "max", "float")]
    conn.close()
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("3",)
    assert {"cpu", "precision"} <= {r[1] for r in raw.execute("PRAGMA table_info(results)")}


def test_a_read_only_version_2_database_still_reads(tmp_path, monkeypatch):
    """A version-2 database that cannot be written (root writes a read-only file, so the refusal is SQLite's own
    error, raised where the migration writes) is read as it is, with the same cpu/precision defaults."""
    db = tmp_path / "v2.db"
    _version_2_database(db)

    def refuse(conn):
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(store, "_migrate_v2", refuse)
    conn = store.connect(db)
    rows = store.results(conn)
    assert [(r["cpu"], r["precision"]) for r in rows] == [("AMD EPYC test", "float"), ("max", "float")]
    conn.close()
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)


def test_cpu_and_precision_round_trip(tmp_path):
    """``cpu`` is stored as given (an estimate's core) or from the board facts; ``precision`` from the flatbuffer's
    ``edgebnn`` metadata (int8), float when it has none or the file is gone."""
    from profile_fixtures import tiny_tflite

    from edgebnn.tflite.describe import embed_metadata

    plain = tiny_tflite()
    marked = tmp_path / "int8.tflite"
    marked.write_bytes(embed_metadata(plain.read_bytes(), {"run": "r", "precision": "int8"}))
    conn = store.connect(tmp_path / "r.db")
    store.save(conn, _result(model_sha256="01", model_path=str(marked), device="pi4b", kind="estimate",
                             cpu="cortex-a72"))
    store.save(conn, _result(model_sha256="02", model_path=str(plain), board={"cpu": "Cortex-A72"}))
    store.save(conn, _result(model_sha256="03", model_path=str(tmp_path / "gone.tflite"), board={}))
    rows = {r["model_sha256"]: r for r in store.results(conn)}
    assert (rows["01"]["cpu"], rows["01"]["precision"]) == ("cortex-a72", "int8")
    assert (rows["02"]["cpu"], rows["02"]["precision"]) == ("Cortex-A72", "float")
    assert (rows["03"]["cpu"], rows["03"]["precision"]) == ("unknown", "float")
    conn.close()
