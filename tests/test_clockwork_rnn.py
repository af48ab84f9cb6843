import math
import os

import keras
import numpy as np
import pytest

from keras_gfrnn import ClockworkCell
from keras_gfrnn import ClockworkRNN
from tests import layer_checks

PERIOD_SETS = [(1, 2, 4, 8), (1, 3, 5), (2, 3), (1,), (1, 2, 4, 16)]


# --------------------------------------------------------------------------
# NumPy reference of the paper's equations (README, ClockworkRNN),
# independent of the layer's code.
# --------------------------------------------------------------------------
def numpy_cwrnn(
    weights, x, periods, h0=None, t0=0, mask=None, go_backwards=False
):
    """Returns (outputs (B, T, units), final h, final counter (B,))."""
    batch, steps, _ = x.shape
    units = weights["kernel"].shape[1]
    m = units // len(periods)
    module = np.arange(units) // m
    unit_period = np.array(periods)[module]
    # M[s, r] = 1 iff the sender's module is at least as slow.
    allowed = module[:, None] >= module[None, :]
    w_h = weights["recurrent_kernel"] * allowed
    h = np.zeros((batch, units)) if h0 is None else h0.astype("float64")
    t = np.full(batch, t0, dtype="int64")
    outputs = []
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    for k in order:
        a = np.tanh(
            x[:, k] @ weights["kernel"] + h @ w_h + weights.get("bias", 0.0)
        )
        active = (t[:, None] % unit_period[None, :]) == 0
        new = np.where(active, a, h)
        if mask is not None:
            keep = mask[:, k]
            new = np.where(keep[:, None], new, h)
            t = t + keep.astype("int64")
        else:
            t = t + 1
        h = new
        outputs.append(h)
    return np.stack(outputs, axis=1), h, t


def randomize(layer, seed=0):
    rng = np.random.default_rng(seed)
    values = {}
    for w in layer.weights:
        value = rng.uniform(-0.6, 0.6, size=w.shape).astype("float32")
        w.assign(value)
        values[w.path.split("/")[-1]] = value.astype("float64")
    return values


def seq(batch=3, steps=13, features=4, seed=1):
    return (
        np.random.default_rng(seed)
        .normal(size=(batch, steps, features))
        .astype("float32")
    )


def numpy_out(layer, x, **kwargs):
    out = layer(x, **kwargs)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, out)


def make(periods, units=None, **kwargs):
    units = units or 2 * len(periods)
    return ClockworkRNN(
        units,
        periods=periods,
        return_sequences=True,
        return_state=True,
        **kwargs,
    )


def reference_rnn(layer, **kwargs):
    """The same weights in ClockworkCell run step by step by keras.RNN."""
    rnn = keras.layers.RNN(
        ClockworkCell(layer.units, periods=layer.periods),
        return_sequences=True,
        return_state=True,
        **kwargs,
    )
    rnn.build((None, None, layer.cell.input_dim))
    rnn.set_weights(layer.get_weights())
    return rnn


# --------------------------------------------------------------------------
# Correctness
# --------------------------------------------------------------------------
@pytest.mark.parametrize("periods", PERIOD_SETS)
def test_correctness(periods):
    x = seq()  # 13 steps: not a multiple of the largest period
    layer = make(periods)
    layer.build(x.shape)
    w = randomize(layer)
    out, h, t = numpy_out(layer, x)
    exp_out, exp_h, exp_t = numpy_cwrnn(w, x, periods)
    np.testing.assert_allclose(out, exp_out, atol=1e-5)
    np.testing.assert_allclose(h, exp_h, atol=1e-5)
    np.testing.assert_array_equal(t[:, 0], exp_t % math.lcm(*periods))


@pytest.mark.parametrize("periods", PERIOD_SETS)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_fast_path_equals_reference_path(periods, go_backwards):
    x = seq(steps=10)
    layer = make(periods, go_backwards=go_backwards)
    layer.build(x.shape)
    randomize(layer, seed=2)
    reference = reference_rnn(layer, go_backwards=go_backwards)
    for a, b in zip(numpy_out(layer, x), numpy_out(reference, x)):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("periods", PERIOD_SETS)
def test_loop_over_clock_cycles_equals_the_equations(periods, monkeypatch):
    """Sequences too long to unroll whole loop over blocks of one clock
    cycle: the same numbers."""
    from keras_gfrnn import clockwork_rnn

    x = seq()
    layer = make(periods)
    layer.build(x.shape)
    w = randomize(layer, seed=4)
    exp_out, exp_h, _ = numpy_cwrnn(w, x, periods)
    monkeypatch.setattr(clockwork_rnn, "MAX_UNROLLED_STEPS", 4)
    out, h, _ = numpy_out(layer, x)
    np.testing.assert_allclose(out, exp_out, atol=1e-5)
    np.testing.assert_allclose(h, exp_h, atol=1e-5)


