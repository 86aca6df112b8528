"""Calibrations: which runner they were made with, the counts of the calibration models, and each board's fit.

The package ships ``calibration.json``, made with LCE v0.16.0's ``lce_benchmark_model_aarch64`` (its sha256 is
recorded). ``edgebnn calibrate --runner PATH`` makes one for another runner and saves it under
``~/.config/edgebnn/calibrations/<runner sha256>.json`` (or ``$XDG_CONFIG_HOME``), where estimates find it.

Format 3 counts every calibration model on each calibrated board's own core (``boards.toml``'s ``core``, the QEMU
``-cpu``): ``counts`` is {core: {model: counts}}, and each board's record names its ``cpu``. A format-2 file (counted
on QEMU's default ``max`` core) reads as format 3 with every count and board on ``max``.
"""

from __future__ import annotations

import json
import os
import time
from importlib import resources
from pathlib import Path

from edgebnn.devices import qemu
from edgebnn.devices.local import sha256  # noqa: F401  (the runner's sha256, also used by emulated)
from edgebnn.errors import EdgebnnError
from edgebnn.estimate import boards as boards_mod
from edgebnn.estimate import counting, fit, zoo
from edgebnn.progress import progress_bar

FORMAT = 3  # 2: each board's record states the error of the whole procedure (nested leave-one-out); 3: per core
OLD_CPU = "max"  # the core every count was made on before format 3 (QEMU's default)
# Models with large dense layers, which no other calibration model has (memory-bound at batch 1). Kept out of
# every fit; the flag rule (``unseen_ops``) flags them.
EXCLUDED = {"XNORNet": "58.6M multiply-accumulates of dense layers (float CONV_2D with a 1x1 output, "
                       "FULLY_CONNECTED), memory-bound at batch 1",
            "BinaryAlexNet": "58.6M multiply-accumulates of binary dense layers (LceBconv2d with a 1x1 output), "
                             "memory-bound at batch 1"}
FLAG_MARGIN = 0.10  # an op type may exceed its largest calibrated share of instructions by 10 points


def user_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgebnn" / "calibrations"


def shipped() -> dict:
    return _current(json.loads(resources.files("edgebnn.estimate").joinpath("calibration.json").read_text()),
                    "calibration.json")


def load(path: str | os.PathLike) -> dict:
    """A calibration file; one of format 1 (made before the nested error) is refitted from its stored counts, one
    of format 2 (counted on ``max``) read as format 3 on that core."""
    p = Path(path)
    try:
        cal = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise EdgebnnError(f"calibration {p} cannot be read ({err}): run `edgebnn calibrate --runner PATH`") from None
    return _current(cal, p)


def _current(cal: dict, where) -> dict:
    if cal.get("format") == 1 and isinstance(cal.get("counts"), dict):
        return refit(_per_core(cal))
    if cal.get("format") == 2 and isinstance(cal.get("counts"), dict):
        return _per_core(cal)
    if cal.get("format") != FORMAT:
        raise EdgebnnError(f"calibration {where} has format {cal.get('format')}, this edgebnn reads {FORMAT}: run "
                           "`edgebnn calibrate --runner PATH` again")
    return cal


def _per_core(cal: dict) -> dict:
    """A format-1/2 calibration as format 3: its counts and every board on ``max``, the core they were counted on."""
    boards = {b: {t: {**rec, "cpu": OLD_CPU} for t, rec in per.items()} for b, per in cal.get("boards", {}).items()}
    return {**cal, "format": FORMAT, "counts": {OLD_CPU: cal["counts"]}, "boards": boards}


def board_cpu(cal: dict, board: str) -> str:
    """The QEMU core the calibration's fit for ``board`` was made on (every count for it runs there)."""
    return next(iter(cal["boards"][board].values())).get("cpu", OLD_CPU)


def for_runner(runner_sha: str, path: str | os.PathLike | None = None) -> tuple[dict, list[str]]:
    """The calibration to use for a runner and the warnings to print: ``path`` if given, else the user's own
    calibration of this runner, else the shipped one (with a warning when the runner is another build)."""
    if path:
        cal = load(path)
    else:
        own = user_dir() / f"{runner_sha}.json"
        cal = load(own) if own.is_file() else shipped()
    warnings = []
    if cal["runner_sha256"] != runner_sha:
        warnings.append(f"the runner (sha256 {runner_sha[:12]}...) is not the one calibration {cal['name']!r} was "
                        f"made with ({cal['runner_sha256'][:12]}...): its estimates may be off; run `edgebnn "
                        "calibrate --runner PATH` to calibrate this runner")
    return cal, warnings


