"""Host profiling with LCE's interpreter and `python -m edgebnn.runner`: real converter, real interpreter."""

import subprocess
import sys

import pytest
from cli_checks import assert_one_error_line
from click.testing import CliRunner
from profile_fixtures import tiny_tflite

import edgebnn  # noqa: F401
from edgebnn import store
from edgebnn.cli import main
from edgebnn.devices import local
from edgebnn.devices.parse import parse
from edgebnn.errors import EdgebnnError
from edgebnn.machine import host_label
from edgebnn.profiling import profile
from edgebnn.runner import parse_flags

pytestmark = pytest.mark.slow  # converts one model (about 10 s) per session


@pytest.fixture(scope="module")
def model():
    return tiny_tflite()


def test_statistics_are_exact():
    samples = [1000.0, 2000.0, 3000.0, 4000.0, 10000.0]
    s = local.stats_ms(samples)
    assert s["min_ms"] == 1.0 and s["max_ms"] == 10.0 and s["median_ms"] == 3.0 and s["mean_ms"] == 4.0
    assert s["p90_ms"] == pytest.approx(7.6)  # 4000 + 0.6 * 6000
    assert s["std_ms"] == pytest.approx((sum((x / 1e3 - 4.0) ** 2 for x in samples) / 5) ** 0.5)
    c = local.count_line(samples)
    assert (c["count"], c["first_us"], c["curr_us"]) == (5, 1000.0, 10000.0)


def test_interpreter_matches_lce_python_api(model):
    import numpy as np
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    flat = model.read_bytes()
    ours = local.open_interpreter(flat)
    x = local.random_inputs(ours, seed=3)
    official = Interpreter(flat).predict(x[0])
    assert np.allclose(ours.predict(x)[0], official, atol=1e-5)
    assert ours.input_shapes == [(1, 16, 16, 3)] and ours.output_shapes == [(1, 10)]


def test_local_profile_labels_and_stores(model, tmp_path):
    db = tmp_path / "r.db"
    [r] = profile([str(model)], ["local"], threads=[1], runs=15, warmup=2, db=db)
    assert r["status"] == "measured" and r["runs"] == 15 and r["warmup"] == 2
    assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["max_ms"]
    assert r["min_ms"] <= r["mean_ms"] <= r["max_ms"] and r["std_ms"] >= 0
    assert r["machine"] == host_label()
    if "arm" not in host_label() and "aarch64" not in host_label():
        assert r["kernels"] == "LCE reference kernels (not ARM64)"
    conn = store.connect(db)
    [row] = store.results(conn)
    assert row["model_sha256"] == local.sha256(model) and row["model_name"] == "tiny"
    assert row["mean_ms"] == r["mean_ms"] and row["versions"]["larq-compute-engine"] == "0.16.0"
    # Again: skipped, same figures; with force: measured anew, still one row.
    [again] = profile([str(model)], ["local"], threads=[1], runs=15, warmup=2, db=db)
    assert again["status"] == "skipped" and again["mean_ms"] == r["mean_ms"]
    [forced] = profile([str(model)], ["local"], threads=[1], runs=5, warmup=0, db=db, force=True)
    assert forced["status"] == "measured" and forced["runs"] == 5
    assert len(store.results(conn)) == 1


def test_runner_prints_lce_benchmark_models_format(model):
    proc = subprocess.run([sys.executable, "-m", "edgebnn.runner", f"--graph={model}", "--num_threads=1",
                           "--num_runs=12", "--warmup_runs=2", "--min_secs=0", "--warmup_min_secs=0",
                           "--use_xnnpack=false", "--report_peak_memory_footprint=true", "--use_gpu=false",
                           "--enable_op_profiling=true", "--profiling_output_csv_file=/dev/null"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = parse(proc.stdout)
    assert out["warmup"]["count"] == 2 and out["runs"]["count"] == 12
    assert out["model_size_mb"] == pytest.approx(model.stat().st_size / 1e6, rel=1e-4)
    assert out["timings_us"]["Inference (avg)"] == pytest.approx(out["runs"]["avg_us"], abs=0.1)
    assert out["runs"]["min_us"] <= out["percentiles_us"]["median"] <= out["percentiles_us"]["p90"]
    assert out["ops"] == []  # no per-op timer in LCE's Python interpreter: nothing invented
    assert any("no per-op timer" in n for n in out["notes"])
    assert "ignores --report_peak_memory_footprint=true" in proc.stderr


def test_runner_min_secs_keeps_running(model):
    proc = subprocess.run([sys.executable, "-m", "edgebnn.runner", f"--graph={model}", "--num_runs=1",
                           "--warmup_runs=0", "--warmup_min_secs=0", "--min_secs=0.3"],
                          capture_output=True, text=True, timeout=120)
    out = parse(proc.stdout)
    assert out["warmup"] is None and out["runs"]["count"] > 1
    assert out["runs"]["count"] * out["runs"]["avg_us"] >= 0.3e6 * 0.9


def test_runner_errors_exit_1(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0\0\0\0TFL3" + b"\x07" * 200)
    for graph, msg in [(tmp_path / "none.tflite", "Could not open"), (bad, "LCE cannot load the model")]:
        proc = subprocess.run([sys.executable, "-m", "edgebnn.runner", f"--graph={graph}"], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 1 and msg in proc.stderr and "Traceback" not in proc.stderr


def test_flag_parsing():
    flags, ignored = parse_flags(["--graph=m.tflite", "--num_threads", "4", "--enable_op_profiling",
                                  "--use_xnnpack=false", "--max_profiling_buffer_entries=9", "--unknown_flag=1"])
    assert flags["graph"] == "m.tflite" and flags["num_threads"] == 4 and flags["enable_op_profiling"] is True
    assert flags["use_xnnpack"] is False and ignored == ["--max_profiling_buffer_entries=9", "--unknown_flag=1"]
    with pytest.raises(ValueError, match="--num_runs"):
        parse_flags(["--num_runs=many"])


def test_bad_models_are_one_line(tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(EdgebnnError, match="no TFL3 identifier"):
        profile([str(junk)], ["local"], db=tmp_path / "r.db")
    with pytest.raises(EdgebnnError, match="does not exist"):
        profile([str(tmp_path / "missing.tflite")], ["local"], db=tmp_path / "r.db")


def test_cli_local_json_and_errors(model, tmp_path):
    import json

    db = tmp_path / "r.db"
    res = CliRunner().invoke(main, ["profile", str(model), "--runs", "5", "--warmup", "1", "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    [r] = json.loads(res.output)
    assert r["device"] == "local" and r["runs"] == 5 and r["mean_ms"] > 0
    res = CliRunner().invoke(main, ["profile", str(model), "--threads", "1,x", "--db", str(db)])
    assert_one_error_line(res, "error: --threads '1,x'")
    res = CliRunner().invoke(main, ["profile", str(model), "-d", "nosuch", "--db", str(db)])
    assert res.exit_code == 2 and "unknown device 'nosuch'" in res.output
