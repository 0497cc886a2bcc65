"""k-means clusters of the digits on the PCA plane, their centroids as images, and a 2-D embedding
learned with the batch-hard triplet loss next to PCA's 2-D projection."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl

STEPS = 1000  # triplet-loss training steps of 128 digits


def _cluster(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """k-means (k = 10) on the 64 pixels; clusters renumbered by their majority digit."""
    result = fdl.clustering.kmeans(jax.random.key(0), x, 10, n_init=3)
    labels, centroids = np.asarray(result.labels), np.asarray(result.centroids)
    # Lloyd's fixed point: every centroid is the mean of the points assigned to it.
    for c in range(10):
        np.testing.assert_allclose(centroids[c], x[labels == c].mean(axis=0), atol=1e-4)
    # The inertia is the sum of each point's squared distance to its centroid.
    squared = fdl.distances.pairwise_distances(x, result.centroids, "sqeuclidean")  # (n, 10)
    np.testing.assert_allclose(result.inertia, np.sum(np.min(np.asarray(squared), axis=1)), rtol=1e-4)
    counts = np.asarray(fdl.clustering.contingency_matrix(y, labels, num_true=10, num_pred=10))  # (10, 10)
    majority, share = counts.argmax(axis=0), counts.max(axis=0) / counts.sum(axis=0)
    order = np.lexsort((-share, majority))  # clusters sorted by majority digit, purest first
    rank = np.empty(10, np.int64)
    rank[order] = np.arange(10)
    return {
        "cluster": rank[labels],
        "centroids": centroids[order],
        "majority": majority[order],
        "majority_share": share[order],
        "purity": np.asarray(fdl.clustering.purity(y, labels)),
        "ari": np.asarray(fdl.clustering.adjusted_rand_index(y, labels)),
    }


def _triplet_embedding(data: fdl.data.Split) -> tuple[np.ndarray, np.ndarray]:
    """An MLP 64 -> 128 -> 2 trained on the batch-hard triplet loss (soft margin); the train and
    test digits embedded in 2-D."""
    model = fdl.nn.MLP((128, 2), name="embed")
    params, state, _ = model.init(jax.random.key(1), (64,))
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    optimizer = fdl.optim.adam(3e-3)

    def loss(params: dict, xb: jax.Array, yb: jax.Array) -> jax.Array:
        z, _ = model.apply(params, state, xb)
        return fdl.contrastive.batch_hard_triplet_loss(z, yb, 0.0, soft=True)

    @jax.jit
    def train(params: dict, key: jax.Array) -> dict:
        def step(carry: tuple, step_key: jax.Array) -> tuple:
            params, opt_state = carry
            idx = jax.random.choice(step_key, x.shape[0], (128,), replace=False)
            grads = jax.grad(loss)(params, x[idx], y[idx])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (fdl.optim.apply_updates(params, updates), opt_state), None

        (params, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), jax.random.split(key, STEPS))
        return params

    params = train(params, jax.random.key(2))
    z_train, _ = model.apply(params, state, x)
    z_test, _ = model.apply(params, state, jnp.asarray(data.x_test))
    return np.asarray(z_train), np.asarray(z_test)


def _knn_accuracy(train: np.ndarray, test: np.ndarray, data: fdl.data.Split) -> float:
    predicted = fdl.neighbors.knn_classify(test, train, data.y_train, 5)
    return float(np.mean(np.asarray(predicted) == data.y_test))


def compute() -> dict[str, np.ndarray]:
    data = fdl.data.load_digits()
    x = np.concatenate([data.x_train, data.x_test])  # (1797, 64)
    y = np.concatenate([data.y_train, data.y_test])
    out = _cluster(x, y)
    pca = fdl.pca.fit_pca(x, 2)
    out["projection"] = np.asarray(fdl.pca.transform(pca, x))  # (1797, 2)
    out["centroid_projection"] = np.asarray(fdl.pca.transform(pca, out["centroids"]))  # (10, 2)

    z_train, z_test = _triplet_embedding(data)
    train_pca = fdl.pca.fit_pca(data.x_train, 2)
    pca_train = np.asarray(fdl.pca.transform(train_pca, data.x_train))
    pca_test = np.asarray(fdl.pca.transform(train_pca, data.x_test))
    out["embedding_test"], out["labels_test"] = z_test, np.asarray(data.y_test)
    out["knn_embedding"] = np.asarray(_knn_accuracy(z_train, z_test, data))
    out["knn_pca2"] = np.asarray(_knn_accuracy(pca_train, pca_test, data))
    out["knn_pixels"] = np.asarray(_knn_accuracy(data.x_train, data.x_test, data))
    # The page's claim: two learned dimensions keep the classes apart; PCA's two do not.
    assert out["knn_embedding"] > 0.9 > 0.7 > out["knn_pca2"], (out["knn_embedding"], out["knn_pca2"])
    assert 0.7 < out["purity"] < 0.9 and 0.55 < out["ari"] < 0.75, (out["purity"], out["ari"])
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((14, 4.6), dpi=100)
    panels = fig.subfigures(1, 3, width_ratios=[1.0, 0.85, 1.05])
    colors = [f"C{i}" for i in range(10)]

    left = panels[0].subplots()
    z = data["projection"]
    left.scatter(z[:, 0], z[:, 1], c=[colors[c] for c in data["cluster"]], s=5, alpha=0.6)
    for c, (u, v) in enumerate(data["centroid_projection"]):
        left.plot(u, v, "X", color=colors[c], markersize=13, markeredgecolor="black")
        left.annotate(
            str(data["majority"][c]), (u, v), xytext=(6, 6), textcoords="offset points", fontsize=11
        )
    left.set_xlabel("first principal axis")
    left.set_ylabel("second principal axis")
    left.set_title(
        f"k-means, k = 10, on the 64 pixels\npurity {float(data['purity']):.2f}, "
        f"ARI {float(data['ari']):.2f} (drawn on 2 PCA axes)"
    )

    for c, ax in enumerate(panels[1].subplots(2, 5).ravel()):
        ax.imshow(data["centroids"][c].reshape(8, 8), cmap="gray_r", vmin=0.0, vmax=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color(colors[c])
            spine.set_linewidth(3)
        ax.set_title(f"{data['majority'][c]} ({float(data['majority_share'][c]):.0%})", fontsize=10)
    panels[1].suptitle("The 10 centroids as images:\nmajority digit (its share of the cluster)")

    right = panels[2].subplots()
    e = data["embedding_test"]
    points = right.scatter(e[:, 0], e[:, 1], c=data["labels_test"], cmap="tab10", s=8, alpha=0.8)
    panels[2].colorbar(points, ax=right, ticks=range(10), label="digit")
    right.set_xlabel("$z_1$")
    right.set_ylabel("$z_2$")
    right.set_title(
        f"2-D embedding, triplet loss (test digits)\n5-NN accuracy {float(data['knn_embedding']):.1%} "
        f"(PCA's 2-D: {float(data['knn_pca2']):.1%})"
    )
    fdl.plot.save_png(fig, path)
