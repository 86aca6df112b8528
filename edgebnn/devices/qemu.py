"""Running an aarch64 program under QEMU user-mode emulation, with or without edgebnn's counting plugin.

``run_emulated`` runs ``qemu-aarch64 RUNNER ARGS`` in a scratch folder and returns what it printed (the
``--verify-on`` proof uses it too). ``run_counted`` adds the TCG plugin ``insn_count.c`` (compiled on first use
with the system C compiler into ``$XDG_CACHE_HOME/edgebnn/`` or ``~/.cache/edgebnn/``, keyed by the source's
sha256 and QEMU's version; where that cannot be written, into a private ``edgebnn-cache-UID`` folder in the temp
folder) and returns the counts it wrote. The emulator dies with the process that started it, and its scratch
folders name that process (``edgebnn.devices.cleanup``), so a run killed outright leaves nothing running.
Only Debian's dynamic ``qemu-aarch64`` loads plugins (``qemu-aarch64-static`` does not). The plugin speaks plugin
API version 1 (QEMU 7.x and 8.x, checked here on 7.2); other versions are refused in one line.

Both run under one emulated core, ``qemu-aarch64 -cpu CPU`` (checked against ``qemu-aarch64 -cpu help``), by default
``cortex-a72`` (``DEFAULT_CPU``: the Raspberry Pi 4B's core, ARMv8.0-A). QEMU's own default, ``max``, has the
dot-product (SDOT) and SVE instructions that no calibrated board has: int8 convolutions run 20.1 M instructions there
against 49.5 M on cortex-a72 (Bi-Real-18's real-valued convs at 224 px), so counts are made on the board's core.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from edgebnn.devices.board import elf_truncated
from edgebnn.devices.elf import EM_AARCH64
from edgebnn.devices.scratch import die_with_parent, owned_tempdir
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.inputs import regular_file

QEMU = "qemu-aarch64"
DEFAULT_CPU = "cortex-a72"  # the Pi 4B's core; QEMU's `max` has SDOT and SVE, which no calibrated board has
SUPPORTED_MAJOR = (7, 8)  # plugin API version 1 (QEMU 9.0 moved to version 2)
_INSTALL_HINT = "install Debian's qemu-user (apt-get install qemu-user) or put qemu-aarch64 on PATH"


def find_qemu() -> str:
    """Path of ``qemu-aarch64`` (``$EDGEBNN_QEMU`` first, then PATH)."""
    exe = os.environ.get("EDGEBNN_QEMU") or shutil.which(QEMU)
    if not exe or not Path(exe).exists():
        raise EdgebnnError(f"{QEMU} not found: {_INSTALL_HINT}")
    return exe


def qemu_version(exe: str | None = None) -> str:
    """QEMU's version, e.g. ``7.2.22``, from ``qemu-aarch64 --version``."""
    exe = exe or find_qemu()
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EdgebnnError(f"{exe} --version failed ({err}): {_INSTALL_HINT}") from None
    m = re.search(r"version (\d+\.\d+(?:\.\d+)?)", out)
    if not m:
        raise EdgebnnError(f"{exe} --version printed no version ({out.strip()[:80]!r}): {_INSTALL_HINT}")
    return m.group(1)


def check_plugin_api(version: str) -> None:
    """Refuse, in one line, a QEMU whose plugin API this plugin does not speak."""
    major = int(version.split(".")[0])
    if major not in SUPPORTED_MAJOR:
        raise EdgebnnError(f"QEMU {version} is not supported for instruction counting: edgebnn's plugin speaks "
                           f"plugin API version 1 (QEMU {SUPPORTED_MAJOR[0]}.x-{SUPPORTED_MAJOR[-1]}.x, checked on "
                           "7.2 as in Debian 12); point EDGEBNN_QEMU at such a qemu-aarch64")


_CPUS: dict[str, tuple[str, ...]] = {}


