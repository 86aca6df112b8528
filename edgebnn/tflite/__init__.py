"""TFLite flatbuffers: read, checked and described in one place, by every stage that opens one.

- ``fields``: the tables of a flatbuffer read in plain Python, every offset bounds-checked (:func:`fields.parse`);
- ``file``: a ``.tflite`` checked against TensorFlow's schema before anything native reads it (:func:`check`,
  :func:`problem`, :func:`read`);
- ``describe``: its operators, op histogram, what LCE's kernels refuse, the ``edgebnn`` metadata and the name a
  result gives it (:func:`identify`).

None of it needs TensorFlow to be imported: conversion writes flatbuffers, profiling and estimation read them,
and all three see the same fields.
"""

from edgebnn.tflite import describe, fields, file
from edgebnn.tflite.describe import (
    BINARY_OPS,
    CONVERSION_OPS,
    METADATA_NAME,
    embed_metadata,
    flatbuffer_problems,
    float_op_count,
    histogram_of,
    identify,
    io_tensors,
    load_error,
    op_histogram,
    read_metadata,
    read_ops,
    sidecar_path,
)
from edgebnn.tflite.fields import Malformed
from edgebnn.tflite.file import check, problem, read, schema

__all__ = [
    "BINARY_OPS", "CONVERSION_OPS", "METADATA_NAME", "Malformed", "check", "describe", "embed_metadata", "fields",
    "file", "flatbuffer_problems", "float_op_count", "histogram_of", "identify", "io_tensors", "load_error",
    "op_histogram", "problem", "read", "read_metadata", "read_ops", "schema", "sidecar_path",
]
