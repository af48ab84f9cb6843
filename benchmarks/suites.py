"""The suites of the benchmarks: which models, at which sizes, compared
with which baseline case, and the issue targets each case carries.

Each suite is a function of the parsed command line (benchmarks/cli.py)
that returns its `harness.Case`s, the baseline first; `SUITES` names them
with their titles and extra table columns.
"""

import functools

import keras
import numpy as np

from benchmarks import flops
from benchmarks import report
from benchmarks.harness import COLUMNS
from benchmarks.harness import INFER_COLUMNS
from benchmarks.harness import OPS_COLUMNS
from benchmarks.harness import TF_ONLY
from benchmarks.harness import Case
from benchmarks.harness import HandWrittenReNet
from benchmarks.harness import builtin_stack
from benchmarks.harness import char_lm
from benchmarks.harness import classifier
from benchmarks.harness import gf_layer
from benchmarks.harness import gpu_present
from benchmarks.harness import regression
from keras_gfrnn import ClockworkCell
from keras_gfrnn import ClockworkRNN
from keras_gfrnn import GatedFeedbackCell
from keras_gfrnn import ReNet2D
from keras_gfrnn.gated_feedback_rnn import KERAS_LAYERS as BUILTIN

# GF-RNN paper, Table 1: (stacked units, gated-feedback units), 3 layers.
PAPER_SIZES = {"tanh": (390, 303), "gru": (228, 165), "lstm": (191, 140)}

# Issue 13's aims: GF-RNN / Keras' stack at equal parameters (the default
# all-layer gates) and at equal sizes (own-layer gates); ClockworkRNN /
# SimpleRNN without and with XLA; GF-LSTM's GFLOP/s / Keras LSTM's.
EQUAL_PARAMS_AIM = 1.15
EQUAL_SIZES_AIM = 1.25
CLOCKWORK_AIM = 0.5
CLOCKWORK_XLA_AIM = 0.4
GFLOPS_AIM = 0.9
# Issue 25's serving aims: predict at the paper's sizes <= 1.2x Keras'
# stack, ClockworkRNN <= 0.6x SimpleRNN, at every batch of the infer suite.
PREDICT_AIM = 1.2
CLOCKWORK_PREDICT_AIM = 0.6


def lm_data(args, batch, steps):
    x = np.random.default_rng(0).integers(0, args.vocab, size=(batch, steps))
    return x, x


def regression_data(batch, steps, features):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    y = rng.normal(size=(batch, steps, 1)).astype("float32")
    return x, y


