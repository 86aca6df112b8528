"""``python -m edgebnn.runner``: a stand-in for ``lce_benchmark_model`` wherever LCE's Python package runs.

It takes the same flags (``--graph``, ``--num_threads``, ``--num_runs``, ``--warmup_runs``, ``--min_secs``,
``--warmup_min_secs``, ``--max_secs``, ``--enable_op_profiling``, ``--use_xnnpack`` ...; flags it has no use for
are accepted and ignored) and prints the same lines, times in microseconds, so the SSH path serves x86_64 and
macOS machines and the tests. It adds one line of its own, the median and p90 of the measured runs.
LCE's Python interpreter has no per-op timer: with ``--enable_op_profiling=true`` it says so and prints no
per-op table rather than invent one.
"""

from __future__ import annotations

import os
import platform
import sys

from edgebnn.devices import local
from edgebnn.errors import EdgebnnError
from edgebnn.machine import host_label

# Flags of lce_benchmark_model: name -> (type, default). Unused ones are accepted and ignored.
FLAGS = {
    "graph": (str, ""), "num_threads": (int, -1), "num_runs": (int, 50), "min_secs": (float, 1.0),
    "max_secs": (float, 150.0), "warmup_runs": (int, 1), "warmup_min_secs": (float, 0.5),
    "enable_op_profiling": (bool, False), "use_xnnpack": (bool, False), "use_reference_bconv": (bool, False),
    "use_indirect_bgemm": (bool, False), "profiling_output_csv_file": (str, ""),
    "report_peak_memory_footprint": (bool, False), "run_delay": (float, -1.0), "verbose": (bool, False),
    "input_layer": (str, ""), "input_layer_shape": (str, ""), "input_layer_value_range": (str, ""),
    "benchmark_name": (str, ""), "output_prefix": (str, ""), "max_profiling_buffer_entries": (int, 1024),
    "print_preinvoke_state": (bool, False), "print_postinvoke_state": (bool, False),
    "use_caching": (bool, False), "use_gpu": (bool, False), "use_nnapi": (bool, False),
}
USED = ("graph", "num_threads", "num_runs", "min_secs", "max_secs", "warmup_runs", "warmup_min_secs",
        "enable_op_profiling", "use_xnnpack", "use_reference_bconv", "use_indirect_bgemm")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on", ""):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def parse_flags(argv: list[str]) -> tuple[dict, list[str]]:
    """``--name=value`` (or ``--name value``, or a bare ``--name`` for booleans) -> values, ignored flags."""
    values = {k: v[1] for k, v in FLAGS.items()}
    ignored = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-"):
            raise ValueError(f"unexpected argument {arg!r}")
        name, eq, value = arg.lstrip("-").partition("=")
        kind = FLAGS.get(name, (None, None))[0]
        if not eq and kind is not bool and i < len(argv) and not argv[i].startswith("--"):
            value, i = argv[i], i + 1
        if kind is None:
            ignored.append(arg)
            continue
        try:
            values[name] = _bool(value) if kind is bool else kind(value)
        except ValueError:
            raise ValueError(f"bad value for --{name}: {value!r}") from None
        if name not in USED:
            ignored.append(arg)
    return values, ignored


def _line(stats: dict) -> str:
    return (f"count={stats['count']} first={stats['first_us']:.0f} curr={stats['curr_us']:.0f} "
            f"min={stats['min_us']:.0f} max={stats['max_us']:.0f} avg={stats['avg_us']:.1f} std={stats['std_us']:.0f}")


def main(argv: list[str] | None = None) -> int:

    try:
        flags, ignored = parse_flags(sys.argv[1:] if argv is None else argv)
    except ValueError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    out = sys.stdout
    threads = flags["num_threads"] if flags["num_threads"] > 0 else (os.cpu_count() or 1)
    print("STARTING!", file=out)
    print(f"Min num runs: [{flags['num_runs']}]", file=out)
    print(f"Min runs duration (seconds): [{flags['min_secs']}]", file=out)
    print(f"Max runs duration (seconds): [{flags['max_secs']}]", file=out)
    print(f"Num threads: [{flags['num_threads']}]", file=out)
    print(f"Min warmup runs: [{flags['warmup_runs']}]", file=out)
    print(f"Graph: [{flags['graph']}]", file=out)
    print(f"Enable op profiling: [{int(flags['enable_op_profiling'])}]", file=out)
    print(f"Use xnnpack: [{int(flags['use_xnnpack'])}]", file=out)
    for arg in ignored:
        print(f"WARNING: edgebnn runner ignores {arg}", file=sys.stderr)
    if not flags["graph"]:
        print("ERROR: Please specify the name of your TF Lite input file with --graph", file=sys.stderr)
        return 1
    if os.path.exists(flags["graph"]) and not os.path.isfile(flags["graph"]):  # a folder, or a FIFO that would block
        print(f"ERROR: Could not open '{flags['graph']}': not a regular file", file=sys.stderr)
        return 1
    try:
        with open(flags["graph"], "rb") as f:
            flatbuffer = f.read()
    except OSError as err:
        print(f"ERROR: Could not open '{flags['graph']}': {err.strerror}", file=sys.stderr)
        return 1
    print(f"Loaded model {flags['graph']}", file=out)
    print(f"The input model file size (MB): {len(flatbuffer) / 1e6:g}", file=out)
    out.flush()
    try:
        m = local.measure(flatbuffer, threads=threads, runs=flags["num_runs"], warmup=flags["warmup_runs"],
                          min_secs=flags["min_secs"], warmup_min_secs=flags["warmup_min_secs"],
                          max_secs=flags["max_secs"], use_xnnpack=flags["use_xnnpack"],
                          use_reference_bconv=flags["use_reference_bconv"],
                          use_indirect_bgemm=flags["use_indirect_bgemm"])
    except EdgebnnError as err:
        print(f"ERROR: {err}", file=sys.stderr)
        return 1
    print(f"Initialized session in {m['init_us'] / 1e3:.3f}ms.", file=out)
    warm, runs = m["warmup_us"], m["samples_us"]
    print(f"Running benchmark for at least {flags['warmup_runs']} iterations and at least "
          f"{flags['warmup_min_secs']:g} seconds but terminate if exceeding {flags['max_secs']:g} seconds.", file=out)
    if warm:
        print(_line(local.count_line(warm)), file=out)
    print("", file=out)
    print(f"Running benchmark for at least {flags['num_runs']} iterations and at least {flags['min_secs']:g} "
          f"seconds but terminate if exceeding {flags['max_secs']:g} seconds.", file=out)
    stats = local.count_line(runs)
    print(_line(stats), file=out)
    print("", file=out)
    first = (warm or runs)[0]
    warm_avg = local.count_line(warm)["avg_us"] if warm else 0.0
    print(f"Inference timings in us: Init: {m['init_us']:.0f}, First inference: {first:.0f}, "
          f"Warmup (avg): {warm_avg:.1f}, Inference (avg): {stats['avg_us']:.1f}", file=out)
    # whole microseconds, as the count line's min and max: one rounding keeps min <= median <= p90 <= max
    print(f"Percentiles in us (edgebnn runner): median={local.percentile(runs, 50):.0f} "
          f"p90={local.percentile(runs, 90):.0f}", file=out)
    print(f"edgebnn runner: LCE Python interpreter {local.lce_version()} on {host_label()}; "
          f"{local.kernels_label(platform.machine())}", file=out)
    if flags["enable_op_profiling"]:
        print("Op profiling: not available, LCE's Python interpreter has no per-op timer; "
              "no per-op table printed (use lce_benchmark_model for one)", file=out)
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
