"""Which Keras binary convs became ``LceBconv2d`` ops: matched by the layer names the converter leaves in tensor
names, then by shape (kernel, input words of 32 channels, filters, output size)."""

from __future__ import annotations

from edgebnn.tflite.describe import BINARY_OPS, CONVERSION_OPS


def _is_binary(layer) -> bool:
    return getattr(layer, "input_quantizer", None) is not None and getattr(layer, "kernel_quantizer", None) is not None


def other_binary_layers(model, convs) -> list[str]:
    """Layers with both quantizers that no LCE binary op exists for (dense, depthwise, transposed convs)."""
    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    names = {layer.name for layer in convs}
    return [layer.name for layer in stats.iter_layers(model) if _is_binary(layer) and layer.name not in names]


def _signature(kh, kw, cin, cout, h, w) -> tuple:
    return (int(kh), int(kw), (int(cin) + 31) // 32, int(cout), int(h), int(w))


def _layer_signature(layer) -> tuple:
    kh, kw, cin, cout = (int(d) for d in layer.kernel.shape)
    out = layer.output_shape
    return _signature(kh, kw, cin, cout, out[1] or -1, out[2] or -1)


def _op_signature(op) -> tuple | None:
    try:
        filt, out = op["inputs"][1][1], op["outputs"][0][1]
        cout, kh, kw, words = filt
        return (int(kh), int(kw), int(words), int(cout), int(out[1]), int(out[2]))
    except (IndexError, ValueError):
        return None


def _segments(tensor_names: list[str]) -> tuple[set[str], set[str]]:
    """Path parts of tensor names, and the last parts of names the converter truncated (prefixes of a name)."""
    whole, cut = set(), set()
    for name in tensor_names:
        for fused in name.split(";"):
            parts = [p for p in fused.split("/") if p]
            whole.update(parts)
            if len(name) >= 48 and fused is name.split(";")[-1] and parts:
                cut.add(parts[-1])
    return whole, cut


def _names_layer(name: str, tensor_names: list[str]) -> bool:
    whole, cut = _segments(tensor_names)
    return name in whole or any(len(c) >= 6 and name.startswith(c) for c in cut)


def _tensor_names(op, outputs_only: bool = False) -> list[str]:
    return [t[0] for t in op["outputs"] + ([] if outputs_only else op["inputs"])]


def match_binary_convs(layers, ops) -> tuple[dict[str, int], list[dict]]:
    """Pair Keras binary convs with ``LceBconv2d`` ops.

    First by name where the pairing is unique both ways (the converter keeps ``model/<layer>/...`` in tensor
    names, truncated to ~50 characters), then by shape (kernel size, input words of 32 channels, filters, output
    height and width) in graph order, skipping layers whose name marks a float op (evidence they stayed float).
    Returns ``({layer name: op index}, [{"layer", "became"} for every layer with no binary op])``.
    """
    bconvs = [i for i, op in enumerate(ops) if op["type"] == "LceBconv2d"]
    candidates = {layer.name: {i for i in bconvs if _names_layer(layer.name, _tensor_names(ops[i]))}
                  for layer in layers}
    matched: dict[str, int] = {}
    for layer in layers:  # 1. names, unique both ways, shapes agreeing
        hits = candidates[layer.name]
        if len(hits) == 1:
            (i,) = hits
            if sum(i in c for c in candidates.values()) == 1 and _op_signature(ops[i]) in (None,
                                                                                          _layer_signature(layer)):
                matched[layer.name] = i
    free = set(bconvs) - set(matched.values())

    def float_ops_named(layer):
        return sorted({op["type"] for op in ops if op["type"] not in BINARY_OPS + CONVERSION_OPS
                       and _names_layer(layer.name, _tensor_names(op, outputs_only=True))})

    for layer in layers:  # 2. shapes, first free op in graph order
        if layer.name in matched or {"CONV_2D", "DEPTHWISE_CONV_2D"} & set(float_ops_named(layer)):
            continue
        sig = _layer_signature(layer)
        for i in sorted(free):
            if _op_signature(ops[i]) == sig:
                matched[layer.name] = i
                free.discard(i)
                break
    lost = [{"layer": layer.name, "became": ", ".join(float_ops_named(layer)) or "unknown (fused or renamed)"}
            for layer in layers if layer.name not in matched]
    return matched, lost
