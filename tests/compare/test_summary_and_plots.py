"""print(comparison) is a short summary; the divergence plot says when every pair is identical."""

import numpy as np

from fdl.compare import IDENTICAL, Comparison, Run, compare, plots
from fdl.optim import chain, scale
from fdl.problems import get_problem


def test_printing_a_comparison_shows_one_line_per_optimizer_and_no_arrays():
    result = compare(
        {"sgd": ("sgd", {"learning_rate": 3e-3}), "adam": ("adam", {"learning_rate": 1e-1})},
        "rosenbrock",
        steps=1000,
        threshold=1e-3,
    )
    text = repr(result)
    assert str(result) == text
    lines = text.splitlines()
    assert lines[0] == (
        "Comparison of 2 optimizer(s) on 'rosenbrock': 1000 steps, seed 0, full batch, threshold 0.001"
    )
    assert len(lines) == 4 and len(text) < 1000  # title, header, one line per optimizer
    assert lines[2].split()[:2] == ["sgd", "fdl:sgd(learning_rate=0.003)"]
    assert lines[3].split()[:2] == ["adam", "fdl:adam(learning_rate=0.1)"]
    assert "array" not in text and "losses" not in text


def test_printed_summary_shows_notes():
    result = compare({"up": ("optax:sgd", {"learning_rate": -1e-3})}, "beale", steps=3)
    assert repr(result).splitlines()[-1].startswith("note: no twin check for 'up'")


def test_divergence_plot_says_identical_when_every_pair_is_zero():
    result = compare(
        {"mine": chain(scale(-0.01))},
        "quadratic",
        steps=30,
        reference={"mine": ("optax:sgd", {"learning_rate": 0.01})},
    )
    fig = plots.divergence(result)
    (ax,) = fig.axes
    texts = [text.get_text() for text in ax.texts]
    assert len(texts) == 1 and texts[0].startswith(IDENTICAL)
    assert "mine vs optax:sgd(learning_rate=0.01)" in texts[0]
    assert not any(" vs " in line.get_label() for line in ax.lines)  # no overlapping zero lines


def test_divergence_plot_draws_a_line_per_pair_otherwise():
    losses = np.zeros(4, np.float32)
    runs = {
        "a": Run(
            "a", "fdl:x()", losses, divergence=np.asarray([0, 1e-7, 2e-7, 0], np.float32), twin="optax:x()"
        ),
        "b": Run("b", "fdl:y()", losses, divergence=np.zeros(4, np.float32), twin="optax:y()"),
    }
    fig = plots.divergence(Comparison(get_problem("beale"), 3, 0, None, runs))
    (ax,) = fig.axes
    assert len(ax.texts) == 0 and [line.get_label() for line in ax.lines] == [
        "a vs optax:x()",
        "b vs optax:y() (identical at every step)",
    ]
