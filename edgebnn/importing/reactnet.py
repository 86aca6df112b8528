"""Key maps of ReActNet's official code (liuzechun/ReActNet ``mobilenet/*/reactnet.py``, ``resnet/*/birealnet.py``).

``LearnableBias`` computes x + b with b of shape (1, C, 1, 1), so RSign's threshold alpha (x - alpha) is
``-move.bias``, and RPReLU (PReLU(x - gamma) + zeta, slope beta) is move_a -> PReLU -> move_b:
gamma = -move_a.bias, beta = prelu.weight, zeta = move_b.bias.

ReActNet-A (``feature.0`` the stem, ``feature.1..13`` the blocks, ``fc``), block i -> ``block{i}``:

    move11 -> _a_rsign            binary_3x3 -> _a_conv       bn1 -> _a_bn     move12, prelu1, move13 -> _a_rprelu
    move21 -> _b_rsign            binary_pw -> _b_conv        bn2 -> _b_bn
                                  binary_pw_down1/2 -> _b_conv1/2, bn2_1/2 -> _b_bn1/2 (blocks doubling channels)
    move22, prelu2, move23 -> _b_rprelu

Step 2 stores ``HardBinaryConv.weights`` flat ``(O*I*k*k, 1)``; step 1 has plain ``nn.Conv2d`` there, 4-D
``.weight``. ReAct-ResNet-18 (the Bi-Real layout): ``layerS.B.move0`` -> ``_rsign``, ``binary_conv`` -> the conv,
``bn1``, ``move1, prelu, move2`` -> ``_rprelu``; its step 2 stores 4-D ``binary_conv.weight`` since commit a3c603b
(flat ``.weights`` before), as step 1 does, so a 4-D ReAct-ResNet checkpoint is taken as step 2 unless told.
"""

from __future__ import annotations

from edgebnn.importing import bireal
from edgebnn.importing.tensors import Mapper

BLOCKS = 13
LAST_CHANNELS = 1024


def rsign(m: Mapper, layer: str, key: str) -> None:
    m.vector(layer, "alpha", key, sign=-1.0)


def rprelu(m: Mapper, layer: str, prefix: str, before: str, prelu: str, after: str) -> None:
    m.vector(layer, "gamma", f"{prefix}.{before}.bias", sign=-1.0)
    m.vector(layer, "beta", f"{prefix}.{prelu}.weight")
    m.vector(layer, "zeta", f"{prefix}.{after}.bias")


def reactnet_a_block(m: Mapper, name: str, p: str) -> None:
    rsign(m, f"{name}_a_rsign", f"{p}.move11.bias")
    m.conv(f"{name}_a_conv", f"{p}.binary_3x3")
    m.batch_norm(f"{name}_a_bn", f"{p}.bn1")
    rprelu(m, f"{name}_a_rprelu", p, "move12", "prelu1", "move13")
    rsign(m, f"{name}_b_rsign", f"{p}.move21.bias")
    if m.model_has(f"{name}_b_conv"):
        m.conv(f"{name}_b_conv", f"{p}.binary_pw")
        m.batch_norm(f"{name}_b_bn", f"{p}.bn2")
    else:
        for h in (1, 2):
            m.conv(f"{name}_b_conv{h}", f"{p}.binary_pw_down{h}")
            m.batch_norm(f"{name}_b_bn{h}", f"{p}.bn2_{h}")
    rprelu(m, f"{name}_b_rprelu", p, "move22", "prelu2", "move23")


def resnet_block(m: Mapper, name: str, p: str) -> None:
    rsign(m, f"{name}_rsign", f"{p}.move0.bias")
    m.conv(name, f"{p}.binary_conv")
    m.batch_norm(f"{name}_bn", f"{p}.bn1")
    rprelu(m, f"{name}_rprelu", p, "move1", "prelu", "move2")


def detect(state) -> str | None:
    if "feature.0.conv1.weight" in state:
        return "reactnet-a"
    if "layer1.0.move0.bias" in state:
        depth = bireal.depth_of(state)
        return f"reactnet-{depth}" if depth else "reactnet-18"
    return None


def binary_key(state, name: str) -> str:
    return "feature.1.binary_3x3" if name == "reactnet-a" else "layer1.0.binary_conv"


def step_of(state, name: str) -> tuple[int, str]:
    """(step, why): flat binary kernels are step 2's; 4-D ones are step 1's in ReActNet-A's code and either step's
    in the ResNet's (step 2 assumed)."""
    key = binary_key(state, name)
    if f"{key}.weights" in state:
        return 2, f"{key}.weights is flat: step 2 (binary weights)"
    if name == "reactnet-a":
        return 1, f"{key}.weight is 4-D: step 1 (real weights), as the official MobileNet code stores it"
    return 2, (f"{key}.weight is 4-D, as both steps of the official ResNet code store it: taken as step 2 "
               f"(pass --step 1 for a step-1 checkpoint)")


def facts(state, name: str) -> dict:
    if name == "reactnet-a":
        return bireal.head_facts(state, LAST_CHANNELS)
    return bireal.head_facts(state)


def fill(m: Mapper, name: str, model) -> None:
    if name == "reactnet-a":
        m.conv("stem_conv", "feature.0.conv1")
        m.batch_norm("stem_bn", "feature.0.bn1")
        for i in range(1, BLOCKS + 1):
            reactnet_a_block(m, f"block{i}", f"feature.{i}")
        m.dense("head_fc", "fc")
        return
    bireal.fill_layout(m, int(name.rsplit("-", 1)[1]), resnet_block)
