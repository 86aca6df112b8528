"""The fast path against the exact one: instructions predicted from op shapes vs counted under QEMU, per core.

Models are converted as `edgebnn convert --target arm64` does (edgebnn's families: parameters randomised, folded;
Larq Zoo's: weights=None, needs larq-zoo) or, for the int8 ones, as TensorFlow's full-int8 post-training
quantisation of a family's real-valued twin (``conversion.lce.float_flatbuffer(..., int8=True)``, 16 random images as
the representative set: what `--baselines int8` makes), and counted under QEMU with LCE's aarch64 runner on each
core (``-cpu``: cortex-a72, the Pi 4B's and Pixel 1's; cortex-a76, the Pi 5's; the Larq Zoo models on cortex-a72
only), one at a time; every count is cached in CACHE/counts/CORE/KEY.json (with the flatbuffer's typed ops), so no
model is counted twice.

``--fit`` fits one cost model per core on FIT + FIT_INT8 + FIT_ISLANDS and writes
``edgebnn/estimate/fast_model.json`` with the models each was fitted on and its error on TEST + TEST_INT8 +
TEST_ISLANDS (int8 islands: ``convert --precision int8``'s construction, its ranges on synthetic images as
``budget --precision int8`` takes them). The table compares, for every test model (other families, widths 0.75,
odd and other input sizes, other Larq Zoo models, other int8 twins, the islands: none in the fit):
whole-model instructions, the worst op type (summed per op type over the model; types under 1% of its
instructions left out), the board estimates (fast vs exact ms, the shipped calibration, boards counted on that
core) and the time the fast path takes (reading the flatbuffer and predicting, one process).

    .venv/bin/python bench/fast_estimate.py [--runner PATH] [--cache DIR] [--cores a,b] [--fit] [--count-only]
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


# int8: TensorFlow's full-int8 PTQ of the family's real-valued twin (int8 CONV_2D, ADD, MEAN, FULLY_CONNECTED,
# PRELU, SUB and the QUANTIZE/DEQUANTIZE at its ends). Small: without dot product a real int8 conv costs 2-4
# instructions per multiply-accumulate (a full-int8 resnet-18 at width 0.5, 64 px: 157 M on cortex-a72).
FIT_INT8 = [("int8", n, s, w) for n, s, w in (
    ("resnet-18", 32, 0.25), ("resnet-18", 64, 0.25), ("bireal-18", 32, 0.5), ("bireal-18", 48, 0.25),
    ("reactnet-18", 32, 0.25), ("xnorpp-18-case1", 32, 0.25), ("sdbnn-resnet20", 32, 0.5), ("reactnet-a", 32, 0.25),
    ("sdbnn-vgg-small", 32, 0.25))]
TEST_INT8 = [("int8", n, s, w) for n, s, w in (
    ("resnet-18", 40, 0.5), ("bireal-34", 32, 0.25), ("reactnet-18", 48, 0.25), ("sdbnn-resnet18", 32, 0.5))]
# int8 islands (``edgebnn convert --precision int8``'s construction, via budget.build_flatbuffer: the real-valued
# convs int8, the rest float). Fitted on the full-int8 twins alone, the fast path priced Bi-Real-18's 224 px int8
# 7x7 stem at 53.5 M instructions on cortex-a72 against 42.9 M counted (the islands flatbuffer +9.7% whole, +14.7%
# on cortex-a76; bireal-18 w0.25 at 128 px +39.8%). One islands model in the fit gives its int8 ops (only those:
# its float ops sit in many XNNPACK partitions the count cannot name, ``fast.measured_ops(partial=True)``).
FIT_ISLANDS = [("islands", n, s, w) for n, s, w in (
    ("bireal-18", 128, 0.25), ("reactnet-18", 96, 0.25), ("reactnet-18", 160, 0.5), ("bireal-18", 160, 0.5))]
TEST_ISLANDS = [("islands", n, s, w) for n, s, w in (
    ("bireal-18", 64, 0.5), ("bireal-18", 224, 1.0))]
CORES = ("cortex-a72", "cortex-a76")
ZOO_CORES = ("cortex-a72",)  # the Larq Zoo models (224 px, costly to count) only on the calibrated boards' core


def specs_for(specs, cpu: str) -> list:
    return [s for s in specs if s[0] != "zoo" or cpu in ZOO_CORES]


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
    if kind == "int8":
        out.write_bytes(int8_twin(name, width, size, 1000 if size >= 128 else 10))
        return out
    from edgebnn.estimate.budget import build_flatbuffer

    if kind == "islands":
        out.write_bytes(build_flatbuffer(name, width, size, 1000 if size >= 128 else 10, "int8"))
        return out

    out.write_bytes(build_flatbuffer(name, width, size, 1000 if size >= 128 else 10))
    return out


def int8_twin(family: str, width: float, size: int, num_classes: int) -> bytes:
    """TensorFlow's full-int8 PTQ of the family's real-valued twin (parameters randomised; 16 random images)."""
    import numpy as np
    import tensorflow as tf

    from edgebnn import archs
    from edgebnn.archs.randomise import randomise_parameters
    from edgebnn.conversion.lce import float_flatbuffer

    channels = archs.get(family).input_shape[-1]
    model = randomise_parameters(archs.build(family, input_shape=(size, size, channels), num_classes=num_classes,
                                             width=width, binary_weights=False, binary_activations=False), seed=0)
    x = np.random.default_rng(0).normal(size=(16, size, size, channels)).astype(np.float32)
    fb, _, _ = float_flatbuffer(model, x, int8=True)
    tf.keras.backend.clear_session()
    return fb


def counted(specs, cache: Path, runner: str, count: bool, cpu: str) -> dict[str, dict]:
    """Each spec's cached count on QEMU core ``cpu`` (counted now when missing and ``count``)."""
    from edgebnn.errors import EdgebnnError
    from edgebnn.estimate import counting
    from edgebnn.estimate.fast import typed_ops

    (cache / "counts" / cpu).mkdir(parents=True, exist_ok=True)
    (cache / "models").mkdir(parents=True, exist_ok=True)
    out = {}
    for spec in specs:
        target = cache / "counts" / cpu / f"{key(spec)}.json"
        if not target.is_file() and count:
            try:
                path = convert(spec, cache / "models")
                c = counting.count_model(runner, path, cpu=cpu)
            except EdgebnnError as err:
                print(f"  {key(spec)} on {cpu}: {err}", file=sys.stderr)
                continue
            c.update(flat_ops=typed_ops(path.read_bytes()), spec=list(spec))
            target.write_text(json.dumps(c))
            print(f"  counted {key(spec)} on {cpu}: {c['instructions'] / 1e6:.1f} M", file=sys.stderr, flush=True)
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
        if rec.get("cpu") != model.get("cpu"):  # a board is estimated from counts on its own core only
            continue
        groups = estimate._groups(rec)
        board[name] = 100 * (fit.predict(rec["k_ms_per_1e9"], pred["classes"], groups)
                             / fit.predict(rec["k_ms_per_1e9"], counts["classes"], groups) - 1)
    return {"whole_pct": 100 * (pred["instructions"] / counts["instructions"] - 1), "per_type": per_type,
            "board_pct": board,
            "worst_type": worst, "worst_pct": per_type.get(worst, 0.0), "seconds": seconds,
            "instructions": counts["instructions"], "predicted": pred["instructions"]}


