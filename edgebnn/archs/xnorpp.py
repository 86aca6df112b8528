"""XNOR-Net++ (Bulat & Tzimiropoulos, BMVC 2019): one learned scale Gamma in place of XNOR-Net's analytic scales.

A binary conv is approximated as (sign(I) * sign(W)) (.) Gamma, with Gamma learned by backpropagation (init ones)
in one of four shapes at the same compute, for an output of o channels and h x w positions:
  case 1: Gamma in R^o;  case 2: Gamma in R^(o x h x w);  case 3: Gamma = alpha (x) beta, alpha in R^o, beta in R^(h w);
  case 4: Gamma = alpha (x) beta (x) gamma, alpha in R^o, beta in R^h, gamma in R^w (reportedly best).
Sign: STE (d/dx = 1 where |x| <= 1) on activations and weights, no other scale.

The block itself is not given by the paper. Two blocks, each labelled with its source:

- ``xnorpp-18-caseN`` (``xnorpp_block``): Larq Zoo's Real-to-Binary strong-baseline block, a real shortcut around
  every binary conv, x -> BN -> sign -> bconv3x3 -> Gamma -> PReLU -> + shortcut, on the Bi-Real-18 layout (no
  ReLU in the stem).
- ``xnorpp-18-bnn`` (``bnn_block``): the author's ``bnn`` library (1adrianb/binary-networks-pytorch,
  ``examples/imagenet.py``: ResNet-18 with ``PreBasicBlock`` and PReLU): one shortcut per two binary convs,
  x -> [BN -> sign -> bconv3x3 -> Gamma -> PReLU] x 2 -> + shortcut, no activation after the add; stem 7x7 s2 ->
  BN -> ReLU -> MaxPool; downsample shortcut AvgPool -> 1x1 conv -> BN, real (the library's recipe leaves the
  first conv, the last FC and the three downsample 1x1 convs real). The library's scale is one per output channel
  (case 1) by default; ``case`` 2-4 gives the paper's other shapes. Sign and weights: STE (gradient zero where
  |x| >= 1), weights' sign without a scale in step 2 (``compute_alpha: False``).

Real stem, real downsample shortcut, real head in both. Cases 2-4 tie the model to its input size and stay float
ops after conversion.

Gamma is kept non-negative here in every case (the library leaves it free; it stands in for XNOR-Net's scales,
which are means of absolute values). For cases 2-4 it is applied after the PReLU: PReLU(Gamma x) = Gamma PReLU(x)
for Gamma >= 0 (PReLU is positively homogeneous), so the block computes the same function, and LCE 0.16 cannot
fold a per-position Gamma into ``LceBconv2d``'s per-channel multiplier (it would, without checking the shape, and
its own kernel then refuses the flatbuffer). Case 1 stays right after the conv, where LCE folds it into the
conv's output transform for free. The constraint narrows what can be learned: a negative entry of a free Gamma
flips its channel's (case 1) or position's (cases 2-4) sign before the PReLU, PReLU(-|g| x), which no Gamma >= 0
expresses; a later BN's negative scale flips a whole channel after the PReLU, which is another function, and
nothing downstream flips single positions.
"""

from __future__ import annotations

import larq as lq
import tensorflow as tf

from edgebnn.archs.common import (
    BINARY,
    BIREAL_FILTERS,
    Binarization,
    batch_norm,
    binary_conv,
    bireal_layout,
    channels,
    classifier,
    downsample_shortcut,
    is_small_image,
    stem,
)
from edgebnn.archs.resnet import RESNET_BLOCKS

GAMMA_CASES = (1, 2, 3, 4)


