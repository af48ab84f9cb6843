"""Clockwork RNN (Koutnik, Greff, Gomez and Schmidhuber, ICML 2014)."""

import math

import keras
from keras import ops

from keras_gfrnn import _rnn
from keras_gfrnn._config import resolve_weight_options
from keras_gfrnn._config import serialize_weight_options
from keras_gfrnn._rnn import CellRNN
from keras_gfrnn._rnn import expose_cell_attributes
from keras_gfrnn._validation import check_positive_int
from keras_gfrnn._validation import check_rate


def _periods(units, periods, num_modules):
    check_positive_int("units", units)
    if periods is None:
        if num_modules is None:
            raise ValueError(
                "ClockworkRNN needs `periods` or `num_modules`. "
                "Received: periods=None, num_modules=None"
            )
        check_positive_int("num_modules", num_modules)
        periods = tuple(2**i for i in range(num_modules))
    else:
        if not isinstance(periods, (list, tuple)) or not periods:
            raise ValueError(
                "Argument `periods` must be a non-empty list of increasing "
                f"positive integers. Received: periods={periods!r}"
            )
        for p in periods:
            check_positive_int("periods", p, shown=periods)
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
    triangular, rows send). Entries of `recurrent_kernel` outside M never
    influence the output and receive zero gradient.

    States: `[h, t]`: h `(batch, units)` and the step counter t
    `(batch, 1)`, kept modulo the least common multiple of the periods (which
    is all the activity rule needs, and keeps it exact in float16 while that
    multiple is at most 2048).

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
        seed: Random seed for dropout.

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
        self.units = int(units)
        self.num_modules = len(self.periods)
        self.module_size = self.units // self.num_modules
        self.clock_cycle = math.lcm(*self.periods)
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
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
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

    def unit_periods(self):
        """Period of every unit, shape `(units,)` (float, compute dtype)."""
        return ops.cast(
            ops.repeat(ops.array(self.periods), self.module_size),
            self.compute_dtype,
        )

    def connectivity(self):
        """The block mask M `(units, units)`: 1 where sender feeds receiver."""
        module = ops.repeat(ops.arange(self.num_modules), self.module_size)
        return ops.cast(
            ops.expand_dims(module, 1) >= ops.expand_dims(module, 0),
            self.compute_dtype,
        )

    def masked_recurrent_kernel(self):
        return self.recurrent_kernel * self.connectivity()

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
        input_mask, recurrent_mask = self.dropout_masks(
            ops.shape(inputs)[0], inputs.shape[-1], training
        )
        if input_mask is not None:
            inputs = inputs * input_mask
        h_read = h if recurrent_mask is None else h * recurrent_mask
        a = ops.matmul(inputs, self.kernel) + ops.matmul(
            h_read, self.masked_recurrent_kernel()
        )
        if self.bias is not None:
            a = a + self.bias
        a = self.activation(a)
        active = ops.equal(ops.mod(t, self.unit_periods()), 0)
        h_new = ops.where(active, a, h)
        t_new = ops.mod(t + 1, self.clock_cycle)
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
    triangular); entries of `recurrent_kernel` outside M never influence the
    output and get zero gradient. The output is `h_t`; a downstream `Dense`
    plays `W_O`.

    Inactive modules cost nothing: when the clock starts at 0 (no
    `initial_state`, not `stateful`), no mask and no recurrent dropout, the
    layer projects every step's input in one matmul, then computes at each
    step only the modules active there (a static set), keeping the state
    per module. A sequence of static length up to 1024 steps is unrolled
    whole; a longer one, or one of unknown length, loops over blocks of
    `clock_cycle` steps unrolled inside, and with clock cycles over 256
    steps runs module by module from the slowest, each module scanning only
    its own ticks with its `m x m` recurrence. Otherwise (masks, a runtime
    clock offset) it runs `ClockworkCell` step by step inside
    `keras.layers.RNN`; every path gives the same numbers.

    Masking: a masked step changes nothing and does not advance the clock.
    `stateful=True` carries the clock across batches; `reset_states()`
    restarts it at 0.

    Args:
        units: Positive integer divisible by the number of modules.
        periods: Strictly increasing positive integers, one per module.
        num_modules: With `periods=None`, periods `1, 2, 4, ...,
            2**(num_modules - 1)`.
        activation: Defaults to `"tanh"`.
        use_bias: Defaults to `True`.
        kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        activity_regularizer, kernel_constraint, recurrent_constraint,
        bias_constraint: As in `keras.layers.SimpleRNN`.
        dropout, recurrent_dropout: Floats in [0, 1), one mask per sequence.
        seed: Random seed for dropout.
        return_sequences, return_state, go_backwards, stateful, unroll: As in
            `keras.layers.SimpleRNN`.
        jit_compile: `"auto"` (default), `True` or `False`. `True` compiles
            the fast path with XLA on the TensorFlow backend (the whole
            unrolled sequence, or the body of its loop: one clock cycle, or
            one tick of a module); `"auto"` does so
            when TensorFlow sees a GPU. Numbers agree with the uncompiled
            path to float rounding.

    Call arguments:
        inputs: 3D tensor `(batch, timesteps, features)`.
        mask: Boolean tensor `(batch, timesteps)`.
        training: Whether dropout is active.
        initial_state: `[h, t]`: h `(batch, units)` and the step counter t
            `(batch, 1)` (steps already processed, any non-negative integer
            value).

    Output shape:
        `(batch, units)` or `(batch, timesteps, units)`; with `return_state`
        followed by the final `h` and the final counter `t`
        `(batch, 1)`, counted modulo `clock_cycle` = lcm(periods).

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

    def call(self, sequences, initial_state=None, mask=None, training=False):
        # Read in inner_loop (same trace): the fast path needs t = 0.
        self._clock_starts_at_zero = initial_state is None and not self.stateful
        try:
            return super().call(
                sequences,
                initial_state=initial_state,
                mask=mask,
                training=training,
            )
        finally:
            self._clock_starts_at_zero = False

    def inner_loop(self, sequences, initial_state, mask, training=False):
        recurrent_dropout = training and self.cell.recurrent_dropout > 0
        if (
            not self._clock_starts_at_zero
            or mask is not None
            or recurrent_dropout
        ):
            return super().inner_loop(sequences, initial_state, mask, training)
        x = ops.flip(sequences, axis=1) if self.go_backwards else sequences
        steps = ops.shape(x)[1]
        cell = self.cell
        input_mask, _ = cell.dropout_masks(
            ops.shape(x)[0], x.shape[-1], training
        )
        if input_mask is not None:
            x = x * ops.expand_dims(input_mask, 1)
        projected = ops.matmul(x, cell.kernel)  # every step, every module
        if cell.bias is not None:
            projected = projected + cell.bias
        h0, counter = initial_state
        static_steps = x.shape[1]
        if static_steps is not None and static_steps <= MAX_UNROLLED_STEPS:
            outputs = self._unrolled(projected, h0)
        elif cell.clock_cycle <= MAX_UNROLLED_CYCLE:
            outputs = self._by_blocks(projected, h0, steps)
        else:
            outputs = self._by_modules(projected, h0, steps)
        last = outputs[:, -1]
        counter = ops.mod(
            counter + ops.cast(steps, counter.dtype), cell.clock_cycle
        )
        return last, outputs, [last, counter]

    def _unrolled(self, projected, h0):
        """A static length, every step unrolled: at step t only the modules
        active at t are computed (a static set), each from its own input
        ticks and the concatenated states of the modules it reads.

        The states are kept per module, so no step slices or merges the
        full state, and no transpose or loop op is needed: the gradient is
        as plain as the forward pass. With `jit_compile` it is one XLA
        program.
        """
        cell = self.cell
        periods = cell.periods
        # Every active set of any unrollable length (the compiled function
        # below is created once and traced again for other lengths).
        index, plan_weights = self._plans(
            min(cell.clock_cycle, MAX_UNROLLED_STEPS)
        )

        def unrolled(projected, h0, plan_weights):
            schedule = self._schedule(projected.shape[1])
            # Each module's input at its own ticks only.
            drive = []
            for i, u in enumerate(ops.split(projected, len(periods), -1)):
                ticks = u[:, :: periods[i]] if periods[i] > 1 else u
                drive.append(ops.unstack(ticks, axis=1))
            states = ops.split(h0, len(periods), axis=-1)
            current = h0
            outputs = []
            for t, active in enumerate(schedule):
                if active:
                    first = active[0]
                    weights = plan_weights[index[active]]
                    senders = current
                    if first > 0:  # module i reads modules i, i+1, ...
                        senders = _concat(states[first:])
                    inputs = _concat(
                        [drive[i][t // periods[i]] for i in active]
                    )
                    a = cell.activation(inputs + ops.matmul(senders, weights))
                    pieces = [a]
                    if len(active) > 1:
                        pieces = ops.split(a, len(active), axis=-1)
                    for i, piece in zip(active, pieces):
                        states[i] = piece
                    current = _concat(states)
                outputs.append(current)
            return ops.stack(outputs, axis=1)

        if _rnn.uses_xla(self.jit_compile):
            unrolled = _rnn.xla_compiled(self, "_xla_steps", unrolled)
        return unrolled(projected, h0, plan_weights)

    def _schedule(self, steps):
        """The modules active at each of `steps` steps from t = 0."""
        return [
            tuple(i for i, p in enumerate(self.cell.periods) if t % p == 0)
            for t in range(steps)
        ]

    def _plans(self, steps):
        """For every distinct set of active modules in the first `steps`
        steps: its index in the weight list, and the weights it needs: the
        masked recurrent kernel's columns of the active modules, from the
        first active module's rows on (a module reads itself and slower
        modules)."""
        m = self.cell.module_size
        w = self.cell.masked_recurrent_kernel()
        schedule = self._schedule(steps)
        index = {
            a: k for k, a in enumerate(dict.fromkeys(filter(None, schedule)))
        }
        weights = [
            _concat([w[:, a * m : b * m] for a, b in _runs(active)])[
                active[0] * m :
            ]
            for active in index
        ]
        return index, weights

    def _by_blocks(self, projected, h0, steps):
        """A loop over blocks of `clock_cycle` steps; inside a block every
        offset k is unrolled and computes only the modules active at k (a
        static set, since each block starts at a multiple of every
        period)."""
        cell = self.cell
        cycle = cell.clock_cycle
        m = cell.module_size
        schedule = self._schedule(cycle)
        index, plan_weights = self._plans(cycle)
        blocks = -(-steps // cycle)
        padded = ops.pad(
            projected, [[0, 0], [0, blocks * cycle - steps], [0, 0]]
        )
        padded = ops.reshape(padded, (-1, blocks, cycle, cell.units))
        padded = ops.transpose(padded, (1, 0, 2, 3))  # (blocks, B, P, U)

        def block(h, drive, plan_weights):
            outs = []
            for k, u in enumerate(ops.unstack(drive, cycle, axis=1)):
                if not schedule[k]:  # every module sleeps at this offset
                    outs.append(h)
                    continue
                runs = _runs(schedule[k])
                weights = plan_weights[index[schedule[k]]]
                pre = ops.matmul(h[:, schedule[k][0] * m :], weights)
                if len(runs) > 1:
                    u = ops.concatenate(
                        [u[:, a * m : b * m] for a, b in runs], axis=1
                    )
                elif runs[0] != (0, cell.num_modules):
                    u = u[:, runs[0][0] * m : runs[0][1] * m]
                a = cell.activation(u + pre)
                h = _merge(h, a, runs, m, cell.num_modules)
                outs.append(h)
            return h, ops.stack(outs, axis=1)

        xla = _rnn.uses_xla(self.jit_compile)
        if xla:
            block = _rnn.xla_compiled(self, "_xla_block", block)

        # keras.ops.scan on TensorFlow needs ys shaped like the carry, so
        # the block's outputs travel in the carry too.
        def scan_step(carry, drive):
            carry = list(block(carry[0], drive, plan_weights))
            return carry, carry

        _, (_, outputs) = ops.scan(
            scan_step, [h0, ops.zeros_like(padded[0])], padded
        )
        return self._unblock(outputs, blocks, steps)

    def _unblock(self, outputs, blocks, steps):
        """(blocks, B, cycle, U) -> (B, steps, U)."""
        outputs = ops.transpose(outputs, (1, 0, 2, 3))
        cycle = self.cell.clock_cycle
        outputs = ops.reshape(outputs, (-1, blocks * cycle, self.cell.units))
        return outputs[:, :steps]

    def _by_modules(self, projected, h0, steps):
        """Module by module, slowest first (long clock cycles)."""
        cell = self.cell
        w = cell.recurrent_kernel
        m = cell.module_size
        held = [None] * cell.num_modules  # h of each module at every step
        before = [None] * cell.num_modules  # the same, one step earlier
        for i in reversed(range(cell.num_modules)):
            period = cell.periods[i]
            cols = slice(i * m, (i + 1) * m)
            drive = projected[:, ::period, cols]  # at ticks 0, T_i, 2T_i..
            if i + 1 < cell.num_modules:
                slower = ops.concatenate(
                    [b[:, ::period] for b in before[i + 1 :]], axis=-1
                )
                drive = drive + ops.matmul(slower, w[(i + 1) * m :, cols])
            own = w[cols, cols]

            def tick(h, u, own):
                h = cell.activation(u + ops.matmul(h, own))
                return h, h

            if _rnn.uses_xla(self.jit_compile):
                tick = _rnn.xla_compiled(self, "_xla_tick", tick)
            _, ticks = ops.scan(
                lambda h, u, tick=tick, own=own: tick(h, u, own),
                h0[:, cols],
                ops.transpose(drive, (1, 0, 2)),
            )
            ticks = ops.transpose(ticks, (1, 0, 2))
            held[i] = ops.repeat(ticks, period, axis=1)[:, :steps]
            before[i] = ops.concatenate(
                [ops.expand_dims(h0[:, cols], 1), held[i][:, :-1]], axis=1
            )
        return ops.concatenate(held, axis=-1)


# Sequences of a static length up to this many steps are unrolled whole.
MAX_UNROLLED_STEPS = 1024
# Longer ones (or of an unknown length) loop over blocks of a clock cycle,
# unrolled inside, for cycles up to this many steps.
MAX_UNROLLED_CYCLE = 256


def _concat(tensors):
    return tensors[0] if len(tensors) == 1 else ops.concatenate(tensors, -1)


def _runs(modules):
    """Contiguous runs of module indices: (0, 1, 3) -> [(0, 2), (3, 4)]."""
    runs = []
    for i in modules:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _merge(h, a, runs, m, modules):
    """h with the active runs replaced by the new values a."""
    if runs == [(0, modules)]:
        return a
    pieces, start, used = [], 0, 0
    for lo, hi in runs:
        if lo > start:
            pieces.append(h[:, start * m : lo * m])
        width = (hi - lo) * m
        pieces.append(a[:, used : used + width])
        used += width
        start = hi
    if start < modules:
        pieces.append(h[:, start * m :])
    return ops.concatenate(pieces, axis=1)


expose_cell_attributes(ClockworkRNN, _CELL_ARGS)
