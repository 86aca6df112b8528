"""Latency profiling: converted models timed on this host (LCE's Python interpreter) and on boards over SSH
(``lce_benchmark_model`` or ``python -m edgebnn.runner``), every result stored in a SQLite database.

``profile(models, devices)`` returns one dict per model x device x threads: status ("measured" or "skipped",
already in the database), model name and sha256, device, threads, min/median/mean/p90/std ms, the machine the
figures came from and which LCE kernels ran, warnings, and the per-op totals when an op profile was taken.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from edgebnn import store, tflite
from edgebnn.devices import board, load, local
from edgebnn.devices import config as devmod
from edgebnn.devices.local import host_facts
from edgebnn.devices.parse import op_totals
from edgebnn.devices.remote import BoardSession, RunFailed, pick_target, runner_spec
from edgebnn.errors import EdgebnnError, OptionError, composed
from edgebnn.estimate import emulated
from edgebnn.estimate.estimate import op_type_totals
from edgebnn.progress import progress_bar
from edgebnn.version import __version__

__all__ = ["profile", "check_device", "DEFAULT_DB", "ProfileFailed"]
DEFAULT_DB = store.DEFAULT_DB
MAX_THREADS = 1024


def _readable_models(models) -> tuple[list[dict], list[str]]:
    """The models that are TFLite flatbuffers, and one line for each that is not: a sweep measures the rest and
    names the bad ones at the end; when none is readable, the first one's error is raised now."""
    infos, invalid = [], []
    for m in models:
        try:
            infos.append(tflite.identify(m))
        except EdgebnnError as err:
            invalid.append(str(err))
    if not infos:
        raise EdgebnnError(invalid[0] if len(invalid) == 1 else f"no model can be read: {'; '.join(invalid)}")
    return infos, invalid


def _stats_from_parsed(parsed: dict) -> dict:
    runs = parsed["runs"]
    pct = parsed.get("percentiles_us") or {}
    warm = parsed.get("warmup") or {}
    first = warm.get("first_us", runs.get("first_us"))
    return {"runs": runs["count"], "warmup": warm.get("count", 0), "min_ms": runs["min_us"] / 1e3,
            "mean_ms": runs["avg_us"] / 1e3, "max_ms": runs["max_us"] / 1e3,
            "std_ms": runs["std_us"] / 1e3 if "std_us" in runs else None,
            "median_ms": pct["median"] / 1e3 if "median" in pct else None,
            "p90_ms": pct["p90"] / 1e3 if "p90" in pct else None,
            "first_ms": first / 1e3 if first is not None else None, "init_ms": parsed.get("init_ms")}


def _versions(extra: dict | None = None) -> dict:
    out = {"edgebnn": __version__, "python": sys.version.split()[0]}
    out.update(extra or {})
    return out


def _public(row: dict, status: str, totals: list[dict] | None = None) -> dict:
    keys = ("model_name", "model_sha256", "model_path", "device", "kind", "threads", "target", "machine", "kernels",
            "runner", "runs", "warmup", "min_ms", "median_ms", "mean_ms", "p90_ms", "std_ms", "max_ms", "first_ms",
            "init_ms", "warnings", "load", "flags", "cpu", "precision")
    out = {"status": status, **{k: row.get(k) for k in keys}}
    out["kind"] = store.kind_of(row)
    if out["kind"] == "estimate":
        out["estimate"], out["flags"] = row.get("estimate") or {}, row.get("flags") or []
    out["temp_before_c"] = (row.get("board") or {}).get("temp_before_c")
    out["temp_after_c"] = (row.get("board") or {}).get("temp_after_c")
    out["flags"] = list(row.get("flags") or [])
    out["load"] = dict(row.get("load") or {})
    out["op_totals"] = totals or []
    return out


class _Sweep:
    """Shared state of one ``profile`` call: the DB path, the progress bar, the collected results."""

    def __init__(self, db, force, total, progress, warn):
        self.db, self.force, self.warn = db, force, warn
        self.lock = threading.Lock()
        self.results: list[dict] = []
        self.failures: list[str | EdgebnnError] = []

        self.bar = progress_bar(total=total, desc="profiling", unit="run", enable=progress)

    def stored(self, conn, model, device, threads, kinds=("board", "host")) -> bool:
        """Whether a measured (or, with ``kinds``, other) result of this model x device x threads is stored; if
        so it is added to the results as skipped."""
        if self.force:
            return False
        rows = [r for r in store.results(conn, model["model_sha256"], device)
                if r["threads"] == threads and r["kind"] in kinds]
        if not rows:
            return False
        self.add(_public(rows[-1], "skipped", store.op_totals(conn, rows[-1]["id"])))
        return True

    def add(self, result: dict) -> None:
        with self.lock:
            self.results.append(result)
            self.bar.update(1)

    def fail(self, message: str | EdgebnnError) -> None:
        with self.lock:
            self.failures.append(message)

    def save(self, conn, row: dict, ops: list[dict] | None = None) -> None:
        """Store one measurement; when the database refuses the write, keep it in the fallback JSON beside it."""
        try:
            store.save(conn, row, ops)
        except store.InvalidResult as err:
            self.fail(str(err))
            return
        except store.WriteFailed as err:
            with self.lock:
                kept = store.save_fallback(self.db, row, ops)
            self.fail(f"{err}; the measurement is kept in {kept}")
        self.add(_public(row, "measured", op_totals(ops or []) if ops else None))


