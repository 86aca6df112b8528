"""Larq Zoo's BiRealNet weights (``birealnet_weights.h5``, larq/zoo ``larq_zoo/literature/birealnet.py``) into
bireal-18.

The file is Keras' HDF5 weight format (``model.save_weights``; a whole-model file keeps it under
``model_weights``): attribute ``layer_names`` lists the layers, each group's ``weight_names`` its arrays. HDF5 is
data, read with h5py: nothing in it runs. Zoo's layers carry Keras' generated names (``conv2d_3``,
``quant_conv2d_5``, ``batch_normalization_7``, ``dense``), numbered per kind in the order its code creates them:
stem conv and BN; per block [AvgPool -> 1x1 conv -> BN shortcut when the channels double], the binary 3x3 conv,
its BN; the Dense. edgebnn's bireal-18 creates its layers in that same order, so each kind maps by rank, and every
shape is checked.

Zoo's conventions, which the import keeps: binary convs pad with 0 (Larq's default ``pad_values=0``; Zoo never
sets it) with TensorFlow's "same" placement; BatchNorm eps 1e-3 (Keras' default; edgebnn uses PyTorch's 1e-5), so
the moving variance is imported as var + (1e-3 - 1e-5), the same function; the head ends in a softmax, edgebnn's
model returns the logits before it.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np

from edgebnn.errors import EdgebnnError
from edgebnn.importing.tensors import Mapper, listing
from edgebnn.inputs import check_hdf5, read_regular

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
FLOAT_BYTES_PER_BYTE = 4  # float32 arrays read per byte of the file at most (int8 data widened: 4; each read once)
ZOO_BN_EPSILON = 1e-3
EDGEBNN_BN_EPSILON = 1e-5
KINDS = ("conv2d", "quant_conv2d", "batch_normalization", "dense")
_NAME = re.compile(r"^(?P<kind>[a-z0-9_]+?)(?:_(?P<n>\d+))?$")
DEPTH = 18


def is_hdf5(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read(path: Path, data: bytes | None = None) -> tuple[dict[str, np.ndarray], str]:
    """(``{"layer/weight": array}``, sha256) of a Keras HDF5 weight file (``data``: its bytes, when read already).
    The file is read once, bounded by its size; h5py then parses those bytes, and nothing is read from it before
    :func:`edgebnn.inputs.check_hdf5` has found no link, external storage or dataset larger than the file."""
    import h5py  # lazy: h5py is needed only for Keras .h5 files

    if data is None:
        data = read_regular(path, "weights file", hint="give the Larq Zoo weights file (.h5) itself")
    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            check_hdf5(f, str(path), len(data))
            root = f["model_weights"] if "model_weights" in f else f
            if "layer_names" not in root.attrs:
                raise EdgebnnError(f"{path}: an HDF5 file but not Keras weights (no layer_names attribute)")
            state, total = {}, 0
            for layer in (_text(n) for n in root.attrs["layer_names"]):
                group = root[layer]
                for weight in (_text(n) for n in group.attrs.get("weight_names", [])):
                    short = weight.split("/")[-1].split(":")[0]
                    dataset = group[weight]
                    total += int(getattr(dataset, "size", 0) or 0) * 4
                    if total > FLOAT_BYTES_PER_BYTE * len(data):  # names listing one dataset over and over
                        raise EdgebnnError(f"{path}: its weight names read more than {FLOAT_BYTES_PER_BYTE} float32 "
                                           f"bytes per byte of the file; not Keras weights")
                    state[f"{layer}/{short}"] = np.asarray(dataset, dtype=np.float32)
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0][:160]
        raise EdgebnnError(f"{path}: not a readable Keras HDF5 weight file ({first})") from None
    return state, hashlib.sha256(data).hexdigest()


def layers_by_kind(state) -> dict[str, list[str]]:
    """Zoo's layer names per kind, in creation order (Keras' generated suffix; none = 0)."""
    out: dict[str, list[tuple[int, str]]] = {k: [] for k in KINDS}
    for layer in dict.fromkeys(k.split("/")[0] for k in state):
        match = _NAME.match(layer)
        if match and match["kind"] in out:
            out[match["kind"]].append((int(match["n"] or 0), layer))
    return {k: [name for _, name in sorted(v)] for k, v in out.items()}


def edgebnn_order(stages=(4, 4, 4, 4)) -> dict[str, list[str]]:
    """bireal-18's layers per kind in the order Zoo's code creates its own."""
    convs, binary, bns = ["stem_conv"], [], ["stem_bn"]
    for s, n in enumerate(stages, start=1):
        for i in range(1, n + 1):
            name = f"stage{s}_conv{i}"
            if s > 1 and i == 1:
                convs.append(f"{name}_down_conv")
                bns.append(f"{name}_down_bn")
            binary.append(name)
            bns.append(f"{name}_bn")
    return {"conv2d": convs, "quant_conv2d": binary, "batch_normalization": bns, "dense": ["head_fc"]}


def detect(state) -> str | None:
    kinds = layers_by_kind(state)
    return "bireal-18" if kinds["quant_conv2d"] and kinds["dense"] else None


def facts(state, name: str) -> dict:
    dense = layers_by_kind(state)["dense"]
    kernel = state.get(f"{dense[-1]}/kernel") if dense else None
    if kernel is None or kernel.ndim != 2:
        return {}
    return {"num_classes": int(kernel.shape[1]), "width": float(kernel.shape[0]) / 512}


def fill(m: Mapper, name: str, model) -> None:
    ours, theirs = edgebnn_order(), layers_by_kind(m.state)
    for kind, targets in ours.items():
        found = theirs[kind]
        if len(found) != len(targets):
            raise EdgebnnError(f"Larq Zoo weights: {len(found)} {kind} layers where BiRealNet has {len(targets)} "
                               f"({listing(found)}): not Zoo's BiRealNet")
        for zoo, layer in zip(found, targets, strict=True):
            if kind == "batch_normalization":
                for w in ("gamma", "beta", "moving_mean"):
                    m.put(layer, w, m.take(f"{zoo}/{w}"), f"{zoo}/{w}")
                var = m.take(f"{zoo}/moving_variance")
                m.put(layer, "moving_variance", None if var is None else var + (ZOO_BN_EPSILON - EDGEBNN_BN_EPSILON),
                      f"{zoo}/moving_variance")
            else:
                for w in ("kernel", "bias") if kind == "dense" else ("kernel",):
                    m.put(layer, w, m.take(f"{zoo}/{w}"), f"{zoo}/{w}")
