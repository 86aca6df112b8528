"""The official-layout PyTorch references (tests/torch_reference/make_reference.py) that ``edgebnn import`` is tested
against: each one's checkpoint holds the key names and shapes PAPERS.md lists for that official code, in the trainer's
save format, and its logits are finite and change when one weight changes (a wrong mapping would show).

Runs the script under /usr/bin/python3 (Debian's torch 1.13); edgebnn itself never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parent / "torch_reference" / "make_reference.py"
TORCH_PYTHON = "/usr/bin/python3"
REACTNET_SAVE = ["best_top1_acc", "epoch", "optimizer", "state_dict"]
CIFAR_SAVE = ["best_prec1", "epoch", "state_dict"]

# name: (arguments, {key: shape} that must be there, substrings no key may hold (``$``: at the end),
#        (key suffix, how many keys end so), the checkpoint dict's keys, sensitivity specs).
# Width 0.25: stages 16/32/64/128 (ReActNet-A: stem 8, blocks 16 ... 256).
CASES = {
    "reactnet-a": (
        ["--width", "0.25", "--input-size", "96"],
        {"feature.0.conv1.weight": [8, 3, 3, 3], "feature.0.bn1.running_var": [8],
         "feature.1.move11.bias": [1, 8, 1, 1], "feature.1.binary_3x3.weights": [8 * 8 * 9, 1],
         "feature.1.binary_pw_down1.weights": [8 * 8, 1], "feature.1.bn2_2.weight": [8],
         "feature.1.move22.bias": [1, 16, 1, 1], "feature.1.prelu2.weight": [16], "feature.3.binary_pw.weights":
         [32 * 32, 1], "feature.13.move23.bias": [1, 256, 1, 1], "fc.weight": [10, 256], "fc.bias": [10]},
        ["feature.14.", ".weight_", "pooling"], (".weights", 13 + 13 + 5), REACTNET_SAVE,
        ["feature.5.binary_3x3.weights", "feature.7.move21.bias", "feature.13.prelu2.weight"]),
    "reactnet-a-step1": (
        ["--width", "0.25", "--input-size", "96", "--step", "1"],
        {"feature.1.binary_3x3.weight": [8, 8, 3, 3], "feature.1.binary_pw_down2.weight": [8, 8, 1, 1],
         "feature.2.binary_3x3.weight": [16, 16, 3, 3]},
        [".weights"], (".binary_3x3.weight", 13), REACTNET_SAVE, ["feature.4.binary_3x3.weight"]),
    "reactnet-18": (
        ["--width", "0.25", "--input-size", "96"],
        {"conv1.weight": [16, 3, 7, 7], "layer1.0.move0.bias": [1, 16, 1, 1],
         "layer1.0.binary_conv.weight": [16, 16, 3, 3], "layer1.0.prelu.weight": [16],
         "layer2.0.move0.bias": [1, 16, 1, 1], "layer2.0.binary_conv.weight": [32, 16, 3, 3],
         "layer2.0.downsample.1.weight": [32, 16, 1, 1], "layer2.0.downsample.2.running_mean": [32],
         "layer4.3.move2.bias": [1, 128, 1, 1], "fc.weight": [10, 128]},
        [".weights", "layer1.0.downsample", "layer4.4."], (".binary_conv.weight", 16), REACTNET_SAVE,
        ["layer2.1.binary_conv.weight", "layer3.0.move0.bias", "layer3.0.downsample.2.running_mean"]),
    "reactnet-18-flat": (
        ["--width", "0.25", "--input-size", "96", "--binary-layout", "flat", "--container", "legacy"],
        {"layer1.0.binary_conv.weights": [16 * 16 * 9, 1], "layer3.0.binary_conv.weights": [64 * 32 * 9, 1]},
        [".binary_conv.weight$"], (".binary_conv.weights", 16), REACTNET_SAVE, ["layer3.0.binary_conv.weights"]),
    "bireal-18": (
        ["--width", "0.25", "--input-size", "96"],
        {"conv1.weight": [16, 3, 7, 7], "bn1.weight": [16], "layer1.0.binary_conv.weights": [16 * 16 * 9, 1],
         "layer1.3.bn1.running_var": [16], "layer2.0.binary_conv.weights": [32 * 16 * 9, 1],
         "layer2.0.downsample.1.weight": [32, 16, 1, 1], "layer2.0.downsample.2.weight": [32],
         "fc.weight": [10, 128]},
        ["move", "prelu", "layer1.0.downsample", "layer4.4."], (".binary_conv.weights", 16), REACTNET_SAVE,
        ["layer3.2.binary_conv.weights", "layer2.0.downsample.1.weight"]),
    "bireal-34": (
        ["--width", "0.125", "--input-size", "96"],
        {"layer3.11.binary_conv.weights": [32 * 32 * 9, 1], "layer2.7.bn1.bias": [16], "fc.weight": [10, 64]},
        ["layer3.12.", "layer4.6."], (".binary_conv.weights", 32), REACTNET_SAVE,
        ["layer3.10.binary_conv.weights"]),
    "sdbnn-18": (
        ["--width", "0.25", "--input-size", "96"],
        {"layer1.0.binary_conv.weights": [16 * 16 * 9, 1], "layer1.0.binary_conv.alpha": [16],
         "layer1.0.binary_conv.beta.fc.0.weight": [2, 16], "layer1.0.binary_conv.beta.fc.2.weight": [16, 2],
         "layer1.0.prelu.weight": [16], "layer2.0.binary_conv.alpha": [32],
         "layer2.0.binary_conv.beta.fc.0.weight": [2, 16], "layer2.0.downsample.1.weight": [32, 16, 1, 1],
         "layer4.3.binary_conv.beta.fc.2.weight": [128, 16], "fc.weight": [10, 128]},
        ["move", ".k$", ".t$"], (".binary_conv.alpha", 16), REACTNET_SAVE,
        ["layer2.1.binary_conv.alpha=-8", "layer2.1.binary_conv.beta.fc.0.weight", "layer4.0.prelu.weight"]),
    "sdbnn-resnet20": (
        [],
        {"conv1.weight": [16, 3, 3, 3], "bn1.weight": [16], "layer1.0.conv1.weight": [16, 16, 3, 3],
         "layer1.0.conv1.alpha": [16], "layer1.0.conv1.dybeta.fc.0.weight": [1, 16],
         "layer1.0.conv1.dybeta.fc.2.weight": [16, 1], "layer2.0.conv1.weight": [32, 16, 3, 3],
         "layer3.2.conv2.dybeta.fc.0.weight": [4, 64], "bn2.weight": [64], "bn2.running_var": [64],
         "linear.weight": [10, 64], "linear.bias": [10]},
        ["shortcut", ".k$", ".t$", "module.fc"], (".alpha", 18), CIFAR_SAVE,
        ["layer2.1.conv1.alpha=-8", "layer1.0.conv2.dybeta.fc.2.weight", "bn2.running_mean"]),
    "sdbnn-resnet18": (
        ["--width", "0.5", "--final"],
        {"conv1.weight": [32, 3, 3, 3], "layer1.0.conv1.dybeta.fc.0.weight": [2, 32],
         "layer2.0.conv1.weight": [64, 32, 3, 3], "layer2.0.shortcut.0.weight": [64, 32, 1, 1],
         "layer2.0.shortcut.1.running_mean": [64], "layer4.1.conv2.alpha": [256], "bn2.weight": [256],
         "linear.weight": [10, 256]},
        ["layer1.0.shortcut", ".k$", ".t$"], (".alpha", 16), ["best_prec1", "state_dict"],
        ["layer3.0.conv2.alpha=-8", "layer2.0.shortcut.0.weight"]),
    "sdbnn-vgg-small": (
        ["--width", "0.25"],
        {"conv0.weight": [32, 3, 3, 3], "bn0.weight": [32], "conv1.weight": [32, 32, 3, 3], "conv1.alpha": [32],
         "conv1.dybeta.fc.0.weight": [2, 32], "conv5.weight": [128, 128, 3, 3], "bn5.running_var": [128],
         "fc.weight": [10, 128 * 4 * 4], "fc.bias": [10]},
        ["conv0.alpha", "conv6", "bn6", ".k$", ".t$"], (".alpha", 5), CIFAR_SAVE,
        ["conv3.alpha=-8", "conv2.dybeta.fc.0.weight"]),
    "xnorpp-18-bnn": (
        ["--width", "0.25", "--input-size", "96"],
        {"conv1.weight": [16, 3, 7, 7], "layer1.0.bn1.weight": [16], "layer1.0.conv1.weight": [16, 16, 3, 3],
         "layer1.0.conv1.activation_post_process.alpha": [1, 16, 1, 1], "layer1.0.act1.weight": [16],
         "layer1.0.act2.weight": [16], "layer2.0.bn1.weight": [16], "layer2.0.conv1.weight": [32, 16, 3, 3],
         "layer2.0.downsample.1.weight": [32, 16, 1, 1], "layer2.0.downsample.2.running_var": [32],
         "layer4.1.conv2.activation_post_process.alpha": [1, 128, 1, 1], "fc.weight": [10, 128]},
        ["layer4.2.", "layer1.0.downsample", "downsample.1.activation"], (".activation_post_process.alpha", 16),
        ["arch", "best_acc1", "epoch", "optimizer", "state_dict"],
        ["layer2.0.conv1.activation_post_process.alpha", "layer3.1.act1.weight"]),
}


def _holds(key: str, part: str) -> bool:
    """``part`` is in ``key``; a trailing ``$`` means at its end."""
    return key.endswith(part[:-1]) if part.endswith("$") else part in key


def _make(case: str, out: Path) -> dict:
    args, *_ = CASES[case]
    name = case.removesuffix("-step1").removesuffix("-flat")
    cmd = [TORCH_PYTHON, str(SCRIPT), name, "--out", str(out), "--num-classes", "10", "--seed", "3", *args,
           "--sensitivity", *CASES[case][5]]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    return json.loads((out / "info.json").read_text())


@pytest.mark.parametrize("case", sorted(CASES))
def test_reference_has_the_official_layout(case, tmp_path):
    args, shapes, forbidden, (suffix, count), save_keys, specs = CASES[case]
    info = _make(case, tmp_path)
    state = {key: shape for key, shape, _ in info["state_dict"]}
    assert all(key.startswith("module.") for key in state)  # saved from nn.DataParallel
    for key, shape in shapes.items():
        assert state.get(f"module.{key}") == shape, key
    assert not [k for k in state if any(_holds(k, f) for f in forbidden)]
    assert sum(k.endswith(suffix) for k in state) == count
    assert info["checkpoint_keys"] == save_keys

    container = "legacy" if "legacy" in args else "zip"
    assert zipfile.is_zipfile(tmp_path / "checkpoint.pth.tar") == (container == "zip")
    images, logits = np.load(tmp_path / "input.npy"), np.load(tmp_path / "output.npy")
    size = info["input_size"]
    assert images.shape == (2, 3, size, size) and images.dtype == np.float32
    assert logits.shape == (2, 10) and logits.dtype == np.float32
    assert np.isfinite(logits).all() and np.abs(logits).max() > 0.1

    changes = json.loads((tmp_path / "sensitivity.json").read_text())
    assert set(changes) == set(specs)
    assert min(changes.values()) > 1e-6, changes  # forward in float64: an unchanged reference gives exactly 0
    if case == "sdbnn-18":  # the published stage-2 code cannot run: the reference says what it computes instead
        assert any("string literal" in note and "WSD" in note for note in info["notes"])


def test_reference_is_reproducible_and_seeded(tmp_path):
    """The same seed gives the same checkpoint values and logits; another seed other ones."""
    runs = []
    for seed, out in ((5, tmp_path / "a"), (5, tmp_path / "b"), (6, tmp_path / "c")):
        subprocess.run([TORCH_PYTHON, str(SCRIPT), "bireal-18", "--out", str(out), "--width", "0.125",
                        "--input-size", "64", "--num-classes", "10", "--seed", str(seed)],
                       check=True, capture_output=True, timeout=120)
        runs.append(np.load(out / "output.npy"))
    assert np.array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])


def test_options_that_do_not_apply_are_refused(tmp_path):
    for extra in (["bireal-18", "--step", "1"], ["sdbnn-resnet20", "--binary-layout", "flat"]):
        done = subprocess.run([TORCH_PYTHON, str(SCRIPT), *extra, "--out", str(tmp_path)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2
        assert "does not apply" in done.stderr or "no --binary-layout" in done.stderr
