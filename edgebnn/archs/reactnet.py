"""ReActNet (Liu et al., ECCV 2020): generalised activations RSign and RPReLU.

- RSign: x_b = sign(x_c - alpha_c), alpha learned per input channel (init 0), backward through ApproxSign.
  Here the threshold is the ``RSign`` layer and the sign is the following binary conv's ``approx_sign`` input
  quantizer, so that Larq Compute Engine sees a sign it recognises (one float add per sign on the board).
- RPReLU: f(x_c) = PReLU(x_c - gamma_c) + zeta_c, slope per channel init 0.25, gamma = zeta = 0.
- ReActNet-A: MobileNetV1's layout with full 3x3 convs. Stem 3x3 s2 3 -> 32 -> BN. 13 blocks to 64, 128, 128, 256,
  256, 512 x6, 1024, 1024 channels, stride 2 wherever the channel count changes except 32 -> 64. A block:
  part a: RSign -> bconv3x3 (C -> C, stride s) -> BN -> + (x or AvgPool 2x2 of x) -> RPReLU;
  part b: RSign -> bconv1x1 (C -> C) -> BN -> + input, or two such convs concatenated to 2C when the block doubles
  the channels -> RPReLU. Head: GAP -> FC 1024 -> classes. On small images the stem has stride 1 (ours). The
  shortcut's AvgPool pads ("same") so that odd feature maps keep the conv's ceil(h / 2) (ours: the official
  ``AvgPool2d(2, 2)`` floors, and fails on odd sizes).
- ReActNet-18: the Bi-Real-18 layout with RSign before every sign and RPReLU after every residual add.
Weights: magnitude-aware, mean(|W_o|) * sign(W) (step 2); step 1 keeps them real.
"""

from __future__ import annotations

import larq as lq
import tensorflow as tf

from edgebnn.archs.common import (
    BINARY,
    Binarization,
    batch_norm,
    binary_conv,
    bireal_layout,
    channels,
    classifier,
    downsample_shortcut,
    is_small_image,
    real_conv,
)


@lq.utils.register_keras_custom_object
class RSign(tf.keras.layers.Layer):
    """The learnable threshold of RSign: returns x_c - alpha_c; the binary conv after it applies sign."""

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(input_shape[-1],), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        return inputs - self.alpha


@lq.utils.register_keras_custom_object
class RPReLU(tf.keras.layers.Layer):
    """f(x_c) = PReLU(x_c - gamma_c) + zeta_c = (x_c - gamma_c if > 0 else beta_c (x_c - gamma_c)) + zeta_c."""

    def build(self, input_shape):
        c = (input_shape[-1],)
        self.gamma = self.add_weight(name="gamma", shape=c, initializer="zeros")
        self.beta = self.add_weight(name="beta", shape=c, initializer=tf.keras.initializers.Constant(0.25))
        self.zeta = self.add_weight(name="zeta", shape=c, initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        # Written as Keras' PReLU writes it, relu(z) - beta relu(-z), so TFLite's converter emits one PRELU op
        # between the two shifts (a select form became GREATER + MUL + SELECT); zero shifts convert to nothing.
        z = inputs - self.gamma
        slope = tf.reshape(self.beta, [1] * (inputs.shape.rank - 2) + [-1])
        return tf.nn.relu(z) + (-slope) * tf.nn.relu(-z) + self.zeta


REACTNET_A_CHANNELS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)


def reactnet_a_block(x, out_channels: int, strides: int, *, name: str, mode: Binarization):
    c = x.shape[-1]
    y = RSign(name=f"{name}_a_rsign")(x)
    y = binary_conv(c, 3, strides=strides, name=f"{name}_a_conv", mode=mode)(y)
    y = batch_norm(f"{name}_a_bn")(y)
    # padding "same": on an odd feature map the stride-2 conv ("same") gives ceil(h / 2) rows, a "valid" pool
    # floor(h / 2); the last window then averages its valid pixels only. Even sizes: the paper's AvgPool 2x2.
    shortcut = x if strides == 1 else tf.keras.layers.AvgPool2D(2, strides=2, padding="same",
                                                                 name=f"{name}_a_pool")(x)
    a = RPReLU(name=f"{name}_a_rprelu")(tf.keras.layers.Add(name=f"{name}_a_add")([y, shortcut]))

    y = RSign(name=f"{name}_b_rsign")(a)
    halves = [""] if out_channels == c else ["1", "2"]
    outs = []
    for h in halves:
        z = binary_conv(c, 1, name=f"{name}_b_conv{h}", mode=mode)(y)
        z = batch_norm(f"{name}_b_bn{h}")(z)
        outs.append(tf.keras.layers.Add(name=f"{name}_b_add{h}")([z, a]))
    b = outs[0] if len(outs) == 1 else tf.keras.layers.Concatenate(name=f"{name}_b_concat")(outs)
    return RPReLU(name=f"{name}_b_rprelu")(b)


def reactnet_a(input_shape=(224, 224, 3), num_classes: int = 1000, *, width: float = 1.0,
               mode: Binarization = BINARY, small: bool | None = None):
    """ReActNet-A; ``small``: stem stride 1 (default: for inputs of 64 px or less)."""
    small = is_small_image(input_shape) if small is None else small
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = real_conv(channels(32, width), 3, strides=1 if small else 2, name="stem_conv")(inputs)
    x = batch_norm("stem_bn")(x)
    for i, out in enumerate(REACTNET_A_CHANNELS, start=1):
        out = channels(out, width)
        strides = 2 if out != x.shape[-1] and i > 1 else 1
        x = reactnet_a_block(x, out, strides, name=f"block{i}", mode=mode)
    return tf.keras.Model(inputs, classifier(x, num_classes), name="reactnet-a")


def reactnet_resnet_block(mode: Binarization):
    def block(x, filters: int, strides: int, *, name: str):
        shortcut = downsample_shortcut(x, filters, strides, name=f"{name}_down")
        y = RSign(name=f"{name}_rsign")(x)
        y = binary_conv(filters, 3, strides=strides, name=name, mode=mode)(y)
        y = batch_norm(f"{name}_bn")(y)
        y = tf.keras.layers.Add(name=f"{name}_add")([y, shortcut])
        return RPReLU(name=f"{name}_rprelu")(y)

    return block


def reactnet_resnet(input_shape=(224, 224, 3), num_classes: int = 1000, *, depth: int = 18, width: float = 1.0,
                    mode: Binarization = BINARY, small: bool | None = None):
    """ReActNet on the Bi-Real-``depth`` layout."""
    return bireal_layout(input_shape, num_classes, depth=depth, width=width, block=reactnet_resnet_block(mode),
                         name=f"reactnet-{depth}", small=small)
