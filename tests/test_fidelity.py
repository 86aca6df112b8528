"""Formulas against independent computations, forward and gradient (issue 12): each test recomputes the paper's
formula in numpy (or by finite differences) rather than trusting the code's own pieces."""

import numpy as np
import pytest
import tensorflow as tf

from edgebnn import archs, recipe, train
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
    """edgebnn.train on digits, 3 epochs of sdbnn-vgg-small: the loop sets p = epoch / epochs before each epoch
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
