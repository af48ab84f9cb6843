"""ReNet (Visin, Kastner, Cho, Matteucci, Courville and Bengio, 2015)."""

import numbers
import types

import keras
from keras import ops

from keras_gfrnn._config import resolve_option
from keras_gfrnn._config import serialize_option
from keras_gfrnn._validation import MAX_SEED
from keras_gfrnn._validation import check_choice
from keras_gfrnn._validation import check_positive_int
from keras_gfrnn._validation import check_rate
from keras_gfrnn._validation import check_seed

_CELLS = {
    "gru": keras.layers.GRU,
    "lstm": keras.layers.LSTM,
    "simple_rnn": keras.layers.SimpleRNN,
}


def _sub_seed(seed, offset):
    """The seed of the sweep `offset` after the first: `seed + offset`,
    wrapping round to 0 past `MAX_SEED`."""
    return None if seed is None else (seed + offset) % (MAX_SEED + 1)


def _pair(name, value):
    pair = (value, value) if isinstance(value, numbers.Integral) else value
    if (
        not isinstance(pair, (list, tuple))
        or len(pair) != 2
        or any(
            isinstance(v, bool) or not isinstance(v, numbers.Integral) or v <= 0
            for v in pair
        )
    ):
        raise ValueError(
            f"Argument `{name}` must be a positive integer or a pair of "
            f"positive integers. Received: {name}={value!r}"
        )
    return tuple(int(v) for v in pair)


def _custom_objects(options):
    """Every option's class (or function) under the name its serialized
    form carries: the scope in which `keras.layers.Bidirectional`'s copy
    of the forward RNN finds unregistered custom objects and functions."""
    objects = {}
    for value in options.values():
        if value is None:
            continue
        if not isinstance(value, types.FunctionType):
            value = type(value)
        objects[keras.saving.get_registered_name(value)] = value
    return objects


def _option_error(name, value, reason):
    return ValueError(
        f"Argument `{name}` must be an object Keras can serialize and rebuild "
        "from its config (a name, a Keras object, a named function, or a "
        "custom object whose `get_config` holds its arguments): ReNet2D's "
        "RNNs are built from its config, as `keras.layers.Bidirectional` "
        f"copies its layer ({reason}). Received: {name}={value!r}"
    )


def _serialize_option(name, value):
    if isinstance(value, types.LambdaType) and value.__name__ == "<lambda>":
        raise _option_error(
            name, value, "Keras does not rebuild a lambda in safe mode"
        )
    try:
        return serialize_option(name, value)
    except (TypeError, ValueError) as error:
        raise _option_error(name, value, error) from error


def _unrebuildable(options, custom_objects, error):
    """The error naming the option that Keras could not rebuild from its
    config (`error` came from building the RNNs), else `error`."""
    for name, value in options.items():
        try:
            with keras.saving.custom_object_scope(custom_objects):
                resolve_option(name, serialize_option(name, value))
        except (TypeError, ValueError) as reason:
            return _option_error(name, value, reason.__cause__ or reason)
    return error


