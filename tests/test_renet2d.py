import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_gfrnn import ReNet2D
from tests import layer_checks

CELLS = ["gru", "lstm", "simple_rnn"]


def images(batch=2, height=6, width=4, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, height, width, channels)).astype("float32")


def by_hand(layer, x, patch):
    """The two sweeps applied with reshapes written independently here."""
    ph, pw = patch
    b, h, w, c = x.shape
    rows, cols = h // ph, w // pw
    patches = np.zeros((b, rows, cols, ph * pw * c), dtype="float32")
    for i in range(rows):
        for j in range(cols):
            block = x[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw, :]
            patches[:, i, j] = block.reshape(b, -1)  # (row, col, channel)
    # Vertical: one sequence over i per (image, column j).
    columns = np.stack([patches[:, :, j] for j in range(cols)], axis=1)
    v = keras.ops.convert_to_numpy(
        layer.vertical_sweep(columns.reshape(b * cols, rows, -1))
    ).reshape(b, cols, rows, -1)
    v = np.stack([v[:, :, i] for i in range(rows)], axis=1)  # (b, I, J, 2U)
    # Horizontal: one sequence over j per (image, row i).
    out = keras.ops.convert_to_numpy(
        layer.horizontal_sweep(v.reshape(b * rows, cols, -1))
    )
    return out.reshape(b, rows, cols, -1)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("patch", [(2, 2), (3, 2), (1, 4)])
def test_correctness(cell, patch):
    x = images(height=6, width=4)
    layer = ReNet2D(5, patch_size=patch, cell=cell)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2, 6 // patch[0], 4 // patch[1], 10)
    np.testing.assert_allclose(out, by_hand(layer, x, patch), atol=1e-5)


def test_sweeps_are_keras_bidirectional_layers():
    layer = ReNet2D(4, cell="lstm")
    layer.build((None, 8, 8, 1))
    for sweep in (layer.vertical_sweep, layer.horizontal_sweep):
        assert isinstance(sweep, keras.layers.Bidirectional)
        assert sweep.merge_mode == "concat"
        assert isinstance(sweep.forward_layer, keras.layers.LSTM)
        assert not sweep.forward_layer.go_backwards
        assert sweep.backward_layer.go_backwards
    # Forward first: the first half of the output is the forward RNN.
    seq = np.random.rand(3, 4, 4).astype("float32")
    out = keras.ops.convert_to_numpy(layer.vertical_sweep(seq))
    fwd = keras.ops.convert_to_numpy(layer.vertical_sweep.forward_layer(seq))
    np.testing.assert_allclose(out[..., :4], fwd, atol=1e-6)
    # Four RNNs, separate weights.
    assert len({id(w) for w in layer.weights}) == len(layer.weights) == 12


def test_same_padding_odd_sizes():
    x = images(height=7, width=5)
    layer = ReNet2D(3, patch_size=2, padding="same")
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2, 4, 3, 6)
    assert layer.compute_output_shape(x.shape) == (2, 4, 3, 6)
    padded = np.zeros((2, 8, 6, 3), dtype="float32")
    padded[:, :7, :5] = x
    np.testing.assert_allclose(out, by_hand(layer, padded, (2, 2)), atol=1e-5)


def test_channels_first_equals_channels_last():
    x = images(height=4, width=6)
    last = ReNet2D(3, patch_size=2)
    first = ReNet2D(3, patch_size=2, data_format="channels_first")
    last.build(x.shape)
    first.build((2, 3, 4, 6))
    first.set_weights(last.get_weights())
    out = keras.ops.convert_to_numpy(first(np.transpose(x, (0, 3, 1, 2))))
    assert out.shape == (2, 6, 2, 3)
    assert first.compute_output_shape((2, 3, 4, 6)) == (2, 6, 2, 3)
    np.testing.assert_allclose(
        np.transpose(out, (0, 2, 3, 1)),
        keras.ops.convert_to_numpy(last(x)),
        atol=1e-6,
    )


