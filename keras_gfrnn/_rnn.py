"""What the recurrent layers of keras_gfrnn share.

- `CellRNN`: a `keras.layers.RNN` that owns its cell (flat config, checks
  of inputs and initial states that name the argument, the `jit_compile`
  switch).
- `keras_loop`: the one seam into Keras' loop, "run Keras' loop with this
  prepared step", for the steps a layer prepares per call.
- `DropoutCell`: what the cells share: their weight options, dropout
  rates, seed and seed generator, masks (one set per sequence, drawn
  before the loop, in Keras' dropout protocol) and zero initial states.
- `xla_enabled` / `xla_compiled`: when a layer compiles with XLA, and the
  compiled functions it keeps (one per name and layer).
- `concat` / `split`: the features of several tensors side by side, and
  a tensor's features cut into pieces.
"""

import contextlib
import contextvars
import itertools

import keras
from keras import ops

from keras_gfrnn._config import resolve_weight_options
from keras_gfrnn._config import serialize_weight_options
from keras_gfrnn._validation import check_rate
from keras_gfrnn._validation import check_seed


def concat(tensors):
    """`tensors` side by side on the last axis; a single one as it is."""
    tensors = list(tensors)
    if len(tensors) == 1:
        return tensors[0]
    if keras.backend.backend() == "torch":
        import torch  # torch.cat as it is: Keras' adds a conversion

        if all(isinstance(t, torch.Tensor) for t in tensors) and all(
            t.dtype == tensors[0].dtype for t in tensors
        ):
            return torch.cat(tensors, dim=-1)
    return ops.concatenate(tensors, -1)


def split(tensor, sizes):
    """`tensor` cut on its last axis into pieces of `sizes` columns (a
    list; `[tensor]` for one size).

    On TensorFlow and torch through their own split with the sizes as
    they are: `keras.ops.split` takes split points and rebuilds the sizes
    from them with tensor ops (about 15 graph nodes on TensorFlow; on torch
    a `cat`, a `sub` and a host sync per call), which a loop body would run
    at every step. Elsewhere `keras.ops.split`.
    """
    sizes = list(sizes)
    if len(sizes) == 1:
        return [tensor]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.split(tensor, sizes, axis=-1)
    if backend == "torch":  # the op itself, without torch.split's wrappers
        return list(tensor.split_with_sizes(sizes, dim=-1))
    return ops.split(tensor, list(itertools.accumulate(sizes[:-1])), axis=-1)


def variable_value(value):
    """A Keras Variable read as a tensor (what a compiled function or a
    state takes); a tensor as it is."""
    return value.value if isinstance(value, keras.Variable) else value


def _keras_dropout_protocol():
    """The mixin by which `keras.layers.RNN` recognizes cells whose dropout
    masks it has drawn once before its loop (Keras' `DropoutRNNCell`), as
    a tuple of bases: Keras does not export it, so it is taken from the
    bases of its public `SimpleRNNCell`; `()` if a Keras release drops it
    (tests/test_package.py then fails, rather than masks going stale)."""
    return tuple(
        base
        for base in keras.layers.SimpleRNNCell.__mro__
        if base.__name__ == "DropoutRNNCell"
    )[:1]


# True while one of this package's layers runs `keras.layers.RNN.call`:
# the layer draws its cell's masks itself (only when training), so the
# cell's protocol methods draw none. Per thread and per task.
_LAYER_DRAWS_MASKS = contextvars.ContextVar(
    "keras_gfrnn_layer_draws_masks", default=False
)


@contextlib.contextmanager
def layer_draws_masks():
    """Within: the cells' dropout protocol draws nothing (see above)."""
    token = _LAYER_DRAWS_MASKS.set(True)
    try:
        yield
    finally:
        _LAYER_DRAWS_MASKS.reset(token)