def gf_cases(args, sizes=None):
    """The char-LM train step at equal sizes (`args.units`) or, with
    `sizes` (unit type -> (stacked units, GF units)), equal parameters."""
    b, t, e, n = args.batch, args.steps, args.embed, args.layers
    data = lm_data(args, b, t)

    def lm(layers):
        return char_lm(layers, args.vocab, t, e)

    out = []
    for unit_type in args.unit_types:
        if sizes:
            base_units, gf_units = sizes[unit_type]
        else:
            base_units = gf_units = args.units
        gated = unit_type != "tanh"
        keras_name = f"keras {BUILTIN[unit_type].__name__} {n}x{base_units}"
        base = Case(
            keras_name,
            lambda u=unit_type, k=base_units: lm(builtin_stack(u, k, n)),
            flops.stacked(unit_type, b, t, e, base_units, n)
            + flops.dense(b * t, base_units, args.vocab),
            data,
        )
        out.append(base)
        cudnn_off = None
        if not sizes and gated and gpu_present():
            # The same loop without the cuDNN kernel: the generic RNN loop
            # that GatedFeedbackRNN runs too.
            cudnn_off = Case(
                f"{keras_name}, cuDNN off",
                lambda u=unit_type, k=base_units: lm(
                    builtin_stack(u, k, n, use_cudnn=False)
                ),
                base.forward_flops,
                data,
                baseline=base,
            )
            out.append(cudnn_off)

        def gf(label, feedback=True, gate_inputs="all_layers", jit=False, **kw):
            return Case(
                f"GF-{unit_type} {n}x{gf_units} {label}",
                functools.partial(
                    lambda *a: lm([gf_layer(*a)]),
                    unit_type,
                    gf_units,
                    n,
                    feedback,
                    jit,
                    gate_inputs,
                ),
                flops.gated_feedback(
                    unit_type, b, t, e, gf_units, n, feedback, gate_inputs
                )
                + flops.dense(b * t, gf_units, args.vocab),
                data,
                baseline=base,
                ours=True,
                only="tensorflow" if jit else None,
                xla=jit,
                reason=TF_ONLY if jit else None,
                **kw,
            )

        if sizes:
            goals = []
            if gated:
                goals.append(
                    report.target(
                        f"GF-{unit_type} {n}x{gf_units} train / {keras_name} "
                        "(equal parameters)",
                        EQUAL_PARAMS_AIM,
                    )
                )
            out.append(gf("feedback", targets=goals))
            continue
        naive = Case(
            f"GF-{unit_type} cell in keras.layers.RNN (naive)",
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
            flops.gated_feedback(unit_type, b, t, e, args.units, n, True)
            + flops.dense(b * t, args.units, args.vocab),
            data,
            baseline=base,
        )
        goals = []
        if gated:
            goals = [
                report.target(
                    f"GF-{unit_type} all-layer train / keras stacked: "
                    "time ratio | FLOP ratio",
                    None,
                    metric="time_vs_flops",
                ),
                report.target(f"GF-{unit_type} train / naive cell", 0.6, naive),
            ]
        if unit_type == "lstm":
            goals += [
                report.target(
                    "GF-lstm GFLOP/s / dense matmul",
                    0.40,
                    direction=">=",
                    metric="dense_fraction",
                ),
                report.target(
                    f"GF-lstm GFLOP/s / {keras_name} GFLOP/s",
                    GFLOPS_AIM,
                    direction=">=",
                    metric="gflops_ratio",
                ),
            ]
        out.append(gf("feedback", targets=goals))
        if gated:
            name = f"GF-{unit_type} own-layer train / keras stacked"
            goals = [report.target(name, EQUAL_SIZES_AIM)]
            if cudnn_off is not None:
                goals.append(
                    report.target(
                        f"{name}, cuDNN off", EQUAL_SIZES_AIM, cudnn_off
                    )
                )
            out.append(
                gf(
                    "feedback, own-layer gates",
                    gate_inputs="own_layer",
                    targets=goals,
                )
            )
        # TensorFlow only: JAX compiles every train step with XLA anyway
        # (and without it retraces every scan at every call); torch has no
        # XLA.
        out.append(gf("feedback, XLA step", jit=True))
        out.append(gf("stacked", feedback=False))
        if gated:
            out.append(naive)
    return out


def clockwork_cases(args):
    b, t, d, u = args.cw_batch, args.cw_steps, args.cw_features, args.cw_units
    periods = [2**i for i in range(args.cw_modules)]
    data = regression_data(b, t, d)
    head = flops.dense(b * t, u, 1)

    def model(rnn):
        return regression(rnn, t, d)

    base = Case(
        f"keras SimpleRNN({u})",
        lambda: model(keras.layers.SimpleRNN(u, return_sequences=True)),
        flops.simple_rnn(b, t, d, u) + head,
        data,
    )
    cases = [
        base,
        Case(
            f"keras LSTM({u})",
            lambda: model(keras.layers.LSTM(u, return_sequences=True)),
            flops.stacked("lstm", b, t, d, u, 1) + head,
            data,
            baseline=base,
        ),
    ]
    aims = (CLOCKWORK_AIM, CLOCKWORK_XLA_AIM)
    cases += clockwork_layers(args, data, base, aims=aims)
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
            data,
            baseline=base,
        )
    )
    return cases


