"""The board model: latency as a weighted sum of instruction counts, fitted to published figures.

A model is a list of feature groups, each a set of kernel classes (see ``counting.CLASSES``):

    t_board = sum_j k_j * I_j,    I_j = sum of the instructions per inference of the classes in group j

with k_j >= 0 (ms per 10^9 instructions), fitted by non-negative least squares on the relative error
``sum_i (t_i / T_i - 1)^2`` over the calibration models i with published latency T_i. Candidates are compared by
leave-one-out error (each model estimated by a fit made without it); the error an estimate states is that of the
whole procedure, measured by nested leave-one-out (each model held out before the choice, see ``nested_loo``).
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
    from scipy.optimize import nnls  # lazy: SciPy's optimiser takes a second

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
MODELS_PER_PARAMETER = 4  # a candidate beyond the baseline needs this many models per fitted cost to be tried


def candidates(data: dict, extra: dict[str, list] | None = None) -> dict[str, list]:
    """The board models ``choose`` may try on ``data``: the one-constant baseline always, any other only with
    ``MODELS_PER_PARAMETER`` models per cost it fits (a 4-cost fit on 10 models chases noise: its nested error
    was 25.5% max on the Pixel 1)."""
    base = next(iter(MODELS))
    return {name: groups for name, groups in {**MODELS, **(extra or {})}.items()
            if name == base or len(data) >= MODELS_PER_PARAMETER * len(groups)}


def _pick(scores: dict[str, tuple[float, float]]) -> str:
    """The candidate with the lowest mean leave-one-out error if it cuts the baseline's by a tenth (``MARGIN``)
    without raising its max; else the baseline. ``scores``: name -> (mean, max), the baseline first."""
    base = next(iter(scores))
    return min(scores, key=lambda n: (scores[n][0] if n == base or (
        scores[n][1] <= scores[base][1] + 1e-9 and scores[n][0] <= MARGIN * scores[base][0]) else float("inf"),
        n != base))


def select(data: dict[str, tuple[dict, float]], extra: dict[str, list] | None = None) -> tuple[str, dict]:
    """The selection step alone: (chosen name, {name: (groups, loo, mean, max)} of every candidate assessed).
    A candidate's leave-one-out needs more models than costs + 1; with too few models the baseline is taken."""
    scored = {}
    for name, groups in candidates(data, extra).items():
        if len(data) >= len(groups) + 2:
            loo = leave_one_out(data, groups)
            scored[name] = (groups, loo, *summary(loo))
    if not scored:
        return next(iter(MODELS)), {}
    return _pick({n: c[2:] for n, c in scored.items()}), scored


def nested_loo(data: dict[str, tuple[dict, float]], extra: dict[str, list] | None = None) -> dict[str, dict]:
    """The error of the whole procedure, selection included: each model is held out, the board model is chosen
    (``select``, with its own inner leave-one-out) and fitted on the others alone, and the held-out model
    estimated. Per model: published ms, estimate, error in percent, the board model chosen without it."""
    out = {}
    for name, (classes, published) in data.items():
        rest = {n: v for n, v in data.items() if n != name}
        chosen, _ = select(rest, extra)
        groups = {**MODELS, **(extra or {})}[chosen]
        est = predict(fit(list(rest.values()), groups), classes, groups)
        out[name] = {"published_ms": published, "estimate_ms": est, "error_pct": 100.0 * (est / published - 1),
                     "chosen": chosen}
    return out


def choose(data: dict[str, tuple[dict, float]], extra: dict[str, list] | None = None) -> tuple[str, dict]:
    """The board model for ``data`` (``select``) fitted on all of it, with its errors. Returns its name and a
    record: groups, k (fitted on all), ``nested`` (the error of the whole procedure per model, see
    ``nested_loo``) with ``error_mean_pct`` / ``error_max_pct`` (what every estimate states), and the winner's own
    leave-one-out (``loo``, ``loo_mean_pct``, ``loo_max_pct``: optimistic, the choice saw every model) and every
    candidate's."""
    best, scored = select(data, extra)
    groups = {**MODELS, **(extra or {})}[best]
    loo = scored[best][1] if best in scored else leave_one_out(data, groups)
    nested = nested_loo(data, extra)
    mean, worst = summary(nested)
    return best, {"groups": [g if isinstance(g, dict) else list(g) for g in groups],
                  "k_ms_per_1e9": fit(list(data.values()), groups).tolist(),
                  "error_mean_pct": mean, "error_max_pct": worst, "error_n": len(nested),
                  "error_method": "nested leave-one-out: each model held out, the board model chosen and fitted "
                                  "on the rest",
                  "nested": nested, "loo": loo, "loo_mean_pct": summary(loo)[0], "loo_max_pct": summary(loo)[1],
                  "candidates": {n: {"loo_mean_pct": c[2], "loo_max_pct": c[3]} for n, c in scored.items()}}
