"""Conversion of a Keras BNN into an LCE flatbuffer for a deployment target, with proof that it still answers the same.

:func:`convert` (the front door's ``edgebnn.convert(...)`` returns it as a typed record) does, in order (``pipeline``):

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

``precision="int8"`` (``convert --precision int8``, ``precision``) converts a copy whose real-valued convs are
fake-quantized islands calibrated on training images, so that they run as int8 CONV_2D beside the binary ops; its
proof is top-1 agreement with Keras (``--min-agreement``, 0.99) instead of the float 1e-3, and the flatbuffer's
metadata says ``"precision": "int8"`` (``"float"`` otherwise).

``on_device`` repeats the proof on a device's own ``lce_benchmark_model`` (``convert --verify-on DEVICE``,
``edgebnn verify FILE.tflite -d DEVICE``); ``formatting`` prints the report as a table.
"""

from __future__ import annotations

from edgebnn.conversion.baselines import BASELINES, CALIBRATION_SAMPLES, parse_baselines, real_twin
from edgebnn.conversion.formatting import format_report
from edgebnn.conversion.lce import float_flatbuffer, lce_flatbuffer
from edgebnn.conversion.matching import match_binary_convs, other_binary_layers
from edgebnn.conversion.on_device import verify
from edgebnn.conversion.pipeline import DEFAULT_DATASET, convert
from edgebnn.conversion.proof import TIE, TOLERANCE, _keras_outputs, compare, keras_outputs, run_tflite, sign_margins

__all__ = [
    "BASELINES", "CALIBRATION_SAMPLES", "DEFAULT_DATASET", "TIE", "TOLERANCE", "_keras_outputs", "compare", "convert",
    "float_flatbuffer", "format_report", "keras_outputs", "lce_flatbuffer", "match_binary_convs", "other_binary_layers",
    "parse_baselines", "real_twin", "run_tflite", "sign_margins", "verify",
]
