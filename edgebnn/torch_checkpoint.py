"""PyTorch checkpoints (``.pth``, ``.pth.tar``) read as numpy arrays, without PyTorch and without running code.

``torch.save`` writes one of two containers, both pickles whose tensors point at raw storages:

- zip (PyTorch >= 1.6): ``<archive>/data.pkl`` plus one record ``<archive>/data/<key>`` of raw bytes per storage
  (little-endian unless ``<archive>/byteorder`` says ``big``). Persistent id:
  ``('storage', storage_type, key, location, numel)``.
- legacy (``_use_new_zipfile_serialization=False``, and PyTorch < 1.6): a stream of pickles, the magic number
  ``0x1950a86a20f9469cfc6c``, the protocol version 1001, a sys_info dict, the object (persistent id
  ``('storage', storage_type, root_key, location, numel, view_metadata)``), the list of storage keys, then per
  key an 8-byte little-endian element count and the little-endian bytes.

A tensor is ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
backward_hooks[, metadata])``: element ``(i0, i1, ...)`` is ``storage[storage_offset + sum(i_k * stride_k)]``. The
pickle goes through :mod:`edgebnn.safe_pickle` with PyTorch's rebuild functions mapped to this module's own, which
only record the storage, offset, size and stride (:class:`_TensorRef`); the arrays of the state dict are then cut
from the storages with bounds-checked strides and copied. Only the storages the state dict and the top-level 0-d
tensors use are read (an optimizer's are skipped, in the legacy stream by their counts, each checked against the
file's size); a zip record is CRC-32 checked; the arrays may take at most 4x the file's bytes (stride 0 repeats
an element without bound). Every failure is one line. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebnn import safe_pickle
from edgebnn.errors import EdgebnnError
from edgebnn.inputs import read_regular

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# The arrays read may take this many times the file's bytes (at least 256 MiB): a zero stride repeats a stored
# element without bound, so a small file could otherwise ask for any amount of memory.
MEMORY_PER_FILE_BYTE = 4
NOT_A_CHECKPOINT = "not a PyTorch checkpoint (neither a zip archive with data.pkl nor the legacy format)"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's tensors by their saved names, its top-level scalars, its container and its file's SHA-256."""

    state: dict[str, np.ndarray]
    meta: dict
    container: str  # "zip" | "legacy"
    sha256: str


# ------------------------------------------------------------------------------------------ element types
@dataclass(frozen=True)
class _Element:
    """A PyTorch element type: the numpy dtype of its stored bytes (little-endian) and of the array it gives."""

    name: str
    stored: str
    result: str

    def convert(self, raw: np.ndarray) -> np.ndarray:
        if self.name == "bool":
            return raw != 0  # any non-zero byte is True, as in PyTorch; numpy's bool wants 0 or 1
        if self.name == "bfloat16":  # the top 16 bits of a float32: exact
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(self.result, copy=False)


_ELEMENTS = {e.name: e for e in [
    _Element("float64", "<f8", "=f8"), _Element("float32", "<f4", "=f4"), _Element("float16", "<f2", "=f2"),
    _Element("bfloat16", "<u2", "=f4"), _Element("int64", "<i8", "=i8"), _Element("int32", "<i4", "=i4"),
    _Element("int16", "<i2", "=i2"), _Element("int8", "i1", "i1"), _Element("uint8", "u1", "u1"),
    _Element("uint16", "<u2", "=u2"), _Element("uint32", "<u4", "=u4"), _Element("uint64", "<u8", "=u8"),
    _Element("bool", "u1", "?"), _Element("complex64", "<c8", "=c8"), _Element("complex128", "<c16", "=c16"),
]}
_STORAGE_NAMES = {"Double": "float64", "Float": "float32", "Half": "float16", "BFloat16": "bfloat16",
                  "Long": "int64", "Int": "int32", "Short": "int16", "Char": "int8", "Byte": "uint8", "Bool": "bool",
                  "ComplexFloat": "complex64", "ComplexDouble": "complex128"}
_DTYPE_ALIASES = {"double": "float64", "float": "float32", "half": "float16", "long": "int64", "int": "int32",
                  "short": "int16", "cfloat": "complex64", "cdouble": "complex128"}


@dataclass(frozen=True)
class _StorageType:
    """``torch.FloatStorage`` and kin as a pickle names them; ``torch.UntypedStorage`` holds bytes."""

    element: _Element


