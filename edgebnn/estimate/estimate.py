"""Estimated latency rows: a model's counts, a calibration and a board -> what the results database stores.

The estimate for board b at n threads is the calibration's fit (``fit.py``) applied to the model's
instructions per kernel class. Per op, the estimate is split by instructions weighted with the fit's cost of
the op's side (binary: LCE ops; float: the rest), so per-op estimates add up to the model's.

Every estimate states its path (``qemu``: instructions counted under QEMU, exact; ``fast``: predicted from the
flatbuffer's op shapes by ``fast.py``), the calibration's error (nested leave-one-out, see ``fit.nested_loo``) and
the range it implies (``likely_range``).
"""

from __future__ import annotations

from edgebnn import store
from edgebnn.devices.parse import op_kind
from edgebnn.estimate import boards as boards_mod
from edgebnn.estimate import calibration as cal_mod
from edgebnn.estimate import fit

KERNELS = {"qemu": "LCE optimized kernels (ARM64), counted under QEMU",
           "fast": "LCE optimized kernels (ARM64), instructions predicted from op shapes (fast path)"}
PATHS = {"qemu": "counted under QEMU (exact)", "fast": "predicted from op shapes (fast path)"}


def range_error_pct(record: dict, fast_error_pct: float = 0.0) -> float:
    """The relative error the range spans, in percent: M = (1 + E)(1 + F) - 1, E the calibration's largest
    nested leave-one-out error (``error_max_pct``), F the fast path's largest whole-model instruction error on
    models outside its fit (0 for counts made under QEMU)."""
    return 100.0 * ((1 + record["error_max_pct"] / 100) * (1 + fast_error_pct / 100) - 1)


def likely_range(ms: float, error_pct: float) -> tuple[float, float]:
    """The latency range an estimate ``ms`` implies: ``[ms / (1 + M), ms / (1 - M)]``, M = ``error_pct`` / 100.

    Each calibration model's held-out error is e = estimate / published - 1 with |e| <= M, so its published
    latency is estimate / (1 + e), inside this range: the range is where the board's real figure lay for every
    calibration model when it was estimated without being seen (no wider guarantee for a model unlike them,
    which is flagged). M >= 1 leaves the upper end open (infinity)."""
    m = error_pct / 100.0
    return ms / (1 + m), (ms / (1 - m) if m < 1 else float("inf"))


def format_ms(ms: float, lo: float, hi: float) -> str:
    """``79 ms, likely 70-88`` (three significant figures)."""
    def g(v):
        return f"{v:.3g}" if v < 1000 else f"{v:.0f}"
    return f"{g(ms)} ms, likely {g(lo)}-{g(hi)}"


def _groups(record: dict) -> list:
    return [g if isinstance(g, dict) else tuple(g) for g in record["groups"]]


def _side_costs(record: dict, classes: dict[str, float]) -> dict[str, float]:
    """ms per instruction of binary (LCE) and float work under a fit: its estimate for each side's classes."""
    out = {}
    for side, names in (("binary", ("binary_gemm", "binary_other")),
                        ("float", ("float_gemm", "float_other", "memory", "other"))):
        part = {c: v for c, v in classes.items() if c in names}
        n = sum(part.values())
        out[side] = fit.predict(record["k_ms_per_1e9"], part, _groups(record)) / n if n else 0.0
    return out


def op_estimates(ops: list[dict], record: dict, classes: dict[str, float], total_ms: float) -> list[dict]:
    """Per-op rows with ``avg_ms`` = the op's share of ``total_ms`` (instructions x its side's cost)."""
    costs = _side_costs(record, classes)
    weights = [o["instructions"] * costs["binary" if o["node_type"].startswith("Lce") else "float"] for o in ops]
    whole = sum(weights) or 1.0
    return [{**o, "avg_ms": total_ms * w / whole, "first_ms": None, "pct": 100.0 * w / whole}
            for o, w in zip(ops, weights, strict=True)]


def how_counted(counts: dict) -> str:
    """``counted under QEMU 7.2.22 -cpu cortex-a72`` or the fast path's equivalent."""
    cpu = counts.get("cpu") or cal_mod.OLD_CPU
    if counts.get("path", "qemu") == "qemu":
        return f"counted under QEMU {counts['qemu']} -cpu {cpu}"
    return (f"predicted from the flatbuffer's op shapes for {cpu} (fast path, {counts['fast_error_max_pct']:.1f}% "
            "max error on models outside its fit)")


