"""Output locations checked before the long work starts, not after it.

Every command that writes (``train --out``, ``convert -o``, ``profile --db``, ``report --out``) checks where it
will write first: the place must not be something else (a file where a folder goes, a folder where a file
goes), and a file is really created and removed in the folder that will hold it, so a read-only folder, a full
or immutable one fails in a second with one line rather than after minutes of training or converting; a name
over the file system's limit (``PC_NAME_MAX``) is refused the same way.

Every output file is written by ``write_atomic``: to a temporary file in its folder, then renamed onto its name, so
a link planted at the name is replaced, never followed, and a full disk leaves the old file or none, never part of
one.

Existing outputs: a run folder is never overwritten (``train --out`` refuses a folder holding a run; it is continued
with ``--resume``); a file named with ``convert -o`` that exists is refused (remove it first), while the default
output beside the model is edgebnn's own and is replaced; ``profile --db`` adds to an existing database.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

from edgebnn.errors import EdgebnnError, option_error


def _existing_ancestor(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        try:
            os.stat(candidate)
        except OSError:  # missing, or a name over the limit (ENAMETOOLONG): look further up
            continue
        return candidate
    return Path(".")


def probe_folder(folder: str | os.PathLike, what: str) -> None:
    """Create and remove a file in ``folder`` (or in its nearest existing ancestor when it is not made yet).

    ``what`` (here and below) names the output in messages: plain words, or a parameter in braces (``"{out}"``),
    which makes the error an :class:`~edgebnn.errors.OptionError` about that parameter."""
    folder = Path(folder).expanduser().absolute()
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise option_error(what + ": {base} is a file, not a folder; pick another location", base=base)
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".edgebnn-probe-"):
            pass
    except OSError as err:
        raise option_error(what + ": cannot write in {base} ({why}); pick a writable location", base=base,
                           why=err.strerror) from None


def check_new_file(path: str | os.PathLike, what: str, force: bool = False, flag: str | None = "{force}") -> Path:
    """A file output: not a folder, not an existing file unless ``force`` (``flag`` names the parameter that says so,
    in braces; None: there is none), in a folder that can be written."""
    p = Path(path).expanduser()
    check_name_length(p, what)
    if p.is_dir():
        raise option_error(what + " {p} is a folder; give a file name", p=p)
    if p.exists() and not force:
        how = f"pass {flag} to replace it" if flag else "remove it first"
        raise option_error(what + " {p} already exists and is not overwritten: " + how + " or give another name", p=p)
    probe_folder(p.parent if str(p.parent) else Path("."), what)
    return p





def check_name_length(path: str | os.PathLike, what: str) -> None:
    """Refuse a file name longer than its file system allows (``PC_NAME_MAX``, 255 bytes on most), before any work."""
    p = Path(path).expanduser()
    folder = _existing_ancestor(p.parent if str(p.parent) else Path("."))
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in p.parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise option_error(what + ": the name {part}... is {size} bytes, over the file system's limit of "
                               "{limit}; give a shorter name", part=part[:40], size=size, limit=limit)


def _write_error(what: str, path: Path, err: OSError) -> EdgebnnError:
    reason = err.strerror or err.__class__.__name__
    if err.errno == errno.ENOSPC:
        line = ": cannot write {path}: the disk is full (nothing was left behind); free space and run again"
    elif err.errno == errno.ENAMETOOLONG:
        line = ": cannot write {path}: the name is too long for the file system; give a shorter name"
    else:
        line = ": cannot write {path} ({reason}); pick a writable location"
    return option_error(what + line, path=path, reason=reason)


def write_atomic(path: str | os.PathLike, data: bytes | str, what: str = "output") -> Path:
    """Write ``data`` to a temporary file in ``path``'s folder, then rename it onto ``path``.

    The rename replaces whatever is at the final name (a symlink included) without following it, so a link planted
    at an output name never redirects the write; on any error the temporary file is removed, so the final name
    holds either the old file or the whole new one, never part of one. OS errors become one EdgebnnError line.
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else bytes(data)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name[:40]}.",
                                   suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; an output is as readable as any
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise _write_error(what, path, err) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


@contextlib.contextmanager
def staged_folder(out: str | os.PathLike, what: str = "output"):
    """Yield a scratch folder beside (or, when it exists, inside) the folder ``out``; when the block ends without an
    error, move every file written there into ``out``, else remove it and leave ``out`` as it was.

    The writes, which can fail on a full disk, all happen before anything reaches ``out``; what follows is renames in
    one file system, which need no space, each onto its final name (a link there is replaced, never followed). A new
    ``out`` appears whole, by one rename of the scratch folder."""
    out = Path(out)
    try:
        existed = out.is_dir()
        if not existed:
            out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out if existed else out.parent, prefix=f".{out.name[:40]}.",
                                        suffix=".staging"))
    except OSError as err:
        raise _write_error(what, out, err) from None
    try:
        yield staging
        try:
            os.chmod(staging, 0o777 & ~_UMASK)  # mkdtemp makes 0700; an output folder is as readable as any
            if not existed:
                os.rename(staging, out)
                return
            for item in sorted(staging.iterdir()):
                os.replace(item, out / item.name)
        except OSError as err:
            raise _write_error(what, out, err) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: changing it later could race with other threads' file creation
