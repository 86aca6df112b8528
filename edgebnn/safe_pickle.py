"""A restricted unpickler: rebuilds data, never runs code a file names.

A pickle is a small program: ``GLOBAL``/``STACK_GLOBAL``/``INST`` look a callable up by module and name, and
``REDUCE``/``NEWOBJ``/``OBJ``/``BUILD`` call what was looked up. Every such callable reaches the stack through
``Unpickler.find_class``, so an allow-list there closes every path: a name not on it is refused when it is looked
up, before it can be called. What is allowed only builds data:

- ``collections.OrderedDict`` (PyTorch's state dicts), ``set``/``frozenset``/``bytearray``/``complex`` (how
  protocol 2 spells them), ``_codecs.encode`` and ``bytes`` (how Python 3 writes ``bytes`` at protocol 2), mapped
  to functions that only turn latin-1 text, or bytes, into bytes;
- numpy's own array and scalar reconstruction: ``numpy.core.multiarray._reconstruct`` (``numpy._core`` in numpy 2),
  ``numpy.ndarray``, ``numpy.dtype``, ``numpy.core.multiarray.scalar``, and protocol 5's
  ``numpy.core.numeric._frombuffer`` (mapped to a function that refuses object dtypes). numpy checks a ``BUILD``
  state's bytes against the shape and dtype, and an object array's state must be a list of objects this
  unpickler built.

``BUILD`` without ``__setstate__`` writes into an instance's ``__dict__`` (PyTorch's ``OrderedDict._metadata``);
even a ``__setstate__`` planted there can only call what the allow-list already allows. A format adds its own
names with ``extra`` (``"module.name" -> object``), mapped to its own safe functions; persistent ids (PyTorch's
storages) are refused unless the caller passes ``persistent_load``.

Errors are one line: :class:`PickleRefused` names the refused global, :class:`PickleCorrupt` a truncated or
malformed stream. Both are :class:`~edgebnn.errors.EdgebnnError`.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import pickletools
import sys
from collections.abc import Callable, Mapping
from typing import BinaryIO

import numpy as np

from edgebnn.errors import EdgebnnError

# numpy's reconstruction functions, taken from what numpy itself pickles, so the names of numpy 1 and 2 both work.
_NP_RECONSTRUCT = np.zeros(0).__reduce__()[0]
_NP_SCALAR = np.float64(0).__reduce__()[0]
_PY2_MODULES = {"__builtin__": "builtins"}
_NAME_LIMIT = 120


class PickleRefused(EdgebnnError):
    """The pickle names a global that is not on the allow-list (it would run code)."""


class PickleCorrupt(EdgebnnError):
    """The pickle is truncated or malformed; ``reason`` is the short cause, for callers' own messages."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _latin1_bytes(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as Python 3 pickles ``bytes`` at protocol 2: ``encode(text, 'latin1')``, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("_codecs.encode is only read as encode(str, 'latin1')")
    return text.encode("latin1")


