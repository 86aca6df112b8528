"""Deployment folds (edgebnn.conversion.fold): the folded copy computes the same function, LCE's converter emits the
minimal op sequence for it, and the folded flatbuffer agrees with the original Keras model on digits through LCE's
interpreter (the parity check `edgebnn convert` runs)."""

import numpy as np
import pytest
from model_helpers import randomise_parameters

import edgebnn  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from edgebnn import archs
from edgebnn.conversion.fold import deployment_model
from edgebnn.tflite.describe import histogram_of, read_ops


def _built(name, size=32, seed=0):
    return randomise_parameters(archs.build(name, input_shape=(size, size, 3), num_classes=10, width=0.25), seed)


def _same_function(model, folded, seed=0):
    x = np.random.RandomState(seed).normal(size=(6,) + tuple(model.input_shape[1:])).astype(np.float32)
    a, b = model.predict(x, verbose=0), folded.predict(x, verbose=0)
    np.testing.assert_allclose(b, a, atol=1e-5 * max(1.0, float(np.abs(a).max())))


@pytest.fixture(scope="module")
def digits_100():
    from edgebnn import data

    return data.sample("digits", 100, input_size=32)


@pytest.mark.slow
@pytest.mark.parametrize("name, folds, ops", [
    # Each RPReLU ends as one PRELU (was GREATER + MUL + SELECT with two shifts); RSign keeps its SUB (its stream
    # runs through the RPReLUs, which pass no offset on).
    ("reactnet-18", {"rprelu_shifts": 16}, {"SUB": 16, "ADD": 16, "PRELU": 16, "LceBconv2d": 16}),
    ("reactnet-a", {"rprelu_shifts": 26}, {"SUB": 26, "ADD": 31, "PRELU": 26, "LceBconv2d": 31}),
    # The BatchNorm before each sign becomes one SUB (was MUL + ADD); case 1's Gamma folds into the conv; each of
    # the 4 streams (from the stem and 3 downsample shortcuts) takes one threshold, leaving 12 SUBs.
    ("xnorpp-18-case1", {"batchnorm_threshold": 16, "stream_threshold": 4},
     {"SUB": 12, "ADD": 16, "PRELU": 16, "LceBconv2d": 16}),
    # Cases 2-4 keep one MUL each: a per-position Gamma is part of the function.
    ("xnorpp-18-case4", {"batchnorm_threshold": 16, "stream_threshold": 4}, {"SUB": 12, "MUL": 16, "ADD": 16,
                                                                             "PRELU": 16}),
    # The bnn library's stem ends in a ReLU, which passes no offset on: 3 streams, not 4.
    ("xnorpp-18-bnn", {"batchnorm_threshold": 16, "stream_threshold": 3},
     {"SUB": 13, "ADD": 8, "PRELU": 16, "LceBconv2d": 16}),
])
def test_folds_keep_the_function_and_leave_the_minimal_ops(name, folds, ops, digits_100):
    """The folded flatbuffer through LCE's interpreter against the original Keras model on 100 digits samples, as
    `edgebnn convert` proves it: a sample may differ only where a sign input sits within float rounding of its
    threshold (a tie the two runtimes may break differently), and so may its top-1."""
    import tensorflow as tf

    from edgebnn import conversion as conv
    from edgebnn.archs import stats
    from edgebnn.conversion.proof import TIE

    tf.keras.utils.set_random_seed(11)  # the same random model whatever ran before
    model = _built(name)
    folded, done = deployment_model(model)
    assert {k: len(v) for k, v in done.items()} == folds
    _same_function(model, folded)
    flatbuffer, _ = conv.lce_flatbuffer(folded, "arm")
    hist = histogram_of(read_ops(flatbuffer))
    assert {k: hist.get(k, 0) for k in ops} == ops
    assert not {"GREATER", "SELECT", "RESHAPE", "STRIDED_SLICE"} & set(hist)
    if name.startswith("xnorpp-18-case1"):
        assert "MUL" not in hist
    x, y = digits_100
    reference, outputs = conv.keras_outputs(model, x), conv.run_tflite(flatbuffer, x)
    margins = conv.sign_margins(folded, stats.binary_conv_layers(folded), x)
    check = conv.compare(reference, outputs, y, margins)
    assert check["unexplained"] == 0 and check["relative_diff_untied"] < 1e-3
    flipped = np.flatnonzero(reference.argmax(-1) != outputs.argmax(-1))
    assert np.all(margins[flipped] < TIE) and check["sign_ties"] < 100, (check["sign_ties"], flipped)


