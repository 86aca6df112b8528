"""Any input size of 32 px or more, odd ones included: every family builds, converts with every binary conv as
``LceBconv2d``, LCE's interpreter agrees with Keras, and each takes a training step (issue 12, item 7).

Before the fix ReActNet-A did not build at odd sizes: its shortcut AvgPool ("valid") floored an odd map to
floor(h / 2) while the stride-2 conv ("same") gave ceil(h / 2)."""

import numpy as np
import pytest
import tensorflow as tf
from model_helpers import randomise_parameters

from edgebnn import archs
from edgebnn.archs import stats

ODD_SIZES = (33, 45, 57, 97)  # 97: above 64 px, so the ImageNet stem (7x7 s2 + max-pool) at an odd size
# One variant per builder (bireal-34, xnorpp cases 2/3 and resnet-34 share a sibling's code path), to keep the
# sweep to a couple of minutes.
SAME_BUILDER = {"bireal-34", "xnorpp-18-case2", "xnorpp-18-case3", "resnet-34"}
BUILDERS = [n for n in archs.names() if n not in SAME_BUILDER]
FAMILIES = [n for n in BUILDERS if archs.get(n).binary]


def _tiny(name, size, seed=3):
    tf.keras.utils.set_random_seed(7)
    model = archs.build(name, input_shape=(size, size, 3), num_classes=10, width=0.125)
    return randomise_parameters(model, seed=seed)


@pytest.mark.parametrize("size", ODD_SIZES)
@pytest.mark.parametrize("name", BUILDERS)
def test_every_variant_builds_and_keeps_its_shapes_at_odd_sizes(name, size):
    model = archs.build(name, input_shape=(size, size, 3), num_classes=10, width=0.125)
    assert model.output_shape == (None, 10)
    for layer in stats.binary_conv_layers(model):  # "same" convs: ceil(h / s) rows out
        h_in, h_out = layer.input_shape[1], layer.output_shape[1]
        assert h_out == -(-h_in // layer.strides[0]), layer.name


def test_reactnet_a_shortcut_pool_matches_the_conv_on_an_odd_map():
    model = archs.build("reactnet-a", input_shape=(33, 33, 3), num_classes=10, width=0.125)
    pool, conv = model.get_layer("block2_a_pool"), model.get_layer("block2_a_conv")
    assert pool.input_shape[1:3] == (33, 33) and pool.output_shape[1:3] == conv.output_shape[1:3] == (17, 17)
    x = np.arange(33 * 33 * 8, dtype=np.float32).reshape(1, 33, 33, 8)
    y = pool(x).numpy()
    # the last row and column of windows average their valid pixels only: (x[32] + x[32]) / 2 -> x[32]
    np.testing.assert_allclose(y[0, 16, 16], x[0, 32, 32])
    np.testing.assert_allclose(y[0, 0, 0], x[0, :2, :2].mean(axis=(0, 1)))


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_odd_sizes_convert_to_binary_ops_and_agree_with_keras(name):
    """Width 1/8, one odd size per variant (the four sizes in turn), 16 seeded random inputs: every binary conv
    is an LceBconv2d, the flatbuffer loads, and LCE's interpreter gives Keras' top-1 on every input, within
    1e-3 of the output scale, except where a sign input was within float rounding of 0 (a tie the two runtimes
    may round to different sides: sdbnn-resnet18 at 97 px has one such input, 4e-8 of its tensor's max, whose
    output differs by 21% of the scale)."""
    from edgebnn import conversion as conv
    from edgebnn import tflite

    size = ODD_SIZES[FAMILIES.index(name) % len(ODD_SIZES)]
    model = _tiny(name, size)
    layers = stats.binary_conv_layers(model)
    flatbuffer, _ = conv.lce_flatbuffer(model, "arm")
    ops = tflite.read_ops(flatbuffer)
    matched, lost = conv.match_binary_convs(layers, ops)
    assert layers and lost == [] and tflite.op_histogram(flatbuffer)["LceBconv2d"] == len(layers)
    assert tflite.flatbuffer_problems(ops, matched) == [] and tflite.load_error(flatbuffer) is None
    x = np.random.default_rng(size).normal(size=(16, size, size, 3)).astype(np.float32)
    reference, outputs = conv.keras_outputs(model, x), conv.run_tflite(flatbuffer, x)
    margins = conv.sign_margins(model, layers, x)
    check = conv.compare(reference, outputs, None, margins)
    untied = margins >= conv.TIE
    assert check["samples"] == 16 and check["top1_agreement"] >= 15 / 16
    assert check["unexplained"] == 0 and check["relative_diff_untied"] < 1e-3
    np.testing.assert_array_equal(outputs.argmax(-1)[untied], reference.argmax(-1)[untied])


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_odd_size_models_train_a_step(name):
    """One optimiser step of every binary family at its odd size: finite gradients for every trainable weight, and
    the outputs move."""
    size = ODD_SIZES[FAMILIES.index(name) % len(ODD_SIZES)]
    model = _tiny(name, size)
    x = np.random.default_rng(1).normal(size=(4, size, size, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    before = model(x, training=False).numpy()
    opt = tf.keras.optimizers.legacy.Adam(1e-2)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, model(x, training=True),
                                                                              from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)
    opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    after = model(x, training=False).numpy()
    assert np.isfinite(loss.numpy()) and np.abs(after - before).max() > 0
