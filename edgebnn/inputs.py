"""Input files a user names: one check, written once, that a path is a regular file before anything reads it (a
folder, a missing path and a FIFO, socket or device each get their own line: a FIFO would block the read), and a
file's sha256, which every stage that records where its input came from uses.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edgebnn.errors import option_error


def regular_file(path: str | os.PathLike, what: str, *, if_folder: str, if_missing: str, if_other: str) -> Path:
    """``path`` when it is a regular file; else one line, "``what`` PATH is a folder: ``if_folder``" and so on. The
    hints may name a parameter as :class:`edgebnn.errors.OptionError` does (``drop {devices_file}``)."""
    p = Path(path)
    if p.is_dir():
        raise option_error("{what_} {path_} is a folder: " + if_folder, what_=what, path_=p)
    if not p.exists():
        raise option_error("{what_} {path_} does not exist: " + if_missing, what_=what, path_=p)
    if not p.is_file():
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
