import os

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import keras_gfrnn
from keras_gfrnn import GatedFeedbackCell
from keras_gfrnn import GatedFeedbackRNN
from keras_gfrnn import gated_feedback_loops
from tests import layer_checks

UNIT_TYPES = ["tanh", "gru", "lstm"]
GATE_INPUTS = ["all_layers", "own_layer"]
KERAS_LAYERS = {
    "tanh": keras.layers.SimpleRNN,
    "gru": keras.layers.GRU,
    "lstm": keras.layers.LSTM,
}
ALL_CASES = [
    (unit_type, feedback, output)
    for unit_type in UNIT_TYPES
    for feedback in (True, False)
    for output in ("top", "concat")
]


# --------------------------------------------------------------------------
# NumPy reference of the paper's equations (docs/design.md, GatedFeedbackRNN),
# written from the equations and the documented weight layout only (it
# never calls the layer's code).
# --------------------------------------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_gf_rnn(
    weights,
    x,
    sizes,
    unit_type,
    feedback,
    output="top",
    initial_state=None,
    gate_inputs="all_layers",
    mask=None,
    go_backwards=False,
    dropout_masks=None,
):
    """Returns (outputs over time (B, T, out), final states list).

    `dropout_masks=(input_masks, recurrent_masks)`: `input_masks[j]`
    multiplies layer j's input, `recurrent_masks[i]` multiplies
    `h^i_{t-1}` wherever it is read (not the carried state).
    `gate_inputs`: with feedback, whether the gates (GRU z, r; LSTM i, f,
    o) read all of `h*_{t-1}` (`recurrent_kernel_{j}` has S rows) or only
    `h^j_{t-1}`; without feedback they read `h^j_{t-1}`."""
    batch, steps, _ = x.shape
    layers = len(sizes)
    offsets = np.cumsum([0] + list(sizes))
    if initial_state is None:
        h = [np.zeros((batch, n)) for n in sizes]
        c = [np.zeros((batch, n)) for n in sizes]
    else:
        h = [np.array(s, dtype="float64") for s in initial_state[:layers]]
        c = [np.array(s, dtype="float64") for s in initial_state[layers:]]
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    out_size = sizes[-1] if output == "top" else sum(sizes)
    prev_out = np.zeros((batch, out_size))
    outputs = []
    input_masks, recurrent_masks = dropout_masks or (None, None)
    for t in order:
        read = h
        if recurrent_masks is not None:
            read = [a * m for a, m in zip(h, recurrent_masks)]
        h_star = np.concatenate(read, axis=1)
        below = x[:, t].astype("float64")
        new_h, new_c = [], []
        for j in range(layers):
            n = sizes[j]
            k = j + 1
            if input_masks is not None:
                below = below * input_masks[j]
            wx = below @ weights[f"kernel_{k}"] + weights.get(f"bias_{k}", 0.0)
            if feedback:
                u = weights[f"feedback_kernel_{k}"]
                g = _sigmoid(
                    below @ weights[f"gate_kernel_{k}"]
                    + h_star @ weights[f"gate_recurrent_kernel_{k}"]
                    + weights.get(f"gate_bias_{k}", 0.0)
                )
                fb = sum(
                    g[:, i : i + 1] * (read[i] @ u[offsets[i] : offsets[i + 1]])
                    for i in range(layers)
                )
            else:
                fb = read[j] @ weights[f"feedback_kernel_{k}"]
            if unit_type != "tanh":
                # Recurrent terms of the gates: sum_i U_.^{i->j} h^i_{t-1}
                # (every layer, full matrices) or U_.^{j->j} h^j_{t-1}.
                gates_read = (
                    h_star
                    if feedback and gate_inputs == "all_layers"
                    else read[j]
                )
                rec = gates_read @ weights[f"recurrent_kernel_{k}"]
            if unit_type == "tanh":
                hj = np.tanh(wx + fb)
            elif unit_type == "gru":
                z = _sigmoid(wx[:, :n] + rec[:, :n])
                r = _sigmoid(wx[:, n : 2 * n] + rec[:, n:])
                b_rh = weights.get(f"recurrent_bias_{k}", 0.0)
                cand = np.tanh(wx[:, 2 * n :] + r * (fb + b_rh))
                hj = z * h[j] + (1 - z) * cand
            else:
                i_g = _sigmoid(wx[:, :n] + rec[:, :n])
                f_g = _sigmoid(wx[:, n : 2 * n] + rec[:, n : 2 * n])
                o_g = _sigmoid(wx[:, 3 * n :] + rec[:, 2 * n :])
                cj = f_g * c[j] + i_g * np.tanh(wx[:, 2 * n : 3 * n] + fb)
                hj = o_g * np.tanh(cj)
                new_c.append(cj)
            new_h.append(hj)
            below = hj
        out = new_h[-1] if output == "top" else np.concatenate(new_h, axis=1)
        if mask is not None:
            keep = mask[:, t : t + 1]
            new_h = [np.where(keep, a, b) for a, b in zip(new_h, h)]
            if unit_type == "lstm":
                new_c = [np.where(keep, a, b) for a, b in zip(new_c, c)]
            out = np.where(keep, out, prev_out)
        h = new_h
        if unit_type == "lstm":
            c = new_c
        prev_out = out
        outputs.append(out)
    states = h + (c if unit_type == "lstm" else [])
    return np.stack(outputs, axis=1), states


def randomize(layer, scale=0.5, seed=0):
    """Random values for every weight (biases too), returned by short name."""
    rng = np.random.default_rng(seed)
    values = {}
    for w in layer.weights:
        value = rng.uniform(-scale, scale, size=w.shape).astype("float32")
        w.assign(value)
        values[w.path.split("/")[-1]] = value.astype("float64")
    return values


def make_inputs(batch=3, steps=6, features=5, seed=1):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, steps, features)).astype("float32")


def run_layer(layer, x, **kwargs):
    out = layer(x, **kwargs)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, out)


def assert_matches_reference(layer, x, sizes, seed=0, **kwargs):
    """Randomize `layer` (return_sequences and return_state on) and compare
    its outputs and final states with `numpy_gf_rnn`."""
    layer.build(x.shape)
    weights = randomize(layer, seed=seed)
    got = run_layer(layer, x)
    expected, states = numpy_gf_rnn(weights, x, sizes, **kwargs)
    np.testing.assert_allclose(got[0], expected, atol=1e-5)
    assert len(got) == 1 + len(states)
    for g, e in zip(got[1:], states):
        np.testing.assert_allclose(g, e, atol=1e-5)


