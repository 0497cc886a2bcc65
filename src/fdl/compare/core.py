r"""The simulation core: ``k`` optimizers side by side in one ``lax.scan``, with the one train step.

Each lane is :func:`fdl.train.make_step` (the step ``fit`` and hand-written loops use) on the
problem's loss adapted by :func:`fdl.train.simple_loss`; the state is
:func:`fdl.train.init_state`. At step :math:`t` every lane takes the *same* batch
:math:`B_t`:

.. math::

    g_t = \nabla_\theta L_{B_t}(\theta_t), \qquad (u_t, s_{t+1}) = \text{update}(g_t, s_t,
    \theta_t), \qquad \theta_{t+1} = \theta_t + u_t, \qquad t = 0, \dots, T - 1,

where :math:`L_{B_t} = L` (the full loss) by default, or, with minibatches, the loss on the
batch ``batch_at(t)``, a pure function of the step (so it is the same for every optimizer and
every run). The recorded loss is always the full :math:`L(\theta_t)`, for
:math:`t = 0, \dots, T`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from fdl._checks import check_positive_int
from fdl.fit.pieces import batch_at as step_batch
from fdl.fit.pieces import epoch_orders
from fdl.optim.base import GradientTransformation, takes_extra_args
from fdl.train import init_state, make_step, simple_loss

__all__ = ["Trajectories", "is_transformation", "minibatches", "simulate"]

PyTree = Any
Transformation = Any  # anything with optax's init/update pair


class Trajectories(NamedTuple):
    """What :func:`simulate` returns, as NumPy arrays (``k`` optimizers, ``T`` steps).

    Attributes:
      losses: ``(k, T + 1)``, :math:`L(\\theta_0), \\dots, L(\\theta_T)` for each optimizer.
      paths: ``(k, T + 1, P)``, every parameter vector (flattened), if ``record_path``.
      divergence: ``(T + 1,)``, :math:`\\max_i |\\theta_{t,i}^{(0)} - \\theta_{t,i}^{(1)}|`,
        when ``k == 2``.
    """

    losses: np.ndarray
    paths: np.ndarray | None
    divergence: np.ndarray | None


def is_transformation(value: Any) -> bool:
    """Whether ``value`` has optax's ``init`` and ``update``."""
    return callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


def _scoped(transform: Transformation) -> Transformation:
    """``transform`` with its ``init``/``update`` traced under standard dtype promotion, unless
    fdl built it: optax raises ``b1`` to an int32 count, which strict promotion rejects, while
    fdl's run under the caller's setting so a promotion bug in fdl still surfaces."""
    module = type(transform).__module__
    if module == "fdl" or module.startswith("fdl."):
        return transform

    def standard() -> contextlib.AbstractContextManager[Any]:
        return jax.numpy_dtype_promotion("standard")

    def init(params):
        with standard():
            return transform.init(params)

    extra = takes_extra_args(transform)

    def update(updates, state, params=None, **extra_args):
        with standard():
            return transform.update(updates, state, params, **(extra_args if extra else {}))

    return GradientTransformation(init, update)


def minibatches(data: tuple[Any, ...], batch_size: int, key: jax.Array) -> Callable[[Any], Any]:
    r"""``batch_at(t)``: the minibatch of step ``t``, a pure function of the step.

    With :math:`N` examples and :math:`S = \lfloor N / b \rfloor` steps per epoch, step
    :math:`t` reads examples :math:`\pi_e[p b : (p + 1) b]` of the permutation
    :math:`\pi_e = \text{permutation}(\text{fold\_in}(k, e), N)` of epoch
    :math:`e = \lfloor t / S \rfloor`, at :math:`p = t \bmod S`: the rule of
    :mod:`fdl.fit.pieces`, so ``fit`` with the same key sees the same batches.

    Args:
      data: a tuple of arrays with a common leading axis of :math:`N` examples.
      batch_size: :math:`b`, a positive int :math:`\le N`.
      key: the data key :math:`k`.

    Raises:
      ValueError: ``batch_size`` not a positive int, or larger than :math:`N`.

    >>> import jax, jax.numpy as jnp
    >>> batch_at = minibatches((jnp.arange(10),), 4, jax.random.key(0))
    >>> batch_at(0)[0].shape
    (4,)
    >>> bool(jnp.all(batch_at(5)[0] == batch_at(5)[0]))  # a function of the step alone
    True
    """
    batch_size = check_positive_int("batch_size", batch_size)
    num_examples = int(jax.tree.leaves(data)[0].shape[0])
    if batch_size > num_examples:
        raise ValueError(
            f"`batch_size` must be at most the number of examples, {num_examples}; got {batch_size}"
        )
    per_epoch = num_examples // batch_size

    def batch_at(t: Any) -> tuple[jax.Array, ...]:
        epoch = t // per_epoch
        orders = epoch_orders(key, num_examples, epoch, 1)  # (1, N)
        return step_batch(tuple(data), t, orders, epoch, batch_size, per_epoch)

    return batch_at