def holdout(model: dict, test: dict[str, dict]) -> dict:
    """The error on ``test`` (whole model, op types, board ms), over all of it and over its int8 and float models."""
    rows = {k: compare(model, c) for k, c in test.items()}
    out = {"models": len(rows), **_errors(rows.values()), "rows": rows}
    for part, keys in (("int8", [k for k in rows if k.startswith("int8-")]),
                       ("islands", [k for k in rows if k.startswith("islands-")]),
                       ("float", [k for k in rows if not k.startswith(("int8-", "islands-"))])):
        if keys:
            out[part] = {"models": len(keys), **_errors([rows[k] for k in keys])}
    return out


def _errors(rows) -> dict:
    rows = list(rows)
    whole = [abs(r["whole_pct"]) for r in rows]
    types = [abs(v) for r in rows for v in r["per_type"].values()]
    boards = [abs(v) for r in rows for v in r["board_pct"].values()]
    return {"whole_model_mean_pct": sum(whole) / len(whole), "whole_model_max_pct": max(whole),
            "op_type_max_pct": max(types, default=0.0), "board_ms_max_pct": max(boards, default=0.0)}


def timed_file(path: Path, model: dict) -> float:
    """Seconds the fast path takes on a flatbuffer file (read, parse, predict), in this process."""
    from edgebnn.estimate import fast

    t0 = time.perf_counter()
    fast.predict(fast.typed_ops(path.read_bytes()), model)
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runner", default=RUNNER)
    p.add_argument("--cache", default="/tmp/edgebnn-fast-estimate", help="counts and flatbuffers kept here")
    p.add_argument("--cores", default=",".join(CORES), help="QEMU cores to count on and fit for")
    p.add_argument("--fit", action="store_true", help=f"fit the cost models and write {OUT.relative_to(ROOT)}")
    p.add_argument("--count-only", action="store_true", help="count what is missing, print nothing else")
    p.add_argument("--no-count", action="store_true", help="use cached counts only")
    args = p.parse_args()
    cache = Path(args.cache)
    can_count = not args.no_count and Path(args.runner).is_file()
    cores = [c.strip() for c in args.cores.split(",") if c.strip()]
    data = {}
    for cpu in cores:  # one core's fit and test sets, then the next core's
        data[cpu] = [counted(specs_for(FIT + FIT_INT8 + FIT_ISLANDS, cpu), cache, args.runner, can_count, cpu),
                     counted(specs_for(TEST + TEST_INT8 + TEST_ISLANDS, cpu), cache, args.runner, can_count, cpu)]
    if args.count_only:
        return 0
    from edgebnn.estimate import fast

    if args.fit:
        from edgebnn.estimate.calibration import sha256

        shipped = {"cores": {}, "runner_sha256": sha256(args.runner) if Path(args.runner).is_file() else None,
                   "made": time.strftime("%Y-%m-%d")}
        for cpu in cores:
            fit_data, test = data[cpu]
            model = fast.fit_cost_model(fit_data)
            model["fit_data"] = {k: {"instructions": c["instructions"], "ops": len(c["flat_ops"]),
                                     "per_op_named": fast.measured_ops(c) is not None} for k, c in fit_data.items()}
            result = holdout({**model, "cpu": cpu}, test)
            model["holdout"] = {k: v for k, v in result.items() if k != "rows"}
            model["holdout"]["tested_on"] = sorted(test)
            shipped["cores"][cpu] = model
        OUT.write_text(json.dumps(shipped, indent=1, sort_keys=True) + "\n")
        print(f"cost models for {', '.join(cores)} written to {OUT}")
    models = fast.shipped_model()
    for cpu in cores:
        if cpu not in models["cores"]:
            print(f"{cpu}: no cost model in {OUT.name}")
            continue
        report(fast.core_model(models, cpu), data[cpu][1], cache)
    return 0


