import pathlib
import re

import keras_gfrnn

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_no_private_keras_or_tensorflow_imports():
    pattern = re.compile(r"(from|import) (keras\.src|tensorflow\.python)")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("keras_gfrnn", "examples", "benchmarks")
        for path in (ROOT / folder).rglob("*.py")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


def test_public_api_is_explicit():
    assert set(keras_gfrnn.__all__) >= {
        "GatedFeedbackRNN",
        "GatedFeedbackCell",
        "__version__",
    }
    for name in keras_gfrnn.__all__:
        assert hasattr(keras_gfrnn, name)
    assert re.fullmatch(r"\d+\.\d+\.\d+", keras_gfrnn.__version__)


def test_bundled_data_ships_with_attribution():
    data = ROOT / "keras_gfrnn" / "data"
    assert (data / "mnist_4k.npz").is_file()
    assert "LeCun" in (data / "README.md").read_text()
