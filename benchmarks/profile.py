"""Where a char-LM train step spends its time, on TensorFlow (CPU).

    TF_ENABLE_ONEDNN_OPTS=0 python -m benchmarks.profile
    TF_ENABLE_ONEDNN_OPTS=1 python -m benchmarks.profile --unit-type gru
    python -m benchmarks.profile --unit-type gru --units 256 \
        --base-units 256 --gate-inputs own_layer

Profiles GatedFeedbackRNN (the default all-layer gates; `--gate-inputs
own_layer` for the own-layer form) beside Keras' stacked layers at the
GF-RNN paper's equal parameter counts (the `gf_params` suite's pair,
`--units` / `--base-units` to change them), the
train step of `benchmarks/harness.py`'s char-LM (B=32, T=100). For each
model it prints:

- the train step's median time (the two models alternate, `--rounds`);
- the op counts of every `while` body of the traced step (forward and
  backward loops: ops per time step);
- from a `tf.profiler` trace of `--profiled-steps` train steps: kernel
  time per op type, per class (matmul, elementwise, concat/split, loop
  bookkeeping), the executor's time around the kernels, and the costliest
  matmuls by op name (FWD / GRAD), per train step.

TensorFlow only (the trace is TensorFlow's). Times are CPU time summed
over the threads that ran kernels, so they exceed the step's wall time on
a multi-core machine. Run counts from the trace are lower bounds: the
tracer does not record every run of the cheapest ops (the tiny matmuls of
GatedFeedbackRNN's global gates were recorded 70-100 times in 100 time
steps); the `while` bodies' op counts are exact. `--logdir` keeps the
traces (for TensorBoard's profile plugin / xprof); by default they go to
a temporary folder.
"""

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.harness import builtin_stack  # noqa: E402
from benchmarks.harness import char_lm  # noqa: E402
from benchmarks.harness import gf_layer  # noqa: E402
from benchmarks.suites import PAPER_SIZES  # noqa: E402

ELEMENTWISE = {
    "Add", "AddN", "AddV2", "BiasAdd", "BiasAddGrad", "Fill", "Mul", "Neg",
    "RealDiv", "Select", "SelectV2", "Sigmoid", "SigmoidGrad", "Sqrt",
    "Square", "Sub", "Sum", "Tanh", "TanhGrad", "ZerosLike",
}  # fmt: skip
RESHAPING = {
    "ConcatV2", "Pack", "Reshape", "Slice", "Split", "SplitV",
    "StridedSlice", "StridedSliceGrad", "Transpose", "Unpack",
}  # fmt: skip
BOOKKEEPING = {
    "Arg", "Cast", "Const", "Identity", "IdentityN", "NoOp",
    "ReadVariableOp", "Retval", "Shape",
}  # fmt: skip
CONTAINERS = {
    "While", "StatelessWhile", "PartitionedCall", "StatefulPartitionedCall",
}  # fmt: skip


def op_class(op_type):
    """The class of a TensorFlow op type in the printed breakdown."""
    name = op_type.lstrip("_").replace("Mkl", "")
    if "MatMul" in name:
        return "matmul"
    if name in ELEMENTWISE or name.startswith("FusedBinary"):
        return "elementwise"
    if name in RESHAPING:
        return "concat/split/slice"
    if name.startswith("TensorList") or name in BOOKKEEPING:
        return "loop bookkeeping"
    if name in CONTAINERS:
        return None  # holds other ops: its time is theirs
    return "other (embedding, loss, optimizer)"


def positive_int(text):
    """argparse type: an integer >= 1 (argparse names the flag)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer. Received: {text!r}"
        )
    return value


# Sizes and counts: (flag, default, help), each a positive integer.
COUNTS = (
    ("--units", None, "GF units per layer (default: the paper's size)"),
    ("--base-units", None, "Keras' units per layer (default: the paper's)"),
    ("--layers", 3, None),
    ("--batch", 32, None),
    ("--steps", 100, "sequence length T"),
    ("--vocab", 205, None),
    ("--embed", 64, None),
    ("--rounds", 9, "timed train steps per model (alternating)"),
    ("--profiled-steps", 5, None),
    ("--top", 12, "op types and matmuls listed per model"),
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--unit-type", choices=("lstm", "gru", "tanh"), default="lstm"
    )
    p.add_argument(
        "--gate-inputs",
        choices=("all_layers", "own_layer"),
        default="all_layers",
    )
    for flag, default, help_text in COUNTS:
        p.add_argument(flag, type=positive_int, default=default, help=help_text)
    p.add_argument("--logdir", default=None)
    return p.parse_args(argv)


def train_step(model):
    import tensorflow as tf

    variables = model.trainable_variables
    model.optimizer.build(variables)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = model.loss(y, model(x, training=True))
        model.optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return step


def while_bodies(step, x, y):
    """[(body name, Counter of op types)] of the traced step's while loops."""
    graph = step.get_concrete_function(x, y).graph.as_graph_def()
    library = {f.signature.name: f for f in graph.library.function}
    nodes = list(graph.node)
    for function in library.values():
        nodes.extend(function.node_def)
    bodies = []
    for node in nodes:
        if node.op in ("While", "StatelessWhile"):
            body = library[node.attr["body"].func.name]
            ops = collections.Counter(n.op for n in body.node_def)
            bodies.append((body.signature.name, ops))
    return bodies


