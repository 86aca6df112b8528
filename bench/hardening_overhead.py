"""What the host profiler's safety costs: the TFLite schema check every .tflite passes before an interpreter reads it,
and timing in a child process (so a model that crashes LCE's interpreter is one line, not a dead sweep), against
timing in this process. Also the share of bit-flipped copies of a real model the schema check refuses, and how
many of those it lets through crash the interpreter (each run in a child, so a crash is counted, not suffered).

Every figure is from this host (LCE's reference kernels, not ARM64).

    .venv/bin/python bench/hardening_overhead.py [MODEL.tflite ...] [--reps 5] [--runs 20] [--flips 100]

Without a model, a tiny 16x16 binary net is converted here (the tests' model).
"""

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

CRASH_CHILD = ("import sys; from edgebnn.devices import local; "
               "local.measure(open(sys.argv[1], 'rb').read(), runs=2, warmup=0)")


def _median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def overhead(path: Path, reps: int, runs: int) -> dict:
    from edgebnn import tflite
    from edgebnn.devices import local

    data = path.read_bytes()
    tflite.schema()  # loaded once, as in a sweep
    return {"model": path.name, "bytes": len(data),
            "schema_ms": _median_ms(lambda: tflite.problem(data), reps),
            "in_process_ms": _median_ms(lambda: local.measure(data, runs=runs, warmup=3), reps),
            "child_ms": _median_ms(lambda: local.profile_file(path, runs=runs, warmup=3), reps)}


def flips(path: Path, n: int, seed: int = 0) -> dict:
    """``n`` copies with three random bit flips each: refused by the check, or loaded, or crashed in a child."""
    from edgebnn import tflite

    rng = random.Random(seed)
    data = path.read_bytes()
    out = {"refused": 0, "passed": 0, "passed_then_crashed": 0, "refused_would_crash": 0}
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp, "flipped.tflite")
        for _ in range(n):
            b = bytearray(data)
            for _ in range(3):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            copy.write_bytes(b)
            refused = tflite.problem(bytes(b)) is not None
            crashed = subprocess.run([sys.executable, "-c", CRASH_CHILD, str(copy)], capture_output=True,
                                     timeout=120).returncode < 0
            out["refused" if refused else "passed"] += 1
            out["refused_would_crash" if refused else "passed_then_crashed"] += crashed
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", type=Path)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--flips", type=int, default=100)
    args = ap.parse_args()
    if not args.models:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from profile_fixtures import tiny_tflite

        args.models = [tiny_tflite()]
    from edgebnn.machine import host_label

    print(f"host: {host_label()} (LCE reference kernels, not ARM64); medians of {args.reps} repetitions, "
          f"{args.runs} timed inferences each")
    print(f"{'model':<28} {'bytes':>10} {'schema ms':>10} {'in-process ms':>14} {'child ms':>9} {'cost ms':>8}")
    for path in args.models:
        r = overhead(path, args.reps, args.runs)
        print(f"{r['model'][:28]:<28} {r['bytes']:>10} {r['schema_ms']:>10.1f} {r['in_process_ms']:>14.1f} "
              f"{r['child_ms']:>9.1f} {r['child_ms'] - r['in_process_ms']:>8.1f}")
    if args.flips:
        f = flips(args.models[0], args.flips)
        print(f"\n{args.flips} copies of {args.models[0].name} with 3 flipped bits: {f['refused']} refused by the "
              f"schema check ({f['refused_would_crash']} of them would have crashed LCE's interpreter), "
              f"{f['passed']} passed, {f['passed_then_crashed']} of those crashed it (the child process turns such a "
              "crash into one line)")


if __name__ == "__main__":
    main()
