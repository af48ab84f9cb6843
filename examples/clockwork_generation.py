"""Sequence generation with a Clockwork RNN (Koutnik et al., 2014, sec. 4.1).

A network that receives only a constant input learns to output one target
waveform of 320 steps from its own dynamics. SimpleRNN, LSTM and
ClockworkRNN with about the same number of parameters are trained on the
same target; the normalised mean squared error (MSE / variance of the
target) of each is printed as a table, and a PNG of target vs generated
curves is saved when matplotlib is installed (`pip install matplotlib`).

The target is generated, not recorded: a sum of four sines of different
periods and phases (no audio clip ships with the package), normalised to
[-1, 1].

    python examples/clockwork_generation.py
    python examples/clockwork_generation.py --quick     # CI
"""

import os
import sys
import time

import _common
import keras
import numpy as np

from keras_gfrnn import ClockworkRNN

STEPS = 320


def target_waveform(steps=STEPS, seed=0):
    """A sum of sines with periods from 8 to 160 steps, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    wave = sum(
        amplitude * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        for amplitude, period in ((1.0, 160), (0.6, 53), (0.4, 21), (0.25, 8))
    )
    return (wave / np.abs(wave).max()).astype("float32")


def build(kind, size):
    if kind == "SimpleRNN":
        rnn = keras.layers.SimpleRNN(size, return_sequences=True)
    elif kind == "LSTM":
        rnn = keras.layers.LSTM(size, return_sequences=True)
    else:
        rnn = ClockworkRNN(size, num_modules=5, return_sequences=True)
    model = keras.Sequential(
        [keras.Input((STEPS, 1)), rnn, keras.layers.Dense(1)],
        name=kind.lower(),
    )
    return model


# About 1,000 parameters each, as the paper compares its networks at about
# equal counts (ClockworkRNN's: only the blocks of W_H that the modules
# read, d n + n + m^2 g (g + 1) / 2). With the 1-unit Dense output:
PARAMETERS = {"SimpleRNN": 991, "LSTM": 1036, "ClockworkRNN": 1081}
SIZES = {"SimpleRNN": 30, "LSTM": 15, "ClockworkRNN": 40}


def train(kind, target, steps, learning_rate):
    model = build(kind, SIZES[kind])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    x = np.ones((1, STEPS, 1), dtype="float32")  # constant input
    y = target[None, :, None]
    start = time.perf_counter()
    model.fit(x, y, epochs=steps, verbose=0)
    seconds = time.perf_counter() - start
    generated = model.predict(x, verbose=0)[0, :, 0]
    nmse = float(np.mean((generated - target) ** 2) / np.var(target))
    return model, generated, nmse, seconds


def plot(target, curves, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    fig, axes = plt.subplots(
        len(curves), 1, figsize=(9, 2.2 * len(curves)), sharex=True
    )
    for ax, (kind, (generated, nmse)) in zip(
        np.atleast_1d(axes), curves.items()
    ):
        ax.plot(target, color="black", lw=1.5, label="target")
        ax.plot(generated, color="tab:red", lw=1.0, label="generated")
        ax.set_title(f"{kind}: NMSE {nmse:.4f}", fontsize=10)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("time step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"plot saved to {path}")
    return path


def parse(argv=None):
    parser = _common.parser(__doc__)
    parser.add_argument(
        "--steps",
        type=_common.positive_int,
        default=1500,
        help="training steps (full-batch: one sequence)",
    )
    _common.add_common_flags(
        parser,
        learning_rate=3e-3,
        quick_help="20 training steps: checks the script runs",
    )
    parser.add_argument(
        "--plot",
        default=os.path.join("artifacts", "clockwork.png"),
        help="PNG of the target and generated curves, with matplotlib "
        "('': none)",
    )
    return _common.parse_args(parser, argv, quick={"steps": 20})


def main(argv=None):
    args = parse(argv)
    target = target_waveform()
    curves = {}
    print("| model | parameters | NMSE | training s |")
    print("|---|---:|---:|---:|")
    for kind in ("SimpleRNN", "LSTM", "ClockworkRNN"):
        keras.utils.set_random_seed(args.seed)
        model, generated, nmse, seconds = train(
            kind, target, args.steps, args.learning_rate
        )
        curves[kind] = (generated, nmse)
        print(
            f"| {kind}({SIZES[kind]}) | {model.count_params():,} | "
            f"{nmse:.4f} | {seconds:.0f} |",
            flush=True,
        )
    if args.plot:
        os.makedirs(os.path.dirname(args.plot) or ".", exist_ok=True)
        plot(target, curves, args.plot)
    return curves


if __name__ == "__main__":
    main()
    sys.exit(0)
