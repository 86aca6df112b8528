"""ARM instructions per inference, per vCPU, per kernel class and per op, counted under QEMU.

Per inference: ``I = (I(num_runs=11) - I(num_runs=1)) / 10`` over two exact runs of the runner (no warm-up, no
minimum time), so start-up, model loading and the first inference's one-off work cancel out.

Per op: the plugin logs the running count at every entry into three functions of the runner, found in its own
symbol table: the interpreter's ``Invoke`` (an inference starts), ``Subgraph::OpInvoke`` (a node starts) and
XNNPACK's ``xnn_run_operator_with_index`` (one XNNPACK operator inside a delegate node starts). The
instructions between successive entries belong to the op that started; a delegate node's own overhead goes to
its first operator. A node outside the delegate is named from the flatbuffer by the first op ``Eval`` function it
runs; an XNNPACK operator by the first ``xnn_compute_*`` function it runs (both secondary markers).

Kernel classes: every translated block is attributed to the function holding its address (symbol ranges), and
functions to the classes of :data:`CLASSES`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgebnn.devices import qemu
from edgebnn.devices.elf import Symbols, read_symbols
from edgebnn.errors import EdgebnnError
from edgebnn.tflite.describe import read_ops

RUNS_LONG, RUNS_SHORT = 11, 1
# No warm-up, no minimum time, and no maximum either: the tool stops after --max_secs (150 s by default) of
# wall time, which a large model under emulation exceeds, and the count would then cover fewer inferences.
BENCH_FLAGS = ("--warmup_runs=0", "--warmup_min_secs=0", "--min_secs=0", "--max_secs=1000000")
MARKERS = ("_ZN6tflite4impl11Interpreter6InvokeEv",
           "_ZN6tflite8Subgraph8OpInvokeERK18TfLiteRegistrationP10TfLiteNode",
           "xnn_run_operator_with_index")
INVOKE, NODE, XNN_OP = range(3)
DELEGATE_START = -1  # a unit: the first XNNPACK operator of a delegate node (with the node's own overhead)

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


def _units(marks: list[tuple], n_primary: int = 3) -> list[list[tuple[int, int, int]]]:
    """Per steady inference (not the first, and only those another follows), its ops in run order as
    (kind NODE, DELEGATE_START or XNN_OP, label marker id or -1, instructions).

    A node directly followed by an XNNPACK operator is a delegate node: its own overhead joins that operator;
    the interpreter's work before the first node joins the first op; a secondary marker (an XNNPACK compute
    function) only labels the operator it falls in."""
    main = marks[0][1] if marks else 0
    seq = [(mid, total) for mid, vcpu, _own, total in marks if vcpu == main or mid >= n_primary]
    starts = [i for i, (mid, _t) in enumerate(seq) if mid == INVOKE]
    inferences = []
    for a, b in zip(starts[1:], starts[2:], strict=False):
        part = seq[a:b + 1]
        units: list[list[int]] = []
        carry, previous = 0, None
        for (mid, t0), (_next, t1) in zip(part[:-1], part[1:], strict=True):
            d = t1 - t0
            if mid >= n_primary and units:
                units[-1][1] = mid if units[-1][1] < 0 else units[-1][1]
                units[-1][2] += d
                continue
            if mid == INVOKE or mid >= n_primary:
                carry += d
                continue
            if mid == XNN_OP and previous == NODE:
                units[-1][0] = DELEGATE_START
                units[-1][2] += d + carry
            else:
                units.append([mid, -1, d + carry])
            carry, previous = 0, mid
        inferences.append([tuple(u) for u in units])
    return inferences


def xnn_label(function: str) -> str:
    """A readable op type for an XNNPACK operator from the compute function it ran."""
    name = function.removeprefix("xnn_compute_")
    for key, label in _XNN_LABELS:
        if key in name:
            return label
    return f"XNNPACK {name}"


_XNN_LABELS = (("igemm", "Convolution (F32, IGEMM)"), ("dwconv", "Depthwise convolution (F32)"),
               ("gemm", "GEMM (F32: 1x1 convolution or fully connected)"),
               ("global_average_pooling", "Global average pooling (F32)"), ("max_pooling", "Max pooling (F32)"),
               ("argmax_pooling", "Max pooling (F32)"), ("average_pooling", "Average pooling (F32)"),
               ("elementwise_binary", "Elementwise add/multiply (F32)"), ("softmax", "Softmax (F32)"),
               ("vmulcaddc", "Per-channel multiply-add (F32)"), ("prelu", "PReLU (F32)"), ("pad", "Pad (F32)"),
               ("univector", "Elementwise unary (F32)"), ("transpose", "Transpose (F32)"))


_EVAL = re.compile(r"^_ZN(6tflite3ops7builtin|14compute_engine6tflite)(\d+)")


def eval_label(function: str) -> tuple[bool, str]:
    """(LCE op?, normalised kernel name) of an op's Eval function: ``_ZN14compute_engine6tflite7bconv2d4Eval...``
    -> (True, "bconv2d"); ``_ZN6tflite3ops7builtin13concatenation...`` -> (False, "concatenation")."""
    m = _EVAL.match(function)
    if not m:
        return False, ""
    start = m.end()
    name = function[start:start + int(m.group(2))]
    return m.group(1).startswith("14compute"), name.lower().removesuffix("eval")


def _norm(op_type: str) -> str:
    return op_type.lower().removeprefix("lce").replace("_", "")


def _align(labels: list[tuple[bool, str]], flat_ops: list[dict]) -> list[tuple[int, dict] | None]:
    """Nodes outside the delegate (their Eval labels, in run order) matched in order to flatbuffer ops of the
    same kind: LCE ops to custom ops of that name, builtins to builtins (by name when it matches)."""
    out, pos = [], 0
    for lce, name in labels:
        found = None
        for i in range(pos, len(flat_ops)):
            t = flat_ops[i]["type"] or ""
            custom = not t.isupper()
            if custom == lce and (not name or _norm(t).startswith(name) or name.startswith(_norm(t)) or not lce):
                found = i
                break
        out.append((found, flat_ops[found]) if found is not None else None)
        pos = found + 1 if found is not None else pos
    return out


def attribute_ops(marks: list[tuple], labels: list[str], flat_ops: list[dict]) -> tuple[list[dict], str | None]:
    """Per-op instructions (mean over the steady inferences) with names.

    A node outside the XNNPACK delegate is named by the flatbuffer op its Eval function matches, in order (type,
    node index, output tensor name); an XNNPACK operator by the compute function it ran. Returns the rows and a
    warning when something does not line up."""
    inferences = _units(marks, n_primary=len(MARKERS))
    if not inferences:
        return [], "no per-op counts: no two complete inferences were seen"
    shape = [(k, lab) for k, lab, _ in inferences[0]]
    if any([(k, lab) for k, lab, _ in u] != shape for u in inferences):
        return [], "no per-op counts: inferences ran different sequences of ops"
    mean = [sum(u[i][2] for u in inferences) / len(inferences) for i in range(len(shape))]
    plain = iter(_align([eval_label(labels[lab]) if lab >= 0 else (False, "") for k, lab in shape if k == NODE],
                        flat_ops))
    rows, delegate, j, unmatched = [], -1, -1, 0
    for (kind, lab), m in zip(shape, mean, strict=True):
        if kind == NODE:
            match = next(plain)
            unmatched += match is None
            index, op = match if match else (None, None)
            rows.append({"node_type": op["type"] if op else "node", "index": index, "times_called": 1,
                         "name": (op["outputs"][0][0] if op and op["outputs"] else f"node {len(rows)}"),
                         "instructions": m})
        else:
            delegate, j = (delegate + 1, 0) if kind == DELEGATE_START else (delegate, j + 1)
            rows.append({"node_type": xnn_label(labels[lab]) if lab >= 0 else "XNNPACK operator", "index": j,
                         "times_called": 1, "name": f"XNNPACK delegate {delegate}, operator {j}",
                         "delegate": delegate, "instructions": m})
    warning = f"{unmatched} ops outside the XNNPACK delegate matched no flatbuffer op: numbered, not named" \
        if unmatched else None
    _name_delegated(rows, flat_ops)
    return rows, warning


def _name_delegated(rows: list[dict], flat_ops: list[dict]) -> None:
    """Give each XNNPACK operator's row the flatbuffer op it ran (``op``: its type, ``op_index``; ``name`` becomes
    its output tensor's, which names the layer). A partition runs its ops in flatbuffer order but may take ops from
    beyond the next LCE op (a shortcut's pooling and 1x1 conv), so each operator takes the first op not yet named,
    after the partition's previous one, of a type its compute function runs. Nothing is named unless every
    delegated op is named once (XNNPACK may fuse two ops into one operator)."""
    own = {r["index"] for r in rows if "delegate" not in r}
    free = [i for i in range(len(flat_ops)) if i not in own  # a concatenation runs one copy per input
            for _ in range(len(flat_ops[i]["inputs"]) if flat_ops[i]["type"] == "CONCATENATION" else 1)]
    delegated = [r for r in rows if "delegate" in r]
    if None in own or len(free) != len(delegated):
        return
    picks: list[int] = []
    last: dict[int, int] = {}  # each partition's latest pick
    for row in delegated:
        types = _XNN_RUNS.get(row["node_type"], ())
        pick = next((i for i in free if i >= last.get(row["delegate"], -1) and flat_ops[i]["type"] in types), None)
        if pick is None:
            return
        free.remove(pick)
        picks.append(pick)
        last[row["delegate"]] = pick
    for row, i in zip(delegated, picks, strict=True):
        op = flat_ops[i]
        row.update(op=op["type"], op_index=i, name=op["outputs"][0][0] if op["outputs"] else row["name"])


# The flatbuffer op types each XNNPACK kernel class runs.
_XNN_RUNS = {
    "Convolution (F32, IGEMM)": ("CONV_2D",), "Depthwise convolution (F32)": ("DEPTHWISE_CONV_2D",),
    "GEMM (F32: 1x1 convolution or fully connected)": ("CONV_2D", "FULLY_CONNECTED"),
    "Global average pooling (F32)": ("MEAN", "AVERAGE_POOL_2D"), "Max pooling (F32)": ("MAX_POOL_2D",),
    "Average pooling (F32)": ("AVERAGE_POOL_2D",), "Elementwise add/multiply (F32)": ("ADD", "SUB", "MUL", "DIV",
                                                                                     "MAXIMUM", "MINIMUM"),
    "Softmax (F32)": ("SOFTMAX",), "Per-channel multiply-add (F32)": ("MUL", "ADD"), "PReLU (F32)": ("PRELU",),
    "Pad (F32)": ("PAD", "PADV2"), "Transpose (F32)": ("TRANSPOSE",),
    "Elementwise unary (F32)": ("LOGISTIC", "TANH", "RELU", "RELU6", "RELU_N1_TO_1", "ABS", "NEG", "HARD_SWISH",
                                "ELU", "LEAKY_RELU", "SQUARE", "SQRT", "FLOOR", "CEIL", "ROUND", "CONCATENATION"),
    "XNNPACK operator": ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"),  # no compute function ran: a reshape in place
}


def _markers(symbols: Symbols) -> tuple[list, list[str]]:
    """Marker addresses (primary, then every XNNPACK compute function and every op's Eval function as secondary)
    and their names by ID."""
    primary = [symbols.address(m) for m in MARKERS]
    if any(a is None for a in primary):
        return [], []
    names = list(MARKERS)
    marks: list = list(primary)
    for addr, name in zip(symbols.starts, symbols.names, strict=True):
        if name.startswith("xnn_compute_") or (_EVAL.match(name) and "Eval" in name):
            marks.append((addr, True))
            names.append(name)
    return marks, names


def count_model(runner, model, threads: int = 1, timeout: float = 1800, per_op: bool = True,
                cpu: str = qemu.DEFAULT_CPU) -> dict:
    """Count one model under QEMU core ``cpu`` (``qemu-aarch64 -cpu CPU``; cortex-a72 unless named): instructions
    per inference (total, per vCPU, per kernel class) and per op.

    Returns {instructions, per_vcpu, classes, ops, warnings, threads, runs: (long, short), qemu, cpu}.
    """
    runner = qemu.check_runner(runner)
    qemu.check_cpu(cpu)
    model = Path(model).resolve()
    symbols = read_symbols(runner)
    marks, labels = _markers(symbols) if per_op else ([], [])
    base = [f"--graph={model}", f"--num_threads={int(threads)}", *BENCH_FLAGS]

    def counted(n, with_marks):
        counts, run = qemu.run_counted(runner, [*base, f"--num_runs={n}"], marks if with_marks else (), timeout,
                                       cpu=cpu)
        done = re.findall(r"count=(\d+)", run["stdout"] + run["stderr"])
        if not done or int(done[-1]) != n:
            raise EdgebnnError(f"{runner.name} ran {done[-1] if done else 'no'} inferences where {n} were asked: "
                               "the counts would not be per inference")
        return counts

    with ThreadPoolExecutor(max_workers=2) as pool:
        long_f = pool.submit(counted, RUNS_LONG, True)
        short_c = counted(RUNS_SHORT, False)
        long_c = long_f.result()
    span = RUNS_LONG - RUNS_SHORT
    per_vcpu = {v: (long_c.vcpus.get(v, 0) - short_c.vcpus.get(v, 0)) / span for v in long_c.vcpus}
    cl_long, cl_short = _class_totals(long_c, symbols), _class_totals(short_c, symbols)

    warnings, ops, flat_ops = [], [], read_ops(model.read_bytes())
    if per_op and not marks:
        warnings.append("no per-op counts: the runner's symbol table lacks the interpreter's Invoke/OpInvoke")
    elif per_op:
        ops, warn = attribute_ops(long_c.marks, labels, flat_ops)
        warnings += [warn] if warn else []
    return {"instructions": (long_c.total - short_c.total) / span, "per_vcpu": per_vcpu,
            "classes": {c: (cl_long[c] - cl_short[c]) / span for c in CLASS_NAMES}, "ops": ops,
            "warnings": warnings, "dense_macs": dense_macs(flat_ops), "threads": int(threads),
            "runs": (RUNS_LONG, RUNS_SHORT), "qemu": qemu.qemu_version(), "cpu": cpu}


def dense_macs(flat_ops: list[dict]) -> int:
    """Multiply-accumulates (= weights) of the flatbuffer's dense layers at batch 1: FULLY_CONNECTED ops and
    convolutions with a 1x1 output (how LCE converts binary dense layers: LceBconv2d, or a float CONV_2D). A dense
    layer at batch 1 streams each weight once, so its cost follows memory traffic, not instructions."""
    total = 0
    for op in flat_ops:
        out = op["outputs"][0][1] if op["outputs"] else []
        dense = op["type"] == "FULLY_CONNECTED" or (
            op["type"] in ("CONV_2D", "LceBconv2d") and len(out) == 4 and out[1] == out[2] == 1)
        if dense and len(op["inputs"]) > 1 and op["inputs"][1][1]:
            n = 32 if op["type"] == "LceBconv2d" else 1  # LCE's weights are bitpacked, 32 per int32
            for d in op["inputs"][1][1]:
                n *= max(int(d), 1)
            total += n
    return total


def class_shares(classes: dict[str, float]) -> dict[str, float]:
    whole = sum(classes.values()) or 1.0
    return {c: v / whole for c, v in classes.items()}


def group(rows: list[dict], key: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for r in rows:
        out[r[key]] += r["instructions"]
    return dict(out)
