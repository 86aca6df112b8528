"""SD-BNN (Xue et al., 2021): activation and weight self-distribution, no scaling factors.

- ASD, before every binary conv's sign: a' = a + SE(a), SE(a) = sigmoid(W2 ReLU(W1 GAP(a))), W1: C -> C/r and
  W2: C/r -> C without bias; r = 16 on CIFAR-10, 8 on ImageNet. A per-sample, per-channel shift in (0, 1).
- WSD, on every binary conv's weights: w' = w + sigmoid(alpha_o) * 0.01 * mean(w_o), then sign(w') with no scale;
  mean(w_o) is the signed mean over c_in x kh x kw, detached; alpha in R^(C_out), init 0.
- Backward of sign: IR-Net's EDE on CIFAR, g'(x) = k t (1 - tanh^2(t x)) with t = T_min 10^(p log10(T_max / T_min)),
  k = max(1 / t, 1), p the fraction of training done (epoch / epochs), T_max = 10, T_min = 1e-3 for ResNet-18/20
  and 0.1 for VGG-Small (the official trainers; the recipe key ``ede_t_min``), on activations and weights;
  ApproxSign on ImageNet activations, with the clipped STE on its weights (the official code's, though the paper
  names ApproxSign only).

Layouts: ResNet-20 (16/32/64 x [3, 3, 3] two-conv blocks, one residual per binary conv: conv -> BN -> + shortcut
-> Hardtanh, option-A shortcut, GAP -> BatchNorm1d -> FC), ResNet-18 (64..512 x [2, 2, 2, 2] basic blocks, real
1x1 s2 conv + BN downsample, Hardtanh, GAP -> BatchNorm1d -> FC), VGG-Small (real 3 -> 128; binary 128, pool;
256, 256, pool; 512, 512, pool; each conv -> (pool) -> BN -> Hardtanh; real FC) on CIFAR-10; SD-BNN-18 on
ImageNet: the Bi-Real-18 layout with (ASD -> sign -> WSD bconv3x3) -> BN -> + shortcut -> PReLU.
"""

from __future__ import annotations

import math

import larq as lq
import tensorflow as tf

from edgebnn.archs.common import (
    BINARY,
    PLACED_CONV,
    Binarization,
    HardTanh,
    PyTorchPlacement,
    batch_norm,
    binary_conv,
    bireal_layout,
    channels,
    downsample_shortcut,
    real_conv,
)

EDE_T_MIN, EDE_T_MAX = 1e-3, 10.0  # the official ResNet-18/20 trainers; VGG-Small starts at T_min = 0.1
_ede_state: dict = {}


def _ede_variable(name: str, value: float) -> tf.Variable:
    if name not in _ede_state:
        with tf.init_scope():
            _ede_state[name] = tf.Variable(value, trainable=False, name=f"ede_{name}")
    return _ede_state[name]


def ede_progress() -> tf.Variable:
    """The fraction of training done, shared by every EDE sign (read when the backward runs, not when traced)."""
    return _ede_variable("progress", 0.0)


def ede_range() -> tuple[tf.Variable, tf.Variable]:
    """(T_min, T_max) of the annealing, shared by every EDE sign; the recipe's ``ede_t_min`` sets T_min."""
    return _ede_variable("t_min", EDE_T_MIN), _ede_variable("t_max", EDE_T_MAX)


def set_ede_progress(fraction: float, t_min: float = EDE_T_MIN, t_max: float = EDE_T_MAX) -> None:
    """Progress p in [0, 1] and the range of the annealing (every call sets all three: no stale range)."""
    ede_progress().assign(min(max(float(fraction), 0.0), 1.0))
    lo, hi = ede_range()
    lo.assign(float(t_min))
    hi.assign(float(t_max))