@layer_checks.TF_GRAPH
@pytest.mark.parametrize("periods", PERIOD_SETS)
def test_length_unknown_when_traced_equals_the_equations(periods):
    """A sequence whose length is unknown when traced loops over blocks of
    one clock cycle: the same numbers."""
    import tensorflow as tf

    x = seq()
    layer = make(periods)
    layer.build(x.shape)
    w = randomize(layer, seed=4)
    exp_out, exp_h, _ = numpy_cwrnn(w, x, periods)
    unknown_length = tf.function(
        layer, input_signature=[tf.TensorSpec((None, None, x.shape[-1]))]
    )
    out, h, _ = keras.tree.map_structure(np.asarray, unknown_length(x))
    np.testing.assert_allclose(out, exp_out, atol=1e-5)
    np.testing.assert_allclose(h, exp_h, atol=1e-5)


def test_modules_change_only_on_their_ticks():
    """Paper property: module i changes only at t with t mod T_i == 0."""
    periods = (1, 2, 3, 4)
    x = seq(batch=2, steps=24)
    layer = make(periods, units=8)
    layer.build(x.shape)
    randomize(layer, seed=4)
    out = numpy_out(layer, x)[0]
    for i, period in enumerate(periods):
        block = out[:, :, 2 * i : 2 * i + 2]
        for t in range(1, 24):
            changed = not np.allclose(block[:, t], block[:, t - 1])
            assert changed == (t % period == 0), (i, t)


@pytest.mark.parametrize("fast", [True, False])
def test_entries_outside_mask_are_inert(fast):
    periods = (1, 2, 4)
    x = seq(steps=9)
    layer = make(periods, units=6)
    layer.build(x.shape)
    w = randomize(layer, seed=5)
    m = 2
    module = np.arange(6) // m
    outside = ~(module[:, None] >= module[None, :])
    mask = None if fast else np.ones(x.shape[:2], dtype=bool)
    before = numpy_out(layer, x, mask=mask)[0]
    changed = w["recurrent_kernel"] + 5.0 * outside
    layer.cell.recurrent_kernel.assign(changed.astype("float32"))
    np.testing.assert_array_equal(numpy_out(layer, x, mask=mask)[0], before)
    grads = layer_checks.gradients(
        layer, lambda out: keras.ops.sum(out[0] ** 2), x, mask=mask
    )
    index = [v.path for v in layer.trainable_variables].index(
        layer.cell.recurrent_kernel.path
    )
    grad = grads[index]
    assert np.all(grad[outside] == 0.0)
    assert np.any(grad[~outside] != 0.0)


# --------------------------------------------------------------------------
# The RNN contract
# --------------------------------------------------------------------------
def test_masking():
    """A masked step changes nothing and does not advance the clock."""
    periods = (1, 2, 3)
    x = seq(steps=12)
    mask = np.ones(x.shape[:2], dtype=bool)
    mask[0, 8:] = False
    mask[1, :3] = False
    mask[2, [2, 5, 6]] = False
    layer = make(periods)
    layer.build(x.shape)
    w = randomize(layer, seed=6)
    out, h, t = numpy_out(layer, x, mask=mask)
    exp_out, exp_h, exp_t = numpy_cwrnn(w, x, periods, mask=mask)
    np.testing.assert_allclose(out, exp_out, atol=1e-5)
    np.testing.assert_allclose(h, exp_h, atol=1e-5)
    np.testing.assert_array_equal(t[:, 0], exp_t % 6)
    # Left padding shifts nothing: the sequence behaves as if it started
    # at its first real step.
    late = numpy_out(layer, x[1:2, 3:])
    np.testing.assert_allclose(h[1:2], late[1], atol=1e-5)


def test_statefulness():
    periods = (1, 2, 4)
    x = seq(batch=2, steps=11)
    layer = make(periods, stateful=True)
    layer.build(x.shape)
    w = randomize(layer, seed=7)
    first = numpy_out(layer, x[:, :5])
    second = numpy_out(layer, x[:, 5:])
    exp_out, exp_h, exp_t = numpy_cwrnn(w, x, periods)
    np.testing.assert_allclose(
        np.concatenate([first[0], second[0]], axis=1), exp_out, atol=1e-5
    )
    np.testing.assert_array_equal(first[2][:, 0], 5 % 4)
    np.testing.assert_array_equal(second[2][:, 0], 11 % 4)
    layer.reset_states()
    np.testing.assert_allclose(
        numpy_out(layer, x[:, :5])[0], first[0], atol=1e-6
    )


