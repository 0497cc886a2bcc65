"""Four optimizers on Rosenbrock's valley (paths and losses); a network's sharpness rising to 2/eta."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl
from fdl.compare import compare

#: label -> (registry name, hyperparameters): the rates of examples/optimizer_trajectories.py,
#: except two lowered to where the path no longer bounces across the valley. At the rates the
#: example uses (gradient descent 3e-3, RMSProp 1e-2) a one-ulp change of the start moves the
#: path by up to 0.2 (gradient descent) or 0.03 (RMSProp): chaos, which no committed figure can pin.
OPTIMIZERS = {
    "gradient descent": ("sgd", {"learning_rate": 2e-3}),
    "momentum 0.9": ("sgd", {"learning_rate": 1e-3, "momentum": 0.9}),
    "RMSProp": ("rmsprop", {"learning_rate": 3e-3}),
    "Adam": ("adam", {"learning_rate": 1e-1}),
}
STEPS = 1000
#: Full-batch gradient descent on the network of examples/edge_of_stability.py, at its rates.
LEARNING_RATES = (0.25, 0.3, 0.35)
EOS_STEPS, EOS_EVERY = 900, 10
LOG_KEYS = frozenset(f"loss_{i}" for i in range(len(OPTIMIZERS)))


def _edge_of_stability() -> dict[str, np.ndarray]:
    """The sharpness every ``EOS_EVERY`` steps, up to and including its first value >= 2 / eta.

    Past that point the dynamics are chaotic (a one-ulp change of the start moves the later
    sharpness by up to 0.5), so the figure stops there; the example runs on."""
    data = fdl.data.load_digits(seed=0)
    x = jnp.asarray(data.x_train[:500])  # (500, 64)
    x = x - jnp.mean(x, axis=0, keepdims=True)  # centred pixels, as the example
    targets = jax.nn.one_hot(jnp.asarray(data.y_train[:500]), 10)  # (500, 10)
    model = fdl.nn.MLP((32, 32, 10), activation=jnp.tanh)
    params, state, _ = model.init(jax.random.key(0), x.shape[1:])

    def loss_fn(p):
        outputs, _ = model.apply(p, state, x)  # (500, 10)
        return 0.5 * jnp.mean(jnp.sum((outputs - targets) ** 2, axis=-1))

    @jax.jit
    def run(p, key, eta):  # one compiled program for every rate: eta is an argument
        def measure_then_descend(p, probe):
            top = fdl.curvature.hessian_top_eigenvalues(loss_fn, p, 1, key=probe, num_iterations=20)

            def step(p, _):
                grad = jax.grad(loss_fn)(p)
                return jax.tree.map(lambda w, g: w - eta * g, p, grad), None

            return jax.lax.scan(step, p, length=EOS_EVERY)[0], top[0]

        return jax.lax.scan(measure_then_descend, p, jax.random.split(key, EOS_STEPS // EOS_EVERY))[1]

    out = {}
    for i, eta in enumerate(LEARNING_RATES):
        sharpness = np.asarray(run(params, jax.random.key(1), jnp.float32(eta)))
        edge = 2.0 / eta
        assert sharpness[0] < edge, (eta, sharpness[0])  # it starts below the edge...
        reached = np.flatnonzero(sharpness >= edge)
        assert reached.size, (eta, sharpness.max())  # ...and climbs to it
        last = int(reached[0]) + 1
        out[f"eos_step_{i}"] = np.arange(last) * EOS_EVERY
        out[f"eos_sharpness_{i}"] = sharpness[:last]
    return out


def compute() -> dict[str, np.ndarray]:
    result = compare(OPTIMIZERS, "rosenbrock", STEPS, threshold=1e-3)
    out: dict[str, np.ndarray] = {}
    for i, (label, run) in enumerate(result.runs.items()):
        # The optax twin ran in the same scan: the two libraries' paths are bit for bit equal.
        assert run.divergence is not None and float(np.max(run.divergence)) == 0.0, label
        out[f"path_{i}"] = run.path
        out[f"loss_{i}"] = np.maximum(run.losses, 1e-12)  # log axis
    rows = {row.optimizer: row for row in result.summary()}
    assert rows["gradient descent"].steps_to_threshold is None  # stuck in the valley
    assert rows["RMSProp"].steps_to_threshold is None
    assert rows["momentum 0.9"].steps_to_threshold is not None
    assert rows["Adam"].steps_to_threshold is not None
    problem = result.problem
    (x0, x1), (y0, y1) = problem.window
    gx, gy = np.meshgrid(np.linspace(x0, x1, 161), np.linspace(y0, y1, 161))
    out["grid_x"], out["grid_y"] = gx, gy
    out["grid_f"] = np.asarray(problem.function(jnp.asarray(gx), jnp.asarray(gy)))
    out.update(_edge_of_stability())
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((15, 4.4), dpi=110)
    contour, losses, sharp = fig.subplots(1, 3)
    colors = ["#444444", "#1f77b4", "#ff7f0e", "#2ca02c"]
    levels = np.logspace(-2, 3, 11)
    contour.contour(
        data["grid_x"], data["grid_y"], data["grid_f"], levels=levels, colors="#cccccc", linewidths=0.8
    )
    for i, (label, color) in enumerate(zip(OPTIMIZERS, colors, strict=True)):
        hyper = OPTIMIZERS[label][1]
        rate = f"$\\eta$ = {hyper['learning_rate']:g}"
        points = data[f"path_{i}"]
        contour.plot(points[:, 0], points[:, 1], color=color, linewidth=1.0, alpha=0.9)
        contour.plot(points[-1:, 0], points[-1:, 1], "o", color=color, markersize=7, markeredgecolor="white")
        losses.semilogy(data[f"loss_{i}"], color=color, label=f"{label}, {rate}")
    contour.plot([-1.2], [1.0], "o", color="black", markersize=5)
    contour.plot([1.0], [1.0], "*", color="#d62728", markersize=12)
    contour.set_xlim(-1.6, 1.4)
    contour.set_ylim(-0.4, 1.7)
    contour.set_xlabel("$x$")
    contour.set_ylabel("$y$")
    contour.set_title("Rosenbrock: 1000 steps from $(-1.2, 1)$; dots: where each ends")
    losses.axhline(1e-3, color="#999999", linestyle=":", linewidth=1)
    losses.set_xlabel("step")
    losses.set_ylabel("loss $f(x_t, y_t)$")
    losses.set_title("The loss: fdl.optim, equal to optax at every step")
    losses.legend(loc="lower left", fontsize=8)

    for i, (eta, color) in enumerate(zip(LEARNING_RATES, colors[1:], strict=True)):
        sharp.plot(data[f"eos_step_{i}"], data[f"eos_sharpness_{i}"], "o-", markersize=2.5, color=color)
        sharp.axhline(
            2 / eta, color=color, linestyle="--", linewidth=1, label=f"$2/\\eta$, $\\eta$ = {eta:g}"
        )
    sharp.set_xlabel("gradient descent step")
    sharp.set_ylabel("sharpness $\\lambda_{\\max}(\\nabla^2 L)$")
    sharp.set_title("A tanh MLP's sharpness climbs to $2/\\eta$")
    sharp.legend(loc="upper left", fontsize=8)
    fdl.plot.save_png(fig, path)
