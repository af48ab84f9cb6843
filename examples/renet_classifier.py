"""Image classification with ReNet (Visin et al., 2015).

`--preset paper` builds the paper's Table 1 architecture for the dataset;
`--preset small` is a CPU-sized model. Training: Adam, dropout after every
layer, the paper's augmentation (random +-2 px shifts, flips on CIFAR-10,
input corruption), early stopping and learning-rate halving on the
validation loss, and a backup after every epoch (`RunBackup`): a killed
run, run again with the same flags, resumes where it stopped and ends with
the weights an uninterrupted run ends with.
The test error is printed next to the paper's figure and the model is
exported as a TensorFlow SavedModel. Any Keras backend runs it
(`KERAS_BACKEND=tensorflow|jax|torch`; the input pipeline is tf.data, which
Keras feeds to every backend); SavedModel export needs TensorFlow or JAX, so
on torch the model is saved as a `.keras` file in the export directory
instead; `--distribute mirrored|multi_worker` needs TensorFlow
(multi_worker: the cluster in TF_CONFIG; a fixed number of epochs, without
the callbacks, which Keras' `fit` would run).

    python examples/renet_classifier.py --dataset mnist_sample --preset small
    python examples/renet_classifier.py --dataset cifar10 --preset paper
    python examples/renet_classifier.py --quick              # CI, offline
    python examples/renet_classifier.py --quick --distribute mirrored
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
        "task": {"type": "worker", "index": 0}}' \\
        python examples/renet_classifier.py --distribute multi_worker
"""

import json
import os
import sys
import time

import _common
import keras
import numpy as np

from keras_gfrnn import ReNet2D
from keras_gfrnn import datasets

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
# The examples shuffled at a time (keras_gfrnn.datasets' shuffle's).
SHUFFLE_BUFFER = 10_000


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


def parse(argv=None):
    parser = _common.parser(__doc__)
    parser.add_argument(
        "--dataset",
        default="mnist_sample",
        choices=sorted(datasets.IMAGE_DATASETS),
        help="mnist_sample: 4,000 bundled digits, offline; the others: "
        "tensorflow-datasets (downloads)",
    )
    parser.add_argument(
        "--preset",
        choices=["paper", "small"],
        default="small",
        help="paper: the paper's Table 1 model; small: a CPU-sized one",
    )
    parser.add_argument(
        "--data-dir",
        help="tensorflow-datasets data_dir (default: its own, "
        "~/tensorflow_datasets)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="fail at once when the dataset is not prepared in --data-dir "
        "(default: download it, after a message)",
    )
    _common.add_common_flags(
        parser,
        epochs=40,
        batch_size=64,
        learning_rate=1e-3,
        quick_help="tiny model, 2 epochs on mnist_sample: CI",
    )
    parser.add_argument(
        "--dropout",
        type=_common.probability,
        default=0.3,
        help="dropout rate after every layer",
    )
    parser.add_argument(
        "--patience",
        type=_common.non_negative_int,
        default=8,
        help="early stopping patience (epochs)",
    )
    parser.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="train without the paper's augmentation (shifts, flips, "
        "corruption)",
    )
    parser.add_argument(
        "--corruption",
        type=_common.probability,
        default=0.2,
        help="probability of zeroing each input value (augmentation)",
    )
    _common.add_distribute_flag(parser)
    parser.add_argument(
        "--backup-dir",
        default=os.path.join("artifacts", "renet_backup"),
        help="folder of the run's backup after every epoch, to resume a "
        "killed run; deleted when training ends",
    )
    parser.add_argument(
        "--export-dir",
        default=os.path.join("artifacts", "renet_savedmodel"),
        help="where the trained model is exported (SavedModel; a .keras "
        "file on torch)",
    )
    args = _common.parse_args(parser, argv, quick={"epochs": 2})
    _common.check_distribute(parser, args)
    return args


