"""Board estimates from instructions counted under QEMU: the error table per board and the time one estimate of a
224x224 model takes.

Table: for every board x threads of the calibration (default: the shipped one), each calibration model held out,
the board model chosen and fitted without it (nested leave-one-out), its estimate and error; the summary gives
that error of the whole procedure (what every estimate states) beside the winner's own leave-one-out error (the
figure stated before issue 22: the choice saw every model) and the one-constant baseline's. Time: one
`qemu:aarch64` estimate (two counted runs under QEMU, per-op attribution and the estimate rows) of a 224x224
model: ``--model FILE.tflite``, or edgebnn's bireal-18 at 224x224 (random weights) converted here. Wall time on
this machine, which other jobs may share: the load average is printed.

``--refit FILE``: fit the calibration again from the counts it stores, with this edgebnn's procedure, and write
it to FILE (how the shipped ``edgebnn/estimate/calibration.json`` is made from its counts).

    .venv/bin/python bench/estimate.py [--calibration FILE] [--runner PATH] [--model FILE.tflite] [--no-time]
    .venv/bin/python bench/estimate.py --refit edgebnn/estimate/calibration.json --no-time
    .venv/bin/python bench/estimate.py --no-time --compare OLD.json   # beside an older calibration
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn.estimate import calibration

ROOT = Path(__file__).resolve().parents[1]
RUNNER = os.environ.get("LCE_RUNNER_AARCH64") or str(ROOT.parent / "shared" / "lce" / "lce_benchmark_model_aarch64")
TARGETS = {("pixel1", "1"): "mean <= 6%, max <= 15%", ("pi4b", "1"): "mean <= 3%", ("pi4b", "4"): "mean <= 10%"}


def loo_tables(cal: dict) -> None:
    from edgebnn.estimate import boards, estimate, fit

    print(f"calibration {cal['name']!r} (runner sha256 {cal['runner_sha256'][:16]}..., QEMU {cal['qemu']}, "
          f"{cal['made']}): {cal['models']}")
    print(calibration.format_loo(cal))
    print("\nsummary: board x threads, models, chosen fit, error of the whole procedure (nested leave-one-out) "
          "mean/max, the winner's own leave-one-out, one-constant baseline, target (on the nested error)")
    for board, per in cal["boards"].items():
        for threads, rec in sorted(per.items()):
            nan = float("nan")
            base = rec["candidates"].get("one constant") or {"loo_mean_pct": nan, "loo_max_pct": nan}
            print(f"  {board:<7} x{threads}  n={rec['error_n']:<3} {rec['model']:<28} nested "
                  f"{rec['error_mean_pct']:5.1f}% / {rec['error_max_pct']:5.1f}%   winner's LOO "
                  f"{rec['loo_mean_pct']:5.1f}% / {rec['loo_max_pct']:5.1f}%"
                  f"   baseline {base['loo_mean_pct']:5.1f}% / {base['loo_max_pct']:5.1f}%"
                  f"   target {TARGETS.get((board, threads), '-')}")
    before = fit.MODELS_PER_PARAMETER
    try:  # the procedure before issue 22 tried every candidate, however few the models
        fit.MODELS_PER_PARAMETER = 0
        for board, per in cal["boards"].items():
            for threads in sorted(per):
                published = boards.get(board).published[int(threads)]
                counts = cal["counts"][calibration.board_cpu(cal, board)]
                data = {m: (counts[m]["classes"], ms) for m, ms in published.items()
                        if m in counts and m not in cal["excluded"]}
                old_mean, old_max = fit.summary(fit.nested_loo(data))
                print(f"  {board:<7} x{threads}  every candidate tried (before issue 22): nested {old_mean:5.1f}% / "
                      f"{old_max:5.1f}%")
    finally:
        fit.MODELS_PER_PARAMETER = before
    print("flagged, not calibrated: " + "; ".join(f"{m} ({why})" for m, why in cal["excluded"].items()))

    for board, per in cal["boards"].items():
        for threads, rec in sorted(per.items()):
            published = boards.get(board).published[int(threads)]
            counts = cal["counts"][calibration.board_cpu(cal, board)]
            for m in cal["excluded"]:
                if m in published and m in counts:
                    est = fit.predict(rec["k_ms_per_1e9"], counts[m]["classes"], estimate._groups(rec))
                    print(f"  {m} on {board} x{threads}: published {published[m]:.1f} ms, the fit would say "
                          f"{est:.1f} ms ({100 * (est / published[m] - 1):+.0f}%): why it is flagged")


def compare(cal: dict, old: dict) -> None:
    """Each board's nested error beside another calibration's (the one before it: counted on another core)."""
    print(f"\nnested leave-one-out error, this calibration beside {old['name']!r} ({old.get('made')}):")
    print(f"  {'board':<7} {'thr':>3}  {'this: core, model, mean / max':<52} other: core, model, mean / max")
    for board, per in cal["boards"].items():
        for threads, rec in sorted(per.items()):
            was = old["boards"].get(board, {}).get(threads)
            other = (f"{calibration.board_cpu(old, board)}, {was['model']}, {was['error_mean_pct']:.1f}% / "
                     f"{was['error_max_pct']:.1f}%") if was else "-"
            this = (f"{rec.get('cpu', calibration.OLD_CPU)}, {rec['model']}, {rec['error_mean_pct']:.1f}% / "
                    f"{rec['error_max_pct']:.1f}%")
            print(f"  {board:<7} {threads:>3}  {this:<52} {other}")
    for cpu, per in cal["counts"].items():
        for m, c in per.items():
            before = next((o[m]["instructions"] for o in old["counts"].values() if m in o), None)
            if before:
                print(f"  {m:<24} {c['instructions'] / 1e6:9.2f} M on {cpu}, {before / 1e6:9.2f} M before "
                      f"({100 * (c['instructions'] / before - 1):+.2f}%)")


def model_224(path: str | None) -> Path:
    if path:
        return Path(path)
    import larq_compute_engine as lce

    from edgebnn import archs

    model = archs.build("bireal-18", input_shape=(224, 224, 3), num_classes=1000)
    out = Path(tempfile.mkdtemp(prefix="edgebnn-bench-")) / "bireal-18-224.tflite"
    out.write_bytes(lce.convert_keras_model(model, target="arm"))
    return out


def time_one(model: Path, runner: str) -> None:
    from edgebnn.estimate import emulated
    from edgebnn.tflite.describe import identify

    job = emulated.plan(runner)
    info = identify(model)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    rows = emulated.estimate_model(info, job)
    seconds = time.perf_counter() - t0
    load_after = os.getloadavg()
    first = rows[0][0]
    print(f"\none estimate of {model.name} ({first['estimate']['instructions']:.4g} instructions per inference): "
          f"{seconds:.1f} s wall on this machine ({os.cpu_count()} cores, 1-min load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; other jobs shared the cores)")
    for row, ops in rows:
        print(f"  {row['device']:<7} x{row['threads']}: {row['mean_ms']:8.2f} ms ESTIMATED ({len(ops)} ops)"
              + (f"  flagged: {row['flags'][0]}" if row["flags"] else ""))
    fast_job = emulated.plan(runner, fast=True)
    t0 = time.perf_counter()
    fast_rows = emulated.estimate_model(info, fast_job)
    seconds = time.perf_counter() - t0
    print(f"the same model on the fast path (op shapes, no QEMU): {seconds:.2f} s; "
          f"{fast_rows[0][0]['estimate']['instructions']:.4g} instructions predicted")
    for (row, _), (fast_row, _) in zip(rows, fast_rows, strict=True):
        lo, hi = fast_row["estimate"]["range_ms"]
        print(f"  {row['device']:<7} x{row['threads']}: {fast_row['mean_ms']:8.2f} ms (likely {lo:.3g}-{hi:.3g}), "
              f"{100 * (fast_row['mean_ms'] / row['mean_ms'] - 1):+.1f}% from the exact path")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calibration", default=None, help="calibration JSON (default: the shipped one)")
    ap.add_argument("--runner", default=RUNNER, help="aarch64 lce_benchmark_model for the timing")
    ap.add_argument("--model", default=None, help="a 224x224 .tflite to time (default: bireal-18 built here)")
    ap.add_argument("--no-time", action="store_true", help="only the error tables")
    ap.add_argument("--refit", default=None, metavar="FILE", help="refit the calibration from its stored counts "
                    "and write it to FILE")
    ap.add_argument("--compare", default=None, metavar="FILE", help="print each board's nested error beside this "
                    "calibration's (e.g. the one counted on QEMU's max core)")
    args = ap.parse_args()
    cal = calibration.load(args.calibration) if args.calibration else calibration.shipped()
    if args.refit:
        cal = calibration.refit(cal)
        Path(args.refit).write_text(json.dumps(cal, indent=1, sort_keys=True) + "\n")
        print(f"refitted from its stored counts, written to {args.refit}")
    loo_tables(cal)
    if args.compare:
        compare(cal, calibration.load(args.compare))
    if not args.no_time:
        if not Path(args.runner).is_file():
            print(f"\nno runner at {args.runner}: set LCE_RUNNER_AARCH64 to time an estimate")
            return 0
        time_one(model_224(args.model), args.runner)
    return 0


if __name__ == "__main__":
    sys.exit(main())
