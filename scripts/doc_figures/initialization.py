"""Activations and gradients through a deep ReLU MLP for three weight scales; the finite-width spread."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl

DEPTH = 30
WIDTH = 256
SCALES = (1.0, 2.0, 4.0)  # c = fan_in * Var[W]: LeCun/Glorot (square layers), He, 2 x He
LABELS = {1.0: "$c = 1$ (LeCun, Glorot)", 2.0: "$c = 2$ (He)", 4.0: "$c = 4$"}
COLORS = {1.0: "#1f77b4", 2.0: "#2ca02c", 4.0: "#d62728"}
SPREAD_WIDTHS = (16, 64, 256)
SPREAD_SEEDS = 32
#: Mean squares over 18 decades: compared as log10.
LOG_KEYS = frozenset(
    {f"{kind}_c{c:g}" for kind in ("q", "g", "q_mean_field", "g_mean_field") for c in SCALES}
)


def _he_params(key: jax.Array, width: int) -> dict:
    """He-normal float64 weights and zero biases, in the layout of ``MLP((width,) * DEPTH)``."""
    he = fdl.initializers.he_normal()
    return {
        f"dense_{i}": {"w": he(k, (width, width), jnp.float64), "b": jnp.zeros(width, jnp.float64)}
        for i, k in enumerate(jax.random.split(key, DEPTH))
    }


def _scaled(params: dict, c: float) -> dict:
    """The same draw with Var[W] = c / width (ReLU is homogeneous: z^l scales by s^(l+1))."""
    s = np.sqrt(c / 2.0)
    return jax.tree.map(lambda p: s * p, params)


def compute() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"layer": np.arange(DEPTH)}
    tol = 4 * np.sqrt(5 * DEPTH / WIDTH)  # Hanin & Rolnick: log q wanders by sqrt(5 L / n)
    models = {width: fdl.nn.MLP((width,) * DEPTH) for width in SPREAD_WIDTHS}  # one compilation each
    with jax.enable_x64(True):
        model = models[WIDTH]
        he = _he_params(jax.random.key(0), WIDTH)
        x = jax.random.normal(jax.random.key(1), (256, WIDTH), jnp.float64)  # E[x^2] = 1
        for c in SCALES:
            stats = fdl.signal_propagation.signal_propagation(model, _scaled(he, c), x, key=jax.random.key(2))
            q = np.asarray(stats.activation_mean_square)[1::2]  # the dense outputs z^0 .. z^29
            g = np.asarray(stats.gradient_mean_square)[1::2]  # dL/dz^l
            q_mf = np.asarray(fdl.signal_propagation.relu_mean_field(q[0], c / WIDTH, WIDTH, DEPTH))
            g_mf = g[-1] * (c / 2) ** np.arange(DEPTH - 1, -1, -1)  # the same recursion, backwards
            assert np.all(np.abs(np.log(q / q_mf)) < tol), (c, q / q_mf)
            assert np.all(np.abs(np.log(g / g_mf)) < tol), (c, g / g_mf)
            out[f"q_c{c:g}"], out[f"g_c{c:g}"] = q, g
            out[f"q_mean_field_c{c:g}"], out[f"g_mean_field_c{c:g}"] = q_mf, g_mf
        # the page's claim: a factor (c/2)^29 = 2^(+-29) at the end, unless c = 2
        assert out["q_c1"][-1] / out["q_c1"][0] < 1e-7 and out["q_c4"][-1] / out["q_c4"][0] > 1e7
        assert 0.2 < out["q_c2"][-1] / out["q_c2"][0] < 5

        # Finite width: log10(q^29 / q^0) for many He draws, per width.
        for width in SPREAD_WIDTHS:
            model = models[width]
            x = jax.random.normal(jax.random.key(3), (256, width), jnp.float64)
            ratios = []
            for seed in range(SPREAD_SEEDS):
                params = _he_params(jax.random.fold_in(jax.random.key(4), 1000 * width + seed), width)
                stats = fdl.signal_propagation.signal_propagation(model, params, x, key=jax.random.key(5))
                q = np.asarray(stats.activation_mean_square)[1::2]
                ratios.append(np.log10(q[-1] / q[0]))
            ratios = np.asarray(ratios)
            # the spread is at most Hanin & Rolnick's sqrt(5 L / n) (a batch averages some away)
            assert np.std(ratios) < 1.5 * np.sqrt(5 * DEPTH / width) / np.log(10), (width, np.std(ratios))
            out[f"spread_w{width}"] = ratios
    # narrow networks wander further, and drift down: E[q] is kept, E[log q] is not
    assert np.std(out["spread_w16"]) > 2 * np.std(out["spread_w256"])
    means = [np.mean(out[f"spread_w{width}"]) for width in SPREAD_WIDTHS]
    assert means[0] < means[1] < means[2] and means[0] < -0.5, means
    assert np.max(np.abs(out["spread_w256"])) < np.log10(3.0)  # the page: within a factor of 3
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((15, 4.6), dpi=110)
    forward, backward, spread = fig.subplots(1, 3)
    layer = data["layer"]
    for c in SCALES:
        color = COLORS[c]
        forward.semilogy(layer, data[f"q_c{c:g}"], color=color, label=LABELS[c])
        forward.semilogy(layer, data[f"q_mean_field_c{c:g}"], "--", color=color, alpha=0.7)
        backward.semilogy(layer, data[f"g_c{c:g}"], color=color, label=LABELS[c])
        backward.semilogy(layer, data[f"g_mean_field_c{c:g}"], "--", color=color, alpha=0.7)
    forward.plot([], [], "k--", alpha=0.7, label="mean field $q^{l+1} = \\frac{c}{2}\\, q^l$")
    forward.set(
        xlabel="layer $l$",
        ylabel="mean square of pre-activations $q^l$",
        title=f"Forward: {DEPTH} ReLU layers of {WIDTH}",
    )
    backward.set(
        xlabel="layer $l$",
        ylabel="mean square of $\\partial\\mathcal{L} / \\partial z^l$",
        title="Backward: the same factor, from the output down",
    )
    forward.legend(loc="upper left", fontsize=9)
    backward.legend(loc="upper right", fontsize=9)

    rng = np.random.default_rng(0)  # horizontal jitter of the dots only
    for i, width in enumerate(SPREAD_WIDTHS):
        ratios = data[f"spread_w{width}"]
        band = 2 * np.sqrt(5 * DEPTH / width) / np.log(10)
        spread.fill_between([i - 0.3, i + 0.3], -band, band, color="#cccccc", alpha=0.6, linewidth=0)
        spread.plot(i + rng.uniform(-0.15, 0.15, ratios.size), ratios, "o", color="#2ca02c", markersize=4)
        drift = -5 * DEPTH / (2 * width) / np.log(10)  # -L Var[eps] / 2, with Var[eps] = 5 / n
        spread.plot([i - 0.3, i + 0.3], [drift, drift], "--", color="black", linewidth=1.2)
    spread.fill_between([], [], [], color="#cccccc", label="$\\pm 2\\sqrt{5L/n}$ (Hanin & Rolnick)")
    spread.plot([], [], "o", color="#2ca02c", markersize=4, label=f"one He draw ({SPREAD_SEEDS} per width)")
    spread.plot([], [], "--", color="black", linewidth=1.2, label="mean drift of $\\ln q$: $-5L/2n$")
    spread.axhline(0.0, color="black", linewidth=0.8)
    spread.set_xticks(range(len(SPREAD_WIDTHS)), [f"width {w}" for w in SPREAD_WIDTHS])
    spread.set(
        ylabel=f"$\\log_{{10}}\\, q^{{{DEPTH - 1}}} / q^0$",
        title="He at finite width: each draw wanders",
    )
    spread.legend(loc="lower right", fontsize=9)
    for ax in (forward, backward, spread):
        ax.grid(alpha=0.3)
    fdl.plot.save_png(fig, path)
