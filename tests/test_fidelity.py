"""Formulas against independent computations, forward and gradient (issue 12): each test recomputes the paper's
formula in numpy (or by finite differences) rather than trusting the code's own pieces."""

import numpy as np
import pytest
import tensorflow as tf

from edgebnn import archs, recipe
from edgebnn import training as train
from edgebnn.archs import stats

SMALL = {"input_shape": (32, 32, 3), "num_classes": 10, "width": 0.25}


# ------------------------------------------------------------------------------------------ weight decay
def _conv_kernels(model):
    return {layer.kernel.name for layer in stats.iter_layers(model) if isinstance(layer, tf.keras.layers.Conv2D)}


def test_reactnet_step1_decays_conv_kernels_only_as_the_official_code():
    step1 = recipe.load("reactnet-18")["steps"][0]
    assert step1["weight_decay"] == 1e-5 and step1["weight_decay_on"] == "conv_kernels"
    model = archs.build("reactnet-18", **SMALL, binary_weights=False)
    decayed = {v.name for v in train.decayed_variables(model, "conv_kernels")}
    convs = _conv_kernels(model)
    assert decayed == convs and len(convs) == 1 + 16 + 3  # stem, 16 binary 3x3, 3 shortcut 1x1
    assert "head_fc/kernel:0" not in decayed
    # the other choices, for the record: kernels adds the FC kernel, all adds everything trainable
    kernels = {v.name for v in train.decayed_variables(model, "kernels")}
    assert kernels == convs | {"head_fc/kernel:0"}
    assert len(train.decayed_variables(model, "all")) == len(model.trainable_variables)
    assert train.decayed_variables(model, "none") == []


@pytest.mark.parametrize("name", ["reactnet-a", "sdbnn-18"])
def test_other_two_step_recipes_decay_conv_kernels_in_step1(name):
    steps = recipe.load(name)["steps"]
    assert steps[0]["weight_decay_on"] == "conv_kernels" and steps[1]["weight_decay"] == 0


def _decay_setup():
    rng = np.random.default_rng(0)
    conv = tf.Variable(rng.normal(size=(3, 3, 2, 4)).astype(np.float32), name="conv_kernel")
    fc = tf.Variable(rng.normal(size=(4, 3)).astype(np.float32), name="fc_kernel")
    grads = [tf.constant(rng.normal(size=v.shape).astype(np.float32)) for v in (conv, fc)]
    return conv, fc, grads


def test_coupled_weight_decay_adds_wd_w_to_the_gradient():
    conv, fc, grads = _decay_setup()
    c0, f0 = conv.numpy(), fc.numpy()
    wd, lr = 0.1, 0.5
    opt = tf.keras.optimizers.legacy.SGD(lr)
    out = train.apply_weight_decay(grads, [conv, fc], [conv], wd, lr, decoupled=False)
    opt.apply_gradients(zip(out, [conv, fc], strict=True))
    np.testing.assert_allclose(conv.numpy(), c0 - lr * (grads[0].numpy() + wd * c0), rtol=1e-6)
    np.testing.assert_allclose(fc.numpy(), f0 - lr * grads[1].numpy(), rtol=1e-6)  # not decayed


