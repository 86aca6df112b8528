"""Profiling over SSH against a real OpenSSH server on 127.0.0.1 (this host plays the board), and every fault:
each one clear line, nothing lost from the database, no work directory left behind."""

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_checks import assert_one_error_line
from click.testing import CliRunner
from loopback_sshd import ALIAS, LoopbackSshd, SshdUnavailable
from profile_fixtures import tiny_tflite

import edgebnn  # noqa: F401
from edgebnn import store
from edgebnn.cli import main
from edgebnn.devices.local import sha256
from edgebnn.errors import EdgebnnError
from edgebnn.profiling import check_device, profile

pytestmark = [pytest.mark.ssh, pytest.mark.slow]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    server = LoopbackSshd(tmp_path_factory.mktemp("sshd"))
    try:
        server.start()
    except (SshdUnavailable, subprocess.CalledProcessError, FileNotFoundError) as err:
        pytest.skip(f"cannot start a test OpenSSH server here: {err}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def board_bin(tmp_path_factory):
    """Runner scripts of the 'board' (this host): the real runner, and the faulty ones."""
    d = tmp_path_factory.mktemp("bin")

    def script(name, body):
        p = d / name
        p.write_text("#!/bin/sh\n" + body)
        p.chmod(0o755)
        return p

    fake_elf = d / "lce_benchmark_model_aarch64"
    # A 64-bit little-endian ELF header with e_machine = 183 (aarch64).
    fake_elf.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + (2).to_bytes(2, "little") + (183).to_bytes(2, "little")
                         + b"\0" * 44)
    fake_elf.chmod(0o755)
    canned = Path(__file__).with_name("test_profile_parse.py")
    ns = {}
    exec(compile(canned.read_text().split("\n\ndef _info")[0], str(canned), "exec"), ns)  # HEAD and NEW_OPS
    return {
        "runner": script("edgebnn-runner", f'exec {sys.executable} -m edgebnn.runner "$@"\n'),
        "crash": script("crashing-runner", 'echo "STARTING!"\nkill -SEGV $$\n'),
        "fails": script("failing-runner", 'echo "STARTING!"\necho "ERROR: failed to allocate tensors" >&2\nexit 1\n'),
        "hangs": script("hanging-runner", 'echo "STARTING!"\nexec sleep 60\n'),
        "ops": script("op-profile-runner", "cat <<'EOF'\n" + ns["HEAD"] + ns["NEW_OPS"] + "EOF\n"),
        "elf": fake_elf,
    }


@pytest.fixture(scope="module")
def model():
    return tiny_tflite()


def _workdirs():
    return set(glob.glob("/tmp/edgebnn.*"))


@pytest.fixture(scope="module")
def measured_db(tmp_path_factory, model, sshd, board_bin):
    path = tmp_path_factory.mktemp("db") / "results.db"
    before = _workdirs()
    [r] = profile([str(model)], [sshd.url], threads=[1], runs=5, warmup=1, db=path, runner=str(board_bin["runner"]),
                  ssh_config=sshd.config)
    assert r["status"] == "measured" and _workdirs() == before
    return path


@pytest.fixture
def db(tmp_path, measured_db):
    """A database already holding one result measured over SSH (a copy per test)."""
    path = tmp_path / "results.db"
    shutil.copy(measured_db, path)
    return path


def _rows(path):
    conn = store.connect(path)
    try:
        return [(r["model_sha256"], r["device"], r["threads"], r["mean_ms"]) for r in store.results(conn)]
    finally:
        conn.close()


def _fault(db, message, *args, **kw):
    """Profiling fails with one line matching ``message``; the database keeps what it held; no leftovers."""
    rows, dirs = _rows(db), _workdirs()
    kw.setdefault("db", db)
    kw.setdefault("threads", [1])
    kw.setdefault("runs", 3)
    kw.setdefault("warmup", 0)
    kw.setdefault("force", True)
    with pytest.raises(EdgebnnError, match=message) as info:
        profile(*args, **kw)
    assert "\n" not in str(info.value)
    assert _rows(db) == rows
    assert _workdirs() == dirs
    return str(info.value)


