"""Signal propagation at initialization: activations and gradients against depth, and through time.

    python examples/signal_propagation.py                       # 50 layers of 256 units, ~1 min on a CPU
    python examples/signal_propagation.py --depth 20 --width 64 # a quick run

Left: the mean square of the pre-activations of a ReLU MLP, layer by layer, for four weight
initializations (He, Glorot, N(0, 0.01^2), N(0, 1)); dashed, the mean-field prediction
q^{l+1} = (sigma_w^2 fan_in / 2) q^l (``fdl.signal_propagation.relu_mean_field``). Middle: the
mean square of the gradient of a random projection of the output with respect to each
pre-activation. Only He keeps both flat; the others shrink or grow by the same factor at every
layer (float64, so the extremes stay representable). Right: the norm of the gradient of a loss at
the last time step with respect to the hidden state t steps earlier, for an Elman RNN (small and
orthogonal recurrent weights) and fdl's LSTM: the Elman gradient vanishes geometrically, the
LSTM's cell state carries it much further. Prints the numbers and saves the plot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl
from fdl.signal_propagation import gradient_through_time, mlp_signal_propagation, relu_mean_field


def inits(width: int) -> dict[str, tuple[fdl.initializers.Initializer, float]]:
    """name -> (initializer, its weight variance for a square ``width x width`` layer)."""
    inits_ = fdl.initializers
    return {
        "He": (inits_.he_normal(), 2.0 / width),
        "Glorot": (inits_.glorot_normal(), 2.0 / (2 * width)),
        "N(0, 0.01²)": (inits_.normal(0.01), 0.01**2),
        "N(0, 1)": (inits_.normal(1.0), 1.0),
    }


def depth_sweep(args: argparse.Namespace) -> dict[str, dict]:
    results = {}
    with jax.enable_x64(True):
        for i, (name, (init, variance)) in enumerate(inits(args.width).items()):
            key = jax.random.fold_in(jax.random.key(args.seed), i)
            stats = mlp_signal_propagation(
                key,
                depth=args.depth,
                width=args.width,
                num_samples=args.samples,
                w_init=init,
                dtype=jnp.float64,
            )
            q = np.asarray(stats.activation_mean_square)[1::2]  # dense outputs z^0 .. z^{L-1}
            g = np.asarray(stats.gradient_mean_square)[1::2]
            predicted = np.asarray(relu_mean_field(q[0], variance, args.width, args.depth))
            c = variance * args.width
            results[name] = {
                "q": q,
                "g": g,
                "q_predicted": predicted,
                "g_predicted": g[-1] * (c / 2) ** np.arange(args.depth - 1, -1, -1),
                "activation_factor": float(q[-1] / q[0]),
                "gradient_factor": float(g[0] / g[-1]),
                "predicted_factor": float((c / 2) ** (args.depth - 1)),
            }
    return results


def time_sweep(args: argparse.Namespace) -> dict[str, dict]:
    inits_ = fdl.initializers
    cells = {
        "Elman, W_h orthogonal × 0.5": fdl.nn.RNNCell(args.hidden, recurrent_init=inits_.orthogonal(0.5)),
        "Elman, W_h orthogonal": fdl.nn.RNNCell(args.hidden),
        "LSTM (forget bias 1)": fdl.nn.LSTMCell(args.hidden),
    }
    key = jax.random.key(args.seed + 1)
    xs = jax.random.normal(jax.random.fold_in(key, 0), (args.samples, args.steps, 8))
    results = {}
    for i, (name, cell) in enumerate(cells.items(), start=1):
        params = cell.init(jax.random.fold_in(key, 2 * i), 8)
        g = gradient_through_time(cell, params, xs, key=jax.random.fold_in(key, 2 * i + 1))
        back, norm = np.asarray(g.steps_back), np.asarray(g.carry_grad_norm, np.float64)
        slope = float(np.polyfit(back, np.log(norm), 1)[0])
        results[name] = {"steps_back": back, "norm": norm, "slope": slope, "ratio": float(norm[0] / norm[-1])}
    return results


def save_plot(depth: dict, time: dict, path: Path) -> None:
    fig = fdl.plot.figure((15, 4.5))
    ax_act, ax_grad, ax_time = fig.subplots(1, 3)
    for name, r in depth.items():
        layers = np.arange(len(r["q"]))
        (line,) = ax_act.plot(layers, r["q"], label=name)
        ax_act.plot(layers, r["q_predicted"], "--", color=line.get_color(), alpha=0.6)
        ax_grad.plot(layers, r["g"], color=line.get_color(), label=name)
        ax_grad.plot(layers, r["g_predicted"], "--", color=line.get_color(), alpha=0.6)
    ax_act.set(
        xlabel="layer l",
        ylabel="mean square of pre-activations $q^l$",
        yscale="log",
        title="forward: activations",
    )
    ax_grad.set(
        xlabel="layer l",
        ylabel=r"mean square of $\partial L / \partial z^l$",
        yscale="log",
        title="backward: gradients",
    )
    ax_act.plot([], [], "k--", alpha=0.6, label=r"mean field $q^{l+1} = \frac{\sigma_w^2 n}{2} q^l$")
    ax_act.legend(fontsize=8)
    for name, r in time.items():
        ax_time.plot(r["steps_back"], r["norm"], label=f"{name} (slope {r['slope']:.2f}/step)")
    ax_time.set(
        xlabel="steps back from the last step",
        ylabel=r"$\|\partial L / \partial \mathrm{state}_t\|$",
        yscale="log",
        title="through time: RNN vs LSTM",
    )
    ax_time.legend(fontsize=8)
    for ax in (ax_act, ax_grad, ax_time):
        ax.grid(alpha=0.3, which="major")
    fig.suptitle("Signal propagation at initialization (ReLU MLP; recurrent cells)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fdl.plot.save_png(fig, path)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=50, help="dense layers of the MLP")
    parser.add_argument("--width", type=int, default=256, help="units per layer")
    parser.add_argument("--samples", type=int, default=256, help="examples in the Gaussian batch")
    parser.add_argument("--steps", type=int, default=40, help="time steps of the RNN sequences")
    parser.add_argument("--hidden", type=int, default=64, help="RNN hidden size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path("signal_propagation.png"))
    args = parser.parse_args(argv)
    for arg in ("depth", "width", "samples", "steps", "hidden"):
        if getattr(args, arg) < 1:
            parser.error(f"--{arg} must be >= 1, got {getattr(args, arg)}")

    depth = depth_sweep(args)
    print(f"ReLU MLP, {args.depth} layers of {args.width}: q^{args.depth - 1} / q^0 (measured vs mean field)")
    for name, r in depth.items():
        print(
            f"  {name:12s} activations {r['activation_factor']:.3g}, gradients {r['gradient_factor']:.3g}, "
            f"mean field {r['predicted_factor']:.3g}"
        )
    time = time_sweep(args)
    print(f"RNN, hidden {args.hidden}: ||dL/d state|| {args.steps - 1} steps back / at the last step")
    for name, r in time.items():
        print(f"  {name:28s} ratio {r['ratio']:.3g}, log-slope {r['slope']:.3f} per step")
    save_plot(depth, time, args.plot)
    print(f"plot saved to {args.plot}")
    return {"depth": depth, "time": time}


if __name__ == "__main__":
    main()