def clockwork_layers(
    args, data, base, suffix="", aims=None, metric="train_ratio", **kwargs
):
    """ClockworkRNN(args.cw_units, args.cw_modules) on `data` (a
    regression) against `base`, without and with XLA (TensorFlow only);
    with `aims` (without XLA, with it; None: no aim) each carries its
    target on `metric` (the train step's time ratio, or predict's)."""
    b, t, d = data[0].shape
    u, modules = args.cw_units, args.cw_modules
    periods = [2**i for i in range(modules)]
    count = flops.clockwork(b, t, d, u, periods) + flops.dense(b * t, u, 1)
    out = []
    for label, jit in (("", False), (", XLA", True)):
        goals = []
        if aims and aims[jit] is not None:
            what = "train" if metric == "train_ratio" else "predict"
            goals = [
                report.target(
                    f"ClockworkRNN{' (XLA)' if jit else ''}{suffix} {what} "
                    "/ SimpleRNN",
                    aims[jit],
                    metric=metric,
                )
            ]
        out.append(
            Case(
                f"ClockworkRNN({u}, {modules} modules){label}{suffix}",
                lambda j=jit: regression(
                    ClockworkRNN(
                        u,
                        num_modules=modules,
                        return_sequences=True,
                        jit_compile=j,
                    ),
                    t,
                    d,
                ),
                count,
                data,
                baseline=base,
                targets=goals,
                ours=True,
                only="tensorflow" if jit else None,
                xla=jit,
                reason=TF_ONLY if jit else None,
                **kwargs,
            )
        )
    return out


def renet_cases(args):
    b, s, c, u, p = args.img_batch, args.img_size, 3, args.renet_units, 2
    cell = args.renet_cell
    shape = (s, s, c)
    name = BUILTIN[cell].__name__
    rng = np.random.default_rng(0)
    data = (
        rng.uniform(size=(b,) + shape).astype("float32"),
        rng.integers(0, 10, size=(b,)),
    )
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
    cases, base = [], None
    for use_cudnn in cudnn:
        label = "" if use_cudnn == "auto" else ", cuDNN off"
        hand = Case(
            f"hand-written Bidirectional({name}) sweeps ({u} units){label}",
            lambda c=use_cudnn: classifier(
                [HandWrittenReNet(u, p, cell, use_cudnn=c)], shape
            ),
            rn,
            data,
            baseline=base,
        )
        base = base or hand
        goals = []
        if use_cudnn == "auto":
            goals = [report.target("ReNet2D train / hand-written sweeps", 1.05)]
        cases += [
            hand,
            Case(
                f"ReNet2D({u}, patch {p}, {name}){label}",
                lambda c=use_cudnn: classifier(
                    [ReNet2D(u, patch_size=p, cell=cell, use_cudnn=c)], shape
                ),
                rn,
                data,
                baseline=base,
                targets=goals,
                ours=True,
            ),
        ]
    cases.append(
        Case(
            f"Conv2D net ({width}-{2 * width}-{2 * width} filters)",
            lambda: classifier(convs, shape),
            conv_flops,
            data,
            baseline=base,
        )
    )
    return cases


def length_cases(args):
    b, e, n, u = args.batch, args.embed, args.layers, args.scale_units
    x, _ = lm_data(args, b, max(args.lengths))
    cases, base = [], None
    for t in args.lengths:
        case = Case(
            f"GF-lstm {n}x{u}, T={t}",
            lambda t=t: char_lm([gf_layer("lstm", u, n)], args.vocab, t, e),
            flops.gated_feedback("lstm", b, t, e, u, n, True)
            + flops.dense(b * t, u, args.vocab),
            (x[:, :t], x[:, :t]),
            baseline=base,
            steps=t,
        )
        base = base or case
        cases.append(case)
    return cases


def layer_cases(args):
    b, t, e, u = args.batch, args.scale_steps, args.embed, args.scale_units
    data = lm_data(args, b, t)
    cases, bases = [], {}
    for n in args.depths:
        for feedback in (False, True):
            case = Case(
                f"GF-lstm {n}x{u} {'feedback' if feedback else 'stacked'}",
                lambda n=n, f=feedback: char_lm(
                    [gf_layer("lstm", u, n, f)], args.vocab, t, e
                ),
                flops.gated_feedback("lstm", b, t, e, u, n, feedback)
                + flops.dense(b * t, u, args.vocab),
                data,
                baseline=bases.get(feedback),
                layers=n,
            )
            bases.setdefault(feedback, case)
            cases.append(case)
    return cases


