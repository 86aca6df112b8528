"""Counting a model the way the papers do.

- binary convs: Larq ``QuantConv2D`` layers whose input and kernel quantizers are both 1-bit;
- MACs: kh * kw * c_in * c_out * h_out * w_out per conv, c_in * c_out per FC, plus any layer's own ``float_macs()``;
- OPs = binary MACs / 64 + float MACs (Bi-Real Net's and ReActNet's convention);
- size: binary weights packed to 1 bit, every other parameter (BN statistics included) 32-bit, in MiB.
"""

from __future__ import annotations

import larq as lq
import tensorflow as tf


def _precision(quantizer) -> int | None:
    return getattr(quantizer, "precision", None) if quantizer is not None else None


def signs_its_input(layer) -> bool:
    """A quantized conv whose input quantizer is a sign (1 bit), whatever its kernel is."""
    return isinstance(layer, lq.layers.QuantConv2D) and _precision(layer.input_quantizer) == 1


def is_binary_conv(layer) -> bool:
    return signs_its_input(layer) and _precision(layer.kernel_quantizer) == 1


def iter_layers(model):
    """Every layer, descending into nested models, in topological order."""
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def binary_conv_layers(model) -> list:
    return [layer for layer in iter_layers(model) if is_binary_conv(layer)]


def zero_padding_too_small(layers) -> list[str]:
    """Binary convs that LCE 0.16 computes wrong: zero padding ("same", ``pad_values=0``, the official convention)
    on a feature map smaller than the kernel. Its per-position padding correction gave other answers on 1x1 and
    2x2 maps under a 3x3 kernel (stride 1 and 2), the same ones from 3x3 up (measured through its interpreter);
    one-padding is not affected."""
    return [f"{layer.name} ({'x'.join(str(d) for d in layer.input_shape[1:3])} input, "
            f"{'x'.join(str(k) for k in layer.kernel_size)} kernel)"
            for layer in layers
            if layer.padding == "same" and float(layer.pad_values) == 0.0
            and any(int(n) < k for n, k in zip(layer.input_shape[1:3], layer.kernel_size, strict=True))]


def layer_macs(layer) -> int:
    """Multiply-accumulates of one forward pass of ``layer`` for one image."""
    if hasattr(layer, "float_macs"):
        return int(layer.float_macs())
    if isinstance(layer, tf.keras.layers.Conv2D) and not isinstance(layer, tf.keras.layers.Conv2DTranspose):
        h, w = layer.output_shape[1:3]
        return int(layer.kernel.shape.num_elements() * h * w)
    if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
        h, w = layer.output_shape[1:3]
        return int(layer.depthwise_kernel.shape.num_elements() * h * w)
    if isinstance(layer, tf.keras.layers.Dense):
        return int(layer.kernel.shape.num_elements())
    return 0


def model_stats(model) -> dict:
    """params, binary_params, binary_macs, float_macs, ops and size_mb of a built Keras model."""
    params = int(model.count_params())
    binary_params = binary_macs = float_macs = 0
    for layer in iter_layers(model):
        macs = layer_macs(layer)
        if is_binary_conv(layer):
            binary_params += layer.kernel.shape.num_elements()
            binary_macs += macs
        else:
            float_macs += macs
    size_bytes = binary_params / 8 + (params - binary_params) * 4
    return {
        "params": params,
        "binary_params": int(binary_params),
        "binary_macs": int(binary_macs),
        "float_macs": int(float_macs),
        "ops": int(binary_macs / 64 + float_macs),
        "size_mb": round(size_bytes / 2**20, 3),
    }
