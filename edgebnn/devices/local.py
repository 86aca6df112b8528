"""Timing a converted model with LCE's Python interpreter on the machine this runs on.

Off ARM, LCE runs its reference binary kernels: a host figure is a functional check, never a stand-in for
ARM64 latency, and every figure says so. Statistics (ms): min, median, mean, p90 (linear interpolation),
std (population, sqrt(mean(t^2) - mean(t)^2) as in TFLite's benchmark), max.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from edgebnn import tflite
from edgebnn.devices import load
from edgebnn.devices.scratch import die_with_parent
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.inputs import sha256  # noqa: F401  (a model's sha256 names its results; written once in inputs)
from edgebnn.machine import cpu_model, host_label

_WRAPPER = "larq_compute_engine.tflite.python.interpreter_wrapper_lite"
ARM64_MACHINES = ("aarch64", "arm64")
ARM32_MACHINES = ("armv7l", "armv8l", "armv7", "armv6l")


def kernels_label(machine: str) -> str:
    """Which LCE kernels a runner on a machine with this ``uname -m`` uses."""
    if machine in ARM64_MACHINES:
        return "LCE optimized kernels (ARM64)"
    if machine in ARM32_MACHINES:
        return "LCE optimized kernels (ARM32)"
    return "LCE reference kernels (not ARM64)"


def lce_version() -> str:

    try:
        return metadata.version("larq-compute-engine")
    except metadata.PackageNotFoundError:
        return "not installed"


def _wrapper_module():
    """LCE's compiled interpreter module, the one ``larq_compute_engine.tflite.python.interpreter.Interpreter``
    wraps. Loaded on its own when possible: importing the ``larq_compute_engine`` package imports TensorFlow
    (seconds); the interpreter itself needs only numpy."""
    if _WRAPPER in sys.modules:
        return sys.modules[_WRAPPER]
    spec = importlib.util.find_spec("larq_compute_engine")  # finds the package without running it
    if spec is None:
        raise EdgebnnError("larq-compute-engine is not installed: pip install larq-compute-engine==0.16.0")
    for location in spec.submodule_search_locations or []:
        for so in sorted(Path(location, "tflite", "python").glob("interpreter_wrapper_lite*")):
            if so.suffix not in (".so", ".pyd"):
                continue
            try:
                mod_spec = importlib.util.spec_from_file_location(_WRAPPER, so)
                module = importlib.util.module_from_spec(mod_spec)
                mod_spec.loader.exec_module(module)
            except ImportError:
                break
            sys.modules[_WRAPPER] = module
            return module
    from larq_compute_engine.tflite.python import interpreter_wrapper_lite  # lazy: LCE loads TensorFlow

    return interpreter_wrapper_lite


def open_interpreter(flatbuffer: bytes, threads: int = 1, use_xnnpack: bool = False,
                     use_reference_bconv: bool = False, use_indirect_bgemm: bool = False):
    """An LCE interpreter for ``flatbuffer``; a corrupt model raises :class:`EdgebnnError`."""
    module = _wrapper_module()
    try:
        return module.LiteInterpreter(flatbuffer, int(threads), bool(use_reference_bconv),
                                      bool(use_indirect_bgemm), bool(use_xnnpack))
    except (RuntimeError, ValueError) as err:
        raise EdgebnnError(f"LCE cannot load the model ({str(err).strip().splitlines()[-1]}): "
                           "is it a .tflite flatbuffer from `edgebnn convert`?") from None


def random_inputs(interpreter, seed: int = 0) -> list:
    """Random inputs of the model's shapes and types (the benchmark tool feeds random data too)."""

    rng = np.random.default_rng(seed)
    out = []
    for shape, dtype in zip(interpreter.input_shapes, interpreter.input_types, strict=True):
        dtype = np.dtype(dtype)
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            out.append(rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=shape).astype(dtype))
        elif dtype == np.bool_:
            out.append(rng.integers(0, 2, size=shape).astype(bool))
        else:
            out.append(rng.uniform(-1.0, 1.0, size=shape).astype(dtype))
    return out


def _loop(interpreter, inputs, min_runs: int, min_secs: float, max_secs: float) -> list[float]:
    """Run at least ``min_runs`` times and at least ``min_secs`` seconds, stopping after ``max_secs``;
    each inference timed alone (microseconds)."""
    samples: list[float] = []
    clock = time.perf_counter_ns
    start = clock()
    while True:
        elapsed = (clock() - start) / 1e9
        if samples and elapsed >= max_secs > 0:
            break
        if len(samples) >= min_runs and elapsed >= min_secs:
            break
        t0 = clock()
        interpreter.predict(inputs)
        samples.append((clock() - t0) / 1e3)
    return samples


