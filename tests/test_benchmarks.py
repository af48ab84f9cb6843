"""The benchmark harness's analytic FLOP counts agree with the layers."""

import os
import re

import keras
import numpy as np
import pytest

from benchmarks import flops
from keras_gfrnn import ClockworkRNN
from keras_gfrnn import GatedFeedbackRNN
from keras_gfrnn import ReNet2D
from keras_gfrnn import gated_feedback_loops
from tests import layer_checks

B, T, D = 2, 6, 5


def matmul_flops(kernels):
    """2 * B * T * (inputs x outputs) summed over per-step matmuls."""
    return sum(2 * B * T * int(np.prod(k.shape)) for k in kernels)


@pytest.mark.parametrize("unit_type", ["tanh", "gru", "lstm"])
@pytest.mark.parametrize("feedback", [True, False])
@pytest.mark.parametrize("gate_inputs", ["all_layers", "own_layer"])
def test_gated_feedback_counts_every_weight_matrix(
    unit_type, feedback, gate_inputs
):
    layer = GatedFeedbackRNN(
        7,
        num_layers=3,
        unit_type=unit_type,
        feedback=feedback,
        gate_inputs=gate_inputs,
    )
    layer.build((B, T, D))
    weights = gated_feedback_loops.fuse_weights(
        layer.cell.layout, layer.cell.weight_lists()
    )
    # Every matmul of the loop, each weight element once (the global
    # gates' `spread` only repeats them over their units: not counted).
    kernels = weights.input_kernels + weights.recurrent_kernels
    if feedback:
        kernels += [weights.summed_kernel] + weights.candidate_kernels
    expected = matmul_flops([k for k in kernels if k is not None])
    count = flops.gated_feedback(
        unit_type, B, T, D, 7, 3, feedback, gate_inputs
    )
    assert count == expected


@pytest.mark.parametrize(
    "unit_type,layer",
    [
        ("tanh", keras.layers.SimpleRNN),
        ("gru", keras.layers.GRU),
        ("lstm", keras.layers.LSTM),
    ],
)
def test_stacked_counts_keras_kernels(unit_type, layer):
    stack = keras.Sequential(
        [keras.Input((T, D))]
        + [layer(7, return_sequences=True) for _ in range(2)]
    )
    kernels = [w for w in stack.weights if "kernel" in w.path]
    assert flops.stacked(unit_type, B, T, D, 7, 2) == matmul_flops(kernels)


