import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_gfrnn import datasets


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


def test_load_mnist_with_mock_data(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "_reachable", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=12):
        x, y = datasets.load_mnist("test", data_dir=str(tmp_path))
    assert x.shape == (12, 28, 28) and x.dtype == np.float32
    assert y.shape == (12,) and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 1.0
    with pytest.raises(ValueError, match="split='validation'"):
        datasets.load_mnist("validation")


def test_load_mnist_offline_error(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "_reachable", lambda *a, **k: False)
    with pytest.raises(datasets.DatasetUnavailableError) as info:
        datasets.load_mnist("train", data_dir=str(tmp_path))
    message = str(info.value)
    assert "mnist_sample" in message and str(tmp_path) in message
    assert "data_dir" in message


def test_reachable_reports_closed_port():
    # Port 9 on loopback: nothing listens there, the connection is refused.
    assert datasets._reachable(("127.0.0.1", 9), timeout=1.0) is False


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
def test_load_image_dataset_every_name(
    name, shape, split, monkeypatch, tmp_path
):
    monkeypatch.setattr(datasets, "_reachable", lambda *a, **k: True)
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


def test_augmentation_corruption_rate():
    clean, _ = _sample()
    corrupted, _ = _sample(augment=True, shift=0, corruption=0.2)
    on = clean > 0
    dropped = (corrupted == 0) & on
    np.testing.assert_array_equal(
        corrupted[~(corrupted == 0)], clean[~(corrupted == 0)]
    )
    assert 0.17 < dropped.sum() / on.sum() < 0.23


def test_augmentation_flips(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "_reachable", lambda *a, **k: True)
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
    ],
)
def test_load_image_dataset_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        datasets.load_image_dataset(**kwargs)


def test_load_image_dataset_offline_error(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "_reachable", lambda *a, **k: False)
    with pytest.raises(datasets.DatasetUnavailableError, match="cifar10"):
        datasets.load_image_dataset("cifar10", data_dir=str(tmp_path))


# ------------------------------------------- without the optional extras
# (tests/test_package.py runs the same calls in an interpreter where
# TensorFlow cannot be found at all, on the JAX, torch and NumPy backends.)
def test_tf_data_functions_name_the_extra_without_tensorflow(monkeypatch):
    # None in sys.modules: `import tensorflow` raises ModuleNotFoundError.
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    calls = {
        "mnist_sample": (
            'needs TensorFlow: pip install "keras-gfrnn[tensorflow]"'
        ),
        "cifar10": (
            "needs TensorFlow and tensorflow-datasets: "
            'pip install "keras-gfrnn[datasets]"'
        ),
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
    with pytest.raises(datasets.MissingDependencyError, match="tensorflow]"):
        datasets.pixel_statistics("mnist_sample")
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
    assert 'pip install "keras-gfrnn[datasets]"' in str(info.value)
    with pytest.raises(ImportError, match=r"Dataset 'cifar10' needs tensor"):
        datasets.load_image_dataset("cifar10", data_dir=str(tmp_path))
    # mnist_sample's pipeline needs TensorFlow only.
    x, _ = _first_batch(datasets.load_image_dataset("mnist_sample"))
    assert x.shape == (128, 28, 28, 1)
