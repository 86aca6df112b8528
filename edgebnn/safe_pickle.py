"""A restricted unpickler: rebuilds data, never runs code a file names.

A pickle is a small program: ``GLOBAL``/``STACK_GLOBAL``/``INST`` look a callable up by module and name, and
``REDUCE``/``NEWOBJ``/``OBJ``/``BUILD`` call what was looked up. Every such callable reaches the stack through
``Unpickler.find_class``, so an allow-list there closes every path: a name not on it is refused when it is looked
up, before it can be called. What is allowed only builds data:

- ``collections.OrderedDict`` (PyTorch's state dicts), ``set``/``frozenset``/``complex`` (how protocol 2 spells
  them), ``_codecs.encode``, ``bytes`` and ``bytearray`` (how Python 3 writes them at protocol 2), the last three
  mapped to functions that only turn latin-1 text or bytes into bytes (``bytearray(10**10)`` would fill 10 GB);
- numpy's array and scalar reconstruction: ``numpy.core.multiarray._reconstruct`` (``numpy._core`` in numpy 2)
  with ``numpy.ndarray``, ``numpy.dtype``, ``numpy.core.multiarray.scalar`` and protocol 5's
  ``numpy.core.numeric._frombuffer``, each mapped to a placeholder that records its arguments and ``BUILD``
  state. numpy's own ``__setstate__`` trusts that state (an object array with a short list crashes numpy 1.26),
  so after the load the placeholders become arrays built here from a checked dtype (numbers, bools, strings,
  structured and sub-array types; no objects, no datetimes) and bytes that exactly fill the shape.

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
import math
import pickle
import pickletools
import re
import sys
from collections.abc import Callable, Mapping
from typing import BinaryIO

import numpy as np

from edgebnn.errors import EdgebnnError

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


def _bytes(*args):
    """``bytes`` as Python 3 pickles an empty ``bytes`` at protocol 2: ``bytes()``; nothing that converts or
    allocates from a number or a codec name."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytes(args[0])
    raise pickle.UnpicklingError("builtins.bytes is only read as bytes() or bytes(b'...')")


def _bytearray(*args):
    """``bytearray`` as pickles spell it: ``bytearray()``, ``bytearray(b'...')``, protocol 2's
    ``bytearray('latin-1 text', 'latin-1')``; never ``bytearray(n)``, which fills n zero bytes at once."""
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin-1", "latin1"):
        return bytearray(args[0].encode("latin1"))
    raise pickle.UnpicklingError("builtins.bytearray is only read from bytes or latin-1 text")


# ------------------------------------------------------------------------------------------------- numpy
# numpy's own __setstate__ trusts its state: an object array whose list is shorter than its shape reads past the
# list (a segfault in numpy 1.26), and a dtype's state may set any flags. So numpy never sees a state from a file:
# the pickle builds the placeholders below, and _build_numpy turns them into arrays from checked dtypes and bytes.
_DTYPE_CODE = re.compile(r"[biufcSUV][0-9]{1,9}")


class _Unreadable(ValueError):
    """A numpy object this reader does not build (object arrays, datetimes): refused, not corrupt."""


class _NdarrayName:
    """``numpy.ndarray`` as ``_reconstruct``'s first argument; not callable, so no REDUCE or NEWOBJ builds one."""


_NDARRAY = _NdarrayName()


class _DtypeSpec:
    """``numpy.dtype(code, align, copy)`` and its ``BUILD`` state, kept as data until checked."""

    def __init__(self, code, align=False, copy=True):
        self.code, self.state = code, None

    def __setstate__(self, state):
        self.state = state


class _ArraySpec:
    """``_reconstruct(ndarray, (0,), b'b')`` followed by ``BUILD (version, shape, dtype, fortran, rawdata)``."""

    state = None

    def __setstate__(self, state):
        self.state = state


def _reconstruct(cls, shape, dtype):
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("numpy's _reconstruct is only read for numpy.ndarray")
    return _ArraySpec()


class _ScalarSpec:
    """``numpy.core.multiarray.scalar(dtype, bytes)``."""

    def __init__(self, dtype, data=None):
        self.dtype, self.data = dtype, data


class _BufferSpec:
    """Protocol 5's ``numpy.core.numeric._frombuffer(buffer, dtype, shape, order)``."""

    def __init__(self, buffer, dtype, shape, order):
        self.buffer, self.dtype, self.shape, self.order = buffer, dtype, shape, order


def _raw(data) -> bytes:
    if isinstance(data, str):  # Python 2's str under encoding="latin1"
        return data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)):
        raise _Unreadable(f"a numpy array's data is a {type(data).__name__}, not bytes (an object array?)")
    return bytes(data)


def _dtype(spec) -> np.dtype:
    """A numpy dtype from a checked code and state: numbers, bools, strings, structured and sub-array types."""
    if not isinstance(spec, _DtypeSpec):
        raise pickle.UnpicklingError("a numpy dtype is not numpy.dtype(...)")
    code = spec.code.decode("latin1") if isinstance(spec.code, bytes) else spec.code
    if not isinstance(code, str) or not _DTYPE_CODE.fullmatch(code):
        raise _Unreadable(f"numpy dtype {printable(code)!r} (objects, datetimes and the like are not read)")
    state = spec.state
    if state is None:
        return np.dtype(code)
    if not isinstance(state, tuple) or len(state) < 6:
        raise pickle.UnpicklingError("a numpy dtype's state is malformed")
    byteorder, subarray, names, fields, itemsize = state[1:6]
    if subarray is not None:
        base, shape = subarray
        return np.dtype((_dtype(base), _shape(shape)))
    if names is not None:
        columns = [(fields[n][0], fields[n][1]) for n in names]
        return np.dtype({"names": list(names), "formats": [_dtype(f) for f, _ in columns],
                         "offsets": [int(o) for _, o in columns], "itemsize": int(itemsize)})
    plain = np.dtype(code)
    return plain.newbyteorder(byteorder) if byteorder in ("<", ">") else plain


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(type(n) is int and n >= 0 for n in shape):
        raise pickle.UnpicklingError("a numpy shape is not a tuple of up to 32 sizes")
    return shape


