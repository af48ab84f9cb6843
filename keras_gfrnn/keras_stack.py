"""A stack of Keras LSTM / GRU / SimpleRNN layers as a GatedFeedbackRNN's
weights (`GatedFeedbackRNN.from_keras_stack`).

`read_keras_stack(layers)` checks a stack and reads its unit type, weights
and shared settings; `stack_weights(cell, stack)` places them in a built
`GatedFeedbackCell`: each layer's own blocks hold the stack's weights,
every cross-layer block and global-gate weight is zero (docs/design.md).
"""

import keras
import numpy as np

# The Keras layer whose stack each unit type extends.
KERAS_LAYERS = {
    "tanh": keras.layers.SimpleRNN,
    "gru": keras.layers.GRU,
    "lstm": keras.layers.LSTM,
}


def read_keras_stack(layers):
    """The unit type, per-layer weights (by name) and shared settings of a
    stack of Keras LSTM / GRU / SimpleRNN layers, checked."""
    if not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(
            "Argument `layers` must be a non-empty list of Keras LSTM, GRU "
            f"or SimpleRNN layers. Received: layers={layers!r}"
        )
    kinds = {
        next((t for t, k in KERAS_LAYERS.items() if isinstance(r, k)), None)
        for r in layers
    }
    if None in kinds or len(kinds) != 1:
        raise ValueError(
            "Argument `layers` must hold layers of one kind: all "
            "keras.layers.LSTM, all GRU or all SimpleRNN. Received: "
            f"{[type(r).__name__ for r in layers]}"
        )
    unit_type = kinds.pop()
    settings = {}
    names = ["activation", "use_bias"]
    if unit_type != "tanh":
        names.append("recurrent_activation")
    for name in names:
        values = [getattr(r, name) for r in layers]
        if any(v != values[0] for v in values):
            shown = [getattr(v, "__name__", v) for v in values]
            raise ValueError(
                f"The layers must share one `{name}`. Received: {shown}"
            )
        settings[name] = values[0]
    weights = []
    for k, rnn in enumerate(layers):
        if unit_type == "gru" and not rnn.reset_after:
            raise ValueError(
                "GRU layers must use `reset_after=True` (Keras' default), "
                f"where r multiplies the recurrent term. Received: "
                f"layers[{k}] with reset_after=False"
            )
        if rnn.go_backwards:
            raise ValueError(
                f"The layers must run forwards. Received: layers[{k}] "
                "with go_backwards=True"
            )
        if not rnn.built:
            raise ValueError(
                f"The layers must be built (called once, or part of a "
                f"built model). Received: layers[{k}] unbuilt"
            )
        values = {
            w.path.split("/")[-1]: keras.ops.convert_to_numpy(w)
            for w in rnn.weights
        }
        reads = values["kernel"].shape[0]
        if k and reads != layers[k - 1].units:
            raise ValueError(
                f"Each layer must read the previous layer's output. "
                f"Received: layers[{k}] reads {reads} features, "
                f"layers[{k - 1}] has {layers[k - 1].units} units"
            )
        weights.append(values)
    return unit_type, weights, settings


def stack_weights(cell, stack):
    """(variable, value) for every variable of the built `cell`: the
    stack's weights in the own-layer blocks, zeros elsewhere."""
    layout = cell.layout
    values = {id(w): np.zeros(w.shape, dtype="float64") for w in cell.weights}
    # With feedback every global gate is recurrent_activation(0): divide
    # U^{j->j} by it so that g^{j->j} U^{j->j} is the stack's matrix.
    scale = 1.0
    if layout.feedback:
        gate = keras.ops.convert_to_numpy(
            cell.recurrent_activation(keras.ops.zeros((1,)))
        )
        scale = float(gate[0])
        if scale == 0.0:
            raise ValueError(
                "`recurrent_activation(0)` must not be 0: the global gates "
                "would switch the feedback off."
            )
    for j, (h, w) in enumerate(zip(layout.layer_units, stack)):
        rec = w["recurrent_kernel"]
        if layout.unit_type == "lstm":  # Keras: [i, f, c, o]
            gates = np.concatenate([rec[:, : 2 * h], rec[:, 3 * h :]], 1)
            candidate = rec[:, 2 * h : 3 * h]
        else:  # GRU [z, r, h]; SimpleRNN [h]
            gates, candidate = rec[:, :-h], rec[:, -h:]
        values[id(cell.kernels[j])] = w["kernel"]
        # Layer j's own rows: its block of h* in a kernel that reads all of
        # h*, else the whole kernel.
        if gates.shape[1]:
            r0 = layout.offsets[j] if layout.read == "all_layers" else 0
            values[id(cell.recurrent_kernels[j])][r0 : r0 + h] = gates
        r0 = layout.offsets[j] if layout.feedback else 0
        values[id(cell.feedback_kernels[j])][r0 : r0 + h] = candidate / scale
        if cell.use_bias:
            bias = w["bias"]
            if layout.unit_type == "gru":  # Keras: rows [input, recurrent]
                bias = bias[0] + np.concatenate([bias[1, : 2 * h], [0.0] * h])
                values[id(cell.recurrent_biases[j])] = w["bias"][1, 2 * h :]
            values[id(cell.biases[j])] = bias
    return [(w, values[id(w)]) for w in cell.weights]
