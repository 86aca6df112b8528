"""``convert``: a run folder or Keras model file in, a ``.tflite`` with its proof and ``<file>.json`` report out."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from edgebnn import data, machine, runs, targets
from edgebnn.conversion.baselines import CALIBRATION_SAMPLES, baseline, parse_baselines, real_twin
from edgebnn.conversion.fold import deployment_model
from edgebnn.conversion.lce import float_flatbuffer, lce_flatbuffer, log
from edgebnn.conversion.matching import match_binary_convs, other_binary_layers
from edgebnn.conversion.on_device import prove
from edgebnn.conversion.precision import (
    CALIBRATION_IMAGES,
    DEFAULT_MIN_AGREEMENT,
    calibration_images,
    check_min_agreement,
    int8_islands,
    int8_ops,
    parse_precision,
)
from edgebnn.conversion.proof import (
    DEFAULT_DATASET,
    compare,
    foreign_labels,
    judged_by_agreement,
    keras_outputs,
    proof_failure,
    run_tflite,
    samples,
    sign_margins,
)
from edgebnn.errors import EdgebnnError, OptionError, composed
from edgebnn.outputs import check_name_length, check_new_file, probe_folder, write_atomic
from edgebnn.tflite.describe import (
    embed_metadata,
    flatbuffer_problems,
    float_op_count,
    histogram_of,
    load_error,
    read_ops,
    sidecar_path,
)
from edgebnn.version import __version__


def _default_output(path: Path, target: str, checkpoint: str | None = None) -> Path:

    if runs.is_run_dir(path):
        return path / (f"model-last-{target}.tflite" if checkpoint == "last" else f"model-{target}.tflite")
    return path.with_name(f"{path.stem}-{target}.tflite")


def _output_path(output, path: Path, info: dict, target: str, checkpoint: str | None = None) -> Path:
    if output is None:
        return _default_output(path, target, checkpoint)
    out = Path(output)
    if out.is_dir():
        return out / f"{info.get('name') or path.stem}-{target}.tflite"
    if not out.parent.is_dir():
        raise EdgebnnError(f"output folder {out.parent} does not exist; create it or pass -o in an existing folder")
    return out


def _is_dir(output) -> bool:
    try:
        return Path(output).is_dir()
    except OSError:  # a name too long for the file system, checked by _check_name_lengths
        return False


def _check_name_lengths(out: Path) -> None:
    """The flatbuffer's name and the longest names written beside it (its report, its baselines) fit the file
    system, checked in a moment rather than after the conversion."""

    for name in (out, sidecar_path(out), out.with_name(f"{out.stem}.float.tflite")):
        check_name_length(name, "{output}")


def _check_output(output, source: Path) -> None:
    """Where the flatbuffer goes, checked before the model is even loaded (``edgebnn.outputs``): a file given with
    -o that exists is never overwritten (remove it or pick another name); the default output beside the model is
    edgebnn's own and is replaced; either way its folder must be writable."""

    if output is not None and not _is_dir(output):
        _check_name_lengths(Path(output))
    if output is None:
        probe_folder(source if source.is_dir() else source.parent, "convert")
    elif Path(output).is_dir():
        probe_folder(output, "{output}")
    else:
        check_new_file(output, "{output}", flag=None)


def _recipe_ref(info: dict):

    if info.get("run_dir") and (Path(info["run_dir"]) / runs.RECIPE).is_file():
        return str(Path(info["run_dir"]) / runs.RECIPE)
    recipe = info.get("recipe")
    return recipe if isinstance(recipe, str | dict) else None


