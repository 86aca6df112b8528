"""float vs int8 islands (``edgebnn convert --precision int8``) per family: instructions on each board's core, the
Pi 4B estimate, file size, and the top-1 the int8 flatbuffer costs on the largest real data set at hand.

Speed: every family at 224x224 (SD-BNN's CIFAR ResNet-20 at its own 32x32), width 1, every parameter randomised
(``edgebnn.archs.randomise``, seed 0, as bench/graphs.py), converted with the deployment folds; the int8 twin is the
same deployment model through ``edgebnn.conversion.precision.int8_islands`` calibrated on
``--calibration-images`` training images of ``--calibration-dataset`` (what ``convert --precision int8`` does; an
instruction count does not depend on the ranges, only on which ops are int8). Each flatbuffer's aarch64
instructions per inference are counted under QEMU with LCE's aarch64 runner (1 thread) on ``-cpu cortex-a72`` (the
Pi 4B's and, as counted for its calibration, the Pixel 1's core) and ``-cpu cortex-a76`` (the Pi 5's core:
instructions only, no calibration). The Pi 4B ms and its likely range come from the shipped calibration
(``edgebnn.estimate.estimate.rows`` on the cortex-a72 count): an estimate, not a board measurement.

Top-1 cost: each finished trained run under ``--runs`` (bench/accuracy.py's Fashion-MNIST runs: model.keras,
run.json status done) converted by ``edgebnn.conversion.pipeline.convert`` as float and as int8 (calibrated on 256
of its training images, proved on 100), then both flatbuffers run by LCE's interpreter on this host over every
validation image (Fashion-MNIST: the 10,000 test images); a run not finished is named and skipped, and with none
finished a bireal-18 trained here on digits (bench/train_digits.py's recipe, 359 validation images) stands in.

Counts and top-1 results are kept in ``--keep`` (default runs/bench-precision), keyed by the flatbuffer's sha256,
so a rerun resumes.

    nice -n 10 .venv/bin/python bench/precision.py [--models bireal-18,...] [--skip-top1] [--skip-speed] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from graphs import RUNNER, SMALL, runner_calibration  # bench/ is on sys.path when a bench script runs

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.outputs import write_atomic

FAMILIES = ("bireal-18", "reactnet-18", "reactnet-a", "xnorpp-18-case4", "xnorpp-18-bnn", "sdbnn-18",
            "sdbnn-resnet20")
CPUS = ("cortex-a72", "cortex-a76")
BOARD = "pi4b"
ROOT = Path(__file__).resolve().parents[1]


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Cache:
    """A JSON file of results keyed by strings, rewritten atomically after each new entry."""

    def __init__(self, path: Path):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, key: str):
        return self.data.get(key)

    def put(self, key: str, value) -> None:
        self.data[key] = value
        write_atomic(self.path, json.dumps(self.data, indent=1, default=str))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------ speed
def flatbuffers(name: str, out_dir: Path, cal_dataset: str, cal_images: int) -> dict[str, Path]:
    """{precision: path} of ``name``'s randomised float and int8-islands flatbuffers (made once)."""
    paths = {p: out_dir / f"{name}-{p}.tflite" for p in ("float", "int8")}
    if all(p.is_file() for p in paths.values()):
        return paths
    from edgebnn import archs  # lazy: the architectures load TensorFlow and Larq
    from edgebnn.archs.randomise import randomise_parameters
    from edgebnn.conversion.fold import deployment_model
    from edgebnn.conversion.lce import lce_flatbuffer
    from edgebnn.conversion.precision import calibration_images, int8_islands

    size = 32 if name in SMALL else 224
    model = randomise_parameters(archs.build(name, input_shape=(size, size, 3)), seed=0)
    deploy, _ = deployment_model(model)
    x = calibration_images(cal_dataset, cal_images, [size, size, 3])
    islands, facts = int8_islands(deploy, x)
    for precision, m in (("float", deploy), ("int8", islands)):
        fb, _ = lce_flatbuffer(m, "arm")
        write_atomic(paths[precision], fb)
    write_atomic(out_dir / f"{name}-int8.facts.json",
                 json.dumps({"layers": facts["layers"], "kept_float": facts["kept_float"],
                             "calibration": {"dataset": cal_dataset, "images": len(x)}}, indent=1))
    return paths