def test_clockwork_counts_active_modules_only():
    periods = [1, 2, 4]
    layer = ClockworkRNN(6, periods=periods)
    layer.build((B, T, D))
    full = matmul_flops([layer.cell.kernel, layer.cell.recurrent_kernel])
    assert flops.clockwork(B, T, D, 6, periods, active_only=False) == full
    # By hand: module i (2 units) reads modules i.. (3 - i) * 2 units.
    ticks = {0: T, 1: -(-T // 2), 2: -(-T // 4)}
    recurrent = sum(2 * B * ticks[i] * (3 - i) * 2 * 2 for i in range(3))
    expected = 2 * B * T * D * 6 + recurrent
    assert flops.clockwork(B, T, D, 6, periods) == expected


def test_renet_counts_its_four_rnns():
    layer = ReNet2D(3, patch_size=2)
    layer.build((B, 4, 6, 2))
    kernels = [w for w in layer.weights if "kernel" in w.path]
    # Vertical: B*3 columns of 2 steps; horizontal: B*2 rows of 3 steps.
    steps = {"vertical": B * 3 * 2, "horizontal": B * 2 * 3}
    expected = sum(
        2 * steps[k.path.split("/")[1].split("_sweep")[0]] * np.prod(k.shape)
        for k in kernels
    )
    assert flops.renet(B, 4, 6, 2, 3, 2) == expected


def test_paper_size_cases_build_the_sizes_they_name():
    import re

    from benchmarks import cli
    from benchmarks import suites

    args = cli.parse(["--quick", "--unit-types", "tanh", "gru", "lstm"])
    assert args.unit_types == ["tanh", "gru", "lstm"]
    cases = suites.gf_cases(args, suites.PAPER_SIZES)
    assert len(cases) == 6
    for case in cases:
        layers, units = map(int, re.search(r"(\d)x(\d+)", case.name).groups())
        model = case.build()
        rnns = [layer for layer in model.layers if hasattr(layer, "cell")]
        if case.ours:
            assert list(rnns[0].layer_units) == [units] * layers, case.name
        else:
            assert [r.units for r in rnns] == [units] * layers, case.name
        flops = 3 * case.forward_flops
        assert flops > 0


def test_gpu_rows_build_the_models_they_name(monkeypatch):
    """With a GPU the suites add cuDNN-off rows; check them on any machine
    by pretending one is there."""
    from benchmarks import cli
    from benchmarks import suites

    monkeypatch.setattr(suites, "gpu_present", lambda: True)
    args = cli.parse(["--quick", "--unit-types", "lstm"])
    cases = suites.gf_cases(args)
    names = [case.name for case in cases]
    assert "keras LSTM 3x16, cuDNN off" in names
    off_case = cases[names.index("keras LSTM 3x16, cuDNN off")]
    off = off_case.build()
    rnns = [layer for layer in off.layers if hasattr(layer, "cell")]
    assert [r.use_cudnn for r in rnns] == [False] * 3
    # The own-layer GF-LSTM's target against it refers to that very case.
    own = cases[names.index("GF-lstm 3x16 feedback, own-layer gates")]
    against = {goal["name"]: goal["baseline"] for goal in own.targets}
    assert against["GF-lstm own-layer train / keras stacked, cuDNN off"] is (
        off_case
    )
    cases = suites.renet_cases(args)
    by_name = {case.name: case for case in cases}
    model = by_name["ReNet2D(8, patch 2, GRU), cuDNN off"].build()
    assert model.layers[0].use_cudnn is False
    model = by_name[
        "hand-written Bidirectional(GRU) sweeps (8 units), cuDNN off"
    ].build()
    assert model.layers[0].vertical.forward_layer.use_cudnn is False


@pytest.mark.slow
def test_quick_run_writes_markdown_and_json(tmp_path):
    import json

    from benchmarks import cli

    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    argv = ["--quick", "--suite", "renet", "--markdown", str(md)]
    results = cli.main(argv + ["--json", str(js)])
    rows = results["renet"]
    assert [r["model"] for r in rows][:2] == [
        "hand-written Bidirectional(GRU) sweeps (8 units)",
        "ReNet2D(8, patch 2, GRU)",
    ]
    for row in rows:
        assert row["train_ms"] > 0 and row["infer_ms"] > 0
        assert row["gflops"] > 0 and row["params"] > 0
    assert rows[0]["train_ratio"] == 1.0
    text = md.read_text()
    assert "| ReNet2D(8, patch 2, GRU) |" in text
    assert "ReNet2D train / hand-written sweeps" in text
    saved = json.loads(js.read_text())
    assert saved["results"]["renet"][1]["model"] == rows[1]["model"]
    assert saved["dense"]["gflops"] > 0


def test_cases_carry_their_targets_as_data():
    """Every target compares with a case of its own suite (the case
    itself, not its name) or with none, and has an aim with a direction
    (or, reported only, no aim)."""
    from benchmarks import cli
    from benchmarks import suites

    args = cli.parse(["--quick", "--unit-types", "lstm", "gru", "tanh"])
    cases_of = [
        suites.gf_cases(args),
        suites.clockwork_cases(args),
        suites.renet_cases(args),
    ]
    names = []
    for cases in cases_of:
        for case in cases:
            assert any(case.baseline is other for other in cases), case
            for goal in case.targets:
                names.append(goal["name"])
                assert goal["direction"] in ("<=", ">=")
                if goal["metric"] == "time_vs_flops":
                    assert goal["aim"] is None
                else:
                    assert goal["aim"] > 0
                if goal["baseline"] is not None:
                    assert any(goal["baseline"] is c for c in cases), goal
    assert names == [
        "GF-lstm all-layer train / keras stacked: time ratio | FLOP ratio",
        "GF-lstm train / naive cell",
        "GF-lstm GFLOP/s / dense matmul",
        "GF-lstm GFLOP/s / keras LSTM 3x16 GFLOP/s",
        "GF-lstm own-layer train / keras stacked",
        "GF-gru all-layer train / keras stacked: time ratio | FLOP ratio",
        "GF-gru train / naive cell",
        "GF-gru own-layer train / keras stacked",
        "ClockworkRNN train / SimpleRNN",
        "ClockworkRNN (XLA) train / SimpleRNN",
        "ReNet2D train / hand-written sweeps",
    ]


def test_issue_13_targets_compare_the_cases_it_names():
    """The aims of issue 13, each on the case it measures, against the
    baseline it names: equal parameters (paper sizes, default gates)
    <= 1.15; equal sizes, own-layer gates <= 1.25; the all-layer form
    reported beside its FLOP ratio; ClockworkRNN <= 0.5 (XLA: 0.4);
    GF-LSTM's GFLOP/s >= 0.9x Keras LSTM's."""
    from benchmarks import cli
    from benchmarks import suites

    args = cli.parse(["--quick", "--unit-types", "lstm", "gru"])

    def goals(cases):
        return {
            goal["name"]: (case, goal, goal["baseline"] or case.baseline)
            for case in cases
            for goal in case.targets
        }

    def layer(case):
        model = case.build()
        return next(x for x in model.layers if hasattr(x, "cell"))

    paper = goals(suites.gf_cases(args, suites.PAPER_SIZES))
    assert sorted(paper) == [
        "GF-gru 3x165 train / keras GRU 3x228 (equal parameters)",
        "GF-lstm 3x140 train / keras LSTM 3x191 (equal parameters)",
    ]
    for case, goal, base in paper.values():
        assert (goal["metric"], goal["direction"], goal["aim"]) == (
            "train_ratio",
            "<=",
            1.15,
        )
        ours = layer(case)
        assert ours.gate_inputs == "all_layers" and ours.feedback
        stacked = suites.PAPER_SIZES[ours.unit_type][0]
        assert [r.units for r in base.build().layers[1:-1]] == [stacked] * 3
        assert (
            list(ours.layer_units)
            == [suites.PAPER_SIZES[ours.unit_type][1]] * 3
        )

    equal = goals(suites.gf_cases(args))
    for unit_type, keras_layer in (("lstm", "LSTM"), ("gru", "GRU")):
        case, goal, base = equal[
            f"GF-{unit_type} own-layer train / keras stacked"
        ]
        assert (goal["metric"], goal["aim"]) == ("train_ratio", 1.25)
        assert layer(case).gate_inputs == "own_layer"
        assert base.name == f"keras {keras_layer} 3x16"
        case, goal, base = equal[
            f"GF-{unit_type} all-layer train / keras stacked: "
            "time ratio | FLOP ratio"
        ]
        assert (goal["metric"], goal["aim"]) == ("time_vs_flops", None)
        assert layer(case).gate_inputs == "all_layers"
        assert base.name == f"keras {keras_layer} 3x16"
    case, goal, base = equal["GF-lstm GFLOP/s / keras LSTM 3x16 GFLOP/s"]
    assert (goal["metric"], goal["direction"], goal["aim"]) == (
        "gflops_ratio",
        ">=",
        0.9,
    )
    assert layer(case).feedback and base.name == "keras LSTM 3x16"

    clockwork = goals(suites.clockwork_cases(args))
    for name, aim, jit, only in (
        ("ClockworkRNN train / SimpleRNN", 0.5, False, None),
        ("ClockworkRNN (XLA) train / SimpleRNN", 0.4, True, "tensorflow"),
    ):
        case, goal, base = clockwork[name]
        assert goal["aim"] == aim and case.only == only
        assert layer(case).jit_compile is jit
        assert isinstance(layer(base), keras.layers.SimpleRNN)


def test_targets_from_rows():
    """Each metric measured on synthetic rows (nothing timed)."""
    from benchmarks import report

    base = {"model": "base", "train_ms": 10.0, "infer_ms": 2.0}
    base.update(gflops=20.0, train_gflop=1.0)
    row = {"model": "ours", "train_ms": 4.0, "infer_ms": 3.0}
    row.update(gflops=18.0, train_gflop=1.3, dense_pct=30.0)
    skipped = {"model": "ours, XLA", "skipped": "TensorFlow-only: why"}
    goal = report.target("ours / base", 0.5)
    dense = report.target("ours dense", 0.4, None, ">=", "dense_fraction")
    gflops = report.target("ours GFLOP/s", 0.9, None, ">=", "gflops_ratio")
    infer = report.target("ours infer", 1.0, None, "<=", "infer_ratio")
    both = report.target("ours: time | FLOPs", None, metric="time_vs_flops")
    rows = [
        base,
        {
            **row,
            "targets": [
                report.measure(goal, row, base),
                report.measure(dense, row),
                report.measure(gflops, row, base),
                report.measure(infer, row, base),
                report.measure(both, row, base),
            ],
        },
        {**skipped, "targets": [report.measure(goal, skipped, base)]},
        {"model": "behind", "train_ms": 1.0, "targets": []},
    ]
    rows[3]["targets"] = [report.measure(goal, rows[3], skipped)]
    out = report.evaluate_targets({"suite": rows})
    assert [(g["name"], g["value"], g["met"]) for g in out] == [
        ("ours / base", 0.4, True),
        ("ours dense", 0.3, False),
        ("ours GFLOP/s", 0.9, True),
        ("ours infer", 1.5, False),
        ("ours: time | FLOPs", 0.4, None),
        ("ours / base", None, None),
        ("ours / base", None, None),
    ]
    assert out[4]["flop_ratio"] == pytest.approx(1.3)
    assert [g["baseline"] for g in out] == ["base", None] + ["base"] * 4 + [
        "ours, XLA"
    ]
    # A skipped baseline skips the target too, with its reason.
    assert out[5]["skipped"] == out[6]["skipped"] == "TensorFlow-only: why"
    text = report.targets_table(out)
    assert "| ours / base | 0.40 | <=0.5 | yes |" in text
    assert "| ours dense | 0.30 | >=0.4 | no |" in text
    assert "| ours GFLOP/s | 0.90 | >=0.9 | yes |" in text
    assert (
        "| ours: time \\| FLOPs | 0.40 \\| 1.30 | no aim | reported |" in text
    )
    assert "| ours / base | - | <=0.5 | skipped: TensorFlow-only |" in text
    assert report.targets_table([]) == ""


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"metric": "speed"}, "Received: metric='speed'"),
        ({"direction": "<"}, "Received: direction='<'"),
        ({"aim": None}, "Received: aim=None"),
        ({"aim": 1.0, "metric": "time_vs_flops"}, "Received: aim=1.0"),
    ],
)
def test_target_rejects_bad_arguments(kwargs, message):
    from benchmarks import report

    with pytest.raises(ValueError, match=message):
        report.target(**{"name": "x", "aim": 1.0, **kwargs})


