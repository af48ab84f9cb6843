"""The benchmark harness's analytic FLOP counts agree with the layers."""

import os

import keras
import numpy as np
import pytest

from benchmarks import flops
from keras_gfrnn import ClockworkRNN
from keras_gfrnn import GatedFeedbackRNN
from keras_gfrnn import ReNet2D

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
    weights = layer.cell.fused_weights()
    # Every matmul of the loop, each weight element once.
    expected = matmul_flops(weights.input_kernels + weights.recurrent_kernels)
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

    from benchmarks import run

    args = run.parse(["--quick", "--unit-types", "tanh", "gru", "lstm"])
    assert args.unit_types == ["tanh", "gru", "lstm"]
    cases, _, _ = run.gf_cases(args, run.PAPER_SIZES)
    assert len(cases) == 6
    for case in cases:
        layers, units = map(int, re.search(r"(\d)x(\d+)", case.name).groups())
        model = case.build()
        rnns = [layer for layer in model.layers if hasattr(layer, "cell")]
        if case.name.startswith("GF"):
            assert list(rnns[0].layer_units) == [units] * layers, case.name
        else:
            assert [r.units for r in rnns] == [units] * layers, case.name
        flops = 3 * case.forward_flops
        assert flops > 0


def test_gpu_rows_build_the_models_they_name(monkeypatch):
    """With a GPU the suites add cuDNN-off rows; check them on any machine
    by pretending one is there."""
    from benchmarks import run

    monkeypatch.setattr(run, "gpu_present", lambda: True)
    args = run.parse(["--quick", "--unit-types", "lstm"])
    cases, _, _ = run.gf_cases(args)
    names = [case.name for case in cases]
    assert "keras LSTM 3x16, cuDNN off" in names
    off = cases[names.index("keras LSTM 3x16, cuDNN off")].build()
    rnns = [layer for layer in off.layers if hasattr(layer, "cell")]
    assert [r.use_cudnn for r in rnns] == [False] * 3
    cases, _, _ = run.renet_cases(args)
    by_name = {case.name: case for case in cases}
    model = by_name["ReNet2D(8, patch 2, GRU), cuDNN off"].build()
    assert model.layers[0].use_cudnn is False
    model = by_name[
        "hand-written Bidirectional(GRU) sweeps (8 units), cuDNN off"
    ].build()
    assert model.layers[0].vertical.forward_layer.use_cudnn is False


def test_quick_run_writes_markdown_and_json(tmp_path):
    import json

    from benchmarks import run

    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    argv = ["--quick", "--suite", "renet", "--markdown", str(md)]
    results = run.main(argv + ["--json", str(js)])
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
    """Every target names a baseline case of its own suite (or one that
    only a GPU run has) and an aim with a direction."""
    from benchmarks import run

    args = run.parse(["--quick", "--unit-types", "lstm", "gru", "tanh"])
    suites = [
        run.gf_cases(args)[0],
        run.clockwork_cases(args)[0],
        run.renet_cases(args)[0],
    ]
    names = []
    for cases in suites:
        in_suite = {case.name for case in cases}
        for case in cases:
            for goal in case.targets:
                names.append(goal["name"])
                assert goal["direction"] in ("<=", ">=")
                assert goal["aim"] > 0
                if goal["baseline"] is not None:
                    assert goal["baseline"] in in_suite or goal[
                        "baseline"
                    ].endswith("cuDNN off"), goal
    assert names == [
        "GF-lstm train / keras stacked",
        "GF-lstm train / keras stacked, cuDNN off",
        "GF-lstm train / naive cell",
        "GF-lstm GFLOP/s / dense matmul",
        "GF-gru train / keras stacked",
        "GF-gru train / keras stacked, cuDNN off",
        "GF-gru train / naive cell",
        "ClockworkRNN train / SimpleRNN",
        "ClockworkRNN (XLA) train / SimpleRNN",
        "ReNet2D train / hand-written sweeps",
    ]
    # The paper-size suite measures no target.
    paper, _, _ = run.gf_cases(args, run.PAPER_SIZES)
    assert not any(case.targets for case in paper)


