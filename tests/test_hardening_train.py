"""Hostile inputs to training and data, one test per class of failure: each ends in one `error:` line and exit 2,
before the long work starts, and keeps what was already saved (finished epochs, checkpoints, files)."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_one_error_line

import edgebnn  # noqa: F401
from edgebnn import runs

EDGEBNN = str(Path(sys.executable).with_name("edgebnn"))
ARGS = ["bireal-18", "--dataset", "digits", "--epochs", "3", "--set", "input_size=16", "--quiet"]


def _cli(*args, **kw):
    return subprocess.run([EDGEBNN, *args], capture_output=True, text=True, **kw)


def _snapshot(run_dir: Path) -> dict:
    """Every file of a run but its lock (a refused resume takes over a dead process's stale lock and drops it)."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != "run.lock"}


# ------------------------------------------------------------------------------------- silent wrong results
def test_values_that_would_train_to_nonsense_are_refused_up_front(tmp_path):
    images = tmp_path / "one-class" / "cats"
    images.mkdir(parents=True)
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(images / f"{i}.png")
    cases = [
        (["train", *ARGS, "--set", "steps.label_smoothing=1.5"], "label_smoothing must be in [0, 1), got 1.5"),
        (["train", *ARGS, "--set", "steps.lr=nan"], "steps.0.lr must be a finite number"),
        (["train", *ARGS, "--set", "arch.width=-1"], "arch.width must be above 0"),
        (["train", *ARGS, "--seed", "-5"], "--seed must be from 0 to"),
        (["data", f"folder:{tmp_path / 'one-class'}"], "has one class folder (cats)"),
        (["models", "--input-size", "0"], "--input-size must be 1 or more, got 0"),
        (["models", "bireal-18", "--num-classes", "0"], "--num-classes must be 2 or more, got 0"),
        (["profile", "x.tflite", "--threads", "100000"], "--threads takes counts from 1 to 1024"),
        (["profile", "x.tflite", "--warmup", "-5"], "--warmup must be from 0"),
        (["profile", "x.tflite", "--timeout", "-1"], "--timeout must be a number of seconds above 0"),
    ]
    for args, needle in cases:
        proc = _cli(*args)
        assert_one_error_line(proc, needle, only=True)


def test_bad_cifar10_files_are_one_line_before_an_epoch(tmp_path):
    from edgebnn import data
    from edgebnn.errors import EdgebnnError

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)

    def batch(name, labels):
        with open(root / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
                         b"labels": list(labels)}, f)

    for i in range(1, 6):
        batch(f"data_batch_{i}", [i % 10] * 4)
    batch("test_batch", [0, 1, 2, 11])  # a label outside 0..9
    with pytest.raises(EdgebnnError, match=r"test_batch has label 11, outside the 10 classes") as info:
        data._cifar10_source(str(root))
    assert "\n" not in str(info.value)
    batch("test_batch", [0, 1, 2, 3])
    (root / "batches.meta").write_bytes(pickle.dumps([b"cat", b"dog"]))  # a list, not the dict CIFAR ships
    with pytest.raises(EdgebnnError, match=r"batches.meta does not hold the 10 label_names"):
        data._cifar10_source(str(root))


