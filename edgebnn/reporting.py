"""``edgebnn report``: the results database and the run folders, joined into one table, plots and a web page.

A latency row (``edgebnn profile`` on a board or this host, or an estimate for a named board) names a flatbuffer
by its sha256. The flatbuffer's conversion report (``<file>.tflite.json``, written by ``edgebnn convert``) holds the
same sha256, its size, the proof (Keras and the flatbuffer on the same check samples: which data, how many) and the
run folder and checkpoint it came from; the run folder (``run.json``) holds the validation top-1 of that checkpoint;
the run of the same model with ``real = true`` is its real-valued twin, whose top-1 gives the gap to float.

What it shows, and why:

- accuracy beside accuracy on the same data: Keras and flatbuffer top-1 on the check samples side by side (with
  their number and data set), the run's whole-validation top-1 in its own column;
- the accuracy axis holds trained models only (the flatbuffer's check top-1); baselines (float/int8 of the twin,
  built from the model's layers, never trained) are latency only, in a strip under the axis;
- latency kinds (``board``, ``host``, ``estimate``) never share an axis: one figure per device and kind, a
  "latency kind" column, and a note per device saying where its figures came from; latency on a log scale;
- each row's precision (``float`` or ``int8``, from the flatbuffer's ``edgebnn`` metadata) and CPU (an estimate's:
  the QEMU core its instructions were counted on; a measurement's: the machine's) beside it;
- ``best_under_budget``: the most accurate trained model within a latency budget on a named board.

Writes into ``--out`` (default ``report/``): ``index.html``, ``results.json``,
``accuracy_latency-<device>-<kind>.png`` (one per device and latency kind, Pareto front dashed), ``threads.png``
(latency against threads, a panel per device and kind) and ``op_types.png`` (per-op latency summed by op type).
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
import textwrap
import tomllib
from pathlib import Path

from edgebnn import archs, runs, store
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.estimate.estimate import PATHS, error_figures
from edgebnn.outputs import staged_folder, write_atomic


# ------------------------------------------------------------------------------------------- sources
def _index_runs(roots, problems: list[str] | None = None) -> dict[str, dict]:
    """Every run folder under ``roots`` by its resolved path; a run.json that cannot be read, or that is not a JSON
    object, is left out and named in ``problems``."""
    found = {}
    problems = [] if problems is None else problems
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for info_file in root.rglob(runs.RUN_INFO):
            try:
                info = json.loads(info_file.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
                problems.append(f"{info_file} is unreadable ({err.__class__.__name__}): its run is left out")
                continue
            if not isinstance(info, dict):
                problems.append(f"{info_file} is not a JSON object: its run is left out")
                continue
            info.setdefault("width", _run_width(info, info_file.parent))
            found[str(info_file.parent.resolve())] = info
    return found


def _index_conversions(roots, results) -> dict[str, dict]:
    """Conversion reports by flatbuffer sha256 (baselines too, marked with their kind), from the folders
    ``roots`` and beside every profiled file."""
    files = set()
    for root in roots:
        if Path(root).is_dir():
            files.update(Path(root).rglob("*.tflite.json"))
    for r in results:
        if r.get("model_path"):
            files.add(Path(r["model_path"] + ".json"))
    by_sha = {}
    for path in files:
        try:
            report = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            continue
        if not isinstance(report, dict) or "sha256" not in report:
            continue
        by_sha[report["sha256"]] = {"report": report, "kind": "binary"}
        for kind, baseline in (report.get("baselines") or {}).items():
            if isinstance(baseline, dict) and baseline.get("sha256"):
                by_sha[baseline["sha256"]] = {"report": report, "kind": kind, "baseline": baseline}
    return by_sha


def _top1(info: dict | None) -> float | None:
    """A run's validation top-1 as deployed: its best checkpoint's (its ``model.keras``), else its last epoch's."""
    if not info:
        return None
    value = info.get("best_val_top1", info.get("final_val_top1"))
    return float(value) if value is not None else None


def _run_width(info: dict, run_dir: Path) -> float:
    """A run's width: run.json's (an imported run's), else its recipe's ``arch.width``, else the default, 1."""
    if info.get("width") is not None:
        return float(info["width"])

    try:
        arch = tomllib.loads((run_dir / runs.RECIPE).read_text(encoding="utf-8")).get("arch", {})
        return float(arch.get("width") or 1.0)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, TypeError, ValueError, AttributeError):
        return 1.0


