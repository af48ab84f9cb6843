"""The fused inner loop of GatedFeedbackRNN.

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
