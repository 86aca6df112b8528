"""Fine-tuning from pretrained weights (``edgebnn train NAME --weights RUN|MODEL``, edgebnn.finetune): a checkpoint
in ReActNet's official layout, written by real PyTorch, imported, proven on the host and on LCE's aarch64 kernels
under QEMU, then fine-tuned on digits with another class count, converted and proven again."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from arm64_helpers import aarch64_runner
from cli_checks import assert_one_error_line
from click.testing import CliRunner

import edgebnn  # noqa: F401
from edgebnn import archs, finetune, runs, tflite
from edgebnn import conversion as conv
from edgebnn.archs.common import padding_of
from edgebnn.cli import main
from edgebnn.importing import import_checkpoint
from edgebnn.training import train

MAKE_REFERENCE = Path(__file__).parent / "torch_reference" / "make_reference.py"
SIZE = 96  # every stride-2 map even (three flipped binary convs), as the official pools need


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    """ReAct-ResNet-18 at width 1/8, 20 classes, from a PyTorch checkpoint in the official layout."""
    root = tmp_path_factory.mktemp("finetune")
    proc = subprocess.run(["/usr/bin/python3", str(MAKE_REFERENCE), "reactnet-18", "--out", str(root / "ref"),
                           "--width", "0.125", "--input-size", str(SIZE), "--num-classes", "20"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"make_reference.py needs Debian's python3-torch: {proc.stderr[-300:]}"
    return import_checkpoint(root / "ref" / "checkpoint.pth.tar", out=root / "imported", log=lambda _: None)


@pytest.mark.slow
@pytest.mark.qemu
def test_imported_model_converts_and_answers_like_keras_on_the_host_and_on_aarch64(imported, tmp_path):
    runner = aarch64_runner()
    report = conv.convert(imported, "arm64", output=tmp_path / "m.tflite", check_samples=20, dataset="digits",
                          verify_on="qemu:aarch64", runner=str(runner))
    assert report["deployment"]["padding"] == "official"
    assert report["conversion"]["binary_converted"] == report["conversion"]["binary_convs"] == 16
    assert report["conversion"]["ops"]["REVERSE_V2"] == 6  # three stride-2 convs on even maps, flipped
    for check in (report["check"], report["device_checks"]["qemu:aarch64"]):
        assert check["top1_agreement"] == 1.0 and check["unexplained"] == 0
        assert check["relative_diff_untied"] < 1e-3
    meta = tflite.read_metadata(tmp_path / "m.tflite")
    assert meta["padding"] == "official"


@pytest.mark.slow
def test_fine_tuning_an_imported_model_on_digits_trains_converts_and_proves(imported, tmp_path):
    run = train("reactnet-18", dataset="digits", epochs=1, out=tmp_path / "ft", sets=[f"input_size={SIZE}"],
                weights=imported, progress=False, verbose=False, summary=False)
    info = runs.read_info(run)
    source = runs.read_info(imported)
    assert info["status"] == "done" and info["padding"] == "official" and info["num_classes"] == 10
    assert info["weights"]["sha256"] == finetune.sha256(imported / runs.FINAL_MODEL)
    assert info["weights"]["num_classes"] == 20
    assert info["weights"]["source"]["sha256"] == source["source"]["sha256"]  # the checkpoint file it came from
    assert "fine-tuning step (ours)" in info["ours"]
    recipe = (run / runs.RECIPE).read_text()
    assert 'padding = "official"' in recipe and "width = 0.125" in recipe and 'name = "finetune"' in recipe
    model, _ = runs.load_model(run)
    assert padding_of(model) == "official" and model.output_shape[-1] == 10
    report = conv.convert(run, "arm64", check_samples=50)
    assert report["check"]["top1_agreement"] == 1.0 and report["check"]["unexplained"] == 0
    assert report["deployment"]["padding"] == "official"


def test_weights_are_copied_by_name_and_only_the_classifier_is_new(imported):
    pretrained = finetune.load_pretrained(imported)
    assert (pretrained.padding, pretrained.width, pretrained.num_classes) == ("official", 0.125, 20)
    assert pretrained.binary_weights and pretrained.binary_activations
    model = archs.build("reactnet-18", (64, 64, 3), 10, 0.125, padding="official", small=False)
    copied, head = finetune.load_weights_into(model, pretrained)
    assert head == "head_fc"
    for layer in model.layers:
        if layer.name == "head_fc" or not layer.weights:
            continue
        for a, b in zip(layer.get_weights(), pretrained.model.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert len(copied) == sum(len(layer.weights) for layer in model.layers if layer.name != "head_fc")


def test_weights_of_another_model_are_one_line(imported, tmp_path):
    result = CliRunner().invoke(main, ["train", "bireal-18", "--dataset", "digits", "--weights", str(imported),
                                       "--out", str(tmp_path / "x")])
    assert_one_error_line(result, "reactnet-18 model, not bireal-18", only=True)
    assert not (tmp_path / "x").exists()


def test_resume_with_weights_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["train", "--resume", str(tmp_path), "--weights", str(tmp_path)])
    assert_one_error_line(result, "--weights")


def test_run_json_of_a_fine_tuned_run_is_json(imported):
    json.dumps(finetune.provenance(finetune.load_pretrained(imported)))


@pytest.mark.parametrize("args, needles", [
    (["--set", "arch.width=0.5"], ["--set arch.width=0.5", "width 0.125", "fine-tuning keeps their width"]),
    (["--set", "arch.padding=lce"], ["--set arch.padding=lce", "official padding convention"]),
    (["--twin"], ["holds binary weights", "--twin"]),
    (["--set", "real=true"], ["holds binary weights"]),
    (["--set", "steps.lr=0.1"], ["--set steps.lr=0.1", "fine-tuning trains one step of its own"]),
    (["--set", "steps.0.epochs=3"], ["--set steps.0.epochs=3", "last step (1)"]),
])
def test_fine_tuning_refuses_an_explicit_choice_it_would_drop(imported, tmp_path, args, needles):
    result = CliRunner().invoke(main, ["train", "reactnet-18", "--dataset", "digits", "--weights", str(imported),
                                       "--out", str(tmp_path / "x"), "--set", f"input_size={SIZE}", *args])
    assert_one_error_line(result, *needles)
    assert not (tmp_path / "x").exists()


def test_fine_tuning_keeps_what_it_can_honour(imported):
    recipe = finetune.finetune_recipe(
        __import__("edgebnn.recipe", fromlist=["load"]).load(
            "reactnet-18", dataset="digits", sets=["arch.width=0.125", "steps.epochs=3", "steps.batch_size=16"]),
        finetune.load_pretrained(imported), sets=["arch.width=0.125", "steps.epochs=3", "steps.batch_size=16"])
    step, = recipe["steps"]
    assert (recipe["arch"]["width"], step["epochs"], step["batch_size"]) == (0.125, 3, 16)


def test_an_official_padding_network_too_small_for_lce_is_refused_before_training(imported, tmp_path, monkeypatch):
    from edgebnn import training

    monkeypatch.setattr(training._Trainer, "_train_steps", lambda self: pytest.fail("trained"))
    result = CliRunner().invoke(main, ["train", "reactnet-18", "--dataset", "digits", "--weights", str(imported),
                                       "--out", str(tmp_path / "x"), "--set", "input_size=16"])
    assert_one_error_line(result, "smaller than their kernel", "LCE 0.16 computes wrong", "nothing was trained")
    assert not (tmp_path / "x").exists()