def _profile_local(sweep, models, threads, runs, warmup, op_profile, timeout) -> None:

    conn = store.connect(sweep.db)
    try:
        for model in models:
            for n in threads:
                if sweep.stored(conn, model, "local", n):
                    continue
                try:
                    r = local.profile_file(model["path"], threads=n, runs=runs, warmup=warmup, timeout=timeout)
                except EdgebnnError as err:  # one model's failure (even a crash) ends neither the sweep nor the device
                    sweep.fail(err)
                    break
                warnings = []
                if op_profile:
                    warnings.append("no op profile on device local: LCE's Python interpreter has no per-op timer")
                row = {**model, **{k: r[k] for k in ("min_ms", "median_ms", "mean_ms", "p90_ms", "std_ms", "max_ms",
                                                     "first_ms", "init_ms", "runs", "warmup", "machine", "kernels",
                                                     "runner", "board", "load", "flags")},
                       "device": "local", "threads": n, "target": "host", "warnings": warnings,
                       "versions": _versions(r["versions"])}
                sweep.save(conn, row)
    finally:
        conn.close()


def _board_row(session, model, parsed, device, n, fields, op_profile) -> dict:
    """One board measurement as a results row: statistics, board facts, temperatures, load and flags."""

    board_facts = {**fields["board"], "temp_before_c": parsed["temp_before_c"],
                   "temp_after_c": parsed["temp_after_c"], "throttled_after": parsed["throttled_after"]}
    warnings = list(fields["warnings"])
    if op_profile and not parsed["ops"]:
        warnings.append(f"no op profile from {session.runner.name}: "
                        + (parsed["notes"][-1] if parsed["notes"] else "it printed no Run Order table"))
    notes = [x for x in parsed["notes"] if x.startswith("edgebnn runner")]
    stats = _stats_from_parsed(parsed)
    row = {**model, **stats, **fields, "board": board_facts, "device": device.name, "threads": n,
           "warnings": warnings, "load": parsed.get("load") or {},
           "versions": _versions({"runner_output": notes[0] if notes else session.runner.name})}
    row["flags"] = load.flags(stats, row["load"], n)
    if parsed.get("throttled_after") not in (None, "", "0x0", "throttled=0x0"):
        row["flags"].append(f"throttled: {parsed['throttled_after']}")
    if row["model_size_mb"] is None:
        row["model_size_mb"] = parsed.get("model_size_mb")
    return row


def _profile_ssh(sweep, device, models, threads, runs, warmup, op_profile, runner, target, timeout,
                 connect_timeout) -> None:

    conn = store.connect(sweep.db)
    try:
        todo = [(m, threads) for m in models]
        if threads is not None:
            todo = [(m, [n for n in threads if not sweep.stored(conn, m, device.name, n)]) for m in models]
            todo = [(m, ns) for m, ns in todo if ns]
            if not todo:
                return
        with BoardSession(device, runner=runner, target=target, timeout=timeout, connect_timeout=connect_timeout,
                          warn=lambda w: sweep.warn(w)) as session:
            t = session.target
            default_threads = list(t.threads) if t else [1]
            n_runs = runs if runs is not None else (t.num_runs if t and t.num_runs else 50)
            n_warm = warmup if warmup is not None else (t.warmup_runs if t else 1)
            xnnpack = t.use_xnnpack if t else None
            fields = session.result_fields()
            cores = session.facts.get("cores")
            for n in sorted({n for _, ns in todo for n in (ns or default_threads)}):
                if isinstance(cores, int) and n > cores:
                    sweep.warn(f"--threads {n} is more than the {cores} cores of {device.name}: figures at {n} "
                               "threads measure contention")
            no_ops_said = False
            for model, ns in todo:
                ns = ns if ns is not None else [n for n in default_threads
                                                if not sweep.stored(conn, model, device.name, n)]
                if not ns:
                    continue
                remote = session.upload_model(model["path"], model["model_sha256"])
                for n in ns:
                    try:
                        parsed = session.benchmark(remote, n, n_runs, n_warm, op_profile, use_xnnpack=xnnpack)
                    except RunFailed as err:  # this model's run failed or crashed: the next model still runs
                        sweep.fail(str(err))
                        break
                    row = _board_row(session, model, parsed, device, n, fields, op_profile)
                    if op_profile and not parsed["ops"] and not no_ops_said:
                        sweep.warn(f"--op-profile: {row['warnings'][-1]}; the timings are whole-model only")
                        no_ops_said = True
                    sweep.save(conn, row, parsed["ops"])
                session.remove(remote)
    finally:
        conn.close()