@dataclass(frozen=True)
class _Dtype:
    """``torch.float32`` and kin, as ``_rebuild_tensor_v3`` passes them."""

    element: _Element


@dataclass(frozen=True)
class _Storage:
    """A typed view of one stored byte record: ``numel`` elements from element ``offset`` (legacy views)."""

    key: str
    element: _Element
    numel: int
    offset: int = 0


@dataclass(frozen=True)
class _TensorRef:
    """A tensor as the pickle describes it; its array is cut from the storage after the pickle is read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _Marker:
    """``torch.Tensor`` / ``torch.nn.Parameter`` as ``_rebuild_from_type_v2`` names a tensor's class."""


# ------------------------------------------------------------------------------------- rebuild functions
def _ints(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int for v in value):
        raise ValueError(f"a tensor's {what} is not a tuple of integers")
    return tuple(value)


def _tensor(storage, storage_offset, size, stride, element: _Element | None = None) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise ValueError("a tensor's storage is not a storage record")
    if type(storage_offset) is not int:
        raise ValueError("a tensor's storage offset is not an integer")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise ValueError(f"a tensor has {len(size)} sizes but {len(stride)} strides")
    if element is not None and element != storage.element:  # v3: untyped bytes seen as the tensor's dtype
        if storage.offset:
            raise ValueError("a tensor re-types a storage view")
        nbytes = storage.numel * np.dtype(storage.element.stored).itemsize
        storage = _Storage(storage.key, element, nbytes // np.dtype(element.stored).itemsize)
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    if not isinstance(dtype, _Dtype):
        raise ValueError("a tensor's dtype is not a PyTorch dtype")
    return _tensor(storage, storage_offset, size, stride, dtype.element)


def _rebuild_parameter(data, requires_grad=True, backward_hooks=None, state=None):
    if not isinstance(data, _TensorRef):
        raise ValueError("an nn.Parameter holds no tensor")
    return data


_REBUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)
_TENSOR_CLASS, _PARAMETER_CLASS = _Marker(), _Marker()


def _rebuild_from_type_v2(func, new_type, args, state):
    """A tensor with Python attributes: ``func(*args)``, its class and attributes dropped."""
    known = any(func is f for f in _REBUILDERS) and (new_type is _TENSOR_CLASS or new_type is _PARAMETER_CLASS)
    if not known or not isinstance(args, tuple):
        raise ValueError("a tensor subclass is rebuilt by a function edgebnn does not read")
    return func(*args)


def _torch_globals() -> dict[str, object]:
    table: dict[str, object] = {
        "torch._utils._rebuild_tensor": _rebuild_tensor,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
        "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
        "torch._tensor.Tensor": _TENSOR_CLASS, "torch.Tensor": _TENSOR_CLASS,
        "torch.nn.parameter.Parameter": _PARAMETER_CLASS,
        "torch.Size": tuple,
    }
    for prefix in ("torch.", "torch.cuda."):
        for kind, name in _STORAGE_NAMES.items():
            table[f"{prefix}{kind}Storage"] = _StorageType(_ELEMENTS[name])
    for name in ("torch.UntypedStorage", "torch.storage.UntypedStorage", "torch.storage._UntypedStorage"):
        table[name] = _StorageType(_ELEMENTS["uint8"])
    for name, element in _ELEMENTS.items():
        table[f"torch.{name}"] = _Dtype(element)
    for alias, name in _DTYPE_ALIASES.items():
        table[f"torch.{alias}"] = _Dtype(_ELEMENTS[name])
    return table


TORCH_GLOBALS = _torch_globals()


# ------------------------------------------------------------------------------------------- storages
class _Storages:
    """Persistent ids to :class:`_Storage` records, one per key; a key seen with two element types keeps both."""

    def __init__(self, source: str, legacy: bool):
        self.source = source
        self.legacy = legacy
        self.first_element: dict[str, _Element] = {}

    def __call__(self, pid) -> _Storage:
        fields = 6 if self.legacy else 5
        if not isinstance(pid, tuple) or len(pid) != fields or not (isinstance(pid[0], str) and pid[0] == "storage"):
            raise EdgebnnError(f"{self.source}: a persistent id is not a {fields}-field storage record; the file is "
                               "corrupt or not a PyTorch checkpoint")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or type(numel) is not int \
                or numel < 0:
            raise EdgebnnError(f"{self.source}: storage record {safe_pickle.printable(key)} is malformed")
        self.first_element.setdefault(key, storage_type.element)
        view = pid[5] if self.legacy else None
        if view is None:
            return _Storage(key, storage_type.element, numel)
        if not (isinstance(view, tuple) and len(view) == 3 and all(type(v) is int and v >= 0 for v in view[1:])):
            raise EdgebnnError(f"{self.source}: storage view {safe_pickle.printable(key)} is malformed")
        return _Storage(key, storage_type.element, view[2], offset=view[1])


