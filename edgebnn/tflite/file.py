"""A ``.tflite`` file checked against the TFLite schema before anything native reads it.

TFLite's C++ interpreter trusts the flatbuffer it is given (LCE builds it with ``BuildFromBuffer``, which skips
the flatbuffers verifier): an index past the end of a table is a segmentation fault, not an error. So every
model is read here first, in Python where a bad offset is an exception: its fields by :mod:`edgebnn.tflite.fields`
(every offset, vector and string bounds-checked; the same reader :mod:`edgebnn.tflite.describe` uses), the
tables that reader does not model (options, quantization, sparsity, signatures) by TensorFlow's generated schema
module (loaded on its own: it needs only ``flatbuffers`` and numpy, not TensorFlow). Every index the interpreter
follows is checked: subgraph, tensor, buffer, metadata and operator-code indices in range, tensor types and
builtin codes known, constant data as long as its shape says, the file identifier ``TFL3`` and version 3.

:func:`check` raises :class:`EdgebnnError` naming the file and the first problem; it returns the parsed model
(:class:`edgebnn.tflite.fields.Model`) for callers that read it anyway.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

from edgebnn.errors import EdgebnnError
from edgebnn.inputs import regular_file
from edgebnn.tflite import fields

_MODULE = "edgebnn._tflite_schema"
# Bytes per element of the tensor types with a fixed element size (TensorType values).
_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 15: 4, 16: 2}


def schema():
    """TensorFlow's ``schema_py_generated`` module, imported without importing TensorFlow (seconds)."""
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    spec = importlib.util.find_spec("tensorflow")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for sub in ("lite/python", "lite/tools"):
            path = Path(location, sub, "schema_py_generated.py")
            if path.is_file():
                mod_spec = importlib.util.spec_from_file_location(_MODULE, path)
                module = importlib.util.module_from_spec(mod_spec)
                mod_spec.loader.exec_module(module)
                sys.modules[_MODULE] = module
                return module
    raise EdgebnnError("TensorFlow's TFLite schema (tensorflow/lite/python/schema_py_generated.py) is missing: "
                       "pip install tensorflow==2.16.2")


def _enum_values(cls) -> set[int]:
    return {v for k, v in vars(cls).items() if isinstance(v, int) and not k.startswith("_")}


def _code_problem(model: fields.Model, s) -> str | None:
    known = _enum_values(s.BuiltinOperator)
    for i, code in enumerate(model.codes):
        if code.builtin not in known:
            return f"operator code {i} is builtin {code.builtin}, unknown to TFLite"
        if code.builtin == s.BuiltinOperator.CUSTOM and not code.custom:
            return f"operator code {i} is a custom op without a name"
    return None


def _index_problem(graph: fields.SubGraph, g: int, n_codes: int) -> str | None:
    n_tensors = len(graph.tensors)
    for what, indices in (("inputs", graph.inputs), ("outputs", graph.outputs)):
        bad = [i for i in indices if not 0 <= i < n_tensors]
        if bad:
            return f"subgraph {g} {what} name tensor {bad[0]} of {n_tensors}"
    for k, op in enumerate(graph.operators):
        if not 0 <= op.opcode < n_codes:
            return f"operator {k} of subgraph {g} has operator code {op.opcode} of {n_codes}"
        for what, indices in (("input", op.inputs), ("output", op.outputs)):
            bad = [i for i in indices if not -1 <= i < n_tensors]
            if bad:
                return f"operator {k} of subgraph {g} has {what} tensor {bad[0]} of {n_tensors}"
    return None


