"""Issue 29, round 2: every number range-checked and every name length checked before any work; a stale `running`
status read as interrupted; a full disk still records how a run ended; a runner's absurd timing refused; the
messages that named the wrong thing (a folder "does not exist", a port 0, a profile without a name)."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from cli_checks import assert_one_error_line
from click.testing import CliRunner

from edgebnn import outputs, runlock, runs, targets
from edgebnn.cli import main
from edgebnn.devices import config as devices
from edgebnn.devices import parse
from edgebnn.errors import EdgebnnError, OptionError
from edgebnn.estimate import budget as budget_mod

LONG = "x" * 300  # over every common file system's 255-byte name limit


def _never(*args, **kwargs):
    pytest.fail("work started before the options were checked")


# ------------------------------------------------------------------------------------------ numbers
@pytest.mark.parametrize("args, needle", [
    (["--ms", "0"], "--ms must be a finite number above 0, got 0.0"),
    (["--ms", "-5"], "--ms must be a finite number above 0, got -5.0"),
    (["--ms", "nan"], "--ms must be a finite number above 0, got nan"),
    (["--ms", "inf"], "--ms must be a finite number above 0, got inf"),
    (["--ms", "5", "--widths", "nan"], "--widths must be a finite number above 0, got nan"),
    (["--ms", "5", "--widths", "0.5,0"], "--widths must be a finite number above 0, got 0.0"),
    (["--ms", "5", "--widths", "-1"], "--widths must be a finite number above 0, got -1.0"),
    (["--ms", "5", "--widths", "a,b"], "--widths 'a,b' is not a comma-separated list"),
    (["--ms", "5", "--sizes", "0"], "--sizes must be 1 or more, got 0"),
    (["--ms", "5", "--sizes", "224,-1"], "--sizes must be 1 or more, got -1"),
    (["--ms", "5", "--classes", "0"], "--classes must be 2 or more, got 0"),
    (["--ms", "5", "--classes", "-1"], "--classes must be 2 or more, got -1"),
    (["--ms", "5", "--threads", "0"], "--threads must be 1 or more, got 0"),
])
def test_budget_numbers_out_of_range_are_one_line_before_any_building(monkeypatch, args, needle):
    monkeypatch.setattr(budget_mod, "answer", _never)
    result = CliRunner().invoke(main, ["budget", "reactnet-18", "--board", "pi4b", *args])
    assert_one_error_line(result, needle, only=True)


@pytest.mark.parametrize("args, needle", [
    (["models", "--num-classes", "0"], "--num-classes must be 2 or more, got 0"),
    (["models", "--num-classes", "-1"], "--num-classes must be 2 or more, got -1"),
    (["models", "--width", "nan"], "--width must be a finite number above 0, got nan"),
    (["models", "--width", "inf"], "--width must be a finite number above 0, got inf"),
    (["import", "x.pth.tar", "--num-classes", "0"], "--num-classes must be 1 or more, got 0"),
    (["import", "x.pth.tar", "--num-classes", "-1"], "--num-classes must be 1 or more, got -1"),
    (["import", "x.pth.tar", "--width", "nan"], "--width must be a finite number above 0, got nan"),
    (["import", "x.pth.tar", "--width", "-0.5"], "--width must be a finite number above 0, got -0.5"),
    (["devices", "clean", "local", "--older-than", "nan"], "--older-than must be a number of minutes"),
    (["devices", "clean", "local", "--older-than", "-1"], "--older-than must be 0 or more"),
])
def test_class_counts_and_widths_out_of_range_are_one_line(args, needle):
    assert_one_error_line(CliRunner().invoke(main, args), needle, only=True)


# ------------------------------------------------------------------------------------------ names too long
def test_a_300_character_out_is_one_line_before_any_work(tmp_path, monkeypatch):
    from edgebnn import reporting, training

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(training.recipes, "load", _never)
    monkeypatch.setattr(reporting, "collect", _never)
    for out in (LONG, f"{LONG}/run", f"{tmp_path}/{LONG}/run"):
        line = assert_one_error_line(CliRunner().invoke(main, ["train", "bireal-18", "--out", out]), "--out",
                                     "is 300 bytes, over the file system's limit", only=True)
        assert "Traceback" not in line
        line = assert_one_error_line(CliRunner().invoke(main, ["report", "--out", out]),
                                     "is 300 bytes, over the file system's limit", only=True)
    assert os.listdir(tmp_path) == []  # nothing made


def test_a_model_named_past_the_limit_a_folder_or_a_fifo_is_named_as_such(tmp_path):
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "fifo")
    os.mkfifo(tmp_path / "fifo.keras")
    cases = {LONG + ".keras": "has a name longer than the file system allows",
             str(tmp_path / "d"): "is a folder, but not a run folder",
             str(tmp_path / "fifo"): "is not a regular file (a FIFO, socket or device)",
             str(tmp_path / "fifo.keras"): "is not a regular file (a FIFO, socket or device)",
             "/dev/zero": "is not a regular file (a FIFO, socket or device)"}
    for source, needle in cases.items():
        for command in (["eval", source], ["train", "bireal-18", "--weights", source,
                                           "--out", str(tmp_path / "run")]):
            assert_one_error_line(CliRunner().invoke(main, command), needle)
    assert not (tmp_path / "run").exists()


def test_name_length_check_looks_past_a_parent_named_too_long(tmp_path):
    with pytest.raises(EdgebnnError, match="is 300 bytes"):
        outputs.check_name_length(tmp_path / LONG / "x", "output")
    assert outputs._existing_ancestor(tmp_path / LONG / "x") == tmp_path


# ------------------------------------------------------------------------------------------ a run's state
def _running_run(tmp_path, lock: dict | None):
    run = tmp_path / "run"
    run.mkdir()
    runs.write_info(run, {"name": "run", "status": "running", "epochs_done": 1, "mean": [0.5] * 3, "std": [0.25] * 3,
                          "class_names": [str(i) for i in range(10)], "input_shape": [16, 16, 3]})
    if lock is not None:
        (run / runlock.LOCK).write_text(json.dumps(lock))
    return run


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


@pytest.mark.parametrize("lock, shown", [
    (None, "interrupted"),  # no lock: nobody trains it
    ("dead", "interrupted"),  # the lock's process is gone
    ("alive", "running"),  # this very process holds it
    ("elsewhere", "running"),  # another host's: cannot be told from here
])
def test_a_stale_running_status_reads_interrupted(tmp_path, lock, shown):
    host = socket.gethostname()
    held = {None: None, "dead": {"pid": _dead_pid(), "host": host}, "alive": {"pid": os.getpid(), "host": host},
            "elsewhere": {"pid": 1, "host": host + "-other"}}[lock]
    run = _running_run(tmp_path, held)
    assert runs.read_info(run)["status"] == shown
    assert json.loads((run / runs.RUN_INFO).read_text())["status"] == "running"  # the file is left as it is
    from edgebnn.records import Run

    assert Run.from_folder(run).status == shown


def test_a_full_disk_still_records_failed_within_run_json_s_own_bytes(tmp_path, monkeypatch):
    from edgebnn import training

    run = _running_run(tmp_path, None)
    size = (run / runs.RUN_INFO).stat().st_size

    def fsync(fd):  # every new file fails as on a full disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs.os, "fsync", fsync)
    trainer = training._Trainer.__new__(training._Trainer)
    trainer.chief, trainer.run_dir = True, run
    trainer._record_end("failed", "OSError: [Errno 28] No space left on device " + "x" * 500)
    info = json.loads((run / runs.RUN_INFO).read_text())
    assert info["status"] == "failed" and info["failure"].startswith("OSError: [Errno 28]")
    assert info["epochs_done"] == 1 and (run / runs.RUN_INFO).stat().st_size == size
    assert [p.name for p in run.iterdir()] == [runs.RUN_INFO]  # no temporary file left
    runs.write_status_in_place(run, "failed", "y" * 10_000)  # what does not fit is cut
    info = json.loads((run / runs.RUN_INFO).read_text())
    assert info["status"] == "failed" and 0 < len(info["failure"]) < size and set(info["failure"]) == {"y"}


# ------------------------------------------------------------------------------------------ a runner's figures
RUNNER_OUTPUT = """\
count=4 first=2100 curr=2000 min=1990 max=2100 avg=2030 std=40
count=20 first=2000 curr=2000 min=1990 max={max} avg=2010 std=30
Inference timings in us: Init: 2100, First inference: 2100, Warmup (avg): 2030, Inference (avg): {avg}
"""


@pytest.mark.parametrize("max_us, avg_us, named", [
    ("1e305", "2010", "max_us=1e+305"),
    ("2100", "1e305", "'Inference (avg)'=1e+305"),
    ("1000000001", "2010", "max_us=1000000001.0"),
])
def test_an_absurd_timing_is_refused_by_the_parser(max_us, avg_us, named):
    assert parse.parse(RUNNER_OUTPUT.format(max=2100, avg=2010))["runs"]["max_us"] == 2100
    with pytest.raises(EdgebnnError, match="not a time") as err:
        parse.parse(RUNNER_OUTPUT.format(max=max_us, avg=avg_us))
    assert named in str(err.value) and "nothing is stored" in str(err.value)


# ------------------------------------------------------------------------------------------ what is named
def test_a_recipe_or_target_folder_is_named_a_folder(tmp_path):
    (tmp_path / "r.toml").mkdir()
    line = assert_one_error_line(CliRunner().invoke(main, ["train", str(tmp_path / "r.toml")]), only=True)
    assert "recipe file" in line and "is a folder" in line and "does not exist" not in line
    os.mkfifo(tmp_path / "f.toml")
    line = assert_one_error_line(CliRunner().invoke(main, ["train", str(tmp_path / "f.toml")]), only=True)
    assert "is not a regular file" in line
    (tmp_path / "t.toml").mkdir()
    with pytest.raises(EdgebnnError, match="target profile .* is a folder"):
        targets.load(str(tmp_path / "t.toml"))


@pytest.mark.parametrize("text, needle", [
    ('lce_target = "arm64"\n', "has no name: a profile needs name and lce_target"),
    ('name = "x"\n', "has no lce_target"),
    ('name = "x"\nlce_target = "arm64"\nbenchmark = 3\n', "[benchmark] is not a table"),
    ('name = "x"\nlce_target = "arm64"\n[benchmark]\nthreads = ["a"]\n', "is invalid"),
    ("name = \n", "is not valid TOML"),
])
def test_a_target_profile_missing_a_key_says_which(tmp_path, text, needle):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(EdgebnnError) as err:
        targets.load(str(path))
    assert needle in str(err.value) and "'name'" not in str(err.value)


def test_an_ssh_config_folder_is_named_and_port_0_refused(tmp_path):
    with pytest.raises(EdgebnnError, match=r"ssh config file .* is a folder: give an ssh -F config file"):
        devices.resolve("ssh://me@127.0.0.1:2222", ssh_config=str(tmp_path))
    with pytest.raises(EdgebnnError, match="ssh config file .* does not exist"):
        devices.resolve("ssh://me@127.0.0.1:2222", ssh_config=str(tmp_path / "none"))
    result = CliRunner().invoke(main, ["devices", "check", "ssh://me@127.0.0.1:2222", "--ssh-config", str(tmp_path)])
    assert_one_error_line(result, "is a folder", "--ssh-config", only=True)
    line = assert_one_error_line(CliRunner().invoke(main, ["devices", "check", "ssh://127.0.0.1:0"]), only=True)
    assert "port 0 is no SSH port" in line and "[127.0.0.1:0]" not in line


def test_checkpoint_is_named_only_when_given():
    odd = {"name": "r", "checkpoints": {"other": {"file": "model.keras"}}}
    with pytest.raises(EdgebnnError) as err:
        runs.checkpoint_of(odd)
    assert not isinstance(err.value, OptionError) and "names neither best nor last" in str(err.value)
    result = CliRunner().invoke(main, ["eval", "nowhere"])
    assert "--checkpoint" not in result.output
    with pytest.raises(EdgebnnError, match="keeps no best model"):
        runs.checkpoint_of({"name": "r", "checkpoints": {"last": {"file": "model.keras"}}}, "best")


def test_a_complex_checkpoint_tensor_is_refused_by_name():
    import tensorflow as tf

    from edgebnn.importing.tensors import Mapper

    inp = tf.keras.Input((2,))
    model = tf.keras.Model(inp, tf.keras.layers.Dense(2, name="fc")(inp))
    state = {"fc.weight": np.ones((2, 2), np.complex64) * (1 + 2j), "fc.bias\x1b[2J": np.zeros(2, np.complex128),
             "ok": np.ones(2, np.float64)}
    m = Mapper(state, model)
    assert m.take("ok").dtype == np.float32
    for key, shown in (("fc.weight", "fc.weight"), ("fc.bias\x1b[2J", "fc.bias\\x1b[2J")):
        with pytest.raises(EdgebnnError, match="holds complex numbers") as err:
            m.take(key)
        assert shown in str(err.value) and "\x1b" not in str(err.value)


@pytest.mark.parametrize("args", [["convert", LONG], ["data", f"folder:{LONG}"], ["report", "--db", f"{LONG}.db"],
                                  ["estimate", f"{LONG}.tflite"], ["import", f"{LONG}.pth.tar"]])
def test_every_name_over_the_limit_is_one_line_whichever_door(tmp_path, monkeypatch, args):
    """A name over the limit met where no check named it first is still one line (the CLI's last guard)."""
    monkeypatch.chdir(tmp_path)
    line = assert_one_error_line(CliRunner().invoke(main, args), "x" * 40)
    assert "longer than the file system allows" in line or "over the file system's limit" in line
