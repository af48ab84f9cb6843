"""Gated Feedback RNN (Chung, Gulcehre, Cho and Bengio, ICML 2015)."""

import collections
import itertools

import keras
import numpy as np
from keras import ops

from keras_gfrnn import _rnn
from keras_gfrnn._config import resolve_weight_options
from keras_gfrnn._config import serialize_weight_options
from keras_gfrnn._rnn import CellRNN
from keras_gfrnn._rnn import concat
from keras_gfrnn._rnn import expose_cell_attributes
from keras_gfrnn._validation import check_choice
from keras_gfrnn._validation import check_positive_int
from keras_gfrnn._validation import check_rate
from keras_gfrnn._validation import check_seed

# The unit types. NUM_BLOCKS: the number of weight blocks in `kernel_{j}`
# (the candidate plus the gates). KERAS_LAYERS: the Keras layer whose
# stack each unit type extends (see `GatedFeedbackRNN.from_keras_stack`).
NUM_BLOCKS = {"tanh": 1, "gru": 3, "lstm": 4}
KERAS_LAYERS = {
    "tanh": keras.layers.SimpleRNN,
    "gru": keras.layers.GRU,
    "lstm": keras.layers.LSTM,
}
_OUTPUT_MODES = ("top", "concat")
_GATE_INPUTS = ("all_layers", "own_layer")

# The most layers one GatedFeedbackRNN stacks. Every layer has a global
# reset gate from every layer (L*L gates, and `gate_recurrent_kernel_{j}`
# of shape (sum(units), L) for each of the L layers), so the weights and
# the work of one step grow with L**2 to L**3; the paper uses 3 layers.
MAX_LAYERS = 64


def _layer_sizes(units, num_layers):
    if isinstance(units, (list, tuple)):
        sizes = tuple(units)
        if not 0 < len(sizes) <= MAX_LAYERS:
            shown = units if sizes else "[]"
            if len(sizes) > MAX_LAYERS:
                shown = f"a list of {len(sizes)} sizes"
            raise ValueError(
                "Argument `units` must be a positive integer or a list of 1 "
                f"to MAX_LAYERS={MAX_LAYERS} positive integers. Received: "
                f"units={shown}"
            )
        for size in sizes:
            check_positive_int("units", size, shown=units)
        if num_layers is not None and num_layers != len(sizes):
            raise ValueError(
                "Argument `num_layers` must match the length of `units` when "
                f"`units` is a list. Received: num_layers={num_layers} with "
                f"units={units} ({len(sizes)} layers)"
            )
        return sizes
    check_positive_int("units", units)
    if num_layers is None:
        num_layers = 1
    check_positive_int("num_layers", num_layers)
    if num_layers > MAX_LAYERS:
        raise ValueError(
            f"Argument `num_layers` must be at most MAX_LAYERS={MAX_LAYERS}. "
            f"Received: num_layers={num_layers}"
        )
    return (int(units),) * int(num_layers)


# The weights in the layouts of the loop (see
# `GatedFeedbackCell.fused_weights`). Lists hold one tensor per layer; `_t`:
# transposes for TensorFlow's fast gradient (see `_matmul_pretransposed`),
# or None in their place. The last five are only for feedback.
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
# What layer j reads from h*_{t-1} at one step, with feedback (see
# `GatedFeedbackCell._recurrent_reads`).
_RecurrentRead = collections.namedtuple(
    "_RecurrentRead", ["gate_term", "global_gate_logits", "hidden"]
)


def _matmul(h, kernel, kernel_t):
    """`h @ kernel`; with `kernel_t` (training on TensorFlow) through
    `_matmul_pretransposed`."""
    if kernel_t is None:
        return ops.matmul(h, kernel)
    return _matmul_pretransposed(h, kernel, kernel_t)


def _tensor(value):
    """A Keras Variable read as a tensor (what a compiled function takes)."""
    return value.value if isinstance(value, keras.Variable) else value


def _matmul_pretransposed(h, kernel, kernel_t):
    """`h @ kernel` on TensorFlow, with a gradient that reads `kernel_t`.

    The gradient of `h @ W` with respect to `h` is `dy @ W^T`. TensorFlow's
    own gradient computes it as a matmul with `transpose_b=True` at every
    step; a profile of the char-LM train step (GF-LSTM 3x140, B=32, 2-core
    AMD EPYC, oneDNN on) found those matmuls at about 3x the cost of the
    forward ones against the wide `(H_i, ...)` recurrent kernels, the
    largest single cost of the backward pass. Here `W^T` is transposed
    once per call (`kernel_t`) and the step's gradient is `dy @ W^T` with
    no transpose, `h^T @ dy` for the kernel. Same numbers as `ops.matmul`
    (tested); the train step ran 16-19% faster, with oneDNN on and off.
    Training only: a SavedModel keeps no custom gradient, so the inference
    step (what `model.export` saves) uses `ops.matmul`.
    """
    import tensorflow as tf

    @tf.custom_gradient
    def matmul(h, kernel):
        def grad(dy):
            return tf.matmul(dy, kernel_t), tf.matmul(h, dy, transpose_a=True)

        return tf.matmul(h, kernel), grad

    return matmul(h, kernel)


def _split_gates(tensor, width):
    """(the first `width` columns or None when 0, the other columns)."""
    if not width:
        return None, tensor
    gates, rest = ops.split(tensor, [width], axis=-1)
    return gates, rest


