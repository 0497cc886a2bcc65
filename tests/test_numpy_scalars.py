"""NumPy scalars are numbers: every count, rate and order that takes a Python int or float takes
``np.int64``/``np.float32`` too (as NumPy, SciPy, scikit-learn and optax do), and gives the
same result; bools (Python's and NumPy's) stay refused. A value read from an array
(``lengths.max()``, ``np.prod(shape)``, a loop over ``np.arange``) is the common case."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import clustering, distances, information, losses, metrics, neighbors, pca
from fdl.fit import Checkpoint, EarlyStopping, Execution

nn = fdl.nn
X = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)


@pytest.mark.parametrize(
    ("make", "python"),
    [
        (lambda: nn.Dense(np.int64(4)), lambda: nn.Dense(4)),
        (lambda: nn.Dense(np.prod((2, 2))), lambda: nn.Dense(4)),
        (lambda: nn.MLP(np.array([5, 2])), lambda: nn.MLP((5, 2))),
        (
            lambda: nn.Serial(nn.Dense(np.int32(3)), nn.Dropout(np.float32(0.25))),
            lambda: nn.Serial(nn.Dense(3), nn.Dropout(0.25)),
        ),
    ],
)
def test_layers_take_numpy_scalars_and_record_python_numbers(make, python, key):
    layer, reference = make(), python()
    assert repr(layer) == repr(reference)  # np.int64(4) is recorded as 4
    params, _, shape = layer.init(key, (3,))
    want, _, want_shape = reference.init(key, (3,))
    assert shape == want_shape
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params, want))


def test_attention_recurrent_and_masks_take_numpy_scalars(key):
    attention = nn.MultiHeadAttention(np.int64(2))
    assert attention.init(key, (5, 8))[2] == (5, 8)
    assert nn.Recurrent(nn.LSTMCell(np.int64(6))).init(key, (4, 3))[2] == (4, 6)
    lengths = np.array([3, 1])
    np.testing.assert_array_equal(nn.padding_mask(lengths, lengths.max()), nn.padding_mask(lengths, 3))


def test_toolkit_takes_numpy_scalars_with_the_same_results(key):
    same = np.testing.assert_array_equal
    same(
        distances.pairwise_distances(X, X, "minkowski", p=np.int64(3)),
        distances.pairwise_distances(X, X, "minkowski", p=3),
    )
    same(
        distances.pairwise_distances(X, X, "minkowski", p=np.float32(2.5)),
        distances.pairwise_distances(X, X, "minkowski", p=2.5),
    )
    same(pca.fit_pca(X, np.int64(2)).components, pca.fit_pca(X, 2).components)
    same(clustering.kmeans(key, X, np.int64(3)).centroids, clustering.kmeans(key, X, 3).centroids)
    same(neighbors.knn_search(X, X, np.int64(2))[0], neighbors.knn_search(X, X, 2)[0])
    labels = np.zeros(12, np.int32)
    assert float(metrics.top_k_accuracy(X, labels, k=np.int64(2))) == float(
        metrics.top_k_accuracy(X, labels, k=2)
    )
    p = np.array([0.25, 0.75])
    assert float(information.entropy(p, base=np.float32(2))) == float(information.entropy(p, base=2.0))
    assert float(information.entropy(p, base=np.int64(2))) == float(information.entropy(p, base=2))
    same(losses.huber(X, 0 * X, delta=np.float32(0.5)), losses.huber(X, 0 * X, delta=0.5))


def test_training_configs_store_python_ints(tmp_path):
    checkpoint = Checkpoint(tmp_path / "ckpt", every=np.int64(5), keep=np.int32(2))
    assert (checkpoint.every, checkpoint.keep) == (5, 2) and type(checkpoint.keep) is int
    assert type(Execution(steps_per_call=np.int64(4)).steps_per_call) is int
    assert type(EarlyStopping("loss", patience=np.int64(3)).patience) is int


@pytest.mark.parametrize("flag", [True, np.bool_(True)])
def test_bools_are_still_refused(flag):
    with pytest.raises(ValueError, match=r"`features` must be a positive integer, got (True|np.True_)"):
        nn.Dense(flag)
    with pytest.raises(ValueError, match=r"`rate` must be in \[0, 1\), got (True|np.True_)"):
        nn.Dropout(flag)
    with pytest.raises(
        ValueError, match=r"`p` must be a number >= 1 for metric='minkowski', got (True|np.True_)"
    ):
        distances.pairwise_distances(X, X, "minkowski", p=flag)


def test_numpy_scalars_out_of_range_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"`features` must be a positive integer, got np.int64\(0\)"):
        nn.Dense(np.int64(0))
    with pytest.raises(ValueError, match=r"`rate` must be in \[0, 1\), got np.float32\(1.0\)"):
        nn.Dropout(np.float32(1.0))
    with pytest.raises(ValueError, match=r"`rate` must be in \[0, 1\), got np.float64\(nan\)"):
        nn.Dropout(np.float64("nan"))