def _write_sidecar(out: Path, report: dict) -> None:
    report["report_file"] = str(sidecar_path(out))
    write_atomic(sidecar_path(out), json.dumps(report, indent=2, default=str) + "\n", "{output}")


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _deployment(model, info: dict, path: Path, profile, dataset: str, need_data: bool) -> dict:
    """The facts embedded in the flatbuffer: target, source, input shape, classes, normalisation, the padding
    convention the model's layers follow (read from the layers themselves)."""
    from edgebnn.archs.common import padding_of  # lazy: the architectures load TensorFlow and Larq

    input_shape = [int(d) if d else None for d in model.input_shape[1:]]
    num_classes = int(model.output_shape[-1])
    class_names, mean, std, notes = info.get("class_names"), info.get("mean"), info.get("std"), []
    if (class_names is None or mean is None) and need_data:

        summary = data.describe(dataset, input_size=input_shape[0])
        mean, std = mean or summary["mean"], std or summary["std"]
        notes.append(f"normalisation taken from data set {dataset} (the model file does not record one)")
        if class_names is None and summary["num_classes"] == num_classes:
            class_names = summary["classes"]
            notes.append(f"class names taken from data set {dataset}")
    return {
        "edgebnn_version": __version__,
        "target": profile.name, "lce_target": profile.lce_target, "runner": profile.runner,
        "model": info.get("model"), "name": info.get("name") or path.stem,
        "source": str(path), "run_dir": info.get("run_dir"), "checkpoint": info.get("checkpoint"),
        "recipe": _recipe_ref(info),
        "dataset": dataset, "input_shape": input_shape, "num_classes": num_classes,
        "padding": info.get("padding") or padding_of(model),
        "class_names": class_names, "mean": mean, "std": std, "notes": notes,
    }





def _conversion_facts(layers, ops: list[dict], model, seconds: float) -> dict:
    """The ``conversion`` section: op histogram, which binary convs became ``LceBconv2d``, float ops left."""
    histogram = histogram_of(ops)
    matched, lost = match_binary_convs(layers, ops)
    n_bconv, n_float = histogram.get("LceBconv2d", 0), float_op_count(histogram)
    return {
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
        "problems": flatbuffer_problems(ops, matched),
    }


def _report(fb: bytes, float_fb: bytes, float_seconds: float, meta: dict, conversion: dict, model, profile,
            out: Path) -> dict:
    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    return {
        "edgebnn_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine.host_label(),
        "source": {"path": meta["source"], "kind": "run" if meta["run_dir"] else "model",
                   "name": meta["name"], "model": meta["model"], "run_dir": meta["run_dir"],
                   "recipe": meta["recipe"], "checkpoint": meta["checkpoint"]},
        "target": {"name": profile.name, "lce_target": profile.lce_target, "runner": profile.runner,
                   "profile": profile.path},
        "output": str(out), "bytes": len(fb), "sha256": sha256(fb),
        "deployment": {k: meta[k] for k in ("input_shape", "num_classes", "padding", "class_names", "mean", "std",
                                            "dataset", "notes")},
        "conversion": conversion,
        "size": {
            "keras": stats.model_stats(model),
            "flatbuffer_bytes": len(fb),
            "float_tflite_bytes": len(float_fb),
            "compression": len(float_fb) / len(fb),
            "float_seconds": round(float_seconds, 3),
        },
        "check": None,
        "baselines": {},
    }


def _host_proof(fb: bytes, model, layers, x, y, dataset: str, broken: str | None, progress: bool,
                min_agreement: float | None = None) -> tuple[dict, object]:
    """(the ``check`` section: LCE's interpreter on this host against Keras, or why the flatbuffer does not load;
    the interpreter's outputs). With ``min_agreement`` (an int8 flatbuffer) it is judged by top-1 agreement."""

    if broken:
        return {"dataset": dataset, "machine": machine.host_label(), "samples": 0,
                "error": f"LCE's interpreter cannot load the flatbuffer: {broken}"}, None
    keras_out = keras_outputs(model, x)
    lce_out = run_tflite(fb, x, progress=progress, desc="LCE interpreter")
    check = {"dataset": dataset, "machine": machine.host_label(),
             **compare(keras_out, lce_out, y, sign_margins(model, layers, x))}
    if min_agreement is not None:
        judged_by_agreement(check, keras_out, lce_out, min_agreement)
    return check, lce_out


def _check_request(target: str, baselines, check_samples: int, verify_on, output, source, precision, min_agreement):
    """(target profile, baselines wanted), every argument checked before any slow work."""

    parse_precision(precision)
    check_min_agreement(min_agreement)
    profile = targets.load(target)
    wanted = parse_baselines(baselines)
    if check_samples < 0:
        raise OptionError("{check_samples} must be 0 or more, not {value}", value=check_samples)
    if verify_on and not check_samples:
        raise OptionError("{verify_on} needs check samples: drop {check_samples:=0}")
    if output is not None and not _is_dir(output):
        _check_name_lengths(Path(output))
    if output is not None and not _is_dir(output) and not Path(output).parent.is_dir():
        raise OptionError("output folder {folder} does not exist; create it or pass {output} in an existing folder",
                          folder=Path(output).parent)
    _check_output(output, Path(source))
    return profile, wanted


