"""The generator's gradient under the minimax and non-saturating losses; JS against W1 as two
Gaussians move apart."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl

#: The gradient magnitudes span eight decades; they are drawn on a log axis.
LOG_KEYS = frozenset({"minimax_gradient", "non_saturating_gradient"})


def _normal_log_density(x: np.ndarray, mean: float) -> np.ndarray:
    return -0.5 * (x - mean) ** 2 - 0.5 * np.log(2 * np.pi)


def compute() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    # Left: d L_G / d f for one fake, against D(G(z)) = sigmoid(f).
    logits = jnp.linspace(-9.0, 9.0, 181)
    prob = jax.nn.sigmoid(logits)
    for name in ("minimax", "non_saturating"):
        gradient = jax.vmap(jax.grad(lambda f, name=name: fdl.gan.generator_loss(f[None], name)))(logits)
        out[f"{name}_gradient"] = np.abs(np.asarray(gradient))
    np.testing.assert_allclose(out["minimax_gradient"], prob, rtol=1e-4)  # sigma(f)
    np.testing.assert_allclose(out["non_saturating_gradient"], 1 - prob, rtol=1e-4, atol=1e-7)
    out["d_of_fake"] = np.asarray(prob)

    # Right: p = N(0, 1), q = N(mu, 1): V(D*, G) = 2 JS - log 4 by quadrature, and W1 = |mu|.
    grid = np.linspace(-12.0, 20.0, 32001)
    spacing = grid[1] - grid[0]
    shifts = np.linspace(0.0, 8.0, 81)
    log_p = _normal_log_density(grid, 0.0)
    values = []
    for mu in shifts:
        log_q = _normal_log_density(grid, mu)
        log_m = np.logaddexp(log_p, log_q) - np.log(2)
        kl_pm = np.sum(np.exp(log_p) * (log_p - log_m)) * spacing
        kl_qm = np.sum(np.exp(log_q) * (log_q - log_m)) * spacing
        values.append(kl_pm + kl_qm - np.log(4))  # = 2 JS - log 4
    out["shift"], out["game_value"] = shifts, np.asarray(values)
    out["wasserstein"] = np.abs(shifts)  # W1 between N(0, 1) and N(mu, 1)
    assert out["game_value"][0] == min(values) and abs(values[0] + np.log(4)) < 1e-6  # q = p
    assert abs(values[-1]) < 1e-3  # separated: JS = log 2, the value stops changing

    # Dots: the same value from fdl's discriminator loss on samples, with d* = log p - log q.
    dots = np.array([0.0, 1.0, 2.0, 3.0, 5.0, 7.0])
    real = np.asarray(jax.random.normal(jax.random.key(0), (20000,)), np.float64)
    noise = np.asarray(jax.random.normal(jax.random.key(1), (20000,)), np.float64)
    sampled = []
    for mu in dots:
        fake = mu + noise

        def d_star(x: np.ndarray, mu: float = mu) -> jax.Array:
            return jnp.asarray(_normal_log_density(x, 0.0) - _normal_log_density(x, mu), jnp.float32)

        sampled.append(-float(fdl.gan.discriminator_loss(d_star(real), d_star(fake), "minimax")))
    out["dot_shift"], out["dot_value"] = dots, np.asarray(sampled)
    np.testing.assert_allclose(out["dot_value"], np.interp(dots, shifts, out["game_value"]), atol=0.02)
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((10, 4.2), dpi=110)
    left, right = fig.subplots(1, 2)
    logit = np.log(data["d_of_fake"]) - np.log1p(-data["d_of_fake"])  # f = sigma^-1(D(G(z)))
    left.semilogy(logit, data["minimax_gradient"], color="#d62728", label="minimax: $\\sigma(f) = D(G(z))$")
    left.semilogy(
        logit,
        data["non_saturating_gradient"],
        color="#1f77b4",
        label="non-saturating: $1 - \\sigma(f)$",
    )
    left.axvspan(
        logit[0], np.log(0.1 / 0.9), color="#dddddd", zorder=0, label="$D(G(z)) < 0.1$: fakes rejected"
    )
    left.set_xlabel("the fake's logit $f = d(G(z))$")
    left.set_ylabel("$|\\partial \\mathcal{L}_G / \\partial f|$ (jax.grad)")
    left.set_title("The generator's gradient through one fake's logit")
    left.legend(loc="lower center")

    right.plot(data["shift"], data["game_value"], color="#444444", label="$V(D^*, G) = 2\\,JS - \\log 4$")
    right.plot(
        data["dot_shift"],
        data["dot_value"],
        "o",
        color="#444444",
        markersize=5,
        label="$-$discriminator_loss, 20,000 samples",
    )
    right.plot(data["shift"], data["wasserstein"], color="#2ca02c", label="$W_1 = |\\mu|$")
    right.set_xlabel("shift $\\mu$: data $\\mathcal{N}(0, 1)$, generator $\\mathcal{N}(\\mu, 1)$")
    right.set_ylabel("value")
    right.set_title("Against D*, the game saturates; $W_1$ does not")
    right.legend(loc="upper left")
    fdl.plot.save_png(fig, path)
