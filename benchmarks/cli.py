"""Benchmarks of keras_gfrnn's layers beside Keras' built-ins, in one run.

    python -m benchmarks                       # every suite (about 15 min)
    python -m benchmarks --suite gf clockwork  # some suites
    python -m benchmarks --quick               # tiny sizes, for CI
    python -m benchmarks --markdown out.md --json out.json
    python -m benchmarks --backend all --onednn both   # see below

One process: a dense matmul is timed first (the arithmetic reference), then
each suite builds its models, warms them up (tracing, XLA compilation) and
times them round-robin (one train step and one inference step of every
model per round, so the machine's drift hits all alike); the median over
rounds is reported. Per model: train-step and inference time, training
examples/s, peak memory of a train step (TensorFlow's allocator), effective
GFLOP/s of the train step from the analytic matmul FLOPs of `flops.py`,
that figure as a percentage of the dense matmul, and the ratio to the
suite's baseline. Nothing here asserts a speed: the targets table reports.

Suites:
- `gf`: char-LM train step (Embedding -> RNN -> Dense(vocab)), B=32,
  T=100, 3x256: GatedFeedbackRNN tanh / GRU / LSTM with feedback (the
  default all-layer gates and `gate_inputs="own_layer"`; on TensorFlow
  also with the XLA-compiled step) and without, Keras' stacked built-ins
  (on a GPU also with `use_cudnn=False`), the naive GatedFeedbackCell in
  keras.layers.RNN.
- `gf_params`: the same at the GF-RNN paper's equal parameter counts
  (Table 1: stacked 3x191 / 3x228 / 3x390 vs GF 3x140 / 3x165 / 3x303).
- `clockwork`: sequence regression, T=256: ClockworkRNN(512, 8 modules)
  (XLA off and on), its cell step by step, SimpleRNN(512), LSTM(512).
- `renet`: 32x32x3 image classifier: ReNet2D (`--renet-cell` GRU or LSTM)
  beside the same sweeps written by hand with Bidirectional(GRU/LSTM), both
  also with `use_cudnn=False` on a GPU, and a Conv2D network of similar
  size.
- `length`: GF-LSTM train step vs sequence length (time per step of the
  sequence must stay flat: linear scaling).
- `layers`: GF-LSTM with and without feedback vs number of layers
  (feedback FLOPs grow with the square of the layers).
- `infer`: inference (Keras' compiled predict step) at batch 1, 32 and
  256 (`--infer-batches`): the char-LM with GatedFeedbackRNN at 3x256 and
  at the paper's sizes beside Keras' stacks, ClockworkRNN(512) beside
  SimpleRNN(512); aims: predict at the paper's sizes <= 1.2x Keras'
  stack, ClockworkRNN <= 0.6x SimpleRNN.
- `ops`: ops per time step, counted, not timed (benchmarks/opcount.py):
  the graph nodes of a train step's forward and backward loops and of
  predict on TensorFlow, the operators dispatched on torch (none on JAX),
  GatedFeedbackRNN at the paper's and equal sizes beside Keras' stacks,
  ClockworkRNN beside SimpleRNN; aims: no more than the baseline.

Any Keras backend runs it (`KERAS_BACKEND=jax|torch|tensorflow`); the
machine line names the CPU, the backend and the GPU it computed on. Rows
that only one backend can measure (the TensorFlow `jit_compile=True` XLA
steps) are kept on the others as skipped, with the reason.

Several backends side by side (`benchmarks/multi.py`): `--backend
tensorflow jax torch` (or `all`) runs the harness once per backend, each
in its own process with KERAS_BACKEND set, so every backend is compared
with its own built-in layers; `--onednn on|off|both` runs TensorFlow with
TF_ENABLE_ONEDNN_OPTS=1 and/or 0. The tables of every run, a summary of
our models' train steps (ratio to each backend's built-in baseline) and
the targets per setting are printed and written to --markdown / --json.
Without these options the harness measures the current process' backend.

Targets are data: a case carries the targets it measures
(`report.target`: name, aim, direction, metric and the baseline case it
is compared with). Those of issue 13, printed for every setting:
GF-LSTM / GF-GRU at the paper's equal parameters <= 1.15x Keras' stack;
at equal sizes 3x256 the own-layer gate form <= 1.25x, the all-layer
form's time ratio beside its FLOP ratio; ClockworkRNN <= 0.5x
SimpleRNN(512), <= 0.4x with jit_compile=True (TensorFlow); GF-LSTM's
effective GFLOP/s >= 0.9x Keras LSTM's. All of them with oneDNN on and
off, and on JAX and torch:

    python -m benchmarks --backend all --onednn both \\
        --suite gf gf_params clockwork infer --unit-types lstm gru

The code: benchmarks/harness.py measures (cases, models, timing),
benchmarks/suites.py holds the suites, this file the command line and
benchmarks/multi.py the runs of several settings.
"""

import argparse
import json
import time

import keras

from benchmarks import report
from benchmarks.harness import count_cases
from benchmarks.harness import dense_matmul_gflops
from benchmarks.harness import machine
from benchmarks.harness import table
from benchmarks.harness import time_cases
from benchmarks.suites import SUITES
from keras_gfrnn.gated_feedback_rnn import KERAS_LAYERS

