"""The fast path (instructions predicted from op shapes) against the exact one (counted under QEMU), the path every
estimate states in its stored row and in the report, and the budget command on a tiny family grid."""

import json
import math
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from profile_fixtures import tiny_tflite

from edgebnn.cli import main
from edgebnn.errors import EdgebnnError
from edgebnn.estimate import budget, calibration, counting, emulated, estimate, fast

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(os.environ.get("LCE_RUNNER_AARCH64") or ROOT.parent / "shared" / "lce" / "lce_benchmark_model_aarch64")


def needs_runner(test):
    """Marked qemu: skipped without LCE's aarch64 runner and qemu-aarch64 (a failure under CI=true)."""
    return pytest.mark.qemu(pytest.mark.skipif(not RUNNER.is_file() or not shutil.which("qemu-aarch64"),
                                               reason="needs ../shared/lce/lce_benchmark_model_aarch64 and "
                                               "qemu-aarch64")(test))


def by_type(flat_ops, per_op):
    out = {}
    for op, n in zip(flat_ops, per_op, strict=True):
        out[op["type"]] = out.get(op["type"], 0.0) + n
    return out


@needs_runner
@pytest.mark.parametrize("size,width", [(32, 64), (24, 48)])
def test_fast_path_matches_qemu_counts_on_models_outside_its_fit(size, width):
    """The tiny net (float conv, two binary convs, mean, dense) is in no fit; at 24x24 its 48 channels take
    LceQuantize's slower path for a partial 32-bit word. Counts are deterministic: this is no timing test."""
    model = tiny_tflite(size, width)
    flat = fast.typed_ops(model.read_bytes())
    counted = counting.count_model(RUNNER, model)  # on cortex-a72, the Pi 4B's core
    shipped = fast.core_model(fast.shipped_model(), "cortex-a72")
    assert not any("tiny" in name for name in shipped["fitted_on"])
    predicted = fast.predict(flat, shipped)
    assert abs(predicted["instructions"] / counted["instructions"] - 1) <= 0.06  # the max whole-model error
    measured = fast.measured_ops(counted)
    want = by_type(flat, [measured.get(i, 0.0) for i in range(len(flat))])
    got = by_type(flat, [o["instructions"] for o in predicted["ops"]])
    for op_type, n in want.items():
        if n > 0.01 * counted["instructions"]:  # op types carrying over 1% of the model
            assert abs(got[op_type] / n - 1) <= 0.10, (op_type, got[op_type], n)
    # the kernel classes the board model weighs add up to the whole, GEMM work in the GEMM classes
    assert sum(predicted["classes"].values()) == pytest.approx(predicted["instructions"])
    gemm = predicted["classes"]["binary_gemm"] + predicted["classes"]["float_gemm"]
    assert abs(gemm / (counted["classes"]["binary_gemm"] + counted["classes"]["float_gemm"]) - 1) <= 0.10


def _synthetic_samples():
    """Two models of LCE and float ops whose per-op counts are exactly linear in the ops' features."""
    truth = {"LceBconv2d": {"binary_macs": 0.75, "outputs": 6.0, "one": 3000.0},
             "LceQuantize": {"aligned_elems": 0.4, "unaligned_words": 210.0, "one": 400.0},
             "elementwise": {"same_elems": 1.9, "broadcast_elems": 1.9, "broadcast_pixels": 40.0, "one": 240.0}}

    def op(kind, ins, out):
        return {"type": kind, "inputs": [(f"i{j}", s) for j, s in enumerate(ins)], "outputs": [("o", out)]}

    samples = {}
    for n, (size, ch) in enumerate([(32, 16), (16, 64), (8, 128), (24, 48), (12, 96)]):
        flat = [op("LceQuantize", [[1, size, size, ch]], [1, size, size, math.ceil(ch / 32)]),
                op("LceBconv2d", [[1, size, size, math.ceil(ch / 32)], [ch, 3, 3, math.ceil(ch / 32)], [ch], [ch]],
                   [1, size, size, ch]),
                op("ADD", [[1, size, size, ch], [1, size, size, ch]], [1, size, size, ch]),
                op("SUB", [[1, size, size, ch], [ch]], [1, size, size, ch])]
        xs = fast.all_features(flat)
        per_op = [sum(truth.get(fast.kernel_of(o), {}).get(f, 0.0) * v for f, v in x.items())
                  for o, x in zip(flat, xs, strict=True)]
        rows = [{"node_type": o["type"], "index": i, "instructions": v} for i, (o, v) in
                enumerate(zip(flat, per_op, strict=True)) if o["type"].startswith("Lce")]
        rows += [{"node_type": "Elementwise add/multiply (F32)", "delegate": 0, "op_index": i, "instructions": v}
                 for i, (o, v) in enumerate(zip(flat, per_op, strict=True)) if not o["type"].startswith("Lce")]
        classes = dict.fromkeys(counting.CLASS_NAMES, 0.0)
        gemm = truth["LceBconv2d"]["binary_macs"] * xs[1]["binary_macs"]  # the bconv's GEMM work, the rest its own
        classes["binary_gemm"], classes["binary_other"] = gemm, per_op[0] + per_op[1] - gemm
        classes["float_other"] = per_op[2] + per_op[3]
        samples[f"m{n}"] = {"flat_ops": flat, "ops": rows, "instructions": sum(per_op) + 5000.0,
                            "classes": {**classes, "other": 5000.0}}
    return samples