def inference_cases(args):
    """`predict_on_batch` (Keras' compiled predict step) at each of
    `args.infer_batches`: GatedFeedbackRNN at equal sizes and at the
    paper's equal parameters beside Keras' stack, ClockworkRNN beside
    SimpleRNN."""
    n, t, e, v = args.layers, args.steps, args.embed, args.vocab
    cw_t, d, u = args.cw_steps, args.cw_features, args.cw_units
    cases = []
    for b in args.infer_batches:
        data = lm_data(args, b, t)
        for unit_type in args.unit_types:
            equal = (args.units, args.units)
            for base_units, gf_units in (equal, PAPER_SIZES[unit_type]):
                base = Case(
                    f"keras {BUILTIN[unit_type].__name__} {n}x{base_units}, "
                    f"B={b}",
                    lambda u=unit_type, k=base_units: char_lm(
                        builtin_stack(u, k, n), v, t, e
                    ),
                    flops.stacked(unit_type, b, t, e, base_units, n)
                    + flops.dense(b * t, base_units, v),
                    data,
                    train=False,
                    batch=b,
                )
                name = f"GF-{unit_type} {n}x{gf_units} feedback, B={b}"
                goals = []
                if (base_units, gf_units) == PAPER_SIZES[unit_type]:
                    goals = [
                        report.target(
                            f"{name}: predict / Keras' stack",
                            PREDICT_AIM,
                            metric="infer_ratio",
                        )
                    ]
                cases += [
                    base,
                    Case(
                        name,
                        lambda u=unit_type, k=gf_units: char_lm(
                            [gf_layer(u, k, n)], v, t, e
                        ),
                        flops.gated_feedback(
                            unit_type, b, t, e, gf_units, n, True
                        )
                        + flops.dense(b * t, gf_units, v),
                        data,
                        baseline=base,
                        targets=goals,
                        ours=True,
                        train=False,
                        batch=b,
                    ),
                ]
        data = regression_data(b, cw_t, d)
        base = Case(
            f"keras SimpleRNN({u}), B={b}",
            lambda: regression(
                keras.layers.SimpleRNN(u, return_sequences=True), cw_t, d
            ),
            flops.simple_rnn(b, cw_t, d, u) + flops.dense(b * cw_t, u, 1),
            data,
            train=False,
            batch=b,
        )
        cases.append(base)
        cases += clockwork_layers(
            args,
            data,
            base,
            f", B={b}",
            aims=(CLOCKWORK_PREDICT_AIM, None),
            metric="infer_ratio",
            train=False,
            batch=b,
        )
    return cases


def ops_cases(args):
    """Ops per time step (counted, not timed: benchmarks/opcount.py) at
    B=`args.batch`: GatedFeedbackRNN at the paper's equal parameters (the
    default all-layer gates) beside Keras' stack, and at equal sizes
    (`args.units`, own-layer gates too); ClockworkRNN beside
    SimpleRNN(`args.cw_units`). Each GF model at the paper's sizes and
    ClockworkRNN carry the aims: no more ops per step than the
    baseline, train forward, train backward and predict."""
    b, t, e, n, v = args.batch, args.steps, args.embed, args.layers, args.vocab
    data = lm_data(args, b, t)
    cases = []
    for unit_type in args.unit_types:
        for base_units, gf_units in (
            PAPER_SIZES[unit_type],
            (args.units, args.units),
        ):
            base = Case(
                f"keras {BUILTIN[unit_type].__name__} {n}x{base_units}",
                lambda u=unit_type, k=base_units: char_lm(
                    builtin_stack(u, k, n), v, t, e
                ),
                None,
                data,
                steps=t,
            )
            cases.append(base)
            forms = ["all_layers"]
            if unit_type != "tanh" and gf_units == args.units:
                forms.append("own_layer")
            for form in forms:
                name = f"GF-{unit_type} {n}x{gf_units} feedback"
                if form == "own_layer":
                    name += ", own-layer gates"
                goals = []
                if (base_units, gf_units) == PAPER_SIZES[unit_type]:
                    goals = [
                        report.target(
                            f"{name}: {what} ops/step", 1.0, metric=metric
                        )
                        for what, metric in zip(OPS_WHAT, report.OPS)
                    ]
                cases.append(
                    Case(
                        name,
                        lambda u=unit_type, k=gf_units, f=form: char_lm(
                            [gf_layer(u, k, n, gate_inputs=f)], v, t, e
                        ),
                        None,
                        data,
                        baseline=base,
                        targets=goals,
                        steps=t,
                    )
                )
    cw_t, d, u = args.cw_steps, args.cw_features, args.cw_units
    data = regression_data(args.cw_batch, cw_t, d)
    base = Case(
        f"keras SimpleRNN({u})",
        lambda: regression(
            keras.layers.SimpleRNN(u, return_sequences=True), cw_t, d
        ),
        None,
        data,
        steps=cw_t,
    )
    name = f"ClockworkRNN({u}, {args.cw_modules} modules)"
    cases += [
        base,
        Case(
            name,
            lambda: regression(
                ClockworkRNN(
                    u, num_modules=args.cw_modules, return_sequences=True
                ),
                cw_t,
                d,
            ),
            None,
            data,
            baseline=base,
            targets=[
                report.target(f"{name}: {what} ops/step", 1.0, metric=metric)
                for what, metric in zip(OPS_WHAT, report.OPS)
            ],
            steps=cw_t,
        ),
    ]
    return cases


