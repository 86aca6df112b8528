"""Key map of the ``bnn`` library's ResNet-18 with ``PreBasicBlock`` and PReLU (1adrianb/binary-networks-pytorch,
``examples/imagenet.py`` with ``imagenet-baseline.yaml``), edgebnn's xnorpp-18-bnn: torchvision's names.

    conv1, bn1 -> stem_conv, stem_bn            fc -> head_fc
    layerS.B.bn1, .conv1.weight (4-D), .conv1.activation_post_process.alpha (1, O, 1, 1), .act1.weight
        -> stageS_block(B+1)_bn1, _conv1, _conv1_gamma (Gamma case 1), _conv1_prelu   (and the same for 2)
    layerS.0.downsample.1 (real 1x1 conv), .downsample.2 (BN) -> _down_conv, _down_bn

Step 0 of the library's recipe keeps the weights real (step 1 here), step 1 binarises them (step 2 here): both
store 4-D ``.weight``, so a checkpoint is taken as binary-weight unless told. A recipe that binarises the
downsample convs too (``xnor-net-plus.yaml``) leaves their ``alpha`` over: the model keeps them real.
"""

from __future__ import annotations

from edgebnn.importing import bireal
from edgebnn.importing.tensors import Mapper

STAGES = (2, 2, 2, 2)


def block(m: Mapper, name: str, p: str) -> None:
    for k in (1, 2):
        m.batch_norm(f"{name}_bn{k}", f"{p}.bn{k}")
        m.conv(f"{name}_conv{k}", f"{p}.conv{k}")
        m.vector(f"{name}_conv{k}_gamma", "alpha", f"{p}.conv{k}.activation_post_process.alpha")
        m.prelu(f"{name}_conv{k}_prelu", f"{p}.act{k}.weight")
    if m.model_has(f"{name}_down_conv"):
        m.conv(f"{name}_down_conv", f"{p}.downsample.1")
        m.batch_norm(f"{name}_down_bn", f"{p}.downsample.2")


def detect(state) -> str | None:
    return "xnorpp-18-bnn" if "layer1.0.conv1.activation_post_process.alpha" in state else None


def step_of(state, name: str) -> tuple[int, str]:
    return 2, "the bnn library stores 4-D .weight in both steps: taken as binary weights (pass --step 1 for real)"


def facts(state, name: str) -> dict:
    return bireal.head_facts(state)


def fill(m: Mapper, name: str, model) -> None:
    m.conv("stem_conv", "conv1")
    m.batch_norm("stem_bn", "bn1")
    for s, n in enumerate(STAGES, start=1):
        for b in range(n):
            block(m, f"stage{s}_block{b + 1}", f"layer{s}.{b}")
    m.dense("head_fc", "fc")