def test_targets_side_by_side_per_setting():
    """A several-setting run prints each target once, with every
    setting's value beside the others."""
    from benchmarks import multi
    from benchmarks import report

    base = {"model": "base", "train_ms": 10.0, "train_gflop": 1.0}
    goal = report.target("ours / base", 1.15)
    both = report.target(
        "all-layer: time | FLOPs", None, metric="time_vs_flops"
    )
    xla = report.target("xla / base", 0.4)
    runs = {}
    for label, ms in (("tensorflow (oneDNN on)", 9.0), ("jax", 14.0)):
        row = {"model": "ours", "train_ms": ms, "train_gflop": 1.5}
        xla_row = {"model": "ours, XLA", "train_ms": 2.0}
        if label == "jax":
            xla_row = {"model": "ours, XLA", "skipped": "TensorFlow-only: y"}
        row["targets"] = [
            report.measure(goal, row, base),
            report.measure(both, row, base),
            report.measure(xla, xla_row, base),
        ]
        runs[label] = {"results": {"gf": [base, row]}}
    combined = {"settings": list(runs), "runs": runs}
    text = multi.targets_markdown(combined)
    assert "| target | aim | tensorflow (oneDNN on) | jax |" in text
    assert "| ours / base | <=1.15 | 0.90 yes | 1.40 no |" in text
    assert (
        "| all-layer: time \\| FLOPs | no aim | 0.90 \\| 1.50 | 1.40 \\| 1.50 |"
    ) in text
    assert (
        "| xla / base | <=0.4 | 0.20 yes | skipped: TensorFlow-only |" in text
    )


