"""The fast path against the exact one: instructions predicted from op shapes vs counted under QEMU.

Models are converted as `edgebnn convert --target arm64` does (edgebnn's families: parameters randomised, folded;
Larq Zoo's: weights=None, needs larq-zoo) and counted under QEMU with LCE's aarch64 runner, one at a time; every
count is cached in CACHE/counts/KEY.json (with the flatbuffer's ops), so no model is counted twice.

``--fit`` fits the cost model on FIT (edgebnn's families at sizes 32-224 and widths 0.25-2, Larq Zoo models) and
writes ``edgebnn/estimate/fast_model.json`` with the models it was fitted on and its error on TEST. The table
compares, for every TEST model (other families, widths 0.75, odd and other input sizes, other Larq Zoo models: none
in the fit): whole-model instructions, the worst op type (summed per op type over the model; types under 1% of
its instructions left out) and the time the fast path takes (reading the flatbuffer and predicting, one process).

    .venv/bin/python bench/fast_estimate.py [--runner PATH] [--cache DIR] [--fit] [--count-only]
"""

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

ROOT = Path(__file__).resolve().parents[1]
RUNNER = os.environ.get("LCE_RUNNER_AARCH64") or str(ROOT.parent / "shared" / "lce" / "lce_benchmark_model_aarch64")
OUT = ROOT / "edgebnn" / "estimate" / "fast_model.json"
CALIBRATION = json.loads((ROOT / "edgebnn" / "estimate" / "calibration.json").read_text())
# (kind, name, input size, width): edgebnn's families ("fam") and Larq Zoo models ("zoo", width unused)
FIT = [("fam", n, s, w) for n, s, w in (
    ("bireal-18", 32, 0.25), ("reactnet-18", 32, 0.25), ("xnorpp-18-case1", 32, 0.25), ("sdbnn-resnet20", 32, 1.0),
    ("sdbnn-vgg-small", 32, 0.25), ("resnet-18", 32, 0.25), ("bireal-18", 64, 0.5), ("reactnet-18", 64, 0.5),
    ("xnorpp-18-case1", 64, 0.5), ("sdbnn-resnet20", 64, 0.5), ("sdbnn-vgg-small", 64, 0.5), ("resnet-18", 64, 0.5),
    ("bireal-18", 32, 1.0), ("reactnet-18", 32, 1.0), ("xnorpp-18-case2", 32, 0.5), ("sdbnn-resnet20", 32, 2.0),
    ("bireal-18", 128, 0.25), ("reactnet-18", 128, 0.5), ("xnorpp-18-case1", 128, 1.0), ("bireal-18", 32, 1.25),
    ("xnorpp-18-case1", 40, 1.25), ("sdbnn-resnet18", 64, 0.25),
    ("reactnet-a", 40, 0.75))] + [  # the only family with 1x1 binary convs (tested at other sizes and widths)
    ("zoo", n, s, 1.0) for n, s in (("QuickNetSmall", 224), ("QuickNet", 224), ("BinaryDenseNet28", 160),
                                    ("RealToBinaryNet", 160), ("MeliusNet22", 128), ("BinaryDenseNet37Dilated", 128),
                                    ("BinaryAlexNet", 224))]
TEST = [("fam", n, s, w) for n, s, w in (
    ("reactnet-a", 32, 0.25), ("xnorpp-18-case4", 32, 0.5), ("sdbnn-18", 45, 0.25), ("sdbnn-resnet18", 32, 0.5),
    ("bireal-34", 57, 0.25), ("xnorpp-18-bnn", 48, 0.75), ("reactnet-18", 96, 0.75), ("reactnet-a", 64, 0.5),
    ("xnorpp-18-case3", 33, 0.25), ("bireal-18", 224, 1.0))] + [
    ("zoo", n, s, 1.0) for n, s in (("BiRealNet", 224), ("BinaryResNetE18", 160), ("QuickNetLarge", 224),
                                    ("BinaryDenseNet37", 128), ("QuickNet", 97))]