# --------------------------------------------------------------------------
# Correctness
# --------------------------------------------------------------------------
@pytest.mark.parametrize("gate_inputs", GATE_INPUTS)
@pytest.mark.parametrize("unit_type,feedback,output", ALL_CASES)
def test_correctness(unit_type, feedback, output, gate_inputs):
    layer = GatedFeedbackRNN(
        4,
        num_layers=3,
        unit_type=unit_type,
        feedback=feedback,
        gate_inputs=gate_inputs,
        output=output,
        return_sequences=True,
        return_state=True,
    )
    assert_matches_reference(
        layer,
        make_inputs(),
        [4, 4, 4],
        unit_type=unit_type,
        feedback=feedback,
        output=output,
        gate_inputs=gate_inputs,
    )


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
@pytest.mark.parametrize("feedback", [True, False])
@pytest.mark.parametrize("gate_inputs", GATE_INPUTS)
def test_weight_names_and_shapes(unit_type, feedback, gate_inputs):
    """The documented layout: names, shapes and creation order per layer."""
    sizes, d = [4, 3, 2], 5
    layer = GatedFeedbackRNN(
        sizes, unit_type=unit_type, feedback=feedback, gate_inputs=gate_inputs
    )
    layer.build((None, None, d))
    g = {"tanh": 1, "gru": 3, "lstm": 4}[unit_type]
    s, n_layers = sum(sizes), len(sizes)
    gates_read_all = feedback and gate_inputs == "all_layers"
    expected = []
    for k, (h, d_k) in enumerate(zip(sizes, [d] + sizes[:-1]), start=1):
        expected.append((f"kernel_{k}", (d_k, g * h)))
        if g > 1:
            rows = s if gates_read_all else h
            expected.append((f"recurrent_kernel_{k}", (rows, (g - 1) * h)))
        expected.append((f"feedback_kernel_{k}", (s if feedback else h, h)))
        if feedback:
            expected.append((f"gate_kernel_{k}", (d_k, n_layers)))
            expected.append((f"gate_recurrent_kernel_{k}", (s, n_layers)))
        expected.append((f"bias_{k}", (g * h,)))
        if unit_type == "gru":
            expected.append((f"recurrent_bias_{k}", (h,)))
        if feedback:
            expected.append((f"gate_bias_{k}", (n_layers,)))
    got = [(w.path.split("/")[-1], tuple(w.shape)) for w in layer.weights]
    assert got == expected


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_gate_inputs_has_no_effect_without_feedback_or_gates(unit_type):
    """feedback=False is a plain stack whatever `gate_inputs` says; tanh
    units have no gates to feed."""
    x = make_inputs()
    cases = [(False, unit_type)] + ([(True, "tanh")] * (unit_type == "tanh"))
    for feedback, units in cases:
        layers = [
            GatedFeedbackRNN(
                [4, 3],
                unit_type=units,
                feedback=feedback,
                gate_inputs=gate_inputs,
                return_sequences=True,
            )
            for gate_inputs in GATE_INPUTS
        ]
        for layer in layers:
            layer.build(x.shape)
        randomize(layers[0])
        layers[1].set_weights(layers[0].get_weights())  # same shapes
        np.testing.assert_array_equal(
            run_layer(layers[0], x), run_layer(layers[1], x)
        )


def char_model_params(rnn_layers, vocab=205):
    """All parameters of one-hot(vocab) -> RNN layers -> Dense softmax."""
    model = keras.Sequential(
        [keras.Input((None, vocab)), *rnn_layers]
        + [keras.layers.Dense(vocab, activation="softmax")]
    )
    return model.count_params()


@pytest.mark.parametrize(
    "unit_type,stacked,gf", [("lstm", 191, 140), ("gru", 228, 165)]
)
def test_paper_table1_sizes_have_about_equal_parameters(unit_type, stacked, gf):
    """The paper's Table 1 sizes (3 layers) are within 10% in parameters
    with the default form; with gates on their own layer they are not."""
    baseline = char_model_params(
        [
            KERAS_LAYERS[unit_type](stacked, return_sequences=True)
            for _ in range(3)
        ]
    )
    counts = {
        gate_inputs: char_model_params(
            [
                GatedFeedbackRNN(
                    gf,
                    num_layers=3,
                    unit_type=unit_type,
                    gate_inputs=gate_inputs,
                    return_sequences=True,
                )
            ]
        )
        for gate_inputs in GATE_INPUTS
    }
    print(unit_type, baseline, counts)
    assert abs(counts["all_layers"] / baseline - 1.0) < 0.10
    assert counts["own_layer"] / baseline < 0.8
    assert GatedFeedbackRNN(gf, 3).gate_inputs == "all_layers"  # default


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
@pytest.mark.parametrize("feedback", [True, False])
def test_dropout_masks_follow_the_equations(unit_type, feedback):
    """Training output is the reference with the inputs and every read of
    h*_{t-1} masked (the carried state is not), with the masks that the
    documented `cell.dropout_masks` of a twin cell (same seed) draws."""
    x = make_inputs()
    sizes = [4, 3]

    def make_layer():
        layer = GatedFeedbackRNN(
            sizes,
            unit_type=unit_type,
            feedback=feedback,
            dropout=0.3,
            recurrent_dropout=0.4,
            seed=11,
            return_sequences=True,
            return_state=True,
        )
        layer.build(x.shape)
        return layer

    layer, twin = make_layer(), make_layer()
    weights = randomize(layer)
    input_masks, recurrent_masks = [
        [keras.ops.convert_to_numpy(m).astype("float64") for m in masks]
        for masks in twin.cell.dropout_masks(3, training=True)
    ]
    assert [m.shape for m in input_masks] == [(3, 5), (3, 4)]
    assert [m.shape for m in recurrent_masks] == [(3, 4), (3, 3)]
    for masks, rate in ((input_masks, 0.3), (recurrent_masks, 0.4)):
        values = np.concatenate([m.ravel() for m in masks])
        np.testing.assert_allclose(
            np.unique(values), [0.0, 1.0 / (1.0 - rate)], rtol=1e-6
        )
    got = run_layer(layer, x, training=True)
    expected, states = numpy_gf_rnn(
        weights,
        x,
        sizes,
        unit_type,
        feedback,
        dropout_masks=(input_masks, recurrent_masks),
    )
    np.testing.assert_allclose(got[0], expected, atol=1e-5)
    for g, e in zip(got[1:], states):
        np.testing.assert_allclose(g, e, atol=1e-5)


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
@pytest.mark.parametrize("feedback", [True, False])
def test_correctness_unequal_sizes(unit_type, feedback):
    x = make_inputs()
    sizes = [6, 3, 5]
    layer = GatedFeedbackRNN(
        sizes,
        unit_type=unit_type,
        feedback=feedback,
        output="concat",
        return_sequences=True,
    )
    layer.build(x.shape)
    weights = randomize(layer)
    expected, _ = numpy_gf_rnn(weights, x, sizes, unit_type, feedback, "concat")
    np.testing.assert_allclose(run_layer(layer, x), expected, atol=1e-5)


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_correctness_without_bias_single_layer(unit_type):
    x = make_inputs()
    layer = GatedFeedbackRNN(5, unit_type=unit_type, use_bias=False)
    layer.build(x.shape)
    names = {w.path.split("/")[-1] for w in layer.weights}
    assert not any(n.startswith(("bias", "gate_bias")) for n in names)
    weights = randomize(layer)
    expected, _ = numpy_gf_rnn(weights, x, [5], unit_type, True)
    np.testing.assert_allclose(run_layer(layer, x), expected[:, -1], atol=1e-5)


def random_keras_stack(unit_type, sizes, input_dim, seed=0):
    """Built Keras layers (GRU with reset_after=True), every weight random
    (the GRU's recurrent bias row too), and their weights by layer."""
    rng = np.random.default_rng(seed)
    stack, values = [], []
    for units, d in zip(sizes, [input_dim] + list(sizes[:-1])):
        rnn = KERAS_LAYERS[unit_type](units, return_sequences=True)
        rnn.build((None, None, d))
        w = [rng.uniform(-0.5, 0.5, v.shape) for v in rnn.get_weights()]
        rnn.set_weights(w)
        stack.append(rnn)
        values.append(w)
    return stack, values


