"""Wall time of the commands a newcomer types first, each a fresh process (Python start-up included).

    .venv/bin/python bench/cli_startup.py [--repeat 5] [--counts]

``edgebnn models`` lists the registry without building a model (no TensorFlow); ``--counts`` also times
``edgebnn models --counts``, which builds every full-size model to count it (tens of seconds).
"""

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edgebnn.machine import host_label

EDGEBNN = str(Path(sys.executable).with_name("edgebnn"))
COMMANDS = [["--help"], ["models"], ["models", "--json"], ["recipe", "bireal-18"]]


def time_command(args: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([EDGEBNN, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--counts", action="store_true", help="also time `edgebnn models --counts` (once)")
    args = parser.parse_args()
    commands = [(c, args.repeat) for c in COMMANDS] + ([(["models", "--counts"], 1)] if args.counts else [])
    print(f"{'command':<32}{'runs':>5}{'median s':>10}{'min s':>8}{'max s':>8}")
    print("-" * 63)
    for command, repeat in commands:
        t = time_command(command, repeat)
        print(f"{'edgebnn ' + ' '.join(command):<32}{repeat:>5}{statistics.median(t):>10.3f}{min(t):>8.3f}"
              f"{max(t):>8.3f}")
    print(f"\nmachine: {host_label()} (shared: other jobs may run at the same time)")


if __name__ == "__main__":
    main()