def _cut(ref: _TensorRef, raw: memoryview | bytes, byteorder: str, source: str, name: str) -> np.ndarray:
    """The tensor's elements, bounds-checked against its storage and copied into a C-contiguous array."""
    storage, element = ref.storage, ref.storage.element
    stored = np.dtype(element.stored).newbyteorder(byteorder) if byteorder == ">" else np.dtype(element.stored)
    available = len(raw) // stored.itemsize
    if storage.offset + storage.numel > available:
        raise EdgebnnError(f"{source}: storage {safe_pickle.printable(storage.key)} holds {available} "
                           f"{element.name} elements but the checkpoint says {storage.offset + storage.numel} "
                           f"(tensor {safe_pickle.printable(name)}); the file is truncated or corrupt")
    if any(n < 0 for n in ref.size) or any(s < 0 for s in ref.stride) or ref.offset < 0:
        raise EdgebnnError(f"{source}: tensor {safe_pickle.printable(name)} has a negative size, stride or offset")
    if len(ref.size) > 32:
        raise EdgebnnError(f"{source}: tensor {safe_pickle.printable(name)} has {len(ref.size)} dimensions, more "
                           "than the 32 numpy holds; the file is corrupt")
    if 0 in ref.size:
        return element.convert(np.zeros(ref.size, stored))
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= storage.numel:
        raise EdgebnnError(f"{source}: tensor {safe_pickle.printable(name)} (size {list(ref.size)}, stride "
                           f"{list(ref.stride)}, offset {ref.offset}) reaches element {last} of a storage of "
                           f"{storage.numel}; the file is corrupt")
    flat = np.frombuffer(raw, stored, count=storage.numel, offset=storage.offset * stored.itemsize)
    if not ref.size:  # as_strided takes shape () for "keep the input's shape"
        view = flat[ref.offset:ref.offset + 1].reshape(())
    else:
        view = np.lib.stride_tricks.as_strided(flat[ref.offset:], shape=ref.size,
                                               strides=[s * stored.itemsize for s in ref.stride], writeable=False)
    return element.convert(np.array(view, order="C"))


# ------------------------------------------------------------------------------------------ structure
def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, _TensorRef) for k, v in obj.items())


def _split(top, source: str) -> tuple[dict, dict]:
    """(name -> tensor ref, top-level scalars) of the unpickled object."""
    if isinstance(top, dict) and isinstance(top.get("state_dict"), dict):
        state = top["state_dict"]
        bad = next((k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, _TensorRef)), None)
        if bad is not None:
            raise EdgebnnError(f"{source}: state_dict entry {safe_pickle.printable(bad)} is not a named tensor")
        return state, _meta(top)
    if _is_state_dict(top):
        return top, {}
    keys = ", ".join(safe_pickle.printable(k) for k in list(top)[:8]) if isinstance(top, dict) else ""
    raise EdgebnnError(f"{source}: holds no state_dict and is not a mapping of names to tensors "
                       f"({type(top).__name__}{': ' + keys if keys else ''})")


def _meta(top: dict) -> dict:
    """Top-level scalars (epoch, best_top1_acc, arch...); a 0-d tensor is kept as its number (read later)."""
    meta = {}
    for key, value in top.items():
        if not isinstance(key, str) or key in ("state_dict", "optimizer"):
            continue
        if value is None or isinstance(value, (bool, int, float, str)):
            meta[key] = value
        elif isinstance(value, (np.number, np.bool_)):
            meta[key] = value.item()
        elif isinstance(value, _TensorRef) and value.size == ():
            meta[key] = value
    return meta


def _check_memory(state: dict, file_size: int, source: str) -> None:
    """Refuses a state dict whose arrays would take more than MEMORY_PER_FILE_BYTE x the file (an empty tensor
    counts its non-zero sides, which numpy too must be able to multiply)."""
    need = sum(math.prod(max(n, 1) for n in ref.size) * np.dtype(ref.storage.element.result).itemsize
               for ref in state.values())
    allowed = max(MEMORY_PER_FILE_BYTE * file_size, 1 << 28)
    if need > allowed:
        raise EdgebnnError(f"{source}: the state dict's tensors would take up to {need} bytes, more than {allowed} "
                           f"({MEMORY_PER_FILE_BYTE}x the file); the file is corrupt")