def test_profile_over_ssh_uploads_checks_runs_parses_stores(model, sshd, board_bin, tmp_path):
    db = tmp_path / "r.db"
    before = _workdirs()
    results = profile([str(model)], [sshd.url], threads=[1, 2], runs=8, warmup=2, db=db,
                      runner=str(board_bin["runner"]), ssh_config=sshd.config)
    assert [(r["threads"], r["runs"], r["warmup"]) for r in results] == [(1, 8, 2), (2, 8, 2)]
    for r in results:
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"] <= r["max_ms"]
        assert r["kernels"] == "LCE reference kernels (not ARM64)" and r["machine"].startswith("x86_64")
        assert r["target"] == "x86_64" and r["runner"].startswith("/tmp/edgebnn.")  # uploaded to the work dir
    conn = store.connect(db)
    rows = store.results(conn)
    assert [(r["device"], r["threads"]) for r in rows] == [(sshd.url, 1), (sshd.url, 2)]
    row = rows[0]
    assert row["model_sha256"] == sha256(model) and row["model_name"] == "tiny"
    assert row["board"]["machine"] == "x86_64" and row["board"]["long_bit"] == 64 and row["board"]["glibc"]
    assert row["board"]["cores"] == os.cpu_count() and row["board"]["os"]
    assert "edgebnn runner: LCE Python interpreter 0.16.0" in row["versions"]["runner_output"]
    assert row["model_size_mb"] == pytest.approx(model.stat().st_size / 1e6)
    assert _workdirs() == before  # the work directory was removed
    # A re-run skips what is stored.
    skipped = profile([str(model)], [sshd.url], threads=[1, 2], db=db, runner=str(board_bin["runner"]),
                      ssh_config=sshd.config)
    assert [r["status"] for r in skipped] == ["skipped", "skipped"]
    assert [r["mean_ms"] for r in skipped] == [r["mean_ms"] for r in results]


def test_op_profile_is_stored_and_summed_by_type(model, sshd, board_bin, tmp_path):
    db = tmp_path / "r.db"
    [r] = profile([str(model)], [sshd.url], threads=[1], runs=5, warmup=1, op_profile=True, db=db,
                  runner=str(board_bin["ops"]), ssh_config=sshd.config)
    assert r["mean_ms"] == pytest.approx(31.4206) and r["runs"] == 50
    totals = {t["node_type"]: t for t in r["op_totals"]}
    assert totals["LceBconv2d"]["nodes"] == 2 and totals["LceBconv2d"]["avg_ms"] == pytest.approx(1.25)
    assert totals["LceBconv2d"]["kind"] == "binary" and totals["Convolution (NHWC, F32) GEMM"]["kind"] == "float"
    conn = store.connect(db)
    [row] = store.results(conn)
    stored = store.op_totals(conn, row["id"])
    assert [(t["node_type"], t["nodes"]) for t in stored][:2] == [("LceBconv2d", 2), ("LceQuantize", 1)]
    assert sum(t["pct"] for t in stored) == pytest.approx(100.0)
    assert [o["node_index"] for o in store.ops(conn, row["id"])] == [0, 1, 2, 3]


def test_file_name_with_spaces_and_shell_characters(model, sshd, board_bin, tmp_path):
    canary = "EDGEBNN_TEST_PWNED"
    odd = tmp_path / f"a b;$(touch {canary}) `touch {canary}` 'q\":x.tflite"
    shutil.copy(model, odd)
    [r] = profile([str(odd)], [sshd.url], threads=[1], runs=3, warmup=0, db=tmp_path / "r.db",
                  runner=str(board_bin["runner"]), ssh_config=sshd.config)
    assert r["model_name"] == odd.stem and r["runs"] == 3
    for where in (Path.home(), Path.cwd(), tmp_path, Path("/tmp")):
        assert not (where / canary).exists()


