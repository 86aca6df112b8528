"""Boards over SSH, with the system's OpenSSH ``ssh`` and ``scp`` run as argument lists.

The user's ``~/.ssh/config``, agent and ``known_hosts`` apply. ``BatchMode=yes`` (never a prompt) and
``StrictHostKeyChecking=yes`` unless the user's own configuration sets another value: an unknown or changed
host key is refused, never silently accepted. Every remote argument is quoted with :func:`shlex.quote`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from edgebnn.errors import EdgebnnError, OptionError

CONTROL_PREFIX = "edgebnn-ssh-"  # local folders of the shared connection's control socket


@dataclass
class SshTarget:
    """Where a board is: ``[user@]host`` (a host alias of the user's ssh config works), port, extra options."""

    host: str
    user: str | None = None
    port: int | None = None
    config_file: str | None = None
    options: list[str] = field(default_factory=list)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6: ssh://user@[::1]:2222
        return f"ssh://{self.user + '@' if self.user else ''}{host}" + (f":{self.port}" if self.port else "")

    @property
    def known_hosts_name(self) -> str:
        """The host as known_hosts names it: ``host``, or ``[host]:port`` off port 22."""
        return f"[{self.host}]:{self.port}" if self.port and self.port != 22 else self.host


def parse_url(text: str, config_file: str | None = None) -> SshTarget:
    """``ssh://user@host[:port]`` (or ``user@host[:port]``) -> :class:`SshTarget`."""
    if not isinstance(text, str):
        raise EdgebnnError(f"device {text!r} is not ssh://[user@]host[:port]: give the address as a string")
    raw = text if text.startswith("ssh://") else f"ssh://{text}"
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise EdgebnnError(f"device {_hide_password(text)!r} is not ssh://[user@]host[:port]: fix the port or the "
                           "address (an IPv6 address goes in brackets: ssh://user@[::1]:2222)") from None
    host = parts.hostname or ""
    if parts.netloc.rsplit("@", 1)[-1].startswith("["):
        host = parts.netloc.rsplit("@", 1)[-1].split("]")[0][1:]
    elif parts.netloc:
        host = parts.netloc.rsplit("@", 1)[-1].rsplit(":", 1)[0] if port else parts.netloc.rsplit("@", 1)[-1]
    if not host or host.startswith("-") or parts.path not in ("", "/") or not re.fullmatch(r"[\w.\-:%]+", host):
        raise EdgebnnError(f"device {text!r} is not ssh://[user@]host[:port]: give a host name or address")
    if port == 0:
        raise EdgebnnError(f"device {_hide_password(text)!r}: port 0 is no SSH port: give 1 to 65535, or none for 22")
    if parts.password is not None:
        raise EdgebnnError(f"device {_hide_password(text)}: a password in the URL is never used (ssh runs with "
                           "BatchMode, keys only): drop it and install a key with `ssh-copy-id`")
    user = unquote(parts.username) if parts.username else None
    # OpenSSH pastes the user name into commands run by a shell (%r in ProxyCommand): letters, digits, _ . - only
    if user is not None and not re.fullmatch(r"\w[\w.\-]*", user):
        raise EdgebnnError(f"device {text!r} has an invalid user name: use letters, digits, _ . and - only")
    return SshTarget(host=host, user=user, port=port, config_file=config_file)


def _hide_password(text: str) -> str:
    return re.sub(r"(//[^:/@]*):[^@]*@", r"\1:***@", text)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise EdgebnnError(f"OpenSSH's {name} client is not installed: install openssh-client")
    return path


def _first_line(text: str, *needles: str) -> str:
    for line in text.splitlines():
        if any(n.lower() in line.lower() for n in needles):
            return line.strip()
    return ""


def explain_failure(stderr: str, target: SshTarget, what: str) -> str:
    """OpenSSH's stderr (exit status 255) -> one line naming the problem and what to do."""
    where = f"{target.url}"
    err = stderr or ""
    low = err.lower()
    if "remote host identification has changed" in low or "host key for" in low and "has changed" in low:
        return (f"host key of {where} does not match known_hosts (possible impostor or a reinstalled board): "
                f"check the board, then remove the old key with `ssh-keygen -R '{target.known_hosts_name}'`")
    if "host key verification failed" in low or "no " in low and "host key is known" in low:
        port = f"-p {target.port} " if target.port else ""
        return (f"host key of {where} is not in known_hosts: connect once with `ssh {port}{target.destination}` "
                "to verify and accept it")
    if "connection refused" in low:
        return f"cannot reach {where}: connection refused (is sshd running there, and is the port right?)"
    if "permission denied" in low:
        return (f"{where} refused the SSH key ({_first_line(err, 'permission denied')}): add your public key to the "
                "board's ~/.ssh/authorized_keys or set IdentityFile in ~/.ssh/config")
    if "could not resolve hostname" in low or "name or service not known" in low:
        return f"cannot resolve the host name of {where}: check the address or your ~/.ssh/config"
    if "timed out" in low or "no route to host" in low or "network is unreachable" in low:
        return f"cannot reach {where}: {_first_line(err, 'timed out', 'no route', 'unreachable') or 'timed out'}"
    if "broken pipe" in low or "connection reset" in low or "closed by remote host" in low or "timeout" in low:
        return f"{where} stopped answering while {what}: check the board's power and network"
    last = [ln for ln in err.splitlines() if ln.strip()]
    return f"ssh to {where} failed while {what}: {last[-1].strip() if last else 'no message from ssh'}"


class Connection:
    """Runs shell commands on a board and copies files to it, one OpenSSH process per call, all sharing one
    authenticated connection (OpenSSH multiplexing: a master started on first use, ended by :meth:`close`)."""

    def __init__(self, target: SshTarget, connect_timeout: int = 10, alive_interval: int = 5,
                 multiplex: bool = True):
        self.target = target
        self.connect_timeout = int(connect_timeout)
        self.alive_interval = int(alive_interval)
        self.multiplex = multiplex
        self._options: list[str] | None = None
        self._control_dir: str | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _control_args(self) -> list[str]:
        if not self.multiplex:
            return []
        if self._control_dir is None:
            self._start_master()
        return ["-o", "ControlMaster=no", "-o", f"ControlPath={self._control_dir}/cm"]

    def _start_master(self) -> None:
        # The master runs in the background (-f) with its output in a file: a pipe would stay open as long as
        # the master lives. ControlPersist bounds its life should close() never be called.
        directory = tempfile.mkdtemp(prefix=CONTROL_PREFIX)
        Path(directory, "owner").write_text(f"{os.getpid()}\n")  # `edgebnn devices clean` ends a dead owner's master
        log = Path(directory, "master.log")
        args = [_tool("ssh"), *self._config_args(), *self.options(), "-o", "ControlMaster=yes",
                "-o", f"ControlPath={directory}/cm", "-o", "ControlPersist=120", "-N", "-f"]
        if self.target.port:
            args += ["-p", str(self.target.port)]
        try:
            with open(log, "w") as err:
                proc = subprocess.run([*args, "--", self.target.destination], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=err, timeout=self.connect_timeout + 30)
        except subprocess.TimeoutExpired:
            shutil.rmtree(directory, ignore_errors=True)
            raise EdgebnnError(f"cannot reach {self.target.url}: no answer within {self.connect_timeout + 30} s"
                               ) from None
        if proc.returncode != 0:
            text = log.read_text(errors="replace")
            shutil.rmtree(directory, ignore_errors=True)
            raise EdgebnnError(explain_failure(text, self.target, "connecting"))
        self._control_dir = directory

    def close(self) -> None:
        """End the shared connection (the master) and remove its socket directory."""
        if self._control_dir is None:
            return
        directory, self._control_dir = self._control_dir, None
        args = [_tool("ssh"), *self._config_args(), "-o", f"ControlPath={directory}/cm", "-O", "exit"]
        if self.target.port:
            args += ["-p", str(self.target.port)]
        try:
            subprocess.run([*args, "--", self.target.destination], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(directory, ignore_errors=True)

    def _config_args(self) -> list[str]:
        return ["-F", self.target.config_file] if self.target.config_file else []

    def options(self) -> list[str]:
        """The ``-o`` options for every call; StrictHostKeyChecking=yes unless the user's config says otherwise."""
        if self._options is None:
            opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                    "-o", f"ServerAliveInterval={self.alive_interval}", "-o", "ServerAliveCountMax=3"]
            for opt in self.target.options:
                opts += ["-o", opt]
            if self._user_strict_setting() in ("ask", "yes", "true"):
                opts += ["-o", "StrictHostKeyChecking=yes"]
            self._options = opts
        return self._options

    def _user_strict_setting(self) -> str:
        # `ssh -G` prints the configuration ssh would use (no connection); "ask" is OpenSSH's own default.
        for opt in self.target.options:
            if opt.lower().startswith("stricthostkeychecking"):
                return opt.split("=", 1)[-1].strip().lower()
        args = [_tool("ssh"), "-G", *self._config_args()]
        if self.target.port:
            args += ["-p", str(self.target.port)]
        try:
            out = subprocess.run([*args, "--", self.target.destination], capture_output=True, text=True,
                                 timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "ask"
        for line in out.splitlines():
            key, _, value = line.partition(" ")
            if key == "stricthostkeychecking":
                return value.strip().lower()
        return "ask"

    def ssh_args(self, command: str) -> list[str]:
        args = [_tool("ssh"), *self._config_args(), *self.options(), *self._control_args(), "-T"]
        if self.target.port:
            args += ["-p", str(self.target.port)]
        return [*args, "--", self.target.destination, command]

    def run(self, command: str, timeout: float, what: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run one shell command on the board (already quoted). OpenSSH failures and timeouts raise
        :class:`EdgebnnError`; the command's own exit status is left to the caller unless ``check``."""
        try:
            proc = subprocess.run(self.ssh_args(command), capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL, errors="replace")
        except subprocess.TimeoutExpired:
            raise OptionError("{url} stopped answering while {what}: no reply within {limit:.0f} s (raise {timeout} "
                              "for slow models)", url=self.target.url, what=what, limit=timeout) from None
        if proc.returncode == 255:
            raise EdgebnnError(explain_failure(proc.stderr, self.target, what))
        if check and proc.returncode != 0:
            last = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
            raise EdgebnnError(f"{what} failed on {self.target.url} (exit {proc.returncode}): "
                               f"{last[-1].strip() if last else 'no message'}")
        return proc

    def upload(self, local: str | Path, remote_path: str, timeout: float, what: str) -> None:
        """Copy a local file to ``remote_path`` on the board (a path of safe characters, made by edgebnn)."""
        # An absolute local path: scp never mistakes it for host:path, whatever characters it holds.
        self._scp([str(Path(local).resolve()), f"{self._scp_host()}:{self._safe(remote_path)}"], timeout, what)

    def download(self, remote_path: str, local: str | Path, timeout: float, what: str) -> None:
        """Copy ``remote_path`` on the board (a path of safe characters, made by edgebnn) to a local file."""
        self._scp([f"{self._scp_host()}:{self._safe(remote_path)}", str(Path(local).resolve())], timeout, what)

    @staticmethod
    def _safe(remote_path: str) -> str:
        if not re.fullmatch(r"[\w./\-]+", remote_path):
            raise ValueError(f"unsafe remote path {remote_path!r}")
        return remote_path

    def _scp_host(self) -> str:
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        return f"{self.target.user}@{host}" if self.target.user else host

    def _scp(self, paths: list[str], timeout: float, what: str) -> None:
        args = [_tool("scp"), "-q", *self._config_args(), *self.options(), *self._control_args()]
        if self.target.port:
            args += ["-P", str(self.target.port)]
        args += ["--", *paths]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                                  errors="replace")
        except subprocess.TimeoutExpired:
            raise EdgebnnError(f"{self.target.url} stopped answering while {what}: no reply within {timeout:.0f} s"
                               ) from None
        if proc.returncode != 0:
            if proc.returncode == 255 or "connect" in proc.stderr.lower() or "host key" in proc.stderr.lower():
                raise EdgebnnError(explain_failure(proc.stderr, self.target, what))
            last = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            raise EdgebnnError(f"{what} on {self.target.url} failed: {last[-1].strip() if last else 'scp failed'}")
