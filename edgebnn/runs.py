"""Run folders: what ``edgebnn train`` writes and ``convert``/``eval``/``report`` read.

A run folder (default ``runs/<name>-<YYYYmmdd-HHMMSS>``) holds everything needed to understand and resume it::

    run.json          what the run is: name, registry model, recipe, data set, input shape, class names,
                      normalisation, seed, status, epochs done, best top-1, edgebnn version, machine
    recipe.toml       the resolved recipe
    metrics.csv       one row per epoch
    tb/               TensorBoard logs
    checkpoints/last/ and checkpoints/best/
    model.keras       the model of the best epoch by validation top-1 (of the last recipe step), reloadable with
                      edgebnn's custom objects: what ``eval`` and ``convert`` use by default
    model-last.keras  the model after the last epoch (``--checkpoint last``)

``run.json`` says which is which: ``checkpoints = {"best": {"file", "epoch", "val_top1"}, "last": {...}}``. A run
written before the best one was kept has only ``model.keras``, its last epoch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edgebnn import archs
from edgebnn.errors import EdgebnnError, OptionError, option_error
from edgebnn.outputs import probe_folder, write_atomic

RUN_INFO = "run.json"
RECIPE = "recipe.toml"
METRICS = "metrics.csv"
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"
FINAL_MODEL = "model.keras"
LAST_MODEL = "model-last.keras"
CHECKPOINT_CHOICES = ("best", "last")
MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_run_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / RUN_INFO).is_file()


def new_run_dir(name: str, out: str | os.PathLike | None = None, root: str | os.PathLike = "runs") -> Path:
    """Create and return a fresh run folder: ``out`` when given (it must not hold a run already), else
    ``<root>/<name>-<timestamp>`` (with a numeric suffix when two runs start in the same second)."""
    if out is not None:
        path = Path(out)
        if is_run_dir(path):
            raise OptionError("{path} already holds a run; resume it with {resume:={path}} or pick another {out}",
                              path=path)
        path.mkdir(parents=True, exist_ok=True)
        return path
    stem = Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = stem, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            n += 1
            path = stem.with_name(f"{stem.name}-{n}")


def write_info(run_dir: str | os.PathLike, info: dict) -> None:
    """Write ``run.json`` atomically (a crash leaves the old file or the new one, never half of one)."""

    write_atomic(Path(run_dir) / RUN_INFO, json.dumps(info, indent=2, default=_jsonable) + "\n", "run.json")


def update_info(run_dir: str | os.PathLike, **changes) -> dict:
    info = read_info(run_dir)
    info.update(changes)
    write_info(run_dir, info)
    return info


def read_info(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise EdgebnnError(f"{run_dir} is not a run folder (no {RUN_INFO}); give a folder that edgebnn train wrote")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise EdgebnnError(f"{path} is corrupt ({err.__class__.__name__}); the run cannot be read") from None
    if not isinstance(info, dict):
        raise EdgebnnError(f"{path} is corrupt (JSON, but not an object); the run cannot be read")
    return info


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def custom_objects() -> dict:
    """Everything a saved edgebnn model needs to reload: Larq's objects and edgebnn's own layers."""
    # lazy: Larq loads TensorFlow; importing it registers its layers, quantizers and constraints
    import larq  # noqa: F401


    return archs.custom_objects()


def _load_keras(path: Path):
    import tensorflow as tf  # lazy: loads TensorFlow

    try:
        return tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    except EdgebnnError:
        raise
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise EdgebnnError(f"{path} is not a Keras model edgebnn can read ({first})") from None


def checkpoint_of(info: dict, checkpoint: str | None = None) -> dict:
    """Which saved model of a finished run ``checkpoint`` (``best``, ``last``, None: what ``model.keras`` holds)
    names: ``{"which", "file", "epoch", "val_top1"}``."""
    saved = info.get("checkpoints")
    if not saved:  # written before the best model was kept: model.keras is the last epoch
        saved = {"last": {"file": FINAL_MODEL, "epoch": info.get("epochs_done"),
                          "val_top1": info.get("final_val_top1")}}
    which = checkpoint or ("best" if "best" in saved else "last")
    if which not in CHECKPOINT_CHOICES:
        raise EdgebnnError(f"unknown checkpoint {which!r}; use one of: {', '.join(CHECKPOINT_CHOICES)}")
    if which not in saved:
        raise OptionError("run {name} keeps no {which} model (it predates edgebnn keeping the best epoch); its "
                          "model.keras is the last epoch: use {checkpoint:=last}", name=info.get("name"), which=which)
    return {"which": which, **saved[which]}


def model_file(path: str | os.PathLike, checkpoint: str | None = None) -> Path:
    """The model file of a run folder (``checkpoint``: best, the default, or last), or ``path`` itself when it is
    a model file or a SavedModel folder."""
    path = Path(path)
    if not path.exists():
        raise EdgebnnError(f"{path} does not exist; give a run folder (runs/NAME-TIME) or a saved model "
                           f"({', '.join(MODEL_SUFFIXES)} or a SavedModel folder)")
    if path.is_dir():
        if is_run_dir(path):
            info = read_info(path)
            if not (path / FINAL_MODEL).is_file():
                raise EdgebnnError(f"run {path} has no final model yet (status: {info.get('status', 'unknown')}); "
                                   f"resume it with edgebnn train --resume {path}")
            return path / checkpoint_of(info, checkpoint)["file"]
        if (path / "saved_model.pb").is_file():
            return path
        raise EdgebnnError(f"{path} is neither a run folder nor a SavedModel folder")
    if checkpoint:
        raise OptionError("{checkpoint} picks a model within a run folder; {path} is a model file", path=path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise EdgebnnError(f"{path} is not a Keras model file (expected {', '.join(MODEL_SUFFIXES)})")
    if not path.is_file():  # a FIFO would block Keras' read
        raise EdgebnnError(f"{path} is not a regular file (a FIFO, socket or device): give a saved model file")
    return path


def load_model(path: str | os.PathLike, checkpoint: str | None = None):
    """``(model, info)`` from a run folder (``checkpoint``: best, the default, or last) or a saved model file.

    For a run folder ``info`` is its ``run.json`` with ``checkpoint`` set to the model loaded
    (:func:`checkpoint_of`); for a bare model it holds what the model itself tells: its name, input shape and
    number of outputs, with no data set.
    """
    path = Path(path)
    file = model_file(path, checkpoint)
    model = _load_keras(file)
    if is_run_dir(path):
        info = read_info(path)
        info.setdefault("run_dir", str(path))
        info["checkpoint"] = checkpoint_of(info, checkpoint)
        return model, info
    return model, {
        "name": path.stem,
        "model": None,
        "dataset": None,
        "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "class_names": None,
        "mean": None,
        "std": None,
        "model_file": str(file),
    }


def check_run_folder(path: str | os.PathLike, what: str = "{out}") -> Path:
    """A new run folder: not a file, not an existing run (continued with ``resume``, never overwritten), writable.
    ``what`` names the folder in messages, as in :mod:`edgebnn.outputs`."""

    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise option_error(what + " {p} is a file; give a folder for the run", p=p)
    if is_run_dir(p):
        raise option_error(what + " {p} already holds a run; resume it with {resume:={p}} or pick another " + what,
                           p=p)
    probe_folder(p, what)
    return p
