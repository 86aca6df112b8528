"""Real-valued ResNet-18/34 (He et al., CVPR 2016): the distillation teachers of ReActNet and SD-BNN and the float
baselines.

Basic block: y = ReLU(BN(conv3x3(ReLU(BN(conv3x3(x))))) + shortcut(x)), shortcut = BN(conv1x1 stride s) when the
shape changes (option B), else x. Stem 7x7 s2 -> BN -> ReLU -> MaxPool 3x3 s2; small images use the CIFAR stem
(3x3 s1, no max-pool). Head: global average pool -> FC.
"""

from __future__ import annotations

import tensorflow as tf

from edgebnn.archs.common import BIREAL_FILTERS, batch_norm, channels, classifier, is_small_image, real_conv, stem

RESNET_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def basic_block(x, filters: int, strides: int, *, name: str):
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = real_conv(filters, 1, strides=strides, name=f"{name}_down_conv")(x)
        shortcut = batch_norm(f"{name}_down_bn")(shortcut)
    y = real_conv(filters, 3, strides=strides, name=f"{name}_conv1")(x)
    y = tf.keras.layers.ReLU(name=f"{name}_relu1")(batch_norm(f"{name}_bn1")(y))
    y = batch_norm(f"{name}_bn2")(real_conv(filters, 3, name=f"{name}_conv2")(y))
    y = tf.keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return tf.keras.layers.ReLU(name=f"{name}_relu2")(y)


def resnet(input_shape=(224, 224, 3), num_classes: int = 1000, *, depth: int = 18, width: float = 1.0, **_):
    """ResNet-``depth`` (18 or 34), real-valued."""
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = stem(inputs, channels(64, width), small=is_small_image(input_shape))
    x = tf.keras.layers.ReLU(name="stem_relu")(x)
    for stage, (n, filters) in enumerate(zip(RESNET_BLOCKS[depth], BIREAL_FILTERS, strict=True), start=1):
        for i in range(n):
            strides = 2 if stage > 1 and i == 0 else 1
            x = basic_block(x, channels(filters, width), strides, name=f"stage{stage}_block{i + 1}")
    return tf.keras.Model(inputs, classifier(x, num_classes), name=f"resnet-{depth}")
