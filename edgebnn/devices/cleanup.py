"""Finding and removing what an earlier run that was killed (SIGKILL, power loss) left behind.

A normal or interrupted run leaves nothing: :meth:`BoardSession.close` ends the benchmark's process group and
removes the work directory. A run killed outright leaves, on the board, its ``${TMPDIR:-/tmp}/edgebnn.*`` work
directory (the model, perhaps a benchmark still running until its ``timeout``) and, here, a
``edgebnn-ssh-*`` control folder whose SSH master lingers for ``ControlPersist`` seconds.

Only what is provably edgebnn's is touched. The board's listing is parsed strictly (:func:`parse_listing`): one
record per line, every field of the one form edgebnn writes, paths only under its work root, names only of
``mktemp``'s form, an ``owner`` file whose bytes can never start a line; a folder without one is not edgebnn's.
Here, a control folder without its ``owner`` file of one pid and a scratch folder without its marker
(:mod:`edgebnn.devices.scratch`) are left alone, however their names look.

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
import tempfile
from pathlib import Path

from edgebnn.devices.remote import OWNER_HOST, RUNS_FUNCTION, kill_script
from edgebnn.devices.scratch import clean_temp_folders
from edgebnn.devices.ssh import CONTROL_PREFIX, Connection, _tool
from edgebnn.errors import OptionError
from edgebnn.runlock import pid_alive

# What the board's listing may hold, field by field: anything else is not edgebnn's and is left alone.
WORK_NAME = re.compile(r"edgebnn\.[A-Za-z0-9_]{8}")  # mktemp -d .../edgebnn.XXXXXXXX (Python's mkdtemp: [a-z0-9_])
WORK_ROOT = re.compile(r"/[A-Za-z0-9_./\-]{0,255}")
OWNER = re.compile(r"(?P<host>[A-Za-z0-9._\-]{1,200})_(?P<pid>\d{1,10})_?")  # "<host> <pid>\n", each other byte _
SAFE_BYTES = "A-Za-z0-9._-"  # what the listing passes of an owner file: every other byte (a newline too) becomes _


def _list_script() -> str:
    """Lists the board's work folders: a line ``root|ROOT`` (``${TMPDIR:-/tmp}``), then a line ``dir|NAME|benchmark
    provably running (1/0)|age in seconds|owner`` per folder ROOT/edgebnn.* that is a real folder of this user's
    with an ``owner`` file; the owner's first 256 bytes with every byte but letters, digits and ``._-`` made ``_``, so
    that nothing in a file can start a line of its own."""

    return (f'{RUNS_FUNCTION}; now=$(date +%s); root="${{TMPDIR:-/tmp}}"; echo "root|$root"; '
            'for d in "$root"/edgebnn.*; do n="${d##*/}"; case "$n" in *[!A-Za-z0-9._]*) continue;; esac; '
            '[ -d "$d" ] && [ ! -L "$d" ] && [ -O "$d" ] && [ -f "$d/owner" ] && [ ! -L "$d/owner" ] || continue; '
            'alive=0; edgebnn_runs "$d" >/dev/null && alive=1; '
            f'owner=$(head -c 256 "$d/owner" 2>/dev/null | tr -c "{SAFE_BYTES}" "_"); '
            'echo "dir|$n|$alive|$(( now - $(stat -c %Y "$d" 2>/dev/null || echo "$now") ))|$owner"; done')


def _owner_gone(owner: str) -> bool:
    """Whether an ``owner`` (``host_pid`` as listed) names a process on this host that no longer runs."""

    match = OWNER.fullmatch(owner)
    return bool(match) and match["host"] == re.sub(f"[^{SAFE_BYTES}]", "_", OWNER_HOST) and \
        not pid_alive(int(match["pid"]))


def parse_listing(text: str) -> list[dict]:
    """The work folders of a listing (:func:`_list_script`), strictly: the first line names the work root, every
    other line is one folder whose every field has the one form edgebnn writes (a name of ``mktemp``'s form, 0 or
    1, a number of seconds, an owner of ``host_pid``); a line that does not is skipped, and so is a name seen
    twice. Paths are the root joined with a name: nothing outside the root is ever named."""
    lines = text.split("\n")  # LF only: splitlines() would also split at CR, \x1c-\x1e, \x85, U+2028
    head = lines[0].split("|") if lines else []
    if len(head) != 2 or head[0] != "root" or not WORK_ROOT.fullmatch(head[1]) or ".." in head[1].split("/"):
        return []
    root, out, seen = head[1].rstrip("/") or "", [], set()
    for line in lines[1:]:
        parts = line.split("|")
        if (len(parts) != 5 or parts[0] != "dir" or not WORK_NAME.fullmatch(parts[1]) or parts[2] not in ("0", "1")
                or not re.fullmatch(r"-?\d{1,12}", parts[3]) or not OWNER.fullmatch(parts[4]) or parts[1] in seen):
            continue
        seen.add(parts[1])
        out.append({"path": f"{root}/{parts[1]}", "running": parts[2] == "1", "age_s": int(parts[3]),
                    "owner": parts[4]})
    return out


def board_leftovers(conn, older_than_min: float, kill_running: bool) -> list[dict]:
    """The edgebnn work directories on the board of ``conn``, each with why it is kept or removed (``remove``)."""
    proc = conn.run(_list_script(), timeout=60, what="listing edgebnn work directories")
    out = []
    for found in parse_listing(proc.stdout):
        alive, age, owner = found["running"], found["age_s"], found["owner"]
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
        out.append({**found, "action": why, "remove": why.startswith("removed")})
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


CONTROL_NAME = re.compile(re.escape(CONTROL_PREFIX) + r"[a-z0-9_]{8}")  # tempfile.mkdtemp(prefix=CONTROL_PREFIX)


def _control_owner(folder: Path) -> int | None:
    """The pid in a control folder's ``owner`` file when the folder is provably edgebnn's: a real folder of this
    user's named as :func:`tempfile.mkdtemp` names it, holding a regular ``owner`` file of one pid and a newline
    (what :mod:`edgebnn.devices.ssh` writes); else None."""
    try:
        info, marker = folder.lstat(), (folder / "owner").lstat()
    except OSError:
        return None
    if not (CONTROL_NAME.fullmatch(folder.name) and stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and stat.S_ISREG(marker.st_mode) and marker.st_size <= 16):
        return None
    try:
        text = (folder / "owner").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if re.fullmatch(r"\d{1,10}\n", text) else None


def clean_local() -> list[dict]:
    """Remove this host's ``edgebnn-ssh-*`` control folders whose owner process is gone (ending their master) and
    the scratch folders of runs that are gone (:func:`clean_temp_folders`)."""

    out = clean_temp_folders()
    for folder in sorted(Path(tempfile.gettempdir()).glob(f"{CONTROL_PREFIX}*")):
        pid = _control_owner(folder)
        if pid is None:  # not made by edgebnn (or not yet marked): left alone
            continue
        if pid_alive(pid):
            out.append({"path": str(folder), "action": f"kept: edgebnn process {pid} still uses it", "remove": False})
            continue
        if (folder / "cm").exists():
            subprocess.run([_tool("ssh"), "-o", f"ControlPath={folder}/cm", "-O", "exit", "edgebnn-stale"],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
        shutil.rmtree(folder, ignore_errors=True)
        out.append({"path": str(folder), "action": "removed: its edgebnn process is gone (SSH master ended)",
                    "remove": True})
    return out
