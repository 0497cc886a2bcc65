r"""One training state and one train step, shared by ``fit``, ``compare`` and hand-written loops.

A training step is the composition of three pure functions:

.. math::

    \big(\ell, (\sigma_{t+1}, m)\big), g
        = \big(L, \nabla_\theta L\big)(\theta_t, \sigma_t; B, k), \qquad
    (u_t, s_{t+1}) = \mathrm{update}(g, s_t, \theta_t), \qquad
    \theta_{t+1} = \theta_t + u_t

where :math:`L` is the loss on batch :math:`B` with PRNG key :math:`k` (for dropout),
:math:`\sigma` the layer state (batch norm's running statistics; ``{}`` for most models),
:math:`m` a dict of scalar metrics, :math:`s` the optimizer state and ``update`` any optimizer
with optax's ``GradientTransformation`` interface (optax's own, or fdl's).

**The one loss signature.** Every entry point (:func:`make_step`, :func:`make_train_step`,
:func:`fdl.fit.fit`, :func:`fdl.compare.compare`) takes

    ``loss_fn(params, layer_state, batch, key) -> (loss, (layer_state, metrics))``

A loss of the simple form ``loss_fn(params, batch, key) -> loss`` (or ``-> (loss, metrics)``)
is adapted in one place: :func:`simple_loss`.

**The one state.** :class:`TrainState` holds the parameters, the layer state, the optimizer
state and the step count; :func:`init_state` builds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl._checks import check_arity, check_optimizer
from fdl.nn.parts import combine, partition
from fdl.optim.base import GradientTransformation, apply_updates, takes_extra_args

__all__ = [
    "TrainState",
    "init_state",
    "simple_loss",
    "make_step",
    "make_train_step",
    "trainable_part",
    "LOSS_SIGNATURE",
]

PyTree = Any
#: The one loss signature every training entry point takes (:func:`simple_loss` adapts a simpler one).
LOSS_SIGNATURE = "loss_fn(params, layer_state, batch, key) -> (loss, (layer_state, metrics))"


class TrainState(NamedTuple):
    """Everything a step changes: ``(params, layer_state, opt_state, step)``, a pytree.

    ``opt_state`` belongs to the trainable part of ``params`` (all of it unless the step was
    built with ``trainable=``); ``step`` is an int32 scalar, the number of steps taken.
    """

    params: PyTree
    layer_state: PyTree
    opt_state: PyTree
    step: jax.Array


def trainable_part(params: PyTree, trainable: Any = None) -> PyTree:
    """The part of ``params`` that a step built with ``trainable`` trains (the other leaves
    ``None``); the optimizer state is initialized on it.

    ``trainable=None`` means all of ``params``. Otherwise it is anything
    :func:`fdl.nn.select` takes (a path pattern such as ``"head/**"``, a list of them, a
    predicate, or a tree of bools).
    """
    return params if trainable is None else partition(params, trainable)[0]


def init_state(
    params: PyTree,
    optimizer: GradientTransformation,
    *,
    layer_state: PyTree = None,
    trainable: Any = None,
) -> TrainState:
    """The training state at step 0: a *copy* of ``params`` (and of ``layer_state``), the
    optimizer's initial state for the trainable part, and ``step = 0``.

    The copies are what the step may donate: arrays the caller keeps (``init_params =
    params`` to restart from) stay valid after any number of steps.

    Args:
      params: the initial parameters.
      optimizer: an ``(init, update)`` pair with optax's interface.
      layer_state: the model's layer state from ``init``; ``None`` means ``{}`` (stateless).
      trainable: the leaves the step will train (see :func:`trainable_part`); must be the same
        as the step's ``trainable``.

    >>> import jax.numpy as jnp, fdl
    >>> state = fdl.train.init_state({"w": jnp.zeros(2)}, fdl.optim.sgd(0.1))
    >>> int(state.step), state.layer_state
    (0, {})
    """
    check_optimizer("init_state", optimizer)
    params, layer_state = jax.tree.map(jnp.copy, (params, {} if layer_state is None else layer_state))
    opt_state = optimizer.init(trainable_part(params, trainable))
    return TrainState(params, layer_state, opt_state, jnp.zeros((), jnp.int32))


def simple_loss(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Adapt ``fn(params, batch, key) -> loss`` (or ``-> (loss, metrics)``) to the one loss
    signature, :data:`LOSS_SIGNATURE`, for a model without layer state.

    >>> import jax, jax.numpy as jnp, fdl
    >>> loss_fn = fdl.train.simple_loss(lambda p, batch, key: jnp.sum((p - batch) ** 2))
    >>> loss_fn(jnp.ones(2), {}, jnp.zeros(2), None)
    (Array(2., dtype=float32), ({}, {}))
    """
    if not callable(fn):
        raise TypeError(f"simple_loss: `fn` must be callable, got {fn!r}")

    def loss_fn(params, layer_state, batch, key):
        out = fn(params, batch, key)
        loss, metrics = out if isinstance(out, tuple) else (out, {})
        return loss, (layer_state, metrics)

    model = getattr(fn, "model", None)
    if model is not None:
        loss_fn.model = model  # type: ignore[attr-defined]
    return loss_fn


