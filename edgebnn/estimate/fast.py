"""The fast path: a model's aarch64 instructions predicted from its flatbuffer's op shapes, in well under a second.

Each op belongs to a kernel class (``kernel_of``: LCE's binary conv and quantize, XNNPACK's IGEMM and GEMM
convolutions, depthwise conv, fully connected, elementwise, PReLU, pooling, mean, concatenation, ...) and costs

    I_op = sum_f c_{k,f} * x_f(op),    c >= 0

with features x_f of its shapes (``features``): output pixels P, channels, kernel size, bitpacked depth in 32-bit
words (LCE's filters hold 32 input channels per word), elements in and out, and 1 (the per-op overhead). The
coefficients c_k are fitted per class by non-negative least squares to per-op counts made under QEMU by the exact
path (``counting.count_model``), each op weighted by 1 / sqrt(I_op) (``fit_cost_model``); the model's instructions
are the ops' sum plus a fitted constant (the interpreter's own work per inference). The instructions per kernel
class of ``counting.CLASSES``, which the board model needs, are each op's prediction, its GEMM work and the rest,
split by shares fitted by non-negative least squares to the counted models' class totals (``class_shares``).

Costs are keyed by kernel class and tensor type (``cost_key``): an op whose first input or output tensor is
integer-quantised (int8, uint8, int16) has its own coefficients (``CONV_2D igemm int8``: TFLite's int8 kernels
cost other instructions per multiply-accumulate than XNNPACK's float ones), and the whole model is fitted per QEMU
core (``cores``: an int8 convolution costs 2.5x the instructions on cortex-a72, which has no dot product, as on
``max``, which has). The fitted coefficients ship as ``fast_model.json`` beside ``calibration.json``
({``cores``: {core: model}}; ``bench/fast_estimate.py --fit`` writes it, with the models each core's model was
fitted on and its error on models outside the fit).
"""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import numpy as np

from edgebnn.devices.qemu import DEFAULT_CPU
from edgebnn.errors import EdgebnnError
from edgebnn.estimate.counting import CLASS_NAMES, dense_macs
from edgebnn.tflite import fields
from edgebnn.tflite.describe import read_ops

ELEMENTWISE = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE"}
UNARY = {"LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1", "HARD_SWISH", "ABS", "NEG", "ELU", "LEAKY_RELU"}
SHAPE_ONLY = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}
# Ops XNNPACK's delegate leaves to TFLite's own kernels (besides LCE's custom ops).
UNDELEGATED = {"STRIDED_SLICE", "SPLIT", "SPLIT_V", "GATHER", "CAST", "SHAPE", "PACK", "UNPACK", "TILE", "ARG_MAX"}
# An XNNPACK operator that starts a delegate partition carries the partition's overhead; the last op of the graph
# carries the runner's own work between two inferences.
_XNN = ("partition_start", "last_op")
FEATURES = {
    "LceBconv2d": ("binary_macs", "tiles", "im2col_words", "im2col_pixels", "outputs", "pixels", "one", "last_op"),
    "LceQuantize": ("aligned_elems", "unaligned_words", "unaligned_pixels", "pixels", "one", "last_op"),
    "CONV_2D igemm": ("macs", "tiles", "tile_taps", "out_elems", "taps", "one") + _XNN,
    "CONV_2D gemm": ("macs", "tiles", "out_elems", "one") + _XNN,
    "DEPTHWISE_CONV_2D": ("macs", "out_elems", "one") + _XNN,
    "FULLY_CONNECTED": ("macs", "out_elems", "one") + _XNN,
    "elementwise": ("same_elems", "broadcast_elems", "broadcast_pixels", "one") + _XNN,
    "PRELU": ("out_elems", "pixels", "one") + _XNN,
    "MAX_POOL_2D": ("in_elems", "out_elems", "pixels", "one") + _XNN,
    "AVERAGE_POOL_2D": ("in_elems", "out_elems", "pixels", "one") + _XNN,
    "MEAN": ("in_elems", "out_elems", "in_pixels", "squeezed_elems", "one") + _XNN,
    "CONCATENATION": ("out_elems", "row_copies", "inputs", "one") + _XNN,
    "unary": ("out_elems", "one") + _XNN,
    "shape": ("one",) + _XNN,
    "other": ("in_elems", "out_elems", "one") + _XNN,
}


