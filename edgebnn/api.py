"""The front door: the whole flow from Python, one call per stage, each returning a typed record.

    import edgebnn

    run = edgebnn.train("bireal-18", dataset="digits", epochs=1, out="runs/bireal")
    conversion = edgebnn.convert(run.folder, target="arm64")
    results = edgebnn.profile([conversion.flatbuffer], devices=["local"], db="results.db")
    report = edgebnn.report(db="results.db", runs_dirs=["runs"], out="report")

Every option is a keyword. ``edgebnn.build`` gives the Keras model of an architecture; ``edgebnn.import_checkpoint``
turns a paper's published checkpoint into a run folder that ``convert`` and ``train(weights=...)`` take. Errors a
caller can cause raise :class:`edgebnn.EdgebnnError` with one line naming the parameter. The command line calls the
same stages (``edgebnn train|convert|profile|report``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from edgebnn import archs, conversion, importing, profiling, reporting, training
from edgebnn.records import Conversion, Report, Result, Run

PathLike = str | os.PathLike


def build(model: str, *, input_size: int | None = None, num_classes: int | None = None, width: float = 1.0,
          padding: str = "lce", real: bool = False):
    """The Keras model of architecture ``model`` (``edgebnn models`` lists them): the paper's input size and classes
    unless given; ``real``: its real-valued twin (no binarization); ``padding``: "lce", "official" or "zoo"."""
    shape = (input_size, input_size, 3) if input_size else None
    return archs.build(model, input_shape=shape, num_classes=num_classes, width=width, padding=padding,
                       binary_weights=not real, binary_activations=not real)


def train(recipe: str | None = None, *, dataset: str | None = None, epochs: int | None = None,
          batch_size: int | None = None, out: PathLike | None = None, seed: int = 0, overrides: Sequence[str] = (),
          real: bool = False, weights: PathLike | None = None, resume: PathLike | None = None,
          strategy: str | None = None, progress: bool = False) -> Run:
    """Train recipe ``recipe`` (a name from ``models/`` or a ``.toml`` path) with its paper's steps; ``weights``:
    fine-tune from a run folder or model file; ``resume``: continue a run folder; ``overrides``: ``KEY=VALUE``
    recipe settings; ``real``: the real-valued twin. Returns the run."""
    folder = training.train(recipe, dataset=dataset, epochs=epochs, batch_size=batch_size, out=out, seed=seed,
                            sets=tuple(overrides), resume=resume, strategy=strategy, real=real or None,
                            progress=progress, verbose=progress, summary=progress, weights=weights)
    return Run.from_folder(folder)


def import_checkpoint(path: PathLike, *, model: str | None = None, out: PathLike | None = None,
                      width: float | None = None, num_classes: int | None = None, input_size: int | None = None,
                      step: int | None = None) -> Run:
    """A paper's published checkpoint (PyTorch ``.pth``/``.pth.tar`` or Larq Zoo ``.h5``) as a run folder, its
    tensors mapped exactly; ``model`` when the layout is not recognised on its own."""
    return Run.from_folder(importing.import_checkpoint(path, model=model, out=out, width=width,
                                                      num_classes=num_classes, input_size=input_size, step=step))


def convert(source: PathLike | Run, *, target: str = "arm64", out: PathLike | None = None, check_samples: int = 100,
            baselines: Iterable[str] = (), dataset: str | None = None, checkpoint: str | None = None,
            fold: bool = True, verify_on: str | None = None, runner: PathLike | None = None,
            progress: bool = False, precision: str = "float", min_agreement: float = 0.99) -> Conversion:
    """Convert a run (or saved Keras model) into an LCE flatbuffer for ``target``, prove it on ``check_samples``
    images (and on device ``verify_on``), write it with its report; ``baselines``: "float", "int8";
    ``precision="int8"``: the real-valued convs as int8 islands, proved by top-1 agreement >= ``min_agreement``."""
    source = source.folder if isinstance(source, Run) else source
    report = conversion.convert(source, target=target, output=out, check_samples=check_samples,
                                baselines=tuple(baselines), dataset=dataset, progress=progress,
                                checkpoint=checkpoint, fold=fold, verify_on=verify_on,
                                runner=str(runner) if runner else None, precision=precision,
                                min_agreement=min_agreement)
    return Conversion.from_dict(report)


def profile(models: Iterable[PathLike | Conversion], *, devices: Sequence[str] = ("local",),
            threads: Sequence[int] | None = None, runs: int | None = None, warmup: int | None = None,
            db: PathLike = profiling.DEFAULT_DB, force: bool = False, runner: PathLike | None = None,
            target: str | None = None, timeout: float = 600, devices_file: PathLike | None = None,
            progress: bool = False) -> list[Result]:
    """Time each flatbuffer on each device (``local``, ``qemu:aarch64`` for an estimate counted on each board's own
    core, ``qemu:aarch64:CPU`` on QEMU core CPU, a board from the devices file) at each thread count, ``runs``
    measured inferences each; every result is stored in ``db`` with its ``cpu`` and ``precision``."""
    files = [str(m.flatbuffer if isinstance(m, Conversion) else m) for m in models]
    rows = profiling.profile(files, devices=tuple(devices), threads=list(threads) if threads else None, runs=runs,
                             warmup=warmup, db=str(db), force=force, runner=str(runner) if runner else None,
                             target=target, timeout=timeout, devices_file=devices_file, progress=progress)
    return [Result.from_dict(row) for row in rows]


def report(*, db: PathLike = profiling.DEFAULT_DB, runs_dirs: Sequence[PathLike] = ("runs",), out: PathLike = "report",
           budget_ms: float | None = None, board: str | None = None) -> Report:
    """Join the stored results with their conversions and runs, and write the page, plots and ``results.json``
    into ``out``; with ``budget_ms`` and ``board``, the most accurate model within the budget is named on it."""
    rows = reporting.collect(db, tuple(str(r) for r in runs_dirs))
    answer = reporting.best_under_budget(rows, budget_ms, board) if budget_ms is not None and board else None
    written = reporting.write(db, Path(out), tuple(str(r) for r in runs_dirs), rows=rows,
                              budget=reporting.format_budget(answer) if answer else None)
    return Report.from_dict(written)
