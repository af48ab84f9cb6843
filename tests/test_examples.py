"""The example scripts: their flags, start-up output, warnings and errors
(examples/_common.py and every script's `parse`)."""

import argparse
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from keras_gfrnn.datasets import install_command
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
    # A stateful model of a fixed batch: multi_worker only.
    ("char_lm", "--distribute", "mirrored"),
    ("clockwork_generation", "--steps", "0"),
    ("clockwork_generation", "--learning-rate", "inf"),
    ("clockwork_generation", "--seed", "x"),
    # Issue 26.7: past the package's bounds, these failed after loading the
    # data (seed: in load_image_dataset or keras.utils.set_random_seed;
    # layers: GatedFeedbackRNN's MAX_LAYERS).
    ("renet_classifier", "--seed", "2147483648"),
    ("char_lm", "--seed", "4294967296"),
    ("sequential_mnist", "--layers", "65"),
    ("char_lm", "--layers", "65"),
    ("learning_to_execute", "--layers", "65"),
    # IndexError (pop from an empty list) while generating the data.
    ("learning_to_execute", "--max-nesting", "26"),
]


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
def test_flag_bounds_are_the_package_bounds():
    from keras_gfrnn._validation import MAX_SEED
    from keras_gfrnn.gated_feedback_rnn import MAX_LAYERS

    assert common.seed_int(str(MAX_SEED)) == MAX_SEED
    assert common.layer_count(str(MAX_LAYERS)) == MAX_LAYERS
    for convert, value in (
        (common.seed_int, MAX_SEED + 1),
        (common.layer_count, MAX_LAYERS + 1),
    ):
        with pytest.raises(argparse.ArgumentTypeError):
            convert(str(value))


@pytest.mark.backend_independent
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


@pytest.mark.backend_independent
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


def test_clockwork_generation_compares_equal_parameter_counts():
    """The three models' counts, ClockworkRNN's as the paper counts it
    (only the blocks of W_H that the modules read)."""
    cw = SCRIPTS["clockwork_generation"]
    for kind, count in cw.PARAMETERS.items():
        assert cw.build(kind, cw.SIZES[kind]).count_params() == count
    # 5 modules of 8: 40 inputs weights, 8 * 8 * 15 recurrent, 40 biases,
    # and the Dense output's 41.
    assert cw.PARAMETERS["ClockworkRNN"] == 40 + 64 * 15 + 40 + 41


@pytest.mark.backend_independent
def test_char_lm_sizes_take_explicit_values():
    """`--units` / `--layers` were read as `value or default`."""
    lm = SCRIPTS["char_lm"]
    args = lm.parse(["--model", "gf", "--units", "1", "--layers", "1"])
    assert lm.model_sizes(args) == (1, 1)


@pytest.mark.backend_independent
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


# Python's warnings printed every time, not once per place.
ALL_WARNINGS = {"PYTHONWARNINGS": "always"}


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


@pytest.mark.slow
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