def _n(shape) -> int:
    return math.prod(int(d) for d in shape) if shape else 1


def _pixels(shape) -> int:
    return _n(shape[1:-1]) if len(shape) >= 3 else 1


def kernel_of(op: dict) -> str:
    """The kernel class of a flatbuffer op (see ``FEATURES``)."""
    t = op["type"]
    if t == "CONV_2D":
        k = op["inputs"][1][1]  # a 1x1 conv costs as a GEMM on its output pixels, strided (IGEMM) or not
        return "CONV_2D gemm" if len(k) == 4 and k[1] == k[2] == 1 else "CONV_2D igemm"
    if t in ("LceBconv2d", "LceQuantize", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "PRELU", "MEAN", "CONCATENATION",
             "MAX_POOL_2D", "AVERAGE_POOL_2D"):
        return t
    if t in ELEMENTWISE:
        return "elementwise"
    if t in UNARY or t == "SOFTMAX":
        return "unary"
    if t in SHAPE_ONLY:
        return "shape"
    return "other"


QUANTISED_TYPES = {3: "uint8", 7: "int16", 9: "int8"}  # TFLite TensorType codes of integer-quantised tensors
INT8 = " int8"  # the cost key suffix of an integer-quantised op


def typed_ops(flatbuffer: bytes) -> list[dict]:
    """``read_ops`` with each op's ``dtype``: ``int8`` when its first input or first output tensor is
    integer-quantised (int8, uint8, int16: TFLite runs its quantised kernel), else ``float``."""
    ops = read_ops(flatbuffer)
    graph = fields.parse(bytes(flatbuffer)).subgraphs[0]

    def quantised(indices) -> bool:
        return bool(indices) and indices[0] >= 0 and graph.tensors[indices[0]].type in QUANTISED_TYPES

    for op, raw in zip(ops, graph.operators, strict=True):
        op["dtype"] = "int8" if quantised(raw.inputs) or quantised(raw.outputs) else "float"
    return ops


def cost_key(op: dict) -> str:
    """The key an op's costs are fitted and looked up by: its kernel class, `` int8`` added for a quantised op; an
    int8 elementwise op is keyed by its type too (``elementwise SUB int8``: TFLite's int8 ADD has an optimised
    kernel, its per-channel SUB and MUL fall to reference ones, 10-20x the instructions per element)."""
    kind = kernel_of(op)
    if op.get("dtype") != "int8":
        return kind
    return (f"{kind} {op['type']}" if kind == "elementwise" else kind) + INT8


def base_kind(key: str) -> str:
    """The kernel class (its features) of a cost key."""
    key = key.removesuffix(INT8)
    return "elementwise" if key.startswith("elementwise ") else key


def delegated(op: dict) -> bool:
    """Whether XNNPACK's delegate runs the op (a builtin it takes), rather than TFLite or LCE."""
    return op["type"].isupper() and op["type"] not in UNDELEGATED


def all_features(flat_ops: list[dict]) -> list[dict[str, float]]:
    """``features`` of every op, an XNNPACK op that follows one the delegate does not run marked as starting a
    partition."""
    out, before = [], False
    for op in flat_ops:
        x = features(op)
        if "partition_start" in x:
            x["partition_start"] = 1.0 if delegated(op) and not before else 0.0
        before = delegated(op)
        out.append(x)
    if out:
        out[-1]["last_op"] = 1.0
    return out


