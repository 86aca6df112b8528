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
import subprocess
import tempfile
from pathlib import Path

from edgebnn.devices.remote import OWNER_HOST, RUNS_FUNCTION, kill_script
from edgebnn.devices.scratch import clean_temp_folders
from edgebnn.devices.ssh import CONTROL_PREFIX, Connection, _tool
from edgebnn.errors import OptionError
from edgebnn.runlock import pid_alive


def _list_script() -> str:
    """Lists the board's work folders: path|benchmark provably running (1/0)|age in seconds|owner."""

    return (f'{RUNS_FUNCTION}; now=$(date +%s); for d in "${{TMPDIR:-/tmp}}"/edgebnn.*; do '
            '[ -d "$d" ] && [ -O "$d" ] || continue; alive=0; edgebnn_runs "$d" >/dev/null && alive=1; '
            'owner=$(cat "$d/owner" 2>/dev/null | tr -s " " "_"); '
            'echo "$d|$alive|$(( now - $(stat -c %Y "$d" 2>/dev/null || echo "$now") ))|$owner"; done')


def _owner_gone(owner: str) -> bool:
    """Whether an ``owner`` of ``host_pid`` names a process on this host that no longer runs."""

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

    if older_than_min < 0:
        raise OptionError("{older_than_min} takes minutes of 0 or more")
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


def clean_local() -> list[dict]:
    """Remove this host's ``edgebnn-ssh-*`` control folders whose owner process is gone (ending their master) and
    the scratch folders of runs that are gone (:func:`clean_temp_folders`)."""

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
