"""Checkpoints under faults (issue 11): runs that share a directory, writers killed mid-write,
and readers racing a writer, with real processes where the fault is a process's."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax.numpy as jnp
import pytest

from fdl import _io, checkpoint
from fdl.checkpoint import CheckpointError

WORKER = Path(__file__).parent / "checkpoint_worker.py"
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
TEMPLATE = {"w": jnp.zeros(2)}


def tree(value):
    return {"w": jnp.full(2, float(value))}


def listing(directory):
    return sorted(p.name for p in directory.iterdir())


def restored_value(directory, **kwargs):
    restored, _, step = checkpoint.restore_latest_valid(directory, TEMPLATE, **kwargs)
    return step, float(restored["w"][0])


# ---------------------------------------------------------------------------------------- runs


def test_a_fresh_run_refuses_a_directory_holding_another_runs_checkpoints(tmp_path):
    old = checkpoint.start_run(tmp_path)
    for step in (12, 16, 20):
        checkpoint.save(tmp_path, step, tree(step), run=old)
    message = (
        f"checkpoint directory {tmp_path} holds 3 checkpoint(s) of run '{old}' (steps 12, 16, 20); "
        "a fresh run there would be mixed with them. Pass resume=True to continue that run, or "
        "overwrite=True to delete them and start a new run, or choose another directory"
    )
    with pytest.raises(FileExistsError, match=f"^{re.escape(message)}$"):
        checkpoint.start_run(tmp_path)
    assert checkpoint.current_run(tmp_path) == old and checkpoint.all_steps(tmp_path) == [12, 16, 20]
    assert checkpoint.start_run(tmp_path, resume=True) == old  # resume writes nothing


def test_the_refusal_names_an_unmarked_run_and_shortens_long_step_lists(tmp_path):
    for step in range(10):
        checkpoint.save(tmp_path, step, tree(step), keep=None)  # no run: as before run ids
    with pytest.raises(
        FileExistsError,
        match=re.escape("holds 10 checkpoint(s) of another run (steps 0, 1, 2, 3, 4, 5, 6, 7, ...); "),
    ):
        checkpoint.start_run(tmp_path)


def test_the_exact_stale_resume_sequence_resumes_the_new_run(tmp_path):
    """An old run reaches 20; a new run overwrites, saves 4 and 8, is interrupted; resume: 8."""
    old = checkpoint.start_run(tmp_path)
    for step in (12, 16, 20):
        checkpoint.save(tmp_path, step, tree(-step), run=old)
    new = checkpoint.start_run(tmp_path, overwrite=True)
    assert new != old and checkpoint.current_run(tmp_path) == new
    assert listing(tmp_path) == ["run.json"]  # the old run's files are gone
    for step in (4, 8):
        checkpoint.save(tmp_path, step, tree(step), run=new)
    assert checkpoint.start_run(tmp_path, resume=True) == new
    assert restored_value(tmp_path) == (8, 8.0)


def test_an_interrupted_overwrite_never_resurrects_the_old_run(tmp_path, monkeypatch):
    old = checkpoint.start_run(tmp_path)
    for step in (12, 16, 20):
        checkpoint.save(tmp_path, step, tree(-step), run=old)

    def interrupted(self, missing_ok=False):
        raise KeyboardInterrupt  # killed while deleting the old run's files

    monkeypatch.setattr(Path, "unlink", interrupted)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.start_run(tmp_path, overwrite=True)
    monkeypatch.undo()
    new = checkpoint.current_run(tmp_path)
    assert new not in (None, old) and checkpoint.all_steps(tmp_path) == [12, 16, 20]
    message = (
        f"no checkpoints of run '{new}' in {tmp_path}; its 3 checkpoint(s) (steps [12, 16, 20]) "
        "belong to other runs"
    )
    with pytest.raises(FileNotFoundError, match=f"^{re.escape(message)}$"):
        checkpoint.restore_latest_valid(tmp_path, TEMPLATE)
    assert checkpoint.start_run(tmp_path, resume=True) == new  # the new run continues, from 0
    assert restored_value(tmp_path, run=old) == (20, -20.0)  # still readable when asked for
    # The new run's saves delete the old run's leftovers first, whatever their steps.
    checkpoint.save(tmp_path, 4, tree(4), run=new, keep=2)
    assert checkpoint.all_steps(tmp_path) == [4, 20]
    checkpoint.save(tmp_path, 8, tree(8), run=new, keep=2)
    assert checkpoint.all_steps(tmp_path) == [4, 8]
    assert restored_value(tmp_path) == (8, 8.0)


def test_checkpoints_without_a_run_id_stay_readable_and_resumable(tmp_path):
    for step in (10, 20):
        checkpoint.save(tmp_path, step, tree(step))  # written as before run ids
    assert checkpoint.current_run(tmp_path) is None
    assert restored_value(tmp_path) == (20, 20.0)
    run = checkpoint.start_run(tmp_path, resume=True)
    assert listing(tmp_path) == ["ckpt-00000010.npz", "ckpt-00000020.npz"]  # nothing written yet
    assert restored_value(tmp_path) == (20, 20.0)
    checkpoint.save(tmp_path, 30, tree(30), run=run, keep=3)  # then the marker, naming the run
    assert checkpoint.current_run(tmp_path) == run
    assert listing(tmp_path) == ["ckpt-00000010.npz", "ckpt-00000020.npz", "ckpt-00000030.npz", "run.json"]
    checkpoint.save(tmp_path, 40, tree(40), run=run, keep=3)  # the unmarked ones go first
    assert checkpoint.all_steps(tmp_path) == [20, 30, 40]
    assert restored_value(tmp_path) == (40, 40.0)


def test_a_run_that_lost_its_directory_cannot_save_there(tmp_path):
    old = checkpoint.start_run(tmp_path)
    checkpoint.save(tmp_path, 4, tree(4), run=old)
    new = checkpoint.start_run(tmp_path, overwrite=True)
    message = (
        f"`run` '{old}' no longer owns the checkpoint directory {tmp_path}: its run.json names run "
        f"'{new}' (a fresh run took the directory over); stop this run, or save it to another directory"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        checkpoint.save(tmp_path, 8, tree(8), run=old)
    assert listing(tmp_path) == ["run.json"]


def test_the_marker_is_strict_json_naming_the_run(tmp_path):
    run = checkpoint.start_run(tmp_path)
    marker = json.loads((tmp_path / "run.json").read_text(), parse_constant=reject_constant)
    assert marker["format"] == "fdl.checkpoint.run" and marker["run"] == run
    assert re.fullmatch(r"[0-9a-f]{16}", run) and marker["pid"] == os.getpid()
    assert checkpoint.start_run(tmp_path) != run  # a marker alone (no checkpoint) is replaced


def test_a_malformed_marker_is_named(tmp_path):
    (tmp_path / "run.json").write_text('{"run": 3}')
    message = (
        f"""{tmp_path / "run.json"} is not an fdl run marker: expected JSON with "format": """
        f"""'fdl.checkpoint.run' and a "run" id, got '{{"run": 3}}'; delete it to start a fresh """
        f"run in {tmp_path}, or to resume from the newest checkpoint there"
    )
    for call in (
        lambda: checkpoint.current_run(tmp_path),
        lambda: checkpoint.restore_latest_valid(tmp_path, TEMPLATE),
        lambda: checkpoint.start_run(tmp_path, resume=True),
    ):
        with pytest.raises(CheckpointError, match=f"^{re.escape(message)}$"):
            call()


@pytest.mark.parametrize(
    ("run", "error"),
    [(5, TypeError), ("", ValueError), ("a b", ValueError), ("x" * 65, ValueError)],
)
def test_invalid_run_ids(tmp_path, run, error):
    message = (
        "`run` must be a run id from fdl.checkpoint.start_run (1 to 64 letters, digits, '-' or '_'), "
        f"got {run!r}"
    )
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        checkpoint.save(tmp_path, 0, tree(0), run=run)
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        checkpoint.restore_latest_valid(tmp_path, TEMPLATE, run=run)
    assert listing(tmp_path) == []


def test_invalid_start_run_options(tmp_path):
    message = (
        "`overwrite` deletes another run's checkpoints for a fresh run and `resume` continues the "
        "directory's run: pass one of them, got resume=True, overwrite=True"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        checkpoint.start_run(tmp_path, resume=True, overwrite=True)
    with pytest.raises(TypeError, match=r"^`overwrite` must be a bool, got 1$"):
        checkpoint.start_run(tmp_path, overwrite=1)
    with pytest.raises(TypeError, match=r"^`resume` must be a bool, got 'yes'$"):
        checkpoint.start_run(tmp_path, resume="yes")
    assert listing(tmp_path) == []


def reject_constant(name):
    raise ValueError(f"not strict JSON: {name}")


# ------------------------------------------------------------- temporary files of killed writers


def hold_a_temporary_file(directory, name):
    """A process stopped inside ``atomic_write(directory / name)``, its temporary file written."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), "hold", str(directory), name],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    line = proc.stdout.readline().decode()
    assert line == "writing\n", proc.stderr.read().decode() if proc.poll() is not None else line
    return proc