def test_decoupled_weight_decay_shrinks_the_weight_before_adam():
    conv, fc, grads = _decay_setup()
    c0, f0 = conv.numpy(), fc.numpy()
    wd, lr = 0.1, 0.01
    opt = tf.keras.optimizers.legacy.Adam(lr, epsilon=1e-8)
    out = train.apply_weight_decay(grads, [conv, fc], [conv], wd, lr, decoupled=True)
    assert out is grads  # the gradient itself is not touched (AdamW)
    opt.apply_gradients(zip(out, [conv, fc], strict=True))
    g0, g1 = grads[0].numpy(), grads[1].numpy()
    # Adam's first step moves each weight by lr * m_hat / (sqrt(v_hat) + eps) = lr * g / |g| (eps negligible)
    np.testing.assert_allclose(conv.numpy(), c0 * (1 - lr * wd) - lr * np.sign(g0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fc.numpy(), f0 - lr * np.sign(g1), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------- EDE
@pytest.mark.parametrize("name, t_min", [("sdbnn-vgg-small", 0.1), ("sdbnn-resnet20", 1e-3), ("sdbnn-resnet18", 1e-3)])
def test_ede_start_temperature_is_each_official_trainers(name, t_min):
    assert recipe.load(name)["ede_t_min"] == t_min
    assert recipe.load(name, dataset="digits")["ede_t_min"] == t_min  # the [digits] table keeps it


def test_ede_start_temperature_must_be_positive_and_below_the_end():
    from edgebnn.errors import EdgebnnError

    with pytest.raises(EdgebnnError, match="ede_t_min must be above 0"):
        recipe.load("sdbnn-vgg-small", sets=["ede_t_min=0"])
    with pytest.raises(EdgebnnError, match="ede_t_min must be above 0"):
        recipe.load("sdbnn-vgg-small", sets=["ede_t_min=20.0"])


def _ede_grad(x):
    from edgebnn.archs import sdbnn

    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(sdbnn.ede_sign(x))
    return tape.gradient(y, x)


@pytest.mark.parametrize("t_min", [1e-3, 0.1])
@pytest.mark.parametrize("progress", [0.0, 0.25, 1.0])
def test_ede_gradient_from_the_recipes_start_temperature(t_min, progress):
    x = np.linspace(-3, 3, 13).astype(np.float32)
    try:
        archs.set_training_progress(None, progress, ede_t_min=t_min)
        g = _ede_grad(x).numpy()
    finally:
        archs.set_training_progress(None, 0.0)
    t = t_min * 10 ** (progress * np.log10(10 / t_min))  # IR-Net's Log_UP: 10^(log T_min + p (log T_max - log T_min))
    np.testing.assert_allclose(g, max(1 / t, 1) * t * (1 - np.tanh(t * x) ** 2), rtol=1e-4, atol=1e-5)


def test_ede_progress_reaches_a_traced_training_step():
    """The temperature is read when the backward runs: one trace, three progress values, three gradients."""
    step = tf.function(_ede_grad)
    x = np.array([0.05, 0.5, 2.0], np.float32)
    grads = []
    try:
        for p in (0.0, 0.5, 1.0):
            archs.set_training_progress(None, p, ede_t_min=0.1)
            grads.append(step(x).numpy())
    finally:
        archs.set_training_progress(None, 0.0)
    assert step.experimental_get_tracing_count() == 1
    for p, g in zip((0.0, 0.5, 1.0), grads, strict=True):
        t = 0.1 * 100 ** p
        np.testing.assert_allclose(g, max(1 / t, 1) * t * (1 - np.tanh(t * x) ** 2), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_training_loop_anneals_ede_per_epoch_from_the_recipe(tmp_path):
    """edgebnn.training on digits, 3 epochs of sdbnn-vgg-small: the loop sets p = epoch / epochs before each epoch
    and T_min from the recipe (0.1), so after training p = 2/3 and T_min = 0.1."""
    from edgebnn.archs import sdbnn

    try:
        archs.set_training_progress(None, 0.0)
        train.train("sdbnn-vgg-small", dataset="digits", epochs=3, out=tmp_path / "run", progress=False,
                    verbose=False, summary=False, sets=["arch.width=0.125"])
        lo, hi = sdbnn.ede_range()
        assert sdbnn.ede_progress().numpy() == pytest.approx(2 / 3) and lo.numpy() == pytest.approx(0.1)
        assert hi.numpy() == 10.0
    finally:
        archs.set_training_progress(None, 0.0)


# -------------------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("kind", ["linear", "cosine", "constant"])
def test_learning_rate_schedules_against_their_formulas(kind):
    total, base = 50, 0.2
    schedule = train.learning_rate(kind, base, total)
    for t in (0, 1, 10, 25, 49, 50, 60):
        u = min(t / total, 1.0)
        expected = {"linear": base * (1 - u), "cosine": base * (1 + np.cos(np.pi * u)) / 2, "constant": base}[kind]
        assert float(schedule(t)) == pytest.approx(expected, abs=1e-7), t


def test_multistep_schedule_divides_by_ten_after_each_milestone_epoch():
    per_epoch, base = 7, 1e-3
    schedule = train.learning_rate("multistep", base, 90 * per_epoch, steps_per_epoch=per_epoch,
                                   milestones=[40, 70, 80])
    for epoch, factor in ((0, 1), (39, 1), (40, 0.1), (69, 0.1), (70, 0.01), (80, 0.001), (89, 0.001)):
        for within in (0, per_epoch - 1):
            assert float(schedule(epoch * per_epoch + within)) == pytest.approx(base * factor, rel=1e-5)


def test_multistep_needs_increasing_milestones():
    from edgebnn.errors import EdgebnnError

    with pytest.raises(EdgebnnError, match="milestones must be increasing"):
        recipe.load("xnorpp-18-bnn", sets=["steps.milestones=[70, 40]"])
    with pytest.raises(EdgebnnError, match="only for schedule = 'multistep'"):
        recipe.load("bireal-18", sets=["steps.milestones=[10]"])


# -------------------------------------------------------------------------------------- XNOR-Net++ (bnn)
def test_xnorpp_bnn_recipe_is_the_librarys():
    r = recipe.load("xnorpp-18-bnn")
    s1, s2 = r["steps"]
    for s in (s1, s2):
        assert (s["optimizer"], s["lr"], s["batch_size"], s["epochs"]) == ("adamw", 1e-3, 256, 90)
        assert s["schedule"] == "multistep" and s["milestones"] == [40, 70, 80]
    assert (s1["weight_decay"], s1["weight_decay_on"], s2["weight_decay"]) == (0.01, "all", 0.0)
    assert (s1["binary_weights"], s2["binary_weights"]) == (False, True) and r["arch"]["case"] == 1
    assert "bnn library" in r["paper"]["source"] and "not confirmed" in archs.get("xnorpp-18-bnn").ours


def test_xnorpp_bnn_has_one_shortcut_per_two_binary_convs_and_a_relu_stem():
    bnn = archs.build("xnorpp-18-bnn", **SMALL)
    zoo = archs.build("xnorpp-18-case1", **SMALL)
    adds = [layer for layer in bnn.layers if isinstance(layer, tf.keras.layers.Add)]
    assert len(stats.binary_conv_layers(bnn)) == 16 and len(adds) == 8
    assert sum(isinstance(layer, tf.keras.layers.Add) for layer in zoo.layers) == 16
    assert isinstance(bnn.get_layer("stem_relu"), tf.keras.layers.ReLU)
    assert not any(isinstance(layer, tf.keras.layers.ReLU) for layer in zoo.layers)
    # the add takes the second conv's PReLU and the block input (identity block)
    add = bnn.get_layer("stage1_block2_add")
    assert add.input[0] is bnn.get_layer("stage1_block2_conv2_prelu").output
    assert add.input[1] is bnn.get_layer("stage1_block1_add").output
    # a bigger Gamma case builds too, with per-position scales
    four = archs.build("xnorpp-18-bnn", **SMALL, case=4)
    assert four.get_layer("stage2_block1_conv1_gamma").beta.shape == (16,)


# ----------------------------------------------------------------------------------- numpy references
def np_sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def np_conv(x, w, stride=1, pad_value=0.0):
    """2-D convolution with TensorFlow's "same" padding filled with ``pad_value`` (Larq's pad_values)."""
    n, h, wd, _ = x.shape
    kh, kw, _, o = w.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), constant_values=pad_value)
    out = np.zeros((n, oh, ow, o))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def np_bn(x, layer):
    g, b, m, v = (w.numpy() for w in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance))
    return g * (x - m) / np.sqrt(v + layer.epsilon) + b


