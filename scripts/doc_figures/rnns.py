"""Gradient norms ||dL/dx_t|| against t at initialization: RNN, GRU and LSTM; scaled recurrences."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl

T, F, H, B = 100, 8, 64, 32
CELLS = {
    "rnn": ("tanh RNN (Elman)", lambda: fdl.nn.RNNCell(H)),
    "gru": ("GRU", lambda: fdl.nn.GRUCell(H)),
    "lstm_bias0": ("LSTM, forget bias 0", lambda: fdl.nn.LSTMCell(H, forget_bias=0.0)),
    "lstm_bias1": ("LSTM, forget bias 1 (fdl's default)", lambda: fdl.nn.LSTMCell(H)),
}
GAINS = (0.5, 1.0, 1.5, 3.0)
#: Every gradient norm is drawn on a log axis.
LOG_KEYS = frozenset({*(f"grad_{name}" for name in CELLS), *(f"grad_gain_{g}" for g in GAINS)})


def gradient_norms(cell: fdl.nn.Cell) -> Callable[[dict, jax.Array, jax.Array], np.ndarray]:
    """``norms(params, x, u)``: RMS over the batch of ||dL/dx_t||, L = <u, h_T>, for each t, ``(T,)``.

    One compiled program per kind of cell, whatever its parameters."""
    layer = fdl.nn.Recurrent(cell, return_sequences=False)

    @jax.jit
    def norms(params: dict, x: jax.Array, u: jax.Array) -> jax.Array:
        def loss(inputs: jax.Array) -> jax.Array:
            h_last, _ = layer.apply(params, {}, inputs)  # (B, H)
            return jnp.sum(h_last * u)

        grads = jax.grad(loss)(x)  # (B, T, F)
        return jnp.sqrt(jnp.mean(jnp.sum(grads**2, axis=-1), axis=0))

    return lambda params, x, u: np.asarray(norms(params, x, u), np.float64)


def compute() -> dict[str, np.ndarray]:
    kx, ku = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (B, T, F))
    u = jax.random.normal(ku, (B, H))
    out: dict[str, np.ndarray] = {"t": np.arange(1, T + 1)}
    programs = {}
    for name, (_, make) in CELLS.items():
        cell = make()
        program = programs.setdefault(cell.kind, gradient_norms(cell))
        out[f"grad_{name}"] = np.maximum(program(cell.init(jax.random.key(1), F), x, u), 1e-30)
    for gain in GAINS:
        cell = fdl.nn.RNNCell(H, recurrent_init=fdl.initializers.orthogonal(gain))
        out[f"grad_gain_{gain}"] = np.maximum(
            programs["RNNCell"](cell.init(jax.random.key(1), F), 0.3 * x, u), 1e-30
        )

    decades = {name: np.log10(out[f"grad_{name}"][-1] / out[f"grad_{name}"][0]) for name in CELLS}
    # the page's claims: every cell's gradient falls towards early steps; the default LSTM's least
    assert all(d > 5 for d in decades.values()), decades
    assert 17 < decades["rnn"] < 21 and 15 < decades["gru"] < 19, decades
    assert 6 < decades["lstm_bias1"] < 10 and decades["lstm_bias0"] > 16, decades
    assert decades["lstm_bias1"] == min(decades.values())
    gain = {g: out[f"grad_gain_{g}"] for g in GAINS}
    assert gain[0.5][40] <= 1e-29  # vanished (to zero in float32) within 60 steps of the end
    assert 5 < np.log10(gain[1.0][-1] / gain[1.0][0]) < 9
    assert gain[1.5][0] > 10 * gain[1.5][-1] and gain[3.0][0] > 1e10 * gain[3.0][-1]  # exploding
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((11, 4.4), dpi=110)
    left, right = fig.subplots(1, 2)
    t = data["t"]
    colors = ["#d62728", "#9467bd", "#ff7f0e", "#1f77b4"]
    for (name, (label, _)), color in zip(CELLS.items(), colors, strict=True):
        left.semilogy(t, data[f"grad_{name}"], color=color, label=label)
    left.set_xlabel("input step $t$ (the loss reads $h_T$, $T = 100$)")
    left.set_ylabel("$\\|\\partial \\mathcal{L} / \\partial x_t\\|$")
    left.set_title("At initialization, unit-variance inputs")
    left.legend(loc="lower right")

    shades = ["#9ecae1", "#3182bd", "#fd8d3c", "#a63603"]
    for gain, color in zip(GAINS, shades, strict=True):
        values = data[f"grad_gain_{gain}"]
        shown = values > 1e-29  # zero in float32: off the log axis
        label = f"$W_h = {gain:g}\\,Q$" + (" (fdl's default)" if gain == 1.0 else "")
        right.semilogy(t[shown], values[shown], color=color, label=label)
    right.set_xlabel("input step $t$")
    right.set_ylabel("$\\|\\partial \\mathcal{L} / \\partial x_t\\|$")
    right.set_title("tanh RNN, scaled orthogonal $W_h$, inputs $\\times 0.3$")
    right.legend(loc="lower left", fontsize=8)
    fdl.plot.save_png(fig, path)