def _native(array: np.ndarray) -> np.ndarray:
    """As numpy's ``__setstate__`` gives it: a simple dtype in the machine's byte order (protocol 5's
    ``_frombuffer`` keeps the saved order), writeable."""
    if array.dtype.names is None and array.dtype.subdtype is None and not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array.copy()


def _array(dtype: np.dtype, data, shape, fortran: bool, native: bool = True) -> np.ndarray:
    raw, shape = _raw(data), _shape(shape)
    if dtype.hasobject:
        raise _Unreadable("numpy arrays of Python objects")
    if len(raw) != dtype.itemsize * math.prod(shape):
        raise pickle.UnpicklingError(f"a numpy array's {len(raw)} bytes do not fill shape {shape} of {dtype}")
    array = np.frombuffer(raw, dtype).reshape(shape, order="F" if fortran else "C")
    return _native(array) if native else array.copy()


def _build_numpy(spec) -> object:
    """The numpy object a placeholder stands for."""
    if isinstance(spec, _DtypeSpec):
        return _dtype(spec)
    if isinstance(spec, _ScalarSpec):
        return _array(_dtype(spec.dtype), spec.data, (), False)[()]
    if isinstance(spec, _BufferSpec):
        if spec.order not in ("C", "F"):
            raise pickle.UnpicklingError("numpy's _frombuffer order is not C or F")
        return _array(_dtype(spec.dtype), spec.buffer, _shape(spec.shape), spec.order == "F", native=False)
    state = spec.state
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise pickle.UnpicklingError("a numpy array has no (shape, dtype, fortran, data) state")
    shape, dtype, fortran, data = state[-4:]
    return _array(_dtype(dtype), data, shape, bool(fortran))


_NUMPY_SPECS = (_DtypeSpec, _ArraySpec, _ScalarSpec, _BufferSpec)


def _materialise(obj, memo: dict[int, tuple[object, object]]) -> object:
    """``obj`` with every numpy placeholder built, in place in dicts and lists (whose identity the pickle may
    share), rebuilt in tuples and sets. ``memo`` maps id -> (original, result), keeping originals alive."""
    if id(obj) in memo:
        return memo[id(obj)][1]
    if isinstance(obj, _NUMPY_SPECS):
        value = _build_numpy(obj)
    elif isinstance(obj, (dict, list)):
        memo[id(obj)] = (obj, obj)
        items = obj.items() if isinstance(obj, dict) else enumerate(obj)
        for key, item in list(items):
            if (new := _materialise(item, memo)) is not item:
                obj[key] = new
        for key, item in list(getattr(obj, "__dict__", {}).items()):  # OrderedDict._metadata
            obj.__dict__[key] = _materialise(item, memo)
        value = obj
    elif isinstance(obj, (tuple, set, frozenset)):
        items = [_materialise(item, memo) for item in obj]
        value = obj if all(a is b for a, b in zip(items, obj, strict=True)) else type(obj)(items)
    else:
        return obj
    memo[id(obj)] = (obj, value)
    return value


BASE_GLOBALS: dict[str, object] = {
    "collections.OrderedDict": collections.OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.bytearray": _bytearray,
    "builtins.complex": complex,
    "builtins.bytes": _bytes,
    "_codecs.encode": _latin1_bytes,
    "numpy.ndarray": _NDARRAY,
    "numpy.dtype": _DtypeSpec,
    "numpy.core.multiarray._reconstruct": _reconstruct,
    "numpy._core.multiarray._reconstruct": _reconstruct,
    "numpy.core.multiarray.scalar": _ScalarSpec,
    "numpy._core.multiarray.scalar": _ScalarSpec,
    "numpy.core.numeric._frombuffer": _BufferSpec,
    "numpy._core.numeric._frombuffer": _BufferSpec,
}


def printable(value: object) -> str:
    """A value from a file as one short printable line: a hostile name may hold newlines or run on, and str() of
    a container the pickle made share itself may be enormous, so containers show as their type alone."""
    if isinstance(value, bytes):
        text = repr(value[:_NAME_LIMIT + 1])
    elif isinstance(value, int) and value.bit_length() > 256:
        text = f"<{value.bit_length()}-bit int>"
    elif value is None or isinstance(value, (str, int, float, complex)):
        text = str(value)
    else:
        text = f"<{type(value).__name__}>"
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
        self.builds_numpy = False  # whether a numpy name was looked up: placeholders to build after the load

    def find_class(self, module: str, name: str):
        key = (_PY2_MODULES.get(module, module), name)
        if key in self._allowed:
            self.builds_numpy = self.builds_numpy or key[0].startswith("numpy")
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
            if unpickler.builds_numpy:
                value = _materialise(value, {})
    except EdgebnnError:
        raise
    except _Unreadable as err:
        raise PickleRefused(f"{source}: refused to load: the pickle holds {err}; edgebnn only reads plain numeric "
                            "arrays") from None
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
