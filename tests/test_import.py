"""``edgebnn import``: checkpoints in each official layout, written by real PyTorch (Debian's python3-torch under
/usr/bin/python3, tests/torch_reference/make_reference.py) with random weights, come back as Keras models whose
logits equal the official forward pass to 1e-5 of the output scale; Larq Zoo's BiRealNet .h5 layout likewise
against a Keras mirror of Zoo's code. Leftover, missing and misshapen tensors end in one line naming them; the
command line writes a run folder with the file's sha256 and the checkpoint's own accuracy."""

import hashlib
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cli_checks import assert_one_error_line
from click.testing import CliRunner

from edgebnn import runs
from edgebnn.cli import main
from edgebnn.errors import EdgebnnError
from edgebnn.importing import importer, sources

SYSTEM_PYTHON = "/usr/bin/python3"
MAKE_REFERENCE = Path(__file__).parent / "torch_reference" / "make_reference.py"
EDGEBNN = str(Path(sys.executable).with_name("edgebnn"))
TOLERANCE = 1e-5  # of the output scale, max |ref|
IMAGENET = ("--input-size", "96", "--num-classes", "10")  # 96 px: every stride-2 map even, as the official pools need

# id -> (make_reference arguments, import overrides)
CASES = {
    "reactnet-a": (("reactnet-a", "--width", "0.25", *IMAGENET), {"input_size": 96}),
    "reactnet-a-step1-legacy": (("reactnet-a", "--width", "0.25", *IMAGENET, "--step", "1", "--container", "legacy"),
                                {"input_size": 96}),
    "reactnet-18": (("reactnet-18", "--width", "0.25", *IMAGENET), {"input_size": 96}),
    "reactnet-18-flat": (("reactnet-18", "--width", "0.25", *IMAGENET, "--binary-layout", "flat"),
                         {"input_size": 96}),
    "reactnet-18-step1": (("reactnet-18", "--width", "0.25", *IMAGENET, "--step", "1"), {"input_size": 96, "step": 1}),
    "bireal-18": (("bireal-18", "--width", "0.25", *IMAGENET), {"input_size": 96}),
    "bireal-34": (("bireal-34", "--width", "0.125", *IMAGENET), {"input_size": 96}),
    "sdbnn-18": (("sdbnn-18", "--width", "0.25", *IMAGENET), {"input_size": 96}),
    "xnorpp-18-bnn": (("xnorpp-18-bnn", "--width", "0.25", *IMAGENET), {"input_size": 96}),
    "sdbnn-resnet20": (("sdbnn-resnet20",), {}),  # width 1: narrower stages give ASD's C // 16 no unit
    "sdbnn-resnet18": (("sdbnn-resnet18", "--width", "0.125"), {}),
    "sdbnn-vgg-small": (("sdbnn-vgg-small", "--width", "0.125"), {}),
}
EXPECTED = {"reactnet-a": ("reactnet-a", 2, 0.25), "reactnet-a-step1-legacy": ("reactnet-a", 1, 0.25),
            "reactnet-18": ("reactnet-18", 2, 0.25), "reactnet-18-flat": ("reactnet-18", 2, 0.25),
            "reactnet-18-step1": ("reactnet-18", 1, 0.25), "bireal-18": ("bireal-18", 2, 0.25),
            "bireal-34": ("bireal-34", 2, 0.125), "sdbnn-18": ("sdbnn-18", 2, 0.25),
            "xnorpp-18-bnn": ("xnorpp-18-bnn", 2, 0.25), "sdbnn-resnet20": ("sdbnn-resnet20", 2, 1.0),
            "sdbnn-resnet18": ("sdbnn-resnet18", 2, 0.125), "sdbnn-vgg-small": ("sdbnn-vgg-small", 2, 0.125)}


def _make(out: Path, args) -> str | None:
    try:
        proc = subprocess.run([SYSTEM_PYTHON, str(MAKE_REFERENCE), args[0], "--out", str(out), *args[1:]],
                              capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        return f"{SYSTEM_PYTHON} is missing"
    return None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["no output"])[-1]


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, Path]:
    """Every case's folder (checkpoint.pth.tar, input.npy, output.npy), written once per module, two at a time.
    No torch is a failure, not a skip: CI installs python3-torch."""
    root = tmp_path_factory.mktemp("references")
    with ThreadPoolExecutor(2) as pool:
        errors = dict(zip(CASES, pool.map(lambda c: _make(root / c, CASES[c][0]), CASES), strict=True))
    failed = {c: e for c, e in errors.items() if e}
    if failed:
        pytest.fail(f"make_reference.py under {SYSTEM_PYTHON} failed ({failed}); these tests need Debian's "
                    f"python3-torch (apt-get install python3-torch)")
    return {c: root / c for c in CASES}