def _array_from_buffer(buffer, dtype, shape, order):
    """numpy's protocol-5 form, ``numpy.core.numeric._frombuffer``: the buffer's bytes as an array of that dtype
    and shape (numpy checks the sizes; an object dtype, whose elements would be pointers, is refused)."""
    dtype = np.dtype(dtype)
    if dtype.hasobject or not isinstance(buffer, (bytes, bytearray)) or order not in ("C", "F"):
        raise pickle.UnpicklingError("numpy's _frombuffer is only read for plain-data dtypes over bytes")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _bytes(*args):
    """``bytes`` as Python 3 pickles an empty ``bytes`` at protocol 2: ``bytes()``; nothing that converts or
    allocates from a number or a codec name."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise pickle.UnpicklingError("builtins.bytes is only read as bytes() or bytes(b'...')")


BASE_GLOBALS: dict[str, object] = {
    "collections.OrderedDict": collections.OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.bytearray": bytearray,
    "builtins.complex": complex,
    "builtins.bytes": _bytes,
    "_codecs.encode": _latin1_bytes,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
    "numpy.core.multiarray._reconstruct": _NP_RECONSTRUCT,
    "numpy._core.multiarray._reconstruct": _NP_RECONSTRUCT,
    "numpy.core.multiarray.scalar": _NP_SCALAR,
    "numpy._core.multiarray.scalar": _NP_SCALAR,
    "numpy.core.numeric._frombuffer": _array_from_buffer,
    "numpy._core.numeric._frombuffer": _array_from_buffer,
}


def printable(text: object) -> str:
    """A name from a file as one short printable line (a hostile name may hold newlines or run on)."""
    text = str(text)
    if not text.isprintable():
        text = ascii(text)[1:-1]
    return text if len(text) <= _NAME_LIMIT else text[:_NAME_LIMIT] + "..."


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, *, source: str, allowed: Mapping[tuple[str, str], object],
                 persistent_load: Callable[[object], object] | None, encoding: str):
        super().__init__(file, encoding=encoding, errors="strict")
        self._source = source
        self._allowed = allowed
        self._persistent = persistent_load

    def find_class(self, module: str, name: str):
        key = (_PY2_MODULES.get(module, module), name)
        if key in self._allowed:
            return self._allowed[key]
        raise PickleRefused(f"{self._source}: refused to load: the pickle names {printable(key[0])}."
                            f"{printable(name)}, which would run code; edgebnn only reads data")

    def persistent_load(self, pid):
        if self._persistent is None:
            raise PickleRefused(f"{self._source}: refused to load: the pickle holds a persistent id "
                                f"({printable(type(pid).__name__)}), which this file type never has; edgebnn only "
                                "reads data")
        return self._persistent(pid)


# CPython 3.11's C unpickler, given a BYTEARRAY8 longer than memory allows, raises MemoryError and also prints
# "SystemError: deallocated bytearray object has exported buffers" through sys.stderr: a second line that a
# one-line error must not carry. What a failed load prints is dropped; a load that succeeds passes it on.
_CPYTHON_STRAY_LINE = "deallocated bytearray object has exported buffers"


def _check_memo(file: BinaryIO, source: str) -> None:
    """Refuses a memo index past its own position in the stream before the C unpickler sees it: PUT and
    LONG_BINPUT grow the memo to the index they name (LONG_BINPUT 10**9 asks for gigabytes, filled at once),
    while a pickler numbers its memo from 0, one entry per opcode at most. Malformed streams are left to the
    unpickler, which reports them; the file is put back where it was."""
    start = file.tell()
    try:
        for opcode, arg, pos in pickletools.genops(file):
            if opcode.name in ("PUT", "LONG_BINPUT") and arg > pos:
                raise PickleCorrupt(f"{source}: cannot read the pickle (memo index {arg} at byte {pos}); it looks "
                                    "truncated or corrupt", f"memo index {arg} at byte {pos}")
    except (ValueError, TypeError, EOFError, OverflowError, MemoryError, UnicodeDecodeError):
        pass
    finally:
        file.seek(start)


def _allowed(extra: Mapping[str, object] | None) -> dict[tuple[str, str], object]:
    table = dict(BASE_GLOBALS)
    table.update(extra or {})
    return {tuple(name.rsplit(".", 1)): obj for name, obj in table.items()}


def load(file: BinaryIO, *, source: str, encoding: str = "bytes", extra: Mapping[str, object] | None = None,
         persistent_load: Callable[[object], object] | None = None) -> object:
    """One pickle from ``file`` (seekable; left just past its STOP opcode), through the allow-list.

    ``source`` starts every error message (for example ``"cifar10: data/data_batch_1"``). ``encoding`` decodes
    Python 2 ``str``: ``"bytes"`` keeps them bytes (CIFAR-10's batches), ``"latin1"`` makes them text (legacy
    PyTorch). ``extra`` adds ``"module.name" -> object`` entries; ``persistent_load(pid)`` resolves persistent ids.
    """
    _check_memo(file, source)
    unpickler = _RestrictedUnpickler(file, source=source, allowed=_allowed(extra),
                                     persistent_load=persistent_load, encoding=encoding)
    stray = io.StringIO()
    try:
        with contextlib.redirect_stderr(stray):  # see _CPYTHON_STRAY_LINE
            value = unpickler.load()
    except EdgebnnError:
        raise
    except Exception as err:  # EOFError, UnpicklingError, and what a malformed stream makes the allowed calls raise
        reason = type(err).__name__
        detail = printable(str(err).splitlines()[0]) if str(err) else ""
        if detail:
            reason = f"{reason}: {detail}"
        raise PickleCorrupt(f"{source}: cannot read the pickle ({reason}); it looks truncated or corrupt",
                            reason) from None
    sys.stderr.write(stray.getvalue())
    return value


def loads(data: bytes, **kwargs) -> object:
    """:func:`load` on bytes in memory."""
    return load(io.BytesIO(data), **kwargs)