def ede_t_k(progress, t_min=EDE_T_MIN, t_max=EDE_T_MAX) -> tuple[tf.Tensor, tf.Tensor]:
    """t = T_min 10^(p log10(T_max / T_min)), k = max(1 / t, 1)."""
    t_min, t_max = tf.cast(t_min, tf.float32), tf.cast(t_max, tf.float32)
    log10_ratio = tf.math.log(t_max / t_min) / math.log(10.0)
    t = t_min * tf.pow(10.0, tf.cast(progress, tf.float32) * log10_ratio)
    return t, tf.maximum(1.0 / t, 1.0)


def ede_sign(x):
    """sign(x) forward (``larq.math.sign``), EDE backward k t (1 - tanh^2(t x))."""
    t, k = ede_t_k(ede_progress(), *ede_range())

    @tf.custom_gradient
    def _sign(x):
        def grad(dy):
            return dy * k * t * (1.0 - tf.square(tf.tanh(t * x)))

        return lq.math.sign(x), grad

    return _sign(x)


@lq.utils.register_keras_custom_object
class EDESign(lq.quantizers.Quantizer):
    """Activation quantizer: sign forward, IR-Net's error decay estimator backward."""

    precision = 1

    def call(self, inputs):
        return ede_sign(inputs)


@lq.utils.register_keras_custom_object
class WeightSelfDistribution(lq.quantizers.Quantizer):
    """sign(w + sigmoid(alpha_o) * 0.01 * mean(w_o)); alpha belongs to the conv (see SelfDistributedConv2D).
    ``backward``: "ste" (clipped straight-through) or "ede"."""

    precision = 1

    def __init__(self, backward: str = "ste", **kwargs):
        super().__init__(**kwargs)
        self.backward = backward
        self._alpha_ref = None

    def bind(self, alpha) -> None:
        # Kept off Keras' tracking: the variable belongs to the conv layer, the quantizer only reads it.
        object.__setattr__(self, "_alpha_ref", lambda: alpha)

    def call(self, inputs):
        w = inputs
        if self._alpha_ref is not None:
            mean = tf.stop_gradient(tf.reduce_mean(w, axis=[0, 1, 2]))
            w = w + tf.sigmoid(self._alpha_ref()) * 0.01 * mean
        return ede_sign(w) if self.backward == "ede" else lq.quantizers.ste_sign(w)

    def get_config(self):
        return {**super().get_config(), "backward": self.backward}


@lq.utils.register_keras_custom_object
class SelfDistributedConv2D(lq.layers.QuantConv2D):
    """A ``QuantConv2D`` that owns WSD's alpha (C_out, init 0) when its kernel quantizer is WSD."""

    def build(self, input_shape):
        super().build(input_shape)
        if isinstance(self.kernel_quantizer, WeightSelfDistribution):
            self.wsd_alpha = self.add_weight(name="wsd_alpha", shape=(self.filters,), initializer="zeros")
            self.kernel_quantizer.bind(self.wsd_alpha)


@lq.utils.register_keras_custom_object
class PlacedSelfDistributedConv2D(PyTorchPlacement, SelfDistributedConv2D):
    """``SelfDistributedConv2D`` with PyTorch's stride-2 placement (the official convention)."""


PLACED_CONV[SelfDistributedConv2D] = PlacedSelfDistributedConv2D


