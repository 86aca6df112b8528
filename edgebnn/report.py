"""``edgebnn report``: the results database and the run folders, joined into one table, plots and a web page.

A latency row (``edgebnn profile``) names a flatbuffer by its sha256. The flatbuffer's conversion report
(``<file>.tflite.json``, written by ``edgebnn convert``) holds the same sha256, its size, its top-1 on the check
samples and the run folder it came from; the run folder (``run.json``) holds the Keras model's validation top-1; the
run of the same model with ``real = true`` is its real-valued twin, whose top-1 gives the gap to float.

Writes into ``--out`` (default ``report/``): ``index.html``, ``results.json``, ``accuracy_latency.png`` (top-1
against median latency per device, Pareto front marked), ``op_types.png`` (per-op latency summed by op type, from
op profiles) and ``threads.png`` (latency against threads).
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from edgebnn import runs
from edgebnn.errors import EdgebnnError

PLOTS = ("accuracy_latency.png", "op_types.png", "threads.png")
HOST_NOTE = ("Host figures run LCE's reference kernels on the host's CPU: a functional check, not ARM64 latency. "
             "Each row names the machine it was measured on.")


# ------------------------------------------------------------------------------------------- sources
def _index_runs(roots) -> dict[str, dict]:
    """Every run folder under ``roots`` by its resolved path."""
    found = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            continue
        for info_file in root.rglob(runs.RUN_INFO):
            try:
                info = json.loads(info_file.read_text())
            except (OSError, json.JSONDecodeError):
                continue
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
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(report, dict) or "sha256" not in report:
            continue
        by_sha[report["sha256"]] = {"report": report, "kind": "binary"}
        for kind, baseline in (report.get("baselines") or {}).items():
            if isinstance(baseline, dict) and baseline.get("sha256"):
                by_sha[baseline["sha256"]] = {"report": report, "kind": kind, "baseline": baseline}
    return by_sha


def _top1(info: dict | None) -> float | None:
    if not info:
        return None
    value = info.get("final_val_top1")
    return float(value) if value is not None else None


def _twin_top1(run_index: dict[str, dict], model: str | None, dataset: str | None) -> float | None:
    """Top-1 of the latest finished real-valued run of ``model`` on ``dataset``."""
    twins = [info for info in run_index.values()
             if info.get("model") == model and info.get("real") and info.get("status") == "done"
             and (dataset is None or info.get("dataset") == dataset)]
    twins.sort(key=lambda info: info.get("finished") or "")
    return _top1(twins[-1]) if twins else None


def _family(model: str | None) -> str:
    if not model:
        return "-"
    from edgebnn import archs

    try:
        return archs.get(model).family
    except EdgebnnError:
        return "-"


def collect(db: str | os.PathLike = "results.db", run_roots=("runs",)) -> list[dict]:
    """One row per stored latency result, joined with its conversion report, run and twin."""
    from edgebnn.profile import store

    if not Path(db).is_file():
        raise EdgebnnError(f"no results database at {db}: run `edgebnn profile ... --db {db}` first, or pass --db")
    conn = store.connect(db)
    try:
        results = store.results(conn)
        op_totals = {r["id"]: store.op_totals(conn, r["id"]) for r in results}
    finally:
        conn.close()
    run_index = _index_runs(run_roots)
    conversions = _index_conversions(run_roots, results)
    rows = []
    for r in results:
        conv = conversions.get(r["model_sha256"], {})
        report = conv.get("report") or {}
        source = report.get("source") or {}
        run_dir = source.get("run_dir")
        info = run_index.get(str(Path(run_dir).resolve())) if run_dir else None
        if info is None and run_dir and runs.is_run_dir(run_dir):
            info = runs.read_info(run_dir)
        model = source.get("model") or (info or {}).get("model")
        kind = conv.get("kind", "binary")
        dataset = (info or {}).get("dataset") or (report.get("deployment") or {}).get("dataset")
        check = (conv.get("baseline") or {}).get("check") if kind != "binary" else report.get("check")
        keras_top1 = _top1(info) if kind == "binary" else None
        twin_top1 = _twin_top1(run_index, model, dataset)
        real = kind != "binary" or bool((info or {}).get("real"))
        rows.append({
            "model": (f"{model}-real ({kind})" if kind != "binary" else
                      f"{model}-real" if real else model) if model else r["model_name"],
            "family": _family(model),
            "kind": "real" if real else "binary",
            "file": r.get("model_path") or r["model_name"],
            "target": (report.get("target") or {}).get("name") or r.get("target"),  # the flatbuffer's target
            "device": r["device"],
            "machine": r["machine"],
            "kernels": r["kernels"],
            "threads": int(r["threads"]),
            "median_ms": r["median_ms"] if r["median_ms"] is not None else r["mean_ms"],
            "mean_ms": r["mean_ms"],
            "p90_ms": r["p90_ms"],
            "flatbuffer_mb": r["model_size_mb"],
            "tflite_top1": (check or {}).get("tflite_top1"),
            "check_samples": (check or {}).get("samples"),
            "keras_top1": keras_top1,
            "twin_top1": twin_top1,
            "gap_to_float": (twin_top1 - keras_top1) if not real and twin_top1 is not None and keras_top1 is not None
            else None,
            "dataset": dataset,
            "run": run_dir,
            "op_types": [{"node_type": o["node_type"], "kind": o["kind"], "ms": o["avg_ms"]}
                         for o in op_totals[r["id"]]],
            "created_at": r["created_at"],
        })
    rows.sort(key=lambda row: (row["device"], row["threads"], row["model"]))
    return rows


# --------------------------------------------------------------------------------------------- table
def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


TABLE_COLUMNS = ("model", "family", "target", "device", "threads", "median ms", "flatbuffer MB", "top-1 tflite",
                 "top-1 keras", "gap to float", "machine")


def table_cells(row: dict) -> list[str]:
    gap = row["gap_to_float"]
    return [row["model"], row["family"], row["target"] or "-", row["device"], str(row["threads"]),
            _num(row["median_ms"], ".2f"), _num(row["flatbuffer_mb"], ".3f"), _pct(row["tflite_top1"]),
            _pct(row["keras_top1"]), "-" if gap is None else f"{100 * gap:+.1f} pts", row["machine"]]


def format_table(rows: list[dict]) -> str:
    cells = [list(TABLE_COLUMNS)] + [table_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


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


def _accuracy(row: dict) -> float | None:
    """Validation top-1 of the run (the whole validation split) when known, else the flatbuffer's on its check
    samples; the conversion report proves the two agree."""
    return row["keras_top1"] if row["keras_top1"] is not None else row["tflite_top1"]


def plot_accuracy_latency(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    devices = sorted({r["device"] for r in rows})
    fig, axes = plt.subplots(1, max(1, len(devices)), figsize=(8 * max(1, len(devices)), 5.5), squeeze=False)
    for ax, device in zip(axes[0], devices or ["-"], strict=False):
        pts = [r for r in rows if r["device"] == device and _accuracy(r) is not None and r["median_ms"]]
        for kind, marker in (("binary", "o"), ("real", "s")):
            sel = [r for r in pts if r["kind"] == kind]
            ax.scatter([r["median_ms"] for r in sel], [100 * _accuracy(r) for r in sel], marker=marker,
                       label=f"{kind} models", alpha=0.8)
        for r in pts:  # one label per model, at its fastest point
            if r["median_ms"] == min(p["median_ms"] for p in pts if p["model"] == r["model"]):
                ax.annotate(f"{r['model']} ({r['threads']}t)", (r["median_ms"], 100 * _accuracy(r)), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
        front = pareto_front([(r["median_ms"], _accuracy(r)) for r in pts])
        if front:
            xs, ys = [pts[i]["median_ms"] for i in front], [100 * _accuracy(pts[i]) for i in front]
            ax.plot(xs, ys, "k--", lw=1)
            ax.scatter(xs, ys, s=160, facecolors="none", edgecolors="k", label="Pareto front")
        machine = pts[0]["machine"] if pts else ""
        ax.set_title(f"{device}\n{machine}", fontsize=9)
        ax.set_xlabel("median latency (ms)")
        ax.set_ylabel("validation top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_op_types(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    profiled = [r for r in rows if r["op_types"]]
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(4, len(profiled)) + 1.5))
    if not profiled:
        ax.text(0.5, 0.5, "no op profiles stored: run edgebnn profile --op-profile", ha="center", va="center")
        ax.set_axis_off()
    else:
        types = sorted({o["node_type"] for r in profiled for o in r["op_types"]})
        labels = [f"{r['model']} @ {r['device']} ({r['threads']}t)" for r in profiled]
        left = [0.0] * len(profiled)
        for node_type in types:
            widths = [sum(o["ms"] or 0.0 for o in r["op_types"] if o["node_type"] == node_type) for r in profiled]
            ax.barh(labels, widths, left=left, label=node_type)
            left = [a + b for a, b in zip(left, widths, strict=True)]
        ax.set_xlabel("summed per-op latency (ms)")
        ax.legend(fontsize=7, ncol=3)
        ax.invert_yaxis()
    ax.set_title("Per-layer latency by op type")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_threads(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = {}
    for r in rows:
        if r["median_ms"]:
            series.setdefault((r["model"], r["device"]), []).append((r["threads"], r["median_ms"]))
    for (model, device), pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{model} @ {device}")
    ax.set_xlabel("threads")
    ax.set_ylabel("median latency (ms)")
    ax.set_title("Latency against threads")
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- page
def render_html(rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in table_cells(r)) + "</tr>" for r in rows)
    images = "".join(f'<figure><img src="{p}" alt="{p}"><figcaption>{p}</figcaption></figure>' for p in PLOTS)
    machines = sorted({r["machine"] for r in rows})
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edgebnn report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}
img{{max-width:100%}}figure{{margin:1em 0}}</style></head>
<body><h1>edgebnn report</h1>
<p>{len(rows)} results. Machines: {html.escape("; ".join(machines)) or "-"}.</p>
<p>{html.escape(HOST_NOTE)} Gap to float: top-1 of the real-valued twin's run minus the binary run's
(validation set); top-1 tflite is the flatbuffer's on the conversion check samples.</p>
<table><tr>{head}</tr>{body}</table>
{images}
</body></html>
"""


def write(db: str | os.PathLike = "results.db", out: str | os.PathLike = "report", run_roots=("runs",)) -> dict:
    """Collect, then write the page, the plots and ``results.json`` into ``out``; return what was written."""
    rows = collect(db, run_roots)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EdgebnnError(f"cannot create report folder {out}: {err.strerror}") from None
    import matplotlib

    matplotlib.use("Agg")
    plot_accuracy_latency(rows, out / PLOTS[0])
    plot_op_types(rows, out / PLOTS[1])
    plot_threads(rows, out / PLOTS[2])
    (out / "results.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    (out / "index.html").write_text(render_html(rows))
    return {"rows": rows, "index": str(out / "index.html"), "plots": [str(out / p) for p in PLOTS]}
