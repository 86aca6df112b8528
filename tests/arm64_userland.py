"""A 64-bit ARM board for the tests: an aarch64 Debian 12 userland with its own OpenSSH server on 127.0.0.1.

The userland is made once with ``debootstrap --arch=arm64 --variant=minbase --include=openssh-server bookworm``
from Debian's archive (the mirror this host's apt sources name), built in a temporary folder renamed into place
when complete, and reused from the cache folder (``$EDGEBNN_TEST_CACHE/arm64-rootfs``, else
``~/.cache/edgebnn/arm64-rootfs``). Its programs run through ``qemu-user-static`` and ``binfmt_misc`` (mounted,
and the ``qemu-aarch64`` entry enabled, here when needed; its ``F`` flag lets the interpreter work in a chroot).

:class:`Arm64Sshd` runs the userland's own aarch64 ``/usr/sbin/sshd`` with ``chroot`` (root only) on a random
port; keys, ``known_hosts`` and the ``ssh -F`` config are :class:`~loopback_sshd.LoopbackSshd`'s.
``/proc`` is mounted in the userland while any server runs (counted across test sessions, unmounted after the
last); the device nodes ``debootstrap`` made in its ``/dev`` suffice, so ``/dev`` is not bound. ``stop`` ends
sshd and every process it started.

Everything in it is emulated: its timings are emulated wall time, never ARM64 latency.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from loopback_sshd import LoopbackSshd, SshdUnavailable

from edgebnn.runlock import pid_alive

SUITE = "bookworm"
PACKAGES = ("openssh-server",)
MARKER = ".edgebnn-rootfs.json"  # written last: a rootfs without it is incomplete
BINFMT = Path("/proc/sys/fs/binfmt_misc")
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class Arm64Unavailable(SshdUnavailable):
    """The aarch64 userland cannot be built or started here (the message says why)."""


def cache_root() -> Path:
    """``$EDGEBNN_TEST_CACHE``, else ``~/.cache/edgebnn``."""
    return Path(os.environ.get("EDGEBNN_TEST_CACHE") or Path.home() / ".cache" / "edgebnn").expanduser()


def rootfs_path() -> Path:
    return cache_root() / "arm64-rootfs"


def debian_mirror(sources=("/etc/apt/sources.list", "/etc/apt/sources.list.d")) -> str:
    """The first Debian archive (not the security one) this host's apt sources use, else deb.debian.org."""
    files = []
    for s in map(Path, sources):
        files += sorted(s.glob("*.list")) + sorted(s.glob("*.sources")) if s.is_dir() else [s]
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        for url in re.findall(r"(?:^deb\s+(?:\[[^\]]*\]\s+)?|^URIs:\s*)(\S+)", text, re.M):
            if re.search(r"/debian/?$", url) and "security" not in url:
                return url.rstrip("/")
    return DEFAULT_MIRROR


def _run(args: list[str], what: str, timeout: float = 60) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as err:
        raise Arm64Unavailable(f"{what}: {err}") from None
    if proc.returncode != 0:
        last = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise Arm64Unavailable(f"{what} failed (exit {proc.returncode}): {last[-1] if last else 'no output'}")
    return proc.stdout


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise Arm64Unavailable(f"{what} needs root (chroot, mount); CI runs the tests as root")


def ensure_binfmt() -> Path:
    """Mount binfmt_misc when it is not, enable Debian's ``qemu-aarch64`` entry; the entry's path."""
    entry = BINFMT / "qemu-aarch64"
    if not (BINFMT / "status").exists():
        _need_root("mounting binfmt_misc")
        _run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], "mounting binfmt_misc")
    if not entry.exists():
        if not shutil.which("update-binfmts") or not Path("/usr/share/binfmts/qemu-aarch64").is_file():
            raise Arm64Unavailable("no qemu-aarch64 binfmt entry: install qemu-user-static and binfmt-support "
                                   "(make arm64-tools)")
        _run(["update-binfmts", "--enable", "qemu-aarch64"], "enabling the qemu-aarch64 binfmt entry")
    text = entry.read_text() if entry.exists() else ""
    if text.splitlines()[:1] != ["enabled"]:
        _need_root("enabling the qemu-aarch64 binfmt entry")
        entry.write_text("1")
        text = entry.read_text()
    flags = re.search(r"^flags:\s*(\S*)", text, re.M)
    if not flags or "F" not in flags.group(1):
        raise Arm64Unavailable("the qemu-aarch64 binfmt entry lacks the F flag, so it cannot run programs inside a "
                               "chroot: use qemu-user-static's entry (update-binfmts --enable qemu-aarch64)")
    return entry


# ------------------------------------------------------------------------------------------ building
def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return sorted((p for p in points if p.startswith(prefix) or p == prefix[:-1]), key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """Unmount whatever is mounted below ``path`` (debootstrap's /proc after a failure), then delete it; refuse
    to delete while anything stays mounted."""
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True)
    if _mounts_under(path):
        raise Arm64Unavailable(f"{path} still has mounts ({_mounts_under(path)[0]}); not deleting it")
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _locked(name: str):
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / name, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def is_built(root: Path | None = None) -> bool:
    return ((root or rootfs_path()) / MARKER).is_file()


