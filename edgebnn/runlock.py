"""A run folder's lock: one training process at a time writes a run.

``run.lock`` holds the pid, host and start time of the process training the run. Taking the lock of a run
whose lock names a live process refuses with one line (``--resume`` of a run that is still running); a lock
left by a process that is gone (same host, pid not running) is stale and taken over. A lock from another host
cannot be checked from here: the message says how to remove it when that run is known to be dead.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from edgebnn.errors import EdgebnnError, OptionError

LOCK = "run.lock"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(path: Path) -> dict | None:
    try:
        held = json.loads(path.read_text())
        return held if isinstance(held, dict) and isinstance(held.get("pid"), int) else None
    except (OSError, ValueError):
        return None


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir/run.lock`` for the block (see the module docstring)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK
        self.held = False

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._refuse_or_clear()
                continue
            except OSError as err:
                raise EdgebnnError(f"cannot write {self.path} ({err.strerror}): the run folder must be writable"
                                   ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise EdgebnnError(f"{self.path} keeps reappearing: another process is taking the run; try again")

    def _refuse_or_clear(self) -> None:
        held = _holder(self.path)
        if held is None:  # half-written or garbage: whoever wrote it did not finish; the file says nothing
            age = time.time() - self.path.stat().st_mtime if self.path.exists() else 0
            if age < 5:
                time.sleep(1)
                if _holder(self.path) is not None:
                    return
            self.path.unlink(missing_ok=True)
            return
        if held.get("host") == socket.gethostname():
            if held["pid"] == os.getpid() or not pid_alive(held["pid"]):
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                return
            raise OptionError("{folder} is still being trained (pid {pid} on this host since {started}): wait for it "
                              "or stop it, then {resume}", folder=self.path.parent, pid=held["pid"],
                              started=held.get("started", "?"))
        raise OptionError("{folder} is locked by pid {pid} on {host} (since {started}); if that run is dead, delete "
                          "{lock} and {resume}", folder=self.path.parent, pid=held["pid"], host=held.get("host"),
                          started=held.get("started", "?"), lock=self.path)

    def release(self) -> None:
        if self.held:
            held = _holder(self.path)
            if held and held.get("pid") == os.getpid():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
