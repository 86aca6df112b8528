"""An imported model's run folder: ``model.keras`` and ``run.json`` as ``edgebnn train`` writes them, with status
"imported", no epochs, no accuracy measured here, and the source file's sha256 and reported accuracy.

The folder is written beside its destination under a fresh temporary name and renamed into place once complete, so
a crash leaves no half folder; a destination that is a symlink, a file or a non-empty folder is refused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from edgebnn import runs
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.outputs import check_name_length, probe_folder


def destination(name: str, out: str | os.PathLike | None, root: str = "runs") -> Path:
    """``out``, checked, or ``runs/<name>-<timestamp>`` (a numeric suffix when taken): its folder writable and its
    name not too long for the file system, before any model is built."""
    if out is not None:
        path = Path(out)
        check_name_length(path, "{out}")
        if path.is_symlink():
            raise OptionError("{out} {path} is a symlink; edgebnn writes run folders only at real paths", path=path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            what = "a run" if runs.is_run_dir(path) else "files" if path.is_dir() else "a file"
            raise OptionError("{out} {path} already holds {what}; pick a new folder", path=path, what=what)
        probe_folder(path.parent if str(path.parent) else Path("."), "{out}")
        return path
    probe_folder(root, "the runs folder")
    stem = Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = stem, 1
    while path.exists() or path.is_symlink():
        n += 1
        path = stem.with_name(f"{stem.name}-{n}")
    return path


def write(model, info: dict, out: Path) -> Path:
    """Write ``model.keras`` and ``run.json`` into a temporary folder beside ``out``, then rename it to ``out``."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".importing", dir=out.parent))
    except OSError as err:
        raise EdgebnnError(f"cannot write the run folder {out}: {err.strerror or err}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        model.save(tmp / runs.FINAL_MODEL)
        runs.write_info(tmp, {**info, "name": out.name})
        if out.is_symlink():
            raise EdgebnnError(f"{out} became a symlink while importing; nothing written there")
        os.rename(tmp, out)  # atomic; onto an empty folder too
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EdgebnnError(f"cannot write the run folder {out}: {err.strerror or err}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