@pytest.mark.backend_independent
def test_missing_tensorflow_datasets_is_reported(monkeypatch, capsys):
    """`--dataset mnist` without the `datasets` extra: the loader's
    message and exit status 2, no traceback."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    mnist = SCRIPTS["sequential_mnist"]
    assert mnist.main(["--dataset", "mnist", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: load_mnist needs tensorflow-datasets")
    assert install_command("datasets") in err


@pytest.mark.backend_independent
def test_no_download_fails_at_once(capsys, tmp_path):
    """`--no-download` with nothing prepared in `--data-dir`: the clear
    message and exit status 2 in seconds, for both examples that read
    tensorflow-datasets."""
    runs = [
        ("sequential_mnist", ["--dataset", "mnist"], "'mnist'"),
        ("renet_classifier", ["--dataset", "cifar10"], "'cifar10'"),
    ]
    for script, argv, name in runs:
        argv = argv + ["--data-dir", str(tmp_path), "--no-download"]
        assert SCRIPTS[script].main(argv + ["--quick"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ")
        assert f"{name} is not prepared in {tmp_path}" in err
        assert "(download=False)" in err


@pytest.mark.slow
@pytest.mark.backend_independent
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
    assert install_command("datasets") in result.stderr


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


@pytest.mark.parametrize("name", ["renet_classifier", "char_lm"])
def test_multi_worker_needs_tensorflow_and_tf_config(name, monkeypatch, capsys):
    script = SCRIPTS[name]
    argv = ["--quick", "--distribute", "multi_worker"]
    good = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}}
    good["task"] = {"type": "worker", "index": 1}
    monkeypatch.setenv("TF_CONFIG", json.dumps(good))
    if keras.backend.backend() != "tensorflow":
        with pytest.raises(SystemExit) as info:
            script.parse(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "--distribute multi_worker (tf.distribute) needs " in err
        assert "KERAS_BACKEND=tensorflow" in err
        return
    assert script.parse(argv).distribute == "multi_worker"
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(SystemExit) as info:
        script.parse(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--distribute multi_worker needs the TF_CONFIG environment" in err
    for bad in (
        "not json",
        '{"cluster": {}}',
        '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": '
        '"worker", "index": 1}}',
        '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": '
        '"chief", "index": 0}}',
    ):
        monkeypatch.setenv("TF_CONFIG", bad)
        with pytest.raises(SystemExit) as info:
            script.parse(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert "--distribute multi_worker: TF_CONFIG must be JSON" in err
        assert f"Received: TF_CONFIG={bad!r}" in err


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_two_workers(script, argv, tmp_path, timeout=180):
    """Runs examples/`script` as worker 0 and 1 of a cluster on 127.0.0.1;
    worker i's temporary files go to tmp_path/tmp{i}. Returns the logs."""
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes, logs = [], []
    for index in range(2):
        config = {"cluster": {"worker": workers}}
        config["task"] = {"type": "worker", "index": index}
        temporary = tmp_path / f"tmp{index}"
        temporary.mkdir()
        env = dict(os.environ, TF_CONFIG=json.dumps(config))
        env.update(TMPDIR=str(temporary), KERAS_BACKEND="tensorflow")
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
        logs.append(tmp_path / f"worker{index}.log")
        with open(logs[-1], "w") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, os.path.join(EXAMPLES, script), *argv],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=ROOT,
                )
            )
    try:
        for process in processes:
            process.wait(timeout=timeout)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    texts = [log.read_text() for log in logs]
    for process, text in zip(processes, texts):
        assert process.returncode == 0, text[-3000:]
    return texts


def _worker_file(tmp_path, index, name):
    """The one file or folder `name` that worker `index` wrote to its
    temporary folder."""
    (path,) = glob.glob(str(tmp_path / f"tmp{index}" / "worker*" / name))
    return path


def _assert_trained_alike(first, second, initial):
    """Equal weights on both workers, a few training steps away from
    `initial`: not equal (trained), closer than two Glorot draws of the
    models' dense kernels (the same initialisation; an optimizer step of
    Adam or RMSprop at the learning rates here moves a weight < 0.01)."""
    assert len(first) == len(second) == len(initial)
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    moved = max(float(np.max(np.abs(a - w))) for a, w in zip(first, initial))
    assert 0 < moved < 0.05, moved


@pytest.mark.slow
@layer_checks.tensorflow_only("tf.distribute.MultiWorkerMirroredStrategy")
def test_renet_classifier_multi_worker_trains_alike(tmp_path):
    import tensorflow as tf

    renet = SCRIPTS["renet_classifier"]
    export = tmp_path / "export"
    argv = ["--quick", "--epochs", "1", "--distribute", "multi_worker"]
    argv += ["--export-dir", str(export)]
    argv += ["--backup-dir", str(tmp_path / "backup")]
    logs = _run_two_workers("renet_classifier.py", argv, tmp_path)
    for log in logs:
        assert "Strategy over 2 replicas" in log, log
        assert "test accuracy" in log, log
    first, second = (
        tf.saved_model.load(path).trainable_variables
        for path in (str(export), _worker_file(tmp_path, 1, ""))
    )
    assert [v.name for v in first] == [v.name for v in second]
    keras.utils.set_random_seed(0)
    initial = renet.build_model("mnist_sample", width=0.25).trainable_weights
    assert [v.shape for v in first] == [tuple(w.shape) for w in initial]
    _assert_trained_alike(
        [v.numpy() for v in first],
        [v.numpy() for v in second],
        [keras.ops.convert_to_numpy(w) for w in initial],
    )