def test_host_alias_from_ssh_config_and_devices_file(model, sshd, board_bin, tmp_path, monkeypatch):
    own = tmp_path / ".config" / "edgebnn" / "devices.toml"  # the user's own file: it may name an ssh_config
    own.parent.mkdir(parents=True)
    own.write_text(
        f'[[device]]\nname = "loop"\nssh = "{ALIAS}"\nrunner = "{board_bin["runner"]}"\n'
        f'ssh_config = "{sshd.config}"\nnotes = "this host over loopback"\n')
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    report = check_device("loop")
    assert report["problems"] == [] and report["facts"]["machine"] == "x86_64" and report["target"] == "x86_64"
    res = CliRunner().invoke(main, ["profile", str(model), "-d", "loop", "--threads", "1", "--runs", "4",
                                    "--warmup", "1", "--json"])
    assert res.exit_code == 0, res.output
    [r] = json.loads(res.output[res.output.index("["):])
    assert r["device"] == "loop" and r["runs"] == 4
    res = CliRunner().invoke(main, ["devices", "check", "loop"])
    assert res.exit_code == 0 and "ok: ready to profile" in res.output and "glibc" in res.output
    res = CliRunner().invoke(main, ["devices", "list"])
    assert "loop" in res.output and "this host over loopback" in res.output


def test_local_and_board_in_parallel(model, sshd, board_bin, tmp_path):
    db = tmp_path / "r.db"
    results = profile([str(model)], ["local", sshd.url], threads=[1], runs=4, warmup=1, db=db,
                      runner=str(board_bin["runner"]), ssh_config=sshd.config)
    assert sorted(r["device"] for r in results) == sorted(["local", sshd.url])
    assert len(_rows(db)) == 2


def test_connection_refused(db, model):
    with socket_closed_port() as port:
        _fault(db, f"cannot reach ssh://nobody@127.0.0.1:{port}: connection refused", [str(model)],
               [f"ssh://nobody@127.0.0.1:{port}"])


class socket_closed_port:
    def __enter__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc):
        return False


def test_wrong_key(db, model, sshd, board_bin, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    cfg = tmp_path / "cfg"
    cfg.write_text(Path(sshd.config).read_text().replace(str(sshd.user_key), str(other)))
    _fault(db, "refused the SSH key", [str(model)], [sshd.url], runner=str(board_bin["runner"]), ssh_config=str(cfg))


def test_host_key_mismatch_and_unknown_host_are_refused(db, model, sshd, board_bin, tmp_path):
    impostor = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} " + " ".join(impostor.with_suffix(".pub").read_text().split()[:2]) + "\n")
    cfg = tmp_path / "cfg"
    cfg.write_text(Path(sshd.config).read_text().replace(str(sshd.known_hosts), str(kh)))
    before = kh.read_text()
    _fault(db, "does not match known_hosts", [str(model)], [sshd.url], runner=str(board_bin["runner"]),
           ssh_config=str(cfg))
    kh.write_text("")
    _fault(db, "not in known_hosts", [str(model)], [sshd.url], runner=str(board_bin["runner"]), ssh_config=str(cfg))
    assert kh.read_text() == ""  # never accepted silently
    kh.write_text(before)


def test_missing_runner(db, model, sshd):
    _fault(db, "runner /nonexistent/lce_benchmark_model not found on", [str(model)], [sshd.url],
           runner="/nonexistent/lce_benchmark_model", ssh_config=sshd.config)


def test_runner_for_another_architecture(db, model, sshd, board_bin):
    msg = _fault(db, "built for aarch64 but .* runs x86_64", [str(model)], [sshd.url], runner=str(board_bin["elf"]),
                 ssh_config=sshd.config)
    assert "lce_benchmark_model_aarch64" in msg
    res = CliRunner().invoke(main, ["devices", "check", sshd.url, "--ssh-config", sshd.config, "--runner",
                                    str(board_bin["elf"])])
    assert res.exit_code == 2 and "problem: runner lce_benchmark_model_aarch64 is built for aarch64" in res.output


def test_arm64_target_on_this_board_is_refused(db, model, sshd, board_bin):
    _fault(db, "target arm64 is for aarch64", [str(model)], [sshd.url], runner=str(board_bin["runner"]),
           target="arm64", ssh_config=sshd.config)