def test_unknown_batch_and_image_size():
    model = keras.Sequential(
        [
            keras.Input((None, None, 2)),
            ReNet2D(3, patch_size=2),
            ReNet2D(2, patch_size=(1, 3), padding="same"),
        ]
    )
    assert model.output_shape == (None, None, None, 4)
    for h, w in ((4, 6), (8, 2)):
        out = model(images(batch=3, height=h, width=w, channels=2))
        assert tuple(out.shape) == (3, h // 2, -(-(w // 2) // 3), 4)


@layer_checks.TF_GRAPH
def test_image_size_unknown_until_run_time():
    """Inside a graph the size is only known at run time: a clear error."""
    import tensorflow as tf

    model = keras.Sequential(
        [
            keras.Input((None, None, 2)),
            ReNet2D(3, patch_size=2),
            ReNet2D(2, patch_size=(1, 3), padding="same"),
        ]
    )
    serve = tf.function(
        model.__call__,
        input_signature=[tf.TensorSpec((None, None, None, 2))],
    )
    assert serve(images(height=4, width=4, channels=2)).shape == (2, 2, 1, 4)
    with pytest.raises(
        tf.errors.InvalidArgumentError, match="divisible by patch_size"
    ):
        serve(images(height=5, width=4, channels=2))


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS)
def test_basics(cell):
    x = images(height=4, width=4)
    layer = ReNet2D(
        4,
        patch_size=(2, 1),
        cell=cell,
        padding="same",
        dropout=0.1,
        recurrent_dropout=0.1,
        kernel_regularizer="l2",
        recurrent_initializer="glorot_uniform",
        seed=3,
    )
    layer_checks.assert_config_round_trip(layer)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (2, 2, 4, 8)
    assert len(layer.losses) == 4  # kernel_regularizer on the four RNNs
    trained = keras.ops.convert_to_numpy(layer(x, training=True))
    assert not np.allclose(trained, out)
    model_layer = ReNet2D(4, patch_size=2, cell=cell)
    model = keras.Sequential(
        [keras.Input((4, 4, 3)), model_layer, keras.layers.Flatten()]
    )
    layer_checks.assert_fit_lowers_loss(
        model, x, np.ones((2, 3), dtype="float32")
    )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_use_cudnn_reaches_the_four_rnns(cell):
    x = images(height=4, width=4)
    auto = ReNet2D(3, cell=cell)
    off = ReNet2D(3, cell=cell, use_cudnn=False)
    expected = keras.ops.convert_to_numpy(auto(x))
    off.build(x.shape)
    off.set_weights(auto.get_weights())
    for sweep in (off.vertical_sweep, off.horizontal_sweep):
        assert sweep.forward_layer.use_cudnn is False
        assert sweep.backward_layer.use_cudnn is False
    assert layer_checks.assert_config_round_trip(off).use_cudnn is False
    # The generic loop computes what the default path computes.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(off(x)), expected, atol=1e-5
    )


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision(policy):
    layer_checks.assert_mixed_precision(
        lambda: ReNet2D(4, patch_size=2),
        images(height=4, width=4),
        policy,
        atol=2e-2 if policy == "mixed_bfloat16" else 5e-3,
    )