def test_inference_cases_time_predict_beside_the_builtins():
    """The infer suite: each of our models at each batch beside its
    built-in at the same batch, predict steps only."""
    from benchmarks import cli
    from benchmarks import suites

    args = cli.parse(["--quick", "--unit-types", "lstm", "gru"])
    assert args.infer_batches == [1, 4]
    cases = suites.inference_cases(args)
    assert not any(case.train for case in cases)
    names = {case.name: case for case in cases}
    for b in (1, 4):
        pairs = [
            ("GF-lstm 3x16 feedback", "keras LSTM 3x16"),
            ("GF-lstm 3x140 feedback", "keras LSTM 3x191"),
            ("GF-gru 3x16 feedback", "keras GRU 3x16"),
            ("GF-gru 3x165 feedback", "keras GRU 3x228"),
            ("ClockworkRNN(16, 4 modules)", "keras SimpleRNN(16)"),
            ("ClockworkRNN(16, 4 modules), XLA", "keras SimpleRNN(16)"),
        ]
        for ours, builtin in pairs:
            case = names[f"{ours}, B={b}"]
            assert case.ours and case.baseline is names[f"{builtin}, B={b}"]
            assert len(case.data[0]) == len(case.baseline.data[0]) == b
            assert case.extra["batch"] == b
    model = names["GF-gru 3x165 feedback, B=4"].build()
    assert model.predict_on_batch(
        names["GF-gru 3x165 feedback, B=4"].data[0]
    ).shape == (4, 8, 205)


