"""A ``.tflite`` file checked against the TFLite schema before anything native reads it.

TFLite's C++ interpreter trusts the flatbuffer it is given (LCE builds it with ``BuildFromBuffer``, which skips
the flatbuffers verifier): an index past the end of a table is a segmentation fault, not an error. So every
model is read here first, in Python where a bad offset is an exception, with TensorFlow's generated schema
module (loaded on its own: it needs only ``flatbuffers`` and numpy, not TensorFlow), and every index the
interpreter follows is checked: subgraph, tensor, buffer and operator-code indices in range, tensor types and
builtin codes known, constant data as long as its shape says, the file identifier ``TFL3`` and version 3.

:func:`check` raises :class:`EdgebnnError` naming the file and the first problem; it returns the unpacked
model (``schema.ModelT``) for callers that read it anyway.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
from pathlib import Path

from edgebnn.errors import EdgebnnError

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


def _vectors_fit(root, size: int) -> str | None:
    """A cheap look at the top-level vector lengths before unpacking: each element takes at least 4 bytes."""
    lengths = {"subgraphs": root.SubgraphsLength(), "buffers": root.BuffersLength(),
               "operator codes": root.OperatorCodesLength()}
    for i in range(min(root.SubgraphsLength(), size // 4)):
        g = root.Subgraphs(i)
        lengths[f"subgraph {i} tensors"] = g.TensorsLength()
        lengths[f"subgraph {i} operators"] = g.OperatorsLength()
    for what, n in lengths.items():
        if n * 4 > size:
            return f"{what}: {n} entries cannot fit in {size} bytes"
    return None


def _index_problem(graph, g: int, n_buffers: int, n_codes: int) -> str | None:
    n_tensors = len(graph.tensors or [])
    for what, indices in (("inputs", graph.inputs), ("outputs", graph.outputs)):
        bad = [int(i) for i in (indices if indices is not None else []) if not 0 <= int(i) < n_tensors]
        if bad:
            return f"subgraph {g} {what} name tensor {bad[0]} of {n_tensors}"
    for k, op in enumerate(graph.operators or []):
        if not 0 <= op.opcodeIndex < n_codes:
            return f"operator {k} of subgraph {g} has operator code {op.opcodeIndex} of {n_codes}"
        for what, indices in (("input", op.inputs), ("output", op.outputs)):
            bad = [int(i) for i in (indices if indices is not None else []) if not -1 <= int(i) < n_tensors]
            if bad:
                return f"operator {k} of subgraph {g} has {what} tensor {bad[0]} of {n_tensors}"
    return None


def _tensor_problem(model, graph, g: int, size: int, types: set[int]) -> str | None:
    buffers = model.buffers or []
    for k, t in enumerate(graph.tensors or []):
        if t.type not in types:
            return f"tensor {k} of subgraph {g} has unknown type {t.type}"
        if not 0 <= t.buffer < len(buffers):
            return f"tensor {k} of subgraph {g} names buffer {t.buffer} of {len(buffers)}"
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        if any(d < -1 for d in shape):
            return f"tensor {k} of subgraph {g} has shape {shape}"
        buf = buffers[t.buffer]
        n_bytes = len(buf.data) if buf.data is not None else (buf.size if buf.offset > 1 else 0)
        if buf.offset > 1 and buf.offset + buf.size > size:
            return f"buffer {t.buffer} lies past the end of the file"
        if n_bytes and t.type in _ITEMSIZE and -1 not in shape:
            want = _ITEMSIZE[t.type]
            for d in shape:
                want *= d
            if n_bytes != want:
                return f"tensor {k} of subgraph {g} has {n_bytes} bytes of data where shape {shape} needs {want}"
    return None


def problem(data: bytes) -> str | None:
    """None when ``data`` is a TFLite flatbuffer whose indices all hold, else the first problem found."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        return "no TFL3 identifier"
    s = schema()
    buf = bytearray(data)
    try:
        root = s.Model.GetRootAs(buf, 0)
        too_big = _vectors_fit(root, len(data))
        if too_big:
            return too_big
        model = s.ModelT.InitFromObj(root)
    except (IndexError, struct.error, ValueError, TypeError, OverflowError, UnicodeDecodeError,
            AttributeError, RecursionError, MemoryError) as err:
        kind = "an offset past the end" if isinstance(err, (struct.error, IndexError)) else type(err).__name__
        return f"the flatbuffer cannot be read: {kind}"
    if model.version != 3:
        return f"schema version {model.version}, not 3"
    if not model.subgraphs:
        return "no subgraph"
    codes = _enum_values(s.BuiltinOperator)
    for i, code in enumerate(model.operatorCodes or []):
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if builtin not in codes:
            return f"operator code {i} is builtin {builtin}, unknown to TFLite"
        if builtin == s.BuiltinOperator.CUSTOM and not code.customCode:
            return f"operator code {i} is a custom op without a name"
    types = _enum_values(s.TensorType)
    n_codes, n_buffers = len(model.operatorCodes or []), len(model.buffers or [])
    for g, graph in enumerate(model.subgraphs):
        found = _index_problem(graph, g, n_buffers, n_codes) or _tensor_problem(model, graph, g, len(data), types)
        if found:
            return found
    return None


def check(data: bytes, where: str | Path | None = None) -> None:
    """Raise :class:`EdgebnnError` naming the file ``where`` when ``data`` is not a sound TFLite flatbuffer."""
    found = problem(data)
    if found:
        what = f"model file {where}" if where else "the model"
        raise EdgebnnError(f"{what} is not a valid TFLite flatbuffer ({found}): it is corrupt or not a converted "
                           "model; re-run `edgebnn convert`")


def read(path: str | Path) -> bytes:
    """The bytes of a ``.tflite`` file, checked; a missing or unreadable file is one clear line."""
    p = Path(path)
    if p.is_dir():
        raise EdgebnnError(f"model file {p} is a folder: pass the .tflite file inside it")
    if not p.is_file():
        raise EdgebnnError(f"model file {p} does not exist: pass a .tflite file from `edgebnn convert`")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise EdgebnnError(f"cannot read model file {p}: {err.strerror}") from None
    check(data, p)
    return data