LIKE_KEYS = ("width", "input_shape", "num_classes", "padding")  # besides model and data set; epochs are not
# compared: a twin's recipe is by design one step where its binary run has two (recipe.real_twin)


def _like(info: dict | None) -> dict:
    """The facts a real-valued twin must share with a binary run to be its twin (a key a run does not record is
    not compared; a missing padding is edgebnn's default, lce)."""
    info = info or {}
    shape = info.get("input_shape")
    return {"width": float(info.get("width") or 1.0),
            "input_shape": [int(d) for d in shape] if isinstance(shape, list) else None,
            "num_classes": info.get("num_classes"), "padding": info.get("padding") or "lce"}


def _twin_top1(run_index: dict[str, dict], model: str | None, dataset: str | None,
               like: dict | None = None) -> float | None:
    """Top-1 (best checkpoint) of the latest finished real-valued run of ``model`` on ``dataset`` that is like the
    binary run (``like``: its width, input shape, class count and padding convention, see ``_like``); None when
    there is no such twin."""
    want = _like(like) if like is not None else None
    twins = [info for info in run_index.values()
             if info.get("model") == model and info.get("real") and info.get("status") == "done"
             and (dataset is None or info.get("dataset") == dataset)
             and (want is None or all(v is None or want[k] is None or v == want[k]
                                      for k, v in _like(info).items()))]
    twins.sort(key=lambda info: info.get("finished") or "")
    return _top1(twins[-1]) if twins else None


def _family(model: str | None) -> str:
    if not model:
        return "-"

    try:
        return archs.get(model).family
    except EdgebnnError:
        return "-"


KIND_LABELS = {
    "board": "measured on the board",
    "host": "measured on this host (LCE reference kernels: a functional check, not ARM64 latency)",
    "estimate": "estimated from the aarch64 instructions LCE's kernels execute (counted under QEMU, or predicted "
                "from the op shapes on the fast path), calibrated on published figures",
}


_COUNT = re.compile(r"from [\d.e+]+ aarch64 instructions")  # one model's count, left out of a device's note


def latency_from(r: dict) -> str:
    """Where one latency came from, in one line: the board, this host's CPU, or the estimate's own source line."""
    if r["kind"] == "estimate":
        e = r.get("estimate") or {}

        mean, worst, n, what = error_figures(e)
        return e.get("source") or (f"estimated for {r['device']} from {e.get('instructions', 0):.3g} aarch64 "
                                   f"instructions; error {mean:.1f}% mean, {worst:.1f}% max ({what} over {n} "
                                   "models)")
    if r["kind"] == "board":
        return f"{r['device']}: {r['machine']}; {r['kernels']}"
    return f"{r['machine']}; {r['kernels']}"


def _source(r: dict, conversions: dict, run_index: dict) -> dict:
    """The flatbuffer's conversion report, its kind (binary or a baseline) and its run's ``run.json``."""
    conv = conversions.get(r["model_sha256"], {})
    report = conv.get("report") or {}
    run_dir = (report.get("source") or {}).get("run_dir")
    info = run_index.get(str(Path(run_dir).resolve())) if run_dir else None
    if info is None and run_dir and runs.is_run_dir(run_dir):
        try:
            info = runs.read_info(run_dir)
        except EdgebnnError:  # named once by collect's problems when under --runs-dir; the row keeps its latency
            info = None
    return {"report": report, "kind": conv.get("kind", "binary"), "baseline": conv.get("baseline"),
            "run_dir": run_dir, "info": info}


def _converted_top1(src: dict) -> tuple[float | None, dict | None]:
    """Validation top-1 (whole split) of the checkpoint that was converted, and which checkpoint it was."""
    info, checkpoint = src["info"], (src["report"].get("source") or {}).get("checkpoint")
    if src["kind"] != "binary" or not info:
        return None, checkpoint
    if checkpoint and checkpoint.get("val_top1") is not None:
        return float(checkpoint["val_top1"]), checkpoint
    return _top1(info), checkpoint


