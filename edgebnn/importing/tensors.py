"""The pieces every key map shares: PyTorch tensors into Keras weights, each used exactly once.

Layouts (PyTorch -> Keras):
- conv kernel ``(O, I, kh, kw)``, or a binary conv's flat ``(O*I*kh*kw, 1)`` (Bi-Real's and ReActNet's
  ``HardBinaryConv.weights``, read as ``view(O, I, kh, kw)``) -> ``(kh, kw, I, O)``;
- BatchNorm ``weight, bias, running_mean, running_var`` (+ ``num_batches_tracked``, a counter the forward pass
  never reads) -> ``gamma, beta, moving_mean, moving_variance`` (eps 1e-5 in both);
- Linear ``weight (out, in), bias`` -> Dense ``kernel = weight.T, bias``;
- PReLU ``weight (C,)`` -> ``alpha (1, 1, C)`` (shared over height and width);
- ReActNet's ``LearnableBias.bias (1, C, 1, 1)`` computes x + b: a threshold or shift written x - t takes t = -b.

:class:`Mapper` is the ledger: a family's key map takes checkpoint tensors by name and puts arrays into named Keras
weights; :meth:`Mapper.apply` refuses, in one line naming the keys, a tensor never taken, a key the map asked for
that the checkpoint lacks, a Keras weight never set or set twice, and any shape that does not fit.
"""

from __future__ import annotations

import numpy as np

from edgebnn import archs
from edgebnn.errors import EdgebnnError, printable

SHOWN = 4  # keys named in an error before "and N more"


