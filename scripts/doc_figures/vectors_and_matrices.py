"""PCA's variances next to the Lanczos eigenvalues of the covariance; the digits in 2-D."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl


def compute() -> dict[str, np.ndarray]:
    data = fdl.data.load_digits()
    x = jnp.asarray(data.x_train)  # (N, 64)
    state = fdl.pca.fit_pca(x, 20)
    xc = x - jnp.mean(x, axis=0, keepdims=True)  # (N, 64)
    n = x.shape[0]
    values, _ = fdl.spectral.top_eigenpairs(
        lambda v: xc.T @ (xc @ v) / (n - 1), 64, 8, key=jax.random.key(0), num_iterations=30
    )
    np.testing.assert_allclose(values, state.explained_variance[:8], rtol=1e-3)
    return {
        "pca_variance": np.asarray(state.explained_variance),
        "lanczos_values": np.asarray(values),
        "projection": np.asarray(fdl.pca.transform(state, x))[:, :2],
        "labels": np.asarray(data.y_train),
        "share_2": np.asarray(jnp.sum(state.explained_variance_ratio[:2])),
    }


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((10, 4.2), dpi=110)
    left, right = fig.subplots(1, 2)
    k = np.arange(1, 21)
    left.bar(k, data["pca_variance"], color="#9ecae1", label="PCA: $\\sigma_i^2 = s_i^2/(N-1)$")
    left.plot(
        k[:8], data["lanczos_values"], "o", color="#d62728", label="Lanczos on $v \\mapsto Cv$ (30 steps)"
    )
    left.set_xlabel("principal axis $i$")
    left.set_ylabel("variance along the axis")
    left.set_xticks(k[::2])
    left.set_title("Eigenvalues of the digits' covariance")
    left.legend()
    z = data["projection"]
    points = right.scatter(z[:, 0], z[:, 1], c=data["labels"], cmap="tab10", s=6, alpha=0.8)
    right.set_xlabel("first principal axis")
    right.set_ylabel("second principal axis")
    right.set_title(f"Digits projected on 2 of 64 axes ({float(data['share_2']):.0%} of the variance)")
    fig.colorbar(points, ax=right, ticks=range(10), label="digit")
    fdl.plot.save_png(fig, path)
