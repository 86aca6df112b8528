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
