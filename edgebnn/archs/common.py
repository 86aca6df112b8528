"""Pieces that several papers share, written once.

- ApproxSign (Bi-Real Net): sign(x) forward, d/dx = 2 - 2|x| on [-1, 1], 0 elsewhere. Larq's ``approx_sign``.
- STE sign (weights everywhere, XNOR-Net++ activations): sign(x) forward, d/dx = 1 where |x| <= 1. Larq's ``ste_sign``.
- Magnitude-aware weights (Bi-Real Net, ReActNet step 2): W_b = mean(|W_o|) * sign(W) per output channel o.
- The Bi-Real-18/34 layout (real stem, one real-valued shortcut around every binary 3x3 conv, real downsample
  shortcut AvgPool 2x2 -> 1x1 conv -> BN, real head), which ReActNet-18, XNOR-Net++ and SD-BNN-18 reuse with their
  own block.
- The distributional loss of ReActNet and SD-BNN: L = -1/n sum_i sum_k softmax(t_i)_k log softmax(s_i)_k.

Every binary conv is a Larq ``QuantConv2D`` with quantizers built on ``larq.math.sign``, so that Larq Compute
Engine turns it into an ``LceBconv2d`` op.

Two padding conventions (``PADDINGS``), chosen per model when it is built (``padding_convention``) and recorded in
its layers, its run folder and its flatbuffer:
- ``"lce"`` (ours, the default for training here): binary convs pad their binarised input with +1
  (``pad_values=1``, LCE's fastest form), and every layer uses TensorFlow's "same" placement, which on an even input
  puts a stride-2 layer's extra row and column at the bottom and right (3x3: 0/1, the 7x7 stem: 2/3, the 3x3
  max-pool: 0/1).
- ``"official"`` (the papers' PyTorch code, which imported checkpoints need): binary convs pad with 0, and stride-2
  layers pad symmetrically as PyTorch does (3x3: 1/1, 7x7: 3/3, max-pool 1/1 with -inf). Real convs and the
  max-pool get explicit padding; a stride-2 binary conv whose "same" placement differs runs on the input flipped
  along those axes with its kernel flipped, and flips its output back (``PyTorchPlacement``): flipping moves
  TensorFlow's end-padding to the start, so LCE still sees one ``LceBconv2d`` (zero-padded) between two
  ``REVERSE_V2`` ops. Where the two placements already agree (stride 1, odd sizes) nothing is flipped.
- ``"zoo"`` (Larq Zoo's BiRealNet, whose published weights need it): binary convs pad with 0 (Larq's default
  ``pad_values=0``) with TensorFlow's placement.
- Either way sign(0) = +1 here (Larq); ``torch.sign(0)`` is 0. Only exact zeros differ (padding is 0 in both).

Not the papers' (say so wherever it matters):
- the ``"lce"`` convention's +1 padding and TensorFlow placement are ours (see above).
- Latent weights clipped to [-1, 1] (``weight_clip``) and ``glorot_normal`` kernels are Larq Zoo practice; the
  papers' PyTorch code clips nothing and initialises its kernels otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass

import larq as lq
import numpy as np
import tensorflow as tf

BN_MOMENTUM = 0.9  # the papers' PyTorch default (momentum 0.1 there is 1 - 0.9 here)
BN_EPSILON = 1e-5  # PyTorch's default, which the papers' code uses
KERNEL_INIT = "glorot_normal"  # Larq Zoo practice, not the papers' (their PyTorch code initialises otherwise)


@dataclass(frozen=True)
class Binarization:
    """Which halves of a binary conv are binary: both (the BNN), activations only (ReActNet/SD-BNN step 1),
    neither (the real-valued twin)."""

    weights: bool = True
    activations: bool = True


BINARY = Binarization()


def channels(c: int, width: float) -> int:
    """Scale a channel count by the width multiplier, keeping a multiple of 8 (at least 8)."""
    if width == 1.0:
        return c
    return max(8, int(round(c * width / 8.0)) * 8)


# ------------------------------------------------------------------------------- padding conventions
PADDINGS = ("lce", "official", "zoo")
DEFAULT_PADDING = "lce"
_padding: contextvars.ContextVar[str] = contextvars.ContextVar("edgebnn_padding", default=DEFAULT_PADDING)


def check_padding(name: str) -> str:
    if name not in PADDINGS:
        raise ValueError(f"padding convention must be one of {', '.join(PADDINGS)}, not {name!r}")
    return name


@contextlib.contextmanager
def padding_convention(name: str):
    """Layers built inside take convention ``name`` ("lce" or "official"; see the module docstring)."""
    token = _padding.set(check_padding(name))
    try:
        yield
    finally:
        _padding.reset(token)


def official() -> bool:
    return _padding.get() == "official"


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) along one axis: total = max((ceil(n/s) - 1) s + k - n, 0),
    before = floor(total / 2)."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def flip_axes(spatial_shape, kernel_size, strides) -> list[int]:
    """The spatial axes (1 = height, 2 = width) along which TensorFlow's "same" placement differs from PyTorch's
    symmetric padding k // 2; flipping the input there moves TensorFlow's end-padding to the start, which is
    PyTorch's placement (the output then comes out flipped too)."""
    axes = []
    for axis, (n, k, s) in enumerate(zip(spatial_shape, kernel_size, strides, strict=True), start=1):
        before, after = _same_padding(int(n), int(k), int(s))
        if before == k // 2:
            continue
        if after != k // 2:
            raise ValueError(f"no flip gives PyTorch's padding {k // 2} for size {n}, kernel {k}, stride {s}")
        axes.append(axis)
    return axes


