"""The signal-propagation example, run end to end with small settings."""

import jax
import numpy as np
import pytest

from tests.examples.helpers import load_example


@pytest.mark.slow
def test_signal_propagation_example(tmp_path, capsys):
    plot = tmp_path / "sp.png"
    args = ["--depth", "20", "--width", "64", "--samples", "64", "--steps", "20", "--hidden", "32"]
    with jax.numpy_dtype_promotion("standard"):  # as users run it (JAX's default promotion)
        results = load_example("signal_propagation").main([*args, "--plot", str(plot)])
    # log(q^19 / q^0) = 19 log(c/2) + a random walk of variance <= 5 * 19 / 64 (see the math tests)
    tol = 4 * np.sqrt(5 * 19 / 64)
    for name, r in results["depth"].items():
        predicted = np.log(r["predicted_factor"])
        assert abs(np.log(r["activation_factor"]) - predicted) < tol, name
        assert abs(np.log(r["gradient_factor"]) - predicted) < tol, name
    assert results["depth"]["N(0, 0.01²)"]["activation_factor"] < 1e-20  # collapses: (0.0032)^19 = 4e-48
    assert results["depth"]["N(0, 1)"]["activation_factor"] > 1e20  # explodes: 32^19 = 4e28
    time = results["time"]
    elman, lstm = time["Elman, W_h orthogonal × 0.5"], time["LSTM (forget bias 1)"]
    assert elman["slope"] < np.log(0.5)  # geometric decay, at least the bound's rate
    assert lstm["ratio"] > 1e3 * elman["ratio"]  # measured at these settings: 6e-3 vs 9e-10
    out = capsys.readouterr().out
    assert "mean field" in out and "log-slope" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_signal_propagation_example_rejects_zero_depth(capsys):
    with pytest.raises(SystemExit) as stop:
        load_example("signal_propagation").main(["--depth", "0"])
    assert stop.value.code == 2
    assert "--depth must be >= 1, got 0" in capsys.readouterr().err
