"""The CNN digits example, run end to end with its default settings."""

import jax
import pytest

from tests.examples.helpers import load_example


@pytest.mark.slow
def test_cnn_digits_reaches_98_percent(tmp_path, capsys):
    plot = tmp_path / "cnn.png"
    with jax.numpy_dtype_promotion("standard"):  # as users run it (JAX's default promotion)
        result = load_example("cnn_digits").main(["--quiet", "--plot", str(plot)])
    assert result["test_accuracy"] >= 0.98  # the example's stated bar, at its defaults
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert "test accuracy:" in capsys.readouterr().out
