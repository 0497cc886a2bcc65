"""The optimizer-trajectories example, run end to end with few steps."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "optimizer_trajectories.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_example():
    spec = importlib.util.spec_from_file_location("optimizer_trajectories", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quick_run_writes_plots_and_a_sensible_table(tmp_path, capsys):
    results = load_example().main(["--steps", "60", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert set(results) == {"rosenbrock", "beale"}
    for name, result in results.items():
        for plot in ("contour.png", "losses.png", "divergence.png"):
            path = tmp_path / name / plot
            assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 10_000
        assert f"## {name} (60 steps" in out
        rows = result.summary()
        assert [row.optimizer for row in rows] == [
            "sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad", "lion"
        ]
        for row, run in zip(rows, result.runs.values(), strict=True):
            assert run.losses[0] == result.runs["sgd"].losses[0]  # one common start
            assert np.isfinite(row.final_loss) and row.best_loss <= run.losses[0]
            assert row.best_loss < 0.5 * run.losses[0]  # every tuned optimizer makes progress
            # Each fdl optimizer ran next to optax's twin: float32 rounding apart at most.
            assert row.max_divergence is not None and row.max_divergence < 1e-5
        assert rows[0].spec.startswith("fdl:sgd(")
        assert "| momentum | fdl:sgd(learning_rate=" in out
