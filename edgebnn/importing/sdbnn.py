"""Key maps of SD-BNN's official code (pingxue-hfut/SD-BNN).

Every binary conv carries WSD's ``alpha (O,)`` -> ``wsd_alpha`` and an SE module for ASD whose two bias-free
Linears ``fc.0.weight (C/r, C)`` and ``fc.2.weight (C, C/r)`` -> ``NAME_asd`` ``squeeze/kernel`` and
``excite/kernel`` (transposed).

- ImageNet ``birealnet.py`` (sdbnn-18): the Bi-Real layout; block ``binary_conv.weights`` (flat), ``.alpha``,
  ``.beta.fc.{0,2}`` (ASD, r = 8), ``bn1``, ``prelu``.
- CIFAR-10 ``ResNet20/resnet.py`` (sdbnn-resnet20): ``conv1, bn1`` stem; ``layerS.B.conv{1,2}`` (``IRConv2d``: 4-D
  ``.weight``, ``.alpha``, ``.dybeta.fc``, r = 16) -> ``stageS_conv{2B+1, 2B+2}``, ``bn{1,2}`` -> their ``_bn``;
  option-A shortcuts hold nothing; ``bn2`` (BatchNorm1d) -> ``head_bn``; ``linear`` -> ``head_fc``.
- CIFAR-10 ``ResNet18/resnet.py`` (sdbnn-resnet18): ``layerS.B`` -> ``stageS_block(B+1)`` with ``conv1/2``,
  ``bn1/2``, ``shortcut.0`` (real 1x1 conv) -> ``_down_conv``, ``shortcut.1`` -> ``_down_bn``; head as ResNet-20.
- CIFAR-10 ``VGG-Small/vgg.py`` (sdbnn-vgg-small): ``conv0, bn0`` (real) -> ``conv1, conv1_bn``; ``conv1..5`` ->
  ``conv2..6``, ``bn1..5`` -> ``conv2_bn..conv6_bn``; ``fc (classes, C*H*W)`` flattens NCHW, Keras' Flatten NHWC,
  so its columns are reordered.
The CIFAR trainers do not save IRConv2d's ``k`` and ``t`` (EDE's backward only).
"""

from __future__ import annotations

import math

import numpy as np

from edgebnn.importing import bireal
from edgebnn.importing.tensors import Mapper, dense_kernel

CIFAR_STAGES = {"sdbnn-resnet20": (16, 32, 64), "sdbnn-resnet18": (64, 128, 256, 512)}
CIFAR_BLOCKS = {"sdbnn-resnet20": 3, "sdbnn-resnet18": 2}
VGG_CONVS = 5  # binary convs after the real conv0
VGG_LAST = 512
VGG_POOLS = 3  # 2x2 max-pools: the last map is input / 8


def asd(m: Mapper, layer: str, prefix: str) -> None:
    m.linear_no_bias(layer, "squeeze/kernel", f"{prefix}.fc.0.weight")
    m.linear_no_bias(layer, "excite/kernel", f"{prefix}.fc.2.weight")


def sd_conv(m: Mapper, name: str, prefix: str, se: str) -> None:
    """One self-distributed binary conv: ASD (``prefix.se``), kernel, WSD's alpha."""
    asd(m, f"{name}_asd", f"{prefix}.{se}")
    m.conv(name, prefix)
    m.vector(name, "wsd_alpha", f"{prefix}.alpha")


def imagenet_block(m: Mapper, name: str, p: str) -> None:
    sd_conv(m, name, f"{p}.binary_conv", "beta")
    m.batch_norm(f"{name}_bn", f"{p}.bn1")
    m.prelu(f"{name}_prelu", f"{p}.prelu.weight")


def fill_resnet20(m: Mapper) -> None:
    for s in range(1, 4):
        for b in range(CIFAR_BLOCKS["sdbnn-resnet20"]):
            for k in (1, 2):
                name = f"stage{s}_conv{2 * b + k}"
                sd_conv(m, name, f"layer{s}.{b}.conv{k}", "dybeta")
                m.batch_norm(f"{name}_bn", f"layer{s}.{b}.bn{k}")