def run_stack(stack, x):
    for rnn in stack:
        x = rnn(x)
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
@pytest.mark.parametrize("gate_inputs", GATE_INPUTS)
def test_no_feedback_equals_keras_stack(unit_type, gate_inputs):
    """Paper property: feedback=False is a plain stack of Keras layers,
    keras.layers.GRU(reset_after=True) with its recurrent bias included."""
    x = make_inputs()
    sizes = [4, 3, 5]
    stack, keras_weights = random_keras_stack(unit_type, sizes, x.shape[-1])
    layer = GatedFeedbackRNN(
        sizes,
        unit_type=unit_type,
        feedback=False,
        gate_inputs=gate_inputs,
        return_sequences=True,
    )
    layer.build(x.shape)
    cell = layer.cell
    for j, (h, (kernel, rec, bias)) in enumerate(zip(sizes, keras_weights)):
        cell.kernels[j].assign(kernel)
        if unit_type == "tanh":
            cell.feedback_kernels[j].assign(rec)
            cell.biases[j].assign(bias)
        elif unit_type == "gru":
            # Keras: columns [z, r, h]; bias rows [input, recurrent].
            cell.recurrent_kernels[j].assign(rec[:, : 2 * h])
            cell.feedback_kernels[j].assign(rec[:, 2 * h :])
            b_in, b_rec = bias
            rec_zr = np.concatenate([b_rec[: 2 * h], np.zeros(h)])
            cell.biases[j].assign(b_in + rec_zr)
            cell.recurrent_biases[j].assign(b_rec[2 * h :])
        else:
            # Keras: columns [i, f, c, o].
            gates = np.concatenate([rec[:, : 2 * h], rec[:, 3 * h :]], axis=1)
            cell.recurrent_kernels[j].assign(gates)
            cell.feedback_kernels[j].assign(rec[:, 2 * h : 3 * h])
            cell.biases[j].assign(bias)
    assert not np.allclose(keras_weights[0][-1], 0.0)
    np.testing.assert_allclose(
        run_layer(layer, x), run_stack(stack, x), atol=1e-5
    )


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
@pytest.mark.parametrize(
    "feedback,gate_inputs",
    [(True, "all_layers"), (True, "own_layer"), (False, "all_layers")],
)
def test_from_keras_stack_starts_as_the_stack(unit_type, feedback, gate_inputs):
    """Weights of a Keras stack (random, biases too) in the own-layer
    blocks; cross-layer blocks and global-gate weights zero: the outputs
    and final states are the stack's."""
    x = make_inputs()
    sizes = [4, 3, 5]
    stack, keras_weights = random_keras_stack(unit_type, sizes, x.shape[-1])
    layer = GatedFeedbackRNN.from_keras_stack(
        stack,
        feedback=feedback,
        gate_inputs=gate_inputs,
        return_sequences=True,
        name="gf",
    )
    assert layer.layer_units == tuple(sizes)
    assert layer.unit_type == unit_type and layer.name == "gf"
    assert layer.gate_inputs == gate_inputs and layer.feedback == feedback
    np.testing.assert_allclose(
        run_layer(layer, x), run_stack(stack, x), atol=1e-5
    )
    # The weights, block by block (Keras' columns: [i, f, c, o], [z, r, h]).
    w = {
        v.path.split("/")[-1]: keras.ops.convert_to_numpy(v)
        for v in layer.weights
    }
    offsets = np.cumsum([0] + sizes)
    for j, (h, (kernel, rec, bias)) in enumerate(zip(sizes, keras_weights)):
        k = j + 1
        np.testing.assert_allclose(w[f"kernel_{k}"], kernel, rtol=1e-6)
        fb = w[f"feedback_kernel_{k}"]
        rows = slice(offsets[j], offsets[j + 1]) if feedback else slice(None)
        scale = 2.0 if feedback else 1.0  # 1 / sigmoid(0)
        np.testing.assert_allclose(
            fb[rows] / scale,
            rec[:, -h:] if unit_type != "lstm" else rec[:, 2 * h : 3 * h],
            rtol=1e-6,
        )
        fb[rows] = 0.0
        assert not fb.any()  # U^{i->j}, i != j
        if feedback:
            for name in ("gate_kernel", "gate_recurrent_kernel", "gate_bias"):
                assert not w[f"{name}_{k}"].any()
        if unit_type != "tanh":
            gates = w[f"recurrent_kernel_{k}"]
            if feedback and gate_inputs == "all_layers":
                assert gates.shape[0] == sum(sizes)
                own = gates[offsets[j] : offsets[j + 1]].copy()
                gates[offsets[j] : offsets[j + 1]] = 0.0
                assert not gates.any()
            else:
                own = gates
            expected = (
                np.concatenate([rec[:, : 2 * h], rec[:, 3 * h :]], axis=1)
                if unit_type == "lstm"
                else rec[:, : 2 * h]
            )
            np.testing.assert_allclose(own, expected, rtol=1e-6)
        if unit_type == "gru":
            np.testing.assert_allclose(
                w[f"bias_{k}"],
                bias[0] + np.concatenate([bias[1, : 2 * h], np.zeros(h)]),
                rtol=1e-6,
            )
            np.testing.assert_allclose(
                w[f"recurrent_bias_{k}"], bias[1, 2 * h :], rtol=1e-6
            )
        else:
            np.testing.assert_allclose(w[f"bias_{k}"], bias, rtol=1e-6)


@pytest.mark.slow
def test_from_keras_stack_in_a_model(tmp_path):
    """The docstring's recipe: a stateful GF model that starts as a trained
    stack, a non-default gate activation and no bias; it saves and trains."""
    x = make_inputs(batch=2, steps=4, features=3)
    stack = [
        keras.layers.LSTM(
            4,
            return_sequences=True,
            recurrent_activation="hard_sigmoid",
            use_bias=False,
        )
        for _ in range(2)
    ]
    for k, rnn in enumerate(stack):
        rnn.build((None, None, 3 if k == 0 else 4))
        randomize(rnn, seed=k)
    expected = run_stack(stack, x)
    gf = GatedFeedbackRNN.from_keras_stack(
        stack, return_sequences=True, stateful=True
    )
    assert gf.recurrent_activation is keras.activations.hard_sigmoid
    assert not gf.use_bias
    model = keras.Sequential([keras.Input(batch_shape=(2, None, 3)), gf])
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x)), expected, atol=1e-5
    )
    model.compile("adam", "mse")
    model.fit(x, np.zeros((2, 4, 4)), epochs=1, verbose=0)
    assert not np.allclose(
        keras.ops.convert_to_numpy(gf.cell.gate_recurrent_kernels[1]), 0.0
    )
    path = os.path.join(tmp_path, "gf.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_from_keras_stack_errors():
    def built(rnn, d=3):
        rnn.build((None, None, d))
        return rnn

    lstm = built(keras.layers.LSTM(4))
    cases = [
        ([], "non-empty list"),
        ([lstm, built(keras.layers.GRU(4), 4)], "one kind"),
        ([keras.layers.Dense(4)], "one kind"),
        ([built(keras.layers.GRU(4, reset_after=False))], "reset_after"),
        ([built(keras.layers.LSTM(4, go_backwards=True))], "go_backwards"),
        ([keras.layers.LSTM(4)], "unbuilt"),
        ([lstm, built(keras.layers.LSTM(4), 5)], "reads 5 features"),
        ([lstm, built(keras.layers.LSTM(4, activation="relu"), 4)], "relu"),
    ]
    for layers, match in cases:
        with pytest.raises(ValueError, match=match):
            GatedFeedbackRNN.from_keras_stack(layers)
    for name in ("units", "unit_type", "activation", "use_bias"):
        with pytest.raises(ValueError, match=f"takes `{name}`"):
            GatedFeedbackRNN.from_keras_stack([lstm], **{name: 4})


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
@pytest.mark.parametrize(
    "feedback,gate_inputs",
    [(True, "all_layers"), (True, "own_layer"), (False, "all_layers")],
)
def test_cell_in_keras_rnn_equals_fused_layer(unit_type, feedback, gate_inputs):
    x = make_inputs()
    mask = np.ones(x.shape[:2], dtype=bool)
    mask[0, 3:] = False
    mask[2, :2] = False
    layer = GatedFeedbackRNN(
        4,
        num_layers=3,
        unit_type=unit_type,
        feedback=feedback,
        gate_inputs=gate_inputs,
        return_sequences=True,
        return_state=True,
    )
    cell = GatedFeedbackCell(
        4,
        num_layers=3,
        unit_type=unit_type,
        feedback=feedback,
        gate_inputs=gate_inputs,
    )
    plain = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    layer.build(x.shape)
    plain.build(x.shape)
    randomize(layer)
    plain.set_weights(layer.get_weights())
    for m in (None, mask):
        fused = run_layer(layer, x, mask=m)
        reference = run_layer(plain, x, mask=m)
        if m is not None and keras.backend.backend() == "jax":
            # At a masked step Keras' JAX loop outputs the cell's FIRST
            # state (h^1), not the previous output: documented on the cell.
            # The layer carries the real output (test_masking checks it
            # against the NumPy reference). Here: every unmasked output,
            # and then every state, are the same.
            np.testing.assert_allclose(fused[0][m], reference[0][m], atol=1e-6)
            fused, reference = fused[1:], reference[1:]
        for a, b in zip(fused, reference):
            np.testing.assert_allclose(a, b, atol=1e-6)

    # The fused loop's gradients (on TensorFlow through its own gradient of
    # the step's matmuls) equal autodiff of the plain step's.
    def loss(out):
        return keras.ops.sum(out[0] ** 2) + keras.ops.sum(out[-1])

    fused = layer_checks.gradients(layer, loss, x, training=True)
    reference = layer_checks.gradients(plain, loss, x, training=True)
    assert len(fused) == len(reference) == len(layer.trainable_variables)
    for a, b in zip(fused, reference):
        assert a is not None and np.any(a)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("feedback", [True, False])
def test_training_weights_carry_the_transposes(feedback):
    """Training on TensorFlow, the loop's matmuls get the pre-transposed
    gradient: `fuse_weights(..., transposed=True)` holds `W^T` for the input
    projections of layers 2..L (layer 1 is projected before the loop) and
    for the recurrent reads; elsewhere (other backends, inference) None."""
    cell = GatedFeedbackCell((6, 3, 5), num_layers=3, feedback=feedback)
    cell.build((None, 2))
    on_tf = keras.backend.backend() == "tensorflow"
    weights = gated_feedback_loops.fuse_weights(
        cell.layout, cell.weight_lists(), transposed=True
    )
    assert weights.input_kernels_t[0] is None
    for kernel, kernel_t in zip(
        weights.input_kernels[1:], weights.input_kernels_t[1:]
    ):
        if on_tf:
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(kernel_t),
                keras.ops.convert_to_numpy(kernel).T,
            )
        else:
            assert kernel_t is None
    inference = gated_feedback_loops.fuse_weights(
        cell.layout, cell.weight_lists()
    )
    assert all(k is None for k in inference.input_kernels_t)
    assert all(k is None for k in inference.recurrent_kernels_t)


