"""Backpropagation three ways on a digits MLP: by hand, by a tape, and by jax.grad.

    python examples/manual_backprop.py              # in about half a minute on a CPU
    python examples/manual_backprop.py --steps 100  # a quick smoke run

The MLP is ``fdl.models.build_model("mlp", 10, hidden=(64, 32), dropout=0.0)`` (ReLU, He
init), its parameters cast to float64. Its gradient of the mean softmax cross-entropy comes from

* ``fdl.backprop``: the chain rule written out layer by layer (``mlp_forward`` keeps each
  layer's input and activation slope, ``mlp_backward`` runs the layers in reverse);
* ``fdl.autodiff``: a small reverse-mode autodiff that records a tape of primitive operations
  while the loss runs on NumPy arrays, then walks it backwards;
* ``jax.grad`` of the fdl model's loss, the reference.

It prints the largest absolute and relative (``max|a - b| / max|b|``) difference per parameter,
float64 rounding (~1e-16) if the derivations are right, then trains the network three times by
plain SGD from the same start on the same batches, each with its own gradients, and plots the
three loss curves (indistinguishable) and how far apart they drift (rounding, amplified by
training).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import fdl
from fdl import autodiff, backprop


def differences(grads: dict, reference: dict) -> dict[str, tuple[float, float]]:
    """``{"dense_0/w": (max abs diff, max abs diff / max abs reference), ...}``."""
    table = {}
    for layer in reference:
        for leaf in ("w", "b"):
            a, b = np.asarray(grads[layer][leaf]), np.asarray(reference[layer][leaf])
            diff = float(np.max(np.abs(a - b)))
            table[f"{layer}/{leaf}"] = (diff, diff / float(np.max(np.abs(b))))
    return table


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="SGD steps of each training run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path("manual_backprop.png"))
    args = parser.parse_args(argv)
    with jax.enable_x64(True):  # float64 throughout, so the differences show only rounding
        return run(args)


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = fdl.data.load_digits(seed=args.seed)  # x: (N, 64) in [0, 1], y: (N,)
    x_train, y_train = jnp.asarray(data.x_train, jnp.float64), jnp.asarray(data.y_train)
    x_test, y_test = jnp.asarray(data.x_test, jnp.float64), jnp.asarray(data.y_test)
    model = fdl.models.build_model("mlp", 10, hidden=(64, 32), dropout=0.0)
    params, state, _ = model.init(jax.random.key(args.seed), x_train.shape[1:])
    params = fdl.tree.cast(params, jnp.float64)  # {"dense_0": {"w": (64, 64), "b": (64,)}, ...}

    def jax_loss(params, x, y):
        logits, _ = model.apply(params, state, x)
        return fdl.losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="mean")

    @jax.jit
    def hand_value_and_grad(params, x, y):
        logits, cache = backprop.mlp_forward(params, x, "relu")
        log_probs = jax.nn.log_softmax(logits, axis=-1)  # (B, 10)
        loss = -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=-1))
        return loss, backprop.mlp_backward(params, cache, y)

    def tape_value_and_grad(params, x, y):  # NumPy arrays in and out
        return autodiff.value_and_grad(autodiff.mlp_loss)(params, x, y, "relu")

    jax_value_and_grad = jax.jit(jax.value_and_grad(jax_loss))

    # 1. One gradient on 256 training images, three ways.
    x, y = x_train[:256], y_train[:256]
    _, reference = jax_value_and_grad(params, x, y)
    _, hand = hand_value_and_grad(params, x, y)
    numpy_params = jax.tree.map(np.asarray, params)
    _, tape = tape_value_and_grad(numpy_params, np.asarray(x), np.asarray(y))
    hand_diff, tape_diff = differences(hand, reference), differences(tape, reference)
    print("gradient of the mean cross-entropy on 256 digits, against jax.grad (float64):")
    print(
        f"{'parameter':<12} {'hand max abs':>13} {'hand max rel':>13} {'tape max abs':>13} {'tape max rel':>13}"
    )
    for name in hand_diff:
        (ha, hr), (ta, tr) = hand_diff[name], tape_diff[name]
        print(f"{name:<12} {ha:13.2e} {hr:13.2e} {ta:13.2e} {tr:13.2e}")

    # 2. Three SGD runs from the same start over the same batches, each with its own gradients.
    rng = np.random.default_rng(args.seed)
    order = np.concatenate(
        [rng.permutation(len(y_train)) for _ in range(args.steps * args.batch_size // len(y_train) + 1)]
    )
    runs = {
        "by hand (fdl.backprop)": (hand_value_and_grad, params),
        "tape (fdl.autodiff)": (tape_value_and_grad, numpy_params),
        "jax.grad": (jax_value_and_grad, params),
    }
    curves: dict[str, list[float]] = {}
    final_params = {}
    seconds = {}
    for label, (value_and_grad, p) in runs.items():
        as_array = np.asarray if label.startswith("tape") else jnp.asarray
        start, losses = time.perf_counter(), []
        for step in range(args.steps):
            batch = order[step * args.batch_size : (step + 1) * args.batch_size]
            loss, grads = value_and_grad(p, as_array(x_train[batch]), as_array(y_train[batch]))
            p = jax.tree.map(lambda w, g: w - args.learning_rate * g, p, grads)  # plain SGD
            losses.append(float(loss))
        curves[label], final_params[label] = losses, p
        seconds[label] = time.perf_counter() - start
    reference_curve = np.asarray(curves["jax.grad"])
    drift = {label: float(np.max(np.abs(np.asarray(c) - reference_curve))) for label, c in curves.items()}
    accuracy = {
        label: float(
            fdl.metrics.accuracy(model.apply(jax.tree.map(jnp.asarray, p), state, x_test)[0], y_test)
        )
        for label, p in final_params.items()
    }
    print(f"\nSGD, {args.steps} steps of {args.batch_size}, learning rate {args.learning_rate}:")
    for label in curves:
        print(
            f"{label:<24} loss {curves[label][0]:.4f} -> {curves[label][-1]:.4f}, test accuracy "
            f"{accuracy[label]:.4f}, max |loss - jax.grad's| {drift[label]:.1e} ({seconds[label]:.1f} s)"
        )
    save_plot(curves, args.plot)
    print(f"plot saved to {args.plot}")
    worst = lambda table: max(rel for _, rel in table.values())
    return {
        "hand_max_rel": worst(hand_diff),
        "tape_max_rel": worst(tape_diff),
        "hand_max_abs": max(a for a, _ in hand_diff.values()),
        "tape_max_abs": max(a for a, _ in tape_diff.values()),
        "curve_drift": max(drift.values()),
        "test_accuracy": accuracy,
        "losses": curves,
    }


def save_plot(curves: dict[str, list[float]], path: Path) -> None:
    """Left: the three loss curves; right: each one's distance from jax.grad's, per step."""
    fig = fdl.plot.figure((11, 4))
    ax_loss, ax_diff = fig.subplots(1, 2)
    styles = {"by hand (fdl.backprop)": "-", "tape (fdl.autodiff)": "--", "jax.grad": ":"}
    widths = {"by hand (fdl.backprop)": 3.0, "tape (fdl.autodiff)": 2.0, "jax.grad": 1.5}
    reference = np.asarray(curves["jax.grad"])
    for label, losses in curves.items():
        steps = np.arange(1, len(losses) + 1)
        ax_loss.plot(steps, losses, styles[label], lw=widths[label], label=label)
        if label != "jax.grad":
            gap = np.abs(np.asarray(losses) - reference)
            note = ": exactly 0 at every step" if not gap.any() else ""
            ax_diff.plot(steps, np.maximum(gap, 1e-18), lw=2.0 if note else 1.0, label=label + note)
    ax_loss.set(
        xlabel="SGD step", ylabel="minibatch cross-entropy", yscale="log", title="loss: the curves coincide"
    )
    ax_loss.legend()
    ax_diff.axhline(np.finfo(np.float64).eps, color="gray", ls=":", label="float64 epsilon")
    ax_diff.set(
        xlabel="SGD step",
        ylabel="|loss - loss with jax.grad|",
        yscale="log",
        ylim=(3e-19, 1e-6),
        title="distance from jax.grad's run (0 drawn at 1e-18)",
    )
    ax_diff.legend()
    fig.suptitle("Backpropagation by hand and by a tape equal jax.grad on a digits MLP (float64)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fdl.plot.save_png(fig, path)


if __name__ == "__main__":
    main()
