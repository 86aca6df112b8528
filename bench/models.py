"""Our counts of every ImageNet variant beside the papers' (PAPERS.md): parameters, binary weights, OPs
(binary MACs / 64 + float MACs) and size with 1-bit packed weights.

    .venv/bin/python bench/models.py [--json]
"""

import argparse
import json

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import archs


def _fmt(value, kind):
    if value is None:
        return "-"
    return f"{value:,.0f}" if kind == "count" else f"{value:.3e}" if kind == "ops" else f"{value:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [archs.describe(n) for n in archs.names() if archs.get(n).input_shape == archs.IMAGENET[0]]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    cols = [("params", "count"), ("binary_params", "count"), ("ops", "ops"), ("size_mb", "mb")]
    header = f"{'model':<18}" + "".join(f"{c + ' ours':>20}{c + ' paper':>20}" for c, _ in cols) + "  diff"
    print(header)
    print("-" * len(header))
    for r in rows:
        cells, diffs = [], []
        for col, kind in cols:
            paper = r["reported"].get(col)
            cells.append(f"{_fmt(r[col], kind):>20}{_fmt(paper, kind):>20}")
            if paper:
                diffs.append(f"{col} {100 * (r[col] - paper) / paper:+.2f}%")
        print(f"{r['name']:<18}" + "".join(cells) + "  " + ", ".join(diffs))
    print("\nPaper figures: " + "; ".join(f"{r['name']}: {r['reported']['source']}" for r in rows if r["reported"]))
    print("Counts are of the models as built (machine-independent); '-' means the paper gives no figure.")


if __name__ == "__main__":
    main()
