"""The manual backprop example, run end to end with a short training run."""

import jax
import pytest

from tests.examples.helpers import load_example


@pytest.mark.slow
def test_hand_and_tape_gradients_equal_jax_grad_to_float64_precision(tmp_path, capsys):
    plot = tmp_path / "backprop.png"
    with jax.numpy_dtype_promotion("standard"):  # as users run it (JAX's default promotion)
        result = load_example("manual_backprop").main(["--steps", "150", "--plot", str(plot)])
    # float64 rounding: a few ulps of the largest gradient entry, per parameter
    assert result["hand_max_rel"] <= 1e-12 and result["tape_max_rel"] <= 1e-12
    assert result["hand_max_abs"] <= 1e-14 and result["tape_max_abs"] <= 1e-14
    # the three training runs follow the same loss curve (rounding only), and the loss falls
    assert result["curve_drift"] <= 1e-10
    losses = result["losses"]["by hand (fdl.backprop)"]
    assert sum(losses[-20:]) / 20 < 0.5 * losses[0]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "hand max rel" in out and "plot saved to" in out
