"""The clock of a Clockwork RNN and the loops that run it fast.

`Schedule(periods)` is the one definition of the activity rule (module i is
active at step t iff `t mod T_i == 0`, Koutnik et al. 2014, with t = 0 at
the first step) and of the connectivity (module i reads itself and every
slower module). `ClockworkCell`, the fast loops below and
`benchmarks/flops.py` all ask it.

The loops run a whole sequence from t = 0 with the input projection
already done (`projected = x W_I + b`, every step, every module). They take
the schedule, the activation, the per-module recurrent kernels
(`ClockworkCell.module_kernels()`), the projection and the initial state;
each active module reads only the modules it is connected to, so a NaN or
inf in a fast module never reaches a slower one, and no FLOP is spent on a
zero block:

- `unrolled`: a static length, every step unrolled; at step t only the
  modules active at t are computed (a static set).
- `unrolled_by_modules`: a static length, module by module as in
  `by_modules` below, each module's ticks unrolled (the sequential chain's
  matmuls are `m x m`: the order for XLA, which runs one matmul at a
  time).
- `by_blocks`: a loop over blocks of one clock cycle, unrolled inside.
- `by_modules`: module by module from the slowest, each scanning only its
  own ticks with its `m x m` recurrence; memory and time are bound by the
  sequence length, whatever the periods.

`choose_loop` says which one a sequence gets (the thresholds are the
documented constants below). Each loop takes `compiler`: `None`, or a
function `compiler(name, fn)` returning `fn` compiled (the layer passes one
that XLA-compiles once per layer and name).
"""

import math
import numbers

import keras
from keras import ops

from keras_gfrnn._rnn import concat

# Periods (and the step counter) are int32: a period is at most this.
MAX_PERIOD = 2**31 - 1
# Sequences of a static length up to this many steps are unrolled whole.
MAX_UNROLLED_STEPS = 1024
# Longer ones (or of a length unknown when traced) loop over blocks of one
# clock cycle, unrolled inside, for clock cycles up to this many steps;
# longer clock cycles run module by module.
MAX_UNROLLED_CYCLE = 256


def is_active(t, period):
    """The activity rule: a module of period `period` is active at step `t`
    iff `t mod period == 0`. Python integers give a bool; tensors (integer
    counters) give a bool tensor, element-wise."""
    if isinstance(t, int) and isinstance(period, int):
        return t % period == 0
    return ops.equal(ops.mod(t, period), 0)


class Schedule:
    """Which modules of a Clockwork RNN are active at which step.

    Args:
        periods: Strictly increasing positive integers `T_1 < ... < T_g`,
            at most `MAX_PERIOD` (checked by the layer).

    Module i is active at step t (0 at the first step of a sequence) iff
    `is_active(t, T_i)`; it reads itself and the slower modules
    `i, ..., g - 1` (`reads(i)`). The pattern repeats every `clock_cycle =
    lcm(periods)` steps.

    Example:

    ```python
    s = Schedule((1, 2, 4))
    s.active(0), s.active(1), s.active(2)  # (0, 1, 2), (0,), (0, 1)
    ```
    """

    def __init__(self, periods):
        self.periods = tuple(int(p) for p in periods)
        self.num_modules = len(self.periods)
        self.clock_cycle = math.lcm(*self.periods)

    def active(self, t):
        """The modules active at step `t` (a Python integer), fastest
        first."""
        return tuple(i for i, p in enumerate(self.periods) if is_active(t, p))

    def plan(self, steps):
        """`active(t)` for t = 0, ..., steps - 1."""
        return [self.active(t) for t in range(steps)]

    def ticks(self, module, steps):
        """The steps among the first `steps` at which `module` is active:
        `range(0, steps, T_module)`."""
        return range(0, steps, self.periods[module])

    def reads(self, module):
        """The modules that `module` reads: itself and every slower one."""
        return range(module, self.num_modules)

    def active_units(self, t, module_size):
        """Bool tensor: unit u is active at counter `t` (an int32 tensor,
        `(batch, 1)`); the units of module i share its period."""
        periods = ops.repeat(
            ops.array(self.periods, dtype="int32"), module_size
        )
        return is_active(t, periods)

    def advance(self, t, steps):
        """The counter `t` (int32 tensor) after `steps` more steps, modulo
        `clock_cycle` where that fits int32 (else not wrapped: exact for
        `MAX_PERIOD` steps)."""
        cycle = self.clock_cycle
        t = ops.convert_to_tensor(t, dtype="int32")
        steps = ops.cast(steps, "int32")
        if cycle > MAX_PERIOD:
            return ops.add(t, steps)
        steps = ops.mod(steps, cycle)
        left = ops.subtract(cycle, steps)  # no int32 overflow: steps < cycle
        return ops.where(
            ops.greater_equal(t, left),
            ops.subtract(t, left),
            ops.add(t, steps),
        )


def recurrent_drive(h, kernels, modules):
    """`h_{t-1} (W_H * M)` for `modules`, following the connectivity: each
    module reads only the modules it is connected to. Concatenated."""
    units = h.shape[-1]
    return concat(
        [
            ops.matmul(h[:, units - kernels[i].shape[0] :], kernels[i])
            for i in modules
        ]
    )