def test_image_folders_that_cannot_train_are_one_line(tmp_path):
    from PIL import Image

    tiny = tmp_path / "tiny"  # one image per class: the seeded split leaves validation empty
    for c in ("a", "b"):
        (tiny / c).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tiny / c / "0.png")
    assert_one_error_line(_cli("data", f"folder:{tiny}"), "validation split of", "is empty")
    cut = tmp_path / "cut"  # a JPEG truncated after its header: readable header, no end marker
    for c in ("a", "b"):
        (cut / c).mkdir(parents=True)
        for i in range(5):
            noise = np.random.default_rng(i).integers(0, 256, (96, 96, 3), dtype=np.uint8)
            Image.fromarray(noise).save(cut / c / f"{i}.jpg")
    whole = (cut / "b" / "3.jpg").read_bytes()
    (cut / "b" / "3.jpg").write_bytes(whole[: len(whole) // 2])
    assert_one_error_line(_cli("data", f"folder:{cut}"), "3.jpg is truncated (its JPEG end marker is missing)")


# -------------------------------------------------------------------------------------------- output checks
def test_train_out_is_checked_before_training(tmp_path):
    existing = tmp_path / "taken.txt"
    existing.write_text("mine")
    start = time.monotonic()
    assert_one_error_line(_cli("train", *ARGS, "--out", str(existing)), f"--out {existing} is a file")
    assert existing.read_text() == "mine" and time.monotonic() - start < 30  # refused before TensorFlow loaded
    locked = tmp_path / "read-only"
    locked.mkdir()
    immutable = os.geteuid() == 0
    if immutable:
        if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode:
            pytest.skip("root without chattr +i: nothing makes a folder read-only")
    else:
        locked.chmod(0o555)
    try:
        assert_one_error_line(_cli("train", *ARGS, "--out", str(locked / "run")), f"cannot write in {locked}")
    finally:
        subprocess.run(["chattr", "-i", str(locked)]) if immutable else locked.chmod(0o755)
    assert list(locked.iterdir()) == []


def test_convert_and_report_outputs_are_checked_before_the_work(tmp_path):
    mine = tmp_path / "mine.tflite"
    mine.write_bytes(b"not to be lost")
    start = time.monotonic()
    assert_one_error_line(_cli("convert", str(tmp_path / "any-run"), "-o", str(mine)),
                          f"-o {mine} already exists and is not overwritten: remove it first")
    assert mine.read_bytes() == b"not to be lost" and time.monotonic() - start < 30  # before any model is loaded
    assert_one_error_line(_cli("report", "--runs", str(tmp_path / "no-such-runs")), "--runs", "is not a folder")
    assert_one_error_line(_cli("report", "--out", str(mine)), f"--out {mine} is a file")
    assert mine.read_bytes() == b"not to be lost"


# ----------------------------------------------------------------------------------------------- resuming
@pytest.mark.slow
def test_resume_refuses_a_running_run_and_a_missing_or_corrupt_checkpoint_keeping_finished_epochs(tmp_path):
    """A run trains in another process: --resume is refused (its status stays running); killed, its checkpoint
    removed or truncated: refused with one line, nothing changed; restored: resumed after its finished epochs."""
    out = tmp_path / "run"
    proc = subprocess.Popen([EDGEBNN, "train", *ARGS, "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    last = out / "checkpoints" / "last"
    while time.time() < deadline and proc.poll() is None:
        if (last / "checkpoint").is_file() and (out / runs.METRICS).is_file() and \
                len((out / runs.METRICS).read_text().splitlines()) >= 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before the test could resume it"
    assert_one_error_line(_cli("train", "--resume", str(out), "--quiet"), "is still being trained", f"pid {proc.pid}")
    assert runs.read_info(out)["status"] == "running"  # not flipped by the refused resume
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = _snapshot(out)
    done = runs.read_info(out)["epochs_done"]
    assert done >= 1
    shutil.move(last, tmp_path / "last-backup")
    assert_one_error_line(_cli("train", "--resume", str(out), "--quiet"), "holds no checkpoint",
                          f"finished {done} epoch(s)")
    shutil.copytree(tmp_path / "last-backup", last)
    assert _snapshot(out) == kept
    data = next(last.glob("*.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert_one_error_line(_cli("train", "--resume", str(out), "--quiet"), "is corrupt", "nothing was changed")
    (out / runs.METRICS).write_bytes(b"\xff\xfe garbage \x00")
    assert_one_error_line(_cli("train", "--resume", str(out), "--quiet"), "metrics.csv is corrupt")
    assert {k: v for k, v in _snapshot(out).items() if "data-" not in k and k != runs.METRICS} == \
        {k: v for k, v in kept.items() if "data-" not in k and k != runs.METRICS}
    shutil.rmtree(last)
    shutil.copytree(tmp_path / "last-backup", last)
    (out / runs.METRICS).write_bytes(kept[runs.METRICS])
    resumed = _cli("train", "--resume", str(out), "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"after epoch {done}" in resumed.stdout
    rows = [int(r.split(",")[0]) for r in (out / runs.METRICS).read_text().splitlines()[1:]]
    assert rows == [1, 2, 3] and json.loads((out / runs.RUN_INFO).read_text())["status"] == "done"
    assert not (out / "run.lock").exists()
