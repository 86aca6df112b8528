"""ARM instructions per inference, per vCPU, per kernel class and per op, counted under QEMU.

Per inference: ``I = (I(num_runs=11) - I(num_runs=1)) / 10`` over two exact runs of the runner (no warm-up, no
minimum time), so start-up, model loading and the first inference's one-off work cancel out.

Per op: the plugin logs the running count at every entry into three functions of the runner, found in its own
symbol table: the interpreter's ``Invoke`` (an inference starts), ``Subgraph::OpInvoke`` (a node starts) and
XNNPACK's ``xnn_run_operator_with_index`` (one XNNPACK operator inside a delegate node starts). The
instructions between successive entries belong to the op that started; a delegate node's own overhead goes to
its first operator. Ops are named from the runner's own op profile (``--enable_op_profiling``), whose Run Order
lists nodes and XNNPACK operators in the same order.

Kernel classes: every translated block is attributed to the function holding its address (symbol ranges), and
functions to the classes of :data:`CLASSES`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgebnn.estimate import qemu
from edgebnn.estimate.elf import Symbols, read_symbols

RUNS_LONG, RUNS_SHORT = 11, 1
BENCH_FLAGS = ("--warmup_runs=0", "--warmup_min_secs=0", "--min_secs=0")
MARKERS = ("_ZN6tflite4impl11Interpreter6InvokeEv",
           "_ZN6tflite8Subgraph8OpInvokeERK18TfLiteRegistrationP10TfLiteNode",
           "xnn_run_operator_with_index")
INVOKE, NODE, XNN_OP = range(3)

# Kernel classes by (mangled) function name, first match wins.
CLASSES = (
    ("binary_gemm", re.compile(r"BinaryKernelNeon|bgemm.*Kernel")),  # LCE's hand-written NEON binary GEMM
    ("binary_other", re.compile(r"compute_engine|Im2colIi")),  # bitpacking, bitpacked im2col, LCE ops' own code
    ("float_gemm", re.compile(r"^xnn_.*gemm.*ukernel")),  # XNNPACK's float (i)gemm micro-kernels
    ("float_other", re.compile(r"^xnn_|pthreadpool|ruy|optimized_ops|reference_ops")),  # pooling, add, ...
    ("memory", re.compile(r"^_*mem(cpy|set|move)")),
)
CLASS_NAMES = tuple(c for c, _ in CLASSES) + ("other",)


def kernel_class(name: str | None) -> str:
    for cls, pattern in CLASSES:
        if name and pattern.search(name):
            return cls
    return "other"


def _class_totals(counts: qemu.Counts, symbols: Symbols) -> dict[str, int]:
    cache: dict[int, str] = {}
    out = dict.fromkeys(CLASS_NAMES, 0)
    for pc, n, execs in counts.blocks:
        cls = cache.get(pc)
        if cls is None:
            i = symbols.find(pc)
            cls = cache[pc] = kernel_class(symbols.names[i] if i is not None else None)
        out[cls] += n * execs
    return out


def _units(marks: list[tuple]) -> list[list[float]]:
    """Per steady inference (not the first, and only those another follows), each op's instructions in run order.

    A node directly followed by an XNNPACK operator is a delegate node: its own overhead joins that operator;
    the interpreter's work before the first node joins the first op."""
    main = marks[0][1] if marks else 0
    seq = [(mid, total) for mid, vcpu, _own, total in marks if vcpu == main]
    starts = [i for i, (mid, _t) in enumerate(seq) if mid == INVOKE]
    inferences = []
    for a, b in zip(starts[1:], starts[2:], strict=False):
        part = seq[a:b + 1]
        units: list[float] = []
        carry, previous = 0, None
        for (mid, t0), (_next, t1) in zip(part[:-1], part[1:], strict=True):
            d = t1 - t0
            if mid == INVOKE:
                carry += d
                previous = mid
                continue
            if mid == XNN_OP and previous == NODE:
                d += units.pop()
            units.append(d + carry)
            carry, previous = 0, mid
        inferences.append(units)
    return inferences


