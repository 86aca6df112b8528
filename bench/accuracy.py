"""How accurate: each binary family and its real-valued twin trained on Fashion-MNIST's 60,000 training images and
tested on its 10,000 test images, with the Pi 4B latency estimate of each converted flatbuffer.

One row per family: binary top-1, twin top-1, gap (twin - binary, in points), epochs, training wall time (the sum
of the epochs' times, training and test pass; a teacher trained first is counted in the row that needs it), the
machine, the top-1 of the converted LCE flatbuffer on all 10,000 test images (LCE's interpreter on this host), the
Pi 4B estimate at 1 thread (``edgebnn estimate``: LCE's aarch64 instructions counted under QEMU when the runner is
at hand, else predicted from the op shapes with ``--fast``; an estimate, not a measurement on a board), and, where
``edgebnn convert --precision int8`` exists, the top-1 and estimate of the int8 flatbuffer. The published
real-valued anchors (zalandoresearch/fashion-mnist's README benchmark) are printed beside the table. Every run
folder is kept under ``--out``; a run already complete there is read, not trained again, and a flatbuffer, its
estimate and its test pass are kept too, so an interrupted bench resumes where it was.

    nice -n 10 .venv/bin/python bench/accuracy.py [--models bireal-18 ...] [--out runs/accuracy] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn import runs
from edgebnn.machine import host_label
from edgebnn.outputs import write_atomic

DEFAULTS = ["bireal-18", "reactnet-18", "xnorpp-18-case4", "sdbnn-resnet20"]
DATASET = "fashion-mnist"
TEACHER = "resnet-18"  # the real-valued teacher of the distilled recipes (their [fashion-mnist] tables)
BOARD = "pi4b"
# Real-valued anchors: zalandoresearch/fashion-mnist's README benchmark (top-1 on the 10,000 test images).
ANCHORS = [("ResNet-18", "94.9%"), ("MobileNet", "95.0%"), ("DenseNet-BC 768K", "95.4%"), ("WRN-28-10", "96.3%")]
GOAL_TOP1, GOAL_GAP = 0.92, 0.03  # the goal: best binary >= 92%, every binary within 3 points of its twin
CLI = [sys.executable, "-m", "edgebnn.cli"]


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def train_one(name: str, out: Path, *, real: bool, seed: int, sets=()) -> dict:
    """Train (or resume, or read back when complete) one run: its top-1 on the test images after the last epoch,
    and its training wall time, the sum of its epochs' times (training and test pass) and its teacher's."""
    from edgebnn.training import read_metrics, train  # lazy: loads TensorFlow

    run_dir = out / (name + ("-real" if real else ""))
    if runs.is_run_dir(run_dir) and runs.read_info(run_dir).get("status") != "done":
        log(f"resuming {run_dir}")
        train(resume=run_dir, progress=False, summary=False, verbose=True)
    elif not runs.is_run_dir(run_dir):
        log(f"training {run_dir}")
        train(name, dataset=DATASET, real=real, out=run_dir, seed=seed, sets=list(sets), progress=False,
              summary=False, verbose=True)
    rows, info = read_metrics(run_dir), runs.read_info(run_dir)
    teacher = run_dir / f"teacher-{TEACHER}"
    wall = sum(float(r["seconds"]) for r in rows) + (sum(float(r["seconds"]) for r in read_metrics(teacher))
                                                     if runs.is_run_dir(teacher) else 0.0)
    return {"run": str(run_dir), "epochs": len(rows), "val_top1": float(rows[-1]["val_top1"]),
            "best_val_top1": info.get("best_val_top1"), "wall_s": round(wall, 1), "machine": info.get("machine"),
            "width": info.get("width"), "input_shape": info.get("input_shape")}


def _cli_json(args: list[str]) -> dict | list:
    result = subprocess.run(CLI + args, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"edgebnn {' '.join(args)} failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)


def convert(run_dir: str, *, precision: str | None = None) -> Path:
    """The run's LCE flatbuffer (``edgebnn convert RUN``, proved on 100 test images), made once."""
    suffix = f"-{precision}" if precision else ""
    path = Path(run_dir) / f"model{suffix}.tflite"
    if not path.is_file():
        _cli_json(["convert", run_dir, "--out", str(path), "--json"]
                  + (["--precision", precision] if precision else []))
    return path