def _forward(model, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(Keras logits on the reference input, NCHW -> NHWC; the reference logits)."""
    x = np.load(folder / "input.npy").transpose(0, 2, 3, 1)
    return model(x, training=False).numpy(), np.load(folder / "output.npy")


def _relative(y, ref) -> float:
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def _import(source, **overrides):
    name = importer.detect(source, log=lambda line: None)
    plan = importer.plan(source, name, **overrides)
    model, used = importer.build_and_fill(source, plan)
    return plan, model, used


@pytest.mark.parametrize("case", list(CASES))
def test_every_family_computes_the_official_function(references, case):
    source = sources.read(references[case] / "checkpoint.pth.tar")
    plan, model, used = _import(source, **CASES[case][1])
    assert (plan.name, plan.step, plan.width, plan.padding) == (*EXPECTED[case], "official")
    assert source.prefixed and used == len(source.state)  # DataParallel's module. stripped; every tensor used
    assert source.format == ("pytorch legacy" if "legacy" in case else "pytorch zip")
    y, ref = _forward(model, references[case])
    assert _relative(y, ref) <= TOLERANCE, f"{case}: max |diff| {_relative(y, ref):.2e} of the output scale"


def test_step_and_layout_facts(references):
    """Flat kernels are step 2; ReActNet-A's 4-D ones step 1; ReAct-ResNet's 4-D ones step 2 unless told; a
    single-step family refuses --step 1."""
    flat = sources.read(references["reactnet-18-flat"] / "checkpoint.pth.tar")
    assert "layer1.0.binary_conv.weights" in flat.state and flat.state["layer1.0.binary_conv.weights"].ndim == 2
    four_d = sources.read(references["reactnet-18"] / "checkpoint.pth.tar")
    assert four_d.state["layer1.0.binary_conv.weight"].ndim == 4
    assert importer.plan(four_d, "reactnet-18", input_size=96).step == 2
    assert importer.plan(four_d, "reactnet-18", input_size=96, step=1).step == 1
    bireal = sources.read(references["bireal-18"] / "checkpoint.pth.tar")
    with pytest.raises(EdgebnnError, match="no step-1 import"):
        importer.plan(bireal, "bireal-18", input_size=96, step=1)
    with pytest.raises(EdgebnnError, match="over 64 px"):
        importer.plan(bireal, "bireal-18", input_size=32)


def test_a_checkpoint_without_the_module_prefix_imports_the_same(references):
    source = sources.read(references["bireal-18"] / "checkpoint.pth.tar")
    bare = replace(source, state=dict(source.state), prefixed=False)
    assert sources.strip_data_parallel(bare.state) == (bare.state, False)
    _, model, _ = _import(bare, input_size=96)
    y, ref = _forward(model, references["bireal-18"])
    assert _relative(y, ref) <= TOLERANCE


@pytest.mark.parametrize("change, named", [
    ("leftover", "layer5.0.extra.weight"),
    ("missing", "layer2.0.move0.bias"),
    ("shape", "layer3.1.bn1.weight"),
])
def test_a_checkpoint_that_does_not_fit_ends_in_one_line_naming_the_key(references, change, named):
    source = sources.read(references["reactnet-18"] / "checkpoint.pth.tar")
    state = dict(source.state)
    if change == "leftover":
        state[named] = np.zeros(3, np.float32)
    elif change == "missing":
        del state[named]
    else:
        state[named] = np.ones(7, np.float32)
    with pytest.raises(EdgebnnError) as err:
        _import(replace(source, state=state), input_size=96)
    message = str(err.value)
    assert named in message and "\n" not in message and "does not fit reactnet-18" in message


def _zoo_birealnet(size: int, filters: int, classes: int):
    """Larq Zoo's BiRealNetFactory.build (larq_zoo/literature/birealnet.py), layer for layer with Keras' generated
    names and Larq's default pad_values=0; returns (model ending in softmax, its logits tensor)."""
    import larq as lq
    import tensorflow as tf

    def block(x, double=False, filters=None):
        in_f = x.shape[-1]
        out_f = filters or in_f if not double else 2 * in_f
        shortcut = x
        if in_f != out_f:
            shortcut = tf.keras.layers.AvgPool2D(2, strides=2, padding="same")(shortcut)
            shortcut = tf.keras.layers.Conv2D(out_f, (1, 1), use_bias=False)(shortcut)
            shortcut = tf.keras.layers.BatchNormalization(momentum=0.8)(shortcut)
        x = lq.layers.QuantConv2D(out_f, (3, 3), strides=1 if out_f == in_f else 2, padding="same",
                                  input_quantizer="approx_sign", kernel_quantizer="magnitude_aware_sign",
                                  kernel_constraint="weight_clip", use_bias=False)(x)
        x = tf.keras.layers.BatchNormalization(momentum=0.8)(x)
        return tf.keras.layers.add([x, shortcut])

    image = tf.keras.Input((size, size, 3))
    x = tf.keras.layers.Conv2D(filters, (7, 7), strides=2, padding="same", use_bias=False)(image)
    x = tf.keras.layers.BatchNormalization(momentum=0.8)(x)
    x = tf.keras.layers.MaxPool2D((3, 3), strides=2, padding="same")(x)
    x = block(x, filters=filters)
    for _ in range(3):
        x = block(x)
    for _ in range(3):
        x = block(x, double=True)
        for _ in range(3):
            x = block(x)
    logits = tf.keras.layers.Dense(classes)(tf.keras.layers.GlobalAveragePooling2D()(x))
    return tf.keras.Model(image, tf.keras.layers.Activation("softmax")(logits)), logits


def test_larq_zoo_birealnet_weights_import_into_bireal_18(tmp_path):
    import tensorflow as tf

    from edgebnn import archs

    zoo_model, logits = _zoo_birealnet(96, 16, 10)
    rng = np.random.default_rng(0)
    for layer in zoo_model.layers:
        values = [rng.uniform(0.5, 2.0, w.shape) if "variance" in w.name or "gamma" in w.name
                  else rng.normal(0.0, 0.3, w.shape) for w in layer.weights]
        if values:
            layer.set_weights(values)
    zoo_model.save_weights(tmp_path / "birealnet_weights.h5")
    x = rng.normal(0.0, 1.0, (2, 96, 96, 3)).astype(np.float32)
    ref = tf.keras.Model(zoo_model.input, logits)(x).numpy()

    source = sources.read(tmp_path / "birealnet_weights.h5")
    assert source.format == "larq zoo h5" and source.reported_top1() is None
    plan, model, used = _import(source, input_size=96)
    assert (plan.name, plan.width, plan.num_classes, plan.padding) == ("bireal-18", 0.25, 10, importer.ZOO_PADDING)
    assert used == len(source.state) == 102
    assert _relative(model(x).numpy(), ref) <= TOLERANCE
    # Zoo pads its binary convs with 0: the same weights one-padded ("lce") compute another function.
    one_padded = archs.build("bireal-18", (96, 96, 3), 10, 0.25, padding="lce")
    one_padded.set_weights(model.get_weights())
    assert _relative(one_padded(x).numpy(), ref) > 1e-2


def test_cli_writes_a_run_folder_that_reloads(references, tmp_path):
    folder = references["reactnet-18"]
    ckpt = folder / "checkpoint.pth.tar"
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["import", str(ckpt), "--input-size", "96", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "reactnet-18" in result.output and "186 tensors" in result.output
    assert "best_top1_acc: 69.5 (reported by the checkpoint, not measured here)" in result.output
    info = json.loads((out / runs.RUN_INFO).read_text())
    assert info["status"] == "imported" and info["padding"] == "official" and info["epochs_done"] == 0
    assert info["best_val_top1"] is None and info["checkpoints"]["best"]["file"] == runs.FINAL_MODEL
    src = info["source"]
    assert src["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest() and src["format"] == "pytorch zip"
    assert src["checkpoint_top1"] == {"value": pytest.approx(69.5), "key": "best_top1_acc",
                                      "note": "reported by the checkpoint, not measured here"}
    assert info["mean"] == [0.485, 0.456, 0.406] and info["num_classes"] == 10 and info["width"] == 0.25
    assert not list(tmp_path.glob(".run.*"))  # the temporary folder was renamed into place
    model, loaded = runs.load_model(out)
    y, ref = _forward(model, folder)
    assert _relative(y, ref) <= TOLERANCE and loaded["checkpoint"]["which"] == "best"
    again = CliRunner().invoke(main, ["import", str(ckpt), "--input-size", "96", "--out", str(out)])
    assert again.exit_code == 2 and "already holds a run" in again.output


def test_cli_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "weights.pth.tar"
    bad.write_bytes(b"\x80\x02not a checkpoint at all" * 10)
    proc = subprocess.run([EDGEBNN, "import", str(bad)], capture_output=True, text=True)
    assert_one_error_line(proc, only=True)


def test_out_through_a_symlink_or_onto_files_is_refused(references, tmp_path):
    ckpt = references["bireal-18"] / "checkpoint.pth.tar"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    for out, why in (("link", "is a symlink"), ("full", "already holds files")):
        result = CliRunner().invoke(main, ["import", str(ckpt), "--input-size", "96", "--out", str(tmp_path / out)])
        assert result.exit_code == 2 and why in result.output and result.output.count("\n") == 1
    assert not any((tmp_path / "elsewhere").iterdir()) and (tmp_path / "full" / "notes.txt").read_text() == "mine"
