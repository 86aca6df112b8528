"""Boards by name: ``devices.toml``.

Read from the user's own ``~/.config/edgebnn/devices.toml``, or from the file named with ``--devices-file``; never
from the working folder by itself (a checkout's ``devices.toml`` would otherwise shadow the user's and run its
``ssh_options`` when a board is named). Either layout works::

    [[device]]                          [devices.pi4]
    name = "pi4"                        ssh = "ssh://pi@raspberrypi.local"
    ssh = "ssh://pi@raspberrypi.local"  runner = "~/bin/lce_benchmark_model_aarch64"
    runner = "..."                      target = "arm64"
    target = "arm64"                    notes = "Pi 4B 4 GB, heatsink"
    notes = "..."

Keys: ``ssh`` (``ssh://[user@]host[:port]`` or a host alias of ~/.ssh/config; ``host`` is accepted too),
``runner`` (a path or command on the board, or a local file to upload), ``target`` (a converters/ profile; by
default the one matching the board's ``uname -m``), ``ssh_config`` (an ``ssh -F`` file), ``ssh_options``
(a list of ``Key=Value``), ``notes``.

Trust: only the user's own file may set ``ssh_config`` or any ``ssh_options`` key outside :data:`SAFE_OPTIONS`
(OpenSSH runs ``ProxyCommand``, ``LocalCommand``, ``KnownHostsCommand`` and ``Match exec`` through the local
shell, loads ``PKCS11Provider`` libraries, and forwarding hands the board the user's agent, display or ports).
``ProxyJump`` is read from any file: OpenSSH then runs only itself to the jump host, under the user's own
configuration for it, and its host list is held to ``[user@]host[:port]`` words, since OpenSSH pastes it into
the shell command it runs.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgebnn.devices.ssh import parse_url
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.inputs import regular_file

USER_FILE = "~/.config/edgebnn/devices.toml"  # the user's own devices file: the only one read unasked
LOCAL_NAME = "devices.toml"  # a file of this name in the working folder is never read unless named
# ssh_options keys a devices file other than the user's own may set: none runs a command, loads a library,
# forwards anything or weakens the host-key check (StrictHostKeyChecking and BatchMode only as "yes").
SAFE_OPTIONS = frozenset(k.lower() for k in (
    "AddressFamily", "BatchMode", "BindAddress", "CASignatureAlgorithms", "CertificateFile", "CheckHostIP",
    "Ciphers", "Compression", "ConnectionAttempts", "ConnectTimeout", "HostKeyAlgorithms", "HostKeyAlias",
    "HostbasedAuthentication", "IdentitiesOnly", "IdentityFile", "IPQoS", "KbdInteractiveAuthentication",
    "KexAlgorithms", "LogLevel", "MACs", "NumberOfPasswordPrompts", "PasswordAuthentication", "Port",
    "PreferredAuthentications", "ProxyJump", "PubkeyAcceptedAlgorithms", "PubkeyAcceptedKeyTypes",
    "PubkeyAuthentication", "RekeyLimit", "ServerAliveCountMax", "ServerAliveInterval", "StrictHostKeyChecking",
    "TCPKeepAlive", "User"))
_ONLY_YES = ("stricthostkeychecking", "batchmode")
_WHY = {  # why an option is refused from a file that is not the user's own
    **dict.fromkeys(("proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand", "match",
                     "include"), "runs a local command"),
    "remotecommand": "replaces the command edgebnn runs on the board",
    **dict.fromkeys(("pkcs11provider", "securitykeyprovider"), "loads a local library"),
    **dict.fromkeys(("forwardagent", "forwardx11", "forwardx11trusted", "localforward", "remoteforward",
                     "dynamicforward", "tunnel", "tunneldevice"), "hands the board your agent, display or ports"),
    **dict.fromkeys(("stricthostkeychecking", "userknownhostsfile", "globalknownhostsfile", "updatehostkeys",
                     "verifyhostkeydns"), "weakens the host-key check"),
}
_JUMP_HOST = r"(?:ssh://)?(?:[\w][\w.\-]*@)?(?:\[[0-9A-Fa-f:.%\w]+\]|[\w][\w.\-]*)(?::\d{1,5})?"


@dataclass
class Device:
    """A place to profile: ``local`` (this host), a board over SSH, or ``qemu:aarch64`` (LCE's aarch64 runner
    emulated here, its instructions counted: estimates for named boards, never a latency measurement)."""

    name: str
    kind: str  # "local", "ssh" or "qemu"
    ssh: str | None = None
    runner: str | None = None
    target: str | None = None
    ssh_config: str | None = None
    ssh_options: list[str] = field(default_factory=list)
    notes: str = ""
    source: str = ""
    cpu: str | None = None  # qemu: the emulated core named in qemu:aarch64:CPU (None: each board's own / cortex-a72)

    def ssh_target(self):

        target = parse_url(self.ssh, config_file=self.ssh_config)
        target.options = list(self.ssh_options)
        return target


def user_file() -> Path:
    """The user's own devices file (``~/.config/edgebnn/devices.toml``), whether it exists or not."""
    return Path(USER_FILE).expanduser()