def test_targets_from_rows():
    from benchmarks import report

    goal = report.target("ours / base", 0.5, "base")
    dense = report.target("ours dense", 0.4, None, ">=", "dense_fraction")
    gpu = report.target("ours / base on a GPU", 1.0, "base, cuDNN off")
    rows = [
        {"model": "base", "train_ms": 10.0},
        {
            "model": "ours",
            "train_ms": 4.0,
            "dense_pct": 30.0,
            "targets": [goal, dense, gpu],
        },
        {"model": "ours, XLA", "skipped": "TensorFlow-only: why"},
    ]
    rows[2]["targets"] = [report.target("xla / base", 0.5, "base")]
    out = report.evaluate_targets({"suite": rows})
    assert [(g["name"], g["value"], g["met"]) for g in out] == [
        ("ours / base", 0.4, True),
        ("ours dense", 0.3, False),
        ("xla / base", None, None),
    ]
    text = report.targets_table(out)
    assert "| ours / base | 0.40 | <=0.5 | yes |" in text
    assert "| ours dense | 0.30 | >=0.4 | no |" in text
    assert "| xla / base | - | <=0.5 | skipped: TensorFlow-only |" in text
    assert report.targets_table([]) == ""


def test_a_case_for_another_backend_is_a_skipped_row():
    from benchmarks import run

    def tiny():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    args = run.parse(["--quick"])
    cases = [
        run.Case("base", tiny, 12, "base"),
        run.Case("elsewhere", tiny, 12, "base", only="none", reason="X: y"),
        run.Case("here", tiny, 12, "base", ours=True),
    ]
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    rows = run.time_cases(cases, x, y, args, {"gflops": 1.0})
    assert [r["model"] for r in rows] == ["base", "elsewhere", "here"]
    assert rows[1] == {
        "model": "elsewhere",
        "skipped": "X: y",
        "baseline": "base",
        "ours": False,
        "targets": [],
    }
    assert rows[2]["ours"] and rows[2]["train_ms"] > 0
    text = run.table(rows)
    assert "| elsewhere (skipped: X) | - |" in text
    assert f"Skipped on {keras.backend.backend()}: elsewhere: X: y." in text


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
several_processes = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="starts its own processes, the same under every backend: run "
    "once, under TensorFlow",
)


@several_processes
def test_jax_and_torch_side_by_side_without_tensorflow(tmp_path, monkeypatch):
    """`--backend jax torch`: one process per backend, each table beside
    its own built-ins, in a summary too; TensorFlow-only rows are skipped
    with the reason; and neither process imports TensorFlow (the GPU
    machine of gpu.sh has none)."""
    import json

    from benchmarks import run

    blocked = tmp_path / "no_tensorflow" / "tensorflow"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ImportError('TensorFlow imported by a jax/torch run')\n"
    )
    path = [str(blocked.parent), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in path if p))
    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    argv = TINY + ["--backend", "jax", "torch"]
    combined = run.main(argv + ["--markdown", str(md), "--json", str(js)])
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

    from benchmarks import report
    from benchmarks import run

    md, js = tmp_path / "bench.md", tmp_path / "bench.json"
    argv = TINY + ["--onednn", "both"]
    run.main(argv + ["--markdown", str(md), "--json", str(js)])
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


@several_processes
def test_a_failed_setting_fails_the_run_and_is_recorded(tmp_path):
    import json

    from benchmarks import multi

    js = tmp_path / "bench.json"
    argv = ["--backend", "torch", "--suite", "nonesuch", "--json", str(js)]
    with pytest.raises(SystemExit, match=r"failed: torch \(exit status 2\)"):
        multi.main(argv)
    saved = json.loads(js.read_text())
    assert saved["runs"]["torch"]["returncode"] == 2
    assert saved["runs"]["torch"]["results"] == {}


def test_quick_keeps_sizes_given_on_the_command_line():
    from benchmarks import run

    args = run.parse(["--quick", "--cw-steps", "4", "--repeats", "1"])
    assert (args.cw_steps, args.repeats, args.cw_units) == (4, 1, 16)
    assert args.unit_types == ["lstm", "gru"]
