"""Output locations checked before the long work starts, not after it.

Every command that writes (``train --out``, ``convert -o``, ``profile --db``, ``report --out``) checks where it
will write first: the place must not be something else (a file where a folder goes, a folder where a file
goes), and a file is really created and removed in the folder that will hold it, so a read-only folder, a full
or immutable one fails in a second with one line rather than after minutes of training or converting.

Existing outputs: a run folder is never overwritten (``train --out`` refuses a folder holding a run; it is continued
with ``--resume``); a file named with ``convert -o`` that exists is refused (remove it first), while the default
output beside the model is edgebnn's own and is replaced; ``profile --db`` adds to an existing database.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgebnn.errors import EdgebnnError


def _existing_ancestor(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists():
            return candidate
    return Path(".")


def probe_folder(folder: str | os.PathLike, what: str) -> None:
    """Create and remove a file in ``folder`` (or in its nearest existing ancestor when it is not made yet)."""
    folder = Path(folder).expanduser().absolute()
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise EdgebnnError(f"{what}: {base} is a file, not a folder; pick another location")
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".edgebnn-probe-"):
            pass
    except OSError as err:
        raise EdgebnnError(f"{what}: cannot write in {base} ({err.strerror}); pick a writable location") from None


def check_new_file(path: str | os.PathLike, what: str, force: bool = False, flag: str | None = "--force") -> Path:
    """A file output: not a folder, not an existing file unless ``force`` (``flag`` names the option that says so;
    None: there is none), in a folder that can be written."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise EdgebnnError(f"{what} {p} is a folder; give a file name")
    if p.exists() and not force:
        how = f"pass {flag} to replace it" if flag else "remove it first"
        raise EdgebnnError(f"{what} {p} already exists and is not overwritten: {how} or give another name")
    probe_folder(p.parent if str(p.parent) else Path("."), what)
    return p


def check_run_folder(path: str | os.PathLike, what: str = "--out") -> Path:
    """A new run folder: not a file, not an existing run (continued with --resume, never overwritten), writable."""
    from edgebnn import runs

    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise EdgebnnError(f"{what} {p} is a file; give a folder for the run")
    if runs.is_run_dir(p):
        raise EdgebnnError(f"{what} {p} already holds a run; resume it with --resume {p} or pick another {what}")
    probe_folder(p, what)
    return p
