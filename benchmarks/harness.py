"""The measuring half of the benchmarks, for the current process' Keras
backend: the `Case` a suite is made of, the models the suites build, and
`time_cases`, which times a suite's cases round-robin and makes its rows
(ratios to each case's baseline and the targets it carries, measured).
The suites are in benchmarks/suites.py, the command line in
benchmarks/cli.py and the runs of several settings in benchmarks/multi.py.
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from benchmarks import flops  # noqa: E402
from benchmarks import report  # noqa: E402
from keras_gfrnn import GatedFeedbackRNN  # noqa: E402
from keras_gfrnn.gated_feedback_rnn import KERAS_LAYERS as BUILTIN  # noqa: E402

# Why a row is skipped on a backend other than the one it needs.
TF_ONLY = (
    "TensorFlow-only: jit_compile=True XLA-compiles the layer's step on "
    "the TensorFlow backend only (JAX compiles every train step anyway, "
    "torch has no XLA)"
)


class Case:
    """One model of a suite.

    Args:
        name: the row's name.
        build: a function of no arguments that returns the compiled model.
        forward_flops: the analytic matmul FLOPs of one forward pass over
            `data` (benchmarks/flops.py).
        data: `(x, y)`, the batch the case is timed on.
        baseline: the `Case` its times are divided by (`None`: itself).
        targets: the issue targets it measures (`report.target`); a
            target without a baseline of its own uses `baseline`.
        ours: whether it is one of our layers (a row of the
            several-backend summary).
        train: whether a train step is timed (else only inference).
        only, reason: the one backend it needs, and why.
        xla: whether the model is compiled by XLA (`jit_compile=True` on
            TensorFlow): timed after every other case (see `time_cases`).
        **extra: further columns of its row (`steps`, `layers`, `batch`).
    """

    def __init__(
        self,
        name,
        build,
        forward_flops,
        data,
        baseline=None,
        targets=(),
        ours=False,
        train=True,
        only=None,
        reason=None,
        xla=False,
        **extra,
    ):
        if baseline is not None and not isinstance(baseline, Case):
            raise TypeError(
                "Argument `baseline` must be a Case or None. "
                f"Received: baseline={baseline!r}"
            )
        self.name = name
        self.build = build
        self.forward_flops = forward_flops
        self.data = data
        self.baseline = self if baseline is None else baseline
        self.targets = list(targets)
        self.ours = ours
        self.train = train
        self.only = only
        self.reason = reason
        self.xla = xla
        self.extra = extra

    def __repr__(self):
        return f"Case({self.name!r})"


# ------------------------------------------------------------------ models
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


def classifier(layers, shape, classes=10):
    model = keras.Sequential(
        [keras.Input(shape)]
        + layers
        + [
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def builtin_stack(unit_type, units, layers, use_cudnn="auto"):
    kwargs = {} if unit_type == "tanh" else {"use_cudnn": use_cudnn}
    return [
        BUILTIN[unit_type](units, return_sequences=True, **kwargs)
        for _ in range(layers)
    ]


def gf_layer(
    unit_type,
    units,
    layers,
    feedback=True,
    jit_compile=False,
    gate_inputs="all_layers",
):
    return GatedFeedbackRNN(
        units,
        num_layers=layers,
        unit_type=unit_type,
        feedback=feedback,
        gate_inputs=gate_inputs,
        return_sequences=True,
        jit_compile=jit_compile,
    )


class HandWrittenReNet(keras.layers.Layer):
    """ReNet2D's sweeps written out with Bidirectional(GRU or LSTM) and
    reshapes."""

    def __init__(self, units, patch, cell="gru", use_cudnn="auto", **kwargs):
        super().__init__(**kwargs)
        self.units, self.patch = units, patch
        rnn = BUILTIN[cell]
        self.vertical = keras.layers.Bidirectional(
            rnn(units, return_sequences=True, use_cudnn=use_cudnn)
        )
        self.horizontal = keras.layers.Bidirectional(
            rnn(units, return_sequences=True, use_cudnn=use_cudnn)
        )

    def call(self, x):
        _, height, width, channels = x.shape
        p = self.patch
        rows, cols = height // p, width // p
        x = ops.reshape(x, (-1, rows, p, cols, p, channels))
        x = ops.transpose(x, (0, 3, 1, 2, 4, 5))  # (B, J, I, p, p, C)
        x = ops.reshape(x, (-1, rows, p * p * channels))
        v = self.vertical(x)  # (B*J, I, 2U)
        v = ops.reshape(v, (-1, cols, rows, 2 * self.units))
        v = ops.transpose(v, (0, 2, 1, 3))  # (B, I, J, 2U)
        v = ops.reshape(v, (-1, cols, 2 * self.units))
        h = self.horizontal(v)  # (B*I, J, 2U)
        return ops.reshape(h, (-1, rows, cols, 2 * self.units))


# ---------------------------------------------------------------- measuring
def gpu_present():
    """Whether the Keras backend computes on a GPU."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_logical_devices("GPU"))
    if backend == "jax":
        import jax

        return jax.default_backend() == "gpu"
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def dense_matmul_gflops(args, batch=20):
    """GFLOP/s of one dense matmul of the char-LM's gate shape:
    (B*T, H) @ (H, 4H), in this process: median over repeats of `batch`
    products queued back to back, then one element read back (which waits
    for a GPU to finish them all without timing a large copy)."""
    m, k, n = args.batch * args.steps, args.units, 4 * args.units
    rng = np.random.default_rng(0)
    a = ops.convert_to_tensor(rng.normal(size=(m, k)).astype("float32"))
    w = ops.convert_to_tensor(rng.normal(size=(k, n)).astype("float32"))

    def run():
        for _ in range(batch):
            out = ops.matmul(a, w)
        ops.convert_to_numpy(out[0, 0])

    run()
    times = []
    for _ in range(max(args.repeats, 5)):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) / batch)
    return {
        "shape": f"({m}x{k}) @ ({k}x{n})",
        "gflops": flops.dense(m, k, n) / statistics.median(times) / 1e9,
    }


