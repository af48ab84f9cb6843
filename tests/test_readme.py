"""README.md's Python blocks run as pasted, each with its own imports.

A block runs in a namespace of its own, except one whose first line is
`# the model of the block above`, which continues the block before it. A
block whose first line is `# KERAS_BACKEND=name` is for that backend and
runs in that backend's pass; the SavedModel and LiteRT exports run on
TensorFlow (the README says so); the tensorflow-datasets download of the
image pipeline block is replaced by `tfds.testing.mock_data`.
"""

import pathlib
import re

import keras
import numpy as np
import pytest

from tests import layer_checks

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
CONTINUES = "# the model of the block above"


def python_blocks():
    """(title of the section, code) of every ```python block, in order."""
    text = README.read_text()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S):
        titles = re.findall(r"^## (.+)$", text[: match.start()], re.M)
        blocks.append((titles[-1], match.group(1)))
    return blocks


def chains():
    """The blocks grouped into what runs in one namespace."""
    out = []
    for title, code in python_blocks():
        if code.startswith(CONTINUES):
            out[-1][1].append(code)
        else:
            out.append((title, [code]))
    return out


def _backend(codes):
    first = codes[0].splitlines()[0]
    if first.startswith("# KERAS_BACKEND="):
        return first.split("=", 1)[1].strip()
    if any("tf_saved_model" in c or '"litert"' in c for c in codes):
        return "tensorflow"
    return None


@pytest.mark.backend_independent
def test_every_block_is_collected():
    blocks = python_blocks()
    assert len(blocks) >= 6
    # Every block but a continuation imports what it uses from keras.
    for title, code in blocks:
        if code.startswith(CONTINUES):
            continue
        if "keras." in code:
            assert re.search(r"^import keras$", code, re.M), (title, code)


CHAINS = chains()


def _marks(codes):
    # A block for one backend runs in that backend's pass (a slow fit);
    # the others are docs checks, run in one pass.
    backend = _backend(codes)
    if backend is None:
        return [pytest.mark.backend_independent]
    if backend == "tensorflow":  # exports: a few seconds
        marks = [pytest.mark.backend_independent, pytest.mark.slow]
        if any('format="onnx"' in code for code in codes):
            marks += layer_checks.needs(
                ["onnx", "onnxruntime", "tf2onnx"], 'pip install -e ".[onnx]"'
            )
        return marks
    return [pytest.mark.slow]


@pytest.mark.parametrize(
    "codes",
    [
        pytest.param(
            codes,
            id=re.sub(r"\W+", "_", title).strip("_") + f"_{k}",
            marks=_marks(codes),
        )
        for k, (title, codes) in enumerate(CHAINS)
    ],
)
def test_block_runs_as_pasted(codes, tmp_path, monkeypatch):
    backend = _backend(codes)
    if backend is not None and backend != keras.backend.backend():
        pytest.skip(f"the block is for KERAS_BACKEND={backend}")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    try:
        for code in codes:
            if "load_image_dataset(" in code:
                import tensorflow_datasets as tfds

                with tfds.testing.mock_data(num_examples=8):
                    exec(compile(code, "README.md", "exec"), namespace)
                    batch = next(iter(namespace["train"]))
                assert tuple(batch[0].shape[1:]) == (32, 32, 3)
            else:
                exec(compile(code, "README.md", "exec"), namespace)
    finally:
        if "DataParallel" in "".join(codes):
            keras.distribution.set_distribution(None)
    if "probabilities" in namespace:  # the export block: 40 steps served
        probabilities = np.asarray(namespace["probabilities"])
        assert probabilities.shape == (2, 10)
        np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    if "model" in namespace:
        assert isinstance(namespace["model"], keras.Model)


@pytest.mark.slow
@layer_checks.TF_GRAPH
@pytest.mark.backend_independent
def test_export_block_serves_other_lengths_and_batches(tmp_path, monkeypatch):
    """The README's export block says "any batch size and sequence length":
    its served function takes them, with the model's numbers."""
    (codes,) = [c for _, c in CHAINS if "tf_saved_model" in "".join(c)]
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme"}
    exec(compile(codes[0], "README.md", "exec"), namespace)
    model, reloaded = namespace["model"], namespace["reloaded"]
    for shape in ((1, 3, 28), (5, 57, 28)):
        x = np.random.default_rng(0).random(shape, dtype="float32")
        np.testing.assert_allclose(
            reloaded.serve(x).numpy(),
            keras.ops.convert_to_numpy(model(x)),
            atol=1e-6,
        )


def _bash_block_after(heading_text):
    text = README.read_text()
    start = text.index(heading_text)
    match = re.compile(r"^```bash\n(.*?)^```$", re.M | re.S).search(text, start)
    return match.group(1)


@pytest.mark.backend_independent
def test_ci_runs_the_readme_test_command_first_in_a_fresh_virtualenv():
    """CI fails where a newcomer would: `.ci/run` makes a new virtualenv
    and runs the README's test command in it, verbatim, before it installs
    anything else."""
    setup, command = _bash_block_after("The tests, on TensorFlow").split("\n")[
        :2
    ]
    assert setup == "python3 -m venv .venv && . .venv/bin/activate"
    ci = (README.parent / ".ci" / "run").read_text()
    assert f"  {command}\n" in ci
    before = ci[: ci.index(command)]
    assert "python3 -m venv .venv" in before
    assert "pip install" not in before
    assert ci.index(command) < ci.index('".[jax,torch,onnx]"')
