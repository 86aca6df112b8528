"""Board facts and the checks made before running anything on a board.

Facts come from one POSIX shell script run on the board: ``uname -m``, board model (``/proc/device-tree/model``
or DMI), CPU model and cores, governor and current frequency, temperature, ``vcgencmd get_throttled``, glibc,
``getconf LONG_BIT``, OS (``/etc/os-release``), free memory, and signs of user-mode emulation. Checks: the runner's
ELF ``e_machine`` against the board's userland, the board's glibc against the target's ``min_glibc``, a 32-bit OS
under an arm64 target (errors); a governor other than ``performance``, throttling and emulation (warnings).

Emulation (an aarch64 userland run by ``qemu-aarch64`` through binfmt_misc on an x86 host, as the test board is)
is read from the board itself: the kernel's link ``/proc/<shell pid>/exe`` names the program really running the
shell (QEMU intercepts only ``/proc/self/exe``), and an x86 ``vendor_id`` in ``/proc/cpuinfo`` under an ARM
``uname -m`` shows the kernel is not the userland's. Such a board's wall time is emulated, never ARM latency.
"""

from __future__ import annotations

import os
import re
import shlex
import struct

from edgebnn.errors import EdgebnnError

# ELF e_machine numbers (ELF spec / <elf.h>) and the ``uname -m`` values whose userland runs them.
ELF_MACHINES = {3: "x86", 8: "mips", 20: "ppc", 21: "ppc64", 40: "arm", 62: "x86_64", 183: "aarch64",
                243: "riscv"}
_UNAME_ELF = {"x86_64": 62, "amd64": 62, "i386": 3, "i686": 3, "aarch64": 183, "arm64": 183, "armv7l": 40,
              "armv8l": 40, "armv6l": 40, "armv7": 40, "riscv64": 243, "ppc64le": 21, "mips": 8}
_ARM_PARTS = {"0xc07": "Cortex-A7", "0xc08": "Cortex-A8", "0xc09": "Cortex-A9", "0xc0f": "Cortex-A15",
              "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
              "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
              "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
              "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd4b": "Cortex-A78C",
              "0xb76": "ARM1176"}
THERMAL = "/sys/class/thermal/thermal_zone0/temp"


def _section(name: str, command: str) -> str:
    return f"echo '@@{name}'; {{ {command} ; }} 2>/dev/null"


def temperature_script(name: str) -> str:
    """Shell lines printing the SoC temperature (milli-degrees) and throttling state under ``@@name``."""
    return "; ".join([_section(f"temp_{name}", f"cat {THERMAL}"),
                      _section(f"throttled_{name}", "command -v vcgencmd >/dev/null && vcgencmd get_throttled")])


