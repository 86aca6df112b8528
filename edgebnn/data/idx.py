"""MNIST-format (IDX) files, read with numpy only: Fashion-MNIST, MNIST, KMNIST.

An IDX file is a 4-byte magic ``00 00 TT NN`` (``TT``: element type, 0x08 for unsigned bytes; ``NN``: number of
dimensions), ``NN`` big-endian uint32 sizes, then ``prod(sizes)`` elements, row-major; the data sets ship it
gzipped. Every count is checked before memory is asked for: a plain file must hold exactly ``4 + 4 NN +
prod(sizes)`` bytes; a gzip file's declared size must be within deflate's best ratio (1032:1) of the compressed
size and match the gzip trailer's length (mod 2**32), and no more than the declared bytes (plus one, to see
trailing data) are ever decompressed: a gzip bomb costs its header's declared size at most.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from edgebnn.errors import EdgebnnError

GZIP_MAGIC = b"\x1f\x8b"
UBYTE = 0x08
TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32",
              0x0E: "float64"}
DEFLATE_MAX_RATIO = 1032  # deflate's best compression (a long run of one byte): no stream expands more
MAX_BYTES = 2**31  # the most an IDX body may hold (2 GiB; EMNIST ByClass: 547 MB, Fashion-MNIST: 47 MB)
CHUNK = 1 << 20

# The four files of an MNIST-format folder: role -> (file stem, dimensions); each may end in .gz, and the stem's
# last dash may be a dot (train-images.idx3-ubyte, as some copies of MNIST name them).
FILES = {
    "train_images": ("train-images-idx3-ubyte", 3),
    "train_labels": ("train-labels-idx1-ubyte", 1),
    "test_images": ("t10k-images-idx3-ubyte", 3),
    "test_labels": ("t10k-labels-idx1-ubyte", 1),
}


def candidates(folder: Path, stem: str) -> list[Path]:
    """The names a file of ``FILES`` may have in ``folder``, in the order they are looked for."""
    dotted = stem[::-1].replace("-", ".", 1)[::-1]
    return [folder / f"{s}{ext}" for s in (stem, dotted) for ext in (".gz", "")]


def find_files(folder: Path, what: str) -> dict[str, Path]:
    """The four files of an MNIST-format folder, by role; a missing one is an error naming what is looked for."""
    out = {}
    for role, (stem, _) in FILES.items():
        path = next((p for p in candidates(folder, stem) if p.is_file()), None)
        if path is None:
            raise EdgebnnError(f"{what}: {folder} has no {stem}[.gz]; an MNIST-format folder holds "
                               f"{', '.join(s + '.gz' for s, _ in FILES.values())} (gzipped or not)")
        out[role] = path
    return out


def _open(path: Path, what: str):
    """A binary reader of ``path``'s IDX bytes (gunzipped when it starts with gzip's magic), the file itself, its
    size and, when gzipped, its trailer's length (else None)."""
    try:
        raw = path.open("rb")
        size = path.stat().st_size
        gzipped = raw.read(2) == GZIP_MAGIC
        trailer = _gzip_trailer_size(raw) if gzipped else None
        raw.seek(0)
    except OSError as err:
        raise EdgebnnError(f"{what}: cannot read {path} ({err.strerror or type(err).__name__})") from None
    return (gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw), raw, size, trailer


def _read_exactly(stream, n: int, path: Path, what: str, part: str) -> bytearray:
    """``n`` bytes of the (decompressed) stream, read in chunks into one buffer (asked for only once the header's
    counts have been checked against the file); fewer is a truncated file, more (for the data) a corrupt one."""
    buffer, got = bytearray(n), 0
    view = memoryview(buffer)
    try:
        while got < n:
            read = stream.readinto(view[got:got + CHUNK])
            if not read:
                break
            got += read
        extra = stream.read(1) if part == "data" and got == n else b""
    except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
        raise EdgebnnError(f"{what}: {path} is corrupt ({type(err).__name__}: {err}); download it again") from None
    if got < n:
        raise EdgebnnError(f"{what}: {path} is truncated: its {part} needs {n:,} bytes, the file holds {got:,}; "
                           "download it again")
    if extra:
        raise EdgebnnError(f"{what}: {path} holds more data than its header declares ({n:,} bytes); the file is "
                           "corrupt or not an IDX file")
    view.release()
    return buffer


