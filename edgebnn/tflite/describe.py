"""Reading and writing a TFLite flatbuffer: its operators, op histogram, what LCE's kernels refuse, metadata."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import flatbuffers
import numpy as np

from edgebnn.tflite import fields, file

BINARY_OPS = ("LceBconv2d", "LceBMaxPool2d")  # ops that compute on bitpacked data
CONVERSION_OPS = ("LceQuantize", "LceDequantize")  # float <-> bitpacked conversions
METADATA_NAME = "edgebnn"


def _builtin_names() -> dict[int, str]:
    s = file.schema()
    return {v: k for k, v in vars(s.BuiltinOperator).items() if isinstance(v, int) and not k.startswith("_")}


def _named(graph: fields.SubGraph, indices) -> list[tuple[str, list[int]]]:
    """``[(tensor name, shape)]`` of tensor ``indices`` (an optional input, -1, is ``("", [])``)."""
    return [(graph.tensors[i].name, list(graph.tensors[i].shape)) if i >= 0 else ("", []) for i in indices]


def read_ops(flatbuffer: bytes) -> list[dict]:
    """The operators of a TFLite flatbuffer's main subgraph, in execution order.

    Each is ``{"type", "inputs": [(name, shape)], "outputs": [(name, shape)]}``; custom ops are typed by their
    custom code (``LceBconv2d``), builtins by their name (``CONV_2D``). Bytes that are not a sound TFLite
    flatbuffer raise :class:`EdgebnnError` (``edgebnn.tflite.file``).
    """
    model = file.check(flatbuffer)
    builtins = _builtin_names()
    kinds = [code.custom or builtins.get(code.builtin, f"BUILTIN_{code.builtin}") for code in model.codes]
    graph = model.subgraphs[0]
    return [{"type": kinds[op.opcode], "inputs": _named(graph, op.inputs), "outputs": _named(graph, op.outputs)}
            for op in graph.operators]


def op_histogram(flatbuffer: bytes) -> dict[str, int]:
    """How many operators of each type the flatbuffer holds, most frequent first."""
    return histogram_of(read_ops(flatbuffer))


def histogram_of(ops: list[dict]) -> dict[str, int]:
    """How many of ``ops`` (from :func:`read_ops`) are of each type, most frequent first."""
    return dict(Counter(op["type"] for op in ops).most_common())


def io_tensors(flatbuffer: bytes) -> tuple[list[tuple[str, list[int]]], list[tuple[str, list[int]]]]:
    """``(inputs, outputs)`` of the main subgraph as ``[(tensor name, shape)]``: the names a runner's
    ``--input_layer`` takes. Bytes that are not a sound TFLite flatbuffer raise :class:`EdgebnnError`."""
    graph = file.check(flatbuffer).subgraphs[0]
    return _named(graph, graph.inputs), _named(graph, graph.outputs)


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
    from larq_compute_engine.tflite.python.interpreter import Interpreter  # lazy: LCE loads TensorFlow

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

    file.check(flatbuffer)
    schema = file.schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(flatbuffer), 0))
    model.metadata = [m for m in (model.metadata or []) if (m.name or b"").decode("utf-8", "replace") != name]
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


def read_metadata(flatbuffer: bytes | str | os.PathLike, name: str = METADATA_NAME) -> dict | None:
    """The JSON metadata entry ``name`` of a flatbuffer (bytes or path), or None when it has none.

    Read by :mod:`edgebnn.tflite.fields` (no TensorFlow import); bytes it cannot read, and an entry that is not a
    JSON object, raise ``ValueError``."""
    data = bytes(flatbuffer) if isinstance(flatbuffer, bytes | bytearray) else Path(flatbuffer).read_bytes()
    model = fields.parse(data)
    for entry, index in model.metadata:
        if entry == name:
            meta = json.loads(fields.buffer_bytes(model, data, index).decode())
            if not isinstance(meta, dict):
                raise ValueError(f"metadata {name!r} is JSON but not an object")
            return meta
    return None


def sidecar_path(tflite: str | os.PathLike) -> Path:
    """Where the conversion report of a flatbuffer lives: ``<file>.json``."""
    tflite = Path(tflite)
    return tflite.with_name(tflite.name + ".json")


def _run_named(meta: dict | None) -> str | None:
    """``run`` or ``model (run)`` from a flatbuffer's ``edgebnn`` metadata (or its conversion report's source)."""
    if not meta or not meta.get("name"):
        return None
    name, model = str(meta["name"]), meta.get("model")
    return name if not model or model in name else f"{model} ({name})"


def model_name(path: Path, data: bytes, sha: str) -> str:
    """What a profiled flatbuffer is called: its run (and model) from the ``edgebnn`` metadata ``edgebnn convert``
    embeds; for a baseline (float/int8 of the twin, no metadata) its run's, from the conversion report beside the
    binary flatbuffer; else the file stem."""
    try:
        named = _run_named(read_metadata(data))
    except ValueError:  # unreadable, or metadata that is not edgebnn's JSON object
        named = None
    if named:
        return named
    stem, _, kind = path.stem.rpartition(".")
    parent = path.with_name(f"{stem}.tflite.json")
    if stem and parent.is_file():
        try:
            report = json.loads(parent.read_text())
        except (OSError, ValueError):
            report = {}
        if ((report.get("baselines") or {}).get(kind) or {}).get("sha256") == sha:
            run = _run_named(report.get("source")) or stem
            return f"{run} {kind} baseline (real-valued twin)"
    return path.stem


def identify(path: str | os.PathLike) -> dict:
    """A flatbuffer file checked against the schema and named: ``{path, model_path (absolute), model_name, model_sha256,
    model_size_mb}``, how every result names the model it measured."""
    p = Path(path)
    data = file.read(p)  # checked against the TFLite schema before any interpreter sees it
    sha = hashlib.sha256(data).hexdigest()
    return {"path": p, "model_path": str(p.resolve()), "model_name": model_name(p, data, sha),
            "model_sha256": sha, "model_size_mb": len(data) / 1e6}
