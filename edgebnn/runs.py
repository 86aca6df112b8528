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

:func:`load_model` is the one place edgebnn loads a model, and it runs no code from the file: ``.keras`` only, checked
(:func:`check_keras`) and loaded in Keras' safe mode. A Keras HDF5 model or a SavedModel folder is refused
with how to convert it: tf-keras 2.16 loads both ignoring ``safe_mode``, running any ``Lambda`` layer's code.
"""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import stat
import tempfile
import time
import zipfile
from pathlib import Path

from edgebnn import archs, runlock
from edgebnn.errors import EdgebnnError, OptionError, option_error, printable
from edgebnn.inputs import check_hdf5, read_regular
from edgebnn.outputs import check_name_length, probe_folder, write_atomic

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
RUN_INFO = "run.json"
INFO_LIMIT = 64 << 20  # bytes of run.json edgebnn reads (one is a few KB)
RECIPE = "recipe.toml"
METRICS = "metrics.csv"
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"
FINAL_MODEL = "model.keras"
LAST_MODEL = "model-last.keras"
CHECKPOINT_CHOICES = ("best", "last")
MODEL_SUFFIXES = (".keras",)
LEGACY_SUFFIXES = (".h5", ".hdf5")  # Keras' HDF5 models: refused (their Lambda layers run code), named as such


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


def write_status_in_place(run_dir: str | os.PathLike, status: str, failure: str | None = None) -> bool:
    """Overwrite ``run.json``'s bytes with the same run ending in ``status``, no longer than the file is now (the
    failure cut, the JSON compact, spaces after it): a file rewritten within its own blocks needs no free space, so
    a run ended by a full disk (where :func:`write_info`'s new file cannot be written) still says how it ended.
    Not atomic: only for when the atomic write failed. Returns whether it was written."""
    path = Path(run_dir) / RUN_INFO
    try:
        info = read_info(run_dir)
        size = path.stat().st_size
    except (EdgebnnError, OSError):
        return False
    new = {k: v for k, v in info.items() if k != "failure"}
    new["status"] = status
    data = json.dumps(new, default=_jsonable, separators=(",", ":")).encode()
    cut = len(failure or "")
    while cut > 0:  # as much of the failure as fits
        longer = json.dumps({**new, "failure": failure[:cut]}, default=_jsonable, separators=(",", ":")).encode()
        if len(longer) <= size:
            data = longer
            break
        cut -= len(longer) - size
    if len(data) > size:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        os.pwrite(fd, data + b" " * (size - len(data)), 0)  # JSON allows trailing white space
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _training_is_gone(run_dir: Path) -> bool:
    """Whether no process trains ``run_dir`` any more: no ``run.lock``, or one naming a pid of this host that is not
    running (what :class:`edgebnn.runlock.RunLock` takes over as stale). A lock of another host, or one that cannot
    be read, cannot tell: False."""
    lock = run_dir / runlock.LOCK
    try:
        if not lock.exists():
            return True
        if not lock.is_file():
            return False
        held = json.loads(lock.read_bytes()[:4096])
    except (OSError, ValueError):
        return False
    if not isinstance(held, dict) or type(held.get("pid")) is not int:
        return False
    return held.get("host") == socket.gethostname() and not runlock.pid_alive(held["pid"])


def read_info(run_dir: str | os.PathLike) -> dict:
    """``run.json`` of ``run_dir``. A run recorded as ``running`` whose training process is gone (its lock free: a
    kill -9, a power cut, a disk too full to record the end) reads ``interrupted``."""
    info = _read_info(run_dir)
    if info.get("status") == "running" and _training_is_gone(Path(run_dir)):
        info["status"] = "interrupted"
    return info


def _read_info(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise EdgebnnError(f"{run_dir} is not a run folder (no {RUN_INFO}); give a folder that edgebnn train wrote")
    data = read_regular(path, "run file", hint="give a folder that edgebnn train wrote", limit=INFO_LIMIT)
    try:
        info = json.loads(data.decode("utf-8"))
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


# What a .keras file's config may name: Keras', Larq's and edgebnn's own layers and functions. Any other module
# would be imported by Keras' loader, even in safe mode; Lambda layers hold code, and the TF-op layers call any
# TensorFlow function (tf.io.write_file) with arguments from the file.
KERAS_MODULES = ("keras", "tf_keras", "larq", "edgebnn.archs")  # and their submodules; not builtins: eval, open
CODE_LAYERS = ("Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda")
KERAS_CONFIG = "config.json"
KERAS_WEIGHTS = "model.weights.h5"
CONFIG_LIMIT = 64 << 20  # bytes of a .keras file's config.json: an edgebnn model's is under 2 MB
MODEL_LIMIT = 1 << 33  # bytes of a .keras file read: weights up to archs.MAX_MODEL_BYTES (2 GiB) and an optimizer's
CONVERT_HINT = ("re-save it as .keras from code you trust: tf.keras.models.load_model(PATH).save('model.keras'), or "
                "use the run folder edgebnn wrote")


def _refuse_code(config, where: str) -> None:
    """Refuse a ``.keras`` config naming a layer that runs code or anything outside :data:`KERAS_MODULES`."""
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            name = node.get("class_name")
            if name in CODE_LAYERS:
                raise EdgebnnError(f"{where} holds a {name} layer, which runs code from the file: edgebnn loads no "
                                   f"code from a model file; rebuild the model without it")
            module = node.get("module")
            if module is not None and not (isinstance(module, str) and any(
                    module == m or module.startswith(m + ".") for m in KERAS_MODULES)):
                raise EdgebnnError(f"{where} names {printable(str(module)[:80])!r} ({printable(str(name)[:80])}), "
                                   f"outside Keras, Larq and edgebnn: edgebnn loads nothing else from a model file")
            stack.extend(node.values())


def check_keras(data: bytes, where) -> None:
    """The bytes of a ``.keras`` file that Keras' safe mode loads without running anything from it: a zip archive
    (Keras would take any other file as a legacy HDF5 or SavedModel model, whose Lambda layers run), a config
    naming no code layer and nothing outside :data:`KERAS_MODULES`, and weights that read nothing outside the file
    (:func:`edgebnn.inputs.check_hdf5`). ``where`` names the file in messages."""
    import h5py  # lazy: h5py is needed only for model files

    if data.startswith(HDF5_SIGNATURE):
        raise EdgebnnError(f"{where} is a Keras HDF5 (.h5) model, whose loading runs any Lambda layer's code from "
                           f"the file: edgebnn loads .keras files only; {CONVERT_HINT}")
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise EdgebnnError(f"{where} is not a Keras model edgebnn can read (a .keras file is a zip archive); "
                           f"{CONVERT_HINT}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo(KERAS_CONFIG)
            if info.file_size > CONFIG_LIMIT:
                raise EdgebnnError(f"{where}: its {KERAS_CONFIG} is {info.file_size} bytes, over the "
                                   f"{CONFIG_LIMIT} edgebnn reads")
            _refuse_code(json.loads(archive.read(info)), str(where))
            if KERAS_WEIGHTS in archive.namelist():
                weights = archive.getinfo(KERAS_WEIGHTS)
                with archive.open(weights) as raw, h5py.File(raw, "r") as h5:
                    check_hdf5(h5, f"{where} ({KERAS_WEIGHTS})", weights.file_size)
    except EdgebnnError:
        raise
    except (KeyError, OSError, ValueError, zipfile.BadZipFile, RecursionError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise EdgebnnError(f"{where} is not a Keras model edgebnn can read ({printable(first)})") from None


def _load_keras(path: Path):
    """The model of a ``.keras`` file: read once (a regular file, at most :data:`MODEL_LIMIT` bytes), checked
    (:func:`check_keras`), and those same bytes, copied into a private folder, loaded in Keras' safe mode (a
    file swapped after the check is never what Keras reads)."""
    import tensorflow as tf  # lazy: loads TensorFlow

    hint = "give a .keras file or a run folder"
    data = read_regular(path, "model file", hint=hint, limit=MODEL_LIMIT)
    check_keras(data, path)
    try:
        with tempfile.TemporaryDirectory(prefix="edgebnn-model-") as private:
            copy = Path(private) / "model.keras"
            copy.write_bytes(data)
            return tf.keras.models.load_model(copy, custom_objects=custom_objects(), compile=False, safe_mode=True)
    except EdgebnnError:
        raise
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise EdgebnnError(f"{path} is not a Keras model edgebnn can read ({printable(first)})") from None


def checkpoint_of(info: dict, checkpoint: str | None = None) -> dict:
    """Which saved model of a finished run ``checkpoint`` (``best``, ``last``, None: what ``model.keras`` holds)
    names: ``{"which", "file", "epoch", "val_top1"}``."""
    saved = info.get("checkpoints")
    if not saved:  # written before the best model was kept: model.keras is the last epoch
        saved = {"last": {"file": FINAL_MODEL, "epoch": info.get("epochs_done"),
                          "val_top1": info.get("final_val_top1")}}
    if not isinstance(saved, dict) or not all(isinstance(v, dict) for v in saved.values()):
        raise EdgebnnError(f"run {printable(str(info.get('name'))[:80])}: its {RUN_INFO} checkpoints entry is not "
                           f"a mapping of best/last to models: the run folder is corrupt")
    which = checkpoint or ("best" if "best" in saved else "last")
    if which not in CHECKPOINT_CHOICES:
        raise EdgebnnError(f"unknown checkpoint {which!r}; use one of: {', '.join(CHECKPOINT_CHOICES)}")
    if which not in saved and checkpoint is None:  # none was asked for: the file, not the user, is wrong
        raise EdgebnnError(f"run {printable(str(info.get('name'))[:80])}: its {RUN_INFO} checkpoints entry names "
                           f"neither best nor last: the run folder is corrupt")
    if which not in saved:
        raise OptionError("run {name} keeps no {which} model (it predates edgebnn keeping the best epoch); its "
                          "model.keras is the last epoch: use {checkpoint:=last}", name=info.get("name"), which=which)
    return {"which": which, **saved[which]}


def model_file(path: str | os.PathLike, checkpoint: str | None = None) -> Path:
    """The model file of a run folder (``checkpoint``: best, the default, or last), or ``path`` itself when it is
    a ``.keras`` file; a Keras HDF5 model or a SavedModel folder is refused in one line that says how to convert it
    (loading either runs the code of any Lambda layer in it)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # the kind first: a FIFO or device is named, never opened
    except OSError as err:
        if err.errno == errno.ENAMETOOLONG:
            raise EdgebnnError(f"{str(path)[:60]}... has a name longer than the file system allows; give a run "
                               f"folder (runs/NAME-TIME) or a saved model (.keras)") from None
        if err.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise EdgebnnError(f"{path}: cannot read it ({err.strerror}); give a run folder or a saved model") from None
        raise EdgebnnError(f"{path} does not exist; give a run folder (runs/NAME-TIME) or a saved model (.keras)"
                           ) from None
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise EdgebnnError(f"{path} is not a regular file (a FIFO, socket or device): give a run folder or a saved "
                           f"model file (.keras)")
    if stat.S_ISDIR(mode):
        if is_run_dir(path):
            info = read_info(path)
            if not (path / FINAL_MODEL).is_file():
                raise EdgebnnError(f"run {path} has no final model yet (status: {info.get('status', 'unknown')}); "
                                   f"resume it with edgebnn train --resume {path}")
            name = checkpoint_of(info, checkpoint).get("file")
            if name not in (FINAL_MODEL, LAST_MODEL):
                raise EdgebnnError(f"{path / RUN_INFO} names model file {printable(str(name)[:80])!r}, not "
                                   f"{FINAL_MODEL} or {LAST_MODEL}: the run folder is corrupt")
            return path / name
        if (path / "saved_model.pb").exists():
            raise EdgebnnError(f"{path} is a SavedModel folder, whose loading runs code from the files (a Lambda "
                               f"layer's): edgebnn loads .keras files only; {CONVERT_HINT}")
        raise EdgebnnError(f"{path} is a folder, but not a run folder (no {RUN_INFO}): give a run folder that edgebnn "
                           f"train or import wrote, or a .keras file")
    if checkpoint:
        raise OptionError("{checkpoint} picks a model within a run folder; {path} is a model file", path=path)
    if path.suffix.lower() in LEGACY_SUFFIXES:
        raise EdgebnnError(f"{path} is a Keras HDF5 (.h5) model, whose loading runs any Lambda layer's code from "
                           f"the file: edgebnn loads .keras files only; {CONVERT_HINT}")
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
    check_name_length(p, what)  # before any stat: a name over the limit is ENAMETOOLONG there
    if p.exists() and not p.is_dir():
        raise option_error(what + " {p} is a file; give a folder for the run", p=p)
    if is_run_dir(p):
        raise option_error(what + " {p} already holds a run; resume it with {resume:={p}} or pick another " + what,
                           p=p)
    probe_folder(p, what)
    return p