class DropoutCell(keras.layers.Layer, *_keras_dropout_protocol()):
    """The setup the cells of this package share.

    The nine weight options (`kernel_initializer` ... `bias_constraint`,
    resolved with Keras' `get` and serialized as Keras' layers do), the
    dropout rates, the `seed` (one rule for every layer:
    `_validation.check_seed`) and its `seed_generator`, masks of 0 and
    `1 / (1 - rate)`, and zero initial states of `state_size`.

    Dropout masks, one set per sequence, as Keras' cells draw them: in a
    `keras.layers.RNN`, Keras asks the cell for its masks once before the
    loop (`get_dropout_mask`, `DropoutRNNCell`'s protocol, here all of
    the cell's masks at once, from `dropout_masks`), every step reads them
    and Keras drops them after the loop; a seed generator advanced inside
    a loop body would draw a new mask at every step (and on JAX break the
    trace). A cell called on its own draws a new set at every training
    call. The package's layers draw theirs in their own call and pass them
    to the step; nothing of a call stays on the cell.
    """

    def _set_options(self, weight_options, dropout, recurrent_dropout, seed):
        for name, value in resolve_weight_options(**weight_options).items():
            setattr(self, name, value)
        self.dropout = check_rate("dropout", dropout)
        self.recurrent_dropout = check_rate(
            "recurrent_dropout", recurrent_dropout
        )
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(seed=self.seed)

    def _options_config(self):
        return {
            **serialize_weight_options(self),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }

    def _mask(self, shape, rate):
        ones = ops.ones(shape, dtype=self.compute_dtype)
        return keras.random.dropout(ones, rate=rate, seed=self.seed_generator)

    def dropout_masks(self, batch_size, training):
        """The cell's masks for one sequence of `batch_size` (each cell
        says which)."""
        raise NotImplementedError

    def step_masks(self, batch_size, training):
        """The masks a call of the cell reads: those Keras' loop drew for
        the sequence, else a new set (a cell called on its own)."""
        if not training:
            return self.dropout_masks(batch_size, False)
        masks = getattr(self, "_sequence_masks", None)
        if masks is None:
            masks = self.dropout_masks(batch_size, True)
        return masks

    # Keras' DropoutRNNCell protocol, called by `keras.layers.RNN.call`
    # before and after its loop (the masks are those of a training call;
    # the cell reads them only when training).
    def get_dropout_mask(self, step_input):
        if _LAYER_DRAWS_MASKS.get() or not (
            self.dropout > 0 or self.recurrent_dropout > 0
        ):
            return None
        masks = getattr(self, "_sequence_masks", None)
        if masks is None:
            masks = self.dropout_masks(ops.shape(step_input)[0], True)
            object.__setattr__(self, "_sequence_masks", masks)
        return masks

    def get_recurrent_dropout_mask(self, step_input):
        return None  # drawn with the others by `get_dropout_mask`

    def reset_dropout_mask(self):
        object.__setattr__(self, "_sequence_masks", None)

    def reset_recurrent_dropout_mask(self):
        self.reset_dropout_mask()

    def get_initial_state(self, batch_size=None):
        return [
            ops.zeros((batch_size, size), dtype=self.compute_dtype)
            for size in self.state_size
        ]


class _PreparedLoop:
    """What `keras.layers.RNN.inner_loop` reads of its layer, with the
    prepared `step` as the cell: a view made for one call, so that nothing
    of the call is stored on the layer or its cell."""

    def __init__(self, layer, step):
        self._layer = layer
        self.cell = step

    def __getattr__(self, name):
        return getattr(self._layer, name)


