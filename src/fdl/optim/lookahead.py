r"""Lookahead: :math:`k` steps forward with a fast optimizer, one step back toward a slow copy.

Lookahead (Zhang et al., 2019) keeps two copies of the parameters. The *fast* parameters
:math:`\phi` move with any optimizer :math:`T` (the *fast optimizer*); every ``sync_period``
:math:`= k` fast steps, the *slow* parameters :math:`\theta` take a step of size
``slow_step_size`` :math:`= \alpha` toward where the fast ones arrived, and the fast ones are
reset onto the slow ones:

.. math::

    \phi_{t+1} = \phi_t + T(g_t), \qquad
    \text{every } k \text{ steps:}\quad
    \theta \leftarrow \theta + \alpha\,(\phi_{t+1} - \theta), \quad \phi_{t+1} \leftarrow \theta .

Gradients are taken at the fast parameters; the slow ones are the ones to evaluate (they
average out the fast optimizer's oscillations). Both copies travel together as
:class:`LookaheadParams` ``(fast, slow)``, and :func:`lookahead`'s updates are a
:class:`LookaheadParams` too, so :func:`fdl.optim.apply_updates` moves both at once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import as_concrete_number, check_real, check_same_shapes, check_unit_interval, names_errors
from fdl.optim.base import GradientTransformation, with_extra_args_support
from fdl.tree import floats

__all__ = ["LookaheadState", "LookaheadParams", "lookahead"]

PyTree = Any
Scalar = float | jax.Array


class LookaheadState(NamedTuple):
    """:func:`lookahead`'s state (optax's fields).

    Attributes:
      fast_state: the fast optimizer's state.
      steps_since_sync: fast steps since the last synchronisation, in :math:`[0, k)` (int32).
    """

    fast_state: Any
    steps_since_sync: jax.Array


class LookaheadParams(NamedTuple):
    """The two copies of the parameters that :func:`lookahead` moves.

    Attributes:
      fast: :math:`\\phi`, where the gradients are taken (``jax.grad(loss)(params.fast)``).
      slow: :math:`\\theta`, the parameters to evaluate and keep.

    >>> import jax.numpy as jnp
    >>> pair = LookaheadParams.init_synced({"w": jnp.ones(2)})
    >>> pair.fast is pair.slow
    True
    """

    fast: PyTree
    slow: PyTree

    @classmethod
    def init_synced(cls, params: PyTree) -> LookaheadParams:
        """Both copies equal to ``params``: the pair to start training from."""
        return cls(fast=params, slow=params)


def _sync_period(value: Any) -> Any:
    """``sync_period`` as an int if concrete (a whole number >= 1), as an int32 array if traced."""
    check_real("sync_period", value)
    number = as_concrete_number(value)
    if number is None:
        return jnp.asarray(value).astype(jnp.int32)
    if number < 1 or number != int(number):
        raise ValueError(
            f"`sync_period` must be a whole number >= 1 (fast steps between two slow steps), got {value!r}"
        )
    return int(number)


@names_errors("lookahead")
def lookahead(
    fast_optimizer: GradientTransformation,
    sync_period: int,
    slow_step_size: Scalar,
    reset_state: bool = False,
) -> GradientTransformation:
    r"""Wrap ``fast_optimizer`` in Lookahead: a slow step every ``sync_period`` fast steps.

    With the fast optimizer's update :math:`u_t = T(g_t)` at the fast parameters
    :math:`\phi_t`, the difference :math:`d_t = \phi_t + u_t - \theta_t` between where the fast
    parameters land and the slow ones, and :math:`s_t = 1` on every ``sync_period``-th call
    (:math:`t \bmod k = k - 1`), else 0, the updates are

    .. math::

        \Delta\theta_t = s_t\, \alpha\, d_t, \qquad
        \Delta\phi_t = u_t - s_t\, (1 - \alpha)\, d_t ,

    so that on a synchronising call both copies land on :math:`\theta_t + \alpha d_t`, and
    otherwise only the fast copy moves. ``reset_state`` also restarts the fast optimizer's state
    (its ``init`` at the current fast parameters) on every synchronising call.

    The updates must be applied unchanged (``apply_updates(params, updates)``): anything that
    rescales them afterwards breaks the synchronisation.

    Args:
      fast_optimizer: the inner optimizer :math:`T` (fdl's or optax's).
      sync_period: :math:`k`, fast steps per slow step, a whole number >= 1.
      slow_step_size: :math:`\alpha \in [0, 1]`: 0 keeps the slow parameters where they are
        (and pulls the fast ones back onto them), 1 makes them follow the fast ones.
      reset_state: restart the fast optimizer's state at each synchronisation.

    Returns:
      A transformation with state :class:`LookaheadState` ``(fast_state, steps_since_sync)``
      whose ``update(grads, state, params)`` takes ``params`` as :class:`LookaheadParams` and
      returns updates as :class:`LookaheadParams`. ``init`` takes :class:`LookaheadParams` (or,
      as optax, the fast parameters alone).

    Raises:
      TypeError: a ``fast_optimizer`` without ``init`` and ``update``; a non-numeric
        ``sync_period`` or ``slow_step_size``; at ``update``, ``params`` that are not
        :class:`LookaheadParams`.
      ValueError: ``sync_period`` not a whole number >= 1, ``slow_step_size`` outside
        ``[0, 1]``; at ``update``, updates or slow parameters whose shapes differ from the
        fast parameters'.

    >>> import jax, jax.numpy as jnp
    >>> from fdl.optim import apply_updates, sgd
    >>> opt = lookahead(sgd(0.5), sync_period=2, slow_step_size=0.5)
    >>> params = LookaheadParams.init_synced(jnp.asarray([4.0]))
    >>> state = opt.init(params)
    >>> for _ in range(2):
    ...     grads = jax.grad(lambda w: 0.5 * jnp.sum(w**2))(params.fast)  # fast: 4 -> 2 -> 1
    ...     updates, state = opt.update(grads, state, params)
    ...     params = apply_updates(params, updates)
    >>> params.slow.tolist(), params.fast.tolist()  # slow: 4 + 0.5 * (1 - 4)
    ([2.5], [2.5])

    References:
      Zhang, Lucas, Hinton and Ba, `Lookahead Optimizer: k steps forward, 1 step back
      <https://arxiv.org/abs/1907.08610>`_, 2019.

    Differs from optax:
      ``slow_step_size`` outside ``[0, 1]`` and a ``sync_period`` that is not a whole number
      are refused (optax checks only ``sync_period >= 1``). The updates keep the fast
      optimizer's dtype, and the state reset picks the initial state with ``jnp.where`` (optax
      blends ``(1 - s) * state + s * init``, which turns a NaN or inf in the state into NaN
      and boolean leaves into int32). ``init`` given plain parameters takes them as the fast
      ones silently (optax logs a warning); ``update`` then refuses them, naming the fix.
    """
    if not (
        callable(getattr(fast_optimizer, "init", None)) and callable(getattr(fast_optimizer, "update", None))
    ):
        raise TypeError(
            "`fast_optimizer` must be a gradient transformation with init and update "
            f"(e.g. fdl.optim.sgd(0.1) or optax.sgd(0.1)), got {fast_optimizer!r}"
        )
    period = _sync_period(sync_period)
    check_unit_interval("slow_step_size", slow_step_size)
    fast = with_extra_args_support(fast_optimizer)

    def init(params: PyTree) -> LookaheadState:
        fast_params = params.fast if isinstance(params, LookaheadParams) else getattr(params, "fast", params)
        return LookaheadState(fast_state=fast.init(fast_params), steps_since_sync=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra_args):
        if not (hasattr(params, "fast") and hasattr(params, "slow")):
            raise TypeError(
                "lookahead: `params` must be the LookaheadParams(fast=..., slow=...) being trained "
                "(start from LookaheadParams.init_synced(params), take the gradients at params.fast), "
                f"got {type(params).__name__}"
            )
        updates = floats(updates)  # integer / Python-number updates as floats
        check_same_shapes("lookahead", "`updates`", updates, "`params.fast`", params.fast)
        check_same_shapes("lookahead", "`params.slow`", params.slow, "`params.fast`", params.fast)
        fast_updates, fast_state = fast.update(updates, state.fast_state, params.fast, **extra_args)
        sync = state.steps_since_sync == period - 1
        new_updates = _lookahead_step(fast_updates, sync, params, slow_step_size)
        if reset_state:
            restarted = fast.init(params.fast)
            fast_state = jax.tree.map(
                lambda now, first: jnp.where(sync, jnp.asarray(first).astype(jnp.result_type(now)), now),
                fast_state,
                restarted,
            )
        steps = (state.steps_since_sync + 1) % period
        return new_updates, LookaheadState(fast_state=fast_state, steps_since_sync=steps)

    return GradientTransformation(init, update)


def _lookahead_step(updates: PyTree, sync: jax.Array, params: Any, slow_step_size: Any) -> LookaheadParams:
    r"""The updates of both copies, :math:`\Delta\phi` and :math:`\Delta\theta`, in the fast
    updates' dtypes (the difference :math:`d` in the promoted dtype of the three trees)."""

    def difference(u, fast, slow):
        dtype = _dtypes.result_type(u, fast, slow)
        return fast.astype(dtype) + u.astype(dtype) - slow.astype(dtype)

    def slow_update(u, fast, slow):
        d = difference(u, fast, slow)
        # a Python step size rounds to the default float first, as in optax's products
        alpha = jnp.asarray(slow_step_size).astype(d.dtype)
        return jnp.where(sync, alpha * d, jnp.zeros((), d.dtype)).astype(u.dtype)

    def fast_update(u, fast, slow):
        d = difference(u, fast, slow)
        pull = jnp.asarray(1 - slow_step_size).astype(d.dtype)
        return jnp.where(sync, u.astype(d.dtype) - pull * d, u.astype(d.dtype)).astype(u.dtype)

    return LookaheadParams(
        fast=jax.tree.map(fast_update, updates, params.fast, params.slow),
        slow=jax.tree.map(slow_update, updates, params.fast, params.slow),
    )