def _model():
    inputs = keras.Input((None, None, 3))
    x = ReNet2D(4, patch_size=2, cell="gru")(inputs)
    x = ReNet2D(3, patch_size=2, cell="lstm", padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def test_saving(tmp_path):
    model = _model()
    x = images(height=8, width=8)
    path = os.path.join(tmp_path, "renet.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(model(x)),
    )


@pytest.mark.slow
@layer_checks.tensorflow_only(
    "SavedModel export of ReNet2D is tested from TensorFlow: from JAX an "
    "unknown image size is a symbolic one, and Keras' GRU of the sweeps "
    "cannot compare its length, floordiv(a, 2), with 1"
)
def test_saved_model_export(tmp_path):
    model = _model()
    layer_checks.assert_saved_model_exact(
        model,
        os.path.join(tmp_path, "exported"),
        [
            images(batch=b, height=n, width=n, seed=n)
            for b, n in ((2, 8), (5, 12), (1, 4))
        ],
    )


@pytest.mark.skipif(
    layer_checks.BACKEND != "jax",
    reason="an open image size is symbolic only in a JAX export",
)
def test_jax_export_of_an_open_image_size_fails_clearly(tmp_path):
    """It raised Keras' GRU's InconclusiveDimensionOperation (or our own
    divisibility message with the symbols for sizes); now what to do."""
    model = keras.Sequential([keras.Input((None, None, 3)), ReNet2D(2)])
    model(images(height=4, width=4))
    with pytest.raises(ValueError, match=r"open image size.*fixed image"):
        model.export(str(tmp_path / "open"), format="tf_saved_model")


@pytest.mark.slow
@layer_checks.SAVED_MODEL
def test_saved_model_export_of_a_fixed_image_size(tmp_path):
    """From TensorFlow and JAX: a fixed image size, any batch size."""
    inputs = keras.Input((8, 6, 3))
    x = ReNet2D(4, patch_size=2, cell="gru")(inputs)
    model = keras.Model(inputs, ReNet2D(3, patch_size=(2, 3))(x))
    layer_checks.assert_saved_model_exact(
        model,
        os.path.join(tmp_path, "exported"),
        [images(batch=b, height=8, width=6, seed=b) for b in (1, 3, 7)],
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"units": 0}, "units=0"),
        ({"units": 4, "patch_size": 0}, "patch_size=0"),
        ({"units": 4, "patch_size": (2,)}, r"patch_size=\(2,\)"),
        ({"units": 4, "patch_size": (2, -1)}, r"patch_size=\(2, -1\)"),
        ({"units": 4, "cell": "rnn"}, "cell='rnn'"),
        ({"units": 4, "padding": "full"}, "padding='full'"),
        ({"units": 4, "data_format": "nhwc"}, "data_format='nhwc'"),
        ({"units": 4, "dropout": 1.0}, "dropout=1.0"),
        ({"units": 4, "recurrent_dropout": -1}, "recurrent_dropout=-1"),
        ({"units": 4, "use_cudnn": "yes"}, "use_cudnn='yes'"),
        # Unhashable values for every choice argument.
        ({"units": 4, "cell": ["gru"]}, r"`cell` must be one of .*\['gru'\]"),
        ({"units": 4, "padding": ["same"]}, r"padding=\['same'\]"),
        ({"units": 4, "data_format": {}}, "data_format={}"),
        ({"units": 4, "use_cudnn": ["auto"]}, r"use_cudnn=\['auto'\]"),
        # Numbers that are not the type the argument takes.
        ({"units": 4.0}, "units=4.0"),
        ({"units": "4"}, "units='4'"),
        ({"units": True}, "units=True"),
        ({"units": None}, "units=None"),
        ({"units": 4, "patch_size": 2.0}, "patch_size=2.0"),
        ({"units": 4, "patch_size": "2"}, "patch_size='2'"),
        ({"units": 4, "patch_size": True}, "patch_size=True"),
        ({"units": 4, "patch_size": (2, 2.0)}, r"patch_size=\(2, 2.0\)"),
        ({"units": 4, "patch_size": (True, 2)}, r"patch_size=\(True, 2\)"),
        ({"units": 4, "dropout": "0.1"}, "dropout='0.1'"),
        ({"units": 4, "dropout": True}, "dropout=True"),
        ({"units": 4, "dropout": float("nan")}, "dropout=nan"),
        ({"units": 4, "recurrent_dropout": None}, "recurrent_dropout=None"),
        ({"units": 4, "recurrent_dropout": float("inf")}, "dropout=inf"),
        ({"units": 4, "use_cudnn": 1}, "use_cudnn=1 "),
        ({"units": 4, "use_cudnn": np.True_}, "use_cudnn=np.True_"),
        ({"units": 4, "seed": "abc"}, "seed='abc'"),
        ({"units": 4, "seed": -1}, "seed=-1"),
        ({"units": 4, "seed": 1.5}, "seed=1.5"),
        ({"units": 4, "seed": True}, "seed=True"),
        (
            {"units": 4, "kernel_initializer": "nope"},
            "Argument `kernel_initializer`.*kernel_initializer='nope'",
        ),
        ({"units": 4, "activation": 3}, "Argument `activation`.*activation=3"),
        (
            {"units": 4, "cell": "simple_rnn", "use_cudnn": True},
            "use_cudnn=True with cell='simple_rnn'",
        ),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ReNet2D(**kwargs)


def test_invalid_inputs():
    with pytest.raises(ValueError, match=r"inputs.shape=\(2, 4, 4\)"):
        ReNet2D(3)(np.zeros((2, 4, 4), dtype="float32"))
    with pytest.raises(ValueError, match=r"image size \(5, 4\)"):
        ReNet2D(3, patch_size=2)(images(height=5, width=4))
    with pytest.raises(ValueError, match=r"image size \(6, 4\)"):
        ReNet2D(3, patch_size=(2, 3))(images(height=6, width=4))
    with pytest.raises(ValueError, match="image size"):
        keras.Sequential([keras.Input((7, 8, 1)), ReNet2D(3)])


def test_numpy_integers_are_accepted():
    layer = ReNet2D(np.int64(3), patch_size=np.int32(2), seed=np.int64(5))
    assert layer.patch_size == (2, 2)
    config = layer_checks.assert_config_round_trip(layer).get_config()
    assert (config["units"], config["patch_size"], config["seed"]) == (
        3,
        (2, 2),
        5,
    )
    assert ReNet2D(3, patch_size=[np.int64(1), 2]).patch_size == (1, 2)


