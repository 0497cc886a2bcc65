"""fdl.clustering against scikit-learn (KMeans, adjusted_rand_score, contingency_matrix)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics.cluster import contingency_matrix as sk_contingency_matrix

from fdl.clustering import adjusted_rand_index, contingency_matrix, kmeans, kmeans_plusplus, purity
from fdl.data import load_digits


@pytest.fixture(scope="module")
def digits():
    split = load_digits()
    return np.concatenate([split.x_train, split.x_test]), np.concatenate([split.y_train, split.y_test])


def test_kmeans_on_digits_matches_sklearn_inertia(digits, key):
    x, y = digits
    assert x.shape == (1797, 64)
    result = kmeans(key, x, 10, n_init=10)
    sk = KMeans(n_clusters=10, n_init=10, random_state=0).fit(x)
    labels = np.asarray(result.labels)
    assert float(result.inertia) <= 1.01 * sk.inertia_
    # against the digit labels: fdl's clustering is as good as scikit-learn's, and far from chance
    ari, sk_ari = float(adjusted_rand_index(y, labels)), adjusted_rand_score(y, sk.labels_)
    got_purity = float(purity(y, labels))
    counts = np.zeros((10, 10), int)  # (cluster, class), counted by numpy for the reference purity
    np.add.at(counts, (labels, y), 1)
    np.testing.assert_allclose(got_purity, counts.max(1).sum() / len(y), rtol=1e-6)
    sk_counts = np.zeros((10, 10), int)
    np.add.at(sk_counts, (sk.labels_, y), 1)
    sk_purity = sk_counts.max(1).sum() / len(y)
    assert ari >= sk_ari - 0.03 and got_purity >= sk_purity - 0.03, (ari, sk_ari, got_purity, sk_purity)
    shuffled = np.random.default_rng(0).permutation(labels)  # same cluster sizes, no information
    assert abs(float(adjusted_rand_index(y, shuffled))) < 0.02 < 0.5 < ari
    assert result.inertias.shape == (10,) and float(result.inertia) == float(jnp.min(result.inertias))
    # the reported inertia is that of the returned centroids and labels (float64 recomputation)
    centroids = np.asarray(result.centroids, np.float64)
    squared = ((x[:, None, :].astype(np.float64) - centroids[None]) ** 2).sum(-1)  # (n, k)
    np.testing.assert_array_equal(labels, squared.argmin(1))
    np.testing.assert_allclose(float(result.inertia), squared.min(1).sum(), rtol=1e-5)
    # ARI of fdl's own predictions equals scikit-learn's ARI on the same predictions
    np.testing.assert_allclose(ari, adjusted_rand_score(y, labels), rtol=1e-5)


def test_lloyd_fixed_point_and_iteration_cap(key):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(c, 0.3, size=(40, 2)) for c in (0.0, 3.0, 6.0)]).astype(np.float32)
    result = kmeans(key, x, 3, n_init=2, tol=0.0)  # until nothing moves
    labels, centroids = np.asarray(result.labels), np.asarray(result.centroids)
    for c in range(3):  # converged: every centroid is the mean of its points
        np.testing.assert_allclose(centroids[c], x[labels == c].mean(0), rtol=1e-5, atol=1e-6)
    assert int(kmeans(key, x, 3, n_init=2, max_iter=1).iterations) == 1


def test_kmeans_plusplus_samples_proportionally_to_squared_distance(keys):
    """Plain k-means++ (one trial), k=2 on four 1-D points: P(first=i, second=j) =
    1/4 * D_ij^2 / sum_l D_il^2. Each of the 12 pair frequencies is within 4 standard errors."""
    x = jnp.array([[0.0], [1.0], [2.0], [4.0]])
    draws = 8000
    indices = jax.vmap(lambda k: kmeans_plusplus(k, x, 2, n_local_trials=1)[1])(
        jax.random.split(next(keys), draws)
    )
    counts = np.zeros((4, 4))
    np.add.at(counts, (np.asarray(indices[:, 0]), np.asarray(indices[:, 1])), 1)
    d2 = (np.asarray(x) - np.asarray(x).T) ** 2  # (4, 4)
    expected = 0.25 * d2 / d2.sum(1, keepdims=True)
    stderr = np.sqrt(expected * (1 - expected) / draws)
    assert np.all(np.abs(counts / draws - expected) <= 4 * stderr + 1e-12)
    centroids, idx = kmeans_plusplus(next(keys), x, 3)
    np.testing.assert_array_equal(np.asarray(centroids), np.asarray(x)[np.asarray(idx)])
    assert len(set(np.asarray(idx).tolist())) == 3


def test_ari_and_contingency_match_sklearn():
    rng = np.random.default_rng(1)
    cases = [(rng.integers(0, 4, 200), rng.integers(0, 6, 200)) for _ in range(3)]
    a = rng.integers(0, 5, 300)
    cases += [(a, (a + 1) % 5), (a, np.where(rng.random(300) < 0.3, rng.integers(0, 5, 300), a))]
    cases += [
        (np.zeros(7, int), np.zeros(7, int)),
        (np.arange(7), np.arange(7)),
        (np.zeros(7, int), np.arange(7)),
    ]
    cases += [(np.array([0]), np.array([0]))]
    for true, pred in cases:
        true, pred = true.astype(np.int32), pred.astype(np.int32)
        np.testing.assert_allclose(
            float(adjusted_rand_index(true, pred)), adjusted_rand_score(true, pred), atol=1e-6
        )
        np.testing.assert_array_equal(
            np.asarray(contingency_matrix(true, pred)), sk_contingency_matrix(true, pred)
        )
    with jax.enable_x64(True):
        true, pred = cases[0]
        got = adjusted_rand_index(jnp.asarray(true), jnp.asarray(pred))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(float(got), adjusted_rand_score(true, pred), rtol=1e-12)


def test_purity_by_hand_and_under_jit():
    true = jnp.array([0, 0, 0, 1, 1, 2, 2, 2])
    pred = jnp.array([1, 1, 0, 0, 0, 2, 2, 1])
    # cluster 0: {0, 1, 1} -> 2; cluster 1: {0, 0, 2} -> 2; cluster 2: {2, 2} -> 2
    assert float(purity(true, pred)) == 6 / 8
    jitted = jax.jit(
        lambda t, p: (purity(t, p, num_true=3, num_pred=3), adjusted_rand_index(t, p, num_true=3, num_pred=3))
    )
    got_purity, got_ari = jitted(true, pred)
    assert float(got_purity) == 6 / 8
    np.testing.assert_allclose(
        float(got_ari), adjusted_rand_score(np.asarray(true), np.asarray(pred)), atol=1e-6
    )


def test_errors(key):
    x = jnp.ones((5, 3))
    with pytest.raises(ValueError, match=r"`k` must be <= the number of points \(5\), got 6"):
        kmeans(key, x, 6)
    with pytest.raises(ValueError, match=r"`k` must be <= the number of points \(5\), got 6"):
        kmeans_plusplus(key, x, 6)
    with pytest.raises(ValueError, match="`k` must be a positive integer, got 0"):
        kmeans(key, x, 0)
    with pytest.raises(ValueError, match="`n_init` must be a positive integer, got 0"):
        kmeans(key, x, 2, n_init=0)
    with pytest.raises(ValueError, match="`max_iter` must be a positive integer, got 0"):
        kmeans(key, x, 2, max_iter=0)
    with pytest.raises(ValueError, match="`tol` must be a non-negative finite number, got -1"):
        kmeans(key, x, 2, tol=-1)
    with pytest.raises(ValueError, match="`n_local_trials` must be a positive integer, got 0"):
        kmeans_plusplus(key, x, 2, n_local_trials=0)
    with pytest.raises(
        ValueError, match=r"`x` must have 2 dimensions \(points, features\), got shape \(5,\)"
    ):
        kmeans(key, jnp.ones(5), 2)
    with pytest.raises(TypeError, match="`x` must have a floating dtype, got int32"):
        kmeans(key, jnp.ones((5, 3), jnp.int32), 2)
    with pytest.raises(
        ValueError, match="`labels_true` and `labels_pred` must have the same length, got 3 and 2"
    ):
        adjusted_rand_index(jnp.array([0, 1, 1]), jnp.array([0, 1]))
    with pytest.raises(
        ValueError, match=r"`labels_pred` must be 1-D \(one label per point\), got shape \(1, 2\)"
    ):
        purity(jnp.array([0, 1]), jnp.array([[0, 1]]))
    with pytest.raises(TypeError, match="`labels_true` must be integer class labels, got dtype float32"):
        contingency_matrix(jnp.array([0.0, 1.0]), jnp.array([0, 1]))
    with pytest.raises(
        ValueError, match=r"`labels_true` holds -1 \(at index 1\); class labels must be integers 0 or more"
    ):
        contingency_matrix(jnp.array([0, -1]), jnp.array([0, 1]))
    with pytest.raises(
        ValueError,
        match=r"`labels_pred` holds 2 \(at index 1\); class labels must be integers in \[0, 2\) \(`num_pred`=2\)",
    ):
        purity(jnp.array([0, 1]), jnp.array([0, 2]), num_pred=2)
    with pytest.raises(ValueError, match="`num_pred` must be a positive integer, got 0"):
        contingency_matrix(jnp.array([0, 1]), jnp.array([0, 1]), num_pred=0)