@keras.saving.register_keras_serializable(package="keras_gfrnn")
class GatedFeedbackCell(keras.layers.Layer):
    """Cell class for `GatedFeedbackRNN`: one time step of the whole stack.

    Computes one step of L stacked recurrent layers in which every layer
    feeds every layer at the next step through learned scalar global reset
    gates (Chung et al., 2015). With `h^0_t = x_t` and
    `h*_{t-1} = concat(h^1_{t-1}, ..., h^L_{t-1})` (size `S = sum(units)`):

    ```
    g^{i->j}_t = sigmoid(w_g^{i->j} . h^{j-1}_t + u_g^{i->j} . h*_{t-1}
                         + b_g^{i->j})
    F^j_t = sum_{i=1..L} g^{i->j}_t * (U^{i->j} h^i_{t-1})
    ```

    The global reset gates act only on the candidate's recurrent terms.
    The other gates (LSTM i, f, o; GRU z, r) read, through full matrices
    that no global gate scales,

    ```
    "all_layers" (default): R^j_. = sum_{i=1..L} U_.^{i->j} h^i_{t-1}
    "own_layer":            R^j_. = U_.^{j->j} h^j_{t-1}
    ```

    and, per `unit_type`:

    ```
    tanh: h^j_t = tanh(W^j h^{j-1}_t + F^j_t + b^j)
    gru:  z = sigmoid(W_z h^{j-1}_t + R^j_z + b_z)
          r = sigmoid(W_r h^{j-1}_t + R^j_r + b_r)
          h~ = tanh(W_h h^{j-1}_t + b_h + r * (F^j_t + b_rh))
          h^j_t = z * h^j_{t-1} + (1 - z) * h~
    lstm: i, f, o = sigmoid(W_. h^{j-1}_t + R^j_. + b_.)
          c~ = tanh(W_c h^{j-1}_t + F^j_t + b_c)
          c^j_t = f * c^j_{t-1} + i * c~,   h^j_t = o * tanh(c^j_t)
    ```

    `"all_layers"` is the default because it is the authors' form: the
    first author's released Theano implementation (github.com/jych/cle,
    `cle/layers/recurrent.py`, classes `GFLSTM` and `GFGRU`) feeds every
    layer's gates from every layer's previous state, and with it the
    paper's Table 1 sizes have about equal parameter counts (stacked LSTM
    3x191 and GF-LSTM 3x140; stacked GRU 3x228 and GF-GRU 3x165; within
    10% on a 205-symbol character model). `"own_layer"` keeps each gate on
    its own layer (keras_gfrnn 0.1.0's only form: fewer parameters at the
    same sizes). The GRU's `b_rh` sits where `keras.layers.GRU(
    reset_after=True)` puts its recurrent candidate bias.

    With `feedback=False` there are no global gates and no cross-layer
    weights: `F^j_t = U^{j->j} h^j_{t-1}` and the gates read only their own
    layer whatever `gate_inputs` says, a plain stack equal to Keras'
    `SimpleRNN` / `GRU(reset_after=True)` / `LSTM` layers stacked (the
    paper's "stacked" baseline). For tanh units (no gates) `gate_inputs`
    has no effect either.

    Weights, per layer j = 1..L (`d_j`: its input size; `G` = 1 / 3 / 4
    for tanh / GRU / LSTM; `H_j = units[j-1]`):

    ```
    kernel_{j}                 (d_j, G*H_j)   W; columns LSTM [i, f, c, o],
                                              GRU [z, r, h], tanh [h]
    recurrent_kernel_{j}       (S, (G-1)*H_j) U_. of the gates: row block i
      (GRU, LSTM)                             is U_.^{i->j}; columns LSTM
                                              [i, f, o], GRU [z, r]
                               (H_j, (G-1)*H_j) with "own_layer" or
                                              feedback=False: U_.^{j->j}
    feedback_kernel_{j}        (S, H_j)       row block i is U^{i->j}
                               (H_j, H_j)     feedback=False: U^{j->j}
    gate_kernel_{j}            (d_j, L)       column i is w_g^{i->j}
    gate_recurrent_kernel_{j}  (S, L)         column i is u_g^{i->j}
    bias_{j}                   (G*H_j,)       b, columns as kernel_{j}
    recurrent_bias_{j} (GRU)   (H_j,)         b_rh
    gate_bias_{j}              (L,)           b_g^{i->j}
    ```

    `gate_*` weights exist only with feedback, biases only with
    `use_bias=True`.

    This cell works on its own inside `keras.layers.RNN` and gives the same
    numbers as `GatedFeedbackRNN`, whose `inner_loop` prepares what every
    step shares once per call (`fused_weights`, `dropout_masks` and layer
    1's `project_inputs` for all time steps) and then runs Keras' loop with
    only `step` left in the cell's `call` (docs/design.md). With feedback a
    step reads `h*_{t-1}` with one matmul for every sum over source layers
    (global gate logits, all-layer gate terms) and one per layer j for its
    feedback term `[g^{1->j} h^1 | ... | g^{L->j} h^L] U^{*->j}`. Used on
    its own, the cell draws
    its dropout masks at every step; `GatedFeedbackRNN` draws one set per
    call with `dropout_masks(batch_size, training)`, as
    `keras.layers.LSTM` draws one mask per sequence. Masking, on its own: Keras'
    loop keeps every state at a masked step, and on the TensorFlow and torch
    backends repeats the previous output; Keras' JAX loop instead outputs
    the cell's first state, `h^1`, which is the output only for a single
    layer with `output="top"`. `GatedFeedbackRNN` repeats the previous
    output on every backend.

    Args:
        units: Positive integer (the size of every layer, with `num_layers`)
            or a list of 1 to `MAX_LAYERS` (64) positive integers, one size
            per layer.
        num_layers: Number of stacked layers when `units` is an integer, at
            most `MAX_LAYERS` (64; the global gates grow with its square).
            Defaults to `None`: 1 for an integer `units`, `len(units)` for a
            list.
        unit_type: `"tanh"`, `"gru"` or `"lstm"`. Defaults to `"lstm"`.
        feedback: Whether layers feed each other through the global reset
            gates. `False` gives a plain stack. Defaults to `True`.
        gate_inputs: `"all_layers"` (default, the authors' form): with
            feedback, the gates of every layer read every layer's previous
            state; `"own_layer"`: only their own layer's. No effect with
            `feedback=False` or `unit_type="tanh"`.
        output: `"top"` (the top layer's `h^L_t`, default) or `"concat"` (all
            layers' hidden states concatenated, size `sum(units)`).
        activation: Activation of the candidate (and of the LSTM cell state
            on output). Defaults to `"tanh"`.
        recurrent_activation: Activation of the gates, global reset gates
            included. Defaults to `"sigmoid"`.
        use_bias: Whether to use `bias_{j}`, `recurrent_bias_{j}` (GRU)
            and `gate_bias_{j}`. Defaults to `True`.
        kernel_initializer: For `kernel_{j}` and `gate_kernel_{j}`.
            Defaults to `"glorot_uniform"`.
        recurrent_initializer: For `recurrent_kernel_{j}`,
            `feedback_kernel_{j}` and `gate_recurrent_kernel_{j}`.
            Defaults to `"orthogonal"`.
        bias_initializer: For `bias_{j}`, `recurrent_bias_{j}` and
            `gate_bias_{j}`. Defaults to `"zeros"`.
        unit_forget_bias: If `True` (LSTM only), add 1 to the forget gate
            bias at initialization, as `keras.layers.LSTM` does.
        kernel_regularizer, recurrent_regularizer, bias_regularizer:
            Regularizers of the same three weight groups. Default `None`.
        kernel_constraint, recurrent_constraint, bias_constraint:
            Constraints of the same three weight groups. Default `None`.
        dropout: Float in [0, 1): fraction of every layer's input
            `h^{j-1}_t` to drop. Defaults to 0.
        recurrent_dropout: Float in [0, 1): fraction of `h*_{t-1}` to drop
            in every recurrent read. Defaults to 0.
        seed: Random seed for dropout: `None` or an integer in
            `[0, 2**32)` (torch: `[0, 2**31)`, the seeds its dropout takes).

    Call arguments:
        inputs: A 2D tensor, shape `(batch, features)`.
        states: List of state tensors: `[h^1, ..., h^L]` (tanh, GRU) or
            `[h^1, ..., h^L, c^1, ..., c^L]` (LSTM), each `(batch, units_j)`.
        training: Python boolean, whether dropout is active.

    Reference:
        Chung, Gulcehre, Cho, Bengio. Gated Feedback Recurrent Neural
        Networks. ICML 2015. https://arxiv.org/abs/1502.02367
    """

    def __init__(
        self,
        units,
        num_layers=None,
        unit_type="lstm",
        feedback=True,
        gate_inputs="all_layers",
        output="top",
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.layer_units = _layer_sizes(units, num_layers)
        self.units = list(units) if isinstance(units, (list, tuple)) else units
        self.num_layers = len(self.layer_units)
        self.unit_type = check_choice("unit_type", unit_type, NUM_BLOCKS)
        if not isinstance(feedback, bool):
            raise ValueError(
                "Argument `feedback` must be True or False. "
                f"Received: feedback={feedback}"
            )
        self.feedback = feedback
        self.gate_inputs = check_choice(
            "gate_inputs", gate_inputs, _GATE_INPUTS
        )
        self.output_mode = check_choice("output", output, _OUTPUT_MODES)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.unit_forget_bias = bool(unit_forget_bias)
        for name, value in resolve_weight_options(
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
        ).items():
            setattr(self, name, value)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate(
            "recurrent_dropout", recurrent_dropout
        )
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed=self.seed)

        sizes = self.layer_units
        self._num_blocks = NUM_BLOCKS[self.unit_type]
        # Whether the gates (LSTM i, f, o; GRU z, r) of every layer read
        # every layer's previous state. Only with feedback: a plain stack's
        # gates read their own layer, as Keras' layers do.
        self._gates_read_all = (
            self.feedback
            and self._num_blocks > 1
            and self.gate_inputs == "all_layers"
        )
        # Split points of the summed read of h*_{t-1} ("all_layers" gates,
        # see `fused_weights`): every layer's gate terms, then the global
        # gate logits.
        self._summed_splits = list(
            itertools.accumulate(
                self._gate_width(j) for j in range(self.num_layers)
            )
        )
        # Set by `GatedFeedbackRNN.inner_loop` while its loop runs.
        self._loop_step = None
        self.state_size = list(sizes) * (2 if self.unit_type == "lstm" else 1)
        self.output_size = (
            sizes[-1] if self.output_mode == "top" else sum(sizes)
        )

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                "The last dimension of the inputs to GatedFeedbackCell must "
                f"be defined. Received: input_shape={input_shape}"
            )
        sizes = self.layer_units
        total = sum(sizes)
        blocks = self._num_blocks
        layers = self.num_layers
        self.kernels, self.recurrent_kernels, self.feedback_kernels = [], [], []
        self.gate_kernels, self.gate_recurrent_kernels = [], []
        self.biases, self.recurrent_biases, self.gate_biases = [], [], []
        gate_rows = total if self._gates_read_all else None
        for j, units in enumerate(sizes, start=1):
            in_dim = input_dim if j == 1 else sizes[j - 2]
            self.kernels.append(
                self._kernel(f"kernel_{j}", (in_dim, blocks * units))
            )
            if blocks > 1:
                self.recurrent_kernels.append(
                    self._recurrent(
                        f"recurrent_kernel_{j}",
                        (gate_rows or units, (blocks - 1) * units),
                    )
                )
            fb_rows = total if self.feedback else units
            self.feedback_kernels.append(
                self._recurrent(f"feedback_kernel_{j}", (fb_rows, units))
            )
            if self.feedback:
                self.gate_kernels.append(
                    self._kernel(f"gate_kernel_{j}", (in_dim, layers))
                )
                self.gate_recurrent_kernels.append(
                    self._recurrent(
                        f"gate_recurrent_kernel_{j}", (total, layers)
                    )
                )
            if self.use_bias:
                self.biases.append(
                    self._bias(
                        f"bias_{j}", (blocks * units,), self._bias_init(units)
                    )
                )
                if self.unit_type == "gru":
                    self.recurrent_biases.append(
                        self._bias(
                            f"recurrent_bias_{j}",
                            (units,),
                            self.bias_initializer,
                        )
                    )
                if self.feedback:
                    self.gate_biases.append(
                        self._bias(
                            f"gate_bias_{j}", (layers,), self.bias_initializer
                        )
                    )
        self.built = True

    def _kernel(self, name, shape):
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )

    def _recurrent(self, name, shape):
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )

    def _bias(self, name, shape, initializer):
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def _bias_init(self, units):
        if self.unit_type != "lstm" or not self.unit_forget_bias:
            return self.bias_initializer
        base = self.bias_initializer

        def lstm_bias(shape, dtype=None):
            return ops.concatenate(
                [
                    base((units,), dtype=dtype),
                    ops.ones((units,), dtype=dtype),
                    base((2 * units,), dtype=dtype),
                ]
            )

        return lstm_bias

    # ------------------------------------------------------- fused weights
    def _to_step_order(self, block, units):
        """Reorder LSTM columns [i, f, c, o] to [i, f, o, c].

        Every layout used in the loop then reads: the gates of the same
        layer (in `recurrent_kernel`'s order) first, the candidate last.
        """
        if self.unit_type != "lstm":
            return block
        return ops.concatenate(
            [
                block[..., : 2 * units],
                block[..., 3 * units :],
                block[..., 2 * units : 3 * units],
            ],
            axis=-1,
        )

    def fused_weights(self, transposed=False):
        """The weights in the layouts the loop uses, as a `FusedWeights`
        named tuple of tensors (docs/design.md):

        - `input_kernels[j]`: `(d_j, G*H_j [+ L])` with columns
          `[gates | candidate | global gate logits w_g^{.->j}]`,
          and `input_biases[j]` (or `None`);
        - `recurrent_biases[j]`: the GRU's `b_rh` (or `None`).

        With feedback, h*_{t-1} (every layer's state, side by side) is read
        by one matmul for everything that is summed over the source layers,
        `summed_kernel`: `(S, [U_.^{*->1} ... U_.^{*->L} |] u_g^{*->1} ...
        u_g^{*->L})`, the gate terms only with `gate_inputs="all_layers"`,
        each `u_g^{*->j}` block L columns (one per source layer); and per
        layer j by `candidate_kernels[j] = U^{*->j}` `(S, H_j)` after its
        global reset gates scaled each source's block (`spread`: `(L, S)`,
        ones where row i meets layer i's columns, so `g @ spread` repeats
        `g^{i->j}` over layer i's units). `recurrent_kernels[i]` is layer
        i's own `U_.^{i->i}` with `"own_layer"` gates, else `None`.
        Without feedback `recurrent_kernels[i] = [U_.^{i->i} | U^{i->i}]`.

        With `transposed=True` (TensorFlow only), the `_t` fields hold the
        transposes, read by the gradient of the step's matmuls (its
        recurrent reads and the input projections of layers 2..L;
        `input_kernels_t[0]` is `None`, layer 1 being projected before the
        loop); else `None` in their place. Plain matmuls, not batched:
        TensorFlow's batched matmul (and its gradient) ran at half the
        speed of separate matmuls on a 2-core CPU without oneDNN.
        """
        sizes = self.layer_units
        input_kernels, input_biases, recurrent = [], [], []
        for j, units in enumerate(sizes):
            kernel = self._to_step_order(self.kernels[j], units)
            if self.feedback:
                kernel = ops.concatenate([kernel, self.gate_kernels[j]], axis=1)
            input_kernels.append(_tensor(kernel))
            if self.use_bias:
                bias = self._to_step_order(self.biases[j], units)
                if self.feedback:
                    bias = ops.concatenate([bias, self.gate_biases[j]])
                input_biases.append(_tensor(bias))
            else:
                input_biases.append(None)
            if not self.feedback:
                parts = list(self.recurrent_kernels[j : j + 1])
                parts.append(self.feedback_kernels[j])
                recurrent.append(_tensor(concat(parts)))
            elif self._num_blocks > 1 and not self._gates_read_all:
                recurrent.append(_tensor(self.recurrent_kernels[j]))
            else:
                recurrent.append(None)
        transposed = transposed and keras.backend.backend() == "tensorflow"

        def transposes(kernels):
            return [
                ops.transpose(k) if transposed and k is not None else None
                for k in kernels
            ]

        fields = {}
        if self.feedback:
            summed = list(self.gate_recurrent_kernels)
            if self._gates_read_all:
                summed = list(self.recurrent_kernels) + summed
            summed = _tensor(concat(summed))
            candidates = [_tensor(k) for k in self.feedback_kernels]
            spread = np.repeat(np.eye(len(sizes)), sizes, axis=1)
            fields = {
                "summed_kernel": summed,
                "summed_kernel_t": transposes([summed])[0],
                "candidate_kernels": candidates,
                "candidate_kernels_t": transposes(candidates),
                "spread": ops.convert_to_tensor(
                    spread, dtype=self.compute_dtype
                ),
            }
        recurrent_biases = [_tensor(b) for b in self.recurrent_biases]
        return FusedWeights(
            input_kernels=input_kernels,
            input_biases=input_biases,
            # Layers 2..L project h^{j-1}_t inside the loop; layer 1 projects
            # the whole sequence before it (`project_inputs`).
            input_kernels_t=[None] + transposes(input_kernels[1:]),
            recurrent_kernels=recurrent,
            recurrent_biases=recurrent_biases or [None] * len(sizes),
            recurrent_kernels_t=transposes(recurrent),
            **fields,
        )

    def project_inputs(self, inputs, weights, layer=0):
        """Input projection of `layer` (0-based) for any leading shape:
        `W^j h^{j-1} + b^j`, with the global gate logits' input terms
        `w_g^{.->j} h^{j-1} + b_g^{.->j}` last (see `fused_weights`).
        Through `_matmul`, with the pre-transposed kernel where
        `fused_weights` made one: only for layers 2..L, which project one
        step's 2-D `h^{j-1}_t` inside the loop (the custom kernel gradient
        `h^T @ dy` is for 2-D `h`)."""
        out = _matmul(
            inputs, weights.input_kernels[layer], weights.input_kernels_t[layer]
        )
        if weights.input_biases[layer] is not None:
            out = out + weights.input_biases[layer]
        return out

    # ------------------------------------------------------------- dropout
    def dropout_masks(self, batch_size, training):
        """Dropout masks for one sequence (or one step, used on its own).

        Returns `(input_masks, recurrent_masks)`: `input_masks[j]` multiplies
        layer j's input, `recurrent_masks[i]` multiplies `h^i_{t-1}` in every
        recurrent read; `None` where inactive (`recurrent_masks` is `None`
        as a whole without recurrent dropout). Each mask holds 0 and
        `1 / (1 - rate)`, drawn from `seed_generator` in that order (the
        input masks, bottom layer first, then the recurrent ones), so two
        cells with one `seed` draw the same masks. `GatedFeedbackRNN`
        calls it once per call, with `batch_size` the batch of its inputs.
        """
        sizes = self.layer_units
        input_masks = [None] * self.num_layers
        recurrent_masks = None
        if training and self.dropout > 0:
            dims = [self.input_dim] + list(sizes[:-1])
            input_masks = [
                self._mask((batch_size, d), self.dropout) for d in dims
            ]
        if training and self.recurrent_dropout > 0:
            recurrent_masks = [
                self._mask((batch_size, h), self.recurrent_dropout)
                for h in sizes
            ]
        return input_masks, recurrent_masks

    def _mask(self, shape, rate):
        ones = ops.ones(shape, dtype=self.compute_dtype)
        return keras.random.dropout(ones, rate=rate, seed=self.seed_generator)

    @property
    def input_dim(self):
        return self.kernels[0].shape[0]

    # ---------------------------------------------------------------- call
    def call(self, inputs, states, training=False):
        # With stateful=True Keras passes its state Variables on the first
        # step; a no-op for tensors.
        states = [_tensor(s) for s in states]
        if self._loop_step is not None:
            # Inside `GatedFeedbackRNN.inner_loop`, which prepared the
            # weights, the masks and layer 1's projected input (`inputs`).
            return self._loop_step(inputs, states)
        # On its own: everything happens inside the step.
        weights = self.fused_weights()
        input_masks, recurrent_masks = self.dropout_masks(
            ops.shape(inputs)[0], training
        )
        if input_masks[0] is not None:
            inputs = inputs * input_masks[0]
        projected = self.project_inputs(inputs, weights)
        return self.step(
            projected, states, weights, input_masks, recurrent_masks
        )

    def step(self, projected, states, weights, input_masks, recurrent_masks):
        """One step of the stack given layer 1's projected input.

        `projected` is `project_inputs(x_t)`, `weights` a `FusedWeights`,
        the masks those of `dropout_masks`. Returns `(output, new_states)`.
        """
        layers = self.num_layers
        hidden, cells = states[:layers], states[layers:]
        reads = self._recurrent_reads(hidden, weights, recurrent_masks)
        new_hidden, new_cells = [], []
        for j, read in enumerate(reads):
            if j == 0:
                inputs = projected
            else:
                below = new_hidden[-1]
                if input_masks[j] is not None:
                    below = below * input_masks[j]
                inputs = self.project_inputs(below, weights, layer=j)
            gates, candidate, feedback = self._pre_activations(
                j, inputs, read, weights
            )
            h, c = self._unit_update(
                gates,
                candidate,
                feedback,
                weights.recurrent_biases[j],
                hidden[j],
                cells[j] if cells else None,
            )
            new_hidden.append(h)
            if c is not None:
                new_cells.append(c)
        if self.output_mode == "top":
            output = new_hidden[-1]
        else:
            output = ops.concatenate(new_hidden, axis=-1)
        return output, new_hidden + new_cells

    def _recurrent_reads(self, hidden, weights, recurrent_masks):
        # Everything that reads h*_{t-1}, from ĥ^i = h^i_{t-1} * (its
        # recurrent dropout mask). Without feedback, per layer j one matmul:
        # [U_.^{j->j} ĥ^j | U^{j->j} ĥ^j]. With feedback, per layer j a
        # `_RecurrentRead`:
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
            None if k is None else _matmul(h, k, k_t)
            for h, k, k_t in zip(
                hidden, weights.recurrent_kernels, weights.recurrent_kernels_t
            )
        ]
        if not self.feedback:
            return own
        hidden = concat(hidden)
        summed = _matmul(hidden, weights.summed_kernel, weights.summed_kernel_t)
        if self._gates_read_all:
            *own, summed = ops.split(summed, self._summed_splits, axis=-1)
        logits = ops.split(summed, self.num_layers, axis=-1)
        return [
            _RecurrentRead(gate_term, logit, hidden)
            for gate_term, logit in zip(own, logits)
        ]

    def _pre_activations(self, j, inputs, read, weights):
        # For layer j, given `inputs` = project_inputs(h^{j-1}_t) and its
        # `read` of h*_{t-1} (see `_recurrent_reads`):
        #   g^{i->j}_t = sigmoid(w_g^{i->j} h^{j-1}_t + u_g^{i->j} h*_{t-1}
        #                        + b_g^{i->j})
        #   F^j_t = sum_{i=1..L} g^{i->j}_t * (U^{i->j} h^i_{t-1})
        #         = [g^{1->j}_t h^1_{t-1} | ... | g^{L->j}_t h^L_{t-1}] U^{*->j}
        #           (feedback=False: U^{j->j} h^j_{t-1})
        #   gates = W_. h^{j-1}_t + b_. + R^j_.   (LSTM i, f, o; GRU z, r)
        # Returns (gates or None for tanh, candidate = W_c h^{j-1}_t + b_c,
        # F^j_t), or F^j_t = None where it is already in the candidate.
        width = self._gate_width(j)
        if not self.feedback:
            if self.unit_type == "gru":  # r multiplies F^j_t alone
                gates, candidate = _split_gates(inputs, width)
                gate_read, feedback = _split_gates(read, width)
                return gates + gate_read, candidate, feedback
            # The columns of x and of the read line up: add once and split.
            gates, candidate = _split_gates(inputs + read, width)
            return gates, candidate, None
        gates, candidate, logits = ops.split(
            inputs, [width, width + self.layer_units[j]], axis=-1
        )
        global_gates = self.recurrent_activation(
            logits + read.global_gate_logits
        )
        scaled = read.hidden * ops.matmul(global_gates, weights.spread)
        feedback = _matmul(
            scaled,
            weights.candidate_kernels[j],
            weights.candidate_kernels_t[j],
        )
        if not width:
            return None, candidate, feedback
        return gates + read.gate_term, candidate, feedback

    def _unit_update(self, gates, candidate, feedback, b_rh, h_prev, c_prev):
        # With F^j_t = `feedback` (None: already in `candidate`):
        # tanh: h^j_t = tanh(W h^{j-1}_t + b + F^j_t)
        # gru:  z, r = sigmoid(gates)
        #       h^j_t = z * h^j_{t-1}
        #               + (1 - z) * tanh(W_h h^{j-1}_t + b_h
        #                                + r * (F^j_t + b_rh))
        # lstm: i, f, o = sigmoid(gates)
        #       c^j_t = f * c^j_{t-1} + i * tanh(W_c h^{j-1}_t + b_c + F^j_t)
        #       h^j_t = o * tanh(c^j_t)
        # Returns (h^j_t, c^j_t or None).
        if self.unit_type == "gru":
            if b_rh is not None:
                feedback = feedback + b_rh
            update, reset = ops.split(self.recurrent_activation(gates), 2, -1)
            proposal = self.activation(candidate + reset * feedback)
            return update * h_prev + (1.0 - update) * proposal, None
        if feedback is not None:
            candidate = candidate + feedback
        if self.unit_type == "tanh":
            return self.activation(candidate), None
        input_gate, forget_gate, output_gate = ops.split(
            self.recurrent_activation(gates), 3, axis=-1
        )
        c = forget_gate * c_prev + input_gate * self.activation(candidate)
        return output_gate * self.activation(c), c

    def _gate_width(self, j):
        """Columns of layer j's gates (LSTM i, f, o; GRU z, r): 0 for tanh."""
        return (self._num_blocks - 1) * self.layer_units[j]

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, size), dtype=self.compute_dtype)
            for size in self.state_size
        ]

    def get_config(self):
        config = {
            "units": self.units,
            "num_layers": self.num_layers,
            "unit_type": self.unit_type,
            "feedback": self.feedback,
            "gate_inputs": self.gate_inputs,
            "output": self.output_mode,
            "activation": keras.activations.serialize(self.activation),
            "recurrent_activation": keras.activations.serialize(
                self.recurrent_activation
            ),
            "use_bias": self.use_bias,
            "unit_forget_bias": self.unit_forget_bias,
            **serialize_weight_options(self),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config):
        return cls(**_upgrade_config(config))

    def load_own_variables(self, store):
        # Files saved before `recurrent_bias_{j}` existed (keras_gfrnn
        # 0.1.0) hold every other variable in the same order: load them and
        # start b_rh at zero, which computes what those models computed.
        legacy = [
            w
            for w in self.weights
            if not any(w is b for b in self.recurrent_biases)
        ]
        if self.recurrent_biases and len(store.keys()) == len(legacy):
            for k, w in enumerate(legacy):
                w.assign(store[f"{k}"])
            for b in self.recurrent_biases:
                b.assign(ops.zeros(b.shape, dtype=b.dtype))
            return
        super().load_own_variables(store)


