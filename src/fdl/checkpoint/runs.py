"""Runs: which training run a checkpoint directory belongs to, so that a resume continues that
run and never a stale one (:func:`start_run`, :func:`current_run`).

A directory holds the checkpoints of one run, named by its run marker ``run.json`` (strict JSON:
format, run id, start time, host, process id); each checkpoint that :func:`~fdl.checkpoint.save`
writes with ``run=`` records the same id in its manifest. A fresh run refuses a directory that
holds checkpoints, unless ``overwrite=True``: then its marker is written first (atomically) and
the old checkpoints are deleted after it, so an interruption anywhere in between leaves a
directory whose marker names the new run; :func:`~fdl.checkpoint.restore_latest_valid` considers
only that run's checkpoints, and the leftovers of the old run are never resumed.
"""

from __future__ import annotations

import os
from pathlib import Path

from fdl._checks import check_bool
from fdl._io import atomic_write, fsync_directory
from fdl.checkpoint._format import RUN_MARKER, file_name, marker_text, new_run_id, read_marker
from fdl.checkpoint._multiprocess import on_process_0
from fdl.checkpoint.errors import CheckpointError
from fdl.checkpoint.writing import all_steps

__all__ = ["current_run", "start_run"]

PathLike = str | os.PathLike[str]


def start_run(directory: PathLike, *, resume: bool = False, overwrite: bool = False) -> str:
    """Begin a run of checkpoints in ``directory`` (or continue one, with ``resume``); return
    the run id to pass to :func:`~fdl.checkpoint.save` as ``run=``.

    * ``resume=True``: the run named by the directory's marker, or a new id when there is no
      marker (a new directory, or checkpoints written before run ids: the first save with the
      new id writes the marker). Nothing is written.
    * A fresh run (the default): if the directory holds checkpoints, this refuses, unless
      ``overwrite=True``; then the new run's marker is written (atomically) before the old
      checkpoints are deleted. The directory is created if missing, and the marker written.

    Under ``jax.distributed`` every process calls it; process 0 alone reads and writes the
    directory, and every process gets process 0's id.

    Args:
      directory: the checkpoint directory.
      resume: continue the directory's run instead of starting one.
      overwrite: let a fresh run delete the checkpoints already in ``directory``.

    Returns:
      The run id (16 hexadecimal digits for a new run).

    Raises:
      FileExistsError: a fresh run without ``overwrite``, and the directory holds checkpoints
        (the message names the directory, their run and steps, and the options).
      ValueError: both ``resume`` and ``overwrite``.
      TypeError: a non-bool ``resume`` or ``overwrite``.
      CheckpointError: the run marker is malformed (with ``resume``); on a process other than
        0, when process 0 failed.

    >>> import tempfile, jax.numpy as jnp
    >>> from fdl import checkpoint
    >>> with tempfile.TemporaryDirectory() as d:
    ...     old = checkpoint.start_run(d)
    ...     _ = checkpoint.save(d, 20, {"w": jnp.ones(2)}, run=old)
    ...     new = checkpoint.start_run(d, overwrite=True)  # the old run's files are deleted
    ...     _ = checkpoint.save(d, 4, {"w": jnp.zeros(2)}, run=new)
    ...     tree, _, step = checkpoint.restore_latest_valid(d, {"w": jnp.zeros(2)})
    ...     print(step, checkpoint.start_run(d, resume=True) == new)
    4 True
    """
    resume, overwrite = check_bool("resume", resume), check_bool("overwrite", overwrite)
    if resume and overwrite:
        raise ValueError(
            "`overwrite` deletes another run's checkpoints for a fresh run and `resume` continues "
            "the directory's run: pass one of them, got resume=True, overwrite=True"
        )
    directory = Path(directory)

    def begin() -> str:
        if resume:
            return read_marker(directory) or new_run_id()
        return _claim(directory, overwrite)

    return on_process_0(begin, f"start a run in {directory}")


def current_run(directory: PathLike) -> str | None:
    """The run id named by ``directory``'s run marker ``run.json``; ``None`` when it has none.

    Raises:
      CheckpointError: the marker is not one (the message names the file).

    >>> import tempfile
    >>> from fdl import checkpoint
    >>> with tempfile.TemporaryDirectory() as d:
    ...     before = checkpoint.current_run(d)
    ...     run = checkpoint.start_run(d)
    ...     print(before, checkpoint.current_run(d) == run)
    None True
    """
    return read_marker(Path(directory))


def _claim(directory: Path, overwrite: bool) -> str:
    """Make ``directory`` the new run's: refuse, or mark it, then delete the old checkpoints."""
    steps = all_steps(directory)
    if steps and not overwrite:
        try:
            owner = read_marker(directory)
        except CheckpointError:
            owner = None
        whose = f"run {owner!r}" if owner else "another run"
        shown = ", ".join(map(str, steps[:8])) + (", ..." if len(steps) > 8 else "")
        raise FileExistsError(
            f"checkpoint directory {directory} holds {len(steps)} checkpoint(s) of {whose} (steps "
            f"{shown}); a fresh run there would be mixed with them. Pass resume=True to continue "
            f"that run, or overwrite=True to delete them and start a new run, or choose another "
            f"directory"
        )
    run = new_run_id()
    directory.mkdir(parents=True, exist_ok=True)
    # The commit point: from here on a resume continues the new run, whatever is left below.
    atomic_write(directory / RUN_MARKER, marker_text(run))
    for step in steps:
        (directory / file_name(step)).unlink(missing_ok=True)
    if steps:
        fsync_directory(directory)
    return run