@lq.utils.register_keras_custom_object
class ActivationSelfDistribution(tf.keras.layers.Layer):
    """a' = a + sigmoid(W2 ReLU(W1 GAP(a))), W1: C -> C/r, W2: C/r -> C, no biases."""

    def __init__(self, ratio: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.ratio = ratio

    def build(self, input_shape):
        c = int(input_shape[-1])
        hidden = max(1, c // self.ratio)
        self.squeeze = tf.keras.layers.Dense(hidden, use_bias=False, name="squeeze")
        self.excite = tf.keras.layers.Dense(c, use_bias=False, name="excite")
        # Each Dense under its own name scope, so the two kernels are ``NAME/squeeze/kernel`` and
        # ``NAME/excite/kernel`` (built bare, both were ``NAME/kernel``, and the step-2 handover lost one).
        # Saved models key weights by attribute path (squeeze, excite), so models saved before still load.
        for dense, fan_in in ((self.squeeze, c), (self.excite, hidden)):
            with tf.name_scope(dense.name):
                dense.build((None, fan_in))
        super().build(input_shape)

    def shift(self, inputs):
        """sigmoid(W2 ReLU(W1 GAP(a))) as an (N, 1, 1, C) tensor. The pooled map keeps its 1 x 1 dimensions and
        the two Dense kernels are applied as matrix products on it, so the converted graph is MEAN, two
        FULLY_CONNECTED, LOGISTIC and the ADD (pooling to (N, C) and broadcasting back added RESHAPE and
        STRIDED_SLICE). Same weights, same function."""
        s = tf.reduce_mean(inputs, axis=[1, 2], keepdims=True)
        return tf.sigmoid(tf.matmul(tf.nn.relu(tf.matmul(s, self.squeeze.kernel)), self.excite.kernel))

    def call(self, inputs):
        return inputs + self.shift(inputs)

    def float_macs(self) -> int:
        """Multiply-accumulates of the SE branch per image (C * C/r twice)."""
        return 2 * self.squeeze.kernel.shape.num_elements()

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}


def sd_conv(x, filters: int, kernel_size: int, *, strides: int = 1, name: str, mode: Binarization, ratio: int,
            backward: str):
    """ASD -> sign -> WSD binary conv. ``backward`` "ede" (CIFAR) or "approx" (ImageNet). ASD stays in the
    real-valued twin (it is part of the network); WSD's alpha exists only while the weights are binary."""
    x = ActivationSelfDistribution(ratio, name=f"{name}_asd")(x)
    return binary_conv(
        filters, kernel_size, strides=strides, name=name, mode=mode, conv_class=SelfDistributedConv2D,
        input_quantizer=EDESign() if backward == "ede" else "approx_sign",
        kernel_quantizer=WeightSelfDistribution("ede" if backward == "ede" else "ste"),
    )(x)


@lq.utils.register_keras_custom_object
class OptionAShortcut(tf.keras.layers.Layer):
    """ResNet's option-A shortcut: x[:, ::s, ::s] with the new channels zero-padded on both sides."""

    def __init__(self, filters: int, strides: int, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.strides = filters, strides

    def call(self, inputs):
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - x.shape[-1]
        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


def _bn_head(x, num_classes: int):
    """The official CIFAR ResNets' head: global average pool -> BatchNorm1d -> FC (logits)."""
    x = tf.keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = batch_norm("head_bn")(x)
    return tf.keras.layers.Dense(num_classes, name="head_fc")(x)


def _cifar_stem(inputs, filters: int):
    x = real_conv(filters, 3, name="stem_conv")(inputs)
    return HardTanh(name="stem_act")(batch_norm("stem_bn")(x))


def sdbnn_resnet20(input_shape=(32, 32, 3), num_classes: int = 10, *, width: float = 1.0,
                   mode: Binarization = BINARY, ratio: int = 16):
    """SD-BNN ResNet-20 (CIFAR-10): 18 binary convs, each with its own option-A residual; head GAP -> BatchNorm1d
    -> FC as the official resnet.py."""
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = _cifar_stem(inputs, channels(16, width))
    for stage, filters in enumerate((16, 32, 64), start=1):
        filters = channels(filters, width)
        for i in range(6):
            strides = 2 if stage > 1 and i == 0 else 1
            name = f"stage{stage}_conv{i + 1}"
            shortcut = x
            if strides != 1 or x.shape[-1] != filters:
                shortcut = OptionAShortcut(filters, strides, name=f"{name}_down")(x)
            y = sd_conv(x, filters, 3, strides=strides, name=name, mode=mode, ratio=ratio, backward="ede")
            y = tf.keras.layers.Add(name=f"{name}_add")([batch_norm(f"{name}_bn")(y), shortcut])
            x = HardTanh(name=f"{name}_act")(y)
    return tf.keras.Model(inputs, _bn_head(x, num_classes), name="sdbnn-resnet20")


def sdbnn_resnet18(input_shape=(32, 32, 3), num_classes: int = 10, *, width: float = 1.0,
                   mode: Binarization = BINARY, ratio: int = 16):
    """SD-BNN ResNet-18 (CIFAR-10): basic blocks of two binary convs, real 1x1 conv + BN downsample."""
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = _cifar_stem(inputs, channels(64, width))
    for stage, filters in enumerate((64, 128, 256, 512), start=1):
        filters = channels(filters, width)
        for i in range(2):
            strides = 2 if stage > 1 and i == 0 else 1
            name = f"stage{stage}_block{i + 1}"
            shortcut = x
            if strides != 1 or x.shape[-1] != filters:
                shortcut = real_conv(filters, 1, strides=strides, name=f"{name}_down_conv")(x)
                shortcut = batch_norm(f"{name}_down_bn")(shortcut)
            y = sd_conv(x, filters, 3, strides=strides, name=f"{name}_conv1", mode=mode, ratio=ratio, backward="ede")
            y = HardTanh(name=f"{name}_act1")(batch_norm(f"{name}_bn1")(y))
            y = sd_conv(y, filters, 3, name=f"{name}_conv2", mode=mode, ratio=ratio, backward="ede")
            y = tf.keras.layers.Add(name=f"{name}_add")([batch_norm(f"{name}_bn2")(y), shortcut])
            x = HardTanh(name=f"{name}_act2")(y)
    return tf.keras.Model(inputs, _bn_head(x, num_classes), name="sdbnn-resnet18")


VGG_SMALL = ((128, False), (128, True), (256, False), (256, True), (512, False), (512, True))


def sdbnn_vgg_small(input_shape=(32, 32, 3), num_classes: int = 10, *, width: float = 1.0,
                    mode: Binarization = BINARY, ratio: int = 16):
    """SD-BNN VGG-Small (CIFAR-10): real first conv, five binary convs, real FC."""
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, (filters, pool) in enumerate(VGG_SMALL, start=1):
        filters, name = channels(filters, width), f"conv{i}"
        if i == 1:
            x = real_conv(filters, 3, name=name)(x)
        else:
            x = sd_conv(x, filters, 3, name=name, mode=mode, ratio=ratio, backward="ede")
        if pool:
            x = tf.keras.layers.MaxPool2D(2, name=f"{name}_pool")(x)
        x = HardTanh(name=f"{name}_act")(batch_norm(f"{name}_bn")(x))
    x = tf.keras.layers.Flatten(name="head_flatten")(x)
    outputs = tf.keras.layers.Dense(num_classes, name="head_fc")(x)
    return tf.keras.Model(inputs, outputs, name="sdbnn-vgg-small")


def sdbnn_bireal_block(mode: Binarization, ratio: int):
    def block(x, filters: int, strides: int, *, name: str):
        shortcut = downsample_shortcut(x, filters, strides, name=f"{name}_down")
        y = sd_conv(x, filters, 3, strides=strides, name=name, mode=mode, ratio=ratio, backward="approx")
        y = tf.keras.layers.Add(name=f"{name}_add")([batch_norm(f"{name}_bn")(y), shortcut])
        return tf.keras.layers.PReLU(alpha_initializer=tf.keras.initializers.Constant(0.25), shared_axes=[1, 2],
                                     name=f"{name}_prelu")(y)

    return block


def sdbnn_bireal(input_shape=(224, 224, 3), num_classes: int = 1000, *, depth: int = 18, width: float = 1.0,
                 mode: Binarization = BINARY, ratio: int = 8, small: bool | None = None):
    """SD-BNN on the Bi-Real-``depth`` layout (ImageNet)."""
    return bireal_layout(input_shape, num_classes, depth=depth, width=width, block=sdbnn_bireal_block(mode, ratio),
                         name=f"sdbnn-{depth}", small=small)
