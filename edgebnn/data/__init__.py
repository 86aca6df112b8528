"""Data sets as batched ``tf.data`` pipelines, behind one function: :func:`load`.

Names a user can pass:

- ``digits``: the embedded default. scikit-learn's handwritten digits (1,797 real 8x8 grey images, 10
  classes), shipped with scikit-learn, so no network is needed. Resized to the model's input size and
  repeated to 3 channels; a fixed, seeded, stratified 80/20 train/validation split.
- ``cifar10`` or ``cifar10:PATH``: CIFAR-10 in the official python pickle layout (``cifar-10-batches-py``),
  looked for in PATH, ``$EDGEBNN_DATA``, ``./data`` and Keras' download cache (``~/.keras/datasets``).
- ``folder:PATH``: one sub-folder per class; ``train/`` and ``val/`` (or ``validation/``) sub-folders when
  present, else a seeded stratified split.
- ``fashion-mnist`` or ``fashion-mnist:PATH``: Fashion-MNIST (Zalando, 2017: 60,000 training and 10,000 test
  images, 28x28 grey, 10 named classes) as the four gzipped IDX files of Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/``) or of the folder PATH; the official test set is the validation set.
- ``idx:PATH``: any MNIST-format folder (MNIST, KMNIST): the same four IDX files (gzipped or not), classes
  numbered ``0..K-1`` from the labels; the test files are the validation set. Read by :mod:`edgebnn.data.idx`
  (numpy only, every count checked against the file before memory is asked for).
- ``tfds:NAME``: a TensorFlow Datasets builder (for example ``tfds:imagenet2012`` with a manual download
  dir); needs the optional extra ``pip install 'edgebnn[tfds]'``.

Training pipelines are shuffled and augmented as the recipe says (``augment="imagenet"``: random resized
crop, PCA lighting noise and flip, with evaluation images resized on their short side and centre-cropped,
aspect kept, as in the papers' code: ``edgebnn.preprocess``; ``"cifar"``: pad-and-crop and flip;
``"none"``), with stateless random ops seeded from ``seed`` so that two runs with the same seed see the same
batches. Every pipeline is normalised per channel, ``(x / 255 - mean) / std``, with the data set's own
statistics, then batched and prefetched.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgebnn import preprocess, safe_pickle
from edgebnn.data import idx
from edgebnn.errors import EdgebnnError
from edgebnn.progress import progress_bar

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
# Mean and std of the digits training split, scaled to [0, 1] (computed by tests/test_data.py's check).
DIGITS_MEAN = (0.3058,) * 3
DIGITS_STD = (0.3764,) * 3

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
AUGMENTATIONS = ("none", "cifar", "imagenet")
KNOWN_NAMES = "digits, cifar10[:PATH], fashion-mnist[:PATH], idx:PATH, folder:PATH, tfds:NAME"
CIFAR10_DIRNAME = "cifar-10-batches-py"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
# The official class names, in label order (zalandoresearch/fashion-mnist's README).
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]


@dataclass
class Split:
    """One split of a data set before batching: either decoded images or image file paths."""

    labels: np.ndarray  # int32, shape (N,)
    images: np.ndarray | None = None  # uint8, shape (N, H, W, C), or None when read from files
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Source:
    """A data set as found on disk or in a package: its splits, classes and statistics."""

    name: str
    class_names: list[str]
    train: Split
    val: Split
    native_size: int | None  # image side when all images share it, else None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default_size: int
    notes: list[str] = field(default_factory=list)


@dataclass
class Dataset:
    """What :func:`load` returns: batched pipelines plus what a model and a deployment need to know."""

    name: str
    train: object  # tf.data.Dataset of (images float32 (B, S, S, 3), labels int32 (B,))
    val: object
    class_names: list[str]
    input_shape: tuple[int, int, int]
    num_train: int
    num_val: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    augment: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# ------------------------------------------------------------------------------------------ sources
def _stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps each class's share in both parts."""
    rng = np.random.RandomState(seed)
    train_idx, val_idx = [], []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def _digits_source(seed: int, val_fraction: float) -> Source:
    from sklearn.datasets import load_digits  # lazy: scikit-learn takes a second

    bunch = load_digits()
    # Pixel values are counts 0..16 of an 8x8 grid over a 32x32 bitmap; scale to 0..255.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None].repeat(3, axis=-1)
    labels = bunch.target.astype(np.int32)
    train_idx, val_idx = _stratified_split(labels, val_fraction, seed)
    return Source(
        name="digits",
        class_names=[str(c) for c in bunch.target_names],
        train=Split(labels[train_idx], images=images[train_idx]),
        val=Split(labels[val_idx], images=images[val_idx]),
        native_size=8,
        mean=DIGITS_MEAN,
        std=DIGITS_STD,
        default_size=32,
        notes=["scikit-learn's handwritten digits (UCI optdigits test set), 8x8 grey, embedded"],
    )