class PyTorchPlacement:
    """Mixin for a "same", zero-padded conv: PyTorch's symmetric placement. y = flip(conv(flip(x), flip(W))) along
    ``flip_axes``; the kernel flip is a constant after conversion. Config key ``placement``: "pytorch"."""

    def __init__(self, *args, placement: str = "pytorch", **kwargs):
        super().__init__(*args, **kwargs)
        self.placement = placement
        self._flip: list[int] = []

    def build(self, input_shape):
        self._flip = flip_axes(tf.TensorShape(input_shape)[1:3], self.kernel_size, self.strides)
        super().build(input_shape)

    def call(self, inputs):
        if not self._flip:
            return super().call(inputs)
        return tf.reverse(super().call(tf.reverse(inputs, self._flip)), self._flip)

    def convolution_op(self, inputs, kernel):
        if self._flip:
            kernel = tf.reverse(kernel, [a - 1 for a in self._flip])
        return super().convolution_op(inputs, kernel)

    def get_config(self):
        return {**super().get_config(), "placement": self.placement}


@lq.utils.register_keras_custom_object
class PlacedQuantConv2D(PyTorchPlacement, lq.layers.QuantConv2D):
    """A Larq ``QuantConv2D`` with PyTorch's stride-2 placement (the official convention)."""


PLACED_CONV = {lq.layers.QuantConv2D: PlacedQuantConv2D}  # conv class -> its PyTorch-placed form (sdbnn adds one)