def make_step(
    loss_fn: Callable[..., Any],
    optimizer: GradientTransformation,
    *,
    trainable: Any = None,
) -> Callable[[TrainState, Any, Any], tuple[TrainState, dict[str, jax.Array], PyTree]]:
    r"""The pure train step, ``step(state, batch, key) -> (state, metrics, grads)``, not jitted.

    The building block of :func:`make_train_step`, :func:`fdl.fit.fit` (which scans it and
    guards it against non-finite values) and :func:`fdl.compare.compare`. ``metrics`` holds
    ``"loss"`` (before the update) and the loss's own metrics; ``grads`` is the gradient with
    respect to the trainable part (for guards and diagnostics; XLA drops it when unused).

    Args:
      loss_fn: :data:`LOSS_SIGNATURE`; adapt a simple loss with :func:`simple_loss`.
      optimizer: an ``(init, update)`` pair with optax's interface (fdl's or optax's); the
        updates are added with :func:`fdl.optim.apply_updates` (each parameter keeps its dtype).
      trainable: train only these leaves (a path pattern like ``"head/**"``, a list of them, a
        predicate ``(path, leaf) -> bool`` or a tree of bools; see :func:`fdl.nn.select`).
        The gradient is taken with respect to them alone, so the frozen part's gradient is never
        computed, and the frozen leaves come back bit for bit. ``None`` trains every leaf. To
        also run a frozen part in evaluation mode (batch norm keeping its statistics), wrap it
        with :func:`fdl.nn.eval_mode`.

    **Optimizers that need more than the gradient.** When ``optimizer.update`` takes optax's
    extra keyword arguments (a ``GradientTransformationExtraArgs``: fdl's transformations,
    ``optax.lbfgs``, ``optax.contrib.reduce_on_plateau``, ...), the step passes, as optax's
    documented loops do:

    * ``value``: the loss at the current parameters (before the update);
    * ``grad``: the gradient there (the same tree as the updates);
    * ``value_fn``: ``params -> loss`` on the same batch, key and layer state (for line
      searches; it evaluates the trainable part with the frozen part held fixed).

    A transformation that does not use them ignores them, and XLA drops ``value_fn`` unless a
    line search calls it. An optimizer whose ``update`` takes only ``(updates, state, params)``
    gets nothing extra.

    Raises:
      TypeError: ``loss_fn`` is not callable or does not take four arguments, ``optimizer``
        lacks ``init``/``update``; when traced, ``loss_fn`` returns something other than
        ``(loss, (layer_state, metrics))`` with a scalar loss.
    """
    check_arity("make_step", "loss_fn", loss_fn, 4, LOSS_SIGNATURE, hint=_SIMPLE_LOSS_HINT)
    check_optimizer("make_step", optimizer)
    checked = _checked_loss(loss_fn)
    extra_args = takes_extra_args(optimizer)

    def step(state: TrainState, batch: Any, key: Any):
        # The frozen part enters the loss as a constant: jax.grad never computes its gradient
        # (nor the backward pass below the lowest trainable layer).
        train, frozen = (state.params, None) if trainable is None else partition(state.params, trainable)

        def of_trainable(train_params, *args):
            return checked(train_params if frozen is None else combine(train_params, frozen), *args)

        (loss, (layer_state, aux)), grads = jax.value_and_grad(of_trainable, has_aux=True)(
            train, state.layer_state, batch, key
        )
        if extra_args:

            def value_fn(train_params):
                return of_trainable(train_params, state.layer_state, batch, key)[0]

            updates, opt_state = optimizer.update(
                grads, state.opt_state, train, value=loss, grad=grads, value_fn=value_fn
            )
        else:
            updates, opt_state = optimizer.update(grads, state.opt_state, train)
        new = apply_updates(train, updates)
        params = new if frozen is None else combine(new, frozen)
        metrics = {"loss": loss, **aux}
        return TrainState(params, layer_state, opt_state, state.step + 1), metrics, grads

    return step


