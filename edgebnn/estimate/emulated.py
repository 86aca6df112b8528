"""The emulated device ``qemu:aarch64`` and ``edgebnn estimate``: a model's aarch64 instructions, counted under QEMU
(the exact path) or predicted from its op shapes (``fast.py``, the fast path), estimated for every calibrated board.

The exact path is taken when a runner and a plugin-capable ``qemu-aarch64`` are at hand; the fast path when asked
(``fast=True``) or, with a warning, when the runner or QEMU is missing. Every estimate says which path it took.
"""

from __future__ import annotations

import os

from edgebnn import store
from edgebnn.devices import qemu
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.estimate import calibration as cal_mod
from edgebnn.estimate import counting, estimate, fast
from edgebnn.estimate.estimate import op_type_totals
from edgebnn.tflite.describe import identify, read_ops

RUNNER_HINT = ("pass {runner:=PATH} to an aarch64 lce_benchmark_model (LCE's release asset "
               "lce_benchmark_model_aarch64, github.com/larq/compute-engine/releases)")


def _pairs(cal: dict, threads: list[int] | None) -> list[tuple[str, int]]:
    pairs = [(b, int(n)) for b, per in cal["boards"].items() for n in per if not threads or int(n) in threads]
    if not pairs:
        have = ", ".join(f"{b} x{n}" for b, per in cal["boards"].items() for n in per)
        raise OptionError("calibration {name!r} has no board at {threads:={given}}: it has {have}", name=cal["name"],
                          given=threads, have=have)
    return pairs


def _fast_plan(threads, calibration, warnings: list[str]) -> dict:

    cal = cal_mod.load(calibration) if calibration else cal_mod.shipped()
    model = fast.shipped_model()
    return {"path": "fast", "runner": "none (fast path)", "sha": model["runner_sha256"], "calibration": cal,
            "pairs": _pairs(cal, threads), "warnings": warnings, "fast_model": model}


def plan(runner, threads: list[int] | None = None, calibration: str | None = None, fast: bool = False,
         fallback: bool = False) -> dict:
    """What one estimate call will do: the path (``qemu`` or ``fast``), the runner (checked) and its sha256, the
    calibration, the (board, threads) pairs and the warnings to print. ``fallback``: take the fast path, with a
    warning, when no runner is given or QEMU cannot count (``edgebnn estimate``); else a missing runner is an
    error (``profile -d qemu:aarch64``)."""

    if fast:
        return _fast_plan(threads, calibration, [])
    if not runner:
        if fallback:
            return _fast_plan(threads, calibration, ["no aarch64 runner given (--runner or LCE_RUNNER_AARCH64): "
                                                     "instructions predicted from op shapes (fast path)"])
        raise OptionError("device qemu:aarch64 needs a runner: " + RUNNER_HINT)
    path = qemu.check_runner(runner)
    try:
        qemu.build_plugin()  # an unsupported QEMU or no compiler fails here, before any model is counted
    except EdgebnnError as err:
        if not fallback:
            raise
        return _fast_plan(threads, calibration, [f"{err} -- instructions predicted from op shapes (fast path)"])
    sha = cal_mod.sha256(path)
    cal, warnings = cal_mod.for_runner(sha, calibration)
    return {"path": "qemu", "runner": path, "sha": sha, "calibration": cal, "pairs": _pairs(cal, threads),
            "warnings": warnings}


def model_counts(path, job: dict, timeout: float = 1800) -> dict:
    """The model's counts on the job's path: counted under QEMU at 1 thread, or predicted from its op shapes."""
    if job.get("path") == "fast":

        with open(path, "rb") as f:
            return fast.predict(read_ops(f.read()), job["fast_model"])

    return counting.count_model(job["runner"], path, threads=1, timeout=timeout)


def estimate_model(model: dict, job: dict, timeout: float = 1800) -> list[tuple[dict, list[dict]]]:
    """Count or predict ``model`` (a profile model record) and return the estimated rows (row, ops) for the planned
    (board, threads) pairs."""

    counts = model_counts(model["path"], job, timeout)
    rows = estimate.rows(model, counts, job["calibration"], str(job["runner"]), job["sha"], job["warnings"])
    return [(r, ops) for r, ops in rows if (r["device"], r["threads"]) in job["pairs"]]


def default_runner() -> str | None:
    """``$LCE_RUNNER_AARCH64`` when it names a file, else None."""
    runner = os.environ.get("LCE_RUNNER_AARCH64")
    return runner if runner and os.path.isfile(runner) else None


def estimate_files(models: list[str], runner=None, fast: bool = False, threads: list[int] | None = None,
                   calibration: str | None = None, db: str = "results.db", force: bool = False,
                   warn=None) -> list[dict]:
    """``edgebnn estimate``: each model estimated for every calibrated board (exact path when a runner and QEMU
    are at hand, else the fast path), stored in ``db`` (kind ``estimate``; a stored estimate is kept unless
    ``force``). Returns the CLI's result records (``format_rows``)."""

    job = plan(runner or default_runner(), threads, calibration, fast=fast, fallback=True)
    for w in job["warnings"]:
        (warn or print)(w)
    store.check_writable(db)
    conn, out = store.connect(db), []
    try:
        for path in models:
            info = identify(path)
            stored = [r for r in store.results(conn, info["model_sha256"]) if r.get("kind") == "estimate"
                      and (r["device"], r["threads"]) in job["pairs"]  # an exact estimate serves a fast request
                      and (r.get("estimate") or {}).get("path", "qemu") in (job["path"], "qemu")]
            if stored and len(stored) >= len(job["pairs"]) and not force:
                out += [_record(r, "skipped", store.op_totals(conn, r["id"]), []) for r in stored]
                continue
            for row, ops in estimate_model(info, job):
                row["id"] = store.save(conn, row, ops)
                out.append(_record(row, "estimated", op_type_totals(ops),
                                   sorted(ops, key=lambda o: -o["instructions"])[:5]))
    finally:
        conn.close()
    return out


def _record(row: dict, status: str, totals: list[dict], top: list[dict]) -> dict:
    keys = ("model_name", "model_sha256", "model_path", "device", "threads", "kind", "machine", "kernels", "runner",
            "min_ms", "median_ms", "mean_ms", "max_ms", "warnings")
    return {"status": status, **{k: row.get(k) for k in keys}, "estimate": row.get("estimate") or {},
            "flags": list(row.get("flags") or []), "op_totals": totals, "top_ops": top}