@pytest.mark.slow
@layer_checks.tensorflow_only("tf.distribute.MultiWorkerMirroredStrategy")
def test_char_lm_multi_worker_trains_alike(tmp_path):
    lm = SCRIPTS["char_lm"]
    out = tmp_path / "lm"
    argv = ["--quick", "--epochs", "1", "--steps-per-epoch", "2"]
    argv += ["--units", "8", "--out-dir", str(out)]
    logs = _run_two_workers(
        "char_lm.py", argv + ["--distribute", "multi_worker"], tmp_path
    )
    for log in logs:
        assert "final test BPC" in log, log
    paths = [str(out / "model.keras"), _worker_file(tmp_path, 1, "model.keras")]
    first, second = (keras.saving.load_model(p).get_weights() for p in paths)
    with open(lm.vocab_path(paths[0])) as f:
        vocab = lm.Vocabulary(json.load(f)["symbols"])
    args = lm.parse(argv)
    keras.utils.set_random_seed(0)
    initial = lm.build_model(len(vocab), args, args.batch_size).get_weights()
    _assert_trained_alike(first, second, initial)


# ------------------------------------------------- kill and resume (SIGKILL)
def run_killed_and_resumed(script, argv, kill_after_epoch):
    """Runs examples/`script` with `argv`, killed by SIGKILL at the end of
    epoch `kill_after_epoch` (`_common.kill_hook`, after the run's backup),
    then again to the end. Returns both outputs."""
    killed = _run(
        script, *argv, env={common.KILL_AFTER_EPOCH: str(kill_after_epoch)}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _run(script, *argv)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return killed.stdout, resumed.stdout


def _renet_epoch_lines(stdout):
    """Keras' line of each epoch (verbose=2), without its timings."""
    lines = re.findall(r"^\d+/\d+ - .*$", stdout, flags=re.MULTILINE)
    return [re.sub(r"^.*?step - ", "", line) for line in lines]


def _renet_accuracy_line(stdout):
    (line,) = re.findall(r"^mnist_sample, preset small: .*$", stdout, re.M)
    return line.split("; training")[0]


def _saved_model_weights(path):
    import tensorflow as tf

    return [v.numpy() for v in tf.saved_model.load(path).trainable_variables]


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="on torch the example saves no SavedModel (see its `export`)",
)
def test_renet_classifier_resumes_exactly_after_sigkill(tmp_path):
    """Killed (SIGKILL) after epoch 2's backup and run again, the run ends
    with the uninterrupted run's weights, bit for bit, and its epoch 3 and
    accuracies. At this learning rate and seed epoch 3's validation loss
    is worse than epoch 2's on this project's CPU (the seeds differ by
    backend, whose initial weights differ; elsewhere a warning says when
    it is not): early stopping restores epoch 2's weights at the end
    (its best weights must survive the kill); epoch 3 reads its own
    shuffle, augmentation and dropout draws, not those of a first
    epoch. On TensorFlow the run shows no Keras warning about `shuffle`
    (every Python warning printed)."""
    seed = {"tensorflow": "2", "jax": "4"}[keras.backend.backend()]
    argv = ["--quick", "--epochs", "3", "--patience", "2"]
    argv += ["--learning-rate", "0.03", "--seed", seed]

    def paths(name):
        return [
            "--backup-dir",
            str(tmp_path / name / "backup"),
            "--export-dir",
            str(tmp_path / name / "export"),
        ]

    whole = _run(
        "renet_classifier.py", *argv, *paths("whole"), env=ALL_WARNINGS
    )
    assert whole.returncode == 0, whole.stderr[-3000:]
    if keras.backend.backend() == "tensorflow":
        # Keras' warning about `shuffle` with a tf.data pipeline (which
        # shuffles itself) stays away: fit gets shuffle=False.
        assert "shuffle" not in whole.stderr, whole.stderr[-3000:]
    killed, resumed = run_killed_and_resumed(
        "renet_classifier.py", argv + paths("resumed"), kill_after_epoch=2
    )
    expected = _renet_epoch_lines(whole.stdout)
    assert len(expected) == 3, whole.stdout
    losses = [float(re.search(r"val_loss: ([\d.]+)", e)[1]) for e in expected]
    if losses[2] <= losses[1]:
        # Other CPUs can train another trajectory from the same seed: the
        # weights must still be equal, but the kill then does not exercise
        # early stopping's restored best weights. Say so in the report.
        warnings.warn(
            "renet_classifier's epoch 3 was its best here: the resume test "
            f"did not cover early stopping's best weights ({expected})"
        )
    # Keras prints an epoch's line after the callbacks: epoch 1's only.
    assert _renet_epoch_lines(killed) == expected[:1]
    assert _renet_epoch_lines(resumed) == expected[2:]
    assert _renet_accuracy_line(resumed) == _renet_accuracy_line(whole.stdout)
    assert not (tmp_path / "resumed" / "backup").exists()  # run complete
    first, second = (
        _saved_model_weights(str(tmp_path / name / "export"))
        for name in ("whole", "resumed")
    )
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