def cpu_models(exe: str | None = None) -> tuple[str, ...]:
    """The CPU models ``qemu-aarch64 -cpu help`` lists (``cortex-a57``, ``cortex-a72``, ``cortex-a76``, ``max``...)."""
    exe = exe or find_qemu()
    if exe not in _CPUS:
        try:
            out = subprocess.run([exe, "-cpu", "help"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as err:
            raise EdgebnnError(f"{exe} -cpu help failed ({err}): {_INSTALL_HINT}") from None
        _CPUS[exe] = tuple(ln.split()[0] for ln in out.splitlines()[1:] if ln.strip())
    return _CPUS[exe]


def check_cpu(cpu: str, exe: str | None = None) -> str:
    """``cpu`` when ``qemu-aarch64 -cpu help`` lists it, else one line naming the ones it does."""
    known = cpu_models(exe)
    if cpu not in known:
        raise EdgebnnError(f"unknown QEMU CPU {cpu!r}: {QEMU} -cpu help lists {', '.join(known) or 'none'}")
    return cpu


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgebnn"


def plugin_source() -> bytes:
    return resources.files("edgebnn.devices").joinpath("insn_count.c").read_bytes()


def _private_temp_cache() -> Path:
    """``edgebnn-cache-UID`` in the temp folder, made private (0700) or checked to be this user's and private."""
    folder = Path(tempfile.gettempdir()) / f"edgebnn-cache-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError as err:
        raise EdgebnnError(f"cannot make {folder} for the instruction-counting plugin ({err.strerror}) after "
                           f"{cache_dir()} could not be written: make one of them writable or set XDG_CACHE_HOME"
                           ) from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise EdgebnnError(f"{folder} is not a private folder of yours (a link, another user's, or open to others), "
                           f"and {cache_dir()} cannot be written: remove it or set XDG_CACHE_HOME to a writable folder")
    return folder


def _compile_plugin(src: bytes, out: Path) -> None:
    """Compile the plugin's source into ``out`` (through a scratch folder beside it, then an atomic rename)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise EdgebnnError("no C compiler found to build the instruction-counting plugin: install gcc (apt-get "
                           "install gcc) or set CC")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        c_file = Path(tmp) / "insn_count.c"
        c_file.write_bytes(src)
        so = Path(tmp) / out.name
        proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(so), str(c_file),
                               "-lpthread"], capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise EdgebnnError(f"building the instruction-counting plugin with {cc} failed: {last}")
        os.replace(so, out)


def build_plugin(version: str | None = None) -> Path:
    """The compiled counting plugin for this QEMU, built into the cache when not there yet (into a private temp
    folder when the cache cannot be written: a read-only home)."""
    version = version or qemu_version()
    check_plugin_api(version)
    src = plugin_source()
    name = f"insn_count-{hashlib.sha256(src).hexdigest()[:16]}-qemu{version}.so"
    out = cache_dir() / name
    if out.is_file():
        return out
    try:
        _compile_plugin(src, out)
        return out
    except OSError:  # the cache folder cannot be made or written
        pass
    out = _private_temp_cache() / name
    if not out.is_file():
        try:
            _compile_plugin(src, out)
        except OSError as err:
            raise EdgebnnError(f"cannot write the instruction-counting plugin into {cache_dir()} nor {out.parent} "
                               f"({err.strerror}): make one of them writable or set XDG_CACHE_HOME") from None
    return out


def check_runner(runner: str | os.PathLike) -> Path:
    """The runner as a whole aarch64 ELF file, or one clear error (missing, a folder, a FIFO, unreadable, another
    machine's, cut short)."""

    hint = "pass {runner:=PATH} to an lce_benchmark_model_aarch64 (LCE's release asset)"
    path = regular_file(Path(runner).expanduser(), "runner", if_folder=hint, if_missing=hint, if_other=hint)
    try:
        head = path.open("rb").read(20)
        cut = elf_truncated(path)
    except OSError as err:
        raise EdgebnnError(f"cannot read runner {path}: {err.strerror}") from None
    if head[:4] != b"\x7fELF" or int.from_bytes(head[18:20], "little") != EM_AARCH64:
        raise EdgebnnError(f"runner {path} is not an aarch64 Linux program: pass lce_benchmark_model_aarch64")
    if cut:
        raise EdgebnnError(f"runner {path} {cut}: the copy is incomplete; download lce_benchmark_model_aarch64 "
                           "again")
    return path.resolve()


def run_emulated(runner, args, files_in=None, files_out=(), timeout: float = 600, plugin: str | None = None,
                 cwd: str | os.PathLike | None = None, cpu: str = DEFAULT_CPU) -> dict:
    """Run ``qemu-aarch64 -cpu CPU [-plugin PLUGIN] RUNNER ARGS`` in a scratch folder.

    ``cpu``: the emulated core (``DEFAULT_CPU``, cortex-a72, the Pi 4B's, unless named; see the module's text).
    ``files_in``: {name: local path} placed in the folder (so ARGS can name them); ``files_out``: names read back
    after the run. Returns {stdout, stderr, rc, files: {name: bytes}} (an output file missing is left out).
    Emulated wall time is never latency: nothing here times anything.
    """

    exe = find_qemu()
    runner = check_runner(runner)
    check_cpu(cpu, exe)
    with owned_tempdir("qemu") as tmp:
        work = Path(cwd) if cwd else Path(tmp)
        for name, src in (files_in or {}).items():
            dst = work / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        cmd = [exe, "-cpu", cpu] + (["-plugin", plugin] if plugin else []) + [str(runner)] + [str(a) for a in args]
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout,
                                  errors="replace", stdin=subprocess.DEVNULL, preexec_fn=die_with_parent())
        except subprocess.TimeoutExpired:
            raise OptionError("{name} under {qemu} did not finish in {limit:.0f} s: pass a longer {timeout} or a "
                              "smaller model", name=runner.name, qemu=QEMU, limit=timeout) from None
        files = {n: (work / n).read_bytes() for n in files_out if (work / n).is_file()}
    return {"stdout": proc.stdout, "stderr": proc.stderr, "rc": proc.returncode, "files": files, "cmd": cmd}


@dataclass
class Counts:
    """What the plugin wrote for one run: instructions per vCPU, per translated block and at each marker hit."""

    vcpus: dict[int, int]
    blocks: list[tuple[int, int, int]] = field(default_factory=list)  # (pc, instructions, executions)
    marks: list[tuple[int, int, int, int]] = field(default_factory=list)  # (id, vcpu, vcpu count, total)

    @property
    def total(self) -> int:
        return sum(self.vcpus.values())


def parse_counts(text: str) -> Counts:
    """Read the plugin's output file (see insn_count.c)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("edgebnn-insn-count ") or lines[-1] != "end":
        raise EdgebnnError("the instruction-counting plugin wrote no complete output: the runner was killed or "
                           "QEMU did not load the plugin")
    out = Counts(vcpus={})
    for line in lines[1:-1]:
        kind, *rest = line.split()
        if kind == "vcpu":
            out.vcpus[int(rest[0])] = int(rest[1])
        elif kind == "tb":
            out.blocks.append((int(rest[0], 16), int(rest[1]), int(rest[2])))
        elif kind == "mark":
            out.marks.append(tuple(int(x) for x in rest))
    return out


def run_counted(runner, args, marks: list = (), timeout: float = 600, cpu: str = DEFAULT_CPU) -> tuple[Counts, dict]:
    """Run the runner under the counting plugin on QEMU core ``cpu``; returns the counts and the run (stdout, stderr,
    rc; ``cmd``, the command line).

    ``marks``: function entry addresses whose every execution is logged with the running counts, or
    (address, True) for a secondary marker, logged only at its first hit after a primary one."""
    version = qemu_version()
    plugin = build_plugin(version)

    with owned_tempdir("count") as tmp:
        out = Path(tmp) / "counts.txt"
        spec = f"{plugin},out={out}"
        if marks:
            lines = [f"{m[0]:x} s" if isinstance(m, tuple) and m[1] else f"{m if isinstance(m, int) else m[0]:x}"
                     for m in marks]
            (Path(tmp) / "marks.txt").write_text("\n".join(lines) + "\n")
            spec += f",marks={Path(tmp) / 'marks.txt'}"
        run = run_emulated(runner, args, timeout=timeout, plugin=spec, cwd=tmp, cpu=cpu)
        if "unknown option 'plugin'" in run["stderr"]:
            raise EdgebnnError(f"{find_qemu()} cannot load plugins (a static build such as qemu-aarch64-static "
                               f"cannot): {_INSTALL_HINT} for the dynamic one")
        if run["rc"] != 0:
            last = [ln for ln in (run["stderr"] + run["stdout"]).splitlines() if ln.strip()]
            raise EdgebnnError(f"{Path(runner).name} under {QEMU} failed (exit {run['rc']}): "
                               f"{last[-1] if last else 'no output'}")
        if not out.is_file():
            raise EdgebnnError(f"{QEMU} {version} did not load the counting plugin: "
                               f"{(run['stderr'].strip().splitlines() or ['no message'])[-1]}")
        counts = parse_counts(out.read_text())
    return counts, run
