"""Deployment graphs per family: what LCE's converter leaves beside the binary convs, and what it costs on ARM.

Every family at 224x224 (SD-BNN's CIFAR variants at their own 32x32), width 1, every parameter randomised (an
all-ones scale or zero shift is folded away and would hide its cost), converted as `edgebnn convert` does (with
the deployment folds; `--no-fold` for the graphs without them), beside Larq Zoo's BiRealNet and QuickNet converted
the same way (when `larq-zoo` is installed, else their counts from the shipped calibration). Per model: float ops
per binary conv, the op histogram, aarch64 instructions per inference counted under QEMU with LCE's real aarch64
runner (1 thread), the estimated Raspberry Pi 4B latency from the shipped calibration, and the share of
instructions each float op type takes. Instructions are exact and repeatable; the Pi 4B figure is an estimate.

    .venv/bin/python bench/graphs.py [--runner PATH] [--models bireal-18,reactnet-18] [--no-fold] [--keep DIR]
"""

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

ROOT = Path(__file__).resolve().parents[1]
RUNNER = os.environ.get("LCE_RUNNER_AARCH64") or str(ROOT.parent / "shared" / "lce" / "lce_benchmark_model_aarch64")
FAMILIES = ("bireal-18", "reactnet-18", "reactnet-a", "xnorpp-18-case1", "xnorpp-18-case2", "xnorpp-18-case3",
            "xnorpp-18-case4", "xnorpp-18-bnn", "sdbnn-18", "sdbnn-resnet20", "sdbnn-resnet18", "sdbnn-vgg-small")
ZOO = ("BiRealNet", "QuickNet")
SMALL = ("sdbnn-resnet20", "sdbnn-resnet18", "sdbnn-vgg-small")


def convert_family(name: str, out_dir: Path, fold: bool, padding: str = "lce") -> tuple[Path, dict]:
    from edgebnn import archs
    from edgebnn.archs.randomise import randomise_parameters
    from edgebnn.conversion.fold import deployment_model
    from edgebnn.conversion.lce import lce_flatbuffer

    size = 32 if name in SMALL else 224
    model = randomise_parameters(archs.build(name, input_shape=(size, size, 3), padding=padding), seed=0)
    deploy, folds = deployment_model(model) if fold else (model, {})
    fb, _ = lce_flatbuffer(deploy, "arm")
    path = out_dir / f"{name}{'' if padding == 'lce' else '-' + padding}.tflite"
    path.write_bytes(fb)
    return path, {"size": size, "folds": {k: len(v) for k, v in folds.items()}}


def op_type_instructions(ops: list[dict]) -> dict[str, float]:
    """Per-op instructions summed by flatbuffer op type (an XNNPACK operator by the op it ran, when named)."""
    by_type: dict[str, float] = defaultdict(float)
    for op in ops:
        by_type[op.get("op") or op["node_type"]] += op.get("instructions") or 0.0
    return dict(sorted(by_type.items(), key=lambda kv: -kv[1]))


def measure(path: Path, runner: str, cal: dict, sha: str) -> dict:
    from edgebnn.estimate import counting, estimate
    from edgebnn.tflite.describe import float_op_count, histogram_of, read_ops

    hist = histogram_of(read_ops(path.read_bytes()))
    counts = counting.count_model(runner, path, threads=1, per_op=True)
    record = {"model_name": path.stem, "model_sha256": sha, "model_path": str(path)}
    rows = {(r["device"], r["threads"]): r for r, _ in estimate.rows(record, counts, cal, runner, sha)}
    pi = rows.get(("pi4b", 1))
    n_bconv = hist.get("LceBconv2d", 0)
    return {"hist": hist, "float_per_bconv": float_op_count(hist) / n_bconv if n_bconv else None,
            "instructions": counts["instructions"], "pi4b_ms": pi["mean_ms"] if pi else None,
            "by_type": op_type_instructions(counts["ops"]), "flags": pi["flags"] if pi else []}


