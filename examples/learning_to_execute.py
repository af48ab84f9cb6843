"""Learning to Execute: predict what a short Python program prints.

The Python program evaluation task of Zaremba & Sutskever (2014), as used
in the GF-RNN paper (section 4.2): a character-level encoder-decoder reads
the program's source and writes its output. Programs are generated with a
target `length` (digits of the numbers) and `nesting` (operations combined):
addition, subtraction, multiplication by a small number, variable
assignment, `for` loops, `if`-`else` with comparisons; Python itself runs
each one to get the target. Training mixes every (length, nesting) up to
the maxima; accuracy (the whole output sequence right, each character
predicted given the true previous ones, as in Zaremba & Sutskever) is
printed per (length, nesting) cell as a grid.

    python examples/learning_to_execute.py --model gf --max-length 2 \\
        --max-nesting 2 --steps 3000
    python examples/learning_to_execute.py --model stacked ...
    python examples/learning_to_execute.py --quick   # tiny, for CI

Example program (length 4, nesting 3) and its target:

    c=6322
    for x in range(4):c-=1829
    print((c*5 if 8114<7203 else 4150))

    4150
"""

import contextlib
import io
import time

import _common
import keras
import numpy as np

from keras_gfrnn import GatedFeedbackRNN
from keras_gfrnn.gated_feedback_rnn import KERAS_LAYERS

OPERATIONS = ("add", "sub", "mul", "assign", "if", "for")
ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz+-*=<>():. \n"
PAD, START, END = 0, 1, 2
CHAR_ID = {c: i + 3 for i, c in enumerate(ALPHABET)}
VOCAB = len(ALPHABET) + 3
VARIABLES = "abcdefghijklmnopqrstuvwyz"  # x is the loop variable


# ---------------------------------------------------------------- programs
class ProgramGenerator:
    """Random programs of a given (length, nesting); see `generate`."""

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)

    def number(self, length):
        """A non-negative integer of exactly `length` digits."""
        low = 0 if length == 1 else 10 ** (length - 1)
        return int(self.rng.integers(low, 10**length))

    def generate(self, length, nesting):
        """(source, output): `nesting` operations around a number of
        `length` digits; the last line prints the value."""
        if nesting > len(VARIABLES):
            raise ValueError(
                f"A program nests at most {len(VARIABLES)} operations (one "
                f"variable name each). Received: nesting={nesting}"
            )
        names = list(VARIABLES)
        self.rng.shuffle(names)
        statements, expression = self._expression(length, nesting, names)
        source = "\n".join(statements + [f"print({expression})"])
        return source, run_program(source)

    def _expression(self, length, depth, names):
        if depth == 0:
            return [], str(self.number(length))
        statements, inner = self._expression(length, depth - 1, names)
        op = OPERATIONS[int(self.rng.integers(len(OPERATIONS)))]
        n = self.number(length)
        if op == "add":
            return statements, f"({inner}+{n})"
        if op == "sub":
            first, second = (
                (inner, n) if self.rng.random() < 0.5 else (n, inner)
            )
            return statements, f"({first}-{second})"
        if op == "mul":
            return statements, f"({inner}*{int(self.rng.integers(1, 10))})"
        name = names.pop()
        if op == "assign":
            return statements + [f"{name}={inner}"], name
        if op == "if":
            a, b = self.number(length), self.number(length)
            compare = "<" if self.rng.random() < 0.5 else ">"
            branches = [inner, str(n)]
            if self.rng.random() < 0.5:
                branches.reverse()
            return statements, (
                f"({branches[0]} if {a}{compare}{b} else {branches[1]})"
            )
        # for: a loop that adds or subtracts a number k times.
        k = int(self.rng.integers(1, 4 * length + 1))
        sign = "+" if self.rng.random() < 0.5 else "-"
        loop = f"for x in range({k}):{name}{sign}={n}"
        return statements + [f"{name}={inner}", loop], name


