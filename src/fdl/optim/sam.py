r"""SAM: descend from where the loss is highest within a small ball around the parameters.

Sharpness-aware minimization (Foret et al., 2021) minimizes the worst loss in a neighbourhood
of radius :math:`\rho` instead of the loss itself,

.. math::

    \min_\theta \max_{\lVert\epsilon\rVert \le \rho} L(\theta + \epsilon), \qquad
    \hat\epsilon(\theta) = \rho\, \frac{\nabla L(\theta)}{\lVert \nabla L(\theta)\rVert},

which favours flat minima. One SAM step is an *adversarial* ascent step to
:math:`\theta + \hat\epsilon`, a gradient taken there, and a *descent* step from the original
:math:`\theta` with that gradient:
:math:`\theta \leftarrow \theta - \eta\, \nabla L(\theta + \hat\epsilon)`.

:func:`sam` generalises both steps to optimizers: ``adv_optimizer`` takes the ascent steps
(``chain(normalize(), sgd(rho))`` gives the paper's :math:`\hat\epsilon`), ``optimizer`` the
descent step, once every ``sync_period`` calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import as_concrete_number, check_real, check_same_shapes, names_errors
from fdl.optim.base import (
    EmptyState,
    GradientTransformation,
    apply_updates,
    init_empty_state,
    with_extra_args_support,
)
from fdl.tree import floats, norm

__all__ = ["NormalizeState", "SAMState", "normalize", "sam"]

PyTree = Any

NormalizeState = EmptyState
""":func:`normalize`'s state (no leaves), as optax names it."""


def normalize() -> GradientTransformation:
    r"""Divide the updates by their global norm: :math:`u = g / \lVert g\rVert_2`.

    SAM's helper for the adversarial step (optax's ``optax.contrib.normalize``): without an
    ``eps``, a zero gradient gives NaN, as in optax. :func:`~fdl.optim.normalize.normalize_by_update_norm`
    is the same map with an ``eps`` and a ``scale_factor``.

    >>> import jax.numpy as jnp
    >>> u, _ = normalize().update({"a": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}, NormalizeState())
    >>> [round(x, 6) for x in u["a"].tolist() + u["b"].tolist()]
    [0.6, 0.8]
    """

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = floats(updates)  # integer / Python-number updates as floats
        total = norm(updates)
        return jax.tree.map(lambda g: g / total.astype(g.dtype), updates), state

    return GradientTransformation(init_empty_state, update)


class SAMState(NamedTuple):
    """:func:`sam`'s state (optax's fields, in optax's order).

    Attributes:
      steps_since_sync: calls since the last descent step, in ``[0, sync_period)`` (int32;
        always 0 in opaque mode).
      opt_state: the descent optimizer's state.
      adv_state: the adversarial optimizer's state.
      cache: the parameters :math:`\\theta` at the start of the current period, which the
        descent step starts from (``None`` in opaque mode).
    """

    steps_since_sync: jax.Array
    opt_state: Any
    adv_state: Any
    cache: PyTree | None


def _period(value: Any, opaque_mode: bool) -> Any:
    """``sync_period`` as an int if concrete (a whole number >= 1), as an int32 array if traced
    (transparent mode only: opaque mode unrolls a Python loop of ``sync_period - 1`` steps)."""
    check_real("sync_period", value)
    number = as_concrete_number(value)
    if number is None:
        if opaque_mode:
            raise ValueError(
                "`sync_period` must be a concrete whole number >= 1 with opaque_mode=True (the "
                f"adversarial steps are unrolled in Python), got the traced value {value!r}"
            )
        return jnp.asarray(value).astype(jnp.int32)
    if number < 1 or number != int(number):
        raise ValueError(
            "`sync_period` must be a whole number >= 1 (calls per descent step: the adversarial "
            f"steps and then one descent step), got {value!r}"
        )
    return int(number)


def _check_transformation(name: str, value: Any) -> None:
    if not (callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))):
        raise TypeError(
            f"`{name}` must be a gradient transformation with init and update "
            f"(e.g. fdl.optim.sgd(0.1) or optax.sgd(0.1)), got {value!r}"
        )


def _pick(condition: jax.Array, if_true: PyTree, if_false: PyTree) -> PyTree:
    """Leafwise ``if_true`` where ``condition`` else ``if_false``, in ``if_false``'s dtypes."""

    def one(t, f):
        f = jnp.asarray(f)
        return jnp.where(condition, jnp.asarray(t).astype(f.dtype), f)

    return jax.tree.map(one, if_true, if_false)