def measure(flatbuffer: bytes, threads: int = 1, runs: int = 50, warmup: int = 1, min_secs: float = 0.0,
            warmup_min_secs: float = 0.0, max_secs: float = 150.0, use_xnnpack: bool = False,
            use_reference_bconv: bool = False, use_indirect_bgemm: bool = False) -> dict:
    """Load the model, warm up, then time ``runs`` inferences. Returns init_us, warmup_us (list),
    samples_us (list) and the input shapes."""
    t0 = time.perf_counter_ns()
    interpreter = open_interpreter(flatbuffer, threads, use_xnnpack, use_reference_bconv, use_indirect_bgemm)
    init_us = (time.perf_counter_ns() - t0) / 1e3
    inputs = random_inputs(interpreter)
    warm = _loop(interpreter, inputs, max(int(warmup), 0), warmup_min_secs, max_secs) if warmup or warmup_min_secs \
        else []
    samples = _loop(interpreter, inputs, max(int(runs), 1), min_secs, max_secs)
    return {"init_us": init_us, "warmup_us": warm, "samples_us": samples,
            "input_shapes": [list(s) for s in interpreter.input_shapes]}


def count_line(samples_us: list[float]) -> dict:
    """The fields of a ``count=`` line: count, first, curr, min, max, avg, std (microseconds)."""
    n = len(samples_us)
    mean = sum(samples_us) / n
    var = max(sum(s * s for s in samples_us) / n - mean * mean, 0.0)
    return {"count": n, "first_us": samples_us[0], "curr_us": samples_us[-1], "min_us": min(samples_us),
            "max_us": max(samples_us), "avg_us": mean, "std_us": math.sqrt(var)}


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def stats_ms(samples_us: list[float]) -> dict:
    """min, median, mean, p90, std, max of the samples, in milliseconds."""
    c = count_line(samples_us)
    return {"min_ms": c["min_us"] / 1e3, "median_ms": percentile(samples_us, 50) / 1e3, "mean_ms": c["avg_us"] / 1e3,
            "p90_ms": percentile(samples_us, 90) / 1e3, "std_ms": c["std_us"] / 1e3, "max_ms": c["max_us"] / 1e3}


def host_facts() -> dict:
    """This host's facts in the shape board.py records for a board."""


    return {"machine": platform.machine(), "cpu": cpu_model(), "cores": os.cpu_count(), "label": host_label(),
            "os": platform.platform(), "hostname": platform.node()}


def _child(path: str, threads: int, runs: int, warmup: int, use_xnnpack: bool) -> dict:
    """In the child process: time the model and record the host's load around it (see ``load``)."""


    before, cpu0 = load.snapshot(), os.times()
    m = measure(Path(path).read_bytes(), threads=threads, runs=runs, warmup=warmup, use_xnnpack=use_xnnpack)
    cpu1, after = os.times(), load.snapshot()
    m["load"] = load.around(before, after, (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system))
    return m


def _in_child(path: Path, threads: int, runs: int, warmup: int, use_xnnpack: bool, timeout: float) -> dict:
    """:func:`_child` in a fresh Python: a model that crashes the interpreter (SIGSEGV) ends that process, not
    ours, and becomes one line."""


    args = [sys.executable, "-m", "edgebnn.devices.local", str(path), str(int(threads)), str(int(runs)),
            str(int(warmup)), "1" if use_xnnpack else "0"]
    try:  # the child dies with us (a SIGKILLed profile leaves no benchmark running on)
        proc = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=timeout,
                              stdin=subprocess.DEVNULL, preexec_fn=die_with_parent())
    except subprocess.TimeoutExpired:
        raise OptionError("LCE's interpreter gave no result for {path} within {limit:.0f} s ({timeout}); nothing "
                          "was stored for it", path=path, limit=timeout) from None
    if proc.returncode < 0:

        name = signal.Signals(-proc.returncode).name if -proc.returncode in signal.valid_signals() else \
            f"signal {-proc.returncode}"
        raise EdgebnnError(f"LCE's interpreter crashed on {path} ({name}): the model is corrupt in a way the schema "
                           "check cannot see; re-run `edgebnn convert`")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    if proc.returncode != 0:
        errs = [ln for ln in lines if ln.startswith("error: ")]
        raise EdgebnnError(errs[-1][len("error: "):] if errs else
                           f"timing {path} failed (exit {proc.returncode}): {lines[-1] if lines else 'no message'}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def profile_file(path: str | Path, threads: int = 1, runs: int = 50, warmup: int = 1,
                 use_xnnpack: bool = False, timeout: float = 600) -> dict:
    """Time one .tflite file here, in a child process, after checking it against the TFLite schema; a result
    dict for :func:`edgebnn.store.save` (with ``load`` and ``flags``, see ``load``)."""

    path = Path(path)
    flatbuffer = tflite.read(path)
    m = _in_child(path, threads, runs, warmup, use_xnnpack, timeout)
    samples = m["samples_us"]
    stats = stats_ms(samples)
    return {**stats, "runs": len(samples), "warmup": len(m["warmup_us"]), "threads": int(threads),
            "first_ms": (m["warmup_us"] or samples)[0] / 1e3, "init_ms": m["init_us"] / 1e3,
            "model_size_mb": len(flatbuffer) / 1e6, "machine": host_label(),
            "kernels": kernels_label(platform.machine()), "runner": "LCE Python interpreter (child process)",
            "board": host_facts(), "versions": {"larq-compute-engine": lce_version()}, "ops": [],
            "samples_us": samples, "load": m["load"], "flags": load.flags(stats, m["load"], int(threads))}


def _main(argv: list[str]) -> int:

    try:
        path, threads, runs, warmup, xnnpack = argv
        print(json.dumps(_child(path, int(threads), int(runs), int(warmup), xnnpack == "1")))
    except EdgebnnError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