def facts_script(runner_word: str | None = None) -> str:
    """The one shell script that prints every board fact, section by section (``@@name`` then lines).
    ``runner_word`` (already shell-quoted) is looked up on the board too, with its first 20 bytes."""
    parts = [
        _section("machine", "uname -m"),
        _section("kernel", "uname -sr"),
        _section("hostname", "uname -n"),
        _section("model", "if [ -r /proc/device-tree/model ]; then tr -d '\\000' < /proc/device-tree/model; "
                          "echo; elif [ -r /sys/class/dmi/id/product_name ]; then "
                          "printf '%s %s\\n' \"$(cat /sys/class/dmi/id/sys_vendor)\" "
                          "\"$(cat /sys/class/dmi/id/product_name)\"; fi"),
        _section("lscpu", "LC_ALL=C lscpu | grep -E '^(Model name|Vendor ID):'"),
        _section("cpuinfo", "grep -E '^(model name|Model|Hardware|CPU part|CPU implementer)[[:space:]]*:' "
                            "/proc/cpuinfo | sort -u"),
        _section("sysctl_cpu", "sysctl -n machdep.cpu.brand_string"),
        _section("cores", "nproc || getconf _NPROCESSORS_ONLN"),
        _section("governor", "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        _section("cur_freq", "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"),
        _section("max_freq", "cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq"),
        temperature_script("before"),
        _section("glibc", "getconf GNU_LIBC_VERSION || ldd --version 2>&1 | head -n 1"),
        _section("long_bit", "getconf LONG_BIT"),
        _section("os", "sed -n 's/^PRETTY_NAME=//p' /etc/os-release | tr -d '\"' || sw_vers -productVersion"),
        _section("mem_available_kb", "awk '/^MemAvailable:/ {print $2}' /proc/meminfo"),
        _section("mem_total_kb", "awk '/^MemTotal:/ {print $2}' /proc/meminfo"),
        _section("has_timeout", "command -v timeout"),
        _section("has_sha256sum", "command -v sha256sum || command -v shasum"),
        _section("shell_exe", "readlink /proc/$$/exe"),
        _section("cpu_vendor", "grep -m1 '^vendor_id' /proc/cpuinfo"),
    ]
    if runner_word:
        parts += [_section("runner", f"command -v {runner_word}"),
                  _section("runner_head", f"od -An -v -tx1 -N20 \"$(command -v {runner_word})\"")]
    return "; ".join(parts) + "; exit 0"


def sections(text: str) -> dict[str, str]:
    """``@@name`` sections of a script's output -> {name: text}."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@") and " " not in line.strip():
            current = line[2:].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return {k: "\n".join(v).strip() for k, v in out.items()}


def _int(text: str | None) -> int | None:
    try:
        return int(str(text).split()[0])
    except (ValueError, IndexError, TypeError):
        return None


def temperature_c(text: str | None) -> float | None:
    value = _int(text)
    return None if value is None else (value / 1000.0 if abs(value) > 200 else float(value))


def glibc_version(text: str) -> str:
    """'glibc 2.36' / 'ldd (Debian GLIBC 2.36-9) 2.36' -> '2.36'; '' when none is found (musl, macOS)."""

    if not text or ("glibc" not in text.lower() and "gnu libc" not in text.lower()):
        return ""
    nums = re.findall(r"\b(\d+\.\d+)(?:\.\d+)?\b", text)
    return nums[-1] if nums else ""


def _cpu_model(s: dict) -> str:
    for line in s.get("lscpu", "").splitlines():
        if line.startswith("Model name:") and line.split(":", 1)[1].strip() not in ("", "-"):
            return line.split(":", 1)[1].strip()
    info = {}
    for line in s.get("cpuinfo", "").splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    if info.get("model name"):
        return info["model name"]
    part = info.get("CPU part", "").lower()
    if part in _ARM_PARTS and info.get("CPU implementer", "0x41").lower() == "0x41":
        return _ARM_PARTS[part]
    return s.get("sysctl_cpu") or info.get("Hardware") or info.get("Model") or "unknown CPU"


def parse_facts(text: str) -> dict:
    """The facts script's output -> a dict (None where the board does not say)."""
    s = sections(text)
    machine = s.get("machine", "").strip()
    if not machine:
        raise EdgebnnError("the board did not report `uname -m`: is it a POSIX system with a sh-compatible shell?")
    cur = _int(s.get("cur_freq"))
    facts = {
        "machine": machine, "kernel": s.get("kernel") or None, "hostname": s.get("hostname") or None,
        "model": s.get("model") or None, "cpu": _cpu_model(s), "cores": _int(s.get("cores")),
        "governor": s.get("governor") or None, "cur_freq_mhz": cur / 1000.0 if cur else None,
        "max_freq_mhz": (_int(s.get("max_freq")) or 0) / 1000.0 or None,
        "temp_before_c": temperature_c(s.get("temp_before")), "throttled": s.get("throttled_before") or None,
        "glibc": glibc_version(s.get("glibc", "")), "long_bit": _int(s.get("long_bit")),
        "os": s.get("os") or None, "mem_available_mb": (_int(s.get("mem_available_kb")) or 0) / 1024.0 or None,
        "mem_total_mb": (_int(s.get("mem_total_kb")) or 0) / 1024.0 or None,
        "has_timeout": bool(s.get("has_timeout")), "sha256_tool": (s.get("has_sha256sum") or "").split("/")[-1],
    }
    if "runner" in s:
        facts["runner_path"] = s["runner"].splitlines()[0] if s["runner"] else None
        head = s.get("runner_head", "")
        facts["runner_head"] = bytes(int(h, 16) for h in head.split()) if head and facts["runner_path"] else b""
    facts["emulator"] = emulator(s, machine)
    facts["label"] = label(facts)
    return facts


def emulator(s: dict, machine: str) -> str | None:
    """Why the board's ``machine`` runs emulated (from the facts script's sections), or None."""
    exe = (s.get("shell_exe") or "").strip()
    if "qemu" in exe.rsplit("/", 1)[-1]:
        return f"its shell runs inside {exe}"
    vendor = (s.get("cpu_vendor") or "").partition(":")[2].strip()
    if machine in _UNAME_ELF and _UNAME_ELF[machine] not in (3, 62) and vendor in ("GenuineIntel", "AuthenticAMD"):
        return f"uname -m says {machine} but the kernel's CPU is {vendor} x86"
    return None


def label(facts: dict) -> str:
    """One line naming the board, like machine.host_label(): machine, CPU, cores (board model)."""
    text = f"{facts.get('machine') or '?'} {facts.get('cpu') or 'unknown CPU'}"
    if facts.get("cores"):
        text += f", {facts['cores']} cores"
    text += f" ({facts['model']})" if facts.get("model") else ""
    return text + (" [emulated]" if facts.get("emulator") else "")


def elf_machine(head: bytes) -> tuple[int, int] | None:
    """(e_machine, bits) from the first 20 bytes of a file, or None when it is not an ELF file."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    order = "little" if head[5] != 2 else "big"
    return int.from_bytes(head[18:20], order), 32 if head[4] == 1 else 64


def elf_truncated(path) -> str | None:
    """Why the ELF file at ``path`` cannot be whole (a download cut short), or None: its program and section header
    tables and every loadable segment (``PT_LOAD``: ``p_offset + p_filesz``) must lie inside the file."""

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return None  # not ELF: the caller's machine check says so
        order, wide = (">" if head[5:6] == b"\x02" else "<"), head[4:5] == b"\x02"
        if len(head) < (64 if wide else 52):
            return f"is cut short ({size} bytes, not even a whole ELF header)"
        phoff, shoff = struct.unpack_from(order + ("QQ" if wide else "II"), head, 0x20 if wide else 0x1C)
        phentsize, phnum, shentsize, shnum = struct.unpack_from(order + "HHHH", head, 0x36 if wide else 0x2A)
        need = max(phoff + phentsize * phnum, shoff + shentsize * shnum if shoff else 0)
        if need <= size:
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum if phentsize >= (56 if wide else 32) else 0):
                if wide:
                    p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(order + "IIQQQQ", table, i * phentsize)
                else:
                    p_type, p_offset, _, _, p_filesz = struct.unpack_from(order + "IIIII", table, i * phentsize)
                if p_type == 1:
                    need = max(need, p_offset + p_filesz)
    return f"is cut short ({size} bytes; its ELF headers need {need})" if need > size else None


def userland_elf(facts: dict) -> int | None:
    """The e_machine the board's userland runs: `uname -m`, with a 32-bit OS on a 64-bit ARM kernel -> arm."""
    machine = facts.get("machine", "")
    if machine in ("aarch64", "arm64") and facts.get("long_bit") == 32:
        return 40
    return _UNAME_ELF.get(machine)


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split(".") if p.isdigit())


