import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_session():
    # Keras' names and global state start afresh for every test. Without
    # the garbage collection `clear_session` runs by default (0.2-0.4 s a
    # test with TensorFlow loaded, a fifth of the suite's time): Python's
    # own collector still runs as usual.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")
