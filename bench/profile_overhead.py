"""What going through `edgebnn profile --device ssh://` costs: the same model timed by the runner directly and
through the SSH path on loopback (a throw-away sshd on 127.0.0.1, this host playing the board).

Rounds alternate direct / SSH so drift from other load hits both; the per-round ratios (SSH / direct) of the
median, mean and minimum latencies are printed with their medians over rounds (target: within 2%), plus the
wall-clock seconds of each path (the SSH path's fixed cost: connection, facts, uploads, sha256 checks, clean-up).
Every latency is labelled with this host, where LCE runs its reference kernels (not ARM64).

    .venv/bin/python bench/profile_overhead.py [--arch bireal-18] [--input-size 32] [--width 0.5]
                                               [--runs 100] [--rounds 3] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # loopback_sshd: the tests' throw-away sshd


def build_model(arch: str, size: int, width: float, out: Path) -> Path:
    import larq_compute_engine as lce

    from edgebnn import archs

    model = archs.build(arch, input_shape=(size, size, 3), num_classes=10, width=width)
    out.write_bytes(lce.convert_keras_model(model, target="arm"))
    return out


def direct(model: Path, runs: int, warmup: int) -> tuple[dict, float]:
    from edgebnn.devices.parse import parse

    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgebnn.runner", f"--graph={model}", "--num_threads=1",
                           f"--num_runs={runs}", f"--warmup_runs={warmup}", "--min_secs=0", "--warmup_min_secs=0",
                           "--use_xnnpack=true"], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    out = parse(proc.stdout)
    return {"mean_ms": out["runs"]["avg_us"] / 1e3, "median_ms": out["percentiles_us"]["median"] / 1e3,
            "min_ms": out["runs"]["min_us"] / 1e3}, wall


def through_ssh(model: Path, runs: int, warmup: int, url: str, config: str, runner: Path, db: Path):
    t0 = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).with_name("edgebnn")), "profile", str(model), "--device", url,
                           "--ssh-config", config, "--runner", str(runner), "--threads", "1", "--runs", str(runs),
                           "--warmup", str(warmup), "--db", str(db), "--force", "--json"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"edgebnn profile failed: {proc.stderr.strip().splitlines()[-1]}")
    [r] = json.loads(proc.stdout)
    return {k: r[k] for k in ("mean_ms", "median_ms", "min_ms")}, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="bireal-18")
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from loopback_sshd import LoopbackSshd

    from edgebnn.machine import host_label

    work = Path(tempfile.mkdtemp(prefix="edgebnn-bench-"))
    model = build_model(args.arch, args.input_size, args.width, work / f"{args.arch}.tflite")
    runner = work / "edgebnn-runner"
    runner.write_text(f'#!/bin/sh\nexec {sys.executable} -m edgebnn.runner "$@"\n')
    runner.chmod(0o755)
    rounds = []
    with LoopbackSshd(work / "sshd") as sshd:
        for i in range(args.rounds):
            d, d_wall = direct(model, args.runs, args.warmup)
            s, s_wall = through_ssh(model, args.runs, args.warmup, sshd.url, sshd.config, runner, work / "r.db")
            rounds.append({"direct": d, "ssh": s, "direct_wall_s": d_wall, "ssh_wall_s": s_wall,
                           "ratio_mean": s["mean_ms"] / d["mean_ms"], "ratio_median": s["median_ms"] / d["median_ms"],
                           "ratio_min": s["min_ms"] / d["min_ms"], "load_avg_1min": os.getloadavg()[0]})
            print(f"round {i + 1}: direct mean {d['mean_ms']:.3f} ms (median {d['median_ms']:.3f}), "
                  f"ssh mean {s['mean_ms']:.3f} ms (median {s['median_ms']:.3f}); ratio of means "
                  f"{rounds[-1]['ratio_mean']:.4f}, of medians {rounds[-1]['ratio_median']:.4f}, of minima "
                  f"{rounds[-1]['ratio_min']:.4f}; wall {d_wall:.1f} s vs {s_wall:.1f} s; "
                  f"load average {rounds[-1]['load_avg_1min']:.1f}", flush=True)
    summary = {"model": f"{args.arch} {args.input_size}x{args.input_size} width {args.width}",
               "model_mb": model.stat().st_size / 1e6, "runs": args.runs, "warmup": args.warmup,
               "machine": host_label(), "kernels": "LCE reference kernels (not ARM64)", "cpus": os.cpu_count(),
               "ratio_mean": statistics.median(r["ratio_mean"] for r in rounds),
               "ratio_median": statistics.median(r["ratio_median"] for r in rounds),
               "ratio_min": statistics.median(r["ratio_min"] for r in rounds),
               "ssh_fixed_cost_s": statistics.median(r["ssh_wall_s"] - r["direct_wall_s"] for r in rounds),
               "rounds": rounds}
    print(f"{summary['model']} ({summary['model_mb']:.3f} MB), {args.runs} runs x {args.rounds} rounds on "
          f"{summary['machine']}; {summary['kernels']}")
    verdict = "within" if abs(summary["ratio_median"] - 1) <= 0.02 else "OUTSIDE"
    print(f"ssh/direct latency ratio (median over rounds): {summary['ratio_median']:.4f} of medians ({verdict} the "
          f"2% target), {summary['ratio_mean']:.4f} of means, {summary['ratio_min']:.4f} of minima; the SSH path adds "
          f"{summary['ssh_fixed_cost_s']:.1f} s wall-clock "
          "per model (connection, facts, uploads, checks, clean-up)")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
