"""Analytic FLOP counts of one forward pass (matmul work only).

A multiply-add counts 2 FLOPs; element-wise work (activations, gate
products) is left out, so the counts are the arithmetic that a dense
matmul could do at its own speed. A training step is counted as 3 forward
passes (forward, and the two matmuls of the backward pass per forward
matmul).
"""

import math

from keras_gfrnn.clockwork_loops import Schedule
from keras_gfrnn.gated_feedback_rnn import NUM_BLOCKS


def stacked(unit_type, batch, steps, input_dim, units, layers):
    """Keras' stacked SimpleRNN / GRU / LSTM: per layer and step,
    `[x, h] @ W` with `G * H` columns."""
    g = NUM_BLOCKS[unit_type]  # the candidate and the gates
    total, d = 0, input_dim
    for _ in range(layers):
        total += 2 * batch * steps * (d + units) * g * units
        d = units
    return total


def gated_feedback(
    unit_type,
    batch,
    steps,
    input_dim,
    units,
    layers,
    feedback,
    gate_inputs="all_layers",
):
    """GatedFeedbackRNN with `layers` layers of `units` (docs/design.md).

    Per step, layer j: input projection `(G H + L)` columns (the `L` global
    gate logits with feedback); every layer's `h_{t-1}` is read by the
    gates (`(G - 1) H` columns of its own layer's, or with feedback and
    `gate_inputs="all_layers"` of every layer's: `(G - 1) L H`), and with
    feedback by every `U^{i->j}` (`L H` columns) and by the `L x L` global
    gates (each reads all of `h*_{t-1}`: `L^2` columns).
    """
    if not feedback:
        return stacked(unit_type, batch, steps, input_dim, units, layers)
    g = NUM_BLOCKS[unit_type]  # the candidate and the gates
    gate_targets = layers if gate_inputs == "all_layers" else 1
    per_step = 0
    d = input_dim
    for _ in range(layers):
        per_step += d * (g * units + layers)
        per_step += units * (
            gate_targets * (g - 1) * units + layers * units + layers**2
        )
        d = units
    return 2 * batch * steps * per_step


def clockwork(batch, steps, input_dim, units, periods, active_only=True):
    """ClockworkRNN: the input projection of every module at every step,
    then at step t the recurrence of the modules active at t (each reads
    itself and every slower module), as `clockwork_loops.Schedule` says.
    With `active_only=False`, the dense `U x U` recurrence every step (an
    upper bound of the step-by-step cell, which computes every module at
    every step from the modules it reads)."""
    schedule = Schedule(periods)
    m = units // schedule.num_modules
    total = 2 * batch * steps * input_dim * units
    if not active_only:
        return total + 2 * batch * steps * units * units
    for t in range(steps):
        for i in schedule.active(t):
            senders = len(schedule.reads(i)) * m
            total += 2 * batch * senders * m
    return total


def simple_rnn(batch, steps, input_dim, units):
    return stacked("tanh", batch, steps, input_dim, units, 1)


def renet(batch, height, width, channels, units, patch, unit_type="gru"):
    """ReNet2D: two sweep directions down the columns, then two along the
    rows over the `2 * units` vertical features."""
    rows, cols = height // patch, width // patch
    features = patch * patch * channels
    vertical = 2 * stacked(unit_type, batch * cols, rows, features, units, 1)
    horizontal = 2 * stacked(unit_type, batch * rows, cols, 2 * units, units, 1)
    return vertical + horizontal


def conv2d(batch, height, width, cin, cout, kernel, stride=1):
    out = math.ceil(height / stride) * math.ceil(width / stride)
    return 2 * batch * out * kernel * kernel * cin * cout


def dense(rows, inputs, outputs):
    return 2 * rows * inputs * outputs
