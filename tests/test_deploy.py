"""Deployment to TFLite / LiteRT (TensorFlow backend): every layer converts
and the TFLite interpreter gives Keras' outputs.

TFLite's converter lowers a `tf.while_loop` over time (every Keras RNN
without `unroll=True`, `keras.layers.LSTM` included) to builtin ops only
when the batch size is fixed: with a `None` batch it stops on
`TensorListReserve`, or needs the Flex (SELECT_TF_OPS) runtime. Hence the
recipes tested here: a fixed batch size (`keras.Input(batch_size=...)` for
`from_keras_model`, a fixed `input_signature` for `model.export`), or
`unroll=True` with a fixed sequence length for any batch size.
"""

import keras
import numpy as np
import pytest

from keras_gfrnn import ClockworkRNN
from keras_gfrnn import GatedFeedbackRNN
from keras_gfrnn import ReNet2D
from tests import layer_checks

pytestmark = [
    layer_checks.tensorflow_only(
        "TFLite / LiteRT conversion uses TensorFlow's converter and interpreter"
    ),
    # TensorFlow's tf.lite.Interpreter, deprecated for ai-edge-litert's
    # (the same interpreter, not a dependency here).
    pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated"),
    pytest.mark.slow,  # each converts a model (2-6 s on 2 cores)
]

BATCH = 2
SEQUENCE = (6, 3)
IMAGE = (8, 8, 1)


def _gated_feedback(unit_type):
    def layers(**kwargs):
        return [
            GatedFeedbackRNN(4, num_layers=2, unit_type=unit_type, **kwargs),
            keras.layers.Dense(2),
        ]

    return SEQUENCE, layers


def _clockwork():
    def layers(**kwargs):
        return [ClockworkRNN(6, periods=(1, 2, 4), **kwargs)]

    return SEQUENCE, layers


def _conv_renet():
    def layers():
        return [
            keras.layers.Conv2D(2, 3, padding="same"),
            ReNet2D(3, patch_size=2),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]

    return IMAGE, layers


MODELS = {
    "gf_lstm": _gated_feedback("lstm"),
    "gf_gru": _gated_feedback("gru"),
    "gf_tanh": _gated_feedback("tanh"),
    "clockwork": _clockwork(),
    "conv_renet": _conv_renet(),
}


def _model(name, batch_size=None, **kwargs):
    shape, layers = MODELS[name]
    model = keras.Sequential(
        [keras.Input(shape, batch_size=batch_size), *layers(**kwargs)]
    )
    x = np.random.default_rng(0).normal(size=(BATCH, *shape))
    return model, x.astype("float32")


def _interpret(x, **model):
    """The TFLite interpreter's output for `x` (model_content= or
    model_path=), the input resized to `x`'s shape."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(**model)
    (given,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(given["index"], x.shape, strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(given["index"], x)
    interpreter.invoke()
    (output,) = interpreter.get_output_details()
    return interpreter.get_tensor(output["index"])


@pytest.mark.parametrize("name", MODELS)
def test_from_keras_model(name):
    import tensorflow as tf

    model, x = _model(name, batch_size=BATCH)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    y = _interpret(x, model_content=converter.convert())
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-5)


# The two that fail with a None batch (test_keras_litert_export takes the
# same SavedModel route for every model).
@pytest.mark.parametrize("name", ["gf_lstm", "conv_renet"])
def test_from_saved_model_with_a_fixed_batch(name, tmp_path):
    import tensorflow as tf

    model, x = _model(name)  # trained with any batch size
    spec = keras.InputSpec(shape=x.shape, dtype="float32")
    model.export(
        tmp_path,
        format="tf_saved_model",
        input_signature=[spec],
        verbose=False,
    )
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path))
    y = _interpret(x, model_content=converter.convert())
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_keras_litert_export(name, tmp_path):
    model, x = _model(name)
    path = str(tmp_path / f"{name}.tflite")
    spec = keras.InputSpec(shape=x.shape, dtype="float32")
    model.export(path, format="litert", input_signature=[spec], verbose=False)
    y = _interpret(x, model_path=path)
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("name", ["gf_lstm", "gf_gru", "clockwork"])
def test_unrolled_layers_convert_for_any_batch_size(name, tmp_path):
    # unroll=True: a fixed sequence length, no while loop; the SavedModel
    # keeps a None batch, and one .tflite file serves every batch size.
    import tensorflow as tf

    model, x = _model(name, unroll=True)
    model.export(tmp_path, format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path))
    blob = converter.convert()
    for batch in (x, np.concatenate([x, x[:1]])):
        y = _interpret(batch, model_content=blob)
        expected = model.predict(batch, verbose=0)
        np.testing.assert_allclose(y, expected, atol=1e-5)
