r"""The pure pieces of :func:`fdl.fit.fit`: batching, mixed precision, the non-finite guard and
the scan of fused steps. Each is a plain function of arrays, usable on its own.

Batches are *functions of the step*: with :math:`S = \lfloor N / b \rfloor` steps per epoch,
step :math:`s` reads examples :math:`\pi_e[p b : (p + 1) b]` of the permutation
:math:`\pi_e = \text{permutation}(\text{fold\_in}(k_{\text{data}}, e), N)` of epoch
:math:`e = \lfloor s / S \rfloor`, at position :math:`p = s \bmod S`; its key is
:math:`\text{fold\_in}(k_{\text{step}}, s)`. A run therefore resumes exactly from
:math:`(\theta, \sigma, o, s)` and the two base keys, with no iterator state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl.nn.parts import ROOT, leaf_paths
from fdl.train import TrainState

__all__ = [
    "epoch_orders",
    "batch_at",
    "in_compute_dtype",
    "guard",
    "fast_guard",
    "guarded_leaves",
    "Carry",
    "make_run",
    "make_checked_run",
]

PyTree = Any


def epoch_orders(data_key: jax.Array, num_examples: int, first_epoch: jax.Array, count: int) -> jax.Array:
    """The example orders of epochs ``first_epoch .. first_epoch + count - 1``: ``(count, N)``."""
    epochs = first_epoch + jnp.arange(count, dtype=jnp.int32)
    return jax.vmap(lambda e: jax.random.permutation(jax.random.fold_in(data_key, e), num_examples))(epochs)


def batch_at(
    data: tuple[jax.Array, ...],
    step: jax.Array,
    orders: jax.Array,
    first_epoch: jax.Array,
    batch_size: int,
    steps_per_epoch: int,
) -> tuple[jax.Array, ...]:
    """The batch of ``step``: ``batch_size`` examples of each array of ``data``, gathered on the
    device through the order of the step's epoch (``orders[epoch - first_epoch]``)."""
    epoch, position = step // steps_per_epoch, step % steps_per_epoch
    idx = jax.lax.dynamic_slice_in_dim(orders[epoch - first_epoch], position * batch_size, batch_size)
    return tuple(jnp.take(a, idx, axis=0) for a in data)


def _cast_floats(tree: PyTree, dtype: Any) -> PyTree:
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree
    )


def in_compute_dtype(loss_fn: Callable[..., Any], compute_dtype: Any) -> Callable[..., Any]:
    """Mixed precision: ``loss_fn`` with its floating params and batch cast to
    ``compute_dtype`` *inside* (so gradients, parameters and optimizer state keep their own
    dtypes) and its loss returned in float32. ``None`` returns ``loss_fn`` itself."""
    if compute_dtype is None:
        return loss_fn

    def cast_loss(params, layer_state, batch, key):
        loss, aux = loss_fn(
            _cast_floats(params, compute_dtype), layer_state, _cast_floats(batch, compute_dtype), key
        )
        return loss.astype(jnp.float32), aux

    return cast_loss


class Carry(NamedTuple):
    """What the scan carries: the training state and whether a non-finite step halted it."""

    state: TrainState
    halted: jax.Array  # bool scalar


def _leaf_finite(tree: PyTree) -> list[jax.Array]:
    """Per leaf of ``tree``: are all its values finite (integer and key leaves always are)."""
    return [
        jnp.all(jnp.isfinite(a)) if jnp.issubdtype(jnp.result_type(a), jnp.inexact) else jnp.asarray(True)
        for a in jax.tree.leaves(tree)
    ]


def guarded_leaves(state: TrainState, grads: PyTree) -> tuple[list[str], list[str]]:
    """What the guard's ``leaf_finite`` record covers, in its order: ``(kinds, paths)``, one
    entry per gradient leaf (kind ``"gradient"``), per leaf of the updated parameters
    (``"parameter"``) and per leaf of the updated optimizer state (``"optimizer state"``)."""
    parts = (("gradient", grads), ("parameter", state.params), ("optimizer state", state.opt_state))
    kinds, paths = [], []
    for kind, tree in parts:
        for path in leaf_paths(tree):
            kinds.append(kind)
            paths.append(path or ROOT)
    return kinds, paths


def guard(step: Callable[..., Any], nan_policy: str) -> Callable[..., Any]:
    """The non-finite guard around a pure step ``step(state, batch, key) -> (state, metrics,
    grads)`` (:func:`fdl.train.make_step`).

    Returns ``guarded(carry, batch, key) -> (carry, record)``. A step is never applied when its
    loss, any gradient leaf, or any leaf of the parameters or optimizer state it *would* produce
    is not finite: an update that overflows finite gradients into ``inf`` parameters is caught
    at the step that makes it. With ``"raise"`` the carry halts there (later steps of the call
    change nothing); with ``"skip"`` the step counter moves on past it. The record holds the
    loss, metrics, ``finite``, ``leaf_finite`` (per gradient leaf, then per leaf of the new
    parameters and the new optimizer state, as :func:`guarded_leaves` names them) and
    ``active`` (the step ran before any halt).
    """

    def guarded(carry: Carry, batch: Any, key: jax.Array):
        old = carry.state
        new, metrics, grads = step(old, batch, key)
        checks = _leaf_finite(grads) + _leaf_finite(new.params) + _leaf_finite(new.opt_state)
        leaf_finite = jnp.stack(checks or [jnp.asarray(True)])
        finite = jnp.isfinite(metrics["loss"]) & jnp.all(leaf_finite)
        apply = finite & ~carry.halted
        kept = jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)
        counter = jnp.where(carry.halted, old.step, old.step + 1)
        halted = carry.halted | (~finite if nan_policy == "raise" else jnp.asarray(False))
        record = {
            "step": old.step,
            "loss": metrics["loss"],
            "metrics": {k: v for k, v in metrics.items() if k != "loss"},
            "finite": finite,
            "leaf_finite": leaf_finite,
            "active": ~carry.halted,
        }
        return Carry(kept._replace(step=counter), halted), record

    return guarded


