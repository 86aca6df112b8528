"""Typed records of what passes between the stages: a run, a conversion, a latency result, a report and its rows.

Each stage still writes what it wrote before (``run.json``, ``<file>.tflite.json``, a row of ``results.db``,
``results.json``); a record is that same mapping read into named, typed fields. ``record.data`` keeps the whole
mapping and ``record.to_dict()`` gives it back, so a record serialises to JSON or SQLite exactly as the stage
did; ``Record.from_dict(mapping)`` reads one back. Fields absent from a mapping are None.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgebnn import runs
from edgebnn.errors import EdgebnnError


def _pick(cls, mapping: Mapping, **given) -> dict:
    """The record's own fields from ``given`` first, then from ``mapping`` by name (None when missing)."""
    names = [f.name for f in dataclasses.fields(cls) if f.name != "data"]
    return {name: given[name] if name in given else mapping.get(name) for name in names}


@dataclasses.dataclass(frozen=True)
class Record:
    """A stage's output mapping with typed access to the fields a caller uses most."""

    data: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    def to_dict(self) -> dict:
        """The mapping as the stage wrote it (JSON- and SQLite-ready)."""
        return dict(self.data)


@dataclasses.dataclass(frozen=True)
class Run(Record):
    """A run folder written by ``train`` or ``import`` (``run.json``): ``val_top1`` is its kept checkpoint's."""

    folder: Path | None = None
    name: str | None = None
    model: str | None = None
    status: str | None = None
    dataset: str | None = None
    val_top1: float | None = None

    @classmethod
    def from_folder(cls, folder: str | Path) -> Run:
        info = runs.read_info(folder)
        try:
            kept = runs.checkpoint_of(info).get("val_top1")
        except EdgebnnError:  # a run still training, or one that keeps no checkpoint: no accuracy yet
            kept = None
        return cls(data=info, **_pick(cls, info, folder=Path(folder), val_top1=kept))


@dataclasses.dataclass(frozen=True)
class Conversion(Record):
    """A conversion report (``<file>.tflite.json``): what became binary, the size, and the proof on this host."""

    flatbuffer: Path | None = None
    target: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    binary_convs: int | None = None
    lce_bconv2d: int | None = None
    binary_converted: int | None = None
    compression: float | None = None
    max_abs_diff: float | None = None
    top1_agreement: float | None = None
    tflite_top1: float | None = None
    problems: tuple[str, ...] = ()
    precision: str = "float"  # "int8": the real-valued convs as int8 islands (its proof: top-1 agreement)

    @classmethod
    def from_dict(cls, report: Mapping) -> Conversion:
        conversion, check = report.get("conversion") or {}, report.get("check") or {}
        return cls(data=report, **_pick(cls, report, flatbuffer=Path(report["output"]),
                                        target=(report.get("target") or {}).get("name"),
                                        binary_convs=conversion.get("binary_convs"),
                                        lce_bconv2d=conversion.get("lce_bconv2d"),
                                        binary_converted=conversion.get("binary_converted"),
                                        compression=(report.get("size") or {}).get("compression"),
                                        max_abs_diff=check.get("max_abs_diff"),
                                        top1_agreement=check.get("top1_agreement"),
                                        tflite_top1=check.get("tflite_top1"),
                                        precision=report.get("precision") or "float",
                                        problems=tuple(conversion.get("problems") or ())))


@dataclasses.dataclass(frozen=True)
class Result(Record):
    """One latency result (a row of ``results.db``): ``kind`` says whether it was measured on a board, measured on
    this host, or estimated, ``status`` whether it was measured now or already stored."""

    status: str | None = None
    model_name: str | None = None
    model_sha256: str | None = None
    device: str | None = None
    kind: str | None = None
    threads: int | None = None
    median_ms: float | None = None
    min_ms: float | None = None
    p90_ms: float | None = None
    std_ms: float | None = None
    machine: str | None = None
    flags: tuple[str, ...] = ()
    cpu: str | None = None  # an estimate's QEMU core (cortex-a72 for the Pi 4B); a measurement's machine CPU
    precision: str | None = None  # the flatbuffer's: float or int8

    @classmethod
    def from_dict(cls, row: Mapping) -> Result:
        return cls(data=row, **_pick(cls, row, flags=tuple(row.get("flags") or ())))


@dataclasses.dataclass(frozen=True)
class ReportRow(Record):
    """One row of the report (``results.json``): a latency result joined with its conversion, run and twin."""

    model: str | None = None
    device: str | None = None
    latency_kind: str | None = None
    threads: int | None = None
    median_ms: float | None = None
    flatbuffer_mb: float | None = None
    val_top1: float | None = None
    twin_top1: float | None = None
    gap_to_float: float | None = None
    precision: str | None = None
    cpu: str | None = None

    @classmethod
    def from_dict(cls, row: Mapping) -> ReportRow:
        return cls(data=row, **_pick(cls, row))


@dataclasses.dataclass(frozen=True)
class Report(Record):
    """The written report: its folder, page and plots, and its rows."""

    folder: Path | None = None
    index: Path | None = None
    plots: tuple[Path, ...] = ()
    rows: tuple[ReportRow, ...] = ()

    @classmethod
    def from_dict(cls, written: Mapping) -> Report:
        index = Path(written["index"])
        return cls(data=written, folder=index.parent, index=index, plots=tuple(Path(p) for p in written["plots"]),
                   rows=tuple(ReportRow.from_dict(r) for r in written["rows"]))