def trace(step, x, y, steps, logdir):
    import tensorflow as tf

    options = tf.profiler.experimental.ProfilerOptions(
        host_tracer_level=3, python_tracer_level=0, device_tracer_level=0
    )
    tf.profiler.experimental.start(logdir, options=options)
    for _ in range(steps):
        step(x, y).numpy()
    tf.profiler.experimental.stop()
    files = glob.glob(os.path.join(logdir, "plugins/profile/*/*.xplane.pb"))
    return max(files, key=os.path.getmtime)


def compute_events(xplane_file):
    """(event name, duration in ms) of every event on TensorFlow's compute
    threads in a trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(xplane_file, "rb") as f:
        space.ParseFromString(f.read())
    for plane in space.planes:
        lines = [ln for ln in plane.lines if ln.name.startswith("tf_Compute")]
        for line in lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                yield name, event.duration_ps / 1e9


def kernel_times(xplane_file, steps):
    """Per train step: {op type: [ms, runs]}, {matmul name: [ms, runs]},
    and the executor's total time (ms) around the kernels."""
    by_type = collections.defaultdict(lambda: [0.0, 0.0])
    matmuls = collections.defaultdict(lambda: [0.0, 0.0])
    executor = 0.0
    for name, ms in compute_events(xplane_file):
        if name == "ExecutorState::Process":
            executor += ms / steps
        if "::" in name or ":" not in name:
            continue  # not an op kernel ("op name:op type")
        op_name, op_type = name.rsplit(":", 1)
        tables = [(by_type, op_type)]
        if "MatMul" in op_type:
            kind = "GRAD" if "grad" in op_name.lower() else "FWD "
            short = "/".join(op_name.split("/")[-2:])
            tables.append((matmuls, f"{kind} {short}"))
        for table, key in tables:
            table[key][0] += ms / steps
            table[key][1] += 1 / steps
    return by_type, matmuls, executor


def report(label, bodies, by_type, matmuls, executor, top):
    print(f"\n## {label}")
    for name, ops in bodies:
        counts = ", ".join(f"{k} {v}" for k, v in ops.most_common(8))
        print(f"while body {name}: {sum(ops.values())} ops ({counts}, ...)")
    kernels = {t: v for t, v in by_type.items() if op_class(t)}
    total = sum(ms for ms, _ in kernels.values())
    count = sum(n for _, n in kernels.values())
    print(
        f"kernels {total:.1f} ms per train step in {count:.0f} op runs; "
        f"executor around them {executor - total:.1f} ms"
    )
    classes = collections.Counter()
    for op_type, (ms, _) in kernels.items():
        classes[op_class(op_type)] += ms
    for name, ms in classes.most_common():
        print(f"  {name:36s} {ms:8.1f} ms {100 * ms / total:5.1f}%")
    print("  op type                              ms   runs  us/run")
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]
    for op_type, (ms, n) in ranked:
        print(f"  {op_type:32s} {ms:8.1f} {n:6.0f} {1000 * ms / n:7.1f}")
    print("  matmul (per train step)              ms   runs  us/run")
    ranked = sorted(matmuls.items(), key=lambda kv: -kv[1][0])[:top]
    for name, (ms, n) in ranked:
        print(f"  {name[-36:]:36s} {ms:6.1f} {n:6.0f} {1000 * ms / n:7.1f}")


def main(argv=None):
    args = parse_args(argv)
    if keras.backend.backend() != "tensorflow":
        sys.exit("benchmarks.profile runs on the TensorFlow backend only")
    import tensorflow as tf

    base_units, gf_units = PAPER_SIZES[args.unit_type]
    gf_units = args.units or gf_units
    base_units = args.base_units or base_units
    n, t = args.layers, args.steps
    keras.utils.set_random_seed(0)
    labels = {
        "gf": f"GF-{args.unit_type} {n}x{gf_units} feedback "
        f"({args.gate_inputs} gates)",
        "keras": f"keras {args.unit_type} {n}x{base_units}",
    }
    models = {
        "gf": char_lm(
            [
                gf_layer(
                    args.unit_type, gf_units, n, gate_inputs=args.gate_inputs
                )
            ],
            args.vocab,
            t,
            args.embed,
        ),
        "keras": char_lm(
            builtin_stack(args.unit_type, base_units, n),
            args.vocab,
            t,
            args.embed,
        ),
    }
    data = np.random.default_rng(0).integers(0, args.vocab, (args.batch, t))
    x = y = tf.constant(data, dtype="int32")
    steps = {k: train_step(m) for k, m in models.items()}
    for _ in range(3):
        for step in steps.values():
            step(x, y).numpy()
    times = {k: [] for k in steps}
    for _ in range(args.rounds):
        for k, step in steps.items():
            start = time.perf_counter()
            step(x, y).numpy()
            times[k].append(time.perf_counter() - start)
    median = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    print(
        f"TensorFlow {tf.__version__}, TF_ENABLE_ONEDNN_OPTS="
        f"{os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'unset')}; train step "
        f"(median of {args.rounds}): {labels['gf']} {median['gf']:.1f} ms, "
        f"{labels['keras']} {median['keras']:.1f} ms, ratio "
        f"{median['gf'] / median['keras']:.2f}"
    )
    logdir = args.logdir or tempfile.mkdtemp(prefix="gfrnn_profile_")
    for k, step in steps.items():
        xplane = trace(step, x, y, args.profiled_steps, f"{logdir}/{k}")
        by_type, matmuls, executor = kernel_times(xplane, args.profiled_steps)
        report(
            labels[k],
            while_bodies(step, x, y),
            by_type,
            matmuls,
            executor,
            args.top,
        )
    print(f"\ntraces: {logdir}")


if __name__ == "__main__":
    main()