def build_rootfs(dest: Path | None = None, timeout: float = 1800, log=None) -> Path:
    """The cached aarch64 userland, built first when missing (about 1.5-3 minutes with a fast mirror)."""
    dest = Path(dest or rootfs_path())
    if is_built(dest):
        return dest
    _need_root("debootstrap")
    if not shutil.which("debootstrap"):
        raise Arm64Unavailable("debootstrap is not installed (make arm64-tools)")
    ensure_binfmt()
    with _locked("arm64-rootfs.lock"):
        if is_built(dest):  # another session built it while this one waited
            return dest
        if dest.exists():
            _remove_tree(dest)  # an incomplete leftover without the marker
        tmp = dest.with_name(f".{dest.name}.build-{os.getpid()}")
        if tmp.exists():
            _remove_tree(tmp)
        mirror = debian_mirror()
        args = ["debootstrap", "--arch=arm64", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                str(tmp), mirror]
        if log:
            log(f"building the aarch64 test userland: {' '.join(args)}")
        start = time.monotonic()
        try:
            _run(args, f"debootstrap from {mirror}", timeout=timeout)
            machine = _run(["chroot", str(tmp), "/usr/bin/uname", "-m"], "running aarch64 uname in the chroot")
            if machine.strip() != "aarch64" or not (tmp / "usr/sbin/sshd").is_file():
                raise Arm64Unavailable(f"the new userland says uname -m = {machine.strip()!r} or lacks sshd")
            facts = {"suite": SUITE, "arch": "arm64", "mirror": mirror, "packages": list(PACKAGES),
                     "seconds": round(time.monotonic() - start, 1), "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (tmp / MARKER).write_text(json.dumps(facts, indent=2) + "\n")
            os.rename(tmp, dest)
        except BaseException:
            _remove_tree(tmp)
            raise
    return dest


# ------------------------------------------------------------------------------------------ /proc, counted
def _users_dir(root: Path) -> Path:
    return root.with_name(root.name + ".users")


def mount_proc(root: Path, token: str) -> None:
    """Mount /proc in the userland unless mounted; count this user (``token``)."""
    with _locked("arm64-rootfs.mounts.lock"):
        if not _mounts_under(root / "proc"):
            _run(["mount", "-t", "proc", "proc", str(root / "proc")], "mounting /proc in the aarch64 userland")
        users = _users_dir(root)
        users.mkdir(exist_ok=True)
        (users / f"{os.getpid()}.{token}").touch()


def unmount_proc(root: Path, token: str) -> None:
    """Forget this user; unmount /proc when no live user is left."""
    with _locked("arm64-rootfs.mounts.lock"):
        users = _users_dir(root)
        (users / f"{os.getpid()}.{token}").unlink(missing_ok=True)
        for f in users.glob("*.*") if users.is_dir() else []:
            if not pid_alive(int(f.name.split(".")[0])):
                f.unlink(missing_ok=True)
        if not any(users.glob("*.*")):
            for point in _mounts_under(root / "proc"):
                subprocess.run(["umount", point], capture_output=True)


# ------------------------------------------------------------------------------------------ the server
def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children, their children...)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Arm64Sshd(LoopbackSshd):
    """``with Arm64Sshd() as board:`` -> the aarch64 userland's own sshd on 127.0.0.1 (user root);
    ``board.config`` for ``ssh -F``, ``board.url`` for ``--device``, ``board.rootfs`` to look inside."""

    alias = "edgebnn-test-arm64"

    def __init__(self, rootfs: Path | None = None):
        self.rootfs = Path(rootfs or rootfs_path())
        self.token = uuid.uuid4().hex[:12]
        super().__init__(self.rootfs / "run" / f"edgebnn-sshd-{self.token}", user="root")
        self._mounted = False

    def _server_path(self, path: Path) -> str:
        return "/" + str(Path(path).relative_to(self.rootfs))

    def _sshd_command(self) -> list[str]:
        return ["chroot", str(self.rootfs), "/usr/sbin/sshd", "-D", "-e", "-f",
                self._server_path(self.root / "sshd_config")]

    def _privsep_dir(self) -> Path:
        return self.rootfs / "run" / "sshd"

    def start(self) -> Arm64Sshd:
        _need_root("the aarch64 test board (chroot)")
        if not is_built(self.rootfs):
            raise Arm64Unavailable(f"no aarch64 userland at {self.rootfs}: build it with build_rootfs()")
        ensure_binfmt()
        mount_proc(self.rootfs, self.token)
        self._mounted = True
        try:
            super().start()
        except BaseException:
            self.stop()
            raise
        return self

    def _stop_process(self) -> None:
        below = descendants(self.proc.pid) if self.proc is not None else []
        super()._stop_process()
        for pid in below:  # sessions sshd started and left behind
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        self._stop_process()
        if self._mounted:
            self._mounted = False
            unmount_proc(self.rootfs, self.token)
        if self.root.is_dir() and not _mounts_under(self.root):
            shutil.rmtree(self.root, ignore_errors=True)

    def workdirs(self) -> set[str]:
        """edgebnn's work directories in the userland's /tmp (as the board sees them)."""
        return {"/tmp/" + p.name for p in (self.rootfs / "tmp").glob("edgebnn.*")}