def test_a_case_for_another_backend_is_a_skipped_row():
    from benchmarks import cli
    from benchmarks import harness

    def tiny():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    args = cli.parse(["--quick"])
    data = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    base = harness.Case("base", tiny, 12, data)
    cases = [
        base,
        harness.Case(
            "elsewhere", tiny, 12, data, base, only="none", reason="X: y"
        ),
        harness.Case("here", tiny, 12, data, base, ours=True),
    ]
    rows = harness.time_cases(cases, args, {"gflops": 1.0})
    assert [r["model"] for r in rows] == ["base", "elsewhere", "here"]
    assert rows[1] == {
        "model": "elsewhere",
        "skipped": "X: y",
        "baseline": "base",
        "ours": False,
        "targets": [],
    }
    assert rows[2]["ours"] and rows[2]["train_ms"] > 0
    text = harness.table(rows)
    assert "| elsewhere (skipped: X) | - |" in text
    assert f"Skipped on {keras.backend.backend()}: elsewhere: X: y." in text


def _logged_cases(log, prefix=""):
    """A suite of tiny cases whose models log their train steps: a
    baseline, one case without XLA and one marked as XLA-compiled."""
    from benchmarks import harness

    def build(name):
        def make():
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
            model.compile(optimizer="sgd", loss="mse")
            train = model.train_on_batch

            def logged(*args, **kwargs):
                log.append(name)
                return train(*args, **kwargs)

            model.train_on_batch = logged
            return model

        return make

    data = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    base = harness.Case(f"{prefix}base", build(f"{prefix}base"), 12, data)
    plain = harness.Case(
        f"{prefix}plain", build(f"{prefix}plain"), 12, data, base
    )
    xla = harness.Case(
        f"{prefix}xla", build(f"{prefix}xla"), 12, data, base, xla=True
    )
    return [base, plain, xla]


def test_xla_cases_are_timed_after_the_others_beside_their_baseline():
    """No case is timed after an XLA-compiled one (docs/performance.md:
    an XLA ClockworkRNN slowed every later model of its process); the
    XLA case's ratio is to its baseline timed again beside it."""
    from benchmarks import cli
    from benchmarks import harness

    args = cli.parse(["--quick", "--repeats", "2", "--warmup", "1"])
    log = []
    rows = harness.time_cases(_logged_cases(log), args, {"gflops": 1.0})
    first_xla = log.index("xla")
    assert "plain" not in log[first_xla:]
    assert set(log[:first_xla]) == {"base", "plain"}
    assert set(log[first_xla:]) == {"base", "xla"}
    assert [r["model"] for r in rows] == ["base", "plain", "xla"]
    assert rows[2]["xla"] and "xla" not in rows[1]
    assert rows[0]["train_ratio"] == 1.0 and rows[2]["train_ratio"] > 0
    assert "XLA rows were timed after every other case" in harness.table(rows)
    log.clear()
    only_first = harness.time_cases(
        _logged_cases(log), args, {"gflops": 1.0}, xla=(False,)
    )
    assert only_first[2] is None and "xla" not in log


def test_a_run_times_every_suite_before_any_xla_case(monkeypatch):
    from benchmarks import cli
    from benchmarks import suites

    log = []
    fake = {
        name: suites.Suite(
            lambda a, name=name: name,
            lambda a, name=name: _logged_cases(log, name + "-"),
        )
        for name in ("gf", "clockwork")
    }
    monkeypatch.setattr(cli, "SUITES", fake)
    argv = ["--quick", "--suite", "gf", "clockwork", "--repeats", "1"]
    results = cli.main(argv + ["--warmup", "1"])
    first_xla = log.index("gf-xla")
    assert set(log[:first_xla]) == {
        "gf-base",
        "gf-plain",
        "clockwork-base",
        "clockwork-plain",
    }
    assert set(log[first_xla:]) == {
        "gf-base",
        "gf-xla",
        "clockwork-base",
        "clockwork-xla",
    }
    assert list(results) == ["gf", "clockwork"]
    for name in results:
        assert [r["model"] for r in results[name]] == [
            f"{name}-base",
            f"{name}-plain",
            f"{name}-xla",
        ]
        assert results[name][2]["xla"]