def key(spec) -> str:
    kind, name, size, width = spec
    return f"{kind}-{name}-{size}-{float(width)}"


def convert(spec, folder: Path) -> Path:
    out = folder / f"{key(spec)}.tflite"
    if out.is_file():
        return out
    kind, name, size, width = spec
    if kind == "zoo":
        import larq_compute_engine as lce
        import tensorflow as tf

        from edgebnn.estimate import zoo

        lqz = zoo._larq_zoo()
        model = getattr(getattr(lqz, zoo.ZOO[name]), name)(input_shape=(size, size, 3), weights=None)
        out.write_bytes(lce.convert_keras_model(model, target="arm"))
        tf.keras.backend.clear_session()
        return out
    from edgebnn.estimate.budget import build_flatbuffer

    out.write_bytes(build_flatbuffer(name, width, size, 1000 if size >= 128 else 10))
    return out


def counted(specs, cache: Path, runner: str, count: bool) -> dict[str, dict]:
    """Each spec's cached count (counted now when missing and ``count``)."""
    from edgebnn.errors import EdgebnnError
    from edgebnn.estimate import counting
    from edgebnn.tflite.describe import read_ops

    (cache / "counts").mkdir(parents=True, exist_ok=True)
    (cache / "models").mkdir(parents=True, exist_ok=True)
    out = {}
    for spec in specs:
        target = cache / "counts" / f"{key(spec)}.json"
        if not target.is_file() and count:
            try:
                path = convert(spec, cache / "models")
                c = counting.count_model(runner, path)
            except EdgebnnError as err:
                print(f"  {key(spec)}: {err}", file=sys.stderr)
                continue
            c.update(flat_ops=read_ops(path.read_bytes()), spec=list(spec))
            target.write_text(json.dumps(c))
            print(f"  counted {key(spec)}: {c['instructions'] / 1e6:.1f} M", file=sys.stderr, flush=True)
        if target.is_file():
            out[key(spec)] = json.loads(target.read_text())
    return out


def compare(model: dict, counts: dict) -> dict:
    """Whole-model and per-op-type error of the fast path on one counted model, the error it brings to the board
    estimates (fast-path ms against exact-path ms, same calibration), and its time."""
    from edgebnn.estimate import estimate, fast, fit

    t0 = time.perf_counter()
    pred = fast.predict(counts["flat_ops"], model)
    seconds = time.perf_counter() - t0
    measured = fast.measured_ops(counts) or {}
    got, want = Counter(), Counter()
    for i, op in enumerate(counts["flat_ops"]):
        if i in measured:
            want[op["type"]] += measured[i]
            got[op["type"]] += pred["ops"][i]["instructions"]
    per_type = {t: 100 * (got[t] / want[t] - 1) for t in want if want[t] > 0.01 * counts["instructions"]}
    worst = max(per_type, key=lambda t: abs(per_type[t]), default=None)
    board = {}
    for name, threads in (("pixel1", "1"), ("pi4b", "1")):
        rec = CALIBRATION["boards"][name][threads]
        groups = estimate._groups(rec)
        board[name] = 100 * (fit.predict(rec["k_ms_per_1e9"], pred["classes"], groups)
                             / fit.predict(rec["k_ms_per_1e9"], counts["classes"], groups) - 1)
    return {"whole_pct": 100 * (pred["instructions"] / counts["instructions"] - 1), "per_type": per_type,
            "board_pct": board,
            "worst_type": worst, "worst_pct": per_type.get(worst, 0.0), "seconds": seconds,
            "instructions": counts["instructions"], "predicted": pred["instructions"]}