def main(argv=None):
    args = parse(argv)
    width = 0.25 if args.quick else 1.0
    strategy = _common.strategy(args.distribute)
    keras.utils.set_random_seed(args.seed)

    def load(split, seed=args.seed, **kw):
        return datasets.load_image_dataset(
            args.dataset,
            split,
            batch_size=args.batch_size,
            data_dir=args.data_dir,
            seed=seed,
            download=not args.no_download,
            **kw,
        )

    def train_epoch(epoch):
        """Epoch `epoch`'s training batches, `train` below with the seed of
        `epoch`: the same at every iteration of the dataset. (By default
        the library draws a new order and augmentation at each iteration,
        and Keras' JAX trainer iterates the data once before training to
        build the optimizer: a resumed run would train on other draws.)"""
        tf = _common.quiet_import("tensorflow")  # `load` needs it too
        seed = epoch_seed(args.seed, epoch)
        data = load(
            "train",
            seed=seed,
            shuffle=False,
            augment=args.augment,
            corruption=args.corruption,
            redraw_each_iteration=False,
        )
        data = data.unbatch().shuffle(
            SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=False
        )
        data = data.batch(args.batch_size).prefetch(tf.data.AUTOTUNE)
        return data.take(8) if args.quick else data

    _common.preload_tensorflow()
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
        print(
            f"{type(strategy).__name__} over "
            f"{strategy.num_replicas_in_sync} replicas"
        )
    with _common.scope(strategy):
        model = make()
    model.summary()
    start = time.perf_counter()
    if args.distribute == "multi_worker":
        fit_multi_worker(model, strategy, train, args.epochs)
        seconds = time.perf_counter() - start
        val_acc, test_acc = accuracy(model, val), accuracy(model, test)
    else:
        fit(model, train_epoch, batches(train), val, args)
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
    if args.distribute == "multi_worker":
        args.export_dir = _common.worker_dir(args.export_dir)
    export(model, args.export_dir)
    return 0