def features(op: dict) -> dict[str, float]:
    """The op's features (every name its kernel class uses, see ``FEATURES``); ``partition_start`` is set by
    ``all_features``, which sees the ops before it."""
    ins = [s for _, s in op["inputs"] if s is not None]
    out = op["outputs"][0][1] if op["outputs"] else []
    first = ins[0] if ins else []
    x = {"one": 1.0, "in_elems": float(_n(first)), "out_elems": float(_n(out)), "pixels": float(_pixels(out)),
         "inputs": float(len(ins)), "partition_start": 0.0, "in_pixels": float(_pixels(first)), "last_op": 0.0}
    kind = kernel_of(op)
    if kind == "LceBconv2d":
        co, kh, kw, words = (list(ins[1]) + [1, 1, 1, 1])[:4]
        tiles = math.ceil(x["pixels"] / 4) * math.ceil(co / 8)  # LCE's NEON kernel: 4 pixels x 8 channels a call
        x.update(binary_macs=tiles * 32 * kh * kw * words, tiles=tiles, im2col_words=x["pixels"] * kh * kw * words
                 if kh * kw > 1 else 0.0, outputs=x["pixels"] * co,  # float, or bitpacked for the next bconv
                 im2col_pixels=x["pixels"] if kh * kw > 1 else 0.0)  # a 1x1 conv reads its input in place
    elif kind == "LceQuantize":
        c = first[-1] if first else 1
        x.update(pixels=float(_pixels(first)), aligned_elems=x["in_elems"] if c % 32 == 0 else 0.0)
        x["unaligned_words"] = 0.0 if c % 32 == 0 else x["pixels"] * math.ceil(c / 32)  # a slower path per word
        x["unaligned_pixels"] = 0.0 if c % 32 == 0 else x["pixels"]
    elif kind in ("CONV_2D igemm", "CONV_2D gemm", "DEPTHWISE_CONV_2D"):
        k = list(ins[1]) if len(ins) > 1 else [1, 1, 1, 1]
        co = out[-1] if out else 1
        taps = k[1] * k[2]
        depth = 1 if kind == "DEPTHWISE_CONV_2D" else k[3]
        x.update(macs=x["pixels"] * math.ceil(co / 8) * 8 * taps * depth, taps=x["pixels"] * taps,
                 tiles=math.ceil(x["pixels"] / 4) * math.ceil(co / 8))  # micro-kernel calls: 4 pixels x 8 channels
        x["tile_taps"] = x["tiles"] * taps  # an IGEMM tile steps through the kernel's taps, Ci channels each
    elif kind == "FULLY_CONNECTED":
        w = list(ins[1]) if len(ins) > 1 else [1, 1]
        x.update(macs=float(math.ceil(w[0] / 8) * 8 * _n(w[1:])))
    elif kind == "MEAN":  # a mean that drops the reduced axes (keep_dims false) runs TFLite's slower int8 path
        x["squeezed_elems"] = x["in_elems"] if len(out) < len(first) else 0.0
    elif kind == "CONCATENATION":  # along channels: one copy per pixel and input
        x["row_copies"] = x["pixels"] * x["inputs"]
    elif kind == "elementwise":
        same = len(ins) >= 2 and _n(ins[0]) == _n(ins[1]) == _n(out)  # [1, H, W, C] by [H, W, C] is no broadcast
        x.update(same_elems=x["out_elems"] if same else 0.0, broadcast_elems=0.0 if same else x["out_elems"],
                 broadcast_pixels=0.0 if same else x["pixels"])
    return {f: x.get(f, 0.0) for f in FEATURES[kind]}


def predict_op(x: dict[str, float], kind: str, model: dict) -> float:
    """One op's instructions from its features ``x`` (of cost key ``kind``; a key the model was not fitted on is
    costed as ``other``, by its elements in and out)."""
    coef = model["kernels"].get(kind) or model["kernels"]["other"]
    return float(sum(c * x.get(f, 0.0) for f, c in coef.items()))


