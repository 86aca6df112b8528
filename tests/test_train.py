"""Training on the digits data for real: accuracy, run folder, handover, distillation, resume, bad input."""

import json
import math
import os
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
from edgebnn.errors import EdgebnnError

EDGEBNN = str(Path(sys.executable).with_name("edgebnn"))
# The small bireal-18 digits recipe, shortened: width 0.25, 16x16 inputs, 3 epochs (about a minute on 2 cores).
ARGS = ["bireal-18", "--dataset", "digits", "--epochs", "3", "--set", "input_size=16", "--quiet"]


def _rows(run_dir):
    from edgebnn.training import read_metrics

    return read_metrics(run_dir)


@pytest.fixture(scope="module")
def bireal_run(tmp_path_factory):
    from edgebnn.training import train

    out = tmp_path_factory.mktemp("runs") / "bireal"
    return train("bireal-18", dataset="digits", epochs=3, sets=["input_size=16"], out=out, progress=False,
                 summary=False)


@pytest.mark.slow
def test_trains_on_digits_to_90_percent(bireal_run):
    rows = _rows(bireal_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "step", "loss", "top1", "top5", "val_loss", "val_top1", "val_top5", "lr",
                             "seconds"]
    assert float(rows[-1]["val_top1"]) >= 0.90
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    # linear decay to 0 over 3 epochs: lr at the start of each epoch is 2e-3 * (1, 2/3, 1/3)
    assert [float(r["lr"]) for r in rows] == pytest.approx([2e-3, 2e-3 * 2 / 3, 2e-3 / 3], rel=1e-3)
    info = runs.read_info(bireal_run)
    assert info["status"] == "done" and info["epochs_done"] == 3 and info["input_shape"] == [16, 16, 3]
    assert info["best_val_top1"] == pytest.approx(max(float(r["val_top1"]) for r in rows), abs=1e-6)
    assert (bireal_run / "recipe.toml").is_file() and list((bireal_run / "tb").iterdir())
    for kind in ("last", "best"):
        assert (bireal_run / "checkpoints" / kind / "checkpoint").is_file()


