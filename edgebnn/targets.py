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

from edgebnn.errors import EdgebnnError


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


def _parse(text: str, where: str) -> Target:
    try:
        raw = tomllib.loads(text)
        bench, checks = raw.get("benchmark", {}), raw.get("checks", {})
        return Target(
            name=str(raw["name"]), description=str(raw.get("description", "")),
            lce_target=str(raw["lce_target"]), machines=tuple(raw.get("machines", [])),
            elf_machine=str(raw.get("elf_machine", "")), runner=str(raw.get("runner", "")),
            min_glibc=str(raw.get("min_glibc", "")), threads=tuple(int(t) for t in bench.get("threads", [1])),
            num_runs=int(bench.get("num_runs", 50)), warmup_runs=int(bench.get("warmup_runs", 1)),
            use_xnnpack=bool(bench.get("use_xnnpack", True)), governor=str(checks.get("governor", "")),
            warn_if_throttled=bool(checks.get("warn_if_throttled", False)), path=where)
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as err:
        raise EdgebnnError(f"target profile {where} is invalid: {err}") from None


def load(name: str) -> Target:
    """A target by name (``arm64``, ``armv7``, ``x86_64``, ``xcore``) or by path to a profile file."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise EdgebnnError(f"target profile {name} does not exist")
        return _parse(path.read_text(), str(path))
    if name not in names():
        raise EdgebnnError(f"unknown target {name!r}; use one of: {', '.join(names())} (or a .toml profile)")
    resource = _profiles_dir() / f"{name}.toml"
    return _parse(resource.read_text(), f"converters/{name}.toml")