def _upgrade_config(config):
    """A config saved before `gate_inputs` existed (keras_gfrnn 0.1.0) had
    gates that read only their own layer: load it in that form."""
    if "gate_inputs" in config:
        return config
    return {**config, "gate_inputs": "own_layer"}


def _read_keras_stack(layers):
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


def _stack_to_cell_weights(cell, stack):
    """(variable, value) for every variable of `cell`: the stack's
    weights in the own-layer blocks, zeros elsewhere (see
    `GatedFeedbackRNN.from_keras_stack`)."""
    values = {id(w): np.zeros(w.shape, dtype="float64") for w in cell.weights}
    # With feedback every global gate is recurrent_activation(0): divide
    # U^{j->j} by it so that g^{j->j} U^{j->j} is the stack's matrix.
    scale = 1.0
    if cell.feedback:
        gate = keras.ops.convert_to_numpy(
            cell.recurrent_activation(keras.ops.zeros((1,)))
        )
        scale = float(gate[0])
        if scale == 0.0:
            raise ValueError(
                "`recurrent_activation(0)` must not be 0: the global gates "
                "would switch the feedback off."
            )
    offsets = [sum(cell.layer_units[:j]) for j in range(cell.num_layers)]
    rows_of = {True: offsets, False: [0] * cell.num_layers}
    for j, (h, w) in enumerate(zip(cell.layer_units, stack)):
        rec = w["recurrent_kernel"]
        if cell.unit_type == "lstm":  # Keras: [i, f, c, o]
            gates = np.concatenate([rec[:, : 2 * h], rec[:, 3 * h :]], 1)
            candidate = rec[:, 2 * h : 3 * h]
        else:  # GRU [z, r, h]; SimpleRNN [h]
            gates, candidate = rec[:, :-h], rec[:, -h:]
        values[id(cell.kernels[j])] = w["kernel"]
        if gates.shape[1]:
            r0 = rows_of[cell._gates_read_all][j]
            values[id(cell.recurrent_kernels[j])][r0 : r0 + h] = gates
        r0 = rows_of[cell.feedback][j]
        values[id(cell.feedback_kernels[j])][r0 : r0 + h] = candidate / scale
        if cell.use_bias:
            bias = w["bias"]
            if cell.unit_type == "gru":  # Keras: rows [input, recurrent]
                bias = bias[0] + np.concatenate([bias[1, : 2 * h], [0.0] * h])
                values[id(cell.recurrent_biases[j])] = w["bias"][1, 2 * h :]
            values[id(cell.biases[j])] = bias
    return [(w, values[id(w)]) for w in cell.weights]


