"""Conversion of a Keras BNN into an LCE flatbuffer for a deployment target, with proof that it still answers the same.

:func:`convert` (also callable as ``edgebnn.convert(...)``) does, in order:

1. resolve the source: a run folder (``run.json`` + ``model.keras``) or a saved Keras model file;
2. load the target profile (``converters/<target>.toml``) and convert with
   ``larq_compute_engine.convert_keras_model(model, target=profile.lce_target)``;
3. read the flatbuffer back: the op histogram, which Keras binary convs became ``LceBconv2d`` (matched by the
   layer names the converter leaves in tensor names, then by shape: kernel, filters, output size), the float ops
   left per binary conv, the size against a float TFLite of the same model, ``compression = float / LCE bytes``;
4. prove it: N samples of the run's data set through LCE's interpreter (batch 1, one thread) and the Keras
   model: ``max|y_tflite - y_keras|``, that difference over the output scale ``max|y_keras|``, top-1 agreement
   and both top-1 accuracies;
5. write the ``.tflite`` (with the deployment facts embedded as TFLite metadata named ``edgebnn``) and beside it
   the report as ``<file>.json`` (class names, input size, mean/std, source run, recipe, sha256, target...);
6. optionally the baselines: float and int8 post-training-quantised TFLite of the real-valued twin.

The real-valued twin is ``archs.build(info["model"], ..., binary_weights=False, binary_activations=False)`` for a
run of a registered model; for a bare model file (or when the registry cannot build it) it is the same model
cloned with every Larq quantizer and kernel constraint removed. Weights are copied by layer name where shapes
agree; baselines serve size and latency comparisons, their accuracy is not a trained twin's.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import types
from collections import Counter
from pathlib import Path

import numpy as np

import edgebnn
from edgebnn.errors import EdgebnnError

BINARY_OPS = ("LceBconv2d", "LceBMaxPool2d")  # ops that compute on bitpacked data
CONVERSION_OPS = ("LceQuantize", "LceDequantize")  # float <-> bitpacked conversions
METADATA_NAME = "edgebnn"
BASELINES = ("float", "int8")
DEFAULT_DATASET = "digits"
CALIBRATION_SAMPLES = 100
TOLERANCE = 1e-3  # a flatbuffer output may differ from Keras' by this much of the output scale, max|y_keras|
TIE = 1e-6  # a sign input closer than this (relative to its tensor's max) to 0 may round either way


# ------------------------------------------------------------------------------------------ flatbuffer
def _schema():
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:  # pragma: no cover - older TF layouts
        from tensorflow.lite.tools import schema_py_generated as schema
    return schema


def _builtin_names() -> dict[int, str]:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int) and not k.startswith("_")}


def _model_object(flatbuffer: bytes):
    schema = _schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(flatbuffer), 0))


def _text(value) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


def read_ops(flatbuffer: bytes) -> list[dict]:
    """The operators of a TFLite flatbuffer's main subgraph, in execution order.

    Each is ``{"type", "inputs": [(name, shape)], "outputs": [(name, shape)]}``; custom ops are typed by their
    custom code (``LceBconv2d``), builtins by their name (``CONV_2D``).
    """
    model = _model_object(flatbuffer)
    builtins = _builtin_names()
    graph = model.subgraphs[0]

    def tensor(i):
        if i < 0:
            return ("", [])
        t = graph.tensors[i]
        return (_text(t.name), [int(d) for d in (t.shape if t.shape is not None else [])])

    ops = []
    for op in graph.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        kind = _text(code.customCode) if code.customCode else builtins.get(builtin, f"BUILTIN_{builtin}")
        ops.append({"type": kind, "inputs": [tensor(i) for i in (op.inputs if op.inputs is not None else [])],
                    "outputs": [tensor(i) for i in (op.outputs if op.outputs is not None else [])]})
    return ops


def op_histogram(flatbuffer: bytes) -> dict[str, int]:
    """How many operators of each type the flatbuffer holds, most frequent first."""
    return dict(Counter(op["type"] for op in read_ops(flatbuffer)).most_common())


def flatbuffer_problems(ops: list[dict], matched: dict[str, int] | None = None) -> list[str]:
    """What in a flatbuffer LCE's own kernels will refuse: an ``LceBconv2d`` output transform (inputs 2 and 3, the
    post-activation multiplier and bias) must hold one value per output channel. LCE 0.16's converter fuses a
    following multiply by a constant without checking its shape, so a per-position scale (XNOR-Net++ Gamma cases
    2-4 directly after the conv) produces a flatbuffer that does not load."""
    names = {i: name for name, i in (matched or {}).items()}
    problems = []
    for i, op in enumerate(ops):
        if op["type"] != "LceBconv2d":
            continue
        bad = [(what, op["inputs"][slot][1]) for slot, what in ((2, "multiplier"), (3, "bias"))
               if len(op["inputs"]) > slot and op["inputs"][slot][0] and len(op["inputs"][slot][1]) > 1]
        if bad:
            shapes = " and ".join(f"post-activation {what} {shape}" for what, shape in bad)
            problems.append(f"LceBconv2d of layer {names.get(i, '#' + str(i))} has {shapes}, but LCE's kernel "
                            f"takes one value per output channel (the converter fused a per-position scale)")
    return problems


def load_error(flatbuffer: bytes) -> str | None:
    """None when LCE's interpreter loads the flatbuffer and allocates its tensors, else why not."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    try:
        Interpreter(flatbuffer, num_threads=1)
    except (RuntimeError, ValueError) as err:
        return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return None


