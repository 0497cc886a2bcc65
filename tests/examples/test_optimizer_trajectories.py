"""The optimizer-trajectories example, run end to end with few steps."""

import numpy as np
import pytest

from tests.examples.helpers import load_example

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_quick_run_writes_plots_and_a_sensible_table(tmp_path, capsys):
    results = load_example("optimizer_trajectories").main(["--steps", "60", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert set(results) == {"rosenbrock", "beale"}
    for name, result in results.items():
        for plot in ("contour.png", "losses.png", "divergence.png"):
            path = tmp_path / name / plot
            assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 10_000
        assert f"## {name} (60 steps" in out
        rows = result.summary()
        assert [row.optimizer for row in rows] == [
            "sgd",
            "momentum",
            "nesterov",
            "adam",
            "rmsprop",
            "adagrad",
            "lion",
        ]
        for row, run in zip(rows, result.runs.values(), strict=True):
            assert run.losses[0] == result.runs["sgd"].losses[0]  # one common start
            assert np.isfinite(row.final_loss) and row.best_loss <= run.losses[0]
            assert row.best_loss < 0.5 * run.losses[0]  # every tuned optimizer makes progress
            # Each fdl optimizer ran next to optax's twin: float32 rounding apart at most.
            assert row.max_divergence is not None and row.max_divergence < 1e-5
        assert rows[0].spec.startswith("fdl:sgd(")
        assert "| momentum | fdl:sgd(learning_rate=" in out
