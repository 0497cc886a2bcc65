"""Activation derivatives by hand and by jax.grad; central-difference error against the step."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid}
#: The finite-difference errors are drawn on a log axis; near the rounding floor they are noise.
LOG_KEYS = frozenset({"fd_error"})


def compute() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    z = jnp.linspace(-4.0, 4.0, 401)
    dots = jnp.linspace(-3.75, 3.75, 16)
    out["z"], out["dots"] = np.asarray(z), np.asarray(dots)
    for name, fn in ACTIVATIONS.items():
        by_jax = jax.vmap(jax.grad(fn))(dots)
        np.testing.assert_allclose(
            fdl.backprop.activation_derivative(name, dots), by_jax, rtol=1e-6, atol=1e-7
        )
        out[f"{name}_by_hand"] = np.asarray(fdl.backprop.activation_derivative(name, z))
        out[f"{name}_by_jax"] = np.asarray(by_jax)

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
    out["fd_step"] = steps
    out["fd_error"] = np.maximum(np.asarray(errors), 1e-17)  # an exact hit would be log(0)
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((10, 4.2), dpi=110)
    left, right = fig.subplots(1, 2)
    for name, color in zip(ACTIVATIONS, ["#1f77b4", "#ff7f0e", "#2ca02c"], strict=True):
        left.plot(data["z"], data[f"{name}_by_hand"], color=color, label=f"{name}$'(z)$, by hand")
        left.plot(data["dots"], data[f"{name}_by_jax"], "o", color=color, markersize=4)
    left.plot([], [], "o", color="gray", markersize=4, label="jax.grad")
    left.set_xlabel("$z$")
    left.set_ylabel("$\\sigma'(z)$")
    left.set_title("Activation derivatives: fdl.backprop and jax.grad")
    left.legend()

    eps = 2.0**-52
    right.loglog(
        data["fd_step"], data["fd_error"], "o-", markersize=3, color="#444444", label="central difference"
    )
    right.axvline(
        eps ** (1 / 3), color="#d62728", linestyle="--", label="$h = \\varepsilon^{1/3}$ (fdl.gradcheck)"
    )
    right.set_xlabel("step $h$")
    right.set_ylabel("relative error against jax.grad")
    right.set_title("Truncation ($h^2$) against rounding ($\\varepsilon/h$), float64")
    right.legend()
    fdl.plot.save_png(fig, path)