def float_op_count(histogram: dict[str, int]) -> int:
    """Operators that compute on float data: all but the bitpacked ops and the float<->bitpacked conversions."""
    return sum(n for kind, n in histogram.items() if kind not in BINARY_OPS + CONVERSION_OPS)


def embed_metadata(flatbuffer: bytes, meta: dict, name: str = METADATA_NAME) -> bytes:
    """The flatbuffer with ``meta`` (JSON) stored as TFLite metadata entry ``name`` (replacing an older one)."""
    schema = _schema()
    import flatbuffers

    model = _model_object(flatbuffer)
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != name]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(flatbuffer: bytes | str | os.PathLike, name: str = METADATA_NAME) -> dict | None:
    """The JSON metadata entry ``name`` of a flatbuffer (bytes or path), or None when it has none."""
    if not isinstance(flatbuffer, bytes | bytearray):
        flatbuffer = Path(flatbuffer).read_bytes()
    model = _model_object(flatbuffer)
    for entry in model.metadata or []:
        if _text(entry.name) == name:
            data = model.buffers[entry.buffer].data
            return json.loads(bytes(bytearray(data if data is not None else [])).decode())
    return None


def sidecar_path(tflite: str | os.PathLike) -> Path:
    """Where the conversion report of a flatbuffer lives: ``<file>.json``."""
    tflite = Path(tflite)
    return tflite.with_name(tflite.name + ".json")


# ------------------------------------------------------------------------------------------ keras side
def _is_binary(layer) -> bool:
    return getattr(layer, "input_quantizer", None) is not None and getattr(layer, "kernel_quantizer", None) is not None


def other_binary_layers(model, convs) -> list[str]:
    """Layers with both quantizers that no LCE binary op exists for (dense, depthwise, transposed convs)."""
    from edgebnn.archs import stats

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


def _strip_quantizers(model):
    """The same network with every Larq quantizer and kernel constraint removed, weights copied."""
    import tensorflow as tf

    def clone(layer):
        config = layer.get_config()
        changed = False
        for key in ("input_quantizer", "kernel_quantizer", "depthwise_quantizer", "pointwise_quantizer"):
            if config.get(key) is not None:
                config[key], changed = None, True
        if changed:
            for key in ("kernel_constraint", "depthwise_constraint", "pointwise_constraint"):
                if key in config:
                    config[key] = None
            config.pop("metrics", None)
        return layer.__class__.from_config(config)

    twin = tf.keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin


def real_twin(model, info: dict) -> tuple[object, str]:
    """``(twin model, how it was made)``: the registry's real-valued twin of a run's model with the run's weights
    carried over by layer name, else the model itself with its quantizers removed."""
    name = info.get("model")
    if info.get("real"):
        return model, "the run's own model (a real-valued run)"
    if name:
        try:
            from edgebnn import archs

            kwargs = _arch_kwargs(info)
            twin = archs.build(name, input_shape=tuple(model.input_shape[1:]), num_classes=int(model.output_shape[-1]),
                               binary_weights=False, binary_activations=False, **kwargs)
            if tuple(twin.output_shape[1:]) == tuple(model.output_shape[1:]):
                archs.carry_over_weights(model, twin)
                args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
                return twin, f"archs.build({name!r}{args}, binary_weights=False, binary_activations=False)"
        except (ImportError, AttributeError, KeyError, TypeError, ValueError, EdgebnnError):
            pass
    return _strip_quantizers(model), "the same model with its Larq quantizers removed"


def _arch_kwargs(info: dict) -> dict:
    """Builder arguments (width, ...) from the ``[arch]`` table of the run's resolved recipe."""
    import tomllib

    from edgebnn import runs

    path = Path(info.get("run_dir") or "") / runs.RECIPE
    if not info.get("run_dir") or not path.is_file():
        return {}
    try:
        arch = tomllib.loads(path.read_text()).get("arch", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    return {k: v for k, v in arch.items() if v is not None and k not in ("input_shape", "num_classes")}


# ------------------------------------------------------------------------------------------ converters
def _log(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def lce_flatbuffer(model, lce_target: str) -> tuple[bytes, float]:
    """``(flatbuffer, seconds)`` from LCE's converter."""
    import larq_compute_engine as lce

    start = time.perf_counter()
    try:
        fb = lce.convert_keras_model(model, target=lce_target)
    except Exception as err:  # the converter raises many types; name the model and the first line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise EdgebnnError(f"LCE could not convert model {model.name!r} for target {lce_target!r}: {first}") from None
    return bytes(fb), time.perf_counter() - start


def float_flatbuffer(model, samples: np.ndarray | None = None, int8: bool = False) -> tuple[bytes, float, str]:
    """``(flatbuffer, seconds, note)`` from TensorFlow's own converter: float32, or int8 post-training quantised
    with ``samples`` as the representative data set (fully int8 when every op allows it, else with float
    fallback, said in the note). Larq quantizers stay as float ops."""
    import tensorflow as tf

    def make(full_int8: bool):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            data = samples.astype(np.float32)
            converter.representative_dataset = lambda: ([data[i:i + 1]] for i in range(len(data)))
            if full_int8:
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return bytes(converter.convert())

    start = time.perf_counter()
    note = "float32"
    if int8:
        try:
            fb, note = make(True), "int8 weights and activations, float32 input/output"
        except Exception:  # an op with no int8 kernel: keep it float
            fb, note = make(False), "int8 where TFLite has int8 kernels, float fallback elsewhere"
    else:
        fb = make(False)
    return fb, time.perf_counter() - start, note


# ------------------------------------------------------------------------------------------ proof
def _keras_outputs(model, x: np.ndarray) -> np.ndarray:
    outs = [np.asarray(model(x[i:i + 32], training=False)) for i in range(0, len(x), 32)]
    return np.concatenate(outs).reshape(len(x), -1)


def run_tflite(flatbuffer: bytes, x: np.ndarray, *, lce: bool = True, progress: bool = False,
               desc: str = "checking") -> np.ndarray:
    """Outputs of a flatbuffer on ``x``, one sample at a time, one thread (LCE's interpreter or TFLite's)."""
    from edgebnn.progress import progress_bar

    if lce:
        from larq_compute_engine.tflite.python.interpreter import Interpreter

        interp = Interpreter(flatbuffer, num_threads=1)
        run = lambda xi: interp.predict(xi)
    else:
        import tensorflow as tf

        interp = tf.lite.Interpreter(model_content=flatbuffer, num_threads=1)
        interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]

        def run(xi):
            interp.set_tensor(inp["index"], xi.astype(inp["dtype"]))
            interp.invoke()
            return interp.get_tensor(out["index"])

    outs = [np.asarray(run(x[i:i + 1].astype(np.float32))).reshape(1, -1)
            for i in progress_bar(range(len(x)), desc=desc, unit="img", enable=progress)]
    return np.concatenate(outs)


def sign_margins(model, layers, x: np.ndarray) -> np.ndarray | None:
    """Per sample, the smallest ``|a| / max|a|`` over the inputs ``a`` of every binary conv (what its sign sees).

    A margin under :data:`TIE` means a value sat within float32 rounding of the sign threshold: the converter's
    float ops (fused BN, another conv algorithm) may round it to the other side, flipping one bit.
    """
    import tensorflow as tf

    if not layers:
        return None
    try:
        probe = tf.keras.Model(model.inputs, [layer.input for layer in layers])
    except Exception:  # a layer outside the functional graph (nested model): no diagnosis
        return None
    margins = []
    for i in range(0, len(x), 16):
        acts = probe(x[i:i + 16], training=False)
        acts = acts if isinstance(acts, list | tuple) else [acts]
        per_layer = []
        for a in acts:
            a = np.abs(np.asarray(a)).reshape(len(x[i:i + 16]), -1)
            per_layer.append(a.min(1) / np.maximum(a.max(1), 1e-30))
        margins.append(np.min(np.stack(per_layer), 0))
    return np.concatenate(margins)


def compare(reference: np.ndarray, outputs: np.ndarray, labels: np.ndarray | None,
            margins: np.ndarray | None = None) -> dict:
    """max|out - ref|, that over the reference scale max|ref|, top-1 agreement and both top-1 accuracies.

    With sign ``margins`` (see :func:`sign_margins`) it also says which samples beyond :data:`TOLERANCE` of the
    scale are explained by a sign tie, and the largest relative difference among samples with no tie.
    """
    n = len(reference)
    scale = float(np.max(np.abs(reference))) if n else 0.0
    per_sample = np.abs(outputs - reference).reshape(n, -1).max(1) if n else np.zeros(0)
    diff = float(per_sample.max()) if n else 0.0
    rel = per_sample / scale if scale > 0 else np.where(per_sample == 0, 0.0, np.inf)
    top_ref, top_out = reference.argmax(-1), outputs.argmax(-1)
    beyond = np.flatnonzero(rel > TOLERANCE)
    result = {"samples": n, "max_abs_diff": diff, "output_scale": scale,
              "relative_diff": float(rel.max()) if n else 0.0, "tolerance": TOLERANCE,
              "within_tolerance": int(n - len(beyond)),
              "top1_agreement": float(np.mean(top_ref == top_out)) if n else None,
              "keras_top1": None, "tflite_top1": None}
    if margins is not None:
        tied = margins < TIE
        result.update({
            "sign_ties": int(tied.sum()),
            "relative_diff_untied": float(rel[~tied].max()) if (~tied).any() else 0.0,
            "beyond_tolerance": [{"sample": int(i), "relative_diff": float(rel[i]), "sign_margin": float(margins[i]),
                                  "sign_tie": bool(tied[i])} for i in beyond],
            "unexplained": int((~tied[beyond]).sum()),
        })
    if labels is not None and len(labels):
        result["keras_top1"] = float(np.mean(top_ref == labels))
        result["tflite_top1"] = float(np.mean(top_out == labels))
    return result


# ------------------------------------------------------------------------------------------ convert
def _resolve_source(source) -> tuple[object, dict, Path]:
    from edgebnn import runs

    path = Path(source)
    model, info = runs.load_model(path)
    return model, info, path


def _default_output(path: Path, info: dict, target: str) -> Path:
    from edgebnn import runs

    if runs.is_run_dir(path):
        return path / f"model-{target}.tflite"
    return path.with_name(f"{path.stem}-{target}.tflite")


def _output_path(output, path: Path, info: dict, target: str) -> Path:
    if output is None:
        return _default_output(path, info, target)
    out = Path(output)
    if out.is_dir():
        return out / f"{info.get('name') or path.stem}-{target}.tflite"
    if not out.parent.is_dir():
        raise EdgebnnError(f"output folder {out.parent} does not exist; create it or pass -o in an existing folder")
    return out


def _parse_baselines(baselines) -> list[str]:
    if isinstance(baselines, str):
        baselines = [b for b in baselines.split(",") if b.strip()]
    wanted = [b.strip().lower() for b in baselines or ()]
    unknown = [b for b in wanted if b not in BASELINES]
    if unknown:
        raise EdgebnnError(f"unknown baseline {unknown[0]!r}; use any of: {', '.join(BASELINES)} (comma-separated)")
    return list(dict.fromkeys(wanted))


def _samples(dataset: str, n: int, input_shape) -> tuple[np.ndarray, np.ndarray]:
    from edgebnn import data

    size = int(input_shape[0]) if input_shape and input_shape[0] else None
    x, y = data.sample(dataset, n, input_size=size)
    channels = input_shape[-1] if input_shape else None
    if channels and x.shape[-1] != channels:
        raise EdgebnnError(f"data set {dataset} gives {x.shape[-1]}-channel images but the model takes {channels} "
                           f"channels; pass --dataset with matching images")
    if len(x) < n:
        _log(True, f"note: data set {dataset} has only {len(x)} validation images; checking on those")
    return x, y


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_stats(model) -> dict:
    from edgebnn.archs import stats

    return stats.model_stats(model)


def convert(source, target: str = "arm64", output=None, check_samples: int = 100, baselines=(),
            dataset: str | None = None, progress: bool = False) -> dict:
    """Convert a run folder or a saved Keras model for ``target``; write the ``.tflite`` and ``<file>.json``.

    Returns the conversion report (the same dict the JSON file holds). ``check_samples=0`` skips the proof;
    ``baselines`` is any of ``("float", "int8")`` (or ``"float,int8"``); ``dataset`` overrides the run's data set
    (a bare model file defaults to ``digits``).
    """
    from edgebnn import machine, targets

    profile = targets.load(target)  # unknown target fails before any slow work
    wanted = _parse_baselines(baselines)
    if check_samples < 0:
        raise EdgebnnError(f"--check-samples must be 0 or more, not {check_samples}")
    if output is not None:
        out = Path(output)
        if not out.is_dir() and not out.parent.is_dir():
            raise EdgebnnError(f"output folder {out.parent} does not exist; create it or pass -o in an existing "
                               f"folder")
    _log(progress, f"loading {source}")
    model, info, path = _resolve_source(source)
    out = _output_path(output, path, info, profile.name)
    input_shape = [int(d) if d else None for d in model.input_shape[1:]]
    dataset = dataset or info.get("dataset") or DEFAULT_DATASET

    from edgebnn.archs import stats

    layers = stats.binary_conv_layers(model)
    _log(progress, f"converting with LCE (target {profile.lce_target!r}; most of the time is the SavedModel export)")
    fb, seconds = lce_flatbuffer(model, profile.lce_target)
    ops = read_ops(fb)
    histogram = dict(Counter(op["type"] for op in ops).most_common())
    matched, lost = match_binary_convs(layers, ops)
    problems = flatbuffer_problems(ops, matched)
    n_bconv = histogram.get("LceBconv2d", 0)
    n_float = float_op_count(histogram)

    _log(progress, "converting the same model with TensorFlow's converter (float size)")
    float_fb, float_seconds, _ = float_flatbuffer(model)

    num_classes = int(model.output_shape[-1])
    class_names, mean, std, notes = info.get("class_names"), info.get("mean"), info.get("std"), []
    if (class_names is None or mean is None) and (check_samples or wanted):
        from edgebnn import data

        summary = data.describe(dataset, input_size=input_shape[0])
        mean, std = mean or summary["mean"], std or summary["std"]
        notes.append(f"normalisation taken from data set {dataset} (the model file does not record one)")
        if class_names is None and summary["num_classes"] == num_classes:
            class_names = summary["classes"]
            notes.append(f"class names taken from data set {dataset}")
    meta = {
        "edgebnn_version": edgebnn.__version__,
        "target": profile.name, "lce_target": profile.lce_target, "runner": profile.runner,
        "model": info.get("model"), "name": info.get("name") or path.stem,
        "source": str(path), "run_dir": info.get("run_dir"),
        "recipe": _recipe_ref(path, info),
        "dataset": dataset, "input_shape": input_shape, "num_classes": num_classes,
        "class_names": class_names, "mean": mean, "std": std, "notes": notes,
    }
    fb = embed_metadata(fb, meta)

    report = {
        "edgebnn_version": edgebnn.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine.host_label(),
        "source": {"path": str(path), "kind": "run" if info.get("run_dir") else "model",
                   "name": meta["name"], "model": info.get("model"), "run_dir": info.get("run_dir"),
                   "recipe": meta["recipe"]},
        "target": {"name": profile.name, "lce_target": profile.lce_target, "runner": profile.runner,
                   "profile": profile.path},
        "output": str(out), "bytes": len(fb), "sha256": _sha256(fb),
        "deployment": {k: meta[k] for k in ("input_shape", "num_classes", "class_names", "mean", "std", "dataset",
                                            "notes")},
        "conversion": {
            "seconds": round(seconds, 3),
            "ops": histogram,
            "num_ops": len(ops),
            "binary_convs": len(layers),
            "lce_bconv2d": n_bconv,
            "binary_converted": len(layers) - len(lost),
            "binary_fraction": (len(layers) - len(lost)) / len(layers) if layers else 0.0,
            "not_binary": lost,
            "other_binary_layers": other_binary_layers(model, layers),
            "float_ops": n_float,
            "float_ops_per_binary_conv": n_float / n_bconv if n_bconv else None,
            "problems": problems,
        },
        "size": {
            "keras": _model_stats(model),
            "flatbuffer_bytes": len(fb),
            "float_tflite_bytes": len(float_fb),
            "compression": len(float_fb) / len(fb),
            "float_seconds": round(float_seconds, 3),
        },
        "check": None,
        "baselines": {},
    }

    x = y = None
    if check_samples or wanted:
        x, y = _samples(dataset, max(check_samples, CALIBRATION_SAMPLES if "int8" in wanted else 0), input_shape)
        labels_ok = class_names is None or len(class_names) == num_classes
        y = y if labels_ok and int(y.max(initial=0)) < num_classes else None
    broken = load_error(fb)
    if broken:
        report["check"] = {"dataset": dataset, "machine": machine.host_label(), "samples": 0,
                           "error": f"LCE's interpreter cannot load the flatbuffer: {broken}"}
    elif check_samples:
        xs = x[:check_samples]
        keras_out = _keras_outputs(model, xs)
        lce_out = run_tflite(fb, xs, progress=progress, desc="LCE interpreter")
        margins = sign_margins(model, layers, xs)
        report["check"] = {"dataset": dataset, "machine": machine.host_label(),
                           **compare(keras_out, lce_out, None if y is None else y[:check_samples], margins)}

    out.write_bytes(fb)
    if wanted:
        twin, how = real_twin(model, info)
        for name in wanted:
            report["baselines"][name] = _baseline(name, twin, how, x, y, out, check_samples, progress)
    sidecar_path(out).write_text(json.dumps(report, indent=2, default=str) + "\n")
    report["report_file"] = str(sidecar_path(out))
    if broken:
        why = problems[0] if problems else report["check"]["error"]
        raise EdgebnnError(f"{out} does not load in LCE's interpreter: {why}; the report is in {sidecar_path(out)}")
    return report


def _recipe_ref(path: Path, info: dict):
    from edgebnn import runs

    if info.get("run_dir") and (Path(info["run_dir"]) / runs.RECIPE).is_file():
        return str(Path(info["run_dir"]) / runs.RECIPE)
    recipe = info.get("recipe")
    return recipe if isinstance(recipe, str | dict) else None


def _baseline(kind: str, twin, how: str, x, y, out: Path, check_samples: int, progress: bool) -> dict:
    _log(progress, f"baseline {kind}: {how}")
    fb, seconds, note = float_flatbuffer(twin, x[:CALIBRATION_SAMPLES] if kind == "int8" else None, int8=kind == "int8")
    path = out.with_name(f"{out.stem}.{kind}.tflite")
    path.write_bytes(fb)
    histogram = op_histogram(fb)
    result = {"file": str(path), "bytes": len(fb), "sha256": _sha256(fb), "seconds": round(seconds, 3),
              "twin": how, "note": note, "ops": histogram}
    if check_samples:
        xs = x[:check_samples]
        ref = _keras_outputs(twin, xs)
        result["check"] = compare(ref, run_tflite(fb, xs, lce=False, progress=progress, desc=f"{kind} baseline"),
                                  None if y is None else y[:check_samples])
    return result


# ------------------------------------------------------------------------------------------ printing
def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def format_report(report: dict) -> str:
    """The conversion report as a short table."""
    conv, size, check = report["conversion"], report["size"], report.get("check")
    rows = [
        ("source", f"{report['source']['path']} ({report['source']['kind']})"),
        ("target", f"{report['target']['name']} (LCE target {report['target']['lce_target']}, "
                   f"runner {report['target']['runner'] or 'none named'})"),
        ("flatbuffer", f"{report['output']}  {_mb(report['bytes'])}  sha256 {report['sha256'][:16]}..."),
        ("float TFLite", f"{_mb(size['float_tflite_bytes'])}  (compression x{size['compression']:.2f})"),
        ("Keras params", f"{size['keras']['params']:,}"),
        ("conversion", f"{conv['seconds']:.1f} s on {report['machine']}"),
        ("binary convs", f"{conv['binary_converted']}/{conv['binary_convs']} became LceBconv2d "
                         f"({_pct(conv['binary_fraction'])} binary); {conv['lce_bconv2d']} LceBconv2d ops"),
    ]
    for lost in conv["not_binary"]:
        rows.append(("  NOT binary", f"{lost['layer']} -> {lost['became']}"))
    if conv["other_binary_layers"]:
        rows.append(("  stay float", ", ".join(conv["other_binary_layers"]) + " (LCE has no binary dense/depthwise)"))
    per = conv["float_ops_per_binary_conv"]
    rows.append(("float ops", f"{conv['float_ops']}" + (f" ({per:.2f} per binary conv)" if per is not None else "")))
    rows.append(("ops", ", ".join(f"{k} {v}" for k, v in conv["ops"].items())))
    for problem in conv.get("problems", []):
        rows.append(("  PROBLEM", problem))
    if check and check.get("error"):
        rows.append(("proof", check["error"]))
    elif check:
        rows += [
            ("proof", f"{check['samples']} {check['dataset']} samples, LCE interpreter (1 thread) vs Keras"),
            ("  max abs diff", f"{check['max_abs_diff']:.3g} ({check['relative_diff']:.2e} of output scale "
                               f"{check['output_scale']:.3g})"),
            ("  within 1e-3", f"{check['within_tolerance']}/{check['samples']} samples"),
            ("  top-1 agreement", _pct(check["top1_agreement"])),
            ("  top-1 accuracy", f"Keras {_pct(check['keras_top1'])}, flatbuffer {_pct(check['tflite_top1'])}"),
        ]
        if check.get("beyond_tolerance"):
            tied = sum(b["sign_tie"] for b in check["beyond_tolerance"])
            rows.append(("  beyond 1e-3", f"{len(check['beyond_tolerance'])} samples, {tied} of them at a sign tie "
                                          f"(an activation within float rounding of 0 flipped one bit); without ties "
                                          f"max diff {check['relative_diff_untied']:.2e} of scale"))
            if check["unexplained"]:
                rows.append(("  UNEXPLAINED", f"{check['unexplained']} samples differ with no sign tie: "
                                              "the flatbuffer computes something else"))
    else:
        rows.append(("proof", "skipped (--check-samples 0)"))
    for name, base in report.get("baselines", {}).items():
        line = f"{base['file']}  {_mb(base['bytes'])}  ({base['note']})"
        if base.get("check"):
            line += f"; agrees with its Keras twin on {_pct(base['check']['top1_agreement'])} top-1"
        rows.append((f"baseline {name}", line))
    if report.get("report_file"):
        rows.append(("report", report["report_file"]))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


class _CallableModule(types.ModuleType):
    """Lets ``edgebnn.convert(...)`` work whether ``edgebnn.convert`` resolves to this module or its function."""

    def __call__(self, *args, **kwargs):
        return convert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