def test_inference_only_rows_and_foreign_baselines():
    """An inference-only case times the predict step alone (its row has
    no train time); a baseline outside the suite is refused."""
    from benchmarks import cli
    from benchmarks import harness
    from benchmarks import report

    def tiny():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    args = cli.parse(["--quick", "--repeats", "1"])
    data = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    base = harness.Case("base", tiny, 6, data, train=False)
    goal = report.target("ours infer", 9.0, metric="infer_ratio")
    ours = harness.Case("ours", tiny, 6, data, base, [goal], train=False)
    rows = harness.time_cases([base, ours], args, {"gflops": 1.0})
    assert rows[0]["train_ms"] is None and rows[0]["infer_ratio"] == 1.0
    assert rows[1]["infer_ms"] > 0 and rows[1]["train_ratio"] is None
    (measured,) = rows[1]["targets"]
    assert measured["baseline"] == "base" and measured["value"] > 0
    text = harness.table(rows, (), harness.INFER_COLUMNS)
    assert text.startswith(
        "| model | params | infer ms | infer ex/s | GFLOP/s | % dense | "
        "infer x |"
    )
    assert "| base | 4 | " in text and "| 1.00 |" in text
    elsewhere = harness.Case("elsewhere", tiny, 6, data)
    with pytest.raises(ValueError, match="not a case of this suite"):
        harness.time_cases(
            [harness.Case("x", tiny, 6, data, elsewhere)], args, {}
        )
    foreign = report.target("x / elsewhere", 1.0, elsewhere)
    with pytest.raises(ValueError, match="not a case of this suite"):
        harness.time_cases(
            [harness.Case("x", tiny, 6, data, None, [foreign])], args, {}
        )
    with pytest.raises(TypeError, match="Received: baseline='base'"):
        harness.Case("x", tiny, 6, data, "base")


def test_settings_of_a_several_backend_run():
    from benchmarks import multi

    def labels(backends, onednn=None):
        return [label for label, _, _ in multi.settings(backends, onednn)]

    assert labels(["all"], "both") == [
        "tensorflow (oneDNN on)",
        "tensorflow (oneDNN off)",
        "jax",
        "torch",
    ]
    assert labels(["torch", "jax", "torch"]) == ["torch", "jax"]
    assert labels(None, "off") == ["tensorflow (oneDNN off)"]
    with pytest.raises(SystemExit):
        multi.settings(["jax"], "on")
    assert multi.requested(["--quick", "--backend", "jax"])
    assert multi.requested(["--onednn", "both"])
    assert not multi.requested(["--quick", "--suite", "gf"])


# A tiny suite for the several-process runs: each process imports its
# backend and compiles a few small models (about 10-25 s on 2 cores).
TINY = ["--quick", "--suite", "clockwork", "--cw-steps", "4", "--repeats", "1"]
# These runs set each process' backend themselves: the same test under
# every KERAS_BACKEND of the suite, so run once, in the TensorFlow run.
several_processes = layer_checks.apply_marks(
    [
        pytest.mark.slow,
        pytest.mark.backend_independent,
        pytest.mark.skipif(
            keras.backend.backend() != "tensorflow",
            reason="starts its own processes, the same under every backend: "
            "run once, under TensorFlow",
        ),
    ]
)


