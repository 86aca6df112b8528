"""Pieces that several papers share, written once.

- ApproxSign (Bi-Real Net): sign(x) forward, d/dx = 2 - 2|x| on [-1, 1], 0 elsewhere. Larq's ``approx_sign``.
- STE sign (weights everywhere, XNOR-Net++ activations): sign(x) forward, d/dx = 1 where |x| <= 1. Larq's ``ste_sign``.
- Magnitude-aware weights (Bi-Real Net, ReActNet step 2): W_b = mean(|W_o|) * sign(W) per output channel o.
- The Bi-Real-18/34 layout (real stem, one real-valued shortcut around every binary 3x3 conv, real downsample
  shortcut AvgPool 2x2 -> 1x1 conv -> BN, real head), which ReActNet-18, XNOR-Net++ and SD-BNN-18 reuse with their
  own block.
- The distributional loss of ReActNet and SD-BNN: L = -1/n sum_i sum_k softmax(t_i)_k log softmax(s_i)_k.

Every binary conv is a Larq ``QuantConv2D`` with ``padding="same", pad_values=1.0`` and quantizers built on
``larq.math.sign``, so that Larq Compute Engine turns it into an ``LceBconv2d`` op.

Not the papers' (say so wherever it matters):
- ``pad_values=1`` is ours, so that LCE keeps the padded conv a fast binary op; the papers' code pads with 0.
- Latent weights clipped to [-1, 1] (``weight_clip``) and ``glorot_normal`` kernels are Larq Zoo practice; the
  papers' PyTorch code clips nothing and initialises its kernels otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import larq as lq
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
    """A conv that is binary where ``mode`` says so: sign on the input, binary kernel, +1 padding (ours: the papers
    pad with 0), latent weights clipped to [-1, 1] while binary (Larq Zoo practice: the papers do not clip). With
    real activations the input goes through Hardtanh instead of sign, so that a real-valued twin keeps a
    nonlinearity where the sign was (Bi-Real's block has no other)."""
    conv_class = conv_class or lq.layers.QuantConv2D
    if kernel_quantizer == "magnitude_aware_weights":
        kernel_quantizer = MagnitudeAwareWeights()
    return conv_class(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        pad_values=1.0 if mode.activations else 0.0,
        input_quantizer=input_quantizer if mode.activations else HardTanh(),
        kernel_quantizer=kernel_quantizer if mode.weights else None,
        kernel_constraint="weight_clip" if mode.weights else None,
        kernel_initializer=KERNEL_INIT,
        use_bias=False,
        name=name,
        **kwargs,
    )


def real_conv(filters: int, kernel_size: int, *, strides: int = 1, name: str) -> tf.keras.layers.Conv2D:
    return tf.keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False, kernel_initializer=KERNEL_INIT, name=name
    )


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
    return tf.keras.layers.MaxPool2D(3, strides=2, padding="same", name=f"{name}_pool")(x)


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
