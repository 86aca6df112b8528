"""ImageNet-style preprocessing (edgebnn.preprocess) checked numerically on synthetic non-square images: the
evaluation geometry (short side to S * 256 / 224, aspect kept, centre crop), RandomResizedCrop's boxes, the
fallback box, PCA lighting's covariance, and the data pipeline using them."""

import numpy as np
import pytest
import tensorflow as tf

from edgebnn import preprocess


def coordinate_image(h, w):
    """Channel 0 = row index, channel 1 = column index, channel 2 = 100: a resize keeps a linear ramp linear, so
    each output pixel tells which source coordinate it was sampled at."""
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    return np.stack([rows, cols, np.full((h, w), 100.0, np.float32)], axis=-1)


@pytest.mark.parametrize("h, w, size, short, long_, top, left", [
    (300, 500, 224, 256, 426, 16, 101),  # wide: 256 x floor(256 * 500 / 300), crop offsets round((256-224)/2) ...
    (500, 300, 45, 51, 85, 20, 3),  # tall and odd: round(45 * 256 / 224) = 51, floor(51 * 500 / 300) = 85
])
def test_eval_resizes_the_short_side_keeps_the_aspect_and_crops_the_centre(h, w, size, short, long_, top, left):
    assert preprocess.eval_short_side(size) == short
    out = preprocess.imagenet_eval(tf.constant(coordinate_image(h, w)), size).numpy()
    assert out.shape == (size, size, 3)
    rh, rw = (short, long_) if h < w else (long_, short)
    i, j = np.arange(size), np.arange(size)
    # half-pixel centres: output pixel k of a resize by f samples source coordinate (k + 0.5) * f - 0.5
    expected_rows = (i + top + 0.5) * h / rh - 0.5
    expected_cols = (j + left + 0.5) * w / rw - 0.5
    np.testing.assert_allclose(out[:, 0, 0], expected_rows, atol=0.1)  # antialiasing: within 0.1 px
    np.testing.assert_allclose(out[0, :, 1], expected_cols, atol=0.1)
    np.testing.assert_allclose(out[..., 2], 100.0, atol=1e-3)
    # The old square resize scaled rows and columns by different factors; here both scales are equal to 1e-2.
    row_step, col_step = np.diff(out[:, 0, 0]).mean(), np.diff(out[0, :, 1]).mean()
    assert row_step == pytest.approx(col_step, rel=1e-2)


def test_random_resized_crop_boxes_have_the_papers_area_and_aspect_and_fit():
    H, W = 300, 500
    boxes = np.array([[int(v) for v in preprocess.resized_crop_box(H, W, tf.constant([s, 7], tf.int32))]
                      for s in range(400)])
    top, left, h, w = boxes.T
    assert np.all(top >= 0) and np.all(left >= 0) and np.all(top + h <= H) and np.all(left + w <= W)
    area = h * w / (H * W)
    # a in [0.08, 1] before w and h are rounded to whole pixels (at most half a pixel each)
    assert area.min() >= 0.08 * 0.97 and area.max() <= 1.0
    aspect = w / h
    assert aspect.min() >= 0.75 * 0.98 and aspect.max() <= (4 / 3) * 1.02
    # log-uniform aspect: symmetric around 1, spread over the range
    assert abs(np.log(aspect).mean()) < 0.03 and aspect.min() < 0.8 and aspect.max() > 1.25
    assert len(set(map(tuple, boxes))) > 390  # distinct boxes per seed; the same seed gives the same box
    again = [int(v) for v in preprocess.resized_crop_box(H, W, tf.constant([3, 7], tf.int32))]
    assert again == boxes[3].tolist()


