"""Files saved by earlier versions of the package load unchanged."""

import json
import os
import zipfile

import keras
import numpy as np

import keras_gfrnn  # noqa: F401  (registers the layers for deserialization)

DATA = os.path.join(os.path.dirname(__file__), "data")


def test_file_saved_before_the_redesign_loads_exactly():
    """A model holding all three layers, saved by main at 3a09b81 (before
    the redesign of issue 12) with this script:

        seq = keras.Input((6, 3)); img = keras.Input((8, 8, 2))
        a = GatedFeedbackRNN(5, num_layers=3, unit_type="lstm",
                             return_sequences=True, name="gf_lstm")(seq)
        b = GatedFeedbackRNN([4, 6], unit_type="gru",
                             gate_inputs="own_layer",
                             recurrent_dropout=0.1, name="gf_gru")(a)
        c = GatedFeedbackRNN(3, num_layers=2, unit_type="tanh",
                             output="concat", go_backwards=True,
                             name="gf_tanh")(a)
        d = ClockworkRNN(8, periods=[1, 2, 4, 8], dropout=0.1,
                         name="cw")(seq)
        e = Flatten()(ReNet2D(4, patch_size=2, cell="lstm",
                              name="renet")(img))
        out = Dense(3, name="head")(Concatenate()([b, c, d, e]))
        # weights set to uniform(-0.5, 0.5) draws, seed 1; then
        model.save("pre_redesign_0.2.keras")
        np.savez("pre_redesign_0.2.npz", seq=x, img=im,
                 y=model.predict([x, im]),
                 weight_paths=[w.path for w in model.weights],
                 weight_shapes=[str(tuple(w.shape)) for w in model.weights])
    """
    path = os.path.join(DATA, "pre_redesign_0.2.keras")
    model = keras.models.load_model(path)
    data = np.load(os.path.join(DATA, "pre_redesign_0.2.npz"))
    np.testing.assert_allclose(
        model.predict([data["seq"], data["img"]], verbose=0),
        data["y"],
        atol=1e-6,
    )
    # Each layer's config is the one in the file (Keras' bookkeeping key
    # `shared_object_id` aside): no argument was renamed or re-defaulted.
    with zipfile.ZipFile(path) as archive:
        saved = json.loads(archive.read("config.json"))["config"]["layers"]
    ours = [c for c in saved if c["module"].startswith("keras_gfrnn")]
    assert len(ours) == 5
    for entry in ours:
        layer = model.get_layer(entry["config"]["name"])
        assert _plain(layer.get_config()) == _plain(entry["config"])
    # Loaded and saved again, the file describes the same model: configs
    # and weights round-trip exactly.
    again = keras.models.load_model(path)
    for old, new in zip(model.layers, again.layers):
        assert old.get_config() == new.get_config()
    for old, new in zip(model.weights, again.weights):
        assert old.path == new.path
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(old), keras.ops.convert_to_numpy(new)
        )
    # Every weight keeps its path and shape (recorded when the file was
    # saved): the redesign renamed nothing. Since issue 27.3 ClockworkRNN
    # holds the blocks of its recurrent matrix that the maths reads, module
    # by module, in place of the dense one (8 units, 4 modules of 2).
    dense = "cw/clockwork_cell/recurrent_kernel"
    blocks = {f"{dense}_{i + 1}": f"({8 - 2 * i}, 2)" for i in range(4)}
    expected = []
    for path, shape in zip(data["weight_paths"], data["weight_shapes"]):
        assert (path == dense) == (shape == "(8, 8)" and "cw/" in path)
        expected += blocks.items() if path == dense else [(path, shape)]
    assert [(w.path, str(tuple(w.shape))) for w in model.weights] == expected


def _plain(config):
    """`config` as JSON would hold it, without `shared_object_id`."""
    if isinstance(config, dict):
        return {
            k: _plain(v) for k, v in config.items() if k != "shared_object_id"
        }
    if isinstance(config, (list, tuple)):
        return [_plain(v) for v in config]
    return config