def devices_file(path: str | os.PathLike | None = None) -> Path | None:
    """The devices file in use: ``path`` (a regular file) or the user's own, when it exists."""
    if path is None:
        p = user_file()
        return p if p.is_file() else None
    return regular_file(Path(path).expanduser(), "devices file", if_folder="pass the devices.toml inside it",
                        if_missing="create it or drop {devices_file}", if_other="pass a devices.toml")


def is_users_own(path: Path) -> bool:
    """Whether ``path`` is the user's own devices file (the same file, whatever the name it is reached by)."""
    try:
        return os.path.samefile(path, user_file())
    except OSError:
        return False


def _entries(raw: dict, p: Path) -> list[tuple[str, dict]]:
    """(name, table) of both layouts, in file order."""
    entries: list[tuple[str, dict]] = []
    for i, item in enumerate(raw.get("device", []) if isinstance(raw.get("device"), list) else []):
        if not isinstance(item, dict) or not item.get("name") or not isinstance(item["name"], str):
            raise EdgebnnError(f"devices file {p}: [[device]] number {i + 1} has no name (a string)")
        entries.append((str(item["name"]), item))
    table = raw.get("devices", {})
    if not isinstance(table, dict):
        raise EdgebnnError(f"devices file {p}: [devices] must be a table of [devices.NAME]")
    return entries + [(str(name), item) for name, item in table.items()]


def _refusal(key: str, value: str) -> str | None:
    """Why ``key=value`` may not come from a devices file other than the user's own, or None when it may."""
    low = key.lower()
    if low not in SAFE_OPTIONS:
        return _WHY.get(low, "is not one of the options edgebnn reads from other files (none runs a command or "
                             "weakens a check)")
    if low in _ONLY_YES and value.strip().lower() != "yes":
        return "weakens the host-key check" if low == "stricthostkeychecking" else "allows prompts"
    if low == "proxyjump" and value.strip().lower() != "none" and not all(
            re.fullmatch(_JUMP_HOST, hop) for hop in value.strip().split(",")):
        return "names a jump host that is not [user@]host[:port] (OpenSSH pastes it into a shell command)"
    return None


def ssh_options(options, name: str, p: Path, trusted: bool) -> list[str]:
    """A device's ``ssh_options``, checked: ``Key=Value`` strings on one line each; from a file that is not the
    user's own, only the keys of :data:`SAFE_OPTIONS` (see the module's docstring)."""
    where = f"devices file {p}: device {name!r}"
    if not isinstance(options, list) or not all(isinstance(o, str) and "=" in o for o in options):
        raise EdgebnnError(f"{where}: ssh_options must be a list of \"Key=Value\"")
    for option in options:
        key, _, value = option.partition("=")
        if not re.fullmatch(r"\s*[A-Za-z][A-Za-z0-9]*\s*", key) or any(c in option for c in "\n\r\0"):
            raise EdgebnnError(f"{where}: ssh_options {option[:40]!r} is not one \"Key=Value\" line")
        why = None if trusted else _refusal(key.strip(), value)
        if why:
            raise EdgebnnError(f"{where}: ssh_options {key.strip()} is refused: it {why}, and {p} is not your own "
                               f"devices file ({user_file()}): move the device there or drop the option")
    return list(options)


