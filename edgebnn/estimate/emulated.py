"""The emulated device ``qemu:aarch64``: count a model under QEMU and estimate it for every calibrated board."""

from __future__ import annotations

from edgebnn.errors import EdgebnnError
from edgebnn.estimate import calibration as cal_mod

RUNNER_HINT = ("pass --runner PATH to an aarch64 lce_benchmark_model (LCE's release asset "
               "lce_benchmark_model_aarch64, github.com/larq/compute-engine/releases)")


def plan(runner, threads: list[int] | None = None, calibration: str | None = None) -> dict:
    """What one profile call on qemu:aarch64 will do: the runner (checked), its sha256, the calibration, the
    (board, threads) pairs to estimate and the warnings to print."""
    from edgebnn.estimate import qemu

    if not runner:
        raise EdgebnnError(f"device qemu:aarch64 needs a runner: {RUNNER_HINT}")
    path = qemu.check_runner(runner)
    qemu.build_plugin()  # an unsupported QEMU or no compiler fails here, before any model is counted
    sha = cal_mod.sha256(path)
    cal, warnings = cal_mod.for_runner(sha, calibration)
    pairs = [(b, int(n)) for b, per in cal["boards"].items() for n in per if not threads or int(n) in threads]
    if not pairs:
        have = ", ".join(f"{b} x{n}" for b, per in cal["boards"].items() for n in per)
        raise EdgebnnError(f"calibration {cal['name']!r} has no board at --threads {threads}: it has {have}")
    return {"runner": path, "sha": sha, "calibration": cal, "pairs": pairs, "warnings": warnings}


def estimate_model(model: dict, job: dict, timeout: float = 1800) -> list[tuple[dict, list[dict]]]:
    """Count ``model`` (a profile model record) under QEMU at 1 thread and return the estimated rows (row, ops)
    for the planned (board, threads) pairs."""
    from edgebnn.estimate import counting, estimate

    counts = counting.count_model(job["runner"], model["path"], threads=1, timeout=timeout)
    rows = estimate.rows(model, counts, job["calibration"], str(job["runner"]), job["sha"], job["warnings"])
    return [(r, ops) for r, ops in rows if (r["device"], r["threads"]) in job["pairs"]]