def keras_loop(layer, step, sequences, initial_state, mask):
    """Runs Keras' own recurrent loop (masks, `go_backwards`, `unroll`,
    `return_sequences`, the backend's `while` / scan) over `sequences` with
    `step(inputs_t, states) -> (output_t, new_states)` in place of the
    layer's cell. Returns `(last_output, outputs, states)`, as
    `keras.layers.RNN.inner_loop`.

    On torch without a mask, `go_backwards` or `unroll`, the same loop
    written out (`_torch_loop`): Keras' torch loop keeps its counter in a
    tensor and flattens and repacks the inputs, outputs and states at
    every step, Python work that was a third of a GatedFeedbackRNN
    predict step on the CPU (docs/performance.md).
    """
    if (
        keras.backend.backend() == "torch"
        and mask is None
        and not layer.go_backwards
        and not layer.unroll
        and sequences.shape[1]
    ):
        return _torch_loop(layer, step, sequences, initial_state)
    return keras.layers.RNN.inner_loop(
        _PreparedLoop(layer, step), sequences, initial_state, mask
    )


def _torch_loop(layer, step, sequences, initial_state):
    # What Keras' torch loop computes for a flat list of states and no
    # mask: the outputs of every step stacked on axis 1 (the last alone,
    # as `(batch, 1, units)`, without `return_sequences`); stateful
    # layers copy the states before each step, as Keras does.
    import torch

    states = list(initial_state)
    outputs = []
    for inputs_t in torch.unbind(sequences, dim=1):
        if layer.stateful:
            states = [ops.copy(state) for state in states]
        output, states = step(inputs_t, states)
        states = list(states)
        if layer.return_sequences or not outputs:
            outputs.append(output)
        else:
            outputs[0] = output
    return output, torch.stack(outputs, dim=1), states


