"""Estimates from instructions counted under QEMU: LCE's real aarch64 runner (../shared/lce), Debian's qemu-aarch64,
edgebnn's plugin built with the system compiler, the real LCE converter for the tiny model."""

import functools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import assert_one_error_line
from profile_fixtures import scratch_folder, tiny_tflite

from edgebnn.devices import qemu
from edgebnn.errors import EdgebnnError
from edgebnn.estimate import boards, calibration, counting, emulated, fit

ROOT = Path(__file__).resolve().parents[1]
RUNNER = Path(os.environ.get("LCE_RUNNER_AARCH64") or ROOT.parent / "shared" / "lce" / "lce_benchmark_model_aarch64")
SHIPPED_SHA = "16ceb974644b5a521293850197f80dc33b767830c7b1f3f2d7407809bb63b728"


def needs_runner(test):
    """Marked qemu: skipped without LCE's aarch64 runner and qemu-aarch64 (a failure under CI=true)."""
    return pytest.mark.qemu(pytest.mark.skipif(not RUNNER.is_file() or not shutil.which("qemu-aarch64"),
                                               reason="needs ../shared/lce/lce_benchmark_model_aarch64 and "
                                               "qemu-aarch64")(test))


def small_tflite() -> Path:
    """The tiny net at 32x32, 64 channels wide (~4e6 instructions: the runner's own printing of its timings varies
    by some hundred instructions a run, which a smaller model would feel)."""
    return tiny_tflite(32, 64)


@pytest.fixture(scope="module")
def small_counts():
    """The 32x32 model counted twice, each time from two exact runs (11 and 1 inferences)."""
    model = small_tflite()
    return [counting.count_model(RUNNER, model) for _ in range(2)]


@needs_runner
@pytest.mark.slow
def test_counts_are_deterministic_and_per_op_sums_match(small_counts):
    a, b = small_counts
    assert a["instructions"] > 1e6
    assert abs(a["instructions"] - b["instructions"]) / a["instructions"] < 1e-4  # within 0.01%
    assert sum(a["per_vcpu"].values()) == pytest.approx(a["instructions"])
    assert sum(a["classes"].values()) == pytest.approx(a["instructions"])
    assert a["classes"]["binary_gemm"] > 0.2 * a["instructions"]  # LCE's NEON kernels ran, not EvalRef
    per_op = sum(o["instructions"] for o in a["ops"])
    assert abs(per_op / a["instructions"] - 1) < 0.02
    types = [o["node_type"] for o in a["ops"]]
    assert types.count("LceBconv2d") == 2 and types.count("LceQuantize") == 1
    assert "Convolution (F32, IGEMM)" in types and "Global average pooling (F32)" in types
    bconvs = [o for o in a["ops"] if o["node_type"] == "LceBconv2d"]
    assert all(o["instructions"] > 0.2 * a["instructions"] for o in bconvs)  # the costly layers
    assert all(isinstance(o["index"], int) and o["name"] for o in bconvs)
    # every XNNPACK operator named by the flatbuffer op it ran: together, each op the interpreter did not run once
    from edgebnn.tflite.describe import read_ops

    flat = read_ops(small_tflite().read_bytes())
    delegated = [o for o in a["ops"] if "delegate" in o]
    own = {o["index"] for o in a["ops"] if "delegate" not in o}
    assert sorted(o["op_index"] for o in delegated) == [i for i in range(len(flat)) if i not in own]
    assert all(flat[o["op_index"]]["type"] == o["op"] for o in delegated)
    assert {o["op"] for o in delegated if o["node_type"] == "Convolution (F32, IGEMM)"} == {"CONV_2D"}
    assert {o["op"] for o in delegated if o["node_type"] == "Global average pooling (F32)"} == {"MEAN"}
    assert a["warnings"] == []
    assert a["dense_macs"] == 64 * 10  # the classifier; nothing to flag