def peak_memory(model, x, y):
    """Peak bytes allocated during one train step by TensorFlow (CPU or
    GPU) or by torch on a GPU; None where the backend cannot tell (JAX
    cannot reset its peak)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        device = "GPU:0" if gpu_present() else "CPU:0"
        try:
            tf.config.experimental.reset_memory_stats(device)
        except ValueError:
            # TensorFlow's default CPU allocator keeps no statistics unless
            # oneDNN's is used (its default on Intel CPUs, not on AMD) or
            # TF_CPU_ALLOCATOR_USE_BFC=true.
            return None
        before = tf.config.experimental.get_memory_info(device)["current"]
        model.train_on_batch(x, y)
        return tf.config.experimental.get_memory_info(device)["peak"] - before
    if backend == "torch" and gpu_present():
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        model.train_on_batch(x, y)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    return None


def skipped_row(case):
    return {
        "model": case.name,
        "skipped": case.reason or f"{case.only} only",
        "baseline": case.baseline.name,
        "ours": case.ours,
        **case.extra,
    }


def measured_row(case, model, times, memory, dense):
    """The row of a timed case: `times` are its median (train, infer)
    seconds (train None for an inference-only case)."""
    train, infer = times
    batch = len(case.data[0])
    if train is None:
        # Inference only: the GFLOP/s of the forward pass.
        gflops = case.forward_flops / infer / 1e9
        work = {"examples_per_s": batch / infer}
    else:
        gflops = 3 * case.forward_flops / train / 1e9
        work = {
            "examples_per_s": batch / train,
            "train_gflop": 3 * case.forward_flops / 1e9,
        }
    return {
        "model": case.name,
        "params": int(model.count_params()),
        "train_ms": None if train is None else train * 1e3,
        "infer_ms": infer * 1e3,
        **work,
        "peak_mib": None if memory is None else memory / 2**20,
        "gflops": gflops,
        "dense_pct": 100 * gflops / dense["gflops"],
        "baseline": case.baseline.name,
        "ours": case.ours,
        **case.extra,
    }


def ratio(row, base, key):
    """row[key] / base[key], or None where either was not measured."""
    if row.get(key) is None or base.get(key) is None:
        return None
    return row[key] / base[key]


def time_cases(cases, args, dense, xla=(False, True)):
    """The rows of `cases`, in order, each with its ratios to its
    baseline case and its targets measured. A case for another backend
    than this one is a row with only its name and why it was `skipped`.
    Every baseline a case or target names must be one of `cases`.

    Cases run in two phases, `xla`: first those not compiled by XLA, then
    those that are (`Case.xla`), each beside its baselines timed again in
    that phase. Once an XLA-compiled ClockworkRNN had run in a process,
    the other models' train steps there were slower for the rest of the
    process (ClockworkRNN without XLA: 45 -> 56 ms, 2-core AMD EPYC,
    oneDNN on; not undone by freeing the model; docs/performance.md), so
    no case is timed after an XLA case of its run. `xla=(False,)` or
    `(True,)` times one phase only (the rows of the other are `None`), so
    that a run of several suites can time every suite's first phase
    before any second one (benchmarks/cli.py)."""
    for case in cases:
        for goal in case.targets:
            if goal["baseline"] is not None and goal["baseline"] not in cases:
                raise ValueError(
                    f"Case {case.name!r}: target {goal['name']!r} compares "
                    f"with {goal['baseline']!r}, not a case of this suite"
                )
        if case.baseline not in cases:
            raise ValueError(
                f"Case {case.name!r}: its baseline {case.baseline!r} is "
                "not a case of this suite"
            )
    rows = {case: None for case in cases}
    for phase in xla:
        own = [case for case in cases if case.xla == phase]
        if not own:
            continue
        needed = set(own)
        for case in own:
            needed.add(case.baseline)
            needed.update(g["baseline"] for g in case.targets if g["baseline"])
        group = [case for case in cases if case in needed]
        measured = _time_group(group, args, dense)
        for case in own:
            rows[case] = _with_ratios(case, measured)
    return [rows[case] for case in cases]


def _time_group(cases, args, dense):
    """{case: row} of `cases` built, warmed up and timed round-robin in
    this process (a skipped row for another backend's case)."""
    backend = keras.backend.backend()
    runnable = [case for case in cases if case.only in (None, backend)]
    models = []
    for case in runnable:
        keras.utils.set_random_seed(0)
        models.append(case.build())
    # Warm up only once every model is built: setting the seed makes every
    # traced function retrace at its next call.
    timed = []
    for case, model in zip(runnable, models):
        x, y = case.data
        for _ in range(args.warmup):
            if case.train:
                model.train_on_batch(x, y)
            model.predict_on_batch(x)
        memory = peak_memory(model, x, y) if case.train else None
        timed.append((case, model, memory, [], []))
    for _ in range(args.repeats):
        for case, model, _, train, infer in timed:
            x, y = case.data
            if case.train:
                start = time.perf_counter()
                model.train_on_batch(x, y)
                train.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict_on_batch(x)
            infer.append(time.perf_counter() - start)
    rows = {case: skipped_row(case) for case in cases}
    for case, model, memory, train, infer in timed:
        times = (
            statistics.median(train) if train else None,
            statistics.median(infer),
        )
        rows[case] = measured_row(case, model, times, memory, dense)
    return rows


def _with_ratios(case, rows):
    """`rows[case]` with its ratios to its baseline and its targets
    measured, all against rows of the same phase."""
    row, base = dict(rows[case]), rows[case.baseline]
    if case.xla:
        row["xla"] = True
    if not row.get("skipped"):
        row["train_ratio"] = ratio(row, base, "train_ms")
        row["infer_ratio"] = ratio(row, base, "infer_ms")
    row["targets"] = [
        report.measure(
            goal,
            row,
            rows[goal["baseline"] or case.baseline]
            if goal["metric"] in report.RELATIVE
            else None,
        )
        for goal in case.targets
    ]
    return row


def count_cases(cases):
    """The rows of an op-count suite: each case's ops per time step
    (benchmarks/opcount.py) over `case.extra["steps"]` time steps, its
    ratios to its baseline's and its targets measured. Nothing is timed."""
    from benchmarks import opcount

    rows = {}
    for case in cases:
        keras.utils.set_random_seed(0)
        model = case.build()
        counts = opcount.count_row(model, case.data, case.extra["steps"])
        rows[case] = {
            "model": case.name,
            "params": int(model.count_params()),
            **{f"ops_{key}": value for key, value in counts.items()},
            "baseline": case.baseline.name,
            "ours": False,
            **case.extra,
        }
        del model
    out = []
    for case in cases:
        row, base = dict(rows[case]), rows[case.baseline]
        for key in report.OPS:
            row[key + "_x"] = ratio(row, base, key)
        row["targets"] = [
            report.measure(goal, row, rows[goal["baseline"] or case.baseline])
            for goal in case.targets
        ]
        out.append(row)
    return out


# ------------------------------------------------------------------- output
COLUMNS = (
    ("model", "model", "{}"),
    ("params", "params", "{:,}"),
    ("train ms", "train_ms", "{:.1f}"),
    ("infer ms", "infer_ms", "{:.1f}"),
    ("train ex/s", "examples_per_s", "{:,.0f}"),
    ("peak MiB", "peak_mib", "{:.0f}"),
    ("GFLOP/s", "gflops", "{:.1f}"),
    ("% dense", "dense_pct", "{:.0f}"),
    ("train x", "train_ratio", "{:.2f}"),
    ("infer x", "infer_ratio", "{:.2f}"),
)
# An inference-only suite: examples and GFLOP/s of the predict step.
INFER_COLUMNS = (
    ("model", "model", "{}"),
    ("params", "params", "{:,}"),
    ("infer ms", "infer_ms", "{:.2f}"),
    ("infer ex/s", "examples_per_s", "{:,.0f}"),
    ("GFLOP/s", "gflops", "{:.1f}"),
    ("% dense", "dense_pct", "{:.0f}"),
    ("infer x", "infer_ratio", "{:.2f}"),
)


# An op-count suite: ops per time step (benchmarks/opcount.py).
OPS_COLUMNS = (
    ("model", "model", "{}"),
    ("params", "params", "{:,}"),
    ("train fwd ops/step", "ops_train_fwd", "{:.1f}"),
    ("train bwd ops/step", "ops_train_bwd", "{:.1f}"),
    ("predict ops/step", "ops_predict", "{:.1f}"),
    ("fwd x", "ops_train_fwd_x", "{:.2f}"),
    ("bwd x", "ops_train_bwd_x", "{:.2f}"),
    ("predict x", "ops_predict_x", "{:.2f}"),
)


def table(rows, extra=(), columns=COLUMNS):
    columns = columns[:1] + tuple(extra) + columns[1:]
    lines = [
        "| " + " | ".join(c[0] for c in columns) + " |",
        "|---|" + "---:|" * (len(columns) - 1),
    ]
    for row in rows:
        cells = [
            "-" if row.get(key) is None else fmt.format(row[key])
            for _, key, fmt in columns
        ]
        if row.get("skipped"):
            reason = report.short_reason(row["skipped"])
            cells[0] += f" (skipped: {reason})"
        lines.append("| " + " | ".join(cells) + " |")
    baselines = ", ".join(dict.fromkeys(r["baseline"] for r in rows))
    lines.append("")
    if columns is OPS_COLUMNS:
        lines.append(
            f"x: ops per time step relative to {baselines}; lower is "
            "fewer (benchmarks/opcount.py says what is counted)."
        )
    else:
        lines.append(
            f"x: median time relative to {baselines}; lower is faster."
        )
    if any(row.get("xla") for row in rows):
        lines.append(
            "XLA rows were timed after every other case of the run, beside "
            "their baseline timed again then; their x is to that time."
        )
    backend = keras.backend.backend()
    for row in rows:
        if row.get("skipped"):
            lines.append(
                f"Skipped on {backend}: {row['model']}: {row['skipped']}."
            )
    return "\n".join(lines)


def machine():
    return (
        f"{report.cpu_model()}, {os.cpu_count()} cores, keras "
        f"{keras.__version__} ({keras.backend.backend()}), "
        + ", ".join(device_names())
    )


def device_names():
    """The backend's version and the GPUs it computes on (or "CPU only")."""
    backend = keras.backend.backend()
    gpus = []
    if backend == "tensorflow":
        import tensorflow as tf

        names = [f"tensorflow {tf.__version__}", onednn()]
        gpus = [
            tf.config.experimental.get_device_details(g).get("device_name")
            for g in tf.config.list_physical_devices("GPU")
        ]
    elif backend == "jax":
        import jax

        names = [f"jax {jax.__version__}"]
        if gpu_present():
            gpus = [d.device_kind for d in jax.devices()]
    elif backend == "torch":
        import torch

        names = [f"torch {torch.__version__}"]
        if gpu_present():
            gpus = [
                torch.cuda.get_device_name(),
                f"cuDNN {torch.backends.cudnn.version()}",
            ]
    else:
        names = [backend]
    return names + (gpus or ["CPU only"])


def onednn():
    """How TF_ENABLE_ONEDNN_OPTS set oneDNN for this TensorFlow process."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if value is None:
        return "oneDNN: TensorFlow's default (TF_ENABLE_ONEDNN_OPTS unset)"
    state = report.ONEDNN.get(value, "?")
    return f"oneDNN {state} (TF_ENABLE_ONEDNN_OPTS={value})"