def test_corrupt_model(db, model, sshd, board_bin, tmp_path):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(model.read_bytes()[:64] + b"\xff" * 256)  # a TFL3 header, then garbage
    _fault(db, "is not a valid TFLite flatbuffer", [str(corrupt)], [sshd.url], runner=str(board_bin["runner"]),
           ssh_config=sshd.config)  # refused by the schema check before anything is uploaded
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"hello")
    _fault(db, "not a valid TFLite flatbuffer", [str(junk)], [sshd.url], runner=str(board_bin["runner"]),
           ssh_config=sshd.config)


def test_runner_crash(db, model, sshd, board_bin):
    _fault(db, "crashing-runner crashed on .*SIGSEGV", [str(model)], [sshd.url], runner=str(board_bin["crash"]),
           ssh_config=sshd.config)
    _fault(db, "failing-runner failed on .*exit 1.*failed to allocate tensors", [str(model)], [sshd.url],
           runner=str(board_bin["fails"]), ssh_config=sshd.config)


def test_board_that_stops_answering(db, model, sshd, board_bin):
    _fault(db, "hanging-runner on .* gave no result within 2 s", [str(model)], [sshd.url],
           runner=str(board_bin["hangs"]), ssh_config=sshd.config, timeout=2)


def test_cli_fault_is_one_line_exit_2(db, model, sshd):
    res = CliRunner().invoke(main, ["profile", str(model), "-d", sshd.url, "--ssh-config", sshd.config,
                                    "--runner", "/nonexistent/runner", "--db", str(db), "--force"])
    assert_one_error_line(res, "not found on")


def test_interrupted_sweep_keeps_what_it_finished(model, sshd, board_bin, tmp_path):
    db = tmp_path / "r.db"
    other = tmp_path / "other.tflite"  # the same graph, another sha256: the runner below crashes on it
    other.write_bytes(model.read_bytes() + b"\0" * 8)
    runner = tmp_path / "crashes-on-other"
    runner.write_text(f'#!/bin/sh\ncase "$*" in *model-{sha256(other)[:16]}*) kill -SEGV $$;; esac\n'
                      f'exec {sys.executable} -m edgebnn.runner "$@"\n')
    runner.chmod(0o755)
    with pytest.raises(EdgebnnError, match=r"crashes-on-other crashed on .*SIGSEGV.*\(1 other result\(s\) measured "
                                           r"and stored in"):
        profile([str(other), str(model)], [sshd.url], threads=[1], runs=3, warmup=0, db=db, runner=str(runner),
                ssh_config=sshd.config)
    assert [(r[0], r[2]) for r in _rows(db)] == [(sha256(model), 1)]  # the crash did not end the sweep


# ------------------------------------------------------------------------------------------ a 64-bit ARM board
# The aarch64 Debian userland over its own sshd (conftest's arm64_board), running LCE's real aarch64 runner under
# qemu-user. Its timings are emulated: these tests check the path and the answers, never speed.
@pytest.mark.root
@pytest.mark.qemu
def test_aarch64_board_facts_say_aarch64_debian_12_glibc_236_and_emulated(arm64_board):
    from arm64_helpers import aarch64_runner

    report = check_device(arm64_board.url, runner=str(aarch64_runner()), ssh_config=arm64_board.config)
    facts = report["facts"]
    assert (facts["machine"], facts["glibc"], facts["long_bit"]) == ("aarch64", "2.36", 64)
    assert facts["os"] == "Debian GNU/Linux 12 (bookworm)" and facts["has_timeout"] and facts["sha256_tool"]
    assert report["problems"] == [] and report["target"] == "arm64"
    assert "qemu-aarch64" in facts["emulator"] and facts["label"].endswith("[emulated]")
    assert any("emulated wall time" in w and "not aarch64 latency" in w for w in report["warnings"])