def _profile_qemu(sweep, models, threads, runner, timeout, cpu: str | None = None) -> None:
    """Device qemu:aarch64[:CPU]: count each model under QEMU on each board's core (only CPU's boards when named),
    store an estimated row per calibrated board x threads (never the emulated wall time); an uncalibrated board's
    instructions are said, not stored."""

    job = emulated.plan(runner, threads, cpu=cpu)
    with sweep.lock:  # the sweep counted one row per thread count; qemu:aarch64 gives one per board x threads
        sweep.bar.total = (sweep.bar.total or 0) + len(models) * (len(job["pairs"]) - len(threads or [1]))
    for w in job["warnings"]:
        sweep.warn(w)
    conn, failed = store.connect(sweep.db), []
    try:
        for model in models:
            if not sweep.force and not job["count_only"] and all(
                    store.exists(conn, model["model_sha256"], board, n, "estimate") for board, n in job["pairs"]):
                for board, n in job["pairs"]:
                    sweep.stored(conn, model, board, n, kinds=("estimate",))
                continue
            try:
                rows, counted = emulated.estimate_all(model, job, timeout=timeout)
            except EdgebnnError as err:  # one model's failure does not end the sweep
                failed.append(composed(f"{model['model_name']} on qemu:aarch64: ", err))
                continue
            for row, ops in rows:
                store.save(conn, row, ops)
                top = sorted(ops, key=lambda o: -o["instructions"])[:5]
                sweep.add({**_public(row, "estimated", op_type_totals(ops)), "top_ops": top})
            for rec in counted:
                sweep.warn(f"{rec['estimate']['source']}; not stored")
    finally:
        conn.close()
    if failed:
        raise composed(*[part for i, f in enumerate(failed) for part in ([f] if i == 0 else ["; ", f])])


def profile(models, devices=("local",), threads=None, runs=None, warmup=None, op_profile=False,
            db=DEFAULT_DB, force=False, runner=None, target=None, timeout=600, connect_timeout=10,
            devices_file=None, ssh_config=None, progress=False, warn=None) -> list[dict]:
    """Profile every model on every device (boards in parallel, one thread each) at each thread count.

    ``threads``: a list of counts (default: the target profile's, 1 on the host). ``runs``/``warmup``: measured
    and warm-up inferences (default: the target profile's). A stored model x device x threads is skipped unless
    ``force``. Each result is committed as soon as it is measured; when a device fails, the others carry on and
    an :class:`EdgebnnError` naming every failure is raised at the end (what finished stays stored).
    """

    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    _check_numbers([int(t) for t in threads] if threads else None, runs, warmup, timeout)
    if not models:
        raise EdgebnnError("no model given: pass one or more .tflite files")
    infos, invalid = _readable_models(models)
    resolved = []
    for spec in devices or ("local",):
        dev = devmod.resolve(spec, devices_file, ssh_config=ssh_config)
        if dev.name not in [d.name for d in resolved]:
            resolved.append(dev)
    threads = [int(t) for t in threads] if threads else None
    store.check_writable(db)  # a bad or read-only --db fails here, before anything is measured
    if threads and any(d.kind == "local" for d in resolved):

        cores = os.cpu_count() or 1
        if max(threads) > cores:
            warn(f"--threads {max(threads)} is more than this host's {cores} cores: figures above {cores} threads "
                 "measure contention, not speed")
    if op_profile and any(d.kind == "qemu" for d in resolved):
        warn("--op-profile: an emulated device counts whole-model instructions only; it has no per-op timings")
    if op_profile and any(d.kind == "local" for d in resolved):
        warn("--op-profile: device local cannot profile per op (LCE's Python interpreter has no per-op timer); "
             "its timings are whole-model only")
    total = len(infos) * sum(len(threads or [1]) for _ in resolved)
    sweep = _Sweep(db, force, total, progress, warn)
    for message in invalid:  # named at the end with the other failures; the valid models are measured first
        sweep.fail(message)

    def job(dev):
        try:
            if dev.kind == "local":
                local_runs = runs if runs is not None else 20
                local_warm = warmup if warmup is not None else 3
                _profile_local(sweep, infos, threads or [1], local_runs, local_warm, op_profile, timeout)
            elif dev.kind == "qemu":
                _profile_qemu(sweep, infos, threads, runner, timeout, dev.cpu)
            else:
                _profile_ssh(sweep, dev, infos, threads, runs, warmup, op_profile, runner, target, timeout,
                             connect_timeout)
        except EdgebnnError as err:
            sweep.fail(err)

    started = time.monotonic()
    if len(resolved) == 1:
        job(resolved[0])
    else:
        with ThreadPoolExecutor(max_workers=len(resolved)) as pool:
            list(pool.map(job, resolved))
    sweep.bar.close()
    for r in sweep.results:
        r["elapsed_s"] = round(time.monotonic() - started, 3)
    if sweep.failures:
        raise ProfileFailed(sweep.failures, sweep.results, db)
    return sweep.results


