"""Conversion of a Keras BNN into an LCE flatbuffer for a deployment target, with proof that it still answers the same.

:func:`convert` (also callable as ``edgebnn.convert(...)``) does, in order (``pipeline``):

1. resolve the source: a run folder (``run.json`` + ``model.keras``) or a saved Keras model file;
2. load the target profile (``converters/<target>.toml``) and convert with
   ``larq_compute_engine.convert_keras_model(model, target=profile.lce_target)`` (``conversion``);
3. read the flatbuffer back (``flatbuffer``, ``matching``): the op histogram, which Keras binary convs became
   ``LceBconv2d`` (matched by the layer names the converter leaves in tensor names, then by shape: kernel,
   filters, output size), the float ops left per binary conv, the size against a float TFLite of the same model,
   ``compression = float / LCE bytes``;
4. prove it (``proof``): N samples of the run's data set through LCE's interpreter (batch 1, one thread) and the
   Keras model: ``max|y_tflite - y_keras|``, that difference over the output scale ``max|y_keras|``, top-1
   agreement and both top-1 accuracies;
5. write the ``.tflite`` (with the deployment facts embedded as TFLite metadata named ``edgebnn``) and beside it
   the report as ``<file>.json`` (class names, input size, mean/std, source run, recipe, sha256, target...);
6. optionally the baselines (``baselines``): float and int8 post-training-quantised TFLite of the real-valued twin.

``on_device`` repeats the proof on a device's own ``lce_benchmark_model`` (``convert --verify-on DEVICE``,
``edgebnn verify FILE.tflite -d DEVICE``); ``formatting`` prints the report as a table.
"""

from __future__ import annotations

import sys
import types

from edgebnn.convert.baselines import BASELINES, CALIBRATION_SAMPLES, parse_baselines, real_twin
from edgebnn.convert.conversion import float_flatbuffer, lce_flatbuffer
from edgebnn.convert.formatting import format_report
from edgebnn.convert.matching import match_binary_convs, other_binary_layers
from edgebnn.convert.on_device import verify
from edgebnn.convert.pipeline import DEFAULT_DATASET, convert
from edgebnn.convert.proof import TIE, TOLERANCE, _keras_outputs, compare, keras_outputs, run_tflite, sign_margins
from edgebnn.tflite.describe import (
    BINARY_OPS,
    CONVERSION_OPS,
    METADATA_NAME,
    embed_metadata,
    flatbuffer_problems,
    float_op_count,
    histogram_of,
    io_tensors,
    load_error,
    op_histogram,
    read_metadata,
    read_ops,
    sidecar_path,
)

__all__ = [
    "BASELINES", "BINARY_OPS", "CALIBRATION_SAMPLES", "CONVERSION_OPS", "DEFAULT_DATASET", "METADATA_NAME", "TIE",
    "TOLERANCE", "_keras_outputs", "compare", "convert", "embed_metadata", "flatbuffer_problems", "float_flatbuffer",
    "float_op_count", "format_report", "histogram_of", "io_tensors", "keras_outputs", "lce_flatbuffer",
    "load_error", "match_binary_convs", "op_histogram", "other_binary_layers", "parse_baselines", "read_metadata",
    "read_ops", "real_twin", "run_tflite", "sidecar_path", "sign_margins", "verify",
]


class _CallableModule(types.ModuleType):
    """Lets ``edgebnn.convert(...)`` work whether ``edgebnn.convert`` resolves to this package or its function."""

    def __call__(self, *args, **kwargs):
        return convert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
