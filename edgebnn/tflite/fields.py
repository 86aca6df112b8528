"""The fields of a TFLite flatbuffer, read in plain Python with every offset bounds-checked.

The one reader of ``.tflite`` bytes in edgebnn: the schema check (:mod:`edgebnn.tflite.file`) and the op, tensor and
metadata readers (:mod:`edgebnn.tflite.describe`) all see a file through :func:`parse`, so they cannot disagree
about it. It follows TFLite's ``schema.fbs`` (version 3) for the fields edgebnn and the interpreter's index checks
need: Model, SubGraph, Tensor, Operator, OperatorCode, Buffer, Metadata. Every root, vtable, vector and string is
checked to lie inside the bytes (strings also end in their NUL), so bad bytes raise :class:`Malformed` (a
``ValueError``), never an ``IndexError`` or a read past the end. Needs neither TensorFlow nor ``flatbuffers``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

IDENTIFIER = b"TFL3"
_U8, _I8, _U16, _I32, _U32, _U64 = (struct.Struct(f) for f in ("<B", "<b", "<H", "<i", "<I", "<Q"))


class Malformed(ValueError):
    """An offset, length or string of a flatbuffer that does not lie inside its bytes."""


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    type: int
    buffer: int


@dataclass(frozen=True)
class Operator:
    opcode: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class OperatorCode:
    builtin: int  # the larger of builtin_code and deprecated_builtin_code, as TFLite's GetBuiltinCode
    custom: str  # "" for a builtin
    version: int


@dataclass(frozen=True)
class Buffer:
    start: int  # where its bytes start in the file (inline data, or offset for data after the flatbuffer)
    size: int
    external: bool  # stored after the flatbuffer (Buffer.offset > 1; models over 2 GB)


@dataclass(frozen=True)
class SubGraph:
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[Operator, ...]


@dataclass(frozen=True)
class Model:
    version: int
    codes: tuple[OperatorCode, ...]
    subgraphs: tuple[SubGraph, ...]
    buffers: tuple[Buffer, ...]
    metadata: tuple[tuple[str, int], ...]  # (name, buffer index)


class _Reader:
    """Bounds-checked reads of flatbuffer scalars, tables, vectors and strings from ``data``."""

    __slots__ = ("data", "size")

    def __init__(self, data: bytes):
        self.data, self.size = data, len(data)

    def scalar(self, kind: struct.Struct, at: int) -> int:
        if at < 0 or at + kind.size > self.size:
            raise Malformed(f"offset {at} lies outside the file's {self.size} bytes")
        return kind.unpack_from(self.data, at)[0]

    def table(self, at: int) -> tuple[int, int, int]:
        """``(position, vtable, vtable size)`` of the table at ``at``, its vtable checked to lie inside the bytes."""
        vtable = at - self.scalar(_I32, at)
        vsize = self.scalar(_U16, vtable)
        if vsize < 4 or vsize % 2 or vtable + vsize > self.size or at + self.scalar(_U16, vtable + 2) > self.size:
            raise Malformed(f"the table at {at} has a vtable outside the file")
        return at, vtable, vsize

    def field(self, table: tuple[int, int, int], index: int) -> int:
        """Where field ``index`` of ``table`` lies, 0 when absent."""
        at, vtable, vsize = table
        slot = 4 + 2 * index
        offset = self.scalar(_U16, vtable + slot) if slot < vsize else 0
        return at + offset if offset else 0

    def get(self, table, index: int, kind: struct.Struct, default: int = 0) -> int:
        at = self.field(table, index)
        return self.scalar(kind, at) if at else default

    def vector(self, table, index: int, width: int) -> tuple[int, int]:
        """``(start, length)`` of vector field ``index`` whose elements take ``width`` bytes; ``(0, 0)`` when absent."""
        at = self.field(table, index)
        if not at:
            return 0, 0
        at += self.scalar(_U32, at)
        n = self.scalar(_U32, at)
        if at + 4 + n * width > self.size:
            raise Malformed(f"a vector of {n} entries at {at} runs past the end")
        return at + 4, n

    def ints(self, table, index: int) -> tuple[int, ...]:
        start, n = self.vector(table, index, 4)
        return struct.unpack_from(f"<{n}i", self.data, start) if n else ()

    def tables(self, table, index: int) -> list[tuple[int, int, int]]:
        start, n = self.vector(table, index, 4)
        return [self.table(at + self.scalar(_U32, at)) for at in range(start, start + 4 * n, 4)]

    def string(self, table, index: int) -> str:
        start, n = self.vector(table, index, 1)
        if start and self.scalar(_U8, start + n) != 0:
            raise Malformed(f"the string at {start} has no terminating NUL")
        return self.data[start:start + n].decode("utf-8", "replace")


def _tensor(r: _Reader, t) -> Tensor:
    return Tensor(r.string(t, 3), r.ints(t, 0), r.get(t, 1, _I8), r.get(t, 2, _U32))


def _subgraph(r: _Reader, g) -> SubGraph:
    ops = tuple(Operator(r.get(op, 0, _U32), r.ints(op, 1), r.ints(op, 2)) for op in r.tables(g, 3))
    return SubGraph(tuple(_tensor(r, t) for t in r.tables(g, 0)), r.ints(g, 1), r.ints(g, 2), ops)


def _buffer(r: _Reader, b) -> Buffer:
    start, n = r.vector(b, 0, 1)
    offset, size = r.get(b, 1, _U64), r.get(b, 2, _U64)
    if not n and offset > 1:  # as TFLite's interpreter: inline data first, else data after the flatbuffer
        return Buffer(offset, size, True)
    return Buffer(start, n, False)


def _code(r: _Reader, c) -> OperatorCode:
    return OperatorCode(max(r.get(c, 0, _I8), r.get(c, 3, _I32)), r.string(c, 1), r.get(c, 2, _I32, 1))


def parse(data: bytes) -> Model:
    """The model in ``data``; :class:`Malformed` when it is not a TFLite flatbuffer whose offsets all hold."""
    data = bytes(data)
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise Malformed("no TFL3 identifier")
    r = _Reader(data)
    m = r.table(r.scalar(_U32, 0))
    return Model(r.get(m, 0, _U32), tuple(_code(r, c) for c in r.tables(m, 1)),
                 tuple(_subgraph(r, g) for g in r.tables(m, 2)),
                 tuple(_buffer(r, b) for b in r.tables(m, 4)),
                 tuple((r.string(e, 0), r.get(e, 1, _U32)) for e in r.tables(m, 6)))


def buffer_bytes(model: Model, data: bytes, index: int) -> bytes:
    """The bytes of buffer ``index`` of ``model`` (parsed from ``data``)."""
    if not 0 <= index < len(model.buffers):
        raise Malformed(f"buffer {index} of {len(model.buffers)}")
    b = model.buffers[index]
    if b.start + b.size > len(data):
        raise Malformed(f"buffer {index} lies past the end of the file")
    return bytes(data[b.start:b.start + b.size])