def test_input_checks_name_the_shape():
    layer = ReNet2D(3, patch_size=2)
    layer(images(height=4, width=4, channels=3))
    built_for_3 = "built for 3 input channels"
    # Built for 3 channels: another count is refused in call, build and
    # compute_output_shape, naming the shape received.
    with pytest.raises(ValueError, match=rf"{built_for_3}.*\(2, 4, 4, 5\)"):
        layer(images(height=4, width=4, channels=5))
    with pytest.raises(ValueError, match=rf"{built_for_3}.*\(None, 4, 4, 1\)"):
        layer.compute_output_shape((None, 4, 4, 1))
    with pytest.raises(ValueError, match=rf"{built_for_3}.*\(None, 8, 8, 2\)"):
        layer.build((None, 8, 8, 2))
    first = ReNet2D(3, data_format="channels_first")
    first.build((None, 3, 4, 4))
    with pytest.raises(ValueError, match=rf"{built_for_3}.*\(1, 4, 4, 4\)"):
        first(np.zeros((1, 4, 4, 4), dtype="float32"))
    # Rank and unknown channels: the layout of the data_format, the shape as
    # given (not transposed).
    with pytest.raises(
        ValueError,
        match=r"rank 4 \(batch, channels, height, width\).*"
        r"channels_first.*inputs.shape=\(2, 4, 4\)",
    ):
        first.compute_output_shape((2, 4, 4))
    with pytest.raises(ValueError, match=r"axis 1 .*\(None, None, 4, 4\)"):
        ReNet2D(3, data_format="channels_first").build((None, None, 4, 4))
    # Empty images and no channels: refused, not computed from the biases.
    for shape in ((1, 0, 4, 3), (1, 4, 0, 3)):
        with pytest.raises(ValueError, match="at least one pixel"):
            ReNet2D(3, padding="same")(np.zeros(shape, dtype="float32"))
    with pytest.raises(ValueError, match=r"positive number of channels"):
        ReNet2D(3)(np.zeros((1, 4, 4, 0), dtype="float32"))


@layer_checks.TF_GRAPH
def test_empty_image_unknown_until_run_time():
    import tensorflow as tf

    layer = ReNet2D(3, patch_size=2, padding="same")
    serve = tf.function(
        layer.__call__,
        input_signature=[tf.TensorSpec((None, None, None, 2))],
    )
    assert serve(images(height=3, width=1, channels=2)).shape == (2, 2, 1, 6)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one pixel"):
        serve(np.zeros((2, 0, 4, 2), dtype="float32"))


def rnns(layer):
    """The four Keras RNNs of a ReNet2D."""
    return [
        rnn
        for sweep in (layer.vertical_sweep, layer.horizontal_sweep)
        for rnn in (sweep.forward_layer, sweep.backward_layer)
    ]


def halved_tanh(x):
    return 0.5 * keras.ops.tanh(x)


class Filled(keras.initializers.Initializer):
    def __init__(self, value):
        self.value = value

    def __call__(self, shape, dtype=None):
        return keras.ops.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class SumOfSquares(keras.regularizers.Regularizer):
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, x):
        return self.factor * keras.ops.sum(keras.ops.square(x))

    def get_config(self):
        return {"factor": self.factor}


class Clip(keras.constraints.Constraint):
    def __init__(self, bound):
        self.bound = bound

    def __call__(self, w):
        return keras.ops.clip(w, -self.bound, self.bound)

    def get_config(self):
        return {"bound": self.bound}


