"""edgebnn convert: the real LCE converter and interpreter on tiny models, digits samples, the CLI's error lines."""

import hashlib
import json

import numpy as np
import pytest
from cli_checks import assert_one_error_line
from click.testing import CliRunner
from model_helpers import randomise_parameters

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import conversion as conv
from edgebnn import runs, tflite
from edgebnn.cli import main

BINARY = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
              pad_values=1.0, padding="same", use_bias=False)


def _tiny_bnn(seed=0):
    """A two-block binary ResNet on 32x32x3: a real stem, two binary 3x3 convs with BN and a shortcut, real head."""
    import larq as lq
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inp)
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(x)
    for i, strides in enumerate((1, 2)):
        y = lq.layers.QuantConv2D(32, 3, strides=strides, name=f"bconv{i}", **BINARY)(x)
        y = tf.keras.layers.BatchNormalization(name=f"bn{i}")(y)
        if strides == 2:
            x = tf.keras.layers.AveragePooling2D(2, name=f"pool{i}")(x)
        x = tf.keras.layers.add([x, y], name=f"add{i}")
    x = tf.keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = tf.keras.layers.Dense(10, name="fc")(x)
    return randomise_parameters(tf.keras.Model(inp, out, name="tiny_bnn"), seed)


def _tiny_float():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(1)
    inp = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inp, tf.keras.layers.Dense(10)(x), name="tiny_float")


# ------------------------------------------------------------------------------------------ a model file
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One conversion of a saved tiny BNN with the proof on 100 digits samples and both baselines."""
    folder = tmp_path_factory.mktemp("tiny")
    _tiny_bnn().save(folder / "tiny.keras")
    report = conv.convert(folder / "tiny.keras", output=folder / "tiny.tflite", check_samples=100,
                          baselines="float,int8")
    return folder, report


def test_all_binary_convs_become_lce_bconv2d(tiny):
    _, report = tiny
    c = report["conversion"]
    assert c["ops"]["LceBconv2d"] == 2 and c["binary_convs"] == 2 and c["lce_bconv2d"] == 2
    assert c["binary_converted"] == 2 and c["binary_fraction"] == 1.0 and c["not_binary"] == []
    assert c["ops"]["LceQuantize"] == 2
    # Float ops: stem CONV_2D, two ADDs, the average pool, MEAN and FULLY_CONNECTED (BN fused away).
    assert c["float_ops"] == sum(n for k, n in c["ops"].items() if not k.startswith("Lce"))
    assert c["float_ops_per_binary_conv"] == pytest.approx(c["float_ops"] / 2)
    assert c["seconds"] > 0


def test_flatbuffer_answers_like_keras_on_100_digits(tiny):
    _, report = tiny
    check = report["check"]
    assert check["samples"] == 100 and check["dataset"] == "digits"
    assert check["top1_agreement"] == 1.0
    assert check["unexplained"] == 0
    assert check["relative_diff_untied"] < 1e-3
    assert check["max_abs_diff"] == pytest.approx(check["relative_diff"] * check["output_scale"])
    assert check["keras_top1"] == check["tflite_top1"]
    assert 0.0 <= check["keras_top1"] <= 1.0


def test_files_sha256_and_deployment_metadata(tiny):
    folder, report = tiny
    fb = (folder / "tiny.tflite").read_bytes()
    assert report["sha256"] == hashlib.sha256(fb).hexdigest() and report["bytes"] == len(fb)
    sidecar = json.loads(tflite.sidecar_path(folder / "tiny.tflite").read_text())
    assert sidecar["sha256"] == report["sha256"]
    assert sidecar["conversion"]["ops"] == report["conversion"]["ops"]
    meta = tflite.read_metadata(folder / "tiny.tflite")
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["input_shape"] == [32, 32, 3] and meta["num_classes"] == 10
    assert meta["mean"] == pytest.approx([0.3058] * 3) and meta["std"] == pytest.approx([0.3764] * 3)
    assert meta["target"] == "arm64" and meta["lce_target"] == "arm" and meta["edgebnn_version"]
    assert meta["precision"] == "float" and report["precision"] == "float"  # --precision int8: test_precision
    # The metadata rides in the flatbuffer the interpreter ran: the op histogram is the converter's.
    assert tflite.op_histogram(fb) == report["conversion"]["ops"]


def test_smaller_than_the_float_tflite_of_the_same_model(tiny):
    _, report = tiny
    size = report["size"]
    assert size["float_tflite_bytes"] > size["flatbuffer_bytes"]
    assert size["compression"] == pytest.approx(size["float_tflite_bytes"] / size["flatbuffer_bytes"])
    assert size["compression"] > 2.0
    assert size["keras"]["params"] > 0


def test_baselines_float_and_int8_of_the_real_valued_twin(tiny):
    folder, report = tiny
    base = report["baselines"]
    assert set(base) == {"float", "int8"}
    assert "quantizers removed" in base["float"]["twin"]  # a bare model file: no registry twin
    for kind in ("float", "int8"):
        assert (folder / f"tiny.{kind}.tflite").stat().st_size == base[kind]["bytes"]
        assert not any(k.startswith("Lce") for k in base[kind]["ops"])
    assert base["float"]["check"]["top1_agreement"] == 1.0
    assert base["float"]["check"]["relative_diff"] < 1e-4
    assert base["int8"]["bytes"] < base["float"]["bytes"]
    assert base["int8"]["check"]["top1_agreement"] >= 0.8


def test_format_report_names_every_figure(tiny):
    _, report = tiny
    text = conv.format_report(report)
    for needle in ("2/2 became LceBconv2d (100.0% binary)", "compression x", "top-1 agreement  100.0%",
                   "LceBconv2d 2", "baseline int8", report["machine"]):
        assert needle in text, needle


def test_edgebnn_convert_is_the_front_doors():
    from edgebnn import api

    assert edgebnn.convert is api.convert and edgebnn.conversion is conv
    with pytest.raises(edgebnn.EdgebnnError, match="unknown target"):
        edgebnn.convert("nowhere", target="riscv")


# ------------------------------------------------------------------------------------------ a run folder
@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A run folder as edgebnn train writes it, of a registered model (bireal-18 at width 1/8, 32x32 digits)."""
    from edgebnn import archs, data

    folder = tmp_path_factory.mktemp("runs") / "bireal-18-test"
    folder.mkdir()
    model = randomise_parameters(archs.build("bireal-18", input_shape=(32, 32, 3), num_classes=10, width=0.125))
    model.save(folder / runs.FINAL_MODEL)
    summary = data.describe("digits")
    runs.write_info(folder, {"name": "bireal-18-test", "model": "bireal-18", "dataset": "digits",
                             "input_shape": [32, 32, 3], "class_names": summary["classes"],
                             "mean": summary["mean"], "std": summary["std"], "recipe": "bireal-18",
                             "status": "done"})
    (folder / runs.RECIPE).write_text('model = "bireal-18"\n\n[arch]\nwidth = 0.125\n')
    report = conv.convert(folder, check_samples=30, baselines=["float"])
    return folder, report


