"""Shared by the example scripts (not part of the package).

Imported by every script before Keras: it sets `TF_CPP_MIN_LOG_LEVEL=3`
(unless set already) and imports Keras, and TensorFlow on request, with
TensorFlow's start-up log lines filtered out (the native library prints
them before its log level is read). It also holds the argparse types that
report a bad value by the flag's name, the flags every script shares, and
the `tf.distribute` strategies of `--distribute`, and the test-only kill
hook of the scripts that resume a killed run (`kill_hook`).
"""

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import re
import signal
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# A native TensorFlow log line: "I0000 00:00:1795.123   17 port.cc:153] ...".
_NATIVE_LOG = re.compile(
    r"^([IWEF])\d{4} \d\d:\d\d:[\d.]+\s+\d+ [\w./-]+:\d+\]"
)
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog()"
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}


def filter_native_log(text, min_level=None):
    """`text` without TensorFlow's native log records below `min_level`
    (default: `TF_CPP_MIN_LOG_LEVEL`), nor their continuation lines."""
    if min_level is None:
        try:
            min_level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL") or 0)
        except ValueError:
            min_level = 0
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _NATIVE_LOG.match(line)
        if match:
            dropping = _SEVERITY[match.group(1)] < min_level
        elif line.startswith(_ABSL_NOTICE):
            dropping = min_level > 0
        # Other lines continue the record before them.
        if not dropping:
            kept.append(line)
    return "".join(kept)


@contextlib.contextmanager
def _native_stderr_filtered():
    """Sends file descriptor 2 to a file while the block runs, then writes
    it back to stderr without the native log records `TF_CPP_MIN_LOG_LEVEL`
    silences."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr
        yield
        return
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            text = log.read().decode("utf-8", errors="replace")
            sys.stderr.write(filter_native_log(text))
            sys.stderr.flush()


def quiet_import(name):
    """Imports module `name` (Keras, TensorFlow) without TensorFlow's
    start-up log noise."""
    if name in sys.modules:
        return sys.modules[name]
    with _native_stderr_filtered():
        return importlib.import_module(name)


def import_tensorflow(purpose):
    """TensorFlow, or a clear error saying what needs it."""
    if importlib.util.find_spec("tensorflow") is None:
        from keras_gfrnn.datasets import install_command

        raise SystemExit(
            f"{purpose} needs TensorFlow: {install_command('tensorflow')}"
        )
    return quiet_import("tensorflow")


def preload_tensorflow():
    """Imports TensorFlow quietly where it is installed, before a library
    (tf.data in keras_gfrnn.datasets) imports it with its log noise."""
    if importlib.util.find_spec("tensorflow") is not None:
        quiet_import("tensorflow")


keras = quiet_import("keras")


# ------------------------------------------------------------ argparse types
def _checked(kind, valid, expected, name):
    """An argparse type: `kind(text)` where `valid` of it holds; else an
    ArgumentTypeError that argparse reports with the flag's name."""

    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(
                f"expected {expected}. Received: {text!r}"
            )
        return value

    convert.__name__ = convert.__qualname__ = name
    return convert


positive_int = _checked(
    int, lambda v: v >= 1, "a positive integer", "positive_int"
)
non_negative_int = _checked(
    int, lambda v: v >= 0, "a non-negative integer", "non_negative_int"
)
# Seeds every backend holds (keras_gfrnn._validation.MAX_SEED, 2**31 - 1:
# written out here so that --help imports no Keras).
seed_int = _checked(
    int, lambda v: 0 <= v <= 2**31 - 1, "an integer in [0, 2**31 - 1]", "seed"
)
# Recurrent layers of a GatedFeedbackRNN (gated_feedback_rnn.MAX_LAYERS).
layer_count = _checked(
    int, lambda v: 1 <= v <= 64, "an integer in [1, 64]", "layer_count"
)
positive_float = _checked(
    float,
    lambda v: 0.0 < v < float("inf"),
    "a positive finite number",
    "positive_float",
)
# A rate: dropout, input corruption.
probability = _checked(
    float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)", "probability"
)


# --------------------------------------------------------------------- flags
class HelpFormatter(
    argparse.RawDescriptionHelpFormatter,
    argparse.ArgumentDefaultsHelpFormatter,
):
    """The description as written; each option's default, but a switch's."""

    def _get_help_string(self, action):
        # A default of None means "not given": the help says what then. A
        # store_true / store_false switch's default is the opposite of what
        # it does: "--no-augment (default: True)" would mislead.
        switch = action.nargs == 0 and isinstance(action.const, bool)
        if action.default is None or switch:
            return action.help
        return super()._get_help_string(action)