@lq.utils.register_keras_custom_object
class LearnedScale(tf.keras.layers.Layer):
    """y = x (.) Gamma, Gamma broadcast over (h, w, o) in one of XNOR-Net++'s four shapes (init ones)."""

    def __init__(self, case: int = 1, **kwargs):
        super().__init__(**kwargs)
        if case not in GAMMA_CASES:
            raise ValueError(f"Gamma case must be one of {GAMMA_CASES}, not {case}")
        self.case = case

    def build(self, input_shape):
        h, w, o = (int(d) for d in input_shape[1:])

        def factor(name, shape):
            return self.add_weight(name=name, shape=shape, initializer="ones", constraint="non_neg")

        self.alpha = factor("alpha", (h, w, o) if self.case == 2 else (o,))
        if self.case == 3:
            self.beta = factor("beta", (h * w,))
        elif self.case == 4:
            self.beta, self.gamma = factor("beta", (h,)), factor("gamma", (w,))
        self._hw = (h, w)
        super().build(input_shape)

    def scale(self) -> tf.Tensor:
        """Gamma as an (h, w, o) tensor (or (o,) for case 1)."""
        h, w = self._hw
        if self.case in (1, 2):
            return self.alpha
        if self.case == 3:
            return tf.reshape(self.beta, (h, w, 1)) * self.alpha
        return self.beta[:, None, None] * self.gamma[None, :, None] * self.alpha

    def call(self, inputs):
        return inputs * self.scale()

    def get_config(self):
        return {**super().get_config(), "case": self.case}


def scaled_binary_conv(x, filters: int, strides: int, *, name: str, mode: Binarization, case: int):
    """sign -> bconv3x3 -> Gamma -> PReLU (Gamma after the PReLU in cases 2-4: the same function, see above)."""
    y = binary_conv(filters, 3, strides=strides, name=name, mode=mode, input_quantizer="ste_sign",
                    kernel_quantizer="ste_sign")(x)
    gamma = LearnedScale(case, name=f"{name}_gamma")
    prelu = tf.keras.layers.PReLU(alpha_initializer=tf.keras.initializers.Constant(0.25), shared_axes=[1, 2],
                                  name=f"{name}_prelu")
    return prelu(gamma(y)) if case == 1 else gamma(prelu(y))


def xnorpp_block(mode: Binarization, case: int):
    """Larq Zoo's Real-to-Binary strong-baseline block: BN -> scaled binary conv -> + shortcut, per conv."""

    def block(x, filters: int, strides: int, *, name: str):
        shortcut = downsample_shortcut(x, filters, strides, name=f"{name}_down")
        y = batch_norm(f"{name}_bn")(x)
        y = scaled_binary_conv(y, filters, strides, name=name, mode=mode, case=case)
        return tf.keras.layers.Add(name=f"{name}_add")([y, shortcut])

    return block


def bnn_block(x, filters: int, strides: int, *, name: str, mode: Binarization, case: int):
    """The ``bnn`` library's pre-activation basic block: [BN -> scaled binary conv] x 2 -> + shortcut."""
    shortcut = downsample_shortcut(x, filters, strides, name=f"{name}_down")
    y = x
    for i, s in ((1, strides), (2, 1)):
        y = batch_norm(f"{name}_bn{i}")(y)
        y = scaled_binary_conv(y, filters, s, name=f"{name}_conv{i}", mode=mode, case=case)
    return tf.keras.layers.Add(name=f"{name}_add")([y, shortcut])


def xnorpp(input_shape=(224, 224, 3), num_classes: int = 1000, *, depth: int = 18, case: int = 4,
           width: float = 1.0, mode: Binarization = BINARY, small: bool | None = None):
    """XNOR-Net++ ResNet-``depth`` with Gamma ``case`` (1-4)."""
    return bireal_layout(input_shape, num_classes, depth=depth, width=width, block=xnorpp_block(mode, case),
                         name=f"xnorpp-{depth}-case{case}", small=small)


def xnorpp_bnn(input_shape=(224, 224, 3), num_classes: int = 1000, *, depth: int = 18, case: int = 1,
               width: float = 1.0, mode: Binarization = BINARY, small: bool | None = None):
    """XNOR-Net++ ResNet-``depth`` with the ``bnn`` library's block and stem (ReLU after the stem's BN; applied
    after its max-pool here, the same function since ReLU is monotone), Gamma ``case`` (library default 1)."""
    inputs = tf.keras.Input(shape=input_shape, name="image")
    x = stem(inputs, channels(64, width), small=is_small_image(input_shape) if small is None else small)
    x = tf.keras.layers.ReLU(name="stem_relu")(x)
    for stage, (n, filters) in enumerate(zip(RESNET_BLOCKS[depth], BIREAL_FILTERS, strict=True), start=1):
        for i in range(n):
            x = bnn_block(x, channels(filters, width), 2 if stage > 1 and i == 0 else 1,
                          name=f"stage{stage}_block{i + 1}", mode=mode, case=case)
    return tf.keras.Model(inputs, classifier(x, num_classes), name=f"xnorpp-{depth}-bnn")