@needs_runner
@pytest.mark.slow
def test_runner_op_profile_is_parsed():
    from edgebnn.devices.parse import parse

    args = [f"--graph={tiny_tflite()}", "--num_threads=1", "--num_runs=2", "--warmup_runs=0",
            "--warmup_min_secs=0", "--min_secs=0", "--enable_op_profiling=true"]
    run = emulated_run(args)
    parsed = parse(run["stdout"] + run["stderr"])
    assert run["rc"] == 0 and parsed["runs"]["count"] == 2
    types = [op["node_type"] for op in parsed["ops"]]
    assert types.count("LceBconv2d") == 2
    assert any(t.startswith("Convolution (NHWC, F32)") for t in types)  # XNNPACK's names, spaces and all
    assert {s["node_type"] for s in parsed["op_summary"]} == set(types)


def emulated_run(args):
    from edgebnn.devices.qemu import run_emulated

    return run_emulated(RUNNER, args, timeout=300)


@needs_runner
def test_run_emulated_moves_files_in_and_out(tmp_path):
    model = tmp_path / "m.tflite"
    shutil.copyfile(tiny_tflite(), model)
    run = emulated_run_files(model)
    assert run["rc"] == 0, run["stderr"][-500:]
    assert len(run["files"]["out.bin"]) == 10 * 4  # ten float32 logits


def emulated_run_files(model):
    from edgebnn.devices.qemu import run_emulated

    return run_emulated(RUNNER, ["--graph=m.tflite", "--num_runs=1", "--warmup_runs=0", "--min_secs=0",
                                 "--warmup_min_secs=0", "--output_filepath=out.bin"],
                        files_in={"m.tflite": model}, files_out=["out.bin"], timeout=300)


def test_shipped_calibration_names_its_runner_and_fits():
    cal = calibration.shipped()
    assert cal["runner_sha256"] == SHIPPED_SHA
    assert set(cal["boards"]) == {"pi4b", "pixel1"} and set(cal["boards"]["pi4b"]) == {"1", "4"}
    for per in cal["boards"].values():
        for rec in per.values():
            assert rec["n"] >= 3 and len(rec["loo"]) == rec["n"]
            assert rec["loo_mean_pct"] == pytest.approx(sum(abs(v["error_pct"]) for v in rec["loo"].values())
                                                        / rec["n"])
            assert rec["loo_mean_pct"] <= rec["candidates"]["one constant"]["loo_mean_pct"] + 1e-9
            # the stated error is the whole procedure's: every model held out before the choice
            assert rec["error_n"] == rec["n"] == len(rec["nested"])
            errors = [abs(v["error_pct"]) for v in rec["nested"].values()]
            assert rec["error_mean_pct"] == pytest.approx(sum(errors) / len(errors))
            assert rec["error_max_pct"] == pytest.approx(max(errors))
    assert all(m not in cal["boards"]["pixel1"]["1"]["loo"] for m in calibration.EXCLUDED)
    assert cal["format"] == calibration.FORMAT == 3
    # every board fitted on counts made on its own core (the Pixel 1 shares the Pi 4B's cortex-a72 counts)
    for board, per in cal["boards"].items():
        assert {rec["cpu"] for rec in per.values()} == {boards.get(board).core} == {"cortex-a72"}
    assert set(cal["counts"]) == {"cortex-a72"} and len(cal["counts"]["cortex-a72"]) == 13


