"""Metrics against hand-computed cases and NumPy references (argmax, stable argsort).

Ties are part of the contract (they go to the lower class index), so the hand-computed cases
contain ties and the random cases use small integer-valued logits, where ties are common.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import metrics

# Four examples, three classes. Predicted classes (argmax, ties -> lower index): 1, 0, 0, 2.
LOGITS = jnp.array(
    [
        [0.1, 0.7, 0.2],
        [2.0, 1.0, 0.0],
        [0.3, 0.3, 0.1],  # tie between classes 0 and 1: predicted 0
        [-1.0, -2.0, 5.0],
    ]
)
LABELS = jnp.array([1, 2, 1, 2])  # right, wrong, wrong (lost the tie), right


def _tied_logits(key, shape):
    """Integer-valued logits in {0, 1, 2}: many ties between classes."""
    return jax.random.randint(key, shape, 0, 3).astype(jnp.float32)


def test_accuracy_hand_computed_integer_labels():
    assert float(metrics.accuracy(LOGITS, LABELS)) == 0.5
    assert float(metrics.accuracy(LOGITS, jnp.array([1, 0, 0, 2]))) == 1.0
    assert float(metrics.accuracy(LOGITS, jnp.array([0, 1, 2, 0]))) == 0.0


def test_accuracy_hand_computed_one_hot_and_soft_labels():
    one_hot = jax.nn.one_hot(LABELS, 3)
    assert float(metrics.accuracy(LOGITS, one_hot)) == 0.5
    soft = jnp.array(
        [
            [0.2, 0.5, 0.3],  # argmax 1
            [0.1, 0.1, 0.8],  # argmax 2
            [0.4, 0.6, 0.0],  # argmax 1
            [0.5, 0.0, 0.5],  # tie between classes 0 and 2: the label is class 0
        ]
    )
    assert float(metrics.accuracy(LOGITS, soft)) == 0.25


def test_accuracy_matches_numpy_with_batch_dims(keys):
    logits = _tied_logits(next(keys), (2, 16, 5))
    labels = jax.random.randint(next(keys), (2, 16), 0, 5)
    expected = np.mean(np.argmax(np.asarray(logits), axis=-1) == np.asarray(labels))
    result = jax.jit(metrics.accuracy)(logits, labels)
    assert result.shape == () and result.dtype == jnp.float32
    assert float(result) == pytest.approx(expected, abs=1e-7)
    one_hot = jax.nn.one_hot(labels, 5)
    assert float(jax.jit(metrics.accuracy)(logits, one_hot)) == pytest.approx(expected, abs=1e-7)


def test_accuracy_is_float32_for_bfloat16_logits():
    result = metrics.accuracy(LOGITS.astype(jnp.bfloat16), LABELS)
    assert result.dtype == jnp.float32 and result.shape == ()
    assert float(result) == 0.5


def test_out_of_range_labels_never_count_as_correct():
    logits = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    labels = jnp.array([0, 2])  # 2 is not a class
    assert float(metrics.accuracy(logits, labels)) == 0.5
    assert float(metrics.top_k_accuracy(logits, labels, k=2)) == 0.5
    assert float(metrics.top_k_accuracy(logits, jnp.array([-1, 0]), k=2)) == 0.5


def test_top_k_accuracy_hand_computed():
    logits = jnp.array(
        [
            [0.5, 0.3, 0.2],  # label 1 is second
            [0.1, 0.2, 0.7],  # label 0 is third
            [0.4, 0.4, 0.2],  # label 1 ties with class 0, which goes first: label is second
        ]
    )
    labels = jnp.array([1, 0, 1])
    results = [float(metrics.top_k_accuracy(logits, labels, k=k)) for k in (1, 2, 3)]
    assert results == pytest.approx([0.0, 2.0 / 3.0, 1.0], abs=1e-7)


@pytest.mark.parametrize("k", [1, 3])
def test_top_k_accuracy_matches_stable_argsort(k, keys):
    logits = _tied_logits(next(keys), (2, 16, 6))
    labels = jax.random.randint(next(keys), (2, 16), 0, 6)
    # A stable sort of -logits orders classes by decreasing logit, ties by increasing index.
    order = np.argsort(-np.asarray(logits), axis=-1, kind="stable")
    expected = np.mean(np.any(order[..., :k] == np.asarray(labels)[..., None], axis=-1))
    result = jax.jit(metrics.top_k_accuracy, static_argnames="k")(logits, labels, k=k)
    assert result.shape == () and result.dtype == jnp.float32
    assert float(result) == pytest.approx(expected, abs=1e-7)
    if k == 1:
        assert float(result) == float(metrics.accuracy(logits, labels))


def test_top_k_accuracy_against_sklearn_and_where_ties_differ():
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(0)
    scores = rng.normal(size=(64, 7)).astype(np.float32)  # no ties
    labels = rng.integers(0, 7, size=64)
    for k in (1, 2, 5):
        want = top_k_accuracy_score(labels, scores, k=k, labels=np.arange(7))
        assert float(metrics.top_k_accuracy(scores, labels, k=k)) == pytest.approx(want, abs=1e-7)
    # tied with a higher class: a hit here (lower index first), a miss for scikit-learn
    tied, label = np.array([[0.5, 0.5, 0.0]], np.float32), np.array([0])
    assert float(metrics.top_k_accuracy(tied, label, k=1)) == 1.0
    assert top_k_accuracy_score(label, tied, k=1, labels=np.arange(3)) == 0.0


# ---------------------------------------------------------------------------------------------
# Errors.


def test_accuracy_label_shape_mismatch_raises():
    with pytest.raises(
        ValueError,
        match=r"`labels` must have shape \(32,\) \(= logits.shape\[:-1\]\) for integer labels, "
        r"or \(32, 10\) \(= logits.shape\) for one-hot labels, got \(32, 1\)$",
    ):
        metrics.accuracy(jnp.zeros((32, 10)), jnp.zeros((32, 1), dtype=jnp.int32))


def test_top_k_accuracy_rejects_one_hot_labels():
    with pytest.raises(
        ValueError,
        match=r"`labels` must have shape \(32,\) \(= logits.shape\[:-1\]\) for integer labels, "
        r"got \(32, 10\); top_k_accuracy takes integer labels only \(for one-hot labels pass "
        r"jnp.argmax\(labels, axis=-1\)\)",
    ):
        metrics.top_k_accuracy(jnp.zeros((32, 10)), jnp.zeros((32, 10)))


@pytest.mark.parametrize("fn", [metrics.accuracy, metrics.top_k_accuracy])
def test_float_integer_labels_raise(fn):
    with pytest.raises(
        TypeError,
        match=r"`labels` of shape logits.shape\[:-1\] must have an integer dtype "
        r"\(class indices\), got float32",
    ):
        fn(jnp.zeros((3, 6)), jnp.array([0.0, 1.0, 2.0]))


@pytest.mark.parametrize("fn", [metrics.accuracy, metrics.top_k_accuracy])
def test_scalar_logits_raise(fn):
    with pytest.raises(
        ValueError,
        match=r"`logits` must have at least 1 dimension \(the class axis, last\), got shape \(\)",
    ):
        fn(jnp.float32(1.0), jnp.int32(0))


@pytest.mark.parametrize("k", [0, -1, 2.5, True, None])
def test_top_k_accuracy_rejects_non_positive_integer_k(k):
    with pytest.raises(ValueError, match=rf"`k` must be a positive integer, got {k!r}$"):
        metrics.top_k_accuracy(LOGITS, LABELS, k=k)


def test_top_k_accuracy_rejects_k_above_num_classes():
    with pytest.raises(
        ValueError,
        match=r"`k` must be at most the number of classes \(logits.shape\[-1\] = 3\), got 4$",
    ):
        metrics.top_k_accuracy(LOGITS, LABELS, k=4)