def flatbuffer_top1(path: Path, dataset: str, size: int) -> float:
    """Top-1 of a flatbuffer on every validation image, run one at a time by LCE's interpreter on this host
    (kept beside the flatbuffer as FILE.top1.json)."""
    from edgebnn import data  # lazy: the data pipelines load TensorFlow
    from edgebnn.conversion.proof import run_tflite  # lazy: loads LCE's interpreter

    cache = path.with_name(path.name + ".top1.json")
    if cache.is_file():
        return float(json.loads(cache.read_text())["top1"])
    ds = data.load(dataset, input_size=size, batch_size=500)
    x = np.concatenate([b[0].numpy() for b in ds.val])
    y = np.concatenate([b[1].numpy() for b in ds.val])
    top1 = float(np.mean(run_tflite(path.read_bytes(), x).argmax(-1) == y))
    write_atomic(cache, json.dumps({"top1": top1, "images": len(y), "dataset": dataset}))
    return top1


def pi4b_estimate(path: Path, db: Path) -> dict | None:
    """``edgebnn estimate``'s Pi 4B row at 1 thread (an estimate, not a measurement): LCE's aarch64 kernels'
    instructions counted under QEMU when its runner is at hand ($LCE_RUNNER_AARCH64 or ../shared/lce), else (or when
    that fails) predicted from the op shapes (``--fast``)."""
    runner = os.environ.get("LCE_RUNNER_AARCH64") or str(Path("..") / "shared" / "lce" / "lce_benchmark_model_aarch64")
    tries = ([["--runner", runner]] if Path(runner).is_file() else []) + [["--fast"]]
    for i, how in enumerate(tries):
        try:
            rows = _cli_json(["estimate", str(path), *how, "--threads", "1", "--db", str(db), "--json"])
        except RuntimeError:
            if i == len(tries) - 1:
                raise
            continue
        rows = [r for r in rows if str(r.get("device", "")).startswith(BOARD)]
        return rows[0] if rows else None
    return None


def int8_available() -> bool:
    """Whether this edgebnn's ``convert`` takes ``--precision`` (the int8 column fills in when it does)."""
    result = subprocess.run(CLI + ["convert", "--help"], capture_output=True, text=True)
    return "--precision" in result.stdout


def train_family(name: str, out: Path, seed: int, *, teacher_run: Path | None) -> dict:
    """Train (or read back) the binary network and its real-valued twin: the row's accuracy columns."""
    sets = [f"steps.teacher={teacher_run}"] if teacher_run is not None and _distilled(name) else []
    binary = train_one(name, out, real=False, seed=seed, sets=sets)
    twin = train_one(name, out, real=True, seed=seed)
    row = {"model": name, "binary": binary, "twin": twin, "gap": twin["val_top1"] - binary["val_top1"]}
    teacher_dir = Path(binary["run"]) / f"teacher-{TEACHER}"
    if (teacher_dir / runs.FINAL_MODEL).is_file():
        row["teacher"] = {"run": str(teacher_dir), "val_top1": float(runs.read_info(teacher_dir)["final_val_top1"])}
    elif sets:
        row["teacher"] = {"run": str(teacher_run), "val_top1": float(runs.read_info(teacher_run)["final_val_top1"]),
                          "shared": True}
    return row


def deploy_family(row: dict, out: Path, *, int8: bool, top1: bool) -> None:
    """Convert the binary run (and, when ``int8``, to an int8 flatbuffer) and estimate each on the Pi 4B; with
    ``top1``, also test each flatbuffer on every test image. Fills ``row`` in place; a failure is noted in the row,
    not raised."""
    run, size = row["binary"]["run"], int(row["binary"]["input_shape"][0])
    row["int8_available"] = int8
    for precision, key in ([("int8", "int8")] if int8 else []) + [(None, "tflite")]:
        if f"{key}_error" in row or (top1 and f"{key}_top1" in row) or (not top1 and key in row):
            continue
        try:
            if key not in row:
                log(f"converting {Path(run).name}" + (f" ({precision})" if precision else ""))
                row[key] = str(convert(run, precision=precision))
                try:
                    row[f"{key}_estimate"] = pi4b_estimate(Path(row[key]), out / "results.db")
                except RuntimeError as err:
                    row[f"{key}_estimate_error"] = str(err)
            if top1:
                log(f"testing {Path(row[key]).name} of {Path(run).name} on every test image")
                row[f"{key}_top1"] = flatbuffer_top1(Path(row[key]), DATASET, size)
        except (RuntimeError, ValueError, OSError) as err:
            row[f"{key}_error"] = str(err)


def _distilled(name: str) -> bool:
    from edgebnn import recipe  # lazy: only the distilled families need it

    return any(s["loss"] == "distributional" for s in recipe.load(name, dataset=DATASET)["steps"])


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _latency(est: dict | None) -> str:
    if not est:
        return "-"
    ms = est.get("median_ms")
    how = "fast" if "fast path" in str(est.get("kernels", "")) else "QEMU count"
    return f"{float(ms):.2f} ms ({how})" if ms is not None else "-"


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.0f} min"


