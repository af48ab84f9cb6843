"""Data for the examples: image pipelines, the bundled MNIST sample, tfds.

- `load_image_dataset(name, split, ...)`: a batched, prefetched `tf.data`
  pipeline of (float32 image, int32 label) for "mnist", "cifar10",
  "svhn_cropped" (tensorflow-datasets) and "mnist_sample" (bundled), with the
  ReNet paper's preprocessing as options: per-pixel normalisation, random
  shifts of +-2 px, horizontal flips (CIFAR-10), input corruption 0.2.

- `mnist_sample(split)`: 4,000 real MNIST digits shipped with the package
  (see `keras_gfrnn/data/README.md` for their origin), split
  deterministically into 3,000 train / 500 validation / 500 test digits.
  Works offline.
- `load_mnist(split, data_dir=None)`: the full MNIST from
  tensorflow-datasets (`pip install "keras-gfrnn[datasets]"`). When the data
  is not prepared in `data_dir` and the download server cannot be reached, it
  raises `DatasetUnavailableError` with what to do, instead of hanging.

Images are float32 in [0, 1], shape (n, 28, 28); labels int32.

`mnist_sample` needs only the core install (keras + numpy, any backend).
`load_image_dataset` and `pixel_statistics` build `tf.data` pipelines and
need TensorFlow on every backend (`pip install "keras-gfrnn[tensorflow]"`);
`load_mnist` and the tensorflow-datasets names need tensorflow-datasets too
(`pip install "keras-gfrnn[datasets]"`). Without them these functions raise
`MissingDependencyError`, a `ModuleNotFoundError` that names the extra.
"""

import importlib
import os
import socket

import numpy as np

SAMPLE_SPLITS = {
    "train": (0, 3000),
    "validation": (3000, 3500),
    "test": (3500, 4000),
}
_SAMPLE_PATH = os.path.join(os.path.dirname(__file__), "data", "mnist_4k.npz")
_DOWNLOAD_HOST = ("storage.googleapis.com", 443)


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither prepared locally nor downloadable."""


class MissingDependencyError(ModuleNotFoundError, DatasetUnavailableError):
    """An optional dependency (an extra of keras-gfrnn) is not installed.

    A `ModuleNotFoundError`, so `except ImportError` catches it, and a
    `DatasetUnavailableError`, so callers that already handle an
    unavailable dataset (the examples) report it the same way.
    """


def _require(module, purpose, extra):
    """Imports `module`, or raises `MissingDependencyError` naming `extra`."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f'{purpose}: pip install "keras-gfrnn[{extra}]" '
            f"({module} could not be imported: {error})",
            name=module,
        ) from error


def _tensorflow(purpose, name):
    """TensorFlow, for `purpose` on the dataset `name`."""
    if name == "mnist_sample":
        return _require(
            "tensorflow", f"{purpose} and needs TensorFlow", "tensorflow"
        )
    # A tensorflow-datasets dataset: one extra brings both.
    return _require(
        "tensorflow",
        f"{purpose} and needs TensorFlow and tensorflow-datasets",
        "datasets",
    )


def _tensorflow_datasets(user):
    return _require(
        "tensorflow_datasets",
        f"{user} needs tensorflow-datasets (or use mnist_sample(), which "
        "needs neither it nor TensorFlow)",
        "datasets",
    )


def mnist_sample(split="train"):
    """Returns `(images, labels)` of the bundled 4,000-digit MNIST sample."""
    x, y = _mnist_sample_uint8(split)
    return x.astype("float32") / 255.0, y


def _mnist_sample_uint8(split):
    if split not in SAMPLE_SPLITS:
        raise ValueError(
            f"Argument `split` must be one of {sorted(SAMPLE_SPLITS)}. "
            f"Received: split={split!r}"
        )
    with np.load(_SAMPLE_PATH) as data:
        x, y = data["x"], data["y"]
    order = np.random.default_rng(20150209).permutation(len(x))
    start, stop = SAMPLE_SPLITS[split]
    idx = order[start:stop]
    return x[idx], y[idx].astype("int32")


