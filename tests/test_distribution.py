"""Data-parallel training with `keras.distribution.DataParallel` (JAX).

On two CPU devices (XLA's `--xla_force_host_platform_device_count=2`,
which must be set before JAX is imported: the test body runs in a fresh
interpreter with KERAS_BACKEND=jax, whatever this run's backend), one fit
step of a small model with each layer equals the same step on one device:
DataParallel replicates the weights, splits each batch across the devices
and averages the gradients.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests import layer_checks

ROOT = pathlib.Path(__file__).resolve().parents[1]

_ONE_STEP = r"""
import json

import jax
import keras
import numpy as np

from keras_gfrnn import ClockworkRNN
from keras_gfrnn import GatedFeedbackRNN
from keras_gfrnn import ReNet2D

SEQUENCE, IMAGE = (6, 3), (8, 8, 2)
LAYERS = {
    "gf_lstm": (SEQUENCE, lambda: GatedFeedbackRNN(4, 2, unit_type="lstm")),
    "gf_gru": (SEQUENCE, lambda: GatedFeedbackRNN(4, 2, unit_type="gru")),
    "gf_tanh": (SEQUENCE, lambda: GatedFeedbackRNN(4, 2, unit_type="tanh")),
    "clockwork": (SEQUENCE, lambda: ClockworkRNN(4, periods=(1, 2))),
    "renet2d": (IMAGE, lambda: ReNet2D(3, patch_size=2)),
}


def one_step(name, distribution):
    shape, layer = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *shape)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    keras.utils.set_random_seed(0)
    with distribution.scope():
        model = keras.Sequential([
            keras.Input(shape),
            layer(),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        start = [keras.ops.convert_to_numpy(w.value) for w in model.weights]
        history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False,
                            verbose=0)
    devices = {len(w.value.sharding.device_set) for w in model.weights}
    weights = [keras.ops.convert_to_numpy(w.value) for w in model.weights]
    step = max(float(np.abs(a - b).max()) for a, b in zip(start, weights))
    return history.history["loss"][0], weights, sorted(devices), step


devices = jax.devices()
report = {"devices": len(devices)}
for name in LAYERS:
    one = keras.distribution.DataParallel(devices=devices[:1])
    two = keras.distribution.DataParallel(devices=devices)
    loss_1, weights_1, on_1, step = one_step(name, one)
    loss_2, weights_2, on_2, _ = one_step(name, two)
    report[name] = {
        "loss": [loss_1, loss_2],
        "weight_devices": [on_1, on_2],
        "step": step,
        "difference": max(
            float(np.abs(a - b).max()) for a, b in zip(weights_1, weights_2)
        ),
    }
print("REPORT", json.dumps(report))
"""


@pytest.mark.slow
@pytest.mark.backend_independent  # the child process runs on JAX
@layer_checks.apply_marks(
    layer_checks.needs(["jax"], 'the jax extra: pip install -e ".[jax]"')
)
def test_data_parallel_on_two_devices_equals_one_device():
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    result = subprocess.run(
        [sys.executable, "-c", _ONE_STEP],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = [s for s in result.stdout.splitlines() if s.startswith("REPORT ")]
    report = json.loads(line[-1][len("REPORT ") :])
    assert report.pop("devices") == 2
    assert set(report) == {
        "gf_lstm",
        "gf_gru",
        "gf_tanh",
        "clockwork",
        "renet2d",
    }
    for name, run in report.items():
        # The weights live on one device, then on both (replicated).
        assert run["weight_devices"] == [[1], [2]], name
        loss_1, loss_2 = run["loss"]
        assert loss_2 == pytest.approx(loss_1, rel=1e-5), name
        # The step moved the weights, by the same amount on both.
        assert run["step"] > 1e-3, name
        assert run["difference"] < 1e-5 * max(1.0, run["step"]), name