def op_type_shares(ops: list[dict]) -> dict[str, float]:
    """Each op type's share of a model's per-op instructions."""
    whole = sum(o["instructions"] for o in ops) or 1.0
    out: dict[str, float] = {}
    for o in ops:
        out[o["node_type"]] = out.get(o["node_type"], 0.0) + o["instructions"] / whole
    return out


DENSE_FACTOR = 2.0  # dense layers may hold up to twice the largest calibrated model's multiply-accumulates


def unseen_ops(ops: list[dict], cal: dict, dense_macs: int = 0) -> list[str]:
    """Flags for a model's per-op rows (see :func:`unseen_shares`) and its dense layers (see :func:`dense_flag`)."""
    return dense_flag(dense_macs, cal) + unseen_shares(op_type_shares(ops), cal)


def dense_flag(macs: int, cal: dict) -> list[str]:
    """A flag when the model's dense layers (``counting.dense_macs``) are far larger than any calibration model's
    (only their classifiers: XNORNet's and BinaryAlexNet's binary dense layers are not)."""
    most = cal.get("max_dense_macs") or 0
    if macs > DENSE_FACTOR * most:
        return [f"dense layers with {macs / 1e6:.1f}M multiply-accumulates (at most {most / 1e6:.1f}M in the "
                "calibration models): at batch 1 they stream every weight once, bound by memory traffic, which "
                "instructions do not measure"]
    return []


def unseen_shares(shares: dict[str, float], cal: dict) -> list[str]:
    """Op types carrying a larger share of this model's instructions than in any calibration model (plus
    ``FLAG_MARGIN``), or types the calibration never ran that carry more than 1%."""
    seen = cal["op_type_max_share"]
    flags = []
    for node_type, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        limit = seen[node_type] + FLAG_MARGIN if node_type in seen else 0.01
        if share > limit:
            where = (f"at most {100 * seen[node_type]:.1f}% in the calibration models" if node_type in seen
                     else "never seen in the calibration models")
            flags.append(f"{node_type} carries {100 * share:.1f}% of the instructions ({where})")
    return flags


def refit(cal: dict) -> dict:
    """The calibration fitted again from the counts it stores (same runner, QEMU and date made; ``refitted``
    today): what ``bench/estimate.py --refit`` writes, and how a format-1 file is read."""
    counts = {cpu: {m: {**c, "ops": []} for m, c in per.items()} for cpu, per in cal["counts"].items()}
    new = build(cal["name"], cal["runner"], counts, cal["qemu"], runner_sha=cal["runner_sha256"],
                cores={b: board_cpu(cal, b) for b in cal["boards"]})
    return {**new, "made": cal.get("made"), "refitted": time.strftime("%Y-%m-%d")}


def build(name: str, runner: str | os.PathLike, counts: dict[str, dict[str, dict]], qemu_version: str,
          runner_sha: str | None = None, cores: dict[str, str] | None = None) -> dict:
    """A calibration from per-core, per-model counts ({core: {Larq Zoo name: ``counting.count_model`` result}}):
    every calibrated board's thread counts fitted with ``fit.choose`` on the models with published figures
    (``EXCLUDED`` left out), counted on the board's core (``cores``: board -> core, default ``boards.toml``'s; a
    board whose core was not counted is left out)."""
    cal = {"format": FORMAT, "name": name, "runner": str(runner), "runner_sha256": runner_sha or sha256(runner),
           "qemu": qemu_version, "made": time.strftime("%Y-%m-%d"),
           "models": "Larq Zoo 2.4.0 architectures, weights=None, 224x224, converted by LCE 0.16.0 (target arm)",
           "excluded": EXCLUDED, "boards": {},
           "counts": {cpu: {m: {"instructions": c["instructions"], "classes": c["classes"],
                                "dense_macs": c.get("dense_macs", 0),
                                "op_types": c.get("op_types") or op_type_shares(c["ops"])}
                            for m, c in per.items()} for cpu, per in counts.items()}}
    shares: dict[str, float] = {}
    for per in cal["counts"].values():
        for m, c in per.items():
            if m not in EXCLUDED:
                for t, s in c["op_types"].items():
                    shares[t] = max(shares.get(t, 0.0), s)
    cal["op_type_max_share"] = shares
    cal["max_dense_macs"] = max((c["dense_macs"] for per in cal["counts"].values() for m, c in per.items()
                                 if m not in EXCLUDED), default=0)
    core = {b.name: b.core for b in boards_mod.load().values()} | (cores or {})
    sets = [(board.name, core[board.name], threads,
             {m: (counts[core[board.name]][m]["classes"], ms) for m, ms in published.items()
              if m in counts.get(core[board.name], {}) and m not in EXCLUDED})
            for board in boards_mod.load().values() for threads, published in board.published.items()]
    donor = None  # the board with the most figures lends its two-group cost ratios to the others
    for name, cpu, threads, data in sorted(sets, key=lambda s: -len(s[3])):
        if len(data) < 3:
            continue
        extra = dict(fit.borrowed_ratio(k, m, donor[0]) for m, k in donor[1].items()) \
            if donor and not donor[0].startswith(name) else {}
        model, record = fit.choose(data, extra)
        cal["boards"].setdefault(name, {})[str(threads)] = {"model": model, "n": len(data), "cpu": cpu, **record}
        if donor is None and len(data) >= 5:
            donor = (f"{name} x{threads}", {m: fit.fit(list(data.values()), g).tolist()
                                            for m, g in fit.MODELS.items() if len(g) == 2})
    if not cal["boards"]:
        raise EdgebnnError("no board has 3 or more calibration models with published figures: nothing to fit")
    return cal


