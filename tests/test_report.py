"""The report, rendered from a results database (host-measured, board-measured and estimated rows), run folders and
conversion reports that the test writes, with the table's figures, the plots' axes and the budget's answer checked
against them; and the page itself looked at in headless Chromium."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgebnn import reporting as report
from edgebnn import runs, store
from edgebnn.cli import main

CHROMIUM = "/usr/bin/chromium"
HOST = "x86_64 Test CPU, 2 cores"


def _run(root, name, model, real, best, last, dataset="digits"):
    path = root / name
    path.mkdir(parents=True)
    runs.write_info(path, {"name": name, "model": model, "real": real, "dataset": dataset, "status": "done",
                           "best_val_top1": best, "final_val_top1": last, "finished": "2026-11-23 10:00:00",
                           "checkpoints": {"best": {"file": "model.keras", "epoch": 3, "val_top1": best},
                                           "last": {"file": "model-last.keras", "epoch": 4, "val_top1": last}}})
    return path


def _flatbuffer(run_dir, name, model, sha, keras, tflite, baselines=None, samples=100):
    """A conversion report as edgebnn convert writes it: its best checkpoint, the proof on ``samples`` digits."""
    path = run_dir / f"{name}.tflite"
    path.write_bytes(b"not read by the report")
    info = runs.read_info(run_dir)
    sidecar = {"sha256": sha, "target": {"name": "arm64"}, "deployment": {"dataset": "digits"},
               "source": {"path": str(run_dir), "run_dir": str(run_dir), "model": model, "name": run_dir.name,
                          "checkpoint": {"which": "best", **info["checkpoints"]["best"]}},
               "check": {"dataset": "digits", "samples": samples, "keras_top1": keras, "tflite_top1": tflite},
               "baselines": baselines or {}}
    (run_dir / f"{name}.tflite.json").write_text(json.dumps(sidecar))
    return path


def _host(path, sha, threads, ms, ops=None):
    return {"model_sha256": sha, "model_name": path.stem, "model_path": str(path), "model_size_mb": 0.125,
            "device": "local", "threads": threads, "target": "host", "machine": HOST, "kind": "host",
            "kernels": "LCE reference kernels (not ARM64)", "runs": 20, "min_ms": ms * 0.9, "median_ms": ms,
            "mean_ms": ms * 1.05, "p90_ms": ms * 1.2}, ops


def _estimate(path, sha, threads, ms, board="pi4b", flags=()):
    source = (f"estimated for Raspberry Pi 4B ({threads} thread(s)) from 2.1e+08 aarch64 instructions counted under "
              "QEMU 7.2; per-class calibrated on 8 Larq Zoo models, leave-one-out error 9.5% mean, 21.0% max")
    estimate = {"board": board, "instructions": 2.1e8, "calibration": {"name": "pi4b-zoo"}, "loo_mean_pct": 9.5,
                "loo_max_pct": 21.0, "n_calibration_models": 8, "flags": list(flags), "source": source}
    return {"model_sha256": sha, "model_name": path.stem, "model_path": str(path), "model_size_mb": 0.125,
            "device": board, "threads": threads, "target": "arm64", "kind": "estimate",
            "machine": "Raspberry Pi 4B (estimated)", "kernels": "LCE optimized kernels (aarch64, estimated)",
            "runs": 1, "min_ms": ms, "median_ms": ms, "mean_ms": ms, "max_ms": ms, "estimate": estimate,
            "flags": [f"unseen ops: {f}" for f in flags]}, None


def _board(path, sha, threads, ms):
    return {"model_sha256": sha, "model_name": path.stem, "model_path": str(path), "model_size_mb": 0.125,
            "device": "pi4b", "threads": threads, "target": "arm64", "kind": "board",
            "machine": "Raspberry Pi 4 Model B Rev 1.4", "kernels": "LCE optimized kernels (aarch64)", "runs": 50,
            "min_ms": ms * 0.95, "median_ms": None, "mean_ms": ms, "max_ms": ms * 1.3,
            "flags": ["spread: max 30% over min"]}, None


def make_results(tmp_path):
    """bireal-18 (best 93%, last 91%) and its trained twin (97%), reactnet-18 (95%), a float baseline of bireal's
    twin; host rows with a slow outlier, estimates for pi4b and one measurement on a pi4b."""
    root = tmp_path / "runs"
    bireal = _run(root, "bireal-18-a", "bireal-18", False, 0.93, 0.91)
    _run(root, "bireal-18-real-a", "bireal-18", True, 0.97, 0.97)
    reactnet = _run(root, "reactnet-18-a", "reactnet-18", False, 0.95, 0.95)
    fb1 = _flatbuffer(bireal, "bireal", "bireal-18", "a" * 64, 0.94, 0.93, baselines={
        "float": {"sha256": "c" * 64, "check": {"dataset": "digits", "samples": 100, "keras_top1": 0.11,
                                                "tflite_top1": 0.11}}})
    fb2 = _flatbuffer(reactnet, "reactnet", "reactnet-18", "b" * 64, 0.96, 0.96)
    fb3 = bireal / "bireal.float.tflite"
    fb3.write_bytes(b"x")
    db = tmp_path / "results.db"
    conn = store.connect(db)
    ops = [{"node_type": "LceBconv2d", "avg_ms": 1.5}, {"node_type": "LceBconv2d", "avg_ms": 0.5},
           {"node_type": "CONV_2D", "avg_ms": 0.75}, {"node_type": "LceQuantize", "avg_ms": 0.25}]
    for result, op_rows in [_host(fb1, "a" * 64, 1, 4.0, ops), _host(fb1, "a" * 64, 2, 2.5),
                            _host(fb2, "b" * 64, 1, 3.0), _host(fb3, "c" * 64, 1, 600.0),
                            _estimate(fb1, "a" * 64, 1, 20.0), _estimate(fb1, "a" * 64, 4, 8.0),
                            _estimate(fb2, "b" * 64, 1, 45.0, flags=["PRELU"]), _estimate(fb2, "b" * 64, 4, 31.0),
                            _estimate(fb3, "c" * 64, 1, 5.0), _board(fb1, "a" * 64, 4, 9.0)]:
        store.save(conn, result, op_rows)
    conn.close()
    return db, root


def test_rows_compare_like_with_like_and_say_what_each_latency_is(tmp_path):
    db, root = make_results(tmp_path)
    rows = report.collect(db, [root])
    by = {(r["model"], r["device"], r["latency_kind"], r["threads"]): r for r in rows}
    b1 = by[("bireal-18", "local", "host", 1)]
    # Keras and the flatbuffer on the same 100 digits samples; the run's val top-1 is the converted (best) checkpoint
    assert (b1["keras_top1_check"], b1["tflite_top1"], b1["check_samples"], b1["check_dataset"]) == \
        (0.94, 0.93, 100, "digits")
    assert b1["val_top1"] == 0.93 and b1["checkpoint"] == "best" and b1["twin_top1"] == 0.97
    assert abs(b1["gap_to_float"] - 0.04) < 1e-9 and b1["trained"] and b1["median_ms"] == 4.0
    assert {o["node_type"]: o["ms"] for o in b1["op_types"]} == {"LceBconv2d": 2.0, "CONV_2D": 0.75,
                                                                  "LceQuantize": 0.25}
    assert b1["latency_from"] == f"{HOST}; LCE reference kernels (not ARM64)"
    est = by[("reactnet-18", "pi4b", "estimate", 1)]
    assert est["latency_from"].startswith("estimated for Raspberry Pi 4B") and "leave-one-out error 9.5%" in \
        est["latency_from"]
    assert est["flags"] == ["unseen ops: PRELU"]
    measured = by[("bireal-18", "pi4b", "board", 4)]
    assert measured["median_ms"] == 9.0 and measured["flags"] == ["spread: max 30% over min"]  # mean: no median
    baseline = by[("bireal-18-real float baseline", "local", "host", 1)]
    assert baseline["baseline"] == "float" and not baseline["trained"] and report.accuracy(baseline) is None
    assert report.accuracy(b1) == 0.93 and report.accuracy(est) == 0.96


def test_table_and_notes(tmp_path):
    db, root = make_results(tmp_path)
    rows = report.collect(db, [root])
    lines = report.format_table(rows).splitlines()
    assert lines[0].split("  ")[0] == "model" and "latency kind" in lines[0] and "on (samples, data)" in lines[0]
    line = next(ln for ln in lines if ln.startswith("bireal-18 ") and " local " in ln and "  2  " in ln)
    assert line.split() == ["bireal-18", "local", "2", "2.50", "host", "float", "unknown", "-", "0.125", "94.0%",
                            "93.0%", "100", "digits", "val", "93.0%", "(best)", "+4.0", "pts"]
    base = next(ln for ln in lines if ln.startswith("bireal-18-real float baseline"))
    assert base.count("untrained") == 2
    text = "\n".join(report.notes(rows))
    assert "local [host]: measured on this host (LCE reference kernels" in text
    assert "pi4b [estimate]: estimated from the aarch64 instructions" in text and "pi4b [board]: measured on the" \
        in text
    assert "flags: reactnet-18 @ pi4b x1 [estimate]: unseen ops: PRELU" in text and "latency only" in text


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 0.80), (2.0, 0.90), (1.5, 0.70), (3.0, 0.85), (4.0, 0.95)]
    assert report.pareto_front(points) == [0, 1, 4]


def test_one_figure_per_device_and_latency_kind_on_a_log_axis(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    db, root = make_results(tmp_path)
    written = report.write(db, tmp_path / "out", [root])
    names = sorted(Path(p).name for p in written["plots"])
    assert names == ["accuracy_latency-local-host.png", "accuracy_latency-pi4b-board.png",
                     "accuracy_latency-pi4b-estimate.png", "op_types.png", "threads.png"]
    for p in written["plots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The axes themselves: drawn again into a figure we keep, to read what is on them.
    rows = written["rows"]
    group = report._panels(rows)[("local", "host")]
    captured = []
    real_savefig = plt.Figure.savefig
    plt.Figure.savefig = lambda fig, *a, **k: captured.append(fig)
    try:
        report.plot_accuracy_latency(rows, group, tmp_path / "x.png")
    finally:
        plt.Figure.savefig = real_savefig
    ax, strip = captured[0].axes[:2]
    assert ax.get_xscale() == "log" and strip.get_xscale() == "log"
    points = [c for c in ax.collections if len(c.get_offsets()) == 1]
    rings = [c for c in ax.collections if len(c.get_offsets()) > 1]  # the Pareto front's points, ringed
    assert sorted(tuple(c.get_offsets()[0]) for c in points) == [(2.5, 93.0), (3.0, 96.0), (4.0, 93.0)]
    assert [tuple(map(tuple, c.get_offsets())) for c in rings] == [((2.5, 93.0), (3.0, 96.0))]
    assert ax.get_ylim()[1] <= 100.5  # the 600 ms baseline is not on this axis, and none goes above 100%
    assert [tuple(c.get_offsets()[0]) for c in strip.collections] == [(600.0, 0.0)]
    assert "100 digits validation samples" in ax.get_ylabel() and "host" in strip.get_xlabel()
    legend = [t.get_text() for t in captured[0].legends[0].get_texts()]
    assert {"bireal-18", "reactnet-18", "bireal-18-real float baseline", "1 thread", "2 threads",
            "Pareto front"} <= set(legend)
    page = (tmp_path / "out" / "index.html").read_text()
    assert "accuracy_latency-pi4b-estimate.png" in page and "class=\"untrained\"" in page and HOST in page


def test_budget_names_the_most_accurate_model_that_meets_it(tmp_path):
    db, root = make_results(tmp_path)
    rows = report.collect(db, [root])
    answer = report.best_under_budget(rows, 30.0, "pi4b")
    # reactnet-18 (96%) is estimated at 31 ms with 4 threads: over; bireal-18 (93%) is within, measured and estimated
    # at 4 threads; the 5 ms baseline has no trained accuracy.
    r = answer["choice"]
    assert (r["model"], r["threads"], r["latency_kind"], r["median_ms"]) == ("bireal-18", 4, "estimate", 8.0)
    assert answer["meeting"] == 1 and answer["ranked"] == 2
    assert report.best_under_budget(rows, 31.0, "pi4b")["choice"]["model"] == "reactnet-18"
    assert report.parse_budget("30ms") == report.parse_budget("0.03s") == report.parse_budget("30") == 30.0
    text = report.format_budget(answer)
    assert text.startswith("pi4b, budget 30 ms: bireal-18 with 4 thread(s), 8.00 ms (estimate: estimated from")
    assert "top-1 93.0% (flatbuffer, 100 digits val)" in text and "leave-one-out error 9.5% mean" in text

    runner = CliRunner()
    args = ["report", "--db", str(db), "--runs", str(root), "--out", str(tmp_path / "r")]
    ok = runner.invoke(main, [*args, "--budget", "30ms", "--board", "pi4b"])
    assert ok.exit_code == 0, ok.output
    assert "pi4b, budget 30 ms: bireal-18 with 4 thread(s)" in ok.stdout
    assert "pi4b, budget 30 ms: bireal-18" in (tmp_path / "r" / "index.html").read_text()
    none = runner.invoke(main, [*args, "--budget", "5ms", "--board", "pi4b"])
    assert none.exit_code == 1 and "no trained model meets 5 ms on pi4b; the fastest trained model there is " \
        "bireal-18 at 8.00 ms" in none.stdout
    for bad, message in ((["--budget", "fast", "--board", "pi4b"], "--budget 'fast' is not a latency"),
                         (["--budget", "30ms", "--board", "pi5"], "no latency stored for board 'pi5'"),
                         (["--budget", "30ms"], "--budget and --board go together")):
        result = runner.invoke(main, [*args, *bad])
        assert result.exit_code == 2 and result.stderr.startswith(f"error: {message}"), result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_report_cli_and_bad_input(tmp_path):
    db, root = make_results(tmp_path)
    runner = CliRunner()
    ok = runner.invoke(main, ["report", "--db", str(db), "--out", str(tmp_path / "r"), "--runs", str(root)])
    assert ok.exit_code == 0, ok.output
    assert "report: " in ok.stdout and "pi4b [estimate]: estimated" in ok.stdout
    missing = runner.invoke(main, ["report", "--db", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "no results database at" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_page_in_headless_chromium_at_laptop_width(tmp_path):
    """index.html rendered by Debian's Chromium at 1366x768; the screenshot is kept under pytest's tmp dir (its
    path printed: `pytest -s` shows it) for a person to look at."""
    import matplotlib.image

    assert os.access(CHROMIUM, os.X_OK), "Debian's chromium is missing: make chromium (make test installs it)"
    db, root = make_results(tmp_path)
    written = report.write(db, tmp_path / "report", [root], budget="pi4b, budget 30 ms: bireal-18 (test)")
    shot = tmp_path / "report-1366x768.png"
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1366,768",
                           "--hide-scrollbars", Path(written["index"]).resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    print(f"\nscreenshot of the report at 1366x768: {shot}")
    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (768, 1366)
    grey = image[..., :3].mean(axis=2)
    assert grey.std() > 0.05  # text and table drawn, not a blank page
    # The table fits the laptop's width: no column runs off the right edge (the page would scroll sideways).
    assert (grey[:, -30:] > 0.97).mean() > 0.98


def test_last_epoch_and_second_runs_are_told_apart(tmp_path):
    db, root = make_results(tmp_path)
    bireal = root / "bireal-18-a"
    last = _flatbuffer(bireal, "bireal-last", "bireal-18", "d" * 64, 0.92, 0.92)
    sidecar = json.loads((bireal / "bireal-last.tflite.json").read_text())
    sidecar["source"]["checkpoint"] = {"which": "last", **runs.read_info(bireal)["checkpoints"]["last"]}
    (bireal / "bireal-last.tflite.json").write_text(json.dumps(sidecar))
    other = _run(root, "reactnet-18-b", "reactnet-18", False, 0.90, 0.90)
    fb = _flatbuffer(other, "reactnet", "reactnet-18", "e" * 64, 0.90, 0.90)
    conn = store.connect(db)
    store.save(conn, *_host(last, "d" * 64, 1, 4.1))
    store.save(conn, *_host(fb, "e" * 64, 1, 3.1))
    conn.close()
    names = {(r["model"], r["val_top1"]) for r in report.collect(db, [root]) if r["device"] == "local"}
    assert ("bireal-18 (last epoch)", 0.91) in names and ("bireal-18", 0.93) in names
    assert {"reactnet-18 [reactnet-18-a]", "reactnet-18 [reactnet-18-b]"} <= {n for n, _ in names}


def test_gap_to_float_uses_the_twins_deployed_best_checkpoint():
    from edgebnn import reporting as rep

    runs = {"a": {"model": "bireal-18", "real": True, "status": "done", "dataset": "digits", "finished": "1",
                  "best_val_top1": 0.9916, "final_val_top1": 0.9889},
            "b": {"model": "bireal-18", "real": True, "status": "running", "dataset": "digits", "finished": "2",
                  "best_val_top1": 0.5}}
    assert rep._twin_top1(runs, "bireal-18", "digits") == 0.9916
    assert rep._top1({"final_val_top1": 0.97}) == 0.97  # runs written before best checkpoints existed


def test_each_row_shows_its_precision_and_cpu_in_the_table_json_and_page(tmp_path):
    """An int8 flatbuffer's estimate (counted on cortex-a72) beside a float one (an older row: counted on max):
    the precision and the CPU go from the results database to the table, results.json and index.html."""
    db, root = make_results(tmp_path)
    conn = store.connect(db)
    fb = root / "reactnet-18-a" / "reactnet.int8.tflite"
    fb.write_bytes(b"x")
    row, _ = _estimate(fb, "d" * 64, 1, 30.0)
    store.save(conn, {**row, "precision": "int8", "cpu": "cortex-a72"})
    conn.close()
    written = report.write(db, tmp_path / "r", [root])
    rows = {(r["file"], r["device"], r["threads"], r["latency_kind"]): r for r in written["rows"]}
    int8 = rows[(str(fb), "pi4b", 1, "estimate")]
    assert (int8["precision"], int8["cpu"]) == ("int8", "cortex-a72")
    cells = report.table_cells(int8)
    assert cells[report.TABLE_COLUMNS.index("precision")] == "int8"
    assert cells[report.TABLE_COLUMNS.index("cpu")] == "cortex-a72"
    floats = [r for r in written["rows"] if r["latency_kind"] == "estimate" and r["file"] != str(fb)]
    assert floats and all(r["precision"] == "float" and r["cpu"] == "unknown" for r in floats)  # no cpu given
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    assert {(r["file"], r["precision"], r["cpu"]) for r in saved if r["file"] == str(fb)} == {
        (str(fb), "int8", "cortex-a72")}
    page = (tmp_path / "r" / "index.html").read_text()
    assert "<th>precision</th><th>cpu</th>" in page and "<td>int8</td><td>cortex-a72</td>" in page
    assert "latency kind  precision  cpu  " in report.format_table(written["rows"]).splitlines()[0]
