"""Helpers several test modules share."""

import numpy as np


def randomise_parameters(model, seed=0):
    """BN statistics and affine parameters moved off their init, so outputs are not degenerate; every other
    non-kernel parameter too (thresholds, RPReLU, learned scales, WSD's alpha), so that no parameter is left at a
    1 or 0 the converter could fold away."""
    import tensorflow as tf

    from edgebnn.archs import stats

    rng = np.random.RandomState(seed)
    for layer in stats.iter_layers(model):
        if isinstance(layer, tf.keras.layers.BatchNormalization) and len(layer.get_weights()) == 4:
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])
            continue
        kernel_layer = isinstance(layer, tf.keras.layers.Conv2D | tf.keras.layers.Dense)
        for w in layer.weights:
            if not kernel_layer or "alpha" in w.name:
                w.assign(w.numpy() * rng.uniform(0.8, 1.2, w.shape) + rng.normal(0, 0.05, w.shape))
    return model