def _check_numbers(threads, runs, warmup, timeout) -> None:
    """Counts and seconds a user gives, refused before anything runs."""
    if threads is not None and any(not 1 <= t <= MAX_THREADS for t in threads):
        raise OptionError("{threads} takes counts from 1 to {most}, e.g. {threads:=1,4}", most=MAX_THREADS)
    if runs is not None and not 1 <= runs <= 1_000_000:
        raise OptionError("{runs} must be from 1 to 1000000")
    if warmup is not None and not 0 <= warmup <= 1_000_000:
        raise OptionError("{warmup} must be from 0 to 1000000")
    if timeout is not None and not 0 < timeout <= 7 * 24 * 3600:
        raise OptionError("{timeout} must be a number of seconds above 0 (and at most a week)")


class ProfileFailed(OptionError):
    """Some runs failed; the others were measured and stored (``results``), and the message names every failure
    (``failures``, one line each), keeping the parameters the failures name (an :class:`OptionError`'s)."""

    def __init__(self, failures: list[str | EdgebnnError], results: list[dict], db):
        done = sum(1 for r in results if r["status"] == "measured")
        kept = f" ({done} other result(s) measured and stored in {db})" if done else ""
        parts = failures[:1] if len(failures) == 1 else [f"{len(failures)} runs failed: ", failures[0]]
        for f in failures[1:]:
            parts += ["; ", f]
        joined = composed(*parts, kept)
        template, values = ((joined.template, joined.values) if isinstance(joined, OptionError)
                            else ("{message}", {"message": str(joined)}))
        super().__init__(template, **values)
        self.failures, self.results, self.db = [str(f) for f in failures], results, db

    def __reduce__(self):
        return type(self), (self.failures, self.results, self.db)


def check_device(name: str, runner: str | None = None, target: str | None = None, devices_file=None,
                 ssh_config=None, connect_timeout: int = 10) -> dict:
    """Board facts of one device and the problems/warnings the checks find (nothing is uploaded or run)."""

    dev = devmod.resolve(name, devices_file, ssh_config=ssh_config)
    if dev.kind == "local":
        return {"device": "local", "facts": host_facts(), "problems": [], "warnings": [],
                "target": None, "runner": "LCE Python interpreter (child process)"}
    if dev.kind == "qemu":

        job = emulated.plan(runner, cpu=dev.cpu)
        cores = "; ".join(f"{cpu} for {', '.join(names)}" for cpu, names in job["cores"].items())
        return {"device": dev.name, "facts": {"label": f"{host_facts()['label']}, emulating aarch64 with QEMU"},
                "problems": [], "warnings": job["warnings"], "target": "arm64",
                "runner": f"{job['runner']} (estimates for "
                          f"{', '.join(f'{b} x{n}' for b, n in job['pairs']) or 'no calibrated board'}; counted on "
                          f"{cores})"}
    session = BoardSession(dev, runner=runner, target=target, connect_timeout=connect_timeout)
    try:
        facts = session.facts_only(session.runner_text)
        tgt = pick_target(facts, session.target_name)
        runner_text = session.runner_text or (tgt.runner if tgt else None)
        if runner_text and not session.runner_text:
            facts = session.facts_only(runner_text)
    finally:
        session.close()
    problems, warnings = [], []
    head = None
    if runner_text:
        spec = runner_spec(runner_text)
        if spec.local_file is not None:
            head = spec.local_file.open("rb").read(20)
            runner_text = f"{runner_text} (local file, uploaded unless the board has the same build)"
        elif not facts.get("runner_path"):
            problems.append(f"runner {spec.words[0]} not found on {session.url}: install it there or give the "
                            "runner as a local build to upload")
        else:
            head = facts.get("runner_head")
        p, warnings = board.check(facts, tgt, head if spec.checks_elf else None, runner_name=spec.name,
                                  where=session.url)
        problems += p
    elif tgt is None:
        problems.append(f"no target profile matches {facts.get('machine')}: name the target")
    shown = {k: v for k, v in facts.items() if k != "runner_head"}
    return {"device": dev.name, "ssh": session.url, "notes": dev.notes, "facts": shown, "problems": problems,
            "warnings": warnings, "target": tgt.name if tgt else None, "runner": runner_text}
