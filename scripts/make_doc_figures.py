"""Make the figures of the course pages (``docs/figures/*.png``) with the code the pages show.

    python scripts/make_doc_figures.py                 # rewrite every figure, ~20 s on a CPU
    python scripts/make_doc_figures.py --only derivatives --out /tmp/figures

One function per chapter, named after the page (``docs/course/<name>.md`` shows
``docs/figures/<name>.png``). Each computes with fdl and, where the page claims two computations
agree, asserts it before drawing, so a figure cannot show a result the library no longer gives.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"


def vectors_and_matrices(path: Path) -> None:
    """PCA's variances next to the Lanczos eigenvalues of the covariance; digits in 2-D."""
    data = fdl.data.load_digits()
    x = jnp.asarray(data.x_train)  # (N, 64)
    state = fdl.pca.fit_pca(x, 20)
    xc = x - jnp.mean(x, axis=0, keepdims=True)  # (N, 64)
    n = x.shape[0]
    values, _ = fdl.spectral.top_eigenpairs(
        lambda v: xc.T @ (xc @ v) / (n - 1), 64, 8, key=jax.random.key(0), num_iterations=30
    )
    np.testing.assert_allclose(values, state.explained_variance[:8], rtol=1e-3)
    z = np.asarray(fdl.pca.transform(state, x))  # (N, 20)

    fig = fdl.plot.figure((10, 4.2), dpi=110)
    left, right = fig.subplots(1, 2)
    k = np.arange(1, 21)
    left.bar(
        k, np.asarray(state.explained_variance), color="#9ecae1", label="PCA: $\\sigma_i^2 = s_i^2/(N-1)$"
    )
    left.plot(k[:8], np.asarray(values), "o", color="#d62728", label="Lanczos on $v \\mapsto Cv$ (30 steps)")
    left.set_xlabel("principal axis $i$")
    left.set_ylabel("variance along the axis")
    left.set_xticks(k[::2])
    left.set_title("Eigenvalues of the digits' covariance")
    left.legend()
    labels = np.asarray(data.y_train)
    points = right.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
    right.set_xlabel("first principal axis")
    right.set_ylabel("second principal axis")
    share = float(jnp.sum(state.explained_variance_ratio[:2]))
    right.set_title(f"Digits projected on 2 of 64 axes ({share:.0%} of the variance)")
    fig.colorbar(points, ax=right, ticks=range(10), label="digit")
    fdl.plot.save_png(fig, path)


def derivatives(path: Path) -> None:
    """Activation derivatives by hand and by jax.grad; central-difference error against the step."""
    fig = fdl.plot.figure((10, 4.2), dpi=110)
    left, right = fig.subplots(1, 2)
    z = jnp.linspace(-4.0, 4.0, 401)
    dots = jnp.linspace(-3.75, 3.75, 16)
    functions = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}
    for (name, fn), color in zip(functions.items(), ["#1f77b4", "#ff7f0e", "#2ca02c"], strict=True):
        by_hand = fdl.backprop.activation_derivative(name, z)
        by_jax = jax.vmap(jax.grad(fn))(dots)
        np.testing.assert_allclose(
            fdl.backprop.activation_derivative(name, dots), by_jax, rtol=1e-6, atol=1e-7
        )
        left.plot(z, by_hand, color=color, label=f"{name}$'(z)$, by hand")
        left.plot(dots, by_jax, "o", color=color, markersize=4)
    left.plot([], [], "o", color="gray", markersize=4, label="jax.grad")
    left.set_xlabel("$z$")
    left.set_ylabel("$\\sigma'(z)$")
    left.set_title("Activation derivatives: fdl.backprop and jax.grad")
    left.legend()

    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(2), 3)
        params = {
            "dense_0": {"w": jax.random.normal(keys[0], (4, 8), jnp.float64), "b": jnp.zeros(8, jnp.float64)},
            "dense_1": {"w": jax.random.normal(keys[1], (8, 3), jnp.float64), "b": jnp.zeros(3, jnp.float64)},
        }
        x = jax.random.normal(keys[2], (6, 4), jnp.float64)
        labels = jnp.array([0, 1, 2, 0, 1, 2])
        w = params["dense_0"]["w"]

        def loss_of_weight(value: jax.Array) -> jax.Array:  # the loss as a function of w[0, 0]
            return fdl.backprop.mlp_loss(
                {**params, "dense_0": {"w": w.at[0, 0].set(value), "b": params["dense_0"]["b"]}},
                x,
                labels,
                "tanh",
            )

        exact = float(jax.grad(loss_of_weight)(w[0, 0]))
        steps = np.logspace(-15, -1, 57)
        errors = []
        for h in steps:
            difference = (loss_of_weight(w[0, 0] + h) - loss_of_weight(w[0, 0] - h)) / (2 * h)
            errors.append(abs(float(difference) - exact) / abs(exact))
    errors_array = np.maximum(np.asarray(errors), 1e-17)  # an exact hit would be log(0)
    eps = 2.0**-52
    right.loglog(steps, errors_array, "o-", markersize=3, color="#444444", label="central difference")
    right.axvline(
        eps ** (1 / 3), color="#d62728", linestyle="--", label="$h = \\varepsilon^{1/3}$ (fdl.gradcheck)"
    )
    right.set_xlabel("step $h$")
    right.set_ylabel("relative error against jax.grad")
    right.set_title("Truncation ($h^2$) against rounding ($\\varepsilon/h$), float64")
    right.legend()
    fdl.plot.save_png(fig, path)


FIGURE_MAKERS: dict[str, Callable[[Path], None]] = {
    "vectors_and_matrices": vectors_and_matrices,
    "derivatives": derivatives,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=FIGURES, help="folder for the PNGs (default docs/figures)"
    )
    parser.add_argument("--only", choices=sorted(FIGURE_MAKERS), action="append", help="make only these")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or FIGURE_MAKERS:
        start = time.perf_counter()
        FIGURE_MAKERS[name](args.out / f"{name}.png")
        print(f"{args.out / name}.png in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
