"""Shared by the aarch64 tests: LCE's aarch64 runner beside the project, and a tiny binary model at 32x32."""

import functools
from pathlib import Path

import pytest
from profile_fixtures import scratch_folder

import edgebnn  # noqa: F401

# LCE 0.16's lce_benchmark_model for Linux aarch64, reached where it lies (never copied into the project).
AARCH64_RUNNER = Path(__file__).parents[1] / ".." / "shared" / "lce" / "lce_benchmark_model_aarch64"


def aarch64_runner() -> Path:
    """The aarch64 runner, or skip the test naming where it was looked for."""
    if not AARCH64_RUNNER.is_file():
        pytest.skip(f"{AARCH64_RUNNER} is absent: LCE's aarch64 runner is not beside this checkout")
    return AARCH64_RUNNER.resolve()


@functools.lru_cache(maxsize=1)
def tiny_32() -> Path:
    """A 32x32x3 -> 10 binary net (float stem, two binary convs with BN, pooling, dense), LCE target "arm"."""
    import larq as lq
    import larq_compute_engine as lce
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    kw = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
              pad_values=1.0, padding="same", use_bias=False)
    model = tf.keras.Sequential([
        tf.keras.layers.Input((32, 32, 3)), tf.keras.layers.Conv2D(32, 3, strides=2, padding="same"),
        tf.keras.layers.BatchNormalization(), lq.layers.QuantConv2D(32, 3, **kw),
        tf.keras.layers.BatchNormalization(), tf.keras.layers.MaxPool2D(2), lq.layers.QuantConv2D(32, 3, **kw),
        tf.keras.layers.BatchNormalization(), tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(10)])
    path = scratch_folder("edgebnn-test-arm64-") / "tiny32.tflite"
    path.write_bytes(lce.convert_keras_model(model, target="arm"))
    return path