def test_pass_initial_state_with_clock_offset():
    periods = (1, 2, 4)
    x = seq(steps=9)
    layer = make(periods)
    layer.build(x.shape)
    w = randomize(layer, seed=8)
    h0 = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
    t0 = np.full((3, 1), 3.0, dtype="float32")
    out, h, t = numpy_out(layer, x, initial_state=[h0, t0])
    exp_out, exp_h, exp_t = numpy_cwrnn(w, x, periods, h0=h0, t0=3)
    np.testing.assert_allclose(out, exp_out, atol=1e-5)
    np.testing.assert_array_equal(t[:, 0], exp_t % 4)


def test_go_backwards():
    periods = (1, 3)
    x = seq(steps=8)
    layer = make(periods, go_backwards=True)
    layer.build(x.shape)
    w = randomize(layer, seed=9)
    exp_out, _, _ = numpy_cwrnn(w, x, periods, go_backwards=True)
    np.testing.assert_allclose(numpy_out(layer, x)[0], exp_out, atol=1e-5)


def test_bidirectional_and_none_time_dimension():
    model = keras.Sequential(
        [
            keras.Input((None, 4)),
            keras.layers.Bidirectional(
                ClockworkRNN(8, num_modules=4, return_sequences=True)
            ),
        ]
    )
    for steps in (3, 17):
        assert model(seq(steps=steps)).shape == (3, steps, 16)
    bidi = model.layers[0]
    x = seq(steps=6)
    out = keras.ops.convert_to_numpy(bidi(x))
    fwd = keras.ops.convert_to_numpy(bidi.forward_layer(x))
    np.testing.assert_allclose(out[..., :8], fwd, atol=1e-6)


def test_dropout():
    x = seq(steps=10)
    layer = ClockworkRNN(
        8, num_modules=4, dropout=0.5, recurrent_dropout=0.5, seed=1
    )
    inference = numpy_out(layer, x)
    np.testing.assert_allclose(numpy_out(layer, x), inference)
    assert not np.allclose(numpy_out(layer, x, training=True), inference)
    only_input = ClockworkRNN(8, num_modules=4, dropout=0.5, seed=1)
    only_input.build(x.shape)
    only_input.set_weights(layer.get_weights())
    assert not np.allclose(numpy_out(only_input, x, training=True), inference)