@needs_runner
def test_calibration_rebuilt_from_its_stored_counts_is_the_shipped_one():
    shipped = calibration.shipped()
    counts = {cpu: {m: {**c, "ops": []} for m, c in per.items()} for cpu, per in shipped["counts"].items()}
    rebuilt = calibration.build(shipped["name"], RUNNER, counts, shipped["qemu"])
    assert rebuilt["runner_sha256"] == SHIPPED_SHA
    assert rebuilt["max_dense_macs"] == shipped["max_dense_macs"]
    for board, per in shipped["boards"].items():
        for threads, rec in per.items():
            new = rebuilt["boards"][board][threads]
            assert new["model"] == rec["model"] and new["n"] == rec["n"]
            assert new["k_ms_per_1e9"] == pytest.approx(rec["k_ms_per_1e9"], rel=1e-9)
            assert new["loo_mean_pct"] == pytest.approx(rec["loo_mean_pct"], rel=1e-9)
            assert {m: v["error_pct"] for m, v in new["nested"].items()} == pytest.approx(
                {m: v["error_pct"] for m, v in rec["nested"].items()}, rel=1e-9)  # recomputed, not typed in
            chosen = {m: v["chosen"] for m, v in rec["nested"].items()}
            assert {m: v["chosen"] for m, v in new["nested"].items()} == chosen
            assert new["error_max_pct"] == pytest.approx(rec["error_max_pct"], rel=1e-9)
    # the targets, on the error of the whole procedure (nested leave-one-out)
    pixel, pi1, pi4 = shipped["boards"]["pixel1"]["1"], shipped["boards"]["pi4b"]["1"], shipped["boards"]["pi4b"]["4"]
    assert pixel["n"] == 11 and pixel["error_mean_pct"] <= 6 and pixel["error_max_pct"] <= 15
    # counted on cortex-a72 (issue 26): 2.2% and 7.6% mean, as on max before (2.1%, 7.5%)
    assert pi1["error_mean_pct"] <= 2.3 and pi4["error_mean_pct"] <= 7.6
    assert pixel["error_mean_pct"] < pixel["candidates"]["one constant"]["loo_mean_pct"]


def _older(shipped: dict, fmt: int) -> dict:
    """The shipped calibration as an older format wrote it: one set of counts (then counted on ``max``), boards
    without a cpu, and for format 1 no error_* fields."""
    drop = ("error", "nested", "cpu") if fmt == 1 else ("cpu",)
    return {**shipped, "format": fmt, "counts": shipped["counts"]["cortex-a72"],
            "boards": {b: {t: {k: v for k, v in rec.items() if not k.startswith(drop)} for t, rec in per.items()}
                       for b, per in shipped["boards"].items()}}


def test_a_format_1_calibration_is_refitted_when_read(tmp_path):
    """A calibration written before the nested error (format 1: no error_* fields) is refitted from its counts, on
    the core they were counted on then (max)."""
    shipped = calibration.shipped()
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_older(shipped, 1)))
    cal = calibration.load(path)
    assert cal["format"] == 3 and cal["runner_sha256"] == SHIPPED_SHA and set(cal["counts"]) == {"max"}
    assert calibration.board_cpu(cal, "pixel1") == "max"
    assert cal["boards"]["pixel1"]["1"]["error_max_pct"] == pytest.approx(
        shipped["boards"]["pixel1"]["1"]["error_max_pct"])


def test_a_format_2_calibration_reads_as_counted_on_max(tmp_path):
    """A user's calibration from before issue 26 was counted on QEMU's max core: estimates with it count on max
    too, so the counts and the fit stay alike."""
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_older(calibration.shipped(), 2)))
    cal = calibration.load(path)
    assert {calibration.board_cpu(cal, b) for b in cal["boards"]} == {"max"} and set(cal["counts"]) == {"max"}
    job = emulated.plan(None, calibration=str(path), fast=True)
    assert {c: sorted(names) for c, names in job["cores"].items()} == {"max": ["pi4b", "pixel1"]}


def _synthetic(n: int, k=(300.0, 900.0), noise=None) -> dict:
    """Models whose latency is exactly k_gemm * GEMM + k_other * other instructions (in 1e9), times (1 + noise)."""
    import numpy as np

    rng = np.random.RandomState(0)
    data = {}
    for i in range(n):
        gemm, rest = rng.uniform(20e6, 200e6), rng.uniform(5e6, 60e6)
        classes = {"binary_gemm": gemm * 0.7, "float_gemm": gemm * 0.3, "binary_other": rest * 0.5,
                   "float_other": rest * 0.5}
        ms = (k[0] * gemm + k[1] * rest) / 1e9 * (1 + (noise[i] if noise is not None else 0.0))
        data[f"m{i}"] = (classes, ms)
    return data


