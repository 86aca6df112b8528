"""Deployment target profiles: ``converters/<name>.toml``, shipped as package data.

A profile names the LCE converter target, the machines (``uname -m``) and ELF architecture a board of
that target has, the runner binary expected on it, the oldest glibc that runner needs, the default
benchmark settings (threads, runs, warm-up) and the checks to run on the board.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from edgebnn.errors import EdgebnnError, printable
from edgebnn.inputs import read_regular

PROFILE_LIMIT = 1 << 20  # bytes of a target profile edgebnn reads (one is under 2 KB)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    lce_target: str
    machines: tuple[str, ...]
    elf_machine: str
    runner: str
    min_glibc: str
    threads: tuple[int, ...]
    num_runs: int
    warmup_runs: int
    use_xnnpack: bool
    governor: str
    warn_if_throttled: bool
    path: str


def _profiles_dir():
    return resources.files("edgebnn.converters")


def names() -> list[str]:
    """Every target profile shipped with edgebnn."""
    return sorted(p.name[:-5] for p in _profiles_dir().iterdir() if p.name.endswith(".toml"))


REQUIRED = ("name", "lce_target")


def _parse(text: str, where: str) -> Target:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise EdgebnnError(f"target profile {where} is not valid TOML: {printable(err)}") from None
    for key in REQUIRED:
        if key not in raw:
            raise EdgebnnError(f"target profile {where} has no {key}: a profile needs {' and '.join(REQUIRED)} (see "
                               f"converters/arm64.toml)")
    for table in ("benchmark", "checks"):
        if not isinstance(raw.get(table, {}), dict):
            raise EdgebnnError(f"target profile {where}: [{table}] is not a table")
    try:
        bench, checks = raw.get("benchmark", {}), raw.get("checks", {})
        return Target(
            name=str(raw["name"]), description=str(raw.get("description", "")),
            lce_target=str(raw["lce_target"]), machines=tuple(raw.get("machines", [])),
            elf_machine=str(raw.get("elf_machine", "")), runner=str(raw.get("runner", "")),
            min_glibc=str(raw.get("min_glibc", "")), threads=tuple(int(t) for t in bench.get("threads", [1])),
            num_runs=int(bench.get("num_runs", 50)), warmup_runs=int(bench.get("warmup_runs", 1)),
            use_xnnpack=bool(bench.get("use_xnnpack", True)), governor=str(checks.get("governor", "")),
            warn_if_throttled=bool(checks.get("warn_if_throttled", False)), path=where)
    except (KeyError, TypeError, ValueError) as err:
        raise EdgebnnError(f"target profile {where} is invalid: {printable(err)}") from None


def load(name: str) -> Target:
    """A target by name (``arm64``, ``armv7``, ``x86_64``, ``xcore``) or by path to a profile file."""
    if name.endswith(".toml"):
        path = Path(name)
        data = read_regular(path, "target profile", hint="give a profile .toml file (see converters/arm64.toml)",
                            limit=PROFILE_LIMIT)
        try:
            return _parse(data.decode("utf-8"), str(path))
        except UnicodeDecodeError:
            raise EdgebnnError(f"target profile {name} is not UTF-8 text: give a profile .toml file") from None
    if name not in names():
        raise EdgebnnError(f"unknown target {name!r}; use one of: {', '.join(names())} (or a .toml profile)")
    resource = _profiles_dir() / f"{name}.toml"
    return _parse(resource.read_text(), f"converters/{name}.toml")
