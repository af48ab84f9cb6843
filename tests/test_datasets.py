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
