"""Gated Feedback RNN (Chung, Gulcehre, Cho and Bengio, ICML 2015).

`GatedFeedbackCell` holds the weights, the config and the loading of
older files, and its `call` is the reference step; `GatedFeedbackRNN` runs
the fused loop of `gated_feedback_loops` in Keras' loop. The maths, the
weight table and the loop's layouts: docs/design.md.
"""

import keras
from keras import ops

from keras_gfrnn import _rnn
from keras_gfrnn import gated_feedback_loops as loops
from keras_gfrnn._rnn import CellRNN
from keras_gfrnn._rnn import DropoutCell
from keras_gfrnn._rnn import concat
from keras_gfrnn._rnn import variable_value
from keras_gfrnn._validation import check_choice
from keras_gfrnn._validation import check_positive_int
from keras_gfrnn.gated_feedback_loops import NUM_BLOCKS
from keras_gfrnn.keras_stack import KERAS_LAYERS
from keras_gfrnn.keras_stack import read_keras_stack
from keras_gfrnn.keras_stack import stack_weights

# NUM_BLOCKS (the weight blocks of `kernel_{j}` per unit type) and
# KERAS_LAYERS (the Keras layer whose stack each unit type extends) are
# part of this module's documented surface.
__all__ = [
    "GatedFeedbackCell",
    "GatedFeedbackRNN",
    "KERAS_LAYERS",
    "MAX_LAYERS",
    "NUM_BLOCKS",
]

_OUTPUT_MODES = ("top", "concat")
_GATE_INPUTS = ("all_layers", "own_layer")

# The most layers one GatedFeedbackRNN stacks: every layer reads every
# layer, so the weights and the work of one step grow with L**2 (H**2 L**2
# in U^{i->j}) to L**3 (H L**3 in the L*L global gates' u_g), as
# docs/design.md counts them; the paper uses 3 layers.
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


def _upgrade_config(config):
    """A config saved before `gate_inputs` existed (keras_gfrnn 0.1.0) had
    gates that read only their own layer: load it in that form."""
    if "gate_inputs" in config:
        return config
    return {**config, "gate_inputs": "own_layer"}


