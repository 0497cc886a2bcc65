"""The README's quick start runs as written, and CI runs the README's test command.

The longer walk-throughs (train step, freezing, ``fit``, comparisons) moved to ``docs/tour.md``,
whose blocks run under ``pytest --markdown-docs docs``.
"""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start_code() -> str:
    section = README.read_text().split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow  # trains as the README does
def test_quick_start_runs_and_takes_a_step():
    namespace: dict = {}
    exec(compile(quick_start_code(), str(README), "exec"), namespace)  # under strict promotion
    assert namespace["out_shape"] == (10,)
    assert namespace["logits"].shape == (8, 10)
    # One Adam step moves every parameter by at most lr (Adam's per-coordinate step bound).
    before = namespace["model"].init(jax.random.key(0), (64,))[0]
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), namespace["params"], before)
    assert all(0.0 < m <= 1e-3 * (1 + 1e-5) for m in jax.tree.leaves(moved))


def test_ci_runs_exactly_the_readmes_test_command():
    section = README.read_text().split("Install and run the tests", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, re.S).group(1).strip()
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1].strip()
    assert command == ci and "pip install -e" in command and "pytest" in command
    assert "ruff check" in command and "ruff format --check" in command and "mypy" in command


def test_the_readme_stays_short():
    """What it is, the two set-up commands, a quick start of at most 15 lines, the site: the
    tables and walk-throughs live on the site (docs/index.md, docs/tour.md)."""
    text = README.read_text()
    assert len(text.splitlines()) <= 80
    assert not [line for line in text.splitlines() if line.startswith("|")]  # no tables
    assert len(quick_start_code().strip().splitlines()) <= 15
    assert "mkdocs serve" in text and "docs/index.md" in text