@layer_checks.tensorflow_only(
    "the gradient of the reloaded SavedModel beside the TensorFlow model's"
)
def test_gradients_of_a_reloaded_saved_model(tmp_path):
    """A SavedModel keeps no custom gradient: the exported (inference)
    step uses plain matmuls, so gradients of the reloaded `serve` work and
    equal the Keras model's."""
    import tensorflow as tf

    model = keras.Sequential(
        [keras.Input((5, 3)), GatedFeedbackRNN(4, 2), keras.layers.Dense(1)]
    )
    randomize(model.layers[0])
    path = str(tmp_path / "exported")
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)
    x = tf.constant(make_inputs(steps=5, features=3))
    got = []
    for fn in (reloaded.serve, model):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        got.append(tape.gradient(y, x).numpy())
    assert np.any(got[1])
    np.testing.assert_allclose(got[0], got[1], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@layer_checks.TF_JIT_STEP
@pytest.mark.parametrize("unit_type", UNIT_TYPES)
@pytest.mark.parametrize(
    "units,form",
    [
        (4, {}),
        (4, {"gate_inputs": "own_layer"}),
        ((6, 3, 5), {}),
        ((6, 3, 5), {"feedback": False}),
    ],
)
def test_gradients_equal_in_tf_function_and_xla(unit_type, units, form):
    """Inside a `tf.function`, with and without the XLA step, the fused
    loop's gradients equal the plain step's in `keras.layers.RNN` (every
    gate form, layers of equal and of different sizes)."""
    import tensorflow as tf

    x = make_inputs()
    cell = GatedFeedbackCell(units, num_layers=3, unit_type=unit_type, **form)
    plain = keras.layers.RNN(cell, return_sequences=True)
    plain.build(x.shape)
    randomize(plain)
    expected = None
    for layer in (
        plain,
        GatedFeedbackRNN(units, 3, unit_type, return_sequences=True, **form),
        GatedFeedbackRNN(
            units,
            3,
            unit_type,
            return_sequences=True,
            jit_compile=True,
            **form,
        ),
    ):
        layer.build(x.shape)
        layer.set_weights(plain.get_weights())

        @tf.function
        def grads(layer=layer):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.sin(layer(x, training=True)))
            return tape.gradient(loss, layer.trainable_variables)

        got = [g.numpy() for g in grads()]
        if expected is None:
            expected = got
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------
# The RNN contract
# --------------------------------------------------------------------------
@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_masking(unit_type):
    """Padded steps leave every layer's state untouched."""
    x = make_inputs(steps=7)
    mask = np.ones(x.shape[:2], dtype=bool)
    mask[0, 4:] = False  # right padding
    mask[1, :3] = False  # left padding
    mask[2, 2] = False  # a hole
    layer = GatedFeedbackRNN(
        4,
        num_layers=2,
        unit_type=unit_type,
        return_sequences=True,
        return_state=True,
    )
    layer.build(x.shape)
    weights = randomize(layer)
    got = run_layer(layer, x, mask=mask)
    expected, states = numpy_gf_rnn(
        weights, x, [4, 4], unit_type, True, mask=mask
    )
    np.testing.assert_allclose(got[0], expected, atol=1e-5)
    for g, e in zip(got[1:], states):
        np.testing.assert_allclose(g, e, atol=1e-5)
    # Right padding: final states equal those of the truncated sequence.
    short = run_layer(layer, x[:1, :4])
    for g, s in zip(got[1:], short[1:]):
        np.testing.assert_allclose(g[:1], s, atol=1e-6)


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
@pytest.mark.parametrize("num_layers", [1, 3])
@pytest.mark.parametrize("output", ["top", "concat"])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_post_padded_batch_equals_unpadded(
    unit_type, num_layers, output, return_sequences, go_backwards
):
    """A post-padded row gives exactly its unpadded results: the padded steps
    repeat the last valid output and keep every state (on every backend;
    Keras' JAX loop takes the first state for the previous output)."""
    layer = GatedFeedbackRNN(
        4,
        num_layers=num_layers,
        unit_type=unit_type,
        output=output,
        return_sequences=return_sequences,
        go_backwards=go_backwards,
        return_state=True,
    )
    x = make_inputs(batch=2, steps=5, features=3)
    x[1, 3:] = 0.0
    inputs = keras.Input((None, 3))
    model = keras.Model(inputs, layer(keras.layers.Masking(0.0)(inputs)))
    padded = [keras.ops.convert_to_numpy(t)[1:] for t in model(x)]
    unpadded = [keras.ops.convert_to_numpy(t) for t in model(x[1:, :3])]
    if return_sequences:
        # Backwards, the two padded steps come first and output zeros.
        steps = slice(2, None) if go_backwards else slice(0, 3)
        if go_backwards:
            np.testing.assert_array_equal(padded[0][:, :2], 0.0)
        padded[0] = padded[0][:, steps]
    assert len(padded) == len(unpadded) == 1 + len(layer.cell.state_size)
    for got, expected in zip(padded, unpadded):
        np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_nan_padding_reaches_neither_outputs_nor_gradients(unit_type):
    """Masked steps may hold anything: NaN padding gives the outputs and
    the (finite) gradients of zero padding."""
    x = make_inputs()
    mask = np.ones(x.shape[:2], bool)
    mask[0, 3:] = False
    mask[2, :2] = False
    layer = GatedFeedbackRNN([4, 3], unit_type=unit_type, return_sequences=True)
    layer.build(x.shape)
    randomize(layer)
    results = []
    for padding in (0.0, np.nan, np.inf):
        padded = np.where(mask[..., None], x, padding).astype("float32")
        out = run_layer(layer, padded, mask=mask)
        grads = layer_checks.gradients(layer, keras.ops.sum, padded, mask=mask)
        assert all(np.isfinite(g).all() for g in grads)
        results.append((out, grads))
    for out, grads in results[1:]:
        np.testing.assert_array_equal(out, results[0][0])
        for g, g0 in zip(grads, results[0][1]):
            np.testing.assert_array_equal(g, g0)