def np_magnitude_aware(w):
    return np.abs(w).mean(axis=(0, 1, 2)) * np_sign(w)


def np_rprelu(x, layer):
    z = x - layer.gamma.numpy()
    return np.where(z > 0, z, layer.beta.numpy() * z) + layer.zeta.numpy()


def np_prelu(x, layer):
    return np.where(x > 0, x, layer.alpha.numpy().reshape(-1) * x)


def _tiny_block(block, shape, seed=0):
    """A Keras model around one block, every BN and threshold moved off its init."""
    from model_helpers import randomise_parameters

    tf.keras.utils.set_random_seed(seed)
    inputs = tf.keras.Input(shape=shape)
    model = randomise_parameters(tf.keras.Model(inputs, block(inputs)), seed=seed)
    x = np.random.default_rng(seed).normal(size=(2, *shape)).astype(np.float32)
    return model, x, model(x, training=False).numpy()


# ------------------------------------------------------------------------------------- block order
@pytest.mark.parametrize("strides, filters", [(1, 8), (2, 16)])
def test_bireal_block_is_bn_of_binary_conv_plus_the_shortcut(strides, filters):
    from edgebnn.archs import bireal

    block = bireal.bireal_block(archs.common.BINARY)
    model, x, y = _tiny_block(lambda t: block(t, filters, strides, name="b"), (6, 6, 8))
    conv = model.get_layer("b")
    expected = np_bn(np_conv(np_sign(x), np_magnitude_aware(conv.kernel.latent_variable.numpy()), strides, 1.0),
                     model.get_layer("b_bn"))
    if strides == 1:
        shortcut = x  # the block's input, not anything after the sign
    else:  # AvgPool 2x2 s2 -> 1x1 conv -> BN, on the block's input
        pooled = x.reshape(2, 3, 2, 3, 2, 8).mean(axis=(2, 4))
        shortcut = np_bn(np_conv(pooled, model.get_layer("b_down_conv").kernel.numpy()), model.get_layer("b_down_bn"))
    np.testing.assert_allclose(y, expected + shortcut, rtol=1e-4, atol=1e-4)  # no nonlinearity after the add


