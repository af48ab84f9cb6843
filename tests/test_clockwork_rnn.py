import math
import os
import time

import keras
import numpy as np
import pytest

from keras_gfrnn import ClockworkCell
from keras_gfrnn import ClockworkRNN
from keras_gfrnn import clockwork_loops
from keras_gfrnn.clockwork_loops import MAX_UNROLLED_CYCLE
from keras_gfrnn.clockwork_loops import MAX_UNROLLED_STEPS
from keras_gfrnn.clockwork_loops import Schedule
from tests import layer_checks

PERIOD_SETS = [(1, 2, 4, 8), (1, 3, 5), (2, 3), (1,), (1, 2, 4, 16)]


# --------------------------------------------------------------------------
# NumPy reference of the paper's equations (docs/design.md, ClockworkRNN),
# independent of the layer's code.
# --------------------------------------------------------------------------
def recurrent_matrix(weights, units, num_modules):
    """W_H `(units, units)` from the layer's weights by short name: module
    i's column of blocks, `recurrent_kernel_{i + 1}`, starts at its own row
    block (itself, then the slower modules); zero above."""
    m = units // num_modules
    w_h = np.zeros((units, units))
    for i in range(num_modules):
        w_h[i * m :, i * m : (i + 1) * m] = weights[f"recurrent_kernel_{i + 1}"]
    return w_h


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
    w_h = recurrent_matrix(weights, units, len(periods))
    assert np.all(w_h[~allowed] == 0)  # the layer holds no weight there
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


LOOPS = ("unrolled", "unrolled_by_modules", "by_blocks", "by_modules")


def run_loop(loop, layer, x, h0=None):
    """`clockwork_loops.run` with the layer's weights, from t = 0."""
    cell = layer.cell
    projected = keras.ops.matmul(x, cell.kernel) + cell.bias
    if h0 is None:
        h0 = np.zeros((x.shape[0], cell.units), dtype="float32")
    kernels = cell.module_kernels()
    return keras.ops.convert_to_numpy(
        clockwork_loops.run(
            loop, cell.schedule, cell.activation, kernels, projected, h0
        )
    )