def _resolve(state: dict, meta: dict, raw_of, byteorder: str, source: str) -> tuple[dict, dict]:
    """Arrays for the state dict and numbers for 0-d tensors in meta; ``raw_of(key)`` gives a storage's bytes."""
    arrays = {name: _cut(ref, raw_of(ref.storage.key), byteorder, source, name) for name, ref in state.items()}
    numbers = {k: _cut(v, raw_of(v.storage.key), byteorder, source, k).item() if isinstance(v, _TensorRef) else v
               for k, v in meta.items()}
    return arrays, numbers


def _needed_keys(state: dict, meta: dict) -> set[str]:
    refs = [*state.values(), *(v for v in meta.values() if isinstance(v, _TensorRef))]
    return {ref.storage.key for ref in refs}


# ---------------------------------------------------------------------------------------------- zip
def _read_zip(data: bytes, source: str) -> tuple[dict, dict]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise EdgebnnError(f"{source}: the zip archive is truncated or corrupt ({type(err).__name__}); copy or "
                           "download the checkpoint again") from None
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise EdgebnnError(f"{source}: {NOT_A_CHECKPOINT}: the zip archive holds {len(pickles)} <archive>/data.pkl")
    prefix = pickles[0][: -len("data.pkl")]
    byteorder = "<"
    if f"{prefix}byteorder" in names:
        byteorder = ">" if bytes(_member(archive, f"{prefix}byteorder", source, data)).strip() == b"big" else "<"
    storages = _Storages(source, legacy=False)
    top = safe_pickle.loads(bytes(_member(archive, pickles[0], source, data)), source=source, encoding="utf-8",
                            extra=TORCH_GLOBALS, persistent_load=storages)
    state, meta = _split(top, source)
    _check_memory(state, len(data), source)
    cache: dict[str, bytes | memoryview] = {}

    def raw_of(key: str) -> bytes | memoryview:
        if key not in cache:
            record = f"{prefix}data/{key}"
            if record not in names:
                raise EdgebnnError(f"{source}: storage record {safe_pickle.printable(record)} is missing from the "
                                   "zip archive; the file is truncated or corrupt")
            cache[key] = _member(archive, record, source, data)
        return cache[key]

    return _resolve(state, meta, raw_of, byteorder, source)


def _member(archive: zipfile.ZipFile, name: str, source: str, data: bytes) -> bytes | memoryview:
    """One record's bytes. PyTorch stores records uncompressed: those are sliced from the file in place (after
    the local header, CRC-32 checked); a compressed one is unpacked only if it claims at most 16x the file."""
    info = archive.getinfo(name)
    if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
        return _stored(info, source, data)
    if info.file_size > 16 * max(len(data), 1 << 20):
        raise EdgebnnError(f"{source}: record {safe_pickle.printable(name)} unpacks to {info.file_size} bytes, far "
                           "more than the file holds; it is corrupt or a zip bomb")
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as err:
        raise EdgebnnError(f"{source}: record {safe_pickle.printable(name)} of the zip archive cannot be read "
                           f"({type(err).__name__}); the file is truncated or corrupt") from None


def _stored(info: zipfile.ZipInfo, source: str, data: bytes) -> memoryview:
    """An uncompressed record's bytes: local header (30 bytes, then name and extra field), then the data."""
    head = info.header_offset
    if head + 30 > len(data) or data[head:head + 4] != b"PK\x03\x04":
        raise EdgebnnError(f"{source}: record {safe_pickle.printable(info.filename)} has no local header where the "
                           "zip directory says; the file is corrupt")
    name_len, extra_len = int.from_bytes(data[head + 26:head + 28], "little"), int.from_bytes(
        data[head + 28:head + 30], "little")
    start = head + 30 + name_len + extra_len
    end = start + info.compress_size
    body = memoryview(data)[start:end]
    if end > len(data) or zlib.crc32(body) != info.CRC:
        raise EdgebnnError(f"{source}: record {safe_pickle.printable(info.filename)} fails its CRC-32 check; the "
                           "file is truncated or corrupt: copy or download it again")
    return body