def _all_finite(trees: PyTree) -> jax.Array:
    checks = _leaf_finite(trees)
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def fast_guard(step: Callable[..., Any]) -> Callable[..., Any]:
    """The cheap half of the non-finite guard, for :func:`make_checked_run`: ``step`` with its
    loss and gradients checked (one flag, ``finite``), its new state applied unconditionally.

    Checking the new parameters and optimizer state at every step, and keeping the old state
    with a ``where``, made the compiled step of the example MLP 1.6x slower
    (``benchmarks/guard.py``); checking only the loss and the gradients costs about 1.1x. What
    the full :func:`guard` promises is kept by :func:`make_checked_run`: the whole state is
    checked once at the end of the call, and a call with anything non-finite is run again under
    the full guard from its starting state.
    """

    def guarded(carry: Carry, batch: Any, key: jax.Array):
        new, metrics, grads = step(carry.state, batch, key)
        record = {
            "step": carry.state.step,
            "loss": metrics["loss"],
            "metrics": {k: v for k, v in metrics.items() if k != "loss"},
            "finite": jnp.isfinite(metrics["loss"]) & _all_finite(grads),
            "active": jnp.asarray(True),
        }
        return Carry(new, carry.halted), record

    return guarded


def make_checked_run(
    step: Callable[..., Any],
    nan_policy: str,
    batch_size: int,
    steps_per_epoch: int,
    length: int,
    constrain: Callable[[Any], Any] | None = None,
) -> Callable[..., tuple[Carry, dict[str, Any]]]:
    """:func:`make_run` of the full :func:`guard` of ``step``, at the cost of the cheap one.

    ``run(carry, data, keys, count)`` first runs the call with :func:`fast_guard`, without
    donating ``carry``; if every step's loss and gradients were finite and the final parameters
    and optimizer state are all finite, its result is the full guard's (every step would have
    been applied), and is returned. Otherwise the call is run again from ``carry`` under the full
    guard, which finds the step and the leaf, and skips or halts as ``nan_policy`` says. The
    check reads one flag on the host per call (``fit`` reads each call's records anyway).

    What the end-of-call check cannot see: a non-finite value that appears in the optimizer state
    with finite loss and gradients, and is overwritten within the same call without ever
    reaching the parameters or the loss (the state's statistics keep a non-finite value, and
    parameters that become non-finite make the next loss non-finite).
    """
    fast = make_run(fast_guard(step), batch_size, steps_per_epoch, length, constrain, donate=False)
    full = make_run(guard(step, nan_policy), batch_size, steps_per_epoch, length, constrain)

    @jax.jit
    def clean(new: Carry, records: dict[str, Any]) -> jax.Array:
        steps_ok = jnp.all(records["finite"] | ~records["active"])
        return steps_ok & _all_finite((new.state.params, new.state.opt_state))

    def run(carry: Carry, data: tuple[jax.Array, ...], keys: tuple[jax.Array, jax.Array], count: jax.Array):
        new, records = fast(carry, data, keys, count)
        if bool(clean(new, records)):
            return new, records
        return full(carry, data, keys, count)

    return run


def make_run(
    guarded: Callable[..., Any],
    batch_size: int,
    steps_per_epoch: int,
    length: int,
    constrain: Callable[[Any], Any] | None = None,
    *,
    donate: bool = True,
) -> Callable[..., tuple[Carry, dict[str, Any]]]:
    """``run(carry, data, keys, count) -> (carry, records)``: the first ``count`` of ``length``
    guarded steps in one ``jax.lax.scan``, jitted with the carry donated (if ``donate``).

    ``length`` is fixed, ``count`` (at most ``length``) is an argument: a call cut short by an
    evaluation, a checkpoint or the end of training runs the same compiled program as a full
    one, its surplus steps (and any after a ``"raise"`` halt) skipped by a ``jax.lax.cond``, so a
    configuration compiles once. Their records are zeros with ``active`` false. ``data`` (the
    tuple of example arrays) and ``keys`` (the data and step keys) are arguments too: calling
    ``run`` again with other arrays of the same shapes reuses the compiled program.
    ``constrain`` places each batch (``fdl.parallel.constrain_batch`` for data parallelism)."""

    def run(carry: Carry, data: tuple[jax.Array, ...], keys: tuple[jax.Array, jax.Array], count: jax.Array):
        data_key, step_key = keys
        first_epoch = carry.state.step // steps_per_epoch
        # every epoch a call of `length` steps can touch, permuted once per call
        orders = epoch_orders(data_key, data[0].shape[0], first_epoch, length // steps_per_epoch + 2)

        @jax.jit  # traced once: the skip branch reads its output shapes from jit's trace cache
        def step(c: Carry) -> tuple[Carry, dict[str, Any]]:
            batch = batch_at(data, c.state.step, orders, first_epoch, batch_size, steps_per_epoch)
            if constrain is not None:
                batch = constrain(batch)
            return guarded(c, batch, jax.random.fold_in(step_key, c.state.step))

        def skip(c: Carry) -> tuple[Carry, dict[str, Any]]:
            shapes = jax.eval_shape(step, c)[1]
            return c, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def one(c: Carry, i: jax.Array):
            return jax.lax.cond((i < count) & ~c.halted, step, skip, c)

        return jax.lax.scan(one, carry, jnp.arange(length))

    return jax.jit(run, donate_argnums=0 if donate else ())
