"""Reading and writing a TFLite flatbuffer: its operators, op histogram, what LCE's kernels refuse, metadata."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np

BINARY_OPS = ("LceBconv2d", "LceBMaxPool2d")  # ops that compute on bitpacked data
CONVERSION_OPS = ("LceQuantize", "LceDequantize")  # float <-> bitpacked conversions
METADATA_NAME = "edgebnn"


def _schema():
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:  # pragma: no cover - older TF layouts
        from tensorflow.lite.tools import schema_py_generated as schema
    return schema


def _builtin_names() -> dict[int, str]:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int) and not k.startswith("_")}


def _model_object(flatbuffer: bytes):
    schema = _schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(flatbuffer), 0))


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


def read_ops(flatbuffer: bytes) -> list[dict]:
    """The operators of a TFLite flatbuffer's main subgraph, in execution order.

    Each is ``{"type", "inputs": [(name, shape)], "outputs": [(name, shape)]}``; custom ops are typed by their
    custom code (``LceBconv2d``), builtins by their name (``CONV_2D``). Bytes that are not a sound TFLite
    flatbuffer raise :class:`EdgebnnError` (``edgebnn.tflite_file``).
    """
    from edgebnn import tflite_file

    tflite_file.check(bytes(flatbuffer))
    model = _model_object(flatbuffer)
    builtins = _builtin_names()
    graph = model.subgraphs[0]

    def tensor(i):
        if i < 0:
            return ("", [])
        t = graph.tensors[i]
        return (_text(t.name), [int(d) for d in (t.shape if t.shape is not None else [])])

    ops = []
    for op in graph.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        kind = _text(code.customCode) if code.customCode else builtins.get(builtin, f"BUILTIN_{builtin}")
        ops.append({"type": kind, "inputs": [tensor(i) for i in (op.inputs if op.inputs is not None else [])],
                    "outputs": [tensor(i) for i in (op.outputs if op.outputs is not None else [])]})
    return ops


def op_histogram(flatbuffer: bytes) -> dict[str, int]:
    """How many operators of each type the flatbuffer holds, most frequent first."""
    return histogram_of(read_ops(flatbuffer))


def histogram_of(ops: list[dict]) -> dict[str, int]:
    """How many of ``ops`` (from :func:`read_ops`) are of each type, most frequent first."""
    return dict(Counter(op["type"] for op in ops).most_common())


def io_tensors(flatbuffer: bytes) -> tuple[list[tuple[str, list[int]]], list[tuple[str, list[int]]]]:
    """``(inputs, outputs)`` of the main subgraph as ``[(tensor name, shape)]``: the names a runner's
    ``--input_layer`` takes."""
    model = _model_object(flatbuffer)
    graph = model.subgraphs[0]

    def named(indices):
        return [(_text(graph.tensors[i].name), [int(d) for d in graph.tensors[i].shape]) for i in indices]

    return named(graph.inputs), named(graph.outputs)


def flatbuffer_problems(ops: list[dict], matched: dict[str, int] | None = None) -> list[str]:
    """What in a flatbuffer LCE's own kernels will refuse: an ``LceBconv2d`` output transform (inputs 2 and 3, the
    post-activation multiplier and bias) must hold one value per output channel. LCE 0.16's converter fuses a
    following multiply by a constant without checking its shape, so a per-position scale (XNOR-Net++ Gamma cases
    2-4 directly after the conv) produces a flatbuffer that does not load."""
    names = {i: name for name, i in (matched or {}).items()}
    problems = []
    for i, op in enumerate(ops):
        if op["type"] != "LceBconv2d":
            continue
        bad = [(what, op["inputs"][slot][1]) for slot, what in ((2, "multiplier"), (3, "bias"))
               if len(op["inputs"]) > slot and op["inputs"][slot][0] and len(op["inputs"][slot][1]) > 1]
        if bad:
            shapes = " and ".join(f"post-activation {what} {shape}" for what, shape in bad)
            problems.append(f"LceBconv2d of layer {names.get(i, '#' + str(i))} has {shapes}, but LCE's kernel "
                            f"takes one value per output channel (the converter fused a per-position scale)")
    return problems


def load_error(flatbuffer: bytes) -> str | None:
    """None when LCE's interpreter loads the flatbuffer and allocates its tensors, else why not."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    try:
        Interpreter(flatbuffer, num_threads=1)
    except (RuntimeError, ValueError) as err:
        return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return None


def float_op_count(histogram: dict[str, int]) -> int:
    """Operators that compute on float data: all but the bitpacked ops and the float<->bitpacked conversions."""
    return sum(n for kind, n in histogram.items() if kind not in BINARY_OPS + CONVERSION_OPS)


def embed_metadata(flatbuffer: bytes, meta: dict, name: str = METADATA_NAME) -> bytes:
    """The flatbuffer with ``meta`` (JSON) stored as TFLite metadata entry ``name`` (replacing an older one)."""
    schema = _schema()
    import flatbuffers

    model = _model_object(flatbuffer)
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != name]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _field(table, index: int) -> int:
    """The offset of field ``index`` of a flatbuffers table (0 when absent), as the generated readers compute it."""
    return table.Offset(4 + 2 * index)


def _tables(table, index: int) -> list:
    """The tables of vector field ``index``."""
    from flatbuffers.table import Table

    o = _field(table, index)
    if not o:
        return []
    start = table.Vector(o)
    return [Table(table.Bytes, table.Indirect(start + 4 * i)) for i in range(table.VectorLen(o))]


def read_metadata(flatbuffer: bytes | str | os.PathLike, name: str = METADATA_NAME) -> dict | None:
    """The JSON metadata entry ``name`` of a flatbuffer (bytes or path), or None when it has none.

    Read with the ``flatbuffers`` package alone, following TFLite's schema (Model.metadata = field 6, Model.buffers
    = field 4; Metadata.name = 0, .buffer = 1; Buffer.data = 0, .offset = 1, .size = 2), so that naming a file
    does not import TensorFlow."""
    import flatbuffers
    from flatbuffers.table import Table

    if not isinstance(flatbuffer, bytes | bytearray):
        flatbuffer = Path(flatbuffer).read_bytes()
    buf = bytearray(flatbuffer)
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
    model = Table(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    for entry in _tables(model, 6):
        o = _field(entry, 0)
        if not o or entry.String(o + entry.Pos).decode("utf-8", "replace") != name:
            continue
        o = _field(entry, 1)
        index = entry.Get(flatbuffers.number_types.Uint32Flags, o + entry.Pos) if o else 0
        buffer = _tables(model, 4)[index]
        o, offset = _field(buffer, 0), _field(buffer, 1)
        if o:
            start = buffer.Vector(o)
            data = buf[start:start + buffer.VectorLen(o)]
        elif offset:  # a buffer stored after the flatbuffer (models over 2 GB)
            at = buffer.Get(flatbuffers.number_types.Uint64Flags, offset + buffer.Pos)
            size = buffer.Get(flatbuffers.number_types.Uint64Flags, _field(buffer, 2) + buffer.Pos)
            data = buf[at:at + size]
        else:
            data = b""
        return json.loads(bytes(data).decode())
    return None


def sidecar_path(tflite: str | os.PathLike) -> Path:
    """Where the conversion report of a flatbuffer lives: ``<file>.json``."""
    tflite = Path(tflite)
    return tflite.with_name(tflite.name + ".json")