def _row(r: dict, src: dict, run_index: dict, totals: list[dict]) -> dict:
    report, info, kind = src["report"], src["info"] or {}, src["kind"]
    source = report.get("source") or {}
    model = source.get("model") or info.get("model")
    check = (src["baseline"] or {}).get("check") if kind != "binary" else report.get("check")
    check = check or {}
    dataset = info.get("dataset") or (report.get("deployment") or {}).get("dataset")
    val_top1, checkpoint = _converted_top1(src)
    twin_top1 = _twin_top1(run_index, model, dataset, {**info, "width": info.get("width") or _run_width(
        info, Path(src["run_dir"] or "."))} if src["run_dir"] else None)
    real = kind != "binary" or bool(info.get("real"))
    name = (f"{model}-real {kind} baseline" if kind != "binary" else f"{model}-real" if real else model) \
        if model else r["model_name"]
    if (checkpoint or {}).get("which") == "last" and checkpoint.get("file") != runs.FINAL_MODEL:
        name += " (last epoch)"
    return {
        "model": name, "family": _family(model), "kind": "real" if real else "binary",
        "baseline": kind if kind != "binary" else None,
        "trained": kind == "binary",  # a baseline is built from the twin's layers, not trained: latency only
        "file": r.get("model_path") or r["model_name"],
        "target": (report.get("target") or {}).get("name") or r.get("target"),  # the flatbuffer's target
        "device": r["device"], "machine": r["machine"], "kernels": r["kernels"], "threads": int(r["threads"]),
        "latency_kind": r["kind"], "latency_from": latency_from(r),
        "precision": r.get("precision") or "float", "cpu": r.get("cpu") or store.UNKNOWN_CPU,
        "flags": _row_flags(r),
        "median_ms": r["median_ms"] if r["median_ms"] is not None else r["mean_ms"],
        "mean_ms": r["mean_ms"], "p90_ms": r["p90_ms"], "min_ms": r["min_ms"], "max_ms": r.get("max_ms"),
        "flatbuffer_mb": r["model_size_mb"],
        "check_dataset": check.get("dataset") or (report.get("deployment") or {}).get("dataset"),
        "check_samples": check.get("samples"),
        "keras_top1_check": check.get("keras_top1"), "tflite_top1": check.get("tflite_top1"),
        "val_top1": val_top1, "checkpoint": (checkpoint or {}).get("which"),
        "twin_top1": twin_top1,
        "gap_to_float": (twin_top1 - val_top1) if not real and twin_top1 is not None and val_top1 is not None
        else None,
        "dataset": dataset, "run": src["run_dir"], "estimate": r.get("estimate") or None,
        "op_types": [{"node_type": o["node_type"], "kind": o["kind"], "ms": o["avg_ms"]} for o in totals],
        "created_at": r["created_at"],
    }


def _tell_runs_apart(rows: list[dict]) -> None:
    """Two runs of one model get their run folder's name after the model's, so no two differ only in colour."""
    runs_of: dict[str, set] = {}
    for r in rows:
        runs_of.setdefault(r["model"], set()).add(r["run"])
    for r in rows:
        if len(runs_of[r["model"]]) > 1 and r["run"]:
            r["model"] = f"{r['model']} [{Path(r['run']).name}]"


def collect(db: str | os.PathLike = "results.db", run_roots=("runs",), problems: list[str] | None = None) -> list[dict]:
    """One row per stored latency result, joined with its conversion report, run and twin. A damaged result row
    or run is left out and named, one line each, in ``problems``."""

    if not Path(db).is_file():
        raise OptionError("no results database at {path}: run `edgebnn profile ... --db {path}` first, or pass {db}",
                          path=db)
    conn = store.connect(db)
    try:
        results = store.results(conn)
        op_totals = {r["id"]: store.op_totals(conn, r["id"]) for r in results}
    finally:
        conn.close()
    problems = [] if problems is None else problems
    for r in [r for r in results if r.get("corrupt")]:
        problems.append(f"result {r['id']} ({r.get('model_name')} on {r.get('device')}) in {db} is damaged (column "
                        f"{', '.join(r['corrupt'])} is not edgebnn's JSON): left out")
    results = [r for r in results if not r.get("corrupt")]
    run_index = _index_runs(run_roots, problems)
    conversions = _index_conversions(run_roots, results)
    rows = []
    for r in results:
        try:
            rows.append(_row(r, _source(r, conversions, run_index), run_index, op_totals[r["id"]]))
        except (AttributeError, TypeError, ValueError, KeyError) as err:  # a sidecar or run.json of odd types
            problems.append(f"result {r['id']} ({r.get('model_path') or r.get('model_name')}): its conversion "
                            f"report or run holds values of the wrong type ({err.__class__.__name__}): left out")
    _tell_runs_apart(rows)
    rows.sort(key=lambda row: (row["device"], row["latency_kind"], row["threads"], row["model"]))
    return rows