@lq.utils.register_keras_custom_object
class ConstantPadding2D(tf.keras.layers.Layer):
    """Pads height and width by ``padding`` ((top, bottom), (left, right)) with ``value``: -inf's stand-in (the
    lowest float32) before a max-pool, as PyTorch's ``MaxPool2d(padding=p)`` ignores the padding."""

    def __init__(self, padding=((1, 1), (1, 1)), value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple(tuple(int(p) for p in pair) for pair in padding)
        self.value = float(value)

    def call(self, inputs):
        return tf.pad(inputs, [[0, 0], *self.padding, [0, 0]], constant_values=self.value)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


LOWEST_FLOAT32 = float(np.finfo(np.float32).min)


def padding_of(model) -> str:
    """The convention a built model follows, read from its layers: PyTorch's placement anywhere, "official"; else
    binary convs padded with 0, "zoo"; else "lce". Where no layer needs placing (no stride-2 layer on an even map)
    "official" and "zoo" compute the same function and this says "zoo": a run folder records which was meant."""
    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    placed = any(isinstance(layer, PyTorchPlacement | ConstantPadding2D | tf.keras.layers.ZeroPadding2D)
                 for layer in stats.iter_layers(model))
    pads = {float(layer.pad_values) for layer in stats.binary_conv_layers(model)}
    if placed:
        return "official"
    return "zoo" if pads == {0.0} else "lce"


# --------------------------------------------------------------------------------------- quantizers
@lq.utils.register_keras_custom_object
class MagnitudeAwareWeights(lq.quantizers.Quantizer):
    """W_b = mean(|W_o|) * sign(W), the mean over each output channel's kh x kw x c_in weights.

    Backward as in the official Bi-Real/ReActNet PyTorch code: the scale is detached and the gradient is the
    clipped straight-through estimate, dW_b/dW = 1 where |W| <= 1 else 0. (Larq's ``MagnitudeAwareSign`` also
    scales the gradient; we follow the papers' code.)
    """

    precision = 1

    def call(self, inputs):
        @tf.custom_gradient
        def _forward(w):
            scale = tf.stop_gradient(tf.reduce_mean(tf.abs(w), axis=list(range(len(w.shape) - 1))))

            def grad(dy):
                return tf.where(tf.abs(w) <= 1.0, dy, tf.zeros_like(dy))

            return scale * lq.math.sign(w), grad

        return _forward(inputs)


@lq.utils.register_keras_custom_object
class HardTanh(lq.quantizers.Quantizer):
    """Hardtanh(x) = min(max(x, -1), 1): SD-BNN's CIFAR activation, and the real-valued twin's stand-in for
    sign(x) (the function whose gradient the straight-through estimator uses). A float "quantizer" (precision 32)
    so that it can take sign's place as a conv's input quantizer."""

    def call(self, inputs):
        return tf.clip_by_value(inputs, -1.0, 1.0)


# ------------------------------------------------------------------------------------------- layers
def batch_norm(name: str) -> tf.keras.layers.BatchNormalization:
    return tf.keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def binary_conv(
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    name: str,
    mode: Binarization,
    input_quantizer="approx_sign",
    kernel_quantizer="magnitude_aware_weights",
    conv_class=None,
    **kwargs,
) -> tf.keras.layers.Layer:
    """A conv that is binary where ``mode`` says so: sign on the input, binary kernel, latent weights clipped to
    [-1, 1] while binary (Larq Zoo practice: the papers do not clip). Padding by the convention in force: +1 with
    TensorFlow's placement ("lce", ours), or 0 with PyTorch's ("official"; a stride-2 conv is then a
    ``PyTorchPlacement`` conv). With real activations the input goes through Hardtanh instead of sign, so that a
    real-valued twin keeps a nonlinearity where the sign was (Bi-Real's block has no other); Hardtanh(0) = 0, so the
    twin pads with 0 in both conventions."""
    conv_class = conv_class or lq.layers.QuantConv2D
    if kernel_quantizer == "magnitude_aware_weights":
        kernel_quantizer = MagnitudeAwareWeights()
    if official() and strides != 1:
        conv_class = PLACED_CONV[conv_class]
    return conv_class(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        pad_values=1.0 if mode.activations and _padding.get() == "lce" else 0.0,
        input_quantizer=input_quantizer if mode.activations else HardTanh(),
        kernel_quantizer=kernel_quantizer if mode.weights else None,
        kernel_constraint="weight_clip" if mode.weights else None,
        kernel_initializer=KERNEL_INIT,
        use_bias=False,
        name=name,
        **kwargs,
    )


def pytorch_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """The zero rows PyTorch's ``padding=k // 2`` adds before and after one axis, less the trailing ones no window
    reaches: out = floor((n + 2p - k) / s) + 1 windows read rows up to (out - 1) s + k - 1 of the padded axis."""
    p = kernel // 2
    out = (size + 2 * p - kernel) // stride + 1
    return p, max((out - 1) * stride + kernel - size - p, 0)


def real_conv(filters: int, kernel_size: int, *, strides: int = 1, name: str):
    """A real conv without bias, "same" padded. Under the official convention a strided conv whose "same" placement
    is not PyTorch's pads its input itself (``NAME_pad``: PyTorch's ``padding=k // 2``, trimmed to the rows a window
    reads, ``pytorch_padding``) and then runs unpadded. Trimmed, since LCE 0.16's converter folds a symmetric pad
    into a strided conv as if it were "same" (it checks that the two sides are balanced, not that they are
    TensorFlow's), which moves the grid back to TensorFlow's."""
    same = tf.keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                                  kernel_initializer=KERNEL_INIT, name=name)
    if not (official() and strides != 1 and kernel_size > 1):
        return same

    def apply(x):
        spatial = [int(n) for n in x.shape[1:3]]
        if not flip_axes(spatial, (kernel_size,) * 2, (strides,) * 2):
            return same(x)
        pads = [pytorch_padding(n, kernel_size, strides) for n in spatial]
        x = tf.keras.layers.ZeroPadding2D(pads, name=f"{name}_pad")(x)
        return tf.keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="valid", use_bias=False,
                                      kernel_initializer=KERNEL_INIT, name=name)(x)

    return apply