def run_program(source):
    """What Python prints when it runs `source` (without the newline)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(source, {})  # noqa: S102 - our own generated programs
    return out.getvalue().rstrip("\n")


def encode(text):
    return [CHAR_ID[c] for c in text]


def decode(ids):
    chars = {v: k for k, v in CHAR_ID.items()}
    return "".join(chars.get(int(i), "") for i in ids if int(i) > END)


def make_batch(pairs):
    """Encoder inputs, decoder inputs (START + target) and decoder targets
    (target + END), zero-padded."""
    sources = [encode(s) for s, _ in pairs]
    targets = [encode(t) for _, t in pairs]
    # Widths rounded up to buckets: few distinct shapes, few retracings.
    enc = np.zeros((len(pairs), _bucket(max(map(len, sources)), 32)), "int32")
    width = _bucket(max(map(len, targets)) + 1, 8)
    dec_in = np.zeros((len(pairs), width), "int32")
    dec_out = np.zeros((len(pairs), width), "int32")
    for i, (s, t) in enumerate(zip(sources, targets)):
        enc[i, : len(s)] = s
        dec_in[i, : len(t) + 1] = [START] + t
        dec_out[i, : len(t) + 1] = t + [END]
    return enc, dec_in, dec_out


def _bucket(n, size):
    return -(-n // size) * size


def dataset(generator, count, max_length, max_nesting):
    """`count` programs, (length, nesting) uniform over the grid."""
    pairs = []
    for _ in range(count):
        length = int(generator.rng.integers(1, max_length + 1))
        nesting = int(generator.rng.integers(1, max_nesting + 1))
        pairs.append(generator.generate(length, nesting))
    return pairs


# ------------------------------------------------------------------- models
def build_model(args):
    """Encoder-decoder; the decoder starts from the encoder's final states
    (every layer's), and is trained with teacher forcing."""
    source = keras.Input((None,), dtype="int32", name="program")
    previous = keras.Input((None,), dtype="int32", name="previous_output")
    x = keras.layers.Embedding(VOCAB, args.embed, mask_zero=True)(source)
    y = keras.layers.Embedding(VOCAB, args.embed, mask_zero=True)(previous)
    if args.model == "gf":
        encoder = GatedFeedbackRNN(
            args.units,
            num_layers=args.layers,
            unit_type=args.unit_type,
            gate_inputs=args.gate_inputs,
            return_state=True,
            name="encoder",
        )
        states = encoder(x)[1:]
        y = GatedFeedbackRNN(
            args.units,
            num_layers=args.layers,
            unit_type=args.unit_type,
            gate_inputs=args.gate_inputs,
            return_sequences=True,
            name="decoder",
        )(y, initial_state=states)
    else:
        rnn = KERAS_LAYERS[args.unit_type]
        states = []
        for i in range(args.layers):
            out = rnn(
                args.units,
                return_sequences=True,
                return_state=True,
                name=f"encoder_{i + 1}",
            )(x)
            x, states = out[0], states + [out[1:]]
        for i in range(args.layers):
            y = rnn(args.units, return_sequences=True, name=f"decoder_{i + 1}")(
                y, initial_state=states[i]
            )
    logits = keras.layers.Dense(VOCAB, name="next_char")(y)
    model = keras.Model([source, previous], logits)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=PAD
        ),
    )
    return model


def exact_match(model, pairs, batch_size=256):
    """Fraction of programs whose whole output (and END) is predicted
    right, each character given the true previous ones."""
    enc, dec_in, dec_out = make_batch(pairs)
    logits = model.predict([enc, dec_in], batch_size=batch_size, verbose=0)
    predicted = np.argmax(logits, axis=-1)
    real = dec_out != PAD
    return float(np.mean(np.all((predicted == dec_out) | ~real, axis=1)))


def accuracy_grid(model, generator, args):
    grid = {}
    for length in range(1, args.max_length + 1):
        for nesting in range(1, args.max_nesting + 1):
            pairs = [
                generator.generate(length, nesting)
                for _ in range(args.test_per_cell)
            ]
            grid[(length, nesting)] = exact_match(model, pairs)
    return grid