def test_reactnet18_block_is_rsign_conv_bn_add_then_rprelu():
    from edgebnn.archs import reactnet

    block = reactnet.reactnet_resnet_block(archs.common.BINARY)
    model, x, y = _tiny_block(lambda t: block(t, 8, 1, name="b"), (5, 5, 8))
    conv = model.get_layer("b")
    pre = np_sign(x - model.get_layer("b_rsign").alpha.numpy())
    z = np_bn(np_conv(pre, np_magnitude_aware(conv.kernel.latent_variable.numpy()), 1, 1.0), model.get_layer("b_bn"))
    np.testing.assert_allclose(y, np_rprelu(z + x, model.get_layer("b_rprelu")), rtol=1e-4, atol=1e-4)
    # RPReLU sits after the residual add, on its output
    assert model.get_layer("b_rprelu").input is model.get_layer("b_add").output


def test_reactnet_a_doubling_block_order_and_shortcuts():
    """Part a adds AvgPool(x) after the strided 3x3 conv; part b's two 1x1 convs each add part a's RPReLU output
    (not x), are concatenated in order, then RPReLU."""
    from edgebnn.archs import reactnet

    model, x, y = _tiny_block(lambda t: reactnet.reactnet_a_block(t, 16, 2, name="k", mode=archs.common.BINARY),
                              (6, 6, 8))

    def w(name):
        return np_magnitude_aware(model.get_layer(name).kernel.latent_variable.numpy())

    pre_a = np_sign(x - model.get_layer("k_a_rsign").alpha.numpy())
    z = np_bn(np_conv(pre_a, w("k_a_conv"), 2, 1.0), model.get_layer("k_a_bn"))
    a = np_rprelu(z + x.reshape(2, 3, 2, 3, 2, 8).mean(axis=(2, 4)), model.get_layer("k_a_rprelu"))
    pre_b = np_sign(a - model.get_layer("k_b_rsign").alpha.numpy())
    halves = [np_bn(np_conv(pre_b, w(f"k_b_conv{h}"), 1, 1.0), model.get_layer(f"k_b_bn{h}")) + a for h in "12"]
    expected = np_rprelu(np.concatenate(halves, axis=-1), model.get_layer("k_b_rprelu"))
    assert y.shape == (2, 3, 3, 16)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


