"""Clockwork RNN (Koutnik, Greff, Gomez and Schmidhuber, ICML 2014)."""

import keras
import numpy as np
from keras import ops

from keras_gfrnn import _rnn
from keras_gfrnn import clockwork_loops
from keras_gfrnn._config import resolve_weight_options
from keras_gfrnn._config import serialize_weight_options
from keras_gfrnn._rnn import CellRNN
from keras_gfrnn._rnn import check_initial_state
from keras_gfrnn._rnn import expose_cell_attributes
from keras_gfrnn._validation import check_positive_int
from keras_gfrnn._validation import check_rate
from keras_gfrnn._validation import check_seed
from keras_gfrnn.clockwork_loops import MAX_PERIOD
from keras_gfrnn.clockwork_loops import Schedule
from keras_gfrnn.clockwork_loops import module_kernels
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
class ClockworkCell(keras.layers.Layer):
    """Cell class for `ClockworkRNN`: one step of a Clockwork RNN.

    `units` hidden units in g equal modules of `m = units / g` units; module
    i ticks with period `T_i` (increasing). With the step counter t (0 at the
    first step), module i is active iff `t mod T_i == 0`:

    ```
    a_t = activation(x_t W_I + h_{t-1} (W_H * M) + b)
    h_t[module i] = a_t[module i] if t mod T_i == 0 else h_{t-1}[module i]
    ```

    `M[s, r] = 1` iff the module of sending unit s is at least as slow as
    the module of receiving unit r: slow modules feed fast ones (block-lower-
    triangular, rows send). Each module is computed from the modules it
    reads only (not a product with zeros), so entries of `recurrent_kernel`
    outside M never influence the output and receive zero gradient, and a
    NaN or inf in a fast module never reaches a slower one. The schedule
    (activity rule, connectivity) is `clockwork_loops.Schedule(periods)`.

    States: `[h, t]`: h `(batch, units)` and the step counter t
    `(batch, 1)`, read as an integer and kept modulo the least common
    multiple of the periods (all the activity rule needs). `ClockworkRNN`
    keeps it exact (int32) under every dtype policy; inside a plain
    `keras.layers.RNN` it has the compute dtype (exact in float16 up to
    2048).

    Args:
        units: Positive integer divisible by the number of modules.
        periods: Increasing positive integers, one per module.
        num_modules: With `periods=None`: periods 1, 2, 4, ...
        activation: Defaults to `"tanh"`.
        use_bias: Defaults to `True`.
        kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        kernel_constraint, recurrent_constraint, bias_constraint: As in
            `keras.layers.SimpleRNN`.
        dropout, recurrent_dropout: Floats in [0, 1).
        seed: Random seed for dropout: None or an integer in [0, 2**32)
            (torch: [0, 2**31)).

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
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel",
            shape=(self.units, self.units),
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
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

    def connectivity(self):
        """The block mask M `(units, units)`: 1 where sender feeds receiver."""
        m, g = self.module_size, self.num_modules
        reads = np.zeros((g, g), dtype="float32")
        for receiver in range(g):
            reads[list(self.schedule.reads(receiver)), receiver] = 1.0
        blocks = np.kron(reads, np.ones((m, m), dtype="float32"))
        return ops.cast(blocks, self.compute_dtype)

    def dropout_masks(self, batch_size, input_dim, training):
        masks = [None, None]
        if training and self.dropout > 0:
            masks[0] = self._mask((batch_size, input_dim), self.dropout)
        if training and self.recurrent_dropout > 0:
            masks[1] = self._mask(
                (batch_size, self.units), self.recurrent_dropout
            )
        return masks

    def _mask(self, shape, rate):
        ones = ops.ones(shape, dtype=self.compute_dtype)
        return keras.random.dropout(ones, rate=rate, seed=self.seed_generator)

    def call(self, inputs, states, training=False):
        h, t = (s.value if isinstance(s, keras.Variable) else s for s in states)
        counter = ops.cast(t, "int32")
        input_mask, recurrent_mask = self.dropout_masks(
            ops.shape(inputs)[0], inputs.shape[-1], training
        )
        if input_mask is not None:
            inputs = inputs * input_mask
        h_read = h if recurrent_mask is None else h * recurrent_mask
        kernels = module_kernels(self.recurrent_kernel, self.schedule)
        a = ops.matmul(inputs, self.kernel) + recurrent_drive(
            h_read, kernels, range(self.num_modules)
        )
        if self.bias is not None:
            a = a + self.bias
        a = self.activation(a)
        active = self.schedule.active_units(counter, self.module_size)
        h_new = ops.where(active, a, h)
        t_new = ops.cast(self.schedule.advance(counter, 1), t.dtype)
        return h_new, [h_new, t_new]

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, self.units), dtype=self.compute_dtype),
            ops.zeros((batch_size, 1), dtype=self.compute_dtype),
        ]

    def get_config(self):
        config = {
            "units": self.units,
            "periods": list(self.periods),
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            **serialize_weight_options(self),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


_CELL_ARGS = (
    "units",
    "periods",
    "num_modules",
    "module_size",
    "clock_cycle",
    "activation",
    "use_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
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

    `M` lets module i read itself and slower modules (`recurrent_kernel[s,
    r]` carries sending unit s to receiving unit r, so M is block-lower-
    triangular). Every path computes module i from the modules it reads
    only, so entries of `recurrent_kernel` outside M never influence the
    output and get zero gradient, and a NaN or inf in a fast module never
    reaches a slower one. The output is `h_t`; a downstream `Dense` plays
    `W_O`.

    Inactive modules cost nothing: when the clock starts at 0 (no
    `initial_state`, not `stateful`), no mask and no recurrent dropout, the
    layer projects every step's input in one matmul, then computes at each
    step only the modules active there (a static set), keeping the state
    per module (`keras_gfrnn.clockwork_loops`). A sequence of static length
    up to `MAX_UNROLLED_STEPS` = 1024 steps is unrolled whole (inside
    `jax.jit`, as in Keras' JAX train step: module by module, below, which
    compiles in seconds where the unrolled sequence took minutes); a longer
    one, or one of unknown length, loops over blocks of `clock_cycle` steps
    unrolled inside, and with clock cycles over `MAX_UNROLLED_CYCLE` = 256
    steps runs module by module from the slowest, each module scanning only
    its own ticks with its `m x m` recurrence (time and memory bound by the
    sequence length, whatever the periods). Otherwise (masks, a runtime
    clock offset) it runs `ClockworkCell` step by step inside
    `keras.layers.RNN`; every path gives the same numbers.

    Masking: a masked step changes nothing and does not advance the clock.
    `stateful=True` carries the clock across batches; `reset_states()`
    restarts it at 0.

    The step counter is an integer under every dtype policy (int32 inside
    the layer and in the `stateful` state; returned as float32, exact up
    to 2**24): periods are at most `MAX_PERIOD` = 2**31 - 1, and the counter
    wraps at `clock_cycle` where that fits int32 (else it is exact for
    2**31 - 1 steps).

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
        bias_constraint: As in `keras.layers.SimpleRNN`.
        dropout, recurrent_dropout: Floats in [0, 1), one mask per sequence.
        seed: Random seed for dropout: None or an integer in [0, 2**32)
            (torch: [0, 2**31)).
        return_sequences, return_state, go_backwards, stateful, unroll: As in
            `keras.layers.SimpleRNN`.
        jit_compile: `"auto"` (default), `True` or `False`. `True` compiles
            the fast path with XLA on the TensorFlow backend: a sequence of
            static length as one program, module by module from the
            slowest, each module's ticks unrolled (XLA runs the step's
            matmuls one at a time, and this keeps the sequential ones
            `m x m`); otherwise the body of its loop (one clock cycle, or
            one tick of a module). `"auto"` does so when TensorFlow sees a
            GPU. Numbers agree with the uncompiled path to float
            rounding.

    Call arguments:
        inputs: 3D tensor `(batch, timesteps, features)`.
        mask: Boolean tensor `(batch, timesteps)`.
        training: Whether dropout is active.
        initial_state: `[h, t]`: h `(batch, units)` and the step counter t
            `(batch, 1)` (steps already processed: non-negative integers up
            to 2**31 - 1, any numeric dtype; other values raise a
            `ValueError` where they are known when called, eagerly).

    Output shape:
        `(batch, units)` or `(batch, timesteps, units)`; with `return_state`
        followed by the final `h` and the final counter `t`
        `(batch, 1)` (int32: exact on every dtype policy), counted modulo
        `clock_cycle` = lcm(periods).

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
        self._clock_starts_at_zero = False
        # The clocked loops use keras.ops.scan, whose TensorFlow while loop
        # has no iteration bound: XLA cannot compile its gradient. Keep
        # jit_compile="auto" from choosing XLA for models with this layer on
        # TensorFlow. JAX's scan compiles (and JAX must compile: an uncompiled
        # JAX train step runs op by op).
        self.supports_jit = keras.backend.backend() != "tensorflow"

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
        # Keras casts float inputs to the compute dtype before `call`
        # (float16 under mixed_float16: inexact past 2048), so the counter
        # of an initial state goes in as int32.
        if kwargs.get("initial_state") is not None:
            # Checked first: Keras refuses a mix of lists and tensors with
            # a message that does not say what to pass.
            check_initial_state(self, kwargs["initial_state"])
            kwargs["initial_state"] = _with_int32_counter(
                kwargs["initial_state"]
            )
        return super().__call__(*args, **kwargs)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        # Read in inner_loop (same trace): the fast path needs t = 0, and
        # the counter travels as int32 beside keras.layers.RNN's cast of
        # every state to the compute dtype (inexact in float16).
        counter = None
        if initial_state is not None:
            check_initial_state(self, initial_state)
            counter = _checked_counter(initial_state[1])
        elif self.stateful:
            counter = self.states[1].value
        if counter is not None and self.clock_cycle <= MAX_PERIOD:
            counter = ops.mod(counter, self.clock_cycle)
        clock = {"start": counter, "end": None}
        object.__setattr__(self, "_clock", clock)
        try:
            outputs = super().call(
                sequences,
                initial_state=initial_state,
                mask=mask,
                training=training,
            )
        finally:
            object.__setattr__(self, "_clock", None)
        if self.stateful:
            state = self.states[1]
            state.assign(ops.cast(clock["end"], state.dtype))
        if not self.return_state:
            return outputs
        return (*outputs[:-1], ops.cast(clock["end"], "int32"))

    def compute_output_spec(self, sequences, initial_state=None, **kwargs):
        spec = super().compute_output_spec(
            sequences, initial_state=initial_state, **kwargs
        )
        if not self.return_state:
            return spec
        counter = keras.KerasTensor(spec[-1].shape, dtype="int32")
        return (*spec[:-1], counter)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        clock = self.__dict__.get("_clock") or {"start": None}
        h0, counter = initial_state
        start = clock["start"]
        counter = ops.cast(counter, "int32") if start is None else start
        recurrent_dropout = training and self.cell.recurrent_dropout > 0
        if start is not None or mask is not None or recurrent_dropout:
            last, outputs, states = super().inner_loop(
                sequences, [h0, counter], mask, training
            )
        else:
            last, outputs, states = self._fast_loop(
                sequences, h0, counter, training
            )
        clock["end"] = states[1]
        return last, outputs, states

    def _fast_loop(self, sequences, h0, counter, training):
        """From t = 0, no mask, no recurrent dropout: every step's input
        projected in one matmul, then a loop of `clockwork_loops` that
        computes only the active modules."""
        cell = self.cell
        x = ops.flip(sequences, axis=1) if self.go_backwards else sequences
        steps = ops.shape(x)[1]
        input_mask, _ = cell.dropout_masks(
            ops.shape(x)[0], x.shape[-1], training
        )
        if input_mask is not None:
            x = x * ops.expand_dims(input_mask, 1)
        projected = ops.matmul(x, cell.kernel)  # every step, every module
        if cell.bias is not None:
            projected = projected + cell.bias
        compile = None
        if self.uses_xla:

            def compile(name, fn):
                return _rnn.xla_compiled(self, name, fn)

        loop = clockwork_loops.choose_loop(
            cell.schedule,
            x.shape[1],
            compiled=compile is not None,
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
            module_kernels(cell.recurrent_kernel, cell.schedule),
            projected,
            h0,
            compile=compile,
        )
        # Not `outputs[:, -1]`: TensorFlow's graph optimizer (grappler's
        # arithmetic optimizer, TF 2.21) rewrote that slice of the unrolled
        # loop's stack into a wrong tensor when the last step updates a
        # slow module (tested: tf.function equals eager).
        last = ops.take(outputs, steps - 1, axis=1)
        counter = cell.schedule.advance(counter, steps)
        return last, outputs, [last, counter]


def _with_int32_counter(initial_state):
    if not isinstance(initial_state, (list, tuple)) or len(initial_state) != 2:
        return initial_state  # check_initial_state says what is wrong
    return [initial_state[0], _checked_counter(initial_state[1])]


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


expose_cell_attributes(ClockworkRNN, _CELL_ARGS)
