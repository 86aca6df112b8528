"""Outputs are whole or absent and never written through a link (issue 21): the shared writer
(``edgebnn.outputs.write_atomic``) used by convert, report, run.json and the profile fallback; names over the file
system's limit refused before any work; the run's state recorded as it really is."""

import errno
import json
import os
import time
from pathlib import Path

import pytest
from cli_checks import assert_one_error_line
from click.testing import CliRunner

from edgebnn import outputs, runs
from edgebnn.cli import main
from edgebnn.errors import EdgebnnError


def _full_disk(monkeypatch):
    """Every write through the shared writer fails as on a full disk, after part of the data went out."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs.os, "fsync", fsync)


@pytest.fixture(scope="module")
def tiny_keras(tmp_path_factory):
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    inp = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tf.keras.Model(inp, tf.keras.layers.Dense(10)(x), name="tiny").save(path)
    return path


# ------------------------------------------------------------------------------------------ the shared writer
def test_write_atomic_replaces_a_link_and_leaves_its_target_untouched(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    place = tmp_path / "out"
    place.mkdir()
    (place / "a.json").symlink_to(outside)
    (place / "b.json").symlink_to(tmp_path / "would-be-created.txt")  # dangling: the write must not create it
    outputs.write_atomic(place / "a.json", "new")
    outputs.write_atomic(place / "b.json", b"new")
    assert outside.read_text() == "precious" and not (tmp_path / "would-be-created.txt").exists()
    assert not (place / "a.json").is_symlink() and (place / "a.json").read_text() == "new"
    assert (place / "a.json").stat().st_mode & 0o777 == 0o666 & ~outputs._UMASK  # not mkstemp's 0600
    assert (place / "b.json").read_bytes() == b"new" and sorted(p.name for p in place.iterdir()) == ["a.json",
                                                                                                   "b.json"]


def test_write_atomic_on_a_full_disk_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    (tmp_path / "r.json").write_text("old")
    _full_disk(monkeypatch)
    with pytest.raises(EdgebnnError, match="the disk is full") as err:
        outputs.write_atomic(tmp_path / "r.json", "new" * 1000, "-o")
    assert len(str(err.value).splitlines()) == 1
    with pytest.raises(EdgebnnError, match="the disk is full"):
        outputs.write_atomic(tmp_path / "absent.json", "new")
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"] and (tmp_path / "r.json").read_text() == "old"


def test_run_json_on_a_full_disk_keeps_its_last_whole_state(tmp_path, monkeypatch):
    runs.write_info(tmp_path, {"status": "running", "epochs_done": 3})
    _full_disk(monkeypatch)
    with pytest.raises(EdgebnnError, match="run.json: cannot write .* the disk is full"):
        runs.update_info(tmp_path, epochs_done=4)
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    assert json.loads((tmp_path / "run.json").read_text()) == {"status": "running", "epochs_done": 3}
    assert runs.read_info(tmp_path)["status"] == "interrupted"  # no process holds its lock


def test_a_name_over_the_limit_is_one_line(tmp_path):
    with pytest.raises(EdgebnnError, match="over the file system's limit of 255"):
        outputs.check_name_length(tmp_path / ("a" * 300 + ".tflite"), "-o")
    outputs.check_name_length(tmp_path / ("a" * 200 + ".tflite"), "-o")


# ------------------------------------------------------------------------------------------ convert
def test_convert_writes_around_links_and_refuses_a_long_name_at_once(tiny_keras, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text("precious")
    place = tmp_path / "place"
    place.mkdir()
    (place / "m.tflite").symlink_to(tmp_path / "created-outside.tflite")  # dangling link at the -o name
    (place / "m.tflite.json").symlink_to(outside)  # a link at the sidecar's name
    (place / "m.float.tflite").symlink_to(outside)  # ... and at a baseline's
    result = CliRunner().invoke(main, ["convert", str(tiny_keras), "-o", str(place / "m.tflite"),
                                       "--check-samples", "0", "--baselines", "float"])
    assert result.exit_code == 0, result.output
    assert outside.read_text() == "precious" and not (tmp_path / "created-outside.tflite").exists()
    for name in ("m.tflite", "m.tflite.json", "m.float.tflite"):
        assert not (place / name).is_symlink() and (place / name).stat().st_size > 100
    assert json.loads((place / "m.tflite.json").read_text())["output"] == str(place / "m.tflite")

    start = time.monotonic()
    long = CliRunner().invoke(main, ["convert", str(tiny_keras), "-o", str(tmp_path / ("b" * 300 + ".tflite"))])
    assert_one_error_line(long, "over the file system's limit")
    assert time.monotonic() - start < 5


def test_convert_on_a_full_disk_leaves_no_partial_flatbuffer(tiny_keras, tmp_path, monkeypatch):
    _full_disk(monkeypatch)
    result = CliRunner().invoke(main, ["convert", str(tiny_keras), "-o", str(tmp_path / "m.tflite"),
                                       "--check-samples", "0"])
    assert_one_error_line(result, "the disk is full")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ report
def test_report_writes_around_links_and_keeps_files_whole_on_a_full_disk(tmp_path, monkeypatch):
    from test_report import make_results

    db, root = make_results(tmp_path)
    outside = tmp_path / "outside.html"
    outside.write_text("precious")
    out = tmp_path / "r"
    out.mkdir()
    (out / "index.html").symlink_to(outside)
    (out / "results.json").symlink_to(outside)
    ok = CliRunner().invoke(main, ["report", "--db", str(db), "--out", str(out), "--runs", str(root)])
    assert ok.exit_code == 0, ok.output
    assert outside.read_text() == "precious" and "<html" in (out / "index.html").read_text()
    assert not (out / "results.json").is_symlink() and json.loads((out / "results.json").read_text())
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _full_disk(monkeypatch)
    full = CliRunner().invoke(main, ["report", "--db", str(db), "--out", str(out), "--runs", str(root)])
    assert_one_error_line(full, "the disk is full")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_report_full_at_its_last_file_leaves_the_old_report_as_it_was(tmp_path, monkeypatch):
    """The disk fills after the plots and results.json were written, at index.html: not one file of the old report
    is replaced (all are written aside first), and no scratch folder is left; a new folder is not created at all."""
    from test_report import make_results

    db, root = make_results(tmp_path)
    out = tmp_path / "r"
    ok = CliRunner().invoke(main, ["report", "--db", str(db), "--out", str(out), "--runs", str(root)])
    assert ok.exit_code == 0, ok.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_fsync, writes = outputs.os.fsync, []

    def fsync_until_index(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        writes.append(name)
        if ".index.html." in name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(outputs.os, "fsync", fsync_until_index)
    for target in (out, tmp_path / "new"):
        full = CliRunner().invoke(main, ["report", "--db", str(db), "--out", str(target), "--runs", str(root)])
        assert_one_error_line(full, "the disk is full")
    assert len(writes) > 2 and ".index.html." in writes[-1]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not (tmp_path / "new").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".staging")]


# ------------------------------------------------------------------------------------------ silent wrong results
def test_the_flatbuffer_names_its_run_by_absolute_path(tiny_keras, tmp_path, monkeypatch):
    """Converted from a relative path, then read from another folder: the run is still found."""
    from edgebnn.tflite.describe import read_metadata

    run = tmp_path / "work" / "runs" / "tiny-run"
    run.mkdir(parents=True)
    (run / runs.FINAL_MODEL).write_bytes(tiny_keras.read_bytes())
    runs.write_info(run, {"name": "tiny-run", "model": None, "status": "done", "dataset": "digits",
                          "input_shape": [16, 16, 3], "num_classes": 10})
    monkeypatch.chdir(tmp_path / "work")
    result = CliRunner().invoke(main, ["convert", "runs/tiny-run", "-o", "m.tflite", "--check-samples", "0"])
    assert result.exit_code == 0, result.output
    meta = read_metadata(tmp_path / "work" / "m.tflite")
    assert meta["run_dir"] == str(run.resolve()) and Path(meta["source"]).is_absolute()
    monkeypatch.chdir(tmp_path)
    assert runs.is_run_dir(meta["run_dir"])


def test_gap_to_float_pairs_only_a_twin_of_the_same_width(tmp_path):
    from edgebnn import reporting as report

    def run(name, real, width, top1, shape=(32, 32, 3)):
        path = tmp_path / name
        path.mkdir()
        runs.write_info(path, {"name": name, "model": "bireal-18", "real": real, "dataset": "digits",
                               "status": "done", "width": width, "input_shape": list(shape), "num_classes": 10,
                               "best_val_top1": top1, "finished": name})
        return path

    binary = run("b", False, 0.5, 0.80)
    run("t1", True, 0.25, 0.90)  # narrower twin, finished later: not this run's twin
    run("t3", True, 0.5, 0.95, shape=(64, 64, 3))  # another input size
    index = report._index_runs([tmp_path])
    like = index[str(binary.resolve())]
    assert report._twin_top1(index, "bireal-18", "digits", like) is None
    run("t2", True, 0.5, 0.97)
    index = report._index_runs([tmp_path])
    assert report._twin_top1(index, "bireal-18", "digits", like) == 0.97


def test_a_recipe_width_counts_when_run_json_has_none(tmp_path):
    from edgebnn import reporting as report

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / runs.RECIPE).write_text('model = "bireal-18"\n[arch]\nwidth = 0.25\n')
    assert report._run_width({}, tmp_path / "r") == 0.25 and report._run_width({}, tmp_path) == 1.0


# ------------------------------------------------------------------------------------------ damaged inputs
def _damaged_results(tmp_path, sql: str):
    """test_report's results database and runs, with ``sql`` run on the database: (db, runs folder)."""
    import sqlite3

    from test_report import make_results

    db, root = make_results(tmp_path)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql)
    conn.close()
    return db, root


