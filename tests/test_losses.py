"""Losses against optax and float64 NumPy/SciPy references: values, reductions, gradients, errors.

Every loss returns per-example values by default, as optax's losses do; the first tests compare
each one elementwise with its optax twin. The NumPy references compute each loss from its
textbook definition (e.g. binary cross-entropy as ``-y log(sigmoid(z)) - (1 - y) log(1 -
sigmoid(z))`` with SciPy's ``expit``, softmax cross-entropy through SciPy's ``logsumexp``), not
from the stable forms the library uses.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads
from scipy.special import expit, logsumexp

from fdl import losses

DELTA = 0.7  # huber's delta in the tests (not the default, to see it is used)
REDUCE = {"none": lambda v: v, "sum": np.sum, "mean": np.mean}


def _np_huber(r):
    return np.where(np.abs(r) <= DELTA, 0.5 * r**2, DELTA * (np.abs(r) - 0.5 * DELTA))


def _np_bce(z, y):
    return -y * np.log(expit(z)) - (1.0 - y) * np.log(1.0 - expit(z))


def _np_log_softmax(z):
    return z - logsumexp(z, axis=-1, keepdims=True)


# (name, fdl loss with any extra kwargs bound, NumPy elementwise loss of (predictions, targets))
REGRESSION = [
    ("mse", losses.mse, lambda p, t: (p - t) ** 2),
    ("mae", losses.mae, lambda p, t: np.abs(p - t)),
    (
        "huber",
        lambda p, t, reduction="none": losses.huber(p, t, delta=DELTA, reduction=reduction),
        lambda p, t: _np_huber(p - t),
    ),
]
REGRESSION_IDS = [row[0] for row in REGRESSION]

ALL_LOSSES = [
    losses.mse,
    losses.mae,
    losses.huber,
    losses.binary_cross_entropy_with_logits,
    losses.softmax_cross_entropy,
    losses.softmax_cross_entropy_with_integer_labels,
]
ALL_IDS = [fn.__name__ for fn in ALL_LOSSES]

# Residuals for gradient checks: away from the kinks of mae (0) and huber (+-DELTA).
RESIDUALS = np.array([[0.35, -1.4, 2.1], [-0.2, 0.9, -3.0]])
LOGITS = np.array([[0.3, -1.2, 2.0, 0.7], [1.5, 1.4, -0.2, -2.3]])
SOFT_LABELS = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 0.0, 0.0]])
INT_LABELS = np.array([2, 1])


def _jit(fn, reduction):
    """``fn`` with ``reduction`` bound, jitted (one compile instead of one per primitive)."""
    return jax.jit(lambda a, b: fn(a, b, reduction=reduction))


def _value_and_grad(fn, reduction):
    """Jitted loss value and its gradient with respect to the first argument."""
    return jax.jit(jax.value_and_grad(lambda a, b: fn(a, b, reduction=reduction)))


# ---------------------------------------------------------------------------------------------
# Per-example values, as optax: same shape, same values, elementwise.


def _regression_inputs(keys, shape):
    predictions = 2.0 * jax.random.normal(next(keys), shape, dtype=jnp.float32)
    targets = jax.random.normal(next(keys), shape, dtype=jnp.float32)
    return predictions, targets


def _binary_inputs(keys, shape):
    logits = 3.0 * jax.random.normal(next(keys), shape, dtype=jnp.float32)
    labels = jax.random.uniform(next(keys), shape, dtype=jnp.float32)  # soft labels in [0, 1)
    return logits, labels


def _soft_label_inputs(keys, shape):
    logits = 3.0 * jax.random.normal(next(keys), shape, dtype=jnp.float32)
    weights = jax.random.uniform(next(keys), shape, dtype=jnp.float32)
    return logits, weights / jnp.sum(weights, axis=-1, keepdims=True)  # rows sum to 1


def _integer_label_inputs(keys, shape):
    logits = 3.0 * jax.random.normal(next(keys), shape, dtype=jnp.float32)
    return logits, jax.random.randint(next(keys), shape[:-1], 0, shape[-1])


# (id, fdl loss, its optax twin, random (first, second) arguments, expected per-example shape)
OPTAX_TWINS = [
    ("mse", losses.mse, optax.squared_error, _regression_inputs, lambda s: s),
    ("mae", losses.mae, lambda p, t: jnp.sqrt(optax.squared_error(p, t)), _regression_inputs, lambda s: s),
    ("huber", losses.huber, optax.huber_loss, _regression_inputs, lambda s: s),
    (
        "huber_delta",
        lambda p, t, **kw: losses.huber(p, t, delta=DELTA, **kw),
        lambda p, t: optax.huber_loss(p, t, delta=DELTA),
        _regression_inputs,
        lambda s: s,
    ),
    (
        "binary_cross_entropy_with_logits",
        losses.binary_cross_entropy_with_logits,
        optax.sigmoid_binary_cross_entropy,
        _binary_inputs,
        lambda s: s,
    ),
    (
        "softmax_cross_entropy",
        losses.softmax_cross_entropy,
        optax.softmax_cross_entropy,
        _soft_label_inputs,
        lambda s: s[:-1],
    ),
    (
        "softmax_cross_entropy_with_integer_labels",
        losses.softmax_cross_entropy_with_integer_labels,
        optax.softmax_cross_entropy_with_integer_labels,
        _integer_label_inputs,
        lambda s: s[:-1],
    ),
]
OPTAX_IDS = [row[0] for row in OPTAX_TWINS]


@pytest.mark.parametrize("shape", [(7, 5), (2, 3, 5), (4,)], ids=["2d", "3d", "1d"])
@pytest.mark.parametrize(("name", "fn", "twin", "inputs", "out_shape"), OPTAX_TWINS, ids=OPTAX_IDS)
def test_default_is_per_example_and_equals_optax(name, fn, twin, inputs, out_shape, shape, keys):
    first, second = inputs(keys, shape)
    loss = fn(first, second)
    with jax.numpy_dtype_promotion("standard"):  # optax is not written for strict promotion
        expected = twin(first, second)
    assert loss.shape == expected.shape == out_shape(shape)
    assert loss.dtype == expected.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(loss), np.asarray(expected), rtol=1e-6, atol=1e-6)
    # The default is reduction="none"; "mean" and "sum" reduce optax's per-example values.
    np.testing.assert_array_equal(fn(first, second, reduction="none"), loss)
    np.testing.assert_allclose(
        fn(first, second, reduction="mean"), np.mean(np.asarray(expected)), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        fn(first, second, reduction="sum"), np.sum(np.asarray(expected)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("delta", [0.1, 1.0, 2.5])
def test_huber_delta_convention_is_optax(delta, keys):
    # Quadratic 0.5 r^2 up to |r| = delta, then delta (|r| - 0.5 delta): optax.huber_loss's
    # convention (not torch's smooth_l1_loss, which divides by delta).
    predictions, targets = _regression_inputs(keys, (64,))
    with jax.numpy_dtype_promotion("standard"):
        expected = optax.huber_loss(predictions, targets, delta=delta)
    np.testing.assert_allclose(
        losses.huber(predictions, targets, delta=delta), expected, rtol=1e-6, atol=1e-7
    )


def test_integer_cross_entropy_out_of_range_differs_from_optax_only_by_flagging():
    # Documented departure: optax wraps a negative label (-1 scores the last class); fdl gives
    # NaN for every label outside [0, C). In-range labels agree.
    logits = jnp.array([[0.5, -1.0, 2.0], [0.5, -1.0, 2.0], [0.5, -1.0, 2.0]])
    labels = jnp.array([1, 3, -1])
    loss = losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(loss[0], expected[0], rtol=1e-6)
    assert np.isnan(loss[1]) and np.isnan(expected[1])
    assert np.isnan(loss[2]) and np.isfinite(expected[2])


# ---------------------------------------------------------------------------------------------
# Values and reductions.


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize(("name", "fn", "ref"), REGRESSION, ids=REGRESSION_IDS)
def test_regression_matches_numpy(name, fn, ref, reduction, keys):
    predictions = 2.0 * jax.random.normal(next(keys), (4, 5), dtype=jnp.float32)
    targets = jax.random.normal(next(keys), (4, 5), dtype=jnp.float32)
    loss = _jit(fn, reduction)(predictions, targets)
    expected = REDUCE[reduction](ref(np.float64(predictions), np.float64(targets)))
    assert loss.shape == np.shape(expected)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-6, atol=1e-6)


def test_regression_hand_picked_values():
    predictions = jnp.array([0.0, 0.5, 3.0, -2.0])
    targets = jnp.zeros(4)
    np.testing.assert_allclose(losses.mse(predictions, targets), [0.0, 0.25, 9.0, 4.0])
    np.testing.assert_allclose(losses.mae(predictions, targets), [0.0, 0.5, 3.0, 2.0])
    # delta = 1: 0.5 * 0.5**2 = 0.125 inside, 1 * (3 - 0.5) = 2.5 and 1 * (2 - 0.5) = 1.5 outside.
    np.testing.assert_allclose(losses.huber(predictions, targets), [0.0, 0.125, 2.5, 1.5])
    # At |r| = delta both pieces agree: 0.5 * 2**2 = 2 * (2 - 1) = 2.
    np.testing.assert_allclose(losses.huber(jnp.array([2.0]), jnp.zeros(1), delta=2.0), [2.0])
    np.testing.assert_allclose(losses.mse(predictions, targets, reduction="mean"), 13.25 / 4)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_binary_cross_entropy_matches_numpy(reduction, keys):
    logits = 3.0 * jax.random.normal(next(keys), (4, 5), dtype=jnp.float32)
    labels = jax.random.uniform(next(keys), (4, 5), dtype=jnp.float32)  # soft labels in [0, 1)
    loss = _jit(losses.binary_cross_entropy_with_logits, reduction)(logits, labels)
    expected = REDUCE[reduction](_np_bce(np.float64(logits), np.float64(labels)))
    assert loss.shape == np.shape(expected)
    np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_softmax_cross_entropy_matches_numpy(reduction, keys):
    logits = 3.0 * jax.random.normal(next(keys), (2, 3, 5), dtype=jnp.float32)
    weights = jax.random.uniform(next(keys), (2, 3, 5), dtype=jnp.float32)
    labels = weights / jnp.sum(weights, axis=-1, keepdims=True)  # soft labels, rows sum to 1
    loss = _jit(losses.softmax_cross_entropy, reduction)(logits, labels)
    per_example = -np.sum(np.float64(labels) * _np_log_softmax(np.float64(logits)), axis=-1)
    expected = REDUCE[reduction](per_example)
    assert loss.shape == np.shape(expected)  # (2, 3) for "none"
    np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_integer_cross_entropy_matches_numpy_and_one_hot(reduction, keys):
    logits = 3.0 * jax.random.normal(next(keys), (2, 3, 5), dtype=jnp.float32)
    labels = jax.random.randint(next(keys), (2, 3), 0, 5)
    loss = _jit(losses.softmax_cross_entropy_with_integer_labels, reduction)(logits, labels)
    log_probs = _np_log_softmax(np.float64(logits))
    per_example = -np.take_along_axis(log_probs, np.asarray(labels)[..., None], axis=-1)[..., 0]
    expected = REDUCE[reduction](per_example)
    assert loss.shape == np.shape(expected)  # (2, 3) for "none"
    np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-5, atol=1e-6)
    one_hot = np.eye(5, dtype=np.float32)[np.asarray(labels)]
    np.testing.assert_allclose(
        np.asarray(losses.softmax_cross_entropy(logits, one_hot, reduction=reduction)),
        np.asarray(loss),
        rtol=1e-6,
    )


def test_cross_entropy_hand_picked_values():
    # Uniform logits over C classes: the loss of any label is log C.
    uniform = jnp.zeros((1, 4))
    np.testing.assert_allclose(
        losses.softmax_cross_entropy_with_integer_labels(uniform, jnp.array([3])), [np.log(4.0)]
    )
    # logits (log 3, 0): probabilities (3/4, 1/4).
    logits = jnp.array([[np.log(3.0), 0.0]], dtype=jnp.float32)
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, jnp.array([[0.0, 1.0]])), [np.log(4.0)], rtol=1e-6
    )
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, jnp.array([[1.0, 0.0]])),
        [np.log(4.0 / 3.0)],
        rtol=1e-6,
    )
    # sigmoid(log 3) = 3/4.
    np.testing.assert_allclose(
        losses.binary_cross_entropy_with_logits(jnp.array([np.log(3.0)]), jnp.array([0.0])),
        [np.log(4.0)],
        rtol=1e-6,
    )


def test_integer_and_boolean_labels_are_cast_to_logits_dtype():
    logits = jnp.array([0.5, -1.5, 2.0])
    float_loss = losses.binary_cross_entropy_with_logits(logits, jnp.array([1.0, 0.0, 1.0]))
    int_loss = losses.binary_cross_entropy_with_logits(logits, jnp.array([1, 0, 1]))
    bool_loss = losses.binary_cross_entropy_with_logits(logits, jnp.array([True, False, True]))
    assert int_loss.dtype == bool_loss.dtype == jnp.float32
    np.testing.assert_allclose(int_loss, float_loss, rtol=0)
    np.testing.assert_allclose(bool_loss, float_loss, rtol=0)
    one_hot_int = jnp.array([[0, 1, 0]])
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits[None], one_hot_int),
        losses.softmax_cross_entropy_with_integer_labels(logits[None], jnp.array([1])),
        rtol=1e-7,
    )


def test_out_of_range_integer_label_gives_nan():
    logits = jnp.zeros((3, 4))
    loss = losses.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0, 4, -1]))
    assert np.isfinite(loss[0])
    assert np.isnan(loss[1]) and np.isnan(loss[2])


# ---------------------------------------------------------------------------------------------
# Gradients: finite differences (float64) and the closed forms in the docstrings.


@pytest.mark.parametrize(("name", "fn", "ref"), REGRESSION, ids=REGRESSION_IDS)
def test_regression_grad_matches_finite_differences(name, fn, ref):
    with jax.enable_x64(True):
        targets = jnp.asarray(np.full_like(RESIDUALS, 0.25))
        predictions = targets + jnp.asarray(RESIDUALS)
        check_grads(_jit(fn, "mean"), (predictions, targets), order=1)


@pytest.mark.parametrize(
    ("fn", "labels"),
    [
        (losses.binary_cross_entropy_with_logits, SOFT_LABELS),
        (losses.softmax_cross_entropy, SOFT_LABELS),
        (losses.softmax_cross_entropy_with_integer_labels, INT_LABELS),
    ],
    ids=["binary", "softmax", "integer"],
)
def test_cross_entropy_grad_matches_finite_differences(fn, labels):
    with jax.enable_x64(True):
        labels = jnp.asarray(labels)
        check_grads(jax.jit(lambda z: fn(z, labels)), (jnp.asarray(LOGITS),), order=1)


@pytest.mark.parametrize(
    ("fn", "labels", "reduction", "closed_form"),
    [
        # Binary: d/dz = sigmoid(z) - y per entry.
        (
            losses.binary_cross_entropy_with_logits,
            SOFT_LABELS,
            "sum",
            lambda s: expit(LOGITS) - SOFT_LABELS,
        ),
        # Softmax with rows of y summing to 1: d/dz = softmax(z) - y.
        (losses.softmax_cross_entropy, SOFT_LABELS, "sum", lambda s: s - SOFT_LABELS),
        # Integer labels: d/dz = softmax(z) - one_hot(y); "mean" divides by the 2 examples.
        (
            losses.softmax_cross_entropy_with_integer_labels,
            INT_LABELS,
            "mean",
            lambda s: (s - np.eye(4)[INT_LABELS]) / 2,
        ),
    ],
    ids=["binary", "softmax", "integer"],
)
def test_cross_entropy_grad_matches_closed_form(fn, labels, reduction, closed_form):
    softmax = np.exp(_np_log_softmax(LOGITS))
    _, grad = _value_and_grad(fn, reduction)(jnp.asarray(LOGITS, jnp.float32), jnp.asarray(labels))
    np.testing.assert_allclose(grad, closed_form(softmax), rtol=1e-5, atol=1e-7)


def test_binary_cross_entropy_grad_at_zero_logit():
    # max(z, 0) and |z| in the stable form both have a kink at z = 0, where a zero-initialised
    # output layer starts; the gradient there must still be sigmoid(0) - y = 0.5 - y.
    _, grad = _value_and_grad(losses.binary_cross_entropy_with_logits, "sum")(
        jnp.zeros(2), jnp.array([1.0, 0.25])
    )
    np.testing.assert_allclose(grad, [0.5 - 1.0, 0.5 - 0.25], rtol=1e-7)


# ---------------------------------------------------------------------------------------------
# Stability at +-1e4.


@pytest.mark.parametrize(
    ("fn", "labels"),
    [
        (losses.softmax_cross_entropy_with_integer_labels, [0, 1]),
        (losses.softmax_cross_entropy, [[1.0, 0.0], [0.0, 1.0]]),
    ],
    ids=["integer", "one_hot"],
)
def test_softmax_cross_entropy_exact_at_extreme_logits(fn, labels):
    logits = jnp.array([[1e4, -1e4], [1e4, -1e4]], dtype=jnp.float32)
    labels = jnp.asarray(labels)  # first row: right label, second row: wrong label
    loss = _jit(fn, "none")(logits, labels)
    np.testing.assert_array_equal(loss, [0.0, 2e4])
    _, grad = _value_and_grad(fn, "sum")(logits, labels)
    # softmax(z) - y: (1, 0) - (1, 0) and (1, 0) - (0, 1).
    np.testing.assert_array_equal(grad, [[0.0, 0.0], [1.0, -1.0]])


def test_binary_cross_entropy_exact_at_extreme_logits():
    logits = jnp.array([1e4, -1e4, 1e4, -1e4], dtype=jnp.float32)
    labels = jnp.array([1.0, 0.0, 0.0, 1.0])  # right, right, wrong, wrong
    loss = _jit(losses.binary_cross_entropy_with_logits, "none")(logits, labels)
    np.testing.assert_array_equal(loss, [0.0, 0.0, 1e4, 1e4])
    _, grad = _value_and_grad(losses.binary_cross_entropy_with_logits, "sum")(logits, labels)
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0, -1.0])  # sigmoid(z) - y


@pytest.mark.parametrize(("name", "fn", "ref"), REGRESSION, ids=REGRESSION_IDS)
def test_regression_finite_at_extremes(name, fn, ref):
    predictions = jnp.array([1e4, -1e4], dtype=jnp.float32)
    targets = jnp.array([-1e4, 1e4], dtype=jnp.float32)
    loss, grad = _value_and_grad(fn, "sum")(predictions, targets)
    assert np.all(np.isfinite(grad))
    expected = np.sum(ref(np.float64(predictions), np.float64(targets)))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Dtypes.


def _arguments(fn, dtype):
    """Small valid (first, second) arguments of ``fn`` in ``dtype``."""
    if fn is losses.softmax_cross_entropy_with_integer_labels:
        return jnp.asarray(LOGITS, dtype), jnp.asarray(INT_LABELS)
    return jnp.asarray(LOGITS, dtype), jnp.asarray(np.abs(SOFT_LABELS), dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("fn", ALL_LOSSES, ids=ALL_IDS)
def test_loss_keeps_dtype(fn, dtype):
    first, second = _arguments(fn, dtype)
    per_example = jax.jit(fn)(first, second)
    assert per_example.dtype == dtype
    softmax = (losses.softmax_cross_entropy, losses.softmax_cross_entropy_with_integer_labels)
    assert per_example.shape == (first.shape[:-1] if fn in softmax else first.shape)
    loss, grad = jax.jit(jax.value_and_grad(lambda a, b: fn(a, b, reduction="mean")))(first, second)
    assert loss.dtype == grad.dtype == dtype
    assert loss.shape == ()


# ---------------------------------------------------------------------------------------------
# Errors.


@pytest.mark.parametrize("fn", ALL_LOSSES, ids=ALL_IDS)
def test_invalid_reduction_raises(fn):
    first, second = _arguments(fn, jnp.float32)
    with pytest.raises(ValueError, match=r"^`reduction` must be one of 'mean', 'sum', 'none', got 'avg'$"):
        fn(first, second, reduction="avg")


@pytest.mark.parametrize(
    ("value", "shown"),
    [("Mean", "'Mean'"), ("elementwise", "'elementwise'"), (None, "None"), (0, "0")],
    ids=["case", "unknown", "none_object", "int"],
)
@pytest.mark.parametrize("fn", ALL_LOSSES, ids=ALL_IDS)
def test_invalid_reduction_message_names_argument_and_value(fn, value, shown):
    first, second = _arguments(fn, jnp.float32)
    with pytest.raises(ValueError, match=rf"^`reduction` must be one of 'mean', 'sum', 'none', got {shown}$"):
        fn(first, second, reduction=value)


@pytest.mark.parametrize("fn", ALL_LOSSES, ids=ALL_IDS)
def test_reduction_is_keyword_only(fn):
    # optax's third positional argument is `axis` (cross-entropies) or nothing (`delta` is
    # keyword-only there); a positional reduction here would read differently, so it is refused.
    first, second = _arguments(fn, jnp.float32)
    positional = (1.0, "mean") if fn is losses.huber else ("mean",)  # huber's third is delta
    with pytest.raises(TypeError, match=r"positional argument"):
        fn(first, second, *positional)


@pytest.mark.parametrize("fn", [losses.mse, losses.mae, losses.huber], ids=["mse", "mae", "huber"])
def test_regression_shape_mismatch_raises(fn):
    with pytest.raises(
        ValueError,
        match=r"`predictions` and `targets` must have the same shape, got "
        r"predictions.shape=\(8,\) and targets.shape=\(8, 1\)$",
    ):
        fn(jnp.zeros(8), jnp.zeros((8, 1)))


def test_binary_cross_entropy_shape_mismatch_raises():
    with pytest.raises(
        ValueError,
        match=r"`logits` and `labels` must have the same shape, got "
        r"logits.shape=\(4, 1\) and labels.shape=\(4,\)$",
    ):
        losses.binary_cross_entropy_with_logits(jnp.zeros((4, 1)), jnp.zeros(4))


def test_softmax_cross_entropy_shape_mismatch_points_to_integer_version():
    with pytest.raises(
        ValueError,
        match=r"`logits` and `labels` must have the same shape, got logits.shape=\(32, 10\) and "
        r"labels.shape=\(32,\); for integer class labels of shape logits.shape\[:-1\] use "
        r"softmax_cross_entropy_with_integer_labels",
    ):
        losses.softmax_cross_entropy(jnp.zeros((32, 10)), jnp.zeros(32, dtype=jnp.int32))


def test_integer_cross_entropy_shape_mismatch_points_to_one_hot_version():
    with pytest.raises(
        ValueError,
        match=r"`labels` must have shape \(32,\) \(= logits.shape\[:-1\]\) for integer labels, "
        r"got \(32, 10\); for one-hot labels use softmax_cross_entropy$",
    ):
        losses.softmax_cross_entropy_with_integer_labels(jnp.zeros((32, 10)), jnp.zeros((32, 10)))


def test_integer_cross_entropy_rejects_float_labels():
    with pytest.raises(
        TypeError,
        match=r"`labels` must have an integer dtype \(class indices\), got float32; for one-hot "
        r"or soft labels use softmax_cross_entropy",
    ):
        losses.softmax_cross_entropy_with_integer_labels(jnp.zeros((3, 4)), jnp.array([0.0, 1, 2]))


@pytest.mark.parametrize(
    "fn",
    [losses.softmax_cross_entropy, losses.softmax_cross_entropy_with_integer_labels],
    ids=["softmax", "integer"],
)
def test_cross_entropy_rejects_scalar_logits(fn):
    with pytest.raises(
        ValueError,
        match=r"`logits` must have at least 1 dimension \(the class axis, last\), got shape \(\)",
    ):
        fn(jnp.float32(1.0), jnp.int32(0))


@pytest.mark.parametrize("delta", [0.0, -1.0, True, "1", None])
def test_huber_rejects_invalid_delta(delta):
    with pytest.raises(ValueError, match=r"`delta` must be a positive number, got "):
        losses.huber(jnp.zeros(2), jnp.zeros(2), delta=delta)


def test_shape_checks_run_under_jit():
    jitted = jax.jit(losses.softmax_cross_entropy_with_integer_labels)
    with pytest.raises(ValueError, match=r"`labels` must have shape \(4,\)"):
        jitted(jnp.zeros((4, 3)), jnp.zeros((4, 1), dtype=jnp.int32))
