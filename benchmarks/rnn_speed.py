"""Side-by-side speed of the package's layers and Keras' built-in RNNs.

One process, one run: every model is built, warmed up, then timed
round-robin (one step of each model per round, so drift in the machine's
speed hits every model alike); the median over rounds is reported with its
ratio to the Keras built-in baseline of its table.

- `gf` table: a character-level language model train step, as in the GF-RNN
  paper (Embedding -> RNN stack -> Dense(vocab)); GatedFeedbackRNN beside
  Keras' stacked LSTM / GRU / SimpleRNN of the same sizes.
- `clockwork` table: ClockworkRNN(512, 8 modules, periods 1..128) beside
  SimpleRNN(512) and LSTM(512), sequence regression, T=256, B=32.

    python benchmarks/rnn_speed.py              # both tables
    python benchmarks/rnn_speed.py --suite clockwork
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

from keras_gfrnn import ClockworkCell  # noqa: E402
from keras_gfrnn import ClockworkRNN  # noqa: E402
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


def regression(rnn, steps, features):
    model = keras.Sequential(
        [keras.Input((steps, features)), rnn, keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


def clockwork_cases(units, modules):
    base = f"keras SimpleRNN({units})"
    return [
        (
            base,
            base,
            lambda: keras.layers.SimpleRNN(units, return_sequences=True),
        ),
        (
            f"keras LSTM({units})",
            base,
            lambda: keras.layers.LSTM(units, return_sequences=True),
        ),
        (
            f"ClockworkRNN({units}, {modules} modules)",
            base,
            lambda: ClockworkRNN(
                units, num_modules=modules, return_sequences=True
            ),
        ),
        (
            "ClockworkCell in keras.layers.RNN (reference)",
            base,
            lambda: keras.layers.RNN(
                ClockworkCell(units, num_modules=modules), return_sequences=True
            ),
        ),
    ]


def time_models(named_models, x, y, args):
    """Round-robin timing; rows with medians and ratios to the baselines."""
    models = []
    for name, base, build in named_models:
        keras.utils.set_random_seed(0)
        model = build()
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


def measure_gf(args):
    rng = np.random.default_rng(0)
    x = rng.integers(0, args.vocab, size=(args.batch, args.steps))
    y = rng.integers(0, args.vocab, size=(args.batch, args.steps))
    named = [
        (
            name,
            base,
            lambda make=make: char_lm(
                make(), args.vocab, args.steps, args.embed
            ),
        )
        for name, base, make in cases(args.units, args.layers, args.unit_types)
    ]
    return time_models(named, x, y, args)


def measure_clockwork(args):
    rng = np.random.default_rng(0)
    shape = (args.cw_batch, args.cw_steps)
    x = rng.normal(size=shape + (args.cw_features,)).astype("float32")
    y = rng.normal(size=shape + (1,)).astype("float32")
    named = [
        (
            name,
            base,
            lambda make=make: regression(
                make(), args.cw_steps, args.cw_features
            ),
        )
        for name, base, make in clockwork_cases(args.cw_units, args.cw_modules)
    ]
    return time_models(named, x, y, args)


def markdown(rows, title, args):
    lines = [
        f"{title}; median of {args.repeats} rounds; "
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
    baselines = ", ".join(dict.fromkeys(r["baseline"] for r in rows))
    lines.append(
        f"x: time relative to the Keras baseline of the row's unit type "
        f"({baselines}); lower is faster."
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
    parser.add_argument(
        "--suite", choices=["all", "gf", "clockwork"], default="all"
    )
    parser.add_argument("--cw-units", type=int, default=512)
    parser.add_argument("--cw-modules", type=int, default=8)
    parser.add_argument("--cw-steps", type=int, default=256)
    parser.add_argument("--cw-batch", type=int, default=32)
    parser.add_argument("--cw-features", type=int, default=16)
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, 3 rounds: checks the harness runs",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.units = 4, 8, 16
        args.cw_batch, args.cw_steps, args.cw_units = 4, 20, 16
        args.cw_modules = 4
        args.repeats, args.warmup = 3, 3
    results = {}
    if args.suite in ("all", "gf"):
        rows = measure_gf(args)
        results["gf"] = rows
        print(
            markdown(
                rows,
                (
                    f"GF: char-LM step, B={args.batch}, T={args.steps}, "
                    f"{args.layers}x{args.units}, vocab {args.vocab}, "
                    f"embedding {args.embed}"
                ),
                args,
            )
        )
        print()
    if args.suite in ("all", "clockwork"):
        rows = measure_clockwork(args)
        results["clockwork"] = rows
        print(
            markdown(
                rows,
                (
                    f"Clockwork: sequence regression step, B={args.cw_batch}, "
                    f"T={args.cw_steps}, {args.cw_features} input features, "
                    f"{args.cw_units} units, {args.cw_modules} modules"
                    f" (periods 1..{2 ** (args.cw_modules - 1)})"
                ),
                args,
            )
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
    return results


if __name__ == "__main__":
    main()
