"""PCA, k-means and k-NN on the embedded 8×8 digits, each next to scikit-learn's.

1. PCA: the explained-variance curve (how many of the 64 directions hold 90% of the variance)
   and the 2-D projection of every image, coloured by its label.
2. k-means with k = 10 on all 1,797 images, without labels: inertia, cluster purity and the
   adjusted Rand index against the labels, for fdl and for scikit-learn's ``KMeans(n_init=10)``.
3. k-NN (k = 5): test accuracy on the held-out split, fdl and scikit-learn.

    python examples/pca_kmeans_digits.py            # writes pca_kmeans_digits.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import matplotlib
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import KNeighborsClassifier

import fdl


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--n-init", type=int, default=10, help="k-means restarts (vmapped)")
    parser.add_argument("--neighbours", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path("pca_kmeans_digits.png"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    data = fdl.data.load_digits()
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])

    pca = fdl.pca.fit_pca(x)
    ratio = np.asarray(pca.explained_variance_ratio)
    cumulative = np.cumsum(ratio)
    for_90 = int(np.searchsorted(cumulative, 0.9) + 1)
    projected = np.asarray(fdl.pca.transform(pca, x))[:, :2]
    print(f"PCA: the first 2 components explain {cumulative[1]:.1%} of the variance; {for_90} explain 90%")

    start = time.perf_counter()
    result = fdl.clustering.kmeans(jax.random.key(args.seed), x, args.clusters, n_init=args.n_init)
    labels = np.asarray(jax.block_until_ready(result.labels))
    fdl_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reference = KMeans(args.clusters, n_init=args.n_init, random_state=args.seed).fit(x)
    sklearn_seconds = time.perf_counter() - start
    metrics = {
        "fdl_inertia": float(result.inertia),
        "sklearn_inertia": float(reference.inertia_),
        "fdl_purity": float(fdl.clustering.purity(y, labels)),
        "sklearn_purity": float(fdl.clustering.purity(y, reference.labels_)),
        "fdl_ari": float(fdl.clustering.adjusted_rand_index(y, labels)),
        "sklearn_ari": float(adjusted_rand_score(y, reference.labels_)),
    }
    print(f"k-means, k={args.clusters}, {args.n_init} restarts (first call includes compiling):")
    print(f"  {'':8} {'inertia':>10} {'purity':>7} {'ARI':>7} {'seconds':>8}")
    for name, seconds in (("fdl", fdl_seconds), ("sklearn", sklearn_seconds)):
        print(
            f"  {name:8} {metrics[name + '_inertia']:10.1f} {metrics[name + '_purity']:7.3f} "
            f"{metrics[name + '_ari']:7.3f} {seconds:8.2f}"
        )

    predicted = fdl.neighbors.knn_classify(data.x_test, data.x_train, data.y_train, args.neighbours)
    metrics["fdl_knn_accuracy"] = float(np.mean(np.asarray(predicted) == data.y_test))
    knn = KNeighborsClassifier(args.neighbours).fit(data.x_train, data.y_train)
    metrics["sklearn_knn_accuracy"] = float(knn.score(data.x_test, data.y_test))
    print(
        f"k-NN, k={args.neighbours}: test accuracy fdl {metrics['fdl_knn_accuracy']:.4f}, "
        f"sklearn {metrics['sklearn_knn_accuracy']:.4f}"
    )
    metrics["components_for_90"] = for_90
    # colour each cluster by its most common label, so that the two scatters can be compared
    majority = np.array(
        [
            np.bincount(y[labels == c], minlength=10).argmax() if np.any(labels == c) else -1
            for c in range(args.clusters)
        ]
    )
    plot(args.plot, projected, y, cumulative, majority[labels])
    print(f"plot: {args.plot}")
    return metrics


def plot(
    path: Path, projected: np.ndarray, y: np.ndarray, cumulative: np.ndarray, clusters: np.ndarray
) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, colours, title in (
        (axes[0], y, "first two principal components, by label"),
        (axes[1], clusters, "k-means clusters, in majority-label colours"),
    ):
        points = ax.scatter(projected[:, 0], projected[:, 1], c=colours, cmap="tab10", s=6)
        ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
        fig.colorbar(points, ax=ax, ticks=range(10))
    steps = np.arange(1, len(cumulative) + 1)
    axes[2].plot(steps, cumulative, marker=".")
    axes[2].axhline(0.9, color="grey", linestyle="--", label="90% of the variance")
    axes[2].set(
        title="explained variance", xlabel="number of components", ylabel="cumulative ratio", ylim=(0, 1.02)
    )
    axes[2].legend()
    fig.tight_layout()
    fdl.plot.save_png(fig, path)
    plt.close(fig)


if __name__ == "__main__":
    main()
