"""Train the default small variant of each binary family and its real-valued twin on the digits data.

Prints, per model: epochs, wall time (the whole ``edgebnn train`` call, a teacher trained first included),
training images per second (epoch time including validation), validation top-1, and the binary model's gap to
its real-valued twin. Target: every binary family >= 90% top-1 within 5 minutes on the machine named.

    .venv/bin/python bench/train_digits.py [--models bireal-18 reactnet-18 ...] [--out DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn import recipe, runs
from edgebnn.machine import host_label

DEFAULTS = ["bireal-18", "reactnet-18", "xnorpp-18-case4", "sdbnn-resnet20"]
TARGET_TOP1, TARGET_SECONDS = 0.90, 300.0


def run_one(name: str, out: Path, real: bool, seed: int) -> dict:
    from edgebnn.training import read_metrics, train

    started = time.perf_counter()
    run_dir = train(name, dataset="digits", real=real, out=out / (name + ("-real" if real else "")), seed=seed,
                    progress=False, summary=False, verbose=False)
    wall = time.perf_counter() - started
    rows = read_metrics(run_dir)
    info = runs.read_info(run_dir)
    n_train = 1438  # digits training split (80% of 1,797)
    return {"model": name + (" (real twin)" if real else ""), "epochs": len(rows), "wall_s": round(wall, 1),
            "images_per_s": round(n_train * len(rows) / sum(float(r["seconds"]) for r in rows), 1),
            "val_top1": float(rows[-1]["val_top1"]), "input": info["input_shape"],
            "width": recipe.load(name, dataset="digits")["arch"].get("width"), "run": str(run_dir)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=DEFAULTS)
    parser.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="edgebnn-bench-"))
    results = []
    for name in args.models:
        binary = run_one(name, out, False, args.seed)
        twin = run_one(name, out, True, args.seed)
        binary["gap_to_float"] = round(twin["val_top1"] - binary["val_top1"], 4)
        binary["meets_target"] = binary["val_top1"] >= TARGET_TOP1 and binary["wall_s"] <= TARGET_SECONDS
        results += [binary, twin]
        print(f"done {name}: {binary['val_top1']:.2%} in {binary['wall_s']:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"machine": host_label(), "results": results}, indent=2))
        return 0
    print(f"digits, 32x32 inputs, the recipes' [digits] tables; machine: {host_label()}")
    print(f"{'model':<30} {'width':>5} {'epochs':>6} {'wall s':>7} {'img/s':>7} {'val top-1':>9} {'gap':>7}  target")
    for r in results:
        gap = f"{r['gap_to_float']:+.2%}" if "gap_to_float" in r else ""
        target = ("yes" if r["meets_target"] else "NO") if "meets_target" in r else ""
        print(f"{r['model']:<30} {r['width'] or 1.0:>5} {r['epochs']:>6} {r['wall_s']:>7.1f} "
              f"{r['images_per_s']:>7.1f} {r['val_top1']:>9.2%} {gap:>7}  {target}")
    print("gap = twin top-1 - binary top-1; target: binary >= 90% within 300 s (teacher training included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
