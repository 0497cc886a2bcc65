"""The RNN digits example (LSTM and GRU over image rows), run end to end at its defaults."""

import jax
import pytest

from tests.examples.helpers import load_example


@pytest.mark.slow
def test_lstm_and_gru_each_reach_95_percent(tmp_path, capsys):
    plot = tmp_path / "rnn.png"
    with jax.numpy_dtype_promotion("standard"):  # as users run it (JAX's default promotion)
        accuracy = load_example("rnn_digits").main(["--quiet", "--plot", str(plot)])
    assert set(accuracy) == {"lstm", "gru"}
    assert accuracy["lstm"] >= 0.95 and accuracy["gru"] >= 0.95  # the example's stated bar
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "lstm: test accuracy" in out and "gru: test accuracy" in out