class CellRNN(keras.layers.RNN):
    """A `keras.layers.RNN` that builds its own cell in `__init__`.

    Subclasses get Keras' conventions for free: a flat `get_config` (the
    cell's arguments merged in, no nested "cell"), `from_config(cls(**c))`,
    and input / initial_state checks that name the argument and the value.
    The cell must expose `input_dim` once built.
    """

    def __init__(self, cell, jit_compile="auto", **kwargs):
        super().__init__(cell, **kwargs)
        self.jit_compile = check_jit_compile(jit_compile)

    @property
    def uses_xla(self):
        """Whether this layer XLA-compiles its recurrent loop here.

        `jit_compile` resolved for the current backend and devices: only
        the TensorFlow backend compiles a layer's step on its own (JAX
        compiles the whole train step anyway); "auto" compiles only when
        TensorFlow sees a GPU.
        """
        return xla_enabled(self.jit_compile)

    # The cell settings both layers share, read-only (as keras.layers.LSTM
    # writes its own out); each layer writes out the rest.
    @property
    def activation(self):
        return self.cell.activation

    @property
    def use_bias(self):
        return self.cell.use_bias

    @property
    def kernel_initializer(self):
        return self.cell.kernel_initializer

    @property
    def recurrent_initializer(self):
        return self.cell.recurrent_initializer

    @property
    def bias_initializer(self):
        return self.cell.bias_initializer

    @property
    def kernel_regularizer(self):
        return self.cell.kernel_regularizer

    @property
    def recurrent_regularizer(self):
        return self.cell.recurrent_regularizer

    @property
    def bias_regularizer(self):
        return self.cell.bias_regularizer

    @property
    def kernel_constraint(self):
        return self.cell.kernel_constraint

    @property
    def recurrent_constraint(self):
        return self.cell.recurrent_constraint

    @property
    def bias_constraint(self):
        return self.cell.bias_constraint

    @property
    def dropout(self):
        return self.cell.dropout

    @property
    def recurrent_dropout(self):
        return self.cell.recurrent_dropout

    @property
    def seed(self):
        return self.cell.seed

    def build(self, sequences_shape, initial_state_shape=None):
        check_rank(self, sequences_shape)
        # Built for sequences of any length (what an ONNX export from torch
        # cannot keep: `check_torch_onnx_length`).
        self.open_length = tuple(sequences_shape)[1] is None
        super().build(sequences_shape, initial_state_shape)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        check_rank(self, sequences.shape)
        check_mask(self, sequences.shape, mask)
        check_torch_onnx_length(self, sequences.shape)
        if initial_state is not None:
            check_initial_state(self, initial_state)
        with layer_draws_masks():  # in `inner_loop`, when training
            return super().call(
                sequences,
                initial_state=initial_state,
                mask=mask,
                training=training,
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


def check_torch_onnx_length(layer, shape):
    """On torch, Keras exports a model whose shapes are not all fixed to
    ONNX by tracing it with TorchScript at 1 for every `None`: the loop
    over time is written out for sequences of one step, and the file fails
    (or, for Keras' own RNNs, computes wrong numbers) at any other length.
    A layer built for any length fails such an export with what to do."""
    if keras.backend.backend() != "torch" or not getattr(
        layer, "open_length", False
    ):
        return
    import torch

    tracing = torch.jit.is_tracing() and torch.onnx.is_in_onnx_export()
    shape = tuple(int(d) for d in shape)  # sizes, traced as tensors
    if tracing and shape[1] == 1:
        raise ValueError(
            f"{type(layer).__name__} cannot be exported to ONNX from the "
            "torch backend with an open sequence length: torch traces the "
            "loop over time for one length (here 1, for the `None` of the "
            "model's input). Export with a fixed length, e.g. "
            "`model.export(path, format='onnx', input_signature="
            "[keras.InputSpec(shape=(None, steps, features))])`, or export "
            "from the TensorFlow backend, which keeps any length. Received: "
            f"inputs.shape={shape}"
        )


def check_mask(layer, shape, mask):
    """A mask (or the first of nested ones) must be `(batch, timesteps)`
    of inputs of `shape`, where both are known."""
    if keras.tree.is_nested(mask):
        mask = mask[0]
    if mask is None:
        return
    shape, mask_shape = tuple(shape), tuple(mask.shape)
    expected = shape[:2]
    matches = len(mask_shape) == 2 and all(
        a is None or b is None or a == b for a, b in zip(mask_shape, expected)
    )
    if not matches:
        raise ValueError(
            f"{type(layer).__name__} expects a mask of shape (batch, "
            f"timesteps) = {expected} for inputs of shape {shape}. "
            f"Received: mask.shape={mask_shape}"
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
        if not hasattr(state, "shape"):
            raise ValueError(
                f"{type(layer).__name__} expects initial_state as a list of "
                f"arrays or tensors of shape (batch, size), sizes {expected}. "
                f"Received: initial_state[{k}] of type {type(state).__name__}"
            )
        shape = tuple(state.shape)
        if len(shape) != 2 or (shape[-1] is not None and shape[-1] != size):
            raise ValueError(
                f"{type(layer).__name__} expects initial_state[{k}] of shape "
                f"(batch, {size}). Received: initial_state[{k}].shape={shape}"
            )


def check_jit_compile(value):
    if not (isinstance(value, bool) or value == "auto"):
        raise ValueError(
            "Argument `jit_compile` must be one of 'auto', True or False. "
            f"Received: jit_compile={value!r}"
        )
    return value


def xla_enabled(jit_compile):
    """Whether a layer with this `jit_compile` compiles its step with XLA.

    Only the TensorFlow backend compiles a step on its own (JAX compiles the
    whole model anyway). "auto" compiles when TensorFlow sees a GPU, where
    it pays (docs/performance.md).
    """
    if jit_compile is False or keras.backend.backend() != "tensorflow":
        return False
    if jit_compile is True:
        return True
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


def xla_compiled(owner, name, fn):
    """`fn` compiled with XLA (TensorFlow), created once per `owner` and
    `name` (a layer keeps one per function it compiles).

    Cached on the owner under `name` (untracked), so every trace of the
    model reuses one `tf.function` and its compiled programs.
    """
    compiled = owner.__dict__.get(name)
    if compiled is None:
        import tensorflow as tf

        compiled = tf.function(fn, jit_compile=True, autograph=False)
        object.__setattr__(owner, name, compiled)
    return compiled
