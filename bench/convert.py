"""Conversion figures of each family's ImageNet variant (224x224x3, 1000 classes, random weights; BN and every
non-kernel parameter moved off its init so the converter cannot fold any away).

For each model: Keras parameters, LCE flatbuffer MB, float TFLite MB of the same model, their ratio, LCE conversion
seconds (on this machine, labelled), LceBconv2d ops against the Keras binary convs, and float ops left.

    .venv/bin/python bench/convert.py [--models bireal-18,reactnet-a] [--json out.json]
"""

import argparse
import gc
import json
import sys

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

DEFAULT_MODELS = ("bireal-18", "reactnet-a", "reactnet-18", "xnorpp-18-case1", "xnorpp-18-case4", "sdbnn-18")


def randomise(model, seed: int = 0):
    """Move BN statistics and every non-kernel parameter (thresholds, scales, slopes) off its 0/1 init, as training
    would: a parameter left at 1 or 0 is folded away by the converter and the sizes would flatter the model."""
    import numpy as np
    import tensorflow as tf

    from edgebnn.archs import stats

    rng = np.random.RandomState(seed)
    for layer in stats.iter_layers(model):
        kernel_layer = isinstance(layer, tf.keras.layers.Conv2D | tf.keras.layers.Dense)
        for w in layer.weights:
            if not kernel_layer or "alpha" in w.name:
                value = w.numpy() * rng.uniform(0.8, 1.2, w.shape) + rng.normal(0, 0.05, w.shape)
                w.assign(np.abs(value) if "moving_variance" in w.name else value)
    return model


def measure(name: str) -> dict:
    import tensorflow as tf

    from edgebnn import archs, tflite
    from edgebnn import conversion as conv

    tf.keras.backend.clear_session()
    model = randomise(archs.build(name))  # the paper's ImageNet input and classes
    layers = archs.stats.binary_conv_layers(model)
    fb, seconds = conv.lce_flatbuffer(model, "arm")
    ops = tflite.read_ops(fb)
    histogram = tflite.op_histogram(fb)
    matched, lost = conv.match_binary_convs(layers, ops)
    problems = tflite.flatbuffer_problems(ops, matched)
    float_fb, float_seconds, _ = conv.float_flatbuffer(model)
    row = {"model": name, "input_shape": list(model.input_shape[1:]), "params": int(model.count_params()),
           "flatbuffer_mb": len(fb) / 1e6, "float_tflite_mb": len(float_fb) / 1e6,
           "ratio": len(float_fb) / len(fb), "seconds": seconds, "float_seconds": float_seconds,
           "binary_convs": len(layers), "lce_bconv2d": histogram.get("LceBconv2d", 0),
           "not_binary": [lost_layer["layer"] for lost_layer in lost], "problems": problems,
           "loads": tflite.load_error(fb) is None,
           "float_ops": tflite.float_op_count(histogram), "ops": histogram}
    del model, fb, float_fb
    gc.collect()
    return row


def format_table(rows: list[dict], machine: str) -> str:
    head = (f"{'model':<16} {'params':>11} {'LCE MB':>8} {'float MB':>9} {'ratio':>6} {'conv s':>7} "
            f"{'LceBconv2d':>10} {'bin convs':>9} {'float ops':>9}")
    lines = [f"LCE conversion, ImageNet variants, random weights; seconds measured on {machine}", head,
             "-" * len(head)]
    for r in rows:
        lines.append(f"{r['model']:<16} {r['params']:>11,} {r['flatbuffer_mb']:>8.2f} {r['float_tflite_mb']:>9.2f} "
                     f"{r['ratio']:>6.1f} {r['seconds']:>7.1f} {r['lce_bconv2d']:>10} {r['binary_convs']:>9} "
                     f"{r['float_ops']:>9}")
        if r["not_binary"]:
            lines.append(f"{'':<16} not binary: {', '.join(r['not_binary'])}")
        if not r["loads"]:
            lines.append(f"{'':<16} DOES NOT LOAD in LCE's interpreter: {len(r['problems'])} LceBconv2d with a "
                         f"per-position output transform" if r["problems"] else f"{'':<16} DOES NOT LOAD")
    return "\n".join(lines)


def main(argv=None) -> int:
    from edgebnn.machine import host_label

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated registry names")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        print(f"converting {name} ...", file=sys.stderr, flush=True)
        rows.append(measure(name))
    machine = host_label()
    print(format_table(rows, machine))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
