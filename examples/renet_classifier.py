"""Image classification with ReNet (Visin et al., 2015).

`--preset paper` builds the paper's Table 1 architecture for the dataset;
`--preset small` is a CPU-sized model. Training: Adam, dropout after every
layer, the paper's augmentation (random +-2 px shifts, flips on CIFAR-10,
input corruption), early stopping and learning-rate halving on the
validation loss, BackupAndRestore (a killed run resumes where it stopped).
The test error is printed next to the paper's figure and the model is
exported as a TensorFlow SavedModel. Any Keras backend runs it
(`KERAS_BACKEND=tensorflow|jax|torch`; the input pipeline is tf.data, which
Keras feeds to every backend); SavedModel export needs TensorFlow or JAX, so
on torch the model is saved as a `.keras` file in the export directory
instead; `--distribute mirrored` needs TensorFlow.

    python examples/renet_classifier.py --dataset mnist_sample --preset small
    python examples/renet_classifier.py --dataset cifar10 --preset paper
    python examples/renet_classifier.py --quick              # CI, offline
    python examples/renet_classifier.py --quick --distribute mirrored
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from keras_gfrnn import ReNet2D  # noqa: E402
from keras_gfrnn import datasets  # noqa: E402

# Paper, Table 1: (ReNet layers as (units, patch, cell), FC sizes, test error)
PAPER = {
    "mnist": ([(256, 2, "gru")] * 2, [4096, 4096], 0.45),
    "cifar10": ([(320, 2, "gru")] * 3, [4096], 12.35),
    "svhn_cropped": ([(256, 2, "lstm")] * 3, [4096, 4096], 2.38),
}
PAPER["mnist_sample"] = PAPER["mnist"]
SMALL = {
    "mnist": ([(48, 2, "gru")] * 2, [256]),
    "cifar10": ([(64, 2, "gru")] * 3, [512]),
    "svhn_cropped": ([(64, 2, "gru")] * 3, [512]),
}
SMALL["mnist_sample"] = SMALL["mnist"]


def build_model(
    dataset, preset="small", width=1.0, dropout=0.3, learning_rate=1e-3
):
    """The preset's model for `dataset`; `width` scales every layer size."""
    if preset == "paper":
        renet, dense, _ = PAPER[dataset]
    elif preset == "small":
        renet, dense = SMALL[dataset]
    else:
        raise ValueError(
            "Argument `preset` must be 'paper' or 'small'. "
            f"Received: preset={preset!r}"
        )

    def scaled(n):
        return max(2, int(round(n * width)))

    shape = datasets.image_shape(dataset)
    model = keras.Sequential(name=f"renet_{preset}_{dataset}")
    model.add(keras.Input(shape))
    for units, patch, cell in renet:
        model.add(
            ReNet2D(scaled(units), patch_size=patch, cell=cell, padding="same")
        )
        model.add(keras.layers.Dropout(dropout))
    model.add(keras.layers.Flatten())
    for units in dense:
        model.add(keras.layers.Dense(scaled(units), activation="relu"))
        model.add(keras.layers.Dropout(dropout))
    model.add(
        keras.layers.Dense(
            datasets.IMAGE_DATASETS[dataset][2], activation="softmax"
        )
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def mirrored_strategy():
    """MirroredStrategy over the GPUs, or over two logical CPU devices."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) < 2:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset",
        default="mnist_sample",
        choices=sorted(datasets.IMAGE_DATASETS),
    )
    parser.add_argument("--preset", choices=["paper", "small"], default="small")
    parser.add_argument("--data-dir", help="tensorflow-datasets data_dir")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument(
        "--patience",
        type=int,
        default=8,
        help="early stopping patience (epochs)",
    )
    parser.add_argument("--no-augment", dest="augment", action="store_false")
    parser.add_argument("--corruption", type=float, default=0.2)
    parser.add_argument(
        "--distribute", choices=["none", "mirrored"], default="none"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--backup-dir", default=os.path.join("artifacts", "renet_backup")
    )
    parser.add_argument(
        "--export-dir", default=os.path.join("artifacts", "renet_savedmodel")
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny model, 2 epochs on mnist_sample: CI",
    )
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    if args.distribute == "mirrored" and backend != "tensorflow":
        parser.error(
            "--distribute mirrored (tf.distribute.MirroredStrategy) needs "
            f"KERAS_BACKEND=tensorflow; this is {backend}"
        )
    width = 1.0
    if args.quick:
        args.epochs, width = 2, 0.25

    strategy = mirrored_strategy() if args.distribute == "mirrored" else None
    keras.utils.set_random_seed(args.seed)

    def load(split, **kw):
        return datasets.load_image_dataset(
            args.dataset,
            split,
            batch_size=args.batch_size,
            data_dir=args.data_dir,
            seed=args.seed,
            **kw,
        )

    try:
        train = load("train", augment=args.augment, corruption=args.corruption)
        val = load("validation", shuffle=False)
        test = load("test", shuffle=False)
    except datasets.DatasetUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.quick:
        train, val, test = train.take(8), val.take(2), test.take(2)

    def make():
        return build_model(
            args.dataset, args.preset, width, args.dropout, args.learning_rate
        )

    if strategy is not None:
        print(f"MirroredStrategy over {strategy.num_replicas_in_sync} replicas")
        with strategy.scope():
            model = make()
    else:
        model = make()
    model.summary()
    callbacks = [
        keras.callbacks.BackupAndRestore(args.backup_dir),
        # val_loss: less noisy than the accuracy of a small validation set.
        keras.callbacks.EarlyStopping(
            monitor="val_loss",
            patience=args.patience,
            restore_best_weights=True,
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=max(1, args.patience // 3)
        ),
    ]
    start = time.perf_counter()
    model.fit(
        train,
        validation_data=val,
        epochs=args.epochs,
        callbacks=callbacks,
        verbose=2 if args.quick else "auto",
    )
    seconds = time.perf_counter() - start
    _, val_acc = model.evaluate(val, verbose=0)
    _, test_acc = model.evaluate(test, verbose=0)
    paper = PAPER[args.dataset][2]
    print(
        f"{args.dataset}, preset {args.preset}: validation accuracy "
        f"{val_acc:.4f}, test accuracy {test_acc:.4f}, test error "
        f"{100 * (1 - test_acc):.2f}% (paper, {args.dataset.split('_')[0]}"
        f" full training set: {paper:.2f}%); training {seconds:.0f} s"
    )
    export(model, args.export_dir)
    return 0


def export(model, path):
    """A SavedModel (TensorFlow, JAX); on torch, where
    `model.export(format="tf_saved_model")` fails in `torch.export` (Keras
    3.15, torch 2.13; a plain Dense model too), a .keras file in `path`."""
    if keras.backend.backend() == "torch":
        os.makedirs(path, exist_ok=True)
        path = os.path.join(path, "model.keras")
        model.save(path)
        print(
            "No SavedModel export (not on the torch backend); model saved "
            f"to {path} instead"
        )
        return path
    model.export(path, format="tf_saved_model", verbose=False)
    print(f"SavedModel exported to {path}")
    return path


if __name__ == "__main__":
    sys.exit(main())
