"""Data for the examples: the bundled MNIST sample and tfds MNIST.

- `mnist_sample(split)`: 4,000 real MNIST digits shipped with the package
  (see `keras_gfrnn/data/README.md` for their origin), split
  deterministically into 3,000 train / 500 validation / 500 test digits.
  Works offline.
- `load_mnist(split, data_dir=None)`: the full MNIST from
  tensorflow-datasets (`pip install "keras-gfrnn[datasets]"`). When the data
  is not prepared in `data_dir` and the download server cannot be reached, it
  raises `DatasetUnavailableError` with what to do, instead of hanging.

Images are float32 in [0, 1], shape (n, 28, 28); labels int32.
"""

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


def mnist_sample(split="train"):
    """Returns `(images, labels)` of the bundled 4,000-digit MNIST sample."""
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
    return x[idx].astype("float32") / 255.0, y[idx].astype("int32")


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
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DatasetUnavailableError(
            f"Dataset '{name}' needs tensorflow-datasets: "
            'pip install "keras-gfrnn[datasets]" (or use mnist_sample).'
        ) from error
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
    import tensorflow_datasets as tfds

    builder = _tfds_builder("mnist", data_dir)
    batches = list(tfds.as_numpy(builder.as_dataset(split=split).batch(8192)))
    x = np.concatenate([b["image"][..., 0] for b in batches])
    y = np.concatenate([b["label"] for b in batches])
    return x.astype("float32") / 255.0, y.astype("int32")
