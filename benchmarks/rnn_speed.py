"""Side-by-side speed: GatedFeedbackRNN vs Keras' stacked built-in RNNs.

One process, one run: every model is built, warmed up, then timed
round-robin (one step of each model per round, so drift in the machine's
speed hits every model alike); the median over rounds is reported with its
ratio to Keras' stacked built-in layer of the same unit type and sizes.

The task is a character-level language model train step, as in the GF-RNN
paper: Embedding -> RNN stack -> Dense(vocab), sparse cross-entropy.

    python benchmarks/rnn_speed.py              # B=32, T=100, 3x256
    python benchmarks/rnn_speed.py --quick      # tiny sizes, for CI
    python benchmarks/rnn_speed.py --json out.json
"""

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_gfrnn import GatedFeedbackCell  # noqa: E402
from keras_gfrnn import GatedFeedbackRNN  # noqa: E402

BUILTIN = {
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
    "tanh": keras.layers.SimpleRNN,
}


def builtin_stack(unit_type, units, layers):
    return [
        BUILTIN[unit_type](units, return_sequences=True) for _ in range(layers)
    ]


def cases(units, layers, unit_types):
    """(name, baseline name, list of recurrent layers) per model."""
    out = []
    for unit_type in unit_types:
        base = f"keras {BUILTIN[unit_type].__name__} x{layers}"
        out.append(
            (base, base, lambda u=unit_type: builtin_stack(u, units, layers))
        )
        for feedback in (True, False):
            name = f"GF-{unit_type} {'feedback' if feedback else 'stacked'}"
            out.append(
                (
                    name,
                    base,
                    lambda u=unit_type, f=feedback: [
                        GatedFeedbackRNN(
                            units,
                            num_layers=layers,
                            unit_type=u,
                            feedback=f,
                            return_sequences=True,
                        )
                    ],
                )
            )
        if unit_type == "lstm":
            out.append(
                (
                    "GF-lstm cell in keras.layers.RNN (naive)",
                    base,
                    lambda: [
                        keras.layers.RNN(
                            GatedFeedbackCell(
                                units, num_layers=layers, unit_type="lstm"
                            ),
                            return_sequences=True,
                        )
                    ],
                )
            )
    return out


def char_lm(rnn_layers, vocab, steps, embed):
    model = keras.Sequential(
        [
            keras.Input((steps,), dtype="int32"),
            keras.layers.Embedding(vocab, embed),
        ]
        + rnn_layers
        + [keras.layers.Dense(vocab)]
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def measure(args):
    rng = np.random.default_rng(0)
    x = rng.integers(0, args.vocab, size=(args.batch, args.steps))
    y = rng.integers(0, args.vocab, size=(args.batch, args.steps))
    models = []
    for name, base, make in cases(args.units, args.layers, args.unit_types):
        keras.utils.set_random_seed(0)
        model = char_lm(make(), args.vocab, args.steps, args.embed)
        for _ in range(args.warmup):
            model.train_on_batch(x, y)
            model.predict_on_batch(x)
        models.append((name, base, model, [], []))
    for _ in range(args.repeats):
        for _, _, model, train, infer in models:
            start = time.perf_counter()
            model.train_on_batch(x, y)
            train.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict_on_batch(x)
            infer.append(time.perf_counter() - start)
    medians = {
        name: (statistics.median(t) * 1e3, statistics.median(i) * 1e3)
        for name, _, _, t, i in models
    }
    rows = []
    for name, base, model, _, _ in models:
        train, infer = medians[name]
        rows.append(
            {
                "model": name,
                "params": int(model.count_params()),
                "train_ms": train,
                "infer_ms": infer,
                "train_ratio": train / medians[base][0],
                "infer_ratio": infer / medians[base][1],
                "baseline": base,
            }
        )
    return rows


def markdown(rows, args):
    lines = [
        f"char-LM step, B={args.batch}, T={args.steps}, "
        f"{args.layers}x{args.units}, vocab {args.vocab}, embedding "
        f"{args.embed}; median of {args.repeats} rounds; "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, keras {keras.__version__} "
        f"({keras.backend.backend()})",
        "",
        "| model | params | train ms | infer ms | train x | infer x |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['train_ms']:.1f} | "
            f"{r['infer_ms']:.1f} | {r['train_ratio']:.2f} | "
            f"{r['infer_ratio']:.2f} |"
        )
    lines.append("")
    lines.append(
        "x: time relative to the keras built-in stack of the same "
        "unit type and sizes (lower is faster)."
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=205)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--unit-types", nargs="+", default=["lstm", "gru", "tanh"]
    )
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, 3 rounds: checks the harness runs",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.units = 4, 8, 16
        args.repeats, args.warmup = 3, 3
    rows = measure(args)
    print(markdown(rows, args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
