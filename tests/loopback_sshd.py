"""A throw-away OpenSSH server on 127.0.0.1 for the SSH tests and the overhead benchmark.

It runs the real ``sshd -D -e -f <config>`` as the current user on a random free port, with a host key and a
user key made here, a temporary ``authorized_keys``, ``StrictModes no`` and ``UsePAM no``; it writes a
``known_hosts`` holding its host key and an ``ssh -F`` config (host alias ``edgebnn-test-board``) that uses
them, so nothing of the user's own SSH set-up is read or changed.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ALIAS = "edgebnn-test-board"


class SshdUnavailable(RuntimeError):
    """sshd is missing or cannot start here (the message says why)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sshd_binary() -> str:
    for candidate in ("/usr/sbin/sshd", shutil.which("sshd") or ""):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SshdUnavailable("OpenSSH server not installed (`make sshd` or apt-get install openssh-server)")


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgebnn-test", "-f", str(path)],
                   check=True, capture_output=True)


class LoopbackSshd:
    """``with LoopbackSshd(tmpdir) as s:`` -> a running sshd; ``s.config`` for ``ssh -F``, ``s.url`` for
    ``--device``."""

    alias = ALIAS  # the host alias its ssh -F config defines

    def __init__(self, root: str | os.PathLike, user: str | None = None):
        self.root = Path(root)
        self.user = user or getpass.getuser()
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @property
    def config(self) -> str:
        return str(self.root / "ssh_config")

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def user_key(self) -> Path:
        return self.root / "user_key"

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def log(self) -> str:
        p = self.root / "sshd.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # Hooks for a server that sees the file system differently (testing_arm64: sshd inside a chroot).
    def _server_path(self, path: Path) -> str:
        """``path`` (on this host) as the sshd process sees it."""
        return str(path)

    def _sshd_command(self) -> list[str]:
        return [_sshd_binary(), "-D", "-e", "-f", self._server_path(self.root / "sshd_config")]

    def _privsep_dir(self) -> Path:
        return Path("/run/sshd")  # Debian's privilege separation directory

    def start(self) -> LoopbackSshd:
        command = self._sshd_command()
        self.root.mkdir(parents=True, exist_ok=True)
        for name in ("host_key", "user_key"):
            if not (self.root / name).exists():
                _keygen(self.root / name)
        (self.root / "authorized_keys").write_text((self.root / "user_key.pub").read_text())
        os.chmod(self.root / "authorized_keys", 0o600)
        if os.geteuid() == 0:
            self._privsep_dir().mkdir(mode=0o755, exist_ok=True)
        last = ""
        for _ in range(3):  # the port may be taken between choosing and binding
            self.port = _free_port()
            self._write_configs()
            log = open(self.root / "sshd.log", "w")
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            if self._wait_listening():
                return self
            last = self.log().strip().splitlines()[-1:] or ["no output"]
            self._stop_process()
        raise SshdUnavailable(f"sshd did not start: {last[0] if isinstance(last, list) else last}")

    def _write_configs(self) -> None:
        r = self.root
        server = self._server_path
        (r / "sshd_config").write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {server(r / 'host_key')}",
            f"PidFile {server(r / 'sshd.pid')}", f"AuthorizedKeysFile {server(r / 'authorized_keys')}",
            "StrictModes no",
            "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password", f"AllowUsers {self.user}", "X11Forwarding no",
            "AllowTcpForwarding no", "PrintMotd no", "Subsystem sftp internal-sftp", "LogLevel VERBOSE",
            "MaxStartups 50:30:100", ""]))
        host_pub = (r / "host_key.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        block = [f"  User {self.user}", f"  IdentityFile {self.user_key}", "  IdentitiesOnly yes",
                 f"  UserKnownHostsFile {self.known_hosts}", "  GlobalKnownHostsFile /dev/null",
                 "  IdentityAgent none", "  LogLevel ERROR"]
        (r / "ssh_config").write_text("\n".join(
            [f"Host {self.alias}", "  HostName 127.0.0.1", f"  Port {self.port}", *block,
             "Host 127.0.0.1 localhost", *block, ""]))

    def _wait_listening(self, seconds: float = 30.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return True
            except OSError:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        self._stop_process()

    def _stop_process(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
