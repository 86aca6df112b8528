"""Parameters moved off their initial values, for tests and benchmarks of untrained models.

At init many parameters are exactly 0 or 1 (BatchNorm statistics, thresholds, RPReLU shifts, learned scales),
which the converter folds away: an untrained model would hide the float work a trained one carries, and its
outputs would be degenerate. ``randomise_parameters`` moves BatchNorm statistics and affine parameters, and every
other non-kernel parameter (and WSD's alpha), to seeded random values near their init.
"""

from __future__ import annotations

import numpy as np


def randomise_parameters(model, seed: int = 0):
    """The model, its BatchNorms set to gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1), mean ~ N(0, 0.1), var ~ U(0.5, 1.5)
    and every other non-kernel weight w to w * U(0.8, 1.2) + N(0, 0.05), in place."""
    import tensorflow as tf  # lazy: loads TensorFlow

    from edgebnn.archs import stats  # lazy: the architectures load TensorFlow and Larq

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