@pytest.mark.parametrize("h, w, box", [
    (10, 1000, (0, 494, 10, 13)),  # aspect 100 > 4/3: no box fits; centre crop h = 10, w = round(10 * 4/3)
    (1000, 10, (494, 0, 13, 10)),  # aspect 0.01 < 3/4: w = 10, h = round(10 / (3/4)) = 13
])
def test_random_resized_crop_falls_back_to_the_clamped_centre_crop(h, w, box):
    for s in range(5):
        assert tuple(int(v) for v in preprocess.resized_crop_box(h, w, tf.constant([s, 1], tf.int32))) == box


def test_random_resized_crop_samples_inside_its_box():
    image = tf.constant(coordinate_image(300, 500))
    seed = tf.constant([5, 9], tf.int32)
    top, left, h, w = (int(v) for v in preprocess.resized_crop_box(300, 500, seed))
    out = preprocess.random_resized_crop(image, 64, seed).numpy()
    assert out.shape == (64, 64, 3)
    assert top - 0.5 <= out[..., 0].min() and out[..., 0].max() <= top + h - 0.5
    assert left - 0.5 <= out[..., 1].min() and out[..., 1].max() <= left + w - 0.5


def test_lighting_is_one_rgb_shift_with_the_imagenet_pca_covariance():
    grey = tf.fill((4, 6, 3), 128.0)
    out = preprocess.lighting(grey, tf.constant([1, 2], tf.int32)).numpy()
    shift = out - 128.0
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0, 0], shift.shape), atol=1e-4)  # same at every pixel
    assert np.abs(shift[0, 0]).max() > 0
    shifts = np.array([preprocess.lighting_shift(tf.constant([s, 3], tf.int32)).numpy() for s in range(3000)])
    shifts /= 255.0  # back to the 0..1 scale of the eigenvalues
    vec, val = np.array(preprocess.PCA_EIGVEC), np.array(preprocess.PCA_EIGVAL)
    expected_cov = vec @ np.diag((0.1 * val) ** 2) @ vec.T  # Cov(V (alpha * lambda)), alpha ~ N(0, 0.1^2)
    cov = np.cov(shifts.T)
    np.testing.assert_allclose(cov, expected_cov, atol=0.1 * expected_cov.max())
    evals, evecs = np.linalg.eigh(cov)
    assert abs(evecs[:, -1] @ vec[:, 0]) > 0.999  # the dominant direction is ImageNet's first component
    assert np.sqrt(evals[-1]) == pytest.approx(0.1 * 0.2175, rel=0.05)
    bright = preprocess.lighting(tf.fill((2, 2, 3), 255.0), tf.constant([0, 0], tf.int32), alphastd=10.0).numpy()
    assert bright.min() >= 0 and bright.max() <= 255  # clipped to the pixel range


def test_imagenet_pipeline_uses_the_aspect_keeping_eval_and_trains_at_the_size(tmp_path):
    from PIL import Image

    from edgebnn import data

    rng = np.random.default_rng(0)
    images = {}
    for c in ("a", "b"):
        for split in ("train", "val"):
            (tmp_path / split / c).mkdir(parents=True)
            for k in range(2):
                img = rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)  # non-square, H 40 x W 70
                Image.fromarray(img).save(tmp_path / split / c / f"{k}.png")
                images[(split, c, k)] = img
    ds = data.load(f"folder:{tmp_path}", input_size=33, batch_size=4, augment="imagenet", seed=1)
    x_val, y_val = next(iter(ds.val))
    mean, std = np.array(data.IMAGENET_MEAN) * 255, np.array(data.IMAGENET_STD) * 255
    expected = [(preprocess.imagenet_eval(tf.constant(images[("val", "ab"[y], k)], tf.float32), 33).numpy()
                 - mean) / std for y, k in ((0, 0), (0, 1), (1, 0), (1, 1))]
    np.testing.assert_allclose(x_val.numpy(), np.stack(expected), atol=1e-4)
    x_train, _ = next(iter(ds.train))
    assert x_train.shape == (4, 33, 33, 3) and np.all(np.isfinite(x_train.numpy()))
