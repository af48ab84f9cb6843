"""Fast inner loops shared by the recurrent layers of keras_gfrnn.

A fused layer hoists per-call work (weight concatenation, the input
projection of every time step, per-sequence dropout masks) out of the
recurrent loop, then runs the loop of `keras.layers.RNN` with its cell in
"fused" mode: the cell reads the prepared tensors from a `FusedContext`
instead of recomputing them at every step. The cell's plain `call` stays the
reference: used on its own inside `keras.layers.RNN` it computes the same
numbers, only with the per-step work left in the loop.
"""

import contextlib

import keras


class FusedContext:
    """Tensors prepared once per call and read by the cell at every step."""

    def __init__(self, **tensors):
        self.__dict__.update(tensors)


def run_fused(rnn_layer, context, sequences, initial_state, mask, training):
    """Run `keras.layers.RNN`'s own loop over `sequences` with a fused cell.

    `sequences` are the pre-projected inputs. Masking, `go_backwards`,
    `unroll` and `return_sequences` are handled by Keras' loop exactly as
    for the built-in layers.
    """
    with fused_cell(rnn_layer.cell, context):
        return keras.layers.RNN.inner_loop(
            rnn_layer, sequences, initial_state, mask, training=training
        )


@contextlib.contextmanager
def fused_cell(cell, context):
    previous = getattr(cell, "_fused_context", None)
    object.__setattr__(cell, "_fused_context", context)
    try:
        yield cell
    finally:
        object.__setattr__(cell, "_fused_context", previous)


def check_jit_compile(value):
    if not (isinstance(value, bool) or value == "auto"):
        raise ValueError(
            "Argument `jit_compile` must be one of 'auto', True or False. "
            f"Received: jit_compile={value!r}"
        )
    return value


def uses_xla(jit_compile):
    """Whether a layer with this `jit_compile` compiles its step with XLA.

    Only the TensorFlow backend compiles a step on its own (JAX compiles the
    whole model anyway). "auto" compiles where it was measured to pay: when
    TensorFlow sees a GPU (on CPU the compiled step trains slower; see
    benchmarks/).
    """
    if jit_compile is False or keras.backend.backend() != "tensorflow":
        return False
    if jit_compile is True:
        return True
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def xla_compiled(owner, name, fn):
    """`fn` compiled with XLA (TensorFlow), created once per `owner`.

    Cached on the owner under `name` (untracked), so every trace of the
    model reuses one `tf.function` and its compiled programs.
    """
    compiled = owner.__dict__.get(name)
    if compiled is None:
        import tensorflow as tf

        compiled = tf.function(fn, jit_compile=True, autograph=False)
        object.__setattr__(owner, name, compiled)
    return compiled


def tensors(structure):
    """`structure` (dicts, lists, None) with Keras Variables read as tensors:
    a compiled function takes tensors, not Variables."""
    if isinstance(structure, dict):
        return {k: tensors(v) for k, v in structure.items()}
    if isinstance(structure, (list, tuple)):
        return [tensors(v) for v in structure]
    if isinstance(structure, keras.Variable):
        return structure.value
    return structure
