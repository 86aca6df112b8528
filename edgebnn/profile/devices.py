"""Boards by name: ``devices.toml``.

Searched in ``./devices.toml`` then ``~/.config/edgebnn/devices.toml`` (or the file given with
``--devices-file``). Either layout works::

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
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from edgebnn.errors import EdgebnnError

SEARCH = ("devices.toml", "~/.config/edgebnn/devices.toml")


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

    def ssh_target(self):
        from edgebnn.profile.ssh import parse_url

        target = parse_url(self.ssh, config_file=self.ssh_config)
        target.options = list(self.ssh_options)
        return target


def devices_file(path: str | os.PathLike | None = None) -> Path | None:
    """The devices file in use: ``path`` (must exist) or the first of ./devices.toml, ~/.config/edgebnn/."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise EdgebnnError(f"devices file {p} does not exist: create it or drop --devices-file")
        return p
    for candidate in SEARCH:
        p = Path(candidate).expanduser()
        if p.is_file():
            return p
    return None


def load(path: str | os.PathLike | None = None) -> dict[str, Device]:
    """Every device of the devices file (empty when there is none)."""
    p = devices_file(path)
    if p is None:
        return {}
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise EdgebnnError(f"devices file {p} is not valid TOML: {err}") from None
    entries: list[tuple[str, dict]] = []
    for i, item in enumerate(raw.get("device", []) if isinstance(raw.get("device"), list) else []):
        if not isinstance(item, dict) or not item.get("name") or not isinstance(item["name"], str):
            raise EdgebnnError(f"devices file {p}: [[device]] number {i + 1} has no name (a string)")
        entries.append((str(item["name"]), item))
    table = raw.get("devices", {})
    if not isinstance(table, dict):
        raise EdgebnnError(f"devices file {p}: [devices] must be a table of [devices.NAME]")
    entries += [(str(name), item) for name, item in table.items()]
    out: dict[str, Device] = {}
    for name, item in entries:
        if not isinstance(item, dict):
            raise EdgebnnError(f"devices file {p}: device {name!r} must be a table")
        if name in out:
            raise EdgebnnError(f"devices file {p}: device {name!r} is defined twice")
        unknown = set(item) - {"name", "ssh", "host", "runner", "target", "ssh_config", "ssh_options", "notes"}
        if unknown:
            raise EdgebnnError(f"devices file {p}: device {name!r} has unknown key(s) {', '.join(sorted(unknown))}")
        wrong = [k for k in ("ssh", "host", "runner", "target", "ssh_config", "notes")
                 if k in item and not isinstance(item[k], str)]
        if wrong:
            raise EdgebnnError(f"devices file {p}: device {name!r}: {wrong[0]} must be a string, got "
                               f"{item[wrong[0]]!r}")
        ssh = item.get("ssh") or item.get("host")
        if not ssh:
            raise EdgebnnError(f"devices file {p}: device {name!r} has no ssh = \"ssh://user@host\"")
        from edgebnn.profile.ssh import parse_url

        try:
            parse_url(ssh)  # a bad address is refused when the file is read, naming the file and the device
        except EdgebnnError as err:
            raise EdgebnnError(f"devices file {p}: device {name!r}: {err}") from None
        options = item.get("ssh_options", [])
        if not isinstance(options, list) or not all(isinstance(o, str) and "=" in o for o in options):
            raise EdgebnnError(f"devices file {p}: device {name!r}: ssh_options must be a list of \"Key=Value\"")
        cfg = item.get("ssh_config")
        if cfg:
            cfg = str((p.parent / Path(cfg).expanduser()).resolve())
        out[name] = Device(name=name, kind="ssh", ssh=str(ssh), runner=item.get("runner"), target=item.get("target"),
                           ssh_config=cfg, ssh_options=list(options), notes=str(item.get("notes", "")), source=str(p))
    return out


QEMU_DEVICE = "qemu:aarch64"


def resolve(spec: str, devices_path: str | os.PathLike | None = None, ssh_config: str | None = None) -> Device:
    """``local``, ``ssh://[user@]host[:port]``, ``qemu:aarch64`` or a NAME from the devices file -> :class:`Device`."""
    if spec == "local":
        return Device(name="local", kind="local")
    if spec.startswith("qemu:"):
        if spec != QEMU_DEVICE:
            raise EdgebnnError(f"unknown emulated device {spec!r}: the only one is {QEMU_DEVICE} (LCE's aarch64 "
                               "runner under qemu-user, counted and estimated for calibrated boards)")
        return Device(name=QEMU_DEVICE, kind="qemu")
    if spec.startswith("ssh://"):
        from edgebnn.profile.ssh import parse_url

        t = parse_url(spec)
        return Device(name=t.url, kind="ssh", ssh=t.url, ssh_config=ssh_config)
    known = load(devices_path)
    if spec in known:
        dev = known[spec]
        if ssh_config and not dev.ssh_config:
            dev.ssh_config = ssh_config
        return dev
    where = devices_file(devices_path)
    names = ", ".join(sorted(known)) or "none"
    raise EdgebnnError(f"unknown device {spec!r}: use local, ssh://user@host[:port], {QEMU_DEVICE} or a name from "
                       f"{where or './devices.toml or ~/.config/edgebnn/devices.toml'} (known: {names})")
