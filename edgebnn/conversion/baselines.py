"""Baselines: float and int8 post-training-quantised TFLite of the model's real-valued twin.

The twin is ``archs.build(info["model"], ..., binary_weights=False, binary_activations=False)`` for a run of a
registered model; for a bare model file (or when the registry cannot build it) it is the same model cloned with
every Larq quantizer and kernel constraint removed. Weights are copied by layer name where shapes agree; baselines
serve size and latency comparisons, their accuracy is not a trained twin's.
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

from edgebnn import archs, runs
from edgebnn.conversion.lce import float_flatbuffer, log
from edgebnn.conversion.proof import compare, keras_outputs, run_tflite
from edgebnn.errors import EdgebnnError
from edgebnn.outputs import write_atomic
from edgebnn.tflite.describe import op_histogram

BASELINES = ("float", "int8")
CALIBRATION_SAMPLES = 100


def parse_baselines(baselines) -> list[str]:
    """The wanted baselines from ``"float,int8"`` or a sequence, checked against :data:`BASELINES`."""
    if isinstance(baselines, str):
        baselines = [b for b in baselines.split(",") if b.strip()]
    wanted = [b.strip().lower() for b in baselines or ()]
    unknown = [b for b in wanted if b not in BASELINES]
    if unknown:
        raise EdgebnnError(f"unknown baseline {unknown[0]!r}; use any of: {', '.join(BASELINES)} (comma-separated)")
    return list(dict.fromkeys(wanted))


def _strip_quantizers(model):
    """The same network with every Larq quantizer and kernel constraint removed, weights copied."""
    import tensorflow as tf  # lazy: loads TensorFlow

    def clone(layer):
        config = layer.get_config()
        changed = False
        for key in ("input_quantizer", "kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer"):
            if config.get(key) is not None:
                config[key], changed = None, True
        if changed:
            for key in ("kernel_constraint", "depthwise_constraint", "pointwise_constraint"):
                if key in config:
                    config[key] = None
            config.pop("metrics", None)
        return layer.__class__.from_config(config)

    twin = tf.keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin


def real_twin(model, info: dict) -> tuple[object, str]:
    """``(twin model, how it was made)``: the registry's real-valued twin of a run's model with the run's weights
    carried over by layer name, else the model itself with its quantizers removed."""
    name = info.get("model")
    if info.get("real"):
        return model, "the run's own model (a real-valued run)"
    why = ""
    if name:
        try:

            kwargs = _arch_kwargs(info)
            twin = archs.build(name, input_shape=tuple(model.input_shape[1:]), num_classes=int(model.output_shape[-1]),
                               binary_weights=False, binary_activations=False, **kwargs)
            if tuple(twin.output_shape[1:]) == tuple(model.output_shape[1:]):
                archs.carry_over_weights(model, twin)
                args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
                return twin, f"archs.build({name!r}{args}, binary_weights=False, binary_activations=False)"
        except (ImportError, AttributeError, KeyError, TypeError, ValueError, EdgebnnError) as err:
            why = f" (the registry's twin of {name} could not be used: {str(err).splitlines()[0][:160]})"
    return _strip_quantizers(model), "the same model with its Larq quantizers removed" + why


def _arch_kwargs(info: dict) -> dict:
    """Builder arguments (width, ...) from the ``[arch]`` table of the run's resolved recipe."""


    path = Path(info.get("run_dir") or "") / runs.RECIPE
    if not info.get("run_dir") or not path.is_file():
        return {}
    try:
        arch = tomllib.loads(path.read_text()).get("arch", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    return {k: v for k, v in arch.items() if v is not None and k not in ("input_shape", "num_classes")}


def baseline(kind: str, twin, how: str, x, y, out: Path, check_samples: int, progress: bool) -> dict:
    """Write ``<out stem>.<kind>.tflite`` from the twin and report its size, ops and (with samples) its proof
    against the twin in Keras."""
    log(progress, f"baseline {kind}: {how}")
    fb, seconds, note = float_flatbuffer(twin, x[:CALIBRATION_SAMPLES] if kind == "int8" else None, int8=kind == "int8")
    path = out.with_name(f"{out.stem}.{kind}.tflite")
    write_atomic(path, fb, f"baseline {kind}")
    result = {"file": str(path), "bytes": len(fb), "sha256": hashlib.sha256(fb).hexdigest(),
              "seconds": round(seconds, 3), "twin": how, "note": note, "ops": op_histogram(fb)}
    if check_samples:
        xs = x[:check_samples]
        ref = keras_outputs(twin, xs)
        result["check"] = compare(ref, run_tflite(fb, xs, lce=False, progress=progress, desc=f"{kind} baseline"),
                                  None if y is None else y[:check_samples])
    return result
