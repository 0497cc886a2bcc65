"""The Bayesian digits example, run end to end with small settings."""

import jax
import pytest

from tests.examples.helpers import load_example


@pytest.mark.slow
def test_bayesian_digits_quick_run(tmp_path, capsys):
    plot = tmp_path / "bayesian.png"
    # Run as a user runs it: JAX's default (standard) dtype promotion.
    with jax.numpy_dtype_promotion("standard"):
        result = load_example("bayesian_digits").main(
            ["--steps", "250", "--hidden", "64", "--samples", "16", "--plot", str(plot)]
        )
    for method in ("MC dropout", "Bayes by backprop"):
        assert result[f"{method} accuracy"] >= 0.9
        # Pure noise is flagged by both methods (the full run: 0.60 vs 0.07 and 1.06 vs 0.16 nats).
        assert result[f"{method} entropy noise"] > 2 * result[f"{method} entropy test"]
        assert result[f"{method} mutual information noise"] > result[f"{method} mutual information test"]
    # The overconfident MLP is softened by the fitted temperature, and its test ECE falls.
    assert result["temperature"] > 1.0
    assert result["ece after"] < result["ece before"]
    assert plot.stat().st_size > 20_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "fitted temperature" in out and "mean predictive entropy" in out
