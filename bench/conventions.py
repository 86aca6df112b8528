"""What the official padding convention costs on ARM: each family at 224x224 (SD-BNN's CIFAR variants at 32x32),
width 1, parameters randomised, converted as `edgebnn convert` does (deployment folds on) under both conventions:
"lce" (ours: one-padded binary convs, TensorFlow's placement) and "official" (the papers' code: zero padding,
PyTorch's stride-2 placement, which imported checkpoints need). Per model and convention: aarch64 instructions per
inference counted under QEMU with LCE's real aarch64 runner (1 thread, exact and repeatable), the estimated
Raspberry Pi 4B latency from the shipped calibration (an estimate, with its likely range), the ops the official
convention adds (REVERSE_V2 around each flipped stride-2 binary conv, PAD/PADV2 in the stem). Per-op names are
left out: XNNPACK's operators are named by flatbuffer op only when every delegated op can be matched, which the
official graphs' PAD does not yet allow, so per-op rows of the two conventions are not comparable.

    .venv/bin/python bench/conventions.py [--runner PATH] [--models bireal-18,reactnet-a]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from graphs import FAMILIES, RUNNER, convert_family, measure, runner_calibration

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

CONVENTIONS = ("lce", "official")


def main() -> int:
    from edgebnn.machine import host_label

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runner", default=RUNNER)
    p.add_argument("--models", default=",".join(m for m in FAMILIES if m not in ("xnorpp-18-case2",
                                                                                     "xnorpp-18-case3")))
    args = p.parse_args()
    found = runner_calibration(args.runner)
    if found is None:
        return 2
    cal, sha = found
    out_dir = Path(tempfile.mkdtemp(prefix="edgebnn-conventions-"))
    rows = {}
    for name in [m for m in args.models.split(",") if m]:
        for padding in CONVENTIONS:
            start = time.perf_counter()
            path, facts = convert_family(name, out_dir, fold=True, padding=padding)
            rows[name, padding] = {**facts, **measure(path, args.runner, cal, sha)}
            print(f"  {name} [{padding}]: {rows[name, padding]['instructions'] / 1e6:.1f} M instructions "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    print(f"\naarch64 instructions per inference (1 thread, counted under QEMU with LCE v0.16.0's runner, exact) and "
          f"estimated Raspberry Pi 4B ms (shipped calibration; estimates, not measurements); counted on "
          f"{host_label()}")
    head = (f"{'model':<17}{'input':>6}{'M instr lce':>13}{'M instr official':>18}{'change':>8}"
            f"{'Pi4B ms lce':>13}{'Pi4B ms official':>18}  official adds")
    print(head + "\n" + "-" * len(head))
    for name in dict.fromkeys(n for n, _ in rows):
        a, b = rows[name, "lce"], rows[name, "official"]
        added = ", ".join(f"{op} +{b['hist'][op] - a['hist'].get(op, 0)}" for op in b["hist"]
                          if b["hist"][op] > a["hist"].get(op, 0)) or "-"
        ms = [f"{r['pi4b_ms']:.1f}" if r["pi4b_ms"] else "-" for r in (a, b)]
        print(f"{name:<17}{a['size']:>6}{a['instructions'] / 1e6:13.1f}{b['instructions'] / 1e6:18.1f}"
              f"{100 * (b['instructions'] / a['instructions'] - 1):+7.1f}%{ms[0]:>13}{ms[1]:>18}  {added}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