def shipped_model() -> dict:
    """The shipped cost models (``fast_model.json``: {cores: {core: model}, runner_sha256, made})."""
    try:
        raw = json.loads(resources.files("edgebnn.estimate").joinpath("fast_model.json").read_text())
    except FileNotFoundError:
        raise EdgebnnError("the fast path's cost model fast_model.json is missing from the package: reinstall "
                           "edgebnn or run `python bench/fast_estimate.py --fit`") from None
    return raw if "cores" in raw else {"cores": {"max": raw}, "runner_sha256": raw.get("runner_sha256"),
                                       "made": raw.get("made")}


def cores(models: dict) -> list[str]:
    """The QEMU cores ``models`` (``shipped_model()``) has a cost model for."""
    return list(models.get("cores", {}))


def core_model(models: dict, cpu: str = DEFAULT_CPU) -> dict:
    """The cost model fitted on counts made on QEMU core ``cpu`` (with ``cpu`` set), or one clear error."""
    if "kernels" in models:  # already one core's
        return models
    if cpu not in models["cores"]:
        raise EdgebnnError(f"the fast path has no cost model for {cpu} (fitted on {', '.join(models['cores'])}): "
                           "count under QEMU (--runner) for it")
    return {**models["cores"][cpu], "cpu": cpu, "runner_sha256": models.get("runner_sha256"),
            "made": models.get("made")}


def node_type(op: dict, model: dict) -> str:
    """The name the exact path gives this op's row (an XNNPACK operator's kernel, or the op type)."""
    key = f"{op['type']}|{cost_key(op)}"
    return model["node_types"].get(key, model["node_types"].get(f"{op['type']}|{kernel_of(op)}", op["type"]))


def _key_in(op: dict, model: dict) -> str:
    """The op's cost key if the model was fitted on it, else its float kind's, else ``other``."""
    for key in (cost_key(op), kernel_of(op)):
        if key in model["kernels"]:
            return key
    return "other"


def predict(flat_ops: list[dict], model: dict | None = None) -> dict:
    """Counts like ``counting.count_model``'s, predicted from the flatbuffer's ops (``read_ops``): instructions,
    classes, per-op rows (node_type, index, name, instructions, kernel), dense_macs, and ``path`` = ``fast``."""

    model = core_model(model or shipped_model())
    ops, classes = [], dict.fromkeys(CLASS_NAMES, 0.0)
    for i, (op, x) in enumerate(zip(flat_ops, all_features(flat_ops), strict=True)):
        kind = _key_in(op, model)
        n = max(predict_op(x, kind, model), 0.0)
        for part, amount in zip(("work", "rest"), split(x, kind, model), strict=True):
            for c, share in model["class_shares"].get(f"{kind}|{part}", {"other": 1.0}).items():
                classes[c] += max(amount, 0.0) * share
        ops.append({"node_type": node_type(op, model), "index": i, "times_called": 1, "kernel": kind,
                    "name": op["outputs"][0][0] if op["outputs"] else f"op {i}", "op": op["type"], "op_index": i,
                    "instructions": n})
    rest = model["per_inference"]
    classes["other"] += rest
    total = sum(o["instructions"] for o in ops) + rest
    unfitted = sorted({op["type"] for op in flat_ops if kernel_of(op) not in model["kernels"]
                       or (kernel_of(op) == "other" and op["type"] not in model.get("other_types", ()))})
    as_float = sorted({op["type"] for op in flat_ops if cost_key(op) != kernel_of(op)
                       and cost_key(op) not in model["kernels"] and kernel_of(op) in model["kernels"]})
    warnings = [f"the fast path's cost model was fitted on no {', '.join(unfitted)} op: costed by its elements in "
                "and out; count under QEMU for the exact figure"] if unfitted else []
    warnings += [f"the fast path's cost model for {model.get('cpu')} was fitted on no int8 {', '.join(as_float)} "
                 "op: costed as float; count under QEMU for the exact figure"] if as_float else []
    return {"instructions": total, "per_vcpu": {0: total}, "classes": classes, "ops": ops, "warnings": warnings,
            "dense_macs": dense_macs(flat_ops), "threads": 1, "runs": (0, 0), "qemu": None, "path": "fast",
            "cpu": model.get("cpu"), "fast_error_max_pct": fast_error_pct(model),
            "fast_model": {"fitted_on": len(model["fitted_on"]), "made": model.get("made"), "cpu": model.get("cpu")}}


