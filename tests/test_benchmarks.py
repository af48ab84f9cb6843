"""The benchmark harness's analytic FLOP counts agree with the layers."""

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
