"""The proof on a device's own kernels: the check samples through the device's ``lce_benchmark_model``, compared
with the Keras model as the host proof compares LCE's interpreter (:func:`edgebnn.conversion.proof.compare`).

Inputs go in raw float32 with ``--input_layer=NAME --input_layer_shape=N,H,W,C
--input_layer_value_files=NAME:x.bin`` (a ``:`` inside NAME written ``::``) and the outputs come back from
``--output_filepath`` (raw float32). All N samples go through one invocation as one batch (the flatbuffer's batch
dimension is free; each invocation costs a process start, under emulation a QEMU start, over SSH the round trips),
and sample 0 also alone at batch 1, as a deployed model runs: its outputs must equal its row of the batch. A runner
that refuses the batch gets one invocation per sample. :func:`verify` proves an existing ``.tflite`` and adds the
result to its ``<file>.json`` report under ``device_checks``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edgebnn import runs
from edgebnn.conversion.lce import log
from edgebnn.conversion.precision import DEFAULT_MIN_AGREEMENT, check_min_agreement
from edgebnn.conversion.proof import (
    DEFAULT_DATASET,
    compare,
    disagreements,
    foreign_labels,
    judged_by_agreement,
    keras_outputs,
    run_tflite,
    samples,
    sign_margins,
)
from edgebnn.devices.execute import open_runner
from edgebnn.devices.scratch import owned_tempdir
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.outputs import write_atomic
from edgebnn.tflite.describe import io_tensors, read_metadata, sidecar_path
from edgebnn.tflite.file import read as read_flatbuffer


def _flags(name: str, shape: list[int], x_file: str, y_file: str) -> list[str]:
    return ["--graph=model.tflite", "--num_threads=1", "--num_runs=1", "--warmup_runs=0", "--min_secs=0",
            "--warmup_min_secs=0", f"--input_layer={name}", f"--input_layer_shape={','.join(map(str, shape))}",
            f"--input_layer_value_files={name.replace(':', '::')}:{x_file}", f"--output_filepath={y_file}"]


def _invoke(host, tflite: Path, name: str, x: np.ndarray, width: int, tmp: Path, timeout: float):
    """Outputs (len(x) x width) of one invocation on ``x`` as one batch, or ``(None, why)``."""
    (tmp / "x.bin").write_bytes(np.ascontiguousarray(x, dtype=np.float32).tobytes())
    run = host.run(_flags(name, list(x.shape), "x.bin", "y.bin"), files_in={"model.tflite": tflite,
                                                                             "x.bin": tmp / "x.bin"},
                   files_out=["y.bin"], timeout=timeout)
    data = run["files"].get("y.bin")
    if run["rc"] != 0 or data is None or len(data) != 4 * len(x) * width:
        lines = [ln.strip() for ln in (run["stderr"] + "\n" + run["stdout"]).splitlines() if ln.strip()]
        errors = [ln for ln in lines if "ERROR" in ln or "FATAL" in ln or "rror:" in ln]
        got = "no output file" if data is None else f"{len(data)} output bytes, not {4 * len(x) * width}"
        return None, f"exit {run['rc']}, {got}: {(errors or lines or ['no message'])[-1][:200]}"
    return np.frombuffer(data, dtype=np.float32).reshape(len(x), width).copy(), None


def device_outputs(host, tflite: str | Path, x: np.ndarray, timeout: float = 600,
                   progress: bool = False) -> tuple[np.ndarray, dict]:
    """The device runner's outputs on ``x`` (one row per sample) and how they were had (batch, invocations)."""
    tflite = Path(tflite)
    inputs, outputs = io_tensors(tflite.read_bytes())
    if len(inputs) != 1 or len(outputs) != 1:
        raise EdgebnnError(f"{tflite.name} has {len(inputs)} inputs and {len(outputs)} outputs; the proof on a "
                           "device feeds one input and reads one output")
    name, width = inputs[0][0], int(np.prod(outputs[0][1][1:]))
    with owned_tempdir("verify") as tmp:
        tmp = Path(tmp)
        log(progress, f"{len(x)} samples through {host.where} as one batch")
        out, why = _invoke(host, tflite, name, x, width, tmp, timeout)
        how = {"batch": len(x), "invocations": 1}
        if out is None:
            log(progress, f"the runner refused a batch of {len(x)} ({why}); one invocation per sample")
            rows = []
            for i in range(len(x)):
                row, err = _invoke(host, tflite, name, x[i:i + 1], width, tmp, timeout)
                if row is None:
                    raise EdgebnnError(f"the runner on {host.where} failed on sample {i}: {err}")
                rows.append(row)
            return np.concatenate(rows), {"batch": 1, "invocations": len(x), "batch_refused": why}
        if len(x) > 1:
            alone, err = _invoke(host, tflite, name, x[:1], width, tmp, timeout)
            if alone is None:
                raise EdgebnnError(f"the runner on {host.where} failed on sample 0 alone: {err}")
            how.update(invocations=2, batch1_max_abs_diff=float(np.abs(alone[0] - out[0]).max()))
    return out, how


