import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
import tensorflow_datasets as tfds
import urllib3

from keras_gfrnn import datasets

# tf.data pipelines and tensorflow-datasets: TensorFlow whatever Keras'
# backend (Keras feeds them to every backend), so one pass checks them.
pytestmark = pytest.mark.backend_independent

_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


def _proxy_environment(port):
    """Environment variables that send every download to 127.0.0.1:port.

    Proxies are public, documented behaviour of requests (and urllib), which
    tensorflow-datasets downloads with; lowercase names win, so both are set.
    """
    proxy = f"http://127.0.0.1:{port}"
    env = {}
    for name in _PROXY_VARIABLES:
        value = "" if name == "NO_PROXY" else proxy
        env[name] = env[name.lower()] = value
    return env


@pytest.fixture
def offline(monkeypatch):
    """No network, as in CI: every download attempt is refused at once.

    The proxy is a loopback port bound but not listening, so a connection is
    refused whatever runs on the machine. urllib3 retries a refused
    connection ten times with growing pauses (about 3.4 minutes in all
    before tensorflow-datasets gives up); the test drops the pauses.
    """
    retries = []

    def no_pause(retry):
        retries.append(time.monotonic())
        return 0.0

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        for name, value in _proxy_environment(closed.getsockname()[1]).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(urllib3.util.Retry, "get_backoff_time", no_pause)
        yield
        # tensorflow-datasets downloads a dataset's files in parallel and
        # reports the first failure: let the others give up too before the
        # pauses come back (else they hold the interpreter's exit).
        while retries and time.monotonic() - retries[-1] < 1.0:
            time.sleep(0.1)


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def not_found_proxy():
    """An HTTP proxy that answers 404 to everything; yields its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_mnist_sample_splits():
    parts = {s: datasets.mnist_sample(s) for s in datasets.SAMPLE_SPLITS}
    assert [len(parts[s][0]) for s in ("train", "validation", "test")] == [
        3000,
        500,
        500,
    ]
    for x, y in parts.values():
        assert x.shape[1:] == (28, 28) and x.dtype == np.float32
        assert y.dtype == np.int32 and set(np.unique(y)) <= set(range(10))
        assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    # Deterministic, and the splits do not overlap.
    again = datasets.mnist_sample("test")
    np.testing.assert_array_equal(again[0], parts["test"][0])
    flat = {s: {p.tobytes() for p in parts[s][0]} for s in parts}
    assert not flat["train"] & flat["test"]
    assert not flat["train"] & flat["validation"]
    assert len(np.unique(parts["train"][1])) == 10
    with pytest.raises(ValueError, match="split='val'"):
        datasets.mnist_sample("val")


def test_load_mnist_with_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=12):
        x, y = datasets.load_mnist("test", data_dir=str(tmp_path))
    assert x.shape == (12, 28, 28) and x.dtype == np.float32
    assert y.shape == (12,) and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0
    with pytest.raises(ValueError, match="split='validation'"):
        datasets.load_mnist("validation")


def test_load_mnist_offline_error(offline, tmp_path):
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.load_mnist("train", data_dir=str(tmp_path))
    message = str(info.value)
    assert "mnist_sample" in message and str(tmp_path) in message
    assert "data_dir" in message
    # tensorflow-datasets' own error, kept as the cause.
    assert isinstance(info.value.__cause__, requests.ConnectionError)
    assert "Connection refused" in message


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn_cropped"])
def test_download_false_fails_at_once_naming_dataset_and_folder(
    name, monkeypatch, tmp_path
):
    """Not prepared and download=False: the clear error in seconds, and no
    download is tried (a download would fail this test)."""

    def no_download(self, *args, **kwargs):
        raise AssertionError("download_and_prepare was called")

    monkeypatch.setattr(
        tfds.core.DatasetBuilder, "download_and_prepare", no_download
    )
    start = time.monotonic()
    calls = [
        lambda: datasets.load_image_dataset(
            name, data_dir=tmp_path, download=False
        ),
        lambda: datasets.pixel_statistics(name, tmp_path, download=False),
    ]
    if name == "mnist":
        calls.append(
            lambda: datasets.load_mnist("test", tmp_path, download=False)
        )
    for call in calls:
        with pytest.raises(datasets.DatasetUnavailableError) as info:
            call()
        message = str(info.value)
        assert f"'{name}' is not prepared in {tmp_path}" in message
        assert "cannot be downloaded (download=False)" in message
    assert time.monotonic() - start < 30


def test_a_download_is_announced_before_it_starts(offline, caplog, tmp_path):
    """The message comes before tensorflow-datasets' first attempt: it
    names the dataset, the folder and how to skip the wait."""
    with caplog.at_level("WARNING", logger="keras_gfrnn"):
        with pytest.raises(datasets.DatasetUnavailableError):
            datasets.load_image_dataset("cifar10", data_dir=tmp_path)
    (record,) = [r for r in caplog.records if r.name == "keras_gfrnn"]
    message = record.getMessage()
    assert f"'cifar10' is not prepared in {tmp_path}" in message
    assert "downloading" in message and "download=False" in message


def test_prepared_data_is_neither_announced_nor_downloaded(
    caplog, monkeypatch, tmp_path
):
    def no_download(self, *args, **kwargs):
        raise AssertionError("download_and_prepare was called")

    monkeypatch.setattr(
        tfds.core.DatasetBuilder, "download_and_prepare", no_download
    )
    monkeypatch.setattr(
        tfds.core.DatasetBuilder, "is_prepared", lambda self: True
    )
    with caplog.at_level("WARNING", logger="keras_gfrnn"):
        builder = datasets._tfds_builder("cifar10", str(tmp_path))
    assert builder.name == "cifar10"
    assert not [r for r in caplog.records if r.name == "keras_gfrnn"]


def test_download_error_reports_unavailable(
    not_found_proxy, monkeypatch, tmp_path
):
    # An HTTP error status is tensorflow-datasets' DownloadError (not
    # retried). SVHN is downloaded over plain http://, so the proxy sees
    # the request and answers it.
    for name, value in _proxy_environment(not_found_proxy).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.load_image_dataset("svhn_cropped", data_dir=tmp_path)
    assert isinstance(info.value.__cause__, tfds.download.DownloadError)
    assert "HTTP code: 404" in str(info.value)
    assert f"is not prepared in {tmp_path}" in str(info.value)


@pytest.mark.slow
def test_offline_message_names_tfds_default_data_dir(not_found_proxy, tmp_path):
    # Without data_dir the message names the folder tensorflow-datasets
    # really uses: TFDS_DATA_DIR (read when tfds is imported, hence a fresh
    # interpreter), not always ~/tensorflow_datasets.
    env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path))
    env.update(_proxy_environment(not_found_proxy))
    code = (
        "from keras_gfrnn import datasets\n"
        "try:\n"
        "    datasets.load_image_dataset('svhn_cropped')\n"
        "except datasets.DatasetUnavailableError as error:\n"
        "    print(error)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"'svhn_cropped' is not prepared in {tmp_path} " in result.stdout


# ------------------------------------------------------- image pipelines
def _first_batch(ds):
    x, y = next(iter(ds))
    return x.numpy(), y.numpy()


@pytest.mark.parametrize(
    "name,shape",
    [
        ("mnist", (28, 28, 1)),
        ("cifar10", (32, 32, 3)),
        ("svhn_cropped", (32, 32, 3)),
        ("mnist_sample", (28, 28, 1)),
    ],
)
@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_load_image_dataset_every_name(name, shape, split, tmp_path):
    # tfds.testing.mock_data alone: no network, nothing of ours patched.
    with tfds.testing.mock_data(num_examples=40):
        ds = datasets.load_image_dataset(
            name, split, batch_size=8, data_dir=str(tmp_path), seed=0
        )
        x, y = _first_batch(ds)
    assert x.shape == (8,) + shape and x.dtype == np.float32
    assert y.shape == (8,) and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.0
    assert set(np.unique(y)) <= set(range(10))
    assert datasets.image_shape(name) == shape


def test_per_pixel_normalisation(monkeypatch, tmp_path):
    ds = datasets.load_image_dataset(
        "mnist_sample",
        "train",
        batch_size=3000,
        shuffle=False,
        normalization="per_pixel",
    )
    x, _ = _first_batch(ds)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-3)
    _, std = datasets.pixel_statistics("mnist_sample")
    busy = std > 0.01  # pixels whose std is not floored: unit std
    assert busy.sum() > 300
    np.testing.assert_allclose(x.std(axis=0)[busy], 1.0, atol=1e-2)


def test_pixel_statistics_are_copies():
    """Issue 26.7: the cached arrays were returned themselves, so editing
    them changed every later call (and per_pixel normalization)."""
    mean, std = datasets.pixel_statistics("mnist_sample")
    expected = mean.copy(), std.copy()
    mean += 1.0
    std *= 2.0
    for got, want in zip(datasets.pixel_statistics("mnist_sample"), expected):
        np.testing.assert_array_equal(got, want)


def _sample(**kwargs):
    return _first_batch(
        datasets.load_image_dataset(
            "mnist_sample",
            "test",
            batch_size=64,
            shuffle=False,
            seed=1,
            **kwargs,
        )
    )


def test_augmentation_shifts_within_two_pixels():
    clean, labels = _sample()
    shifted, same_labels = _sample(augment=True, corruption=0.0)
    np.testing.assert_array_equal(labels, same_labels)
    moved = 0
    for a, b in zip(clean[..., 0], shifted[..., 0]):
        padded = np.pad(a, 2)
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[dy : dy + 28, dx : dx + 28], b)
        ]
        assert matches, "augmented image is not a shift of at most 2 px"
        moved += (2, 2) not in matches
    assert moved > 32  # most images actually moved


def _first_batch_unaugmented(shuffle):
    ds = datasets.load_image_dataset(
        "mnist_sample", batch_size=64, shuffle=shuffle, seed=5
    )
    return next(iter(ds))[0].numpy()


def test_augmentation_differs_from_epoch_to_epoch():
    """Each iteration of an augmented dataset (an epoch) draws new shifts,
    flips and corruption, shuffle or not; the same seed gives the same
    epochs. (Before, `tf.data.Dataset.random` restarted its sequence at
    every iteration: every epoch saw the same augmentation.)"""

    def epochs(seed, count=2):
        ds = datasets.load_image_dataset(
            "mnist_sample",
            batch_size=64,
            augment=True,
            shuffle=False,
            seed=seed,
        ).take(1)
        return [next(iter(ds))[0].numpy() for _ in range(count)]

    first, second = epochs(seed=5)
    assert not np.array_equal(first, second)
    again = epochs(seed=5)
    np.testing.assert_array_equal(again[0], first)
    np.testing.assert_array_equal(again[1], second)
    other, _ = epochs(seed=6)
    assert not np.array_equal(other, first)
    # Without a seed, too.
    unseeded = epochs(seed=None)
    assert not np.array_equal(unseeded[0], unseeded[1])
    # redraw_each_iteration=False: every epoch repeats the first (shuffled
    # and augmented), for per-epoch datasets of their own seeds.
    for shuffle in (False, True):
        ds = datasets.load_image_dataset(
            "mnist_sample",
            batch_size=64,
            augment=True,
            shuffle=shuffle,
            seed=5,
            redraw_each_iteration=False,
        ).take(1)
        fixed = [next(iter(ds))[0].numpy() for _ in range(2)]
        np.testing.assert_array_equal(fixed[0], fixed[1])
        assert not np.array_equal(fixed[0], _first_batch_unaugmented(shuffle))


def test_augmentation_corruption_rate():
    clean, _ = _sample()
    corrupted, _ = _sample(augment=True, shift=0, corruption=0.2)
    on = clean > 0
    dropped = (corrupted == 0) & on
    np.testing.assert_array_equal(
        corrupted[~(corrupted == 0)], clean[~(corrupted == 0)]
    )
    assert 0.17 < dropped.sum() / on.sum() < 0.23


def test_augmentation_flips(tmp_path):
    kwargs = dict(batch_size=32, shuffle=False, seed=3, data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=32):
        clean, _ = _first_batch(
            datasets.load_image_dataset("cifar10", "test", **kwargs)
        )
        flipped, _ = _first_batch(
            datasets.load_image_dataset(
                "cifar10",
                "test",
                augment=True,
                shift=0,
                corruption=0.0,
                **kwargs,
            )
        )
        digits, _ = _first_batch(
            datasets.load_image_dataset(
                "mnist", "test", augment=True, shift=0, corruption=0.0, **kwargs
            )
        )
        plain_digits, _ = _first_batch(
            datasets.load_image_dataset("mnist", "test", **kwargs)
        )
    mirrored = [np.array_equal(f, c[:, ::-1]) for f, c in zip(flipped, clean)]
    same = [np.array_equal(f, c) for f, c in zip(flipped, clean)]
    assert all(m or s for m, s in zip(mirrored, same))
    assert 4 < sum(mirrored) < 28
    np.testing.assert_array_equal(digits, plain_digits)  # no flips on MNIST


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": "imagenet"}, "name='imagenet'"),
        ({"name": "mnist_sample", "split": "dev"}, "split='dev'"),
        ({"name": "mnist_sample", "batch_size": 0}, "batch_size=0"),
        (
            {"name": "mnist_sample", "normalization": "zca"},
            "normalization='zca'",
        ),
        ({"name": "mnist_sample", "shift": -1}, "shift=-1"),
        ({"name": "mnist_sample", "corruption": 1.0}, "corruption=1.0"),
        # bool("no") is True: only booleans switch augmentation on or off.
        ({"name": "mnist_sample", "flip": "no"}, "`flip` must be None, Tru"),
        ({"name": "mnist_sample", "flip": 0}, "flip=0"),
        ({"name": "mnist_sample", "augment": "no"}, "augment='no'"),
        ({"name": "mnist_sample", "shuffle": "False"}, "shuffle='False'"),
        (
            {"name": "mnist_sample", "redraw_each_iteration": 1},
            "redraw_each_iteration=1",
        ),
        ({"name": "mnist_sample", "download": "no"}, "download='no'"),
        # Beyond half the side the centred object can leave the image.
        ({"name": "mnist_sample", "shift": 100}, "0 to 14 .*shift=100"),
        ({"name": "mnist_sample", "shift": 15}, "28x28 .*shift=15"),
        ({"name": "cifar10", "shift": 17}, "0 to 16 .*shift=17"),
        ({"name": "mnist_sample", "shift": 2.0}, "shift=2.0"),
        ({"name": ["mnist"]}, r"must be one of .*name=\['mnist'\]"),
        ({"name": "mnist_sample", "split": ["test"]}, r"split=\['test'\]"),
        ({"name": "mnist_sample", "corruption": "0.2"}, "corruption='0.2'"),
        ({"name": "mnist_sample", "corruption": True}, "corruption=True"),
        ({"name": "mnist_sample", "seed": "abc"}, "`seed` .*seed='abc'"),
        ({"name": "mnist_sample", "seed": 1.5}, "seed=1.5"),
        ({"name": "mnist_sample", "seed": 2**64}, "seed=1844"),
        ({"name": "mnist_sample", "batch_size": "8"}, "batch_size='8'"),
        ({"name": "mnist_sample", "data_dir": 7}, "`data_dir` .*data_dir=7"),
        ({"name": "mnist_sample", "normalization": ["unit"]}, "normaliz"),
    ],
)
def test_load_image_dataset_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.load_image_dataset(**kwargs)


def test_other_functions_invalid_arguments():
    with pytest.raises(ValueError, match=r"must be one of .*name=\['mnist'\]"):
        datasets.image_shape(["mnist"])
    with pytest.raises(ValueError, match=r"name=\['mnist'\]"):
        datasets.pixel_statistics(["mnist"])
    with pytest.raises(ValueError, match=r"data_dir=\['d'\]"):
        datasets.pixel_statistics("mnist_sample", data_dir=["d"])
    with pytest.raises(ValueError, match=r"must be one of .*split=\['test'\]"):
        datasets.mnist_sample(["test"])
    with pytest.raises(ValueError, match="data_dir=7"):
        datasets.load_mnist("test", data_dir=7)


def test_largest_shift_and_numpy_integers_are_accepted():
    # Half the side is the largest shift; NumPy integers count as integers.
    x, y = _first_batch(
        datasets.load_image_dataset(
            "mnist_sample",
            "test",
            batch_size=np.int64(16),
            shuffle=False,
            seed=np.int32(1),
            augment=True,
            shift=np.int64(14),
            corruption=np.float32(0.0),
        )
    )
    assert x.shape == (16, 28, 28, 1) and y.shape == (16,)
    clean, _ = _sample()
    assert not np.array_equal(x, clean[:16])  # shifted
    assert (x.reshape(16, -1).max(axis=1) > 0.5).all()  # none blank


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn_cropped"])
def test_load_image_dataset_offline_error(name, offline, tmp_path):
    # A download refused by a closed port (the proxy's: requests honours
    # HTTPS_PROXY) is reported as an unavailable dataset, with what to do.
    with pytest.raises(datasets.DatasetUnavailableError, match=name) as info:
        datasets.load_image_dataset(name, data_dir=str(tmp_path))
    message = str(info.value)
    assert f"'{name}' is not prepared in {tmp_path}" in message
    assert "mnist_sample" in message and "--data-dir" in message
    assert isinstance(info.value.__cause__, requests.ConnectionError)


# ------------------------------------------- without the optional extras
# (tests/test_package.py runs the same calls in an interpreter where
# TensorFlow cannot be found at all, on the JAX, torch and NumPy backends.)
def test_tf_data_functions_name_the_extra_without_tensorflow(monkeypatch):
    # None in sys.modules: `import tensorflow` raises ModuleNotFoundError.
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    calls = {
        "mnist_sample": "needs TensorFlow: "
        + datasets.install_command("tensorflow"),
        "cifar10": "needs TensorFlow and tensorflow-datasets: "
        + datasets.install_command("datasets"),
    }
    for name, expected in calls.items():
        with pytest.raises(ModuleNotFoundError) as info:
            datasets.load_image_dataset(name, shuffle=False)
        error = info.value
        assert isinstance(error, datasets.MissingDependencyError)
        # The examples' `except DatasetUnavailableError` reports it too.
        assert isinstance(error, datasets.DatasetUnavailableError)
        assert error.name == "tensorflow"
        assert isinstance(error.__cause__, ImportError)
        message = str(error)
        assert message.startswith(
            "load_image_dataset builds a tf.data pipeline and needs"
        )
        assert expected in message
    with pytest.raises(datasets.MissingDependencyError) as info:
        datasets.pixel_statistics("mnist_sample")
    assert datasets.install_command("tensorflow") in str(info.value)
    # Invalid arguments are reported first, as with TensorFlow.
    with pytest.raises(ValueError, match="batch_size"):
        datasets.load_image_dataset("mnist_sample", batch_size=0)
    with pytest.raises(ValueError, match="name='mnist10'"):
        datasets.pixel_statistics("mnist10")
    # The bundled sample itself needs no TensorFlow.
    assert datasets.mnist_sample("test")[0].shape == (500, 28, 28)


def test_tfds_functions_name_the_extra_without_tfds(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(datasets.MissingDependencyError) as info:
        datasets.load_mnist("test", data_dir=str(tmp_path))
    assert info.value.name == "tensorflow_datasets"
    assert str(info.value).startswith(
        "load_mnist needs tensorflow-datasets (or use mnist_sample()"
    )
    assert datasets.install_command("datasets") in str(info.value)
    with pytest.raises(ImportError, match=r"Dataset 'cifar10' needs tensor"):
        datasets.load_image_dataset("cifar10", data_dir=str(tmp_path))
    # mnist_sample's pipeline needs TensorFlow only.
    x, _ = _first_batch(datasets.load_image_dataset("mnist_sample"))
    assert x.shape == (128, 28, 28, 1)