def _reachable(address, timeout):
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable(name, data_dir, reason):
    where = data_dir or "~/tensorflow_datasets"
    return DatasetUnavailableError(
        f"The tensorflow-datasets dataset '{name}' is not prepared in "
        f"{where} and cannot be downloaded ({reason}). Either run once on a "
        f'machine with network access (python -c "import '
        f"tensorflow_datasets as tfds; tfds.builder('{name}').download_and_"
        f'prepare()") and copy the prepared folder here, passing its parent '
        f"as data_dir / --data-dir, or use the bundled offline sample "
        f"(dataset 'mnist_sample', 4,000 real digits)."
    )


def _tfds_builder(name, data_dir, timeout=5.0):
    tfds = _tensorflow_datasets(f"Dataset '{name}'")
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        if not _reachable(_DOWNLOAD_HOST, timeout):
            raise _unavailable(
                name, data_dir, f"{_DOWNLOAD_HOST[0]} is unreachable"
            )
        try:
            builder.download_and_prepare()
        except Exception as error:  # network errors come in many types
            raise _unavailable(name, data_dir, repr(error)) from error
    return builder


def load_mnist(split="train", data_dir=None):
    """Returns `(images, labels)` of MNIST from tensorflow-datasets."""
    if split not in ("train", "test"):
        raise ValueError(
            "Argument `split` must be 'train' or 'test'. "
            f"Received: split={split!r}"
        )
    tfds = _tensorflow_datasets("load_mnist")
    builder = _tfds_builder("mnist", data_dir)
    batches = list(tfds.as_numpy(builder.as_dataset(split=split).batch(8192)))
    x = np.concatenate([b["image"][..., 0] for b in batches])
    y = np.concatenate([b["label"] for b in batches])
    return x.astype("float32") / 255.0, y.astype("int32")


# ---------------------------------------------------------------- images
IMAGE_DATASETS = {
    # name: (image shape, flips are a valid augmentation, classes)
    "mnist": ((28, 28, 1), False, 10),
    "cifar10": ((32, 32, 3), True, 10),
    "svhn_cropped": ((32, 32, 3), False, 10),
    "mnist_sample": ((28, 28, 1), False, 10),
}
# tfds splits: the last 10% of the official training set is the validation
# split, so that early stopping never looks at the test set.
TFDS_SPLITS = {
    "train": "train[:90%]",
    "validation": "train[90%:]",
    "test": "test",
}
_PIXEL_STATS = {}


def image_shape(name):
    """(height, width, channels) of a dataset of `load_image_dataset`."""
    return IMAGE_DATASETS[_check_name(name)][0]


def _check_name(name):
    if name not in IMAGE_DATASETS:
        raise ValueError(
            f"Argument `name` must be one of {sorted(IMAGE_DATASETS)}. "
            f"Received: name={name!r}"
        )
    return name


def _source(name, split, data_dir):
    """Unbatched (uint8-range float image, int label) dataset."""
    import tensorflow as tf

    if name == "mnist_sample":
        x, y = _mnist_sample_uint8(split)
        x = x[..., None].astype("float32")
        return tf.data.Dataset.from_tensor_slices((x, y))
    builder = _tfds_builder(name, data_dir)
    ds = builder.as_dataset(split=TFDS_SPLITS[split], as_supervised=True)
    return ds.map(
        lambda img, lab: (tf.cast(img, "float32"), tf.cast(lab, "int32"))
    )


def pixel_statistics(name, data_dir=None):
    """Per-pixel mean and std (of [0, 1] images) over the training split."""
    _tensorflow(
        "pixel_statistics reads the training split through tf.data",
        _check_name(name),
    )
    key = (name, data_dir)
    if key not in _PIXEL_STATS:
        total = squares = None
        count = 0
        for images, _ in _source(name, "train", data_dir).batch(4096):
            images = images.numpy().astype("float64") / 255.0
            total = images.sum(0) if total is None else total + images.sum(0)
            sq = (images**2).sum(0)
            squares = sq if squares is None else squares + sq
            count += len(images)
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        _PIXEL_STATS[key] = (
            mean.astype("float32"),
            np.maximum(std, 1e-3).astype("float32"),
        )
    return _PIXEL_STATS[key]


