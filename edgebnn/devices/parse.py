"""Read what ``lce_benchmark_model`` (or ``python -m edgebnn.runner``) prints.

Both documented layouts are read: lines with or without an ``INFO: `` (or glog) prefix, op tables with or
without the ``[start]`` column, node names with or without a ``:<node index>`` suffix. Times in the
``count=`` lines are microseconds; the first such line is the warm-up, the second the measured runs.
Anything that does not hold the measured runs raises :class:`EdgebnnError` naming what is missing.
"""

from __future__ import annotations

import math
import re

from edgebnn.errors import EdgebnnError, OptionError, printable

_PREFIX = re.compile(
    r"^(?:(?:INFO|WARNING|WARN|ERROR|DEBUG|VERBOSE): "
    r"|[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+:\d+\] "
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?: [IWEF] \S+:\d+\] )")
_NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_STAT = re.compile(rf"(first|curr|min|max|avg|std|count)=({_NUM})")
_COUNT_LINE = re.compile(rf"^count=\d+(?:\s+\w+={_NUM})*\s*$")
_SIZE = re.compile(rf"^The input model file size \(MB\): ({_NUM})")
_INIT = re.compile(rf"^Initialized session in ({_NUM})\s*ms")
_TIMINGS = re.compile(r"^Inference timings in us: (.*)$")
_MEM_DELTA = re.compile(rf"^Memory footprint delta from the start of the tool \(MB\): init=({_NUM}) overall=({_NUM})")
_MEM_PEAK = re.compile(rf"^Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})")
_PERCENTILES = re.compile(r"^Percentiles in us \(edgebnn runner\): (.*)$")
_NOTE = re.compile(r"^(?:edgebnn runner|Op profiling)[^:]*: .*$")
_TABLE = re.compile(r"^=+ (Run Order|Top by Computation Time|Top by Memory Use|Summary by node type) =+\s*$")
_HEADER_COL = re.compile(r"\[([^\]]+)\]")
_NAME_INDEX = re.compile(r"^(.*):(\d+)$")
MAX_TIME_US = 1e9  # 1000 s for one inference (or the runner's init): beyond it a figure is no measurement

# Header label -> key; the number columns of the op tables.
_COLUMNS = {
    "start": "start_ms", "first": "first_ms", "avg ms": "avg_ms", "%": "pct", "cdf%": "cdf_pct",
    "mem kb": "mem_kb", "times called": "times_called", "count": "count", "avg %": "pct", "cdf %": "cdf_pct",
}


def strip_prefix(line: str) -> str:
    """A line without its ``INFO: `` or glog prefix and without trailing white space."""
    return _PREFIX.sub("", line.rstrip("\r\n")).rstrip()


def _stats(line: str) -> dict:
    """``count=50 first=.. min=.. avg=..`` -> {'count': 50, 'first_us': .., ...} (microseconds)."""
    out = {}
    for key, value in _STAT.findall(line):
        out["count" if key == "count" else f"{key}_us"] = int(float(value)) if key == "count" else float(value)
    return out


def _row_pattern(columns: list[str]) -> re.Pattern | None:
    """A regex for one table row given its header's column labels (first: node type; last maybe: name)."""
    if not columns or columns[0].lower() != "node type":
        return None
    parts = [r"^\s*(?P<node_type>\S.*?)"]
    for label in columns[1:]:
        key = _COLUMNS.get(label.lower())
        if key is None:
            if label.lower() == "name":
                parts.append(r"\s+(?P<name>\S.*?)")
                continue
            return None
        pct = "%" if key in ("pct", "cdf_pct") else ""
        parts.append(rf"\s+(?P<{key}>{_NUM}){pct}")
    return re.compile("".join(parts) + r"\s*$")


def _op_row(match: re.Match) -> dict:
    row = {}
    for key, value in match.groupdict().items():
        if key == "node_type":
            row[key] = value.strip()
        elif key == "name":
            name, index = value.strip(), None
            m = _NAME_INDEX.match(name)
            if m:
                name, index = m.group(1), int(m.group(2))
            if name.startswith("[") and name.endswith("]"):
                name = name[1:-1]
            row["name"], row["index"] = name, index
        elif key in ("times_called", "count"):
            row[key] = int(float(value))
        else:
            row[key] = float(value)
    return row