@pytest.mark.parametrize("layer_class", ["GatedFeedbackRNN", "ClockworkRNN"])
@pytest.mark.parametrize("mask_shape", [(2, 4), (2, 5, 1), (3, 5)])
def test_a_mask_of_the_wrong_shape_names_the_mask_and_both_shapes(
    layer_class, mask_shape
):
    kwargs = {"num_modules": 2} if layer_class == "ClockworkRNN" else {}
    layer = getattr(keras_gfrnn, layer_class)(4, **kwargs)
    x = np.zeros((2, 5, 3), dtype="float32")
    mask = np.ones(mask_shape, dtype=bool)
    expected = (
        f"{layer_class} expects a mask of shape (batch, timesteps) = (2, 5) "
        f"for inputs of shape (2, 5, 3). Received: mask.shape={mask_shape}"
    )
    with pytest.raises(ValueError) as info:
        layer(x, mask=mask)
    assert expected in str(info.value)
    assert layer(x, mask=np.ones((2, 5), dtype=bool)).shape == (2, 4)


def test_masking_layer_and_embedding():
    tokens = np.array([[3, 5, 2, 0, 0], [1, 4, 4, 2, 7]])
    embedding = keras.layers.Embedding(8, 6, mask_zero=True)
    layer = GatedFeedbackRNN(4, num_layers=2, unit_type="gru")
    model = keras.Sequential(
        [keras.Input((None,), dtype="int32"), embedding, layer]
    )
    full = keras.ops.convert_to_numpy(model(tokens))
    trimmed = keras.ops.convert_to_numpy(model(tokens[:1, :3]))
    np.testing.assert_allclose(full[:1], trimmed, atol=1e-6)

    layer = GatedFeedbackRNN(4, num_layers=2, unit_type="gru")
    x = make_inputs(batch=2, steps=5)
    x[0, 3:] = 0.0
    masked = keras.Sequential(
        [keras.Input((None, 5)), keras.layers.Masking(0.0), layer]
    )
    out = keras.ops.convert_to_numpy(masked(x))
    np.testing.assert_allclose(
        out[:1], keras.ops.convert_to_numpy(layer(x[:1, :3])), atol=1e-6
    )


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_go_backwards(unit_type):
    x = make_inputs()
    layer = GatedFeedbackRNN(
        4,
        num_layers=2,
        unit_type=unit_type,
        go_backwards=True,
        return_sequences=True,
    )
    layer.build(x.shape)
    weights = randomize(layer)
    expected, _ = numpy_gf_rnn(
        weights, x, [4, 4], unit_type, True, go_backwards=True
    )
    np.testing.assert_allclose(run_layer(layer, x), expected, atol=1e-5)


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_pass_initial_state(unit_type):
    x = make_inputs()
    layer = GatedFeedbackRNN([4, 3], unit_type=unit_type, return_state=True)
    layer.build(x.shape)
    weights = randomize(layer)
    rng = np.random.default_rng(5)
    init = [
        rng.normal(size=(3, n)).astype("float32") for n in layer.cell.state_size
    ]
    got = run_layer(layer, x, initial_state=init)
    expected, states = numpy_gf_rnn(
        weights, x, [4, 3], unit_type, True, initial_state=init
    )
    np.testing.assert_allclose(got[0], expected[:, -1], atol=1e-5)
    for g, e in zip(got[1:], states):
        np.testing.assert_allclose(g, e, atol=1e-5)


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_return_state_order(unit_type):
    x = make_inputs()
    layer = GatedFeedbackRNN([4, 3, 2], unit_type=unit_type, return_state=True)
    out = layer(x)
    per_layer = [4, 3, 2]
    expected = per_layer * (2 if unit_type == "lstm" else 1)
    assert [s.shape[-1] for s in out[1:]] == expected
    # The top layer's h is the output (output="top").
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out[0]),
        keras.ops.convert_to_numpy(out[3]),
    )


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_statefulness(unit_type):
    x = make_inputs(batch=2, steps=8)
    layer = GatedFeedbackRNN(
        4,
        num_layers=2,
        unit_type=unit_type,
        stateful=True,
        return_sequences=True,
    )
    layer.build(x.shape)
    weights = randomize(layer)
    first = run_layer(layer, x[:, :5])
    second = run_layer(layer, x[:, 5:])
    expected, _ = numpy_gf_rnn(weights, x, [4, 4], unit_type, True)
    np.testing.assert_allclose(
        np.concatenate([first, second], axis=1), expected, atol=1e-5
    )
    layer.reset_states()
    np.testing.assert_allclose(run_layer(layer, x[:, :5]), first, atol=1e-6)
    for state in layer.states:
        assert np.any(keras.ops.convert_to_numpy(state) != 0)
    layer.reset_state()
    for state in layer.states:
        assert not np.any(keras.ops.convert_to_numpy(state))


@pytest.mark.slow
def test_stateful_model_fit_and_predict():
    model = keras.Sequential(
        [
            keras.Input(batch_shape=(4, 5, 3)),
            GatedFeedbackRNN(6, num_layers=2, unit_type="gru", stateful=True),
            keras.layers.Dense(1),
        ]
    )
    model.compile("adam", "mse")
    x = np.random.rand(8, 5, 3).astype("float32")
    model.fit(
        x, np.ones((8, 1)), batch_size=4, epochs=1, shuffle=False, verbose=0
    )
    model.layers[0].reset_states()
    assert model.predict(x, batch_size=4, verbose=0).shape == (8, 1)


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_bidirectional(unit_type):
    x = make_inputs()
    forward = GatedFeedbackRNN(
        4, num_layers=2, unit_type=unit_type, return_sequences=True
    )
    bidi = keras.layers.Bidirectional(forward)
    out = run_layer(bidi, x)
    assert out.shape == (3, 6, 8)
    assert bidi.backward_layer.go_backwards
    fwd = run_layer(bidi.forward_layer, x)
    bwd = run_layer(bidi.backward_layer, x)[:, ::-1]
    np.testing.assert_allclose(out, np.concatenate([fwd, bwd], -1), atol=1e-6)

    stateful = keras.layers.Bidirectional(
        GatedFeedbackRNN(
            4, num_layers=2, unit_type=unit_type, return_state=True
        )
    )
    outputs = stateful(x)
    n_states = 2 * len(forward.cell.state_size)
    assert len(outputs) == 1 + n_states


def test_time_distributed():
    x = np.random.rand(2, 3, 5, 4).astype("float32")
    layer = GatedFeedbackRNN(6, num_layers=2, unit_type="lstm")
    wrapped = keras.layers.TimeDistributed(layer)
    out = run_layer(wrapped, x)
    assert out.shape == (2, 3, 6)
    np.testing.assert_allclose(out[:, 1], run_layer(layer, x[:, 1]), atol=1e-6)


def test_unroll_and_none_time_dimension():
    x = make_inputs()
    rolled = GatedFeedbackRNN(4, num_layers=2, return_sequences=True)
    unrolled = GatedFeedbackRNN(
        4, num_layers=2, return_sequences=True, unroll=True
    )
    rolled.build(x.shape)
    unrolled.build(x.shape)
    randomize(rolled)
    unrolled.set_weights(rolled.get_weights())
    np.testing.assert_allclose(
        run_layer(rolled, x), run_layer(unrolled, x), atol=1e-6
    )
    model = keras.Sequential([keras.Input((None, 5)), rolled])
    for steps in (2, 9):
        assert model(make_inputs(steps=steps)).shape == (3, steps, 4)


def test_dropout():
    x = make_inputs(batch=4, steps=5)
    layer = GatedFeedbackRNN(
        8, num_layers=3, dropout=0.5, recurrent_dropout=0.3, seed=7
    )
    inference = run_layer(layer, x)
    np.testing.assert_allclose(inference, run_layer(layer, x))
    train_a = run_layer(layer, x, training=True)
    train_b = run_layer(layer, x, training=True)
    assert not np.allclose(train_a, inference)
    assert not np.allclose(train_a, train_b)  # fresh masks each call
    # The seed makes the masks reproducible.
    twin = GatedFeedbackRNN(
        8, num_layers=3, dropout=0.5, recurrent_dropout=0.3, seed=7
    )
    twin.build(x.shape)
    twin.set_weights(layer.get_weights())
    first = GatedFeedbackRNN(
        8, num_layers=3, dropout=0.5, recurrent_dropout=0.3, seed=7
    )
    first.build(x.shape)
    first.set_weights(layer.get_weights())
    np.testing.assert_allclose(
        run_layer(twin, x, training=True), run_layer(first, x, training=True)
    )
    plain = GatedFeedbackRNN(8, num_layers=3)
    plain.build(x.shape)
    plain.set_weights(layer.get_weights())
    np.testing.assert_allclose(run_layer(plain, x), inference, atol=1e-6)
    # Gradients flow through both dropout paths.
    grads = layer_checks.gradients(
        layer, lambda out: keras.ops.sum(out**2), x, training=True
    )
    assert len(grads) == len(layer.trainable_variables) > 0
    assert all(g is not None and np.any(g) for g in grads)