def attribute_ops(marks: list[tuple], profile_ops: list[dict]) -> tuple[list[dict], str | None]:
    """Per-op instructions (mean over the steady inferences) joined to the op profile's Run Order rows.

    Returns the rows and a warning when the two do not line up (then rows are numbered nodes)."""
    inferences = _units(marks)
    if not inferences:
        return [], "no per-op counts: the runner's symbol table lacks the interpreter's Invoke/OpInvoke"
    n = len(inferences[0])
    if any(len(u) != n for u in inferences):
        return [], "no per-op counts: inferences ran different numbers of ops"
    mean = [sum(u[i] for u in inferences) / len(inferences) for i in range(n)]
    if len(profile_ops) == n:
        return [{**{k: op.get(k) for k in ("node_type", "name", "index", "times_called")}, "instructions": m}
                for op, m in zip(profile_ops, mean, strict=True)], None
    rows = [{"node_type": f"node {i}", "name": None, "index": i, "times_called": 1, "instructions": m}
            for i, m in enumerate(mean)]
    return rows, (f"per-op counts cover {n} ops but the runner's op profile lists {len(profile_ops)}: ops are "
                  "numbered, not named")


def count_model(runner, model, threads: int = 1, timeout: float = 1800, per_op: bool = True) -> dict:
    """Count one model: instructions per inference (total, per vCPU, per kernel class) and per op.

    Returns {instructions, per_vcpu, classes, ops, warnings, runs: (long, short), qemu}.
    """
    from edgebnn.profile.parse import parse

    runner = qemu.check_runner(runner)
    model = Path(model).resolve()
    symbols = read_symbols(runner)
    marks = [a for a in (symbols.address(m) for m in MARKERS) if a is not None] if per_op else []
    if per_op and len(marks) != len(MARKERS):
        marks = []
    base = [f"--graph={model}", f"--num_threads={int(threads)}", *BENCH_FLAGS]

    def counted(n, with_marks):
        return qemu.run_counted(runner, [*base, f"--num_runs={n}"], marks if with_marks else (), timeout)

    def op_profile():
        run = qemu.run_emulated(runner, [*base, "--num_runs=2", "--enable_op_profiling=true"], timeout=timeout)
        return parse(run["stdout"] + "\n" + run["stderr"])["ops"] if run["rc"] == 0 else []

    with ThreadPoolExecutor(max_workers=3) as pool:
        long_f = pool.submit(counted, RUNS_LONG, True)
        short_f = pool.submit(counted, RUNS_SHORT, False)
        prof_f = pool.submit(op_profile) if marks else None
        (long_c, _), (short_c, _) = long_f.result(), short_f.result()
        prof = prof_f.result() if prof_f else []
    span = RUNS_LONG - RUNS_SHORT
    per_vcpu = {v: (long_c.vcpus.get(v, 0) - short_c.vcpus.get(v, 0)) / span for v in long_c.vcpus}
    cl_long, cl_short = _class_totals(long_c, symbols), _class_totals(short_c, symbols)
    classes = {c: (cl_long[c] - cl_short[c]) / span for c in CLASS_NAMES}
    warnings = []
    ops, warn = attribute_ops(long_c.marks, prof) if marks else ([], "no per-op counts: the runner has no "
                                                                     "symbols for Invoke/OpInvoke")
    if warn:
        warnings.append(warn)
    return {"instructions": (long_c.total - short_c.total) / span, "per_vcpu": per_vcpu, "classes": classes,
            "ops": ops, "warnings": warnings, "threads": int(threads), "runs": (RUNS_LONG, RUNS_SHORT),
            "qemu": qemu.qemu_version()}


def class_shares(classes: dict[str, float]) -> dict[str, float]:
    whole = sum(classes.values()) or 1.0
    return {c: v / whole for c, v in classes.items()}


def group(rows: list[dict], key: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for r in rows:
        out[r[key]] += r["instructions"]
    return dict(out)