def _device(name: str, item, p: Path, trusted: bool) -> Device:
    """One device's table, checked."""

    if not isinstance(item, dict):
        raise EdgebnnError(f"devices file {p}: device {name!r} must be a table")
    unknown = set(item) - {"name", "ssh", "host", "runner", "target", "ssh_config", "ssh_options", "notes"}
    if unknown:
        raise EdgebnnError(f"devices file {p}: device {name!r} has unknown key(s) {', '.join(sorted(unknown))}")
    wrong = [k for k in ("ssh", "host", "runner", "target", "ssh_config", "notes")
             if k in item and not isinstance(item[k], str)]
    if wrong:
        raise EdgebnnError(f"devices file {p}: device {name!r}: {wrong[0]} must be a string, got {item[wrong[0]]!r}")
    ssh = item.get("ssh") or item.get("host")
    if not ssh:
        raise EdgebnnError(f"devices file {p}: device {name!r} has no ssh = \"ssh://user@host\"")
    try:
        parse_url(ssh)  # a bad address is refused when the file is read, naming the file and the device
    except EdgebnnError as err:
        raise EdgebnnError(f"devices file {p}: device {name!r}: {err}") from None
    options = ssh_options(item.get("ssh_options", []), name, p, trusted)
    cfg = item.get("ssh_config")
    if cfg and not trusted:
        raise OptionError("devices file {p}: device {name!r}: ssh_config is refused: an ssh -F file can run local "
                          "commands (ProxyCommand), and {p} is not your own devices file ({own}): pass "
                          "{ssh_config:=FILE} yourself or move the device there", p=p, name=name, own=user_file())
    if cfg:
        cfg = str((p.parent / Path(cfg).expanduser()).resolve())
    return Device(name=name, kind="ssh", ssh=str(ssh), runner=item.get("runner"), target=item.get("target"),
                  ssh_config=cfg, ssh_options=options, notes=str(item.get("notes", "")), source=str(p))


def load(path: str | os.PathLike | None = None) -> dict[str, Device]:
    """Every device of the devices file (empty when there is none); see the module's docstring for what a file
    other than the user's own may set."""
    p = devices_file(path)
    if p is None:
        return {}
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise EdgebnnError(f"devices file {p} is not valid TOML: {err}") from None
    except OSError as err:
        raise EdgebnnError(f"cannot read devices file {p}: {err.strerror}") from None
    trusted = is_users_own(p)
    out: dict[str, Device] = {}
    for name, item in _entries(raw, p):
        if name in out:
            raise EdgebnnError(f"devices file {p}: device {name!r} is defined twice")
        out[name] = _device(name, item, p, trusted)
    return out


def ignored_local_file(devices_path) -> str:
    """A note for messages when ``./devices.toml`` exists but is not read (no ``--devices-file``), else ''."""
    local = Path(LOCAL_NAME)
    if devices_path is not None or not local.is_file() or is_users_own(local):
        return ""
    return (f"; ./{LOCAL_NAME} here is not read (a checkout's file could run commands): pass --devices-file "
            f"{LOCAL_NAME} to use it")


QEMU_DEVICE = "qemu:aarch64"


def _config_checked(dev: Device) -> Device:
    """An ssh device's ``ssh -F`` file must be a regular file: a folder or a missing file is named as such here,
    not left to ssh (whose failure reads like a host-key problem)."""
    if dev.kind == "ssh" and dev.ssh_config:
        hint = "give an ssh -F config file with {ssh_config} (or drop it: ~/.ssh/config applies)"
        regular_file(dev.ssh_config, "ssh config file", if_folder=hint, if_missing=hint, if_other=hint)
    return dev


def resolve(spec: str, devices_path: str | os.PathLike | None = None, ssh_config: str | None = None) -> Device:
    """``local``, ``ssh://[user@]host[:port]``, ``qemu:aarch64[:CPU]`` or a NAME from the devices file ->
    :class:`Device`."""
    if spec == "local":
        return Device(name="local", kind="local")
    if spec.startswith("qemu:"):
        base, sep, cpu = spec.partition(":")[2].partition(":")
        if base != QEMU_DEVICE.partition(":")[2] or (sep and not cpu):
            raise EdgebnnError(f"unknown emulated device {spec!r}: use {QEMU_DEVICE} or {QEMU_DEVICE}:CPU (LCE's "
                               "aarch64 runner under qemu-user on each board's core, or on QEMU core CPU such as "
                               "cortex-a76; counted and estimated for calibrated boards)")
        return Device(name=spec, kind="qemu", cpu=cpu or None)
    if spec.startswith("ssh://"):

        t = parse_url(spec)
        return _config_checked(Device(name=t.url, kind="ssh", ssh=t.url, ssh_config=ssh_config))
    known = load(devices_path)
    if spec in known:
        dev = known[spec]
        if ssh_config and not dev.ssh_config:
            dev.ssh_config = ssh_config
        return _config_checked(dev)
    where = devices_file(devices_path) or USER_FILE
    names = ", ".join(sorted(known)) or "none"
    raise EdgebnnError(f"unknown device {spec!r}: use local, ssh://user@host[:port], {QEMU_DEVICE} or a name from "
                       f"{where} (known: {names}){ignored_local_file(devices_path)}")
