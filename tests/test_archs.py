"""The four architectures against their papers: each piece's formula (forward and gradient), each model's counts
against PAPERS.md, and every binary variant through Larq Compute Engine."""

import larq as lq
import numpy as np
import pytest
import tensorflow as tf
from model_helpers import randomise_parameters

from edgebnn import archs, recipe
from edgebnn.archs import common, reactnet, sdbnn, stats, xnorpp
from edgebnn.errors import EdgebnnError

SMALL = {"input_shape": (32, 32, 3), "num_classes": 10, "width": 0.25}
BINARY_VARIANTS = [n for n in archs.names() if archs.get(n).binary]


def grad_of(fn, x):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = fn(x)
    return y.numpy(), tape.gradient(y, x).numpy()


# ------------------------------------------------------------------------------------- shared pieces
def test_approx_sign_forward_and_piecewise_derivative():
    x = np.array([-2.0, -1.0, -0.75, -0.25, 0.0, 0.25, 0.75, 1.0, 1.5], np.float32)
    y, g = grad_of(lambda v: lq.quantizers.get("approx_sign")(v), x)
    np.testing.assert_array_equal(y, np.where(x >= 0, 1.0, -1.0))
    expected = np.where(x < -1, 0, np.where(x < 0, 2 + 2 * x, np.where(x < 1, 2 - 2 * x, 0)))
    np.testing.assert_allclose(g, expected, atol=1e-6)


def test_bireal_convs_use_approx_sign_and_magnitude_aware_weights():
    model = archs.build("bireal-18", **SMALL)
    convs = stats.binary_conv_layers(model)
    assert len(convs) == 16
    assert all(isinstance(c.input_quantizer, lq.quantizers.ApproxSign) for c in convs)
    assert all(isinstance(c.kernel_quantizer, common.MagnitudeAwareWeights) for c in convs)
    assert all(c.pad_values == 1.0 and c.padding == "same" for c in convs)


def test_magnitude_aware_weights_forward_scale_and_detached_gradient():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.8, (3, 3, 4, 5)).astype(np.float32)
    q = common.MagnitudeAwareWeights()
    y, g = grad_of(lambda v: tf.reduce_sum(q(v) * 1.0), w)
    wb = q(tf.constant(w)).numpy()
    scale = np.abs(w).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(wb, scale * np.where(w >= 0, 1, -1), rtol=1e-6)
    # the scale is detached: d sum(W_b) / dW is the clipped straight-through estimate, not scaled
    np.testing.assert_array_equal(g, (np.abs(w) <= 1).astype(np.float32))


def test_rsign_threshold_forward_and_gradient():
    x = np.array([[[[-0.5, 0.2], [0.3, 1.4]]]], np.float32)  # (1, 1, 2, 2): two channels
    rsign = reactnet.RSign()
    rsign.build(x.shape)
    rsign.alpha.assign([0.1, 0.5])
    sign = lq.quantizers.get("approx_sign")
    with tf.GradientTape() as tape:
        y = sign(rsign(tf.constant(x)))
        loss = tf.reduce_sum(y)
    np.testing.assert_array_equal(y.numpy(), np.where(x - [0.1, 0.5] >= 0, 1.0, -1.0))
    d = x - np.array([0.1, 0.5])
    approx_grad = np.where(np.abs(d) <= 1, 2 - 2 * np.abs(d), 0)
    np.testing.assert_allclose(tape.gradient(loss, rsign.alpha).numpy(), -approx_grad.sum(axis=(0, 1, 2)),
                               rtol=1e-5)