def _tensor_problem(model: fields.Model, graph, g: int, size: int, types: set[int]) -> str | None:
    buffers = model.buffers
    for k, t in enumerate(graph.tensors):
        if t.type not in types:
            return f"tensor {k} of subgraph {g} has unknown type {t.type}"
        if not 0 <= t.buffer < len(buffers):
            return f"tensor {k} of subgraph {g} names buffer {t.buffer} of {len(buffers)}"
        if any(d < -1 for d in t.shape):
            return f"tensor {k} of subgraph {g} has shape {list(t.shape)}"
        buf = buffers[t.buffer]
        if buf.external and buf.start + buf.size > size:
            return f"buffer {t.buffer} lies past the end of the file"
        if buf.size and t.type in _ITEMSIZE and -1 not in t.shape:
            want = _ITEMSIZE[t.type]
            for d in t.shape:
                want *= d
            if buf.size != want:
                return (f"tensor {k} of subgraph {g} has {buf.size} bytes of data where shape {list(t.shape)} "
                        f"needs {want}")
    return None


def _unmodelled_problem(data: bytes, s) -> str | None:
    """What TensorFlow's generated schema cannot read in the tables :mod:`edgebnn.tflite.fields` does not model
    whole (operator options, quantization, sparsity, signature defs), which the interpreter follows too. Operator
    codes, buffers and metadata, modelled field by field, are not read again."""
    try:
        root = s.Model.GetRootAs(bytearray(data), 0)
        for i in range(root.SubgraphsLength()):
            s.SubGraphT.InitFromObj(root.Subgraphs(i))
        for i in range(root.SignatureDefsLength()):
            s.SignatureDefT.InitFromObj(root.SignatureDefs(i))
        root.Description(), root.MetadataBufferAsNumpy()
    except (IndexError, struct.error, ValueError, TypeError, OverflowError, UnicodeDecodeError,
            AttributeError, RecursionError, MemoryError) as err:
        kind = "an offset past the end" if isinstance(err, (struct.error, IndexError)) else type(err).__name__
        return f"the flatbuffer cannot be read: {kind}"
    return None


def _metadata_problem(model: fields.Model) -> str | None:
    bad = [(name, i) for name, i in model.metadata if not 0 <= i < len(model.buffers)]
    return f"metadata {bad[0][0]!r} names buffer {bad[0][1]} of {len(model.buffers)}" if bad else None


def _model_problem(model: fields.Model, size: int) -> str | None:
    """None when every index of ``model`` (parsed from ``size`` bytes) holds and its codes and types are known."""
    if model.version != 3:
        return f"schema version {model.version}, not 3"
    if not model.subgraphs:
        return "no subgraph"
    s = schema()
    types = _enum_values(s.TensorType)
    graphs = (_index_problem(graph, g, len(model.codes)) or _tensor_problem(model, graph, g, size, types)
              for g, graph in enumerate(model.subgraphs))
    return _code_problem(model, s) or next((found for found in graphs if found), None) or _metadata_problem(model)


def _checked(data: bytes) -> tuple[fields.Model | None, str | None]:
    try:
        model = fields.parse(data)
    except fields.Malformed as err:
        return None, str(err)
    found = _model_problem(model, len(data)) or _unmodelled_problem(data, schema())
    return (None, found) if found else (model, None)


def problem(data: bytes) -> str | None:
    """None when ``data`` is a TFLite flatbuffer whose offsets and indices all hold, else the first problem found."""
    return _checked(bytes(data))[1]


def check(data: bytes, where: str | Path | None = None) -> fields.Model:
    """The parsed model in ``data``; :class:`EdgebnnError` naming the file ``where`` when it is not a sound TFLite
    flatbuffer."""
    model, found = _checked(bytes(data))
    if found:
        what = f"model file {where}" if where else "the model"
        raise EdgebnnError(f"{what} is not a valid TFLite flatbuffer ({found}): it is corrupt or not a converted "
                           "model; re-run `edgebnn convert`")
    return model


def read(path: str | Path) -> bytes:
    """The bytes of a ``.tflite`` file, checked; a missing or unreadable file is one clear line."""
    p = regular_file(path, "model file", if_folder="pass the .tflite file inside it",
                     if_missing="pass a .tflite file from `edgebnn convert`", if_other="pass a .tflite file")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise EdgebnnError(f"cannot read model file {p}: {err.strerror}") from None
    check(data, p)
    return data