# --------------------------------------------------------------------------------------------- table
def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _check_data(row: dict) -> str:
    if not row["check_samples"]:
        return "-"
    return f"{row['check_samples']} {row['check_dataset'] or ''} val".replace("  ", " ")


def _val(row: dict) -> str:
    if row["val_top1"] is None:
        return "-"
    return _pct(row["val_top1"]) + (f" ({row['checkpoint']})" if row["checkpoint"] else "")


TABLE_COLUMNS = ("model", "device", "threads", "latency ms", "latency kind", "precision", "cpu", "flags",
                 "flatbuffer MB", "top-1 Keras", "top-1 flatbuffer", "on (samples, data)", "val top-1 (checkpoint)",
                 "gap to float")


def table_cells(row: dict) -> list[str]:
    """One row of the table. Keras and flatbuffer top-1 are on the same samples (the conversion's check); the
    validation top-1 is the run's, on its whole validation split, of the checkpoint that was converted."""
    gap = row["gap_to_float"]
    keras = _pct(row["keras_top1_check"]) if row["trained"] else "untrained"
    tflite = _pct(row["tflite_top1"]) if row["trained"] else "untrained"
    return [row["model"], row["device"], str(row["threads"]), _latency_cell(row), row["latency_kind"],
            row["precision"], row["cpu"], str(len(row["flags"])) if row["flags"] else "-",
            _num(row["flatbuffer_mb"], ".3f"), keras, tflite,
            _check_data(row), _val(row), "-" if gap is None else f"{100 * gap:+.1f} pts"]


def _latency_cell(row: dict) -> str:
    """The latency; an estimate's with its likely range and its path (``qemu``: counted, ``fast``: predicted from
    op shapes), e.g. ``79.00 (likely 70.7-89.5, qemu)``."""
    return _num(row["median_ms"], ".2f") + _range_note(row)


def _range_note(row: dict) -> str:
    """`` (likely 70.7-89.5, qemu)`` for an estimate stored with its range, else nothing."""
    e = row.get("estimate") or {}
    if row["latency_kind"] != "estimate" or not e.get("range_ms"):
        return ""
    lo, hi = e["range_ms"]
    return f" (likely {lo:.3g}-{hi:.3g}, {e.get('path', 'qemu')})"