def test_nested_error_on_data_whose_answer_is_known():
    # latency exactly linear in GEMM and other work: every fold chooses that model and misses by nothing
    data = _synthetic(10)
    nested = fit.nested_loo(data)
    assert {v["chosen"] for v in nested.values()} == {"GEMM kernels / other work"}
    assert max(abs(v["error_pct"]) for v in nested.values()) < 1e-6
    name, rec = fit.choose(data)
    assert name == "GEMM kernels / other work" and rec["error_max_pct"] < 1e-6 and rec["error_n"] == 10
    assert rec["k_ms_per_1e9"] == pytest.approx([300.0, 900.0], rel=1e-6)
    # too few models for a two-cost candidate (4 per cost): the baseline alone, whose held-out estimate is known in
    # closed form: k = sum(r_j) / sum(r_j^2) over the others, r_j = I_j / T_j (least squares on relative error)
    few = _synthetic(5)
    nested = fit.nested_loo(few)
    assert {v["chosen"] for v in nested.values()} == {"one constant"}
    for name, (classes, _ms) in few.items():
        r = [sum(c.values()) / 1e9 / t for n, (c, t) in few.items() if n != name]
        k = sum(r) / sum(x * x for x in r)
        assert nested[name]["estimate_ms"] == pytest.approx(k * sum(classes.values()) / 1e9, rel=1e-9)


def test_the_choice_inside_the_loop_is_what_the_error_measures():
    """With the candidate rule off, a 4-cost fit on 10 models chases noise: its held-out error is then part of the
    stated error, which is never below the winner's own leave-one-out error (the choice saw every model)."""
    import numpy as np

    noise = np.random.RandomState(1).normal(0, 0.05, 10)
    data = _synthetic(10, noise=noise)
    name, rec = fit.choose(data)
    nested_by_hand = {}
    for held in data:
        rest = {n: v for n, v in data.items() if n != held}
        chosen, _ = fit.select(rest)
        groups = fit.MODELS[chosen]
        est = fit.predict(fit.fit(list(rest.values()), groups), data[held][0], groups)
        nested_by_hand[held] = 100 * (est / data[held][1] - 1)
    assert {n: v["error_pct"] for n, v in rec["nested"].items()} == pytest.approx(nested_by_hand)
    assert rec["error_mean_pct"] >= rec["loo_mean_pct"] - 1e-9
    assert "per-kernel-class linear fit" not in fit.candidates(data)  # 4 costs need 16 models
    assert "per-kernel-class linear fit" in fit.candidates(_synthetic(16))


def test_likely_range_arithmetic():
    from edgebnn.estimate import estimate

    assert estimate.likely_range(100.0, 10.0) == pytest.approx((100 / 1.1, 100 / 0.9))
    assert estimate.likely_range(79.0, 11.7) == pytest.approx((70.72, 89.47), abs=0.01)
    lo, hi = estimate.likely_range(5.0, 120.0)
    assert lo == pytest.approx(5 / 2.2) and hi == float("inf")
    # the fast path's own error compounds with the calibration's: (1 + E)(1 + F) - 1
    assert estimate.range_error_pct({"error_max_pct": 10.0}, 5.0) == pytest.approx(15.5)
    assert estimate.range_error_pct({"error_max_pct": 11.7}) == pytest.approx(11.7)
    assert estimate.format_ms(79.0, 70.72, 89.47) == "79 ms, likely 70.7-89.5"
    assert estimate.format_ms(2.834, 2.54, 3.21) == "2.83 ms, likely 2.54-3.21"
    # every calibration model's published figure lies inside the range of its own held-out estimate
    rec = calibration.shipped()["boards"]["pixel1"]["1"]
    for v in rec["nested"].values():
        lo, hi = estimate.likely_range(v["estimate_ms"], estimate.range_error_pct(rec))
        assert lo - 1e-9 <= v["published_ms"] <= hi + 1e-9