def _max_abs_difference(a: PyTree, b: PyTree) -> jax.Array:
    leaves = [
        jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    ]
    return jnp.max(jnp.stack(leaves))


def simulate(
    transforms: Sequence[Transformation],
    loss: Callable[[PyTree], jax.Array],
    params: PyTree,
    steps: int,
    *,
    record_path: bool = False,
    batch_loss: Callable[[PyTree, Any], jax.Array] | None = None,
    batch_at: Callable[[Any], Any] | None = None,
) -> Trajectories:
    r"""Run ``k`` optimizers side by side from ``params`` for ``steps`` steps.

    All ``k`` trajectories advance together inside **one** ``jax.lax.scan``, compiled into one
    XLA call. With two optimizers, the per-step divergence
    :math:`d_t = \max_i |\theta^{(0)}_{t,i} - \theta^{(1)}_{t,i}|` is computed in the same call.

    Args:
      transforms: the optimizers (anything with optax's ``init``/``update``).
      loss: ``loss(params) -> scalar``, the full loss; it is recorded at every step, and its
        gradient is the step's unless minibatches are given.
      params: the common starting parameters :math:`\theta_0`.
      steps: the number of steps :math:`T \ge 1`.
      record_path: also return every parameter vector (for 2-D plots).
      batch_loss: with ``batch_at``, minibatch gradients: ``batch_loss(params, batch)``.
      batch_at: ``batch_at(t) -> batch``, a pure function of the (traced) step ``t``, such as
        :func:`minibatches` returns.

    Returns:
      :class:`Trajectories` of NumPy arrays.

    Raises:
      ValueError: no transformations, ``steps`` not a positive int, or only one of
        ``batch_loss`` and ``batch_at``.
      TypeError: a transformation without ``init``/``update``.

    >>> import jax.numpy as jnp, optax
    >>> out = simulate([optax.sgd(0.25)], lambda p: jnp.sum(p**2), jnp.asarray([1.0]), 2)
    >>> out.losses.tolist()  # theta halves every step: 1, 1/2, 1/4
    [[1.0, 0.25, 0.0625]]
    """
    steps = check_positive_int("steps", steps)
    transforms = tuple(transforms)
    if not transforms:
        raise ValueError("simulate needs at least one transformation, got none")
    for i, transform in enumerate(transforms):
        if not is_transformation(transform):
            raise TypeError(
                f"transforms[{i}] must be a gradient transformation with init and update, got {transform!r}"
            )
    if (batch_loss is None) != (batch_at is None):
        given = "batch_loss" if batch_at is None else "batch_at"
        raise ValueError(
            f"simulate: minibatch gradients need both `batch_loss` and `batch_at`; got only `{given}`"
        )
    if batch_loss is None:  # and so batch_at is None: both or neither, checked above
        step_loss = simple_loss(lambda p, batch, key: loss(p))
    else:
        step_loss = simple_loss(lambda p, batch, key: batch_loss(p, batch))
    transforms = tuple(_scoped(transform) for transform in transforms)
    train_steps = [make_step(step_loss, transform) for transform in transforms]

    def record(all_params: Sequence[PyTree]) -> dict[str, jax.Array]:
        out = {}
        if record_path:
            out["path"] = jnp.stack([ravel_pytree(p)[0].astype(jnp.float32) for p in all_params])
        if len(all_params) == 2:
            out["divergence"] = _max_abs_difference(*all_params)
        return out

    def body(states, t):
        batch = None if batch_at is None else batch_at(t)  # one batch, shared by every lane
        values, new_states = [], []
        for train_step, state in zip(train_steps, states, strict=True):
            new_state, metrics, _ = train_step(state, batch, None)
            values.append(metrics["loss"] if batch_at is None else loss(state.params))
            new_states.append(new_state)
        before = [state.params for state in states]
        out = {"loss": jnp.stack(values), **record(before)}  # at theta_t, before the step
        return tuple(new_states), out

    def run(params: PyTree) -> dict[str, jax.Array]:
        states = tuple(init_state(params, transform) for transform in transforms)
        last, outs = jax.lax.scan(body, states, jnp.arange(steps, dtype=jnp.int32))
        final_params = [state.params for state in last]
        final = {"loss": jnp.stack([loss(p) for p in final_params]), **record(final_params)}
        return jax.tree.map(lambda seq, x: jnp.concatenate([seq, x[None]]), outs, final)

    outs = jax.device_get(jax.jit(run)(params))
    paths = outs.get("path")
    return Trajectories(
        losses=np.asarray(outs["loss"]).T,  # (T + 1, k) -> (k, T + 1)
        paths=None if paths is None else np.asarray(paths).transpose(1, 0, 2),  # (k, T + 1, P)
        divergence=None if "divergence" not in outs else np.asarray(outs["divergence"]),
    )
