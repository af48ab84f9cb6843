"""The fused loop of a Gated Feedback RNN: a layout and plain functions.

`Layout(unit_type, layer_units, feedback, gate_inputs)` decides once, from
the configuration, which weights exist, their rows and columns, and what a
step reads (docs/design.md, "The fused loop"). The functions below are
functions of a layout and tensors; `GatedFeedbackCell.call` (the reference
step, on its own in `keras.layers.RNN`) and `GatedFeedbackRNN` (the fused
loop) both run `step`:

- `fuse_weights(layout, weights, transposed)`: the cell's variables in the
  layouts of the loop, once per call (`FusedWeights`);
- `project_inputs(weights, inputs, layer)`: `W^j h^{j-1} + b^j` and the
  global gate logits' input terms, for any leading shape (layer 1 for
  every time step at once);
- `step(layout, activations, weights, projected, states, masks)`: one
  time step of the whole stack;
- `matmul`: `h @ K`, on TensorFlow in training with the gradient that
  reads `K^T` transposed once per call (`matmul_pretransposed`).
"""

import collections
import itertools

import keras
import numpy as np
from keras import ops

from keras_gfrnn._rnn import concat
from keras_gfrnn._rnn import variable_value

# The unit types: the number of weight blocks in `kernel_{j}` (the
# candidate and the gates).
NUM_BLOCKS = {"tanh": 1, "gru": 3, "lstm": 4}

# What the step reads of h*_{t-1} (`Layout.read`):
#   "stacked":    feedback=False: per layer j one matmul of h^j_{t-1} with
#                 [U_.^{j->j} | U^{j->j}] (a plain stack);
#   "all_layers": with feedback, the gates read every layer: one matmul of
#                 h*_{t-1} for every gate term and every global gate logit;
#   "own_layer":  with feedback, the gates read their own layer (or there
#                 are none: tanh): one matmul of h^j_{t-1} per layer for
#                 its gate terms, one of h*_{t-1} for the global gate
#                 logits.
READS = ("stacked", "all_layers", "own_layer")


class Layout:
    """Which weights a GatedFeedbackRNN has and what its step reads,
    decided once from its configuration.

    Args:
        unit_type: `"tanh"`, `"gru"` or `"lstm"`.
        layer_units: The sizes of the L layers.
        feedback: Whether layers feed each other through global gates.
        gate_inputs: `"all_layers"` or `"own_layer"`: what the gates read
            with feedback.

    Attributes:
        read: One of `READS` (above).
        num_blocks: G, the column blocks of `kernel_{j}`.
        gate_widths: The columns of each layer's gates, `(G - 1) H_j`.
        recurrent_rows / feedback_rows: The rows of `recurrent_kernel_{j}`
            and `feedback_kernel_{j}` (S = sum of the sizes, or H_j).
        offsets: Where layer j's units start in h*.
    """

    def __init__(self, unit_type, layer_units, feedback, gate_inputs):
        self.unit_type = unit_type
        self.layer_units = tuple(layer_units)
        self.num_layers = len(self.layer_units)
        self.total_units = sum(self.layer_units)
        self.num_blocks = NUM_BLOCKS[unit_type]
        self.feedback = feedback
        if not feedback:
            self.read = "stacked"
        elif self.num_blocks > 1 and gate_inputs == "all_layers":
            self.read = "all_layers"
        else:
            self.read = "own_layer"
        self.gate_widths = [(self.num_blocks - 1) * h for h in layer_units]
        self.offsets = [
            sum(self.layer_units[:j]) for j in range(self.num_layers)
        ]
        every = self.total_units
        reads_all = self.read == "all_layers"
        self.recurrent_rows = [every if reads_all else h for h in layer_units]
        self.feedback_rows = [every if feedback else h for h in layer_units]
        # Split points of the summed read of h*_{t-1} ("all_layers"): every
        # layer's gate terms, then the global gate logits.
        self.summed_splits = (
            list(itertools.accumulate(self.gate_widths)) if reads_all else []
        )