def choose_loop(
    schedule,
    steps,
    max_unrolled_steps=MAX_UNROLLED_STEPS,
    max_unrolled_cycle=MAX_UNROLLED_CYCLE,
    compiled=False,
    jax_traced=False,
):
    """`"unrolled"`, `"unrolled_by_modules"`, `"by_blocks"` or
    `"by_modules"`: the loop that `ClockworkRNN` runs for a sequence of
    `steps` steps (`None`: unknown when traced). A static length gets
    `"unrolled_by_modules"` when `compiled` (the layer compiles its loop
    with XLA: TensorFlow's `jit_compile`) and `"by_modules"` when
    `jax_traced` (traced by a JAX transform, as inside `jax.jit`, which
    compiles the whole train step, where the unrolled sequence compiles
    slowly). Why each: docs/performance.md."""
    if not isinstance(steps, numbers.Integral):
        steps = None  # unknown, or symbolic (a JAX export's length)
    if steps is not None and steps <= max_unrolled_steps:
        if jax_traced:
            return "by_modules"
        return "unrolled_by_modules" if compiled else "unrolled"
    if schedule.clock_cycle <= max_unrolled_cycle:
        return "by_blocks"
    return "by_modules"


def run(loop, schedule, activation, kernels, projected, h0, compiler=None):
    """Runs the loop named `loop` (see `choose_loop`); returns the states
    at every step `(batch, steps, units)`."""
    loops = {
        "unrolled": unrolled,
        "unrolled_by_modules": unrolled_by_modules,
        "by_blocks": by_blocks,
        "by_modules": by_modules,
    }
    return loops[loop](
        schedule, activation, kernels, projected, h0, compiler=compiler
    )


def _compiled(compiler, name, fn):
    return fn if compiler is None else compiler(name, fn)