@pytest.mark.parametrize("left_out", ["QuickNet", "BiRealNet", "BinaryDenseNet28"])
def test_left_out_model_is_estimated_where_the_loo_table_says(left_out):
    """A fit made without the model, from the counts stored in the shipped calibration, lands exactly on the
    leave-one-out table's estimate and within the table's error of the published figure."""
    cal = calibration.shipped()
    for board, per in cal["boards"].items():
        for threads, rec in per.items():
            if left_out not in rec["loo"]:
                continue
            groups = [g if isinstance(g, dict) else tuple(g) for g in rec["groups"]]  # weighted groups stay dicts
            published = boards.get(board).published[int(threads)]
            counts = cal["counts"][rec["cpu"]]
            rest = [(counts[m]["classes"], ms) for m, ms in published.items() if m != left_out and m in rec["loo"]]
            est = fit.predict(fit.fit(rest, groups), counts[left_out]["classes"], groups)
            row = rec["loo"][left_out]
            assert est == pytest.approx(row["estimate_ms"], rel=1e-9)
            assert abs(est / published[left_out] - 1) * 100 == pytest.approx(abs(row["error_pct"]), rel=1e-9)
            assert abs(row["error_pct"]) <= rec["loo_max_pct"] + 1e-9


def test_dense_heavy_models_are_flagged_and_calibration_models_are_not():
    """XNORNet and BinaryAlexNet (binary dense layers: 58.6M multiply-accumulates streamed once per inference)
    are flagged; none of the 11 calibration models is."""
    cal = calibration.shipped()
    assert cal["max_dense_macs"] == 806_400  # RealToBinaryNet's classifier
    counted = cal["counts"]["cortex-a72"]
    for name in calibration.EXCLUDED:
        c = counted[name]
        assert c["dense_macs"] == 58_621_952
        flags = calibration.dense_flag(c["dense_macs"], cal) + calibration.unseen_shares(c["op_types"], cal)
        assert flags[0].startswith("dense layers with 58.6M multiply-accumulates")
    for name, c in counted.items():
        if name not in calibration.EXCLUDED:
            assert calibration.dense_flag(c["dense_macs"], cal) == []
            assert calibration.unseen_shares(c["op_types"], cal) == []
    assert calibration.unseen_shares({"SomethingNew": 0.2, "LceBconv2d": 0.8}, cal)[0].startswith("SomethingNew")


@pytest.mark.qemu  # skipped without the aarch64 runner
def test_unsupported_plugin_api_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(EdgebnnError, match="QEMU 9.1.0 is not supported for instruction counting"):
        qemu.check_plugin_api("9.1.0")
    fake = tmp_path / "qemu-aarch64"
    fake.write_text("#!/bin/sh\necho 'qemu-aarch64 version 9.1.0'\n")
    fake.chmod(0o755)
    env = {**os.environ, "EDGEBNN_QEMU": str(fake)}
    if not RUNNER.is_file():
        pytest.skip("needs the aarch64 runner")
    proc = subprocess.run([sys.executable, "-m", "edgebnn.cli", "profile", str(tiny_tflite()), "--device",
                           "qemu:aarch64", "--runner", str(RUNNER), "--db", str(tmp_path / "r.db")],
                          capture_output=True, text=True, env=env)
    assert_one_error_line(proc, "plugin API version 1")


@needs_runner
@pytest.mark.skipif(not Path("/usr/bin/qemu-aarch64-static").is_file(), reason="needs qemu-user-static")
def test_a_qemu_without_plugins_is_one_line(monkeypatch):
    monkeypatch.setenv("EDGEBNN_QEMU", "/usr/bin/qemu-aarch64-static")
    with pytest.raises(EdgebnnError, match="cannot load plugins .* for the dynamic one"):
        qemu.run_counted(RUNNER, ["--help"])


@needs_runner
def test_another_runner_gets_a_warning_and_the_hint(tmp_path):
    other = tmp_path / "lce_benchmark_model_aarch64"
    other.write_bytes(RUNNER.read_bytes() + b"\0")  # same program, another sha256
    job = emulated.plan(other)
    assert len(job["warnings"]) == 1 and "edgebnn calibrate --runner PATH" in job["warnings"][0]
    assert emulated.plan(RUNNER)["warnings"] == []
    with pytest.raises(EdgebnnError, match="needs a runner"):
        emulated.plan(None)
    with pytest.raises(EdgebnnError, match="not an aarch64 Linux program"):
        emulated.plan(Path(sys.executable).resolve())