def test_rprelu_forward_init_and_gradients():
    x = np.array([[[[-2.0, 1.0], [0.5, -0.1]]]], np.float32)
    layer = reactnet.RPReLU()
    layer.build(x.shape)
    np.testing.assert_array_equal(layer.beta.numpy(), [0.25, 0.25])
    np.testing.assert_array_equal(layer.gamma.numpy(), [0, 0])
    gamma, beta, zeta = np.array([0.2, -0.3]), np.array([0.1, 0.5]), np.array([1.0, -1.0])
    layer.gamma.assign(gamma), layer.beta.assign(beta), layer.zeta.assign(zeta)
    with tf.GradientTape() as tape:
        y = layer(tf.constant(x))
        loss = tf.reduce_sum(y)
    z = x - gamma
    np.testing.assert_allclose(y.numpy(), np.where(z > 0, z, beta * z) + zeta, rtol=1e-6)
    g_gamma, g_beta, g_zeta = tape.gradient(loss, [layer.gamma, layer.beta, layer.zeta])
    np.testing.assert_allclose(g_beta.numpy(), np.where(z > 0, 0, z).sum(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(g_gamma.numpy(), -np.where(z > 0, 1, beta).sum(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(g_zeta.numpy(), [2, 2])


@pytest.mark.parametrize("case", xnorpp.GAMMA_CASES)
def test_gamma_shapes_forward_and_gradient(case):
    h, w, o = 3, 4, 5
    rng = np.random.default_rng(case)
    x = rng.normal(size=(2, h, w, o)).astype(np.float32)
    layer = xnorpp.LearnedScale(case)
    layer.build(x.shape)
    shapes = {1: [(o,)], 2: [(h, w, o)], 3: [(o,), (h * w,)], 4: [(o,), (h,), (w,)]}[case]
    assert [tuple(v.shape) for v in layer.trainable_weights] == shapes
    assert all(np.all(v.numpy() == 1) for v in layer.trainable_weights)  # init ones
    values = [rng.uniform(0.5, 1.5, s).astype(np.float32) for s in shapes]
    for v, value in zip(layer.trainable_weights, values, strict=True):
        v.assign(value)
    if case in (1, 2):
        gamma = values[0]
    elif case == 3:
        gamma = values[1].reshape(h, w, 1) * values[0]
    else:
        gamma = values[1][:, None, None] * values[2][None, :, None] * values[0]
    with tf.GradientTape() as tape:
        y = layer(tf.constant(x))
        loss = tf.reduce_sum(y)
    np.testing.assert_allclose(y.numpy(), x * gamma, rtol=1e-5)
    grads = tape.gradient(loss, layer.trainable_weights)
    # d sum(x * Gamma) / d alpha_o = sum over batch and positions of x * Gamma / alpha_o
    np.testing.assert_allclose(grads[0].numpy(), (x * gamma / values[0]).sum(axis=0).sum(
        axis=tuple(range(3 - len(shapes[0])))), rtol=1e-4, atol=1e-5)


def test_gamma_case1_with_unit_scales_is_the_plain_binary_conv():
    model = archs.build("xnorpp-18-case1", **SMALL)
    gammas = [layer for layer in model.layers if isinstance(layer, xnorpp.LearnedScale)]
    assert len(gammas) == len(stats.binary_conv_layers(model)) == 16
    assert all(isinstance(c.kernel_quantizer, lq.quantizers.SteSign) for c in stats.binary_conv_layers(model))


def test_asd_forward_is_a_plus_squeeze_excite():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 1.0, size=(2, 4, 4, 32)).astype(np.float32)
    asd = sdbnn.ActivationSelfDistribution(ratio=16)
    asd.build(a.shape)
    asd.squeeze.kernel.assign(np.abs(asd.squeeze.kernel.numpy()))  # hidden ReLUs active: the SE branch has a gradient
    w1, w2 = asd.squeeze.kernel.numpy(), asd.excite.kernel.numpy()
    assert w1.shape == (32, 2) and w2.shape == (2, 32) and not asd.squeeze.use_bias and not asd.excite.use_bias
    se = 1 / (1 + np.exp(-(np.maximum(a.mean(axis=(1, 2)) @ w1, 0) @ w2)))
    out = asd(tf.constant(a)).numpy()
    np.testing.assert_allclose(out, a + se[:, None, None, :], rtol=1e-5, atol=1e-6)
    shift = out - a
    assert np.all((shift > 0) & (shift < 1))
    _, g = grad_of(lambda v: tf.reduce_sum(asd(v)), a)
    assert np.all(np.isfinite(g)) and np.abs(g - 1).max() > 0  # the SE branch contributes to the gradient


def test_wsd_forward_and_gradient():
    conv = sdbnn.SelfDistributedConv2D(4, 3, padding="same", kernel_quantizer=sdbnn.WeightSelfDistribution("ste"),
                                       input_quantizer="approx_sign", kernel_constraint="weight_clip", use_bias=False)
    conv.build((None, 5, 5, 3))
    assert np.all(conv.wsd_alpha.numpy() == 0) and conv.wsd_alpha.shape == (4,)
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.01, (3, 3, 3, 4)).astype(np.float32)
    alpha = np.array([-1.0, 0.0, 2.0, 5.0], np.float32)
    conv.kernel.assign(w)
    conv.wsd_alpha.assign(alpha)
    mean = w.mean(axis=(0, 1, 2))
    shifted = w + 1 / (1 + np.exp(-alpha)) * 0.01 * mean
    with tf.GradientTape() as tape:
        wb = conv.kernel_quantizer(conv.kernel.latent_variable)
        loss = tf.reduce_sum(wb * rng.normal(size=w.shape).astype(np.float32))
    np.testing.assert_array_equal(wb.numpy(), np.where(shifted >= 0, 1.0, -1.0))
    with lq.context.quantized_scope(True):
        assert set(np.unique(conv.kernel.numpy())) == {-1.0, 1.0}  # what the conv uses: no scale
    assert tape.gradient(loss, conv.wsd_alpha) is not None


def test_wsd_alpha_gradient_matches_formula():
    w = np.array([[[[0.3, -0.2]], [[0.1, -0.5]]]], np.float32)  # (1, 2, 1, 2)
    alpha = tf.Variable([0.5, -0.5])
    q = sdbnn.WeightSelfDistribution("ste")
    q.bind(alpha)
    dy = np.array([[[[1.0, 2.0]], [[3.0, -1.0]]]], np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(q(tf.constant(w)) * dy)
    mean = w.mean(axis=(0, 1, 2))
    s = 1 / (1 + np.exp(-alpha.numpy()))
    shifted = w + s * 0.01 * mean
    ste = (np.abs(shifted) <= 1).astype(np.float32)
    expected = (dy * ste).sum(axis=(0, 1, 2)) * s * (1 - s) * 0.01 * mean
    np.testing.assert_allclose(tape.gradient(loss, alpha).numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("progress", [0.0, 0.5, 1.0])
def test_ede_backward_matches_irnet_formula(progress):
    archs.set_training_progress(None, progress)
    try:
        x = np.linspace(-2, 2, 9).astype(np.float32)
        y, g = grad_of(sdbnn.ede_sign, x)
        t = 1e-3 * 10 ** (progress * np.log10(10 / 1e-3))
        k = max(1 / t, 1)
        np.testing.assert_array_equal(y, np.where(x >= 0, 1, -1))
        np.testing.assert_allclose(g, k * t * (1 - np.tanh(t * x) ** 2), rtol=1e-4, atol=1e-5)
    finally:
        archs.set_training_progress(None, 0.0)


def test_distributional_loss_equals_formula_on_known_logits():
    teacher = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]], np.float32)
    student = np.array([[1.0, 1.0, 0.0], [-1.0, 2.0, 0.0]], np.float32)

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    expected = -np.mean(np.sum(softmax(teacher) * np.log(softmax(student)), axis=1))
    assert archs.distributional_loss(teacher, student).numpy() == pytest.approx(expected, rel=1e-6)
    s = tf.Variable(student)
    with tf.GradientTape() as tape:
        loss = archs.distributional_loss(teacher, s)
    np.testing.assert_allclose(tape.gradient(loss, s).numpy(), (softmax(student) - softmax(teacher)) / 2, atol=1e-6)


# -------------------------------------------------------------------------------- counts vs papers
@pytest.fixture(scope="module")
def imagenet_stats():
    return {n: stats.model_stats(archs.build(n)) for n in ("bireal-18", "reactnet-a", "reactnet-18", "resnet-18")}


def test_bireal18_has_larq_zoo_parameters_ops_and_size(imagenet_stats):
    s = imagenet_stats["bireal-18"]
    assert s["params"] == 11_699_112
    assert s["ops"] == pytest.approx(1.63e8, rel=0.02)
    assert s["size_mb"] == pytest.approx(4.03, abs=0.01)


def test_reactnet_a_ops_and_binary_weights(imagenet_stats):
    s = imagenet_stats["reactnet-a"]
    assert s["ops"] == pytest.approx(0.87e8, rel=0.02)
    assert s["binary_params"] == pytest.approx(28.25e6, rel=0.01)


def test_reactnet18_ops_and_resnet18_params(imagenet_stats):
    assert imagenet_stats["reactnet-18"]["ops"] == pytest.approx(1.63e8, rel=0.02)
    assert imagenet_stats["resnet-18"]["params"] == 11_699_112  # torchvision's 11,689,512 + BN statistics
    assert imagenet_stats["resnet-18"]["binary_macs"] == 0


def test_reactnet_a_layout():
    model = archs.build("reactnet-a")
    convs = stats.binary_conv_layers(model)
    assert len(convs) == 13 + 13 + 5  # a 3x3 and a 1x1 per block, a second 1x1 in the five doubling blocks
    assert model.get_layer("stem_conv").strides == (2, 2) and model.get_layer("stem_conv").filters == 32
    assert model.get_layer("block13_b_rprelu").output_shape == (None, 7, 7, 1024)
    assert model.get_layer("block1_a_conv").strides == (1, 1)  # 32 -> 64 keeps the resolution


@pytest.mark.parametrize("name, convs", [("bireal-34", 32), ("sdbnn-resnet20", 18), ("sdbnn-resnet18", 16),
                                         ("sdbnn-vgg-small", 5), ("sdbnn-18", 16)])
def test_binary_conv_counts(name, convs):
    assert len(stats.binary_conv_layers(archs.build(name))) == convs


@pytest.mark.parametrize("name", ["sdbnn-resnet20", "sdbnn-resnet18"])
def test_sdbnn_cifar_resnet_heads_are_pool_batchnorm1d_fc(name):
    """The official resnet.py: avg pool -> BatchNorm1d -> FC (ResNet-20 lacked the BatchNorm1d before issue 12)."""
    model = archs.build(name, **SMALL)
    pool, bn, fc = (model.get_layer(n) for n in ("head_pool", "head_bn", "head_fc"))
    assert bn.input is pool.output and fc.input is bn.output and fc.output is model.output
    assert isinstance(bn, tf.keras.layers.BatchNormalization) and bn.gamma.shape == (pool.output_shape[-1],)


def test_sdbnn_vgg_small_head_is_8192_to_10():
    model = archs.build("sdbnn-vgg-small")
    assert model.get_layer("head_fc").kernel.shape == (8192, 10)


# ------------------------------------------------------------------------------- registry contract
def test_registry_names_and_metadata():
    names = archs.names()
    for expected in ["bireal-18", "bireal-34", "reactnet-a", "reactnet-18", "xnorpp-18-case1", "xnorpp-18-case4",
                     "sdbnn-resnet20", "sdbnn-resnet18", "sdbnn-vgg-small", "sdbnn-18", "resnet-18", "resnet-34"]:
        assert expected in names
        v = archs.get(expected)
        assert v.paper and v.source and v.family in expected
    assert archs.get("bireal-18").twin == "bireal-18-real"
    assert archs.get("bireal-18-real").twin_of == "bireal-18"
    assert archs.get("resnet-18").twin is None


def test_unknown_model_is_a_clear_error():
    with pytest.raises(EdgebnnError, match="unknown model 'bireal-19'"):
        archs.get("bireal-19")
    with pytest.raises(EdgebnnError):
        archs.get("resnet-18-real")


@pytest.mark.parametrize("name", archs.names())
def test_every_variant_builds_small_and_its_twin_has_the_same_layers(name):
    model = archs.build(name, **SMALL)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    assert model(x, training=False).shape == (2, 10)
    for layer in stats.iter_layers(model):  # the handover matches weights by their name within the layer
        keys = [archs.weight_key(layer, w) for w in layer.weights]
        assert len(set(keys)) == len(keys), (layer.name, keys)
    if archs.get(name).binary:
        twin = archs.build(archs.get(name).twin, **SMALL)
        assert stats.binary_conv_layers(twin) == []
        assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
        binary_names = {layer.name for layer in stats.binary_conv_layers(model)}
        # where the binary model has sign, its twin has Hardtanh: a nonlinearity, real-valued
        assert all(isinstance(twin.get_layer(n).input_quantizer, common.HardTanh) for n in binary_names)


TWO_STEP = [n for n in recipe.names() if len(recipe.load(n)["steps"]) > 1]


def test_two_step_families_are_the_expected_ones():
    assert {"reactnet-18", "reactnet-a", "sdbnn-18", "xnorpp-18-case1", "xnorpp-18-case4"} <= set(TWO_STEP)


@pytest.mark.parametrize("name", TWO_STEP)
def test_two_step_handover_carries_every_weight(name):
    """Step 2 starts from every weight of step 1 (the step binarizations of the recipe itself): the only weights
    step 2 has and step 1 has not are WSD's alphas, every value arrives unchanged, and handing step 2's weights
    back to a fresh step-1 model reproduces step 1's outputs exactly (a lost ASD kernel would not)."""
    steps = recipe.load(name)["steps"]

    def build(step):
        return archs.build(name, **SMALL, binary_weights=step["binary_weights"],
                           binary_activations=step["binary_activations"])

    tf.keras.utils.set_random_seed(11)
    step1 = randomise_parameters(build(steps[0]), seed=4)
    step2 = build(steps[1])
    copied = archs.carry_over_weights(step1, step2)
    only_in_step2 = [w.name for w in step2.weights if w.name.split(":")[0].endswith("/wsd_alpha")]
    assert len(only_in_step2) == (16 if name.startswith("sdbnn") else 0)
    assert len(copied) == len(step2.weights) - len(only_in_step2) == len(step1.weights)
    for layer in stats.iter_layers(step1):
        for w in layer.weights:
            key = archs.weight_key(layer, w)
            (target,) = [v for v in step2.get_layer(layer.name).weights
                         if archs.weight_key(step2.get_layer(layer.name), v) == key]
            target = getattr(target, "latent_variable", target)
            np.testing.assert_array_equal(target.numpy(), w.numpy(), err_msg=f"{layer.name}/{key}")
    back = build(steps[0])
    assert len(archs.carry_over_weights(step2, back)) == len(step1.weights)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(back(x, training=False).numpy(), step1(x, training=False).numpy())


def test_handover_shape_mismatch_is_an_error():
    small = archs.build("sdbnn-18", **SMALL, binary_weights=False)
    wider = archs.build("sdbnn-18", **{**SMALL, "width": 0.5})
    with pytest.raises(EdgebnnError, match="cannot carry weight stem_conv/kernel over: shape"):
        archs.carry_over_weights(small, wider)


def test_asd_kernels_have_distinct_names_and_old_names_still_load(tmp_path):
    model = archs.build("sdbnn-resnet20", **SMALL)
    asd = model.get_layer("stage1_conv1_asd")
    assert [archs.weight_key(asd, w) for w in asd.weights] == ["squeeze/kernel", "excite/kernel"]
    path = tmp_path / "m.keras"
    model.save(path)
    again = tf.keras.models.load_model(path, custom_objects=archs.custom_objects())
    layer = again.get_layer("stage1_conv1_asd")
    assert [archs.weight_key(layer, w) for w in layer.weights] == ["squeeze/kernel", "excite/kernel"]
    twin = archs.build("sdbnn-resnet20-real", **SMALL)
    assert len(archs.carry_over_weights(again, twin)) == len(twin.weights)


def test_save_and_reload_every_family(tmp_path):
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype(np.float32)
    for name in ["bireal-18", "reactnet-a", "xnorpp-18-case4", "sdbnn-resnet20", "bireal-18-real"]:
        model = archs.build(name, **SMALL)
        path = tmp_path / f"{name}.keras"
        model.save(path)
        again = tf.keras.models.load_model(path, custom_objects=archs.custom_objects())
        np.testing.assert_allclose(again(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
        assert len(stats.binary_conv_layers(again)) == len(stats.binary_conv_layers(model))


# ------------------------------------------------------------------------------ conversion by LCE
# Float ops that a paper's piece leaves in the flatbuffer, per binary conv (measured with LCE 0.16), beyond the
# classifier's own MEAN and FULLY_CONNECTED.
PIECE_FLOAT_OPS = {
    "xnorpp-18-case1": {"MUL": 1},  # the BN before the sign; Gamma (per channel) folds into LceBconv2d
    **{f"xnorpp-18-case{c}": {"MUL": 2} for c in (2, 3, 4)},  # the BN's, and Gamma's own multiply
    **{n: {"MEAN": 1, "FULLY_CONNECTED": 2, "LOGISTIC": 1}  # ASD's squeeze-excite branch
       for n in ("sdbnn-resnet20", "sdbnn-resnet18", "sdbnn-vgg-small", "sdbnn-18")},
}


@pytest.fixture(scope="module")
def digits_100():
    from edgebnn import data

    return data.sample("digits", 100, input_size=32)


@pytest.mark.slow
@pytest.mark.parametrize("name", BINARY_VARIANTS)
def test_every_binary_variant_converts_to_binary_ops_with_the_same_answers(name, digits_100):
    """Width 1/8, 32x32x3, 10 classes, every non-kernel parameter moved off its init; 100 digits samples through
    LCE's interpreter and Keras: the same top-1 on all 100; a sample beyond 1e-3 of the output scale must be
    explained by a sign input within float rounding of 0 (the two runtimes may round such a tie to different
    sides). The model is seeded: unseeded, a tie flipped one top-1 of reactnet-18 (98 of 100 agreed) in CI."""
    from edgebnn import conversion as conv
    from edgebnn import tflite

    tf.keras.utils.set_random_seed(7)  # the same random model whatever ran before
    model = randomise_parameters(archs.build(name, input_shape=(32, 32, 3), num_classes=10, width=0.125), seed=3)
    layers = stats.binary_conv_layers(model)
    flatbuffer, _ = conv.lce_flatbuffer(model, "arm")
    ops = tflite.read_ops(flatbuffer)
    matched, lost = conv.match_binary_convs(layers, ops)
    histogram = tflite.op_histogram(flatbuffer)
    assert layers and lost == [] and histogram["LceBconv2d"] == len(layers)
    assert tflite.flatbuffer_problems(ops, matched) == [] and tflite.load_error(flatbuffer) is None
    head = {
        "MEAN": sum(isinstance(layer, tf.keras.layers.GlobalAveragePooling2D) for layer in model.layers),
        "FULLY_CONNECTED": sum(isinstance(layer, tf.keras.layers.Dense) for layer in model.layers),
    }
    for op, per_conv in PIECE_FLOAT_OPS.get(name, {}).items():
        assert histogram.get(op, 0) - head.get(op, 0) == per_conv * len(layers), histogram

    x, y = digits_100
    check = conv.compare(conv._keras_outputs(model, x), conv.run_tflite(flatbuffer, x), y,
                         conv.sign_margins(model, layers, x))
    assert check["samples"] == 100 and check["top1_agreement"] == 1.0
    assert check["unexplained"] == 0 and check["relative_diff_untied"] < 1e-3


def test_gamma_after_prelu_is_the_same_function():
    """Cases 2-4 apply Gamma after the PReLU: PReLU(Gamma x) = Gamma PReLU(x) for Gamma >= 0."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    for case in (2, 3, 4):
        gamma = xnorpp.LearnedScale(case)
        prelu = tf.keras.layers.PReLU(shared_axes=[1, 2])
        gamma.build(x.shape), prelu.build(x.shape)
        prelu.alpha.assign(rng.uniform(-0.5, 0.5, prelu.alpha.shape))
        for w in gamma.weights:
            w.assign(rng.uniform(0.0, 2.0, w.shape))
        np.testing.assert_allclose(gamma(prelu(x)).numpy(), prelu(gamma(x)).numpy(), rtol=1e-5, atol=1e-6)
        assert all(w.constraint is not None for w in gamma.weights)  # kept non-negative in training


def test_a_model_saved_before_the_asd_rename_still_loads(tmp_path, monkeypatch):
    """Before issue 12 ASD built its two Dense layers bare, both kernels named NAME/kernel. A .keras file keys
    weights by attribute path (squeeze, excite), so a file saved then loads into today's code, bit for bit."""
    def old_build(self, input_shape):
        c = int(input_shape[-1])
        hidden = max(1, c // self.ratio)
        self.squeeze = tf.keras.layers.Dense(hidden, use_bias=False, name="squeeze")
        self.excite = tf.keras.layers.Dense(c, use_bias=False, name="excite")
        self.squeeze.build((None, c))
        self.excite.build((None, hidden))
        tf.keras.layers.Layer.build(self, input_shape)

    x = np.random.default_rng(8).normal(size=(2, 32, 32, 3)).astype(np.float32)
    with monkeypatch.context() as patch:
        patch.setattr(sdbnn.ActivationSelfDistribution, "build", old_build)
        old = randomise_parameters(archs.build("sdbnn-resnet20", **{**SMALL, "width": 0.125}), seed=2)
        asd = old.get_layer("stage1_conv1_asd")
        assert [w.name for w in asd.weights] == ["stage1_conv1_asd/kernel:0"] * 2  # the old clash
        for w in asd.weights:
            w.assign(np.random.default_rng(9).normal(size=w.shape))
        old.save(tmp_path / "old.keras")
        expected = old(x, training=False).numpy()
    from edgebnn import runs

    again, info = runs.load_model(tmp_path / "old.keras")
    layer = again.get_layer("stage1_conv1_asd")
    assert [archs.weight_key(layer, w) for w in layer.weights] == ["squeeze/kernel", "excite/kernel"]
    np.testing.assert_array_equal(again(x, training=False).numpy(), expected)