def max_pool_3x3_s2(x, *, name: str):
    """The ImageNet stem's max-pool, 3x3 stride 2: TensorFlow's "same" placement, or (official) PyTorch's
    ``MaxPool2d(3, 2, padding=1)``, which never picks its padding (padded here with the lowest float)."""
    if not official():
        return tf.keras.layers.MaxPool2D(3, strides=2, padding="same", name=name)(x)
    x = ConstantPadding2D(((1, 1), (1, 1)), LOWEST_FLOAT32, name=f"{name}_pad")(x)
    return tf.keras.layers.MaxPool2D(3, strides=2, padding="valid", name=name)(x)


def is_small_image(input_shape) -> bool:
    """Inputs of 64 px or less get the CIFAR stem (3x3 s1, no max-pool)."""
    return min(input_shape[0], input_shape[1]) <= 64


def stem(x, filters: int, *, small: bool, name: str = "stem"):
    """Real stem. ImageNet (the papers'): 7x7 conv s2 -> BN -> MaxPool 3x3 s2.
    Small images (ours, for the papers that give none): 3x3 conv s1 -> BN."""
    if small:
        x = real_conv(filters, 3, name=f"{name}_conv")(x)
        return batch_norm(f"{name}_bn")(x)
    x = real_conv(filters, 7, strides=2, name=f"{name}_conv")(x)
    x = batch_norm(f"{name}_bn")(x)
    return max_pool_3x3_s2(x, name=f"{name}_pool")


def downsample_shortcut(x, filters: int, strides: int, *, name: str):
    """Bi-Real's real downsample shortcut: AvgPool 2x2 s2 -> 1x1 conv -> BN (identity when nothing changes)."""
    if strides == 1 and x.shape[-1] == filters:
        return x
    if strides != 1:
        x = tf.keras.layers.AvgPool2D(strides, strides=strides, padding="same", name=f"{name}_pool")(x)
    x = real_conv(filters, 1, name=f"{name}_conv")(x)
    return batch_norm(f"{name}_bn")(x)


def classifier(x, num_classes: int, *, name: str = "head"):
    """Global average pool -> FC, returning logits (no softmax: losses and the converter take logits)."""
    x = tf.keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
    return tf.keras.layers.Dense(num_classes, kernel_initializer=KERNEL_INIT, name=f"{name}_fc")(x)


BIREAL_DEPTHS = {18: (4, 4, 4, 4), 34: (6, 8, 12, 6)}
BIREAL_FILTERS = (64, 128, 256, 512)


def bireal_layout(
    input_shape, num_classes: int, *, depth: int, width: float, block, name: str, small: bool | None = None
) -> tf.keras.Model:
    """The Bi-Real-18/34 skeleton: real stem, stages of 64/128/256/512 with ``depth``'s binary convs per stage
    (each ``block(x, filters, strides, name)`` holds one binary 3x3 conv and its shortcut), real head.
    Stride 2 at the first conv of stages 2-4."""
    small = is_small_image(input_shape) if small is None else small
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = stem(inputs, channels(64, width), small=small)
    for stage, (n, filters) in enumerate(zip(BIREAL_DEPTHS[depth], BIREAL_FILTERS, strict=True), start=1):
        for i in range(n):
            strides = 2 if stage > 1 and i == 0 else 1
            x = block(x, channels(filters, width), strides, name=f"stage{stage}_conv{i + 1}")
    return tf.keras.Model(inputs, classifier(x, num_classes), name=name)


# --------------------------------------------------------------------------------------------- loss
def distributional_loss(teacher_logits, student_logits):
    """ReActNet's distributional loss: -1/n sum_i sum_k softmax(t_i)_k * log_softmax(s_i)_k (temperature 1,
    no label term; KL(teacher || student) plus the teacher's entropy). The teacher gets no gradient."""
    p_teacher = tf.nn.softmax(tf.stop_gradient(tf.cast(teacher_logits, tf.float32)), axis=-1)
    log_p_student = tf.nn.log_softmax(tf.cast(student_logits, tf.float32), axis=-1)
    return -tf.reduce_mean(tf.reduce_sum(p_teacher * log_p_student, axis=-1))