@needs_runner
@pytest.mark.slow
def test_profile_on_qemu_stores_estimated_rows(tmp_path):
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "edgebnn.cli", "profile", str(tiny_tflite()), "--device", "qemu:aarch64",
           "--runner", str(RUNNER), "--db", str(db)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-800:]
    assert "ESTIMATED latency (not measured)" in proc.stdout and "estimated for Raspberry Pi 4B" in proc.stdout
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM results ORDER BY device, threads")]
    assert [(r["device"], r["threads"], r["kind"]) for r in rows] == [
        ("pi4b", 1, "estimate"), ("pi4b", 4, "estimate"), ("pixel1", 1, "estimate")]
    for r in rows:
        e = json.loads(r["estimate"])
        assert r["machine"].endswith("(estimated)") and r["mean_ms"] == r["min_ms"] == r["max_ms"] > 0
        assert e["calibration"]["runner_sha256"] == SHIPPED_SHA and e["runner_sha256"] == SHIPPED_SHA
        assert e["n_calibration_models"] >= 3 and e["error_mean_pct"] > 0 and "QEMU 7" in e["source"]
        assert e["path"] == "qemu" and "nested leave-one-out" in e["source"]
        assert r["cpu"] == e["cpu"] == "cortex-a72" and "-cpu cortex-a72" in e["source"]  # the boards' own core
        lo, hi = e["range_ms"]
        assert lo < r["mean_ms"] < hi and lo == pytest.approx(r["mean_ms"] / (1 + e["error_max_pct"] / 100))
        ops = [dict(o) for o in conn.execute("SELECT * FROM op_profile WHERE result_id = ?", (r["id"],))]
        assert abs(sum(o["instructions"] for o in ops) / e["instructions"] - 1) < 0.02
        assert sum(o["avg_ms"] for o in ops) == pytest.approx(r["mean_ms"])
    pi1, pi4 = rows[0], rows[1]
    assert pi4["mean_ms"] < pi1["mean_ms"]  # four threads estimated faster
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0 and "(stored; --force to estimate again)" in again.stdout


@needs_runner
def test_calibrate_refuses_in_one_line(tmp_path):
    from click.testing import CliRunner

    from edgebnn.cli import main

    res = CliRunner().invoke(main, ["calibrate", "--runner", str(RUNNER), "--models", "Foo"])
    assert res.exit_code == 2 and "unknown Larq Zoo model(s) Foo" in res.output
    try:
        import larq_zoo  # noqa: F401
    except ImportError:
        res = CliRunner().invoke(main, ["calibrate", "--runner", str(RUNNER), "--models", "QuickNetSmall",
                                        "--models-dir", str(tmp_path)])
        assert res.exit_code == 2 and "pip install 'edgebnn[zoo]'" in res.output
    res = CliRunner().invoke(main, ["calibrate", "--runner", str(tmp_path / "none")])
    assert res.exit_code == 2 and res.output.startswith("error: runner")


