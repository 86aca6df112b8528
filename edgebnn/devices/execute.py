"""A device's ``lce_benchmark_model`` run with flags and files, the same way on every device that has one.

:func:`open_runner` gives a context manager with

- ``where``: the device and what it is (the board's label, or the emulator and this host);
- ``emulated``: whether the runner's aarch64 code runs under emulation (its wall time is never latency);
- ``run(flags, files_in, files_out, timeout)`` -> ``{stdout, stderr, rc, files}``: the runner with ``flags`` in a
  scratch folder holding ``files_in`` ({name: local path}, so the flags can name them); the ``files_out`` it wrote
  read back as bytes (one it did not write is left out).

Devices: a board over SSH (``ssh://...`` or a devices.toml name: a
:class:`~edgebnn.devices.remote.BoardSession`, the runner uploaded and checked by sha256 when the board lacks
it), and ``qemu:aarch64[:CPU]`` (``qemu-aarch64 -cpu CPU RUNNER`` on this host, cortex-a72 unless CPU is named,
:func:`edgebnn.devices.qemu.run_emulated`).
``local`` runs LCE's Python interpreter, not a runner, and is refused.
"""

from __future__ import annotations

from pathlib import Path

from edgebnn.devices import config as devices
from edgebnn.devices.qemu import DEFAULT_CPU, check_cpu, check_runner, find_qemu, run_emulated
from edgebnn.devices.remote import BoardSession
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.machine import host_label

RUNNER_HINT = "pass {runner:=PATH} to an lce_benchmark_model_aarch64 (LCE's release asset)"


class QemuRunner:
    """``qemu:aarch64``: the aarch64 runner under QEMU user-mode emulation on this host."""

    emulated = True

    def __init__(self, name: str, runner: str | None, cpu: str | None = None):

        if not runner:
            raise OptionError("device {name} needs a runner: " + RUNNER_HINT, name=name)
        self.runner = check_runner(runner)
        self.qemu = find_qemu()
        self.cpu = check_cpu(cpu or DEFAULT_CPU, self.qemu)  # cortex-a72 (the Pi 4B's core) unless named
        self.name = name
        self.where = (f"{name} ({self.runner.name} under {Path(self.qemu).name} -cpu {self.cpu} on {host_label()}, "
                      "emulated)")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, flags: list[str], files_in: dict | None = None, files_out=(), timeout: float = 600) -> dict:

        return run_emulated(self.runner, flags, files_in=files_in, files_out=files_out, timeout=timeout,
                            cpu=self.cpu)


class SshRunner:
    """A board over SSH: one session (facts, checks, work directory) for every run, closed on exit."""

    def __init__(self, device, runner: str | None, timeout: float, connect_timeout: int, warn=None):

        self.name = device.name
        self.session = BoardSession(device, runner=runner, timeout=timeout, connect_timeout=connect_timeout,
                                    warn=warn)
        self.where = self.name
        self.emulated = False

    def __enter__(self):
        self.session.__enter__()
        facts = self.session.facts
        self.where = f"{self.name} ({facts.get('label') or facts.get('machine')})"
        self.emulated = bool(facts.get("emulator"))
        return self

    def __exit__(self, *exc):
        self.session.close()

    def run(self, flags: list[str], files_in: dict | None = None, files_out=(), timeout: float = 600) -> dict:
        return self.session.run_files(flags, files_in=files_in, files_out=files_out, timeout=timeout)


def open_runner(spec: str, runner: str | None = None, devices_file=None, ssh_config: str | None = None,
                timeout: float = 600, connect_timeout: int = 10, warn=None):
    """The device ``spec`` (``qemu:aarch64``, ``ssh://user@host[:port]`` or a devices.toml name) as a runner host."""

    device = devices.resolve(spec, devices_file, ssh_config=ssh_config)
    if device.kind == "qemu":
        return QemuRunner(device.name, runner or device.runner, device.cpu)
    if device.kind == "ssh":
        return SshRunner(device, runner, timeout, connect_timeout, warn)
    raise EdgebnnError(f"device {spec} runs no lce_benchmark_model (its proof is convert's own, on LCE's Python "
                       "interpreter): use a board (ssh://USER@HOST or a devices.toml name) or qemu:aarch64")
