"""The records that configure :func:`fdl.fit.fit`, each checked where it is built.

``fit`` takes the run's essentials as keywords (``key``, ``batch_size``, ``steps`` or
``epochs``) and one small record per concern. Every argument check lives here, in the records'
constructors and :func:`check_run`; ``fdl train`` builds the same records, so the command line
and the API accept and refuse exactly the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax

from fdl._checks import (
    check_bool,
    check_choice,
    check_duration,
    check_positive_int,
    check_prng_key,
    check_suffix,
    prepare_output,
)

__all__ = [
    "Eval",
    "Checkpoint",
    "Logging",
    "Execution",
    "NAN_POLICIES",
    "HISTORY_SUFFIXES",
    "prepare_outputs",
]

#: What ``fit`` does at a non-finite loss or gradient: raise :class:`NonFiniteError`, or skip the step.
NAN_POLICIES = ("raise", "skip")
#: The file suffixes a history file may have: one JSON object per line, or CSV.
HISTORY_SUFFIXES = (".jsonl", ".csv")


@dataclass(frozen=True)
class Eval:
    """Evaluate every ``every`` steps (default: once per epoch) and at the end.

    ``fn(params, layer_state) -> dict`` of scalars, jitted; its entries enter the history as
    ``eval_<name>`` (:func:`fdl.fit.classification_eval` builds one for a classifier).
    """

    fn: Callable[[Any, Any], Mapping[str, jax.Array]]
    every: int | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"Eval: `fn` must be callable (params, layer_state) -> dict, got {self.fn!r}")
        if self.every is not None:
            object.__setattr__(self, "every", check_positive_int("every", self.every))


@dataclass(frozen=True)
class Checkpoint:
    """Save checkpoints (:mod:`fdl.checkpoint`) to ``dir`` every ``every`` steps (default: once
    per epoch) and at the end, keeping the newest ``keep``; with ``resume``, continue the run
    in ``dir`` from its newest valid checkpoint (bit for bit).

    ``dir`` belongs to one run (:func:`fdl.checkpoint.start_run`). A fresh run (``resume``
    False) refuses a ``dir`` that already holds checkpoints, unless ``overwrite`` is True: then
    it deletes them (after marking the directory as its own, so that an interruption cannot
    bring the old run back). ``resume`` continues the run that last started in ``dir``, never
    an older one whose files remain there."""

    dir: str | Path
    every: int | None = None
    keep: int = 3
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.dir, (str, Path)):
            raise TypeError(f"Checkpoint: `dir` must be a path, got {self.dir!r}")
        path = Path(self.dir)
        if path.exists() and not path.is_dir():
            raise ValueError(f"Checkpoint: `dir` {str(path)!r} exists and is not a directory")
        object.__setattr__(self, "dir", path)
        if self.every is not None:
            object.__setattr__(self, "every", check_positive_int("every", self.every))
        object.__setattr__(self, "keep", check_positive_int("keep", self.keep))
        check_bool("resume", self.resume)
        check_bool("overwrite", self.overwrite)
        if self.resume and self.overwrite:
            raise ValueError(
                "Checkpoint: `overwrite` deletes another run's checkpoints for a fresh run and "
                "`resume` continues the run in `dir`: pass one of them, got resume=True, overwrite=True"
            )


@dataclass(frozen=True)
class Logging:
    """Where the history goes: ``history`` (a ``.jsonl`` or ``.csv`` file, rewritten atomically
    after each call), ``plot`` (a PNG of the curves, saved at the end), ``progress`` (a tqdm
    bar) and further ``loggers`` (e.g. :class:`fdl.fit.TensorBoardLogger`)."""

    history: str | Path | None = None
    plot: str | Path | None = None
    progress: bool = True
    loggers: Sequence[Any] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.history is not None:
            object.__setattr__(self, "history", Path(check_suffix("history", self.history, HISTORY_SUFFIXES)))
        if self.plot is not None:
            object.__setattr__(self, "plot", Path(check_suffix("plot", self.plot, (".png",))))
        for logger in self.loggers:
            if not callable(getattr(logger, "write", None)):
                raise TypeError(f"Logging: each of `loggers` must have write(rows), got {logger!r}")
        object.__setattr__(self, "loggers", tuple(self.loggers))


@dataclass(frozen=True)
class Execution:
    """How the steps run: ``steps_per_call`` steps fused into one XLA call; ``nan_policy``
    ``"raise"`` or ``"skip"`` for a step with a non-finite loss or gradient, or whose update
    would make a parameter or optimizer-state leaf non-finite; ``compute_dtype`` (e.g.
    ``jnp.bfloat16``) for mixed precision."""

    steps_per_call: int = 16
    nan_policy: str = "raise"
    compute_dtype: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps_per_call", check_positive_int("steps_per_call", self.steps_per_call))
        check_choice("nan_policy", self.nan_policy, NAN_POLICIES)


def check_run(*, batch_size: Any, steps: Any, epochs: Any, key: Any) -> None:
    """The checks of ``fit``'s own keywords that need no data."""
    check_positive_int("batch_size", batch_size)
    check_duration(steps, epochs)
    check_prng_key("key", key)


def prepare_outputs(checkpoint: Checkpoint | None, logging: Logging | None) -> None:
    """Before any training: create the directories of every output of a run (the checkpoint
    directory, the history file's and the plot's folders) and probe that each can be written,
    so a bad path fails at once, naming its argument, instead of after the training it was
    meant to keep (see :func:`fdl._checks.prepare_output`)."""
    if checkpoint is not None:
        prepare_output("dir", checkpoint.dir, directory=True)
    if logging is not None:
        for name in ("history", "plot"):
            path = getattr(logging, name)
            if path is not None:
                prepare_output(name, path)


def total_steps(steps: int | None, epochs: int | None, steps_per_epoch: int) -> int:
    return int(steps) if steps is not None else int(epochs) * steps_per_epoch  # type: ignore[arg-type]
