"""The converters themselves: LCE's (bitpacked binary ops for a target) and TensorFlow's (float32, int8 PTQ)."""

from __future__ import annotations

import sys
import time

import numpy as np

from edgebnn.errors import EdgebnnError


def log(progress: bool, message: str) -> None:
    """A progress line on stderr when ``progress``."""
    if progress:
        print(message, file=sys.stderr, flush=True)


def lce_flatbuffer(model, lce_target: str) -> tuple[bytes, float]:
    """``(flatbuffer, seconds)`` from LCE's converter."""
    import larq_compute_engine as lce  # lazy: LCE loads TensorFlow

    start = time.perf_counter()
    try:
        fb = lce.convert_keras_model(model, target=lce_target)
    except Exception as err:  # the converter raises many types; name the model and the first line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise EdgebnnError(f"LCE could not convert model {model.name!r} for target {lce_target!r}: {first}") from None
    return bytes(fb), time.perf_counter() - start


def float_flatbuffer(model, samples: np.ndarray | None = None, int8: bool = False) -> tuple[bytes, float, str]:
    """``(flatbuffer, seconds, note)`` from TensorFlow's own converter: float32, or int8 post-training quantised
    with ``samples`` as the representative data set (fully int8 when every op allows it, else with float
    fallback, said in the note). Larq quantizers stay as float ops."""
    import tensorflow as tf  # lazy: loads TensorFlow

    def make(full_int8: bool):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            data = samples.astype(np.float32)
            converter.representative_dataset = lambda: ([data[i:i + 1]] for i in range(len(data)))
            if full_int8:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return bytes(converter.convert())

    start = time.perf_counter()
    note = "float32"
    if int8:
        try:
            fb, note = make(True), "int8 weights and activations, float32 input/output"
        except Exception:  # an op with no int8 kernel: keep it float
            fb, note = make(False), "int8 where TFLite has int8 kernels, float fallback elsewhere"
    else:
        fb = make(False)
    return fb, time.perf_counter() - start, note