def calibrate(runner, out: str | os.PathLike | None = None, models_dir: str | os.PathLike | None = None,
              models: list[str] | None = None, progress: bool = True, timeout: float = 3600) -> tuple[dict, Path]:
    """``edgebnn calibrate``: build and convert the Larq Zoo models (cached in ``models_dir``), count each under
    QEMU with ``runner`` on every calibrated board's core (once per core), fit every board and write the
    calibration (default: the user's calibration of this
    runner, which estimates then use). Returns the calibration and where it was written."""

    runner = qemu.check_runner(runner)
    qemu.build_plugin()
    cores = sorted({b.core for b in boards_mod.load().values() if b.calibrated})
    for cpu in cores:
        qemu.check_cpu(cpu)
    names = models or list(zoo.ZOO)
    unknown = [m for m in names if m not in zoo.ZOO]
    if unknown:
        raise EdgebnnError(f"unknown Larq Zoo model(s) {', '.join(unknown)}: choose from {', '.join(zoo.ZOO)}")
    folder = Path(models_dir or (qemu.cache_dir() / "zoo")).expanduser()
    counts: dict[str, dict] = {cpu: {} for cpu in cores}
    for name, cpu in progress_bar([(n, c) for n in names for c in cores], desc="calibrating", unit="count",
                                  enable=progress):
        counts[cpu][name] = counting.count_model(runner, zoo.convert(name, folder), timeout=timeout, cpu=cpu)
    sha = sha256(runner)
    cal = build(f"{runner.name} {sha[:12]}", runner, counts, qemu.qemu_version())
    target = Path(out) if out else user_dir() / f"{sha}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(cal, indent=1, sort_keys=True) + "\n")
    return cal, target


def error_line(rec: dict) -> str:
    """The error every estimate of a board x threads states: the whole procedure's, over how many models."""
    return (f"error {rec['error_mean_pct']:.1f}% mean, {rec['error_max_pct']:.1f}% max (nested leave-one-out over "
            f"{rec['error_n']} models)")


def format_loo(cal: dict) -> str:
    """Every board's table: each model held out, the board model chosen and fitted without it (nested
    leave-one-out: published ms, estimate, error, the choice); then each candidate's own leave-one-out."""
    lines = []
    for board, per in cal["boards"].items():
        for threads, rec in sorted(per.items(), key=lambda kv: int(kv[0])):
            lines.append(f"{board} x{threads} (counted on {rec.get('cpu', OLD_CPU)}): {rec['model']} ({rec['n']} "
                         f"models), {error_line(rec)}; the "
                         f"winner's own leave-one-out, chosen with every model in view: {rec['loo_mean_pct']:.1f}% "
                         f"mean, {rec['loo_max_pct']:.1f}% max")
            lines.append(f"  {'held out':<24} {'published':>10} {'estimate':>10} {'error':>8}  board model chosen "
                         "without it")
            for m, v in rec["nested"].items():
                lines.append(f"  {m:<24} {v['published_ms']:8.1f}ms {v['estimate_ms']:8.1f}ms {v['error_pct']:+7.1f}%"
                             f"  {v['chosen']}")
            for name, c in rec["candidates"].items():
                lines.append(f"  candidate {name:<28} leave-one-out mean {c['loo_mean_pct']:5.1f}%  max "
                             f"{c['loo_max_pct']:5.1f}%")
    return "\n".join(lines)