@pytest.mark.parametrize("cell", CELLS)
def test_plain_functions_and_unregistered_custom_objects(cell):
    """Taken as keras.layers.GRU takes them, by all four RNNs."""
    options = dict(
        activation=halved_tanh,
        kernel_initializer=Filled(0.25),
        recurrent_initializer=Filled(-0.125),
        kernel_regularizer=SumOfSquares(0.5),
        recurrent_constraint=Clip(0.1),
    )
    layer = ReNet2D(3, patch_size=2, cell=cell, **options)
    assert layer.activation is halved_tanh
    out = keras.ops.convert_to_numpy(layer(images(height=4, width=4)))
    assert np.all(np.abs(out) < 0.5)  # the last step is 0.5 * tanh(.)
    kernels = []
    for rnn in rnns(layer):
        assert rnn.cell.activation is halved_tanh
        assert type(rnn.cell.recurrent_constraint) is Clip
        assert rnn.cell.recurrent_constraint.bound == 0.1
        kernel = keras.ops.convert_to_numpy(rnn.cell.kernel)
        np.testing.assert_array_equal(kernel, np.full_like(kernel, 0.25))
        recurrent = keras.ops.convert_to_numpy(rnn.cell.recurrent_kernel)
        np.testing.assert_array_equal(recurrent, -0.125)
        kernels.append(kernel)
    expected = sum(0.5 * np.sum(np.square(k)) for k in kernels)
    losses = [keras.ops.convert_to_numpy(loss) for loss in layer.losses]
    np.testing.assert_allclose(sum(losses), expected, rtol=1e-6)
    # The config holds what Keras' own GRU writes for the same objects.
    keras_config = keras.layers.GRU(3, **options).get_config()
    config = layer.get_config()
    for name in options:
        assert config[name] == keras_config[name], name


@keras.saving.register_keras_serializable(package="test_renet2d")
def registered_halved_tanh(x):
    return 0.5 * keras.ops.tanh(x)


@keras.saving.register_keras_serializable(package="test_renet2d")
class RegisteredFilled(Filled):
    pass


def test_registered_custom_objects_round_trip(tmp_path):
    layer = ReNet2D(
        3,
        patch_size=2,
        activation=registered_halved_tanh,
        bias_initializer=RegisteredFilled(0.5),
    )
    clone = layer_checks.assert_config_round_trip(layer)
    assert clone.activation is registered_halved_tanh
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, layer(inputs))
    path = os.path.join(tmp_path, "custom.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    x = images(height=4, width=4)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(x)),
        keras.ops.convert_to_numpy(model(x)),
    )
    for rnn in rnns(loaded.layers[-1]):
        assert rnn.cell.activation is registered_halved_tanh
        assert type(rnn.cell.bias_initializer) is RegisteredFilled


class NoConfig:
    def __call__(self, x):
        return x


class ConfigLacksValue(Filled):
    def get_config(self):
        return {}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"kernel_regularizer": lambda w: 0.0},
            "Argument `kernel_regularizer` .*lambda",
        ),
        ({"activation": NoConfig()}, "Argument `activation` must be .*serial"),
        (
            {"bias_initializer": ConfigLacksValue(1.0)},
            "Argument `bias_initializer` must be .*rebuild",
        ),
    ],
)
def test_objects_that_cannot_be_rebuilt(kwargs, match):
    """The RNNs are built from the config (as keras.layers.Bidirectional
    copies its layer): what Keras cannot rebuild is named."""
    with pytest.raises(ValueError, match=match):
        ReNet2D(3, **kwargs)


def sweep_seeds(layer):
    return [rnn.get_config()["seed"] for rnn in rnns(layer)]


def test_seeds_of_the_sweeps():
    # The horizontal sweep takes seed + 1 (unchanged: reproducibility).
    assert sweep_seeds(ReNet2D(3, seed=3)) == [3, 3, 4, 4]
    assert sweep_seeds(ReNet2D(3)) == [None] * 4
    # The largest seed (the one rule of the package, the seeds every
    # backend holds): the next one wraps round to 0 (it overflowed).
    from keras_gfrnn._validation import MAX_SEED

    largest = MAX_SEED
    assert largest == 2**31 - 1
    layer = ReNet2D(3, dropout=0.5, seed=largest)
    assert sweep_seeds(layer) == [largest, largest, 0, 0]
    out = keras.ops.convert_to_numpy(layer(images(), training=True))
    assert np.all(np.isfinite(out))
    with pytest.raises(ValueError, match=rf"seed={largest + 1}"):
        ReNet2D(3, seed=largest + 1)


# ---------------------------------------------------------------- example
def _example():
    sys.path.insert(
        0, os.path.join(os.path.dirname(__file__), "..", "examples")
    )
    try:
        import renet_classifier
    finally:
        sys.path.pop(0)
    return renet_classifier