def test_xnnpack_operators_are_named_by_the_flatbuffer_ops_they_ran():
    """A partition may take a shortcut's pooling and 1x1 conv from beyond the next LCE op, and runs a
    concatenation as one copy per input; an unmatched operator leaves every row as it was."""
    def op(kind, n_inputs=1):
        return {"type": kind, "inputs": [("in", (1,))] * n_inputs, "outputs": [(f"{kind.lower()}_out", (1,))]}

    flat = [op("CONV_2D"), op("LceQuantize"), op("LceBconv2d"), op("PRELU"), op("SUB"), op("LceQuantize"),
            op("LceBconv2d"), op("AVERAGE_POOL_2D"), op("CONV_2D"), op("ADD"), op("CONCATENATION", 2)]

    def lce(i):
        return [{"node_type": "LceQuantize", "index": i, "name": "q"}, {"node_type": "LceBconv2d", "index": i + 1}]

    def rows(labels):
        out = [{"node_type": "Convolution (F32, IGEMM)", "index": 0, "name": "d0", "delegate": 0}, *lce(1)]
        out += [{"node_type": lab, "index": j, "name": f"d1.{j}", "delegate": 1} for j, lab in enumerate(labels[:4])]
        out += lce(5)
        return out + [{"node_type": lab, "index": j, "name": f"d2.{j}", "delegate": 2}
                      for j, lab in enumerate(labels[4:])]

    got = rows(["PReLU (F32)", "Elementwise add/multiply (F32)", "Average pooling (F32)",
                "GEMM (F32: 1x1 convolution or fully connected)", "Elementwise add/multiply (F32)",
                "Elementwise unary (F32)", "Elementwise unary (F32)"])
    counting._name_delegated(got, flat)
    assert [(r["op"], r["op_index"], r["name"]) for r in got if "delegate" in r][1:] == [
        ("PRELU", 3, "prelu_out"), ("SUB", 4, "sub_out"), ("AVERAGE_POOL_2D", 7, "average_pool_2d_out"),
        ("CONV_2D", 8, "conv_2d_out"), ("ADD", 9, "add_out"), ("CONCATENATION", 10, "concatenation_out"),
        ("CONCATENATION", 10, "concatenation_out")]
    fused = rows(["PReLU (F32)", "Elementwise add/multiply (F32)", "Average pooling (F32)", "PReLU (F32)",
                  "Elementwise add/multiply (F32)", "Elementwise unary (F32)", "Elementwise unary (F32)"])
    counting._name_delegated(fused, flat)
    assert not any("op" in r for r in fused) and fused[3]["name"] == "d1.0"


@pytest.mark.qemu
@pytest.mark.skipif(not shutil.which("qemu-aarch64"), reason="needs qemu-aarch64")
def test_an_unknown_qemu_cpu_is_one_line():
    assert {"cortex-a57", "cortex-a72", "cortex-a76", "max"} <= set(qemu.cpu_models())
    assert qemu.DEFAULT_CPU == "cortex-a72"
    with pytest.raises(EdgebnnError, match=r"^unknown QEMU CPU 'kryo': qemu-aarch64 -cpu help lists .*cortex-a72"):
        qemu.check_cpu("kryo")


def test_qemu_device_names_its_core():
    from edgebnn.devices import config

    assert config.resolve("qemu:aarch64").cpu is None  # each board's own core
    dev = config.resolve("qemu:aarch64:cortex-a76")
    assert (dev.kind, dev.name, dev.cpu) == ("qemu", "qemu:aarch64:cortex-a76", "cortex-a76")
    for bad in ("qemu:aarch64:", "qemu:x86_64", "qemu:aarch64x"):
        with pytest.raises(EdgebnnError, match="unknown emulated device"):
            config.resolve(bad)


def test_each_board_names_the_core_it_is_counted_on():
    known = boards.load()
    assert (known["pi4b"].core, known["pixel1"].core, known["pi5"].core) == ("cortex-a72", "cortex-a72",
                                                                             "cortex-a76")
    assert known["pi4b"].calibrated and known["pixel1"].calibrated and not known["pi5"].calibrated
    assert boards.cores(known) == {"cortex-a72": ["pi4b", "pixel1"], "cortex-a76": ["pi5"]}


@needs_runner
def test_runs_use_the_named_core_cortex_a72_by_default(tmp_path):
    from edgebnn.devices.execute import open_runner

    args = ["--graph=m.tflite", "--num_runs=1", "--warmup_runs=0", "--min_secs=0", "--warmup_min_secs=0"]
    run = qemu.run_emulated(RUNNER, args, files_in={"m.tflite": tiny_tflite()}, timeout=300)
    assert run["rc"] == 0 and run["cmd"][1:3] == ["-cpu", "cortex-a72"]
    with open_runner("qemu:aarch64:cortex-a76", runner=str(RUNNER)) as host:
        assert "-cpu cortex-a76" in host.where
        run = host.run(args, files_in={"m.tflite": tiny_tflite()})
    assert run["rc"] == 0 and run["cmd"][1:3] == ["-cpu", "cortex-a76"]
    with pytest.raises(EdgebnnError, match="unknown QEMU CPU 'kryo'"):
        qemu.run_emulated(RUNNER, ["--help"], cpu="kryo")