@several_processes
@layer_checks.apply_marks(
    layer_checks.needs(
        ["jax", "torch"],
        'the jax and torch extras: pip install -e ".[jax,torch]"',
    )
)
def test_jax_and_torch_side_by_side_without_tensorflow(tmp_path, monkeypatch):
    """`--backend jax torch`: one process per backend, each table beside
    its own built-ins, in a summary too; TensorFlow-only rows are skipped
    with the reason; and neither process imports TensorFlow (the GPU
    machine of gpu.sh has none)."""
    import json

    from benchmarks import cli

    blocked = tmp_path / "no_tensorflow" / "tensorflow"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ImportError('TensorFlow imported by a jax/torch run')\n"
    )
    path = [str(blocked.parent), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    argv = TINY + ["--backend", "jax", "torch"]
    combined = cli.main(argv + ["--markdown", str(md), "--json", str(js)])
    assert combined["settings"] == ["jax", "torch"]
    saved = json.loads(js.read_text())
    text = md.read_text()
    assert "## Summary: train step of our layers" in text
    assert "| model | compared with | jax x | ms | torch x | ms |" in text
    for backend in ("jax", "torch"):
        run_ = saved["runs"][backend]
        assert run_["returncode"] == 0 and run_["backend"] == backend
        assert f"keras {keras.__version__} ({backend})" in run_["machine"]
        rows = {r["model"]: r for r in run_["results"]["clockwork"]}
        assert rows["keras SimpleRNN(16)"]["train_ratio"] == 1.0
        assert rows["ClockworkRNN(16, 4 modules)"]["train_ms"] > 0
        xla = rows["ClockworkRNN(16, 4 modules), XLA"]
        assert xla["skipped"].startswith("TensorFlow-only")
        assert f"## {backend}\n" in text
        assert f"Skipped on {backend}: ClockworkRNN(16, 4 modules), XLA" in text
    summary = {row["model"]: row for row in saved["summary"]}
    assert set(summary) == {
        "ClockworkRNN(16, 4 modules)",
        "ClockworkRNN(16, 4 modules), XLA",
    }
    ours = summary["ClockworkRNN(16, 4 modules)"]["settings"]
    assert ours["jax"]["train_ratio"] > 0 and ours["torch"]["train_ms"] > 0
    xla_row = "| ClockworkRNN(16, 4 modules), XLA | keras SimpleRNN(16) |"
    assert xla_row + 2 * " skipped: TensorFlow-only | - |" in text
    assert saved["cpu"] in text.splitlines()[0]


@several_processes
def test_onednn_both_measures_two_tensorflow_settings(tmp_path):
    import json

    from benchmarks import cli
    from benchmarks import report

    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    argv = TINY + ["--onednn", "both"]
    cli.main(argv + ["--markdown", str(md), "--json", str(js)])
    saved = json.loads(js.read_text())
    on, off = "tensorflow (oneDNN on)", "tensorflow (oneDNN off)"
    assert saved["settings"] == [on, off]
    assert saved["cpu"] == report.cpu_model()
    text = md.read_text()
    assert text.startswith(f"# Benchmarks on {report.cpu_model()}, ")
    for label, value in ((on, "1"), (off, "0")):
        run_ = saved["runs"][label]
        assert run_["environment"]["TF_ENABLE_ONEDNN_OPTS"] == value
        assert f"TF_ENABLE_ONEDNN_OPTS={value})" in run_["machine"]
        rows = {r["model"]: r for r in run_["results"]["clockwork"]}
        # The XLA step is measured on TensorFlow.
        assert rows["ClockworkRNN(16, 4 modules), XLA"]["train_ms"] > 0
        names = [goal["name"] for goal in run_["targets"]]
        assert "ClockworkRNN (XLA) train / SimpleRNN" in names
        # Each setting's own targets table, and side by side.
        assert f"## {label}\n" in text
    assert text.count("### Targets (this run)") == 2
    assert f"| target | aim | {on} | {off} |" in text
    assert "| ClockworkRNN (XLA) train / SimpleRNN | <=0.4 | " in text


@several_processes
def test_a_failed_setting_fails_the_run_and_is_recorded(tmp_path):
    import json

    from benchmarks import multi

    # A setting of the backend the README's test command installs: the
    # child process exits with argparse's status 2 (an unknown suite).
    js = tmp_path / "bench.json"
    argv = ["--onednn", "off", "--suite", "nonesuch", "--json", str(js)]
    label = "tensorflow (oneDNN off)"
    with pytest.raises(
        SystemExit, match=rf"failed: {re.escape(label)} \(exit status 2\)"
    ):
        multi.main(argv)
    saved = json.loads(js.read_text())
    assert saved["runs"][label]["returncode"] == 2
    assert saved["runs"][label]["results"] == {}


def test_quick_keeps_sizes_given_on_the_command_line():
    from benchmarks import cli

    args = cli.parse(["--quick", "--cw-steps", "4", "--repeats", "1"])
    assert (args.cw_steps, args.repeats, args.cw_units) == (4, 1, 16)
    assert args.unit_types == ["lstm", "gru"]


tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="benchmarks.profile reads a TensorFlow profiler trace",
)


@pytest.mark.slow
@tensorflow_only
@pytest.mark.parametrize("unit_type", ["lstm", "gru"])
def test_profile_reports_where_a_train_step_spends_its_time(
    tmp_path, capsys, unit_type
):
    from benchmarks import profile

    profile.main(
        ["--unit-type", unit_type, "--units", "6", "--base-units", "7",
         "--batch", "2", "--steps", "5", "--vocab", "11", "--embed", "3",
         "--rounds", "1", "--profiled-steps", "2",
         "--logdir", str(tmp_path)]
    )  # fmt: skip
    out = capsys.readouterr().out
    gf, keras_part = out.split(f"## keras {unit_type} 3x7")
    assert f"## GF-{unit_type} 3x6 feedback" in gf
    # The forward and backward loops of the train step: one pair for the
    # whole GF stack, one per layer of Keras' stack.
    assert gf.count("while body") == 2
    assert keras_part.count("while body") == 6
    for part in (gf, keras_part):
        matmul_ms = float(part.split("  matmul ")[1].split("ms")[0])
        assert matmul_ms > 0
        assert "GRAD " in part and "FWD " in part
    assert list(tmp_path.glob("gf/plugins/profile/*/*.xplane.pb"))
    assert list(tmp_path.glob("keras/plugins/profile/*/*.xplane.pb"))


def test_profile_classes_of_op_types():
    from benchmarks import profile

    assert profile.op_class("MatMul") == "matmul"
    assert profile.op_class("_MklMatMul") == "matmul"
    assert profile.op_class("BatchMatMulV2") == "matmul"
    assert profile.op_class("SigmoidGrad") == "elementwise"
    assert profile.op_class("SplitV") == "concat/split/slice"
    assert profile.op_class("TensorListPushBack") == "loop bookkeeping"
    assert profile.op_class("While") is None
    assert profile.op_class("ResourceApplyAdam").startswith("other")


