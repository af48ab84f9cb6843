"""A `.keras` file saved on any Keras backend loads on every other one.

One pytest run covers every (saving backend, loading backend) pair of
TensorFlow, JAX and torch, with six child processes: this file run as a
script, `KERAS_BACKEND` set in its environment. First one process per
backend builds a model around each layer (GatedFeedbackRNN as LSTM and GRU
with feedback, 2-3 layers, output="concat", a mask, return_sequences and
return_state; ClockworkRNN; ReNet2D inside a small CNN; a stateful
GatedFeedbackRNN), gives every weight random values, saves `model.keras`
and writes the weights and the outputs on fixed inputs as .npz. Then one
process per backend loads every backend's files (its own too) and writes
what it loaded and computed; this process compares them.

Loaded weights must equal the saved ones exactly (a `.keras` file stores
the float32 values). Outputs must agree within atol = rtol = 1e-5: the
backends' float32 kernels (Eigen/oneDNN, XLA, ATen) sum in different orders,
which moves each step's result by a few ulp (~1e-7 for values of order 1),
and the recurrences here run at most 16 steps; a real mismatch (a gate
order, a transposed or misassigned weight, a mask or a clock schedule
read differently) changes outputs by 1e-2 or more.

The states of a stateful RNN are not part of a `.keras` file (Keras keeps
them outside the layer's weights, as for `keras.layers.LSTM`), so they are
not compared; the stateful model is checked from a reset state and over two
consecutive batches, the second continuing from the first one's state.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

BACKENDS = ("tensorflow", "jax", "torch")
UNAVAILABLE = 3  # exit status of a child whose backend cannot be imported
TOLERANCE = 1e-5
STATEFUL_BATCH = 2


# ----------------------------------------------------- child process side
def _models():
    """name -> (model, inputs), weights not yet randomised."""
    import keras

    from keras_gfrnn import ClockworkRNN
    from keras_gfrnn import GatedFeedbackRNN
    from keras_gfrnn import ReNet2D
    from keras_gfrnn._validation import MAX_SEED

    rng = np.random.default_rng(7)

    def normal(*shape):
        return rng.normal(size=shape).astype("float32")

    # Zero initialisers: every weight is set to random values afterwards,
    # and JAX compiles each random initialiser per shape (~25 s in all).
    zeros = {"kernel_initializer": "zeros", "recurrent_initializer": "zeros"}
    dense = {"kernel_initializer": "zeros"}
    # Dropout with the largest seed a layer accepts: saved on any backend
    # (TensorFlow's seeds go further), it loads and draws on every other.
    seeded = {"dropout": 0.25, "seed": MAX_SEED}

    models = {}
    models["gf_lstm_concat"] = (
        keras.Sequential(
            [
                keras.Input((6, 5)),
                GatedFeedbackRNN(
                    [7, 5],
                    unit_type="lstm",
                    output="concat",
                    return_sequences=True,
                    **seeded,
                    **zeros,
                ),
                keras.layers.Dense(3, **dense),
            ]
        ),
        normal(3, 6, 5),
    )
    tokens = rng.integers(1, 11, (3, 8)).astype("int32")
    tokens[0, 5:] = 0  # padding: masked steps
    tokens[1, 2:] = 0
    models["gf_gru_masked"] = (
        keras.Sequential(
            [
                keras.Input((8,), dtype="int32"),
                keras.layers.Embedding(
                    11, 4, mask_zero=True, embeddings_initializer="zeros"
                ),
                GatedFeedbackRNN(6, num_layers=3, unit_type="gru", **zeros),
                keras.layers.Dense(2, **dense),
            ]
        ),
        tokens,
    )
    sequence = keras.Input((5, 4))
    outputs = GatedFeedbackRNN(
        4, num_layers=2, unit_type="tanh", return_state=True, **zeros
    )(sequence)
    models["gf_tanh_states"] = (
        keras.Model(sequence, outputs),
        normal(2, 5, 4),
    )
    models["clockwork"] = (
        keras.Sequential(
            [
                keras.Input((16, 3)),
                ClockworkRNN(
                    8, num_modules=4, return_sequences=True, **seeded, **zeros
                ),
                ClockworkRNN(6, periods=[1, 3], go_backwards=True, **zeros),
                keras.layers.Dense(2, **dense),
            ]
        ),
        normal(3, 16, 3),
    )
    models["renet_cnn"] = (
        keras.Sequential(
            [
                keras.Input((8, 8, 2)),
                keras.layers.Conv2D(
                    4, 3, padding="same", activation="relu", **dense
                ),
                ReNet2D(5, patch_size=2, cell="lstm", **seeded, **zeros),
                ReNet2D(
                    3, patch_size=(2, 1), cell="gru", padding="same", **zeros
                ),
                keras.layers.GlobalAveragePooling2D(),
                keras.layers.Dense(3, activation="softmax", **dense),
            ]
        ),
        normal(2, 8, 8, 2),
    )
    models["gf_stateful"] = (
        keras.Sequential(
            [
                keras.Input((4, 3), batch_size=STATEFUL_BATCH),
                GatedFeedbackRNN(
                    5,
                    num_layers=2,
                    unit_type="gru",
                    stateful=True,
                    return_sequences=True,
                    **zeros,
                ),
                keras.layers.Dense(2, **dense),
            ]
        ),
        normal(2 * STATEFUL_BATCH, 4, 3),
    )
    return models


def _outputs(model, x):
    """Outputs on `x` as a flat list of arrays. A stateful model is called
    directly (its state carried from the first batch to the second on every
    backend) from a reset state."""
    import keras

    if any(getattr(layer, "stateful", False) for layer in model.layers):
        for layer in model.layers:
            if getattr(layer, "stateful", False):
                layer.reset_state()
        batches = np.split(x, len(x) // STATEFUL_BATCH)
        out = [model(b, training=False) for b in batches]
    else:
        out = model.predict(x, verbose=0)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [keras.ops.convert_to_numpy(o) for o in out]


def _save_arrays(path, weights, outputs):
    np.savez(
        path,
        **{f"weight_{i:03d}": w for i, w in enumerate(weights)},
        **{f"output_{i:03d}": o for i, o in enumerate(outputs)},
    )


def _save(root, backend):
    out = os.path.join(root, "saved", backend)
    os.makedirs(out)
    rng = np.random.default_rng(11)
    for name, (model, x) in _models().items():
        for w in model.weights:  # random, not the initialisers' values
            w.assign(0.5 * rng.standard_normal(w.shape).astype(w.dtype))
        _outputs(model, x)  # a stateful model saved with non-zero states
        model.save(os.path.join(out, f"{name}.keras"))
        np.save(os.path.join(out, f"{name}.input.npy"), x)
        weights = [w.numpy() for w in model.weights]
        _save_arrays(os.path.join(out, name), weights, _outputs(model, x))
        with open(os.path.join(out, f"{name}.paths.json"), "w") as f:
            json.dump([w.path for w in model.weights], f)


def _load(root, backend):
    import keras

    import keras_gfrnn  # noqa: F401 - registers the layers for loading

    for saver in BACKENDS:
        folder = os.path.join(root, "saved", saver)
        out = os.path.join(root, "loaded", backend, saver)
        os.makedirs(out)
        names = [f[:-6] for f in os.listdir(folder) if f.endswith(".keras")]
        for name in sorted(names):
            keras.backend.clear_session()
            model = keras.saving.load_model(
                os.path.join(folder, f"{name}.keras")
            )
            x = np.load(os.path.join(folder, f"{name}.input.npy"))
            weights = [w.numpy() for w in model.weights]
            _save_arrays(os.path.join(out, name), weights, _outputs(model, x))
            with open(os.path.join(out, f"{name}.paths.json"), "w") as f:
                json.dump([w.path for w in model.weights], f)
            # A training call: the loaded seeds draw dropout masks here (on
            # a batch the stateful model takes too).
            batch = x[:STATEFUL_BATCH]
            trained = keras.tree.flatten(model(batch, training=True))
            for t in trained:
                assert np.all(np.isfinite(keras.ops.convert_to_numpy(t)))


def _child(mode, root):
    backend = os.environ["KERAS_BACKEND"]
    try:
        import keras
    except ImportError as error:
        print(f"Keras backend {backend!r} cannot be imported: {error!r}")
        return UNAVAILABLE
    assert keras.backend.backend() == backend, keras.backend.backend()
    (_save if mode == "save" else _load)(root, backend)
    return 0


# ------------------------------------------------------------- test side
def _run_all(mode, root):
    """One child per backend, all at once; a failing child fails the test
    with its output, one whose backend is missing skips it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    children = {
        backend: subprocess.Popen(
            [sys.executable, __file__, mode, str(root)],
            env={**env, "KERAS_BACKEND": backend},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for backend in BACKENDS
    }
    outputs = {}
    try:
        for backend, child in children.items():
            outputs[backend] = child.communicate(timeout=600)[0]
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()
    for backend, child in children.items():
        if child.returncode == UNAVAILABLE:
            pytest.skip(outputs[backend].strip().splitlines()[-1])
    for backend, child in children.items():
        assert child.returncode == 0, (
            f"{mode} on {backend} failed:\n{outputs[backend][-6000:]}"
        )


def _arrays(path):
    """(weights, outputs) written by `_save_arrays`."""
    with np.load(path) as data:
        keys = sorted(data.files)
        return tuple(
            [data[k] for k in keys if k.startswith(kind)]
            for kind in ("weight_", "output_")
        )


_MISSING = [b for b in BACKENDS if importlib.util.find_spec(b) is None]


# The marks of tests/layer_checks.py's `needs`, written out: this file also
# runs as a child script, which imports nothing of the test suite.
@pytest.mark.slow
@pytest.mark.backend_independent
@pytest.mark.extras
@pytest.mark.skipif(
    bool(_MISSING),
    reason=f"needs {' and '.join(_MISSING)}: the jax and torch extras: "
    'pip install -e ".[jax,torch]"',
)
def test_keras_files_load_across_every_backend_pair(tmp_path):
    # Covers every backend pair itself (one child process per backend),
    # whatever KERAS_BACKEND this run has.
    _run_all("save", tmp_path)
    _run_all("load", tmp_path)

    names = sorted(
        f[: -len(".keras")]
        for f in os.listdir(tmp_path / "saved" / "tensorflow")
        if f.endswith(".keras")
    )
    assert len(names) == 6, names
    checked = 0
    for saver in BACKENDS:
        for loader in BACKENDS:
            for name in names:
                where = f"{name}: saved on {saver}, loaded on {loader}"
                saved = tmp_path / "saved" / saver
                loaded = tmp_path / "loaded" / loader / saver
                # The same variables in the same order (a loaded model's
                # paths lack the name scope of the model that built it).
                paths = [
                    json.loads((d / f"{name}.paths.json").read_text())
                    for d in (saved, loaded)
                ]
                assert len(paths[0]) == len(paths[1]), where
                for a, b in zip(*paths):
                    assert a.endswith(b) or b.endswith(a), (where, a, b)
                w_saved, o_saved = _arrays(saved / f"{name}.npz")
                w_loaded, o_loaded = _arrays(loaded / f"{name}.npz")
                assert len(w_loaded) == len(w_saved) > 0, where
                for a, b in zip(w_saved, w_loaded):
                    np.testing.assert_array_equal(b, a, err_msg=where)
                assert len(o_loaded) == len(o_saved) > 0, where
                for a, b in zip(o_saved, o_loaded):
                    assert np.abs(a).max() > 1e-2, where  # not all ~zero
                    np.testing.assert_allclose(
                        b, a, atol=TOLERANCE, rtol=TOLERANCE, err_msg=where
                    )
                checked += 1
    assert checked == 3 * 3 * 6


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
