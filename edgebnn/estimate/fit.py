"""The board model: latency as a weighted sum of instruction counts, fitted to published figures.

A model is a list of feature groups, each a set of kernel classes (see ``counting.CLASSES``):

    t_board = sum_j k_j * I_j,    I_j = sum of the instructions per inference of the classes in group j

with k_j >= 0 (ms per 10^9 instructions), fitted by non-negative least squares on the relative error
``sum_i (t_i / T_i - 1)^2`` over the calibration models i with published latency T_i. Its error is measured
leave-one-out: each model is estimated by a fit made without it.
"""

from __future__ import annotations

import numpy as np

# Named models; the first entry is the one-constant baseline (all instructions alike).
MODELS = {
    "one constant": [("binary_gemm", "binary_other", "float_gemm", "float_other", "memory", "other")],
    "binary/float split": [("binary_gemm", "binary_other"), ("float_gemm", "float_other", "memory", "other")],
    # GEMM micro-kernels (binary and float: compute-bound, high IPC) against everything else (bitpacking,
    # elementwise ops, pooling, copies: memory-bound).
    "GEMM kernels / other work": [("binary_gemm", "float_gemm"), ("binary_other", "float_other", "memory", "other")],
    "per-kernel-class linear fit": [("binary_gemm",), ("binary_other",), ("float_gemm",),
                                    ("float_other", "memory", "other")],
}


def features(classes: dict[str, float], groups: list) -> np.ndarray:
    """Instructions (in 10^9) of each group; a group is a tuple of classes or a {class: weight} dict (a weighted
    sum, e.g. float instructions at another board's measured cost relative to binary ones)."""
    return np.array([sum(classes.get(c, 0.0) * (g[c] if isinstance(g, dict) else 1.0) for c in g)
                     for g in groups]) / 1e9


def borrowed_ratio(k: list[float], model: str, source: str) -> tuple[str, list]:
    """A one-parameter model for a board with few figures: a two-group ``model``'s groups weighted by the cost
    ratio another board's fit of it measured (``k``, fitted on that board's figures only)."""
    ratio = k[1] / k[0] if k[0] > 0 else 1.0
    groups = MODELS[model]
    return (f"{model}, cost ratio {ratio:.2f} from {source}",
            [{**dict.fromkeys(groups[0], 1.0), **dict.fromkeys(groups[1], ratio)}])


def fit(rows: list[tuple[dict, float]], groups: list[tuple[str, ...]]) -> np.ndarray:
    """k >= 0 minimising the squared relative error over (classes, published ms) rows."""
    from scipy.optimize import nnls

    a = np.array([features(c, groups) / t for c, t in rows])
    k, _ = nnls(a, np.ones(len(rows)))
    return k


def predict(k, classes: dict[str, float], groups: list[tuple[str, ...]]) -> float:
    return float(features(classes, groups) @ np.asarray(k))


def leave_one_out(data: dict[str, tuple[dict, float]], groups: list[tuple[str, ...]]) -> dict[str, dict]:
    """Per model: published ms, estimate by a fit without it, error in percent."""
    out = {}
    for name, (classes, published) in data.items():
        rest = [v for n, v in data.items() if n != name]
        est = predict(fit(rest, groups), classes, groups)
        out[name] = {"published_ms": published, "estimate_ms": est, "error_pct": 100.0 * (est / published - 1)}
    return out


def summary(loo: dict[str, dict]) -> tuple[float, float]:
    """Mean and max absolute leave-one-out error (percent)."""
    errs = [abs(v["error_pct"]) for v in loo.values()]
    return float(np.mean(errs)), float(np.max(errs))


MARGIN = 0.9  # another model must cut the baseline's mean leave-one-out error by a tenth to be chosen


def choose(data: dict[str, tuple[dict, float]], extra: dict[str, list] | None = None) -> tuple[str, dict]:
    """The model with the lowest mean leave-one-out error, if it cuts the baseline's by a tenth (``MARGIN``)
    without raising its max error; else the one-constant baseline
    (a fit needs more models than parameters + 1; fewer fall back to fewer parameters). ``extra``: more
    candidates (name -> groups). Returns its name and a record: groups, k (fitted on all), loo, loo_mean_pct,
    loo_max_pct, and every candidate's errors."""
    candidates = {}
    for name, groups in {**MODELS, **(extra or {})}.items():
        if len(data) < len(groups) + 2:
            continue
        loo = leave_one_out(data, groups)
        candidates[name] = (groups, loo, *summary(loo))
    base = next(iter(MODELS))
    best = min(candidates, key=lambda n: (candidates[n][2] if n == base or (
        candidates[n][3] <= candidates[base][3] + 1e-9 and candidates[n][2] <= MARGIN * candidates[base][2])
        else float("inf"), n != base))
    groups, loo, mean, worst = candidates[best]
    return best, {"groups": [g if isinstance(g, dict) else list(g) for g in groups],
                  "k_ms_per_1e9": fit(list(data.values()), groups).tolist(), "loo": loo,
                  "loo_mean_pct": mean, "loo_max_pct": worst,
                  "candidates": {n: {"loo_mean_pct": c[2], "loo_max_pct": c[3]} for n, c in candidates.items()}}