def test_cost_model_fit_recovers_known_costs():
    samples = _synthetic_samples()
    model = fast.fit_cost_model(samples)
    assert model["per_inference"] == pytest.approx(5000.0, rel=1e-3)
    for name, c in samples.items():
        p = fast.predict(c["flat_ops"], model)
        assert p["instructions"] == pytest.approx(c["instructions"], rel=1e-3), name
        assert p["classes"]["binary_gemm"] == pytest.approx(c["classes"]["binary_gemm"], rel=1e-2)
    assert model["node_types"]["SUB|elementwise"] == "Elementwise add/multiply (F32)"
    assert model["class_shares"]["LceBconv2d|work"]["binary_gemm"] == pytest.approx(1.0, abs=1e-3)
    assert model["class_shares"]["LceBconv2d|rest"]["binary_other"] == pytest.approx(1.0, abs=1e-3)
    assert set(model["class_shares"]["elementwise|rest"]) <= {"float_other", "memory", "other"}


def test_shipped_cost_model_records_its_fit_and_holdout():
    models = fast.shipped_model()
    assert models["runner_sha256"] == calibration.shipped()["runner_sha256"]
    cal = calibration.shipped()
    # a cost model for every core a calibrated board is counted on, and the Pi 5's
    assert {calibration.board_cpu(cal, b) for b in cal["boards"]} | {"cortex-a76"} <= set(fast.cores(models))
    for cpu in fast.cores(models):
        model = fast.core_model(models, cpu)
        assert model["cpu"] == cpu and len(model["fitted_on"]) >= 20
        hold = model["holdout"]
        assert not set(hold["tested_on"]) & set(model["fitted_on"])
        assert hold["models"] >= 10 and hold["whole_model_max_pct"] <= 6.0 and hold["whole_model_mean_pct"] <= 3.0
        assert hold["int8"]["models"] >= 3 and hold["float"]["models"] >= 10  # int8 flatbuffers outside the fit
        for kind, coef in model["kernels"].items():
            assert all(v >= 0 for v in coef.values()), kind
    with pytest.raises(EdgebnnError, match="no cost model for kryo"):
        fast.core_model(models, "kryo")


def _conv(dtype: str, size: int = 32, ch: int = 32) -> dict:
    return {"type": "CONV_2D", "inputs": [("x", [1, size, size, ch]), ("w", [ch, 3, 3, ch]), ("b", [ch])],
            "outputs": [("y", [1, size, size, ch])], "dtype": dtype}


def test_an_int8_conv_is_priced_apart_from_a_float_one():
    """Costs are keyed by op type and tensor type, per core: the same CONV_2D costs other instructions in int8
    than in float, and an int8 one costs more on cortex-a72 (no dot product) than on cortex-a76."""
    models = fast.shipped_model()
    a72, a76 = fast.core_model(models, "cortex-a72"), fast.core_model(models, "cortex-a76")
    assert fast.cost_key(_conv("int8")) == "CONV_2D igemm int8" and fast.cost_key(_conv("float")) == "CONV_2D igemm"
    sub = {"type": "SUB", "inputs": [("x", [1, 8, 8, 16]), ("c", [16])], "outputs": [("y", [1, 8, 8, 16])]}
    assert fast.cost_key({**sub, "dtype": "int8"}) == "elementwise SUB int8"  # a reference kernel in int8
    assert fast.cost_key({**sub, "dtype": "float"}) == "elementwise" == fast.base_kind("elementwise SUB int8")
    for model in (a72, a76):
        assert {"CONV_2D igemm int8", "CONV_2D igemm"} <= set(model["kernels"])
        f, q = (fast.predict([_conv(t)], model)["ops"][0]["instructions"] for t in ("float", "int8"))
        assert abs(q / f - 1) > 0.1, (model["cpu"], f, q)
    int8 = [fast.predict([_conv("int8")], m)["ops"][0]["instructions"] for m in (a72, a76)]
    assert int8[0] > 1.3 * int8[1]
    assert fast.predict([_conv("int8")], a72)["cpu"] == "cortex-a72"