_CELL_ARGS = (
    "units",
    "num_layers",
    "unit_type",
    "feedback",
    "gate_inputs",
    "output_mode",
    "activation",
    "recurrent_activation",
    "use_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "unit_forget_bias",
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "kernel_constraint",
    "recurrent_constraint",
    "bias_constraint",
    "dropout",
    "recurrent_dropout",
    "seed",
)


@keras.saving.register_keras_serializable(package="keras_gfrnn")
class GatedFeedbackRNN(CellRNN):
    """Gated Feedback RNN layer (Chung et al., 2015).

    A stack of L tanh / GRU / LSTM layers in one Keras RNN layer, in which
    every layer feeds every layer at the next time step through learned
    scalar "global reset gates". With `h^0_t = x_t` and
    `h*_{t-1} = concat(h^1_{t-1}, ..., h^L_{t-1})`, for layers j = 1..L:

    ```
    g^{i->j}_t = sigmoid(w_g^{i->j} . h^{j-1}_t + u_g^{i->j} . h*_{t-1}
                         + b_g^{i->j})
    F^j_t = sum_{i=1..L} g^{i->j}_t * (U^{i->j} h^i_{t-1})
    R^j_. = sum_{i=1..L} U_.^{i->j} h^i_{t-1}   gate_inputs="all_layers"
          = U_.^{j->j} h^j_{t-1}                gate_inputs="own_layer"
    tanh: h^j_t = tanh(W^j h^{j-1}_t + F^j_t + b^j)
    gru:  z, r = sigmoid(W_{z,r} h^{j-1}_t + R^j_{z,r} + b_{z,r})
          h^j_t = z * h^j_{t-1}
                  + (1 - z) * tanh(W_h h^{j-1}_t + b_h + r * (F^j_t + b_rh))
    lstm: i, f, o = sigmoid(W_. h^{j-1}_t + R^j_. + b_.)
          c^j_t = f * c^j_{t-1} + i * tanh(W_c h^{j-1}_t + F^j_t + b_c)
          h^j_t = o * tanh(c^j_t)
    ```

    The global reset gates scale only the candidate's recurrent terms
    `U^{i->j} h^i_{t-1}`; the other gates (LSTM i, f, o; GRU z, r) read the
    previous states through full, ungated matrices: every layer's by
    default (`gate_inputs="all_layers"`), as in the first author's released
    implementation (github.com/jych/cle, `cle/layers/recurrent.py`,
    `GFLSTM` and `GFGRU`), which is also the form in which the paper's
    Table 1 sizes (stacked 3x191 vs GF 3x140 LSTM, 3x228 vs 3x165 GRU)
    have about equal parameter counts; or only their own layer's
    (`"own_layer"`, keras_gfrnn 0.1.0's form).

    `feedback=False` removes the global gates and cross-layer weights
    (`F^j_t = U^{j->j} h^j_{t-1}`, gates on their own layer whatever
    `gate_inputs` says): the paper's stacked baseline with the same API,
    equal to Keras' `SimpleRNN` / `GRU(reset_after=True)` / `LSTM` layers
    stacked. `GatedFeedbackRNN.from_keras_stack` starts a layer from such a
    trained stack.

    The weights live in `GatedFeedbackCell` (`layer.cell`), named per
    layer j = 1..L, with `S = sum(units)` and `G` = 1 / 3 / 4 for tanh /
    GRU / LSTM: `kernel_{j}` `(d_j, G*H_j)`; `recurrent_kernel_{j}` (GRU,
    LSTM) `(S, (G-1)*H_j)`, or `(H_j, (G-1)*H_j)` with `"own_layer"` or
    without feedback; `feedback_kernel_{j}` `(S, H_j)` (`(H_j, H_j)`
    without feedback); `gate_kernel_{j}` `(d_j, L)`;
    `gate_recurrent_kernel_{j}` `(S, L)`; `bias_{j}` `(G*H_j,)`;
    `recurrent_bias_{j}` (GRU) `(H_j,)`; `gate_bias_{j}` `(L,)` (see the
    cell for the block layout; docs/design.md).

    The layer is fused, as `keras.layers.LSTM`: its `inner_loop` prepares
    once per call the weights in the loop's layouts, one set of dropout
    masks (`layer.cell.dropout_masks`) and the first layer's input
    projection for every time step (one matmul), then runs Keras' own loop;
    at each step one matmul of `h*_{t-1}` gives every global gate logit
    (and, with all-layer gates, every gate term), and one matmul per layer
    j its feedback term `sum_i g^{i->j} U^{i->j} h^i_{t-1}`, with the
    scalar gates applied to the sources' states first (docs/design.md).

    Masking: at a masked time step every layer's state (h and c) is carried
    over unchanged and the output repeats the previous output, as in
    `keras.layers.LSTM`: what the inputs hold there (NaN or
    inf padding included) reaches neither the outputs nor the gradients.

    Args:
        units: Positive integer (size of each layer, with `num_layers`) or a
            list of per-layer sizes (at most `MAX_LAYERS`).
        num_layers: Number of layers for an integer `units`, at most
            `keras_gfrnn.gated_feedback_rnn.MAX_LAYERS` (64): the L*L global
            gates make the weights and the work of a step grow with L**2.
            Defaults to `None`: 1 for an integer `units`, `len(units)` for a
            list. The paper uses 3.
        unit_type: `"tanh"`, `"gru"` or `"lstm"` (default).
        feedback: `True` (default): gated feedback; `False`: plain stack.
        gate_inputs: `"all_layers"` (default): with feedback, every
            layer's gates read every layer's previous state (the authors'
            form); `"own_layer"`: only their own layer's. No effect with
            `feedback=False` or tanh units. A model saved by keras_gfrnn
            0.1.0 (no `gate_inputs` in its config) loads as `"own_layer"`.
        output: `"top"` (default): the top layer's hidden state;
            `"concat"`: every layer's hidden state, concatenated.
        activation: Candidate activation. Default `"tanh"`.
        recurrent_activation: Gate activation (global reset gates too).
            Default `"sigmoid"`.
        use_bias: Whether to use `bias_{j}`, `recurrent_bias_{j}` (GRU)
            and `gate_bias_{j}`. Default `True`.
        kernel_initializer: Default `"glorot_uniform"`.
        recurrent_initializer: Default `"orthogonal"`.
        bias_initializer: Default `"zeros"`.
        unit_forget_bias: LSTM only; default `True`.
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        activity_regularizer: Default `None`.
        kernel_constraint, recurrent_constraint, bias_constraint: Default
            `None`.
        dropout: Float in [0, 1): dropout on every layer's input, one mask
            per sequence. Default 0.
        recurrent_dropout: Float in [0, 1): dropout on `h*_{t-1}` in every
            recurrent read, one mask per sequence. Default 0.
        seed: Random seed for dropout: `None` or an integer in
            `[0, 2**32)` (torch: `[0, 2**31)`, the seeds its dropout takes).
        return_sequences: Return the whole output sequence. Default `False`.
        return_state: Also return the final states. Default `False`.
        go_backwards: Process the sequence backwards. Default `False`.
        stateful: Carry the last states of batch i to batch i. Default
            `False`.
        unroll: Unroll the loop (static time dimension only). Default
            `False`.
        jit_compile: `"auto"` (default), `True` or `False`. `True` compiles
            the recurrent step with XLA (TensorFlow backend; JAX compiles the
            whole model anyway). `"auto"` compiles it when TensorFlow sees a
            GPU: on a CPU the compiled step was measured slower to train
            (see benchmarks/). Numbers agree with the uncompiled step to
            float rounding.

    Call arguments:
        inputs: 3D tensor `(batch, timesteps, features)`.
        mask: Boolean tensor `(batch, timesteps)`.
        training: Whether dropout is active.
        initial_state: List of initial states, `[h^1..h^L]` (tanh, GRU) or
            `[h^1..h^L, c^1..c^L]` (LSTM), each `(batch, units_j)`.

    Output shape:
        `(batch, output_size)`, or `(batch, timesteps, output_size)` with
        `return_sequences`, where `output_size` is `units_L` (`"top"`) or
        `sum(units)` (`"concat"`). With `return_state`, followed by the final
        states in the same order as `initial_state`.

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((28, 28)),
        GatedFeedbackRNN(128, num_layers=3, unit_type="lstm"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    ```

    Reference:
        Chung, Gulcehre, Cho, Bengio. Gated Feedback Recurrent Neural
        Networks. ICML 2015. https://arxiv.org/abs/1502.02367
    """

    def __init__(
        self,
        units,
        num_layers=None,
        unit_type="lstm",
        feedback=True,
        gate_inputs="all_layers",
        output="top",
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        jit_compile="auto",
        **kwargs,
    ):
        cell = GatedFeedbackCell(
            units,
            num_layers=num_layers,
            unit_type=unit_type,
            feedback=feedback,
            gate_inputs=gate_inputs,
            output=output,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="gated_feedback_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            activity_regularizer=activity_regularizer,
            jit_compile=jit_compile,
            **kwargs,
        )

    @classmethod
    def from_config(cls, config):
        return cls(**_upgrade_config(config))

    @classmethod
    def from_keras_stack(cls, layers, feedback=True, **kwargs):
        """A `GatedFeedbackRNN` that starts as a stack of Keras layers.

        Takes the weights of a trained stack of `keras.layers.LSTM`,
        `keras.layers.GRU(reset_after=True)` or `keras.layers.SimpleRNN`
        layers (one kind, bottom layer first) and returns a new layer, its
        weights set, that computes what the stack computes (to float
        rounding) until training moves it: the paper's stacked baseline
        as the starting point of a gated-feedback model.

        The stack's weights go into each layer's own blocks: `kernel_{j}`;
        the gates' recurrent weights into `recurrent_kernel_{j}` (row block
        j with `gate_inputs="all_layers"`); the candidate's into block
        `U^{j->j}` of `feedback_kernel_{j}`; `bias_{j}` (for the GRU,
        Keras' bias rows `[b_in, b_rec]` become `bias_{j} = b_in +
        [b_rec_z, b_rec_r, 0]` and `recurrent_bias_{j} = b_rec_h`). Every
        cross-layer block (`U_.^{i->j}` and `U^{i->j}`, i != j) and every
        global-gate weight (`gate_kernel_{j}`, `gate_recurrent_kernel_{j}`,
        `gate_bias_{j}`) is zero. With feedback each global gate is then
        constant, `g^{i->j} = recurrent_activation(0)` (0.5 for the
        sigmoid), so block `U^{j->j}` holds the stack's candidate weights
        divided by that value (for the sigmoid: times 2, exact in floating
        point) and `g^{j->j} U^{j->j}` is the stack's matrix: the outputs
        are the stack's, and the global gates start in the middle of
        their range, where they learn, rather than saturated.

        Args:
            layers: List of built Keras recurrent layers of one kind, bottom
                first, each reading the previous one's sequence output.
            feedback: Whether the new layer has gated feedback. Defaults to
                `True`; `False` gives the stack itself as one layer.
            **kwargs: Other `GatedFeedbackRNN` arguments (`gate_inputs`,
                `output`, `return_sequences`, `stateful`, `name`, ...).
                `units`, `num_layers`, `unit_type`, `activation`, `use_bias`
                and (GRU, LSTM) `recurrent_activation` come from the stack.

        Returns:
            A `GatedFeedbackRNN` whose cell is built for the stack's input
            size and holds the weights above.

        Example:

        ```python
        stacked = keras.Sequential([
            keras.Input((None, 205)),
            keras.layers.LSTM(191, return_sequences=True),
            keras.layers.LSTM(191, return_sequences=True),
            keras.layers.LSTM(191, return_sequences=True),
            keras.layers.Dense(205, activation="softmax"),
        ])
        # ... stacked.fit(...)
        gf = GatedFeedbackRNN.from_keras_stack(
            stacked.layers[:3], return_sequences=True
        )
        model = keras.Sequential([keras.Input((None, 205)), gf,
                                  keras.layers.Dense(205, "softmax")])
        model.layers[-1].set_weights(stacked.layers[-1].get_weights())
        # model predicts what `stacked` predicts; fit it to train feedback.
        ```
        """
        unit_type, weights, settings = _read_keras_stack(layers)
        for name in ("units", "num_layers", "unit_type", *settings):
            if name in kwargs:
                raise ValueError(
                    f"`from_keras_stack` takes `{name}` from the Keras "
                    f"layers. Received: {name}={kwargs[name]!r}"
                )
        layer = cls(
            [rnn.units for rnn in layers],
            unit_type=unit_type,
            feedback=feedback,
            **settings,
            **kwargs,
        )
        cell = layer.cell
        cell.build((None, weights[0]["kernel"].shape[0]))
        for variable, value in _stack_to_cell_weights(cell, weights):
            variable.assign(value)
        return layer

    def inner_loop(self, sequences, initial_state, mask, training=False):
        # As keras.layers.LSTM: prepare once, then Keras' own loop. Here the
        # weights in the loop's layouts, one set of dropout masks per call
        # and layer 1's input projection for every time step; the cell's
        # `call` then runs only `cell.step` (XLA-compiled on TensorFlow
        # where `uses_xla`).
        cell = self.cell
        # Training on TensorFlow, the step's matmuls (recurrent reads, the
        # input projections of layers 2..L) get a gradient that reads
        # kernels transposed once here
        # (`_matmul_pretransposed`). Not in inference: a SavedModel keeps no
        # custom gradient, and gradients of a reloaded `serve` must work.
        weights = cell.fused_weights(transposed=bool(training))
        input_masks, recurrent_masks = cell.dropout_masks(
            ops.shape(sequences)[0], training
        )
        if input_masks[0] is not None:
            sequences = sequences * ops.expand_dims(input_masks[0], 1)
        if keras.tree.is_nested(mask):
            mask = mask[0]
        if mask is not None:
            # The loop discards what a masked step computes, but not its
            # gradient: padding that holds NaN or inf would make every
            # gradient NaN (0 * NaN). Masked steps read zeros instead.
            keep = ops.expand_dims(ops.cast(mask, "bool"), -1)
            sequences = ops.where(keep, sequences, ops.zeros_like(sequences))
        projected = cell.project_inputs(sequences, weights)
        step = cell.step
        if self.uses_xla:
            step = _rnn.xla_compiled(self, "_xla_step", cell.step)
        # At a masked step Keras' loop repeats the previous output, and its
        # JAX loop takes that to be the first state. Here the first state is
        # h^1 (not the output of a stack of 2+ layers, nor of "concat"), so
        # with a mask the loop carries the previous output as an extra first
        # state on every backend (zeros before the first step, as the
        # TensorFlow and torch loops start), stripped from the result.
        carries_output = mask is not None
        if carries_output:
            previous_output = ops.zeros(
                (ops.shape(sequences)[0], cell.output_size),
                dtype=initial_state[0].dtype,
            )
            initial_state = [previous_output] + list(initial_state)

        def loop_step(projected_t, states):
            if carries_output:
                states = states[1:]
            output, new_states = step(
                projected_t, states, weights, input_masks, recurrent_masks
            )
            if carries_output:
                new_states = [output] + list(new_states)
            return output, new_states

        cell._loop_step = loop_step
        try:
            last_output, outputs, states = super().inner_loop(
                projected, initial_state, mask, training=training
            )
        finally:
            cell._loop_step = None
        if carries_output:
            states = list(states)[1:]
        return last_output, outputs, states


expose_cell_attributes(GatedFeedbackRNN, _CELL_ARGS + ("layer_units",))