# --------------------------------------------------------------------------
# Shared checks, saving, errors
# --------------------------------------------------------------------------
def test_basics():
    def build():
        return ClockworkRNN(
            8, periods=[1, 2, 5, 7], return_sequences=True, return_state=True
        )

    x = seq()
    layer_checks.assert_symbolic_matches_eager(build, x)
    layer = build()
    clone = layer_checks.assert_config_round_trip(layer)
    assert clone.periods == (1, 2, 5, 7) and clone.module_size == 2
    assert clone.clock_cycle == 70
    # TensorFlow cannot XLA-compile the gradient of its loops, so Keras'
    # jit_compile="auto" must not try there; on JAX it must.
    assert layer.supports_jit is (keras.backend.backend() != "tensorflow")
    layer_checks.assert_fit_lowers_loss(
        ClockworkRNN(8, num_modules=4), x, np.ones((3, 2), dtype="float32")
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    layer_checks.assert_mixed_precision(
        lambda: ClockworkRNN(8, num_modules=4, return_sequences=True),
        seq(),
        policy,
        atol=3e-2 if policy == "mixed_bfloat16" else 5e-3,
    )


def _model():
    inputs = keras.Input((None, 4))
    x = ClockworkRNN(8, num_modules=4, return_sequences=True)(inputs)
    x = ClockworkRNN(6, periods=[1, 3])(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_saving(tmp_path):
    model = _model()
    x = seq()
    path = os.path.join(tmp_path, "cw.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


@layer_checks.SAVED_MODEL
def test_saved_model_export(tmp_path):
    layer_checks.assert_saved_model_exact(
        _model(),
        os.path.join(tmp_path, "exported"),
        [seq(batch=b, steps=t, seed=b) for b, t in ((3, 13), (1, 5), (6, 32))],
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"units": 8, "periods": [1, 4, 2]}, r"periods=\[1, 4, 2\]"),
        ({"units": 8, "periods": [1, 1]}, r"periods=\[1, 1\]"),
        ({"units": 8, "periods": [0, 2]}, r"periods=\[0, 2\]"),
        ({"units": 8, "periods": [-1, 2]}, r"periods=\[-1, 2\]"),
        ({"units": 8, "periods": []}, r"periods=\[\]"),
        ({"units": 9, "num_modules": 2}, "units=9"),
        ({"units": 8}, "periods=None, num_modules=None"),
        ({"units": 8, "num_modules": 0}, "num_modules=0"),
        ({"units": 8, "periods": [1, 2], "num_modules": 4}, "num_modules=4"),
        ({"units": 0, "num_modules": 2}, "units=0"),
        ({"units": 8, "num_modules": 2, "dropout": 1.5}, "dropout=1.5"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClockworkRNN(**kwargs)
    with pytest.raises(ValueError, match=match):
        ClockworkCell(**kwargs)


def test_invalid_inputs():
    layer = ClockworkRNN(8, num_modules=2)
    with pytest.raises(ValueError, match=r"inputs.shape=\(3, 4\)"):
        layer(np.zeros((3, 4), dtype="float32"))
    x = seq()
    layer(x)
    with pytest.raises(ValueError, match=r"initial_state\[1\].shape"):
        layer(
            x,
            initial_state=[
                np.zeros((3, 8), "float32"),
                np.zeros((3, 2), "float32"),
            ],
        )
    with pytest.raises(ValueError, match="Received: initial_state with 1"):
        layer(x, initial_state=[np.zeros((3, 8), "float32")])


def test_long_clock_cycle_runs_module_by_module(monkeypatch):
    """lcm(1, 17, 19) = 323 is too long to unroll in a loop: a sequence too
    long to unroll whole runs module by module, and matches the equations
    and the step-by-step path."""
    from keras_gfrnn import clockwork_rnn

    monkeypatch.setattr(clockwork_rnn, "MAX_UNROLLED_STEPS", 16)
    periods = (1, 17, 19)
    x = seq(steps=45)
    layer = make(periods, go_backwards=False)
    assert layer.clock_cycle > clockwork_rnn.MAX_UNROLLED_CYCLE
    layer.build(x.shape)
    w = randomize(layer, seed=11)
    out, h, t = numpy_out(layer, x)
    exp_out, exp_h, exp_t = numpy_cwrnn(w, x, periods)
    np.testing.assert_allclose(out, exp_out, atol=1e-5)
    np.testing.assert_array_equal(t[:, 0], exp_t)
    for a, b in zip(numpy_out(layer, x), numpy_out(reference_rnn(layer), x)):
        np.testing.assert_allclose(a, b, atol=1e-6)


# --------------------------------------------------------------------------
# XLA
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "periods,steps,compiled",
    [
        ((1, 2, 4), 13, "_xla_steps"),  # unrolled whole: one XLA program
        ((1, 2, 4), 80, "_xla_block"),  # over 16 steps: a loop of blocks
        ((1, 17, 19), 40, "_xla_tick"),  # module by module
    ],
)
@layer_checks.TF_JIT_STEP
def test_jit_compile_matches_uncompiled(periods, steps, compiled, monkeypatch):
    from keras_gfrnn import clockwork_rnn

    monkeypatch.setattr(clockwork_rnn, "MAX_UNROLLED_STEPS", 16)
    x = seq(steps=steps)
    layer_checks.assert_jit_matches(
        lambda jit: ClockworkRNN(
            6, periods=periods, return_sequences=True, jit_compile=jit
        ),
        x,
        [compiled],
        atol=1e-5,
    )


def test_jit_compile_with_several_static_lengths():
    """The compiled function is created once per layer; a later call with
    another static length (here: one reaching modules the first did not)
    must trace it again with that length's schedule."""
    periods = (1, 2, 4, 8)
    plain = make(periods, jit_compile=False)
    jitted = make(periods, jit_compile=True)
    plain.build((None, None, 4))
    jitted.build((None, None, 4))
    randomize(plain, seed=6)
    jitted.set_weights(plain.get_weights())
    for steps in (3, 13):
        x = seq(steps=steps)
        for a, b in zip(numpy_out(jitted, x), numpy_out(plain, x)):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_jit_compile_argument():
    layer = ClockworkRNN(4, num_modules=2)
    assert layer.jit_compile == "auto"
    layer = layer_checks.assert_config_round_trip(
        ClockworkRNN(4, num_modules=2, jit_compile=True)
    )
    assert layer.jit_compile is True
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match=f"jit_compile={bad!r}"):
            ClockworkRNN(4, num_modules=2, jit_compile=bad)


def test_jit_compile_auto_follows_the_gpu():
    def uses_xla(value):
        return ClockworkRNN(4, num_modules=2, jit_compile=value).uses_xla

    if keras.backend.backend() != "tensorflow":
        # JAX compiles the whole step anyway; torch has no XLA step.
        for value in ("auto", True, False):
            assert uses_xla(value) is False
        return
    import tensorflow as tf

    has_gpu = bool(tf.config.list_logical_devices("GPU"))
    assert uses_xla("auto") is has_gpu
    assert uses_xla(True) and not uses_xla(False)


def test_fit_with_jit_compile():
    x = seq(steps=12)
    y = np.ones((x.shape[0], 1), "float32")
    layer_checks.assert_fit_lowers_loss(
        ClockworkRNN(8, num_modules=2, jit_compile=True), x, y
    )
