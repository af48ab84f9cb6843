"""Clockwork RNN (Koutnik, Greff, Gomez and Schmidhuber, ICML 2014).

`ClockworkCell` holds the weights and the config, and its `call` is the
reference step; `ClockworkRNN` runs the fast loops of `clockwork_loops`
from a clock at 0, else the cell step by step in Keras' loop. The maths
and the loops: docs/design.md.
"""

import inspect

import keras
import numpy as np
from keras import ops

from keras_gfrnn import _rnn
from keras_gfrnn import clockwork_loops
from keras_gfrnn._rnn import CellRNN
from keras_gfrnn._rnn import DropoutCell
from keras_gfrnn._rnn import check_initial_state
from keras_gfrnn._rnn import check_mask
from keras_gfrnn._rnn import check_rank
from keras_gfrnn._rnn import check_torch_onnx_length
from keras_gfrnn._rnn import variable_value
from keras_gfrnn._validation import check_positive_int
from keras_gfrnn.clockwork_loops import MAX_PERIOD
from keras_gfrnn.clockwork_loops import Schedule
from keras_gfrnn.clockwork_loops import recurrent_drive

# The largest default number of modules: periods 1, 2, ..., 2**30.
_MAX_DEFAULT_MODULES = MAX_PERIOD.bit_length()


def _periods(units, periods, num_modules):
    check_positive_int("units", units)
    if periods is None:
        if num_modules is None:
            raise ValueError(
                "ClockworkRNN needs `periods` or `num_modules`. "
                "Received: periods=None, num_modules=None"
            )
        check_positive_int("num_modules", num_modules)
        if num_modules > min(units, _MAX_DEFAULT_MODULES):
            raise ValueError(
                "Argument `num_modules` must be at most `units` and at most "
                f"{_MAX_DEFAULT_MODULES} (periods 1, 2, ..., "
                f"2**(num_modules - 1) up to {MAX_PERIOD}). Received: "
                f"num_modules={num_modules} with units={units}"
            )
        periods = tuple(2**i for i in range(num_modules))
    else:
        if not isinstance(periods, (list, tuple)) or not periods:
            raise ValueError(
                "Argument `periods` must be a non-empty list of increasing "
                f"positive integers. Received: periods={periods!r}"
            )
        if len(periods) > units:
            raise ValueError(
                "Argument `periods` must have at most `units` entries (one "
                f"module of at least one unit each). Received: "
                f"{len(periods)} periods with units={units}"
            )
        for p in periods:
            check_positive_int("periods", p, shown=periods)
            if p > MAX_PERIOD:
                raise ValueError(
                    f"Argument `periods` must hold periods of at most "
                    f"{MAX_PERIOD} (2**31 - 1: the step counter is int32). "
                    f"Received: periods={periods!r}"
                )
        if any(b <= a for a, b in zip(periods, periods[1:])):
            raise ValueError(
                "Argument `periods` must be strictly increasing. "
                f"Received: periods={periods!r}"
            )
        if num_modules is not None and num_modules != len(periods):
            raise ValueError(
                "Argument `num_modules` must equal len(periods). "
                f"Received: num_modules={num_modules!r} with "
                f"periods={periods!r}"
            )
        periods = tuple(int(p) for p in periods)
    if units % len(periods):
        raise ValueError(
            f"Argument `units` must be divisible by the number of modules "
            f"({len(periods)}). Received: units={units}"
        )
    return periods