def test_rprelu_shift_fold_is_exact_with_large_shifts():
    """zeta pushed through identity and downsample shortcuts (AvgPool -> 1x1 conv -> BN) and the head's Dense, gamma
    into the residual BatchNorm: with shifts far from 0 any wrong sign or lost path shows in the outputs."""
    model = _built("reactnet-18", seed=3)
    rng = np.random.RandomState(3)
    for layer in model.layers:
        if isinstance(layer, archs.reactnet.RPReLU):
            layer.gamma.assign(rng.normal(0, 1.0, layer.gamma.shape))
            layer.zeta.assign(rng.normal(0, 1.0, layer.zeta.shape))
    folded, done = deployment_model(model)
    assert len(done["rprelu_shifts"]) == 16
    for layer in folded.layers:
        if isinstance(layer, archs.reactnet.RPReLU):
            assert not np.any(layer.gamma.numpy()) and not np.any(layer.zeta.numpy())
    _same_function(model, folded, seed=3)


def test_batchnorm_with_a_negative_scale_is_not_folded():
    """sign(s (x - m) + b) with s < 0 would need the channel's kernel flipped, which would flip its +1 padding too."""
    model = _built("xnorpp-18-case1")
    bn = model.get_layer("stage1_conv1_bn")
    gamma = bn.gamma.numpy()
    gamma[0] = -0.5
    bn.gamma.assign(gamma)
    folded, done = deployment_model(model)
    assert "stage1_conv1_bn" not in done["batchnorm_threshold"] and len(done["batchnorm_threshold"]) == 15
    _same_function(model, folded)


def test_models_without_foldable_layers_are_copied_unchanged():
    model = _built("bireal-18")
    folded, done = deployment_model(model)
    assert done == {}
    _same_function(model, folded)
    assert folded is not model


def test_stream_threshold_fold_is_exact_through_max_pooling_and_shortcuts():
    """An ImageNet stem (7x7 s2 -> BN -> MaxPool) at 72 px: the stem BN's offset runs through the max-pool, the
    identity shortcuts' Adds, a downsample shortcut (AvgPool -> 1x1 conv -> BN) and, from the last stream, the head's
    GAP and Dense; with thresholds far from 0 any lost path or wrong sign shows in the outputs."""
    model = randomise_parameters(archs.build("xnorpp-18-case1", input_shape=(72, 72, 3), num_classes=10,
                                             width=0.25), 4)
    rng = np.random.RandomState(4)
    for layer in model.layers:
        if layer.name.endswith("_bn") and not layer.name.startswith("stem"):
            layer.moving_mean.assign(rng.normal(0, 2.0, layer.moving_mean.shape))
    folded, done = deployment_model(model)
    assert done["stream_threshold"] == ["stage1_conv1_bn", "stage2_conv2_bn", "stage3_conv2_bn", "stage4_conv2_bn"]
    for name in done["stream_threshold"]:
        assert not np.any(folded.get_layer(name).alpha.numpy())  # exactly zero: the converter drops the SUB
    assert np.any(folded.get_layer("stage1_conv2_bn").alpha.numpy())
    x = np.random.RandomState(4).normal(size=(6, 72, 72, 3)).astype(np.float32)
    a, b = model.predict(x, verbose=0), folded.predict(x, verbose=0)
    np.testing.assert_allclose(b, a, atol=1e-4 * max(1.0, float(np.abs(a).max())))


@pytest.mark.parametrize("name", ["xnorpp-18-case1-real", "reactnet-18-real"])
def test_real_valued_twins_fold_only_what_keeps_their_function(name):
    """A twin's convs take Hardtanh, not sign: a BatchNorm before Hardtanh is no threshold (the demo's
    xnorpp-18-case4 twin once converted with it folded and agreed with Keras on 99 of 100 samples, 0 within 1e-3).
    RPReLU's shifts still move, since they sit before the clip as before the sign."""
    model = _built(name)
    folded, done = deployment_model(model)
    assert "batchnorm_threshold" not in done and "stream_threshold" not in done
    assert ("rprelu_shifts" in done) == name.startswith("reactnet")
    _same_function(model, folded)
