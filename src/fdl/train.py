r"""One step of gradient-based training, compiled once.

A training step is the composition of three pure functions:

.. math::

    (\ell, g) = \big(L(\theta_t; B, k),\; \nabla_\theta L(\theta_t; B, k)\big), \qquad
    (u_t, s_{t+1}) = \mathrm{update}(g, s_t, \theta_t), \qquad
    \theta_{t+1} = \theta_t + u_t

where :math:`L` is the loss on batch :math:`B` with PRNG key :math:`k` (for dropout),
:math:`s` the optimizer state and ``update`` any optimizer with optax's
``GradientTransformation`` interface (optax's own, or fdl's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from fdl.nn.parts import combine, partition
from fdl.optim.base import GradientTransformation, apply_updates

__all__ = ["make_train_step", "make_stateful_train_step", "trainable_part"]

PyTree = Any


def trainable_part(params: PyTree, trainable: Any = None) -> PyTree:
    """The part of ``params`` that a step built with ``trainable`` trains: initialize the
    optimizer on it, ``opt_state = optimizer.init(trainable_part(params, trainable))``.

    ``trainable=None`` means all of ``params``. Otherwise it is anything
    :func:`fdl.nn.select` takes (a path pattern such as ``"head/**"``, a list of them, a
    predicate, or a tree of bools), and the other leaves are ``None``.
    """
    return params if trainable is None else partition(params, trainable)[0]


def _with_frozen(fn: Callable[..., Any], params: PyTree, trainable: Any) -> tuple[Callable[..., Any], PyTree, PyTree]:
    """``(fn of the trainable part, trainable part, frozen part)``: the frozen part enters ``fn``
    as a constant, so ``jax.grad`` never computes its gradient (nor the backward pass below the
    lowest trainable layer)."""
    if trainable is None:
        return fn, params, None
    train, frozen = partition(params, trainable)

    def of_trainable(train_params, *args):
        return fn(combine(train_params, frozen), *args)

    return of_trainable, train, frozen


def _put_back(train: PyTree, frozen: PyTree) -> PyTree:
    return train if frozen is None else combine(train, frozen)


def make_train_step(
    loss_fn: Callable[..., Any],
    optimizer: GradientTransformation,
    *,
    has_aux: bool = False,
    donate: bool = True,
    trainable: Any = None,
) -> Callable[[PyTree, PyTree, Any, jax.Array], tuple[PyTree, PyTree, dict[str, jax.Array]]]:
    r"""Build ``step(params, opt_state, batch, key) -> (params, opt_state, metrics)``, jit-compiled.

    The returned function *is* the ``jax.jit``-compiled step: calling it does no Python work
    beyond JAX's own dispatch (no blocking, no pytree rebuilding), so its per-call cost equals a
    hand-written jitted step's. With ``donate=True`` the ``params`` and ``opt_state`` buffers are
    donated to XLA, which updates them in place: do not use the arrays you passed in after the
    call, use the ones it returns.

    Args:
      loss_fn: ``loss_fn(params, batch, key)`` returning the scalar loss, or ``(loss, aux)``
        with ``aux`` a dict of scalar metrics when ``has_aux=True``.
      optimizer: an ``(init, update)`` pair with optax's interface:
        ``update(grads, state, params) -> (updates, state)``, fdl's (:mod:`fdl.optim`) or
        optax's. The updates are added with :func:`fdl.optim.apply_updates` (each parameter
        keeps its dtype).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.
      donate: donate the ``params`` and ``opt_state`` buffers.
      trainable: train only these leaves (a path pattern like ``"head/**"``, a list of them, a
        predicate ``(path, leaf) -> bool`` or a tree of bools; see :func:`fdl.nn.select`).
        The gradient is taken with respect to them alone, so the frozen part's gradient is never
        computed, and the frozen leaves come back bit for bit. ``opt_state`` then belongs to the
        trainable part: ``optimizer.init(fdl.train.trainable_part(params, trainable))``.
        ``None`` trains every leaf. To also run a frozen part in evaluation mode (batch norm
        keeping its statistics), wrap it with :func:`fdl.nn.eval_mode`.

    Returns:
      The compiled step. ``metrics`` holds ``"loss"`` (the loss *before* the update) and the
      entries of ``aux``.

    Raises:
      TypeError: ``loss_fn`` is not callable, or ``optimizer`` lacks ``init``/``update``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> def loss_fn(params, batch, key):
    ...     x, y = batch
    ...     return jnp.mean((x * params["w"] - y) ** 2)
    >>> step = fdl.train.make_train_step(loss_fn, fdl.optim.sgd(0.1))
    >>> params = {"w": jnp.array(0.0)}
    >>> opt_state = fdl.optim.sgd(0.1).init(params)
    >>> batch = (jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0]))
    >>> for _ in range(50):
    ...     params, opt_state, metrics = step(params, opt_state, batch, jax.random.key(0))
    >>> round(float(params["w"]), 4)
    2.0
    """
    _check_step_arguments(loss_fn, optimizer, "make_train_step")

    def step(params: PyTree, opt_state: PyTree, batch: Any, key: jax.Array):
        fn, train, frozen = _with_frozen(loss_fn, params, trainable)
        grad_fn = jax.value_and_grad(fn, has_aux=has_aux)
        if has_aux:
            (loss, aux), grads = grad_fn(train, batch, key)
            metrics = {"loss": loss, **aux}
        else:
            loss, grads = grad_fn(train, batch, key)
            metrics = {"loss": loss}
        updates, opt_state = optimizer.update(grads, opt_state, train)
        return _put_back(apply_updates(train, updates), frozen), opt_state, metrics

    return jax.jit(step, donate_argnums=(0, 1) if donate else ())


def make_stateful_train_step(
    loss_fn: Callable[..., Any],
    optimizer: GradientTransformation,
    *,
    donate: bool = True,
    trainable: Any = None,
) -> Callable[..., tuple[PyTree, PyTree, PyTree, dict[str, jax.Array]]]:
    r"""The train step for models with layer state (batch norm): the state goes in and comes out.

    .. math::

        \big(\ell, (\sigma_{t+1}, \text{aux})\big), g
            = \big(L(\theta_t, \sigma_t; B, k), \nabla_\theta L(\theta_t, \sigma_t; B, k)\big),
        \qquad \theta_{t+1} = \theta_t + \mathrm{update}(g, s_t, \theta_t)

    where :math:`\sigma` is the layer state: the loss runs the model in training mode, which
    returns the new state (batch norm's running statistics) next to its output, and the step
    hands it back. The gradient is taken with respect to :math:`\theta` only; the state is data.

    Returns ``step(params, layer_state, opt_state, batch, key) -> (params, layer_state,
    opt_state, metrics)``, the ``jax.jit``-compiled step itself (no Python wrapper), with the
    params, layer state and optimizer state donated when ``donate=True``.

    Args:
      loss_fn: ``loss_fn(params, layer_state, batch, key) -> (loss, (new_layer_state, aux))``,
        ``aux`` a dict of scalar metrics (may be empty).
      optimizer: an ``(init, update)`` pair with optax's interface (fdl's or optax's).
      donate: donate the params, layer-state and optimizer-state buffers.
      trainable: train only these leaves, as in :func:`make_train_step`.

    Raises:
      TypeError: ``loss_fn`` is not callable, or ``optimizer`` lacks ``init``/``update``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dense(1), fdl.nn.BatchNorm())
    >>> params, state, _ = model.init(jax.random.key(0), (2,))
    >>> def loss_fn(params, state, batch, key):
    ...     y, state = model.apply(params, state, batch, train=True)
    ...     return jnp.mean(y ** 2), (state, {})
    >>> opt = fdl.optim.sgd(0.1)
    >>> step = fdl.train.make_stateful_train_step(loss_fn, opt)
    >>> batch = jnp.arange(8.0).reshape(4, 2)
    >>> params, state, opt_state, metrics = step(params, state, opt.init(params), batch, None)
    >>> [round(float(v), 4) for v in state["batch_norm_0"]["mean"]] != [0.0]  # running mean moved
    True
    """
    _check_step_arguments(loss_fn, optimizer, "make_stateful_train_step")

    def step(params: PyTree, layer_state: PyTree, opt_state: PyTree, batch: Any, key: jax.Array):
        fn, train, frozen = _with_frozen(loss_fn, params, trainable)
        (loss, (layer_state, aux)), grads = jax.value_and_grad(fn, has_aux=True)(
            train, layer_state, batch, key
        )
        updates, opt_state = optimizer.update(grads, opt_state, train)
        params = _put_back(apply_updates(train, updates), frozen)
        return params, layer_state, opt_state, {"loss": loss, **aux}

    return jax.jit(step, donate_argnums=(0, 1, 2) if donate else ())


def _check_step_arguments(loss_fn: Any, optimizer: Any, factory: str) -> None:
    if not callable(loss_fn):
        raise TypeError(f"{factory}: `loss_fn` must be callable, got {loss_fn!r}")
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            f"{factory}: `optimizer` must have optax's (init, update) interface "
            f"(e.g. fdl.optim.adam(1e-3) or optax.adam(1e-3)), got {optimizer!r}"
        )