@keras.saving.register_keras_serializable(package="keras_gfrnn")
class GatedFeedbackCell(DropoutCell):
    """Cell class for `GatedFeedbackRNN`: one time step of the whole stack.

    L stacked tanh / GRU / LSTM layers in which every layer feeds every
    layer at the next step through scalar global reset gates (Chung et
    al., 2015). With `h^0_t = x_t` and `h*_{t-1}` every layer's previous
    state side by side:

    ```
    g^{i->j}_t = sigmoid(w_g^{i->j} . h^{j-1}_t + u_g^{i->j} . h*_{t-1}
                         + b_g^{i->j})
    F^j_t      = sum_i g^{i->j}_t * (U^{i->j} h^i_{t-1})
    ```

    `F^j_t` replaces the candidate's recurrent term of a tanh, GRU or LSTM
    unit; the other gates read every layer's state (`gate_inputs=
    "all_layers"`, the authors' released code) or their own layer's.
    `feedback=False` is a plain stack, equal to Keras' layers stacked. The
    equations in full, the weights' names and shapes and the fused loop:
    docs/design.md.

    This cell works on its own in `keras.layers.RNN` (the reference step,
    drawing its dropout masks at every step) and computes the numbers of
    `GatedFeedbackRNN`, which prepares the weights, one set of masks and
    layer 1's input projection once per call. At a masked step Keras' JAX
    loop outputs the cell's first state, `h^1`, which is the output only
    for one layer with `output="top"`; `GatedFeedbackRNN` repeats the
    previous output on every backend.

    Args:
        units: Positive integer (the size of every layer, with
            `num_layers`) or a list of 1 to `MAX_LAYERS` (64) sizes.
        num_layers: Number of layers for an integer `units` (default
            `None`: 1; for a list, `len(units)`).
        unit_type: `"tanh"`, `"gru"` or `"lstm"` (default).
        feedback: Gated feedback between layers (default `True`).
        gate_inputs: `"all_layers"` (default) or `"own_layer"`: what the
            GRU / LSTM gates read with feedback.
        output: `"top"` (default, `h^L_t`) or `"concat"` (every layer's
            `h^j_t`, size `sum(units)`).
        activation, recurrent_activation: Of the candidate (and the LSTM
            cell) and of the gates, global gates included. Default
            `"tanh"`, `"sigmoid"`.
        use_bias: Default `True`. unit_forget_bias: LSTM; default `True`.
        kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        kernel_constraint, recurrent_constraint, bias_constraint: As in
            `keras.layers.LSTM`, for the input, recurrent and bias weights.
        dropout: Float in [0, 1): dropout on every layer's input.
        recurrent_dropout: Float in [0, 1): dropout on `h*_{t-1}` in every
            recurrent read.
        seed: `None` or an integer in `[0, 2**31 - 1]` (the seeds every
            backend holds).

    Call arguments:
        inputs: A 2D tensor `(batch, features)`.
        states: `[h^1..h^L]` (tanh, GRU) or `[h^1..h^L, c^1..c^L]` (LSTM),
            each `(batch, units_j)`.
        training: Whether dropout is active.

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
        # The `output` argument (Keras' `Layer.output` is a layer's
        # symbolic output: the attribute cannot share its name).
        self.output_mode = check_choice("output", output, _OUTPUT_MODES)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.unit_forget_bias = bool(unit_forget_bias)
        self._set_options(
            dict(
                kernel_initializer=kernel_initializer,
                recurrent_initializer=recurrent_initializer,
                bias_initializer=bias_initializer,
                kernel_regularizer=kernel_regularizer,
                recurrent_regularizer=recurrent_regularizer,
                bias_regularizer=bias_regularizer,
                kernel_constraint=kernel_constraint,
                recurrent_constraint=recurrent_constraint,
                bias_constraint=bias_constraint,
            ),
            dropout,
            recurrent_dropout,
            seed,
        )
        # Which weights exist and what a step reads: decided here, once.
        self.layout = loops.Layout(
            self.unit_type, self.layer_units, feedback, self.gate_inputs
        )
        self.state_size = list(self.layer_units) * (
            2 if self.unit_type == "lstm" else 1
        )
        self.output_size = (
            self.layer_units[-1]
            if self.output_mode == "top"
            else sum(self.layer_units)
        )

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                "The last dimension of the inputs to GatedFeedbackCell must "
                f"be defined. Received: input_shape={input_shape}"
            )
        layout = self.layout
        blocks, layers = layout.num_blocks, layout.num_layers
        self.kernels, self.recurrent_kernels, self.feedback_kernels = [], [], []
        self.gate_kernels, self.gate_recurrent_kernels = [], []
        self.biases, self.recurrent_biases, self.gate_biases = [], [], []
        for j, units in enumerate(layout.layer_units, start=1):
            in_dim = input_dim if j == 1 else layout.layer_units[j - 2]
            self.kernels.append(
                self._kernel(f"kernel_{j}", (in_dim, blocks * units))
            )
            if blocks > 1:
                self.recurrent_kernels.append(
                    self._recurrent(
                        f"recurrent_kernel_{j}",
                        (layout.recurrent_rows[j - 1], (blocks - 1) * units),
                    )
                )
            self.feedback_kernels.append(
                self._recurrent(
                    f"feedback_kernel_{j}",
                    (layout.feedback_rows[j - 1], units),
                )
            )
            if layout.feedback:
                self.gate_kernels.append(
                    self._kernel(f"gate_kernel_{j}", (in_dim, layers))
                )
                self.gate_recurrent_kernels.append(
                    self._recurrent(
                        f"gate_recurrent_kernel_{j}",
                        (layout.total_units, layers),
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
                if layout.feedback:
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

    @property
    def input_dim(self):
        return self.kernels[0].shape[0]

    def weight_lists(self):
        """The variables as `gated_feedback_loops.CellWeights`: lists of
        one per layer (empty where the layout has no such weight)."""
        return loops.CellWeights(
            self.kernels,
            self.recurrent_kernels,
            self.feedback_kernels,
            self.gate_kernels,
            self.gate_recurrent_kernels,
            self.biases,
            self.recurrent_biases,
            self.gate_biases,
        )

    @property
    def activations(self):
        """The step's activations, a `gated_feedback_loops.Activations`."""
        return loops.step_activations(
            self.activation, self.recurrent_activation
        )

    # ------------------------------------------------------------- dropout
    def dropout_masks(self, batch_size, training):
        """Dropout masks for one sequence: a
        `gated_feedback_loops.DropoutMasks(inputs, recurrent)`, drawn anew
        at each call (when to draw: `_rnn.DropoutCell`).

        `inputs[j]` multiplies layer j's input, `recurrent[i]` multiplies
        `h^i_{t-1}` in every recurrent read; `None` where inactive
        (`recurrent` is `None` as a whole without recurrent dropout). Each
        mask holds 0 and `1 / (1 - rate)`, drawn from `seed_generator` in
        that order (the input masks, bottom layer first, then the recurrent
        ones), so two cells with one `seed` draw the same masks.
        """
        sizes = self.layer_units
        inputs = [None] * self.num_layers
        recurrent = None
        if training and self.dropout > 0:
            dims = [self.input_dim] + list(sizes[:-1])
            inputs = [self._mask((batch_size, d), self.dropout) for d in dims]
        if training and self.recurrent_dropout > 0:
            recurrent = [
                self._mask((batch_size, h), self.recurrent_dropout)
                for h in sizes
            ]
        return loops.DropoutMasks(inputs, recurrent)

    # ---------------------------------------------------------------- call
    def call(self, inputs, states, training=False):
        # The reference step: everything inside the step. With
        # stateful=True Keras passes its state Variables on the first step.
        states = [variable_value(s) for s in states]
        weights = loops.fuse_weights(
            self.layout, self.weight_lists(), dtype=self.compute_dtype
        )
        masks = self.step_masks(ops.shape(inputs)[0], training)
        if masks.inputs[0] is not None:
            inputs = inputs * masks.inputs[0]
        projected = loops.project_inputs(weights, inputs)
        hidden, cells = loops.step(
            self.layout, self.activations, weights, projected, states, masks
        )
        return self.stack_output(hidden), hidden + cells

    def stack_output(self, hidden):
        """The output of a step from every layer's new `h^j_t`."""
        return hidden[-1] if self.output_mode == "top" else concat(hidden)

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
            **self._options_config(),
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