@pytest.mark.slow
def test_eval_of_the_saved_model_matches_the_best_epoch(bireal_run):
    from edgebnn.evaluate import evaluate

    result = evaluate(bireal_run)
    rows = _rows(bireal_run)
    best = max(rows, key=lambda r: float(r["val_top1"]))  # the first of equals: only a better top-1 replaces it
    assert result["n"] == 359 and result["dataset"] == "digits"
    assert result["checkpoint"]["which"] == "best" and result["checkpoint"]["epoch"] == int(best["epoch"])
    assert result["top1"] == pytest.approx(float(best["val_top1"]), abs=1e-5)
    assert result["top5"] == pytest.approx(float(best["val_top5"]), abs=1e-5)
    proc = subprocess.run([EDGEBNN, "eval", str(bireal_run / "model.keras"), "--dataset", "digits", "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["top1"] == pytest.approx(result["top1"], abs=1e-6)


@pytest.mark.slow
def test_kill_and_resume_finishes_every_epoch_once_and_exactly(bireal_run, tmp_path):
    """SIGKILL mid-run, --resume: metrics.csv has epochs 1..3 once each, with the numbers of an uninterrupted run
    of the same seed (the fixture)."""
    out = tmp_path / "killed"
    proc = subprocess.Popen([EDGEBNN, "train", *ARGS, "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if len(_rows(out)) >= 1 and (out / "checkpoints" / "last" / "checkpoint").is_file():
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 1 <= len(_rows(out)) < 3 and not (out / "model.keras").exists()
    done = subprocess.run([EDGEBNN, "train", "--resume", str(out), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout
    rows, reference = _rows(out), _rows(bireal_run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for key in ("loss", "top1", "val_loss", "val_top1", "lr"):
        assert [float(r[key]) for r in rows] == pytest.approx([float(r[key]) for r in reference], abs=1e-5), key
    assert runs.read_info(out)["status"] == "done" and (out / "model.keras").is_file()


def test_distributional_loss_is_the_formula_on_known_logits():
    import tensorflow as tf

    from edgebnn.archs.common import distributional_loss

    teacher = np.array([[0.0, 0.0], [2.0, -1.0]], np.float32)
    student = np.array([[0.0, math.log(3.0)], [0.5, 0.5]], np.float32)
    # row 1: -(0.5 log 1/4 + 0.5 log 3/4); row 2: student uniform, so -log(1/2)
    expected = (-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) + math.log(2.0)) / 2
    assert float(distributional_loss(tf.constant(teacher), tf.constant(student))) == pytest.approx(expected, 1e-6)
    p = np.exp(teacher) / np.exp(teacher).sum(1, keepdims=True)
    log_q = student - np.log(np.exp(student).sum(1, keepdims=True))
    assert expected == pytest.approx(-(p * log_q).sum(1).mean(), 1e-6)


TWO_STEPS = """model = "bireal-18"
dataset = "digits"
input_size = 16
[arch]
width = 0.25
[[steps]]
name = "acts"
binary_weights = false
binary_activations = true
epochs = 1
batch_size = 64
lr = 2e-3
loss = "distributional"
teacher = "{teacher}"
[[steps]]
name = "both"
epochs = 1
batch_size = 64
lr = 0.0
schedule = "constant"
init_from_previous = true
"""


@pytest.mark.slow
def test_two_step_handover_starts_from_step_one_with_a_run_folder_teacher(bireal_run, tmp_path):
    """Step 2 trains with lr 0, so its kernels must be exactly step 1's final kernels, not fresh ones; step 1 is
    distilled from the fixture run (teacher given as a run folder)."""
    import tensorflow as tf

    from edgebnn import archs
    from edgebnn.training import train

    path = tmp_path / "two.toml"
    path.write_text(TWO_STEPS.format(teacher=bireal_run))
    run = train(str(path), out=tmp_path / "run", progress=False, summary=False)
    rows = _rows(run)
    assert [(int(r["epoch"]), r["step"]) for r in rows] == [(1, "acts"), (2, "both")]
    assert float(rows[0]["val_top1"]) > 0.5  # learned from the teacher alone (no labels in the loss)

    step1 = archs.build("bireal-18", input_shape=(16, 16, 3), num_classes=10, width=0.25, binary_weights=False)
    fresh = [w.numpy() for w in step1.weights if "kernel" in w.name]
    tf.train.Checkpoint(model=step1).read(str(run / "checkpoints" / "acts" / "model")).expect_partial()
    final, _ = runs.load_model(run)
    names = [layer.name for layer in archs.stats.binary_conv_layers(final)]
    assert names
    for name in names:
        after_step1 = step1.get_layer(name).kernel
        after_step1 = getattr(after_step1, "latent_variable", after_step1).numpy()
        kernel = final.get_layer(name).kernel
        np.testing.assert_array_equal(getattr(kernel, "latent_variable", kernel).numpy(), after_step1)
    moved = [w.numpy() for w in step1.weights if "kernel" in w.name]
    assert any(not np.allclose(a, b) for a, b in zip(fresh, moved, strict=True)), "step 1 did not train"


def _cli(*args):
    return subprocess.run([EDGEBNN, *args], capture_output=True, text=True)


def test_unknown_model_is_one_clear_line():
    assert_one_error_line(_cli("train", "bireal-99", "--dataset", "digits"), "unknown model 'bireal-99'", "bireal-18",
                          only=True)


def test_misspelled_and_ill_typed_recipe_keys_name_key_and_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('model = "bireal-18"\n[[steps]]\nepochs = 1\nbatch_size = 32\nlr = 1e-3\nlabel_smoothin = 0.1\n')
    assert_one_error_line(_cli("train", str(path)), str(path), "label_smoothin", only=True)
    path.write_text('model = "bireal-18"\n[[steps]]\nepochs = "one"\nbatch_size = 32\nlr = 1e-3\n')
    assert_one_error_line(_cli("train", str(path)), str(path), "steps.0.epochs must be an integer", only=True)
    path.write_text('model = "bireal-99"\n[[steps]]\nepochs = 1\nbatch_size = 32\nlr = 1e-3\n')
    assert_one_error_line(_cli("train", str(path)), "unknown model 'bireal-99'", only=True)


def test_missing_teacher_is_an_error(tmp_path):
    from edgebnn.training import train

    path = tmp_path / "two.toml"
    path.write_text(TWO_STEPS.format(teacher=tmp_path / "no-such-run"))
    with pytest.raises(EdgebnnError, match=r"teacher '.*no-such-run' .* neither a registered model nor"):
        train(str(path), out=tmp_path / "run", progress=False, summary=False)


def test_resume_needs_a_run_folder(tmp_path):
    assert_one_error_line(_cli("train", "--resume", str(tmp_path)), "not a run folder")  # after TensorFlow's log
    assert_one_error_line(_cli("eval", str(tmp_path / "nothing")), "does not exist")


def test_batch_not_divisible_by_replicas(tmp_path):
    code = (
        "import edgebnn, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from edgebnn.training import train\n"
        "try:\n"
        f"    train('bireal-18', dataset='digits', batch_size=33, strategy='mirrored', out={str(tmp_path)!r})\n"
        "except edgebnn.EdgebnnError as err:\n"
        "    print('ERROR', err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "ERROR steps.0.batch_size = 33 is not divisible by the 2 replicas" in out.stdout, out.stderr[-2000:]


NAN = """model = "bireal-18"
dataset = "digits"
input_size = 16
[arch]
width = 0.25
[[steps]]
name = "fine"
epochs = 1
batch_size = 64
lr = 2e-3
[[steps]]
name = "explodes"
epochs = 1
batch_size = 64
lr = 1e30
schedule = "constant"
"""


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_message_keeping_the_last_good_checkpoint(tmp_path):
    import tensorflow as tf

    path = tmp_path / "nan.toml"
    path.write_text(NAN)
    out = tmp_path / "run"
    proc = _cli("train", str(path), "--out", str(out), "--quiet")
    assert_one_error_line(proc, "loss became", "in epoch 2 (explodes", "Last good checkpoint",
                          "lower the learning rate")
    assert [int(r["epoch"]) for r in _rows(out)] == [1]
    assert runs.read_info(out)["status"] == "diverged" and not (out / "model.keras").exists()
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out / "checkpoints" / "last")))
    assert int(reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE")) == 1


def test_resume_refuses_recipe_changes(tmp_path):
    from edgebnn.training import train

    with pytest.raises(EdgebnnError, match=r"resume continues a run with its own recipe; drop epochs, sets"):
        train(resume=tmp_path, epochs=2, sets=["steps.lr=1"])