def _refuse_what_lce_miscomputes(path: Path, layers) -> None:
    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    small = stats.zero_padding_too_small(layers)
    if small:
        raise EdgebnnError(f"{path}: {len(small)} zero-padded binary convs see a feature map smaller than their "
                           f"kernel ({small[0]}), which LCE 0.16 computes wrong; use a larger input size (the official "
                           f"padding convention at 72 px or more for the ImageNet layouts)")


def convert(source, target: str = "arm64", output=None, check_samples: int = 100, baselines=(),
            dataset: str | None = None, progress: bool = False, checkpoint: str | None = None,
            fold: bool = True, verify_on: str | None = None, runner: str | None = None,
            ssh_config: str | None = None, precision: str = "float",
            min_agreement: float = DEFAULT_MIN_AGREEMENT) -> dict:
    """Convert a run folder or a saved Keras model for ``target``; write the ``.tflite`` and ``<file>.json``.

    Returns the conversion report (the same dict the JSON file holds). ``check_samples=0`` skips the proof;
    ``baselines`` is any of ``("float", "int8")`` (or ``"float,int8"``); ``dataset`` overrides the run's data set
    (a bare model file defaults to ``digits``); ``checkpoint`` picks a run's best (default) or last model;
    ``fold=False`` converts the model as it is, without the deployment folds of :mod:`edgebnn.conversion.fold` (the
    proof always compares against the unfolded model). ``verify_on`` (a device: ``qemu:aarch64``, ``ssh://...`` or a
    devices.toml name) repeats the proof on that device's ``lce_benchmark_model`` (``runner``; ``ssh_config`` an
    ``ssh -F`` file), see :mod:`edgebnn.conversion.on_device`. ``precision="int8"`` runs the real-valued convs as
    int8 islands calibrated on ``dataset``'s training images (:mod:`edgebnn.conversion.precision`); its proof is
    top-1 agreement with Keras of at least ``min_agreement`` on the check samples, not the float 1e-3.
    """
    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    profile, wanted = _check_request(target, baselines, check_samples, verify_on, output, source, precision,
                                     min_agreement)
    precision = parse_precision(precision)
    log(progress, f"loading {source}")
    path = Path(source).expanduser().resolve()  # recorded in the metadata: found from any working folder
    model, info = runs.load_model(path, checkpoint)
    if runs.is_run_dir(path):
        info["run_dir"] = str(path)
    out = _output_path(output, path, info, profile.name, checkpoint)
    if output is not None and Path(output).is_dir():
        _check_output(out, path)  # the file name inside the -o folder is known now, still before converting
    dataset = dataset or info.get("dataset") or DEFAULT_DATASET

    layers = stats.binary_conv_layers(model)
    _refuse_what_lce_miscomputes(path, layers)
    deploy, folds = deployment_model(model) if fold else (model, {})
    deploy, islands = _islands(deploy, precision, dataset, progress)
    log(progress, f"converting with LCE (target {profile.lce_target!r}; most of the time is the SavedModel export)")
    fb, seconds = lce_flatbuffer(deploy, profile.lce_target)
    ops = read_ops(fb)
    log(progress, "converting the same model with TensorFlow's converter (float size)")
    float_fb, float_seconds, _ = float_flatbuffer(model)
    meta = _deployment(model, info, path, profile, dataset, bool(check_samples or wanted))
    meta["precision"] = precision
    fb = embed_metadata(fb, meta)
    report = _report(fb, float_fb, float_seconds, meta, _conversion_facts(layers, ops, model, seconds), model,
                     profile, out)
    report["conversion"]["folds"] = folds
    report["precision"] = precision
    if islands is not None:
        report["conversion"]["int8"] = _int8_facts(islands, fb, min_agreement)

    x = y = None
    if check_samples or wanted:
        x, y = _proof_samples(dataset, max(check_samples, CALIBRATION_SAMPLES if "int8" in wanted else 0), meta,
                              report)
    broken, host_out = load_error(fb), None
    if broken or check_samples:
        report["check"], host_out = _host_proof(fb, model, layers, None if x is None else x[:check_samples],
                                                None if y is None else y[:check_samples], dataset, broken, progress,
                                                min_agreement if islands is not None else None)

    write_atomic(out, fb, "{output}")
    if wanted:
        twin, how = real_twin(model, info)
        for name in wanted:
            report["baselines"][name] = baseline(name, twin, how, x, y, out, check_samples, progress)
    _write_sidecar(out, report)  # the flatbuffer and its host proof are kept whatever the device does
    if verify_on and not broken:
        labels = None if y is None else y[:check_samples]
        _prove_on_device(report, out, model, layers, x[:check_samples], labels, dataset, verify_on, runner=runner,
                         ssh_config=ssh_config, progress=progress, host_outputs=host_out,
                         min_agreement=min_agreement if islands is not None else None)
    _refuse_failed_proofs(report, out, broken)
    return report