def fill_resnet18(m: Mapper) -> None:
    for s in range(1, 5):
        for b in range(CIFAR_BLOCKS["sdbnn-resnet18"]):
            name, p = f"stage{s}_block{b + 1}", f"layer{s}.{b}"
            for k in (1, 2):
                sd_conv(m, f"{name}_conv{k}", f"{p}.conv{k}", "dybeta")
                m.batch_norm(f"{name}_bn{k}", f"{p}.bn{k}")
            if m.model_has(f"{name}_down_conv"):
                m.conv(f"{name}_down_conv", f"{p}.shortcut.0")
                m.batch_norm(f"{name}_down_bn", f"{p}.shortcut.1")


def vgg_fc_kernel(w: np.ndarray, channels: int) -> np.ndarray:
    """``(classes, C*H*W)`` over an NCHW flatten -> Dense kernel ``(H*W*C, classes)`` over an NHWC flatten."""
    classes, features = w.shape
    side = math.isqrt(features // channels) if channels and features % channels == 0 else 0
    if side * side * channels != features:
        return dense_kernel(w)  # a shape the model's Dense will refuse, named by the mapper
    return np.ascontiguousarray(w.reshape(classes, channels, side, side).transpose(2, 3, 1, 0)
                                .reshape(features, classes))


def fill_vgg(m: Mapper) -> None:
    m.conv("conv1", "conv0")
    m.batch_norm("conv1_bn", "bn0")
    for k in range(1, VGG_CONVS + 1):
        sd_conv(m, f"conv{k + 1}", f"conv{k}", "dybeta")
        m.batch_norm(f"conv{k + 1}_bn", f"bn{k}")
    bn = m.state.get(f"bn{VGG_CONVS}.weight")
    channels = int(np.shape(bn)[0]) if bn is not None and np.ndim(bn) == 1 else 0
    m.dense("head_fc", "fc", kernel=lambda w: vgg_fc_kernel(w, channels))


def detect(state) -> str | None:
    if "layer1.0.binary_conv.beta.fc.0.weight" in state:
        return "sdbnn-18"
    if "conv0.weight" in state and "conv1.dybeta.fc.0.weight" in state:
        return "sdbnn-vgg-small"
    if "layer1.0.conv1.dybeta.fc.0.weight" in state:
        return "sdbnn-resnet18" if any(k.startswith("layer4.") for k in state) else "sdbnn-resnet20"
    return None


def facts(state, name: str) -> dict:
    if name == "sdbnn-18":
        return bireal.head_facts(state)
    if name == "sdbnn-vgg-small":
        bn, fc = state.get(f"bn{VGG_CONVS}.weight"), state.get("fc.weight")
        if bn is None or fc is None or len(fc.shape) != 2:
            return {}
        c = int(bn.shape[0])
        side = math.isqrt(int(fc.shape[1]) // c) if int(fc.shape[1]) % c == 0 else 0
        return {"num_classes": int(fc.shape[0]), "width": c / VGG_LAST,
                **({"input_size": side * 2 ** VGG_POOLS} if side else {})}
    return bireal.head_facts(state, CIFAR_STAGES[name][-1], fc="linear")


def fill(m: Mapper, name: str, model) -> None:
    if name == "sdbnn-18":
        bireal.fill_layout(m, 18, imagenet_block)
        return
    if name == "sdbnn-vgg-small":
        fill_vgg(m)
        return
    m.conv("stem_conv", "conv1")
    m.batch_norm("stem_bn", "bn1")
    if name == "sdbnn-resnet20":
        fill_resnet20(m)
    else:
        fill_resnet18(m)
    m.batch_norm("head_bn", "bn2")
    m.dense("head_fc", "linear")