def test_paper_presets_follow_table_1():
    example = _example()
    assert example.PAPER["mnist"] == ([(256, 2, "gru")] * 2, [4096, 4096], 0.45)
    assert example.PAPER["cifar10"] == ([(320, 2, "gru")] * 3, [4096], 12.35)
    assert example.PAPER["svhn_cropped"] == (
        [(256, 2, "lstm")] * 3,
        [4096, 4096],
        2.38,
    )
    with pytest.raises(ValueError, match="preset='huge'"):
        example.build_model("mnist", "huge")


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "svhn_cropped"])
@pytest.mark.parametrize("preset", ["paper", "small"])
def test_preset_models_train_on_mock_data(dataset, preset, tmp_path):
    import tensorflow_datasets as tfds

    from keras_gfrnn import datasets

    example = _example()
    width = 1 / 32 if preset == "paper" else 0.25
    model = example.build_model(dataset, preset, width=width)
    renet = [layer for layer in model.layers if isinstance(layer, ReNet2D)]
    table = (example.PAPER if preset == "paper" else example.SMALL)[dataset]
    assert [(r.patch_size, r.cell) for r in renet] == [
        ((p, p), c) for _, p, c in table[0]
    ]
    dense = [d.units for d in model.layers if isinstance(d, keras.layers.Dense)]
    assert dense == [max(2, round(n * width)) for n in table[1]] + [10]
    # One step, run eagerly (2-3 s; traced, 15-25 s a model): the same
    # pipeline, model and loss. The traced train step of a ReNet2D model
    # is the examples' (tests/test_examples.py, the MirroredStrategy test).
    model.run_eagerly = True
    with tfds.testing.mock_data(num_examples=16):
        ds = datasets.load_image_dataset(
            dataset,
            "train",
            batch_size=8,
            augment=True,
            data_dir=str(tmp_path),
            seed=0,
        ).take(1)
        history = model.fit(ds, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.slow
@layer_checks.tensorflow_only("tf.distribute.MirroredStrategy")
def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """The example trains under MirroredStrategy with 2 logical CPUs."""
    script = os.path.join(
        os.path.dirname(__file__), "..", "examples", "renet_classifier.py"
    )
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [
            sys.executable,
            script,
            "--quick",
            "--epochs",
            "1",
            "--distribute",
            "mirrored",
            "--backup-dir",
            str(tmp_path / "backup"),
            "--export-dir",
            str(tmp_path / "export"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy over 2 replicas" in result.stdout
    assert "test error" in result.stdout
    assert os.path.isdir(tmp_path / "export")


def test_objects_serialized_while_building_stay_alive(monkeypatch):
    """Regression: inside load_model's object-sharing scope Keras keys every
    object it serializes on its id(), so an object serialized later at a
    collected one's address was taken for it (CI: a Zeros initializer came
    back as a Bidirectional's forward RNN). Every option ReNet2D serializes
    while it builds its RNNs (the initializers resolved from a loaded
    config included) must live as long as the layer."""
    import gc
    import weakref

    from keras_gfrnn import renet2d

    serialized = []
    original = renet2d.serialize_option

    def spy(name, value):
        if value is not None:
            serialized.append((name, weakref.ref(value)))
        return original(name, value)

    monkeypatch.setattr(renet2d, "serialize_option", spy)
    config = ReNet2D(3, patch_size=2, cell="lstm").get_config()
    serialized.clear()
    layer = ReNet2D.from_config(config)  # options given as configs
    gc.collect()
    names = {name for name, _ in serialized}
    assert {"kernel_initializer", "recurrent_initializer"} <= names
    dead = [name for name, ref in serialized if ref() is None]
    assert not dead, f"collected while the layer lives: {dead}"
    del layer


@pytest.mark.slow
def test_repeated_save_load_round_trips(tmp_path):
    """Regression: loading used to fail at random (19 of 25 round trips)
    when a ReNet2D's temporary RNN reused a collected one's id() inside
    load_model's object-sharing scope."""
    x = images(height=8, width=8)
    for i in range(6):
        inputs = keras.Input((None, None, 3))
        y = ReNet2D(4, patch_size=2, cell="gru")(inputs)
        y = ReNet2D(3, patch_size=2, cell="lstm", padding="same")(y)
        y = ReNet2D(3, patch_size=1, cell="simple_rnn")(y)
        model = keras.Model(inputs, y)
        path = os.path.join(tmp_path, f"round_{i}.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(loaded(x)),
            keras.ops.convert_to_numpy(model(x)),
        )


def test_arguments_are_read_only():
    """Issue 26.7: `layer.dropout = 0.9` changed the config, not the
    sweeps built from it (a saved model reloaded as another layer)."""
    layer = ReNet2D(4, dropout=0.1)
    for name, value in (("units", 99), ("dropout", 0.9), ("patch_size", 3)):
        with pytest.raises(AttributeError):
            setattr(layer, name, value)
    config = layer.get_config()
    assert (config["units"], config["dropout"]) == (4, 0.1)
