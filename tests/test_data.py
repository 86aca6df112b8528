"""The data layer on real data: scikit-learn's digits, and CIFAR-10 pickles and image folders written here in
their official formats."""

import pickle

import numpy as np
import pytest
from PIL import Image

from edgebnn import data
from edgebnn.errors import EdgebnnError


def _arrays(ds, limit=None):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
        if limit and len(xs) >= limit:
            break
    return np.concatenate(xs), np.concatenate(ys)


# ------------------------------------------------------------------------------------------------ digits
def test_digits_split_is_stratified_and_complete():
    src = data.find_source("digits")
    assert len(src.train) + len(src.val) == 1797
    assert len(src.val) == 359
    assert src.class_names == [str(i) for i in range(10)]
    train_counts = np.bincount(src.train.labels, minlength=10)
    val_counts = np.bincount(src.val.labels, minlength=10)
    # every class keeps its 20% share in validation, to within one image
    assert np.all(np.abs(val_counts - 0.2 * (train_counts + val_counts)) <= 1)
    assert src.train.images.shape == (1438, 8, 8, 3) and src.train.images.dtype == np.uint8
    assert src.train.images.max() == 255 and src.train.images.min() == 0


def test_digits_split_is_deterministic_per_seed():
    a, b, c = data.find_source("digits", seed=0), data.find_source("digits", seed=0), data.find_source("digits", seed=1)
    np.testing.assert_array_equal(a.val.images, b.val.images)
    np.testing.assert_array_equal(a.val.labels, b.val.labels)
    assert not np.array_equal(a.val.images, c.val.images)


def test_digits_normalisation_constants_match_the_training_split():
    src = data.find_source("digits")
    pixels = src.train.images[..., 0].astype(np.float64) / 255.0
    assert pixels.mean() == pytest.approx(data.DIGITS_MEAN[0], abs=5e-4)
    assert pixels.std() == pytest.approx(data.DIGITS_STD[0], abs=5e-4)


def test_digits_pipeline_shapes_dtypes_and_values():
    ds = data.load("digits", input_size=32, batch_size=64)
    assert ds.input_shape == (32, 32, 3) and ds.num_classes == 10
    assert (ds.num_train, ds.num_val) == (1438, 359)
    x, y = _arrays(ds.val)
    assert x.shape == (359, 32, 32, 3) and x.dtype == np.float32
    assert y.dtype == np.int32 and set(np.unique(y)) == set(range(10))
    # normalised: the darkest pixel is (0 - mean) / std, channels equal (grey repeated to RGB)
    assert x.min() == pytest.approx(-data.DIGITS_MEAN[0] / data.DIGITS_STD[0], abs=1e-3)
    assert x.max() <= (1 - data.DIGITS_MEAN[0]) / data.DIGITS_STD[0] + 1e-3
    np.testing.assert_array_equal(x[..., 0], x[..., 2])
    # validation order is the split's, unshuffled
    np.testing.assert_array_equal(y, data.find_source("digits").val.labels)


def test_training_pipeline_is_shuffled_augmented_and_seeded():
    first = [_arrays(data.load("digits", input_size=16, batch_size=32, augment="cifar", flip=False, seed=s).train,
                     limit=2) for s in (3, 3, 4)]
    np.testing.assert_array_equal(first[0][0], first[1][0])
    np.testing.assert_array_equal(first[0][1], first[1][1])
    assert not np.array_equal(first[0][1], first[2][1])
    x, y = first[0]
    assert x.shape == (64, 16, 16, 3)
    # the training order is shuffled, unlike the split's sorted order
    assert not np.array_equal(y, data.find_source("digits", seed=3).train.labels[:64])


def test_epochs_see_new_augmentations_and_new_order():
    ds = data.load("digits", input_size=16, batch_size=32, augment="cifar", seed=0)
    (x1, y1), (x2, y2) = _arrays(ds.train, limit=1), _arrays(ds.train, limit=1)
    assert not np.array_equal(y1, y2) or not np.allclose(x1, x2)


