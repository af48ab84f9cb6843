"""One layer called from two threads at once gets each call's own result.

Nothing of a call is kept on a layer or its cell (the fused loop's step,
its dropout masks and the clock of a ClockworkRNN travel as arguments), so
two eager calls in two threads (one training with dropout, one
predicting; one with an `initial_state` clock, one without) compute what
each computes alone, as Keras' own LSTM does.
"""

import threading

import keras
import numpy as np
import pytest

from keras_gfrnn import ClockworkRNN
from keras_gfrnn import GatedFeedbackRNN
from tests import layer_checks

pytestmark = pytest.mark.skipif(
    layer_checks.BACKEND == "jax",
    reason="eager calls from threads are tested on TensorFlow and torch "
    "(JAX runs its arrays' computations asynchronously anyway)",
)
REPEATS = 12


def _numpy(outputs):
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


def _in_two_threads(first, second, repeats=REPEATS):
    """Runs `first()` and `second()` each in its own thread, started
    together `repeats` times; returns the two lists of results."""
    barrier = threading.Barrier(2)
    results, errors = ([], []), []

    def worker(k, fn):
        try:
            for _ in range(repeats):
                barrier.wait(timeout=60)
                results[k].append(_numpy(fn()))
        except Exception as error:  # reported below, with the traceback
            errors.append(error)
            barrier.abort()

    threads = [
        threading.Thread(target=worker, args=(k, fn))
        for k, fn in enumerate((first, second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    if errors:
        raise errors[0]
    assert [len(r) for r in results] == [repeats, repeats]
    return results


def _assert_all_equal(got, expected):
    for outputs in got:
        assert len(outputs) == len(expected)
        for a, b in zip(outputs, expected):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def _dropout_case(layer, x):
    """One thread trains (dropout), the other predicts: the predictions are
    the layer's alone, and the training outputs have dropout in them."""
    layer(x)  # built
    alone = _numpy(layer(x, training=False))
    trained, predicted = _in_two_threads(
        lambda: layer(x, training=True), lambda: layer(x, training=False)
    )
    _assert_all_equal(predicted, alone)
    for outputs in trained:
        assert all(np.all(np.isfinite(o)) for o in outputs)
        assert not np.allclose(outputs[0], alone[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: keras.layers.LSTM(
            6, dropout=0.5, recurrent_dropout=0.5, return_sequences=True
        ),
        lambda: GatedFeedbackRNN(
            [6, 4],
            unit_type="lstm",
            dropout=0.5,
            recurrent_dropout=0.5,
            return_sequences=True,
        ),
        lambda: GatedFeedbackRNN(
            5, num_layers=2, unit_type="gru", dropout=0.5, return_state=True
        ),
    ],
    ids=["keras_lstm", "gf_lstm", "gf_gru"],
)
def test_training_and_predicting_threads(make):
    x = np.random.default_rng(0).normal(size=(3, 7, 4)).astype("float32")
    _dropout_case(make(), x)


def test_clockwork_initial_state_and_default_clock_in_threads():
    """One thread starts the clock at 5 (`initial_state`), the other at 0:
    each gets its own outputs and final counter."""
    x = np.random.default_rng(1).normal(size=(2, 7, 3)).astype("float32")
    layer = ClockworkRNN(
        6, periods=[1, 3], return_sequences=True, return_state=True
    )
    layer(x)
    h0 = np.zeros((2, 6), "float32")
    t0 = np.full((2, 1), 5, "int32")
    with_clock = _numpy(layer(x, initial_state=[h0, t0]))
    from_zero = _numpy(layer(x))
    assert with_clock[2].ravel().tolist() == [(5 + 7) % 3] * 2
    assert from_zero[2].ravel().tolist() == [7 % 3] * 2
    assert not np.allclose(with_clock[0], from_zero[0])
    got_clock, got_zero = _in_two_threads(
        lambda: layer(x, initial_state=[h0, t0]), lambda: layer(x)
    )
    _assert_all_equal(got_clock, with_clock)
    _assert_all_equal(got_zero, from_zero)


def test_clockwork_dropout_in_threads():
    x = np.random.default_rng(2).normal(size=(3, 6, 4)).astype("float32")
    _dropout_case(ClockworkRNN(6, periods=[1, 2], dropout=0.5), x)
