"""The names optax gives the pieces of its interface, for type hints.

A *gradient transformation* maps a tree of gradients to a tree of updates of the same structure
and carries a state between calls (:mod:`fdl.optim.base`). optax names each piece of that
contract; fdl uses the same names so that code typed against optax reads the same against fdl:

* ``Params``, ``Updates``, ``OptState``: pytrees of arrays (parameters, the updates added to
  them, and an optimizer's state);
* ``TransformInitFn``: ``init(params) -> state``;
* ``TransformUpdateFn``: ``update(updates, state, params=None) -> (updates, state)``;
* ``TransformUpdateExtraArgsFn``: the same with optax's extra keyword arguments
  (``value``, ``grad``, ``value_fn``, ...), which every fdl ``update`` accepts;
* ``MaskOrFn``: a tree of bools with the parameters' structure (or a prefix of it), or a
  function ``params -> mask`` (the ``mask`` of :func:`fdl.optim.masked`);
* ``ShouldSkipUpdateFunction``: ``(updates, gradient_step, params) -> (should_skip, info)``,
  the test :class:`fdl.optim.MultiSteps` applies before accumulating
  (:func:`fdl.optim.skip_not_finite`, :func:`fdl.optim.skip_large_updates`).

These are aliases and protocols for type checkers only; nothing checks them at run time.

>>> from fdl.optim import TransformUpdateFn, adam
>>> update: TransformUpdateFn = adam(1e-3).update
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeAlias

import jax

__all__ = [
    "Params",
    "Updates",
    "OptState",
    "TransformInitFn",
    "TransformUpdateFn",
    "TransformUpdateExtraArgsFn",
    "MaskOrFn",
    "ShouldSkipUpdateFunction",
]

Params: TypeAlias = Any
"""A pytree of arrays: the parameters being optimized."""

Updates: TypeAlias = Params
"""A pytree with the parameters' structure: gradients in, the updates to add out."""

OptState: TypeAlias = Any
"""A pytree of arrays: an optimizer's state (a ``NamedTuple``, or a tuple of them for a chain)."""


class TransformInitFn(Protocol):
    """``init(params) -> state``."""

    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    """``update(updates, state, params=None) -> (updates, state)``."""

    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None
    ) -> tuple[Updates, OptState]: ...


class TransformUpdateExtraArgsFn(Protocol):
    """``update(updates, state, params=None, **extra_args) -> (updates, state)``."""

    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


MaskOrFn: TypeAlias = Any | Callable[[Params], Any]
"""A mask tree (bools, a prefix of the parameters' structure) or ``params -> mask``."""

ShouldSkipUpdateFunction: TypeAlias = Callable[[Updates, Updates, Params], tuple[jax.Array, Any]]
"""``(updates, gradient_step, params) -> (should_skip, info)``, as :class:`~fdl.optim.MultiSteps`
calls it: a boolean scalar and a pytree of diagnostics kept in its state."""