def test_dropout_mask_is_shared_over_time():
    """One input mask per sequence: constant inputs see the same mask."""
    x = np.ones((2, 4, 6), dtype="float32")
    layer = GatedFeedbackRNN(
        3, unit_type="tanh", dropout=0.5, seed=3, return_sequences=True
    )
    layer.build(x.shape)
    w = randomize(layer)
    # Zero the recurrence so each step depends only on its (masked) input.
    layer.cell.feedback_kernels[0].assign(np.zeros((3, 3)))
    layer.cell.gate_recurrent_kernels[0].assign(np.zeros((3, 1)))
    out = run_layer(layer, x, training=True)
    np.testing.assert_allclose(out[:, 0], out[:, 3], atol=1e-6)
    assert w  # randomized


# The layer's paths to its dropout: the fused loop (plain, masked, from an
# initial state, stateful, XLA-compiled step) and the cell alone in
# keras.layers.RNN (whose masks Keras' own loop asks for before it runs).
DROPOUT_PATHS = [
    "plain",
    "mask",
    "initial_state",
    "stateful",
    pytest.param("xla", marks=layer_checks.TF_JIT_STEP),
    "keras_rnn",
]


def make_dropout_layer(path, units, seed=None, **options):
    options = dict(seed=seed, **options)
    if path == "keras_rnn":
        cell = GatedFeedbackCell(units, **options)
        return keras.layers.RNN(cell, return_sequences=True)
    return GatedFeedbackRNN(
        units,
        return_sequences=True,
        stateful=path == "stateful",
        jit_compile=path == "xla",
        **options,
    )


def dropout_call(layer, path, x, training=True):
    kwargs = {}
    if path == "mask":
        kwargs["mask"] = np.ones(x.shape[:2], bool)
    if path == "initial_state":
        kwargs["initial_state"] = [
            np.zeros((x.shape[0], size), "float32")
            for size in layer.cell.state_size
        ]
    if path == "stateful":
        layer.reset_states()
    return run_layer(layer, x, training=training, **kwargs)


@pytest.mark.parametrize("path", DROPOUT_PATHS)
@pytest.mark.parametrize("recurrent", [False, True], ids=["input", "recurrent"])
def test_one_dropout_mask_per_sequence(path, recurrent):
    """Issue 26.1: one linear tanh layer, identity input kernel, on ones,
    every gate at 0.5: its outputs are the input mask, or `h_t = 1 + 0.5 r
    h_{t-1}` with r the recurrent mask (identity feedback kernel). The mask
    recovered is the same at every step and new at every training call, on
    every path (the cell in keras.layers.RNN crashed in JAX's `fit`)."""
    units = 8
    rates = {"recurrent_dropout": 0.5} if recurrent else {"dropout": 0.5}
    layer = make_dropout_layer(
        path,
        units,
        num_layers=1,
        unit_type="tanh",
        activation="linear",
        **rates,
    )
    x = np.ones((16, 5, units), "float32")
    layer.build(x.shape)
    for w in layer.weights:
        w.assign(np.zeros(w.shape))
    cell = layer.cell
    cell.kernels[0].assign(np.eye(units))
    cell.feedback_kernels[0].assign(np.eye(units) * float(recurrent))

    def run():
        return dropout_call(layer, path, x)

    if recurrent:
        layer_checks.assert_one_recurrent_mask_per_sequence(run, 0.5, gain=0.5)
    else:
        layer_checks.assert_one_input_mask_per_sequence(run, rate=0.5)


@pytest.mark.parametrize("unit_type", ["gru", "lstm"])
def test_dropout_is_the_same_on_every_path(unit_type):
    """With one seed every path draws the same masks (`cell.dropout_masks`'
    order), so the cell alone in keras.layers.RNN trains with the layer's
    masks; inference draws nothing (the seed generator stays)."""
    x = make_inputs(batch=4, steps=6)
    results = {}
    paths = [
        p if isinstance(p, str) else p.values[0]
        for p in DROPOUT_PATHS
        if isinstance(p, str) or layer_checks.BACKEND == "tensorflow"
    ]
    for path in paths:
        layer = make_dropout_layer(
            path,
            (5, 4),
            seed=9,
            num_layers=2,
            unit_type=unit_type,
            dropout=0.3,
            recurrent_dropout=0.4,
        )
        layer.build(x.shape)
        randomize(layer, seed=4)
        results[path] = layer_checks.training_outputs_drawn_only_in_training(
            layer,
            lambda training: dropout_call(layer, path, x, training),
            keras_rnn=path == "keras_rnn",
        )
    for path, outputs in results.items():
        np.testing.assert_allclose(outputs, results["plain"], atol=1e-5)


@pytest.mark.parametrize("stateful", [False, True])
def test_fit_with_dropout_and_recurrent_dropout(stateful):
    """`fit` with both dropouts trains on every backend, the layer and the
    cell alone in keras.layers.RNN (which raised UnexpectedTracerError on
    JAX), stateful included; each step draws new masks."""
    x = make_inputs(batch=4, steps=6)
    y = np.random.default_rng(3).normal(size=(4, 4)).astype("float32")
    options = dict(num_layers=2, dropout=0.3, recurrent_dropout=0.3, seed=2)
    for rnn in (
        GatedFeedbackRNN(4, stateful=stateful, **options),
        keras.layers.RNN(GatedFeedbackCell(4, **options), stateful=stateful),
    ):
        model = keras.Sequential([keras.Input((6, 5), batch_size=4), rnn])
        layer_checks.assert_fit_with_dropout(model, x, y)


def test_a_cell_on_its_own_draws_new_masks_at_each_training_call():
    cell = GatedFeedbackCell(4, num_layers=2, dropout=0.5, seed=1)
    x = np.ones((6, 3), "float32")
    states = cell.get_initial_state(6)
    first = run_layer(cell, x, states=states, training=True)[0]
    second = run_layer(cell, x, states=states, training=True)[0]
    inference = run_layer(cell, x, states=states)[0]
    assert not np.allclose(first, second)
    assert not np.allclose(first, inference)


def test_initializers_regularizers_constraints():
    layer = GatedFeedbackRNN(
        4,
        num_layers=2,
        unit_type="lstm",
        kernel_initializer="ones",
        recurrent_initializer="zeros",
        bias_initializer="zeros",
        kernel_regularizer="l2",
        recurrent_regularizer="l1",
        bias_regularizer="l2",
        activity_regularizer="l2",
        kernel_constraint="non_neg",
        recurrent_constraint="max_norm",
        bias_constraint="unit_norm",
    )
    x = make_inputs()
    layer(x)
    cell = layer.cell
    assert np.all(cell.kernels[0].numpy() == 1)
    assert np.all(cell.gate_kernels[1].numpy() == 1)
    assert not np.any(cell.feedback_kernels[0].numpy())
    bias = cell.biases[0].numpy()
    np.testing.assert_array_equal(bias[4:8], 1.0)  # unit_forget_bias
    np.testing.assert_array_equal(np.delete(bias, range(4, 8)), 0.0)
    # kernel (2) + gate_kernel (2) + recurrent (2) + feedback (2)
    # + gate_recurrent (2) + bias (2) + gate_bias (2) + activity (1)
    assert len(layer.losses) == 15
    for w in cell.kernels + cell.gate_kernels:
        assert w.constraint is not None
    for w in cell.recurrent_kernels + cell.feedback_kernels:
        assert w.constraint is not None
    no_forget = GatedFeedbackRNN(4, unit_forget_bias=False)
    no_forget(x)
    assert not np.any(no_forget.cell.biases[0].numpy())