def epoch_seed(seed, epoch):
    """The seed of the shuffle and augmentation of epoch `epoch` (from 0):
    a function of `seed` and `epoch` alone. One seeded pipeline for the
    whole run (`shuffle(reshuffle_each_iteration=True)`) gives its second
    order to the second epoch *this process* runs, so a resumed run would
    read its first epoch's order again. 31 bits: the package's seeds are
    at most 2**31 - 1 (`load_image_dataset`)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1)[0]
    return int(state) >> 1


def fit(model, train_epoch, steps, val, args):
    """Trains `args.epochs` epochs, epoch `e` on the `steps` batches
    `train_epoch(e)`, with early stopping and learning-rate halving on the
    validation loss; resumes the run backed up in `args.backup_dir`."""
    callbacks = [
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
    backup = RunBackup(args.backup_dir, callbacks)
    state = backup.load() or {"epoch": 0, "stopped": False}
    if state["epoch"]:
        print(f"resuming after epoch {state['epoch']}", flush=True)
    first = state["epoch"]
    # An early-stopped run trains no more epochs (`fit` still restores the
    # callbacks' state and the best weights at its end).
    epochs = first if state["stopped"] else args.epochs
    # The epochs one after another, each from its own seed; Keras keeps
    # one iterator across epochs where `steps_per_epoch` is given.
    data = train_epoch(first)
    for epoch in range(first + 1, epochs):
        data = data.concatenate(train_epoch(epoch))
    model.fit(
        data,
        validation_data=val,
        initial_epoch=first,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=[*callbacks, backup, *_common.kill_hook()],
        # The tf.data pipeline shuffles the training set itself.
        shuffle=False,
        verbose=2 if args.quick else "auto",
    )


def batches(data):
    """The number of batches in the tf.data dataset `data`."""
    count = int(data.cardinality())
    if count < 0:  # unknown
        count = int(data.reduce(0, lambda n, _: n + 1))
    return count


def atomic_write(path, write):
    """Writes the text file `path` through `write(file)` into a temporary
    file that then replaces `path`: a reader sees the old or the new file,
    never a part."""
    temporary = f"{path}.tmp"
    with open(temporary, "w") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


class RunBackup(keras.callbacks.Callback):
    """Backs the run up in `folder` after every epoch, for an exact resume,
    and deletes the backup when training ends.

    Keras' `BackupAndRestore` keeps the weights, the optimizer and the
    epoch; a resumed run also needs the dropout layers' random states
    (seed-generator variables, which `save_weights` leaves out: the resumed
    epochs would draw the first epochs' dropout masks again) and the state
    of `callbacks` (early stopping's and learning-rate halving's counters
    and best validation loss, early stopping's best weights). The arrays go
    to a new file; `state.json`, replaced atomically after it, is the
    commit point: a run killed at any moment resumes from the last epoch it
    names. Put it after `callbacks` in `fit`'s list: their `on_train_begin`
    resets what it restores, and it saves what their `on_epoch_end` did.
    """

    STATE = ("wait", "best", "best_epoch", "stopped_epoch", "cooldown_counter")

    def __init__(self, folder, callbacks):
        super().__init__()
        self.folder = folder
        self.callbacks = list(callbacks)
        self.path = os.path.join(folder, "state.json")

    def load(self):
        """The committed state (a dict), or None."""
        if not os.path.exists(self.path):
            return None
        with open(self.path) as f:
            return json.load(f)

    def _variables(self):
        return list(self.model.variables) + list(self.model.optimizer.variables)

    def on_train_begin(self, logs=None):
        state = self.load()
        if state is None:
            return
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        with np.load(os.path.join(self.folder, state["arrays"])) as arrays:
            values = [arrays[f"v{i}"] for i in range(state["variables"])]
            for index, callback in enumerate(self.callbacks):
                saved = dict(state["callbacks"][index])
                count = saved.pop("best_weights", None)
                for name, value in saved.items():
                    setattr(callback, name, value)
                if count is not None:
                    callback.best_weights = [
                        arrays[f"b{index}_{j}"] for j in range(count)
                    ]
        variables = self._variables()
        if len(values) != len(variables):
            raise SystemExit(
                f"{self.folder} holds the backup of another model: delete "
                "it or give another --backup-dir"
            )
        for variable, value in zip(variables, values):
            variable.assign(value)

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.folder, exist_ok=True)
        name = f"epoch-{epoch + 1}.npz"
        variables = self._variables()
        arrays = {
            f"v{i}": keras.ops.convert_to_numpy(v)
            for i, v in enumerate(variables)
        }
        saved = []
        for index, callback in enumerate(self.callbacks):
            state = {
                key: getattr(callback, key)
                for key in self.STATE
                if hasattr(callback, key)
            }
            if state.get("best") is not None:
                state["best"] = float(state["best"])
            best_weights = getattr(callback, "best_weights", None)
            if best_weights is not None:
                state["best_weights"] = len(best_weights)
                for j, w in enumerate(best_weights):
                    arrays[f"b{index}_{j}"] = w
            saved.append(state)
        np.savez(os.path.join(self.folder, name), **arrays)
        state = {
            "epoch": epoch + 1,
            "stopped": bool(self.model.stop_training),
            "arrays": name,
            "variables": len(variables),
            "callbacks": saved,
        }
        atomic_write(self.path, lambda f: json.dump(state, f))
        for other in os.listdir(self.folder):
            if other not in ("state.json", name):
                os.remove(os.path.join(self.folder, other))

    def on_train_end(self, logs=None):
        if os.path.isdir(self.folder):
            for name in os.listdir(self.folder):
                os.remove(os.path.join(self.folder, name))
            os.rmdir(self.folder)


def fit_multi_worker(model, strategy, train, epochs):
    """Trains on every worker's share of the `train` batches (the global
    batch: --batch-size times the replicas), all `epochs`: Keras' `fit`
    fails under MultiWorkerMirroredStrategy (see
    `_common.fit_multi_worker`), and with it the callbacks that watch the
    validation loss and the run's backup."""
    workers = strategy.num_replicas_in_sync
    steps = int(train.cardinality()) // workers
    if steps < 1:
        raise SystemExit(
            f"--distribute multi_worker: {int(train.cardinality())} "
            f"training batches (a known number is needed) for {workers} "
            "replicas"
        )

    def dataset_fn(context):
        shard = train.shard(
            context.num_input_pipelines, context.input_pipeline_id
        )
        return shard.repeat()

    _common.fit_multi_worker(
        model,
        strategy,
        dataset_fn,
        keras.losses.sparse_categorical_crossentropy,
        epochs=epochs,
        steps_per_epoch=steps,
    )


def accuracy(model, data):
    """The accuracy on the (x, y) batches of `data`, a plain loop (Keras'
    `evaluate` fails under MultiWorkerMirroredStrategy)."""
    hits = total = 0
    for x, y in data:
        predicted = keras.ops.argmax(model(x, training=False), axis=-1)
        predicted = keras.ops.convert_to_numpy(predicted)
        hits += int((predicted == keras.ops.convert_to_numpy(y)).sum())
        total += len(predicted)
    return hits / total


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