def test_cifar_augmentation_pads_and_crops():
    # A random crop of the padded image shifts content: zero padding shows up as the darkest value.
    ds = data.load("digits", input_size=16, batch_size=256, augment="cifar", flip=True, seed=0)
    x, _ = _arrays(ds.train, limit=1)
    zero = -data.DIGITS_MEAN[0] / data.DIGITS_STD[0]
    assert x.shape == (256, 16, 16, 3)
    assert x.min() == pytest.approx(zero, abs=1e-3)


def test_imagenet_augmentation_gives_the_input_size():
    ds = data.load("digits", input_size=24, batch_size=16, augment="imagenet", seed=0)
    x, _ = _arrays(ds.train, limit=1)
    assert x.shape == (16, 24, 24, 3) and np.isfinite(x).all()


def test_sample_returns_the_first_validation_images():
    x, y = data.sample("digits", 100, input_size=32)
    assert x.shape == (100, 32, 32, 3) and y.shape == (100,)
    np.testing.assert_array_equal(y, data.find_source("digits").val.labels[:100])


# ----------------------------------------------------------------------------------------------- cifar10
def _write_cifar(root, per_batch=6, test=5, truncate=None):
    root.mkdir(parents=True)
    rng = np.random.RandomState(0)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch}, f)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, fname in enumerate(files):
        n = test if fname == "test_batch" else per_batch
        images = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
        labels = [(i + k) % 10 for k in range(n)]
        if i == 0:
            images[0] = 0
            images[0, 0] = 255  # red channel of pixel (0, 0) of the first image
        blob = pickle.dumps({b"data": images, b"labels": labels, b"batch_label": fname.encode()})
        (root / fname).write_bytes(blob[:truncate] if truncate and fname == "data_batch_3" else blob)
    return root


def test_cifar10_reads_the_official_pickle_layout(tmp_path):
    root = _write_cifar(tmp_path / "cifar-10-batches-py")
    src = data.find_source(f"cifar10:{tmp_path}")
    assert src.class_names[:3] == ["airplane", "automobile", "bird"]
    assert src.train.images.shape == (30, 32, 32, 3) and len(src.val) == 5
    # data rows are channel-major (1024 red, 1024 green, 1024 blue): pixel (0, 0) of image 0 is pure red
    np.testing.assert_array_equal(src.train.images[0, 0, 0], [255, 0, 0])
    assert src.train.images[0].sum() == 255
    ds = data.load(f"cifar10:{root}", batch_size=8)
    x, y = _arrays(ds.val)
    assert x.shape == (5, 32, 32, 3) and ds.input_shape == (32, 32, 3)
    np.testing.assert_array_equal(y, [5, 6, 7, 8, 9])
    assert ds.mean == data.CIFAR10_MEAN