def parse(text: str) -> dict:
    """Parse benchmark output into a dict.

    Keys: ``runs`` and ``warmup`` (count, first_us, curr_us, min_us, max_us, avg_us, std_us),
    ``model_size_mb``, ``init_ms``, ``timings_us`` (the "Inference timings in us" line), ``memory_mb``,
    ``percentiles_us`` (median/p90, printed only by edgebnn's runner), ``ops`` (Run Order rows of the regular
    runs: node_type, first_ms, avg_ms, pct, mem_kb, times_called, name, index, and start_ms in the older layout),
    ``op_summary`` (the printed "Summary by node type" of the regular runs) and ``notes``.
    """
    if not isinstance(text, str):
        raise EdgebnnError("benchmark output is not text: pass the runner's stdout as a string")
    result: dict = {"model_size_mb": None, "init_ms": None, "warmup": None, "runs": None, "timings_us": {},
                    "memory_mb": {}, "percentiles_us": {}, "ops": [], "op_summary": [], "notes": []}
    counts: list[dict] = []
    phase, table, pattern = None, None, None
    for raw in text.splitlines():
        line = strip_prefix(raw)
        if not line.strip():
            table, pattern = (table, pattern) if pattern is None else (None, None)
            continue
        if "Profiling Info for Benchmark Initialization" in line:
            phase, table, pattern = "init", None, None
            continue
        if "Profiling Info for Regular Benchmark Runs" in line:
            phase, table, pattern = "run", None, None
            continue
        m = _TABLE.match(line)
        if m:
            table, pattern = m.group(1), None
            continue
        if table is not None and pattern is None and "[" in line:
            pattern = _row_pattern(_HEADER_COL.findall(line))
            if pattern is None:
                table = None
            continue
        if pattern is not None:
            m = pattern.match(line)
            if m:
                row = _op_row(m)
                # Tables without a section header are taken as the regular runs' (the init ones always have one).
                if phase != "init" and table == "Run Order":
                    result["ops"].append(row)
                elif phase != "init" and table == "Summary by node type":
                    result["op_summary"].append(row)
                continue
            table, pattern = None, None
        line = line.strip()
        if _COUNT_LINE.match(line):
            counts.append(_stats(line))
        elif m := _SIZE.match(line):
            result["model_size_mb"] = float(m.group(1))
        elif m := _INIT.match(line):
            result["init_ms"] = float(m.group(1))
        elif m := _TIMINGS.match(line):
            for part in m.group(1).split(","):
                key, _, value = part.partition(":")
                if re.fullmatch(_NUM, value.strip()):
                    result["timings_us"][key.strip()] = float(value)
        elif m := _MEM_DELTA.match(line):
            result["memory_mb"].update(init=float(m.group(1)), overall=float(m.group(2)))
        elif m := _MEM_PEAK.match(line):
            result["memory_mb"]["peak"] = float(m.group(1))
        elif m := _PERCENTILES.match(line):
            for key, value in re.findall(rf"(\w+)=({_NUM})", m.group(1)):
                result["percentiles_us"][key] = float(value)
        elif _NOTE.match(line):
            result["notes"].append(line)
    _assign_counts(result, counts, text)
    return result


def _assign_counts(result: dict, counts: list[dict], text: str) -> None:
    complete = [c for c in counts if {"count", "min_us", "max_us", "avg_us"} <= c.keys()]
    if len(complete) >= 2:
        result["warmup"], result["runs"] = complete[0], complete[1]
    elif len(complete) == 1 and "Inference (avg)" in result["timings_us"]:
        result["runs"] = complete[0]
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        last = (lines[-1][:100] + ("..." if len(lines[-1]) > 100 else "")) if lines else "nothing"
        what = ("the measured runs' 'count=N ... min=.. max=.. avg=..' line (only the warm-up's was found)"
                if complete else "timing line 'count=N ... min=.. max=.. avg=..'")
        raise EdgebnnError(f"benchmark output has no {what}; the runner printed {len(lines)} line(s), "
                           f"the last: {last!r}; check the runner and model on the board")
    if result["runs"]["count"] <= 0:
        raise OptionError("benchmark output reports count=0 measured runs: pass {runs:=1} or more")
    times = {**{k: v for k, v in result["runs"].items() if k != "count"}, **result["percentiles_us"],
             **{f"'{k}'": v for k, v in result["timings_us"].items()}}
    bad = [f"{k}={v}" for k, v in times.items() if not (math.isfinite(v) and 0 <= v <= MAX_TIME_US)]
    if bad:
        raise EdgebnnError(f"benchmark output reports {printable(bad[0][:80])}, not a time (negative, not finite "
                           f"or over {MAX_TIME_US:.0e} us, {MAX_TIME_US / 1e6:.0f} s); nothing is stored: check the "
                           "runner on the board")


def op_totals(ops: list[dict]) -> list[dict]:
    """Per-op rows summed by node type, slowest first: node_type, kind ('binary' for Lce* ops, else 'float'),
    nodes (rows), calls, avg_ms and pct (share of the summed time).

    A row's ``[avg ms]`` is per call and one row may stand for several calls (an XNNPACK delegate row with
    ``[times called]`` 16 runs 16 ops of its type), so a type's time per inference is
    ``sum(avg_ms x times_called)`` over its rows; that is what the runner's own "Summary by node type" prints.
    """
    totals: dict[str, dict] = {}
    for op in ops:
        t = totals.setdefault(op["node_type"], {"node_type": op["node_type"], "kind": op_kind(op["node_type"]),
                                                "nodes": 0, "calls": 0, "avg_ms": 0.0})
        calls = int(op.get("times_called") or 1)
        t["nodes"] += 1
        t["calls"] += calls
        t["avg_ms"] += float(op.get("avg_ms") or 0.0) * calls
    whole = sum(t["avg_ms"] for t in totals.values())
    for t in totals.values():
        t["pct"] = 100.0 * t["avg_ms"] / whole if whole > 0 else 0.0
    return sorted(totals.values(), key=lambda t: -t["avg_ms"])


def op_kind(node_type: str) -> str:
    """'binary' for LCE's own ops (LceBconv2d, LceQuantize, LceDequantize, LceBMaxPool2d), else 'float'."""
    return "binary" if node_type.startswith("Lce") else "float"
