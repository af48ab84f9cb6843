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
    license="Apache-2.0",
    packages=find_packages(include=["keras_gfrnn", "keras_gfrnn.*"]),
    package_data={"keras_gfrnn": ["data/*.npz", "data/*.md"]},
    python_requires=">=3.10",
    install_requires=["tensorflow>=2.16", "keras>=3.5", "numpy"],
    extras_require={
        # matplotlib: the tests draw examples/char_lm.py's learning curves.
        "test": ["pytest", "hypothesis", "ruff", "matplotlib"],
        # etils.epath (used by tensorflow-datasets) needs importlib_resources.
        "datasets": ["tensorflow-datasets", "importlib_resources"],
        # PNG plots of the examples (clockwork_generation, char_lm).
        "plot": ["matplotlib"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
