"""Hostile and unlucky moments on a board (a real OpenSSH server on 127.0.0.1; this host plays the board): Ctrl-C and
SIGKILL in the middle of a benchmark, a runner that crashes on one model of a sweep, a read-only results.db.
Each ends in one line and exit 2 (130 for Ctrl-C), keeps what was measured, and leaves no work folder, no
benchmark and no control folder behind (asserted on the board's /tmp)."""

import glob
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from cli_checks import assert_one_error_line
from machine_needs import skip_for_another_reason
from profile_fixtures import shell_script, started_sshd, tiny_tflite

import edgebnn  # noqa: F401
from edgebnn import store
from edgebnn.devices.local import sha256

pytestmark = [pytest.mark.ssh, pytest.mark.slow]
EDGEBNN = str(Path(sys.executable).with_name("edgebnn"))


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = started_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def runners(tmp_path_factory):
    d = tmp_path_factory.mktemp("bin")
    return {"real": shell_script(d, "edgebnn-runner", f'exec {sys.executable} -m edgebnn.runner "$@"\n'),
            "hangs": shell_script(d, "hanging-runner", 'echo "STARTING!"\nsleep 300 & wait\n')}


def _owned_by(pid: int) -> list[str]:
    """The board's work folders made by edgebnn process ``pid`` (their owner file says so)."""
    out = []
    for d in glob.glob(os.path.join(tempfile.gettempdir(), "edgebnn.*")):
        try:
            if Path(d, "owner").read_text().split()[-1] == str(pid):
                out.append(d)
        except (OSError, IndexError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ctrl_c_as_on_a_terminal():
    """SIGINT back to its default in the child, as a terminal's Ctrl-C finds it: a test suite started as a shell's
    background job (`make test &`) inherits it ignored, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_hanging(sshd, runners, tmp_path):
    """`edgebnn profile` on the board with a benchmark that never ends; returns (process, work folder, group id)
    once the benchmark runs."""
    proc = subprocess.Popen([EDGEBNN, "profile", str(tiny_tflite()), "-d", sshd.url, "--ssh-config", sshd.config,
                             "--runner", str(runners["hangs"]), "--db", str(tmp_path / "r.db"), "--timeout", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_ctrl_c_as_on_a_terminal)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for d in _owned_by(proc.pid):
            pid_file = Path(d, "bench.pid")
            if pid_file.is_file() and pid_file.read_text().strip().isdigit():
                return proc, d, int(pid_file.read_text())
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"the benchmark never started: {proc.communicate()[1]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_ends_the_benchmark_on_the_board_and_leaves_nothing(sshd, runners, tmp_path, sig):
    proc, workdir, group = _start_hanging(sshd, runners, tmp_path)
    assert _alive(group)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)  # generous: with other tests on the cores, ending the session is slow
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err
    deadline = time.monotonic() + 10
    while _alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(group)  # the benchmark's process group was ended on the board
    assert not Path(workdir).exists() and _owned_by(proc.pid) == []  # the board's /tmp holds nothing of ours
    assert not list(Path(tempfile.gettempdir()).glob("edgebnn-ssh-*/owner")) or all(
        Path(o).read_text().strip() != str(proc.pid) for o in Path(tempfile.gettempdir()).glob("edgebnn-ssh-*/owner"))


def test_after_sigkill_devices_clean_removes_work_folder_benchmark_and_control_folder(sshd, runners, tmp_path):
    proc, workdir, group = _start_hanging(sshd, runners, tmp_path)
    control = [o.parent for o in Path(tempfile.gettempdir()).glob("edgebnn-ssh-*/owner")
               if o.read_text().strip() == str(proc.pid)]
    proc.kill()
    proc.wait()
    assert Path(workdir).is_dir() and _alive(group) and control  # what a killed run leaves
    res = subprocess.run([EDGEBNN, "devices", "clean", sshd.url, "--ssh-config", sshd.config], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"{workdir}: removed: the edgebnn process that made it is gone" in res.stdout
    assert f"{control[0]}: removed" in res.stdout
    deadline = time.monotonic() + 10
    while _alive(group) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(group) and not Path(workdir).exists() and not control[0].exists()


def test_crash_on_one_model_is_one_line_and_the_sweep_goes_on(sshd, tmp_path):
    model = tiny_tflite()
    other = tmp_path / "other.tflite"  # same graph, another sha256: the runner below crashes on it
    other.write_bytes(model.read_bytes() + b"\0" * 8)
    runner = shell_script(tmp_path, "crashes-on-other", f'case "$*" in *model-{sha256(other)[:16]}*) kill -SEGV $$;; '
                          f'esac\nexec {sys.executable} -m edgebnn.runner "$@"\n')
    db = tmp_path / "r.db"
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "edgebnn.*")))
    res = subprocess.run([EDGEBNN, "profile", str(other), str(model), "-d", sshd.url, "--ssh-config", sshd.config,
                          "--runner", str(runner), "--db", str(db), "--runs", "3", "--warmup", "0"],
                         capture_output=True, text=True, timeout=300)
    assert_one_error_line(res, "crashes-on-other crashed on", "SIGSEGV", "1 other result(s) measured and stored in")
    assert "tiny" in res.stdout  # the measured row is printed before the error
    conn = store.connect(db)
    rows = store.results(conn)
    conn.close()
    assert [(r["model_sha256"], r["threads"]) for r in rows] == [(sha256(model), 1)]
    assert rows[0]["load"]["cores"] == os.cpu_count() and "other_cores" in rows[0]["load"]  # the board's load
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "edgebnn.*"))) <= before


def test_read_only_results_db_is_refused_before_measuring(sshd, runners, tmp_path):
    db = tmp_path / "ro" / "results.db"
    db.parent.mkdir()
    store.connect(db).close()
    before = db.read_bytes()
    db.chmod(0o444)
    immutable = os.geteuid() == 0  # root writes through file modes: make it immutable instead
    if immutable and subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        skip_for_another_reason("running as root on a file system without chattr +i: nothing makes the file "
                                "read-only")
    try:
        res = subprocess.run([EDGEBNN, "profile", str(tiny_tflite()), "-d", sshd.url, "--ssh-config", sshd.config,
                              "--runner", str(runners["real"]), "--db", str(db)], capture_output=True, text=True)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(db)], check=True)
    line = assert_one_error_line(res, only=True)
    assert line.startswith(f"error: results database {db} cannot be written")
    assert "profiling" not in res.stderr  # nothing was measured
    assert db.read_bytes() == before


def test_a_write_the_database_refuses_keeps_the_measurement_in_a_fallback_json(tmp_path, monkeypatch):
    """The database fails between the check and the write (a disk filling up, another process locking it): the
    measurement is printed, kept in results.db.unsaved.json, and the error says where."""
    import json

    from edgebnn.profiling import profile

    db = tmp_path / "results.db"
    real_insert = store._insert

    def full_disk(conn, row, ops):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_insert", full_disk)
    with pytest.raises(store.EdgebnnError, match=r"refused the result \(database or disk is full\); the measurement "
                                                 r"is kept in .*results.db.unsaved.json") as info:
        profile([str(tiny_tflite())], ["local"], runs=3, warmup=0, db=db)
    assert "\n" not in str(info.value)
    [kept] = json.loads((tmp_path / "results.db.unsaved.json").read_text())
    assert kept["result"]["model_sha256"] == sha256(tiny_tflite()) and kept["result"]["min_ms"] > 0
    assert info.value.results[0]["status"] == "measured"
    monkeypatch.setattr(store, "_insert", real_insert)
