r"""``fit``: the training loop users run, as one pure step plus a thin loop.

Training is the recursion

.. math::

    \big(\ell_s, (\sigma_{s+1}, m_s)\big), g_s = \big(L, \nabla_\theta L\big)
        (\theta_s, \sigma_s; B_s, k_s), \qquad
    (u_s, o_{s+1}) = \mathrm{update}(g_s, o_s, \theta_s), \qquad
    \theta_{s+1} = \theta_s + u_s

over steps :math:`s = 0, 1, \ldots`, with parameters :math:`\theta`, layer state :math:`\sigma`
(batch norm's statistics), optimizer state :math:`o`, and a batch :math:`B_s` and PRNG key
:math:`k_s` that are *functions of the step alone*:

* epoch :math:`e = \lfloor s / S \rfloor` with :math:`S = \lfloor N / \text{batch} \rfloor`
  steps per epoch (the last partial batch is dropped), position :math:`p = s \bmod S`;
* :math:`B_s` = examples :math:`\pi_e[p \cdot b : (p + 1) \cdot b]` of the permutation
  :math:`\pi_e = \text{permutation}(\text{fold\_in}(k_{\text{data}}, e), N)`, drawn **on the
  device** from data placed there once;
* :math:`k_s = \text{fold\_in}(k_{\text{step}}, s)`.

So the whole training state is :math:`(\theta, \sigma, o, s)` plus the two base keys, a
checkpoint of it resumes *exactly* (bit for bit), and the data position needs no iterator state.

**Fused steps.** ``steps_per_call`` steps run inside one ``jax.lax.scan``, one XLA call: for a
small model, Python's per-call dispatch then costs once per call instead of once per step
(``benchmarks/fit.py``). Calls end at multiples of ``steps_per_call`` and at every evaluation and
checkpoint step, so a resumed run executes the very same compiled calls as an uninterrupted one.

**NaN guard.** Every step checks that the loss and every gradient leaf are finite. A non-finite
step is never applied. ``nan_policy="raise"`` stops: the call freezes the state before the bad
step and ``fit`` raises :class:`NonFiniteError` naming the step and the first offending
parameter path (the last checkpoint stays valid). ``nan_policy="skip"`` drops that update,
counts it, and goes on.

**Mixed precision.** ``compute_dtype=jnp.bfloat16`` casts the floating parameters and inputs
to bfloat16 *inside* the loss, so the forward and backward passes compute in bfloat16 while the
parameters, their gradients (the cast is differentiable) and the optimizer state stay float32.
Layers also take ``dtype``/``param_dtype`` for the same split per layer.

**Multi-device.** With ``mesh`` (:func:`fdl.parallel.make_mesh`), the state and the data are
replicated and each gathered batch is constrained to be sharded along the mesh's data axis:
XLA partitions the step and inserts the gradient all-reduce (data parallelism).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fdl import checkpoint as ckpt
from fdl._checks import check_choice, check_positive_int
from fdl.nn.parts import leaf_paths
from fdl.optim.base import apply_updates
from fdl.train import _put_back, _with_frozen, trainable_part

__all__ = ["fit", "FitResult", "NonFiniteError", "classification_loss", "classification_eval"]

PyTree = Any
NAN_POLICIES = ("raise", "skip")


class NonFiniteError(FloatingPointError):
    """A step produced a non-finite loss or gradient under ``nan_policy="raise"``.

    Attributes:
      step: the step :math:`s` whose loss or gradient was not finite.
      path: the first parameter path with a non-finite gradient, or ``None`` if only the loss was.
      result: a :class:`FitResult` holding the state *before* that step.
    """

    def __init__(self, message: str, step: int, path: str | None, result: FitResult):
        super().__init__(message)
        self.step, self.path, self.result = step, path, result


class FitResult(NamedTuple):
    """What :func:`fit` returns: the final state, the history and the count of skipped steps."""

    params: PyTree
    layer_state: PyTree
    opt_state: PyTree
    step: int
    history: list[dict[str, float]]
    skipped: int


class _Carry(NamedTuple):
    params: PyTree
    layer_state: PyTree
    opt_state: PyTree
    step: jax.Array  # int32 scalar
    halted: jax.Array  # bool scalar: a non-finite step stopped this call (nan_policy="raise")


def classification_loss(model: Any) -> Callable[..., Any]:
    """The softmax cross-entropy loss of ``model`` on integer labels, in ``fit``'s signature.

    ``loss_fn(params, layer_state, (x, y), key) -> (loss, (layer_state, {"accuracy": acc}))``,
    running the model in training mode (dropout draws from ``key``; batch norm updates its state).
    The function carries ``model`` as ``loss_fn.model``, so :func:`fit` can start from the
    model's own layer state when none is given.
    """
    from fdl import losses, metrics

    def loss_fn(params, layer_state, batch, key):
        x, y = batch
        logits, layer_state = model.apply(params, layer_state, x, key=key, train=True)
        loss = losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="mean")
        return loss, (layer_state, {"accuracy": metrics.accuracy(logits, y)})

    loss_fn.model = model  # type: ignore[attr-defined]  # fit reads the initial layer state
    return loss_fn


def classification_eval(model: Any, x: Any, y: Any) -> Callable[..., dict[str, jax.Array]]:
    """``eval_fn(params, layer_state) -> {"loss", "accuracy"}`` on ``(x, y)``, in eval mode."""
    from fdl import losses, metrics

    x, y = jnp.asarray(x), jnp.asarray(y)

    def eval_fn(params, layer_state):
        logits, _ = model.apply(params, layer_state, x)
        return {
            "loss": losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="mean"),
            "accuracy": metrics.accuracy(logits, y),
        }

    return eval_fn


# ---------------------------------------------------------------------------------------- checks


def _initial_layer_state(loss_fn: Any, data: tuple[Any, ...]) -> PyTree:
    """The layer state ``fit`` starts from when none is given: the model's ``init`` state for
    a loss made by :func:`classification_loss`, else ``{}``."""
    model = getattr(loss_fn, "model", None)
    if model is None:
        return {}
    example_shape = tuple(np.shape(data[0])[1:])
    # fdl's layer states (batch norm's statistics) do not depend on the key
    return model.init(jax.random.key(0), example_shape)[1]


def _check_data(data: Any, batch_size: int) -> tuple[Any, ...]:
    if not isinstance(data, (tuple, list)) or not data:
        raise ValueError(
            f"`data` must be a tuple of arrays with the same leading (example) axis, e.g. "
            f"(x_train, y_train), got {type(data).__name__}"
        )
    sizes = [np.shape(a)[0] if np.ndim(a) else None for a in data]
    if sizes[0] is None or any(n != sizes[0] for n in sizes):
        shapes = ", ".join(str(np.shape(a)) for a in data)
        raise ValueError(f"every array of `data` must have the same leading axis, got shapes {shapes}")
    if batch_size > sizes[0]:
        raise ValueError(
            f"`batch_size` ({batch_size}) must not exceed the number of examples ({sizes[0]})"
        )
    return tuple(data)


def _total_steps(steps: Any, epochs: Any, steps_per_epoch: int) -> int:
    if (steps is None) == (epochs is None):
        raise ValueError(f"give exactly one of `steps` and `epochs`, got steps={steps!r}, epochs={epochs!r}")
    if steps is not None:
        return check_positive_int("steps", steps)
    return check_positive_int("epochs", epochs) * steps_per_epoch


# ------------------------------------------------------------------------------------- the step


def _cast_floats(tree: PyTree, dtype: Any) -> PyTree:
    return jax.tree.map(
        lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree
    )


def _make_run(loss_fn, optimizer, data, batch_size, steps_per_epoch, keys, nan_policy,
              compute_dtype, mesh, trainable):
    """The jitted ``run(carry, length) -> (carry, per-step records)`` of ``length`` fused steps."""
    num_examples = data[0].shape[0]
    data_key, step_key = keys

    def loss_in_compute_dtype(params, layer_state, batch, key):
        if compute_dtype is not None:
            params, batch = _cast_floats(params, compute_dtype), _cast_floats(batch, compute_dtype)
        loss, (new_state, metrics) = loss_fn(params, layer_state, batch, key)
        return loss.astype(jnp.float32), (new_state, metrics)


    def epoch_orders(first_epoch, length):
        """The permutations of every epoch a call of ``length`` steps can touch, computed once
        per call (not once per step): ``(length // S + 2, N)``, epochs ``first_epoch + i``."""
        count = length // steps_per_epoch + 2
        epochs = first_epoch + jnp.arange(count, dtype=jnp.int32)  # (count,)
        return jax.vmap(
            lambda e: jax.random.permutation(jax.random.fold_in(data_key, e), num_examples)
        )(epochs)

    def batch_at(step, orders, first_epoch):
        epoch, position = step // steps_per_epoch, step % steps_per_epoch
        order = orders[epoch - first_epoch]  # (N,)
        idx = jax.lax.dynamic_slice_in_dim(order, position * batch_size, batch_size)  # (b,)
        batch = tuple(jnp.take(a, idx, axis=0) for a in data)
        if mesh is not None:
            from fdl.parallel import constrain_batch

            batch = constrain_batch(batch, mesh)
        return batch

    def one_step(carry: _Carry, orders, first_epoch):
        batch = batch_at(carry.step, orders, first_epoch)
        key = jax.random.fold_in(step_key, carry.step)
        fn, train, frozen = _with_frozen(loss_in_compute_dtype, carry.params, trainable)
        (loss, (new_layer_state, metrics)), grads = jax.value_and_grad(fn, has_aux=True)(
            train, carry.layer_state, batch, key
        )
        leaf_finite = jnp.stack(
            [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)] or [jnp.asarray(True)]
        )  # (num_leaves,)
        finite = jnp.isfinite(loss) & jnp.all(leaf_finite)
        updates, new_opt_state = optimizer.update(grads, carry.opt_state, train)
        new_params = _put_back(apply_updates(train, updates), frozen)
        apply = finite & ~carry.halted

        def select(new, old):
            return jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)

        halted = carry.halted | (~finite if nan_policy == "raise" else jnp.asarray(False))
        new_carry = _Carry(
            params=select(new_params, carry.params),
            layer_state=select(new_layer_state, carry.layer_state),
            opt_state=select(new_opt_state, carry.opt_state),
            step=jnp.where(carry.halted, carry.step, carry.step + 1),
            halted=halted,
        )
        record = {
            "step": carry.step,
            "loss": loss,
            "metrics": metrics,
            "finite": finite,
            "leaf_finite": leaf_finite,
            "active": ~carry.halted,
        }
        return new_carry, record

    def run(carry: _Carry, length: int):
        first_epoch = carry.step // steps_per_epoch
        orders = epoch_orders(first_epoch, length)
        return jax.lax.scan(lambda c, _: one_step(c, orders, first_epoch), carry, None, length=length)

    return jax.jit(run, static_argnums=1, donate_argnums=0)