def zoo_reference(name: str, out_dir: Path, runner: str, cal: dict, sha: str) -> dict | None:
    from edgebnn.errors import EdgebnnError
    from edgebnn.estimate import zoo

    try:
        return {**measure(zoo.convert(name, out_dir), runner, cal, sha), "size": 224, "folds": {}}
    except EdgebnnError as err:
        stored = cal.get("counts", {}).get(name)
        print(f"  {name}: {err}; " + ("using the shipped calibration's count" if stored else "skipped"),
              file=sys.stderr)
        if not stored:
            return None
        return {"hist": {}, "float_per_bconv": None, "instructions": stored["instructions"], "pi4b_ms": None,
                "by_type": {}, "flags": [], "size": 224, "folds": {}, "note": "count from the shipped calibration"}


def runner_calibration(runner: str) -> tuple[dict, str] | None:
    """(the shipped calibration for ``runner``, its sha256), its warnings on stderr; None without a runner."""
    from edgebnn.estimate import calibration

    if not Path(runner).is_file():
        print(f"error: no aarch64 runner at {runner}: pass --runner or set LCE_RUNNER_AARCH64", file=sys.stderr)
        return None
    sha = calibration.sha256(runner)
    cal, warnings = calibration.for_runner(sha)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return cal, sha


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runner", default=RUNNER)
    p.add_argument("--models", default=",".join(FAMILIES))
    p.add_argument("--no-fold", action="store_true", help="convert without the deployment folds")
    p.add_argument("--no-zoo", action="store_true", help="leave out Larq Zoo's BiRealNet and QuickNet")
    p.add_argument("--keep", default=None, help="folder to keep the flatbuffers in")
    args = p.parse_args()
    found = runner_calibration(args.runner)
    if found is None:
        return 2
    cal, sha = found
    out_dir = Path(args.keep or tempfile.mkdtemp(prefix="edgebnn-graphs-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in [m for m in args.models.split(",") if m]:
        start = time.perf_counter()
        path, facts = convert_family(name, out_dir, fold=not args.no_fold)
        results[name] = {**facts, **measure(path, args.runner, cal, sha)}
        print(f"  {name}: {results[name]['instructions'] / 1e6:.1f} M instructions "
              f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    for name in () if args.no_zoo else ZOO:
        ref = zoo_reference(name, out_dir, args.runner, cal, sha)
        if ref:
            results[f"zoo:{name}"] = ref
    print_tables(results, "bireal-18" if "bireal-18" in results else None, fold=not args.no_fold)
    return 0


def print_tables(results: dict, base: str | None, fold: bool) -> None:
    from edgebnn.machine import host_label

    print(f"\naarch64 instructions per inference, 1 thread, counted under QEMU with LCE v0.16.0's aarch64 runner "
          f"(exact); Pi 4B ms estimated from them with the shipped calibration; converted "
          f"{'with' if fold else 'without'} the deployment folds; counted on {host_label()}")
    head = (f"{'model':<18} {'input':>5} {'M instr':>9} {'vs bireal':>9} {'Pi4B ms (est.)':>14} "
            f"{'float/bconv':>11}  folds")
    print(head + "\n" + "-" * len(head))
    ref = results.get(base, {}).get("instructions") if base else None
    for name, r in results.items():
        rel = f"{100 * (r['instructions'] / ref - 1):+8.1f}%" if ref else f"{'-':>9}"
        ms = f"{r['pi4b_ms']:14.1f}" if r["pi4b_ms"] else f"{'-':>14}"
        per = f"{r['float_per_bconv']:11.2f}" if r["float_per_bconv"] is not None else f"{'-':>11}"
        folds = ", ".join(f"{k} {v}" for k, v in r["folds"].items()) or r.get("note", "-")
        print(f"{name:<18} {r['size']:>5} {r['instructions'] / 1e6:9.1f} {rel} {ms} {per}  {folds}")
    print("\nop histogram, then M instructions and share of the whole per op type (per-op counts under QEMU)")
    for name, r in results.items():
        if r["hist"]:
            print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in r["hist"].items()))
        whole = sum(r["by_type"].values()) or 1.0
        if r["by_type"]:
            print("    " + ", ".join(f"{k} {v / 1e6:.2f} ({100 * v / whole:.1f}%)" for k, v in r["by_type"].items()))
        if r["flags"]:
            print(f"    flagged: {'; '.join(r['flags'])}")


if __name__ == "__main__":
    sys.exit(main())