def count(path: Path, cpu: str, runner: str, runner_sha: str, cache: Cache) -> dict:
    """``count_model`` of ``path`` on ``cpu`` (1 thread, no per-op split), cached by flatbuffer, core and runner."""
    from edgebnn.estimate import counting  # lazy: loads the QEMU plumbing

    key = f"{sha256(path.read_bytes())}:{cpu}:{runner_sha}"
    if cache.get(key) is None:
        start = time.perf_counter()
        c = counting.count_model(runner, path, threads=1, per_op=False, cpu=cpu)
        cache.put(key, {k: c[k] for k in ("instructions", "per_vcpu", "classes", "ops", "warnings", "dense_macs",
                                          "threads", "runs", "qemu", "cpu")})
        log(f"  {path.name} on {cpu}: {c['instructions'] / 1e6:.2f} M ({time.perf_counter() - start:.0f} s)")
    return cache.get(key)


def pi4b_estimate(path: Path, counts: dict, cal: dict, runner: str, runner_sha: str) -> dict:
    """The shipped calibration's Pi 4B row at 1 thread for a cortex-a72 count: ms, its likely range, the error."""
    from edgebnn.estimate import estimate  # lazy: loads the calibration fits

    record = {"model_name": path.stem, "model_sha256": sha256(path.read_bytes()), "model_path": str(path)}
    rows = [r for r, _ in estimate.rows(record, counts, cal, runner, runner_sha, boards=[BOARD]) if r["threads"] == 1]
    e = rows[0]["estimate"]
    return {"ms": rows[0]["mean_ms"], "range_ms": e["range_ms"], "error_max_pct": e["error_max_pct"],
            "range_error_pct": e["range_error_pct"]}


def speed(models: list[str], keep: Path, runner: str, cal_dataset: str, cal_images: int) -> dict:
    from edgebnn.conversion.precision import int8_ops  # lazy: reads flatbuffers through the LCE-free reader
    from edgebnn.tflite.describe import histogram_of, read_ops

    found = runner_calibration(runner)
    if found is None:
        raise SystemExit(2)
    cal, runner_sha = found
    cache = Cache(keep / "counts.json")
    out = {}
    for name in models:
        start = time.perf_counter()
        log(f"{name}: converting float and int8")
        paths = flatbuffers(name, keep, cal_dataset, cal_images)
        row = {"size": 32 if name in SMALL else 224}
        for precision, path in paths.items():
            fb = path.read_bytes()
            r = {"bytes": len(fb), "int8_ops": int8_ops(fb), "LceBconv2d": histogram_of(read_ops(fb)).get(
                "LceBconv2d", 0)}
            for cpu in CPUS:
                r[cpu] = count(path, cpu, runner, runner_sha, cache)["instructions"]
            r["pi4b"] = pi4b_estimate(path, count(path, "cortex-a72", runner, runner_sha, cache), cal, runner,
                                      runner_sha)
            row[precision] = r
        facts = keep / f"{name}-int8.facts.json"
        row["int8_facts"] = json.loads(facts.read_text()) if facts.is_file() else {}
        out[name] = row
        log(f"{name}: done ({time.perf_counter() - start:.0f} s)")
    return {"rows": out, "runner_sha256": runner_sha, "calibration": cal.get("name"), "cpus": list(CPUS)}


