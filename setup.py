"""Setup script for keras_gfrnn."""

import pathlib
import re

from setuptools import find_packages
from setuptools import setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(
    r'__version__ = "([^"]+)"',
    (HERE / "keras_gfrnn" / "__init__.py").read_text(),
).group(1)

setup(
    name="keras-gfrnn",
    version=VERSION,
    description=(
        "Gated Feedback RNN, Clockwork RNN and ReNet as first-class Keras 3 "
        "layers"
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    # PEP 639 (setuptools>=77): an SPDX expression replaces the License
    # classifier, which setuptools now rejects next to it.
    license_expression="Apache-2.0",
    license_files=["LICENSE"],
    packages=find_packages(include=["keras_gfrnn", "keras_gfrnn.*"]),
    package_data={"keras_gfrnn": ["data/*.npz", "data/*.md"]},
    python_requires=">=3.10",
    # The layers need only Keras and NumPy, on any Keras backend. Install
    # the backend with its extra (or on your own); TensorFlow, Keras'
    # default backend, is also what tf.data pipelines
    # (keras_gfrnn.datasets.load_image_dataset) and SavedModel export need.
    install_requires=["keras>=3.5", "numpy"],
    extras_require={
        "tensorflow": ["tensorflow>=2.16"],
        "jax": ["jax"],
        # On Linux a plain `torch` is the CUDA build; for CPU only, install
        # torch from https://download.pytorch.org/whl/cpu first.
        "torch": ["torch"],
        # load_mnist and the tensorflow-datasets names of load_image_dataset.
        # etils.epath (used by tensorflow-datasets) needs importlib_resources.
        "datasets": [
            "tensorflow>=2.16",
            "tensorflow-datasets",
            "importlib_resources",
        ],
        # The tests use tf.data and SavedModel export on every backend;
        # matplotlib: they draw examples/char_lm.py's learning curves.
        "test": [
            "pytest",
            "hypothesis",
            "ruff",
            "matplotlib",
            "tensorflow>=2.16",
        ],
        # PNG plots of the examples (clockwork_generation, char_lm).
        "plot": ["matplotlib"],
    },
    author="keras_gfrnn developers",
    keywords=[
        "keras",
        "recurrent neural networks",
        "gated feedback rnn",
        "clockwork rnn",
        "renet",
    ],
    classifiers=[
        "Development Status :: 3 - Alpha",
        "Intended Audience :: Science/Research",
        "Operating System :: OS Independent",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
