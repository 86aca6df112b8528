"""A run's own scratch folders and child processes, which end with it however it ends.

Every scratch folder of a run (``edgebnn-KIND-pPID-*`` in the temp folder: ``qemu``, ``count``, ``out``, ``verify``,
``budget``) names its process, and an emulator or runner it starts dies with it (``PR_SET_PDEATHSIG``): a run
killed outright leaves only its folders, which the next run (any :func:`owned_tempdir`) and ``devices clean``
remove once that process is gone.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
from pathlib import Path

from edgebnn.runlock import pid_alive

TEMP_NAME = re.compile(r"edgebnn-([a-z]+)-p(\d{1,10})-[a-z0-9_]{8}")  # a run's scratch folder: kind and owner pid


MARKER = ".edgebnn-scratch"  # in each scratch folder: "<folder name>\n", written by the process that made it


def owned_tempdir(kind: str) -> tempfile.TemporaryDirectory:
    """A scratch folder ``edgebnn-KIND-pPID-*`` for this process (removed on exit as usual), marked as edgebnn's
    (:data:`MARKER`), after removing those of processes that are gone (a run killed outright cannot remove its
    own)."""
    clean_temp_folders()
    folder = tempfile.TemporaryDirectory(prefix=f"edgebnn-{kind}-p{os.getpid()}-")
    mark(Path(folder.name))
    return folder


def mark(folder: Path) -> None:
    """Write ``folder``'s ownership marker: its own name, which :func:`is_marked` expects."""
    (folder / MARKER).write_text(folder.name + "\n", encoding="ascii")


def is_marked(folder: Path) -> bool:
    """Whether ``folder`` holds the marker :func:`mark` writes: a regular file (not a link) naming this folder."""
    marker = folder / MARKER
    try:
        info = marker.lstat()
        return (stat.S_ISREG(info.st_mode) and info.st_size <= 256
                and marker.read_text(encoding="ascii") == folder.name + "\n")
    except (OSError, UnicodeDecodeError):
        return False


def clean_temp_folders() -> list[dict]:
    """Remove this user's ``edgebnn-KIND-pPID-*`` scratch folders whose process is gone and that edgebnn provably
    made (:func:`is_marked`); what was found. A user's folder that merely has such a name is not touched."""
    out = []
    for folder in sorted(Path(tempfile.gettempdir()).glob("edgebnn-*-p*-*")):
        match = TEMP_NAME.fullmatch(folder.name)
        try:
            info = folder.lstat()
        except OSError:
            continue
        if not match or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or not is_marked(folder):
            continue  # not edgebnn's, however its name looks (or not marked yet: being made right now)
        pid = int(match.group(2))
        if pid_alive(pid):
            out.append({"path": str(folder), "action": f"kept: edgebnn process {pid} still uses it", "remove": False})
            continue
        shutil.rmtree(folder, ignore_errors=True)
        out.append({"path": str(folder), "action": f"removed: the edgebnn process that made it ({pid}) is gone",
                    "remove": True})
    return out


def die_with_parent():
    """A ``preexec_fn`` for ``subprocess`` that makes the child get SIGKILL when this process dies, however
    (Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``); None elsewhere. The signal follows the thread that started the
    child, so the caller must wait for it in that thread (``subprocess.run`` does)."""
    if not sys.platform.startswith("linux"):
        return None

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    parent = os.getpid()

    def arm():  # runs in the child between fork and exec: nothing here may import or allocate much
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return arm