# --quick: tiny sizes, 2 rounds.
QUICK = {
    "batch": 4,
    "steps": 8,
    "units": 16,
    "embed": 8,
    "cw_batch": 4,
    "cw_steps": 16,
    "cw_units": 16,
    "cw_modules": 4,
    "img_batch": 2,
    "img_size": 8,
    "renet_units": 8,
    "conv_width": 8,
    "scale_units": 8,
    "scale_steps": 8,
    "unit_types": ["lstm", "gru"],
    "lengths": [4, 8],
    "depths": [1, 2],
    "infer_batches": [1, 4],
    "repeats": 2,
    "warmup": 1,
}


def parse(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--suite", nargs="+", choices=tuple(SUITES), default=tuple(SUITES)
    )
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=report.BACKENDS + ("all",),
        help="measure each of these Keras backends in its own process, "
        "beside its own built-in layers, and print them side by side "
        "(default: only this process' backend, KERAS_BACKEND)",
    )
    parser.add_argument(
        "--onednn",
        choices=["on", "off", "both"],
        help="measure TensorFlow with TF_ENABLE_ONEDNN_OPTS=1 (on), =0 "
        "(off) or each (both), one process per setting",
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=205)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument(
        "--unit-types",
        nargs="+",
        choices=sorted(KERAS_LAYERS),
        help="GF unit types to measure (default: lstm gru tanh; --quick: "
        "lstm gru)",
    )
    parser.add_argument("--cw-units", type=int, default=512)
    parser.add_argument("--cw-modules", type=int, default=8)
    parser.add_argument("--cw-steps", type=int, default=256)
    parser.add_argument("--cw-batch", type=int, default=32)
    parser.add_argument("--cw-features", type=int, default=16)
    parser.add_argument("--img-batch", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--renet-units", type=int, default=64)
    parser.add_argument("--renet-cell", choices=["gru", "lstm"], default="gru")
    parser.add_argument("--conv-width", type=int, default=64)
    parser.add_argument("--scale-units", type=int, default=128)
    parser.add_argument("--scale-steps", type=int, default=50)
    parser.add_argument("--lengths", type=int, nargs="+")
    parser.add_argument("--depths", type=int, nargs="+")
    parser.add_argument(
        "--infer-batches",
        type=int,
        nargs="+",
        help="batch sizes of the infer suite (default: 1 32 256; --quick: 1 4)",
    )
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--markdown", help="write the tables to this file")
    parser.add_argument("--json", help="write every row to this file")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, 2 rounds: checks that the harness runs (options "
        "given with other values than their defaults are kept)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        # Tiny sizes, except where an option was given another value.
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    args.unit_types = args.unit_types or ["lstm", "gru", "tanh"]
    args.lengths = args.lengths or [25, 50, 100, 200]
    args.depths = args.depths or [1, 2, 3, 4, 5]
    args.infer_batches = args.infer_batches or [1, 32, 256]
    return args


def main(argv=None):
    args = parse(argv)
    if args.backend or args.onednn:
        from benchmarks import multi

        return multi.main(argv)
    dense = dense_matmul_gflops(args)
    sections = [
        f"Machine: {machine()}. Median of {args.repeats} rounds after "
        f"{args.warmup} warm-up steps.",
        "",
        f"Dense matmul {dense['shape']} in this run: "
        f"{dense['gflops']:.1f} GFLOP/s.",
    ]
    print("\n".join(sections), flush=True)
    results = {}
    cases = {name: SUITES[name].cases(args) for name in args.suite}
    # Every suite's cases without XLA first, then every suite's XLA cases
    # (harness.time_cases says why).
    later = [n for n in args.suite if any(c.xla for c in cases[n])]
    first = {}
    for name in args.suite:
        start = time.perf_counter()
        if SUITES[name].counts:
            rows = count_cases(cases[name])
            show(args, sections, results, dense, name, rows, start)
            continue
        rows = time_cases(cases[name], args, dense, xla=(False,))
        if name in later:
            first[name] = rows
            print(
                f"({name}: {time.perf_counter() - start:.0f} s; its XLA "
                "cases are timed after every suite)",
                flush=True,
            )
        else:
            show(args, sections, results, dense, name, rows, start)
    for name in later:
        start = time.perf_counter()
        rows = time_cases(cases[name], args, dense, xla=(True,))
        rows = [row or old for row, old in zip(rows, first[name])]
        show(args, sections, results, dense, name, rows, start)
    results = {name: results[name] for name in args.suite}
    goals = report.targets_table(report.evaluate_targets(results))
    if goals:
        sections += ["", "### Targets (this run)", "", goals]
        print("\n".join(sections[-4:]))
        write(args, sections, results, dense)
    return results


def show(args, sections, results, dense, name, rows, start):
    """Adds suite `name`'s rows to `results`, prints its table and writes
    the output files so far (a run cut short keeps what it measured)."""
    suite = SUITES[name]
    for row in rows:
        if "steps" in row and row.get("train_ms") is not None:
            row["ms_per_step"] = row["train_ms"] / row["steps"]
    results[name] = rows
    shown = table(rows, suite.extra, suite.columns)
    sections += ["", f"### {suite.title(args)}", "", shown]
    print("\n".join(sections[-4:]), flush=True)
    print(f"({name}: {time.perf_counter() - start:.0f} s)", flush=True)
    write(args, sections, results, dense)


def write(args, sections, results, dense):
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(sections) + "\n")
    if args.json:
        backend = keras.backend.backend()
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine(),
                    "cpu": report.cpu_model(),
                    "backend": backend,
                    "setting": report.setting(backend),
                    "args": vars(args),
                    "targets": report.evaluate_targets(results),
                    "dense": dense,
                    "results": results,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