def fast_error_pct(model: dict) -> float:
    """The fast path's own error, in percent, that an estimate's range adds: the larger of its largest whole-model
    instruction error and its largest board-estimate error (fast against exact, same calibration) on the models
    outside its fit (``holdout``, measured by ``bench/fast_estimate.py --fit``)."""
    hold = model.get("holdout") or {}
    return max(hold.get("whole_model_max_pct", 0.0), hold.get("board_ms_max_pct", 0.0))


def predict_file(path, cpu: str = DEFAULT_CPU) -> dict:
    """``predict`` for a .tflite file with the cost model of QEMU core ``cpu``."""
    return predict(typed_ops(Path(path).read_bytes()), core_model(shipped_model(), cpu))


# ------------------------------------------------------------------------------------------- fitting
def measured_ops(counts: dict, partial: bool = False) -> dict[int, float] | None:
    """Counted instructions per flatbuffer op index (a concatenation's copies summed), or None when some row is
    not named by its flatbuffer op (the exact path could not tell which op an XNNPACK operator ran); with
    ``partial``, the ops that are named (an int8 islands flatbuffer splits its float ops over many XNNPACK
    partitions whose operators are not named, while its int8 TFLite ops are)."""
    out: dict[int, float] = {}
    for row in counts["ops"]:
        i = row.get("op_index") if "delegate" in row else row.get("index")
        if i is None:
            if partial and "delegate" in row:
                continue
            return None
        out[i] = out.get(i, 0.0) + row["instructions"]
    return out


