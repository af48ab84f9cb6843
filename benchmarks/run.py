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
  T=100, 3x256: GatedFeedbackRNN tanh / GRU / LSTM with feedback (on
  TensorFlow also with the XLA-compiled step) and without, Keras' stacked
  built-ins (on a GPU also with `use_cudnn=False`), the naive
  GatedFeedbackCell in keras.layers.RNN.
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
(`report.target`: name, baseline case, aim, direction).
"""

import argparse
import functools
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from benchmarks import flops  # noqa: E402
from benchmarks import report  # noqa: E402
from keras_gfrnn import ClockworkCell  # noqa: E402
from keras_gfrnn import ClockworkRNN  # noqa: E402
from keras_gfrnn import GatedFeedbackCell  # noqa: E402
from keras_gfrnn import GatedFeedbackRNN  # noqa: E402
from keras_gfrnn import ReNet2D  # noqa: E402
from keras_gfrnn.gated_feedback_rnn import KERAS_LAYERS as BUILTIN  # noqa: E402

# GF-RNN paper, Table 1: (stacked units, gated-feedback units), 3 layers.
PAPER_SIZES = {"tanh": (390, 303), "gru": (228, 165), "lstm": (191, 140)}
SUITES = ("gf", "gf_params", "clockwork", "renet", "length", "layers")


# Why a row is skipped on a backend other than the one it needs.
TF_ONLY = (
    "TensorFlow-only: jit_compile=True XLA-compiles the layer's step on "
    "the TensorFlow backend only (JAX compiles every train step anyway, "
    "torch has no XLA)"
)


class Case:
    """One model of a suite: how to build it, its analytic FLOPs, the
    case it is compared with, the targets it measures (`report.target`),
    whether it is one of our layers (`ours`: a row of the several-backend
    summary) and, if it needs one backend, which (`only`) and why
    (`reason`)."""

    def __init__(
        self,
        name,
        build,
        forward_flops,
        baseline,
        targets=(),
        ours=False,
        only=None,
        reason=None,
        **extra,
    ):
        self.name = name
        self.build = build
        self.forward_flops = forward_flops
        self.baseline = baseline
        self.targets = list(targets)
        self.ours = ours
        self.only = only
        self.reason = reason
        self.extra = extra


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


def gf_layer(unit_type, units, layers, feedback=True, jit_compile=False):
    return GatedFeedbackRNN(
        units,
        num_layers=layers,
        unit_type=unit_type,
        feedback=feedback,
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


# ------------------------------------------------------------------ suites
def gf_cases(args, sizes=None):
    b, t, e = args.batch, args.steps, args.embed

    def lm(layers):
        return char_lm(layers, args.vocab, t, e)

    def gf_model(unit_type, units, feedback, jit_compile):
        return lm(
            [gf_layer(unit_type, units, args.layers, feedback, jit_compile)]
        )

    out = []
    for unit_type in args.unit_types:
        if sizes:
            base_units, gf_units = sizes[unit_type]
        else:
            base_units = gf_units = args.units
        n = args.layers
        head = flops.dense(b * t, base_units, args.vocab)
        base = f"keras {BUILTIN[unit_type].__name__} {n}x{base_units}"
        out.append(
            Case(
                base,
                lambda u=unit_type, k=base_units: lm(builtin_stack(u, k, n)),
                flops.stacked(unit_type, b, t, e, base_units, n) + head,
                base,
            )
        )
        if not sizes and unit_type != "tanh" and gpu_present():
            # The same loop without the cuDNN kernel: the generic RNN loop
            # that GatedFeedbackRNN runs too.
            out.append(
                Case(
                    f"{base}, cuDNN off",
                    lambda u=unit_type, k=base_units: lm(
                        builtin_stack(u, k, n, use_cudnn=False)
                    ),
                    out[-1].forward_flops,
                    base,
                )
            )
        fb = flops.gated_feedback(unit_type, b, t, e, gf_units, n, True)
        fb += flops.dense(b * t, gf_units, args.vocab)
        naive = f"GF-{unit_type} cell in keras.layers.RNN (naive)"
        goals = []
        if not sizes and unit_type != "tanh":
            name = f"GF-{unit_type} train / keras stacked"
            goals = [
                report.target(name, 1.25, base),
                report.target(f"{name}, cuDNN off", 1.25, f"{base}, cuDNN off"),
                report.target(f"GF-{unit_type} train / naive cell", 0.6, naive),
            ]
            if unit_type == "lstm":
                goals.append(
                    report.target(
                        "GF-lstm GFLOP/s / dense matmul",
                        0.40,
                        direction=">=",
                        metric="dense_fraction",
                    )
                )
        variants = [("feedback", True, False)]
        if not sizes:
            # TensorFlow only: JAX compiles every train step with XLA
            # anyway (and without it retraces every scan at every call);
            # torch has no XLA.
            variants += [("feedback, XLA step", True, True)]
            variants += [("stacked", False, False)]
        for label, feedback, jit in variants:
            count = (
                fb
                if feedback
                else (
                    flops.stacked(unit_type, b, t, e, gf_units, n)
                    + flops.dense(b * t, gf_units, args.vocab)
                )
            )
            out.append(
                Case(
                    f"GF-{unit_type} {n}x{gf_units} {label}",
                    functools.partial(
                        gf_model, unit_type, gf_units, feedback, jit
                    ),
                    count,
                    base,
                    targets=goals if label == "feedback" else (),
                    ours=True,
                    only="tensorflow" if jit else None,
                    reason=TF_ONLY if jit else None,
                )
            )
        if not sizes and unit_type in ("lstm", "gru"):
            out.append(
                Case(
                    naive,
                    lambda u=unit_type: lm(
                        [
                            keras.layers.RNN(
                                GatedFeedbackCell(
                                    args.units, num_layers=n, unit_type=u
                                ),
                                return_sequences=True,
                            )
                        ]
                    ),
                    fb,
                    base,
                )
            )
    x = np.random.default_rng(0).integers(0, args.vocab, size=(b, t))
    return out, x, x


def clockwork_cases(args):
    b, t, d, u = args.cw_batch, args.cw_steps, args.cw_features, args.cw_units
    periods = [2**i for i in range(args.cw_modules)]
    model = lambda rnn: regression(rnn, t, d)  # noqa: E731
    head = flops.dense(b * t, u, 1)
    base = f"keras SimpleRNN({u})"
    cw = flops.clockwork(b, t, d, u, periods) + head
    name = f"ClockworkRNN({u}, {args.cw_modules} modules)"
    cases = [
        Case(
            base,
            lambda: model(keras.layers.SimpleRNN(u, return_sequences=True)),
            flops.simple_rnn(b, t, d, u) + head,
            base,
        ),
        Case(
            f"keras LSTM({u})",
            lambda: model(keras.layers.LSTM(u, return_sequences=True)),
            flops.stacked("lstm", b, t, d, u, 1) + head,
            base,
        ),
    ]
    for label, jit in (("", False), (", XLA", True)):
        goal = report.target(
            f"ClockworkRNN{' (XLA)' if jit else ''} train / SimpleRNN",
            0.5,
            base,
        )
        cases.append(
            Case(
                name + label,
                lambda j=jit: model(
                    ClockworkRNN(
                        u,
                        num_modules=args.cw_modules,
                        return_sequences=True,
                        jit_compile=j,
                    )
                ),
                cw,
                base,
                targets=[goal],
                ours=True,
                only="tensorflow" if jit else None,
                reason=TF_ONLY if jit else None,
            )
        )
    cases.append(
        Case(
            "ClockworkCell in keras.layers.RNN (reference)",
            lambda: model(
                keras.layers.RNN(
                    ClockworkCell(u, num_modules=args.cw_modules),
                    return_sequences=True,
                )
            ),
            flops.clockwork(b, t, d, u, periods, active_only=False) + head,
            base,
        )
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(b, t, d)).astype("float32")
    y = rng.normal(size=(b, t, 1)).astype("float32")
    return cases, x, y


def renet_cases(args):
    b, s, c, u, p = args.img_batch, args.img_size, 3, args.renet_units, 2
    cell = args.renet_cell
    shape = (s, s, c)
    name = BUILTIN[cell].__name__
    base = f"hand-written Bidirectional({name}) sweeps ({u} units)"
    rn = flops.renet(b, s, s, c, u, p, cell) + flops.dense(b, 2 * u, 10)
    width = args.conv_width
    convs = [
        keras.layers.Conv2D(width, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu"),
    ]
    conv_flops = (
        flops.conv2d(b, s, s, c, width, 3)
        + flops.conv2d(b, s // 2, s // 2, width, 2 * width, 3)
        + flops.conv2d(b, s // 2, s // 2, 2 * width, 2 * width, 3)
        + flops.dense(b, 2 * width, 10)
    )
    cudnn = ("auto", False) if gpu_present() else ("auto",)
    cases = []
    for use_cudnn in cudnn:
        label = "" if use_cudnn == "auto" else ", cuDNN off"
        cases.append(
            Case(
                base + label,
                lambda c=use_cudnn: classifier(
                    [HandWrittenReNet(u, p, cell, use_cudnn=c)], shape
                ),
                rn,
                base,
            )
        )
        goal = report.target("ReNet2D train / hand-written sweeps", 1.05, base)
        cases.append(
            Case(
                f"ReNet2D({u}, patch {p}, {name}){label}",
                lambda c=use_cudnn: classifier(
                    [ReNet2D(u, patch_size=p, cell=cell, use_cudnn=c)], shape
                ),
                rn,
                base,
                targets=[goal] if use_cudnn == "auto" else (),
                ours=True,
            )
        )
    cases += [
        Case(
            f"Conv2D net ({width}-{2 * width}-{2 * width} filters)",
            lambda: classifier(convs, shape),
            conv_flops,
            base,
        ),
    ]
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(b,) + shape).astype("float32")
    y = rng.integers(0, 10, size=(b,))
    return cases, x, y


def length_cases(args, steps):
    b, e, n, u = args.batch, args.embed, args.layers, args.scale_units
    cases = []
    for t in steps:
        name = f"GF-lstm {n}x{u}, T={t}"
        cases.append(
            Case(
                name,
                lambda t=t: char_lm([gf_layer("lstm", u, n)], args.vocab, t, e),
                flops.gated_feedback("lstm", b, t, e, u, n, True)
                + flops.dense(b * t, u, args.vocab),
                f"GF-lstm {n}x{u}, T={steps[0]}",
                steps=t,
            )
        )
    return cases


def layer_cases(args, depths):
    b, t, e, u = args.batch, args.scale_steps, args.embed, args.scale_units
    cases = []
    for n in depths:
        for feedback in (False, True):
            label = "feedback" if feedback else "stacked"
            cases.append(
                Case(
                    f"GF-lstm {n}x{u} {label}",
                    lambda n=n, f=feedback: char_lm(
                        [gf_layer("lstm", u, n, f)], args.vocab, t, e
                    ),
                    flops.gated_feedback("lstm", b, t, e, u, n, feedback)
                    + flops.dense(b * t, u, args.vocab),
                    f"GF-lstm {depths[0]}x{u} {label}",
                    layers=n,
                )
            )
    return cases


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


def inputs_for(case, x, y, args):
    steps = case.extra.get("steps")
    if steps is None:
        return x, y
    return x[:, :steps], y[:, :steps]


def skipped_row(case):
    return {
        "model": case.name,
        "skipped": case.reason or f"{case.only} only",
        "baseline": case.baseline,
        "ours": case.ours,
        "targets": case.targets,
        **case.extra,
    }


def time_cases(cases, x, y, args, dense):
    """Rows of `cases` in order; a case for another backend than this
    one is a row with only its name and why it was `skipped`."""
    backend = keras.backend.backend()
    skipped = {
        case.name: skipped_row(case)
        for case in cases
        if case.only not in (None, backend)
    }
    every, cases = cases, [c for c in cases if c.name not in skipped]
    models = []
    for case in cases:
        keras.utils.set_random_seed(0)
        models.append(case.build())
    # Warm up only once every model is built: setting the seed makes every
    # traced function retrace at its next call.
    built = []
    for case, model in zip(cases, models):
        cx, cy = inputs_for(case, x, y, args)
        for _ in range(args.warmup):
            model.train_on_batch(cx, cy)
            model.predict_on_batch(cx)
        memory = peak_memory(model, cx, cy)
        built.append((case, model, cx, cy, memory, [], []))
    for _ in range(args.repeats):
        for _, model, cx, cy, _, train, infer in built:
            start = time.perf_counter()
            model.train_on_batch(cx, cy)
            train.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict_on_batch(cx)
            infer.append(time.perf_counter() - start)
    medians = {
        case.name: (statistics.median(t), statistics.median(i))
        for case, _, _, _, _, t, i in built
    }
    rows = {}
    for case, model, cx, _, memory, _, _ in built:
        train, infer = medians[case.name]
        gflops = 3 * case.forward_flops / train / 1e9
        rows[case.name] = {
            "model": case.name,
            "params": int(model.count_params()),
            "train_ms": train * 1e3,
            "infer_ms": infer * 1e3,
            "examples_per_s": len(cx) / train,
            "peak_mib": None if memory is None else memory / 2**20,
            "train_gflop": 3 * case.forward_flops / 1e9,
            "gflops": gflops,
            "dense_pct": 100 * gflops / dense["gflops"],
            "train_ratio": train / medians[case.baseline][0],
            "infer_ratio": infer / medians[case.baseline][1],
            "baseline": case.baseline,
            "ours": case.ours,
            "targets": case.targets,
            **case.extra,
        }
    rows.update(skipped)
    return [rows[case.name] for case in every]


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


def table(rows, extra=()):
    columns = COLUMNS[:1] + tuple(extra) + COLUMNS[1:]
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
    lines.append(f"x: median time relative to {baselines}; lower is faster.")
    backend = keras.backend.backend()
    for row in rows:
        if row.get("skipped"):
            lines.append(
                f"Skipped on {backend}: {row['model']}: {row['skipped']}."
            )
    return "\n".join(lines)


def targets(results):
    """The targets carried by this run's rows, as a markdown table."""
    return report.targets_table(report.evaluate_targets(results))


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
    "repeats": 2,
    "warmup": 1,
}