@keras.saving.register_keras_serializable(package="keras_gfrnn")
class GatedFeedbackRNN(CellRNN):
    """Gated Feedback RNN layer (Chung et al., 2015).

    A stack of L tanh / GRU / LSTM layers in one Keras RNN layer, in which
    every layer feeds every layer at the next time step through learned
    scalar "global reset gates". With `h^0_t = x_t` and `h*_{t-1}` every
    layer's previous state side by side, for layers j = 1..L:

    ```
    g^{i->j}_t = sigmoid(w_g^{i->j} . h^{j-1}_t + u_g^{i->j} . h*_{t-1}
                         + b_g^{i->j})
    F^j_t = sum_i g^{i->j}_t * (U^{i->j} h^i_{t-1})
    tanh: h^j_t = tanh(W^j h^{j-1}_t + F^j_t + b^j)
    gru:  h^j_t = z * h^j_{t-1} + (1 - z) * tanh(W_h h^{j-1}_t + b_h
                                                 + r * (F^j_t + b_rh))
    lstm: c^j_t = f * c^j_{t-1} + i * tanh(W_c h^{j-1}_t + F^j_t + b_c),
          h^j_t = o * tanh(c^j_t)
    ```

    The gates (GRU z, r; LSTM i, f, o) read every layer's previous state
    through full, ungated matrices (`gate_inputs="all_layers"`, as in the
    first author's released code, github.com/jych/cle) or only their own
    layer's (`"own_layer"`). `feedback=False` is the paper's stacked
    baseline, equal to Keras' `SimpleRNN` / `GRU(reset_after=True)` /
    `LSTM` layers stacked; `from_keras_stack` starts a layer from such a
    trained stack. The equations in full, the weights (in `layer.cell`,
    named per layer: `kernel_{j}`, `recurrent_kernel_{j}`,
    `feedback_kernel_{j}`, `gate_*_{j}`, `bias_{j}`) and the fused loop
    (prepared once per call, then Keras' own loop): docs/design.md.

    Masking: at a masked step every state is carried over and the output
    repeats the previous output, as in `keras.layers.LSTM`; what the inputs
    hold there (NaN padding included) reaches neither outputs nor
    gradients.

    Args:
        units: Positive integer (the size of each layer, with `num_layers`)
            or a list of per-layer sizes (at most `MAX_LAYERS`, 64).
        num_layers: Number of layers for an integer `units`. Defaults to
            `None`: 1 for an integer `units`, `len(units)` for a list.
        unit_type: `"tanh"`, `"gru"` or `"lstm"` (default).
        feedback: `True` (default): gated feedback; `False`: plain stack.
        gate_inputs: `"all_layers"` (default) or `"own_layer"`: what the
            gates read with feedback. A model saved by keras_gfrnn 0.1.0
            loads as `"own_layer"`.
        output: `"top"` (default): the top layer's state; `"concat"`: every
            layer's, concatenated (attribute `output_mode`).
        activation: Candidate activation. Default `"tanh"`.
        recurrent_activation: Gate activation (global gates too). Default
            `"sigmoid"`.
        use_bias: Default `True`. unit_forget_bias: LSTM; default `True`.
        kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, recurrent_constraint,
        bias_constraint: As in `keras.layers.LSTM`.
        dropout: Float in [0, 1): dropout on every layer's input, one mask
            per sequence. Default 0.
        recurrent_dropout: Float in [0, 1): dropout on `h*_{t-1}` in every
            recurrent read, one mask per sequence. Default 0.
        seed: `None` or an integer in `[0, 2**31 - 1]` (the seeds every
            backend holds).
        return_sequences, return_state, go_backwards, stateful, unroll: As
            in `keras.layers.LSTM`.
        jit_compile: `"auto"` (default), `True` or `False`: whether this
            layer XLA-compiles its step (TensorFlow backend; JAX compiles
            the whole train step anyway, a model's own `jit_compile` is a
            separate switch). `"auto"` does so where TensorFlow sees a GPU:
            on a CPU the compiled step trains slower (docs/performance.md).

    Call arguments:
        inputs: 3D tensor `(batch, timesteps, features)`.
        mask: Boolean tensor `(batch, timesteps)`.
        training: Whether dropout is active.
        initial_state: `[h^1..h^L]` (tanh, GRU) or `[h^1..h^L,
            c^1..c^L]` (LSTM), each `(batch, units_j)`.

    Output shape:
        `(batch, output_size)`, or `(batch, timesteps, output_size)` with
        `return_sequences`; `output_size` is `units_L` (`"top"`) or
        `sum(units)` (`"concat"`). With `return_state`, followed by the
        final states in the order of `initial_state`.

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

    # The cell's own settings, read-only (the shared ones: CellRNN).
    @property
    def units(self):
        """The `units` argument: an integer or a list of sizes."""
        return self.cell.units

    @property
    def layer_units(self):
        """The size of each layer, a tuple (from `units`, `num_layers`)."""
        return self.cell.layer_units

    @property
    def num_layers(self):
        return self.cell.num_layers

    @property
    def unit_type(self):
        return self.cell.unit_type

    @property
    def feedback(self):
        return self.cell.feedback

    @property
    def gate_inputs(self):
        return self.cell.gate_inputs

    @property
    def output_mode(self):
        """The `output` argument (`Layer.output` is the symbolic output)."""
        return self.cell.output_mode

    @property
    def recurrent_activation(self):
        return self.cell.recurrent_activation

    @property
    def unit_forget_bias(self):
        return self.cell.unit_forget_bias

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
        unit_type, weights, settings = read_keras_stack(layers)
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
        for variable, value in stack_weights(cell, weights):
            variable.assign(value)
        return layer

    def inner_loop(self, sequences, initial_state, mask, training=False):
        # As keras.layers.LSTM: prepare once, then Keras' own loop. Here the
        # weights in the loop's layouts, one set of dropout masks per call
        # and layer 1's input projection for every time step; Keras' loop
        # then runs only `gated_feedback_loops.step` (XLA-compiled on
        # TensorFlow where `uses_xla`). Nothing of the call is kept on the
        # layer or its cell.
        cell = self.cell
        layout, activations = cell.layout, cell.activations
        # Training on TensorFlow, the step's matmuls get a gradient that
        # reads kernels transposed once here (`matmul_pretransposed`). Not
        # in inference: a SavedModel keeps no custom gradient, and
        # gradients of a reloaded `serve` must work.
        weights = loops.fuse_weights(
            layout,
            cell.weight_lists(),
            transposed=bool(training),
            dtype=cell.compute_dtype,
        )
        masks = cell.dropout_masks(ops.shape(sequences)[0], training)
        if masks.inputs[0] is not None:
            sequences = sequences * ops.expand_dims(masks.inputs[0], 1)
        if keras.tree.is_nested(mask):
            mask = mask[0]
        if mask is not None:
            # The loop discards what a masked step computes, but not its
            # gradient: padding that holds NaN or inf would make every
            # gradient NaN (0 * NaN). Masked steps read zeros instead.
            keep = ops.expand_dims(ops.cast(mask, "bool"), -1)
            sequences = ops.where(keep, sequences, ops.zeros_like(sequences))
        projected = loops.project_inputs(weights, sequences)

        def step(projected_t, states, weights, masks):
            hidden, cells = loops.step(
                layout, activations, weights, projected_t, states, masks
            )
            return cell.stack_output(hidden), hidden + cells

        if self.uses_xla:
            step = _rnn.xla_compiled(self, "_xla_step", step)
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
            output, new_states = step(projected_t, states, weights, masks)
            if carries_output:
                new_states = [output] + list(new_states)
            return output, new_states

        last_output, outputs, states = _rnn.keras_loop(
            self, loop_step, projected, initial_state, mask
        )
        if carries_output:
            states = list(states)[1:]
        return last_output, outputs, states