def load_image_dataset(
    name,
    split="train",
    batch_size=128,
    augment=False,
    shuffle=True,
    data_dir=None,
    seed=None,
    normalization="unit",
    shift=2,
    flip=None,
    corruption=0.2,
):
    """A batched, prefetched `tf.data.Dataset` of (image, label).

    Args:
        name: "mnist", "cifar10", "svhn_cropped" (tensorflow-datasets) or
            "mnist_sample" (the bundled 4,000 digits, offline).
        split: "train", "validation" or "test". For the tfds datasets,
            validation is the last 10% of the official training set and
            train the first 90%; for mnist_sample 3,000 / 500 / 500 digits.
        batch_size: Positive integer.
        augment: Apply the paper's augmentation (training): random shifts of
            up to `shift` pixels (zero fill), horizontal flips if `flip`, and
            input corruption (each input value zeroed with probability
            `corruption`).
        shuffle: Shuffle the examples (each epoch).
        data_dir: tensorflow-datasets data directory.
        seed: Seed of the shuffle and the augmentation.
        normalization: "unit" (values in [0, 1]) or "per_pixel" (subtract the
            training split's per-pixel mean, divide by its std).
        shift: Maximum shift in pixels (augment only).
        flip: Random horizontal flips (augment only); `None`: only for
            CIFAR-10, where the paper uses them.
        corruption: Probability of zeroing an input value (augment only).

    Images are float32 `(batch, height, width, channels)`, labels int32.

    Needs TensorFlow (`pip install "keras-gfrnn[tensorflow]"`; for the
    tensorflow-datasets datasets `"keras-gfrnn[datasets]"`) on every Keras
    backend: the pipeline is `tf.data`, which feeds JAX and torch models
    too. Without it, raises `MissingDependencyError` naming the extra.
    """
    shape, flips_ok, _ = IMAGE_DATASETS[_check_name(name)]
    if split not in TFDS_SPLITS:
        raise ValueError(
            f"Argument `split` must be one of {sorted(TFDS_SPLITS)}. "
            f"Received: split={split!r}"
        )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or (batch_size <= 0)
    ):
        raise ValueError(
            "Argument `batch_size` must be a positive integer. "
            f"Received: batch_size={batch_size!r}"
        )
    if normalization not in ("unit", "per_pixel"):
        raise ValueError(
            "Argument `normalization` must be 'unit' or 'per_pixel'. "
            f"Received: normalization={normalization!r}"
        )
    if isinstance(shift, bool) or not isinstance(shift, int) or shift < 0:
        raise ValueError(
            "Argument `shift` must be a non-negative integer. "
            f"Received: shift={shift!r}"
        )
    if not 0.0 <= corruption < 1.0:
        raise ValueError(
            "Argument `corruption` must be a float in [0, 1). "
            f"Received: corruption={corruption!r}"
        )
    flip = flips_ok if flip is None else bool(flip)
    tf = _tensorflow("load_image_dataset builds a tf.data pipeline", name)

    ds = _source(name, split, data_dir)
    if normalization == "per_pixel":
        mean, std = pixel_statistics(name, data_dir)
        ds = ds.map(
            lambda img, lab: ((img / 255.0 - mean) / std, lab),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.map(
            lambda img, lab: (img / 255.0, lab),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    ds = ds.map(lambda img, lab: (tf.ensure_shape(img, shape), lab))
    if shuffle:
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
    if augment:
        seeds = tf.data.Dataset.random(seed=seed).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            _augmenter(shape, shift, flip, corruption),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _augmenter(shape, shift, flip, corruption):
    import tensorflow as tf

    def augment(example, seed):
        image, label = example
        seeds = tf.random.experimental.stateless_split(seed, 3)
        if shift:
            padded = tf.pad(image, [[shift, shift], [shift, shift], [0, 0]])
            image = tf.image.stateless_random_crop(padded, shape, seeds[0])
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[1])
        if corruption:
            keep = tf.random.stateless_uniform(shape, seeds[2]) >= corruption
            image = image * tf.cast(keep, image.dtype)
        return image, label

    return augment
