"""The attribution example, run end to end (shortened)."""

import jax
import pytest

from tests.examples.helpers import load_example


@pytest.mark.slow
def test_explain_digits_maps_and_sanity_check(tmp_path, capsys):
    plot = tmp_path / "explain.png"
    with jax.numpy_dtype_promotion("standard"):  # as users run it (JAX's default promotion)
        result = load_example("explain_digits").main(["--quick", "--plot", str(plot)])
    assert result["accuracy"] > 0.9, result
    assert result["completeness gap"] < 0.05, result  # 32 steps in the quick run
    # the gradient maps depend on the weights; the input-multiplied ones much less
    assert result["saliency randomization correlation"] < 0.5, result
    assert result["SmoothGrad randomization correlation"] < 0.5, result
    assert result["gradient x input randomization correlation"] > result["saliency randomization correlation"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert "sanity check" in capsys.readouterr().out
