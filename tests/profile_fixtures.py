"""Shared by the profile tests: one tiny Larq model converted by the real LCE converter per test session."""

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import edgebnn  # noqa: F401


def scratch_folder(prefix: str) -> Path:
    """A temp folder removed when the test process exits (the cached model in it serves the whole session)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, True)
    return folder

@functools.lru_cache(maxsize=4)
def tiny_tflite(size: int = 16, width: int = 32) -> Path:
    """A size x size x 3 -> 10 binary net (float conv, two binary convs of ``width`` channels, dense), converted with
    target="arm"."""
    import larq as lq
    import larq_compute_engine as lce
    import tensorflow as tf

    tf.random.set_seed(0)
    kw = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
              pad_values=1.0, padding="same", use_bias=False)
    model = tf.keras.Sequential([
        tf.keras.layers.Input((size, size, 3)), tf.keras.layers.Conv2D(width, 3, padding="same"),
        tf.keras.layers.BatchNormalization(), lq.layers.QuantConv2D(width, 3, **kw),
        tf.keras.layers.BatchNormalization(), lq.layers.QuantConv2D(width, 3, **kw),
        tf.keras.layers.BatchNormalization(), tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(10)])
    path = scratch_folder("edgebnn-test-model-") / ("tiny.tflite" if (size, width) == (16, 32)
                                                                  else f"tiny{size}x{width}.tflite")
    path.write_bytes(lce.convert_keras_model(model, target="arm"))
    return path


def started_sshd(root):
    """A running :class:`LoopbackSshd` in ``root``; the test is skipped when sshd cannot start here."""
    import subprocess

    import pytest
    from loopback_sshd import LoopbackSshd, SshdUnavailable

    server = LoopbackSshd(root)
    try:
        return server.start()
    except (SshdUnavailable, subprocess.CalledProcessError, FileNotFoundError) as err:
        pytest.skip(f"cannot start a test OpenSSH server here: {err}")


def shell_script(folder: Path, name: str, body: str) -> Path:
    """An executable ``#!/bin/sh`` script: a runner of the 'board'."""
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path