def onednn():
    """How TF_ENABLE_ONEDNN_OPTS set oneDNN for this TensorFlow process."""
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if value is None:
        return "oneDNN: TensorFlow's default (TF_ENABLE_ONEDNN_OPTS unset)"
    state = report.ONEDNN.get(value, "?")
    return f"oneDNN {state} (TF_ENABLE_ONEDNN_OPTS={value})"


def parse(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--suite", nargs="+", choices=SUITES, default=SUITES)
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
        choices=sorted(BUILTIN),
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
    b, t = args.batch, args.steps
    specs = {
        "gf": (
            f"GatedFeedbackRNN, equal sizes: char-LM train step, B={b}, "
            f"T={t}, {args.layers}x{args.units}, vocab {args.vocab}",
            lambda: gf_cases(args),
            (),
        ),
        "gf_params": (
            "GatedFeedbackRNN, equal parameters (GF-RNN paper Table 1 "
            f"sizes): char-LM train step, B={b}, T={t}",
            lambda: gf_cases(args, PAPER_SIZES),
            (),
        ),
        "clockwork": (
            f"ClockworkRNN: sequence regression, B={args.cw_batch}, "
            f"T={args.cw_steps}, {args.cw_features} features",
            lambda: clockwork_cases(args),
            (),
        ),
        "renet": (
            f"ReNet2D: {args.img_size}x{args.img_size}x3 classifier, "
            f"B={args.img_batch}",
            lambda: renet_cases(args),
            (),
        ),
        "length": (
            f"Scaling with sequence length: char-LM train step, B={b}",
            lambda: lm_inputs(length_cases(args, args.lengths), args),
            (
                ("T", "steps", "{}"),
                ("train ms / T", "ms_per_step", "{:.2f}"),
            ),
        ),
        "layers": (
            f"Scaling with layers: char-LM train step, B={b}, "
            f"T={args.scale_steps}",
            lambda: lm_inputs(
                layer_cases(args, args.depths), args, args.scale_steps
            ),
            (
                ("layers", "layers", "{}"),
                ("train GFLOP", "train_gflop", "{:.1f}"),
            ),
        ),
    }
    for suite in args.suite:
        title, make, extra = specs[suite]
        start = time.perf_counter()
        cases, x, y = make()
        rows = time_cases(cases, x, y, args, dense)
        for row in rows:
            if "steps" in row and "train_ms" in row:
                row["ms_per_step"] = row["train_ms"] / row["steps"]
        results[suite] = rows
        sections += ["", f"### {title}", "", table(rows, extra)]
        print("\n".join(sections[-4:]), flush=True)
        print(f"({suite}: {time.perf_counter() - start:.0f} s)", flush=True)
        # Written after every suite: a run cut short keeps what it measured.
        write(args, sections, results, dense)
    goals = targets(results)
    if goals:
        sections += ["", "### Targets (this run)", "", goals]
        print("\n".join(sections[-4:]))
        write(args, sections, results, dense)
    return results


def write(args, sections, results, dense):
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(sections) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": machine(),
                    "cpu": report.cpu_model(),
                    "backend": keras.backend.backend(),
                    "setting": report.setting(keras.backend.backend()),
                    "args": vars(args),
                    "targets": report.evaluate_targets(results),
                    "dense": dense,
                    "results": results,
                },
                f,
                indent=2,
            )


def lm_inputs(cases, args, steps=None):
    longest = max([c.extra.get("steps", 0) for c in cases] + [steps or 0])
    x = np.random.default_rng(0).integers(
        0, args.vocab, size=(args.batch, longest)
    )
    return cases, x, x


if __name__ == "__main__":
    main()
