"""``fit``'s checkpoints under faults (issue 11): non-finite metrics in checkpoints and history
files, a fresh run in a reused checkpoint directory, and a run killed at random moments."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import _io, checkpoint
from fdl.fit import Checkpoint, Eval, Execution, HistoryFile, Logging, fit
from tests.fit_helpers import linear_params, regression_data

WORKER = Path(__file__).parent / "fit_kill_worker.py"
QUIET = Logging(progress=False)


def linear_loss(params, state, batch, key):
    x, y = batch
    pred = x @ params["w"] + jnp.broadcast_to(params["b"], (x.shape[0], 1))  # (b, 1)
    return jnp.mean((pred - y) ** 2), (state, {})


def held_out_eval():
    """Evaluation on a held-out set with one NaN example: ``mse`` is NaN, and two metrics are
    infinite (``log_zero`` = -inf, ``inverse_zero`` = inf)."""
    x, y = regression_data(16, seed=1)
    x[3, 1] = np.nan

    def evaluate(params, layer_state):
        pred = x @ params["w"] + params["b"][None, :]  # (16, 1)
        zero = jnp.zeros((), jnp.float32)
        return {"mse": jnp.mean((pred - y) ** 2), "log_zero": jnp.log(zero), "inverse_zero": 1.0 / zero}

    return Eval(evaluate, every=4)


def run(steps, directory=None, *, learning_rate=0.05, callbacks=(), **checkpoint_options):
    checkpoint_options.setdefault("every", 4)
    return fit(
        linear_loss,
        fdl.optim.adam(learning_rate),
        linear_params(),
        regression_data(),
        key=jax.random.key(7),
        batch_size=8,
        steps=steps,
        evaluate=held_out_eval(),
        execution=Execution(steps_per_call=4),
        checkpoint=None if directory is None else Checkpoint(directory, **checkpoint_options),
        logging=QUIET,
        callbacks=callbacks,
    )


def reject_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def strict_rows(path):
    """The rows of a JSONL history, parsed by a parser that refuses NaN and Infinity tokens."""
    return [json.loads(line, parse_constant=reject_constant) for line in path.read_text().splitlines()]


def same_rows(a, b):
    """Rows equal key for key and value for value, NaN equal to NaN (``repr`` spells every
    float exactly; the order of keys does not count)."""
    return [repr(sorted(row.items())) for row in a] == [repr(sorted(row.items())) for row in b]


# ------------------------------------------------------------------------ non-finite metrics


def test_a_nan_evaluation_metric_is_checkpointed_and_resumed(tmp_path):
    whole = run(12)
    assert math.isnan(whole.history[-1]["eval_mse"]) and whole.history[-1]["eval_log_zero"] == -math.inf
    run(8, tmp_path)
    assert checkpoint.all_steps(tmp_path) == [4, 8]  # no checkpoint was lost
    template = {"params": linear_params(), "layer_state": {}, "key": jax.random.key(7)}
    template["opt_state"] = fdl.optim.adam(0.05).init(template["params"])
    _, metadata, _ = checkpoint.restore_latest_valid(tmp_path, template)
    json.dumps(metadata, allow_nan=False)  # strict JSON
    last = metadata["history"][-1]
    assert (last["eval_mse"], last["eval_log_zero"], last["eval_inverse_zero"]) == ("nan", "-inf", "inf")
    resumed = run(12, tmp_path, resume=True)
    assert same_rows(resumed.history, whole.history)  # decoded back to floats
    assert resumed.history[1]["eval_inverse_zero"] == math.inf
    chex.assert_trees_all_equal(resumed.params, whole.params)


def test_a_run_skipping_non_finite_steps_keeps_checkpointing_nan_metrics(tmp_path):
    """Training data with a NaN example: the steps that draw it are skipped; evaluation is NaN."""
    x, y = regression_data()
    x[5, 0] = np.nan
    result = fit(
        linear_loss,
        fdl.optim.adam(0.05),
        linear_params(),
        (x, y),
        key=jax.random.key(7),
        batch_size=8,
        steps=12,
        evaluate=held_out_eval(),
        execution=Execution(steps_per_call=4, nan_policy="skip"),
        checkpoint=Checkpoint(tmp_path, every=4),
        logging=Logging(progress=False, history=tmp_path / "history.jsonl"),
    )
    assert result.skipped > 0 and checkpoint.all_steps(tmp_path) == [4, 8, 12]
    rows = strict_rows(tmp_path / "history.jsonl")
    assert [row["eval_mse"] for row in rows] == ["nan"] * 3


def test_history_files_are_strict_and_read_back(tmp_path):
    rows = [
        {"step": 4, "loss": 0.5, "skipped": 0},
        {"step": 8, "loss": float("inf"), "eval_mse": float("nan"), "eval_log": float("-inf"), "skipped": 1},
    ]
    HistoryFile(tmp_path / "h.jsonl").write(rows)
    parsed = strict_rows(tmp_path / "h.jsonl")
    assert parsed[1] == {"step": 8, "loss": "inf", "eval_mse": "nan", "eval_log": "-inf", "skipped": 1}
    assert same_rows([_io.decode_non_finite(row) for row in parsed], rows)
    HistoryFile(tmp_path / "h.csv").write(rows)
    table = list(csv.DictReader((tmp_path / "h.csv").open()))
    assert table[1] == {"step": "8", "eval_log": "-inf", "eval_mse": "nan", "loss": "inf", "skipped": "1"}
    as_floats = [{k: float(v) for k, v in row.items()} for row in rows]
    assert same_rows([{k: float(v) for k, v in row.items() if v} for row in table], as_floats)


@pytest.mark.slow  # real processes
def test_the_history_file_removes_its_killed_writers_temporary_files(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(timeout=60)
    host = _io._host()
    stale = tmp_path / f".h.jsonl.{host}.{finished.pid}.0123abcd.tmp"
    others = [
        tmp_path / f".h.jsonl.other-host.{finished.pid}.0123abcd.tmp",
        tmp_path / f".g.jsonl.{host}.{finished.pid}.0123abcd.tmp",
    ]
    for path in [stale, *others]:
        path.write_text("{")
    HistoryFile(tmp_path / "h.jsonl").write([{"step": 1, "loss": 1.0}])
    assert not stale.exists() and all(path.exists() for path in others)


# -------------------------------------------------------------- a fresh run in a reused directory


class Interrupted(Exception):
    pass


class InterruptAt:
    """A callback that interrupts the run when a row reaches ``step`` (before its checkpoint)."""

    def __init__(self, step):
        self.step = step

    def on_row(self, row, control):
        if row["step"] >= self.step:
            raise Interrupted(f"interrupted at step {row['step']}")


def strip_run_ids(directory):
    """Rewrite ``directory``'s checkpoints as fdl wrote them before run ids (no marker either)."""
    template = {"params": linear_params(), "layer_state": {}, "key": jax.random.key(7)}
    template["opt_state"] = fdl.optim.adam(0.01).init(template["params"])
    for step in checkpoint.all_steps(directory):
        tree, metadata = checkpoint.restore(directory / f"ckpt-{step:08d}.npz", template)
        checkpoint.save(directory, step, tree, metadata=metadata, overwrite=True, keep=None)
    (directory / "run.json").unlink()