# ------------------------------------------------------------------------------------------ top-1
def finished_runs(runs_dir: Path) -> tuple[list[Path], list[str]]:
    """(binary runs whose run.json says done and that hold model.keras, notes on the others) under ``runs_dir``."""
    from edgebnn import runs  # lazy: runs reads Keras models

    done, notes = [], []
    for d in sorted(p for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []:
        if d.name.endswith("-real") or not runs.is_run_dir(d):
            continue
        status = runs.read_info(d).get("status")
        if status == "done" and (d / "model.keras").is_file():
            done.append(d)
        else:
            notes.append(f"{d.name}: not finished (status {status}), left out")
    return done, notes


def digits_run(keep: Path) -> Path:
    """A bireal-18 trained here on digits (the fallback when no Fashion-MNIST run is finished), trained once."""
    from edgebnn import runs  # lazy: runs reads Keras models
    from edgebnn.training import train  # lazy: loads TensorFlow

    run = keep / "bireal-18-digits"
    if not (runs.is_run_dir(run) and runs.read_info(run).get("status") == "done"):
        train("bireal-18", dataset="digits", out=run, seed=0, progress=False, summary=False, verbose=True)
    return run


def top1_of(path: Path, dataset: str, size: int, cache: Cache) -> dict:
    """Top-1 of a flatbuffer over every validation image, one image at a time through LCE's interpreter here."""
    from edgebnn import data  # lazy: the data pipelines load TensorFlow
    from edgebnn.conversion.proof import run_tflite  # lazy: loads LCE's interpreter

    fb = path.read_bytes()
    key = f"{sha256(fb)}:{dataset}"
    if cache.get(key) is None:
        ds = data.load(dataset, input_size=size, batch_size=500)
        x = np.concatenate([b[0].numpy() for b in ds.val])
        y = np.concatenate([b[1].numpy() for b in ds.val])
        pred = run_tflite(fb, x).argmax(-1)
        cache.put(key, {"top1": float(np.mean(pred == y)), "images": int(len(y)), "pred": pred.tolist()})
    return cache.get(key)


def top1(keep: Path, runs_dir: Path) -> dict:
    from edgebnn import runs  # lazy: runs reads Keras models
    from edgebnn.conversion import pipeline  # lazy: loads LCE's converter
    from edgebnn.errors import EdgebnnError

    done, notes = finished_runs(runs_dir)
    if not done:
        notes.append(f"no finished run under {runs_dir}: a bireal-18 trained here on digits stands in")
        done = [digits_run(keep)]
    cache = Cache(keep / "top1.json")
    out = {}
    for run in done:
        info = runs.read_info(run)
        dataset, size = info["dataset"], int(info["input_shape"][0])
        row = {"run": str(run), "dataset": dataset}
        for precision in ("float", "int8"):
            path = keep / f"{run.name}-{dataset}-{precision}.tflite"
            if not path.is_file():
                log(f"{run.name}: convert --precision {precision}")
                try:
                    report = pipeline.convert(run, output=path, precision=precision)
                    row[f"{precision}_proof"] = report["check"].get("top1_agreement") if report.get("check") else None
                except EdgebnnError as err:  # a failed proof keeps the flatbuffer: its top-1 is still measured
                    row[f"{precision}_error"] = str(err)
                    if not path.is_file():
                        continue
            log(f"{run.name}: top-1 of its {precision} flatbuffer on every {dataset} validation image")
            r = top1_of(path, dataset, size, cache)
            row[precision] = {"top1": r["top1"], "images": r["images"], "bytes": path.stat().st_size}
            row[f"{precision}_pred"] = r["pred"]
        if "float" in row and "int8" in row:
            row["agree"] = float(np.mean(np.array(row["float_pred"]) == np.array(row["int8_pred"])))
        row.pop("float_pred", None)
        row.pop("int8_pred", None)
        out[run.name] = row
    return {"rows": out, "notes": notes}


# ------------------------------------------------------------------------------------------ table
def format_tables(result: dict) -> str:
    from edgebnn.machine import host_label

    lines = []
    sp = result.get("speed")
    if sp:
        lines += ["| model | input | precision | M instr cortex-a72 (Pi 4B, Pixel 1) | int8/float | "
                  "M instr cortex-a76 (Pi 5, uncalibrated) | int8/float | Pi 4B ms, 1 thread (est.) [likely range] | "
                  "file KiB | int8 ops |", "|---|---|---|---|---|---|---|---|---|---|"]
        for name, row in sp["rows"].items():
            for precision in ("float", "int8"):
                r, f = row[precision], row["float"]
                ratio = {c: ("-" if precision == "float" else f"{r[c] / f[c]:.2f}x") for c in CPUS}
                p = r["pi4b"]
                ops = ", ".join(f"{k} {v}" for k, v in sorted(r["int8_ops"].items())) or "-"
                lines.append(f"| {name} | {row['size']} | {precision} | {r['cortex-a72'] / 1e6:.2f} | "
                             f"{ratio['cortex-a72']} | {r['cortex-a76'] / 1e6:.2f} | {ratio['cortex-a76']} | "
                             f"{p['ms']:.1f} [{p['range_ms'][0]:.1f}-{p['range_ms'][1]:.1f}] | "
                             f"{r['bytes'] / 1024:.0f} | {ops} |")
        cal = next((row["int8_facts"].get("calibration") for row in sp["rows"].values() if row["int8_facts"]), {})
        lines += ["", f"aarch64 instructions per inference counted under QEMU (exact) with LCE's aarch64 runner "
                  f"(sha256 {sp['runner_sha256'][:12]}), 1 thread, parameters randomised (seed 0); Pi 4B ms estimated "
                  f"from the cortex-a72 count with the shipped calibration ({sp['calibration']}), range = its "
                  f"nested leave-one-out error; int8 = islands calibrated on {cal.get('images')} training images of "
                  f"{cal.get('dataset')}; counted on {host_label()}."]
        kept = {n: row["int8_facts"].get("kept_float") for n, row in sp["rows"].items()
                if row["int8_facts"].get("kept_float")}
        if kept:
            lines.append("Real convs kept float (shallower than the int8 depth rule): "
                         + "; ".join(f"{n}: {', '.join(v)}" for n, v in kept.items()) + ".")
    t1 = result.get("top1")
    if t1:
        lines += ["", "| trained run | data set, images | float flatbuffer top-1 | int8 flatbuffer top-1 | "
                  "int8 - float | float/int8 agree | int8 proof (100 samples vs Keras) | KiB float / int8 |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, row in t1["rows"].items():
            f, i = row.get("float"), row.get("int8")
            if not (f and i):
                lines.append(f"| {name} | {row['dataset']} | failed: {row.get('float_error') or row.get('int8_error')}"
                             " | | | | | |")
                continue
            proof = row.get("int8_error") or (f"{100 * row['int8_proof']:.0f}% agreement"
                                              if row.get("int8_proof") is not None else "-")
            lines.append(f"| {name} | {row['dataset']}, {i['images']:,} | {100 * f['top1']:.2f}% | "
                         f"{100 * i['top1']:.2f}% | {100 * (i['top1'] - f['top1']):+.2f} pts | "
                         f"{100 * row['agree']:.2f}% | {proof} | {f['bytes'] / 1024:.0f} / {i['bytes'] / 1024:.0f} |")
        lines += ["", "Top-1 measured on this host with LCE's interpreter over every validation image (Fashion-MNIST: "
                  "its 10,000 test images)."] + t1["notes"]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runner", default=RUNNER)
    p.add_argument("--models", default=",".join(FAMILIES))
    p.add_argument("--calibration-dataset", default="fashion-mnist")
    p.add_argument("--calibration-images", type=int, default=256)
    p.add_argument("--runs", default=str(ROOT / "runs" / "accuracy-fashion-mnist"),
                   help="trained runs for the top-1 section")
    p.add_argument("--keep", default=str(ROOT / "runs" / "bench-precision"))
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-top1", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    keep = Path(args.keep)
    keep.mkdir(parents=True, exist_ok=True)
    result = {}
    if not args.skip_speed:
        result["speed"] = speed([m for m in args.models.split(",") if m], keep, args.runner,
                                args.calibration_dataset, args.calibration_images)
    if not args.skip_top1:
        result["top1"] = top1(keep, Path(args.runs))
    print(json.dumps(result, indent=1, default=str) if args.json else format_tables(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