def report(model: dict, test: dict, cache: Path) -> None:
    result = holdout(model, test)
    print(f"\n{model['cpu']}: fast path vs QEMU counts (-cpu {model['cpu']}) on {result['models']} models outside "
          f"the fit (fitted on {len(model['fitted_on'])}; LCE v0.16.0 aarch64 runner, 1 thread)")
    print(f"{'model':<34} {'M instr (QEMU)':>14} {'fast':>9} {'whole':>7} {'worst op type':<32} {'Pixel1':>7} "
          f"{'Pi4B':>6} {'time ms':>7}")
    for name, r in result["rows"].items():
        worst = f"{r['worst_type']} {r['worst_pct']:+.1f}%" if r["worst_type"] else "-"
        file = cache / "models" / f"{name}.tflite"
        ms = 1000 * (timed_file(file, model) if file.is_file() else r["seconds"])
        boards = "".join(f" {r['board_pct'][b]:+6.1f}%" if b in r["board_pct"] else f" {'-':>7}"
                         for b in ("pixel1", "pi4b"))
        print(f"{name:<34} {r['instructions'] / 1e6:14.2f} {r['predicted'] / 1e6:9.2f} {r['whole_pct']:+6.1f}% "
              f"{worst:<32}{boards} {ms:7.0f}")
    for part in ("float", "int8", "islands"):
        if part in result:
            e = result[part]
            print(f"{part} ({e['models']} models): whole model {e['whole_model_mean_pct']:.2f}% mean, "
                  f"{e['whole_model_max_pct']:.2f}% max; op types over 1% of a model {e['op_type_max_pct']:.1f}% max; "
                  f"board estimates (fast vs exact ms) {e['board_ms_max_pct']:.1f}% max")
    print(f"all: whole model {result['whole_model_mean_pct']:.2f}% mean, {result['whole_model_max_pct']:.2f}% max "
          f"(targets 3%, 6%); op types over 1% of a model: {result['op_type_max_pct']:.1f}% max (target 10%); "
          f"board estimates: {result['board_ms_max_pct']:.1f}% max")
    print("Pixel1, Pi4B: the fast path's board estimate against the exact path's (kernel classes predicted too; only "
          "for the boards counted on this core); time ms: reading the flatbuffer and predicting, in this process")


if __name__ == "__main__":
    sys.exit(main())
