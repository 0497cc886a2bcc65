"""fdl.neighbors against scikit-learn's NearestNeighbors and KNeighborsClassifier on digits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from fdl.data import load_digits
from fdl.neighbors import knn_classify, knn_search

K = 5


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_knn_search_matches_sklearn_on_digits(digits):
    x_train, _, x_test, _ = digits
    dist, idx = knn_search(x_test, x_train, K)
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=K + 1).fit(x_train).kneighbors(x_test)
    # pixels are multiples of 1/16, so squared distances are multiples of 1/256 that float32
    # holds exactly: the distances agree to float32 rounding of the square root
    np.testing.assert_allclose(np.asarray(dist), ref_dist[:, :K], rtol=1e-6, atol=1e-6)
    # indices agree on every query whose K + 1 nearest distances are all distinct (no ties)
    untied = np.all(np.diff(ref_dist, axis=1) > 1e-9, axis=1)
    assert untied.mean() > 0.5  # most queries have no tie: the comparison is not vacuous
    np.testing.assert_array_equal(np.asarray(idx)[untied], ref_idx[untied, :K])


def test_knn_classify_matches_sklearn_on_digits(digits):
    x_train, y_train, x_test, y_test = digits
    predicted = np.asarray(knn_classify(x_test, x_train, y_train, K))
    sk = KNeighborsClassifier(n_neighbors=K).fit(x_train, y_train)
    reference = sk.predict(x_test)
    accuracy = (predicted == y_test).mean()
    print(
        f"k-NN (k={K}) digits test accuracy: fdl {accuracy:.4f}, sklearn {(reference == y_test).mean():.4f}"
    )
    assert accuracy == (reference == y_test).mean()
    np.testing.assert_array_equal(predicted, reference)


def test_other_metric_and_blocks_match_sklearn():
    rng = np.random.default_rng(0)
    points, queries = rng.normal(size=(50, 3)), rng.normal(size=(23, 3))
    ref_dist, ref_idx = NearestNeighbors(n_neighbors=4, metric="manhattan").fit(points).kneighbors(queries)
    with jax.enable_x64(True):
        for block_size in (None, 5):
            dist, idx = knn_search(
                jnp.asarray(queries), jnp.asarray(points), 4, "cityblock", block_size=block_size
            )
            np.testing.assert_allclose(np.asarray(dist), ref_dist, rtol=1e-12)
            np.testing.assert_array_equal(np.asarray(idx), ref_idx)  # continuous data: no ties


def test_ties_are_broken_by_lower_index_and_lower_class():
    points = jnp.array([[1.0], [-1.0], [2.0], [-2.0]])  # pairs at equal distance from 0
    dist, idx = knn_search(jnp.array([[0.0]]), points, 4)
    assert idx.tolist() == [[0, 1, 2, 3]] and dist.tolist() == [[1.0, 1.0, 2.0, 2.0]]
    # two votes each for classes 3 and 1: the lower class wins
    assert knn_classify(jnp.array([[0.0]]), points, jnp.array([3, 1, 3, 1]), 4).tolist() == [1]


def test_knn_never_holds_the_full_matrix():
    queries, points = jnp.ones((400, 4)), jnp.ones((300, 4))
    jaxpr = jax.make_jaxpr(lambda q, p: knn_search(q, p, 3, block_size=50))(queries, points)

    def shapes(jaxpr):
        for eqn in jaxpr.eqns:
            yield from (v.aval.shape for v in eqn.outvars)
            for param in eqn.params.values():
                inner = getattr(param, "jaxpr", param)
                if hasattr(inner, "eqns"):
                    yield from shapes(inner)

    assert max(int(np.prod(s)) for s in shapes(jaxpr.jaxpr)) == 50 * 300  # one block of distances


def test_errors():
    points = jnp.ones((10, 64))
    with pytest.raises(ValueError, match=r"`k` must be <= the number of points \(10\), got 11"):
        knn_search(points, points, 11)
    with pytest.raises(ValueError, match="`k` must be a positive integer, got 0"):
        knn_search(points, points, 0)
    with pytest.raises(
        ValueError,
        match=r"`queries` and `points` must have the same number of features .*\(3, 63\) and points \(10, 64\)",
    ):
        knn_search(jnp.ones((3, 63)), points, 2)
    with pytest.raises(ValueError, match=r"`metric` must be one of 'euclidean'.*'cosine', got 'l2'"):
        knn_search(points, points, 2, "l2")
    with pytest.raises(ValueError, match=r"`labels` must have shape \(10,\) \(one per point\), got \(9,\)"):
        knn_classify(points, points, jnp.zeros(9, jnp.int32), 2)
    with pytest.raises(TypeError, match="`labels` must be integer class labels, got dtype float32"):
        knn_classify(points, points, jnp.zeros(10), 2)
    with pytest.raises(
        ValueError, match=r"`labels` holds -1 \(at index 3\); class labels must be integers 0 or more"
    ):
        knn_classify(points, points, jnp.zeros(10, jnp.int32).at[3].set(-1), 2)
    with pytest.raises(
        ValueError,
        match=r"`labels` holds 4 \(at index 0\); class labels must be integers in \[0, 3\) \(`num_classes`=3\)",
    ):
        knn_classify(points, points, jnp.full(10, 4, jnp.int32), 2, num_classes=3)
    with pytest.raises(ValueError, match="`num_classes` must be a positive integer, got 0"):
        knn_classify(points, points, jnp.zeros(10, jnp.int32), 2, num_classes=0)