def temporaries(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.slow  # real processes
def test_a_killed_writers_temporary_file_is_removed_by_the_next_save_a_live_ones_never(tmp_path):
    killed = hold_a_temporary_file(tmp_path, "ckpt-00000004.npz")
    live = hold_a_temporary_file(tmp_path, "ckpt-00000005.npz")
    try:
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(timeout=30) == -signal.SIGKILL
        host = _io._host()
        dead_file = f".ckpt-00000004.npz.{host}.{killed.pid}."
        live_file = f".ckpt-00000005.npz.{host}.{live.pid}."
        left = temporaries(tmp_path)
        assert len(left) == 2 and left[0].startswith(dead_file) and left[1].startswith(live_file)
        finished = subprocess.Popen([sys.executable, "-c", "pass"])
        finished.wait(timeout=60)
        kept = [
            f".ckpt-00000006.npz.other-host.{killed.pid}.0123abcd.tmp",  # another machine's
            f".ckpt-00000006.npz.{live.pid}.0123abcd.tmp",  # the older form, a live pid
            f".notes.txt.{host}.{killed.pid}.0123abcd.tmp",  # not a checkpoint's
        ]
        removed = [
            f".ckpt-00000007.npz.{host}.{finished.pid}.0123abcd.tmp",  # a finished writer's
            f".ckpt-00000006.npz.{killed.pid}.0123abcd.tmp",  # the older form (no host), writer gone
        ]
        for name in kept + removed:
            (tmp_path / name).write_bytes(b"partial")
        checkpoint.save(tmp_path, 8, tree(8))
        after = temporaries(tmp_path)
        assert [n for n in after if n.startswith(dead_file)] == []
        assert len([n for n in after if n.startswith(live_file)]) == 1  # the live writer's stays
        assert set(kept) <= set(after) and not set(removed) & set(after)
        assert checkpoint.all_steps(tmp_path) == [8]
    finally:
        for proc in (killed, live):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
            proc.stdout.close()
            proc.stderr.close()


def test_temporary_files_name_their_host_and_process(tmp_path):
    seen = []
    _io.atomic_write(tmp_path / "a.bin", lambda file: seen.append(Path(file.name).name))
    host = re.escape(_io._host())
    assert re.fullmatch(rf"\.a\.bin\.{host}\.{os.getpid()}\.[0-9a-f]{{8}}\.tmp", seen[0])
    assert re.fullmatch(r"[A-Za-z0-9-]+", _io._host())


# ------------------------------------------------------------------------- readers and a writer


@pytest.fixture
def fast_directory(tmp_path):
    """A fresh directory in memory (tmpfs) where there is one: there ``fsync`` costs nothing, so
    a writer saves most often and a race with a reader is likeliest (with fdl before issue 11,
    about 1 read in 1,500 failed here, against 1 in 5,000 on disk)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=shm, prefix="fdl-test-") as directory:
        yield Path(directory)


@pytest.mark.slow  # real processes
def test_a_reader_racing_a_pruning_writer_always_gets_an_intact_checkpoint(fast_directory):
    """One writer process saves with keep=1 in a loop; a reader process restores meanwhile."""
    stop = fast_directory / "stop"
    directory = fast_directory / "ckpt"
    writer = subprocess.Popen(
        [sys.executable, str(WORKER), "write", str(directory), str(stop)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while checkpoint.latest_step(directory) is None and time.monotonic() < deadline:
            assert writer.poll() is None, writer.stderr.read().decode()
            time.sleep(0.05)
        reader = subprocess.run(
            [sys.executable, str(WORKER), "read", str(directory), "4"],
            env=ENV,
            capture_output=True,
            timeout=120,
        )
        assert reader.returncode == 0, reader.stderr.decode()
        summary = json.loads(reader.stdout)
    finally:
        stop.touch()
        out, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err.decode()
    saved = json.loads(out)["saved"]
    assert summary["error_count"] == 0, summary["errors"]
    assert summary["consistent"]  # every tree read is the one saved at its step
    assert summary["reads"] >= 100 and summary["steps"] >= 20 and saved >= 20, (summary, saved)
    assert temporaries(directory) == [] and checkpoint.all_steps(directory) == [saved]
