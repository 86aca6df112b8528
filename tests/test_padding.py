"""The two padding conventions (edgebnn.archs.common): each layer against a numpy reference of its own
convention, forward and gradient, and LCE's conversion of official-convention models.

The references are written from the conventions' definitions, independently of TensorFlow's padding:
- "official" (PyTorch): pad k // 2 on every side (zeros; -inf for max-pool), then slide the window with the stride
  from the top-left corner;
- "lce" (ours): binary convs pad with +1, TensorFlow's "same" placement (the extra row and column at the end).
"""

import numpy as np
import pytest
import tensorflow as tf  # noqa: E402

import edgebnn  # noqa: F401  (Keras 2 before TensorFlow)
from edgebnn import archs  # noqa: E402
from edgebnn.archs import common, stats  # noqa: E402
from edgebnn.archs.randomise import randomise_parameters  # noqa: E402


def sign(x):
    return np.where(x >= 0, 1.0, -1.0)  # Larq's sign(0) = +1 (torch.sign(0) = 0: only exact zeros differ)


def conv_ref(x, w, stride, pad):
    """NHWC cross-correlation of ``x`` padded by ``pad`` = ((top, bottom), (left, right), value), stride from the
    top-left corner, output size floor((n + before + after - k) / s) + 1."""
    (top, bottom), (left, right), value = pad
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)
    kh, kw = w.shape[:2]
    oh, ow = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
    return out


def max_pool_ref(x, k, stride, p):
    xp = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-np.inf)
    oh, ow = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    return np.stack([np.stack([xp[:, i * stride:i * stride + k, j * stride:j * stride + k, :].max(axis=(1, 2))
                               for j in range(ow)], axis=1) for i in range(oh)], axis=1)


def tf_same(n, k, s):
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def magnitude_aware(w):
    return np.abs(w).mean(axis=(0, 1, 2)) * sign(w)


def one_conv(convention, shape, filters, kernel, stride, seed=0):
    """A model of one binary conv (ApproxSign input, magnitude-aware weights) built under ``convention``."""
    with common.padding_convention(convention):
        inputs = tf.keras.Input(shape)
        layer = common.binary_conv(filters, kernel, strides=stride, name="c", mode=common.BINARY)
        model = tf.keras.Model(inputs, layer(inputs))
    w = np.random.RandomState(seed).randn(kernel, kernel, shape[-1], filters).astype(np.float32) * 0.3
    model.get_layer("c").set_weights([w])
    return model, w


SHAPES = [(8, 8, 5), (7, 7, 5), (8, 7, 5), (9, 6, 5)]  # even, odd, and one axis of each


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stride", [1, 2])
def test_official_binary_conv_is_pytorchs_zero_padded_conv(shape, stride):
    model, w = one_conv("official", shape, 6, 3, stride)
    x = np.random.RandomState(1).randn(3, *shape).astype(np.float32)
    ref = conv_ref(sign(x), magnitude_aware(w), stride, ((1, 1), (1, 1), 0.0))
    out = model(x).numpy()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5)
    flips = common.flip_axes(shape[:2], (3, 3), (stride, stride))
    assert isinstance(model.get_layer("c"), common.PyTorchPlacement) == (stride == 2)
    assert flips == ([a for a, n in ((1, shape[0]), (2, shape[1])) if n % 2 == 0] if stride == 2 else [])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stride", [1, 2])
def test_lce_binary_conv_is_one_padded_with_tensorflows_placement(shape, stride):
    model, w = one_conv("lce", shape, 6, 3, stride)
    x = np.random.RandomState(1).randn(3, *shape).astype(np.float32)
    pads = [tf_same(n, 3, stride) for n in shape[:2]]
    ref = conv_ref(sign(x), magnitude_aware(w), stride, (pads[0], pads[1], 1.0))
    np.testing.assert_allclose(model(x).numpy(), ref, atol=1e-5)


def test_the_two_conventions_differ_on_even_stride_2_maps():
    """What a one-pixel shift of the grid and +1 padding do to the same weights: not a rounding difference."""
    x = np.random.RandomState(1).randn(2, 8, 8, 5).astype(np.float32)
    official, w = one_conv("official", (8, 8, 5), 6, 3, 2)
    ours, _ = one_conv("lce", (8, 8, 5), 6, 3, 2)
    a, b = official(x).numpy(), ours(x).numpy()
    assert np.abs(a - b).max() > 0.1 * np.abs(a).max()


def test_placed_conv_gradients_equal_those_of_an_explicitly_padded_conv():
    """d/dx and d/dW of the flipped conv equal those of sign -> zero pad (1, 1) -> VALID stride-2 conv, written with
    tf.pad: the flips change nothing but the grid's placement."""
    model, w = one_conv("official", (8, 7, 4), 5, 3, 2)
    layer = model.get_layer("c")
    x = tf.constant(np.random.RandomState(2).uniform(-1.5, 1.5, (2, 8, 7, 4)).astype(np.float32))
    upstream = tf.constant(np.random.RandomState(3).randn(2, 4, 4, 5).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y * upstream)
        kernel = tf.convert_to_tensor(layer.kernel.latent_variable)
        tape.watch(kernel)
        xb = layer.input_quantizer(x)
        wb = common.MagnitudeAwareWeights()(kernel)
        ref = tf.nn.conv2d(tf.pad(xb, [[0, 0], [1, 1], [1, 1], [0, 0]]), wb, 2, "VALID")
        ref_loss = tf.reduce_sum(ref * upstream)
    np.testing.assert_allclose(y.numpy(), ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss, x).numpy(), tape.gradient(ref_loss, x).numpy(), atol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss, layer.kernel.latent_variable).numpy(),
                               tape.gradient(ref_loss, kernel).numpy(), atol=1e-5)