def test_typed_ops_read_the_tensor_types():
    from test_estimate import tiny_int8_tflite

    ops = fast.typed_ops(tiny_int8_tflite().read_bytes())
    types = {(o["type"], o["dtype"]) for o in ops}
    assert ("CONV_2D", "int8") in types and ("FULLY_CONNECTED", "int8") in types
    assert {o["dtype"] for o in fast.typed_ops(tiny_tflite().read_bytes())} == {"float"}


@needs_runner
def test_fast_path_prices_an_int8_flatbuffer_outside_its_fit():
    """The tiny full-int8 net (in no fit) counted on cortex-a72 and predicted by that core's cost model: within the
    largest whole-model error the model states on its held-out int8 flatbuffers (at least the issue's 6%)."""
    from test_estimate import tiny_int8_tflite

    model = tiny_int8_tflite()
    counted = counting.count_model(RUNNER, model, cpu="cortex-a72")
    core = fast.core_model(fast.shipped_model(), "cortex-a72")
    predicted = fast.predict(fast.typed_ops(model.read_bytes()), core)
    bound = max(6.0, core["holdout"]["int8"]["whole_model_max_pct"])
    assert abs(predicted["instructions"] / counted["instructions"] - 1) <= bound / 100
    assert not any("costed as float" in w for w in predicted["warnings"])


def test_without_a_runner_the_fast_path_is_taken_and_said(monkeypatch):
    monkeypatch.delenv("LCE_RUNNER_AARCH64", raising=False)
    job = emulated.plan(None, fallback=True)
    assert job["path"] == "fast" and "fast path" in job["warnings"][0]
    monkeypatch.setenv("EDGEBNN_QEMU", "/nonexistent/qemu-aarch64")
    if RUNNER.is_file():
        job = emulated.plan(RUNNER, fallback=True)
        assert job["path"] == "fast" and "qemu-aarch64 not found" in job["warnings"][0]


