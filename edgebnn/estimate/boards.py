"""Boards an estimate can be made for, with their published latencies (``boards.toml``, package data)."""

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


def load() -> dict[str, Board]:
    raw = tomllib.loads(resources.files("edgebnn.estimate").joinpath("boards.toml").read_text())
    return {name: Board(name, b["label"], b["cpu"], list(b["threads"]), b["source"],
                        {int(t): dict(ms) for t, ms in b["ms"].items()})
            for name, b in raw.items()}


def get(name: str) -> Board:
    boards = load()
    if name not in boards:
        raise EdgebnnError(f"unknown board {name!r}: one of {', '.join(boards)}")
    return boards[name]
