"""How busy a machine was around a measurement, and why a figure should not be trusted.

Read from Linux's ``/proc`` on the host and on a board alike (the same text, parsed here once): the first
``cpu`` line of ``/proc/stat`` (USER_HZ ticks, 100 per second on Linux), ``/proc/loadavg`` and ``/proc/uptime``,
before and after the benchmark, plus the CPU time the benchmark itself used. Other work during the
measurement, in cores: ``other = (busy_after - busy_before) / HZ - own_cpu_s`` over the wall time,
``busy = total - idle - iowait``.

:func:`flags` turns the statistics and the load into the reasons a figure is untrustworthy, e.g.
``spread: std 25% of median``, ``load: 1.9 cores busy with other work (2 cores)``, ``threads 2 > 0.6 idle
cores``; they are stored with the result and printed beside it.
"""

from __future__ import annotations

from pathlib import Path

HZ = 100  # USER_HZ: /proc/stat's tick on every Linux userland
SPREAD_LIMIT = 0.10  # std over median above which the spread flags a figure
OTHER_LIMIT = 0.25  # cores of other work during the measurement above which the load flags a figure
SCRIPT = "head -n 1 /proc/stat; cat /proc/loadavg /proc/uptime; grep -c ^processor /proc/cpuinfo"


def parse(text: str) -> dict | None:
    """The output of :data:`SCRIPT` -> ``{"busy", "total" (ticks), "loadavg" [1, 5, 15 min], "runnable",
    "uptime_s", "cores"}``; None when it is not there (no /proc, e.g. macOS)."""
    lines = [ln.split() for ln in (text or "").splitlines() if ln.strip()]
    try:
        cpu = next(ln for ln in lines if ln[0] == "cpu")
        ticks = [int(v) for v in cpu[1:]]
        avg = next(ln for ln in lines if len(ln) == 5 and "/" in ln[3])
        uptime = next(ln for ln in lines if len(ln) == 2)
        cores = next(ln for ln in lines if len(ln) == 1 and ln[0].isdigit())
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        return {"busy": sum(ticks) - idle, "total": sum(ticks), "loadavg": [float(v) for v in avg[:3]],
                "runnable": int(avg[3].split("/")[0]), "uptime_s": float(uptime[0]), "cores": int(cores[0])}
    except (StopIteration, ValueError, IndexError):
        return None


def snapshot() -> dict | None:
    """This host's :func:`parse` figures now."""
    try:
        stat = Path("/proc/stat").read_text().splitlines()[0]
        cpus = sum(1 for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("processor"))
        text = "\n".join([stat, Path("/proc/loadavg").read_text(), Path("/proc/uptime").read_text(), str(cpus)])
    except (OSError, IndexError):
        return None
    return parse(text)


def parse_times(text: str) -> float | None:
    """The shell's ``times`` output -> the CPU seconds its children used (second line: user, system)."""
    lines = [ln.split() for ln in (text or "").splitlines() if ln.strip()]
    if len(lines) < 2 or len(lines[1]) < 2:
        return None
    total = 0.0
    for word in lines[1][:2]:
        minutes, _, seconds = word.rstrip("s").partition("m")
        try:
            total += float(minutes) * 60 + float(seconds)
        except ValueError:
            return None
    return total


def around(before: dict | None, after: dict | None, own_cpu_s: float | None) -> dict:
    """What the ``load`` column stores: load averages, runnable tasks, cores, wall time and the cores other
    processes kept busy while the benchmark ran."""
    if not before or not after:
        return {}
    wall = after["uptime_s"] - before["uptime_s"]
    out = {"cores": after["cores"], "loadavg_before": before["loadavg"], "loadavg_after": after["loadavg"],
           "runnable_before": before["runnable"], "wall_s": round(wall, 3)}
    if own_cpu_s is not None and wall > 0:
        busy_s = (after["busy"] - before["busy"]) / HZ
        out["own_cpu_s"] = round(own_cpu_s, 3)
        out["other_cpu_s"] = round(max(busy_s - own_cpu_s, 0.0), 3)
        out["other_cores"] = round(out["other_cpu_s"] / wall, 2)
    return out


def flags(stats: dict, load: dict, threads: int) -> list[str]:
    """Why a figure should not be trusted: a wide spread, other work on the machine, more threads than idle cores."""
    out = []
    median, std = stats.get("median_ms") or stats.get("mean_ms"), stats.get("std_ms")
    if median and std is not None and std > SPREAD_LIMIT * median:
        out.append(f"spread: std {100 * std / median:.0f}% of median")
    cores = load.get("cores")
    other = load.get("other_cores")
    if other is not None and cores:
        if other > OTHER_LIMIT:
            out.append(f"load: {other:.1f} cores busy with other work during the measurement ({cores} cores)")
        idle = cores - other
        if threads > idle + OTHER_LIMIT:
            out.append(f"threads {threads} > {max(idle, 0):.1f} idle cores")
    elif cores and load.get("loadavg_before"):
        runnable = load["loadavg_before"][0]
        if runnable > cores - threads + 0.5:
            out.append(f"load: {runnable:.1f} runnable on {cores} cores")
    if cores and threads > cores:
        out.append(f"threads {threads} > {cores} cores")
    return out
