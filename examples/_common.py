"""What the digit-classification examples share: the epoch loop and the plot.

The examples differ in their model; each builds it, then hands it here. The loop is the plain
one a reader would write: per epoch, shuffle with a fresh key, take jitted train steps (the layer
state, e.g. batch norm's running statistics, goes in and out of each step), then evaluate on the
test set in evaluation mode.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from tqdm import tqdm

import fdl


def train_classifier(
    model: fdl.nn.Layer,
    optimizer: Any,
    data: fdl.data.Split,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    quiet: bool = False,
    prepare=lambda x: x,
    augment=None,
) -> dict[str, Any]:
    """Train ``model`` on ``data`` with softmax cross-entropy; return the history and timings.

    ``prepare`` maps a batch of images to the model's input (for the RNN: rows as time steps);
    ``augment(key, x)``, if given, transforms each *training* batch (random shifts, say).
    """
    key = jax.random.key(seed)
    init_key, key = jax.random.split(key)
    x_test, y_test = jnp.asarray(prepare(data.x_test)), jnp.asarray(data.y_test)
    params, state, _ = model.init(init_key, x_test.shape[1:])
    train_state = fdl.train.init_state(params, optimizer, layer_state=state)
    step = fdl.train.make_train_step(fdl.fit.classification_loss(model), optimizer)
    evaluate = jax.jit(fdl.fit.classification_eval(model, x_test, y_test))

    history: dict[str, list[float]] = {"train_loss": [], "test_loss": [], "test_accuracy": []}
    step_seconds = []
    start = time.perf_counter()
    bar = tqdm(range(epochs), desc="epochs", disable=quiet)
    for _ in bar:
        key, shuffle_key = jax.random.split(key)
        losses = []
        epoch_start, steps = time.perf_counter(), 0
        for x, y in fdl.data.batches(shuffle_key, (data.x_train, data.y_train), batch_size):
            key, step_key, augment_key = jax.random.split(key, 3)
            x = prepare(x) if augment is None else augment(augment_key, prepare(x))
            train_state, metrics = step(train_state, (x, y), step_key)
            losses.append(metrics["loss"])
            steps += 1
        test = evaluate(train_state.params, train_state.layer_state)
        test_loss, test_acc = test["loss"], test["accuracy"]
        history["train_loss"].append(float(jnp.mean(jnp.stack(losses))))  # blocks: epoch done
        step_seconds.append((time.perf_counter() - epoch_start) / steps)
        history["test_loss"].append(float(test_loss))
        history["test_accuracy"].append(float(test_acc))
        bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}", test_acc=f"{float(test_acc):.4f}")
    seconds = time.perf_counter() - start
    # The first epoch includes compilation; later epochs time the steps alone.
    warm = sorted(step_seconds[1:]) or step_seconds
    return {
        "history": history,
        "params": train_state.params,
        "state": train_state.layer_state,
        "seconds": seconds,
        "step_seconds": warm[len(warm) // 2],
    }


def save_plot(histories: dict[str, dict[str, list[float]]], path: Path, title: str) -> None:
    """Loss (log scale) and test accuracy per epoch, one line per model."""
    fig = fdl.plot.figure((10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for label, history in histories.items():
        epochs = range(1, len(history["train_loss"]) + 1)
        (line,) = ax_loss.plot(epochs, history["train_loss"], label=f"{label} train")
        ax_loss.plot(epochs, history["test_loss"], "--", color=line.get_color(), label=f"{label} test")
        ax_acc.plot(epochs, history["test_accuracy"], color=line.get_color(), label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", yscale="log", title="loss")
    ax_loss.legend()
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="test accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fdl.plot.save_png(fig, path)


@jax.jit
def random_shift(key: jax.Array, x: jax.Array) -> jax.Array:
    """Shift each image by -1, 0 or +1 pixel along each axis (zeros fill in): ``(B, 8, 8, 1)``.

    A digit moved by a pixel is the same digit, so this enlarges the training set for free.
    """
    batch, height, width, channels = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # (B, 10, 10, 1)
    corners = jax.random.randint(key, (batch, 2), 0, 3)  # (B, 2): top-left of each crop
    crop = lambda image, c: jax.lax.dynamic_slice(image, (c[0], c[1], 0), (height, width, channels))
    return jax.vmap(crop)(padded, corners)  # (B, 8, 8, 1)


def fit_on_digits(model: fdl.nn.Layer, loss_fn: Any, data: fdl.data.Split, *, steps: int, seed: int):
    """``steps`` Adam steps (2e-3, batches of 64) of ``fit`` on the training digits from a fresh
    ``model.init``; returns the trained ``(params, layer_state)``."""
    params, state, _ = model.init(jax.random.key(seed), data.x_train.shape[1:])
    result = fdl.fit.fit(
        loss_fn,
        fdl.optim.adam(2e-3),
        params,
        (data.x_train, data.y_train),
        layer_state=state,
        key=jax.random.key(seed + 1),
        batch_size=64,
        steps=steps,
        logging=fdl.fit.Logging(progress=False),
    )
    return result.params, result.layer_state