def parser(doc):
    """An ArgumentParser described by `doc` (a script's docstring, its
    usage lines included), each option's help showing its default."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=HelpFormatter
    )


def add_common_flags(
    parser,
    *,
    quick_help,
    epochs=None,
    batch_size=None,
    learning_rate=None,
):
    """--seed and --quick; --epochs, --batch-size and --learning-rate where
    a default is given."""
    if epochs is not None:
        parser.add_argument(
            "--epochs",
            type=positive_int,
            default=epochs,
            help="training epochs",
        )
    if batch_size is not None:
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=batch_size,
            help="batch size",
        )
    if learning_rate is not None:
        parser.add_argument(
            "--learning-rate",
            type=positive_float,
            default=learning_rate,
            help="the optimizer's learning rate",
        )
    parser.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="random seed",
    )
    parser.add_argument("--quick", action="store_true", help=quick_help)


def add_unit_flags(parser, *, gate_inputs):
    """--unit-type (GatedFeedbackRNN's unit types) and, if `gate_inputs`,
    --gate-inputs (GatedFeedbackRNN's `gate_inputs`)."""
    parser.add_argument(
        "--unit-type",
        choices=["tanh", "gru", "lstm"],
        default="lstm",
        help="recurrent unit of every layer",
    )
    if gate_inputs:
        parser.add_argument(
            "--gate-inputs",
            choices=["all_layers", "own_layer"],
            default="all_layers",
            help="GatedFeedbackRNN(gate_inputs=...): every layer's gates "
            "read every layer's previous state (the authors' form) or only "
            "their own layer's (keras_gfrnn 0.1.0)",
        )


def parse_args(parser, argv=None, quick=None):
    """Parses `argv`; with --quick, the `quick` values replace the
    defaults (a flag given explicitly still wins)."""
    args = parser.parse_args(argv)
    if args.quick and quick:
        parser.set_defaults(**quick)
        args = parser.parse_args(argv)
    return args


# -------------------------------------------------------------- distribution
DISTRIBUTE_HELP = {
    "mirrored": "mirrored: tf.distribute.MirroredStrategy over this "
    "machine's GPUs (two logical CPUs without one)",
    "multi_worker": "multi_worker: tf.distribute.MultiWorkerMirroredStrategy, "
    "the cluster and this worker's index in the TF_CONFIG environment "
    "variable (worker 0 writes the run's files, the others to a temporary "
    "folder)",
}


def add_distribute_flag(parser, modes=("mirrored", "multi_worker")):
    parser.add_argument(
        "--distribute",
        choices=["none", *modes],
        default="none",
        help="; ".join(DISTRIBUTE_HELP[mode] for mode in modes)
        + "; TensorFlow backend only",
    )


def check_distribute(parser, args):
    """Exits through `parser.error` where `--distribute` cannot run."""
    backend = keras.backend.backend()
    if args.distribute != "none" and backend != "tensorflow":
        parser.error(
            f"--distribute {args.distribute} (tf.distribute) needs "
            f"KERAS_BACKEND=tensorflow; this is {backend}"
        )
    if args.distribute == "multi_worker":
        try:
            worker = cluster_worker()
        except ValueError as error:
            parser.error(f"--distribute multi_worker: {error}")
        if worker is None:
            parser.error(
                "--distribute multi_worker needs the TF_CONFIG environment "
                "variable (the cluster and this worker's task); see "
                "https://www.tensorflow.org/guide/distributed_training"
            )


def cluster_worker():
    """(index, number of workers) of this worker from TF_CONFIG, or None
    where TF_CONFIG is unset."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        index = int(task["index"])
        if task["type"] != "worker" or not 0 <= index < len(workers):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            "TF_CONFIG must be JSON with a cluster.worker list of "
            'host:port and a task {"type": "worker", "index": i} within it. '
            f"Received: TF_CONFIG={text!r}"
        ) from None
    return index, len(workers)


def is_chief():
    """Whether this process writes the run's files (worker 0, or alone)."""
    worker = cluster_worker() if os.environ.get("TF_CONFIG") else None
    return worker is None or worker[0] == 0


def worker_dir(path):
    """`path` on the chief; on another worker a new temporary folder, as
    in TensorFlow's multi-worker guide (every worker saves, as saving may
    take part in collective operations, but only the chief's files are
    kept)."""
    if is_chief():
        return path
    index = cluster_worker()[0]
    folder = tempfile.mkdtemp(prefix=f"worker{index}-")
    print(f"worker {index} writes its files to {folder}", flush=True)
    return folder


def strategy(distribute):
    """The tf.distribute strategy of `--distribute`, or None. Call it
    before TensorFlow runs anything (MultiWorkerMirroredStrategy must be
    created first)."""
    if distribute == "none":
        return None
    tf = import_tensorflow(f"--distribute {distribute}")
    if distribute == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or []) < 2:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def scope(strategy):
    """`strategy.scope()`, or a no-op without a strategy."""
    return strategy.scope() if strategy else contextlib.nullcontext()


def fit_multi_worker(
    model,
    strategy,
    dataset_fn,
    loss_fn,
    *,
    epochs,
    steps_per_epoch,
    callbacks=(),
    verbose=True,
):
    """`model.fit` for MultiWorkerMirroredStrategy, as a custom loop.

    Keras 3.15's `fit`, `evaluate` and `train_on_batch` fail under this
    strategy (keras-team/keras#20585): `fit` reduces its first batch with
    `strategy.reduce("MEAN", batch, axis=None)`, "ValueError: Attempt to
    convert a value (PerReplica:{...}) with an unsupported type (<class
    '...PerReplica'>) to a Tensor"; `train_on_batch` reduces its scalar
    logs along axis 0, "ValueError: Invalid reduction dimension 0 for
    input with 0 dimensions". The model's own optimizer works in replica
    context: `apply_gradients` sums the gradients over the workers (after
    its `clipnorm`, as in `fit` under MirroredStrategy) and updates the
    mirrored variables.

    `model` is built and compiled in `strategy.scope()`; `dataset_fn(ctx)`
    gives this worker's batches (of `tf.distribute.InputContext` `ctx`)
    without end; `loss_fn(y, y_pred)` the loss of each example. Keras
    callbacks see `on_(epoch|train_batch)_(begin|end)` with the global
    mean `loss`. Returns the epochs' mean losses.
    """
    tf = import_tensorflow("--distribute multi_worker")
    batches = iter(strategy.distribute_datasets_from_function(dataset_fn))
    variables = model.trainable_variables
    if not model.optimizer.built:
        with strategy.scope():
            model.optimizer.build(variables)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            # Divided by the global batch size: the sum over the workers
            # is the mean.
            loss = tf.nn.compute_average_loss(loss_fn(y, y_pred))
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, variables)
        model.optimizer.apply_gradients(zip(grads, variables))
        return loss

    @tf.function
    def train_step(iterator):
        loss = strategy.run(replica_step, args=next(iterator))
        return strategy.reduce("SUM", loss, axis=None)

    callbacks = keras.callbacks.CallbackList(
        list(callbacks), model=model, epochs=epochs, steps=steps_per_epoch
    )
    callbacks.on_train_begin()
    history = []
    for epoch in range(epochs):
        callbacks.on_epoch_begin(epoch)
        total = 0.0
        for step in range(steps_per_epoch):
            callbacks.on_train_batch_begin(step)
            loss = float(train_step(batches))
            total += loss
            callbacks.on_train_batch_end(step, {"loss": loss})
        history.append(total / steps_per_epoch)
        if verbose:
            print(f"epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f}")
        callbacks.on_epoch_end(epoch, {"loss": history[-1]})
    callbacks.on_train_end()
    return history