def test_activations():
    x = make_inputs()
    layer = GatedFeedbackRNN(
        4,
        num_layers=2,
        unit_type="tanh",
        activation="relu",
        return_sequences=True,
    )
    out = run_layer(layer, x)
    assert np.all(out >= 0)
    assert layer.activation is keras.activations.relu
    assert (
        GatedFeedbackRNN(
            4, recurrent_activation="hard_sigmoid"
        ).recurrent_activation
        is keras.activations.hard_sigmoid
    )


# --------------------------------------------------------------------------
# Shared layer checks
# --------------------------------------------------------------------------
@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_basics(unit_type):
    def make():
        return GatedFeedbackRNN(
            [5, 4],
            unit_type=unit_type,
            output="concat",
            return_sequences=True,
            return_state=True,
        )

    x = make_inputs()
    layer_checks.assert_symbolic_matches_eager(make, x)
    layer = make()
    clone = layer_checks.assert_config_round_trip(layer)
    assert clone.units == [5, 4] and clone.output_mode == "concat"
    assert layer.layer_units == (5, 4)
    layer_checks.assert_fit_lowers_loss(
        GatedFeedbackRNN(6, num_layers=2, unit_type=unit_type),
        x,
        np.ones((3, 2), dtype="float32"),
    )


def test_serialization_of_every_argument():
    layer = GatedFeedbackRNN(
        7,
        num_layers=2,
        unit_type="gru",
        feedback=False,
        gate_inputs="own_layer",
        output="concat",
        activation="relu",
        recurrent_activation="hard_sigmoid",
        use_bias=False,
        kernel_initializer="he_normal",
        recurrent_initializer="glorot_normal",
        bias_initializer="ones",
        unit_forget_bias=False,
        kernel_regularizer="l1",
        recurrent_regularizer="l2",
        bias_regularizer=keras.regularizers.L1L2(0.01, 0.02),
        activity_regularizer="l2",
        kernel_constraint="non_neg",
        recurrent_constraint="max_norm",
        bias_constraint="unit_norm",
        dropout=0.1,
        recurrent_dropout=0.2,
        seed=11,
        return_sequences=True,
        return_state=True,
        go_backwards=True,
        stateful=True,
        unroll=True,
        jit_compile=True,
        name="gf",
    )
    clone = layer_checks.assert_config_round_trip(layer)
    for name in (
        "units",
        "num_layers",
        "unit_type",
        "feedback",
        "gate_inputs",
        "output_mode",
        "use_bias",
        "unit_forget_bias",
        "dropout",
        "recurrent_dropout",
        "seed",
        "return_sequences",
        "return_state",
        "go_backwards",
        "stateful",
        "unroll",
        "jit_compile",
    ):
        assert getattr(clone, name) == getattr(layer, name), name
    assert clone.name == "gf"


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    x = make_inputs()

    def make():
        return GatedFeedbackRNN(
            4, num_layers=3, unit_type="lstm", return_sequences=True
        )

    layer_checks.assert_mixed_precision(
        make, x, policy, atol=2e-2 if policy == "mixed_bfloat16" else 5e-3
    )


