"""Callbacks: small actions ``fit``'s host loop runs between compiled calls.

A callback is any object with ``on_row(row, control)``, called after each history row (every
``steps_per_call`` steps, at evaluations and checkpoints; ``row`` holds ``step``, the mean
training metrics of the call and any ``eval_*`` entries). Through ``control`` it may stop the
run (``control.stop = True``) or scale the learning rate (``control.lr_scale``). Those that must
run at exact steps set ``every``: ``fit`` then ends a compiled call at each multiple of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl._checks import check_choice, check_metric_name, check_positive_int

__all__ = ["Control", "EarlyStopping", "Every", "ReduceLROnPlateau", "scale_by_control"]

MODES = ("min", "max")


@dataclass
class Control:
    """What callbacks may change: ``stop`` ends the run after this row; ``lr_scale``
    multiplies every update from the next step on (the learning rate, for optimizers whose
    update is linear in it: all of fdl's and optax's first-order ones). ``state`` is the
    current :class:`fdl.train.TrainState` (read only)."""

    state: Any = None
    stop: bool = False
    lr_scale: float = 1.0
    reason: str | None = None


def _check_metric(metric: Any, mode: Any) -> None:
    check_metric_name("metric", metric)
    check_choice("mode", mode, MODES)


def _improved(value: float, best: float, mode: str, min_delta: float) -> bool:
    return value < best - min_delta if mode == "min" else value > best + min_delta


@dataclass
class EarlyStopping:
    """Stop when ``metric`` (e.g. ``"eval_loss"``) has not improved by more than ``min_delta``
    for ``patience`` consecutive rows that report it; ``best`` and ``best_step`` record the
    best value seen."""

    metric: str = "eval_loss"
    patience: int = 5
    mode: str = "min"
    min_delta: float = 0.0
    best: float = field(default=math.nan, init=False)
    best_step: int | None = field(default=None, init=False)
    _waited: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_metric(self.metric, self.mode)
        self.patience = check_positive_int("patience", self.patience)

    def on_row(self, row: Mapping[str, float], control: Control) -> None:
        if self.metric not in row:
            return
        value = row[self.metric]
        if self.best_step is None or _improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_step, self._waited = value, int(row["step"]), 0
            return
        self._waited += 1
        if self._waited >= self.patience:
            control.stop = True
            control.reason = (
                f"early stopping: {self.metric} has not improved on {self.best:.6g} (step "
                f"{self.best_step}) for {self._waited} evaluations"
            )


@dataclass
class Every:
    """Call ``fn(step, state, row)`` every ``every`` steps (``fit`` ends a compiled call at
    each multiple of ``every``, so ``state`` is the state at exactly that step)."""

    every: int
    fn: Callable[[int, Any, Mapping[str, float]], Any]

    def __post_init__(self) -> None:
        self.every = check_positive_int("every", self.every)
        if not callable(self.fn):
            raise TypeError(f"Every: `fn` must be callable (step, state, row), got {self.fn!r}")

    def on_row(self, row: Mapping[str, float], control: Control) -> None:
        if int(row["step"]) % self.every == 0:
            self.fn(int(row["step"]), control.state, row)


@dataclass
class ReduceLROnPlateau:
    """Multiply the learning rate by ``factor`` when ``metric`` has not improved by more than
    ``min_delta`` for ``patience`` rows that report it, down to ``min_scale`` times the
    original; then wait ``cooldown`` such rows before counting again. (The scale multiplies the
    optimizer's updates, as optax's ``contrib.reduce_on_plateau`` does.)"""

    metric: str = "eval_loss"
    factor: float = 0.5
    patience: int = 3
    mode: str = "min"
    min_delta: float = 0.0
    min_scale: float = 0.0
    cooldown: int = 0
    scale: float = field(default=1.0, init=False)
    best: float = field(default=math.nan, init=False)
    _seen: bool = field(default=False, init=False, repr=False)
    _waited: int = field(default=0, init=False, repr=False)
    _cooling: int = field(default=0, init=False, repr=False)

    needs_lr_scale = True

    def __post_init__(self) -> None:
        _check_metric(self.metric, self.mode)
        if not (isinstance(self.factor, (int, float)) and 0.0 < self.factor < 1.0):
            raise ValueError(f"`factor` must be in (0, 1), got {self.factor!r}")
        self.patience = check_positive_int("patience", self.patience)
        if not (isinstance(self.min_scale, (int, float)) and 0.0 <= self.min_scale <= 1.0):
            raise ValueError(f"`min_scale` must be in [0, 1], got {self.min_scale!r}")
        if not (isinstance(self.cooldown, int) and self.cooldown >= 0):
            raise ValueError(f"`cooldown` must be a non-negative integer, got {self.cooldown!r}")

    def on_row(self, row: Mapping[str, float], control: Control) -> None:
        if self.metric not in row:
            return
        value = row[self.metric]
        if not self._seen or _improved(value, self.best, self.mode, self.min_delta):
            self.best, self._seen, self._waited = value, True, 0
        elif self._cooling:
            self._cooling -= 1
        else:
            self._waited += 1
            if self._waited >= self.patience:
                self.scale = max(self.scale * self.factor, self.min_scale)
                self._waited, self._cooling = 0, self.cooldown
        control.lr_scale = self.scale


class ScaleState(NamedTuple):
    """The wrapped optimizer's state and the scale its updates get."""

    inner: Any
    scale: jax.Array


def scale_by_control(optimizer: Any) -> Any:
    """``optimizer`` with its updates multiplied by ``state.scale`` (initially 1), a value the
    host loop sets between calls (:class:`ReduceLROnPlateau`)."""
    from fdl.optim.base import GradientTransformation, takes_extra_args

    extra_args = takes_extra_args(optimizer)

    def init(params):
        return ScaleState(optimizer.init(params), jnp.ones((), jnp.float32))

    def update(updates, state, params=None, **extra):
        updates, inner = optimizer.update(updates, state.inner, params, **(extra if extra_args else {}))
        scaled = jax.tree.map(lambda u: (u * state.scale).astype(u.dtype), updates)
        return scaled, ScaleState(inner, state.scale)

    return GradientTransformation(init, update)
