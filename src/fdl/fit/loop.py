"""``fit``'s host loop: compiled calls of fused steps, and small actions between them."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fdl import checkpoint as ckpt
from fdl._checks import check_data, check_instance
from fdl._io import decode_non_finite, encode_non_finite
from fdl.fit import pieces
from fdl.fit.callbacks import Control, scale_by_control
from fdl.fit.config import Checkpoint, Eval, Execution, Logging, check_run, prepare_outputs, total_steps
from fdl.fit.loggers import HistoryFile, close_all, save_history_plot
from fdl.fit.tasks import initial_layer_state
from fdl.train import TrainState, init_state, make_step, trainable_part

__all__ = ["fit", "FitResult", "NonFiniteError"]

PyTree = Any


class FitResult(NamedTuple):
    """What :func:`fit` returns: the final parameters, layer state and optimizer state, the step
    reached, the history rows, the number of skipped (non-finite) steps, and why the run
    stopped early (``None`` when it ran to the end)."""

    params: PyTree
    layer_state: PyTree
    opt_state: PyTree
    step: int
    history: list[dict[str, float]]
    skipped: int
    stopped: str | None = None


class NonFiniteError(FloatingPointError):
    """A non-finite loss or gradient stopped ``fit`` (``nan_policy="raise"``).

    Attributes: ``step`` (the bad step, not applied), ``path`` (the path of the first
    non-finite leaf: a gradient, or a parameter or optimizer-state leaf the update would have
    made non-finite; ``None`` when only the loss was), ``result`` (a :class:`FitResult`
    holding the state before the bad step and the history so far).
    """

    def __init__(self, message: str, step: int, path: str | None, result: FitResult):
        super().__init__(message)
        self.step, self.path, self.result = step, path, result


def fit(
    loss_fn: Callable[..., Any],
    optimizer: Any,
    params: PyTree,
    data: Sequence[Any],
    *,
    key: jax.Array,
    batch_size: int,
    steps: int | None = None,
    epochs: int | None = None,
    layer_state: PyTree = None,
    trainable: Any = None,
    evaluate: Eval | None = None,
    checkpoint: Checkpoint | None = None,
    logging: Logging | None = None,
    callbacks: Sequence[Any] = (),
    execution: Execution | None = None,
    mesh: Any = None,
) -> FitResult:
    r"""Train ``params`` by ``optimizer`` on ``loss_fn`` over ``data`` (see :mod:`fdl.fit`).

    Args:
      loss_fn: the one loss signature, :data:`fdl.train.LOSS_SIGNATURE`; ``batch`` is a tuple
        like ``data`` with ``batch_size`` examples (:func:`classification_loss` builds one for a
        classifier; :func:`fdl.train.simple_loss` adapts ``(params, batch, key) -> loss``).
        A loss may carry ``loss_fn.check_data(data)``, which ``fit`` calls once before
        training (:func:`classification_loss` checks its labels' range there).
      optimizer: an ``(init, update)`` pair with optax's interface (fdl's or optax's).
        One whose ``update`` takes optax's extra arguments gets the minibatch loss as
        ``value``, the gradient as ``grad`` and the minibatch loss function as ``value_fn``
        (:func:`fdl.train.make_step`): line searches (``lbfgs``) and ``reduce_on_plateau``
        work under ``fit``, on the minibatch of each step.
      params: the initial parameters (copied: the caller's arrays stay usable).
      data: a tuple of arrays sharing their leading (example) axis, e.g. ``(x, y)``; placed on
        the device once.
      key: the PRNG key of the run; it seeds the shuffling and the per-step keys.
      batch_size: examples per step; the last partial batch of each epoch is dropped.
      steps, epochs: how long to train (exactly one of them).
      layer_state: the model's layer state from ``init``. ``None``: the state of
        ``loss_fn.model.init`` when the loss carries its model, else ``{}``.
      trainable: train only these leaves (see :func:`fdl.train.make_step`).
      evaluate: an :class:`Eval` (function and period).
      checkpoint: a :class:`Checkpoint` (directory, period, how many to keep, resume or
        overwrite); the history rows it carries spell non-finite values "nan", "inf", "-inf".
      logging: a :class:`Logging` (history file, plot, progress bar, loggers); default: a
        progress bar only.
      callbacks: objects with ``on_row(row, control)`` (:class:`EarlyStopping`,
        :class:`Every`, :class:`ReduceLROnPlateau` or your own).
      execution: an :class:`Execution` (steps per call, non-finite policy, mixed precision).
      mesh: a :class:`jax.sharding.Mesh` for data parallelism (:func:`fdl.parallel.make_mesh`).

    Returns:
      A :class:`FitResult`. Each history row holds the step reached, the mean training loss and
      metrics over the call, ``skipped`` (steps skipped so far), and ``eval_*`` entries where an
      evaluation ran.

    Raises:
      ValueError, TypeError: invalid arguments (each names the argument and the value),
        checked before any training; this includes an output (``checkpoint.dir``,
        ``logging.history``, ``logging.plot``) that cannot be created or written (the
        directories it needs are created).
      NonFiniteError: a non-finite loss, gradient, or updated parameter or optimizer state
        with ``nan_policy="raise"``.
      fdl.checkpoint.CheckpointError: ``resume`` found checkpoints but none valid for this
        state's structure.
      FileExistsError: a fresh run (``resume`` False) in a checkpoint directory that holds
        checkpoints, without ``overwrite``.

    >>> import jax, jax.numpy as jnp, numpy as np, fdl
    >>> x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    >>> y = 3.0 * x
    >>> def loss(params, batch, key):
    ...     xb, yb = batch
    ...     return jnp.mean((xb * params["w"] - yb) ** 2)
    >>> result = fdl.fit.fit(fdl.train.simple_loss(loss), fdl.optim.sgd(0.5), {"w": jnp.zeros(())},
    ...                      (x, y), key=jax.random.key(0), batch_size=16, epochs=20,
    ...                      logging=fdl.fit.Logging(progress=False))
    >>> round(float(result.params["w"]), 3), result.step
    (3.0, 80)
    """
    check_run(batch_size=batch_size, steps=steps, epochs=epochs, key=key)
    data = check_data(data, batch_size)
    task_check = getattr(loss_fn, "check_data", None)
    if task_check is not None:  # e.g. classification_loss: labels in range, host-side, once
        task_check(data)
    execution = Execution() if execution is None else _check_record("execution", execution, Execution)
    logging = Logging() if logging is None else _check_record("logging", logging, Logging)
    if evaluate is not None:
        _check_record("evaluate", evaluate, Eval)
    if checkpoint is not None:
        _check_record("checkpoint", checkpoint, Checkpoint)
    callbacks = tuple(callbacks)
    for callback in callbacks:
        if not callable(getattr(callback, "on_row", None)):
            raise TypeError(f"each of `callbacks` must have on_row(row, control), got {callback!r}")
    prepare_outputs(checkpoint, logging)
    steps_per_epoch = data[0].shape[0] // batch_size
    total = total_steps(steps, epochs, steps_per_epoch)
    eval_every = (evaluate.every or steps_per_epoch) if evaluate else 0  # 0: never
    checkpoint_every = (checkpoint.every or steps_per_epoch) if checkpoint else 0

    lr_scale = any(getattr(c, "needs_lr_scale", False) for c in callbacks)
    optimizer, run = _compiled_run(
        loss_fn, optimizer, trainable, execution, batch_size, steps_per_epoch, mesh, lr_scale
    )
    if layer_state is None:
        layer_state = initial_layer_state(loss_fn, data)
    state = init_state(params, optimizer, layer_state=layer_state, trainable=trainable)
    history: list[dict[str, float]] = []
    run_id = None
    if checkpoint is not None:
        run_id = ckpt.start_run(checkpoint.dir, resume=checkpoint.resume, overwrite=checkpoint.overwrite)
    if checkpoint is not None and checkpoint.resume:
        restored = _resume(checkpoint.dir, state, key, steps_per_epoch)
        if restored is not None:
            state, history = restored

    device_data = tuple(jnp.asarray(a) for a in data)
    if mesh is not None:
        from fdl.parallel import replicate

        device_data = replicate(device_data, mesh)
        state = replicate(state, mesh)
    run_keys = tuple(jax.random.split(key))
    eval_jit = _cached(("eval", evaluate.fn), lambda: jax.jit(evaluate.fn)) if evaluate else None
    guarded = pieces.guarded_leaves(state, trainable_part(state.params, trainable))
    # Under jax.distributed every process runs this loop on identical rows; one writes the files.
    main = jax.process_index() == 0
    loggers = (
        (([HistoryFile(logging.history)] if logging.history else []) + list(logging.loggers)) if main else []
    )
    periods: list[int] = [
        execution.steps_per_call,
        eval_every,
        checkpoint_every,
        *(getattr(c, "every", 0) for c in callbacks),
    ]
    periods = [p for p in periods if p]
    skipped = int(history[-1].get("skipped", 0)) if history else 0
    step = int(state.step)
    carry = pieces.Carry(state, jnp.asarray(False))
    control = Control(state=state)
    stopped = None

    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc="fit", disable=not (logging.progress and main), unit="step")
    try:
        while step < total and not control.stop:
            length = min([p - step % p for p in periods] + [total - step])
            carry, record = run(carry, device_data, run_keys, jnp.asarray(length, jnp.int32))
            record = jax.device_get(record)
            row, bad = _row(record, skipped)
            skipped = int(row["skipped"])
            if execution.nan_policy == "raise" and len(bad):
                raise _non_finite(record, int(bad[0]), guarded, carry.state, history, skipped)
            step = int(carry.state.step)
            if eval_jit is not None and (step % eval_every == 0 or step == total):  # eval_every > 0
                for name, value in eval_jit(carry.state.params, carry.state.layer_state).items():
                    row[f"eval_{name}"] = float(value)
            history.append(row)
            bar.update(length)
            bar.set_postfix(
                {k: f"{v:.4f}" for k, v in row.items() if k in ("loss", "accuracy", "eval_accuracy")}
            )
            for logger in loggers:
                logger.write(history)
            control.state = carry.state
            for callback in callbacks:
                callback.on_row(row, control)
            if control.stop:
                stopped = control.reason or "stopped by a callback"
            if checkpoint is not None and (
                step % checkpoint_every == 0 or step == total or control.stop
            ):  # > 0
                _save(checkpoint, carry.state, key, steps_per_epoch, history, run_id)
            carry = _apply_lr_scale(carry, control)
    finally:
        bar.close()
        close_all(loggers)
    if logging.plot is not None and main:
        save_history_plot(history, logging.plot)
    s = carry.state
    return FitResult(s.params, s.layer_state, s.opt_state, step, history, skipped, stopped)


# ------------------------------------------------------------------------- compiled programs

# The compiled programs of fit's last few configurations. A second fit call with the same
# loss_fn and optimizer objects and the same settings (a notebook re-running a cell, a benchmark)
# reuses the jitted run, so jax.jit's own cache skips tracing and compiling when the shapes
# match too. Keyed by identity (functions hash by identity); an unhashable `trainable` (a list,
# a tree of bools) skips the cache. Bounded, since entries hold the user's functions alive.
_CACHE: OrderedDict[Any, Any] = OrderedDict()
_CACHE_SIZE = 8


def _cached(key: Any, build: Callable[[], Any]) -> Any:
    try:
        hash(key)
    except TypeError:
        return build()
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    value = _CACHE[key] = build()
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return value


def _compiled_run(loss_fn, optimizer, trainable, execution, batch_size, steps_per_epoch, mesh, lr_scale):
    """The optimizer fit steps with (wrapped for a learning-rate callback) and the jitted run of
    :func:`fdl.fit.pieces.make_run`, built once per configuration."""
    frozen = tuple(trainable) if isinstance(trainable, list) else trainable

    def build():
        opt = scale_by_control(optimizer) if lr_scale else optimizer
        loss = pieces.in_compute_dtype(loss_fn, execution.compute_dtype)
        step = make_step(loss, opt, trainable=trainable)
        constrain = None
        if mesh is not None:
            from fdl.parallel import constrain_batch

            def constrain(batch):
                return constrain_batch(batch, mesh)

        run = pieces.make_checked_run(
            step, execution.nan_policy, batch_size, steps_per_epoch, execution.steps_per_call, constrain
        )
        return opt, run

    key = (
        "run",
        loss_fn,
        optimizer,
        frozen,
        execution.nan_policy,
        execution.compute_dtype,
        execution.steps_per_call,
        batch_size,
        steps_per_epoch,
        mesh,
        lr_scale,
    )
    return _cached(key, build)


def _check_record(name: str, value: Any, kind: type) -> Any:
    return check_instance(name, value, kind, f"fdl.fit.{kind.__name__}(...)")


def _row(record: dict[str, Any], skipped: int) -> tuple[dict[str, float], np.ndarray]:
    """The history row of one call (means over its applied steps) and its bad steps."""
    applied = record["active"] & record["finite"]
    bad = np.flatnonzero(~record["finite"] & record["active"])
    row: dict[str, float] = {"step": int(record["step"][0]) + int(np.sum(record["active"]))}
    if applied.any():
        row["loss"] = float(np.mean(record["loss"][applied]))
        for name, values in record["metrics"].items():
            row[name] = float(np.mean(np.asarray(values)[applied]))
    row["skipped"] = skipped + len(bad)
    return row, bad


def _non_finite(record, first, guarded, state, history, skipped) -> NonFiniteError:
    leaf_ok = record["leaf_finite"][first]
    kinds, paths = guarded
    bad_step = int(record["step"][first])
    if leaf_ok.all():
        what, path = "loss", None
    else:
        leaf = int(np.argmin(leaf_ok))
        kind, path = kinds[leaf], paths[leaf]
        what = (
            f"gradient of parameter {path!r}"
            if kind == "gradient"
            else f"{kind} {path!r} after the update (the update overflowed)"
        )
    result = FitResult(state.params, state.layer_state, state.opt_state, bad_step, history, skipped)
    return NonFiniteError(
        f"non-finite {what} at step {bad_step} (loss {float(record['loss'][first])}); "
        f"the update was not applied and training stopped. Lower the learning rate, "
        f"check the data, or pass execution=fdl.fit.Execution(nan_policy='skip') to skip such steps",
        bad_step,
        path,
        result,
    )


def _apply_lr_scale(carry: pieces.Carry, control: Control) -> pieces.Carry:
    opt_state = carry.state.opt_state
    scale = getattr(opt_state, "scale", None)
    if scale is None or float(scale) == control.lr_scale:
        return carry
    new_scale = jnp.full_like(scale, control.lr_scale)
    return carry._replace(state=carry.state._replace(opt_state=opt_state._replace(scale=new_scale)))


# ---------------------------------------------------------------------------------- checkpoints


def _save(config: Checkpoint, state: TrainState, key: jax.Array, steps_per_epoch: int, history, run) -> None:
    step = int(state.step)
    tree = {
        "params": state.params,
        "layer_state": state.layer_state,
        "opt_state": state.opt_state,
        "key": key,
    }
    metadata = {
        "step": step,
        "data": {"epoch": step // steps_per_epoch, "position": step % steps_per_epoch},
        "history": [encode_non_finite(row) for row in history],  # strict JSON: NaN as "nan"
    }
    # overwrite: after falling back past a corrupt newest checkpoint, its step is written anew.
    ckpt.save(config.dir, step, tree, metadata=metadata, keep=config.keep, overwrite=True, run=run)


def _key_bits(key: jax.Array) -> np.ndarray:
    """The raw bits of a typed or legacy (uint32) PRNG key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key)


def _resume(directory: str | Path, state: TrainState, key: jax.Array, steps_per_epoch: int):
    """The newest valid checkpoint of the directory's run: its state and history, or ``None``
    when there is none."""
    template = {
        "params": state.params,
        "layer_state": state.layer_state,
        "opt_state": state.opt_state,
        "key": key,
    }
    try:
        tree, metadata, step = ckpt.restore_latest_valid(directory, template)
    except FileNotFoundError:  # no checkpoint of the run (yet): it starts from the beginning
        return None
    if not np.array_equal(_key_bits(tree["key"]), _key_bits(key)):
        raise ValueError(
            f"the checkpoint in {str(directory)!r} was made with another `key` (seed): resuming "
            "with a different key would change the data order; pass the run's original key"
        )
    data = metadata.get("data", {})
    if data and data.get("epoch") != step // steps_per_epoch:
        raise ValueError(
            f"the checkpoint in {str(directory)!r} was made with another batch size or data set "
            f"(epoch {data.get('epoch')} at step {step}, here {step // steps_per_epoch})"
        )
    restored = TrainState(
        tree["params"], tree["layer_state"], tree["opt_state"], jnp.asarray(step, jnp.int32)
    )
    return restored, [decode_non_finite(row) for row in metadata["history"]]
