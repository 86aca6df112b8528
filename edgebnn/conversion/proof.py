"""The proof: check samples through a flatbuffer and the Keras model, compared output by output.

``max|y_tflite - y_keras|``, that over the output scale ``max|y_keras|``, top-1 agreement and both top-1
accuracies; a sample beyond :data:`TOLERANCE` is explained when one of its binary convs saw an input within float
rounding of the sign threshold (a sign tie, :func:`sign_margins`).
"""

from __future__ import annotations

import numpy as np

from edgebnn import data
from edgebnn.conversion.lce import log
from edgebnn.errors import OptionError
from edgebnn.progress import progress_bar

DEFAULT_DATASET = "digits"  # the embedded data set a model without one is proved on

TOLERANCE = 1e-3  # a flatbuffer output may differ from Keras' by this much of the output scale, max|y_keras|
TIE = 1e-6  # a sign input closer than this (relative to its tensor's max) to 0 may round either way


def samples(dataset: str, n: int, input_shape) -> tuple[np.ndarray, np.ndarray]:
    """``n`` validation images (normalised, NHWC float32) and labels of ``dataset`` at the model's input size."""

    size = int(input_shape[0]) if input_shape and input_shape[0] else None
    x, y = data.sample(dataset, n, input_size=size)
    channels = input_shape[-1] if input_shape else None
    if channels and x.shape[-1] != channels:
        raise OptionError("data set {name} gives {got}-channel images but the model takes {channels} channels; pass "
                          "{dataset} with matching images", name=dataset, got=x.shape[-1], channels=channels)
    if len(x) < n:
        log(True, f"note: data set {dataset} has only {len(x)} validation images; checking on those")
    return x, y


def keras_outputs(model, x: np.ndarray) -> np.ndarray:
    """The Keras model's outputs on ``x`` (inference mode), one row per sample."""
    outs = [np.asarray(model(x[i:i + 32], training=False)) for i in range(0, len(x), 32)]
    return np.concatenate(outs).reshape(len(x), -1)


_keras_outputs = keras_outputs  # the name tests and benches used before the package split


def run_tflite(flatbuffer: bytes, x: np.ndarray, *, lce: bool = True, progress: bool = False,
               desc: str = "checking") -> np.ndarray:
    """Outputs of a flatbuffer on ``x``, one sample at a time, one thread (LCE's interpreter or TFLite's)."""

    if lce:
        from larq_compute_engine.tflite.python.interpreter import Interpreter  # lazy: LCE loads TensorFlow

        interp = Interpreter(flatbuffer, num_threads=1)
        run = lambda xi: interp.predict(xi)
    else:
        import tensorflow as tf  # lazy: loads TensorFlow

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
    import tensorflow as tf  # lazy: loads TensorFlow

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


def proof_failure(check: dict | None) -> str | None:
    """Why a proof fails, or None: check samples beyond :data:`TOLERANCE` of the output scale that no sign tie explains
    (every such sample, when the model has no sign to tie); for an int8 proof (one with ``min_agreement``), top-1
    agreement below it (:func:`agreement_failure`)."""
    if not check or check.get("error") or not check.get("samples"):
        return None
    if check.get("min_agreement") is not None:  # an int8 flatbuffer: judged by top-1 agreement
        return agreement_failure(check)
    n = check["unexplained"] if "unexplained" in check else check["samples"] - check["within_tolerance"]
    if not n:
        return None
    return (f"{n} of {check['samples']} check samples differ by more than {check['tolerance']:g} of the output "
            f"scale with no sign tie to explain it (max {check['relative_diff']:.2e})")


def foreign_labels(meta: dict, dataset: str) -> str | None:
    """Why ``dataset``'s labels are not the model's classes (another class count, or other class names than the
    model records), else None. Images of the right shape still prove that the flatbuffer computes what Keras does;
    only an accuracy needs the model's own labels, so a foreign data set is used without them."""

    summary = data.describe(dataset, input_size=meta["input_shape"][0])
    if summary["num_classes"] != meta["num_classes"]:
        return f"data set {dataset} has {summary['num_classes']} classes, the model {meta['num_classes']}"
    names = meta["class_names"]
    if names is not None and [str(n) for n in names] != [str(n) for n in summary["classes"]]:
        return f"data set {dataset}'s classes are not the ones the model was trained on"
    return None


def disagreements(reference: np.ndarray, outputs: np.ndarray) -> list[int]:
    """The samples whose top-1 differs between two output arrays (one row per sample)."""
    return [int(i) for i in np.flatnonzero(reference.argmax(-1) != outputs.argmax(-1))]


def judged_by_agreement(check: dict, reference: np.ndarray, outputs: np.ndarray, min_agreement: float) -> dict:
    """``check`` (from :func:`compare`) marked as an int8 proof: judged by top-1 agreement with Keras of at least
    ``min_agreement``, not by :data:`TOLERANCE`, with the samples whose top-1 differs."""
    check.update(precision="int8", min_agreement=float(min_agreement),
                 top1_disagreements=disagreements(reference, outputs))
    return check


def agreement_failure(check: dict) -> str | None:
    """Why an int8 proof fails (top-1 agreement with Keras below its ``min_agreement``), or None."""
    if check["top1_agreement"] >= check["min_agreement"]:
        return None
    return (f"int8 top-1 agrees with Keras on {100 * check['top1_agreement']:.1f}% of {check['samples']} check "
            f"samples ({len(check['top1_disagreements'])} differ), below the {100 * check['min_agreement']:g}% "
            f"asked (--min-agreement)")