# -------------------------------------------------------------------------------------------- XNOR-Net++
def _gamma_np(case, values, h, w):
    if case in (1, 2):
        return values[0]
    if case == 3:
        return values[1].reshape(h, w, 1) * values[0]
    return values[1][:, None, None] * values[2][None, :, None] * values[0]


@pytest.mark.parametrize("case", [2, 3, 4])
def test_gamma_every_factors_gradient(case):
    """d/d(each factor) of sum(dy * x * Gamma), in numpy from the product rule, and d/dx = Gamma dy."""
    from edgebnn.archs import xnorpp

    h, w, o = 3, 4, 5
    rng = np.random.default_rng(10 + case)
    x = rng.normal(size=(2, h, w, o)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    layer = xnorpp.LearnedScale(case)
    layer.build(x.shape)
    values = [rng.uniform(0.5, 1.5, v.shape).astype(np.float32) for v in layer.trainable_weights]
    for v, value in zip(layer.trainable_weights, values, strict=True):
        v.assign(value)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        loss = tf.reduce_sum(layer(xt) * dy)
    grads = tape.gradient(loss, [xt, *layer.trainable_weights])
    gamma = _gamma_np(case, values, h, w)
    g = (x * dy).sum(axis=0)  # (h, w, o): d loss / d Gamma
    if case == 2:
        expected = [g]
    elif case == 3:
        beta = values[1].reshape(h, w, 1)
        expected = [(g * beta).sum(axis=(0, 1)), (g * values[0]).sum(axis=2).reshape(-1)]
    else:
        alpha, beta, gam = values
        expected = [(g * beta[:, None, None] * gam[None, :, None]).sum(axis=(0, 1)),
                    (g * gam[None, :, None] * alpha).sum(axis=(1, 2)),
                    (g * beta[:, None, None] * alpha).sum(axis=(0, 2))]
    np.testing.assert_allclose(grads[0].numpy(), gamma * dy, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads[1:], expected, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_xnorpp_block_equals_prelu_of_gamma_times_conv_while_gamma_is_non_negative(case):
    """The block as the paper writes it, PReLU((sign(BN x) * sign(W)) Gamma) + x, whatever order the code uses
    (cases 2-4 apply Gamma after the PReLU); with a negative Gamma the two orders would differ, and the
    constraint projects Gamma back to >= 0."""
    from edgebnn.archs import xnorpp

    block = xnorpp.xnorpp_block(archs.common.BINARY, case)
    model, x, y = _tiny_block(lambda t: block(t, 8, 1, name="b"), (4, 5, 8), seed=case)
    gamma_layer = model.get_layer("b_gamma")
    values = [np.abs(v.numpy()) + 0.1 for v in gamma_layer.trainable_weights]
    for v, value in zip(gamma_layer.trainable_weights, values, strict=True):
        v.assign(value)
    y = model(x, training=False).numpy()
    conv = np_conv(np_sign(np_bn(x, model.get_layer("b_bn"))), np_sign(model.get_layer("b").kernel.numpy()), 1, 1.0)
    gamma = _gamma_np(case, values, 4, 5)
    prelu = model.get_layer("b_prelu")
    np.testing.assert_allclose(y, np_prelu(conv * gamma, prelu) + x, rtol=1e-4, atol=1e-4)
    if case > 1:
        assert gamma_layer.input is prelu.output  # the order in the code: Gamma after the PReLU
        negative = -gamma
        assert not np.allclose(np_prelu(conv * negative, prelu), negative * np_prelu(conv, prelu))
    for v in gamma_layer.trainable_weights:
        np.testing.assert_array_equal(v.constraint(tf.constant(-np.ones(v.shape, np.float32))).numpy(), 0.0)


# ------------------------------------------------------------------------------------------------ SD-BNN
def test_asd_gradient_matches_the_chain_rule():
    """d sum(dy * (a + sigmoid(W2 relu(W1 mean_hw(a))))) / d(a, W1, W2), written out in numpy."""
    from edgebnn.archs import sdbnn

    rng = np.random.default_rng(3)
    a = rng.normal(0.3, 1.0, size=(2, 3, 4, 32)).astype(np.float32)
    dy = rng.normal(size=a.shape).astype(np.float32)
    asd = sdbnn.ActivationSelfDistribution(ratio=8)
    asd.build(a.shape)
    w1, w2 = rng.normal(0, 0.5, (32, 4)).astype(np.float32), rng.normal(0, 0.5, (4, 32)).astype(np.float32)
    asd.squeeze.kernel.assign(w1)
    asd.excite.kernel.assign(w2)
    at = tf.constant(a)
    with tf.GradientTape() as tape:
        tape.watch(at)
        loss = tf.reduce_sum(asd(at) * dy)
    g_a, g_w1, g_w2 = tape.gradient(loss, [at, asd.squeeze.kernel, asd.excite.kernel])
    m = a.mean(axis=(1, 2))                      # (n, c)
    z1 = m @ w1
    r = np.maximum(z1, 0)
    s = 1 / (1 + np.exp(-(r @ w2)))
    d_s = dy.sum(axis=(1, 2))                    # the shift is broadcast over h, w
    d_z2 = d_s * s * (1 - s)
    d_r = d_z2 @ w2.T
    d_z1 = d_r * (z1 > 0)
    d_m = d_z1 @ w1.T
    assert (z1 > 0).any() and (z1 <= 0).any()    # both sides of the ReLU are exercised
    np.testing.assert_allclose(g_a.numpy(), dy + d_m[:, None, None, :] / (3 * 4), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_w2.numpy(), r.T @ d_z2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g_w1.numpy(), m.T @ d_z1, rtol=1e-4, atol=1e-5)


def test_wsd_weight_gradient_treats_the_mean_as_a_constant():
    """d sum(dy * sign(w + sigmoid(alpha) 0.01 mean(w))) / dw = dy * 1[|w'| <= 1] (clipped STE), with no term
    through mean(w), which is detached: the non-detached derivative would add s 0.01 sum(dy ste) / n per channel."""
    from edgebnn.archs import sdbnn

    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.7, (1, 2, 1, 3)).astype(np.float32)
    w[0, 0, 0, 0] = 1.3  # outside the STE window: gradient 0 there
    alpha = tf.Variable(np.array([0.5, -1.0, 2.0], np.float32))
    q = sdbnn.WeightSelfDistribution("ste")
    q.bind(alpha)
    dy = rng.normal(0, 50.0, w.shape).astype(np.float32)
    wt = tf.constant(w)
    with tf.GradientTape() as tape:
        tape.watch(wt)
        loss = tf.reduce_sum(q(wt) * dy)
    g = tape.gradient(loss, wt).numpy()
    s = 1 / (1 + np.exp(-alpha.numpy()))
    shifted = w + s * 0.01 * w.mean(axis=(0, 1, 2))
    ste = (np.abs(shifted) <= 1).astype(np.float32)
    np.testing.assert_allclose(g, dy * ste, rtol=1e-6)
    through_mean = s * 0.01 * (dy * ste).sum(axis=(0, 1, 2)) / 2
    assert np.abs(through_mean).max() > 1e-3  # large enough that a non-detached mean would fail the line above


# ------------------------------------------------------------------------------------------- the losses
def test_label_smoothing_cross_entropy_against_its_formula():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 3, 4, 1])
    eps, k = 0.1, 5
    target = np.full((4, k), eps / k)
    target[np.arange(4), labels] += 1 - eps
    log_p = logits - logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    expected = -(target * log_p).sum(1).mean()
    lt = tf.constant(logits)
    with tf.GradientTape() as tape:
        tape.watch(lt)
        loss = train.classification_loss(tf.constant(labels), lt, k, eps)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(tape.gradient(loss, lt).numpy(), (np.exp(log_p) - target) / 4, atol=1e-6)
