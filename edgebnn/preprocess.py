"""ImageNet-style preprocessing as the papers' PyTorch code does it (torchvision's transforms), in TensorFlow.

Images are float32 H x W x 3 with values 0..255, any H and W (aspect ratio kept until the final square).

- Evaluation (``imagenet_eval``): resize so the short side is round(S * 256 / 224) (256 at S = 224) keeping the
  aspect ratio (long side = floor(short * long / short_orig), as torchvision's ``Resize(int)``), then the centre
  S x S crop (offsets round((h - S) / 2), as ``CenterCrop``).
- Training (``imagenet_train``): ``RandomResizedCrop(S, scale=(0.08, 1), ratio=(3/4, 4/3))``: up to 10 tries of
  a box of area a * H * W, a ~ U(0.08, 1), aspect r = exp(U(log 3/4, log 4/3)), w = round(sqrt(a H W r)),
  h = round(sqrt(a H W / r)), placed uniformly where it fits; if none fits, the centre crop of the whole image
  with its aspect clamped to [3/4, 4/3]; resized to S x S. Then ``Lighting(0.1)``, AlexNet's PCA colour noise:
  x + V (alpha * lambda), alpha ~ N(0, 0.1^2) per image and component, lambda = (0.2175, 0.0188, 0.0045) and V
  the eigenvectors (columns) of ImageNet's RGB covariance on a 0..1 scale (times 255 here), clipped to 0..255.
  Then a horizontal flip with probability 1/2. Order as in Bi-Real's and ReActNet's train.py: crop, lighting,
  flip.

Random numbers are stateless, drawn from an int32[2] ``seed``: the same seed gives the same image.
"""

from __future__ import annotations

import math

EVAL_RESIZE = 256 / 224  # short side / crop side
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10
LIGHTING_STD = 0.1
# ImageNet's RGB covariance (pixels scaled to 0..1): eigenvalues and eigenvectors (one per column).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))


def eval_short_side(size: int) -> int:
    """The short side evaluation resizes to: round(size * 256 / 224)."""
    return int(round(size * EVAL_RESIZE))


def resize_short_side(image, short: int):
    """Resize so that min(h, w) = ``short``, the long side floor(short * long / min(h, w)) (aspect kept)."""
    import tensorflow as tf  # lazy: loads TensorFlow

    h, w = tf.shape(image)[0], tf.shape(image)[1]
    short_orig = tf.minimum(h, w)
    new_h = tf.where(h == short_orig, short, (short * h) // short_orig)
    new_w = tf.where(h == short_orig, (short * w) // short_orig, short)
    return tf.image.resize(image, tf.stack([new_h, new_w]), antialias=True)


def centre_crop(image, size: int):
    """The centre ``size`` x ``size`` crop, offsets round((h - size) / 2) and round((w - size) / 2)."""
    import tensorflow as tf  # lazy: loads TensorFlow

    h, w = tf.shape(image)[0], tf.shape(image)[1]
    top = tf.cast(tf.round(tf.cast(h - size, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(w - size, tf.float32) / 2.0), tf.int32)
    return image[top:top + size, left:left + size, :]


def imagenet_eval(image, size: int):
    """Evaluation image: short side to round(size * 256 / 224), aspect kept, centre ``size`` x ``size`` crop."""
    return centre_crop(resize_short_side(image, eval_short_side(size)), size)


def resized_crop_box(height, width, seed, scale=CROP_SCALE, ratio=CROP_RATIO, attempts=CROP_ATTEMPTS):
    """RandomResizedCrop's box ``(top, left, h, w)`` (int32) in an image of ``height`` x ``width``."""
    import tensorflow as tf  # lazy: loads TensorFlow

    s_area, s_ratio, s_place = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    H, W = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    target = H * W * tf.random.stateless_uniform([attempts], s_area, scale[0], scale[1])
    aspect = tf.exp(tf.random.stateless_uniform([attempts], s_ratio, math.log(ratio[0]), math.log(ratio[1])))
    ws, hs = tf.round(tf.sqrt(target * aspect)), tf.round(tf.sqrt(target / aspect))
    fits = (ws > 0) & (ws <= W) & (hs > 0) & (hs <= H)
    first = tf.argmax(tf.cast(fits, tf.int32))  # the first box that fits
    # No fit: the whole image's centre, its aspect clamped to the range.
    in_ratio = W / H
    fw = tf.where(in_ratio > ratio[1], tf.round(H * ratio[1]), W)
    fh = tf.where(in_ratio < ratio[0], tf.round(W / ratio[0]), H)
    found = tf.reduce_any(fits)
    h, w = tf.where(found, hs[first], fh), tf.where(found, ws[first], fw)
    u = tf.random.stateless_uniform([2], s_place)
    top = tf.where(found, tf.floor(u[0] * (H - h + 1)), tf.round((H - h) / 2))
    left = tf.where(found, tf.floor(u[1] * (W - w + 1)), tf.round((W - w) / 2))
    return tuple(tf.cast(v, tf.int32) for v in (top, left, h, w))


def random_resized_crop(image, size: int, seed):
    import tensorflow as tf  # lazy: loads TensorFlow

    top, left, h, w = resized_crop_box(tf.shape(image)[0], tf.shape(image)[1], seed)
    crop = image[top:top + h, left:left + w, :]
    return tf.image.resize(crop, (size, size), antialias=True)


def lighting_shift(seed, alphastd: float = LIGHTING_STD):
    """The RGB shift of Lighting(alphastd) on the 0..255 scale: 255 V (alpha * lambda), alpha ~ N(0, std^2)."""
    import tensorflow as tf  # lazy: loads TensorFlow

    alpha = tf.random.stateless_normal([3], seed) * alphastd
    return 255.0 * tf.linalg.matvec(tf.constant(PCA_EIGVEC), alpha * tf.constant(PCA_EIGVAL))


def lighting(image, seed, alphastd: float = LIGHTING_STD):
    """AlexNet's PCA lighting noise, one RGB shift for the whole image, clipped to 0..255."""
    import tensorflow as tf  # lazy: loads TensorFlow

    return tf.clip_by_value(image + lighting_shift(seed, alphastd), 0.0, 255.0)


def imagenet_train(image, size: int, seed, *, flip: bool = True):
    """Training image: RandomResizedCrop(size, 0.08-1, 3/4-4/3), Lighting(0.1), random horizontal flip."""
    import tensorflow as tf  # lazy: loads TensorFlow

    s_crop, s_light, s_flip = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    image = lighting(random_resized_crop(image, size, s_crop), s_light)
    return tf.image.stateless_random_flip_left_right(image, s_flip) if flip else image
