"""Sequential MNIST with a Gated Feedback RNN.

Each 28x28 digit is read row by row: 28 time steps of 28 pixels. The model is
`GatedFeedbackRNN -> Dense(10)`, trained with `model.fit`; the test accuracy
is printed and the model exported as a TensorFlow SavedModel, reloaded with
`tf.saved_model.load` and checked against the Keras model. Any Keras
backend runs it (`KERAS_BACKEND=tensorflow|jax|torch`); SavedModel export
needs the TensorFlow or JAX backend and TensorFlow installed, so otherwise
(torch) the model is saved as a `.keras` file in the export directory
instead, reloaded and checked the same way.

    python examples/sequential_mnist.py                    # bundled sample
    python examples/sequential_mnist.py --dataset mnist    # full MNIST (tfds)
    python examples/sequential_mnist.py --quick            # < 1 min, for CI
    python examples/sequential_mnist.py --unit-type gru --no-feedback
"""

import argparse
import importlib.util
import os
import sys
import time

import _common
import keras
import numpy as np

from keras_gfrnn import GatedFeedbackRNN
from keras_gfrnn import datasets


def load(args):
    if args.dataset == "mnist_sample":
        train = datasets.mnist_sample("train")
        val = datasets.mnist_sample("validation")
        test = datasets.mnist_sample("test")
    else:
        download = not args.no_download
        x, y = datasets.load_mnist("train", args.data_dir, download)
        val = (x[-5000:], y[-5000:])
        train = (x[:-5000], y[:-5000])
        test = datasets.load_mnist("test", args.data_dir, download)
    if args.quick:
        train = (train[0][:512], train[1][:512])
        val = (val[0][:256], val[1][:256])
        test = (test[0][:256], test[1][:256])
    return train, val, test


def build_model(args):
    model = keras.Sequential()
    model.add(keras.Input((28, 28)))  # 28 time steps of 28 pixels
    model.add(
        GatedFeedbackRNN(
            args.units,
            num_layers=args.layers,
            unit_type=args.unit_type,
            feedback=args.feedback,
            dropout=args.dropout,
        )
    )
    model.add(keras.layers.Dense(10, activation="softmax"))
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate, clipnorm=1.0),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def savedmodel_unavailable():
    """Why `model.export(format="tf_saved_model")` cannot run here, or None.
    On torch it fails in `torch.export` (Keras 3.15, torch 2.13; a plain
    Dense model too); JAX exports through jax2tf, which needs TensorFlow."""
    if keras.backend.backend() == "torch":
        return "not on the torch backend"
    if importlib.util.find_spec("tensorflow") is None:
        return "TensorFlow is not installed"
    return None


def export_and_check(model, path, x):
    reason = savedmodel_unavailable()
    if reason:
        return save_keras_and_check(model, path, x, reason)
    tf = _common.import_tensorflow("SavedModel export")
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)
    served = reloaded.serve(tf.constant(x)).numpy()
    diff = float(np.max(np.abs(served - model.predict(x, verbose=0))))
    print(
        f"SavedModel exported to {path}; reloaded with tf.saved_model.load,"
        f" max |difference| to the Keras model: {diff:.3g}"
    )
    return diff


def save_keras_and_check(model, path, x, reason):
    """A .keras file instead of a SavedModel, reloaded with
    `keras.saving.load_model` and checked."""
    os.makedirs(path, exist_ok=True)
    file = os.path.join(path, "model.keras")
    model.save(file)
    reloaded = keras.saving.load_model(file)
    served = reloaded.predict(x, verbose=0)
    diff = float(np.max(np.abs(served - model.predict(x, verbose=0))))
    print(
        f"No SavedModel export ({reason}); saved {file} instead, reloaded "
        "with keras.saving.load_model, max |difference| to the Keras model: "
        f"{diff:.3g}"
    )
    return diff


def parse(argv=None):
    parser = _common.parser(__doc__)
    parser.add_argument(
        "--dataset",
        choices=["mnist_sample", "mnist"],
        default="mnist_sample",
        help="mnist_sample: 4,000 bundled digits, offline; "
        "mnist: tensorflow-datasets (downloads)",
    )
    parser.add_argument(
        "--data-dir",
        help="tensorflow-datasets data_dir, for --dataset mnist (default: "
        "its own, ~/tensorflow_datasets)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="--dataset mnist: fail at once when it is not prepared in "
        "--data-dir (default: download it, after a message)",
    )
    _common.add_unit_flags(parser, gate_inputs=False)
    parser.add_argument(
        "--feedback",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="gated feedback, or a plain stack (--no-feedback)",
    )
    parser.add_argument(
        "--units",
        type=_common.positive_int,
        default=64,
        help="units per layer",
    )
    parser.add_argument(
        "--layers",
        type=_common.layer_count,
        default=3,
        help="recurrent layers",
    )
    parser.add_argument(
        "--dropout",
        type=_common.probability,
        default=0.0,
        help="dropout rate of the recurrent layers' inputs",
    )
    _common.add_common_flags(
        parser,
        epochs=20,
        batch_size=64,
        learning_rate=3e-3,
        quick_help="512 training digits, 1 epoch, 32 units: CI",
    )
    parser.add_argument(
        "--export-dir",
        default=os.path.join("artifacts", "sequential_mnist"),
        help="where the trained model is exported (SavedModel; a .keras "
        "file on torch or without TensorFlow)",
    )
    return _common.parse_args(parser, argv, quick={"epochs": 1, "units": 32})


def main(argv=None):
    args = parse(argv)
    # The data loader and the SavedModel export import TensorFlow on any
    # backend: import it first, without its start-up log.
    _common.preload_tensorflow()
    keras.utils.set_random_seed(args.seed)
    try:
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = load(args)
    except datasets.DatasetUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model = build_model(args)
    model.summary()
    start = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=args.epochs,
        batch_size=args.batch_size,
        verbose=2 if args.quick else "auto",
    )
    train_time = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(
        f"Test accuracy on {args.dataset} ({len(x_test)} digits): "
        f"{accuracy:.4f}  [{args.unit_type}, feedback={args.feedback}, "
        f"{args.layers}x{args.units}, {args.epochs} epochs, "
        f"{train_time:.0f} s training]"
    )
    export_and_check(model, args.export_dir, x_test[:64])
    return 0


if __name__ == "__main__":
    sys.exit(main())
