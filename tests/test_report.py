"""The report, rendered from a results database, run folders and conversion reports that the test writes, with
the table's figures checked against them."""

import json

from click.testing import CliRunner

from edgebnn import report, runs
from edgebnn.cli import main
from edgebnn.profile import store


def _run(root, name, model, real, top1, dataset="digits"):
    path = root / name
    path.mkdir(parents=True)
    runs.write_info(path, {"name": name, "model": model, "real": real, "dataset": dataset, "status": "done",
                           "final_val_top1": top1, "finished": "2026-11-23 10:00:00"})
    return path


def _flatbuffer(root, name, run_dir, model, sha, top1, baselines=None):
    path = root / f"{name}.tflite"
    path.write_bytes(b"not read by the report")
    sidecar = {"sha256": sha, "source": {"path": str(run_dir), "run_dir": str(run_dir), "model": model},
               "target": {"name": "arm64"}, "check": {"samples": 100, "tflite_top1": top1},
               "deployment": {"dataset": "digits"}, "baselines": baselines or {}}
    (root / f"{name}.tflite.json").write_text(json.dumps(sidecar))
    return path


def _result(path, sha, name, threads, median, ops=None, device="local", machine="host x86_64 (test CPU)"):
    return {"model_sha256": sha, "model_name": name, "model_path": str(path), "model_size_mb": 0.125,
            "device": device, "threads": threads, "target": "arm64", "machine": machine,
            "kernels": "LCE reference kernels (not ARM64)", "runs": 20, "min_ms": median * 0.9,
            "median_ms": median, "mean_ms": median * 1.05, "p90_ms": median * 1.2}, ops


def make_results(tmp_path):
    root = tmp_path / "runs"
    bireal = _run(root, "bireal-18-a", "bireal-18", False, 0.93)
    _run(root, "bireal-18-real-a", "bireal-18", True, 0.97)
    reactnet = _run(root, "reactnet-18-a", "reactnet-18", False, 0.91)
    fb1 = _flatbuffer(bireal, "bireal", bireal, "bireal-18", "a" * 64, 0.92,
                      baselines={"float": {"sha256": "c" * 64, "check": {"samples": 100, "tflite_top1": 0.96}}})
    fb2 = _flatbuffer(reactnet, "reactnet", reactnet, "reactnet-18", "b" * 64, 0.90)
    fb3 = bireal / "bireal.float.tflite"
    fb3.write_bytes(b"x")
    db = tmp_path / "results.db"
    conn = store.connect(db)
    ops = [{"node_type": "LceBconv2d", "avg_ms": 1.5}, {"node_type": "LceBconv2d", "avg_ms": 0.5},
           {"node_type": "CONV_2D", "avg_ms": 0.75}, {"node_type": "LceQuantize", "avg_ms": 0.25}]
    for args in [(fb1, "a" * 64, "bireal.tflite", 1, 4.0, ops), (fb1, "a" * 64, "bireal.tflite", 4, 1.5),
                 (fb2, "b" * 64, "reactnet.tflite", 1, 3.0), (fb3, "c" * 64, "bireal.float.tflite", 1, 6.0)]:
        store.save(conn, *_result(*args))
    conn.close()
    return db, root


def test_report_joins_latency_conversion_and_runs(tmp_path):
    db, root = make_results(tmp_path)
    written = report.write(db, tmp_path / "report", [root])
    rows = {(r["model"], r["threads"]): r for r in written["rows"]}
    assert set(rows) == {("bireal-18", 1), ("bireal-18", 4), ("reactnet-18", 1), ("bireal-18-real (float)", 1)}
    b1 = rows[("bireal-18", 1)]
    assert b1["median_ms"] == 4.0 and b1["flatbuffer_mb"] == 0.125 and b1["family"] == "bireal"
    assert b1["tflite_top1"] == 0.92 and b1["keras_top1"] == 0.93 and b1["twin_top1"] == 0.97
    assert abs(b1["gap_to_float"] - 0.04) < 1e-9
    assert {o["node_type"]: o["ms"] for o in b1["op_types"]} == {"LceBconv2d": 2.0, "CONV_2D": 0.75,
                                                                  "LceQuantize": 0.25}
    r1 = rows[("reactnet-18", 1)]
    assert r1["twin_top1"] is None and r1["gap_to_float"] is None and r1["tflite_top1"] == 0.90
    f1 = rows[("bireal-18-real (float)", 1)]
    assert f1["kind"] == "real" and f1["tflite_top1"] == 0.96

    out = tmp_path / "report"
    for name in ["index.html", "results.json", *report.PLOTS]:
        assert (out / name).stat().st_size > 0
    assert (out / "accuracy_latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "index.html").read_text()
    assert "4.00" in page and "92.0%" in page and "+4.0 pts" in page and "host x86_64 (test CPU)" in page
    assert json.loads((out / "results.json").read_text())[0]["device"] == "local"


def test_table_text_carries_the_figures(tmp_path):
    db, root = make_results(tmp_path)
    text = report.format_table(report.collect(db, [root]))
    line = next(ln for ln in text.splitlines() if ln.startswith("bireal-18 ") and "  4  " in ln)
    assert "1.50" in line and "92.0%" in line and "93.0%" in line and "+4.0 pts" in line


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 0.80), (2.0, 0.90), (1.5, 0.70), (3.0, 0.85), (4.0, 0.95)]
    assert report.pareto_front(points) == [0, 1, 4]


def test_report_cli_and_bad_input(tmp_path):
    db, root = make_results(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(main, ["report", "--db", str(db), "--out", str(tmp_path / "r"), "--runs", str(root)])
    assert ok.exit_code == 0, ok.output
    assert "report: " in ok.stdout and "bireal-18" in ok.stdout
    missing = runner.invoke(main, ["report", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "no results database at" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