@pytest.mark.slow
def test_run_folder_converts_beside_the_run_with_its_facts(run_folder):
    folder, report = run_folder
    assert report["output"] == str(folder / "model-arm64.tflite")
    assert report["source"]["kind"] == "run" and report["source"]["model"] == "bireal-18"
    c = report["conversion"]
    assert c["binary_convs"] == 16 and c["lce_bconv2d"] == 16 and c["binary_fraction"] == 1.0
    assert report["check"]["top1_agreement"] == 1.0 and report["check"]["unexplained"] == 0
    meta = tflite.read_metadata(folder / "model-arm64.tflite")
    assert meta["model"] == "bireal-18" and meta["run_dir"] == str(folder) and meta["dataset"] == "digits"
    twin = report["baselines"]["float"]
    assert twin["twin"].startswith("archs.build('bireal-18'")
    assert twin["check"]["top1_agreement"] == 1.0


# ------------------------------------------------------------------------------------------ what stays float
def test_a_sign_lce_does_not_recognise_is_reported_by_layer_name():
    """A 1-bit quantizer built on raw tf.sign (not larq.math.sign): LCE keeps that conv float, and says which."""
    import larq as lq
    import tensorflow as tf

    from edgebnn import archs

    @tf.custom_gradient
    def raw_sign(x):
        return tf.sign(x), lambda dy: dy

    class RawSign(lq.quantizers.Quantizer):
        precision = 1

        def call(self, inputs):
            return raw_sign(inputs)

    tf.keras.utils.set_random_seed(2)
    inp = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.Conv2D(32, 3, padding="same", name="stem")(inp)
    x = lq.layers.QuantConv2D(32, 3, name="good_binary_conv", **BINARY)(x)
    x = lq.layers.QuantConv2D(32, 3, name="raw_sign_conv", **{**BINARY, "input_quantizer": RawSign()})(x)
    x = lq.layers.QuantConv2D(32, 3, name="another_binary_conv", **BINARY)(x)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(10)(tf.keras.layers.GlobalAveragePooling2D()(x)))
    layers = archs.stats.binary_conv_layers(model)
    assert [layer.name for layer in layers] == ["good_binary_conv", "raw_sign_conv", "another_binary_conv"]
    fb, _ = conv.lce_flatbuffer(model, "arm")
    ops = tflite.read_ops(fb)
    matched, lost = conv.match_binary_convs(layers, ops)
    assert sorted(matched) == ["another_binary_conv", "good_binary_conv"]
    assert lost == [{"layer": "raw_sign_conv", "became": "CONV_2D, PADV2, SIGN"}]
    assert tflite.op_histogram(fb)["LceBconv2d"] == 2