def test_cifar10_found_in_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("EDGEBNN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    _write_cifar(tmp_path / ".keras" / "datasets" / "cifar-10-batches-py")
    assert len(data.find_source("cifar10").train) == 30


def test_cifar10_missing_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("EDGEBNN_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EdgebnnError, match="cifar-10-batches-py"):
        data.find_source("cifar10")
    with pytest.raises(EdgebnnError, match="does not exist"):
        data.find_source(f"cifar10:{tmp_path / 'nowhere'}")


def test_cifar10_truncated_pickle_is_named(tmp_path):
    _write_cifar(tmp_path / "c", truncate=100)
    with pytest.raises(EdgebnnError, match="data_batch_3.*truncated"):
        data.find_source(f"cifar10:{tmp_path / 'c'}")


# ------------------------------------------------------------------------------------------------ folder
def _write_folder(root, classes=("cat", "dog", "fox"), per_class=10, size=12):
    rng = np.random.RandomState(1)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((size, size, 3), 40 * c, np.uint8) + rng.randint(0, 20, (size, size, 3)).astype(np.uint8)
            ext = "png" if i % 2 else "jpg"
            Image.fromarray(pixels).save(root / name / f"{i:03d}.{ext}")
    return root


def test_folder_with_seeded_split(tmp_path):
    _write_folder(tmp_path / "imgs")
    src = data.find_source(f"folder:{tmp_path / 'imgs'}", seed=0)
    assert src.class_names == ["cat", "dog", "fox"]
    assert (len(src.train), len(src.val)) == (24, 6)
    assert np.bincount(src.val.labels).tolist() == [2, 2, 2]
    assert src.native_size == 12
    again = data.find_source(f"folder:{tmp_path / 'imgs'}", seed=0)
    assert again.val.paths == src.val.paths
    ds = data.load(f"folder:{tmp_path / 'imgs'}", input_size=12, batch_size=4)
    x, y = _arrays(ds.val)
    assert x.shape == (6, 12, 12, 3) and y.tolist() == src.val.labels.tolist()
    # class 2 images are brighter than class 0 images (80+ against 0+ in every channel)
    assert x[y == 2].mean() > x[y == 0].mean() + 0.5


def test_folder_with_train_and_val_subfolders(tmp_path):
    _write_folder(tmp_path / "d" / "train", per_class=4)
    _write_folder(tmp_path / "d" / "val", per_class=2)
    ds = data.load(f"folder:{tmp_path / 'd'}", input_size=8, batch_size=5, augment="imagenet")
    assert (ds.num_train, ds.num_val) == (12, 6)
    x, y = _arrays(ds.train)
    assert x.shape == (12, 8, 8, 3) and sorted(y.tolist()) == [0] * 4 + [1] * 4 + [2] * 4


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "is empty"),
    (lambda p: (p / "a").mkdir(parents=True), "has no images"),
    (lambda p: (p.mkdir(), (p / "x.txt").write_text("x")), "no class sub-folders"),
])
def test_folder_errors(tmp_path, setup, message):
    path = tmp_path / "f"
    setup(path)
    with pytest.raises(EdgebnnError, match=message):
        data.find_source(f"folder:{path}")


def test_folder_unreadable_image_is_named(tmp_path):
    root = _write_folder(tmp_path / "imgs", per_class=3)
    (root / "dog" / "broken.jpg").write_bytes(b"not an image at all")
    with pytest.raises(EdgebnnError, match=r"broken\.jpg"):
        data.load(f"folder:{root}")


# ------------------------------------------------------------------------------------------ names, tfds
@pytest.mark.parametrize("name, message", [
    ("mnist", "unknown data set 'mnist'"),
    ("folder:", "needs a path"),
    ("tfds:", "needs a name"),
])
def test_bad_names(name, message):
    with pytest.raises(EdgebnnError, match=message):
        data.load(name)


def test_bad_augmentation_and_batch():
    with pytest.raises(EdgebnnError, match="unknown augmentation"):
        data.load("digits", augment="mixup")
    with pytest.raises(EdgebnnError, match="batch size"):
        data.load("digits", batch_size=0)


def test_tfds_without_the_extra_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    with pytest.raises(EdgebnnError, match=r"pip install 'edgebnn\[tfds\]'"):
        data.load("tfds:imagenet2012")


def test_describe_counts(tmp_path):
    summary = data.describe("digits")
    assert summary["splits"]["train"]["images"] == 1438
    assert sum(summary["splits"]["val"]["per_class"].values()) == 359
    assert summary["image_size"] == 8 and summary["input_size"] == 32
    text = data.format_summary(summary)
    assert "1,438 images" in text and "8x8" in text


def test_normalisation_override_replaces_the_data_sets_own():
    """An imported model expects its own trainer's normalisation (``data.load(normalisation=...)``, which eval uses
    for an imported run): the same pixels, normalised with the given mean and std."""
    from edgebnn import data

    own = data.load("digits", input_size=8, batch_size=16)
    other = data.load("digits", input_size=8, batch_size=16, normalisation=((0.5, 0.4, 0.3), (0.25, 0.5, 1.0)))
    assert other.mean == (0.5, 0.4, 0.3) and other.std == (0.25, 0.5, 1.0)
    x_own = next(iter(own.val))[0].numpy()
    x_other = next(iter(other.val))[0].numpy()
    pixels = x_own * np.asarray(own.std) + np.asarray(own.mean)
    np.testing.assert_allclose(x_other, (pixels - np.asarray(other.mean)) / np.asarray(other.std), atol=1e-5)