def listing(keys, shown: int = SHOWN) -> str:
    """``a, b, c, d and 7 more``."""
    keys = list(keys)
    head = ", ".join(keys[:shown])
    return head + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """``(O, I, kh, kw)`` -> ``(kh, kw, I, O)``."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def dense_kernel(w: np.ndarray) -> np.ndarray:
    """Linear ``(out, in)`` -> Dense ``(in, out)``."""
    return np.ascontiguousarray(w.T)


def channel_vector(b: np.ndarray) -> np.ndarray:
    """``(1, C, 1, 1)`` or ``(C,)`` -> ``(C,)``."""
    return b.reshape(-1)


class Mapper:
    """Checkpoint tensors (``state``) into the weights of ``model``, each exactly once."""

    def __init__(self, state: dict[str, np.ndarray], model):
        from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

        self.state = state
        self.taken: set[str] = set()
        self.missing: list[str] = []
        self.mismatched: list[str] = []
        self.twice: list[str] = []
        self.values: dict[tuple[str, str], np.ndarray] = {}
        self.weights = {(layer.name, archs.weight_key(layer, w)): w
                        for layer in stats.iter_layers(model) for w in layer.weights}
        self.layers = {layer for layer, _ in self.weights}

    # ------------------------------------------------------------------------------------------- taking
    def has(self, key: str) -> bool:
        return key in self.state

    def model_has(self, layer: str) -> bool:
        """Whether the model has a layer ``layer`` with weights."""
        return layer in self.layers

    def take(self, key: str) -> np.ndarray | None:
        """The tensor ``key`` (marked used), or None (recorded as missing)."""
        if key not in self.state:
            self.missing.append(key)
            return None
        if key in self.taken:
            self.twice.append(key)
        self.taken.add(key)
        value = self.state[key]
        if np.iscomplexobj(value):  # float32 would keep the real part alone, silently
            raise EdgebnnError(f"checkpoint tensor {printable(key)} holds complex numbers "
                               f"({np.asarray(value).dtype}); a model's weights are real: this is not a checkpoint "
                               f"edgebnn can import")
        return np.asarray(value, dtype=np.float32)

    def put(self, layer: str, weight: str, value: np.ndarray | None, source: str) -> None:
        """Keras weight ``layer/weight`` := ``value`` (None: its source was missing, already recorded)."""
        if value is None:
            self.values[(layer, weight)] = None
            return
        target = self.weights.get((layer, weight))
        if target is None:
            self.mismatched.append(f"{source} (the model has no weight {layer}/{weight})")
        elif tuple(target.shape) != value.shape:
            self.mismatched.append(f"{source} {_shape(self.state.get(source))} -> {layer}/{weight} "
                                   f"{tuple(target.shape)}")
        if (layer, weight) in self.values:
            self.twice.append(f"{layer}/{weight}")
        self.values[(layer, weight)] = value

    # ------------------------------------------------------------------------------------------ pieces
    def conv(self, layer: str, prefix: str) -> None:
        """``prefix.weight`` (4-D) or ``prefix.weights`` (flat, viewed as the Keras kernel's O, I, kh, kw)."""
        key = f"{prefix}.weights" if f"{prefix}.weights" in self.state else f"{prefix}.weight"
        w = self.take(key)
        if w is not None and w.ndim != 4:
            w = self._unflatten(w, layer, key)
        self.put(layer, "kernel", None if w is None else conv_kernel(w), key)

    def _unflatten(self, w: np.ndarray, layer: str, key: str) -> np.ndarray | None:
        """A flat ``(O*I*kh*kw, 1)`` kernel viewed as ``(O, I, kh, kw)`` of the Keras kernel it goes to."""
        target = self.weights.get((layer, "kernel"))
        if target is None or len(target.shape) != 4 or w.size != target.shape.num_elements():
            self.mismatched.append(f"{key} {w.shape} -> {layer}/kernel "
                                   f"{tuple(target.shape) if target is not None else '(none)'}")
            return None
        kh, kw, i, o = (int(d) for d in target.shape)
        return w.reshape(o, i, kh, kw)

    def batch_norm(self, layer: str, prefix: str) -> None:
        for src, dst in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):
            value = self.take(f"{prefix}.{src}")
            self.put(layer, dst, value, f"{prefix}.{src}")
        if f"{prefix}.num_batches_tracked" in self.state:  # a training counter: nothing reads it at inference
            self.take(f"{prefix}.num_batches_tracked")

    def dense(self, layer: str, prefix: str, *, kernel=dense_kernel) -> None:
        w = self.take(f"{prefix}.weight")
        self.put(layer, "kernel", None if w is None else kernel(w), f"{prefix}.weight")
        self.put(layer, "bias", self.take(f"{prefix}.bias"), f"{prefix}.bias")

    def prelu(self, layer: str, key: str) -> None:
        w = self.take(key)
        self.put(layer, "alpha", None if w is None else w.reshape(1, 1, -1), key)

    def vector(self, layer: str, weight: str, key: str, *, sign: float = 1.0) -> None:
        """A per-channel tensor (``(C,)`` or ``(1, C, 1, 1)``) into a ``(C,)`` weight, times ``sign``."""
        w = self.take(key)
        self.put(layer, weight, None if w is None else sign * channel_vector(w), key)

    def linear_no_bias(self, layer: str, weight: str, key: str) -> None:
        w = self.take(key)
        self.put(layer, weight, None if w is None else dense_kernel(w), key)

    # ------------------------------------------------------------------------------------------- apply
    def problems(self) -> list[str]:
        out = []
        if self.missing:
            out.append(f"missing from the checkpoint: {listing(self.missing)}")
        leftover = [k for k in self.state if k not in self.taken]
        if leftover:
            out.append(f"left over (no place in the model): {listing(leftover)}")
        if self.mismatched:
            out.append(f"shape mismatch: {listing(self.mismatched, 2)}")
        if self.twice:
            out.append(f"used twice: {listing(self.twice)}")
        unset = [f"{layer}/{w}" for (layer, w) in self.weights if (layer, w) not in self.values]
        if unset:
            out.append(f"model weights no tensor sets: {listing(unset)}")
        return out

    def apply(self, what: str) -> int:
        """Assign every weight (after checking everything); returns the number of tensors used."""
        problems = self.problems()
        if problems:
            raise EdgebnnError(f"{what}: {'; '.join(problems)}")
        for key, value in self.values.items():
            self.weights[key].assign(value)
        return len(self.taken)


def _shape(value) -> tuple:
    return tuple(np.shape(value)) if value is not None else ()