@names_errors("sam")
def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradientTransformation:
    r"""Sharpness-aware minimization: ``sync_period - 1`` adversarial steps, then one descent
    step from where the period started.

    With :math:`A` the adversarial optimizer, :math:`O` the descent optimizer, :math:`k` =
    ``sync_period`` and :math:`\theta` the parameters at the start of a period (the ``cache``),
    the calls :math:`j = 0, \ldots, k-1` of a period, each given the gradient :math:`g_j` at the
    current parameters :math:`\theta_j` (:math:`\theta_0 = \theta`), return

    .. math::

        u_j = \begin{cases}
            -A(g_j) & j < k - 1 \quad \text{(ascent: } \theta_{j+1} = \theta_j - A(g_j)) \\
            \theta - \theta_j + O(g_j; \theta) & j = k - 1 \quad \text{(descent: }
                \theta_k = \theta + O(g_j))
        \end{cases}

    so the descent step uses the gradient at the adversarial point but moves the parameters
    of the period's start. :math:`A`'s state advances on the ascent calls only and, with
    ``reset_state``, restarts (its ``init``) at each descent call; :math:`O`'s state advances on
    descent calls only. ``A = chain(normalize(), sgd(rho))`` with ``k = 2`` is the paper's
    SAM: :math:`\theta \leftarrow \theta - \eta \nabla L(\theta + \rho\, g / \lVert g\rVert)`.
    ``adv_optimizer`` *descends* by its own sign convention and SAM negates it, so that an
    ``sgd`` ascends.

    With ``opaque_mode=True`` each call runs the whole period itself: the caller passes
    ``grad_fn(params, i)`` (the gradient at ``params`` for adversarial step ``i``) as a keyword
    argument of ``update``; the ascent steps happen inside and the returned update is
    :math:`O(g_{k-1}; \theta)`, the only change the rest of the system sees (needed when each
    call has side effects such as batch-norm statistics).

    Args:
      optimizer: the descent optimizer :math:`O` (fdl's or optax's).
      adv_optimizer: the adversarial optimizer :math:`A` (fdl's or optax's).
      sync_period: :math:`k`, calls per descent step, a whole number >= 1 (1: no ascent).
      reset_state: restart :math:`A`'s state at every descent step.
      opaque_mode: run the ascent steps inside ``update`` with ``grad_fn`` (see above).
      batch_axis_name: in opaque mode under ``pmap``, the axis to average the adversarial
        gradients over (``jax.lax.pmean``); ``None`` for none.

    Returns:
      A transformation with state :class:`SAMState` ``(steps_since_sync, opt_state,
      adv_state, cache)``. In transparent mode ``update`` needs ``params``; in opaque mode it
      needs ``grad_fn=...``. Other keyword arguments reach both optimizers (those that take
      them).

    Raises:
      TypeError: an ``optimizer`` or ``adv_optimizer`` without ``init`` and ``update``, a
        non-numeric ``sync_period``.
      ValueError: ``sync_period`` not a whole number >= 1 (or traced, in opaque mode); at
        ``update``, no ``params`` (transparent) or no ``grad_fn`` (opaque), or updates whose
        shapes differ from the parameters'.

    >>> import jax, jax.numpy as jnp
    >>> from fdl.optim import apply_updates, chain, sgd
    >>> loss = lambda w: 0.5 * jnp.sum(w**2)
    >>> opt = sam(sgd(0.5), chain(normalize(), sgd(1.0)), sync_period=2)
    >>> params = jnp.asarray([3.0, 4.0])
    >>> state = opt.init(params)
    >>> for _ in range(2):  # ascent to (3, 4) * 1.2, then descent from (3, 4) with its gradient
    ...     updates, state = opt.update(jax.grad(loss)(params), state, params)
    ...     params = apply_updates(params, updates)
    >>> [round(x, 4) for x in params.tolist()]  # (3, 4) - 0.5 * 1.2 * (3, 4)
    [1.2, 1.6]

    References:
      Foret, Kleiner, Mobahi and Neyshabur, `Sharpness-Aware Minimization for Efficiently
      Improving Generalization <https://arxiv.org/abs/2010.01412>`_, ICLR 2021.

    Differs from optax:
      The choices between the two optimizers' results are made with ``jnp.where`` (optax
      blends ``c * a + (1 - c) * b``, which turns an inf or NaN in the unused branch into NaN).
      The updates keep the gradients' dtype. ``update`` accepts optax's extra keyword
      arguments and passes them to both optimizers (optax's takes ``grad_fn`` only). A
      ``sync_period`` that is not a whole number is refused (optax checks ``>= 1`` only), and
      a missing ``params`` is named (optax fails inside its tree map). With ``sync_period=1``
      each call descends from the current parameters, as ``optimizer`` alone would; optax
      descends from the previous call's parameters then (it reads the cache before storing
      the current parameters in it), so its iterates leapfrog. For ``sync_period >= 2`` the
      two agree.
    """
    _check_transformation("optimizer", optimizer)
    _check_transformation("adv_optimizer", adv_optimizer)
    period = _period(sync_period, opaque_mode)
    outer = with_extra_args_support(optimizer)
    adversary = with_extra_args_support(adv_optimizer)

    def init(params: PyTree) -> SAMState:
        return SAMState(
            steps_since_sync=jnp.zeros([], jnp.int32),
            opt_state=outer.init(params),
            adv_state=adversary.init(params),
            cache=None if opaque_mode else params,
        )

    def transparent_update(updates, state, params=None, *, grad_fn=None, **extra_args):
        del grad_fn  # only opaque mode calls it
        if params is None:
            raise ValueError(
                "sam: `params` must be given to update (the descent step starts from the cached "
                "parameters): call opt.update(grads, state, params)"
            )
        updates = floats(updates)  # integer / Python-number updates as floats
        check_same_shapes("sam", "`updates`", updates, "`params`", params)
        first = state.steps_since_sync == 0
        last = state.steps_since_sync == period - 1

        ascent, adv_state = adversary.update(updates, state.adv_state, params, **extra_args)
        ascent = jax.tree.map(jnp.negative, ascent)
        # the period's start: these params on its first call (with sync_period=1, every call)
        cache = _pick(first, params, state.cache)
        descent, opt_state = outer.update(updates, state.opt_state, cache, **extra_args)

        def back_then_descend(c, p, u, g):
            dtype = _dtypes.result_type(c, p, u)
            return (c.astype(dtype) - p.astype(dtype) + u.astype(dtype)).astype(g.dtype)

        descent = jax.tree.map(back_then_descend, cache, params, descent, updates)
        ascent = jax.tree.map(lambda a, g: a.astype(g.dtype), ascent, updates)
        new_updates = jax.tree.map(lambda d, a: jnp.where(last, d, a), descent, ascent)

        restart = adversary.init(params) if reset_state else state.adv_state
        return new_updates, SAMState(
            steps_since_sync=(state.steps_since_sync + 1) % period,
            opt_state=_pick(last, opt_state, state.opt_state),
            adv_state=_pick(last, restart, adv_state),
            cache=cache,
        )

    def opaque_update(updates, state, params=None, *, grad_fn: Callable | None = None, **extra_args):
        if grad_fn is None:
            raise ValueError(
                "sam: with opaque_mode=True, update needs the gradient function: call "
                "opt.update(grads, state, params, grad_fn=lambda params, i: jax.grad(loss)(params))"
            )
        if params is None:
            raise ValueError(
                "sam: `params` must be given to update (the adversarial steps start from them): "
                "call opt.update(grads, state, params, grad_fn=grad_fn)"
            )
        grads = floats(updates)  # integer / Python-number updates as floats
        check_same_shapes("sam", "`updates`", grads, "`params`", params)
        adv_params, adv_state = params, state.adv_state
        for i in range(period - 1):
            ascent, adv_state = adversary.update(grads, adv_state, adv_params, **extra_args)
            adv_params = apply_updates(adv_params, jax.tree.map(jnp.negative, ascent))
            grads = grad_fn(adv_params, i)
            if batch_axis_name is not None:
                grads = jax.lax.pmean(grads, axis_name=batch_axis_name)
        if reset_state:
            adv_state = adversary.init(params)
        new_updates, opt_state = outer.update(grads, state.opt_state, params, **extra_args)
        return new_updates, SAMState(
            steps_since_sync=jnp.zeros([], jnp.int32),
            opt_state=opt_state,
            adv_state=adv_state,
            cache=None,
        )

    return GradientTransformation(init, opaque_update if opaque_mode else transparent_update)
