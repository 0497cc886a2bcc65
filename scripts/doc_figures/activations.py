"""The activations and their derivatives; the gradient through 20 layers of saturating and of
rectifying units."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import expit, ndtr

import fdl

A = fdl.activations
#: name -> (function, its derivative written out by hand, the color it is drawn in)
FUNCTIONS = {
    "relu": (A.relu, lambda x: (x > 0).astype(float), "#1f77b4"),
    "leaky_relu (0.1)": (lambda x: A.leaky_relu(x, 0.1), lambda x: np.where(x > 0, 1.0, 0.1), "#aec7e8"),
    "elu": (A.elu, lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0))), "#9467bd"),
    "gelu": (A.gelu, lambda x: ndtr(x) + x * np.exp(-0.5 * x**2) / np.sqrt(2 * np.pi), "#2ca02c"),
    "silu": (A.silu, lambda x: expit(x) * (1 + x * (1 - expit(x))), "#98df8a"),
    "softplus": (A.softplus, expit, "#8c564b"),
    "tanh": (A.tanh, lambda x: 1 / np.cosh(x) ** 2, "#ff7f0e"),
    "sigmoid": (A.sigmoid, lambda x: expit(x) * (1 - expit(x)), "#d62728"),
}
#: name -> (activation, weight initializer) for the 20-layer MLPs
DEPTH_RUNS = {
    "sigmoid, LeCun": (A.sigmoid, fdl.initializers.lecun_normal),
    "tanh, LeCun": (A.tanh, fdl.initializers.lecun_normal),
    "gelu, He": (A.gelu, fdl.initializers.he_normal),
    "relu, He": (A.relu, fdl.initializers.he_normal),
}
DEPTH, WIDTH = 20, 128
#: The gradients of the deep sigmoid network span 24 decades: drawn (and compared) on a log axis.
LOG_KEYS = frozenset(f"grad_{name}" for name in DEPTH_RUNS)


def compute() -> dict[str, np.ndarray]:
    # NumPy's grid holds 0.0 exactly (jnp.linspace's middle point is 3e-8 or 0 depending on how it is
    # compiled): the kink, where the left derivative is taken.
    x = jnp.asarray(np.linspace(-4.0, 4.0, 321), jnp.float32)
    out: dict[str, np.ndarray] = {"x": np.asarray(x)}
    for name, (fn, derivative, _) in FUNCTIONS.items():
        slope = jax.vmap(jax.grad(fn))(x)
        np.testing.assert_allclose(slope, derivative(np.asarray(x, np.float64)), rtol=1e-5, atol=1e-6)
        out[f"value_{name}"], out[f"slope_{name}"] = np.asarray(fn(x)), np.asarray(slope)
    assert abs(float(jnp.max(out["slope_sigmoid"])) - 0.25) < 1e-6  # sigma' <= 1/4, at 0
    assert abs(float(jnp.max(out["slope_tanh"])) - 1.0) < 1e-6  # tanh' <= 1, at 0

    for name, (activation, init) in DEPTH_RUNS.items():
        stats = fdl.signal_propagation.mlp_signal_propagation(
            jax.random.key(0), depth=DEPTH, width=WIDTH, num_samples=256, w_init=init(), activation=activation
        )
        dense = [i for i, layer in enumerate(stats.names) if layer.startswith("dense")]
        out[f"grad_{name}"] = np.asarray(stats.gradient_mean_square)[dense]  # (DEPTH,) at each z^l
    sigmoid, relu = out["grad_sigmoid, LeCun"], out["grad_relu, He"]
    assert sigmoid[0] / sigmoid[-1] < 1e-20  # about 1/16 per layer, 19 layers
    assert 0.5 < relu[0] / relu[-1] < 2.0  # He keeps the ReLU gradient's size
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((15, 4.4), dpi=110)
    left, middle, right = fig.subplots(1, 3)
    for name, (_, _, color) in FUNCTIONS.items():
        left.plot(data["x"], data[f"value_{name}"], color=color, label=name)
        middle.plot(data["x"], data[f"slope_{name}"], color=color, label=name)
    left.set_ylim(-1.6, 4.1)
    left.set_xlabel("$x$")
    left.set_ylabel("$\\phi(x)$")
    left.set_title("Activations")
    left.legend(loc="upper left", ncol=2, fontsize=8)
    middle.axhline(0.25, color="#d62728", linestyle=":", linewidth=1)
    middle.text(-3.9, 0.27, "$\\sigma' \\leq 1/4$", color="#d62728")
    middle.set_ylim(-0.15, 1.25)
    middle.set_xlabel("$x$")
    middle.set_ylabel("$\\phi'(x)$, by jax.grad")
    middle.set_title("Their derivatives (left derivative at the kinks)")
    layers = np.arange(1, DEPTH + 1)
    colors = {
        "sigmoid, LeCun": "#d62728",
        "tanh, LeCun": "#ff7f0e",
        "gelu, He": "#2ca02c",
        "relu, He": "#1f77b4",
    }
    for name, color in colors.items():
        right.semilogy(layers, data[f"grad_{name}"], "o-", markersize=3, color=color, label=name)
    right.set_xticks(layers[::2])
    right.set_xlabel("layer $l$ (the loss is after layer 20)")
    right.set_ylabel("mean square of $\\partial \\mathcal{L} / \\partial z^l$")
    right.set_title(f"Gradient through {DEPTH} layers of width {WIDTH}, at init")
    right.legend(loc="lower right")
    fdl.plot.save_png(fig, path)