def _gzip_trailer_size(raw) -> int | None:
    """ISIZE, the last 4 bytes of a gzip file: the uncompressed length mod 2**32 (of the last member)."""
    raw.seek(max(0, raw.seek(0, 2) - 4))
    tail = raw.read(4)
    return int.from_bytes(tail, "little") if len(tail) == 4 else None


def read(path: Path, ndim: int, what: str) -> np.ndarray:
    """The uint8 array of IDX file ``path`` (gzipped or plain), which must have ``ndim`` dimensions."""
    stream, raw, file_size, trailer = _open(path, what)
    gzipped = trailer is not None
    with raw, stream:
        if file_size < 4:
            raise EdgebnnError(f"{what}: {path} is truncated ({file_size} bytes, not even an IDX header)")
        magic = bytes(_read_exactly(stream, 4, path, what, "header"))
        if magic[:2] != b"\0\0":
            raise EdgebnnError(f"{what}: {path} is not an IDX file (magic {magic.hex()}, expected 0000{UBYTE:02x}"
                               f"{ndim:02x}); give the MNIST-format files")
        if magic[2] != UBYTE:
            name = TYPE_NAMES.get(magic[2], "an unknown type")
            raise EdgebnnError(f"{what}: {path} holds {name} elements (IDX type code 0x{magic[2]:02x}); images and "
                               f"labels must be unsigned bytes (0x{UBYTE:02x})")
        if magic[3] != ndim:
            raise EdgebnnError(f"{what}: {path} has {magic[3]} dimensions, expected {ndim} ("
                               f"{'labels: count' if ndim == 1 else 'images: count, rows, columns'})")
        dims = tuple(int(d) for d in np.frombuffer(_read_exactly(stream, 4 * ndim, path, what, "header"), ">u4"))
        n_bytes = int(np.prod(dims, dtype=object))
        header = 4 + 4 * ndim
        if n_bytes > MAX_BYTES:
            raise EdgebnnError(f"{what}: {path}'s header declares {' x '.join(map(str, dims))} = {n_bytes:,} bytes, "
                               f"over edgebnn's limit of {MAX_BYTES:,}; the file is corrupt")
        if not gzipped and file_size != header + n_bytes:
            state = "truncated" if file_size < header + n_bytes else "longer than its header declares"
            raise EdgebnnError(f"{what}: {path} is {state}: its header declares {' x '.join(map(str, dims))} = "
                               f"{n_bytes:,} bytes of data, the file holds {file_size - header:,}; download it again")
        if gzipped:
            if n_bytes + header > file_size * DEFLATE_MAX_RATIO:
                raise EdgebnnError(f"{what}: {path}'s header declares {n_bytes:,} bytes, more than its {file_size:,} "
                                   f"compressed bytes can hold (deflate expands at most {DEFLATE_MAX_RATIO}:1); "
                                   "the file is truncated or corrupt")
            if trailer != (n_bytes + header) % 2**32:
                raise EdgebnnError(f"{what}: {path}'s header declares {n_bytes + header:,} bytes in all, its gzip "
                                   f"trailer says {trailer:,}; the file is truncated or corrupt: download it again")
        body = _read_exactly(stream, n_bytes, path, what, "data")
    return np.frombuffer(body, np.uint8).reshape(dims)


def read_split(images_path: Path, labels_path: Path, what: str, num_classes: int | None) -> tuple[np.ndarray,
                                                                                                   np.ndarray]:
    """Images ``(N, rows, cols, 1)`` uint8 and labels ``(N,)`` int32 of one split, counts and labels checked:
    labels must be below ``num_classes`` (when given)."""
    labels = read(labels_path, 1, what)
    images = read(images_path, 3, what)
    if len(images) != len(labels):
        raise EdgebnnError(f"{what}: {images_path.name} holds {len(images):,} images but {labels_path.name} "
                           f"{len(labels):,} labels; the two files must come from the same split")
    if not len(labels):
        raise EdgebnnError(f"{what}: {labels_path} holds no labels; download the files again")
    if 0 in images.shape[1:]:
        raise EdgebnnError(f"{what}: {images_path} holds images of {images.shape[1]}x{images.shape[2]} pixels")
    if num_classes is not None and labels.size and int(labels.max()) >= num_classes:
        bad = int(np.flatnonzero(labels >= num_classes)[0])
        raise EdgebnnError(f"{what}: {labels_path} has label {int(labels[bad])} at index {bad:,}, outside the "
                           f"{num_classes} classes 0..{num_classes - 1}; the file is corrupt or not this data set")
    return images[..., None], labels.astype(np.int32)