def holdout(model: dict, test: dict[str, dict]) -> dict:
    rows = {k: compare(model, c) for k, c in test.items()}
    whole = [abs(r["whole_pct"]) for r in rows.values()]
    types = [abs(v) for r in rows.values() for v in r["per_type"].values()]
    boards = [abs(v) for r in rows.values() for v in r["board_pct"].values()]
    return {"models": len(rows), "whole_model_mean_pct": sum(whole) / len(whole), "whole_model_max_pct": max(whole),
            "op_type_max_pct": max(types), "board_ms_max_pct": max(boards), "rows": rows}


def timed_file(path: Path) -> float:
    """Seconds the fast path takes on a flatbuffer file (read, parse, predict), in this process."""
    from edgebnn.estimate import fast

    t0 = time.perf_counter()
    fast.predict_file(path)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runner", default=RUNNER)
    p.add_argument("--cache", default="/tmp/edgebnn-fast-estimate", help="counts and flatbuffers kept here")
    p.add_argument("--fit", action="store_true", help=f"fit the cost model and write {OUT.relative_to(ROOT)}")
    p.add_argument("--count-only", action="store_true", help="count what is missing, print nothing else")
    p.add_argument("--no-count", action="store_true", help="use cached counts only")
    args = p.parse_args()
    cache = Path(args.cache)
    can_count = not args.no_count and Path(args.runner).is_file()
    fit_data = counted(FIT, cache, args.runner, can_count)
    test = counted(TEST, cache, args.runner, can_count)
    if args.count_only:
        return 0
    from edgebnn.estimate import fast

    if args.fit:
        from edgebnn.estimate.calibration import sha256

        model = fast.fit_cost_model(fit_data)
        model["fit_data"] = {k: {"instructions": c["instructions"], "ops": len(c["flat_ops"]),
                                 "per_op_named": fast.measured_ops(c) is not None} for k, c in fit_data.items()}
        model["runner_sha256"] = sha256(args.runner) if Path(args.runner).is_file() else None
        model["made"] = time.strftime("%Y-%m-%d")
        model["holdout"] = {k: v for k, v in holdout(model, test).items() if k != "rows"}
        model["holdout"]["tested_on"] = sorted(test)
        OUT.write_text(json.dumps(model, indent=1, sort_keys=True) + "\n")
        print(f"cost model fitted on {len(fit_data)} counted models, written to {OUT}")
    model = fast.shipped_model() if not args.fit else model
    result = holdout(model, test)
    print(f"\nfast path vs QEMU counts on {result['models']} models outside the fit "
          f"(fitted on {len(model['fitted_on'])}; LCE v0.16.0 aarch64 runner, 1 thread)")
    print(f"{'model':<34} {'M instr (QEMU)':>14} {'fast':>9} {'whole':>7} {'worst op type':<26} {'Pixel1':>7} "
          f"{'Pi4B':>6} {'time ms':>7}")
    for name, r in result["rows"].items():
        worst = f"{r['worst_type']} {r['worst_pct']:+.1f}%" if r["worst_type"] else "-"
        ms = 1000 * timed_file(cache / "models" / f"{name}.tflite") if (cache / "models" / f"{name}.tflite").is_file() \
            else 1000 * r["seconds"]
        print(f"{name:<34} {r['instructions'] / 1e6:14.2f} {r['predicted'] / 1e6:9.2f} {r['whole_pct']:+6.1f}% "
              f"{worst:<26} {r['board_pct']['pixel1']:+6.1f}% {r['board_pct']['pi4b']:+5.1f}% {ms:7.0f}")
    print(f"whole model: {result['whole_model_mean_pct']:.2f}% mean, {result['whole_model_max_pct']:.2f}% max "
          f"(targets 3%, 6%); op types over 1% of a model: {result['op_type_max_pct']:.1f}% max (target 10%); "
          f"board estimates (fast vs exact ms, shipped calibration): {result['board_ms_max_pct']:.1f}% max")
    print("Pixel1, Pi4B: the fast path's board estimate against the exact path's (kernel classes predicted too); "
          "time ms: reading the flatbuffer and predicting, in this process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