def test_fast_estimate_rows_say_their_path_in_the_database_and_the_report(tmp_path):
    from edgebnn import reporting as report

    db = tmp_path / "r.db"
    res = CliRunner().invoke(main, ["estimate", str(tiny_tflite(32, 64)), "--fast", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert "ESTIMATED latency" in res.output and " fast " in res.output and "likely" in res.output
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM results ORDER BY device, threads")]
    assert [(r["device"], r["threads"]) for r in rows] == [("pi4b", 1), ("pi4b", 4), ("pixel1", 1)]
    for r in rows:
        e = json.loads(r["estimate"])
        assert e["path"] == "fast" and "predicted from the flatbuffer's op shapes" in e["source"]
        assert r["kernels"] == estimate.KERNELS["fast"]
        lo, hi = e["range_ms"]
        m = e["range_error_pct"] / 100
        assert m > e["error_max_pct"] / 100  # widened by the fast path's own error
        assert (lo, hi) == pytest.approx((r["mean_ms"] / (1 + m), r["mean_ms"] / (1 - m)))
    again = CliRunner().invoke(main, ["estimate", str(tiny_tflite(32, 64)), "--fast", "--db", str(db)])
    assert again.exit_code == 0 and "(stored; --force to estimate again)" in again.output
    got = [r for r in report.collect(db, run_roots=[]) if r["latency_kind"] == "estimate"]
    assert len(got) == 3
    for r in got:
        assert "predicted from the flatbuffer's op shapes" in r["latency_from"]
        assert report.table_cells(r)[3].endswith(", fast)") and "likely" in report.table_cells(r)[3]
    assert any("pi4b [estimate]" in n and "predicted from the flatbuffer's op shapes" in n for n in report.notes(got))


def test_budget_on_a_tiny_family_grid(monkeypatch):
    """Two widths of sdbnn-resnet20 at 32x32: each built, converted and estimated on the fast path; the verdicts
    follow the ranges; the command exits 1 when nothing fits."""
    built = {}
    real = budget.build_flatbuffer

    def once(family, width, size, num_classes=None, precision="float"):
        key = (family, width, size, num_classes, precision)
        if key not in built:
            built[key] = real(family, width, size, num_classes, precision)
        return built[key]

    monkeypatch.setattr(budget, "build_flatbuffer", once)
    res = CliRunner().invoke(main, ["budget", "sdbnn-resnet20", "--board", "pi4b", "--ms", "1000", "--widths",
                                    "0.25,0.5", "--sizes", "32", "--json"])
    assert res.exit_code == 0, res.output
    answer = json.loads(res.output[res.output.index("{"):])
    rows = answer["rows"]
    assert [(r["width"], r["size"], r["path"]) for r in rows] == [(0.25, 32, "fast"), (0.5, 32, "fast")]
    assert rows[0]["ms"] < rows[1]["ms"] and all(r["verdict"] == "fits" for r in rows)
    for r in rows:
        lo, hi = r["range_ms"]
        assert lo < r["ms"] < hi
        assert budget.verdict(r["ms"], hi, r["ms"] * 0.99) == "too slow"
        assert budget.verdict(r["ms"], hi, r["ms"]) == "may fit"
        assert budget.verdict(r["ms"], hi, hi) == "fits"
    text = budget.format_answer(answer)
    assert "2 of 2 candidates fit; the largest: width 0.5 at 32x32" in text and "likely" in text
    tight = CliRunner().invoke(main, ["budget", "sdbnn-resnet20", "--board", "pi4b", "--ms", "0.001", "--widths",
                                      "0.25", "--sizes", "32"])
    assert tight.exit_code == 1 and "0 of 1 candidates fit" in tight.output and "too slow" in tight.output
    assert len(built) == 2  # each candidate built once


def test_budget_in_both_precisions_and_the_islands_flatbuffer_estimated_on_the_pi4b_core(tmp_path, monkeypatch):
    """bireal-18 at width 0.25, 32x32, 10 classes in float and int8 on the fast path: one row per precision, the
    table shows it; the int8 candidate (int8 islands, as convert --precision int8) has an int8 CONV_2D and no
    edgebnn metadata, so the store reads its precision from its tensor types, and its estimate names cortex-a72
    for the Pi 4B."""
    from edgebnn import store
    from edgebnn.conversion.precision import int8_ops

    built = {}
    real = budget.build_flatbuffer

    def keep(family, width, size, num_classes=None, precision="float"):
        built[precision] = real(family, width, size, num_classes, precision)
        return built[precision]

    monkeypatch.setattr(budget, "build_flatbuffer", keep)
    res = CliRunner().invoke(main, ["budget", "bireal-18", "--board", "pi4b", "--ms", "1000", "--widths", "0.25",
                                    "--sizes", "32", "--classes", "10", "--precision", "float,int8", "--json"])
    assert res.exit_code == 0, res.output
    answer = json.loads(res.output[res.output.index("{"):])
    assert answer["precisions"] == ["float", "int8"] and answer["cpu"] == "cortex-a72"
    assert [(r["width"], r["precision"], r["path"]) for r in answer["rows"]] == [(0.25, "float", "fast"),
                                                                                 (0.25, "int8", "fast")]
    assert answer["rows"][0]["instructions"] != answer["rows"][1]["instructions"]
    text = budget.format_answer(answer)
    assert " precision " in text and " int8 " in text and "synthetic images" in text
    assert int8_ops(built["int8"]).get("CONV_2D", 0) >= 1 and not int8_ops(built["float"])
    path = tmp_path / "islands.tflite"
    path.write_bytes(built["int8"])
    assert store.precision_of(path) == "int8"  # no metadata: the tensor types say int8
    assert store.precision_of(tmp_path / "missing.tflite") == "float"
    (tmp_path / "float.tflite").write_bytes(built["float"])
    assert store.precision_of(tmp_path / "float.tflite") == "float"
    est = CliRunner().invoke(main, ["estimate", str(path), "--fast", "--db", str(tmp_path / "r.db"), "--json"])
    assert est.exit_code == 0, est.output
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.row_factory = sqlite3.Row
    rows = {r["device"]: dict(r) for r in conn.execute("SELECT * FROM results WHERE threads = 1")}
    assert rows["pi4b"]["cpu"] == "cortex-a72" and rows["pi4b"]["precision"] == "int8"
    assert json.loads(rows["pi4b"]["estimate"])["path"] == "fast"
    bad = CliRunner().invoke(main, ["budget", "bireal-18", "--board", "pi4b", "--ms", "1", "--precision", "fp16"])
    assert bad.exit_code == 2 and "--precision must be one of float, int8" in bad.output