def unrolled(schedule, activation, kernels, projected, h0, compiler=None):
    """A static length, every step unrolled: at step t only the modules
    active at t are computed, each from its own input ticks and the
    states of the modules it reads. The states are kept per module, so
    the gradient is as plain as the forward pass. With `compiler` it is one
    program ("_xla_steps")."""
    periods = schedule.periods

    def steps_fn(projected, h0, kernels):
        drive = []  # each module's input at its own ticks only
        for i, u in enumerate(ops.split(projected, len(periods), -1)):
            ticks = u[:, :: periods[i]] if periods[i] > 1 else u
            drive.append(ops.unstack(ticks, axis=1))
        states = ops.split(h0, len(periods), axis=-1)
        current = h0
        outputs = []
        for t, active in enumerate(schedule.plan(projected.shape[1])):
            if active:
                inputs = {i: drive[i][t // periods[i]] for i in active}
                states = _step_states(
                    activation, kernels, states, current, active, inputs
                )
                current = concat(states)
            outputs.append(current)
        return ops.stack(outputs, axis=1)

    steps_fn = _compiled(compiler, "_xla_steps", steps_fn)
    return steps_fn(projected, h0, kernels)


def _step_states(activation, kernels, states, current, active, inputs):
    """The per-module states after one step in which the modules `active`
    update: module i from `inputs[i]` and `current[:, (modules it
    reads)]` (the states of the step before, concatenated)."""
    new = list(states)
    for i in active:
        drive = recurrent_drive(current, kernels, (i,))
        new[i] = activation(inputs[i] + drive)
    return new


def by_blocks(schedule, activation, kernels, projected, h0, compiler=None):
    """A loop over blocks of `clock_cycle` steps; inside a block every
    offset k is unrolled and computes only the modules active at k (a
    static set, since each block starts at a multiple of every period).
    With `compiler`, one block is one program ("_xla_block")."""
    cycle = schedule.clock_cycle
    g = schedule.num_modules
    units = projected.shape[-1]
    m = units // g
    plan = schedule.plan(cycle)
    steps = ops.shape(projected)[1]
    # Not -(-steps // cycle): ONNX divides integers towards zero.
    blocks = (steps + cycle - 1) // cycle
    padded = ops.pad(projected, [[0, 0], [0, blocks * cycle - steps], [0, 0]])
    padded = ops.reshape(padded, (-1, blocks, cycle, units))
    padded = ops.transpose(padded, (1, 0, 2, 3))  # (blocks, B, P, U)

    def block(h, drive, kernels):
        states = ops.split(h, g, axis=-1)
        outs = []
        for k, u in enumerate(ops.unstack(drive, cycle, axis=1)):
            if plan[k]:  # else every module sleeps at this offset
                inputs = {i: u[:, i * m : (i + 1) * m] for i in plan[k]}
                states = _step_states(
                    activation, kernels, states, h, plan[k], inputs
                )
                h = concat(states)
            outs.append(h)
        return h, ops.stack(outs, axis=1)

    block = _compiled(compiler, "_xla_block", block)

    # The block's outputs travel in the carry (`scan_carries`).
    def scan_step(carry, drive):
        return list(block(carry[0], drive, kernels))

    _, outputs = scan_carries(
        scan_step, [h0, ops.zeros_like(padded[0])], padded
    )
    outputs = ops.transpose(outputs, (1, 0, 2, 3))  # (B, blocks, P, U)
    outputs = ops.reshape(outputs, (-1, blocks * cycle, units))
    return outputs[:, :steps]


def by_modules(schedule, activation, kernels, projected, h0, compiler=None):
    """Module by module, slowest first: module i scans only its own ticks
    with its `m x m` recurrence, its drive from the slower modules computed
    for all its ticks in one matmul. Each module's states are spread over
    the steps by a gather, so memory stays proportional to the sequence
    length whatever the periods. With `compiler`, one tick is one program
    ("_xla_tick")."""
    steps = ops.shape(projected)[1]
    step_index = ops.arange(steps)

    def tick(h, u, own):
        h = activation(u + ops.matmul(h, own))
        return h, h

    tick = _compiled(compiler, "_xla_tick", tick)

    def own_ticks(h, drive, own):
        ticks = scan_carries(
            lambda h, u: tick(h, u, own)[0], h, ops.transpose(drive, (1, 0, 2))
        )
        return ops.transpose(ticks, (1, 0, 2))

    def spread(ticks, period):
        if keras.backend.backend() == "torch":
            import torch  # Keras' `take` adds a `ravel` torch.onnx refuses

            return torch.index_select(ticks, 1, step_index // period)
        return ops.take(ticks, step_index // period, axis=1)

    return _module_by_module(
        schedule, kernels, projected, h0, own_ticks, spread
    )


def unrolled_by_modules(
    schedule, activation, kernels, projected, h0, compiler=None
):
    """`by_modules` for a static length, each module's ticks unrolled and
    its states spread over the steps by a repeat: the order for
    TensorFlow's `jit_compile` (XLA's program runs mostly one matmul at a
    time, and here the matmuls of the sequential chain are `m x m`, the
    slower modules' part one matmul per module, where `unrolled` reads
    every slower module at every tick). With `compiler` it is one program
    ("_xla_module_steps")."""

    def own_ticks(h, drive, own):
        ticks = []
        for u in ops.unstack(drive, axis=1):
            h = activation(u + ops.matmul(h, own))
            ticks.append(h)
        return ops.stack(ticks, axis=1)

    def steps_fn(projected, h0, kernels):
        # Compiled once per layer: the length is read from each trace's
        # inputs, not from the first call's.
        steps = projected.shape[1]

        def spread(ticks, period):
            # No period-sized tensor: a period past the sequence has one
            # tick.
            return ops.repeat(ticks, min(period, steps), axis=1)[:, :steps]

        return _module_by_module(
            schedule, kernels, projected, h0, own_ticks, spread
        )

    steps_fn = _compiled(compiler, "_xla_module_steps", steps_fn)
    return steps_fn(projected, h0, kernels)


def scan_carries(step, init, xs):
    """`step(carry, x) -> carry` over the first axis of `xs` from `init`;
    returns every step's carry, stacked on a new first axis (a carry that
    is a list gives a list).

    On TensorFlow `tf.scan`: a while loop whose carries are loop variables
    and which knows its number of iterations. `keras.ops.scan` keeps the
    carry in a TensorArray, which tf2onnx writes as an ONNX file that
    onnxruntime refuses to load. Elsewhere `keras.ops.scan`.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.scan(step, xs, initializer=init, parallel_iterations=1)

    def scan_step(carry, x):
        carry = step(carry, x)
        return carry, carry

    return ops.scan(scan_step, init, xs)[1]


def _module_by_module(schedule, kernels, projected, h0, own_ticks, spread):
    """What `by_modules` and `unrolled_by_modules` share. Slowest module
    first, module i: its inputs at its ticks 0, T_i, 2 T_i, ... plus, in
    one matmul, the slower modules' states of the steps before them; then
    `own_ticks(h0_i, drive, own_kernel)`, its states at its ticks `(B,
    ticks, m)`, and `spread(ticks, T_i)`, the same held at every step."""
    g = schedule.num_modules
    m = projected.shape[-1] // g
    held = [None] * g  # h of each module at every step
    before = [None] * g  # the same, one step earlier
    for i in reversed(range(g)):
        period = schedule.periods[i]
        cols = slice(i * m, (i + 1) * m)
        drive = projected[:, ::period, cols]  # at ticks 0, T_i, 2 T_i, ...
        if i + 1 < g:  # the slower modules it reads, at its ticks
            slower = concat([b[:, ::period] for b in before[i + 1 :]])
            drive = drive + ops.matmul(slower, kernels[i][m:])
        held[i] = spread(own_ticks(h0[:, cols], drive, kernels[i][:m]), period)
        if i > 0:  # only faster modules read it
            before[i] = ops.concatenate(
                [ops.expand_dims(h0[:, cols], 1), held[i][:, :-1]], axis=1
            )
    return ops.concatenate(held, axis=-1)
