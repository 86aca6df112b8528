"""Estimated latency rows: a model's counts, a calibration and a board -> what the results database stores.

The estimate for board b at n threads is the calibration's fit (``fit.py``) applied to the model's
instructions per kernel class. Per op, the estimate is split by instructions weighted with the fit's cost of
the op's side (binary: LCE ops; float: the rest), so per-op estimates add up to the model's.
"""

from __future__ import annotations

from edgebnn.estimate import boards as boards_mod
from edgebnn.estimate import calibration as cal_mod
from edgebnn.estimate import fit

KERNELS = "LCE optimized kernels (ARM64), counted under QEMU"


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


def source_line(board: boards_mod.Board, threads: int, counts: dict, cal: dict, record: dict) -> str:
    return (f"estimated for {board.label} ({threads} thread{'s' if threads > 1 else ''}) from "
            f"{counts['instructions']:.3g} aarch64 instructions counted under QEMU {counts['qemu']}; "
            f"{record['model']} calibrated on {record['n']} Larq Zoo models, leave-one-out error "
            f"{record['loo_mean_pct']:.1f}% mean, {record['loo_max_pct']:.1f}% max")


def rows(model: dict, counts: dict, cal: dict, runner: str, runner_sha: str,
         warnings: list[str] = ()) -> list[tuple[dict, list[dict]]]:
    """One (result row, per-op rows) per board x threads of the calibration, for ``store.save``."""
    boards = boards_mod.load()
    flags = cal_mod.unseen_ops(counts["ops"], cal, counts.get("dense_macs", 0))
    out = []
    for board_name, per_threads in cal["boards"].items():
        board = boards[board_name]
        for threads, record in sorted(per_threads.items(), key=lambda kv: int(kv[0])):
            groups = _groups(record)
            ms = fit.predict(record["k_ms_per_1e9"], counts["classes"], groups)
            source = source_line(board, int(threads), counts, cal, {**record, "model": record["model"]})
            estimate = {"board": board_name, "board_label": board.label, "instructions": counts["instructions"],
                        "classes": counts["classes"], "per_vcpu": counts["per_vcpu"],
                        "counted_threads": counts["threads"], "model": record["model"], "groups": record["groups"],
                        "k_ms_per_1e9": record["k_ms_per_1e9"],
                        "calibration": {"name": cal["name"], "runner_sha256": cal["runner_sha256"],
                                        "made": cal.get("made")},
                        "runner_sha256": runner_sha, "qemu": counts["qemu"],
                        "loo_mean_pct": record["loo_mean_pct"], "loo_max_pct": record["loo_max_pct"],
                        "n_calibration_models": record["n"], "published_source": board.source,
                        "flags": flags, "source": source}
            row = {**model, "device": board_name, "threads": int(threads), "kind": "estimate", "target": "arm64",
                   "machine": f"{board.label} (estimated)", "kernels": KERNELS, "runner": str(runner),
                   "runs": counts["runs"][0] - counts["runs"][1], "warmup": 0,
                   "min_ms": ms, "median_ms": ms, "mean_ms": ms, "max_ms": ms, "p90_ms": None, "std_ms": None,
                   "board": {"label": board.label, "cpu": board.cpu}, "estimate": estimate,
                   "flags": list(flags), "warnings": list(warnings) + list(counts["warnings"])}
            out.append((row, op_estimates(counts["ops"], record, counts["classes"], ms)))
    return out


def op_type_totals(ops: list[dict]) -> list[dict]:
    """Per-op estimate rows summed by op type, costliest first: node_type, kind, nodes, instructions, avg_ms, pct."""
    from edgebnn.profile.parse import op_kind

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


def format_rows(results: list[dict]) -> str:
    """The CLI's table of estimated rows: board, estimate, leave-one-out error, what it was estimated from."""
    w = max([20] + [len(r["model_name"]) for r in results])
    lines = ["ESTIMATED latency (not measured): LCE's aarch64 kernels counted under QEMU, calibrated on published "
             "board figures",
             f"{'model':<{w}} {'board':<8} {'thr':>3} {'estimate':>10} {'LOO error mean/max':>19} "
             f"{'instructions':>13}"]
    for r in results:
        e = r.get("estimate") or {}
        stored = "  (stored; --force to count again)" if r["status"] == "skipped" else ""
        flag = "  FLAGGED" if r.get("flags") else ""
        lines.append(f"{r['model_name']:<{w}} {r['device']:<8} {r['threads']:>3} {r['mean_ms']:8.2f}ms "
                     f"{e.get('loo_mean_pct', 0):>9.1f}% / {e.get('loo_max_pct', 0):4.1f}% "
                     f"{e.get('instructions', 0):13.4g}{flag}{stored}")
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
