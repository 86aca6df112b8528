"""Helpers several test modules share."""

import functools

from edgebnn.archs.randomise import randomise_parameters

__all__ = ["converted_variant", "randomise_parameters"]


@functools.cache
def converted_variant(name: str) -> tuple:
    """``(model, flatbuffer)`` of registered binary variant ``name`` at width 1/8, 32x32x3, 10 classes, seeded and
    with every non-kernel parameter randomised, converted by LCE for target "arm": once per test session, so the
    sweeps that prove it on the host and on the aarch64 kernels share one conversion."""
    import tensorflow as tf

    from edgebnn import archs
    from edgebnn import conversion as conv

    tf.keras.utils.set_random_seed(7)  # the same random model whatever ran before
    model = randomise_parameters(archs.build(name, input_shape=(32, 32, 3), num_classes=10, width=0.125), seed=3)
    return model, conv.lce_flatbuffer(model, "arm")[0]
