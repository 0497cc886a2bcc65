"""The self-supervised (SimCLR) digits example, run end to end (shortened)."""

import jax
import pytest

from tests.examples.helpers import load_example


@pytest.mark.slow
def test_simclr_features_classify_digits_without_labels(tmp_path, capsys):
    with jax.numpy_dtype_promotion("standard"):  # as users run it (JAX's default promotion)
        # SimCLR at its full length (the point of the test), the baselines shortened
        args = ["--supervised-steps", "300", "--probe-steps", "300", "--out", str(tmp_path)]
        result = load_example("contrastive_digits").main(args)
    # trained without labels, the encoder's features put same-digit images together: k-NN above
    # 0.90, and above the same encoder at its random initialization
    assert result["SimCLR (no labels) knn"] >= 0.90, result
    assert result["SimCLR (no labels) knn"] > result["random encoder knn"], result
    assert result["SimCLR (no labels) linear"] > result["random encoder linear"], result
    assert result["supervised CNN knn"] >= 0.95, result  # the labelled reference learns the digits
    for name in ("pca_map.png", "retrievals.png"):
        png = tmp_path / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000, name
    assert capsys.readouterr().out.count("-NN accuracy") == 4  # pixels and three encoders