# ------------------------------------------------------------------------------------------- legacy
def _is_legacy(data: bytes, source: str) -> bool:
    if not data.startswith(b"\x80"):
        return False
    try:
        return safe_pickle.load(io.BytesIO(data), source=source) == LEGACY_MAGIC
    except safe_pickle.PickleCorrupt:
        return False


def _read_legacy(data: bytes, source: str) -> tuple[dict, dict]:
    stream = io.BytesIO(data)
    safe_pickle.load(stream, source=source)  # the magic number, checked by _is_legacy
    version = safe_pickle.load(stream, source=source)
    if version != LEGACY_PROTOCOL:
        raise EdgebnnError(f"{source}: legacy PyTorch protocol version {safe_pickle.printable(version)}, not "
                           f"{LEGACY_PROTOCOL}; edgebnn reads only that one")
    safe_pickle.load(stream, source=source, encoding="latin1")  # sys_info: the data itself is always little-endian
    storages = _Storages(source, legacy=True)
    top = safe_pickle.load(stream, source=source, encoding="latin1", extra=TORCH_GLOBALS, persistent_load=storages)
    keys = safe_pickle.load(stream, source=source, encoding="latin1")
    if not isinstance(keys, list) or not all(isinstance(k, str) and k in storages.first_element for k in keys):
        raise EdgebnnError(f"{source}: the legacy storage key list does not match the storages the tensors use; "
                           "the file is corrupt")
    state, meta = _split(top, source)
    _check_memory(state, len(data), source)
    raws = _legacy_storages(data, stream.tell(), keys, storages.first_element, _needed_keys(state, meta), source)

    def raw_of(key: str) -> memoryview:
        if key not in raws:
            raise EdgebnnError(f"{source}: storage {safe_pickle.printable(key)} is used but not stored; the file is "
                               "corrupt")
        return raws[key]

    return _resolve(state, meta, raw_of, "<", source)


def _legacy_storages(data: bytes, pos: int, keys: list[str], elements: dict[str, _Element], needed: set[str],
                     source: str) -> dict[str, memoryview]:
    """Each key's bytes, in the key list's order: an 8-byte little-endian element count, then the elements."""
    view, raws = memoryview(data), {}
    for key in keys:
        itemsize = np.dtype(elements[key].stored).itemsize
        if pos + 8 > len(data):
            raise EdgebnnError(f"{source}: the file ends before storage {safe_pickle.printable(key)}'s size; it is "
                               "truncated: copy or download the checkpoint again")
        count = int.from_bytes(data[pos:pos + 8], "little")
        end = pos + 8 + count * itemsize
        if end > len(data):
            raise EdgebnnError(f"{source}: storage {safe_pickle.printable(key)} says {count} elements "
                               f"({count * itemsize} bytes) but the file has {len(data) - pos - 8} left; it is "
                               "truncated: copy or download the checkpoint again")
        if key in needed:
            raws[key] = view[pos + 8:end]
        pos = end
    return raws


# ------------------------------------------------------------------------------------------------ read
FILE_LIMIT = 1 << 31  # bytes of a checkpoint file read into memory: the largest official one (ReActNet-A with its
# optimizer state) is a few hundred MB; a sparse file of terabytes would otherwise be read whole


def read(path: str | Path, data: bytes | None = None) -> Checkpoint:
    """The checkpoint at ``path`` (``data``: its bytes, when read already): ``state`` is its ``state_dict`` entry
    (else the file's own mapping of names to tensors), keys as saved; ``meta`` its other top-level scalars; the
    ``optimizer`` entry is parsed, not kept. The file is read once, no further than its size (a FIFO or device is
    named as such, never opened)."""
    path = Path(path)
    source = str(path)
    if data is None:
        data = read_regular(path, "checkpoint", hint="give the checkpoint file itself (.pth.tar, .pth)",
                            limit=FILE_LIMIT)
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        if data.startswith(b"PK\x03\x04") or zipfile.is_zipfile(io.BytesIO(data)):
            state, meta = _read_zip(data, source)
            container = "zip"
        elif _is_legacy(data, source):
            state, meta = _read_legacy(data, source)
            container = "legacy"
        else:
            raise EdgebnnError(f"{source}: {NOT_A_CHECKPOINT}")
    except safe_pickle.PickleCorrupt as err:
        raise EdgebnnError(f"{source}: a pickle in the checkpoint cannot be read ({err.reason}); the file is "
                           "truncated or corrupt: copy or download it again") from None
    return Checkpoint(state=state, meta=meta, container=container, sha256=sha256)
