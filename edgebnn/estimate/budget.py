"""The budget question: which widths and input sizes of a family fit a named board within a latency.

Each candidate (width x input size) is built as ``edgebnn.archs.build`` builds it, its non-kernel parameters
randomised (``archs.randomise``: an all-ones scale or zero shift would be folded away and hide its cost), folded and
converted as ``edgebnn convert --target arm64`` does, then estimated on the fast path (its op shapes; ``exact``:
counted under QEMU). Converting is most of the time: about 5-30 s per candidate on two cores, so the default grid
is small (three widths at the family's own input size). A candidate fits when its likely range's upper end is
within the budget, may fit when only its estimate is; a flagged estimate (outside what the calibration saw) says
so.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgebnn import archs
from edgebnn.archs.randomise import randomise_parameters
from edgebnn.conversion.fold import deployment_model
from edgebnn.conversion.lce import lce_flatbuffer
from edgebnn.devices.scratch import owned_tempdir
from edgebnn.errors import EdgebnnError
from edgebnn.estimate import boards, emulated, estimate, fast
from edgebnn.estimate import calibration as cal_mod
from edgebnn.estimate.estimate import format_ms

DEFAULT_WIDTHS = (0.5, 0.75, 1.0)


def build_flatbuffer(family: str, width: float, size: int, num_classes: int | None = None) -> bytes:
    """The family at ``width`` and ``size`` x ``size`` input, parameters randomised, folded and converted (arm64)."""
    import tensorflow as tf  # lazy: loads TensorFlow


    channels = archs.get(family).input_shape[-1]
    model = randomise_parameters(archs.build(family, input_shape=(size, size, channels), num_classes=num_classes,
                                             width=width), seed=0)
    deploy, _ = deployment_model(model)
    fb, _ = lce_flatbuffer(deploy, "arm")
    tf.keras.backend.clear_session()
    return fb


def verdict(ms: float, hi: float, budget_ms: float) -> str:
    """``fits`` (the whole likely range is within the budget), ``may fit`` (the estimate is) or ``too slow``."""
    return "fits" if hi <= budget_ms else "may fit" if ms <= budget_ms else "too slow"


def answer(family: str, board: str, budget_ms: float, threads: int = 1, widths=DEFAULT_WIDTHS,
           sizes: list[int] | None = None, num_classes: int | None = None, exact: bool = False, runner=None,
           progress=None) -> dict:
    """Every candidate's estimate on ``board`` x ``threads``: {family, board, threads, budget_ms, path, rows:
    [{width, size, ms, range_ms, verdict, path, flags, instructions, seconds}], seconds}."""

    variant = archs.get(family)
    boards.get(board)
    sizes = list(sizes or [variant.input_shape[0]])
    job = emulated.plan(runner or emulated.default_runner(), [threads], fast=not exact, fallback=True)
    if (board, threads) not in job["pairs"]:
        have = ", ".join(f"{b} x{n}" for b, n in job["pairs"])
        raise EdgebnnError(f"no calibration for {board} at {threads} thread(s): the calibration has {have}")
    rows, start = [], time.perf_counter()
    with owned_tempdir("budget") as tmp:
        for size in sizes:
            for width in widths:
                t0 = time.perf_counter()
                fb = build_flatbuffer(family, width, size, num_classes)
                cpu = cal_mod.board_cpu(job["calibration"], board)  # counted on the board's own core
                if job["path"] == "fast":
                    counts = fast.predict(fast.typed_ops(fb), fast.core_model(job["fast_model"], cpu))
                else:
                    path = Path(tmp) / f"{family}-{width}-{size}.tflite"
                    path.write_bytes(fb)
                    counts = emulated.model_counts(path, job, cpu)
                record = {"model_name": f"{family} w{width:g} {size}x{size}", "model_sha256": "", "model_path": ""}
                row = next(r for r, _ in estimate.rows(record, counts, job["calibration"], str(job["runner"]),
                                                       job["sha"], boards=[board])
                           if (r["device"], r["threads"]) == (board, threads))
                lo, hi = row["estimate"]["range_ms"]
                rows.append({"width": width, "size": size, "ms": row["mean_ms"], "range_ms": [lo, hi],
                             "verdict": verdict(row["mean_ms"], hi, budget_ms), "path": counts.get("path", "qemu"),
                             "flags": row["flags"], "instructions": counts["instructions"],
                             "seconds": time.perf_counter() - t0})
                if progress:
                    progress(rows[-1])
    return {"family": family, "board": board, "threads": threads, "budget_ms": budget_ms, "path": job["path"],
            "warnings": job["warnings"], "rows": rows, "seconds": time.perf_counter() - start}


def format_answer(result: dict) -> str:
    """The table: width, input, estimate and likely range, verdict, path; then how long it took."""

    lines = [f"{result['family']} on {result['board']} x{result['threads']} within {result['budget_ms']:g} ms "
             "(ESTIMATED; fits: the whole likely range is within; may fit: the estimate is)",
             f"{'width':>6} {'input':>9} {'estimate (ms), likely range':<30} {'verdict':<9} {'path':<5} "
             f"{'instructions':>13}"]
    for r in result["rows"]:
        flag = "  FLAGGED: " + "; ".join(r["flags"]) if r["flags"] else ""
        lines.append(f"{r['width']:>6g} {r['size']:>4}x{r['size']:<4} {format_ms(r['ms'], *r['range_ms']):<30} "
                     f"{r['verdict']:<9} {r['path']:<5} {r['instructions']:13.4g}{flag}")
    fitting = [r for r in result["rows"] if r["verdict"] == "fits"]
    best = max(fitting, key=lambda r: r["instructions"], default=None)
    lines.append(f"{len(fitting)} of {len(result['rows'])} candidates fit"
                 + (f"; the largest: width {best['width']:g} at {best['size']}x{best['size']}" if best else "")
                 + f" ({result['seconds']:.0f} s: building and converting each candidate is most of it)")
    return "\n".join(lines)
