"""Boards an estimate can be made for, with their published latencies and the QEMU core each is counted on
(``boards.toml``, package data). A board with no published latencies is uncalibrated: instructions only."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources

from edgebnn.errors import EdgebnnError


@dataclass
class Board:
    name: str
    label: str
    cpu: str
    threads: list[int]
    source: str
    published: dict[int, dict[str, float]]  # threads -> model -> ms
    core: str = "cortex-a72"  # the QEMU CPU model (-cpu) its counts run under

    @property
    def calibrated(self) -> bool:
        """Whether published figures exist to fit it to (else its estimates are instructions only)."""
        return any(self.published.values())


def cores(boards: dict[str, Board] | None = None) -> dict[str, list[str]]:
    """QEMU core -> the boards counted on it (one count serves them all)."""
    out: dict[str, list[str]] = {}
    for b in (boards or load()).values():
        out.setdefault(b.core, []).append(b.name)
    return out


def load() -> dict[str, Board]:
    raw = tomllib.loads(resources.files("edgebnn.estimate").joinpath("boards.toml").read_text())
    return {name: Board(name, b["label"], b["cpu"], list(b["threads"]), b["source"],
                        {int(t): dict(ms) for t, ms in b.get("ms", {}).items()}, b["core"])
            for name, b in raw.items()}


def get(name: str) -> Board:
    boards = load()
    if name not in boards:
        raise EdgebnnError(f"unknown board {name!r}: one of {', '.join(boards)}")
    return boards[name]