def make_train_step(
    loss_fn: Callable[..., Any],
    optimizer: GradientTransformation,
    *,
    trainable: Any = None,
    donate: bool = True,
) -> Callable[[TrainState, Any, Any], tuple[TrainState, dict[str, jax.Array]]]:
    r"""The jit-compiled train step, ``step(state, batch, key) -> (state, metrics)``.

    :func:`make_step` compiled with ``jax.jit``. With ``donate=True`` (the default, the fast
    path: XLA updates the buffers in place) the ``state`` passed in is donated: use the state
    the call returns. The arrays given to :func:`init_state` are copied there, so they stay
    usable; calling the step again with a state it already consumed is an error that says so.

    Args:
      loss_fn, optimizer, trainable: as in :func:`make_step`.
      donate: donate the state's buffers to the step.

    >>> import jax, jax.numpy as jnp, fdl
    >>> def loss(params, batch, key):
    ...     x, y = batch
    ...     return jnp.mean((x * params["w"] - y) ** 2)
    >>> opt = fdl.optim.sgd(0.1)
    >>> step = fdl.train.make_train_step(fdl.train.simple_loss(loss), opt)
    >>> state = fdl.train.init_state({"w": jnp.array(0.0)}, opt)
    >>> batch = (jnp.array([1.0, 2.0]), jnp.array([2.0, 4.0]))
    >>> for _ in range(50):
    ...     state, metrics = step(state, batch, jax.random.key(0))
    >>> round(float(state.params["w"]), 4), int(state.step)
    (2.0, 50)
    """
    pure = make_step(loss_fn, optimizer, trainable=trainable)

    def step(state: TrainState, batch: Any, key: Any):
        state, metrics, _ = pure(state, batch, key)
        return state, metrics

    compiled = jax.jit(step, donate_argnums=(0,) if donate else ())
    if not donate:
        return compiled

    def donating_step(state: TrainState, batch: Any, key: Any):
        try:
            return compiled(state, batch, key)
        except (ValueError, RuntimeError) as error:
            if "deleted or donated" not in str(error) and "has been deleted" not in str(error):
                raise
            raise RuntimeError(
                "the train step was given a state whose arrays were donated to an earlier call "
                "(donate=True updates them in place): pass the state that the last call "
                "returned, or build the step with donate=False to keep old states usable"
            ) from error

    donating_step.lower = compiled.lower  # type: ignore[attr-defined]  # for cost analysis
    donating_step.jitted = compiled  # type: ignore[attr-defined]
    return donating_step


# ---------------------------------------------------------------------------------------- checks


_SIMPLE_LOSS_HINT = (
    ". For a loss of (params, batch, key) returning the loss (or (loss, metrics)), pass "
    "fdl.train.simple_loss(loss_fn)"
)


def _checked_loss(loss_fn: Callable[..., Any]) -> Callable[..., Any]:
    """``loss_fn`` with its return value checked at trace time (no run-time cost)."""

    def checked(params, layer_state, batch, key):
        out = loss_fn(params, layer_state, batch, key)
        _check_loss_output(out, layer_state)
        return out

    return checked


def _describe(value: Any) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    shape = getattr(value, "shape", None)
    return f"an array of shape {shape}" if shape is not None else type(value).__name__


def _check_loss_output(out: Any, layer_state: PyTree) -> None:
    expected = f"`loss_fn` must return (loss, (layer_state, metrics)) ({LOSS_SIGNATURE})"
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], tuple) and len(out[1]) == 2):
        hint = (
            "; for a loss that returns the loss alone (or (loss, metrics)) and takes "
            "(params, batch, key), pass fdl.train.simple_loss(loss_fn)"
        )
        raise TypeError(f"{expected}, got {_describe(out)}{hint}")
    loss, (new_state, metrics) = out
    if jnp.ndim(loss) != 0:
        raise TypeError(
            f"{expected}, with a scalar loss; got a loss of shape {jnp.shape(loss)} "
            "(reduce per-example losses with a mean, e.g. reduction='mean')"
        )
    if not isinstance(metrics, Mapping):
        raise TypeError(f"{expected}, with metrics a dict of scalars; got metrics {_describe(metrics)}")
    if jax.tree.structure(new_state) != jax.tree.structure(layer_state):  # type: ignore[operator]
        raise TypeError(
            f"{expected}: the returned layer state must have the structure of the one passed in, "
            f"{jax.tree.structure(layer_state)}; got {jax.tree.structure(new_state)}"
        )
