"""The README's quick start runs as written."""

import re
from pathlib import Path

import chex
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


@pytest.mark.slow  # trains as the README does
def test_train_section_runs_as_written(tmp_path, monkeypatch):
    """The `fit` snippet of the README runs (with 2 epochs instead of 30) and resumes."""
    section = README.read_text().split("## Train", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "epochs=30" in code
    code = code.replace("epochs=30", "epochs=2")
    monkeypatch.chdir(tmp_path)
    namespace = {"jax": jax, "jnp": jnp}
    exec("import fdl\n" + code, namespace)  # under the suite's strict promotion
    result = namespace["result"]
    assert result.step == 88 and result.history[-1]["eval_accuracy"] > 0.8
    assert (tmp_path / "curves.png").exists() and (tmp_path / "history.jsonl").exists()
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "ckpt-00000044.npz",
        "ckpt-00000088.npz",
        "run.json",
    ]
    exec("import fdl\n" + code, namespace)  # resume=True: already done, nothing more to train
    assert namespace["result"].step == 88


def test_ci_runs_exactly_the_readmes_test_command():
    section = README.read_text().split("Install and run the tests", 1)[1]
    command = re.search(r"```bash\n(.*?)\n```", section, re.S).group(1).strip()
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1].strip()
    assert command == ci and "pip install -e" in command and "pytest" in command
    assert "ruff check" in command and "ruff format --check" in command and "mypy" in command


def test_reach_into_a_model_section_runs_as_written(capsys):
    section = README.read_text().split("## Reach into a model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {"jax": jax}
    exec("import fdl\n" + code, namespace)  # under the suite's strict promotion
    out = capsys.readouterr().out
    assert "body: Serial(" in out and "total parameters:" in out
    result, params = namespace["result"], namespace["params"]
    assert result.params["head"]["w"].shape == (128, 10)
    chex.assert_trees_all_equal(result.params["body"], params["body"])  # frozen: bit for bit
    assert not bool((result.params["head"]["w"] == params["head"]["w"]).all())
    chex.assert_trees_all_equal(result.layer_state, namespace["state"])  # eval mode: stats kept


def test_the_train_step_snippet_runs_after_the_quick_start():
    section = README.read_text().split("## Quick start", 1)[1]
    first, second = re.findall(r"```python\n(.*?)```", section, re.S)[:2]
    namespace: dict = {}
    exec(compile(first + second, str(README), "exec"), namespace)
    state, params = namespace["state"], namespace["params"]
    assert int(state.step) == 10
    assert float(namespace["metrics"]["loss"]) < float(namespace["loss"](params))
    assert not any(a.is_deleted() for a in jax.tree.leaves(params))  # init_state copied them
