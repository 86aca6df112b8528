"""What the SSH path costs per model on the aarch64 test board, against the runner's own time, so a user knows what
a sweep costs; and what the proof on a device costs fed as one batch or one sample per invocation.

The board is arm64_userland's aarch64 Debian userland (its own sshd in a chroot, every program run
by qemu-user-static): all figures are wall-clock seconds on this host with the board EMULATED, never ARM latency.
Per model: upload + sha256 check, the benchmark through SSH (facts of temperature, the runner, parsing), removal;
against the same runner command run directly in the userland (``chroot ROOTFS RUNNER ...``, no SSH). Per session:
opening (connection, board facts, runner upload + sha256, work directory) and closing (work directory removed).
Then the proof on qemu:aarch64 of one model on N digits samples: one batch (plus sample 0 alone) against one
invocation per sample. Root only (chroot), with the userland built (the tests build it).

    sudo .venv/bin/python bench/board_overhead.py [--archs bireal-18,reactnet-18] [--width 0.125]
                                                  [--input-size 32] [--runs 5] [--samples 100] [--json out.json]
"""

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from profile_overhead import build_model  # bench/ is on sys.path when a bench script runs

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # arm64_userland: the tests' aarch64 board

RUNNER = Path(__file__).resolve().parents[1] / ".." / "shared" / "lce" / "lce_benchmark_model_aarch64"


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def direct_seconds(rootfs: Path, workdir: str, remote_model: str, runner: str, runs: int) -> float:
    """The runner's own wall time: the same command in the userland without SSH."""
    cmd = (f"cd {shlex.quote(workdir)} && {shlex.quote(runner)} --graph={shlex.quote(remote_model)} --num_threads=1 "
           f"--num_runs={runs} --warmup_runs=1 --min_secs=0 --warmup_min_secs=0")
    _, seconds = timed(subprocess.run, ["chroot", str(rootfs), "/bin/sh", "-c", cmd], capture_output=True,
                       check=True)
    return seconds


def ssh_rows(board, models: dict[str, Path], runs: int) -> tuple[dict, list[dict]]:
    from edgebnn.devices.config import resolve
    from edgebnn.devices.local import sha256
    from edgebnn.devices.remote import BoardSession

    session = BoardSession(resolve(board.url, ssh_config=board.config), runner=str(RUNNER.resolve()), timeout=600)
    _, open_s = timed(session.__enter__)
    rows = []
    for name, path in models.items():
        remote, up = timed(session.upload_model, path, sha256(path))
        _, bench = timed(session.benchmark, remote, 1, runs, 1, False)
        direct = direct_seconds(board.rootfs, session.workdir, remote, session.command[0], runs)
        _, rm = timed(session.remove, remote)
        rows.append({"model": name, "mb": path.stat().st_size / 1e6, "direct_s": direct, "upload_sha_s": up,
                     "benchmark_s": bench, "remove_s": rm, "overhead_s": up + bench + rm - direct})
    _, close_s = timed(session.close)
    return {"open_s": open_s, "close_s": close_s}, rows


def proof_rows(model: Path, n: int) -> dict:
    """One batch of n (plus sample 0 alone) against n invocations of one sample, on qemu:aarch64."""
    from edgebnn import data
    from edgebnn.conversion import on_device
    from edgebnn.devices.execute import open_runner
    from edgebnn.tflite.describe import io_tensors

    x, _ = data.sample("digits", n, input_size=32)
    with open_runner("qemu:aarch64", runner=str(RUNNER.resolve())) as host:
        (_, how), batch_s = timed(on_device.device_outputs, host, model, x)
        (name, _), (_, out_shape) = (t[0] for t in io_tensors(model.read_bytes()))
        width = out_shape[-1]
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            for i in range(n):
                row, err = on_device._invoke(host, model, name, x[i:i + 1], width, Path(tmp), 600)
                assert row is not None, err
            single_s = time.perf_counter() - t0
    return {"samples": n, "batch_s": batch_s, "batch_invocations": how["invocations"], "one_per_sample_s": single_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default="bireal-18,reactnet-18")
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from arm64_userland import Arm64Sshd, build_rootfs

    from edgebnn.machine import host_label

    work = Path(tempfile.mkdtemp(prefix="edgebnn-bench-"))
    models = {a: build_model(a, args.input_size, args.width, work / f"{a}.tflite") for a in args.archs.split(",")}
    with Arm64Sshd(build_rootfs()) as board:
        session, rows = ssh_rows(board, models, args.runs)
    proof = proof_rows(next(iter(models.values())), args.samples)
    where = f"{host_label()}; the aarch64 board is EMULATED (qemu-user-static): wall seconds, not ARM latency"
    print(f"SSH path on the aarch64 test board, {args.runs} runs + 1 warm-up per model, 1 thread; {where}")
    print(f"{'model':<14} {'MB':>6} {'runner alone':>12} {'upload+sha':>10} {'bench/ssh':>9} {'remove':>7} "
          f"{'SSH cost':>9}  (s)")
    for r in rows:
        print(f"{r['model']:<14} {r['mb']:6.3f} {r['direct_s']:12.2f} {r['upload_sha_s']:10.2f} "
              f"{r['benchmark_s']:9.2f} {r['remove_s']:7.2f} {r['overhead_s']:9.2f}")
    print(f"per session: open {session['open_s']:.2f} s (connection, board facts, {RUNNER.name} upload + sha256, "
          f"work directory), close {session['close_s']:.2f} s")
    print(f"proof of {Path(next(iter(models.values()))).stem} on {proof['samples']} digits samples on qemu:aarch64: "
          f"one batch ({proof['batch_invocations']} invocations) {proof['batch_s']:.1f} s, one invocation per sample "
          f"{proof['one_per_sample_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": where, "models": rows, "session": session, "proof": proof,
                                               "args": vars(args)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