@pytest.mark.parametrize(
    "older",
    ["with run ids", pytest.param("before run ids", marks=pytest.mark.slow)],  # 5 s each
)
def test_a_fresh_run_in_a_reused_directory_never_resumes_the_stale_run(tmp_path, older):
    """An older run reaches step 20; a new run (resume=False) writes steps 4 and 8 and is
    interrupted; resuming continues the new run from 8, not the old one from 20."""
    whole = run(20)
    run(20, tmp_path, learning_rate=0.01)  # the older run: another learning rate
    if older == "before run ids":
        strip_run_ids(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    owner = f"run '{checkpoint.current_run(tmp_path)}'" if older == "with run ids" else "another run"
    message = (
        f"checkpoint directory {tmp_path} holds 3 checkpoint(s) of {owner} (steps 12, 16, 20); a "
        "fresh run there would be mixed with them. Pass resume=True to continue that run, or "
        "overwrite=True to delete them and start a new run, or choose another directory"
    )
    with pytest.raises(FileExistsError, match=f"^{re.escape(message)}$"):
        run(20, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # untouched

    with pytest.raises(Interrupted):
        run(20, tmp_path, overwrite=True, callbacks=[InterruptAt(12)])
    assert checkpoint.all_steps(tmp_path) == [4, 8]
    resumed = run(20, tmp_path, resume=True)
    assert resumed.history[0]["step"] == 4 and same_rows(resumed.history, whole.history)
    chex.assert_trees_all_equal(resumed.params, whole.params)
    chex.assert_trees_all_equal(resumed.opt_state, whole.opt_state)


def test_an_interrupted_overwrite_starts_the_new_run_over(tmp_path, monkeypatch):
    whole = run(20)
    run(20, tmp_path, learning_rate=0.01)
    real_unlink = Path.unlink

    def interrupted(self, missing_ok=False):
        if self.name.startswith("ckpt-"):
            raise KeyboardInterrupt  # killed while deleting the old run's checkpoints
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(20, tmp_path, overwrite=True)
    monkeypatch.undo()
    assert checkpoint.all_steps(tmp_path) == [12, 16, 20]  # the old run's files are still there
    resumed = run(20, tmp_path, resume=True)  # ... and never resumed: the new run starts at 0
    assert same_rows(resumed.history, whole.history)
    chex.assert_trees_all_equal(resumed.params, whole.params)


def test_invalid_overwrite_options(tmp_path):
    message = (
        "Checkpoint: `overwrite` deletes another run's checkpoints for a fresh run and `resume` "
        "continues the run in `dir`: pass one of them, got resume=True, overwrite=True"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        Checkpoint(tmp_path, resume=True, overwrite=True)
    with pytest.raises(TypeError, match=r"^`overwrite` must be a bool, got 1$"):
        Checkpoint(tmp_path, overwrite=1)


# ---------------------------------------------------------------- killed at random moments


def _history_step(path: Path, since_ns: int) -> int:
    """The last step in the history file if this attempt has written it, else -1."""
    try:
        if path.stat().st_mtime_ns < since_ns:
            return -1
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return -1
    return json.loads(lines[-1], parse_constant=reject_constant)["step"] if lines else -1


def _checkpoint_temporaries(directory: Path, pid: int) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [n for n in names if n.startswith(".ckpt-") and f".{pid}." in n and n.endswith(".tmp")]


def _kill_at(proc, directory, history, mode, target, delay):
    """Kill ``proc`` (SIGKILL): after ``delay`` s (mode "delay"), or once its history reaches
    ``target`` plus ``delay`` s ("step"), or at its next checkpoint write after that ("write")."""
    assert proc.stdout.readline() == b"ready\n"
    started = time.time_ns()
    deadline = time.monotonic() + 240
    if mode != "delay":
        while _history_step(history, started) < target:
            assert proc.poll() is None and time.monotonic() < deadline, f"attempt ended before step {target}"
            time.sleep(0.002)
    if mode == "write":
        while not _checkpoint_temporaries(directory, proc.pid):
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint write seen"
            time.sleep(0.0005)
        delay = 0.0
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before the kill"
    return bool(_checkpoint_temporaries(directory, proc.pid))


@pytest.mark.slow
def test_killed_at_random_moments_then_resumed_equals_the_uninterrupted_run(tmp_path):
    """Five SIGKILLs at seeded random moments (one a plain delay after start-up, two a random
    delay after a random step, two in the middle of the next checkpoint write after a random
    step), each followed by a resume: the final parameters, optimizer state, history and history
    file equal an uninterrupted run's, bit for bit, and no temporary file is left."""
    # Every process compiles the same programs: the reference run fills JAX's persistent
    # compilation cache, and the others load its executables (about 5 s less each).
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    reference = subprocess.run(
        [sys.executable, str(WORKER), *(str(tmp_path / name) for name in ("ref", "ref.jsonl", "ref.npz"))],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert reference.returncode == 0, reference.stderr.decode()
    directory, history = tmp_path / "ckpt", tmp_path / "killed" / "history.jsonl"
    rng = random.Random(11)
    targets = [80 * i + rng.randrange(30, 90) for i in range(4)]  # spread over the first 330 steps
    plan = [("delay", 0, rng.uniform(0.0, 1.0))]  # compilation or early training, never past the end
    plan += [
        (mode, target, rng.uniform(0.0, 0.03))
        for mode, target in zip(["write", "step"] * 2, targets, strict=True)
    ]
    mid_write, reached = 0, []
    for attempt, (mode, target, delay) in enumerate(plan):
        args = [str(directory), str(history), str(tmp_path / "killed.npz")] + (
            ["--resume"] if attempt else []
        )
        proc = subprocess.Popen([sys.executable, str(WORKER), *args], env=env, stdout=subprocess.PIPE)
        try:
            mid_write += _kill_at(proc, directory, history, mode, target, delay)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        reached.append(checkpoint.latest_step(directory) or 0)
    assert mid_write >= 1, "no kill landed inside a checkpoint write"
    assert reached == sorted(reached) and len(set(reached)) >= 3, reached  # progress between kills

    final = subprocess.run(
        [
            sys.executable,
            str(WORKER),
            str(directory),
            str(history),
            str(tmp_path / "resumed.npz"),
            "--resume",
        ],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr.decode()
    resumed, whole = np.load(tmp_path / "resumed.npz"), np.load(tmp_path / "ref.npz")
    assert int(resumed["step"]) == int(whole["step"]) == 400
    assert sorted(resumed.files) == sorted(whole.files) and len(whole.files) > 10
    for name in whole.files:
        np.testing.assert_array_equal(resumed[name], whole[name], err_msg=name)  # bit for bit
    assert "('eval_loss', nan)" in str(whole["history"])
    assert history.read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert strict_rows(history)[-1]["eval_loss"] == "nan"
    leftovers = [p.name for p in [*directory.iterdir(), *history.parent.iterdir()] if p.name.endswith(".tmp")]
    assert leftovers == []  # the killed writers' temporary files were cleaned up