def _nnls_weighted(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls  # lazy: SciPy's optimiser takes a second

    w = 1.0 / np.sqrt(np.maximum(y, 1.0))
    scale = np.maximum(np.abs(x).max(axis=0), 1e-12)
    k, _ = nnls(x / scale * w[:, None], y * w)
    return k / scale


def fit_cost_model(samples: dict[str, dict]) -> dict:
    """Coefficients per kernel class from counted models (name -> ``count_model`` result with ``flat_ops``).
    Returns {kernels: {class: {feature: c}}, per_inference, class_shares, node_types, fitted_on}."""
    rows: dict[str, list] = {}
    names: dict[str, dict] = {}
    for counts in samples.values():
        measured = measured_ops(counts, partial=True)
        named = measured_ops(counts) is not None
        if not measured:
            continue
        for i, (op, x) in enumerate(zip(counts["flat_ops"], all_features(counts["flat_ops"]), strict=True)):
            if i in measured and (named or cost_key(op) != kernel_of(op)):  # else: the int8 ops only
                rows.setdefault(cost_key(op), []).append((x, measured[i]))
        for row in counts["ops"]:
            i = row.get("op_index") if "delegate" in row else row.get("index")
            if i is None:
                continue
            op = counts["flat_ops"][i]
            names.setdefault(f"{op['type']}|{cost_key(op)}", {}).setdefault(row["node_type"], 0)
            names[f"{op['type']}|{cost_key(op)}"][row["node_type"]] += 1
    kernels = {}
    for kind, data in rows.items():
        feats = FEATURES[base_kind(kind)]
        x = np.array([[f[n] for n in feats] for f, _ in data])
        y = np.array([v for _, v in data])
        kernels[kind] = dict(zip(feats, _nnls_weighted(x, y).tolist(), strict=True))
    kernels.setdefault("other", {"in_elems": 1.0, "out_elems": 1.0, "one": 1000.0})
    other_types = sorted({op["type"] for c in samples.values() for op in c["flat_ops"] if kernel_of(op) == "other"})
    model = {"kernels": kernels, "per_inference": 0.0, "class_shares": {}, "other_types": other_types,
             "node_types": {k: max(v, key=v.get) for k, v in names.items()}, "fitted_on": sorted(samples)}
    gaps = [c["instructions"] - predict(c["flat_ops"], {**model, "class_shares": {}})["instructions"]
            for c in samples.values()]
    model["per_inference"] = max(float(np.median(gaps)), 0.0)
    model["class_shares"] = class_shares(samples, model)
    return model


WORK = ("binary_macs", "tiles", "macs", "tile_taps")  # the features of a GEMM micro-kernel's own work
_LCE = ("binary_gemm", "binary_other", "memory", "other")
_GEMM = ("float_gemm", "float_other", "memory", "other")
_FLOAT = ("float_other", "memory", "other")


def allowed_classes(kind: str) -> tuple[str, ...]:
    """The kernel classes an op of this kernel class can run: LCE's, XNNPACK's GEMMs', or other float kernels'."""
    if kind.startswith("Lce"):
        return _LCE
    return _GEMM if base_kind(kind) in ("CONV_2D igemm", "CONV_2D gemm", "FULLY_CONNECTED") else _FLOAT


def split(x: dict[str, float], kind: str, model: dict) -> tuple[float, float]:
    """An op's predicted instructions as (its GEMM micro-kernel's work, the rest)."""
    coef = model["kernels"].get(kind) or model["kernels"]["other"]
    work = sum(c * x.get(f, 0.0) for f, c in coef.items() if f in WORK)
    return work, predict_op(x, kind, model) - work


def class_shares(samples: dict[str, dict], model: dict) -> dict[str, dict[str, float]]:
    """How each kernel class's predicted work (``KIND|work``: the GEMM features) and the rest (``KIND|rest``) split
    over ``counting.CLASSES``. Per counted class c, the models' totals I_c ~ sum_j s_jc * I_j over the parts j whose
    kernel class can run c (``allowed_classes``), I_j the part's instructions (counted, split as predicted), s >= 0
    by NNLS on the relative error; each part's shares then normalised to sum to 1."""
    from scipy.optimize import nnls  # lazy: SciPy's optimiser takes a second


    parts = [f"{k}|{p}" for k in sorted(model["kernels"]) for p in ("work", "rest")]
    a, targets = [], {c: [] for c in CLASS_NAMES}
    for counts in samples.values():
        measured = measured_ops(counts) or {}
        per_part = dict.fromkeys(parts, 0.0)
        for i, (op, x) in enumerate(zip(counts["flat_ops"], all_features(counts["flat_ops"]), strict=True)):
            kind = _key_in(op, model)
            work, rest = split(x, kind, model)
            scale = measured[i] / (work + rest) if i in measured and work + rest > 0 else 1.0
            per_part[f"{kind}|work"] += work * scale
            per_part[f"{kind}|rest"] += rest * scale
        a.append([per_part[j] for j in parts])
        for c in CLASS_NAMES:
            targets[c].append(counts["classes"][c] - (model["per_inference"] if c == "other" else 0.0))
    a = np.array(a)
    w = 1.0 / np.maximum(a.sum(axis=1), 1.0)
    raw = {}
    for c in CLASS_NAMES:
        cols = [j for j, part in enumerate(parts) if c in allowed_classes(part.split("|")[0])]
        k = nnls(a[:, cols] * w[:, None], np.array(targets[c]) * w)[0] if cols else []
        raw[c] = dict(zip(cols, k, strict=True))
    out = {}
    for j, part in enumerate(parts):
        total = sum(raw[c].get(j, 0.0) for c in CLASS_NAMES)
        kind, which = part.split("|")
        default = allowed_classes(kind)[0 if which == "work" else 1]
        out[part] = ({c: float(raw[c].get(j, 0.0) / total) for c in CLASS_NAMES if raw[c].get(j, 0.0) > 0}
                     if total > 0 else {default: 1.0})
    return out
