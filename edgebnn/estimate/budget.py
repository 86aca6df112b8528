"""The budget question: which widths and input sizes of a family fit a named board within a latency.

Each candidate (width x input size) is built as ``edgebnn.archs.build`` builds it, its non-kernel parameters
randomised (``archs.randomise``: an all-ones scale or zero shift would be folded away and hide its cost), folded and
converted as ``edgebnn convert --target arm64`` does, then estimated on the fast path (its op shapes; ``exact``:
counted under QEMU). Converting is most of the time: about 5-30 s per candidate on two cores, so the default grid
is small (three widths at the family's own input size). With ``precisions=("float", "int8")`` each candidate is
built in both: the int8 one with the construction ``edgebnn convert --precision int8`` uses
(``conversion.precision.int8_islands``: the real-valued convs as int8 islands, the rest float), its fake-quant
ranges taken on :data:`SYNTHETIC_IMAGES` synthetic images (uniform in [0, 1), seed 0) instead of a data set's:
the candidates' parameters are random and only their latency is asked, which the ranges do not change (they set
the scales, not the ops). A candidate fits when its likely range's upper end is
within the budget, may fit when only its estimate is; a flagged estimate (outside what the calibration saw) says
so.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgebnn import archs
from edgebnn.archs.randomise import randomise_parameters
from edgebnn.conversion.fold import deployment_model
from edgebnn.conversion.lce import lce_flatbuffer
from edgebnn.conversion.precision import int8_islands, parse_precision
from edgebnn.devices.scratch import owned_tempdir
from edgebnn.errors import EdgebnnError
from edgebnn.estimate import boards, emulated, estimate, fast
from edgebnn.estimate import calibration as cal_mod
from edgebnn.estimate.estimate import format_ms

DEFAULT_WIDTHS = (0.5, 0.75, 1.0)
DEFAULT_PRECISIONS = ("float",)
SYNTHETIC_IMAGES = 8  # the int8 islands' calibration images: synthetic (module docstring)


def build_flatbuffer(family: str, width: float, size: int, num_classes: int | None = None,
                     precision: str = "float") -> bytes:
    """The family at ``width`` and ``size`` x ``size`` input, parameters randomised, folded and converted (arm64);
    ``precision="int8"``: through ``int8_islands`` calibrated on synthetic images (module docstring)."""
    import tensorflow as tf  # lazy: loads TensorFlow

    channels = archs.get(family).input_shape[-1]
    model = randomise_parameters(archs.build(family, input_shape=(size, size, channels), num_classes=num_classes,
                                             width=width), seed=0)
    deploy, _ = deployment_model(model)
    if precision == "int8":
        x = np.random.default_rng(0).uniform(0.0, 1.0, (SYNTHETIC_IMAGES, size, size, channels)).astype(np.float32)
        deploy, _ = int8_islands(deploy, x)
    fb, _ = lce_flatbuffer(deploy, "arm")
    tf.keras.backend.clear_session()
    return fb


def parse_precisions(text: str | None) -> list[str]:
    """``"float,int8"`` -> ["float", "int8"] (each checked, duplicates dropped); None or empty: float only."""
    parts = [p for p in (text or "").split(",") if p.strip()]
    return list(dict.fromkeys(parse_precision(p) for p in parts)) or list(DEFAULT_PRECISIONS)


def verdict(ms: float, hi: float, budget_ms: float) -> str:
    """``fits`` (the whole likely range is within the budget), ``may fit`` (the estimate is) or ``too slow``."""
    return "fits" if hi <= budget_ms else "may fit" if ms <= budget_ms else "too slow"


def answer(family: str, board: str, budget_ms: float, threads: int = 1, widths=DEFAULT_WIDTHS,
           sizes: list[int] | None = None, num_classes: int | None = None, exact: bool = False, runner=None,
           progress=None, precisions=DEFAULT_PRECISIONS) -> dict:
    """Every candidate's estimate on ``board`` x ``threads`` in each of ``precisions``: {family, board, threads,
    budget_ms, path, precisions, cpu, rows: [{width, size, precision, ms, range_ms, verdict, path, flags,
    instructions, seconds}], seconds}."""

    variant = archs.get(family)
    boards.get(board)
    sizes = list(sizes or [variant.input_shape[0]])
    precisions = parse_precisions(",".join(precisions))
    job = emulated.plan(runner or emulated.default_runner(), [threads], fast=not exact, fallback=True)
    if (board, threads) not in job["pairs"]:
        have = ", ".join(f"{b} x{n}" for b, n in job["pairs"])
        raise EdgebnnError(f"no calibration for {board} at {threads} thread(s): the calibration has {have}")
    rows, start = [], time.perf_counter()
    cpu = cal_mod.board_cpu(job["calibration"], board)  # counted on the board's own core
    with owned_tempdir("budget") as tmp:
        for size in sizes:
            for width, precision in ((w, p) for w in widths for p in precisions):
                t0 = time.perf_counter()
                fb = build_flatbuffer(family, width, size, num_classes, precision)
                if job["path"] == "fast":
                    counts = fast.predict(fast.typed_ops(fb), fast.core_model(job["fast_model"], cpu))
                else:
                    path = Path(tmp) / f"{family}-{width}-{size}-{precision}.tflite"
                    path.write_bytes(fb)
                    counts = emulated.model_counts(path, job, cpu)
                record = {"model_name": f"{family} w{width:g} {size}x{size} {precision}", "model_sha256": "",
                          "model_path": "", "precision": precision}
                row = next(r for r, _ in estimate.rows(record, counts, job["calibration"], str(job["runner"]),
                                                       job["sha"], boards=[board])
                           if (r["device"], r["threads"]) == (board, threads))
                lo, hi = row["estimate"]["range_ms"]
                rows.append({"width": width, "size": size, "precision": precision, "ms": row["mean_ms"],
                             "range_ms": [lo, hi],
                             "verdict": verdict(row["mean_ms"], hi, budget_ms), "path": counts.get("path", "qemu"),
                             "flags": row["flags"], "instructions": counts["instructions"],
                             "seconds": time.perf_counter() - t0})
                if progress:
                    progress(rows[-1])
    warnings = list(job["warnings"])
    return {"family": family, "board": board, "threads": threads, "budget_ms": budget_ms, "path": job["path"],
            "precisions": precisions, "cpu": cpu, "warnings": warnings, "rows": rows,
            "seconds": time.perf_counter() - start}


def format_answer(result: dict) -> str:
    """The table: width, input, precision, estimate and likely range, verdict, path, instructions (counted or
    predicted on the board's core); then how long it took. An int8 row's islands were calibrated on synthetic
    images (latency only)."""

    int8 = "int8" in result.get("precisions", ())
    lines = [f"{result['family']} on {result['board']} x{result['threads']} within {result['budget_ms']:g} ms "
             "(ESTIMATED; fits: the whole likely range is within; may fit: the estimate is)"
             + (f"; instructions on {result['cpu']}" if result.get("cpu") else ""),
             f"{'width':>6} {'input':>9} {'precision':<9} {'estimate (ms), likely range':<30} {'verdict':<9} "
             f"{'path':<5} {'instructions':>13}"]
    for r in result["rows"]:
        flag = "  FLAGGED: " + "; ".join(r["flags"]) if r["flags"] else ""
        lines.append(f"{r['width']:>6g} {r['size']:>4}x{r['size']:<4} {r.get('precision', 'float'):<9} "
                     f"{format_ms(r['ms'], *r['range_ms']):<30} {r['verdict']:<9} {r['path']:<5} "
                     f"{r['instructions']:13.4g}{flag}")
    if int8:
        lines.append(f"int8: the real-valued convs as int8 islands (as convert --precision int8 builds them), their "
                     f"ranges taken on {SYNTHETIC_IMAGES} synthetic images: latency only, no accuracy is implied")
    fitting = [r for r in result["rows"] if r["verdict"] == "fits"]
    best = max(fitting, key=lambda r: (r["instructions"] if not int8 else r["width"] * r["size"], -r["ms"]),
               default=None)
    largest = (f"; the largest: width {best['width']:g} at {best['size']}x{best['size']}"
               + (f" ({best.get('precision', 'float')})" if int8 else "")) if best else ""
    lines.append(f"{len(fitting)} of {len(result['rows'])} candidates fit" + largest
                 + f" ({result['seconds']:.0f} s: building and converting each candidate is most of it)")
    return "\n".join(lines)
