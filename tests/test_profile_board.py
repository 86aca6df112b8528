"""Board facts parsing and the checks, on the outputs real boards give (a Pi 4 on 64-bit and 32-bit OSes)."""

import pytest

import edgebnn  # noqa: F401
from edgebnn import targets
from edgebnn.devices import board
from edgebnn.devices import config as devices
from edgebnn.devices.remote import pick_target, runner_spec
from edgebnn.devices.ssh import SshTarget, explain_failure, parse_url
from edgebnn.errors import EdgebnnError


def _pi(machine="aarch64", long_bit=64, glibc="glibc 2.36", governor="ondemand", throttled="throttled=0x0",
        runner=None):
    text = "\n".join([
        "@@machine", machine, "@@kernel", "Linux 6.1.21-v8+", "@@hostname", "pi4",
        "@@model", "Raspberry Pi 4 Model B Rev 1.4", "@@lscpu", "Vendor ID:           ARM",
        "@@cpuinfo", "CPU implementer\t: 0x41", "CPU part\t: 0xd08", "@@sysctl_cpu", "@@cores", "4",
        "@@governor", governor, "@@cur_freq", "1800000", "@@max_freq", "1800000",
        "@@temp_before", "48686", "@@throttled_before", throttled, "@@glibc", glibc, "@@long_bit", str(long_bit),
        "@@os", "Debian GNU/Linux 12 (bookworm)", "@@mem_available_kb", "3500000", "@@mem_total_kb", "3884000",
        "@@has_timeout", "/usr/bin/timeout", "@@has_sha256sum", "/usr/bin/sha256sum"])
    if runner is not None:
        text += "\n@@runner\n" + runner[0] + "\n@@runner_head\n" + " ".join(f"{b:02x}" for b in runner[1])
    return board.parse_facts(text)


def _elf(machine, bits=64):
    return b"\x7fELF" + bytes([2 if bits == 64 else 1, 1, 1]) + b"\0" * 9 + (2).to_bytes(2, "little") + \
        machine.to_bytes(2, "little")


def test_pi4_facts():
    f = _pi()
    assert f["machine"] == "aarch64" and f["cpu"] == "Cortex-A72" and f["cores"] == 4
    assert f["model"] == "Raspberry Pi 4 Model B Rev 1.4" and f["glibc"] == "2.36" and f["long_bit"] == 64
    assert f["cur_freq_mhz"] == 1800.0 and f["temp_before_c"] == pytest.approx(48.686)
    assert f["mem_available_mb"] == pytest.approx(3500000 / 1024)
    assert f["label"] == "aarch64 Cortex-A72, 4 cores (Raspberry Pi 4 Model B Rev 1.4)"
    assert pick_target(f, None).name == "arm64"


def test_glibc_from_ldd():
    assert board.glibc_version("ldd (Debian GLIBC 2.28-10+deb10u1) 2.28") == "2.28"
    assert board.glibc_version("musl libc (x86_64)") == ""


def test_runner_on_board_is_read_from_its_elf_header():
    f = _pi(runner=("/home/pi/bin/lce_benchmark_model_aarch64", _elf(183)))
    assert f["runner_path"].endswith("aarch64") and board.elf_machine(f["runner_head"]) == (183, 64)
    problems, _ = board.check(f, targets.load("arm64"), f["runner_head"])
    assert problems == []


def test_checks_refuse_and_warn():
    arm64, armv7 = targets.load("arm64"), targets.load("armv7")
    problems, warnings = board.check(_pi(), arm64, _elf(62), runner_name="lce_benchmark_model")
    assert len(problems) == 1 and "built for x86_64 but board runs aarch64" in problems[0]
    assert len(warnings) == 1 and "governor is ondemand, not performance" in warnings[0]
    # A 32-bit Raspberry Pi OS on the 64-bit kernel: arm64 refused, armv7 with its 32-bit runner accepted.
    pi32 = _pi(long_bit=32, glibc="glibc 2.31")
    problems, _ = board.check(pi32, arm64, _elf(183))
    assert any("32-bit OS" in p for p in problems) and any("built for aarch64" in p for p in problems)
    assert board.check(pi32, armv7, _elf(40, bits=32))[0] == []
    assert pick_target(pi32, None).name == "armv7"
    # Raspbian Buster: glibc 2.28 < 2.29, which the aarch32 build needs.
    problems, _ = board.check(_pi(machine="armv7l", long_bit=32, glibc="glibc 2.28"), armv7, _elf(40, 32))
    assert problems == ["board has glibc 2.28, runner needs >= 2.29: upgrade the OS (e.g. Raspberry Pi OS "
                        "Bullseye or later)"]
    _, warnings = board.check(_pi(governor="performance", throttled="throttled=0x50005"), arm64)
    assert warnings == ["board reports throttling (throttled=0x50005): check power supply and cooling"]
    # A script runner has no ELF header: no architecture check.
    assert board.check(_pi(), arm64, b"#!/bin/sh\nexec python3 -m x")[0] == []


