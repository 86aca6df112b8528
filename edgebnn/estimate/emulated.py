"""The emulated device ``qemu:aarch64`` and ``edgebnn estimate``: a model's aarch64 instructions, counted under QEMU
(the exact path) or predicted from its op shapes (``fast.py``, the fast path), estimated for every calibrated board.

The exact path is taken when a runner and a plugin-capable ``qemu-aarch64`` are at hand; the fast path when asked
(``fast=True``) or, with a warning, when the runner or QEMU is missing. Every estimate says which path it took.

Each board is counted on its own core (the QEMU ``-cpu`` its calibration was fitted on: ``boards.toml``'s ``core``,
cortex-a72 for the Pi 4B and the Pixel 1), once per core; ``cpu`` restricts an estimate to the boards of one core
(``qemu:aarch64:cortex-a76``). A board with no published figures (the Pi 5) gets instructions only, never ms.
"""

from __future__ import annotations

import os

from edgebnn import store
from edgebnn.devices import qemu
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.estimate import boards as boards_mod
from edgebnn.estimate import calibration as cal_mod
from edgebnn.estimate import counting, estimate, fast
from edgebnn.estimate.estimate import op_type_totals
from edgebnn.tflite.describe import identify

RUNNER_HINT = ("pass {runner:=PATH} to an aarch64 lce_benchmark_model (LCE's release asset "
               "lce_benchmark_model_aarch64, github.com/larq/compute-engine/releases)")


def _pairs(cal: dict, threads: list[int] | None, cpu: str | None = None) -> list[tuple[str, int]]:
    pairs = [(b, int(n)) for b, per in cal["boards"].items() for n in per
             if (not threads or int(n) in threads) and (not cpu or cal_mod.board_cpu(cal, b) == cpu)]
    if not pairs and not (cpu and _count_only(cal, cpu)):
        have = ", ".join(f"{b} x{n} ({cal_mod.board_cpu(cal, b)})" for b, per in cal["boards"].items() for n in per)
        raise OptionError("calibration {name!r} has no board at {threads:={given}}{on}: it has {have}",
                          name=cal["name"], given=threads, have=have, on=f" counted on {cpu}" if cpu else "")
    return pairs


def _count_only(cal: dict, cpu: str | None) -> list[boards_mod.Board]:
    """The boards of ``cpu`` (every core when None) with no fit in the calibration: instructions only."""
    return [b for b in boards_mod.load().values() if b.name not in cal["boards"] and (not cpu or b.core == cpu)]


def _cores(job: dict) -> dict[str, list[str]]:
    """QEMU core -> the job's boards counted on it (calibrated, then instructions-only ones)."""
    out: dict[str, list[str]] = {}
    for b, _n in job["pairs"]:
        out.setdefault(cal_mod.board_cpu(job["calibration"], b), [])
        if b not in out[cal_mod.board_cpu(job["calibration"], b)]:
            out[cal_mod.board_cpu(job["calibration"], b)].append(b)
    for b in job["count_only"]:
        out.setdefault(b.core, []).append(b.name)
    return out


def _fast_plan(threads, calibration, warnings: list[str], cpu: str | None) -> dict:

    cal = cal_mod.load(calibration) if calibration else cal_mod.shipped()
    model = fast.shipped_model()
    if cpu:
        fast.core_model(model, cpu)  # one line when the fast path has no cost model for it
    job = {"path": "fast", "runner": "none (fast path)", "sha": model["runner_sha256"], "calibration": cal,
           "pairs": _pairs(cal, threads, cpu), "warnings": warnings, "fast_model": model}
    job["count_only"] = [b for b in _count_only(cal, cpu) if b.core in fast.cores(model)] if cpu else []
    job["cores"] = _cores(job)
    return job


