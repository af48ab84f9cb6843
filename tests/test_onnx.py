"""ONNX export (`model.export(path, format="onnx")`), run in onnxruntime.

What Keras' ONNX export keeps differs by backend:
- TensorFlow (tf2onnx): any batch size and any sequence length, for all
  three layers (ClockworkRNN's open-length loops included: their scan
  converts, `clockwork_loops.scan_carries`).
- torch (torch.onnx): any batch size, one sequence length: torch traces the
  loop over time. A layer built for any length fails an export that would
  trace it for one step (`_rnn.check_torch_onnx_length`), and writes
  nothing.
- JAX: Keras exports through jax2onnx, which the `onnx` extra does not
  install (it brings flax, optax, orbax and tensorstore).
"""

import os

import keras
import numpy as np
import pytest

from keras_gfrnn import ClockworkRNN
from keras_gfrnn import GatedFeedbackRNN
from keras_gfrnn import ReNet2D
from tests import layer_checks

BACKEND = layer_checks.BACKEND
EXPORTER = {"tensorflow": ["tf2onnx"], "torch": ["onnxscript"]}.get(BACKEND, [])
pytestmark = [
    *layer_checks.needs(
        ["onnx", "onnxruntime", *EXPORTER], 'pip install -e ".[onnx]"'
    ),
    pytest.mark.skipif(
        BACKEND == "jax",
        reason="Keras' ONNX export from JAX needs jax2onnx (with flax, optax, "
        "orbax and tensorstore), which the `onnx` extra does not install",
    ),
    pytest.mark.slow,
]

# name: (layer, input shape after the batch, lengths served: the first is
# the one exported on torch)
SEQUENCE_CASES = {
    "gf_lstm": (
        lambda: GatedFeedbackRNN((6, 4), num_layers=2, unit_type="lstm"),
        5,
    ),
    "gf_gru_sequences": (
        lambda: GatedFeedbackRNN(
            5, num_layers=3, unit_type="gru", return_sequences=True
        ),
        5,
    ),
    # Open length on TensorFlow: blocks of the clock cycle (8), and module
    # by module (cycle 300, past the block limit).
    "cw_blocks": (lambda: ClockworkRNN(8, periods=[1, 2, 4, 8]), 3),
    "cw_modules_sequences": (
        lambda: ClockworkRNN(6, periods=[1, 300], return_sequences=True),
        3,
    ),
}


def served_by_onnxruntime(model, path, inputs, **export_kwargs):
    """Exports `model` to ONNX at `path`, then compares onnxruntime's
    outputs with the model's for every array in `inputs` (within 1e-5)."""
    import onnxruntime

    model(inputs[0])  # Keras exports only a model that has run
    model.export(path, format="onnx", verbose=False, **export_kwargs)
    session = onnxruntime.InferenceSession(path)
    (feed,) = session.get_inputs()
    for x in inputs:
        (got,) = session.run(None, {feed.name: x})
        expected = keras.ops.convert_to_numpy(model(x))
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5)


def data(batch, steps, features, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, steps, features)).astype("float32")


@pytest.mark.parametrize("case", sorted(SEQUENCE_CASES))
def test_recurrent_layers_export_to_onnx(case, tmp_path):
    make, features = SEQUENCE_CASES[case]
    if BACKEND == "tensorflow":  # any batch, any length
        model = keras.Sequential([keras.Input((None, features)), make()])
        inputs = [
            data(b, t, features, seed=t) for b, t in ((3, 7), (1, 13), (5, 1))
        ]
        inputs.append(data(2, 1100, features))  # past the unrolled lengths
        served_by_onnxruntime(model, str(tmp_path / "m.onnx"), inputs)
    else:  # torch: any batch, the length of the export
        model = keras.Sequential([keras.Input((9, features)), make()])
        inputs = [data(b, 9, features, seed=b) for b in (1, 3, 6)]
        served_by_onnxruntime(model, str(tmp_path / "m.onnx"), inputs)


@layer_checks.tensorflow_only(
    "the masked loop exports with an open length from TensorFlow only"
)
def test_masked_sequences_export_to_onnx(tmp_path):
    """Behind `Masking`: Keras' loop with a mask, for both layers."""
    for layer in (
        GatedFeedbackRNN(4, num_layers=2),
        ClockworkRNN(6, periods=[1, 3]),
    ):
        model = keras.Sequential(
            [keras.Input((None, 3)), keras.layers.Masking(0.0), layer]
        )
        x = data(3, 8, 3)
        x[0, 5:] = 0.0  # padding
        served_by_onnxruntime(
            model, str(tmp_path / f"{layer.name}.onnx"), [x, data(2, 4, 3)]
        )


def test_renet2d_exports_to_onnx(tmp_path):
    model = keras.Sequential(
        [keras.Input((8, 6, 2)), ReNet2D(3, patch_size=2, cell="lstm")]
    )
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(b, 8, 6, 2)).astype("float32") for b in (1, 4)]
    served_by_onnxruntime(model, str(tmp_path / "renet.onnx"), inputs)


@pytest.mark.skipif(
    BACKEND != "torch", reason="TensorFlow's ONNX export keeps any length"
)
@pytest.mark.parametrize(
    "make",
    [
        lambda: GatedFeedbackRNN(4, num_layers=2),
        lambda: ClockworkRNN(4, num_modules=2),
    ],
    ids=["gated_feedback", "clockwork"],
)
def test_torch_export_of_an_open_length_fails_clearly(make, tmp_path):
    """torch would trace the loop for sequences of one step (Keras puts 1
    for the `None`): the export fails, says what to do, and writes nothing;
    with the length fixed by `input_signature` the same model exports."""
    model = keras.Sequential([keras.Input((None, 3)), make()])
    path = str(tmp_path / "open.onnx")
    model(data(2, 5, 3))
    with pytest.raises(ValueError, match=r"open sequence length.*input_sig"):
        model.export(path, format="onnx", verbose=False)
    assert not os.path.exists(path)
    signature = [keras.InputSpec(shape=(None, 7, 3), dtype="float32")]
    inputs = [data(b, 7, 3, seed=b) for b in (1, 4)]
    served_by_onnxruntime(
        model, str(tmp_path / "fixed.onnx"), inputs, input_signature=signature
    )
