"""What machine a figure came from. Every printed latency or timing carries this label."""

from __future__ import annotations

import functools
import os
import platform


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The host CPU's model name (from /proc/cpuinfo on Linux, platform elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def host_label() -> str:
    """One line naming this host: architecture, CPU model and core count."""
    return f"{platform.machine()} {cpu_model()}, {os.cpu_count()} cores"