# ------------------------------------------------------------------------------------- history


def _write_history(path: Path, rows: list[dict[str, float]]) -> None:
    """Write every row, atomically: JSONL for ``.jsonl``/``.json``, CSV for ``.csv``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        if path.suffix == ".csv":
            fields = sorted({k for row in rows for k in row}, key=lambda k: (k != "step", k))
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        else:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    tmp.replace(path)


def save_history_plot(history: list[dict[str, float]], path: str | Path) -> Path:
    """Training loss per step and every evaluation metric, as a PNG (log-scale losses)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    train = [r for r in history if "loss" in r]
    evals = [r for r in history if any(k.startswith("eval_") for k in r)]
    eval_keys = sorted({k for r in evals for k in r if k.startswith("eval_")})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss")
    for k in eval_keys:
        if "loss" in k:
            axes[0].plot([r["step"] for r in evals], [r[k] for r in evals], "o-", label=k)
    axes[0].set(xlabel="step", ylabel="loss", yscale="log", title="loss")
    axes[0].legend()
    for k in sorted({k for r in train for k in r} - {"step", "loss", "skipped"}):
        axes[1].plot([r["step"] for r in train if k in r], [r[k] for r in train if k in r],
                     label=f"train {k}")
    for k in eval_keys:
        if "loss" not in k:
            axes[1].plot([r["step"] for r in evals], [r[k] for r in evals], "o-", label=k)
    axes[1].set(xlabel="step", title="metrics")
    axes[1].grid(alpha=0.3)
    if axes[1].lines:
        axes[1].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ fit


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
    steps_per_call: int = 16,
    eval_fn: Callable[[PyTree, PyTree], Mapping[str, jax.Array]] | None = None,
    eval_every: int | None = None,
    nan_policy: str = "raise",
    compute_dtype: Any = None,
    mesh: Any = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int | None = None,
    keep_checkpoints: int = 3,
    resume: bool = False,
    history_path: str | Path | None = None,
    plot_path: str | Path | None = None,
    progress: bool = True,
    trainable: Any = None,
) -> FitResult:
    r"""Train ``params`` by ``optimizer`` on ``loss_fn`` over ``data`` (see the module docstring).

    Args:
      loss_fn: ``loss_fn(params, layer_state, batch, key) -> (loss, (layer_state, metrics))``,
        ``batch`` a tuple like ``data`` with ``batch_size`` examples, ``metrics`` a dict of
        scalars (:func:`classification_loss` builds one for a classifier).
      optimizer: an ``(init, update)`` pair with optax's interface (fdl's or optax's).
      params: the initial parameters.
      data: a tuple of arrays sharing their leading (example) axis, e.g. ``(x, y)``; placed on
        the device once.
      key: the PRNG key of the run; it seeds the shuffling and the per-step keys.
      batch_size: examples per step; the last partial batch of each epoch is dropped.
      steps, epochs: how long to train (exactly one of them).
      layer_state: the model's layer state from ``init``. ``None``: the state of
        ``loss_fn.model.init`` when ``loss_fn`` was made by :func:`classification_loss` (so a
        model with batch norm needs nothing more), else ``{}`` (a stateless model).
      steps_per_call: steps fused into one XLA call.
      eval_fn: ``eval_fn(params, layer_state) -> dict`` of scalars, jitted, run every
        ``eval_every`` steps and at the end; its entries go in the history as ``eval_<name>``.
      eval_every: steps between evaluations (default: once per epoch).
      nan_policy: ``"raise"`` or ``"skip"`` (see the module docstring).
      compute_dtype: e.g. ``jnp.bfloat16`` for mixed precision; ``None`` computes in the
        parameters' dtypes.
      mesh: a :class:`jax.sharding.Mesh` for data parallelism (``fdl.parallel.make_mesh``).
      checkpoint_dir: where to save checkpoints (``fdl.checkpoint``); ``None`` saves none.
      checkpoint_every: steps between checkpoints (default: once per epoch); one is also saved
        at the end.
      keep_checkpoints: how many checkpoints to keep.
      resume: continue from the newest valid checkpoint in ``checkpoint_dir`` if there is one.
      history_path: a ``.jsonl`` or ``.csv`` file for the metrics history (rewritten after each
        call, atomically).
      plot_path: a PNG of the curves, saved at the end.
      progress: show a tqdm progress bar with the loss (and accuracy, if reported).
      trainable: train only these leaves (a path pattern such as ``"head/**"``, a list of them,
        a predicate or a tree of bools; :func:`fdl.nn.select`): the gradient is taken with
        respect to them alone, the optimizer state covers them alone, and the other leaves come
        back bit for bit. ``None`` trains all.

    Returns:
      A :class:`FitResult`. Each history row holds the step reached, the mean training loss and
      metrics over the call, ``skipped`` (steps skipped so far), and ``eval_*`` entries where an
      evaluation ran.

    Raises:
      ValueError: invalid arguments (each names the argument and the value).
      NonFiniteError: a non-finite loss or gradient with ``nan_policy="raise"``.
      fdl.checkpoint.CheckpointError: ``resume`` found checkpoints but none valid for this
        state's structure.

    >>> import jax, jax.numpy as jnp, numpy as np, fdl
    >>> x = np.linspace(-1, 1, 64, dtype=np.float32)[:, None]
    >>> y = 3.0 * x
    >>> def loss_fn(params, state, batch, key):
    ...     xb, yb = batch
    ...     return jnp.mean((xb * params["w"] - yb) ** 2), (state, {})
    >>> result = fdl.fit.fit(loss_fn, fdl.optim.sgd(0.5), {"w": jnp.zeros(())}, (x, y),
    ...                      key=jax.random.key(0), batch_size=16, epochs=20, progress=False)
    >>> round(float(result.params["w"]), 3), result.step
    (3.0, 80)
    """
    batch_size = check_positive_int("batch_size", batch_size)
    steps_per_call = check_positive_int("steps_per_call", steps_per_call)
    check_choice("nan_policy", nan_policy, NAN_POLICIES)
    keep_checkpoints = check_positive_int("keep_checkpoints", keep_checkpoints)
    data = _check_data(data, batch_size)
    steps_per_epoch = data[0].shape[0] // batch_size
    total = _total_steps(steps, epochs, steps_per_epoch)
    eval_every = steps_per_epoch if eval_every is None else check_positive_int("eval_every", eval_every)
    if checkpoint_every is not None:
        check_positive_int("checkpoint_every", checkpoint_every)
        if checkpoint_dir is None:
            raise ValueError("`checkpoint_every` needs a `checkpoint_dir` to save to")
    checkpoint_every = checkpoint_every or steps_per_epoch
    if resume and checkpoint_dir is None:
        raise ValueError("`resume=True` needs the `checkpoint_dir` to resume from")
    if history_path is not None and Path(history_path).suffix not in (".jsonl", ".json", ".csv"):
        raise ValueError(f"`history_path` must end in .jsonl or .csv, got {str(history_path)!r}")
    if not isinstance(key, jax.Array):
        raise ValueError(f"`key` must be a JAX PRNG key (jax.random.key(seed)), got {key!r}")

    if layer_state is None:
        layer_state = _initial_layer_state(loss_fn, data)
    opt_state = optimizer.init(trainable_part(params, trainable))
    step, history = 0, []
    if resume:
        restored = _resume(checkpoint_dir, params, layer_state, opt_state, key, steps_per_epoch)
        if restored is not None:
            params, layer_state, opt_state, step, history = restored
    keys = tuple(jax.random.split(key))  # (data key, step key)

    device_data = tuple(jnp.asarray(a) for a in data)
    if mesh is not None:
        from fdl.parallel import replicate

        device_data = replicate(device_data, mesh)
        params, layer_state, opt_state = replicate((params, layer_state, opt_state), mesh)
    run = _make_run(loss_fn, optimizer, device_data, batch_size, steps_per_epoch, keys,
                    nan_policy, compute_dtype, mesh, trainable)
    eval_jit = jax.jit(eval_fn) if eval_fn is not None else None
    paths = [p or "(root)" for p in leaf_paths(trainable_part(params, trainable))]
    skipped = int(history[-1].get("skipped", 0)) if history else 0
    # A copy: each call donates its carry, and the caller's arrays must stay usable.
    params, layer_state, opt_state = jax.tree.map(jnp.copy, (params, layer_state, opt_state))
    carry = _Carry(params, layer_state, opt_state, jnp.asarray(step, jnp.int32), jnp.asarray(False))

    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, desc="fit", disable=not progress, unit="step")
    try:
        while step < total:
            length = min(
                steps_per_call - step % steps_per_call,
                eval_every - step % eval_every,
                checkpoint_every - step % checkpoint_every if checkpoint_dir is not None else total,
                total - step,
            )
            carry, record = run(carry, length)
            record = jax.device_get(record)
            applied = record["active"] & record["finite"]
            bad = np.flatnonzero(~record["finite"] & record["active"])
            skipped += len(bad)
            row = {"step": step + int(np.sum(record["active"]))}
            if applied.any():
                row["loss"] = float(np.mean(record["loss"][applied]))
                for name, values in record["metrics"].items():
                    row[name] = float(np.mean(np.asarray(values)[applied]))
            row["skipped"] = skipped
            if nan_policy == "raise" and len(bad):
                first = int(bad[0])
                leaf_ok = record["leaf_finite"][first]
                path = paths[int(np.argmin(leaf_ok))] if not leaf_ok.all() else None
                bad_step = int(record["step"][first])
                what = f"gradient of parameter {path!r}" if path else "loss"
                result = FitResult(carry.params, carry.layer_state, carry.opt_state, bad_step,
                                   history, skipped)
                raise NonFiniteError(
                    f"non-finite {what} at step {bad_step} (loss {float(record['loss'][first])}); "
                    f"the update was not applied and training stopped. Lower the learning rate, "
                    f"check the data, or pass nan_policy='skip' to skip such steps",
                    bad_step, path, result,
                )
            step = int(carry.step)
            if eval_jit is not None and (step % eval_every == 0 or step == total):
                for name, value in eval_jit(carry.params, carry.layer_state).items():
                    row[f"eval_{name}"] = float(value)
            history.append(row)
            bar.update(length)
            bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k in ("loss", "accuracy", "eval_accuracy")})
            if history_path is not None:
                _write_history(Path(history_path), history)
            if checkpoint_dir is not None and (step % checkpoint_every == 0 or step == total):
                _save(checkpoint_dir, carry, key, step, steps_per_epoch, history, keep_checkpoints)
    finally:
        bar.close()
    if plot_path is not None:
        save_history_plot(history, plot_path)
    return FitResult(carry.params, carry.layer_state, carry.opt_state, step, history, skipped)


# ---------------------------------------------------------------------------------- checkpoints


def _save(directory, carry, key, step, steps_per_epoch, history, keep) -> None:
    tree = {
        "params": carry.params,
        "layer_state": carry.layer_state,
        "opt_state": carry.opt_state,
        "key": key,
    }
    metadata = {
        "step": step,
        "data": {"epoch": step // steps_per_epoch, "position": step % steps_per_epoch},
        "history": history,
    }
    # overwrite: after falling back past a corrupt newest checkpoint, its step is written anew.
    ckpt.save(directory, step, tree, metadata=metadata, keep=keep, overwrite=True)


def _key_bits(key: jax.Array) -> np.ndarray:
    """The raw bits of a typed or legacy (uint32) PRNG key."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key)


def _resume(directory, params, layer_state, opt_state, key, steps_per_epoch):
    """The newest valid checkpoint's state, or ``None`` when ``directory`` holds none."""
    if not Path(directory).exists() or ckpt.latest_step(directory) is None:
        return None
    template = {"params": params, "layer_state": layer_state, "opt_state": opt_state, "key": key}
    tree, metadata, step = ckpt.restore_latest_valid(directory, template)
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
    return tree["params"], tree["layer_state"], tree["opt_state"], step, list(metadata["history"])