def test_report_names_a_damaged_row_and_run_and_reports_the_rest(tmp_path):
    db, root = _damaged_results(tmp_path, "UPDATE results SET flags = '{not json' WHERE id = 1")
    (root / "broken").mkdir()
    (root / "broken" / "run.json").write_text("[1, 2]")
    (root / "garbled").mkdir()
    (root / "garbled" / "run.json").write_bytes(b"\xff\xfe{")
    result = CliRunner().invoke(main, ["report", "--db", str(db), "--out", str(tmp_path / "r"), "--runs", str(root)])
    assert result.exit_code == 0, result.output
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 3 and "result 1 " in warnings[0] and "flags" in warnings[0]
    assert any("broken/run.json is not a JSON object" in w for w in warnings)
    assert len(json.loads((tmp_path / "r" / "results.json").read_text())) == 9  # of 10 stored
    with pytest.raises(EdgebnnError, match="not an object"):
        runs.read_info(root / "broken")


def test_a_damaged_schema_version_is_one_line(tmp_path):
    db, _ = _damaged_results(tmp_path, "UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    result = CliRunner().invoke(main, ["report", "--db", str(db), "--out", str(tmp_path / "r")])
    assert_one_error_line(result, "schema version is 'two'")
    assert not (tmp_path / "r").exists()


def test_convert_on_a_data_set_of_another_class_count_stores_no_accuracy(tmp_path):
    """A 20-class model proven on digits (10 classes): the flatbuffer is still proven against Keras on digits'
    images, but digits' labels are not the model's, so no accuracy is stored (it used to say ~5-20%)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(2)
    inp = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.Conv2D(4, 3, padding="same")(inp))
    tf.keras.Model(inp, tf.keras.layers.Dense(20)(x)).save(tmp_path / "twenty.keras")
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "twenty.keras"), "-o", str(tmp_path / "t.tflite"),
                                       "--dataset", "digits", "--check-samples", "20"])
    assert result.exit_code == 0, result.output
    assert "data set digits has 10 classes, the model 20" in result.output
    report = json.loads((tmp_path / "t.tflite.json").read_text())
    check = report["check"]
    assert check["samples"] == 20 and check.get("keras_top1") is None and check.get("tflite_top1") is None
    assert "data set digits has 10 classes, the model 20" in report["deployment"]["notes"]


# ------------------------------------------------------------------------------------------ profile
RUNNER_OUTPUT = """STARTING!
Loaded model m.tflite
The input model file size (MB): 0.0123
Initialized session in 2.1ms.
count=4 first=2100 curr=2000 min=1990 max=2100 avg=2030 std=40
count=20 first=2000 curr=2000 min={min} max=2100 avg=2010 std=30
Inference timings in us: Init: 2100, First inference: 2100, Warmup (avg): 2030, Inference (avg): 2010
"""


def test_negative_timings_are_never_stored(tmp_path):
    from edgebnn import store
    from edgebnn.devices import parse

    assert parse.parse(RUNNER_OUTPUT.format(min=1990))["runs"]["min_us"] == 1990
    with pytest.raises(EdgebnnError, match="min_us=-5.0, not a time"):
        parse.parse(RUNNER_OUTPUT.format(min=-5))
    row = {"model_sha256": "a" * 64, "model_name": "m", "device": "pi4b", "threads": 1, "machine": "pi",
           "kernels": "LCE optimized kernels (aarch64)", "runs": 20, "min_ms": -0.5, "mean_ms": 2.0}
    conn = store.connect(tmp_path / "r.db")
    with pytest.raises(store.InvalidResult, match="min_ms = -0.5"):
        store.save(conn, row)
    with pytest.raises(store.InvalidResult, match="mean_ms = nan"):
        store.save(conn, {**row, "min_ms": 1.0, "mean_ms": float("nan")})
    with pytest.raises(store.InvalidResult, match="op 0 avg_ms = -1"):
        store.save(conn, {**row, "min_ms": 1.0}, [{"node_type": "CONV_2D", "avg_ms": -1}])
    assert store.results(conn) == []
    store.save(conn, {**row, "min_ms": 1.0})
    assert len(store.results(conn)) == 1
    conn.close()


def test_a_sweep_measures_the_valid_models_and_names_the_invalid_one(tmp_path):
    from profile_fixtures import tiny_tflite

    from edgebnn import store

    good = tiny_tflite()
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    db = tmp_path / "r.db"
    result = CliRunner().invoke(main, ["profile", str(bad), str(good), "--db", str(db), "--runs", "2",
                                       "--warmup", "0", "--op-profile"])
    line = assert_one_error_line(result, "bad.tflite", "1 other result(s) measured and stored")
    assert "tiny" not in line.split("bad.tflite")[0]
    assert "warning: --op-profile: device local cannot profile per op" in result.stderr
    conn = store.connect(db)
    assert [r["model_name"] for r in store.results(conn)] == ["tiny"]
    conn.close()


# ------------------------------------------------------------------------------------------ a run's state
@pytest.mark.slow
def test_a_run_records_failed_interrupted_and_running_as_they_happen(tmp_path, monkeypatch):
    from edgebnn import training

    original = training._Trainer._end_epoch
    seen = []

    def crash_at_epoch_2(self, s, row):
        if row["epoch"] == 2:
            raise RuntimeError("boom\nsecond line")
        original(self, s, row)

    monkeypatch.setattr(training._Trainer, "_end_epoch", crash_at_epoch_2)
    sets = ["arch.width=0.125", "input_size=16", "steps.schedule=constant"]
    with pytest.raises(RuntimeError):
        training.train("bireal-18", dataset="digits", epochs=3, sets=sets, out=tmp_path / "run", progress=False,
                       verbose=False, summary=False)
    info = runs.read_info(tmp_path / "run")
    assert (info["status"], info["failure"], info["epochs_done"]) == ("failed", "RuntimeError: boom second line", 1)

    def interrupt_after_looking(self, s, row):
        seen.append(runs.read_info(self.run_dir))
        raise KeyboardInterrupt

    monkeypatch.setattr(training._Trainer, "_end_epoch", interrupt_after_looking)
    with pytest.raises(KeyboardInterrupt):
        training.train(resume=tmp_path / "run", progress=False, verbose=False, summary=False)
    assert seen[0]["status"] == "running" and "failure" not in seen[0]  # while it trains again
    info = runs.read_info(tmp_path / "run")
    assert info["status"] == "interrupted" and "failure" not in info

    def full_disk(run_dir, row):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(training._Trainer, "_end_epoch", original)
    monkeypatch.setattr(training, "_append_metrics", full_disk)
    with pytest.raises(EdgebnnError, match=r"training stopped: OSError: \[Errno 28\] No space left on device; .* "
                                           r"edgebnn train --resume"):
        training.train(resume=tmp_path / "run", progress=False, verbose=False, summary=False)
    info = runs.read_info(tmp_path / "run")
    assert info["status"] == "failed" and "No space left" in info["failure"] and info["epochs_done"] == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")) == []


# ------------------------------------------------------------------------------------------ sizes and damaged data
def test_a_huge_width_or_input_size_is_refused_before_allocating(tmp_path):
    from edgebnn import archs

    start = time.monotonic()
    with pytest.raises(EdgebnnError, match="weights would take about 43,582,588,434 GiB, over edgebnn's limit of 2"):
        archs.build("bireal-18", width=1e6)
    with pytest.raises(EdgebnnError, match="first feature map would take about 4,880 GiB"):
        archs.build("bireal-18", input_shape=(100000, 100000, 3))
    assert time.monotonic() - start < 2
    archs.check_size("bireal-18", (224, 224, 3), 1000, 4.0)  # about 0.7 GiB of weights: this fits
    result = CliRunner().invoke(main, ["train", "bireal-18", "--dataset", "digits", "--epochs", "1", "--set",
                                       "arch.width=1e6", "--out", str(tmp_path / "run"), "--quiet"])
    assert_one_error_line(result, "over edgebnn's limit of 2 GiB")
    result = CliRunner().invoke(main, ["train", "bireal-18", "--dataset", "digits", "--epochs", "1", "--set",
                                       "input_size=100000", "--out", str(tmp_path / "run"), "--quiet"])
    assert_one_error_line(result, "input size 100000 with batch size", "over edgebnn's limit of 2 GiB")
    assert not (tmp_path / "run").exists()


def test_the_width_1_parameter_counts_are_the_models():
    from edgebnn import archs

    for name in ("sdbnn-resnet20", "sdbnn-vgg-small"):  # the two small ones; the table's others are 11-29 M
        assert archs.build(name).count_params() == archs.PARAMS_AT_WIDTH_1[name]
    assert set(archs.PARAMS_AT_WIDTH_1) == set(archs.names())


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (no image data: PIL reads only the header)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20_000, 100_000])  # over PIL's limit; over twice it (PIL's own error)
def test_a_decompression_bomb_in_a_folder_is_named_in_one_line(tmp_path, side):
    from PIL import Image

    from edgebnn import data

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "b" / "bomb.png").write_bytes(_png_header(side, side))
    with pytest.raises(EdgebnnError, match=r"folder: image .*bomb\.png is .*over the limit of 89,478,485") as err:
        data.find_source(f"folder:{tmp_path}")
    assert len(str(err.value).splitlines()) == 1


def test_a_cifar_folder_with_an_empty_test_batch_fails_at_load(tmp_path):
    import pickle

    import numpy as np

    from edgebnn import data

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = 0 if name == "test_batch" else 3
        (root / name).write_bytes(pickle.dumps({b"data": np.zeros((n, 3072), np.uint8), b"labels": [1] * n}))
    start = time.monotonic()
    result = CliRunner().invoke(main, ["train", "bireal-18", "--dataset", f"cifar10:{tmp_path}", "--epochs", "1",
                                       "--out", str(tmp_path / "run"), "--quiet"])
    assert_one_error_line(result, "test_batch holds no images")
    assert time.monotonic() - start < 30 and not (tmp_path / "run").exists()
    with pytest.raises(EdgebnnError, match="test_batch holds no images"):
        data.find_source(f"cifar10:{tmp_path}")


def test_a_conversion_report_of_the_wrong_types_costs_only_its_rows(tmp_path):
    from test_report import make_results

    from edgebnn import reporting as report

    db, root = make_results(tmp_path)
    sidecar = root / "reactnet-18-a" / "reactnet.tflite.json"
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "source": "not a table"}))
    problems = []
    rows = report.collect(db, [root], problems)
    assert len(rows) == 7 and {r["model"] for r in rows if "reactnet" in r["model"]} == set()
    assert len(problems) == 3 and all("wrong type" in p for p in problems), problems