def format_table(rows: list[dict]) -> str:
    cells = [list(TABLE_COLUMNS)] + [table_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _row_flags(result: dict) -> list[str]:
    """A stored result's flags, with its estimate's flags that the row does not already say (each once)."""
    own = list(result.get("flags") or [])
    extra = [f for f in (result.get("estimate") or {}).get("flags", []) if not any(f in g for g in own)]
    return list(dict.fromkeys(own + [f"estimate: {f}" for f in extra]))


def notes(rows: list[dict]) -> list[str]:
    """What each device's latency is (measured on a board, on this host, or estimated, and from what), the flags,
    and what the accuracy columns compare."""
    out = [] if rows else ["no latency stored yet: edgebnn profile FILE.tflite (--db) measures one"]
    for (device, kind), group in _panels(rows).items():
        sources = dict.fromkeys(_COUNT.sub("from the aarch64 instructions", r["latency_from"]) for r in group)
        out.append(f"{device} [{kind}]: {KIND_LABELS[kind]}. " + "; ".join(sources))
    flagged: dict[tuple, list[str]] = {}  # one line per model, kind and flags, naming every device x threads
    for r in rows:
        if r["flags"]:
            flagged.setdefault((r["model"], r["latency_kind"], tuple(r["flags"])), []).append(
                f"{r['device']} x{r['threads']}")
    for (model, kind, flags), where in flagged.items():
        out.append(f"flags: {model} @ {', '.join(where)} [{kind}]: " + "; ".join(flags))
    if any(r["baseline"] for r in rows):
        out.append("Baselines (float/int8 of the real-valued twin, built from the model's layers, not trained) show "
                   "latency only: they have no trained accuracy and stay off the accuracy axis.")
    out.append("top-1 Keras and top-1 flatbuffer: the same check samples, through Keras and LCE's interpreter "
               "(edgebnn convert's proof). val top-1: the run's whole validation split, the converted checkpoint. "
               "gap to float: the real-valued twin run's val top-1 minus the binary run's, the twin being a finished "
               "real-valued run of the same model, width, input size, class count, data set and padding convention "
               "(- when there is none).")
    return out


# --------------------------------------------------------------------------------------------- budget
def parse_budget(text: str) -> float:
    """``30ms``, ``30 ms``, ``30`` (ms) or ``0.03s`` -> milliseconds."""
    t = str(text).strip().lower().replace(" ", "")
    scale = 1000.0 if t.endswith("s") and not t.endswith("ms") else 1.0
    try:
        value = float(t.removesuffix("ms").removesuffix("s")) * scale
    except ValueError:
        raise OptionError("{budget} {text!r} is not a latency like 30ms or 0.03s", text=text) from None
    if not value > 0:
        raise OptionError("{budget} must be above 0 ms, got {text!r}", text=text)
    return value


KIND_ORDER = {"board": 0, "estimate": 1, "host": 2}  # with equal accuracy and latency, a measurement first


def best_under_budget(rows: list[dict], budget_ms: float, board: str) -> dict:
    """The most accurate trained model whose latency on ``board`` (measured there, or estimated for it) is within
    ``budget_ms``; ties go to the faster, then to a measurement over an estimate."""
    on_board = [r for r in rows if r["device"] == board]
    if not on_board:
        devices = sorted({r["device"] for r in rows})
        raise EdgebnnError(f"no latency stored for board {board!r}; the results hold: {', '.join(devices) or 'none'} "
                           "(profile it with -d NAME, or estimate it: edgebnn profile ... -d qemu:aarch64)")
    ranked = [r for r in on_board if accuracy(r) is not None and r["median_ms"] is not None]
    fits = [r for r in ranked if r["median_ms"] <= budget_ms]
    fits.sort(key=lambda r: (-accuracy(r), r["median_ms"], KIND_ORDER.get(r["latency_kind"], 3)))
    fastest = min(ranked, key=lambda r: r["median_ms"], default=None)
    return {"board": board, "budget_ms": budget_ms, "choice": fits[0] if fits else None, "fastest": fastest,
            "meeting": len({r["model"] for r in fits}), "ranked": len({r["model"] for r in ranked}),
            "untrained": len([r for r in on_board if not r["trained"]])}


def format_budget(result: dict) -> str:
    b, budget = result["board"], f"{result['budget_ms']:g} ms"
    r = result["choice"]
    if r is None:
        f = result["fastest"]
        tail = (f"; the fastest trained model there is {f['model']} at {f['median_ms']:.2f} ms with {f['threads']} "
                f"thread(s), {f['latency_kind']}: {f['latency_from']}") if f else ""
        return f"no trained model meets {budget} on {b}{tail}"
    return (f"{b}, budget {budget}: {r['model']} with {r['threads']} thread(s), "
            f"{r['median_ms']:.2f} ms{_range_note(r)} "
            f"({r['latency_kind']}: {KIND_LABELS[r['latency_kind']]}), top-1 {_pct(accuracy(r))} "
            f"(flatbuffer, {_check_data(r)}); {result['meeting']} of {result['ranked']} trained models meet it.\n"
            f"  latency from: {r['latency_from']}" + (f"\n  flags: {'; '.join(r['flags'])}" if r["flags"] else ""))


# --------------------------------------------------------------------------------------------- plots
def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both latency (lower) and accuracy (higher), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def accuracy(row: dict) -> float | None:
    """The accuracy axis: the flatbuffer's top-1 on its conversion check samples (what runs on the board), for
    trained models only; None for a baseline built from the twin's layers."""
    return row["tflite_top1"] if row["trained"] else None


def _panels(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Rows by (device, latency kind): latencies of different kinds never share an axis."""
    panels: dict[tuple[str, str], list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["device"], KIND_ORDER.get(r["latency_kind"], 3))):
        panels.setdefault((r["device"], r["latency_kind"]), []).append(r)
    return panels


def _style(rows: list[dict]):
    """A colour per model and a marker per thread count, the same in every figure."""
    import matplotlib  # lazy: matplotlib takes a second, only plots need it

    cmap = matplotlib.colormaps["tab20" if len({r["model"] for r in rows}) > 10 else "tab10"]
    colours = {m: cmap(i % cmap.N) for i, m in enumerate(sorted({r["model"] for r in rows}))}
    markers = dict(zip(sorted({r["threads"] for r in rows}), "os^DvP*Xh", strict=False))
    return colours, markers


def _log_axis(ax, which: str = "x") -> None:
    """A log scale with plain numbers (0.5, 1, 2, 5, 10 ms): one slow outlier does not flatten the rest."""
    from matplotlib.ticker import FuncFormatter, LogLocator  # lazy: matplotlib takes a second, only plots need it

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _title(device: str, kind: str, group: list[dict]) -> str:
    """The panel's device and latency kind, then where its figures came from: the machine, or for estimates the
    calibration's leave-one-out error per thread count (each thread count has its own calibration)."""

    if kind == "estimate":

        errors = {r["threads"]: error_figures(r["estimate"]) for r in group if r.get("estimate")}
        paths = sorted({PATHS.get(r["estimate"].get("path", "qemu"), "?") for r in group if r.get("estimate")})
        source = (f"from aarch64 instructions {' or '.join(paths)}; calibration's error (mean / max): "
                  + "; ".join(f"{t} thread{'s' * (t > 1)} {m:.1f}% / {x:.1f}% ({what} over {n or '?'} models)"
                              for t, (m, x, n, what) in sorted(errors.items())))
    else:
        source = "; ".join(dict.fromkeys(r["latency_from"] for r in group))
    return textwrap.fill(f"{device}: latency {KIND_LABELS[kind]}", 95) + "\n" + textwrap.fill(source, 110)


def _accuracy_label(rows: list[dict]) -> str:
    checks = {(r["check_samples"], r["check_dataset"]) for r in rows if accuracy(r) is not None}
    if len(checks) == 1:
        n, data = next(iter(checks))
        return f"top-1 of the flatbuffer on {n} {data} validation samples (%)"
    return "top-1 of the flatbuffer on its conversion check samples (%)"


def _legend(fig, colours, markers, models, threads, extra) -> None:
    from matplotlib.lines import Line2D  # lazy: matplotlib takes a second, only plots need it

    handles = [Line2D([], [], ls="", marker="o", color=colours[m], label=m) for m in models]
    handles += [Line2D([], [], ls="", marker=markers[t], color="0.35", label=f"{t} thread{'s' * (t > 1)}")
                for t in threads]
    fig.legend(handles=handles + extra, loc="center left", bbox_to_anchor=(0.745, 0.5), fontsize=8, frameon=False)


def plot_accuracy_latency(rows: list[dict], group: list[dict], path: Path) -> None:
    """Top-1 against median latency (log) for one device and latency kind, the Pareto front dashed; baselines
    (no trained accuracy) in a strip below, on the same latency axis."""
    import matplotlib.pyplot as plt  # lazy: matplotlib takes a second, only plots need it
    from matplotlib.lines import Line2D  # lazy: matplotlib takes a second, only plots need it

    colours, markers = _style(rows)
    device, kind = group[0]["device"], group[0]["latency_kind"]
    ranked = [r for r in group if accuracy(r) is not None and r["median_ms"]]
    others = [r for r in group if accuracy(r) is None and r["median_ms"]]
    if others:  # a latency-only strip under the accuracy axis, sharing its latency scale
        fig, (ax, strip) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    else:
        fig, ax = plt.subplots(figsize=(11, 5.2))
        strip = ax
    fig.subplots_adjust(left=0.08, right=0.74, top=0.8, bottom=0.1, hspace=0.08)
    for r in ranked:
        ax.scatter(r["median_ms"], 100 * accuracy(r), color=colours[r["model"]], marker=markers[r["threads"]],
                   s=55, alpha=0.9, edgecolors="white", linewidths=0.5)
    front = pareto_front([(r["median_ms"], accuracy(r)) for r in ranked])
    if front:
        xs, ys = [ranked[i]["median_ms"] for i in front], [100 * accuracy(ranked[i]) for i in front]
        ax.plot(xs, ys, "k--", lw=1)
        ax.scatter(xs, ys, s=150, facecolors="none", edgecolors="k", linewidths=0.8)
        top = max(ys)
        ax.set_ylim(min(100 * accuracy(r) for r in ranked) - 1.5, min(100.5, top + 1.5))  # never above 100%
    for r in others:
        strip.scatter(r["median_ms"], 0, color=colours[r["model"]], marker=markers[r["threads"]], s=45)
    if others:
        strip.set_yticks([])
        strip.set_ylabel("latency\nonly", rotation=0, ha="right", va="center", fontsize=8)
    _log_axis(strip, "x")
    strip.set_xlabel(f"median latency (ms, log scale): {kind}")
    ax.set_ylabel(_accuracy_label(ranked), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    strip.grid(alpha=0.3, which="both", axis="x")
    if not ranked:
        ax.text(0.5, 0.5, "no trained model with a checked accuracy here", ha="center", transform=ax.transAxes)
    fig.suptitle(_title(device, kind, group), fontsize=9, x=0.41)
    extra = [Line2D([], [], color="k", ls="--", lw=1, marker="o", mfc="none", ms=10, label="Pareto front")]
    if others:
        extra.append(Line2D([], [], ls="", marker="o", color="0.6", label="strip: baselines, untrained\n"
                            "(latency only)"))
    models = sorted({r["model"] for r in group})
    _legend(fig, colours, markers, models, sorted({r["threads"] for r in group}), extra)
    _save_figure(fig, path)
    plt.close(fig)


def _save_figure(fig, path: Path) -> None:
    """Render to memory, then write whole into place (never through a link at ``path``)."""

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100, format="png")
    write_atomic(path, buffer.getvalue(), "{out}")


def plot_threads(rows: list[dict], path: Path) -> None:
    """Median latency (log) against threads, one panel per device and latency kind."""

    import matplotlib.pyplot as plt  # lazy: matplotlib takes a second, only plots need it

    colours, _ = _style(rows)
    panels = _panels(rows) or {("-", "host"): []}
    cols = min(2, len(panels))
    n_rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(11, 3.6 * n_rows), squeeze=False)
    fig.subplots_adjust(left=0.07, right=0.74, top=1 - 0.5 / (3.6 * n_rows), bottom=0.6 / (3.6 * n_rows),
                        hspace=0.55, wspace=0.3)
    for ax, ((device, kind), group) in zip(axes.flat, panels.items(), strict=False):
        series: dict[str, list] = {}
        for r in group:
            if r["median_ms"]:
                series.setdefault(r["model"], []).append((r["threads"], r["median_ms"]))
        for model, pts in sorted(series.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, color=colours[model])
        _log_axis(ax, "y")
        ax.set_xticks(sorted({r["threads"] for r in group}) or [1])
        ax.set_xlabel("threads")
        ax.set_ylabel(f"median ms ({kind}, log)", fontsize=8)
        ax.set_title(f"{device}: {kind}", fontsize=9)
        ax.grid(alpha=0.3, which="both")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    _legend(fig, colours, {}, sorted({r["model"] for r in rows}), [], [])
    _save_figure(fig, path)
    plt.close(fig)


def plot_op_types(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt  # lazy: matplotlib takes a second, only plots need it

    profiled = [r for r in rows if r["op_types"]]
    fig, ax = plt.subplots(figsize=(11, 0.4 * max(4, len(profiled)) + 1.6 if profiled else 1.2))
    if not profiled:
        ax.text(0.5, 0.5, "no op profiles stored: run edgebnn profile --op-profile on a board", ha="center",
                va="center")
        ax.set_axis_off()
    else:
        types = sorted({o["node_type"] for r in profiled for o in r["op_types"]})
        labels = [f"{r['model']} @ {r['device']} x{r['threads']} [{r['latency_kind']}]" for r in profiled]
        left = [0.0] * len(profiled)
        cmap = plt.get_cmap("tab20")
        for i, node_type in enumerate(types):
            widths = [sum(o["ms"] or 0.0 for o in r["op_types"] if o["node_type"] == node_type) for r in profiled]
            ax.barh(labels, widths, left=left, label=node_type, color=cmap(i % 20))
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_xlabel("summed per-op latency (ms); [kind]: board = measured on the board, estimate = estimated, "
                      "host = this host", fontsize=8)
        ax.legend(fontsize=7, ncol=1, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    ax.set_title("Per-op latency by op type")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- page
def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)


def render_html(rows: list[dict], plots: list[str], budget: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS)
    body = "".join("<tr" + (' class="untrained"' if not r["trained"] else "") + ">"
                   + "".join(f"<td>{html.escape(c)}</td>" for c in table_cells(r)) + "</tr>" for r in rows)
    images = "".join(f'<figure><img src="{p}" alt="{p}"><figcaption>{p}</figcaption></figure>' for p in plots)
    told = notes(rows)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in told if not n.startswith("flags: "))
    flagged = [n.removeprefix("flags: ") for n in told if n.startswith("flags: ")]
    if flagged:
        items += (f"<li><details><summary>{len(flagged)} results flagged as less trustworthy (spread, load, "
                  f"throttling, ops the calibration never saw): the flags column counts them</summary><ul>"
                  + "".join(f"<li>{html.escape(n)}</li>" for n in flagged) + "</ul></details></li>")
    kinds = ", ".join(f"{k}: {n}" for k, n in sorted(
        {k: sum(r["latency_kind"] == k for r in rows) for k in {r["latency_kind"] for r in rows}}.items()))
    answer = f"<p class=\"budget\">{html.escape(budget)}</p>" if budget else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgebnn report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;margin:1.2em 2em;max-width:1500px;color:#222}}
h1{{font-size:1.5em;margin:0 0 .3em}}p,li{{font-size:14px;line-height:1.4}}
.wrap{{overflow-x:auto}}table{{border-collapse:collapse;font-size:12.5px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right;white-space:nowrap}}
th{{background:#f2f2f2;text-align:center}}td:first-child,td:nth-child(2),td:nth-child(5),td:nth-child(6),
td:nth-child(7){{text-align:left}}
tr.untrained td{{color:#777;font-style:italic}}
.budget{{white-space:pre-line;border-left:4px solid #2a7;padding:.3em .8em;background:#f4fbf7}}
img{{max-width:100%;height:auto}}figure{{margin:1em 0}}figcaption{{font-size:12px;color:#666}}</style></head>
<body><h1>edgebnn report</h1>
<p>{len(rows)} latency results ({html.escape(kinds) or "none"}). Latencies of different kinds are never on one axis:
each figure is one device and one kind.</p>
{answer}
<div class="wrap"><table><tr>{head}</tr>{body}</table></div>
<ul>{items}</ul>
{images}
</body></html>
"""


def write(db: str | os.PathLike = "results.db", out: str | os.PathLike = "report", run_roots=("runs",),
          budget: str | None = None, rows: list[dict] | None = None) -> dict:
    """Collect (unless ``rows`` are given), then write the page, the plots and ``results.json`` into ``out``
    (with ``budget``, the budget's answer on the page); return what was written."""
    rows = collect(db, run_roots) if rows is None else rows
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OptionError("{out} {path} is a file; give a folder for the report", path=out)
    import matplotlib  # lazy: matplotlib takes a second to import, and only the report draws

    matplotlib.use("Agg")
    plots = []
    with staged_folder(out, "{out}") as staging:
        for (device, kind), group in _panels(rows).items():
            name = f"accuracy_latency-{_slug(device)}-{kind}.png"
            plot_accuracy_latency(rows, group, staging / name)
            plots.append(name)
        plot_threads(rows, staging / "threads.png")
        plot_op_types(rows, staging / "op_types.png")
        plots += ["threads.png", "op_types.png"]
        write_atomic(staging / "results.json", json.dumps(rows, indent=2, default=str) + "\n", "{out}")
        write_atomic(staging / "index.html", render_html(rows, plots, budget), "{out}")
    return {"rows": rows, "index": str(out / "index.html"), "plots": [str(out / p) for p in plots]}