# The weights in the layouts of the loop (`fuse_weights`). Lists hold one
# tensor per layer; `_t`: transposes for TensorFlow's training gradient
# (`matmul_pretransposed`), or None in their place. The last five are only
# for feedback.
FusedWeights = collections.namedtuple(
    "FusedWeights",
    [
        "input_kernels",
        "input_biases",
        "input_kernels_t",
        "recurrent_kernels",
        "recurrent_biases",
        "recurrent_kernels_t",
        "summed_kernel",
        "summed_kernel_t",
        "candidate_kernels",
        "candidate_kernels_t",
        "spread",
    ],
    defaults=(None,) * 5,
)
# The cell's variables, as lists of one per layer (empty where a weight
# does not exist: see `GatedFeedbackCell.build`).
CellWeights = collections.namedtuple(
    "CellWeights",
    [
        "kernels",
        "recurrent_kernels",
        "feedback_kernels",
        "gate_kernels",
        "gate_recurrent_kernels",
        "biases",
        "recurrent_biases",
        "gate_biases",
    ],
)
# What layer j reads from h*_{t-1} at one step, with feedback.
RecurrentRead = collections.namedtuple(
    "RecurrentRead", ["gate_term", "global_gate_logits", "hidden"]
)
# The activations of the step: the candidate's and the gates'.
Activations = collections.namedtuple(
    "Activations", ["activation", "recurrent_activation"]
)
# One sequence's dropout masks (`GatedFeedbackCell.dropout_masks`):
# `inputs[j]` multiplies layer j's input, `recurrent[i]` h^i_{t-1} in every
# recurrent read; None where there is none.
DropoutMasks = collections.namedtuple("DropoutMasks", ["inputs", "recurrent"])


def matmul(h, kernel, kernel_t=None):
    """`h @ kernel`; with `kernel_t` (training on TensorFlow) through
    `matmul_pretransposed`."""
    if kernel_t is None:
        return ops.matmul(h, kernel)
    return matmul_pretransposed(h, kernel, kernel_t)


