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
)

__all__ = ["Eval", "Checkpoint", "Logging", "Execution", "NAN_POLICIES", "HISTORY_SUFFIXES"]

NAN_POLICIES = ("raise", "skip")
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
            check_positive_int("every", self.every)


@dataclass(frozen=True)
class Checkpoint:
    """Save checkpoints (:mod:`fdl.checkpoint`) to ``dir`` every ``every`` steps (default: once
    per epoch) and at the end, keeping the newest ``keep``; with ``resume``, continue from the
    newest valid one there (bit for bit)."""

    dir: str | Path
    every: int | None = None
    keep: int = 3
    resume: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.dir, (str, Path)):
            raise TypeError(f"Checkpoint: `dir` must be a path, got {self.dir!r}")
        path = Path(self.dir)
        if path.exists() and not path.is_dir():
            raise ValueError(f"Checkpoint: `dir` {str(path)!r} exists and is not a directory")
        object.__setattr__(self, "dir", path)
        if self.every is not None:
            check_positive_int("every", self.every)
        check_positive_int("keep", self.keep)
        check_bool("resume", self.resume)


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
    ``"raise"`` or ``"skip"`` for a non-finite loss or gradient; ``compute_dtype`` (e.g.
    ``jnp.bfloat16``) for mixed precision."""

    steps_per_call: int = 16
    nan_policy: str = "raise"
    compute_dtype: Any = None

    def __post_init__(self) -> None:
        check_positive_int("steps_per_call", self.steps_per_call)
        check_choice("nan_policy", self.nan_policy, NAN_POLICIES)


def check_run(*, batch_size: Any, steps: Any, epochs: Any, key: Any) -> None:
    """The checks of ``fit``'s own keywords that need no data."""
    check_positive_int("batch_size", batch_size)
    check_duration(steps, epochs)
    check_prng_key("key", key)


def total_steps(steps: int | None, epochs: int | None, steps_per_epoch: int) -> int:
    return int(steps) if steps is not None else int(epochs) * steps_per_epoch  # type: ignore[arg-type]
