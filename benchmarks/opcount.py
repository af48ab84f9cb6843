"""Ops per time step: a count that does not depend on the machine.

At small batches and sizes a recurrent step's time is set by how many ops
it runs, not by its arithmetic, so the `ops` suite counts them beside
Keras' layers (`count_row`), for one `(x, y)` batch of T time steps:

- TensorFlow: the nodes of the traced graphs. A `while` loop's body runs
  once per step, so its nodes count whole; every other node runs once per
  call and counts `1 / T` (for ClockworkRNN, whose fast loops are
  unrolled, that is the whole count). `train_fwd` is the forward pass of a
  train step (`loss` under a `GradientTape`: the loop bodies that
  TensorFlow rewrote to keep the intermediates), `train_bwd` its gradient
  (nodes under `gradient_tape/` and the loops they run), `predict` the
  inference call (`training=False`). Graph nodes before Grappler's
  rewrites: what the step asks for, constants and loop bookkeeping
  included.
- torch (CPU): the operators dispatched, from `torch.profiler`: ATen ops
  that no other ATen op called (each one a trip through torch's
  dispatcher, a kernel launch on a GPU), per call divided by T. `train_fwd` is
  `loss` with autograd recording, `train_bwd` its `backward()`,
  `predict` the inference call under `torch.no_grad()`.
- JAX compiles the whole step: no count here (`None`).

Nothing is timed; the optimizer's update is not counted (the same for
every model).
"""

import collections

import keras
from keras import ops

KEYS = ("train_fwd", "train_bwd", "predict")


def count_row(model, data, steps):
    """{"train_fwd", "train_bwd", "predict"}: ops per time step of `model`
    on `data` = (x, y) with `steps` time steps (None where the backend
    gives no count)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return tf_counts(model, data, steps)
    if backend == "torch":
        return torch_counts(model, data, steps)
    return dict.fromkeys(KEYS)


def _loss(model, x, y):
    return model.compute_loss(x=x, y=y, y_pred=model(x, training=True))


# -------------------------------------------------------------- TensorFlow
def graph_counts(graph_def, steps):
    """(per-step count of forward nodes, of `gradient_tape/` nodes) of a
    traced graph: `while` bodies whole, other nodes `1 / steps`."""
    library = {f.signature.name: f for f in graph_def.library.function}
    called = collections.defaultdict(set)  # function name -> caller kinds
    bodies, conds = {}, set()

    def scan(nodes, backward):
        for node in nodes:
            back = backward or node.name.startswith("gradient_tape/")
            if node.op in ("While", "StatelessWhile"):
                bodies[node.attr["body"].func.name] = back
                conds.add(node.attr["cond"].func.name)
            for attr in node.attr.values():
                if attr.func.name:
                    called[attr.func.name].add(back)

    scan(graph_def.node, False)
    for name, function in library.items():
        scan(function.node_def, "_grad_" in name)
    counts = [0.0, 0.0]  # forward, backward
    for node in graph_def.node:
        counts[node.name.startswith("gradient_tape/")] += 1 / steps
    for name, function in library.items():
        if name in conds:
            continue
        size = len(function.node_def)
        if name in bodies:
            counts[bodies[name]] += size
        else:
            backward = any(called.get(name, ())) or "_grad_" in name
            counts[backward] += size / steps
    return counts


def tf_counts(model, data, steps):
    import tensorflow as tf

    x, y = (tf.constant(v) for v in data)

    @tf.function
    def train(x, y):
        with tf.GradientTape() as tape:
            loss = _loss(model, x, y)
        return tape.gradient(loss, model.trainable_variables)

    @tf.function
    def predict(x):
        return model(x, training=False)

    fwd, bwd = graph_counts(
        train.get_concrete_function(x, y).graph.as_graph_def(), steps
    )
    infer, _ = graph_counts(
        predict.get_concrete_function(x).graph.as_graph_def(), steps
    )
    return {"train_fwd": fwd, "train_bwd": bwd, "predict": infer}


# ------------------------------------------------------------------- torch
def kernels_run(fn):
    """How many operators `fn()` dispatches: the ATen ops of a
    `torch.profiler` trace that no other ATen op called (a matmul counts
    once, not with the ops it runs inside)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile

    with profile(activities=[ProfilerActivity.CPU]) as trace:
        fn()
    return sum(
        1
        for event in trace.events()
        if event.name.startswith("aten::") and not _has_aten_ancestor(event)
    )


def _has_aten_ancestor(event):
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False


def torch_counts(model, data, steps):
    import torch

    x, y = (ops.convert_to_tensor(v) for v in data)
    model(x, training=True)  # built, and Keras' first-call work done
    losses = []
    fwd = kernels_run(lambda: losses.append(_loss(model, x, y)))
    bwd = kernels_run(lambda: losses[0].backward())
    with torch.no_grad():
        model(x, training=False)
        infer = kernels_run(lambda: model(x, training=False))
    return {
        "train_fwd": fwd / steps,
        "train_bwd": bwd / steps,
        "predict": infer / steps,
    }
