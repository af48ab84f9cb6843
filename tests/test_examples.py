"""The example scripts: their flags, start-up output, warnings and errors
(examples/_common.py and every script's `parse`)."""

import os
import subprocess
import sys
import warnings

import keras
import pytest

from tests import layer_checks

ROOT = os.path.join(os.path.dirname(__file__), "..")
EXAMPLES = os.path.join(ROOT, "examples")


def import_example(name):
    """The module examples/`name`.py, imported as the tests import it."""
    sys.path.insert(0, EXAMPLES)
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


common = import_example("_common")
SCRIPTS = {
    name: import_example(name)
    for name in (
        "char_lm",
        "clockwork_generation",
        "learning_to_execute",
        "renet_classifier",
        "sequential_mnist",
    )
}

BAD_FLAGS = [
    # Ended in ZeroDivisionError.
    ("char_lm", "--batch-size", "0"),
    ("char_lm", "--seq-len", "0"),
    # Ran silently with 140 units / 3 layers.
    ("char_lm", "--units", "0"),
    ("char_lm", "--layers", "0"),
    ("char_lm", "--epochs", "0"),
    ("char_lm", "--steps-per-epoch", "0"),
    ("char_lm", "--eval-chars", "-5"),
    ("char_lm", "--learning-rate", "0"),
    ("char_lm", "--learning-rate", "nan"),
    ("char_lm", "--clipnorm", "-1"),
    ("char_lm", "--temperature", "0"),
    ("char_lm", "--sample-length", "-1"),
    ("char_lm", "--seed", "-1"),
    ("char_lm", "--units", "many"),
    # ValueError: low >= high; RecursionError; max() of an empty sequence.
    ("learning_to_execute", "--max-length", "0"),
    ("learning_to_execute", "--max-nesting", "-1"),
    ("learning_to_execute", "--max-nesting", "0"),
    ("learning_to_execute", "--batch-size", "0"),
    ("learning_to_execute", "--valid-programs", "0"),
    ("learning_to_execute", "--train-programs", "0"),
    ("learning_to_execute", "--test-per-cell", "0"),
    ("learning_to_execute", "--steps", "0"),
    ("learning_to_execute", "--units", "0"),
    ("learning_to_execute", "--embed", "0"),
    # Ran silently with 32 units under --quick.
    ("sequential_mnist", "--units", "0"),
    ("sequential_mnist", "--layers", "0"),
    ("sequential_mnist", "--dropout", "1"),
    ("sequential_mnist", "--epochs", "0"),
    ("sequential_mnist", "--batch-size", "-3"),
    ("renet_classifier", "--epochs", "0"),
    ("renet_classifier", "--batch-size", "0"),
    ("renet_classifier", "--dropout", "1.5"),
    ("renet_classifier", "--corruption", "1"),
    ("renet_classifier", "--patience", "-1"),
    ("renet_classifier", "--learning-rate", "-0.1"),
    ("renet_classifier", "--distribute", "everywhere"),
    ("clockwork_generation", "--steps", "0"),
    ("clockwork_generation", "--learning-rate", "inf"),
    ("clockwork_generation", "--seed", "x"),
]


@pytest.mark.parametrize("name,flag,value", BAD_FLAGS)
@pytest.mark.parametrize("quick", [False, True])
def test_bad_flags_are_reported_by_name(name, flag, value, quick, capsys):
    argv = [flag, value] + (["--quick"] if quick else [])
    with pytest.raises(SystemExit) as info:
        SCRIPTS[name].main(argv)
    assert info.value.code == 2  # argparse's usage error
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err, err
    assert repr(value) in err or "invalid choice" in err, err


def test_argument_types():
    assert common.positive_int("3") == 3
    assert common.non_negative_int("0") == 0
    assert common.positive_float("1e-3") == 1e-3
    assert common.probability("0") == 0.0
    assert common.probability("0.5") == 0.5
    for kind, text in (
        (common.positive_int, "0"),
        (common.positive_int, "1.5"),
        (common.non_negative_int, "-1"),
        (common.positive_float, "0"),
        (common.positive_float, "-inf"),
        (common.probability, "1"),
        (common.probability, "-0.1"),
        (common.probability, "nan"),
    ):
        with pytest.raises(Exception, match=f"Received: '{text}'") as info:
            kind(text)
        assert type(info.value).__name__ == "ArgumentTypeError"