def format_grid(grid, args):
    lines = [
        "| length \\ nesting | "
        + " | ".join(str(n) for n in range(1, args.max_nesting + 1))
        + " |",
        "|---|" + "---:|" * args.max_nesting,
    ]
    for length in range(1, args.max_length + 1):
        cells = [
            f"{100 * grid[(length, n)]:.1f}%"
            for n in range(1, args.max_nesting + 1)
        ]
        lines.append(f"| {length} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse(argv=None):
    parser = _common.parser(__doc__)
    positive = _common.positive_int
    parser.add_argument(
        "--model",
        choices=["gf", "stacked"],
        default="gf",
        help="encoder and decoder: GatedFeedbackRNN or stacked Keras layers",
    )
    _common.add_unit_flags(parser, gate_inputs=True)
    parser.add_argument(
        "--units",
        type=positive,
        default=100,
        help="units per layer",
    )
    parser.add_argument(
        "--layers",
        type=_common.layer_count,
        default=3,
        help="recurrent layers of the encoder and of the decoder",
    )
    parser.add_argument(
        "--embed",
        type=positive,
        default=32,
        help="character embedding size",
    )
    parser.add_argument(
        "--max-length",
        type=positive,
        default=2,
        help="largest number of digits of the programs' numbers",
    )
    parser.add_argument(
        "--max-nesting",
        # Each operation may take a variable name of its own.
        type=_common._checked(
            int,
            lambda v: 1 <= v <= len(VARIABLES),
            f"an integer in [1, {len(VARIABLES)}] (one variable name per "
            "operation)",
            "nesting",
        ),
        default=2,
        help="largest number of operations combined in a program",
    )
    parser.add_argument(
        "--train-programs",
        type=positive,
        default=50_000,
        help="training programs, generated once",
    )
    parser.add_argument(
        "--valid-programs",
        type=positive,
        default=1000,
        help="validation programs, scored at each progress line",
    )
    parser.add_argument(
        "--test-per-cell",
        type=positive,
        default=500,
        help="test programs per (length, nesting) cell of the grid",
    )
    parser.add_argument(
        "--steps",
        type=positive,
        default=3000,
        help="training steps (batches)",
    )
    _common.add_common_flags(
        parser,
        batch_size=64,
        learning_rate=2e-3,
        quick_help="a tiny model, 4 steps: CI",
    )
    quick = {
        "units": 16,
        "layers": 2,
        "embed": 8,
        "train_programs": 64,
        "test_per_cell": 4,
        "valid_programs": 16,
        "steps": 4,
        "batch_size": 16,
    }
    return _common.parse_args(parser, argv, quick=quick)


def main(argv=None):
    args = parse(argv)
    keras.utils.set_random_seed(args.seed)
    train_gen = ProgramGenerator(args.seed)
    test_gen = ProgramGenerator(args.seed + 10_000)
    source, output = train_gen.generate(args.max_length, args.max_nesting)
    print(f"example program:\n{source}\n-> {output}\n")
    pairs = dataset(
        train_gen, args.train_programs, args.max_length, args.max_nesting
    )
    valid = dataset(
        test_gen, args.valid_programs, args.max_length, args.max_nesting
    )
    model = build_model(args)
    print(
        f"{args.model} {args.unit_type} {args.layers}x{args.units}: "
        f"{model.count_params():,} parameters",
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    log_every = max(1, args.steps // 10)
    losses = []
    for step in range(1, args.steps + 1):
        index = rng.integers(0, len(pairs), args.batch_size)
        enc, dec_in, dec_out = make_batch([pairs[i] for i in index])
        losses.append(float(model.train_on_batch([enc, dec_in], dec_out)))
        if step % log_every == 0 or step == args.steps:
            print(
                f"step {step}: loss {np.mean(losses[-log_every:]):.4f}, "
                f"validation exact match {exact_match(model, valid):.3f}, "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
    grid = accuracy_grid(model, test_gen, args)
    print(
        f"\nexact-match accuracy, {args.test_per_cell} test programs per "
        f"cell ({args.model} {args.unit_type} {args.layers}x{args.units}, "
        f"{args.steps} steps):\n"
    )
    print(format_grid(grid, args))
    return grid


if __name__ == "__main__":
    main()
