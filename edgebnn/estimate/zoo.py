"""The calibration set: Larq Zoo architectures (``larq-zoo``, the ``zoo`` extra) built with ``weights=None`` (nothing
is downloaded) at 224x224 and converted by LCE for the arm target, exactly as the published figures were made.
"""

from __future__ import annotations

from pathlib import Path

from edgebnn.errors import EdgebnnError

# Model name (as in boards.toml) -> larq_zoo module holding its builder.
ZOO = {
    "QuickNetSmall": "sota", "QuickNet": "sota", "QuickNetLarge": "sota",
    "BiRealNet": "literature", "BinaryResNetE18": "literature", "RealToBinaryNet": "literature",
    "BinaryDenseNet28": "literature", "BinaryDenseNet37": "literature", "BinaryDenseNet37Dilated": "literature",
    "BinaryDenseNet45": "literature", "MeliusNet22": "literature", "BinaryAlexNet": "literature",
    "XNORNet": "literature",
}


def _larq_zoo():

    try:
        import larq_zoo  # lazy: Larq loads TensorFlow
    except ImportError as err:
        raise EdgebnnError(f"larq-zoo cannot be imported ({err}): pip install 'edgebnn[zoo]' (larq-zoo 2.4.0; "
                           "not in the same environment as the [tfds] extra)") from None
    return larq_zoo


def convert(name: str, out_dir: str | Path, size: int = 224) -> Path:
    """Build zoo model ``name`` (weights=None) and write ``out_dir/NAME.tflite`` (kept when already there)."""
    if name not in ZOO:
        raise EdgebnnError(f"unknown Larq Zoo model {name!r}: one of {', '.join(ZOO)}")
    out = Path(out_dir) / f"{name}.tflite"
    if out.is_file():
        return out
    lqz = _larq_zoo()
    import larq_compute_engine as lce  # lazy: LCE loads TensorFlow
    import tensorflow as tf  # lazy: loads TensorFlow

    builder = getattr(getattr(lqz, ZOO[name]), name)
    model = builder(input_shape=(size, size, 3), weights=None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(lce.convert_keras_model(model, target="arm"))
    tmp.replace(out)
    tf.keras.backend.clear_session()
    return out
