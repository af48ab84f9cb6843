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

import keras
import numpy as np
from keras import ops

from keras_gfrnn._rnn import concat
from keras_gfrnn._rnn import split
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
        gate_sizes / head_widths: The gates each layer activates at once
            (its unit's gates, then with feedback its L global gates) and
            their total width.
        summed_sizes: Per layer, its columns of the summed read of h*.
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
        layers = self.num_layers
        self.gate_widths = [(self.num_blocks - 1) * h for h in layer_units]
        # The gates of layer j, activated together: the unit's gates (LSTM
        # i, f, o; GRU z, r), then with feedback the L global gates
        # g^{.->j}. Their pre-activations are the first `head_widths[j]`
        # columns of the input projection, the candidate's the last H_j.
        self.gate_sizes = [
            [h] * (self.num_blocks - 1) + ([layers] if feedback else [])
            for h in layer_units
        ]
        self.head_widths = [sum(sizes) for sizes in self.gate_sizes]
        self.offsets = [sum(self.layer_units[:j]) for j in range(layers)]
        every = self.total_units
        reads_all = self.read == "all_layers"
        self.recurrent_rows = [every if reads_all else h for h in layer_units]
        self.feedback_rows = [every if feedback else h for h in layer_units]
        # The columns of the summed read of h*_{t-1}, per layer: its gate
        # terms and global gate logits ("all_layers"), the logits alone
        # ("own_layer").
        self.summed_sizes = self.head_widths if reads_all else [layers] * layers


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
# What layer j reads from h*_{t-1} at one step, with feedback: the
# recurrent terms of its gates' pre-activations (`Layout.gate_sizes`) and
# ĥ*_{t-1}.
RecurrentRead = collections.namedtuple("RecurrentRead", ["head", "hidden"])
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
    `matmul_pretransposed`; on torch, for two tensors of one float32 or
    float64 dtype, `torch.matmul` itself (`keras.ops.matmul` adds three
    casts, each an operator call, to every product)."""
    if kernel_t is not None:
        return matmul_pretransposed(h, kernel, kernel_t)
    if keras.backend.backend() == "torch" and _same_full_float(h, kernel):
        import torch

        return torch.matmul(h, kernel)
    return ops.matmul(h, kernel)


def matmul_add(c, h, kernel, kernel_t=None):
    """`c + h @ kernel` (`matmul`); on torch one `torch.addmm` for 2-D
    tensors of one float32 or float64 dtype."""
    if (
        kernel_t is None
        and keras.backend.backend() == "torch"
        and len(h.shape) == 2
        and _same_full_float(h, kernel)
        and c.dtype == h.dtype
    ):
        import torch

        return torch.addmm(c, h, kernel)
    # The product first: with a bias `c`, TensorFlow's `BiasAdd`, whose
    # gradient is one op.
    return ops.add(matmul(h, kernel, kernel_t), c)


def _same_full_float(a, b):
    import torch

    return a.dtype == b.dtype and a.dtype in (torch.float32, torch.float64)


def step_activations(activation, recurrent_activation):
    """The step's `Activations`. On torch, Keras' `tanh` and `sigmoid` are
    replaced by torch's own (the same function: Keras' adds a conversion,
    an operator call, to every use); any other activation as it is."""
    if keras.backend.backend() != "torch":
        return Activations(activation, recurrent_activation)
    import torch

    native = {
        keras.activations.tanh: torch.tanh,
        keras.activations.sigmoid: torch.sigmoid,
    }
    return Activations(
        native.get(activation, activation),
        native.get(recurrent_activation, recurrent_activation),
    )


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


def _read(value):
    """A weight as a tensor, read once per call (a Keras Variable that a
    loop body multiplies with would be read at every step)."""
    return ops.convert_to_tensor(variable_value(value))


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


def _input_columns(layout, j, block, gate_block):
    """Layer j's input kernel or bias in the step's column order: `[unit
    gates | global gates | candidate]` (`Layout.gate_sizes`)."""
    block = _to_step_order(layout, block, layout.layer_units[j])
    if not layout.feedback:
        return block
    width = layout.gate_widths[j]
    return ops.concatenate(
        [block[..., :width], gate_block, block[..., width:]], axis=-1
    )


def fuse_weights(layout, weights, transposed=False, dtype="float32"):
    """The cell's variables (`CellWeights`) in the layouts of the loop, a
    `FusedWeights` of tensors (docs/design.md, "The fused loop"):

    - `input_kernels[j]`: `(d_j, G*H_j [+ L])`, columns `[gates | global
      gate logits w_g^{.->j} | candidate]`; `input_biases[j]` (or None);
      `recurrent_biases[j]`: the GRU's `b_rh` (or None);
    - `recurrent_kernels[j]`: what layer j reads of its own state:
      `[U_.^{j->j} | U^{j->j}]` ("stacked"), `U_.^{j->j}` ("own_layer"
      gates), else None;
    - with feedback, `summed_kernel`, `(S, ...)`: per layer j `[U_.^{*->j}
      | u_g^{*->j}]` (the gate terms only when the gates read all layers),
      `candidate_kernels[j] = U^{*->j}` `(S, H_j)`, and `spread` `(L, S)`
      (`g @ spread` repeats `g^{i->j}` over layer i's units), in `dtype`.

    With `transposed=True` (TensorFlow only) the `_t` fields hold the
    transposes that the training gradient reads (`matmul_pretransposed`):
    of the recurrent reads and of the input projections of layers 2..L
    (layer 1 is projected before the loop); else None in their place.
    """
    input_kernels, input_biases, recurrent = [], [], []
    for j in range(layout.num_layers):
        gate = weights.gate_kernels[j] if layout.feedback else None
        kernel = _input_columns(layout, j, weights.kernels[j], gate)
        input_kernels.append(_read(kernel))
        if weights.biases:
            gate = weights.gate_biases[j] if layout.feedback else None
            bias = _input_columns(layout, j, weights.biases[j], gate)
            input_biases.append(_read(bias))
        else:
            input_biases.append(None)
        if layout.read == "stacked":
            parts = list(weights.recurrent_kernels[j : j + 1])
            parts.append(weights.feedback_kernels[j])
            recurrent.append(_read(concat(parts)))
        elif layout.read == "own_layer" and weights.recurrent_kernels:
            recurrent.append(_read(weights.recurrent_kernels[j]))
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
            summed = [
                block
                for pair in zip(weights.recurrent_kernels, summed)
                for block in pair
            ]
        summed = _read(concat(summed))
        candidates = [_read(k) for k in weights.feedback_kernels]
        spread = np.repeat(np.eye(layout.num_layers), layout.layer_units, 1)
        fields = {
            "summed_kernel": summed,
            "summed_kernel_t": transposes([summed])[0],
            "candidate_kernels": candidates,
            "candidate_kernels_t": transposes(candidates),
            "spread": ops.convert_to_tensor(spread, dtype=dtype),
        }
    recurrent_biases = [_read(b) for b in weights.recurrent_biases]
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
    `W^j h^{j-1} + b^j`, with the global gate logits' input terms
    `w_g^{.->j} h^{j-1} + b_g^{.->j}` after the unit's gates. With the
    transposed kernel where `fuse_weights` made one: only for layers
    2..L, which project one step's 2-D `h^{j-1}_t` inside the loop."""
    kernel = weights.input_kernels[layer]
    kernel_t = weights.input_kernels_t[layer]
    if weights.input_biases[layer] is None:
        return matmul(inputs, kernel, kernel_t)
    return matmul_add(weights.input_biases[layer], inputs, kernel, kernel_t)


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
        gates, candidate, gated = _gates(
            layout, activations, j, inputs, read, weights
        )
        h, c = _unit_update(
            layout,
            activations,
            gates,
            candidate,
            gated,
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
    #   head:   [gate terms | global gate logits], the gate terms
    #           sum_{i=1..L} U_.^{i->j} ĥ^i ("all_layers": with the logits
    #           sum_{i=1..L} u_g^{i->j} . ĥ^i, column i feeding g^{i->j},
    #           in one matmul of ĥ* for every layer), U_.^{j->j} ĥ^j
    #           ("own_layer": one matmul per layer) or none (tanh)
    #   hidden: ĥ*, for F^j = [g^{1->j} ĥ^1 | ... | g^{L->j} ĥ^L] U^{*->j}
    #           (`_gates`)
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
    summed = split(summed, layout.summed_sizes)
    return [
        RecurrentRead(head if term is None else concat([term, head]), hidden)
        for term, head in zip(own, summed)
    ]


def _gates(layout, activations, j, inputs, read, weights):
    # For layer j, given `inputs` = project_inputs(h^{j-1}_t) and its
    # `read` of h*_{t-1} (`_recurrent_reads`):
    #   g^{i->j}_t = sigmoid(w_g^{i->j} h^{j-1}_t + u_g^{i->j} h*_{t-1}
    #                        + b_g^{i->j})
    #   F^j_t = sum_{i=1..L} g^{i->j}_t * (U^{i->j} h^i_{t-1})
    #         = [g^{1->j}_t h^1_{t-1} | ... | g^{L->j}_t h^L_{t-1}] U^{*->j}
    #           ("stacked": U^{j->j} h^j_{t-1})
    #   gates = sigmoid(W_. h^{j-1}_t + b_. + R^j_.)  (LSTM i, f, o; GRU
    #           z, r), activated in one op with the global gates
    # Returns (the unit's activated gates, candidate = W_c h^{j-1}_t + b_c,
    # F^j_t): for GRU F^j_t + b_rh, which r multiplies; for tanh and LSTM
    # with feedback F^j_t is added to the candidate here (None returned).
    units = layout.layer_units[j]
    sizes = [layout.head_widths[j], units]
    if layout.read == "stacked":
        if layout.unit_type == "gru":  # r multiplies F^j_t + b_rh alone
            head, candidate = split(inputs, sizes)
            head_read, gated = split(read, sizes)
            head = head + head_read
            if weights.recurrent_biases[j] is not None:
                gated = ops.add(gated, weights.recurrent_biases[j])
        else:  # the columns of x and of the read line up
            gated = None
            head, candidate = (
                split(inputs + read, sizes)
                if layout.head_widths[j]
                else (None, inputs + read)
            )
    else:
        head, candidate = split(inputs, sizes)
        head = head + read.head
    if head is None:
        return [], candidate, gated
    gates = split(activations.recurrent_activation(head), layout.gate_sizes[j])
    if layout.read == "stacked":
        return gates, candidate, gated
    *gates, global_gates = gates
    scaled = read.hidden * matmul(global_gates, weights.spread)
    kernel = weights.candidate_kernels[j]
    kernel_t = weights.candidate_kernels_t[j]
    if layout.unit_type == "gru":  # r multiplies F^j_t + b_rh alone
        b_rh = weights.recurrent_biases[j]
        if b_rh is None:
            return gates, candidate, matmul(scaled, kernel, kernel_t)
        return gates, candidate, matmul_add(b_rh, scaled, kernel, kernel_t)
    return gates, matmul_add(candidate, scaled, kernel, kernel_t), None


def _unit_update(layout, activations, gates, candidate, gated, h_prev, c_prev):
    # With `gated` = F^j_t (GRU: F^j_t + b_rh; None: already in
    # `candidate`) and the unit's activated `gates`:
    # tanh: h^j_t = tanh(W h^{j-1}_t + b + F^j_t)
    # gru:  h^j_t = z * h^j_{t-1} + (1 - z) * h~, computed as
    #       h~ + z * (h^j_{t-1} - h~), with
    #       h~ = tanh(W_h h^{j-1}_t + b_h + r * (F^j_t + b_rh))
    # lstm: c^j_t = f * c^j_{t-1} + i * tanh(W_c h^{j-1}_t + b_c + F^j_t)
    #       h^j_t = o * tanh(c^j_t)
    # Returns (h^j_t, c^j_t or None).
    activation = activations.activation
    if layout.unit_type == "gru":
        update, reset = gates
        proposal = activation(candidate + reset * gated)
        return proposal + update * (h_prev - proposal), None
    if gated is not None:
        candidate = candidate + gated
    if layout.unit_type == "tanh":
        return activation(candidate), None
    input_gate, forget_gate, output_gate = gates
    c = forget_gate * c_prev + input_gate * activation(candidate)
    return output_gate * activation(c), c