def format_table(results: list[dict], machine: str) -> str:
    lines = ["| family | binary top-1 | twin top-1 | gap | epochs (binary / twin) | wall (binary / twin) | "
             "flatbuffer top-1 | Pi 4B estimate, 1 thread | int8 flatbuffer: top-1, Pi 4B estimate |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        b, t = r["binary"], r["twin"]
        int8 = f"{_pct(r.get('int8_top1'))}, {_latency(r.get('int8_estimate'))}" if "int8" in r else \
            "failed (below)" if "int8_error" in r else \
            "n/a (no `convert --precision int8`)" if r.get("int8_available") is False else "-"
        lines.append(f"| {r['model']} | {_pct(b['val_top1'])} | {_pct(t['val_top1'])} | "
                     f"{100 * r['gap']:+.1f} pts | {b['epochs']} / {t['epochs']} | {_minutes(b['wall_s'])} / "
                     f"{_minutes(t['wall_s'])} | {_pct(r.get('tflite_top1'))} | {_latency(r.get('tflite_estimate'))} | "
                     f"{int8} |")
    notes = [f"Fashion-MNIST, 60,000 training / 10,000 test images at 28x28; machine: {machine}. Top-1 after the "
             "last epoch on the 10,000 test images (no epoch picked on them); gap = twin - binary. The flatbuffer is "
             "convert's default checkpoint, the best epoch by test top-1; its top-1 is LCE's interpreter's on this "
             "host over all 10,000 images. Wall = the sum of the epochs' times (training and test pass)."]
    for r in results:
        if "teacher" in r:
            how = "shared, trained in reactnet-18's run" if r["teacher"].get("shared") else \
                "trained first, in the binary row's wall time"
            notes.append(f"{r['model']}'s teacher {TEACHER}: {_pct(r['teacher']['val_top1'])} ({how}).")
        for key in ("tflite_error", "int8_error", "tflite_estimate_error", "int8_estimate_error"):
            if key in r:
                notes.append(f"{r['model']}: {r[key]}")
    notes.append("Pi 4B figures are estimates, not measurements on a board: edgebnn estimate, LCE's aarch64 "
                 "kernels' instructions counted under QEMU (or predicted from the op shapes: fast) and calibrated on "
                 "published Larq Zoo latencies.")
    notes.append("Published real-valued anchors (zalandoresearch/fashion-mnist README): "
                 + ", ".join(f"{n} {v}" for n, v in ANCHORS) + ".")
    if results:
        best = max(r["binary"]["val_top1"] for r in results)
        worst_gap = max(r["gap"] for r in results)
        notes.append(f"Goal: best binary >= {GOAL_TOP1:.0%} ({'met' if best >= GOAL_TOP1 else 'not met'}: "
                     f"{_pct(best)}); every gap <= {100 * GOAL_GAP:.0f} points ("
                     f"{'met' if worst_gap <= GOAL_GAP else 'not met'}: worst {100 * worst_gap:+.1f}).")
    return "\n".join(lines + [""] + notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULTS)
    parser.add_argument("--out", default=f"runs/accuracy-{DATASET}", help="where the runs and results.json go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine, results = host_label(), []
    log(f"bench/accuracy.py: {', '.join(args.models)} on {DATASET}, runs in {out}, machine {machine}, "
        f"pid {os.getpid()}")
    teacher_run = None

    def save() -> None:
        write_atomic(out / "results.json", json.dumps({"machine": machine, "dataset": DATASET,
                                                       "results": results}, indent=1))

    for name in args.models:  # first every accuracy column, then the flatbuffers (slower to fill, less vital)
        row = train_family(name, out, args.seed, teacher_run=teacher_run)
        if teacher_run is None and "teacher" in row:
            teacher_run = Path(row["teacher"]["run"])
        results.append(row)
        save()
        log(f"trained {name}: binary {_pct(row['binary']['val_top1'])}, twin {_pct(row['twin']['val_top1'])}")
    int8 = int8_available()
    for top1 in (False, True):  # every flatbuffer and estimate first (a minute each), then their test passes
        for row in results:
            deploy_family(row, out, int8=int8, top1=top1)
            save()
            log(f"deployed {row['model']}: flatbuffer {_pct(row.get('tflite_top1'))}, int8 "
                f"{_pct(row.get('int8_top1'))}")
    print(json.dumps({"machine": machine, "results": results}, indent=1) if args.json
          else format_table(results, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
