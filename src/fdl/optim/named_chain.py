r"""A chain whose members have names: the state is a dict, ``state["adam"]`` instead of
``state[0]``.

:func:`~fdl.optim.base.chain` keeps its members' states in a tuple, by position;
:func:`named_chain` keeps them in an ordered dict by the names given, so a state reads (and a
checkpoint, a log line or an error message names) ``clip``, ``adam``, ``lr`` rather than 0, 1,
2. The updates are the same: :math:`u = T_n(\cdots T_1(g))`.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

from fdl.optim.base import GradientTransformation, with_extra_args_support

__all__ = ["named_chain"]

PyTree = Any


def named_chain(*transforms: tuple[str, GradientTransformation]) -> GradientTransformation:
    r"""Compose ``(name, transformation)`` pairs: :math:`u = T_n(\cdots T_1(g))`, each state
    kept under its name.

    The state is a ``collections.OrderedDict`` from each name to its transformation's state,
    in the order given (an ordered dict keeps that order when flattened as a pytree, where a
    plain dict would sort its keys), as optax's ``named_chain``. Extra keyword arguments of
    ``update`` (``value``, ``grad``, ...) reach every member that accepts them, as in
    :func:`~fdl.optim.base.chain`.

    Args:
      *transforms: ``(name, transformation)`` pairs: a string, unique among the pairs, and
        any object with optax's ``init``/``update`` (fdl's or optax's transformations).

    Returns:
      A transformation whose state is ``OrderedDict(name -> state)``.

    Raises:
      TypeError: an argument that is not a ``(name, transformation)`` pair, a name that is
        not a string, or a transformation without ``init`` and ``update``.
      ValueError: a name given twice; at ``update``, a state without the chain's names.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import scale, scale_by_adam
    >>> opt = named_chain(("adam", scale_by_adam()), ("lr", scale(-0.1)))
    >>> state = opt.init(jnp.zeros(2))
    >>> list(state)
    ['adam', 'lr']
    >>> u, state = opt.update(jnp.asarray([2.0, -1.0]), state)
    >>> [round(x, 4) for x in u.tolist()], int(state["adam"].count)
    ([-0.1, 0.1], 1)

    Differs from optax:
      optax builds any pairs it is given and fails later (or not at all: a non-string name is
      used as a key); fdl checks the pairs and the names where they are given.
    """
    for i, pair in enumerate(transforms):
        is_transformation = callable(getattr(pair, "update", None))  # a (init, update) tuple itself
        if is_transformation or not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError(
                f"named_chain argument {i} must be a (name, transformation) pair, e.g. "
                f"('adam', fdl.optim.scale_by_adam()), got {pair!r}"
            )
        name, t = pair
        if not isinstance(name, str):
            raise TypeError(f"named_chain argument {i}: the name must be a string, got {name!r}")
        if not (callable(getattr(t, "init", None)) and callable(getattr(t, "update", None))):
            raise TypeError(
                f"named_chain argument {i} ({name!r}): the transformation must have init and update "
                f"(e.g. fdl.optim.scale(0.1) or optax.scale(0.1)), got {t!r}"
            )
    names = [name for name, _ in transforms]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"named_chain names must be unique, got {names} ({', '.join(repeated)} repeated)")
    members = [(name, with_extra_args_support(t)) for name, t in transforms]

    def init(params: PyTree) -> collections.OrderedDict:
        return collections.OrderedDict((name, t.init(params)) for name, t in members)

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, Mapping) or set(state) != set(names):
            got = f"keys {list(state)}" if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(
                f"named_chain expects a state with the keys {names} (as its init returned), got {got}"
            )
        new_state = collections.OrderedDict()
        for name, t in members:
            updates, new_state[name] = t.update(updates, state[name], params, **extra_args)
        return updates, new_state

    return GradientTransformation(init, update)