@functools.lru_cache(maxsize=1)
def tiny_int8_tflite() -> Path:
    """A 32x32x3 -> 10 real-valued net (two 3x3 convs of 32 channels, mean, dense), full-int8 post-training
    quantised by TensorFlow (``float_flatbuffer(int8=True)``, 8 random images)."""
    import numpy as np
    import tensorflow as tf

    from edgebnn.conversion.lce import float_flatbuffer

    tf.random.set_seed(0)
    model = tf.keras.Sequential([
        tf.keras.layers.Input((32, 32, 3)), tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        tf.keras.layers.Conv2D(32, 3, padding="same", activation="relu"), tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(10)])
    x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype(np.float32)
    fb, _, _ = float_flatbuffer(model, x, int8=True)
    path = scratch_folder("edgebnn-test-int8-") / "int8.tflite"
    path.write_bytes(fb)
    return path


@needs_runner
@pytest.mark.slow
def test_int8_convolutions_count_fewer_instructions_on_a_core_with_dot_product():
    """The same int8 flatbuffer on cortex-a72 (ARMv8.0, the Pi 4B's core) and cortex-a76 (dot product: SDOT),
    and the count records its core; cortex-a57 counts exactly what cortex-a72 does (the Pixel 1's stand-in)."""
    model = tiny_int8_tflite()
    a72, a76, a57 = (counting.count_model(RUNNER, model, cpu=c) for c in ("cortex-a72", "cortex-a76", "cortex-a57"))
    assert (a72["cpu"], a76["cpu"], a57["cpu"]) == ("cortex-a72", "cortex-a76", "cortex-a57")
    assert a76["instructions"] < 0.8 * a72["instructions"]
    assert abs(a57["instructions"] / a72["instructions"] - 1) < 1e-4


@needs_runner
def test_boards_on_one_core_share_one_count_and_name_it(tmp_path, monkeypatch):
    calls = []
    real = counting.count_model

    def count(*args, **kw):
        calls.append(kw.get("cpu"))
        return real(*args, **kw)

    monkeypatch.setattr(counting, "count_model", count)
    out = emulated.estimate_files([str(tiny_tflite())], runner=RUNNER, db=str(tmp_path / "r.db"))
    cal = calibration.shipped()
    cores = {calibration.board_cpu(cal, b) for b in cal["boards"]}
    assert sorted(calls) == sorted(cores)  # one count per core, not per board
    assert {(r["device"], r["cpu"]) for r in out} == {(b, calibration.board_cpu(cal, b)) for b in cal["boards"]}
    for r in out:
        assert f"-cpu {r['cpu']}" in r["estimate"]["source"] and r["estimate"]["cpu"] == r["cpu"]
        assert r["precision"] == "float"
    rows = sqlite3.connect(tmp_path / "r.db").execute("SELECT device, cpu, precision FROM results").fetchall()
    assert {(d, c) for d, c, _ in rows} == {(r["device"], r["cpu"]) for r in out}
    # the Pi 5's core: instructions only (no published figures), never stored
    calls.clear()
    pi5 = emulated.estimate_files([str(tiny_tflite())], runner=RUNNER, db=str(tmp_path / "r.db"), cpu="cortex-a76")
    assert calls == ["cortex-a76"]
    assert [(r["device"], r["cpu"], r["status"], r["mean_ms"]) for r in pi5] == [
        ("pi5", "cortex-a76", "instructions only", None)]
    assert "UNCALIBRATED" in pi5[0]["estimate"]["source"] and pi5[0]["estimate"]["instructions"] > 1e5
    assert "uncalibrated: no ms" in estimate_table(pi5)
    assert len(sqlite3.connect(tmp_path / "r.db").execute("SELECT * FROM results").fetchall()) == len(rows)


def estimate_table(results) -> str:
    from edgebnn.estimate import estimate

    return estimate.format_rows(results)