def test_facts_need_uname():
    with pytest.raises(EdgebnnError, match="uname -m"):
        board.parse_facts("sh: 1: Syntax error\n")


def test_quoting_keeps_home_and_nothing_else():
    assert board.quote_remote("~/bin/lce benchmark") == "\"$HOME\"/'bin/lce benchmark'"
    assert board.quote_remote("a;$(x)") == "'a;$(x)'"


def test_runner_specs(tmp_path):
    local = tmp_path / "lce_benchmark_model_aarch64"
    local.write_bytes(_elf(183))
    spec = runner_spec(str(local))
    assert spec.local_file == local and spec.checks_elf and spec.name == "lce_benchmark_model_aarch64"
    spec = runner_spec("python3 -m edgebnn.runner")
    assert spec.local_file is None and spec.words == ["python3", "-m", "edgebnn.runner"] and not spec.checks_elf
    with pytest.raises(EdgebnnError, match="no runner given"):
        runner_spec("")


def test_ssh_urls():
    t = parse_url("ssh://pi@raspberrypi.local:2222")
    assert (t.user, t.host, t.port, t.url) == ("pi", "raspberrypi.local", 2222, "ssh://pi@raspberrypi.local:2222")
    assert parse_url("ssh://board").destination == "board" and parse_url("ssh://[::1]:22").host == "::1"
    for bad in ("ssh://-oProxyCommand=x", "ssh://pi@host:99999", "ssh://pi@host/path", "ssh://a b"):
        with pytest.raises(EdgebnnError, match="device"):
            parse_url(bad)


def test_ssh_errors_are_one_line():
    t = SshTarget(host="pi", user="u", port=22)
    cases = {
        "ssh: connect to host pi port 22: Connection refused": "connection refused",
        "u@pi: Permission denied (publickey,password).": "refused the SSH key",
        "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.": "does not match",
        "No ED25519 host key is known for [pi]:22 and you have requested strict checking.\nHost key verification "
        "failed.": "not in known_hosts",
        "ssh: Could not resolve hostname pi: Name or service not known": "cannot resolve",
        "ssh: connect to host pi port 22: Connection timed out": "cannot reach",
    }
    for stderr, expected in cases.items():
        msg = explain_failure(stderr, t, "connecting")
        assert expected in msg and "\n" not in msg


def test_devices_file_both_layouts(tmp_path):
    f = tmp_path / "devices.toml"
    f.write_text('[[device]]\nname = "pi4"\nssh = "ssh://pi@pi4"\nrunner = "~/lce"\ntarget = "arm64"\n'
                 '[devices.pi5]\nhost = "pi@pi5"\nnotes = "fan"\nssh_options = ["ConnectTimeout=3"]\n')
    known = devices.load(f)
    assert sorted(known) == ["pi4", "pi5"] and known["pi4"].runner == "~/lce" and known["pi5"].notes == "fan"
    assert known["pi5"].ssh_target().destination == "pi@pi5"
    assert devices.resolve("pi4", f).target == "arm64" and devices.resolve("local", f).kind == "local"
    with pytest.raises(EdgebnnError, match="unknown device 'pi3'.*known: pi4, pi5"):
        devices.resolve("pi3", f)
    f.write_text('[devices.x]\nssh = "ssh://x"\nrunnr = "typo"\n')
    with pytest.raises(EdgebnnError, match="unknown key.*runnr"):
        devices.load(f)
    with pytest.raises(EdgebnnError, match="does not exist"):
        devices.load(tmp_path / "none.toml")
