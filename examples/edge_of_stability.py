"""Gradient descent at the edge of stability: the sharpness climbs to 2 / eta and stays there.

    python examples/edge_of_stability.py              # 3 learning rates, ~1 minute on a CPU
    python examples/edge_of_stability.py --steps 300  # a quick smoke run

Full-batch gradient descent, theta <- theta - eta * grad L(theta), on a quadratic is stable only
while the curvature along every direction is below 2 / eta. Cohen et al. (2021) found that on
neural networks the *sharpness* (the top Hessian eigenvalue, lambda_max) first rises during
training ("progressive sharpening") until it reaches 2 / eta, and then hovers there: the loss
keeps falling, non-monotonically, while the sharpness stays at the edge of stability instead of
passing it (which would diverge) or falling back.

This script trains the same network from the same start at several learning rates and measures
the sharpness every ``--every`` steps by Lanczos on Hessian-vector products
(``fdl.curvature.hessian_top_eigenvalues``). It prints, per rate, the mean of
sharpness / (2 / eta) over the last half of training (the late phase), which sits near 1, and
saves a plot of sharpness against step with the 2 / eta lines, and of the training loss.

The setting follows Cohen et al.'s: a subset of the data (``--examples`` digits images, so a
step is cheap and full-batch), mean squared error against one-hot targets (under cross-entropy
the sharpness eventually falls as the logits grow, which hides the effect late in training),
and a tanh MLP (smooth, so the Hessian is well defined everywhere; with ReLU the sharpness
jumps as units switch). Learning rates are chosen so that 2 / eta lies above the sharpness at
initialisation: the rise to it is then the network's own progressive sharpening, not a start
already past the edge.

Reference: J. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar, "Gradient Descent on Neural
Networks Typically Occurs at the Edge of Stability", ICLR (2021).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl
from fdl import curvature


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[0.25, 0.3, 0.35])
    parser.add_argument("--steps", type=int, default=2000, help="gradient descent steps per rate")
    parser.add_argument("--every", type=int, default=10, help="measure the sharpness every N steps")
    parser.add_argument("--examples", type=int, default=500, help="training images (full batch)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[32, 32], help="hidden widths")
    parser.add_argument("--lanczos", type=int, default=20, help="Lanczos steps per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path("edge_of_stability.png"), help="PNG to save")
    parser.add_argument("--quiet", action="store_true", help="no per-rate progress lines")
    return parser.parse_args(argv)


def make_problem(args: argparse.Namespace):
    """``(params, loss_fn)``: a tanh MLP and its full-batch MSE against one-hot targets."""
    data = fdl.data.load_digits(seed=args.seed)
    x = jnp.asarray(data.x_train[: args.examples])  # (N, 64)
    x = x - jnp.mean(x, axis=0, keepdims=True)  # centred pixels: see the module docstring
    targets = jax.nn.one_hot(jnp.asarray(data.y_train[: args.examples]), 10)  # (N, 10)
    model = fdl.nn.MLP((*args.hidden, 10), activation=jnp.tanh)
    params, state, _ = model.init(jax.random.key(args.seed), x.shape[1:])

    def loss_fn(params):
        outputs, _ = model.apply(params, state, x)  # (N, 10)
        return 0.5 * jnp.mean(jnp.sum((outputs - targets) ** 2, axis=-1))

    return params, loss_fn


def train(params, loss_fn, learning_rate: float, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """Full-batch gradient descent; the loss every step, the sharpness every ``args.every``."""

    @jax.jit
    def chunk(params):  # args.every steps of gradient descent, their losses
        def step(params, _):
            loss, grad = jax.value_and_grad(loss_fn)(params)
            return jax.tree.map(lambda p, g: p - learning_rate * g, params, grad), loss

        return jax.lax.scan(step, params, length=args.every)

    @jax.jit
    def sharpness(params, key):
        top = curvature.hessian_top_eigenvalues(loss_fn, params, 1, key=key, num_iterations=args.lanczos)
        return top[0]

    key = jax.random.key(args.seed + 1)
    losses, sharp, at = [], [], []
    for start in range(0, args.steps, args.every):
        key, probe = jax.random.split(key)
        sharp.append(float(sharpness(params, probe)))
        at.append(start)
        params, chunk_losses = chunk(params)
        losses.append(np.asarray(chunk_losses))
    return {"loss": np.concatenate(losses), "sharpness": np.asarray(sharp), "step": np.asarray(at)}


def late_ratio(run: dict[str, np.ndarray], learning_rate: float) -> float:
    """Mean sharpness / (2 / eta) over the second half of training."""
    late = run["step"] >= run["step"].max() / 2
    return float(np.mean(run["sharpness"][late]) * learning_rate / 2)


def save_plot(runs: dict[float, dict[str, np.ndarray]], path: Path) -> None:
    fig = fdl.plot.figure((11, 4))
    ax_sharp, ax_loss = fig.subplots(1, 2)
    for learning_rate, run in runs.items():
        (line,) = ax_sharp.plot(run["step"], run["sharpness"], label=f"eta = {learning_rate:g}")
        ax_sharp.axhline(2 / learning_rate, linestyle="--", color=line.get_color(), alpha=0.8)
        ax_loss.plot(
            np.arange(1, len(run["loss"]) + 1),
            run["loss"],
            color=line.get_color(),
            label=f"eta = {learning_rate:g}",
        )
    ax_sharp.set(
        xlabel="step",
        ylabel="sharpness (top Hessian eigenvalue)",
        title="sharpness rises to 2 / eta (dashed) and stays",
    )
    ax_sharp.legend()
    ax_sharp.grid(alpha=0.3)
    ax_loss.set(
        xlabel="step", ylabel="train loss (MSE)", yscale="log", title="train loss: falls, not monotonically"
    )
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    fig.suptitle("Full-batch gradient descent on digits, tanh MLP (Cohen et al., 2021)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fdl.plot.save_png(fig, path)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    params, loss_fn = make_problem(args)
    n_params = sum(p.size for p in jax.tree.leaves(params))
    initial = float(curvature.hessian_top_eigenvalues(loss_fn, params, 1, key=jax.random.key(args.seed))[0])
    print(f"{args.examples} images, {n_params} parameters, sharpness at initialisation {initial:.2f}")
    runs, results, start = {}, {}, time.perf_counter()
    for learning_rate in args.learning_rates:
        run = train(params, loss_fn, learning_rate, args)
        runs[learning_rate] = run
        ratio = late_ratio(run, learning_rate)
        results[f"ratio_{learning_rate:g}"] = ratio
        if not args.quiet:
            print(
                f"eta = {learning_rate:g}: 2/eta = {2 / learning_rate:.2f}, peak sharpness "
                f"{run['sharpness'].max():.2f}, final loss {run['loss'][-1]:.4f}"
            )
    seconds = time.perf_counter() - start
    for learning_rate in args.learning_rates:
        print(
            f"sharpness / (2/eta) over the late phase, eta = {learning_rate:g}: {results[f'ratio_{learning_rate:g}']:.3f}"
        )
    print(f"({seconds:.1f} s)")
    save_plot(runs, args.plot)
    print(f"plot saved to {args.plot}")
    return {**results, "initial_sharpness": initial, "seconds": seconds}


if __name__ == "__main__":
    main()