def test_a_flatbuffer_lce_cannot_load_is_written_reported_and_a_clear_error(tmp_path):
    """A per-position scale right after a binary conv: LCE 0.16 fuses it into LceBconv2d's per-channel multiplier,
    and its own kernel then refuses the flatbuffer. convert says which layer, keeps the files, exits non-zero."""
    import larq as lq
    import tensorflow as tf

    from edgebnn.archs.xnorpp import LearnedScale

    tf.keras.utils.set_random_seed(4)
    inp = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(32, 3, padding="same", name="stem")(inp)
    x = lq.layers.QuantConv2D(32, 3, name="bconv", **BINARY)(x)
    x = LearnedScale(case=2, name="gamma")(x)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(10)(tf.keras.layers.GlobalAveragePooling2D()(x)))
    model.get_layer("gamma").set_weights([np.random.RandomState(0).uniform(0.5, 1.5, (8, 8, 32))])
    model.save(tmp_path / "gamma2.keras")
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "gamma2.keras"), "--check-samples", "5"])
    line = assert_one_error_line(result)
    assert "does not load in LCE's interpreter" in line and "layer bconv" in line and "[8, 8, 32]" in line
    report = json.loads((tmp_path / "gamma2-arm64.tflite.json").read_text())
    assert report["conversion"]["binary_fraction"] == 1.0 and len(report["conversion"]["problems"]) == 1
    assert "cannot load" in report["check"]["error"]
    assert (tmp_path / "gamma2-arm64.tflite").stat().st_size == report["bytes"]


def test_a_flatbuffer_that_answers_otherwise_is_kept_and_a_clear_error(tmp_path, monkeypatch):
    """A fold that changed the function (as a twin's Hardtanh once taken for a sign did, in make demo): the proof
    sees every sample beyond 1e-3 of the output scale with no sign tie; convert keeps the flatbuffer and its report
    and exits non-zero in one line."""
    import tensorflow as tf

    from edgebnn.conversion import pipeline

    def wrong_fold(model):
        copy = tf.keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        kernel, bias = copy.layers[-1].get_weights()
        copy.layers[-1].set_weights([kernel, bias + np.arange(10, dtype=np.float32)])
        return copy, {"wrong": [copy.layers[-1].name]}

    _tiny_float().save(tmp_path / "float.keras")
    monkeypatch.setattr(pipeline, "deployment_model", wrong_fold)
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "float.keras"), "--check-samples", "10"])
    line = assert_one_error_line(result)
    assert "does not give the Keras model's answers: 10 of 10 check samples differ" in line
    report = json.loads((tmp_path / "float-arm64.tflite.json").read_text())
    assert report["check"]["within_tolerance"] == 0 and list(report["conversion"]["folds"]) == ["wrong"]
    assert (tmp_path / "float-arm64.tflite").stat().st_size == report["bytes"]


def test_a_model_with_no_binary_layers_converts_and_says_0_percent(tmp_path):
    _tiny_float().save(tmp_path / "float.keras")
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "float.keras"), "--check-samples", "10"])
    assert result.exit_code == 0, result.output
    assert "0/0 became LceBconv2d (0.0% binary)" in result.output
    report = json.loads((tmp_path / "float-arm64.tflite.json").read_text())
    assert report["conversion"]["binary_fraction"] == 0.0 and report["conversion"]["lce_bconv2d"] == 0
    assert report["conversion"]["float_ops_per_binary_conv"] is None
    assert report["check"]["top1_agreement"] == 1.0 and report["check"]["relative_diff"] < 1e-4


# ------------------------------------------------------------------------------------------ bad input
def test_unknown_target_is_one_line_listing_targets(tmp_path):
    line = assert_one_error_line(CliRunner().invoke(main, ["convert", str(tmp_path), "--target", "riscv"]))
    assert "unknown target 'riscv'" in line and "arm64" in line and "xcore" in line


def test_missing_run_is_one_line(tmp_path):
    line = assert_one_error_line(CliRunner().invoke(main, ["convert", str(tmp_path / "runs" / "nope")]))
    assert "does not exist" in line and "nope" in line


def test_a_file_that_is_not_a_keras_model_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    line = assert_one_error_line(CliRunner().invoke(main, ["convert", str(tmp_path / "notes.txt")]))
    assert "not a Keras model file" in line
    (tmp_path / "broken.keras").write_text("not a zip")
    line = assert_one_error_line(CliRunner().invoke(main, ["convert", str(tmp_path / "broken.keras")]))
    assert "broken.keras" in line and "not a Keras model" in line


def test_output_in_a_missing_folder_is_one_line(tmp_path):
    assert_one_error_line(CliRunner().invoke(main, ["convert", str(tmp_path), "-o", str(tmp_path / "no" / "m.tflite")]),
                          "output folder", "does not exist")


def test_unknown_baseline_is_one_line(tmp_path):
    line = assert_one_error_line(CliRunner().invoke(main, ["convert", str(tmp_path), "--baselines", "float,fp16"]))
    assert "unknown baseline 'fp16'" in line
