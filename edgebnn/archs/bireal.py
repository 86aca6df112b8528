"""Bi-Real Net (Liu et al., ECCV 2018): a real-valued shortcut around every binary conv.

Block: y = BN(bconv3x3(sign(x))) + shortcut(x), with no nonlinearity; shortcut = x, or AvgPool 2x2 s2 -> 1x1 conv
-> BN when the block downsamples. Activations: ApproxSign, sign(x) forward with
d/dx = 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere. Weights: magnitude-aware, mean(|W_o|) * sign(W).
Stem 7x7 s2 -> BN -> MaxPool, head GAP -> FC. Bi-Real-18: [4, 4, 4, 4] binary convs per stage;
Bi-Real-34: [6, 8, 12, 6].
There is no CIFAR variant in the paper's code: on small images we use the CIFAR stem (3x3 s1, no max-pool), ours.
"""

from __future__ import annotations

import tensorflow as tf

from edgebnn.archs.common import BINARY, Binarization, batch_norm, binary_conv, bireal_layout, downsample_shortcut


def bireal_block(mode: Binarization):
    def block(x, filters: int, strides: int, *, name: str):
        shortcut = downsample_shortcut(x, filters, strides, name=f"{name}_down")
        y = binary_conv(filters, 3, strides=strides, name=name, mode=mode, input_quantizer="approx_sign")(x)
        y = batch_norm(f"{name}_bn")(y)
        return tf.keras.layers.Add(name=f"{name}_add")([y, shortcut])

    return block


def bireal(input_shape=(224, 224, 3), num_classes: int = 1000, *, depth: int = 18, width: float = 1.0,
           mode: Binarization = BINARY, small: bool | None = None):
    """Bi-Real-``depth`` (18 or 34); ``small``: the CIFAR stem (default: for inputs of 64 px or less)."""
    return bireal_layout(input_shape, num_classes, depth=depth, width=width, block=bireal_block(mode),
                         name=f"bireal-{depth}", small=small)
