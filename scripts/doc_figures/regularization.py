"""Ridge (L2) and lasso (L1) solution paths of a small regression; proximal vs subgradient L1."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import Lasso

import fdl

N, D = 60, 12
TRUE_W = np.array([4.0, -3.0, 2.5, -2.0, 1.5, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
LAMBDAS = np.logspace(-2.5, 0.7, 40)  # from almost no penalty to every lasso coefficient at 0
LAMBDA_SHOWN = 0.5  # the right panel's lambda
STEPS = 3000
#: The ridge path spans decades of lambda; only the x axis is logarithmic (no key is).
LOG_KEYS: frozenset[str] = frozenset()


def _data() -> tuple[jax.Array, jax.Array]:
    kx, kn = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (N, D), jnp.float64)
    y = x @ jnp.asarray(TRUE_W) + 0.8 * jax.random.normal(kn, (N,), jnp.float64)
    return x, y


def compute() -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"lambda": LAMBDAS, "true_w": TRUE_W}
    with jax.enable_x64(True):
        x, y = _data()

        def data_loss(w: jax.Array) -> jax.Array:  # (1 / 2n) |y - X w|^2, scikit-learn's scaling
            return 0.5 * jnp.mean((y - x @ w) ** 2)

        gram, xty = x.T @ x / N, x.T @ y / N
        eta = 1.0 / float(jnp.linalg.eigvalsh(gram)[-1])

        # Ridge: the minimum of data_loss + lam * l2_penalty solves (X^T X / n + lam I) w = X^T y / n.
        ridge = jnp.stack([jnp.linalg.solve(gram + lam * jnp.eye(D), xty) for lam in LAMBDAS])
        for lam, w in zip(LAMBDAS, ridge, strict=True):  # fdl's penalty: its gradient vanishes there
            g = jax.grad(
                lambda v, lam=lam: data_loss(v) + lam * fdl.regularizers.l2_penalty(v).astype(v.dtype)
            )(w)
            assert float(jnp.max(jnp.abs(g))) < 1e-6, g  # the penalty sums in float32 (fdl.regularizers)

        # Lasso: proximal gradient descent (ISTA), one run per lambda, vmapped.
        def ista(lam: jax.Array) -> jax.Array:
            def step(w: jax.Array, _: None) -> tuple[jax.Array, None]:
                u = w - eta * jax.grad(data_loss)(w)
                return jnp.sign(u) * jnp.maximum(jnp.abs(u) - eta * lam, 0.0), None

            return jax.lax.scan(step, jnp.zeros(D, jnp.float64), length=STEPS)[0]

        def subgradient(lam: jax.Array) -> jax.Array:
            def step(w: jax.Array, _: None) -> tuple[jax.Array, None]:
                penalized = lambda v: data_loss(v) + lam * fdl.regularizers.l1_penalty(v).astype(v.dtype)
                return w - eta * jax.grad(penalized)(w), None

            return jax.lax.scan(step, jnp.zeros(D, jnp.float64), length=STEPS)[0]

        lasso = np.asarray(jax.jit(jax.vmap(ista))(jnp.asarray(LAMBDAS)))
        xs, ys = np.asarray(x), np.asarray(y)
        sklearn_path = np.stack(
            [
                Lasso(alpha=lam, fit_intercept=False, tol=1e-12, max_iter=100_000).fit(xs, ys).coef_
                for lam in LAMBDAS
            ]
        )
        np.testing.assert_allclose(lasso, sklearn_path, atol=1e-5)
        assert np.array_equal(lasso == 0.0, sklearn_path == 0.0)  # the same exact zeros
        # the page's claims: L2 never reaches 0, L1 zeroes every coefficient at the largest lambda
        assert np.all(np.asarray(ridge) != 0.0) and np.all(lasso[-1] == 0.0) and np.all(lasso[0] != 0.0)

        lam = jnp.asarray(LAMBDA_SHOWN)
        shown_prox, shown_sub = (np.asarray(jax.jit(f)(lam)) for f in (ista, subgradient))
        # at this lambda the proximal fit keeps exactly the useful features; subgradient descent none
        assert np.array_equal(shown_prox == 0.0, TRUE_W == 0.0) and np.sum(shown_sub == 0.0) == 0
        shown_ridge = np.asarray(jnp.linalg.solve(gram + lam * jnp.eye(D), xty))
    out["ridge"] = np.asarray(ridge)
    out["lasso"] = lasso
    out["sklearn_lasso"] = sklearn_path
    out["shown_ridge"], out["shown_prox"], out["shown_sub"] = shown_ridge, shown_prox, shown_sub
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((15, 4.6), dpi=110)
    ridge_ax, lasso_ax, shown_ax = fig.subplots(1, 3)
    colors = [f"C{i % 10}" for i in range(D)]
    lam = data["lambda"]
    for j in range(D):
        style = "-" if data["true_w"][j] != 0.0 else ":"
        ridge_ax.semilogx(lam, data["ridge"][:, j], style, color=colors[j])
        lasso_ax.semilogx(lam, data["lasso"][:, j], style, color=colors[j])
        lasso_ax.semilogx(lam[::3], data["sklearn_lasso"][::3, j], "o", color=colors[j], markersize=3)
    lasso_ax.plot([], [], "k-", label="proximal gradient (ISTA), fdl penalty")
    lasso_ax.plot([], [], "ko", markersize=3, label="scikit-learn Lasso")
    ridge_ax.plot([], [], "k-", label="a useful feature (true $w_j \\neq 0$)")
    ridge_ax.plot([], [], "k:", label="a useless feature (true $w_j = 0$)")
    for ax, name in ((ridge_ax, "L2 (ridge): shrinks, never zero"), (lasso_ax, "L1 (lasso): exact zeros")):
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.axvline(LAMBDA_SHOWN, color="gray", linestyle="--", linewidth=1)
        ax.set(xlabel="penalty weight $\\lambda$", ylabel="coefficient $w_j$", title=name)
        ax.set_ylim(-3.4, 5.8)  # room for the legend above the paths
        ax.grid(alpha=0.3)
    ridge_ax.legend(loc="upper right", fontsize=9)
    lasso_ax.legend(loc="upper right", fontsize=9)

    index = np.arange(D)
    shown_ax.axhline(0.0, color="black", linewidth=0.8)
    shown_ax.plot(index, data["true_w"], "s", color="#bbbbbb", markersize=9, label="true $w$")
    shown_ax.plot(index - 0.2, data["shown_ridge"], "o", color="#1f77b4", label="L2 (ridge)")
    shown_ax.plot(index, data["shown_prox"], "D", color="#d62728", markersize=5, label="L1, proximal")
    shown_ax.plot(index + 0.2, data["shown_sub"], "x", color="#2ca02c", label="L1, subgradient descent")
    shown_ax.set_xticks(index)
    shown_ax.set(
        xlabel="feature $j$",
        ylabel="coefficient $w_j$",
        title=f"At $\\lambda = {LAMBDA_SHOWN}$: only the proximal step zeroes",
    )
    shown_ax.grid(alpha=0.3)
    shown_ax.legend(loc="upper right", fontsize=9)
    fdl.plot.save_png(fig, path)