def matmul_pretransposed(h, kernel, kernel_t):
    """`h @ kernel` on TensorFlow, with a gradient that reads `kernel_t`.

    The gradient of `h @ W` with respect to `h` is `dy @ W^T`. TensorFlow's
    own gradient multiplies with `transpose_b=True` at every step; here
    `W^T` is transposed once per call (`kernel_t`) and the step's gradient
    is `dy @ W^T` with no transpose, `h^T @ dy` for the kernel (2-D `h`).
    Same numbers as `ops.matmul` (tested); why and how much it gains:
    docs/performance.md. Training only: a SavedModel keeps no custom
    gradient, so the inference step (what `model.export` saves) uses
    `ops.matmul`.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def product(h, kernel):
        def grad(dy):
            return tf.matmul(dy, kernel_t), tf.matmul(h, dy, transpose_a=True)

        return tf.matmul(h, kernel), grad

    return product(h, kernel)


def _split_gates(tensor, width):
    """(the first `width` columns or None when 0, the other columns)."""
    if not width:
        return None, tensor
    gates, rest = ops.split(tensor, [width], axis=-1)
    return gates, rest


def _to_step_order(layout, block, units):
    """LSTM columns [i, f, c, o] reordered to [i, f, o, c]: every layout of
    the loop reads the gates (in `recurrent_kernel`'s order) first, the
    candidate last."""
    if layout.unit_type != "lstm":
        return block
    return ops.concatenate(
        [
            block[..., : 2 * units],
            block[..., 3 * units :],
            block[..., 2 * units : 3 * units],
        ],
        axis=-1,
    )


def fuse_weights(layout, weights, transposed=False, dtype="float32"):
    """The cell's variables (`CellWeights`) in the layouts of the loop, a
    `FusedWeights` of tensors (docs/design.md, "The fused loop"):

    - `input_kernels[j]`: `(d_j, G*H_j [+ L])`, columns `[gates |
      candidate | global gate logits w_g^{.->j}]`; `input_biases[j]` (or
      None); `recurrent_biases[j]`: the GRU's `b_rh` (or None);
    - `recurrent_kernels[j]`: what layer j reads of its own state:
      `[U_.^{j->j} | U^{j->j}]` ("stacked"), `U_.^{j->j}` ("own_layer"
      gates), else None;
    - with feedback, `summed_kernel` `(S, [U_.^{*->1} ... U_.^{*->L} |]
      u_g^{*->1} ... u_g^{*->L})` (the gate terms only when the gates read
      all layers), `candidate_kernels[j] = U^{*->j}` `(S, H_j)`, and
      `spread` `(L, S)` (`g @ spread` repeats `g^{i->j}` over layer i's
      units), in `dtype`.

    With `transposed=True` (TensorFlow only) the `_t` fields hold the
    transposes that the training gradient reads (`matmul_pretransposed`):
    of the recurrent reads and of the input projections of layers 2..L
    (layer 1 is projected before the loop); else None in their place.
    """
    input_kernels, input_biases, recurrent = [], [], []
    for j, units in enumerate(layout.layer_units):
        kernel = _to_step_order(layout, weights.kernels[j], units)
        if layout.feedback:
            kernel = ops.concatenate([kernel, weights.gate_kernels[j]], axis=1)
        input_kernels.append(variable_value(kernel))
        if weights.biases:
            bias = _to_step_order(layout, weights.biases[j], units)
            if layout.feedback:
                bias = ops.concatenate([bias, weights.gate_biases[j]])
            input_biases.append(variable_value(bias))
        else:
            input_biases.append(None)
        if layout.read == "stacked":
            parts = list(weights.recurrent_kernels[j : j + 1])
            parts.append(weights.feedback_kernels[j])
            recurrent.append(variable_value(concat(parts)))
        elif layout.read == "own_layer" and weights.recurrent_kernels:
            recurrent.append(variable_value(weights.recurrent_kernels[j]))
        else:
            recurrent.append(None)
    transposed = transposed and keras.backend.backend() == "tensorflow"

    def transposes(kernels):
        return [
            ops.transpose(k) if transposed and k is not None else None
            for k in kernels
        ]

    fields = {}
    if layout.feedback:
        summed = list(weights.gate_recurrent_kernels)
        if layout.read == "all_layers":
            summed = list(weights.recurrent_kernels) + summed
        summed = variable_value(concat(summed))
        candidates = [variable_value(k) for k in weights.feedback_kernels]
        spread = np.repeat(np.eye(layout.num_layers), layout.layer_units, 1)
        fields = {
            "summed_kernel": summed,
            "summed_kernel_t": transposes([summed])[0],
            "candidate_kernels": candidates,
            "candidate_kernels_t": transposes(candidates),
            "spread": ops.convert_to_tensor(spread, dtype=dtype),
        }
    recurrent_biases = [variable_value(b) for b in weights.recurrent_biases]
    return FusedWeights(
        input_kernels=input_kernels,
        input_biases=input_biases,
        input_kernels_t=[None] + transposes(input_kernels[1:]),
        recurrent_kernels=recurrent,
        recurrent_biases=recurrent_biases or [None] * layout.num_layers,
        recurrent_kernels_t=transposes(recurrent),
        **fields,
    )


def project_inputs(weights, inputs, layer=0):
    """Input projection of `layer` (0-based) for any leading shape:
    `W^j h^{j-1} + b^j`, the global gate logits' input terms
    `w_g^{.->j} h^{j-1} + b_g^{.->j}` last. With the transposed kernel
    where `fuse_weights` made one: only for layers 2..L, which project one
    step's 2-D `h^{j-1}_t` inside the loop."""
    out = matmul(
        inputs, weights.input_kernels[layer], weights.input_kernels_t[layer]
    )
    if weights.input_biases[layer] is not None:
        out = out + weights.input_biases[layer]
    return out


def step(layout, activations, weights, projected, states, masks):
    """One step of the stack given layer 1's projected input.

    `projected` is `project_inputs(weights, x_t)` (its input mask already
    applied), `states` `[h^1..h^L]` (and `[c^1..c^L]` for LSTM), `masks` a
    `DropoutMasks`. Returns `(new_hidden, new_cells)`.
    """
    layers = layout.num_layers
    hidden, cells = states[:layers], states[layers:]
    reads = _recurrent_reads(layout, hidden, weights, masks.recurrent)
    new_hidden, new_cells = [], []
    for j, read in enumerate(reads):
        if j == 0:
            inputs = projected
        else:
            below = new_hidden[-1]
            if masks.inputs[j] is not None:
                below = below * masks.inputs[j]
            inputs = project_inputs(weights, below, layer=j)
        gates, candidate, gated = _pre_activations(
            layout, activations, j, inputs, read, weights
        )
        h, c = _unit_update(
            layout,
            activations,
            gates,
            candidate,
            gated,
            weights.recurrent_biases[j],
            hidden[j],
            cells[j] if cells else None,
        )
        new_hidden.append(h)
        if c is not None:
            new_cells.append(c)
    return new_hidden, new_cells


def _recurrent_reads(layout, hidden, weights, recurrent_masks):
    # Everything that reads h*_{t-1}, from ĥ^i = h^i_{t-1} * (its
    # recurrent dropout mask). "stacked": per layer j one matmul,
    # [U_.^{j->j} ĥ^j | U^{j->j} ĥ^j]. With feedback, per layer j a
    # `RecurrentRead`:
    #   gate_term:          sum_{i=1..L} U_.^{i->j} ĥ^i ("all_layers",
    #                       one matmul of ĥ* for every layer),
    #                       U_.^{j->j} ĥ^j ("own_layer") or None (tanh)
    #   global_gate_logits: sum_{i=1..L} u_g^{i->j} . ĥ^i (column i
    #                       feeds g^{i->j}), in the same matmul of ĥ*
    #   hidden:             ĥ*, for F^j = [g^{1->j} ĥ^1 | ... |
    #                       g^{L->j} ĥ^L] U^{*->j} (`_pre_activations`)
    if recurrent_masks is not None:
        hidden = [h * m for h, m in zip(hidden, recurrent_masks)]
    own = [
        None if k is None else matmul(h, k, k_t)
        for h, k, k_t in zip(
            hidden, weights.recurrent_kernels, weights.recurrent_kernels_t
        )
    ]
    if layout.read == "stacked":
        return own
    hidden = concat(hidden)
    summed = matmul(hidden, weights.summed_kernel, weights.summed_kernel_t)
    if layout.read == "all_layers":
        *own, summed = ops.split(summed, layout.summed_splits, axis=-1)
    logits = ops.split(summed, layout.num_layers, axis=-1)
    return [
        RecurrentRead(gate_term, logit, hidden)
        for gate_term, logit in zip(own, logits)
    ]


def _pre_activations(layout, activations, j, inputs, read, weights):
    # For layer j, given `inputs` = project_inputs(h^{j-1}_t) and its
    # `read` of h*_{t-1} (`_recurrent_reads`):
    #   g^{i->j}_t = sigmoid(w_g^{i->j} h^{j-1}_t + u_g^{i->j} h*_{t-1}
    #                        + b_g^{i->j})
    #   F^j_t = sum_{i=1..L} g^{i->j}_t * (U^{i->j} h^i_{t-1})
    #         = [g^{1->j}_t h^1_{t-1} | ... | g^{L->j}_t h^L_{t-1}] U^{*->j}
    #           ("stacked": U^{j->j} h^j_{t-1})
    #   gates = W_. h^{j-1}_t + b_. + R^j_.   (LSTM i, f, o; GRU z, r)
    # Returns (gates or None for tanh, candidate = W_c h^{j-1}_t + b_c,
    # F^j_t), or F^j_t = None where it is already in the candidate.
    width = layout.gate_widths[j]
    if layout.read == "stacked":
        if layout.unit_type == "gru":  # r multiplies F^j_t alone
            gates, candidate = _split_gates(inputs, width)
            gate_read, gated = _split_gates(read, width)
            return gates + gate_read, candidate, gated
        # The columns of x and of the read line up: add once and split.
        gates, candidate = _split_gates(inputs + read, width)
        return gates, candidate, None
    gates, candidate, logits = ops.split(
        inputs, [width, width + layout.layer_units[j]], axis=-1
    )
    global_gates = activations.recurrent_activation(
        logits + read.global_gate_logits
    )
    scaled = read.hidden * ops.matmul(global_gates, weights.spread)
    gated = matmul(
        scaled, weights.candidate_kernels[j], weights.candidate_kernels_t[j]
    )
    if not width:
        return None, candidate, gated
    return gates + read.gate_term, candidate, gated


def _unit_update(
    layout, activations, gates, candidate, gated, b_rh, h_prev, c_prev
):
    # With F^j_t = `gated` (None: already in `candidate`):
    # tanh: h^j_t = tanh(W h^{j-1}_t + b + F^j_t)
    # gru:  z, r = sigmoid(gates)
    #       h^j_t = z * h^j_{t-1}
    #               + (1 - z) * tanh(W_h h^{j-1}_t + b_h
    #                                + r * (F^j_t + b_rh))
    # lstm: i, f, o = sigmoid(gates)
    #       c^j_t = f * c^j_{t-1} + i * tanh(W_c h^{j-1}_t + b_c + F^j_t)
    #       h^j_t = o * tanh(c^j_t)
    # Returns (h^j_t, c^j_t or None).
    activation = activations.activation
    if layout.unit_type == "gru":
        if b_rh is not None:
            gated = gated + b_rh
        update, reset = ops.split(
            activations.recurrent_activation(gates), 2, -1
        )
        proposal = activation(candidate + reset * gated)
        return update * h_prev + (1.0 - update) * proposal, None
    if gated is not None:
        candidate = candidate + gated
    if layout.unit_type == "tanh":
        return activation(candidate), None
    input_gate, forget_gate, output_gate = ops.split(
        activations.recurrent_activation(gates), 3, axis=-1
    )
    c = forget_gate * c_prev + input_gate * activation(candidate)
    return output_gate * activation(c), c
