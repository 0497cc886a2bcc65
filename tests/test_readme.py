"""The README's quick start runs as written."""

import re
from pathlib import Path

import jax
import jax.numpy as jnp

README = Path(__file__).resolve().parents[1] / "README.md"


def quick_start_code() -> str:
    section = README.read_text().split("## Quick start", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quick_start_runs_and_takes_a_step():
    namespace: dict = {}
    exec(compile(quick_start_code(), str(README), "exec"), namespace)  # under strict promotion
    assert namespace["out_shape"] == (10,)
    assert namespace["logits"].shape == (8, 10)
    # One Adam step moves every parameter by at most lr (Adam's per-coordinate step bound).
    before = namespace["model"].init(jax.random.key(0), (64,))[0]
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), namespace["params"], before)
    assert all(0.0 < m <= 1e-3 * (1 + 1e-5) for m in jax.tree.leaves(moved))
