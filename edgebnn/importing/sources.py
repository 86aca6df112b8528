"""What a checkpoint file holds, whatever wrote it: tensors by name, the scalars saved beside them, its format.

- PyTorch ``.pth`` / ``.pth.tar`` (zip or legacy container): :func:`edgebnn.torch_checkpoint.read`, which runs no
  code and needs no PyTorch. ``nn.DataParallel`` prefixes every key with ``module.``: stripped here.
- Larq Zoo's Keras HDF5 weights: :mod:`edgebnn.importing.zoo`.
The accuracy a checkpoint reports is its trainer's ``best_top1_acc`` (ReActNet, Bi-Real), ``best_prec1`` (SD-BNN's
CIFAR trainers) or ``best_acc1`` (the bnn library): kept as stored, never as measured here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgebnn import torch_checkpoint
from edgebnn.errors import EdgebnnError
from edgebnn.importing import zoo

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
            value = self.meta.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return {"value": float(value), "key": key, "note": NOT_MEASURED}
        return None


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


def read(path: str | Path) -> Source:

    path = Path(path)
    if not path.exists():
        raise EdgebnnError(f"{path}: no such file; give a checkpoint (.pth.tar, .pth) or Larq Zoo weights (.h5)")
    if path.is_dir():
        raise EdgebnnError(f"{path} is a folder; give the checkpoint file itself (.pth.tar, .pth, .h5)")
    if zoo.is_hdf5(path):
        state, sha = zoo.read(path)
        return Source(path, state, {}, "larq zoo h5", sha)
    ckpt = torch_checkpoint.read(path)
    state, prefixed = strip_data_parallel(ckpt.state)
    return Source(path, state, dict(ckpt.meta), f"pytorch {ckpt.container}", ckpt.sha256, prefixed)