def mean_loss(model, batches, loss_fn):
    """The mean of `loss_fn(y, model(x))` over the (x, y) `batches`, a
    plain loop on this worker (Keras' `evaluate` fails under
    MultiWorkerMirroredStrategy, see `fit_multi_worker`)."""
    total, count = 0.0, 0
    for x, y in batches:
        loss = loss_fn(y, model(x, training=False))
        total += float(keras.ops.sum(loss))
        count += int(loss.shape[0])
    return total / count


# ------------------------------------------------------------ kill (tests)
KILL_AFTER_EPOCH = "KERAS_GFRNN_KILL_AFTER_EPOCH"


class KillAfterEpoch(keras.callbacks.Callback):
    """Sends SIGKILL to this process at the end of epoch `epoch` (1-based),
    after the callbacks before it in the list (the run's backup)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)


def kill_hook():
    """For tests of an exact resume: `[KillAfterEpoch(n)]` where the
    environment variable KERAS_GFRNN_KILL_AFTER_EPOCH is `n`, else `[]`.
    A script puts it after its backup's callback."""
    text = os.environ.get(KILL_AFTER_EPOCH)
    if not text:
        return []
    try:
        epoch = int(text)
    except ValueError:
        epoch = 0
    if epoch < 1:
        raise ValueError(
            f"{KILL_AFTER_EPOCH} must be a positive integer. "
            f"Received: {KILL_AFTER_EPOCH}={text!r}"
        )
    return [KillAfterEpoch(epoch)]