@pytest.mark.parametrize(
    "flag", ["--units", "--base-units", "--layers", "--batch", "--steps",
             "--vocab", "--embed", "--rounds", "--profiled-steps", "--top"]
)  # fmt: skip
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_profile_rejects_bad_sizes_by_name(capsys, flag, value):
    from benchmarks import profile

    with pytest.raises(SystemExit) as exit_info:
        profile.parse_args([flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: expected a positive integer." in err
    assert f"Received: {value!r}" in err


def _while_graph(body_ops, outside_ops, steps, gradient=False):
    """The graph of a tf.function: a `while` loop of `steps` iterations
    whose body applies `tanh` `body_ops` times, then `outside_ops` more
    `tanh` after the loop; with `gradient`, the result's gradient."""
    import tensorflow as tf

    def forward(x):
        def body(i, h):
            for _ in range(body_ops):
                h = tf.tanh(h)
            return i + 1, h

        _, y = tf.while_loop(lambda i, h: i < steps, body, (0, x))
        for _ in range(outside_ops):
            y = tf.tanh(y)
        return y

    @tf.function
    def fn(x):
        if not gradient:
            return forward(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = forward(x)
        return tape.gradient(y, x)

    x = tf.ones((2, 3))
    return fn.get_concrete_function(x).graph.as_graph_def()


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="TensorFlow graphs"
)
def test_graph_counts_loop_bodies_whole_and_other_nodes_per_step():
    """One more op in the loop body: one more op per step; one more op
    after the loop: 1/T more per step. With a gradient, what is added goes
    to the forward count (with the push that keeps its output) and its
    gradient to the backward count, in the loop and out."""
    from benchmarks import opcount

    steps = 10

    def counts(body_ops, outside_ops, gradient=False):
        graph = _while_graph(body_ops, outside_ops, steps, gradient)
        return opcount.graph_counts(graph, steps)

    base = counts(2, 1)
    assert base[1] == 0  # no gradient, nothing backward
    assert counts(3, 1)[0] - base[0] == pytest.approx(1.0)
    assert counts(2, 2)[0] - base[0] == pytest.approx(1 / steps)
    base = counts(2, 1, True)
    in_loop, outside = counts(3, 1, True), counts(2, 2, True)
    assert in_loop[0] - base[0] >= 2  # tanh and the push of its output
    assert in_loop[1] - base[1] >= 1  # TanhGrad, in the gradient loop
    assert 0 < outside[0] - base[0] < 1
    assert 0 < outside[1] - base[1] < 1


@layer_checks.apply_marks(
    layer_checks.needs(["torch"], 'the torch extra: pip install -e ".[torch]"')
)
def test_kernels_run_counts_operators_not_what_they_call():
    import torch

    from benchmarks import opcount

    a, b = torch.ones(4, 5), torch.ones(5, 6)
    assert opcount.kernels_run(lambda: torch.mm(a, b)) == 1
    assert opcount.kernels_run(lambda: torch.tanh(a @ b) + 1) == 3


def test_ops_suite_counts_ours_beside_keras_with_its_aims():
    """The ops suite: GF at the paper's sizes and ClockworkRNN beside their
    baselines, each with the aims (no more ops per step, three counts);
    counts on TensorFlow and torch, none on JAX (targets skipped)."""
    from benchmarks import cli
    from benchmarks import report
    from benchmarks import suites
    from benchmarks.harness import count_cases

    args = cli.parse(["--quick", "--unit-types", "lstm"])
    cases = [c for c in suites.ops_cases(args) if "3x16" not in c.name]
    names = [c.name for c in cases]
    assert names == [
        "keras LSTM 3x191",
        "GF-lstm 3x140 feedback",
        "keras SimpleRNN(16)",
        "ClockworkRNN(16, 4 modules)",
    ]
    rows = {row["model"]: row for row in count_cases(cases)}
    gf, cw = rows["GF-lstm 3x140 feedback"], rows["ClockworkRNN(16, 4 modules)"]
    assert [g["metric"] for g in gf["targets"]] == list(report.OPS)
    assert all(g["aim"] == 1.0 for g in gf["targets"] + cw["targets"])
    if keras.backend.backend() == "jax":
        assert gf["ops_predict"] is None
        assert all(g.get("skipped") for g in gf["targets"])
        return
    for row in rows.values():
        for key in report.OPS:
            assert row[key] > 0
    for key in report.OPS:
        base = rows["keras LSTM 3x191"][key]
        assert gf[key + "_x"] == pytest.approx(gf[key] / base)
    assert [g["value"] for g in gf["targets"]] == [
        gf[key + "_x"] for key in report.OPS
    ]