def check(facts: dict, target=None, runner_head: bytes | None = None, runner_name: str = "runner",
          where: str = "board") -> tuple[list[str], list[str]]:
    """Problems (refuse to run) and warnings for a board, a target profile and a runner's first bytes."""
    problems, warnings = [], []
    machine = facts.get("machine", "?")
    if runner_head:
        elf = elf_machine(runner_head)
        want = userland_elf(facts)
        if elf is not None and want is not None and elf[0] != want:
            have = ELF_MACHINES.get(elf[0], f"e_machine {elf[0]}")
            os_bits = f", {facts.get('long_bit')}-bit OS" if facts.get("long_bit") else ""
            problems.append(f"runner {runner_name} is built for {have} but {where} runs {machine}{os_bits}: "
                            f"use the {ELF_MACHINES.get(want, machine)} build")
    if target is not None:
        if target.elf_machine == "aarch64" and machine in ("aarch64", "arm64") and facts.get("long_bit") == 32:
            problems.append(f"{where} runs a 32-bit OS on a 64-bit CPU, target {target.name} needs a 64-bit OS: "
                            "install a 64-bit OS or use the armv7 target with lce_benchmark_model_aarch32")
        if target.machines and machine not in target.machines and not (
                machine in ("aarch64", "arm64") and "armv7l" in target.machines and facts.get("long_bit") == 32):
            problems.append(f"{where} is {machine}, target {target.name} is for {', '.join(target.machines)}: "
                            "pick the matching target")
        if target.min_glibc and facts.get("glibc") and \
                _version_tuple(facts["glibc"]) < _version_tuple(target.min_glibc):
            problems.append(f"{where} has glibc {facts['glibc']}, {runner_name} needs >= {target.min_glibc}: "
                            "upgrade the OS (e.g. Raspberry Pi OS Bullseye or later)")
        if target.governor and facts.get("governor") and facts["governor"] != target.governor:
            warnings.append(f"{where}: CPU governor is {facts['governor']}, not {target.governor}; figures may "
                            f"vary (sudo sh -c 'echo {target.governor} > "
                            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor')")
    if facts.get("emulator"):
        warnings.append(f"{where} runs {machine} under emulation ({facts['emulator']}): its timings are emulated "
                        f"wall time on another CPU, not {machine} latency; use it to check answers, not speed")
    throttled = facts.get("throttled")
    if throttled and "=" in throttled:
        value = throttled.split("=", 1)[1].strip()
        try:
            if int(value, 16) != 0:
                warnings.append(f"{where} reports throttling ({throttled}): check power supply and cooling")
        except ValueError:
            pass
    return problems, warnings


def describe(facts: dict) -> str:
    """Board facts as aligned lines for ``edgebnn devices check``."""
    rows = [("board", facts.get("label")), ("kernel", facts.get("kernel")), ("os", facts.get("os")),
            ("emulated", facts.get("emulator") or "no sign of emulation"),
            ("glibc", facts.get("glibc") or "none found"), ("userland", f"{facts.get('long_bit')}-bit"),
            ("governor", facts.get("governor") or "n/a"),
            ("frequency", f"{facts['cur_freq_mhz']:.0f} MHz (max {facts.get('max_freq_mhz') or 0:.0f})"
             if facts.get("cur_freq_mhz") else "n/a"),
            ("temperature", f"{facts['temp_before_c']:.1f} C" if facts.get("temp_before_c") is not None else "n/a"),
            ("throttled", facts.get("throttled") or "n/a (no vcgencmd)"),
            ("memory", f"{facts['mem_available_mb']:.0f} MB free of {facts.get('mem_total_mb') or 0:.0f} MB"
             if facts.get("mem_available_mb") else "n/a")]
    if "runner_path" in facts:
        rows.append(("on board", facts.get("runner_path") or "runner not found on the board"))
    return "\n".join(f"  {k:<12} {v}" for k, v in rows)


def quote_remote(word: str) -> str:
    """Quote one word for the board's shell; a leading ``~/`` stays the remote home directory."""
    if word.startswith("~/"):
        return '"$HOME"/' + shlex.quote(word[2:])
    return shlex.quote(word)