def test_explicit_flags_win_over_quick():
    lm = SCRIPTS["char_lm"]
    quick = lm.parse(["--quick"])
    assert (quick.units, quick.layers, quick.batch_size) == (16, 2, 4)
    assert (quick.epochs, quick.steps_per_epoch, quick.seq_len) == (2, 3, 20)
    assert quick.eval_chars == 400
    args = lm.parse(["--quick", "--units", "8", "--epochs", "3"])
    assert (args.units, args.layers, args.epochs) == (8, 2, 3)
    mnist = SCRIPTS["sequential_mnist"]
    assert (mnist.parse(["--quick"]).units, mnist.parse([]).units) == (32, 64)
    assert mnist.parse(["--quick", "--units", "16"]).units == 16
    l2e = SCRIPTS["learning_to_execute"]
    assert l2e.parse(["--quick"]).steps == 4
    assert l2e.parse(["--quick", "--steps", "6"]).steps == 6
    assert l2e.parse([]).steps == 3000
    cw = SCRIPTS["clockwork_generation"]
    assert (cw.parse(["--quick"]).steps, cw.parse([]).steps) == (20, 1500)
    renet = SCRIPTS["renet_classifier"]
    assert (renet.parse(["--quick"]).epochs, renet.parse([]).epochs) == (2, 40)


def test_char_lm_sizes_take_explicit_values():
    """`--units` / `--layers` were read as `value or default`."""
    lm = SCRIPTS["char_lm"]
    args = lm.parse(["--model", "gf", "--units", "1", "--layers", "1"])
    assert lm.model_sizes(args) == (1, 1)


def test_native_log_filter():
    text = (
        "WARNING: All log messages before absl::InitializeLog() is called "
        "are written to STDERR\n"
        "I0000 00:00:1795449473.731355   17085 port.cc:153] oneDNN custom "
        "operations are on.\n"
        "I0000 00:00:1795449478.594871   17100 cpu_feature_guard.cc:227] "
        "This TensorFlow binary is optimized\n"
        "To enable the following instructions: AVX2, rebuild TensorFlow.\n"
        "E0000 00:00:1795449473.731802   17085 cuda_dnn.cc:31] failed\n"
    )
    assert common.filter_native_log(text, min_level=3) == ""
    assert (
        common.filter_native_log(text, min_level=2)
        == text.splitlines(keepends=True)[-1]
    )
    assert common.filter_native_log(text, min_level=0) == text
    python = "x.py:3: UserWarning: kept\n  warnings.warn('kept')\n"
    assert common.filter_native_log(python + text, 3) == python
    assert common.filter_native_log(text + python, 3) != python  # continues


def _run(script, *argv, env=None):
    env = dict(os.environ, **(env or {}))
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the script sets it
    return subprocess.run(
        [sys.executable, os.path.join(EXAMPLES, script), *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )


def test_no_tensorflow_start_up_log(tmp_path):
    result = _run(
        "sequential_mnist.py", "--quick", "--export-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Test accuracy" in result.stdout
    for noise in (
        "cuda_",
        "cudart_stub",
        "oneDNN custom operations",
        "cpu_feature_guard",
        "absl::InitializeLog",
    ):
        assert noise not in result.stderr, result.stderr


def test_missing_tensorflow_datasets_is_reported(monkeypatch, capsys):
    """`--dataset mnist` without the `datasets` extra: the loader's
    message and exit status 2, no traceback."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    mnist = SCRIPTS["sequential_mnist"]
    assert mnist.main(["--dataset", "mnist", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: load_mnist needs tensorflow-datasets")
    assert 'pip install "keras-gfrnn[datasets]"' in err


def test_missing_tensorflow_datasets_in_a_fresh_process(tmp_path):
    hide = (
        "import os, runpy, sys; sys.modules['tensorflow_datasets'] = None; "
        "sys.argv = sys.argv[1:]; "
        "sys.path.insert(0, os.path.dirname(sys.argv[0])); "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            hide,
            os.path.join(EXAMPLES, "sequential_mnist.py"),
            "--dataset",
            "mnist",
            "--export-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr
    assert 'pip install "keras-gfrnn[datasets]"' in result.stderr


@layer_checks.tensorflow_only("the tf.data input pipeline's warning")
def test_renet_classifier_fit_has_no_shuffle_warning(tmp_path):
    renet = SCRIPTS["renet_classifier"]
    argv = ["--quick", "--epochs", "1"]
    argv += ["--backup-dir", str(tmp_path / "backup")]
    argv += ["--export-dir", str(tmp_path / "export")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert renet.main(argv) == 0
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "shuffle" in m], messages


def test_distribute_needs_tensorflow(capsys):
    renet = SCRIPTS["renet_classifier"]
    if keras.backend.backend() == "tensorflow":
        assert renet.parse(["--distribute", "mirrored"]).distribute == (
            "mirrored"
        )
        return
    with pytest.raises(SystemExit):
        renet.parse(["--distribute", "mirrored"])
    assert "needs KERAS_BACKEND=tensorflow" in capsys.readouterr().err
