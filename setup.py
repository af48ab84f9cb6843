"""Setup shim for keras_gfrnn: the metadata lives in pyproject.toml.

Kept so that `pip install -e .` also works with a pip older than 21.3
(PEP 660), as a fresh Python 3.10 virtualenv may have.
"""

from setuptools import setup

setup()