def cifar10_search_dirs(path: str | None = None) -> list[Path]:
    """Where ``cifar10`` is looked for, in order."""
    dirs = []
    if path:
        dirs.append(Path(path).expanduser())
    if os.environ.get("EDGEBNN_DATA"):
        dirs.append(Path(os.environ["EDGEBNN_DATA"]).expanduser())
    dirs += [Path("data"), Path.home() / ".keras" / "datasets"]
    return dirs


def _find_cifar10(path: str | None) -> Path:
    for base in cifar10_search_dirs(path):
        for candidate in (base, base / CIFAR10_DIRNAME):
            if (candidate / "batches.meta").is_file() or (candidate / "data_batch_1").is_file():
                return candidate
    if path and not Path(path).expanduser().exists():
        raise EdgebnnError(f"cifar10: directory {path} does not exist")
    where = ", ".join(str(d / CIFAR10_DIRNAME) for d in cifar10_search_dirs(path))
    raise EdgebnnError(
        f"cifar10: no CIFAR-10 python batches found; download 'CIFAR-10 python version', unpack it and "
        f"put {CIFAR10_DIRNAME}/ in one of: {where} (or pass cifar10:PATH)"
    )


def _read_cifar_pickle(path: Path) -> dict:
    """A CIFAR-10 batch through the restricted unpickler: data only, a file that names code is refused."""
    try:  # read whole (30 MB): a length field past the end then asks for no memory, only truncates
        return safe_pickle.loads(path.read_bytes(), source=f"cifar10: {path}", encoding="bytes")
    except FileNotFoundError:
        raise EdgebnnError(f"cifar10: {path} is missing; the folder must hold data_batch_1..5 and test_batch") \
            from None
    except OSError as err:
        raise EdgebnnError(f"cifar10: cannot read {path} ({err.strerror or type(err).__name__})") from None
    except safe_pickle.PickleCorrupt as err:  # truncated or not a pickle at all
        raise EdgebnnError(f"cifar10: cannot read {path} ({err.reason}); it looks truncated or "
                           f"corrupt, download the python batches again") from None


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_cifar_pickle(path)
    if not isinstance(batch, dict):
        raise EdgebnnError(f"cifar10: {path} does not hold 3x32x32 images with labels (it holds a "
                           f"{type(batch).__name__}, not a dict)")
    data = batch.get(b"data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:  # a nested list could ask numpy for any memory
        raise EdgebnnError(f"cifar10: {path} does not hold 3x32x32 images with labels (its data is not a uint8 "
                           "array)")
    try:
        labels = _cifar_labels(batch[b"labels"], path)
        images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except (KeyError, ValueError, TypeError):
        raise EdgebnnError(f"cifar10: {path} does not hold 3x32x32 images with labels") from None
    if len(images) != len(labels):
        raise EdgebnnError(f"cifar10: {path} holds {len(images)} images but {len(labels)} labels")
    return images, labels


def _cifar_labels(raw, path: Path) -> np.ndarray:
    """The batch's labels as int32, each an integer class 0..9 (a float or an out-of-range integer is refused,
    never cast: 0.5 would become class 0, and so would 2**32 in int32). A list must hold plain ints: numpy is
    never asked to convert nested lists, which a pickle can make share one list a million times."""
    if isinstance(raw, list):
        odd = next((x for x in raw if type(x) is not int), None)
        if odd is not None:
            shown = f": {safe_pickle.printable(odd)}" if isinstance(odd, (bool, float, complex)) else ""
            raise EdgebnnError(f"cifar10: {path} has labels that are not integer class numbers (a "
                               f"{type(odd).__name__}{shown}); the file is corrupt or not CIFAR-10: download the "
                               "python batches again")
        raw = np.asarray(raw) if raw else np.zeros(0, np.int64)
    labels = raw
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype.kind not in "iu":
        what = f"{labels.dtype} array of shape {labels.shape}" if isinstance(labels, np.ndarray) else \
            type(labels).__name__
        raise EdgebnnError(f"cifar10: {path} has labels that are not integer class numbers ({what}); the file is "
                           "corrupt or not CIFAR-10: download the python batches again")
    bad = labels[(labels < 0) | (labels >= 10)]
    if bad.size:
        raise EdgebnnError(f"cifar10: {path} has label {int(bad[0])}, outside the 10 classes 0..9; the file is corrupt "
                           "or not CIFAR-10: download the python batches again")
    return labels.astype(np.int32)


def _cifar10_source(path: str | None) -> Source:
    root = _find_cifar10(path)
    train_parts = [_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    val_images, val_labels = _cifar_batch(root / "test_batch")
    for name, count in [("test_batch", len(val_labels)),
                        ("data_batch_1..5", sum(len(p[1]) for p in train_parts))]:
        if count == 0:  # found now, not after a whole epoch trained with nothing to validate on
            raise EdgebnnError(f"cifar10: {root}'s {name} holds no images; download the python batches again")
    class_names = [f"class_{i}" for i in range(10)]
    if (root / "batches.meta").is_file():
        meta = _read_cifar_pickle(root / "batches.meta")
        names = meta.get(b"label_names") if isinstance(meta, dict) else None
        if not isinstance(names, list) or len(names) != 10 or not all(isinstance(n, (bytes, str)) for n in names):
            raise EdgebnnError(f"cifar10: {root / 'batches.meta'} does not hold the 10 label_names of CIFAR-10; "
                               "download the python batches again or remove the file")
        class_names = [n.decode(errors="replace") if isinstance(n, bytes) else n for n in names]
    return Source(
        name="cifar10",
        class_names=class_names,
        train=Split(np.concatenate([p[1] for p in train_parts]),
                    images=np.concatenate([p[0] for p in train_parts])),
        val=Split(val_labels, images=val_images),
        native_size=32,
        mean=CIFAR10_MEAN,
        std=CIFAR10_STD,
        default_size=32,
        notes=[f"read from {root}"],
    )


def _idx_source(kind: str, path: str | None) -> Source:
    """Fashion-MNIST (``fashion-mnist[:PATH]``) or any MNIST-format folder (``idx:PATH``): the four IDX files, the
    official test split as validation set; mean and std of the training images."""
    what = kind if path is None else f"{kind}:{path}"
    folder = Path(path).expanduser() if path else FASHION_MNIST_DIR
    if not folder.is_dir():
        if path is None:
            raise EdgebnnError(f"fashion-mnist: {folder} does not exist; install it with `apt-get install "
                               f"{FASHION_MNIST_PACKAGE}` (or pass fashion-mnist:PATH, a folder with its IDX files)")
        raise EdgebnnError(f"{what}: directory {folder} does not exist")
    files = idx.find_files(folder, what)
    known = len(FASHION_MNIST_CLASSES) if kind == "fashion-mnist" else None
    train_images, train_labels = idx.read_split(files["train_images"], files["train_labels"], what, known)
    val_images, val_labels = idx.read_split(files["test_images"], files["test_labels"], what, known)
    if train_images.shape[1:] != val_images.shape[1:]:
        raise EdgebnnError(f"{what}: training images are {train_images.shape[1]}x{train_images.shape[2]}, test "
                           f"images {val_images.shape[1]}x{val_images.shape[2]}; both splits must share a size")
    if known is None:
        k = int(max(train_labels.max(), val_labels.max())) + 1
        if k < 2:
            raise EdgebnnError(f"{what}: every label is 0; a classifier needs two or more classes")
        class_names = [str(c) for c in range(k)]
    else:
        class_names = list(FASHION_MNIST_CLASSES)
    scaled = train_images.reshape(len(train_images), -1)
    mean = float(scaled.mean(dtype=np.float64)) / 255.0
    chunks = np.array_split(scaled, max(1, len(scaled) // 4096))  # float64 a chunk at a time, not 47M at once
    std = float(np.sqrt(sum(np.square(c / 255.0 - mean).sum() for c in chunks) / scaled.size))
    rows, cols = train_images.shape[1:3]
    return Source(
        name=kind if path is None else what,
        class_names=class_names,
        train=Split(train_labels, images=train_images),
        val=Split(val_labels, images=val_images),
        native_size=rows if rows == cols else None,
        mean=(round(mean, 4),) * 3,
        std=(round(max(std, 1e-3), 4),) * 3,
        default_size=max(rows, cols),
        notes=[f"read from {folder} (IDX); validation = the official test split; grey, repeated to 3 channels"],
    )


def _list_class_folder(root: Path) -> tuple[list[str], list[str], list[int]]:
    """Class names, image paths and labels of a folder with one sub-folder per class."""
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise EdgebnnError(f"folder: {root} has no class sub-folders; put each class's images in "
                           f"{root}/<class name>/")
    names, paths, labels = [], [], []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise EdgebnnError(f"folder: class folder {class_dir} has no images "
                               f"({', '.join(IMAGE_EXTENSIONS)}); add some or remove the folder")
        names.append(class_dir.name)
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    if len(names) < 2:
        raise EdgebnnError(f"folder: {root} has one class folder ({names[0]}); a classifier needs two or more, "
                           f"each in {root}/<class name>/")
    return names, paths, labels


MAX_IMAGE_PIXELS = 89_478_485  # PIL's own default limit (about 0.25 GiB of 24-bit pixels): bigger is refused


def _check_images(paths: list[str], progress: bool) -> set[tuple[int, int]]:
    """Open each image's header; an unreadable one is an error naming the file. Returns the sizes seen."""



    sizes = set()
    limit = Image.MAX_IMAGE_PIXELS or MAX_IMAGE_PIXELS
    for p in progress_bar(paths, desc="scanning images", unit="img", enable=progress):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked below
                with Image.open(p) as im:
                    size, fmt = im.size, im.format
        except Image.DecompressionBombError:
            size, fmt = None, None
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise EdgebnnError(f"folder: cannot read image {p} ({type(err).__name__}); remove or replace it") from None
        if size is None or size[0] * size[1] > min(limit, MAX_IMAGE_PIXELS):
            what = f"{size[0]}x{size[1]} pixels" if size else "more pixels than PIL opens"
            raise EdgebnnError(f"folder: image {p} is {what}, over the limit of {MAX_IMAGE_PIXELS:,} (a "
                               "decompression bomb or a huge scan); remove or shrink it")
        sizes.add(size)
        if not _complete(p, fmt):
            raise EdgebnnError(f"folder: image {p} is truncated (its {fmt} end marker is missing); remove or "
                               "replace it")
    return sizes


def _complete(path: str, fmt: str | None) -> bool:
    """Whether a JPEG ends with its EOI marker and a PNG with its IEND chunk (a cheap look at the file's tail
    that catches a truncated download without decoding every image)."""
    marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(fmt or "")
    if marker is None:
        return True
    with open(path, "rb") as f:
        f.seek(0, 2)
        f.seek(max(f.tell() - 64, 0))
        return marker in f.read()


def _folder_source(path: str, seed: int, val_fraction: float, progress: bool) -> Source:
    root = Path(path).expanduser()
    if not root.exists():
        raise EdgebnnError(f"folder: {root} does not exist")
    if not root.is_dir():
        raise EdgebnnError(f"folder: {root} is not a directory")
    if not any(root.iterdir()):
        raise EdgebnnError(f"folder: {root} is empty; put each class's images in {root}/<class name>/")
    val_dir = next((root / n for n in ("val", "validation") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        names, train_paths, train_labels = _list_class_folder(root / "train")
        val_names, val_paths, val_labels = _list_class_folder(val_dir)
        if val_names != names:
            raise EdgebnnError(f"folder: {root / 'train'} and {val_dir} have different class folders")
        note = f"train/ and {val_dir.name}/ from {root}"
    else:
        names, paths, labels = _list_class_folder(root)
        labels_arr = np.asarray(labels, dtype=np.int32)
        train_idx, val_idx = _stratified_split(labels_arr, val_fraction, seed)
        train_paths, train_labels = [paths[i] for i in train_idx], labels_arr[train_idx]
        val_paths, val_labels = [paths[i] for i in val_idx], labels_arr[val_idx]
        note = f"seeded {1 - val_fraction:.0%}/{val_fraction:.0%} split (seed {seed}) of {root}"
    if not len(val_paths) or not len(train_paths):
        raise EdgebnnError(f"folder: the {'validation' if not len(val_paths) else 'training'} split of {root} is "
                           f"empty ({len(train_paths)} training, {len(val_paths)} validation images): add images "
                           "(a few per class at least) or give train/ and val/ folders")
    sizes = _check_images(train_paths + val_paths, progress)
    native = next(iter(sizes))[0] if len(sizes) == 1 and len(set(next(iter(sizes)))) == 1 else None
    return Source(
        name=f"folder:{path}",
        class_names=names,
        train=Split(np.asarray(train_labels, dtype=np.int32), paths=train_paths),
        val=Split(np.asarray(val_labels, dtype=np.int32), paths=val_paths),
        native_size=native,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        default_size=native or 224,
        notes=[note],
    )


def _tfds_builder(name: str, data_dir: str | None):
    try:
        import tensorflow_datasets as tfds  # lazy: an optional extra that loads TensorFlow
    except ImportError:
        raise EdgebnnError(f"tfds:{name} needs TensorFlow Datasets: pip install 'edgebnn[tfds]'") from None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as err:
        raise EdgebnnError(f"tfds:{name}: {str(err).splitlines()[0]}") from None
    return tfds, builder


def _load_tfds(name: str, data_dir: str | None, manual_dir: str | None):
    """Prepares (when needed) and returns a TFDS builder's train and validation splits as (image, label)."""
    tfds, builder = _tfds_builder(name, data_dir)
    try:
        config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=config)
    except Exception as err:
        raise EdgebnnError(f"tfds:{name} could not be prepared: {str(err).splitlines()[0]}") from None
    splits = builder.info.splits
    val_split = next((s for s in ("validation", "test") if s in splits), None)
    if "train" not in splits or val_split is None:
        raise EdgebnnError(f"tfds:{name} has no train and validation/test splits ({', '.join(splits)})")
    train, val = builder.as_dataset(split=["train", val_split], as_supervised=True)
    label = builder.info.features["label"]
    return builder, train, val, list(label.names), splits["train"].num_examples, splits[val_split].num_examples


def parse_name(name: str) -> tuple[str, str | None]:
    """``"folder:/x"`` -> ``("folder", "/x")``; ``"digits"`` -> ``("digits", None)``."""
    kind, _, arg = name.partition(":")
    kind = kind.strip().lower()
    if kind not in ("digits", "cifar10", "fashion-mnist", "idx", "folder", "tfds"):
        raise EdgebnnError(f"unknown data set {name!r}; use one of: {KNOWN_NAMES}")
    if kind in ("folder", "idx", "tfds") and not arg:
        raise EdgebnnError(f"data set {name!r} needs a {'name' if kind == 'tfds' else 'path'}: {kind}:...")
    return kind, arg or None


def find_source(name: str, *, seed: int = 0, val_fraction: float = 0.2, progress: bool = False) -> Source:
    """The splits of an in-memory or folder data set (not ``tfds:``, which streams)."""
    kind, arg = parse_name(name)
    if kind == "digits":
        return _digits_source(seed, val_fraction)
    if kind == "cifar10":
        return _cifar10_source(arg)
    if kind == "folder":
        return _folder_source(arg, seed, val_fraction, progress)
    if kind in ("fashion-mnist", "idx"):
        return _idx_source(kind, arg)
    raise EdgebnnError(f"{name}: TensorFlow Datasets are streamed; use load() or describe()")


# ----------------------------------------------------------------------------------------- pipeline
def _augment_fn(kind: str, size: int, flip: bool):
    """A function (image float32 [0, 255] HxWx3, seed int32[2]) -> size x size x 3 training image."""
    import tensorflow as tf  # lazy: loads TensorFlow

    def maybe_flip(image, seed):
        return tf.image.stateless_random_flip_left_right(image, seed) if flip else image

    if kind == "cifar":
        pad = max(1, size // 8)  # 4 pixels at 32x32, as in the CIFAR recipes

        def cifar(image, seed):
            image = tf.image.resize(image, (size, size), antialias=True)
            image = tf.image.pad_to_bounding_box(image, pad, pad, size + 2 * pad, size + 2 * pad)
            image = tf.image.stateless_random_crop(image, (size, size, 3), seed)
            return maybe_flip(image, seed + 1)

        return cifar
    if kind == "imagenet":  # RandomResizedCrop, Lighting(0.1), flip (edgebnn.preprocess)

        return lambda image, seed: preprocess.imagenet_train(image, size, seed, flip=flip)
    return lambda image, seed: tf.image.resize(image, (size, size), antialias=True)


def _eval_resize(kind: str, size: int):
    """Validation images: ImageNet's short side to size * 256 / 224, aspect kept, and centre crop
    (edgebnn.preprocess), else a plain resize."""
    import tensorflow as tf  # lazy: loads TensorFlow

    if kind == "imagenet":

        return lambda image: preprocess.imagenet_eval(image, size)
    return lambda image: tf.image.resize(image, (size, size), antialias=True)


def _decode_file(path):
    import tensorflow as tf  # lazy: loads TensorFlow

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape((None, None, 3))
    return image


def _pipeline(images_labels, *, n: int, training: bool, kind: str, size: int, flip: bool, mean, std,
              batch_size: int, seed: int, from_files: bool, drop_remainder: bool):
    import tensorflow as tf  # lazy: loads TensorFlow

    ds = images_labels
    if training:
        ds = ds.shuffle(min(n, 20_000), seed=seed, reshuffle_each_iteration=True)
    if from_files:
        ds = ds.map(lambda p, y: (_decode_file(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    elif ds.element_spec[0].shape[-1] == 1:  # grey IDX images: repeated to 3 channels here, not stored 3 times
        ds = ds.map(lambda x, y: (tf.repeat(x, 3, axis=-1), y), num_parallel_calls=tf.data.AUTOTUNE)
    mean_t = tf.constant(mean, tf.float32) * 255.0
    std_t = tf.constant(std, tf.float32) * 255.0

    if training:
        augment = _augment_fn(kind, size, flip)
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: ((augment(tf.cast(xy[0], tf.float32), tf.cast(s % (2**31 - 1), tf.int32))
                            - mean_t) / std_t, xy[1]),
            num_parallel_calls=tf.data.AUTOTUNE)
    else:
        resize = _eval_resize(kind, size)
        ds = ds.map(lambda x, y: ((resize(tf.cast(x, tf.float32)) - mean_t) / std_t, y),
                    num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(lambda x, y: (tf.ensure_shape(x, (size, size, 3)), tf.cast(y, tf.int32)))
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def _split_dataset(split: Split):
    import tensorflow as tf  # lazy: loads TensorFlow

    if split.images is not None:
        return tf.data.Dataset.from_tensor_slices((split.images, split.labels)), False
    return tf.data.Dataset.from_tensor_slices((split.paths, split.labels)), True


MAX_BATCH_BYTES = 2**31  # one batch of float32 images above 2 GiB is refused before any is made


def check_batch_size_in_bytes(input_size: int | None, batch_size: int) -> None:
    """Refuse an input size whose batch of float32 RGB images (batch x size^2 x 3 x 4 bytes) is over 2 GiB."""
    if input_size is None:
        return
    size = batch_size * input_size**2 * 3 * 4
    if size > MAX_BATCH_BYTES:
        raise EdgebnnError(f"input size {input_size} with batch size {batch_size} makes {size / 2**30:,.1f} GiB "
                           f"batches of images, over edgebnn's limit of {MAX_BATCH_BYTES // 2**30} GiB; use a "
                           "smaller input size or batch size")


def load(
    name: str,
    *,
    input_size: int | None = None,
    batch_size: int = 32,
    augment: str = "none",
    flip: bool = True,
    seed: int = 0,
    val_fraction: float = 0.2,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    drop_remainder: bool = False,
    progress: bool = False,
    normalisation: tuple | None = None,
) -> Dataset:
    """Train and validation pipelines of data set ``name`` (see the module docstring for names).

    Images come out as float32 ``(batch, input_size, input_size, 3)``, normalised per channel; labels as
    int32 class indices. ``augment`` is ``"none"``, ``"cifar"`` or ``"imagenet"`` and applies to training
    only; ``flip=False`` turns off the horizontal flip (for digits and text, where mirror images differ).
    ``normalisation``: ``(mean, std)`` in place of the data set's own (a model trained elsewhere, imported, expects
    its own trainer's).
    """
    if augment not in AUGMENTATIONS:
        raise EdgebnnError(f"unknown augmentation {augment!r}; use one of: {', '.join(AUGMENTATIONS)}")
    if batch_size < 1:
        raise EdgebnnError(f"batch size must be at least 1, got {batch_size}")
    if input_size is not None and input_size < 1:
        raise EdgebnnError(f"input size must be at least 1, got {input_size}")
    check_batch_size_in_bytes(input_size, batch_size)
    kind, arg = parse_name(name)
    common = dict(kind=augment, flip=flip, batch_size=batch_size, seed=seed, drop_remainder=drop_remainder)
    if kind == "tfds":
        builder, train, val, class_names, n_train, n_val = _load_tfds(arg, data_dir, manual_dir)
        size = input_size or 224
        mean, std = normalisation or (IMAGENET_MEAN, IMAGENET_STD)
        train_ds = _pipeline(train, n=n_train, training=True, size=size, mean=mean, std=std,
                             from_files=False, **common)
        val_ds = _pipeline(val, n=n_val, training=False, size=size, mean=mean, std=std,
                           from_files=False, **common)
    else:
        source = find_source(name, seed=seed, val_fraction=val_fraction, progress=progress)
        size = input_size or source.default_size
        mean, std = normalisation or (source.mean, source.std)
        class_names = source.class_names
        n_train, n_val = len(source.train), len(source.val)
        train, train_files = _split_dataset(source.train)
        val, val_files = _split_dataset(source.val)
        train_ds = _pipeline(train, n=n_train, training=True, size=size, mean=mean, std=std,
                             from_files=train_files, **common)
        val_ds = _pipeline(val, n=n_val, training=False, size=size, mean=mean, std=std,
                           from_files=val_files, **common)
    return Dataset(name=name, train=train_ds, val=val_ds, class_names=class_names,
                   input_shape=(size, size, 3), num_train=n_train, num_val=n_val, mean=tuple(mean),
                   std=tuple(std), augment=augment)


def sample(name: str, n: int, *, input_size: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` validation images (normalised, unaugmented) and labels, as numpy arrays."""
    ds = load(name, input_size=input_size, batch_size=max(1, min(n, 256)), seed=seed)
    xs, ys = [], []
    for x, y in ds.val:
        xs.append(x.numpy())
        ys.append(y.numpy())
        if sum(len(b) for b in ys) >= n:
            break
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


# ------------------------------------------------------------------------------------------ describe
def describe(name: str, *, input_size: int | None = None, seed: int = 0, progress: bool = False) -> dict:
    """What a data set holds: classes, counts per split and class, image size, normalisation."""
    kind, arg = parse_name(name)
    if kind == "tfds":
        tfds, builder = _tfds_builder(arg, None)
        info = builder.info
        class_names = list(info.features["label"].names)
        splits = {s: {"images": info.splits[s].num_examples} for s in info.splits}
        return {"name": name, "classes": class_names, "num_classes": len(class_names), "splits": splits,
                "image_size": None, "input_size": input_size or 224, "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD), "notes": [info.description.splitlines()[0] if info.description
                                                     else ""]}
    source = find_source(name, seed=seed, progress=progress)

    def counts(split: Split) -> dict:
        c = Counter(split.labels.tolist())
        return {"images": len(split), "per_class": {source.class_names[k]: c.get(k, 0)
                                                     for k in range(len(source.class_names))}}

    return {
        "name": source.name,
        "classes": source.class_names,
        "num_classes": len(source.class_names),
        "splits": {"train": counts(source.train), "val": counts(source.val)},
        "image_size": source.native_size,
        "input_size": input_size or source.default_size,
        "mean": list(source.mean),
        "std": list(source.std),
        "notes": source.notes,
    }


def format_summary(summary: dict) -> str:
    """The text ``edgebnn data NAME`` prints."""
    native = summary["image_size"]
    lines = [
        f"data set     {summary['name']}",
        f"classes      {summary['num_classes']}: {', '.join(summary['classes'][:12])}"
        + (" ..." if summary["num_classes"] > 12 else ""),
        f"image size   {f'{native}x{native}' if native else 'varies'} (fed to models at "
        f"{summary['input_size']}x{summary['input_size']}x3)",
        f"mean / std   {', '.join(f'{m:.4f}' for m in summary['mean'])} / "
        f"{', '.join(f'{s:.4f}' for s in summary['std'])}",
    ]
    for split, info in summary["splits"].items():
        lines.append(f"{split:<12} {info['images']:>8,} images")
        per_class = info.get("per_class")
        if per_class and len(per_class) <= 20:
            lines.append("             " + "  ".join(f"{k}:{v}" for k, v in per_class.items()))
    lines += [f"note         {n}" for n in summary.get("notes", []) if n]
    return "\n".join(lines)