@pytest.mark.parametrize("periods", PERIOD_SETS)
@pytest.mark.parametrize("loop", LOOPS)
def test_every_loop_equals_the_equations(periods, loop):
    """Each loop of `clockwork_loops` (whichever the layer would choose)
    gives the equations' numbers, from a zero or a given state."""
    x = seq()
    layer = make(periods)
    layer.build(x.shape)
    w = randomize(layer, seed=4)
    h0 = np.random.default_rng(3).normal(size=(3, layer.units))
    h0 = h0.astype("float32")
    for start in (None, h0):
        exp_out, _, _ = numpy_cwrnn(w, x, periods, h0=start)
        out = run_loop(loop, layer, x, h0=start)
        np.testing.assert_allclose(out, exp_out, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "periods,loop",
    [((1, 2, 4, 8), "by_blocks"), ((1, 17, 19), "by_modules")],
)
def test_long_sequences_loop_and_equal_the_equations(periods, loop):
    """A sequence longer than MAX_UNROLLED_STEPS loops over blocks of one
    clock cycle, or module by module when the clock cycle is longer than
    MAX_UNROLLED_CYCLE: the layer gives the equations' numbers."""
    steps = MAX_UNROLLED_STEPS + 21
    layer = make(periods)
    assert clockwork_loops.choose_loop(layer.cell.schedule, steps) == loop
    assert (layer.clock_cycle > MAX_UNROLLED_CYCLE) == (loop == "by_modules")
    x = seq(batch=2, steps=steps)
    layer.build(x.shape)
    w = randomize(layer, seed=11)
    out, h, t = numpy_out(layer, x)
    exp_out, exp_h, exp_t = numpy_cwrnn(w, x, periods)
    np.testing.assert_allclose(out, exp_out, atol=1e-5)
    np.testing.assert_allclose(h, exp_h, atol=1e-5)
    np.testing.assert_array_equal(t[:, 0], exp_t % layer.clock_cycle)
    # The step-by-step path gives the same numbers.
    for a, b in zip(numpy_out(layer, x), numpy_out(reference_rnn(layer), x)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_choose_loop():
    fast = Schedule((1, 2, 4))
    slow = Schedule((1, 17, 19))  # clock cycle 323
    assert slow.clock_cycle > MAX_UNROLLED_CYCLE >= fast.clock_cycle
    static = {  # a static length up to MAX_UNROLLED_STEPS, per context
        "eager or graph": ({}, "unrolled"),
        "TensorFlow XLA": ({"compiled": True}, "unrolled_by_modules"),
        "jax.jit": ({"jax_traced": True}, "by_modules"),
    }
    for context, (kwargs, loop) in static.items():
        for schedule in (fast, slow):
            for steps in (1, MAX_UNROLLED_STEPS):
                chosen = clockwork_loops.choose_loop(schedule, steps, **kwargs)
                assert chosen == loop, (context, schedule.periods, steps)
    for steps in (MAX_UNROLLED_STEPS + 1, None):  # long or unknown
        for compiled in (False, True):
            for schedule, loop in ((fast, "by_blocks"), (slow, "by_modules")):
                chosen = clockwork_loops.choose_loop(
                    schedule, steps, compiled=compiled
                )
                assert chosen == loop, (schedule.periods, steps, compiled)
    assert clockwork_loops.choose_loop(fast, 20, 16) == "by_blocks"
    assert clockwork_loops.choose_loop(fast, 20, 16, 2) == "by_modules"


def test_layer_picks_the_loop_of_its_context(monkeypatch):
    """Eagerly (every backend) and in a `tf.function` the unrolled loop;
    inside `jax.jit` (Keras' JAX train step) the module scans; compiled by
    TensorFlow's XLA (`jit_compile=True`) the unrolled module order. Each
    gives the equations' numbers."""
    chosen = []
    run = clockwork_loops.run

    def spy(loop, *args, **kwargs):
        chosen.append(loop)
        return run(loop, *args, **kwargs)

    monkeypatch.setattr(clockwork_loops, "run", spy)
    periods = (1, 2, 4)
    x = seq(steps=11)
    layer = make(periods, jit_compile=False)
    layer.build(x.shape)
    w = randomize(layer, seed=8)
    exp_out, _, _ = numpy_cwrnn(w, x, periods)
    calls = [("unrolled", lambda: layer(x))]
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        calls.append(("by_modules", lambda: jax.jit(layer)(x)))
    if backend == "tensorflow":
        import tensorflow as tf

        calls.append(("unrolled", lambda: tf.function(layer)(x)))
        jitted = make(periods, jit_compile=True)
        jitted.build(x.shape)
        jitted.set_weights(layer.get_weights())
        calls.append(("unrolled_by_modules", lambda: jitted(x)))
    for loop, call in calls:
        chosen.clear()
        out = keras.ops.convert_to_numpy(call()[0])  # return_state=True
        assert chosen == [loop]
        np.testing.assert_allclose(out, exp_out, atol=1e-5)


def test_schedule_is_the_papers_rule():
    """Module i is active at step t iff t mod T_i == 0, reads itself and
    the slower modules; the plan repeats every lcm(periods) steps."""
    periods = (1, 3, 4, 6)
    schedule = Schedule(periods)
    assert schedule.clock_cycle == 12
    assert schedule.active(0) == (0, 1, 2, 3)
    assert schedule.active(1) == (0,)
    assert schedule.active(6) == (0, 1, 3)
    assert schedule.active(8) == (0, 2)
    plan = schedule.plan(30)
    assert plan == [schedule.active(t) for t in range(30)]
    assert plan[:12] == plan[12:24]
    for i, p in enumerate(periods):
        expected = [t for t in range(30) if t % p == 0]
        assert [t for t in range(30) if i in plan[t]] == expected
        assert list(schedule.ticks(i, 30)) == expected
        assert list(schedule.reads(i)) == list(range(i, 4))
    counter = np.arange(30, dtype="int32")[:, None]
    active = keras.ops.convert_to_numpy(
        schedule.active_units(counter, module_size=2)
    )
    assert active.shape == (30, 8)
    for t in range(30):
        units = [u for u in range(8) if u // 2 in plan[t]]
        assert list(np.flatnonzero(active[t])) == units
    assert clockwork_loops.is_active(12, 4) and not clockwork_loops.is_active(
        13, 4
    )


def test_schedule_advances_the_counter_modulo_the_clock_cycle():
    def advance(schedule, t, steps):
        t = np.array([[t]], dtype="int32")
        return int(keras.ops.convert_to_numpy(schedule.advance(t, steps))[0, 0])

    schedule = Schedule((1, 2, 3))
    assert [advance(schedule, t, 1) for t in range(6)] == [1, 2, 3, 4, 5, 0]
    assert advance(schedule, 4, 1000) == (4 + 1000) % 6
    # A clock cycle just under 2**31: no int32 overflow on the way.
    big = Schedule((1, 2**31 - 1))
    assert advance(big, 2**31 - 3, 5) == (2**31 - 3 + 5) % (2**31 - 1)
    assert advance(big, 2**31 - 3, 1) == 2**31 - 2


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


def test_only_the_blocks_the_maths_reads_are_weights():
    """Issue 27.3: the recurrent weights are the blocks of W_H where a
    module reads (itself and the slower modules), so `count_params()` is
    the Clockwork RNN paper's count, not SimpleRNN's; `recurrent_kernel`
    assembles W_H, zero elsewhere; every block gets a gradient."""
    layer = ClockworkRNN(512, num_modules=8)
    layer.build((None, None, 16))
    n, g, m, d = 512, 8, 64, 16
    assert layer.count_params() == d * n + n + m * m * g * (g + 1) // 2
    assert layer.count_params() == 156_160  # SimpleRNN(512): 270,848
    shapes = [tuple(k.shape) for k in layer.cell.recurrent_kernels]
    assert shapes == [((g - i) * m, m) for i in range(g)]
    no_bias = ClockworkRNN(6, periods=[1, 2, 4], use_bias=False)
    no_bias.build((None, None, 3))
    assert no_bias.count_params() == 3 * 6 + 2 * 2 * 6
    x = seq(steps=9)
    layer = make((1, 2, 4), units=6)
    layer.build(x.shape)
    w = randomize(layer, seed=5)
    dense = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
    np.testing.assert_allclose(dense, recurrent_matrix(w, 6, 3), atol=1e-7)
    grads = layer_checks.gradients(
        layer, lambda out: keras.ops.sum(out[0] ** 2), x
    )
    assert all(np.any(g != 0.0) for g in grads)


def test_files_with_the_dense_recurrent_kernel_load_exactly(tmp_path):
    """A model saved before issue 27.3 (dense `recurrent_kernel`, random
    values in the blocks the maths never read too), at e55c78f:

        inputs = keras.Input((None, 4))
        x = ClockworkRNN(12, periods=[1, 3, 9], return_sequences=True,
                         name="cw")(inputs)
        x = ClockworkRNN(6, num_modules=2, go_backwards=True,
                         use_bias=False, name="cw_no_bias")(x)
        model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
        # every weight uniform(-0.5, 0.5), np.random.default_rng(3); then
        # x = rng.normal(size=(3, 11, 4)); y = model.predict(x)

    It loads with the same outputs, the blocks taken from the dense
    matrix, and saves in the new layout."""
    import os

    data_dir = os.path.join(os.path.dirname(__file__), "data")
    path = os.path.join(data_dir, "clockwork_dense_0.2.keras")
    data = np.load(os.path.join(data_dir, "clockwork_dense_0.2.npz"))
    assert "cw/clockwork_cell/recurrent_kernel" in data["weight_paths"]
    model = keras.models.load_model(path)
    np.testing.assert_allclose(
        model.predict(data["x"], verbose=0), data["y"], atol=1e-6
    )
    cw = model.get_layer("cw")
    assert [tuple(k.shape) for k in cw.cell.recurrent_kernels] == [
        (12, 4),
        (8, 4),
        (4, 4),
    ]
    model.save(tmp_path / "new.keras")
    again = keras.models.load_model(tmp_path / "new.keras")
    np.testing.assert_array_equal(
        again.predict(data["x"], verbose=0), model.predict(data["x"], verbose=0)
    )


def test_a_dense_kernel_of_the_wrong_size_names_both_shapes():
    """A file's dense `recurrent_kernel` that does not fit the layer gets an
    error naming both shapes (not Keras' count of variables)."""
    layer = ClockworkRNN(8, periods=[1, 2])
    layer.build((None, None, 3))
    rng = np.random.default_rng(0)
    store = {
        "0": rng.normal(size=(3, 8)).astype("float32"),
        "1": rng.normal(size=(16, 16)).astype("float32"),
        "2": np.zeros(8, "float32"),
    }
    with pytest.raises(ValueError, match=r"\(16, 16\).*\(8, 8\)"):
        layer.cell.load_own_variables(store)


def test_connectivity_is_the_papers_mask():
    """`connectivity()` is M of the paper: unit s feeds unit r iff the
    module of s is at least as slow as the module of r; the assembled
    `recurrent_kernel` is zero outside it and the blocks hold exactly the
    entries inside it."""
    periods = (1, 3, 9)
    layer = make(periods, units=6)
    layer.build((None, None, 4))
    randomize(layer, seed=1)
    period_of_unit = np.repeat(periods, 2)
    expected = (period_of_unit[:, None] >= period_of_unit[None, :]).astype(
        "float32"
    )
    mask = keras.ops.convert_to_numpy(layer.cell.connectivity())
    np.testing.assert_array_equal(mask, expected)
    dense = keras.ops.convert_to_numpy(layer.cell.recurrent_kernel)
    np.testing.assert_array_equal(dense * (1 - mask), np.zeros_like(dense))
    assert np.all(dense[mask == 1] != 0)
    blocks = sum(int(np.prod(k.shape)) for k in layer.cell.recurrent_kernels)
    assert blocks == int(mask.sum())


@pytest.mark.skipif(
    layer_checks.BACKEND != "torch", reason="torch's tensor storage"
)
def test_each_block_owns_its_memory_on_torch():
    """The blocks are cut from one drawn matrix; each variable holds a
    contiguous copy of its block, not a view keeping the matrix alive."""
    layer = ClockworkRNN(8, num_modules=4)
    layer.build((None, None, 3))
    for k in layer.cell.recurrent_kernels:
        value = k.value
        assert value.is_contiguous()
        assert value.untyped_storage().nbytes() == value.numel() * 4


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


# The layer's paths to its dropout: the fast loop ("plain" without
# recurrent dropout), Keras' loop step by step ("plain" with recurrent
# dropout, "mask", "initial_state", "stateful") and the cell alone in
# keras.layers.RNN.
DROPOUT_PATHS = ["plain", "mask", "initial_state", "stateful", "keras_rnn"]


def dropout_probe(path, recurrent, seed=None, **rates):
    """A training call (returned as a function of nothing) of a linear
    ClockworkRNN on ones, identity input kernel and, where `recurrent`,
    identity recurrent kernel (one module), down `path`: its outputs are
    the input mask, or `h_t = 1 + r * h_{t-1}` with r the recurrent mask."""
    units, batch, steps = 8, 16, 5
    options = dict(
        periods=[1] if recurrent else [1, 2],
        activation="linear",
        seed=seed,
        **rates,
    )
    if path == "keras_rnn":
        cell = ClockworkCell(units, **options)
        layer = keras.layers.RNN(cell, return_sequences=True)
    else:
        layer = ClockworkRNN(
            units, return_sequences=True, stateful=path == "stateful", **options
        )
    x = np.ones((batch, steps, units), "float32")
    layer.build(x.shape)
    layer.cell.kernel.assign(np.eye(units))
    for block in layer.cell.recurrent_kernels:  # one module if recurrent
        block.assign(np.eye(*block.shape) * float(recurrent))
    layer.cell.bias.assign(np.zeros(units))
    kwargs = {}
    if path == "mask":
        kwargs["mask"] = np.ones((batch, steps), bool)
    if path == "initial_state":
        kwargs["initial_state"] = [
            np.zeros((batch, units), "float32"),
            np.zeros((batch, 1), "int32"),
        ]

    def run():
        if path == "stateful":
            layer.reset_states()
        return keras.ops.convert_to_numpy(layer(x, training=True, **kwargs))

    return run


@pytest.mark.parametrize("path", DROPOUT_PATHS)
def test_one_input_dropout_mask_per_sequence(path):
    """Issue 26.1: every path keeps one input mask for the whole sequence
    (the step-by-step path drew one per step) and draws a new one at each
    training call (on JAX the step path reused one)."""
    run = dropout_probe(path, recurrent=False, dropout=0.5)
    layer_checks.assert_one_input_mask_per_sequence(run, rate=0.5)


@pytest.mark.parametrize("path", DROPOUT_PATHS)
def test_one_recurrent_dropout_mask_per_sequence(path):
    run = dropout_probe(path, recurrent=True, recurrent_dropout=0.5)
    layer_checks.assert_one_recurrent_mask_per_sequence(run, 0.5, gain=1.0)


@pytest.mark.parametrize(
    "rates",
    [{"dropout": 0.4}, {"dropout": 0.3, "recurrent_dropout": 0.4}],
    ids=["input", "input_and_recurrent"],
)
def test_dropout_is_the_same_on_every_path(rates):
    """With one seed every path draws the same masks (the input mask first),
    so passing a mask, a clock at 0 or running the cell in keras.layers.RNN
    changes nothing in training; inference draws nothing."""
    x = seq(batch=4, steps=7, features=3)
    results = {}
    for path in DROPOUT_PATHS:
        if path == "keras_rnn":
            cell = ClockworkCell(6, periods=[1, 2], seed=5, **rates)
            layer = keras.layers.RNN(cell, return_sequences=True)
        else:
            layer = ClockworkRNN(
                6,
                periods=[1, 2],
                seed=5,
                return_sequences=True,
                stateful=path == "stateful",
                **rates,
            )
        layer.build(x.shape)
        randomize(layer, seed=2)
        kwargs = {
            "mask": {"mask": np.ones(x.shape[:2], bool)},
            "initial_state": {
                "initial_state": [
                    np.zeros((4, 6), "float32"),
                    np.zeros((4, 1), "int32"),
                ]
            },
        }.get(path, {})

        def call(training):
            if path == "stateful":
                layer.reset_states()
            return numpy_out(layer, x, training=training, **kwargs)

        results[path] = layer_checks.training_outputs_drawn_only_in_training(
            layer, call, keras_rnn=path == "keras_rnn"
        )
    for path, outputs in results.items():
        np.testing.assert_allclose(outputs, results["plain"], atol=1e-6)


@pytest.mark.parametrize("stateful", [False, True])
def test_fit_with_dropout_and_recurrent_dropout(stateful):
    """`fit` with both dropouts trains on every backend (on JAX it raised
    UnexpectedTracerError), stateful included, as does the cell alone in
    keras.layers.RNN; each step draws new masks."""
    x = seq(batch=4, steps=6, features=3)
    y = np.random.default_rng(3).normal(size=(4, 6)).astype("float32")
    options = dict(periods=[1, 2], dropout=0.3, recurrent_dropout=0.3, seed=1)
    for rnn in (
        ClockworkRNN(6, stateful=stateful, **options),
        keras.layers.RNN(ClockworkCell(6, **options), stateful=stateful),
    ):
        model = keras.Sequential([keras.Input((6, 3), batch_size=4), rnn])
        layer_checks.assert_fit_with_dropout(model, x, y)


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
        ({"units": 4, "periods": [1, 2**63]}, r"periods=\[1, 9223372036854"),
        ({"units": 4, "periods": [1, 2**31]}, r"periods=\[1, 2147483648\]"),
        ({"units": 2, "periods": [1, 2, 3]}, "3 periods with units=2"),
        ({"units": 8, "num_modules": 9}, "num_modules=9 with units=8"),
        ({"units": 64, "num_modules": 32}, "num_modules=32"),
        ({"units": 4, "num_modules": 2, "seed": "abc"}, "seed='abc'"),
        ({"units": 4, "num_modules": 2, "seed": -1}, "seed=-1"),
        ({"units": 4, "num_modules": 2, "seed": 2**32}, "seed=4294967296"),
        ({"units": 4, "num_modules": 2, "seed": 1.5}, "seed=1.5"),
        ({"units": 4, "num_modules": 2, "seed": True}, "seed=True"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClockworkRNN(**kwargs)
    with pytest.raises(ValueError, match=match):
        ClockworkCell(**kwargs)


def test_many_modules_fail_fast():
    """num_modules beyond units fails before any work on the periods (it
    used to build 2**i for every i: quadratic)."""
    start = time.perf_counter()
    for cls in (ClockworkRNN, ClockworkCell):
        with pytest.raises(ValueError, match="num_modules=10000000"):
            cls(4, num_modules=10**7)
    assert time.perf_counter() - start < 5.0


def test_largest_period_is_accepted():
    layer = ClockworkRNN(4, periods=[1, 2**31 - 1], return_state=True)
    x = seq(steps=5)
    _, _, t = numpy_out(layer, x)
    np.testing.assert_array_equal(t[:, 0], 5)


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


# --------------------------------------------------------------------------
# XLA
# --------------------------------------------------------------------------
def xla_calls(layer, x):
    """The calls to XLA-compiled functions in the graph that
    `tf.function(layer)` traces for `x` (its functions included)."""
    import tensorflow as tf

    graph = tf.function(layer).get_concrete_function(x).graph.as_graph_def()
    nodes = list(graph.node)
    for function in graph.library.function:
        nodes.extend(function.node_def)
    return [n for n in nodes if n.attr["_XlaMustCompile"].b]


@pytest.mark.slow
@pytest.mark.parametrize(
    "periods,steps,loop,calls",
    [
        # the whole sequence, one program, module by module
        ((1, 2, 4), 13, "unrolled_by_modules", 1),
        ((1, 2, 4), MAX_UNROLLED_STEPS + 2, "by_blocks", 1),  # one block
        ((1, 17, 19), MAX_UNROLLED_STEPS + 2, "by_modules", 3),  # per module
    ],
)
@layer_checks.TF_JIT_STEP
def test_jit_compile_matches_uncompiled(periods, steps, loop, calls):
    x = seq(steps=steps)
    schedule = Schedule(periods)
    assert clockwork_loops.choose_loop(schedule, steps, compiled=True) == loop

    def build(jit):
        return ClockworkRNN(
            6, periods=periods, return_sequences=True, jit_compile=jit
        )

    layer_checks.assert_jit_matches(build, x, [], atol=1e-5)
    plain, jitted = build(False), build(True)
    assert jitted.uses_xla and not plain.uses_xla
    assert len(xla_calls(jitted, x)) == calls
    assert xla_calls(plain, x) == []


@pytest.mark.slow
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


@pytest.mark.slow
def test_fit_with_jit_compile():
    x = seq(steps=12)
    y = np.ones((x.shape[0], 1), "float32")
    layer_checks.assert_fit_lowers_loss(
        ClockworkRNN(8, num_modules=2, jit_compile=True), x, y
    )


# --------------------------------------------------------------------------
# Hardening: the counter, NaN containment, cost of long periods
# --------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0.5, -1.0, np.nan, np.inf, 2.0**31])
def test_initial_state_counter_must_be_a_non_negative_integer(bad):
    """A counter of 0.5 used to be accepted and no module ever updated."""
    layer = make((1, 2))
    x = seq(steps=4)
    h0 = np.zeros((3, 4), dtype="float32")
    t0 = np.full((3, 1), bad, dtype="float32")
    t0[0] = 2.0
    with pytest.raises(ValueError, match=r"initial_state\[1\]"):
        layer(x, initial_state=[h0, t0])


def test_initial_state_counter_of_any_integer_value():
    """Counters beyond the clock cycle (in any numeric dtype) are reduced
    modulo the clock cycle: the equations with t0 % lcm."""
    periods = (1, 2, 4)
    x = seq(steps=7)
    layer = make(periods)
    layer.build(x.shape)
    w = randomize(layer, seed=3)
    h0 = np.zeros((3, 6), dtype="float32")
    for dtype in ("int32", "float32", "int64"):
        t0 = np.full((3, 1), 4 * 1000 + 3, dtype=dtype)
        out, _, t = numpy_out(layer, x, initial_state=[h0, t0])
        exp_out, _, exp_t = numpy_cwrnn(w, x, periods, h0=h0, t0=3)
        np.testing.assert_allclose(out, exp_out, atol=1e-5)
        np.testing.assert_array_equal(t[:, 0], exp_t % 4)


def _late_tick_layer(**kwargs):
    """Module 1 ticks at t = 4097: a counter of 4095 reaches it after two
    steps. float16 cannot hold 4095 or 4097 (it rounds to 4096 and stays
    there), so this needs an exact counter."""
    return ClockworkRNN(
        2,
        periods=[1, 4097],
        return_sequences=True,
        return_state=True,
        **kwargs,
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_counter_is_exact_under_mixed_precision(policy):
    x = seq(batch=2, steps=3, features=1)
    reference = _late_tick_layer()
    reference.build(x.shape)
    w = randomize(reference, seed=2)
    h0 = np.zeros((2, 2), dtype="float32")
    t0 = np.full((2, 1), 4095.0, dtype="float32")
    exp_out, _, exp_t = numpy_cwrnn(w, x, (1, 4097), h0=h0, t0=4095)
    keras.config.set_dtype_policy(policy)
    layer = _late_tick_layer()
    layer.build(x.shape)
    layer.set_weights(reference.get_weights())
    out, _, t = numpy_out(layer, x, initial_state=[h0, t0])
    assert keras.backend.standardize_dtype(t.dtype) == "int32"
    np.testing.assert_array_equal(t[:, 0], exp_t % 4097)
    slow = out[:, :, 1].astype("float32")
    assert slow[0, 0] == slow[0, 1] == 0.0 and slow[0, 2] != 0.0
    np.testing.assert_allclose(slow, exp_out[:, :, 1], atol=3e-2)
    # Symbolically too: the counter is int32.
    symbolic = layer(keras.Input((None, 1)))
    assert keras.backend.standardize_dtype(symbolic[-1].dtype) == "int32"


def test_stateful_counter_is_exact_under_mixed_float16(tmp_path):
    x = seq(batch=2, steps=3, features=1)
    keras.config.set_dtype_policy("mixed_float16")
    layer = _late_tick_layer(stateful=True)
    layer.build(x.shape)
    randomize(layer, seed=2)
    layer.states[1].assign(np.full((2, 1), 4095.0, dtype="float32"))
    out, _, t = numpy_out(layer, x)
    slow = out[:, :, 1].astype("float32")
    assert slow[0, 1] == 0.0 and slow[0, 2] != 0.0
    np.testing.assert_array_equal(t[:, 0], 1.0)
    state = keras.ops.convert_to_numpy(layer.states[1])
    np.testing.assert_array_equal(state[:, 0], 1.0)
    # A stateful model with this layer saves and loads.
    model = keras.Sequential([keras.Input(batch_shape=(2, 3, 1)), layer])
    path = os.path.join(tmp_path, "stateful.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.layers[0].stateful
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded.layers[0].cell.kernel),
        keras.ops.convert_to_numpy(layer.cell.kernel),
    )


NAN_PERIODS = (1, 2, 4)


def _nan_in_fastest_module(batch=3):
    h0 = np.random.default_rng(0).normal(size=(batch, 6)).astype("float32")
    h0[:, :2] = np.nan  # module 0, the fastest
    return h0


def _assert_slower_modules_finite(out, exp_out):
    assert np.all(np.isnan(out[:, 1:, :2]))  # the NaN stays in module 0
    np.testing.assert_allclose(out[:, :, 2:], exp_out[:, :, 2:], atol=1e-5)


@pytest.mark.parametrize("loop", LOOPS)
def test_nan_in_a_fast_module_stays_there_in_every_loop(loop):
    """Slower modules never read faster ones (the equations): a NaN in the
    fastest module's state must not reach them (NaN * 0 = NaN, so the loops
    must not multiply it by the zeros of the mask)."""
    x = seq(steps=13)
    layer = make(NAN_PERIODS)
    layer.build(x.shape)
    w = randomize(layer, seed=1)
    h0 = _nan_in_fastest_module()
    exp_out, _, _ = numpy_cwrnn(w, x, NAN_PERIODS, h0=np.nan_to_num(h0))
    _assert_slower_modules_finite(run_loop(loop, layer, x, h0=h0), exp_out)


@pytest.mark.parametrize("masked", [False, True])
def test_nan_in_a_fast_module_stays_there_step_by_step(masked):
    """The same in ClockworkCell (initial_state, masks)."""
    x = seq(steps=13)
    layer = make(NAN_PERIODS)
    layer.build(x.shape)
    w = randomize(layer, seed=1)
    h0 = _nan_in_fastest_module()
    t0 = np.zeros((3, 1), dtype="float32")
    mask = np.ones(x.shape[:2], dtype=bool) if masked else None
    exp_out, _, _ = numpy_cwrnn(w, x, NAN_PERIODS, h0=np.nan_to_num(h0))
    out = numpy_out(layer, x, initial_state=[h0, t0], mask=mask)[0]
    _assert_slower_modules_finite(out, exp_out)
    reference = reference_rnn(layer)
    out = numpy_out(reference, x, initial_state=[h0, t0])[0]
    _assert_slower_modules_finite(out, exp_out)


def test_long_period_costs_what_the_sequence_costs():
    """A period far longer than the sequence (10**9 steps, on a sequence
    too long to unroll) used to allocate memory in proportion to the
    period (~8 GB an example): now in proportion to the sequence."""
    periods = (1, 10**9)
    steps = MAX_UNROLLED_STEPS + 76
    layer = make(periods, units=2)
    assert clockwork_loops.choose_loop(layer.cell.schedule, steps) == (
        "by_modules"
    )
    x = seq(batch=2, steps=steps, features=1)
    layer.build(x.shape)
    w = randomize(layer, seed=5)
    out, h, t = numpy_out(layer, x)
    exp_out, exp_h, exp_t = numpy_cwrnn(w, x, periods)
    np.testing.assert_allclose(out, exp_out, atol=1e-5)
    np.testing.assert_array_equal(t[:, 0], exp_t)


def test_long_period_unrolled_by_modules_spreads_one_tick():
    """The loop XLA gets spreads a module's ticks over the steps by a
    repeat: by at most the sequence length, not by the period."""
    periods = (1, 10**9)
    x = seq(batch=2, steps=9, features=1)
    layer = make(periods, units=2)
    layer.build(x.shape)
    w = randomize(layer, seed=5)
    exp_out, _, _ = numpy_cwrnn(w, x, periods)
    out = run_loop("unrolled_by_modules", layer, x)
    np.testing.assert_allclose(out, exp_out, atol=1e-5)


@layer_checks.tensorflow_only(
    "reads the static shapes of a traced TensorFlow graph without running "
    "it; the eager test above runs on every backend"
)
def test_long_period_graph_holds_no_period_sized_tensor():
    """Every tensor of the traced graph is bound by the sequence (checked on
    the graph, without running it: the old code asked for 4 GB here)."""
    import tensorflow as tf

    steps = MAX_UNROLLED_STEPS + 76
    layer = make((1, 2**30), units=2)
    fn = tf.function(layer).get_concrete_function(tf.TensorSpec((2, steps, 1)))
    largest = 0
    for op in fn.graph.get_operations():
        for output in op.outputs:
            if output.shape.rank is not None and None not in output.shape:
                largest = max(largest, output.shape.num_elements())
    assert 0 < largest <= 4 * 2 * steps * 2


def test_seed_range_and_numpy_seeds_are_accepted():
    """Every seed that all backends hold works (up to 2**31 - 1), NumPy
    integers included, and the config holds a plain int; one more is
    refused by name."""
    from keras_gfrnn._validation import MAX_SEED

    x = np.ones((2, 3, 4), "float32")
    for seed in (0, MAX_SEED, np.int64(7)):
        layer = ClockworkRNN(4, num_modules=2, dropout=0.5, seed=seed)
        assert layer(x, training=True).shape == (2, 4)
        assert type(layer.get_config()["seed"]) is int
    with pytest.raises(ValueError, match=f"seed={MAX_SEED + 1}"):
        ClockworkRNN(4, num_modules=2, seed=MAX_SEED + 1)


def test_initial_state_as_python_lists():
    """Plain nested lists get an error that asks for arrays or tensors;
    the same values as arrays work."""
    x = np.ones((3, 5, 2), "float32")
    layer = ClockworkRNN(4, periods=[1, 2])
    layer(x)
    states = [[[0.5] * 4] * 3, [[1]] * 3]
    match = r"arrays or tensors .* Received: initial_state\[0\] of type list"
    with pytest.raises(ValueError, match=match):
        layer(x, initial_state=states)
    out = layer(
        x,
        initial_state=[np.array(states[0], "float32"), np.array(states[1])],
    )
    assert tuple(out.shape) == (3, 4)


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_returned_counter_is_exact(policy):
    """The counter returned with `return_state` is int32: exact past 2**24
    (float32) and 2048 (float16), and fed back it continues the clock."""
    start = 2**25 + 1  # odd: not a float32 value once 2 steps are added
    keras.config.set_dtype_policy(policy)
    try:
        layer = ClockworkRNN(4, periods=[1, 2**30], return_state=True)
        x = np.ones((1, 2, 3), "float32")
        h0 = np.zeros((1, 4), "float32")
        _, h, t = layer(x, initial_state=[h0, np.array([[start]])])
        assert keras.backend.standardize_dtype(t.dtype) == "int32"
        assert int(keras.ops.convert_to_numpy(t)[0, 0]) == start + 2
        _, _, t = layer(x, initial_state=[h, t])
        assert int(keras.ops.convert_to_numpy(t)[0, 0]) == start + 4
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
@pytest.mark.parametrize("form", ["keyword", "positional"])
def test_initial_counter_is_exact_however_it_is_passed(policy, form):
    """`layer(x, initial_state=[h, t])` and `layer(x, [h, t])` (which
    keras.layers.RNN.call allows) start the clock at t exactly: under
    mixed_float16 a counter of 2049 was rounded to 2048 in the positional
    form (Keras casts every float argument to float16 before `call`)."""
    start = 2049  # not a float16 value
    x = np.ones((1, 3, 2), "float32")
    h0 = np.zeros((1, 4), "float32")
    t0 = np.array([[start]], "float32")
    keras.config.set_dtype_policy(policy)
    try:
        layer = ClockworkRNN(
            4, periods=[1, 2], return_sequences=True, return_state=True
        )
        layer.build(x.shape)
        randomize(layer, seed=2)
        if form == "keyword":
            out, _, t = layer(x, initial_state=[h0, t0])
        else:
            out, _, t = layer(x, [h0, t0])
        out = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32"))
        assert int(keras.ops.convert_to_numpy(t)[0, 0]) == (start + 3) % 2
        # The clock at 1 (2049 mod 2): module 2 (period 2) sleeps at the
        # first step, ticks at the second. At 0 it would tick first.
        reference = ClockworkRNN(
            4, periods=[1, 2], return_sequences=True, return_state=True
        )
        reference.build(x.shape)
        reference.set_weights(layer.get_weights())
        for offset, same in ((1, True), (0, False)):
            ref, _, _ = reference(
                x, initial_state=[h0, np.array([[offset]], "int32")]
            )
            ref = keras.ops.convert_to_numpy(keras.ops.cast(ref, "float32"))
            assert np.allclose(out, ref, atol=1e-3) is same, offset
    finally:
        keras.config.set_dtype_policy("float32")


@layer_checks.tensorflow_only(
    "a tf.function graph (rewritten by TensorFlow's graph optimizer) "
    "against eager execution"
)
@pytest.mark.parametrize("steps", [3, 4, 6, 16])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_tf_function_equals_eager(steps, return_sequences):
    """The last output in a traced graph is the eager one, also when the
    last step updates a slow module (steps 4 and 16 with periods 1, 3):
    TensorFlow 2.21's arithmetic optimizer turned the slice
    `outputs[:, -1]` of the unrolled loop's stack into a wrong tensor
    there (a .keras file saved on TensorFlow then predicted other numbers
    than on JAX)."""
    import tensorflow as tf

    x = seq(batch=3, steps=steps, features=3)
    layer = ClockworkRNN(6, periods=[1, 3], return_sequences=return_sequences)
    layer.build(x.shape)
    randomize(layer, seed=1)
    reference = keras.layers.RNN(
        ClockworkCell(6, periods=[1, 3]), return_sequences=return_sequences
    )
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    expected = keras.ops.convert_to_numpy(reference(x))
    eager = keras.ops.convert_to_numpy(layer(x))
    graph = tf.function(lambda v: layer(v))(x).numpy()
    np.testing.assert_allclose(eager, expected, atol=1e-5)
    np.testing.assert_allclose(graph, expected, atol=1e-5)
