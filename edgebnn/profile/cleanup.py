"""Finding and removing what an earlier run that was killed (SIGKILL, power loss) left behind.

A normal or interrupted run leaves nothing: :meth:`BoardSession.close` ends the benchmark's process group and
removes the work directory. A run killed outright leaves, on the board, its ``${TMPDIR:-/tmp}/edgebnn.*`` work
directory (the model, perhaps a benchmark still running until its ``timeout``) and, here, a
``edgebnn-ssh-*`` control folder whose SSH master lingers for ``ControlPersist`` seconds.

A board work directory is removed (its benchmark group killed first) when its owner (``owner``: host and pid
of the edgebnn process that made it) is this host and that process is gone, or when it is older than
``older_than_min`` minutes and no benchmark runs in it; with ``kill_running`` every one of the user's
directories goes. A local control folder goes when the process that wrote its ``owner`` is gone.

A benchmark is ended only when it is provably the one edgebnn started (``remote.RUNS_FUNCTION``: the pid file's
process has the start time recorded beside it, names the runner, works in that folder): a stale pid file whose
number now belongs to another process ends nothing.

Here, every scratch folder of a run (``edgebnn-KIND-pPID-*`` in the temp folder: ``qemu``, ``count``, ``out``)
names its process, and the emulator dies with it (``PR_SET_PDEATHSIG``): a run killed outright leaves its folders,
which the next one (any :func:`owned_tempdir`) and ``devices clean`` remove once that process is gone.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from edgebnn.errors import EdgebnnError
from edgebnn.runlock import pid_alive

TEMP_NAME = re.compile(r"edgebnn-([a-z]+)-p(\d+)-\w+")  # a run's scratch folder: kind and owner pid


def _list_script() -> str:
    """Lists the board's work folders: path|benchmark provably running (1/0)|age in seconds|owner."""
    from edgebnn.profile.remote import RUNS_FUNCTION

    return (f'{RUNS_FUNCTION}; now=$(date +%s); for d in "${{TMPDIR:-/tmp}}"/edgebnn.*; do '
            '[ -d "$d" ] && [ -O "$d" ] || continue; alive=0; edgebnn_runs "$d" >/dev/null && alive=1; '
            'owner=$(cat "$d/owner" 2>/dev/null | tr -s " " "_"); '
            'echo "$d|$alive|$(( now - $(stat -c %Y "$d" 2>/dev/null || echo "$now") ))|$owner"; done')


def _owner_gone(owner: str) -> bool:
    """Whether an ``owner`` of ``host_pid`` names a process on this host that no longer runs."""
    from edgebnn.profile.remote import OWNER_HOST

    host, _, pid = owner.rpartition("_")
    return host == OWNER_HOST.replace(" ", "_") and pid.isdigit() and not pid_alive(int(pid))


def board_leftovers(conn, older_than_min: float, kill_running: bool) -> list[dict]:
    """The edgebnn work directories on the board of ``conn``, each with why it is kept or removed (``remove``)."""
    proc = conn.run(_list_script(), timeout=60, what="listing edgebnn work directories")
    out = []
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not re.fullmatch(r"/[\w./\-]+", parts[0]) or not parts[2].lstrip("-").isdigit():
            continue
        path, alive, age, owner = parts[0], parts[1] == "1", int(parts[2]), parts[3]
        if kill_running:
            why = "removed (--kill-running)"
        elif _owner_gone(owner):
            why = "removed: the edgebnn process that made it is gone"
        elif alive:
            why = "kept: a benchmark runs in it (--kill-running ends it)"
        elif age >= older_than_min * 60:
            why = f"removed: no benchmark runs and it is {age // 60} min old"
        else:
            why = f"kept: {age // 60} min old, younger than --older-than {older_than_min:g} (a run may be using it)"
        out.append({"path": path, "running": alive, "age_s": age, "owner": owner, "action": why,
                    "remove": why.startswith("removed")})
    return out


def clean_board(device, older_than_min: float = 10, kill_running: bool = False, connect_timeout: int = 10) -> list:
    """Remove the stale work directories of ``device`` (ending their benchmarks first); what was found and done."""
    from edgebnn.profile.remote import kill_script
    from edgebnn.profile.ssh import Connection

    if older_than_min < 0:
        raise EdgebnnError("--older-than takes minutes of 0 or more")
    conn = Connection(device.ssh_target(), connect_timeout=connect_timeout)
    try:
        found = board_leftovers(conn, older_than_min, kill_running)
        doomed = [shlex.quote(f["path"]) for f in found if f["remove"]]
        if doomed:
            conn.run("; ".join(f"{kill_script(q)}; rm -rf -- {q}" for q in doomed), timeout=60 + 2 * len(doomed),
                     what="removing stale work directories")
    finally:
        conn.close()
    return found


def owned_tempdir(kind: str) -> tempfile.TemporaryDirectory:
    """A scratch folder ``edgebnn-KIND-pPID-*`` for this process (removed on exit as usual), after removing those
    of processes that are gone (a run killed outright cannot remove its own)."""
    clean_temp_folders()
    return tempfile.TemporaryDirectory(prefix=f"edgebnn-{kind}-p{os.getpid()}-")


def clean_temp_folders() -> list[dict]:
    """Remove this user's ``edgebnn-KIND-pPID-*`` scratch folders whose process is gone; what was found."""
    out = []
    for folder in sorted(Path(tempfile.gettempdir()).glob("edgebnn-*-p*-*")):
        match = TEMP_NAME.fullmatch(folder.name)
        try:
            info = folder.lstat()
        except OSError:
            continue
        if not match or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
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
    import ctypes
    import signal

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


def clean_local() -> list[dict]:
    """Remove this host's ``edgebnn-ssh-*`` control folders whose owner process is gone (ending their master) and
    the scratch folders of runs that are gone (:func:`clean_temp_folders`)."""
    from edgebnn.profile.ssh import CONTROL_PREFIX, _tool

    out = clean_temp_folders()
    for folder in sorted(Path(tempfile.gettempdir()).glob(f"{CONTROL_PREFIX}*")):
        if not folder.is_dir() or folder.stat().st_uid != os.getuid():
            continue
        try:
            pid = int((folder / "owner").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is not None and pid_alive(pid):
            out.append({"path": str(folder), "action": f"kept: edgebnn process {pid} still uses it", "remove": False})
            continue
        if (folder / "cm").exists():
            subprocess.run([_tool("ssh"), "-o", f"ControlPath={folder}/cm", "-O", "exit", "edgebnn-stale"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
        shutil.rmtree(folder, ignore_errors=True)
        out.append({"path": str(folder), "action": "removed: its edgebnn process is gone (SSH master ended)",
                    "remove": True})
    return out