OPS_WHAT = ("train forward", "train backward", "predict")


class Suite:
    """A suite: its `title` and `cases` (functions of the parsed command
    line), its table's `extra` columns and `columns`, and whether it
    `counts` ops (`harness.count_cases`) instead of timing."""

    def __init__(self, title, cases, extra=(), columns=COLUMNS, counts=False):
        self.title, self.cases = title, cases
        self.extra, self.columns = extra, columns
        self.counts = counts


SUITES = {
    "gf": Suite(
        lambda a: (
            "GatedFeedbackRNN, equal sizes: char-LM train step, "
            f"B={a.batch}, T={a.steps}, {a.layers}x{a.units}, vocab {a.vocab}"
        ),
        gf_cases,
    ),
    "gf_params": Suite(
        lambda a: (
            "GatedFeedbackRNN, equal parameters (GF-RNN paper Table 1 "
            f"sizes): char-LM train step, B={a.batch}, T={a.steps}"
        ),
        lambda a: gf_cases(a, PAPER_SIZES),
    ),
    "clockwork": Suite(
        lambda a: (
            f"ClockworkRNN: sequence regression, B={a.cw_batch}, "
            f"T={a.cw_steps}, {a.cw_features} features"
        ),
        clockwork_cases,
    ),
    "renet": Suite(
        lambda a: (
            f"ReNet2D: {a.img_size}x{a.img_size}x3 classifier, B={a.img_batch}"
        ),
        renet_cases,
    ),
    "length": Suite(
        lambda a: (
            f"Scaling with sequence length: char-LM train step, B={a.batch}"
        ),
        length_cases,
        (("T", "steps", "{}"), ("train ms / T", "ms_per_step", "{:.2f}")),
    ),
    "layers": Suite(
        lambda a: (
            f"Scaling with layers: char-LM train step, B={a.batch}, "
            f"T={a.scale_steps}"
        ),
        layer_cases,
        (("layers", "layers", "{}"), ("train GFLOP", "train_gflop", "{:.1f}")),
    ),
    "infer": Suite(
        lambda a: (
            "Inference (compiled predict step): char-LM, "
            f"T={a.steps}, {a.layers} layers; ClockworkRNN regression, "
            f"T={a.cw_steps}; batches {', '.join(map(str, a.infer_batches))}"
        ),
        inference_cases,
        (("B", "batch", "{}"),),
        INFER_COLUMNS,
    ),
    "ops": Suite(
        lambda a: (
            f"Ops per time step (counted): char-LM, B={a.batch}, "
            f"T={a.steps}, {a.layers} layers; ClockworkRNN regression, "
            f"B={a.cw_batch}, T={a.cw_steps}"
        ),
        ops_cases,
        columns=OPS_COLUMNS,
        counts=True,
    ),
}
