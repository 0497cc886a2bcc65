"""The transfer-learning example, run end to end (shortened) and at its defaults."""

import jax
import pytest

from tests.examples.helpers import load_example


@pytest.mark.slow
def test_transfer_digits_runs_and_reports_three_accuracies(tmp_path, capsys):
    plot = tmp_path / "transfer.png"
    with jax.numpy_dtype_promotion("standard"):  # as users run it (JAX's default promotion)
        accuracy = load_example("transfer_digits").main(["--quick", "--plot", str(plot)])
    assert set(accuracy) == {"frozen body", "full fine-tuning", "from scratch"}
    # five classes: chance is 0.2; even the short run learns each way
    assert all(a > 0.5 for a in accuracy.values()), accuracy
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "pretrained on 0-4: test accuracy" in out and out.count("test accuracy on 5-9") == 3