@pytest.mark.parametrize("size", [72, 73])
def test_official_stem_is_pytorchs_conv_and_max_pool(size):
    with common.padding_convention("official"):
        inputs = tf.keras.Input((size, size, 3))
        conv = common.real_conv(4, 7, strides=2, name="stem_conv")(inputs)
        pooled = common.max_pool_3x3_s2(conv, name="stem_pool")
        model = tf.keras.Model(inputs, [conv, pooled])
    w = np.random.RandomState(4).randn(7, 7, 3, 4).astype(np.float32)
    model.get_layer("stem_conv").set_weights([w])
    x = np.random.RandomState(5).randn(2, size, size, 3).astype(np.float32)
    c, p = (t.numpy() for t in model(x))
    ref_c = conv_ref(x, w, 2, ((3, 3), (3, 3), 0.0))
    np.testing.assert_allclose(c, ref_c, atol=1e-4)
    np.testing.assert_allclose(p, max_pool_ref(ref_c, 3, 2, 1), atol=1e-4)


def test_pytorch_padding_keeps_only_rows_a_window_reads():
    assert common.pytorch_padding(72, 7, 2) == (3, 2)  # the last row of PyTorch's padding is never read
    assert common.pytorch_padding(73, 7, 2) == (3, 3)
    assert common.pytorch_padding(8, 3, 2) == (1, 0)
    assert common.pytorch_padding(9, 3, 2) == (1, 1)


@pytest.mark.parametrize("name", ["bireal-18", "reactnet-18", "sdbnn-18", "xnorpp-18-bnn", "xnorpp-18-case1"])
def test_every_imagenet_family_records_its_convention(name):
    official = archs.build(name, (72, 72, 3), 10, 0.125, padding="official")
    ours = archs.build(name, (72, 72, 3), 10, 0.125)
    assert common.padding_of(official) == "official" and common.padding_of(ours) == "lce"
    assert {float(c.pad_values) for c in stats.binary_conv_layers(official)} == {0.0}
    assert {float(c.pad_values) for c in stats.binary_conv_layers(ours)} == {1.0}
    assert [w.name for w in official.weights] == [w.name for w in ours.weights]  # same names: weights carry over


def test_official_model_saves_and_reloads_to_the_same_function(tmp_path):
    from edgebnn import runs

    model = randomise_parameters(archs.build("reactnet-a", (72, 72, 3), 10, 0.125, padding="official"), seed=2)
    model.save(tmp_path / "m.keras")
    loaded, _ = runs.load_model(tmp_path / "m.keras")
    x = np.random.RandomState(0).randn(2, 72, 72, 3).astype(np.float32)
    np.testing.assert_array_equal(model(x).numpy(), loaded(x).numpy())
    assert common.padding_of(loaded) == "official"


def test_unknown_convention_is_a_clear_error():
    from edgebnn.errors import EdgebnnError

    with pytest.raises(EdgebnnError, match="unknown padding convention 'torch'"):
        archs.build("bireal-18", (72, 72, 3), 10, 0.125, padding="torch")
    assert archs.PADDINGS == common.PADDINGS


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("bireal-18", 72), ("sdbnn-resnet20", 32)])  # reactnet-18: test_finetune
def test_official_models_convert_to_binary_ops_with_the_same_answers(name, size):
    """Every binary conv an LceBconv2d, one REVERSE_V2 pair per flipped conv, LCE's interpreter within 1e-4 of the
    output scale of Keras on random inputs (sign ties aside: none at these margins)."""
    from edgebnn import conversion as conv
    from edgebnn import tflite

    tf.keras.utils.set_random_seed(7)
    model = randomise_parameters(archs.build(name, (size, size, 3), 10, 0.125, padding="official"), seed=3)
    layers = stats.binary_conv_layers(model)
    fb, _ = conv.lce_flatbuffer(model, "arm")
    ops = tflite.read_ops(fb)
    matched, lost = conv.match_binary_convs(layers, ops)
    histogram = tflite.op_histogram(fb)
    flipped = sum(bool(layer._flip) for layer in layers if isinstance(layer, common.PyTorchPlacement))
    assert lost == [] and histogram["LceBconv2d"] == len(layers) and flipped >= 1
    assert histogram.get("REVERSE_V2", 0) == 2 * flipped
    assert tflite.flatbuffer_problems(ops, matched) == [] and tflite.load_error(fb) is None
    x = np.random.RandomState(1).randn(20, size, size, 3).astype(np.float32)
    ref, out = conv._keras_outputs(model, x), conv.run_tflite(fb, x)
    assert np.abs(ref - out).max() < 1e-4 * np.abs(ref).max()


def test_convert_refuses_zero_padded_binary_convs_on_maps_smaller_than_their_kernel():
    from edgebnn.archs.stats import zero_padding_too_small

    small = archs.build("bireal-18", (32, 32, 3), 10, 0.125, padding="official", small=False)
    big = archs.build("bireal-18", (72, 72, 3), 10, 0.125, padding="official")
    ours = archs.build("bireal-18", (32, 32, 3), 10, 0.125, small=False)
    assert zero_padding_too_small(stats.binary_conv_layers(small))[0].startswith("stage3_conv2 (2x2 input")
    assert zero_padding_too_small(stats.binary_conv_layers(big)) == []
    assert zero_padding_too_small(stats.binary_conv_layers(ours)) == []  # one-padding is not affected
