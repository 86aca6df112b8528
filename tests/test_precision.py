"""convert --precision int8: int8 islands around the real-valued convs (edgebnn.conversion.precision), their op
types in the flatbuffer, the precision in the metadata and the report, and the int8 proof by top-1 agreement."""

import json
import shutil

import numpy as np
import pytest
from arm64_helpers import aarch64_runner
from cli_checks import assert_one_error_line
from click.testing import CliRunner
from model_helpers import converted_variant, randomise_parameters

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import archs, tflite
from edgebnn import conversion as conv
from edgebnn.cli import main
from edgebnn.conversion import precision
from edgebnn.conversion.fold import deployment_model
from edgebnn.records import Conversion

SLOW_INT8 = ("SUB", "PRELU", "MUL", "MEAN")  # int8 kernels slower than float on ARM: must stay float


@pytest.fixture(scope="module")
def calibration():
    return precision.calibration_images("digits", 64, [32, 32, 3])


def _islands(model, x):
    """Every real conv an island (min_depth 0: at width 1/8 they are shallower than the depth rule)."""
    deploy, _ = deployment_model(model)
    islands, facts = precision.int8_islands(deploy, x, min_depth=0)
    return conv.lce_flatbuffer(islands, "arm")[0], facts


def _real_convs(model) -> list[str]:
    import tensorflow as tf

    from edgebnn.archs import stats

    return [layer.name for layer in model.layers if isinstance(layer, tf.keras.layers.Conv2D)
            and getattr(layer, "kernel_quantizer", None) is None and not stats.signs_its_input(layer)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bireal-18", "reactnet-18", "xnorpp-18-case4", "sdbnn-18", "reactnet-a"])
def test_each_family_gets_int8_convs_and_keeps_its_binary_convs(name, calibration):
    """Width 1/8, 32x32x3: every real-valued conv becomes one int8 CONV_2D, the LceBconv2d count is the float
    flatbuffer's, and no per-channel SUB/PRELU/MUL or MEAN computes in int8 (ReActNet's RSign/RPReLU stay float)."""
    model, float_fb = converted_variant(name)
    fb, facts = _islands(model, calibration)
    real = _real_convs(model)
    assert real and sorted(facts["layers"]) == sorted(real) and facts["classifier"] is False
    ops, int8 = tflite.op_histogram(fb), precision.int8_ops(fb)
    assert int8.get("CONV_2D", 0) == len(real) and ops.get("CONV_2D", 0) == len(real)
    assert precision.int8_ops(float_fb) == {}
    assert ops["LceBconv2d"] == tflite.op_histogram(float_fb)["LceBconv2d"]
    assert int8["QUANTIZE"] >= 1 and int8["DEQUANTIZE"] >= 1
    assert not set(int8) & set(SLOW_INT8), int8
    assert "FULLY_CONNECTED" not in int8  # the classifier stays float (precision.INT8_CLASSIFIER)
    if name.startswith("reactnet"):
        assert ops["SUB"] and ops["PRELU"]  # RSign and RPReLU are there, in float
    # The islands' ranges hold 0 (a zero point exists) and come from the calibration images.
    for r in facts["ranges"].values():
        assert r["input"][0] <= 0.0 <= r["input"][1] and r["output"][0] <= 0.0 <= r["output"][1]
        assert r["output"][1] > r["output"][0]


@pytest.mark.slow
def test_the_official_padding_keeps_its_pad_and_the_real_twin_gets_int8_everywhere_real(calibration):
    """Official padding at 72 px: the 7x7 stride-2 stem reads an explicit PAD, and still becomes an int8 conv. The
    real-valued twin (Hardtanh inputs, real kernels): every conv of it is real-valued, so every one is an island."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(5)
    official = randomise_parameters(archs.build("bireal-18", input_shape=(72, 72, 3), num_classes=10, width=0.125,
                                                padding="official"), seed=5)
    x72 = precision.calibration_images("digits", 32, [72, 72, 3])
    fb, facts = _islands(official, x72)
    ops, int8 = tflite.op_histogram(fb), precision.int8_ops(fb)
    assert "stem_conv" in facts["layers"] and ops.get("PAD", 0) + int8.get("PAD", 0) >= 1
    assert int8["CONV_2D"] == len(_real_convs(official)) == 4 and ops["LceBconv2d"] == 16
    assert not set(int8) & set(SLOW_INT8)

    twin = randomise_parameters(archs.build("bireal-18", input_shape=(32, 32, 3), num_classes=10, width=0.125,
                                            binary_weights=False, binary_activations=False), seed=6)
    fb, facts = _islands(twin, calibration)
    assert len(facts["layers"]) == 4 + 16 and precision.int8_ops(fb)["CONV_2D"] == 20
    assert "LceBconv2d" not in tflite.op_histogram(fb)


# ------------------------------------------------------------------------------------------ convert, end to end
def test_convs_too_shallow_for_int8_stay_float():
    """The depth rule: K = kh kw c_in under MIN_INT8_DEPTH stays float (ReActNet-A's 3x3 stem over RGB, K = 27, ran
    slower in int8 on cortex-a72), the rest become islands, and the facts say which is which."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    model = archs.build("bireal-18", input_shape=(32, 32, 3), num_classes=10, width=0.5)  # 32, 64, 128, 256 ch.
    x = np.random.RandomState(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    _, facts = precision.int8_islands(model, x)
    assert precision.MIN_INT8_DEPTH == 64 and facts["min_depth"] == 64
    assert facts["layers"] == ["stage3_conv1_down_conv", "stage4_conv1_down_conv"]  # 1x1 over 64 and 128 channels
    assert facts["kept_float"] == ["stem_conv (K = 27)", "stage2_conv1_down_conv (K = 32)"]
    _, facts = precision.int8_islands(archs.build("reactnet-a", input_shape=(32, 32, 3), num_classes=10,
                                                  width=0.125), x)
    assert facts["layers"] == [] and facts["kept_float"] == ["stem_conv (K = 27)"]


@pytest.fixture
def every_depth(monkeypatch):
    """The tiny models' convs are shallower than the depth rule: make every real conv an island."""
    monkeypatch.setattr(precision, "MIN_INT8_DEPTH", 0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random bireal-18 (width 1/8, 32 px) saved as a model file and converted with --precision int8 on 100
    digits samples, every real conv an island, no threshold (min_agreement=0: a random BNN's near-tied logits flip
    under int8)."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("int8")
    tf.keras.utils.set_random_seed(7)
    model = randomise_parameters(archs.build("bireal-18", input_shape=(32, 32, 3), num_classes=10, width=0.125),
                                 seed=3)
    model.save(folder / "bireal.keras")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(precision, "MIN_INT8_DEPTH", 0)
        report = conv.convert(folder / "bireal.keras", output=folder / "bireal-int8.tflite", check_samples=100,
                              precision="int8", min_agreement=0.0)
    return folder, model, report


def test_precision_in_the_metadata_and_the_report(tiny):
    folder, _, report = tiny
    fb = (folder / "bireal-int8.tflite").read_bytes()
    assert tflite.read_metadata(fb)["precision"] == "int8"
    side = json.loads(tflite.sidecar_path(folder / "bireal-int8.tflite").read_text())
    assert side["precision"] == report["precision"] == "int8"
    int8 = side["conversion"]["int8"]
    assert int8["layers"] == ["stem_conv", "stage2_conv1_down_conv", "stage3_conv1_down_conv",
                              "stage4_conv1_down_conv"]
    assert int8["batchnorms_folded"] == ["stage2_conv1_down_bn", "stage3_conv1_down_bn", "stage4_conv1_down_bn",
                                         "stem_bn"]
    assert int8["calibration"] == {"images": precision.CALIBRATION_IMAGES, "dataset": "digits", "split": "train"}
    assert int8["int8_ops"] == precision.int8_ops(fb) and int8["int8_ops"]["CONV_2D"] == 4
    assert int8["min_agreement"] == 0.0 and int8["problems"] == [] and int8["kept_float"] == []
    assert side["conversion"]["lce_bconv2d"] == 16 and side["conversion"]["binary_fraction"] == 1.0
    assert Conversion.from_dict(report).precision == "int8"


def test_the_int8_proof_is_top1_agreement_with_keras(tiny):
    """The agreement the report gives is the one computed here from Keras and LCE's interpreter, and the samples
    it names are the ones whose top-1 differs."""
    _, model, report = tiny
    check = report["check"]
    x, _ = conv.proof.samples("digits", 100, [32, 32, 3])
    keras_top = conv.keras_outputs(model, x).argmax(-1)
    lce_top = conv.run_tflite((tiny[0] / "bireal-int8.tflite").read_bytes(), x).argmax(-1)
    assert check["samples"] == 100 and check["precision"] == "int8" and check["min_agreement"] == 0.0
    assert check["top1_agreement"] == pytest.approx(np.mean(keras_top == lce_top))
    assert check["top1_disagreements"] == [int(i) for i in np.flatnonzero(keras_top != lce_top)]
    assert conv.proof.proof_failure(check) is None  # judged by agreement, not by the float 1e-3
    assert conv.proof.proof_failure({**check, "min_agreement": 1.0}) is None or check["top1_agreement"] < 1.0
    text = conv.format_report(report)
    for needle in ("int8 islands: 4 real-valued layer(s) int8", "CONV_2D 4", "int8 verdict",
                   f"ranges from {precision.CALIBRATION_IMAGES} digits images (train split)"):
        assert needle in text, needle


def test_below_the_threshold_is_one_line_and_the_file_is_kept(tiny, tmp_path, every_depth):
    """--min-agreement above what the flatbuffer reaches: one error line, exit 2, the flatbuffer and its report
    kept; at or under it the same conversion passes."""
    folder, _, report = tiny
    agreement = report["check"]["top1_agreement"]
    assert agreement < 1.0  # a random BNN: some near-tied logits flip under int8
    out = tmp_path / "strict.tflite"
    args = ["convert", str(folder / "bireal.keras"), "-o", str(out), "--precision", "int8", "--check-samples", "100"]
    line = assert_one_error_line(CliRunner().invoke(main, [*args, "--min-agreement", "1"]))
    assert "does not give the Keras model's answers" in line and "below the 100% asked (--min-agreement)" in line
    assert f"{100 * agreement:.1f}% of 100 check samples" in line
    side = json.loads(tflite.sidecar_path(out).read_text())
    assert out.is_file() and side["check"]["min_agreement"] == 1.0 and side["precision"] == "int8"

    out2 = tmp_path / "lenient.tflite"
    result = CliRunner().invoke(main, [*args[:3], str(out2), *args[4:], "--min-agreement", f"{agreement:.2f}"])
    assert result.exit_code == 0, result.output
    assert "int8 verdict" in result.output and out2.is_file()


def test_the_float_default_is_unchanged_and_says_float(tiny, tmp_path):
    folder, _, _ = tiny
    report = conv.convert(folder / "bireal.keras", output=tmp_path / "f.tflite", check_samples=20)
    assert report["precision"] == "float" and "int8" not in report["conversion"]
    assert tflite.read_metadata(tmp_path / "f.tflite")["precision"] == "float"
    check = report["check"]
    assert "min_agreement" not in check and check["unexplained"] == 0 and check["top1_agreement"] == 1.0
    assert precision.int8_ops((tmp_path / "f.tflite").read_bytes()) == {}


def test_bad_precision_and_agreement_are_one_line(tmp_path):
    with pytest.raises(edgebnn.EdgebnnError, match="precision must be one of float, int8, not fp16"):
        conv.convert(tmp_path, precision="fp16")
    line = assert_one_error_line(CliRunner().invoke(main, ["convert", str(tmp_path), "--precision", "int8",
                                                           "--min-agreement", "99"]))
    assert "--min-agreement must be a fraction from 0 to 1" in line


# ------------------------------------------------------------------------------------------ the aarch64 kernels
@pytest.mark.slow
@pytest.mark.qemu
def test_the_int8_proof_on_the_aarch64_kernels_names_where_the_interpreters_differ(tiny, tmp_path, every_depth):
    """convert --precision int8 --verify-on qemu:aarch64: the device proof is judged by agreement too, and names
    the samples where LCE's aarch64 kernels and its x86 interpreter give another top-1; verify does the same."""
    if not shutil.which("qemu-aarch64"):
        pytest.skip("qemu-aarch64 (Debian's qemu-user) is not installed: make arm64-tools")
    runner = aarch64_runner()
    folder, _, _ = tiny
    out = tmp_path / "dev.tflite"
    result = CliRunner().invoke(main, ["convert", str(folder / "bireal.keras"), "-o", str(out), "--precision", "int8",
                                       "--check-samples", "60", "--min-agreement", "0.5", "--verify-on",
                                       "qemu:aarch64", "--runner", str(runner)])
    assert result.exit_code == 0, result.output
    side = json.loads(tflite.sidecar_path(out).read_text())
    host, dev = side["check"], side["device_checks"]["qemu:aarch64"]
    assert dev["precision"] == "int8" and dev["min_agreement"] == 0.5 and dev["samples"] == 60
    assert dev["top1_agreement"] == pytest.approx(1 - len(dev["top1_disagreements"]) / 60)
    assert dev["top1_agreement"] >= 0.5 and host["top1_agreement"] >= 0.5
    # Where the two interpreters' top-1 differ is exactly where their agreement with Keras can part.
    differ = set(dev["host_disagreements"])
    assert set(dev["top1_disagreements"]) ^ set(host["top1_disagreements"]) <= differ
    assert "vs host interpreter" in result.output

    res = CliRunner().invoke(main, ["verify", str(out), "-d", "qemu:aarch64", "--runner", str(runner),
                                    "--check-samples", "60", "--json"])
    assert res.exit_code == 0, res.output
    check = json.loads(res.output[res.output.index("{"):])["check"]
    assert check["min_agreement"] == 0.5 and check["host_disagreements"] == dev["host_disagreements"]
    assert check["top1_disagreements"] == dev["top1_disagreements"]
