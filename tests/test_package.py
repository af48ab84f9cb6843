import ast
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import keras_gfrnn

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_no_private_keras_or_tensorflow_imports():
    pattern = re.compile(r"(from|import) (keras\.src|tensorflow\.python)")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("keras_gfrnn", "examples", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


def test_public_api_is_explicit():
    assert set(keras_gfrnn.__all__) >= {
        "GatedFeedbackRNN",
        "GatedFeedbackCell",
        "__version__",
    }
    for name in keras_gfrnn.__all__:
        assert hasattr(keras_gfrnn, name)
    assert re.fullmatch(r"\d+\.\d+\.\d+", keras_gfrnn.__version__)


def test_bundled_data_ships_with_attribution():
    data = ROOT / "keras_gfrnn" / "data"
    assert (data / "mnist_4k.npz").is_file()
    assert "LeCun" in (data / "README.md").read_text()


# --------------------------------------------------- installs without TF
# A JAX, torch or NumPy user installs keras-gfrnn without TensorFlow
# (`pip install "keras-gfrnn[jax]"`). This script runs in a fresh
# interpreter where TensorFlow cannot be found, even though it is installed
# here: every finder on sys.meta_path is wrapped so that it does not see
# tensorflow (nor tensorflow_datasets, which needs it), exactly as when the
# package is absent (importlib.util.find_spec returns None; torch asks).
_WITHOUT_TENSORFLOW = r"""
import json
import sys

HIDDEN = {"tensorflow", "tensorflow_datasets", "tf_keras"}


class Hiding:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            return None
        find_spec = getattr(self.finder, "find_spec", None)
        return None if find_spec is None else find_spec(name, path, target)

    def __getattr__(self, attribute):  # find_distributions, caches
        return getattr(self.finder, attribute)


sys.meta_path[:] = [Hiding(finder) for finder in sys.meta_path]
try:
    import tensorflow  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("tensorflow is still importable")

import keras
import numpy as np

import keras_gfrnn
from keras_gfrnn import datasets

report = {"backend": keras.backend.backend()}
rng = np.random.default_rng(0)
sequences = rng.normal(size=(2, 6, 3)).astype("float32")
images = rng.normal(size=(2, 4, 6, 1)).astype("float32")
layers = {
    "GatedFeedbackRNN": (keras_gfrnn.GatedFeedbackRNN(4, 2), sequences),
    "ClockworkRNN": (keras_gfrnn.ClockworkRNN(4, periods=(1, 2)), sequences),
    "ReNet2D": (keras_gfrnn.ReNet2D(3, patch_size=2), images),
}
for name, (layer, x) in layers.items():
    y = keras.ops.convert_to_numpy(layer(x))
    assert np.all(np.isfinite(y)), name
    report[name] = list(y.shape)
x, y = datasets.mnist_sample("test")
report["mnist_sample"] = [list(x.shape), str(x.dtype), str(y.dtype)]

errors = {}
for call, args in (
    ("load_image_dataset", ["mnist_sample"]),
    ("load_image_dataset", ["cifar10"]),
    ("pixel_statistics", ["mnist_sample"]),
    ("load_mnist", ["test"]),
):
    key = f"{call}({args[0]})"
    try:
        getattr(datasets, call)(*args)
    except ImportError as error:
        errors[key] = [
            type(error).__name__,
            isinstance(error, ModuleNotFoundError),
            isinstance(error, datasets.DatasetUnavailableError),
            str(error),
        ]
    else:
        errors[key] = None
report["errors"] = errors
report["tensorflow_modules"] = sorted(
    m for m in sys.modules if m.partition(".")[0] in HIDDEN
)
print("REPORT", json.dumps(report))
"""


def _backends_without_tensorflow():
    return [
        pytest.param(
            backend,
            marks=pytest.mark.skipif(
                importlib.util.find_spec(backend) is None,
                reason=f"{backend} is not installed",
            ),
        )
        for backend in ("jax", "torch", "numpy")
    ]


@pytest.mark.parametrize("backend", _backends_without_tensorflow())
def test_works_without_tensorflow(backend):
    # Whatever backend this pytest run uses, the subprocess picks its own.
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TENSORFLOW],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = [s for s in result.stdout.splitlines() if s.startswith("REPORT ")]
    report = json.loads(line[-1][len("REPORT ") :])
    assert report["backend"] == backend
    assert report["GatedFeedbackRNN"] == [2, 4]
    assert report["ClockworkRNN"] == [2, 4]
    assert report["ReNet2D"] == [2, 2, 3, 6]
    assert report["mnist_sample"] == [[500, 28, 28], "float32", "int32"]
    # Nothing imported TensorFlow, and the tf.data functions say which
    # extra to install, as a ModuleNotFoundError that the examples' handler
    # of DatasetUnavailableError also catches.
    assert report["tensorflow_modules"] == []
    errors = report["errors"]
    assert all(
        e is not None and e[:3] == ["MissingDependencyError", True, True]
        for e in errors.values()
    ), errors
    assert errors["load_image_dataset(mnist_sample)"][3].startswith(
        "load_image_dataset builds a tf.data pipeline and needs TensorFlow: "
        'pip install "keras-gfrnn[tensorflow]"'
    )
    # The tensorflow-datasets names: the extra that brings both.
    message = errors["load_image_dataset(cifar10)"][3]
    assert (
        "needs TensorFlow and tensorflow-datasets: "
        'pip install "keras-gfrnn[datasets]"'
    ) in message
    message = errors["pixel_statistics(mnist_sample)"][3]
    assert 'needs TensorFlow: pip install "keras-gfrnn[tensorflow]"' in message
    message = errors["load_mnist(test)"][3]
    assert message.startswith("load_mnist needs tensorflow-datasets")
    assert 'pip install "keras-gfrnn[datasets]"' in message


def _setup_arguments():
    """The literal keyword arguments of setup.py's `setup(...)` call."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    (call,) = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "setup"
    ]
    arguments = {}
    for keyword in call.keywords:
        try:
            arguments[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:  # computed (version, long_description, ...)
            pass
    return arguments


def test_core_install_needs_only_keras_and_numpy():
    arguments = _setup_arguments()
    assert arguments["install_requires"] == ["keras>=3.5", "numpy"]
    extras = arguments["extras_require"]
    assert set(extras) == {
        "tensorflow",
        "jax",
        "torch",
        "datasets",
        "test",
        "plot",
    }
    assert extras["tensorflow"] == ["tensorflow>=2.16"]
    assert extras["jax"] == ["jax"] and extras["torch"] == ["torch"]
    # tf.data pipelines, tensorflow-datasets; the tests use tf.data and
    # SavedModel export on every backend.
    assert "tensorflow>=2.16" in extras["datasets"]
    assert "tensorflow-datasets" in extras["datasets"]
    assert "tensorflow>=2.16" in extras["test"]
