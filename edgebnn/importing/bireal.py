"""Key map of the Bi-Real-18/34 layout as the official PyTorch code names it (liuzechun/Bi-Real-net
``birealnet.py``; ReActNet's ResNet and SD-BNN's ImageNet model reuse it with their own block):

    conv1 (7x7 s2), bn1                                  -> stem_conv, stem_bn
    layerS.B.<block>                                     -> stageS_conv(B+1)...      (S = 1..4)
    layerS.0.downsample.1 (1x1 conv), .downsample.2 (BN) -> stageS_conv1_down_conv, _down_bn
    fc                                                   -> head_fc

Bi-Real's block: ``binary_conv.weights`` (flat ``(O*I*9, 1)``; 4-D ``.weight`` accepted) -> ``stageS_convN``,
``bn1`` -> ``stageS_convN_bn``. Bi-Real-18 has [4, 4, 4, 4] blocks per stage, Bi-Real-34 [6, 8, 12, 6].
"""

from __future__ import annotations

from edgebnn.importing.tensors import Mapper

DEPTHS = {(4, 4, 4, 4): 18, (6, 8, 12, 6): 34}
STAGES = {depth: blocks for blocks, depth in DEPTHS.items()}
LAST_CHANNELS = 512  # fc's input at width 1


def blocks_per_stage(state, stages: int = 4, block_key: str = "") -> tuple[int, ...]:
    """How many blocks ``layerS.B.`` each stage of the checkpoint holds."""
    return tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{s}.") and block_key in k})
                 for s in range(1, stages + 1))


def depth_of(state) -> int | None:
    return DEPTHS.get(blocks_per_stage(state))


def head_facts(state, last_channels: int = LAST_CHANNELS, fc: str = "fc") -> dict:
    """Classes and width from the classifier: ``fc.weight`` is (classes, last_channels * width)."""
    w = state.get(f"{fc}.weight")
    if w is None or len(w.shape) != 2:
        return {}
    return {"num_classes": int(w.shape[0]), "width": float(w.shape[1]) / last_channels}


def fill_layout(m: Mapper, depth: int, block) -> None:
    """The shared skeleton; ``block(m, keras_name, prefix)`` maps one block's own tensors."""
    m.conv("stem_conv", "conv1")
    m.batch_norm("stem_bn", "bn1")
    for s, n in enumerate(STAGES[depth], start=1):
        for b in range(n):
            name, prefix = f"stage{s}_conv{b + 1}", f"layer{s}.{b}"
            block(m, name, prefix)
            if m.model_has(f"{name}_down_conv"):
                m.conv(f"{name}_down_conv", f"{prefix}.downsample.1")
                m.batch_norm(f"{name}_down_bn", f"{prefix}.downsample.2")
    m.dense("head_fc", "fc")


def bireal_block(m: Mapper, name: str, prefix: str) -> None:
    m.conv(name, f"{prefix}.binary_conv")
    m.batch_norm(f"{name}_bn", f"{prefix}.bn1")


def detect(state) -> str | None:
    if not any(f"layer1.0.binary_conv.{w}" in state for w in ("weights", "weight")):
        return None
    if "layer1.0.move0.bias" in state or "layer1.0.binary_conv.alpha" in state:
        return None  # ReActNet's or SD-BNN's block on the same layout
    depth = depth_of(state)
    return f"bireal-{depth}" if depth else "bireal-18"


def facts(state, name: str) -> dict:
    return head_facts(state)


def fill(m: Mapper, name: str, model) -> None:
    fill_layout(m, int(name.rsplit("-", 1)[1]), bireal_block)