def instructions_only(model: dict, counts: dict, board: boards_mod.Board, runner: str) -> dict:
    """The record of an uncalibrated board (no published figures to fit: the Pi 5): its core's instructions, no
    ms (``mean_ms`` None), never stored."""
    path = counts.get("path", "qemu")
    source = (f"{counts['instructions']:.4g} aarch64 instructions per inference {how_counted(counts)} for "
              f"{board.label} ({board.cpu}); UNCALIBRATED: no published LCE figures exist for it, so no ms")
    return {**{k: model.get(k) for k in ("model_name", "model_sha256", "model_path")},
            "precision": model.get("precision") or store.precision_of(model.get("model_path")),
            "device": board.name, "threads": 1, "kind": "estimate", "machine": f"{board.label} (uncalibrated)",
            "kernels": KERNELS[path], "runner": runner, "cpu": counts.get("cpu"), "min_ms": None, "median_ms": None,
            "mean_ms": None, "max_ms": None, "flags": [], "warnings": list(counts["warnings"]),
            "estimate": {"board": board.name, "board_label": board.label, "instructions": counts["instructions"],
                         "classes": counts["classes"], "cpu": counts.get("cpu"), "path": path,
                         "path_label": PATHS[path], "calibrated": False, "source": source}}


def source_line(board: boards_mod.Board, threads: int, counts: dict, cal: dict, record: dict) -> str:
    how = how_counted(counts)
    return (f"estimated for {board.label} ({threads} thread{'s' if threads > 1 else ''}) from "
            f"{counts['instructions']:.3g} aarch64 instructions {how}; {record['model']} calibrated on "
            f"{record['n']} Larq Zoo models, {cal_mod.error_line(record)}")


def rows(model: dict, counts: dict, cal: dict, runner: str, runner_sha: str,
         warnings: list[str] = (), boards: list[str] | None = None) -> list[tuple[dict, list[dict]]]:
    """One (result row, per-op rows) per board x threads of the calibration (only ``boards`` when given: those
    counted on the core ``counts`` were made on), for ``store.save``; each row names that core (``cpu``)."""
    known = boards_mod.load()
    flags = cal_mod.unseen_ops(counts["ops"], cal, counts.get("dense_macs", 0))
    cpu = counts.get("cpu") or cal_mod.OLD_CPU
    out = []
    for board_name, per_threads in cal["boards"].items():
        if boards is not None and board_name not in boards:
            continue
        if cal_mod.board_cpu(cal, board_name) != cpu:
            raise ValueError(f"{board_name} is calibrated on {cal_mod.board_cpu(cal, board_name)}, not {cpu}")
        board = known[board_name]
        for threads, record in sorted(per_threads.items(), key=lambda kv: int(kv[0])):
            groups = _groups(record)
            ms = fit.predict(record["k_ms_per_1e9"], counts["classes"], groups)
            path = counts.get("path", "qemu")
            spread = range_error_pct(record, counts.get("fast_error_max_pct", 0.0) if path == "fast" else 0.0)
            lo, hi = likely_range(ms, spread)
            source = source_line(board, int(threads), counts, cal, record)
            estimate = {"board": board_name, "board_label": board.label, "instructions": counts["instructions"],
                        "classes": counts["classes"], "per_vcpu": counts["per_vcpu"],
                        "counted_threads": counts["threads"], "model": record["model"], "groups": record["groups"],
                        "k_ms_per_1e9": record["k_ms_per_1e9"],
                        "calibration": {"name": cal["name"], "runner_sha256": cal["runner_sha256"],
                                        "made": cal.get("made")},
                        "runner_sha256": runner_sha, "qemu": counts.get("qemu"), "cpu": cpu, "path": path,
                        "path_label": PATHS[path], "error_mean_pct": record["error_mean_pct"],
                        "error_max_pct": record["error_max_pct"], "error_n": record["error_n"],
                        "error_method": record["error_method"], "range_error_pct": spread,
                        "range_ms": [lo, hi], "range_rule": "ms / (1 + M) to ms / (1 - M), M = range_error_pct",
                        "winner_loo_mean_pct": record["loo_mean_pct"], "winner_loo_max_pct": record["loo_max_pct"],
                        "n_calibration_models": record["n"], "published_source": board.source,
                        "flags": flags, "source": source}
            if path == "fast":
                estimate["fast_model"] = counts.get("fast_model")
            row = {**model, "device": board_name, "threads": int(threads), "kind": "estimate", "target": "arm64",
                   "machine": f"{board.label} (estimated)", "kernels": KERNELS[path], "runner": str(runner),
                   "cpu": cpu,
                   "runs": counts["runs"][0] - counts["runs"][1], "warmup": 0,
                   "min_ms": ms, "median_ms": ms, "mean_ms": ms, "max_ms": ms, "p90_ms": None, "std_ms": None,
                   "board": {"label": board.label, "cpu": board.cpu}, "estimate": estimate,
                   "flags": list(flags), "warnings": list(warnings) + list(counts["warnings"])}
            out.append((row, op_estimates(counts["ops"], record, counts["classes"], ms)))
    return out


