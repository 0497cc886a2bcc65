"""The digits GAN example, run end to end (shortened)."""

import jax
import pytest

from tests.examples.helpers import load_example


@pytest.mark.slow
def test_the_gan_draws_every_digit_and_comes_far_closer_to_the_data(tmp_path, capsys):
    with jax.numpy_dtype_promotion("standard"):  # as users run it (JAX's default promotion)
        result = load_example("gan_digits").main(["--quick", "--out", str(tmp_path)])
    # the quick run (600 steps): 10/10 classes, Frechet distance 29.7 against 560.7 for the
    # untrained generator and 3.2 for real test digits
    assert result["classifier accuracy"] > 0.9, result
    assert result["classes covered"] >= 9, result
    assert result["fid trained"] < 0.2 * result["fid untrained"], result
    assert result["fid real test"] < result["fid trained"], result  # real digits stay closer
    plot = tmp_path / "gan_digits.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert "Frechet distance to the training digits" in capsys.readouterr().out