@pytest.mark.root
@pytest.mark.qemu
def test_aarch64_runner_uploaded_sha256_checked_op_profile_parsed_work_dir_removed(arm64_board, tmp_path):
    from arm64_helpers import aarch64_runner, tiny_32
    from test_profile_parse import assert_totals_match_summary

    from edgebnn.devices.config import resolve
    from edgebnn.devices.parse import op_totals
    from edgebnn.devices.remote import BoardSession

    runner, model = aarch64_runner(), tiny_32()
    before = arm64_board.workdirs()
    device = resolve(arm64_board.url, ssh_config=arm64_board.config)
    with BoardSession(device, runner=str(runner), timeout=300) as session:
        assert session.workdir not in before and session.command == [f"{session.workdir}/{runner.name}"]
        inside = arm64_board.rootfs / session.workdir.lstrip("/")
        assert sha256(inside / runner.name) == sha256(runner) == session._remote_sha(session.command[0])
        remote = session.upload_model(model, sha256(model))
        assert (inside / Path(remote).name).read_bytes() == model.read_bytes()
        parsed = session.benchmark(remote, threads=1, runs=2, warmup=0, op_profile=True)
        fields = session.result_fields()
    assert arm64_board.workdirs() == before  # the work directory is gone from the board's /tmp
    assert parsed["runs"]["count"] == 2 and parsed["model_size_mb"] == pytest.approx(model.stat().st_size / 1e6, 1e-3)
    assert {op["node_type"] for op in parsed["ops"]} >= {"LceBconv2d", "LceQuantize"}
    assert_totals_match_summary(parsed)  # the real aarch64 output, delegate rows counted per call
    assert sum(t["calls"] for t in op_totals(parsed["ops"])) >= len(parsed["ops"])
    assert fields["kind"] == "host" and "under emulation" in fields["kernels"]  # never board latency
    assert fields["kernels"].startswith("LCE optimized kernels (ARM64)") and fields["target"] == "arm64"


@pytest.mark.root
@pytest.mark.qemu
def test_aarch64_profile_is_stored_as_emulated_never_as_board_latency(arm64_board, tmp_path):
    from arm64_helpers import aarch64_runner, tiny_32

    db = tmp_path / "r.db"
    model = tiny_32()
    before = arm64_board.workdirs()
    [r] = profile([str(model)], [arm64_board.url], threads=[1], runs=2, warmup=0, op_profile=True, db=db,
                  runner=str(aarch64_runner()), ssh_config=arm64_board.config, timeout=300, warn=lambda w: None)
    assert arm64_board.workdirs() == before
    assert r["status"] == "measured" and r["kind"] == "host" and r["machine"].startswith("aarch64")
    assert "[emulated]" in r["machine"] and "emulated wall time, not latency" in r["kernels"]
    assert any("emulated wall time" in w for w in r["warnings"])
    conn = store.connect(db)
    [row] = store.results(conn)
    assert row["kind"] == "host" and store.results(conn, kind="board") == []
    assert row["board"]["machine"] == "aarch64" and row["board"]["glibc"] == "2.36"
    assert row["board"]["os"] == "Debian GNU/Linux 12 (bookworm)" and "qemu" in row["board"]["emulator"]
    stored = {t["node_type"]: t for t in store.op_totals(conn, row["id"])}
    returned = {t["node_type"]: t for t in r["op_totals"]}
    assert stored.keys() == returned.keys() and "LceBconv2d" in stored
    for name, t in returned.items():
        assert stored[name]["avg_ms"] == pytest.approx(t["avg_ms"]) and stored[name]["calls"] == t["calls"]


@pytest.mark.root
def test_aarch64_board_refuses_an_x86_64_runner(arm64_board, tmp_path):
    from arm64_helpers import tiny_32

    x86 = Path(os.path.realpath(shutil.which("true")))
    db = tmp_path / "r.db"
    before = arm64_board.workdirs()
    with pytest.raises(EdgebnnError, match=f"runner {x86.name} is built for x86_64 but .* runs aarch64, 64-bit OS: "
                                           "use the aarch64 build"):
        profile([str(tiny_32())], [arm64_board.url], threads=[1], runs=1, db=db, runner=str(x86),
                ssh_config=arm64_board.config, warn=lambda w: None)
    assert arm64_board.workdirs() == before and _rows(db) == []