def prove(tflite, model, layers, x: np.ndarray, y, dataset: str, device: str, runner: str | None = None,
          devices_file=None, ssh_config: str | None = None, timeout: float = 600, progress: bool = False,
          warn=None, host_outputs: np.ndarray | None = None, min_agreement: float | None = None) -> dict:
    """The ``device_checks[device]`` entry: the device runner's outputs on ``x`` against the Keras model's.

    ``min_agreement`` (an int8 flatbuffer): judged by top-1 agreement with Keras, not the float tolerance. With
    ``host_outputs`` (LCE's interpreter on this host, same samples), ``host_disagreements`` lists the samples whose
    top-1 differs between the two interpreters and ``host_max_abs_diff`` their largest output difference."""

    with open_runner(device, runner=runner, devices_file=devices_file, ssh_config=ssh_config, timeout=timeout,
                     warn=warn) as host:
        out, how = device_outputs(host, tflite, x, timeout=timeout, progress=progress)
        where, emulated = host.where, host.emulated
        runner_name = getattr(host, "runner", None)
        runner_name = Path(runner_name).name if runner_name else host.session.runner.name
    reference = keras_outputs(model, x)
    result = compare(reference, out, y, sign_margins(model, layers, x))
    if min_agreement is not None:
        judged_by_agreement(result, reference, out, min_agreement)
    if host_outputs is not None:
        result.update(host_disagreements=disagreements(host_outputs, out),
                      host_max_abs_diff=float(np.abs(host_outputs - out).max()) if len(out) else 0.0)
    return {"dataset": dataset, "device": device, "machine": where, "runner": runner_name, "emulated": emulated,
            "kernels": "LCE's aarch64 kernels under emulation" if emulated else "the device's LCE kernels",
            **how, **result}


def _source(tflite: Path, meta: dict, report: dict, source) -> tuple[str, str | None]:
    """The Keras model a flatbuffer was converted from, and which checkpoint of its run."""
    checkpoint = (meta.get("checkpoint") or (report.get("source") or {}).get("checkpoint") or {})
    which = checkpoint.get("which") if isinstance(checkpoint, dict) else None
    src = source or meta.get("source") or (report.get("source") or {}).get("path")
    if not src:
        raise OptionError("{tflite} names no Keras model it was converted from (no edgebnn metadata): pass "
                          "{source:=RUN|MODEL}", tflite=tflite)
    if not Path(src).exists():
        raise OptionError("{tflite} was converted from {src}, which is gone: pass {source:=RUN|MODEL}", tflite=tflite,
                          src=src)
    return str(src), (None if source else which)


def verify(tflite, device: str, runner: str | None = None, check_samples: int = 100, dataset: str | None = None,
           source=None, devices_file=None, ssh_config: str | None = None, timeout: float = 600,
           progress: bool = False, warn=None, min_agreement: float | None = None) -> dict:
    """Prove an existing ``.tflite`` on ``device``'s kernels against the Keras model it was converted from; the
    result is added to its conversion report (``<file>.json``, when it is this file's) under ``device_checks``.

    An int8 flatbuffer (metadata ``"precision": "int8"``) is judged by top-1 agreement of at least
    ``min_agreement`` (default: what its conversion asked, else 0.99), and LCE's interpreter on this host runs
    the same samples, so that the samples where the two interpreters' top-1 differs are named."""
    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

    path = Path(tflite)
    if check_samples < 1:
        raise OptionError("{check_samples} must be 1 or more, not {value}", value=check_samples)
    data = read_flatbuffer(path)  # a folder, a FIFO or a missing file: one line each
    try:
        meta = read_metadata(data) or {}
    except ValueError:  # unreadable, or not a JSON object
        raise EdgebnnError(f"{path} is not a TFLite flatbuffer with readable metadata") from None
    side = sidecar_path(path)
    try:
        report = json.loads(side.read_text()) if side.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        report = {}  # a damaged report is not this file's: the proof is returned, the report left as it is
    report = report if isinstance(report, dict) else {}
    src, which = _source(path, meta, report, source)
    log(progress, f"loading {src}")
    model, info = runs.load_model(Path(src), which)
    dataset = dataset or meta.get("dataset") or info.get("dataset") or DEFAULT_DATASET
    x, y = samples(dataset, check_samples, [int(d) if d else None for d in model.input_shape[1:]])

    facts = {"input_shape": [int(d) if d else None for d in model.input_shape[1:]],
             "num_classes": int(model.output_shape[-1]),
             "class_names": meta.get("class_names", info.get("class_names"))}
    foreign = foreign_labels(facts, dataset)
    if foreign:
        log(progress, f"note: {foreign}: the proof compares Keras and the flatbuffer without labels")
    y = y if not foreign and int(y.max(initial=0)) < facts["num_classes"] else None
    int8 = meta.get("precision") == "int8"
    if min_agreement is not None:
        check_min_agreement(min_agreement)
    if int8 and min_agreement is None:
        asked = (report.get("conversion") or {}).get("int8", {}).get("min_agreement")
        same = report.get("sha256") == hashlib.sha256(data).hexdigest()
        min_agreement = float(asked) if same and isinstance(asked, int | float) else DEFAULT_MIN_AGREEMENT
    host = run_tflite(data, x, progress=progress, desc="LCE interpreter") if int8 else None
    check = prove(path, model, stats.binary_conv_layers(model), x, y, dataset, device, runner=runner,
                  devices_file=devices_file, ssh_config=ssh_config, timeout=timeout, progress=progress, warn=warn,
                  host_outputs=host, min_agreement=min_agreement if int8 else None)
    out = {"file": str(path), "sha256": hashlib.sha256(data).hexdigest(), "source": src, "check": check,
           "report_file": None}
    if report.get("sha256") == out["sha256"]:
        report.setdefault("device_checks", {})[device] = check
        write_atomic(side, json.dumps(report, indent=2, default=str) + "\n", "verify")
        out["report_file"] = str(side)
    return out
