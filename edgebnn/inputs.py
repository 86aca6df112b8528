"""Input files a user names: one check, written once, that a path is a regular file before anything reads it (a
folder, a missing path and a FIFO, socket or device each get their own line: a FIFO would block the read), and a
file's sha256, which every stage that records where its input came from uses; a bounded read of one, and the
check that an HDF5 file reads nothing outside itself.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

from edgebnn.errors import EdgebnnError, option_error, printable


def regular_file(path: str | os.PathLike, what: str, *, if_folder: str, if_missing: str, if_other: str) -> Path:
    """``path`` when it is a regular file; else one line, "``what`` PATH is a folder: ``if_folder``" and so on. The
    hints may name a parameter as :class:`edgebnn.errors.OptionError` does (``drop {devices_file}``)."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except OSError as err:  # missing, a dangling link, a loop, or a name over the limit (ENAMETOOLONG)
        if err.errno == errno.ENAMETOOLONG:
            raise option_error("{what_} {path_}... has a name longer than the file system allows: " + if_missing,
                               what_=what, path_=str(p)[:60]) from None
        if err.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise option_error("{what_} {path_}: cannot read it ({why})", what_=what, path_=p,
                               why=err.strerror or type(err).__name__) from None
        raise option_error("{what_} {path_} does not exist: " + if_missing, what_=what, path_=p) from None
    if stat.S_ISDIR(mode):
        raise option_error("{what_} {path_} is a folder: " + if_folder, what_=what, path_=p)
    if not stat.S_ISREG(mode):
        raise option_error("{what_} {path_} is not a regular file (a FIFO, socket or device): " + if_other,
                           what_=what, path_=p)
    return p


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_regular(path: str | os.PathLike, what: str, *, hint: str, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path``, read at most to the size it had when opened (and refused over
    ``limit`` bytes): a FIFO, socket or device (``/dev/zero``, or a symlink to it) is named as such before it is
    opened, and the open file is checked again (``O_NONBLOCK``: a FIFO swapped in meanwhile never blocks)."""
    p = regular_file(path, what, if_folder=hint, if_missing=hint, if_other=hint)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise option_error("{what_} {path_}: cannot read it ({why})", what_=what, path_=p,
                           why=err.strerror or type(err).__name__) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise option_error("{what_} {path_} is not a regular file (a FIFO, socket or device): " + hint,
                               what_=what, path_=p)
        if limit is not None and info.st_size > limit:
            raise option_error("{what_} {path_} is {size} bytes, more than the {limit} edgebnn reads: " + hint,
                               what_=what, path_=p, size=info.st_size, limit=limit)
        try:
            return f.read(info.st_size)
        except OSError as err:
            raise option_error("{what_} {path_}: cannot read it ({why})", what_=what, path_=p,
                               why=err.strerror or type(err).__name__) from None


H5_MAX_OBJECTS = 100_000  # groups and datasets walked in one file; a Keras weight file of ResNet-50 holds ~1,000
H5_DATA_KINDS = "biuf"  # booleans, integers, floats: what weights are; strings, references, compounds are refused


def check_hdf5(f, source: str, limit_bytes: int) -> None:
    """Refuse an open ``h5py.File`` before any of its data is read when reading it could reach outside it or past
    ``limit_bytes`` (the file's own size: raw data cannot be larger uncompressed): an external or soft link (only
    hard links are walked), a dataset whose raw data is stored in another file (``dset.external``: ``/etc/passwd``
    read as weights) or mapped from others (a virtual dataset), a dataset of other than numbers, or datasets
    declaring more than ``limit_bytes`` in all (a 1 MB file declaring 40000x40000 float32 reads as 6.4 GB)."""
    import h5py  # lazy: h5py is needed only for HDF5 files

    def refuse(why: str):
        raise EdgebnnError(f"{source}: {why}; edgebnn reads only HDF5 data held in the file itself")

    seen, total, stack = set(), 0, [(f, "")]
    while stack:
        group, prefix = stack.pop()
        for name in group:  # names only: no data is read
            where = printable(f"{prefix}/{name}")
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                refuse(f"{where} is an external link (to {printable(link.filename)})")
            if not isinstance(link, h5py.HardLink):
                refuse(f"{where} is a soft link")
            obj = group[name]
            key = (obj.id.fileno, h5py.h5o.get_info(obj.id).addr)
            if key in seen:
                continue
            seen.add(key)
            if len(seen) > H5_MAX_OBJECTS:
                refuse(f"more than {H5_MAX_OBJECTS} objects")
            if isinstance(obj, h5py.Group):
                stack.append((obj, f"{prefix}/{name}"))
            elif isinstance(obj, h5py.Dataset):
                if obj.external:
                    refuse(f"dataset {where} keeps its data in another file ({printable(obj.external[0][0])})")
                if obj.is_virtual:
                    refuse(f"dataset {where} is virtual (its data maps other files)")
                if obj.dtype.kind not in H5_DATA_KINDS:
                    refuse(f"dataset {where} holds {obj.dtype} data, not numbers")
                total += int(obj.size or 0) * obj.dtype.itemsize
                if total > limit_bytes:
                    refuse(f"its datasets declare more than {limit_bytes} bytes, the file's size (dataset {where}: "
                           f"shape {obj.shape})")