@keras.saving.register_keras_serializable(package="keras_gfrnn")
class ClockworkCell(DropoutCell):
    """Cell class for `ClockworkRNN`: one step of a Clockwork RNN.

    `units` hidden units in g equal modules of `m = units / g` units; module
    i ticks with period `T_i` (increasing). With the step counter t (0 at the
    first step), module i is active iff `t mod T_i == 0`:

    ```
    a_t = activation(x_t W_I + h_{t-1} (W_H * M) + b)
    h_t[module i] = a_t[module i] if t mod T_i == 0 else h_{t-1}[module i]
    ```

    `M` lets each module read itself and the slower modules (rows of
    `W_H` send, columns receive). Only those blocks are weights, as the
    paper counts them: `recurrent_kernel_{i}` `((g - i + 1) m, m)` holds
    module i's column of blocks (its own, then the slower modules'), so a
    layer has `d n + n + m^2 g (g + 1) / 2` parameters (`n = units`, d
    inputs, with bias); `recurrent_kernel` assembles `W_H * M`. Each module
    is computed from the modules it reads only: a NaN in a fast module
    never reaches a slower one. The schedule is
    `clockwork_loops.Schedule(periods)` (docs/design.md).

    States: `[h, t]`: h `(batch, units)` and the step counter t
    `(batch, 1)`, kept modulo the least common multiple of the periods.
    `ClockworkRNN` keeps t exact (int32) under every dtype policy; inside a
    plain `keras.layers.RNN` it has the compute dtype (exact in float16 up
    to 2048).

    Args:
        units: Positive integer divisible by the number of modules.
        periods: Increasing positive integers, one per module.
        num_modules: With `periods=None`: periods 1, 2, 4, ...
        activation: Defaults to `"tanh"`.
        use_bias: Defaults to `True`.
        kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        kernel_constraint, recurrent_constraint, bias_constraint: As in
            `keras.layers.SimpleRNN`; the recurrent regularizer and
            constraint apply to each block `recurrent_kernel_{i}` (an
            L1 / L2 penalty sums to that of `W_H * M`; a norm constraint
            bounds a block's rows or columns, not the dense matrix's).
        dropout, recurrent_dropout: Floats in [0, 1).
        seed: Random seed for dropout: None or an integer in
            [0, 2**31 - 1] (the seeds every backend holds).

    Reference:
        Koutnik, Greff, Gomez, Schmidhuber. A Clockwork RNN. ICML 2014.
        https://arxiv.org/abs/1402.3511
    """

    def __init__(
        self,
        units,
        periods=None,
        num_modules=None,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
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
        self.periods = _periods(units, periods, num_modules)
        self.schedule = Schedule(self.periods)
        self.units = int(units)
        self.num_modules = len(self.periods)
        self.module_size = self.units // self.num_modules
        self.clock_cycle = self.schedule.clock_cycle
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
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
        self.state_size = [self.units, 1]
        self.output_size = self.units

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        # Only the blocks the maths reads: per module i, the rows of the
        # modules it reads (itself and the slower ones), its own columns.
        # Drawn as one (units, units) matrix, as SimpleRNN's, then cut.
        dense = self.recurrent_initializer(
            (self.units, self.units), dtype=self.variable_dtype
        )
        self.recurrent_kernels = [
            self.add_weight(
                name=f"recurrent_kernel_{i + 1}",
                shape=tuple(block.shape),
                initializer=_constant(block),
                regularizer=self.recurrent_regularizer,
                constraint=self.recurrent_constraint,
            )
            for i, block in enumerate(_blocks(dense, self.num_modules))
        ]
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(self.units,),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        self.built = True

    @property
    def input_dim(self):
        return self.kernel.shape[0]

    @property
    def recurrent_kernel(self):
        """`W_H * M`, `(units, units)`, zero where no module reads (a
        tensor assembled from `recurrent_kernels`, for reading)."""
        m = self.module_size
        return ops.concatenate(
            [
                ops.pad(variable_value(k), [[i * m, 0], [0, 0]])
                for i, k in enumerate(self.recurrent_kernels)
            ],
            axis=1,
        )

    def module_kernels(self):
        """The recurrent weights as the loops take them: per module i =
        1..g, `((g - i + 1) m, m)`, rows of itself and the slower modules."""
        return [variable_value(k) for k in self.recurrent_kernels]

    def load_own_variables(self, store):
        # Files saved before the blocks (keras_gfrnn 0.2.0.dev0 up to issue
        # 27) hold one dense (units, units) `recurrent_kernel`: keep the
        # blocks the maths read, which computes what those models computed.
        # With more than one module the two layouts differ in their count
        # of variables.
        legacy = self.num_modules > 1 and len(store.keys()) == 2 + self.use_bias
        if not legacy:
            return super().load_own_variables(store)
        dense = store["1"]
        if tuple(dense.shape) != (self.units, self.units):
            raise ValueError(
                f"Layer '{self.name}' (units={self.units}) cannot load a "
                "file's dense recurrent_kernel of shape "
                f"{tuple(dense.shape)}: expected ({self.units}, "
                f"{self.units})."
            )
        self.kernel.assign(store["0"])
        blocks = _blocks(np.asarray(dense), self.num_modules)
        for variable, block in zip(self.recurrent_kernels, blocks):
            variable.assign(block)
        if self.use_bias:
            self.bias.assign(store["2"])

    def connectivity(self):
        """The block mask M `(units, units)`: 1 where sender feeds receiver."""
        m, g = self.module_size, self.num_modules
        reads = np.zeros((g, g), dtype="float32")
        for receiver in range(g):
            reads[list(self.schedule.reads(receiver)), receiver] = 1.0
        blocks = np.kron(reads, np.ones((m, m), dtype="float32"))
        return ops.cast(blocks, self.compute_dtype)

    def dropout_masks(self, batch_size, training):
        """Dropout masks for one sequence, `[input_mask, recurrent_mask]`
        (`None` where inactive): `(batch, input_dim)` and `(batch, units)`
        of 0 and `1 / (1 - rate)`, drawn anew at each call in that order
        (when to draw: `_rnn.DropoutCell`)."""
        masks = [None, None]
        if training and self.dropout > 0:
            masks[0] = self._mask((batch_size, self.input_dim), self.dropout)
        if training and self.recurrent_dropout > 0:
            masks[1] = self._mask(
                (batch_size, self.units), self.recurrent_dropout
            )
        return masks

    def call(self, inputs, states, training=False):
        h, t = (variable_value(s) for s in states)
        masks = self.step_masks(ops.shape(inputs)[0], training)
        h_new, t_new = self.step(inputs, h, t, masks, self.module_kernels())
        return h_new, [h_new, t_new]

    def step(self, inputs, h, t, masks, kernels):
        """One step from `h`, counter `t` (any dtype, returned in it), the
        sequence's dropout `masks` and `module_kernels`: `(h_t, t + 1)`."""
        counter = ops.cast(t, "int32")
        input_mask, recurrent_mask = masks
        if input_mask is not None:
            inputs = inputs * input_mask
        h_read = h if recurrent_mask is None else h * recurrent_mask
        a = ops.matmul(inputs, self.kernel) + recurrent_drive(
            h_read, kernels, range(self.num_modules)
        )
        if self.bias is not None:
            a = a + self.bias
        a = self.activation(a)
        active = self.schedule.active_units(counter, self.module_size)
        h_new = ops.where(active, a, h)
        return h_new, ops.cast(self.schedule.advance(counter, 1), t.dtype)

    def get_config(self):
        config = {
            "units": self.units,
            "periods": list(self.periods),
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **self._options_config(),
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="keras_gfrnn")
class ClockworkRNN(CellRNN):
    """Clockwork RNN layer (Koutnik et al., 2014).

    `units` hidden units in g equal modules that tick at increasing periods
    T_1 < ... < T_g (default 1, 2, 4, ...). With the step counter t (0 at the
    first step of a sequence), module i updates iff `t mod T_i == 0` and
    otherwise keeps its state; slow modules feed fast ones:

    ```
    a_t = activation(x_t W_I + h_{t-1} (W_H * M) + b)
    h_t[module i] = a_t[module i] if t mod T_i == 0 else h_{t-1}[module i]
    ```

    `M` lets module i read itself and the slower modules; only those
    blocks of `W_H` are weights (`d n + n + m^2 g (g + 1) / 2` parameters
    with `units` n in g modules of m, d input features: `count_params()`
    is the paper's count), and a NaN in a fast module never reaches a
    slower one. The output is `h_t`; a downstream `Dense` plays `W_O`.

    Inactive modules cost nothing: from a clock at 0 (no `initial_state`,
    not `stateful`), with no mask and no recurrent dropout, the layer
    projects every step's input in one matmul, then computes at each step
    only the modules active there (`keras_gfrnn.clockwork_loops`: a static
    length up to `MAX_UNROLLED_STEPS` unrolled, longer or unknown lengths
    in blocks of `clock_cycle` steps or module by module). Otherwise
    (masks, a clock offset, recurrent dropout) `ClockworkCell` runs step by
    step in Keras' loop. Every path gives the same numbers
    (docs/design.md).

    Masking: a masked step changes nothing and does not advance the clock.
    `stateful=True` carries the clock across batches; `reset_states()`
    restarts it at 0.

    Args:
        units: Positive integer divisible by the number of modules.
        periods: Strictly increasing positive integers, one per module,
            at most 2**31 - 1, at most `units` of them.
        num_modules: With `periods=None`, periods `1, 2, 4, ...,
            2**(num_modules - 1)`; at most `units` and at most 31.
        activation: Defaults to `"tanh"`.
        use_bias: Defaults to `True`.
        kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, recurrent_constraint,
        bias_constraint: As in `keras.layers.SimpleRNN`; the recurrent
            ones apply to each block of `W_H` (see `ClockworkCell`).
        dropout, recurrent_dropout: Floats in [0, 1), one mask per sequence.
        seed: Random seed for dropout: None or an integer in
            [0, 2**31 - 1] (the seeds every backend holds).
        return_sequences, return_state, go_backwards, stateful, unroll: As in
            `keras.layers.SimpleRNN`.
        jit_compile: `"auto"` (default), `True` or `False`: whether the
            fast loop is compiled with XLA (TensorFlow backend: a static
            length as one program, module by module; otherwise the body of
            its loop). `"auto"` does so where TensorFlow sees a GPU.

    Call arguments:
        inputs: 3D tensor `(batch, timesteps, features)`.
        mask: Boolean tensor `(batch, timesteps)`.
        training: Whether dropout is active.
        initial_state: `[h, t]`: h `(batch, units)` and the step counter t
            `(batch, 1)` (steps already processed: non-negative integers up
            to 2**31 - 1, any numeric dtype; other values raise a
            `ValueError` where they are known when called, eagerly).
            Keyword or second positional argument alike.

    Output shape:
        `(batch, units)` or `(batch, timesteps, units)`; with `return_state`
        followed by the final `h` and the final counter `t` `(batch, 1)`
        (int32 under every dtype policy), counted modulo `clock_cycle` =
        lcm(periods) where that fits int32.

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((None, 1)),
        ClockworkRNN(512, num_modules=8, return_sequences=True),
        keras.layers.Dense(1),
    ])
    ```

    Reference:
        Koutnik, Greff, Gomez, Schmidhuber. A Clockwork RNN. ICML 2014.
        https://arxiv.org/abs/1402.3511
    """

    def __init__(
        self,
        units,
        periods=None,
        num_modules=None,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
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
        cell = ClockworkCell(
            units,
            periods=periods,
            num_modules=num_modules,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
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
            name="clockwork_cell",
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
        # Keep jit_compile="auto" from choosing XLA for models with this
        # layer on TensorFlow: the clocked loops for long or unknown lengths
        # are while loops (`clockwork_loops.scan_carries`), and XLA could
        # not compile the gradient of keras.ops.scan's, used before; the
        # layer's own `jit_compile` compiles its step instead. JAX's scan
        # compiles (and JAX must compile: an uncompiled JAX train step runs
        # op by op).
        self.supports_jit = keras.backend.backend() != "tensorflow"

    # The cell's own settings, read-only (the shared ones: CellRNN).
    @property
    def units(self):
        return self.cell.units

    @property
    def periods(self):
        return self.cell.periods

    @property
    def num_modules(self):
        return self.cell.num_modules

    @property
    def module_size(self):
        return self.cell.module_size

    @property
    def clock_cycle(self):
        """lcm(periods): the counter is kept modulo this."""
        return self.cell.clock_cycle

    def build(self, sequences_shape, initial_state_shape=None):
        super().build(sequences_shape, initial_state_shape)
        if self.stateful and self.states[1].dtype != "int32":
            # keras.layers.RNN keeps float state variables, read in the
            # compute dtype (float16: inexact past 2048): the counter gets
            # an int32 one, untracked like the others.
            with keras.name_scope(self.name, caller=self):
                self.states[1] = keras.Variable(
                    np.zeros(self.states[1].shape, dtype="int32"),
                    trainable=False,
                    name="rnn_state",
                )

    def __call__(self, *args, **kwargs):
        # Keras casts every float argument to the compute dtype before
        # `call` (float16 under mixed_float16: inexact past 2048), so the
        # counter of an initial state goes in as int32, whether it is
        # passed by keyword or as the second positional argument.
        args, kwargs = _with_int32_counter(self, args, kwargs)
        return super().__call__(*args, **kwargs)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        # keras.layers.RNN.call's work, with the counter kept exact (int32)
        # from the initial state to the returned one: Keras' casts every
        # state to the compute dtype.
        check_rank(self, sequences.shape)
        check_mask(self, sequences.shape, mask)
        check_torch_onnx_length(self, sequences.shape)
        if self.unroll and sequences.shape[1] is None:
            raise ValueError(
                "Cannot unroll a ClockworkRNN whose time dimension is "
                f"undefined. Received: inputs.shape={tuple(sequences.shape)}"
            )
        counter = None  # None: the clock starts at 0
        if initial_state is not None:  # checked by `__call__`
            h0, counter = initial_state
        elif self.stateful:
            _check_stateful_batch(self, sequences)
            h0, counter = (variable_value(s) for s in self.states)
        else:
            h0 = self.cell.get_initial_state(ops.shape(sequences)[0])[0]
        h0 = ops.convert_to_tensor(h0, dtype=self.cell.compute_dtype)
        if counter is not None and self.clock_cycle <= MAX_PERIOD:
            counter = ops.mod(ops.cast(counter, "int32"), self.clock_cycle)
        if keras.tree.is_nested(mask):
            mask = mask[0]
        last, outputs, h, counter = self._run(
            sequences, h0, counter, mask, training
        )
        last = ops.cast(last, self.compute_dtype)
        outputs = ops.cast(outputs, self.compute_dtype)
        h = ops.cast(h, self.compute_dtype)
        counter = ops.cast(counter, "int32")
        if self.stateful:
            self.states[0].assign(ops.cast(h, self.states[0].dtype))
            self.states[1].assign(ops.cast(counter, self.states[1].dtype))
        output = outputs if self.return_sequences else last
        if self.return_state:
            return output, h, counter
        return output

    def compute_output_spec(self, sequences, initial_state=None, **kwargs):
        spec = super().compute_output_spec(
            sequences, initial_state=initial_state, **kwargs
        )
        if not self.return_state:
            return spec
        counter = keras.KerasTensor(spec[-1].shape, dtype="int32")
        return (*spec[:-1], counter)

    def _run(self, sequences, h0, counter, mask, training):
        """`(last output, outputs, final h, final counter)`: the fast loop
        from a clock at 0 (`counter` None), no mask and no recurrent
        dropout; else the cell step by step in Keras' loop."""
        recurrent_dropout = training and self.cell.recurrent_dropout > 0
        if counter is None and mask is None and not recurrent_dropout:
            return self._fast_loop(sequences, h0, training)
        if counter is None:
            counter = ops.zeros((ops.shape(sequences)[0], 1), dtype="int32")
        cell = self.cell
        # One set of masks for the whole sequence, drawn here: a draw in
        # the loop body would give every step its own (and on JAX leave
        # the trace).
        masks = cell.dropout_masks(ops.shape(sequences)[0], training)
        kernels = cell.module_kernels()

        def cell_step(inputs, states):
            h, t = states
            h_new, t_new = cell.step(inputs, h, t, masks, kernels)
            return h_new, [h_new, t_new]

        last, outputs, (h, counter) = _rnn.keras_loop(
            self, cell_step, sequences, [h0, counter], mask
        )
        return last, outputs, h, counter

    def _fast_loop(self, sequences, h0, training):
        """From t = 0, no mask, no recurrent dropout: every step's input
        projected in one matmul, then a loop of `clockwork_loops` that
        computes only the active modules."""
        cell = self.cell
        x = ops.flip(sequences, axis=1) if self.go_backwards else sequences
        steps = ops.shape(x)[1]
        input_mask, _ = cell.dropout_masks(ops.shape(x)[0], training)
        if input_mask is not None:
            x = x * ops.expand_dims(input_mask, 1)
        projected = ops.matmul(x, cell.kernel)  # every step, every module
        if cell.bias is not None:
            projected = projected + cell.bias
        compiler = None
        if self.uses_xla:

            def compiler(name, fn):
                return _rnn.xla_compiled(self, name, fn)

        steps_known = x.shape[1]
        if steps_known is not None and keras.backend.backend() == "torch":
            # torch's tracer (TorchScript, ONNX export) gives sizes as
            # tensors; the trace is for this one length.
            steps_known = int(steps_known)
        loop = clockwork_loops.choose_loop(
            cell.schedule,
            steps_known,
            compiled=compiler is not None,
            # Eager JAX calls keep the unrolled loop: run op by op, where a
            # scan would compile anew at every call. Any JAX transform
            # counts as traced (also jax.grad without jit, in Keras' JAX
            # run_eagerly=True / jit_compile=False debugging modes).
            jax_traced=_traced_by_jax(projected),
        )
        outputs = clockwork_loops.run(
            loop,
            cell.schedule,
            cell.activation,
            cell.module_kernels(),
            projected,
            h0,
            compiler=compiler,
        )
        # On TensorFlow not `outputs[:, -1]`: TensorFlow's graph optimizer
        # (grappler's arithmetic optimizer, TF 2.21) rewrote that slice of
        # the unrolled loop's stack into a wrong tensor when the last step
        # updates a slow module (tested: tf.function equals eager). On torch
        # the slice: Keras' `take` there calls `ravel`, which torch's
        # TorchScript ONNX exporter cannot export.
        if keras.backend.backend() == "torch":
            last = outputs[:, -1]
        else:
            last = ops.take(outputs, steps - 1, axis=1)
        start = ops.zeros((ops.shape(x)[0], 1), dtype="int32")
        return last, outputs, last, cell.schedule.advance(start, steps)


def _blocks(dense, num_modules):
    """The blocks of a dense `(units, units)` recurrent matrix that the
    modules read: per module i = 1..g, the rows of itself and the slower
    modules, its own columns, `((g - i + 1) m, m)` (`recurrent_kernel`
    puts them back)."""
    m = dense.shape[0] // num_modules
    return [dense[i * m :, i * m : (i + 1) * m] for i in range(num_modules)]


def _constant(value):
    """An initializer that returns `value` (a block of a matrix drawn once
    by the layer's `recurrent_initializer`)."""

    if keras.backend.backend() == "torch":
        # a block is a strided view of the drawn matrix: the variable would
        # keep that view, and the whole matrix alive
        value = value.contiguous()

    def initializer(shape, dtype=None):
        return ops.cast(ops.reshape(value, shape), dtype)

    return initializer


def _with_int32_counter(layer, args, kwargs):
    """`(args, kwargs)` of a call, the counter of an initial state (keyword
    or positional) checked and cast to int32; the state list checked first
    (Keras refuses a mix of lists and tensors with a message that does not
    say what to pass)."""
    try:
        bound = _CALL_SIGNATURE.bind_partial(None, *args, **kwargs)
    except TypeError:  # Keras' own call reports what is wrong
        return args, kwargs
    state = bound.arguments.get("initial_state")
    if state is None:
        return args, kwargs
    check_initial_state(layer, state)
    state = [state[0], _checked_counter(state[1])]
    if "initial_state" in kwargs:
        return args, {**kwargs, "initial_state": state}
    return (args[0], state, *args[2:]), kwargs


def _check_stateful_batch(layer, sequences):
    """A stateful layer's inputs have the batch size of its states."""
    expected, batch = layer.states[0].shape[0], sequences.shape[0]
    if expected is not None and batch is not None and batch != expected:
        raise ValueError(
            f"A stateful {type(layer).__name__} takes inputs of the batch "
            f"size of its states ({expected}). Received: inputs.shape="
            f"{tuple(sequences.shape)}"
        )


def _checked_counter(counter):
    """`initial_state[1]` as int32, its values checked where they are
    known (eagerly): non-negative integers up to MAX_PERIOD."""
    value = _known_value(counter)
    if value is not None:
        value = np.asarray(value, dtype="float64")
        exact = np.isfinite(value) & (value == np.round(value))
        if not np.all(exact & (value >= 0) & (value <= MAX_PERIOD)):
            raise ValueError(
                "Argument `initial_state[1]` (the step counter) must hold "
                f"non-negative integers up to {MAX_PERIOD}. Received: "
                f"initial_state[1]={np.array2string(value, threshold=8)}"
            )
    return ops.cast(counter, "int32")


def _traced_by_jax(tensor):
    """Whether `tensor` is a JAX tracer (inside `jax.jit` or a transform)."""
    if keras.backend.backend() != "jax":
        return False
    import jax

    return isinstance(tensor, jax.core.Tracer)


def _known_value(tensor):
    """The value of `tensor` as NumPy, or None where it is not known yet
    (symbolic, traced in a graph or under jit)."""
    if isinstance(tensor, keras.KerasTensor):
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            return None
    elif _traced_by_jax(tensor):
        return None
    return ops.convert_to_numpy(tensor)


_CALL_SIGNATURE = inspect.signature(ClockworkRNN.call)