# --------------------------------------------------------------------------
# Saving and export
# --------------------------------------------------------------------------
def _model(unit_type, feedback):
    inputs = keras.Input((None, 5))
    x = GatedFeedbackRNN(
        6,
        num_layers=3,
        unit_type=unit_type,
        feedback=feedback,
        return_sequences=True,
    )(inputs)
    x = GatedFeedbackRNN(
        [4, 3], unit_type=unit_type, gate_inputs="own_layer", output="concat"
    )(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


@pytest.mark.slow
@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_saving(tmp_path, unit_type):
    model = _model(unit_type, True)
    rng = np.random.default_rng(0)  # every weight non-zero (b_rh too)
    model.set_weights(
        [rng.uniform(-0.5, 0.5, w.shape) for w in model.get_weights()]
    )
    x = make_inputs()
    expected = model.predict(x, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects needed
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    other = make_inputs(batch=5, steps=9, seed=3)
    np.testing.assert_array_equal(
        loaded.predict(other, verbose=0), model.predict(other, verbose=0)
    )


DATA = os.path.join(os.path.dirname(__file__), "data")


def test_loads_a_model_saved_by_version_0_1_0():
    """A .keras file from keras_gfrnn 0.1.0 (no `gate_inputs` in its config,
    no GRU `recurrent_bias_{j}`) loads in the form it was saved in (gates
    read only their own layer, b_rh = 0) and predicts what it predicted.

    The file was written at commit ea439c9 by:

        keras.utils.set_random_seed(0)
        inputs = keras.Input((None, 3))
        h = GatedFeedbackRNN([4, 3], unit_type="gru",
                             return_sequences=True)(inputs)
        h = GatedFeedbackRNN(3, num_layers=2, unit_type="lstm")(h)
        model = keras.Model(inputs, keras.layers.Dense(2)(h))
        rng = np.random.default_rng(0)
        model.set_weights([rng.uniform(-0.5, 0.5, w.shape).astype("float32")
                           for w in model.get_weights()])
        x = rng.normal(size=(2, 5, 3)).astype("float32")
        model.save("gf_rnn_0.1.0.keras")
        np.savez("gf_rnn_0.1.0.npz", x=x, y=model.predict(x, verbose=0))
    """
    model = keras.models.load_model(os.path.join(DATA, "gf_rnn_0.1.0.keras"))
    gru, lstm = model.layers[1:3]
    assert gru.gate_inputs == lstm.gate_inputs == "own_layer"
    assert gru.cell.recurrent_kernels[0].shape == (4, 8)
    for b in gru.cell.recurrent_biases:
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(b), 0.0)
    data = np.load(os.path.join(DATA, "gf_rnn_0.1.0.npz"))
    np.testing.assert_allclose(
        model.predict(data["x"], verbose=0), data["y"], atol=1e-6
    )
    # Saved again, it is a current file: gate_inputs and b_rh are in it.
    assert model.layers[1].get_config()["gate_inputs"] == "own_layer"


@pytest.mark.slow
@layer_checks.SAVED_MODEL
@pytest.mark.parametrize(
    "unit_type,feedback", [("lstm", True), ("gru", True), ("tanh", False)]
)
def test_saved_model_export(tmp_path, unit_type, feedback):
    model = _model(unit_type, feedback)
    layer_checks.assert_saved_model_exact(
        model,
        os.path.join(tmp_path, "exported"),
        [
            make_inputs(batch=b, steps=t, seed=b)
            for b, t in ((3, 6), (1, 11), (7, 2))
        ],
    )


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"units": 0}, "units=0"),
        ({"units": -3}, "units=-3"),
        ({"units": 2.5}, "units=2.5"),
        ({"units": []}, r"units=\[\]"),
        ({"units": [4, 0]}, r"units=\[4, 0\]"),
        ({"units": 4, "num_layers": 0}, "num_layers=0"),
        ({"units": [4, 4], "num_layers": 3}, "num_layers=3"),
        ({"units": 4, "unit_type": "rnn"}, "unit_type='rnn'"),
        ({"units": 4, "output": "all"}, "output='all'"),
        ({"units": 4, "gate_inputs": "all"}, "gate_inputs='all'"),
        ({"units": 4, "feedback": "yes"}, "feedback=yes"),
        ({"units": 4, "dropout": 1.0}, "dropout=1.0"),
        ({"units": 4, "dropout": -0.1}, "dropout=-0.1"),
        ({"units": 4, "recurrent_dropout": 1.5}, "recurrent_dropout=1.5"),
        # Unhashable values for a choice get the package's message.
        ({"units": 4, "unit_type": ["lstm"]}, r"unit_type=\['lstm'\]"),
        ({"units": 4, "output": ["top"]}, r"output=\['top'\]"),
        ({"units": 4, "gate_inputs": {}}, "gate_inputs={}"),
        # Non-numeric values.
        ({"units": "4"}, "units='4'"),
        ({"units": 4, "num_layers": 2.0}, "num_layers=2.0"),
        ({"units": 4, "dropout": "0.2"}, "dropout='0.2'"),
        ({"units": 4, "recurrent_dropout": None}, "recurrent_dropout=None"),
        ({"units": 4, "seed": "abc"}, "seed='abc'"),
        ({"units": 4, "seed": 2.5}, "seed=2.5"),
        ({"units": 4, "seed": True}, "seed=True"),
        # Seeds every backend takes (JAX's are uint32).
        ({"units": 4, "seed": -1}, "seed=-1"),
        ({"units": 4, "seed": 2**32}, f"seed={2**32}"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GatedFeedbackRNN(**kwargs)
    with pytest.raises(ValueError, match=match):
        GatedFeedbackCell(**kwargs)


def test_seed_range_is_accepted():
    """Every seed that all backends hold works, up to the largest
    (2**31 - 1: torch's dropout fails past it at run time, so a layer
    saved elsewhere with a larger one would not load there), NumPy
    integers included; one past it is refused by name."""
    from keras_gfrnn._validation import MAX_SEED

    x = make_inputs()
    assert MAX_SEED == 2**31 - 1
    for seed in (None, 0, MAX_SEED, np.int64(7)):
        layer = layer_checks.assert_config_round_trip(
            GatedFeedbackRNN(4, seed=seed, dropout=0.5)
        )
        assert layer.seed == seed
        assert layer(x, training=True).shape == (x.shape[0], 4)
    with pytest.raises(ValueError, match=f"seed={MAX_SEED + 1}"):
        GatedFeedbackRNN(4, seed=MAX_SEED + 1)


def test_number_of_layers_is_capped_before_any_work():
    """The work and weights grow with L**2 (the global gates) to L**3: a
    huge `num_layers` or `units` list fails at once, naming the limit."""
    from keras_gfrnn.gated_feedback_rnn import MAX_LAYERS

    assert MAX_LAYERS >= 3  # the paper's stacks
    cell = GatedFeedbackCell(2, num_layers=MAX_LAYERS)
    assert cell.num_layers == MAX_LAYERS
    assert GatedFeedbackRNN([2] * MAX_LAYERS).num_layers == MAX_LAYERS
    for layers in (MAX_LAYERS + 1, 10**4, 10**9):
        match = f"MAX_LAYERS={MAX_LAYERS}. Received: num_layers={layers}"
        for cls in (GatedFeedbackRNN, GatedFeedbackCell):
            with pytest.raises(ValueError, match=match):
                cls(4, num_layers=layers)
    for layers in (MAX_LAYERS + 1, 10**6):
        match = f"MAX_LAYERS={MAX_LAYERS} .*units=a list of {layers} sizes"
        for cls in (GatedFeedbackRNN, GatedFeedbackCell):
            with pytest.raises(ValueError, match=match):
                cls([4] * layers)


def test_invalid_inputs():
    layer = GatedFeedbackRNN(4, num_layers=2, unit_type="lstm")
    with pytest.raises(ValueError, match=r"inputs.shape=\(2, 5\)"):
        layer(np.zeros((2, 5), dtype="float32"))
    with pytest.raises(ValueError, match="inputs.shape"):
        layer(np.zeros((2, 3, 4, 5), dtype="float32"))
    x = make_inputs()
    layer(x)
    with pytest.raises(ValueError, match="inputs.shape"):
        layer(np.zeros((2, 5), dtype="float32"))
    with pytest.raises(ValueError, match=r"inputs.shape=\(3, 6, 4\)"):
        layer(x[:, :, :4])
    good = [np.zeros((3, 4), dtype="float32")] * 4
    with pytest.raises(ValueError, match="Received: initial_state with 2"):
        layer(x, initial_state=good[:2])
    bad = list(good)
    bad[3] = np.zeros((3, 5), dtype="float32")
    with pytest.raises(ValueError, match=r"initial_state\[3\].shape=\(3, 5\)"):
        layer(x, initial_state=bad)


@pytest.mark.parametrize("unit_type", UNIT_TYPES)
def test_initial_state_as_python_lists(unit_type):
    """Plain nested lists get an error that asks for arrays or tensors;
    the same values as arrays work."""
    x = make_inputs()
    layer = GatedFeedbackRNN([4, 3], unit_type=unit_type)
    layer(x)
    states = [[[0.5] * n] * 3 for n in layer.cell.state_size]
    match = r"arrays or tensors .* Received: initial_state\[0\] of type list"
    with pytest.raises(ValueError, match=match):
        layer(x, initial_state=states)
    out = layer(x, initial_state=[np.array(s, "float32") for s in states])
    assert tuple(out.shape) == (3, 3)


def test_public_api():
    assert keras_gfrnn.__version__
    assert "GatedFeedbackRNN" in keras_gfrnn.__all__
    assert (
        keras.saving.get_registered_object("keras_gfrnn>GatedFeedbackRNN")
        is GatedFeedbackRNN
    )
    assert (
        keras.saving.get_registered_object("keras_gfrnn>GatedFeedbackCell")
        is GatedFeedbackCell
    )


# --------------------------------------------------------------------------
# Property test: any stack shape matches the NumPy reference
# --------------------------------------------------------------------------
@settings(max_examples=12, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    unit_type=st.sampled_from(UNIT_TYPES),
    feedback=st.booleans(),
    output=st.sampled_from(["top", "concat"]),
    gate_inputs=st.sampled_from(GATE_INPUTS),
    batch=st.integers(1, 3),
    steps=st.integers(1, 5),
    features=st.integers(1, 4),
)
def test_property_matches_reference(
    sizes, unit_type, feedback, output, gate_inputs, batch, steps, features
):
    layer = GatedFeedbackRNN(
        sizes,
        unit_type=unit_type,
        feedback=feedback,
        gate_inputs=gate_inputs,
        output=output,
        return_sequences=True,
        return_state=True,
    )
    assert_matches_reference(
        layer,
        make_inputs(batch, steps, features, seed=len(sizes)),
        sizes,
        seed=sum(sizes),
        unit_type=unit_type,
        feedback=feedback,
        output=output,
        gate_inputs=gate_inputs,
    )


# --------------------------------------------------------------------------
# XLA
# --------------------------------------------------------------------------
@pytest.mark.slow
@layer_checks.TF_JIT_STEP
@pytest.mark.parametrize("unit_type", UNIT_TYPES)
@pytest.mark.parametrize("units", [5, [4, 6, 3]])
@pytest.mark.parametrize(
    "feedback,gate_inputs",
    [(True, "all_layers"), (True, "own_layer"), (False, "all_layers")],
)
def test_jit_compile_matches_uncompiled(
    unit_type, units, feedback, gate_inputs
):
    layer_checks.assert_jit_matches(
        lambda jit: GatedFeedbackRNN(
            units,
            num_layers=3,
            unit_type=unit_type,
            feedback=feedback,
            gate_inputs=gate_inputs,
            return_sequences=True,
            jit_compile=jit,
        ),
        make_inputs(),
        ["step"],
        atol=1e-5,
    )


@pytest.mark.slow
def test_jit_compile_with_mask_state_and_fit():
    x = make_inputs()
    mask = np.ones(x.shape[:2], bool)
    mask[0, 3:] = False
    outs = []
    for jit in (False, True):
        keras.utils.set_random_seed(3)
        layer = GatedFeedbackRNN(
            4, num_layers=2, return_state=True, jit_compile=jit
        )
        outs.append(run_layer(layer, x, mask=mask))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, atol=1e-5)
    layer_checks.assert_fit_lowers_loss(
        GatedFeedbackRNN(4, num_layers=2, jit_compile=True),
        x,
        np.ones((x.shape[0], 1), "float32"),
    )


def test_jit_compile_argument():
    assert GatedFeedbackRNN(4).jit_compile == "auto"
    for bad in ("yes", 0, None):
        with pytest.raises(ValueError, match=f"jit_compile={bad!r}"):
            GatedFeedbackRNN(4, jit_compile=bad)