def plan(runner, threads: list[int] | None = None, calibration: str | None = None, fast: bool = False,
         fallback: bool = False, cpu: str | None = None) -> dict:
    """What one estimate call will do: the path (``qemu`` or ``fast``), the runner (checked) and its sha256, the
    calibration, the (board, threads) pairs, the boards of each core (``cores``), the instructions-only boards
    (``count_only``: only when ``cpu`` names their core, so no default estimate counts twice for them) and the
    warnings to print. ``fallback``: take the fast path, with a warning, when no runner is given or QEMU cannot
    count (``edgebnn estimate``); else a missing runner is an error (``profile -d qemu:aarch64``)."""

    if fast:
        return _fast_plan(threads, calibration, [], cpu)
    if not runner:
        if fallback:
            return _fast_plan(threads, calibration, ["no aarch64 runner given (--runner or LCE_RUNNER_AARCH64): "
                                                     "instructions predicted from op shapes (fast path)"], cpu)
        raise OptionError("device qemu:aarch64 needs a runner: " + RUNNER_HINT)
    path = qemu.check_runner(runner)
    try:
        qemu.build_plugin()  # an unsupported QEMU or no compiler fails here, before any model is counted
        if cpu:
            qemu.check_cpu(cpu)
    except EdgebnnError as err:
        if not fallback:
            raise
        return _fast_plan(threads, calibration, [f"{err} -- instructions predicted from op shapes (fast path)"], cpu)
    sha = cal_mod.sha256(path)
    cal, warnings = cal_mod.for_runner(sha, calibration)
    job = {"path": "qemu", "runner": path, "sha": sha, "calibration": cal, "pairs": _pairs(cal, threads, cpu),
           "warnings": warnings, "count_only": _count_only(cal, cpu) if cpu else []}
    job["cores"] = _cores(job)
    return job


def model_counts(path, job: dict, cpu: str, timeout: float = 1800) -> dict:
    """The model's counts on the job's path on QEMU core ``cpu``: counted under QEMU at 1 thread, or predicted from
    its op shapes with the cost model fitted on that core."""
    if job.get("path") == "fast":

        with open(path, "rb") as f:
            return fast.predict(fast.typed_ops(f.read()), fast.core_model(job["fast_model"], cpu))

    return counting.count_model(job["runner"], path, threads=1, timeout=timeout, cpu=cpu)


def estimate_model(model: dict, job: dict, timeout: float = 1800) -> list[tuple[dict, list[dict]]]:
    """Count or predict ``model`` (a profile model record) once per core and return the estimated rows (row, ops)
    for the planned (board, threads) pairs (``counted_only`` gives the instructions-only boards')."""
    return estimate_all(model, job, timeout)[0]


def estimate_all(model: dict, job: dict, timeout: float = 1800) -> tuple[list[tuple[dict, list[dict]]], list[dict]]:
    """``estimate_model``'s rows and the instructions-only records of the job's uncalibrated boards (one count
    per core serves every board on it)."""
    out, counted = [], []
    for cpu, names in job["cores"].items():
        counts = model_counts(model["path"], job, cpu, timeout)
        rows = estimate.rows(model, counts, job["calibration"], str(job["runner"]), job["sha"], job["warnings"],
                             boards=names)
        out += [(r, ops) for r, ops in rows if (r["device"], r["threads"]) in job["pairs"]]
        counted += [estimate.instructions_only(model, counts, b, str(job["runner"])) for b in job["count_only"]
                    if b.core == cpu]
    return out, counted


def default_runner() -> str | None:
    """``$LCE_RUNNER_AARCH64`` when it names a file, else None."""
    runner = os.environ.get("LCE_RUNNER_AARCH64")
    return runner if runner and os.path.isfile(runner) else None


def estimate_files(models: list[str], runner=None, fast: bool = False, threads: list[int] | None = None,
                   calibration: str | None = None, db: str = "results.db", force: bool = False,
                   warn=None, cpu: str | None = None) -> list[dict]:
    """``edgebnn estimate``: each model estimated for every calibrated board (exact path when a runner and QEMU
    are at hand, else the fast path), each counted on its own core (only ``cpu``'s boards when given, the
    uncalibrated ones among them as instructions only, not stored), stored in ``db`` (kind ``estimate``; a stored
    estimate is kept unless ``force``). Returns the CLI's result records (``format_rows``)."""

    job = plan(runner or default_runner(), threads, calibration, fast=fast, fallback=True, cpu=cpu)
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
            if stored and len(stored) >= len(job["pairs"]) and not force and not job["count_only"]:
                out += [_record(r, "skipped", store.op_totals(conn, r["id"]), []) for r in stored]
                continue
            rows, counted = estimate_all(info, job)
            for row, ops in rows:
                row["id"] = store.save(conn, row, ops)
                out.append(_record(row, "estimated", op_type_totals(ops),
                                   sorted(ops, key=lambda o: -o["instructions"])[:5]))
            out += [_record(r, "instructions only", [], []) for r in counted]
    finally:
        conn.close()
    return out


def _record(row: dict, status: str, totals: list[dict], top: list[dict]) -> dict:
    keys = ("model_name", "model_sha256", "model_path", "device", "threads", "kind", "machine", "kernels", "runner",
            "cpu", "precision", "min_ms", "median_ms", "mean_ms", "max_ms", "warnings")
    return {"status": status, **{k: row.get(k) for k in keys}, "estimate": row.get("estimate") or {},
            "flags": list(row.get("flags") or []), "op_totals": totals, "top_ops": top}