@keras.saving.register_keras_serializable(package="keras_gfrnn")
class ReNet2D(keras.layers.Layer):
    """ReNet layer: four RNNs sweep an image's patches, a recurrent
    alternative to convolution + pooling (Visin et al., 2015).

    The input is split into I x J non-overlapping patches of
    `patch_size = (p_h, p_w)`, each flattened to `p_h * p_w * channels`
    values in (row, column, channel) order. Then:

    ```
    v^F_{i,j} = RNN_F^v(v^F_{i-1,j}, x_{i,j})   # down every column j
    v^B_{i,j} = RNN_B^v(v^B_{i+1,j}, x_{i,j})   # up every column j
    v_{i,j} = [v^F_{i,j}; v^B_{i,j}]
    h^F_{i,j} = RNN_F^h(h^F_{i,j-1}, v_{i,j})   # left to right, every row i
    h^B_{i,j} = RNN_B^h(h^B_{i,j+1}, v_{i,j})   # right to left, every row i
    output_{i,j} = [h^F_{i,j}; h^B_{i,j}]
    ```

    The four RNNs are Keras' own `GRU`, `LSTM` or `SimpleRNN` layers with
    separate weights; all columns (then all rows) run as one batch, so on a
    GPU they take the cuDNN path when their arguments allow it. The sweeps
    are the public attributes `vertical_sweep` and `horizontal_sweep`, each a
    `keras.layers.Bidirectional` (merge_mode="concat", forward first) taking
    `(batch * J, I, features)` and `(batch * I, J, 2 * units)` sequences.
    Stack ReNet2D layers for the deep ReNet of the paper.

    Args:
        units: Positive integer, units of each of the four RNNs; the output
            has `2 * units` channels.
        patch_size: Integer or pair `(p_h, p_w)`. Defaults to `(2, 2)`.
        cell: `"gru"` (default), `"lstm"` or `"simple_rnn"`.
        padding: `"valid"` (default): height and width must be divisible by
            the patch; `"same"`: zero-pad bottom and right up to a multiple.
        data_format: `"channels_last"` (default) or `"channels_first"`.
        activation: Activation of the RNNs. Defaults to `"tanh"`.
            This and the initializers, regularizers and constraints below
            take what Keras' RNNs take (names, Keras objects, functions,
            custom objects), but not a lambda or an object without a
            working `get_config`: the RNNs are built from the config, as
            `keras.layers.Bidirectional` copies its layer.
        dropout, recurrent_dropout: Floats in [0, 1) passed to the RNNs.
        kernel_initializer, recurrent_initializer, bias_initializer,
        kernel_regularizer, recurrent_regularizer, bias_regularizer,
        kernel_constraint, recurrent_constraint, bias_constraint: passed to
            the four RNNs (Keras' defaults).
        seed: Random seed for dropout: None (default) or an integer from 0
            to 2**31 - 1 (the seeds every backend holds: a layer saved on
            one loads on the others). The vertical sweep takes `seed`, the
            horizontal one `seed + 1` (0 after the largest).
        use_cudnn: `"auto"` (default), `True` or `False`, passed to the four
            `GRU` / `LSTM` layers: `"auto"` takes the cuDNN kernel where the
            backend has one and the arguments allow it, `False` never does,
            `True` raises an error where it cannot. `SimpleRNN` has no cuDNN
            kernel, so `cell="simple_rnn"` accepts only `"auto"` and `False`.

    Call arguments:
        inputs: 4D tensor `(batch, height, width, channels)` (or
            `(batch, channels, height, width)` with `channels_first`).
        training: Whether dropout is active.

    Output shape:
        `(batch, I, J, 2 * units)` (`channels_first`: `(batch, 2 * units, I,
        J)`) with `I = height / p_h`, `J = width / p_w` (rounded up with
        `"same"`).

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        ReNet2D(64, patch_size=2),   # (14, 14, 128)
        ReNet2D(64, patch_size=2),   # (7, 7, 128)
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    ```

    Reference:
        Visin, Kastner, Cho, Matteucci, Courville, Bengio. ReNet: A Recurrent
        Neural Network Based Alternative to Convolutional Networks. 2015.
        https://arxiv.org/abs/1505.00393
    """

    def __init__(
        self,
        units,
        patch_size=(2, 2),
        cell="gru",
        padding="valid",
        data_format="channels_last",
        activation="tanh",
        dropout=0.0,
        recurrent_dropout=0.0,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        seed=None,
        use_cudnn="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._units = check_positive_int("units", units)
        self._patch_size = _pair("patch_size", patch_size)
        self._cell = check_choice("cell", cell, _CELLS)
        self._padding = check_choice("padding", padding, ("valid", "same"))
        self._data_format = check_choice(
            "data_format", data_format, ("channels_last", "channels_first")
        )
        self._dropout = check_rate("dropout", dropout)
        self._recurrent_dropout = check_rate(
            "recurrent_dropout", recurrent_dropout
        )
        self._seed = check_seed(seed)
        known = (
            use_cudnn == "auto"
            if isinstance(use_cudnn, str)
            else isinstance(use_cudnn, bool)
        )
        if not known or (use_cudnn is True and self.cell == "simple_rnn"):
            raise ValueError(
                "Argument `use_cudnn` must be 'auto', True or False (True "
                'needs cell="gru" or "lstm": SimpleRNN has no cuDNN kernel). '
                f"Received: use_cudnn={use_cudnn!r} with cell={self.cell!r}"
            )
        self._use_cudnn = use_cudnn
        options = {
            name: resolve_option(name, value)
            for name, value in (
                ("activation", activation),
                ("kernel_initializer", kernel_initializer),
                ("recurrent_initializer", recurrent_initializer),
                ("bias_initializer", bias_initializer),
                ("kernel_regularizer", kernel_regularizer),
                ("recurrent_regularizer", recurrent_regularizer),
                ("bias_regularizer", bias_regularizer),
                ("kernel_constraint", kernel_constraint),
                ("recurrent_constraint", recurrent_constraint),
                ("bias_constraint", bias_constraint),
            )
        }
        # Inside load_model's object-sharing scope Keras records the id() of
        # every object it serializes, and an object serialized later at a
        # collected one's address is taken for it (a Zeros initializer came
        # back as a Bidirectional's forward RNN). So everything serialized
        # here lives (untracked) as long as the layer: the options, and the
        # forward RNNs that Bidirectional clones by serializing them
        # (`_templates`, filled by `_sweep`).
        object.__setattr__(self, "_options", options)
        # Each RNN rebuilds its options from this config (a fresh initializer
        # each, as before), finding unregistered custom objects and plain
        # functions in the scope below, as keras.layers.GRU takes them.
        self._rnn_config = {
            name: _serialize_option(name, value)
            for name, value in options.items()
        }
        object.__setattr__(self, "_templates", [])
        self._built_channels = None
        custom_objects = _custom_objects(options)
        try:
            with keras.saving.custom_object_scope(custom_objects):
                self.vertical_sweep = self._sweep("vertical_sweep", self.seed)
                self.horizontal_sweep = self._sweep(
                    "horizontal_sweep", _sub_seed(self.seed, 1)
                )
        except (TypeError, ValueError) as error:
            raise _unrebuildable(options, custom_objects, error) from error

    # The arguments, read-only (as keras.layers.LSTM's): the sweeps are
    # built from them, so a changed value would reach only the config.

    @property
    def units(self):
        """Units of each of the four RNNs."""
        return self._units

    @property
    def patch_size(self):
        """`(p_h, p_w)`: the pixels one step reads."""
        return self._patch_size

    @property
    def cell(self):
        """The unit of the four RNNs: gru, lstm or simple_rnn."""
        return self._cell

    @property
    def padding(self):
        """valid or same."""
        return self._padding

    @property
    def data_format(self):
        """channels_last or channels_first."""
        return self._data_format

    @property
    def dropout(self):
        """Dropout rate of the RNNs' inputs."""
        return self._dropout

    @property
    def recurrent_dropout(self):
        """Dropout rate of the RNNs' recurrent states."""
        return self._recurrent_dropout

    @property
    def seed(self):
        """Random seed for dropout (None: unseeded)."""
        return self._seed

    @property
    def use_cudnn(self):
        """Whether the RNNs use cuDNN: auto, True or False."""
        return self._use_cudnn

    def _sweep(self, name, seed):
        kwargs = dict(
            return_sequences=True,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            seed=seed,
            dtype=self.dtype_policy.name,
            **self._rnn_config,
        )
        if self.cell != "simple_rnn":
            kwargs["use_cudnn"] = self.use_cudnn
        cls = _CELLS[self.cell]
        forward = cls(self.units, name=self.cell, **kwargs)
        backward = cls(
            self.units,
            go_backwards=True,
            name=f"backward_{self.cell}",
            **kwargs,
        )
        self._templates.append(forward)  # kept alive: see __init__
        return keras.layers.Bidirectional(
            forward,
            backward_layer=backward,
            merge_mode="concat",
            name=name,
            dtype=self.dtype_policy.name,
        )

    @property
    def activation(self):
        return self._options["activation"]

    # ----------------------------------------------------------- shapes
    def _grid(self, height, width, static=True):
        """Patch grid (I, J) and padding of an image of the given size."""
        (ph, pw) = self.patch_size
        if self.padding == "same":
            rows, cols = -(-height // ph), -(-width // pw)
        else:
            rows, cols = height // ph, width // pw
            if static and (height % ph or width % pw):
                raise ValueError(
                    'With padding="valid", ReNet2D needs the image height '
                    f"and width to be divisible by patch_size={self.patch_size}"
                    f". Received: image size ({height}, {width}); use "
                    'padding="same" to zero-pad.'
                )
        return rows, cols, rows * ph - height, cols * pw - width

    def _image_shape(self, shape):
        """`(batch, height, width, channels)` of an input shape, checked."""
        shape = tuple(shape)
        first = self.data_format == "channels_first"
        if len(shape) != 4:
            layout = (
                "channels, height, width"
                if first
                else "height, width, channels"
            )
            raise ValueError(
                f"ReNet2D expects inputs of rank 4 (batch, {layout}) with "
                f"data_format={self.data_format!r}. "
                f"Received: inputs.shape={shape}"
            )
        batch, height, width, channels = (
            (shape[0], shape[2], shape[3], shape[1]) if first else shape
        )
        if channels is None or channels <= 0:
            raise ValueError(
                "ReNet2D needs a known, positive number of channels (axis "
                f"{1 if first else -1} with data_format="
                f"{self.data_format!r}). Received: inputs.shape={shape}"
            )
        if self._built_channels not in (None, channels):
            raise ValueError(
                f"ReNet2D was built for {self._built_channels} input channels "
                f"(data_format={self.data_format!r}). "
                f"Received: inputs.shape={shape}"
            )
        if height == 0 or width == 0:
            raise ValueError(
                "ReNet2D needs images of at least one pixel. "
                f"Received: inputs.shape={shape}"
            )
        return batch, height, width, channels

    def _rows_and_cols(self, height, width):
        """The static patch grid: None where the image size is unknown."""
        ph, pw = self.patch_size
        # An unknown side stands in as one patch, to check the known one.
        rows, cols, _, _ = self._grid(
            ph if height is None else height, pw if width is None else width
        )
        return (
            None if height is None else rows,
            None if width is None else cols,
        )

    def build(self, input_shape):
        _, height, width, channels = self._image_shape(input_shape)
        rows, cols = self._rows_and_cols(height, width)
        features = self.patch_size[0] * self.patch_size[1] * channels
        self.vertical_sweep.build((None, rows, features))
        self.horizontal_sweep.build((None, cols, 2 * self.units))
        self._built_channels = channels
        self.built = True

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = self._image_shape(input_shape)
        rows, cols = self._rows_and_cols(height, width)
        if self.data_format == "channels_first":
            return (batch, 2 * self.units, rows, cols)
        return (batch, rows, cols, 2 * self.units)

    # ------------------------------------------------------------- call
    def call(self, inputs, training=None):
        _, height, width, channels = self._image_shape(inputs.shape)
        x = inputs
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 2, 3, 1))
        ph, pw = self.patch_size
        if height is None or width is None:
            dynamic = ops.shape(x)
            height = dynamic[1] if height is None else height
            width = dynamic[2] if width is None else width
        static = isinstance(height, int) and isinstance(width, int)
        if not static and keras.backend.backend() == "jax":
            raise ValueError(
                "ReNet2D cannot be exported from the JAX backend with an open "
                "image size: the size is symbolic there, and the Keras RNNs "
                "of its sweeps cannot compare their length with 1 (JAX's "
                "InconclusiveDimensionOperation). Build the model with a "
                "fixed image size, e.g. keras.Input((28, 28, 1)) (any batch "
                "size exports), or export from the TensorFlow backend. "
                f"Received: image size ({height}, {width})"
            )
        rows, cols, pad_h, pad_w = self._grid(height, width, static=static)
        if not static:
            x = _assert_image_size(x, height, width, self)
        if self.padding == "same":
            x = ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        # (B, H, W, C) -> (B, I, p_h, J, p_w, C) -> (B, J, I, p_h, p_w, C):
        # column-major grid of flattened (row, column, channel) patches.
        x = ops.reshape(x, (-1, rows, ph, cols, pw, channels))
        x = ops.transpose(x, (0, 3, 1, 2, 4, 5))
        x = ops.reshape(x, (-1, rows, ph * pw * channels))
        x = self.vertical_sweep(x, training=training)  # (B*J, I, 2U)
        x = ops.reshape(x, (-1, cols, rows, 2 * self.units))
        x = ops.transpose(x, (0, 2, 1, 3))  # (B, I, J, 2U)
        x = ops.reshape(x, (-1, cols, 2 * self.units))
        x = self.horizontal_sweep(x, training=training)  # (B*I, J, 2U)
        x = ops.reshape(x, (-1, rows, cols, 2 * self.units))
        if self.data_format == "channels_first":
            x = ops.transpose(x, (0, 3, 1, 2))
        return x

    def get_config(self):
        config = {
            "units": self.units,
            "patch_size": self.patch_size,
            "cell": self.cell,
            "padding": self.padding,
            "data_format": self.data_format,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
            "use_cudnn": self.use_cudnn,
            **self._rnn_config,
        }
        return {**super().get_config(), **config}


def _assert_image_size(x, height, width, layer):
    """Run-time check of an image size known only in a TensorFlow graph (JAX
    and torch trace concrete shapes): at least one pixel, and with
    padding="valid" a multiple of the patch size."""
    if keras.backend.backend() != "tensorflow":
        return x
    import tensorflow as tf

    empty = "ReNet2D needs images of at least one pixel."
    checks = [
        tf.debugging.assert_positive(height, message=empty),
        tf.debugging.assert_positive(width, message=empty),
    ]
    if layer.padding == "valid":
        (ph, pw) = layer.patch_size
        message = (
            'With padding="valid", ReNet2D needs the image height and width '
            f"to be divisible by patch_size={layer.patch_size}."
        )
        checks += [
            tf.debugging.assert_equal(height % ph, 0, message=message),
            tf.debugging.assert_equal(width % pw, 0, message=message),
        ]
    with tf.control_dependencies(checks):
        return tf.identity(x)