def op_type_totals(ops: list[dict]) -> list[dict]:
    """Per-op estimate rows summed by op type, costliest first: node_type, kind, nodes, instructions, avg_ms, pct."""

    totals: dict[str, dict] = {}
    for op in ops:
        t = totals.setdefault(op["node_type"], {"node_type": op["node_type"], "kind": op_kind(op["node_type"]),
                                                "nodes": 0, "instructions": 0.0, "avg_ms": 0.0})
        t["nodes"] += 1
        t["instructions"] += op.get("instructions") or 0.0
        t["avg_ms"] += op.get("avg_ms") or 0.0
    whole = sum(t["avg_ms"] for t in totals.values()) or 1.0
    for t in totals.values():
        t["pct"] = 100.0 * t["avg_ms"] / whole
    return sorted(totals.values(), key=lambda t: -t["avg_ms"])


def row_range(e: dict) -> tuple[float, float] | None:
    """The stored range of an estimate row, or None for a row stored before ranges were."""
    rng = e.get("range_ms")
    return (float(rng[0]), float(rng[1])) if rng else None


def error_figures(e: dict) -> tuple[float, float, int | None, str]:
    """(mean %, max %, models, what they are) of a stored estimate: the nested error, or for a row stored before
    it the winner's own leave-one-out error, labelled so."""
    if "error_mean_pct" in e:
        return e["error_mean_pct"], e["error_max_pct"], e.get("error_n"), "nested leave-one-out"
    return (e.get("loo_mean_pct", 0.0), e.get("loo_max_pct", 0.0), e.get("n_calibration_models"),
            "leave-one-out after the choice (optimistic: stored before the nested error)")


def format_rows(results: list[dict]) -> str:
    """The CLI's table of estimated rows: board, estimate and its likely range, the calibration's error (nested
    leave-one-out), the path (counted under QEMU or predicted from op shapes), what it was estimated from."""
    w = max([20] + [len(r["model_name"]) for r in results])
    lines = ["ESTIMATED latency (not measured): LCE's aarch64 kernels' instructions, calibrated on published board "
             "figures; 'likely' spans the calibration's largest held-out error",
             f"{'model':<{w}} {'board':<8} {'thr':>3} {'estimate (ms), likely range':<30} {'error mean/max, n':>18} "
             f"{'path':<5} {'counted on':<11} {'precision':<9} {'instructions':>13}"]
    for r in results:
        e = r.get("estimate") or {}
        stored = "  (stored; --force to estimate again)" if r["status"] == "skipped" else ""
        flag = "  FLAGGED" if r.get("flags") else ""
        rng = row_range(e)
        if r.get("mean_ms") is None:  # an uncalibrated board: instructions only
            text, error = "uncalibrated: no ms", f"{'-':>18}"
        else:
            text = format_ms(r["mean_ms"], *rng) if rng else f"{r['mean_ms']:.3g} ms"
            mean, worst, n, _ = error_figures(e)
            error = f"{mean:>5.1f}% / {worst:4.1f}%, {n or '?':>2}"
        lines.append(f"{r['model_name']:<{w}} {r['device']:<8} {r['threads']:>3} {text:<30} {error} "
                     f"{e.get('path', 'qemu'):<5} {r.get('cpu') or e.get('cpu') or cal_mod.OLD_CPU:<11} "
                     f"{r.get('precision') or 'float':<9} {e.get('instructions', 0):13.4g}{flag}{stored}")
    flagged = set()
    for r in results:
        e = r.get("estimate") or {}
        lines.append(f"{r['model_name']} @ {r['device']} x{r['threads']}: {e.get('source', '')}")
        if r["model_name"] not in flagged:
            lines += [f"  FLAGGED, the estimate may be far off: {f}" for f in r.get("flags") or []]
            flagged.add(r["model_name"])
    shown = set()
    for r in results:
        if r["model_name"] in shown or not r["op_totals"]:
            continue
        shown.add(r["model_name"])
        lines.append(f"{r['model_name']} per op type (estimated ms @ {r['device']} x{r['threads']}):")
        for t in r["op_totals"]:
            ins = t.get("instructions") or 0.0
            lines.append(f"  {t['node_type']:<48} {t['nodes']:>3} ops {ins:12.4g} instr {t['avg_ms']:9.3f} ms "
                         f"{t['pct']:5.1f}%")
        if r.get("top_ops"):
            lines.append(f"{r['model_name']} costliest layers (estimated ms @ {r['device']} x{r['threads']}):")
        for o in r.get("top_ops") or []:
            lines.append(f"  {o['node_type'][:24]:<24} {str(o.get('name'))[:44]:<44} {o['instructions']:12.4g} instr "
                         f"{o['avg_ms']:9.3f} ms")
    return "\n".join(lines)
