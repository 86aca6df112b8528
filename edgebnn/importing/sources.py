"""What a checkpoint file holds, whatever wrote it: tensors by name, the scalars saved beside them, its format.

- PyTorch ``.pth`` / ``.pth.tar`` (zip or legacy container): :func:`edgebnn.torch_checkpoint.read`, which runs no
  code and needs no PyTorch. ``nn.DataParallel`` prefixes every key with ``module.``: stripped here.
- Larq Zoo's Keras HDF5 weights: :mod:`edgebnn.importing.zoo`.
The accuracy a checkpoint reports is its trainer's ``best_top1_acc`` (ReActNet, Bi-Real), ``best_prec1`` (SD-BNN's
CIFAR trainers) or ``best_acc1`` (the bnn library): kept as stored, never as measured here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebnn import torch_checkpoint
from edgebnn.errors import EdgebnnError
from edgebnn.importing import zoo
from edgebnn.inputs import read_regular

DATA_PARALLEL = "module."
ACCURACY_KEYS = ("best_top1_acc", "best_prec1", "best_acc1")
NOT_MEASURED = "reported by the checkpoint, not measured here"


@dataclass(frozen=True)
class Source:
    path: Path
    state: dict[str, np.ndarray]
    meta: dict
    format: str  # "pytorch zip" | "pytorch legacy" | "larq zoo h5"
    sha256: str
    prefixed: bool = False  # keys carried DataParallel's "module."

    @property
    def is_zoo(self) -> bool:
        return self.format == "larq zoo h5"

    def reported_top1(self) -> dict | None:
        """The checkpoint's own best accuracy as stored, labelled as the checkpoint's."""
        for key in ACCURACY_KEYS:
            value = finite(self.meta.get(key))
            if value is not None:
                return {"value": value, "key": key, "note": NOT_MEASURED}
        return None


def finite(value) -> float | None:
    """``value`` as a finite float, or None: not a number, a bool, NaN, infinite or beyond a float (10**400)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def strip_data_parallel(state: dict) -> tuple[dict, bool]:
    """``state`` without DataParallel's ``module.`` prefix, and whether it had one."""
    if not any(k.startswith(DATA_PARALLEL) for k in state):
        return state, False
    out = {}
    for key, value in state.items():
        short = key.removeprefix(DATA_PARALLEL)
        if short in out:
            raise EdgebnnError(f"checkpoint holds both {short} and {DATA_PARALLEL}{short}: which to import is unclear")
        out[short] = value
    return out, True


HINT = "give a checkpoint file (.pth.tar, .pth) or Larq Zoo weights (.h5)"


def read(path: str | Path) -> Source:
    """The checkpoint at ``path``, read once and no further than its size: a folder, FIFO or device (``/dev/zero``,
    a symlink to it) is named as such before anything opens it."""
    path = Path(path)
    data = read_regular(path, "checkpoint", hint=HINT, limit=torch_checkpoint.FILE_LIMIT)
    if data.startswith(zoo.HDF5_SIGNATURE):
        state, sha = zoo.read(path, data)
        return Source(path, state, {}, "larq zoo h5", sha)
    ckpt = torch_checkpoint.read(path, data)
    state, prefixed = strip_data_parallel(ckpt.state)
    return Source(path, state, dict(ckpt.meta), f"pytorch {ckpt.container}", ckpt.sha256, prefixed)
