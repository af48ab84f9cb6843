"""Shared plumbing of the layers that own their cell (flat config, checks)."""

import keras

from keras_gfrnn import _fused


class CellRNN(keras.layers.RNN):
    """A `keras.layers.RNN` that builds its own cell in `__init__`.

    Subclasses get Keras' conventions for free: a flat `get_config` (the
    cell's arguments merged in, no nested "cell"), `from_config(cls(**c))`,
    and input / initial_state checks that name the argument and the value.
    The cell must expose `input_dim` once built.
    """

    def __init__(self, cell, jit_compile="auto", **kwargs):
        super().__init__(cell, **kwargs)
        self.jit_compile = _fused.check_jit_compile(jit_compile)

    def build(self, sequences_shape, initial_state_shape=None):
        check_rank(self, sequences_shape)
        super().build(sequences_shape, initial_state_shape)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        check_rank(self, sequences.shape)
        if initial_state is not None:
            check_initial_state(self, initial_state)
        return super().call(
            sequences, initial_state=initial_state, mask=mask, training=training
        )

    def get_config(self):
        config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            config.pop(key, None)
        base = super().get_config()
        del base["cell"]
        return {**base, **config, "jit_compile": self.jit_compile}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def expose_cell_attributes(layer_cls, names):
    """Read-only properties of `layer_cls` reading the same cell attribute."""
    for name in names:
        setattr(
            layer_cls,
            name,
            property(lambda self, _n=name: getattr(self.cell, _n)),
        )


def check_rank(layer, shape):
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(
            f"{type(layer).__name__} expects inputs of rank 3 "
            f"(batch, timesteps, features). Received: inputs.shape={shape}"
        )
    if layer.cell.built and shape[-1] != layer.cell.input_dim:
        raise ValueError(
            f"{type(layer).__name__} was built for {layer.cell.input_dim} "
            f"input features. Received: inputs.shape={shape}"
        )


def check_initial_state(layer, initial_state):
    states = (
        list(initial_state)
        if isinstance(initial_state, (list, tuple))
        else [initial_state]
    )
    expected = layer.state_size
    if len(states) != len(expected):
        raise ValueError(
            f"{type(layer).__name__} expects {len(expected)} initial states "
            f"of sizes {expected}. Received: initial_state with "
            f"{len(states)} tensor(s)"
        )
    for k, (state, size) in enumerate(zip(states, expected)):
        shape = tuple(state.shape)
        if len(shape) != 2 or (shape[-1] is not None and shape[-1] != size):
            raise ValueError(
                f"{type(layer).__name__} expects initial_state[{k}] of shape "
                f"(batch, {size}). Received: initial_state[{k}].shape={shape}"
            )