def _islands(deploy, precision: str, dataset: str, progress: bool):
    """(the model to convert, the int8 islands' facts or None): for ``precision="int8"`` the real-valued convs as
    fake-quantized islands calibrated on :data:`CALIBRATION_IMAGES` training images of ``dataset``."""
    if precision != "int8":
        return deploy, None
    log(progress, f"int8 islands: calibrating on {CALIBRATION_IMAGES} training images of {dataset}")
    shape = [int(d) if d else None for d in deploy.input_shape[1:]]
    x = calibration_images(dataset, CALIBRATION_IMAGES, shape)
    if x.shape[-1] != shape[-1]:
        raise OptionError("data set {name} gives {got}-channel images but the model takes {channels} channels; pass "
                          "{dataset} with matching images", name=dataset, got=x.shape[-1], channels=shape[-1])
    islands, facts = int8_islands(deploy, x)
    facts["calibration"] = {"images": len(x), "dataset": dataset, "split": "train"}
    return islands, facts


def _int8_facts(facts: dict, fb: bytes, min_agreement: float) -> dict:
    """The report's ``conversion.int8``: the island layers, the calibration, the ops that compute on int8 in the
    flatbuffer, the agreement the proof asks; a problem when fewer int8 CONV_2D ops came out than island convs."""
    ops = int8_ops(fb)
    convs = len(facts["layers"]) - int(facts["classifier"])
    problems = ([f"{convs} real-valued convs were made int8 islands but the flatbuffer has "
                 f"{ops.get('CONV_2D', 0)} int8 CONV_2D ops"] if ops.get("CONV_2D", 0) < convs else [])
    return {**facts, "int8_ops": ops, "min_agreement": min_agreement, "problems": problems}


def _proof_samples(dataset: str, n: int, meta: dict, report: dict):
    """``n`` samples of ``dataset`` for the proofs and baselines; the labels only when they are the model's classes
    (else None, and the report's notes say why)."""
    x, y = samples(dataset, n, meta["input_shape"])
    foreign = foreign_labels(meta, dataset)
    if foreign:
        log(True, f"note: {foreign}: the proof compares Keras and the flatbuffer on its images without labels "
                  "(no accuracy is stored)")
        report["deployment"]["notes"].append(foreign)
    labels_ok = not foreign and (meta["class_names"] is None or len(meta["class_names"]) == meta["num_classes"])
    return x, (y if labels_ok and int(y.max(initial=0)) < meta["num_classes"] else None)


def _prove_on_device(report: dict, out: Path, model, layers, x, labels, dataset: str, verify_on: str,
                     **how) -> None:
    """The proof on ``verify_on``'s own kernels, into the report's ``device_checks`` (a failure to run it too, then
    raised, with the flatbuffer and its host proof kept)."""
    try:
        report["device_checks"] = {verify_on: prove(out, model, layers, x, labels, dataset, verify_on, **how)}
    except EdgebnnError as err:
        report["device_checks"] = {verify_on: {"error": str(err)}}
        _write_sidecar(out, report)
        raise composed(err, f" ({out} and its host proof are saved in {sidecar_path(out)})") from None
    _write_sidecar(out, report)


def _refuse_failed_proofs(report: dict, out: Path, broken: str | None) -> None:
    """Refuse a flatbuffer LCE cannot load, or one whose answers (on this host or a device) are not the model's."""
    if broken:
        why = (report["conversion"]["problems"] or [report["check"]["error"]])[0]
        raise EdgebnnError(f"{out} does not load in LCE's interpreter: {why}; the report is in {sidecar_path(out)}")
    for where, check in [("", report["check"]), *((f" on {d}", c) for d, c in report.get("device_checks", {}).items())]:
        wrong = proof_failure(check)
        if wrong:
            raise EdgebnnError(f"{out} does not give the Keras model's answers{where}: {wrong}; the flatbuffer and "
                               f"its report ({sidecar_path(out)}) are kept")

