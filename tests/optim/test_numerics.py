"""safe_norm and safe_root_mean_squares: values by hand, equality with optax, and a gradient that
is finite (zero) where the floor is taken."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

from fdl.optim.numerics import safe_norm, safe_root_mean_squares
from tests.optim.helpers import optax_promotion
from tests.optim.test_atoms import close

X = np.asarray([[3.0, 0.0, 1.0], [4.0, 0.0, -2.0]], np.float32)  # column norms 5, 0, sqrt 5


def test_safe_norm_by_hand():
    x = jnp.asarray(X)
    close(safe_norm(x, 0.0), [np.sqrt(9 + 16 + 1 + 4)])  # Frobenius norm of all of x
    close(safe_norm(x, 100.0), [100.0])
    close(safe_norm(x, 1.0, axis=0), [5.0, 1.0, np.sqrt(5.0)])  # the zero column floored
    close(safe_norm(x, 3.0, axis=0), [5.0, 3.0, 3.0])
    kept = safe_norm(x, 1.0, axis=0, keepdims=True)
    assert kept.shape == (1, 3)
    close(kept[0], [5.0, 1.0, np.sqrt(5.0)])
    close(safe_norm(x, 0.5, ord=1, axis=1), [4.0, 6.0])  # |3| + |0| + |1|, |4| + |0| + |-2|
    close(safe_norm(x, 0.5, ord=jnp.inf, axis=1), [3.0, 4.0])
    close(safe_norm(x, 0.0, ord="fro", axis=(0, 1)), [np.sqrt(30.0)])
    assert safe_norm(x, 0.0).shape == ()


def test_safe_root_mean_squares_by_hand():
    close(safe_root_mean_squares(jnp.asarray(X), 0.0), [np.sqrt(30.0 / 6)])
    close(safe_root_mean_squares(jnp.asarray(X), 10.0), [10.0])
    close(safe_root_mean_squares(jnp.zeros(4), 0.25), [0.25])


CASES = [
    (X, 0.0, None, None, False),
    (X, 2.5, None, 0, False),
    (X, 2.5, None, 0, True),
    (X, 1.0, 1, 1, False),
    (X, 3.5, jnp.inf, 1, True),
    (X, 0.1, "fro", (0, 1), False),
    (X, 0.1, "nuc", None, False),
    (np.zeros((2, 3), np.float32), 0.0, None, 1, False),
    (np.asarray([3 + 4j, 1j, 0], np.complex64), 0.5, None, None, False),
]


@pytest.mark.parametrize("x, floor, ord, axis, keepdims", CASES)
def test_safe_norm_value_and_gradient_equal_optax(x, floor, ord, axis, keepdims):
    x = jnp.asarray(x)

    def ours(y):
        return jnp.sum(safe_norm(y, floor, ord=ord, axis=axis, keepdims=keepdims))

    def theirs(y):
        with optax_promotion():
            return jnp.sum(optax.safe_norm(y, floor, ord=ord, axis=axis, keepdims=keepdims))

    with optax_promotion():
        expected = optax.safe_norm(x, floor, ord=ord, axis=axis, keepdims=keepdims)
    value = safe_norm(x, floor, ord=ord, axis=axis, keepdims=keepdims)
    assert value.dtype == expected.dtype and value.shape == expected.shape
    np.testing.assert_array_equal(np.asarray(value), np.asarray(expected))
    if not jnp.iscomplexobj(x) and ord != "nuc":  # the nuclear norm's gradient needs an SVD's
        np.testing.assert_array_equal(np.asarray(jax.grad(ours)(x)), np.asarray(jax.grad(theirs)(x)))


def test_a_floor_per_norm():
    floors = jnp.asarray([6.0, 0.5, 1.0], jnp.float32)
    value = safe_norm(jnp.asarray(X), floors, axis=0)
    close(value, [6.0, 0.5, np.sqrt(5.0)])
    with optax_promotion(), jax.numpy_rank_promotion("allow"):  # optax broadcasts (1, 3) with (3,)
        expected = optax.safe_norm(jnp.asarray(X), floors, axis=0)
    np.testing.assert_array_equal(np.asarray(value), np.asarray(expected))
    grad = jax.grad(lambda y: jnp.sum(safe_norm(y, floors, axis=0)))(jnp.asarray(X))
    close(grad[:, 2], X[:, 2] / np.sqrt(5.0))
    close(grad[:, 0], [0.0, 0.0]), close(grad[:, 1], [0.0, 0.0])
    kept = safe_norm(jnp.asarray(X), floors[None, :], axis=0, keepdims=True)
    close(kept[0], [6.0, 0.5, np.sqrt(5.0)])


def test_safe_root_mean_squares_equals_optax():
    for x, floor in [
        (X, 0.0),
        (X, 5.0),
        (np.zeros(3, np.float32), 0.0),
        (np.asarray([3 + 4j, 0j], np.complex64), 1.0),
    ]:
        with optax_promotion():
            expected = optax.safe_root_mean_squares(jnp.asarray(x), floor)
        value = safe_root_mean_squares(jnp.asarray(x), floor)
        assert value.dtype == expected.dtype
        np.testing.assert_array_equal(np.asarray(value), np.asarray(expected))
    grad = jax.grad(lambda y: safe_root_mean_squares(y, 0.5))(jnp.asarray(X))
    with optax_promotion():
        optax_grad = jax.grad(lambda y: optax.safe_root_mean_squares(y, 0.5))(jnp.asarray(X))
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(optax_grad))


def test_gradients_are_finite_zeros_where_the_floor_is_taken():
    zeros = jnp.zeros(3, jnp.float32)
    plain = jax.grad(lambda y: jnp.maximum(jnp.linalg.norm(y), 0.0))(zeros)
    assert np.isnan(np.asarray(plain)).all()  # what the safe versions avoid
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda y: safe_norm(y, 0.0))(zeros)), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(
        np.asarray(jax.grad(lambda y: safe_root_mean_squares(y, 0.0))(zeros)), [0.0, 0.0, 0.0]
    )
    per_column = jax.grad(lambda y: jnp.sum(safe_norm(y, 0.0, axis=0)))(jnp.asarray(X))
    assert np.isfinite(np.asarray(per_column)).all()
    close(per_column[:, 0], [0.6, 0.8])  # x / |x| in the column of norm 5
    close(per_column[:, 1], [0.0, 0.0])  # the zero column: floored, derivative 0


def test_gradients_above_the_floor_match_finite_differences():
    x = jnp.asarray([[0.5, -1.0], [2.0, 0.25]], jnp.float32)  # every norm above the floor
    check_grads(lambda y: safe_norm(y, 0.1, axis=0), (x,), order=1, modes=["rev"])
    check_grads(lambda y: safe_root_mean_squares(y, 0.1), (x,), order=1, modes=["rev"])


def test_dtypes_under_strict_promotion():
    x = jnp.asarray(X, jnp.bfloat16)
    floor32 = jnp.asarray(1.0, jnp.float32)  # not weak: would not mix with bfloat16 uncast
    assert safe_norm(x, floor32, axis=0).dtype == jnp.bfloat16
    assert safe_root_mean_squares(x, floor32).dtype == jnp.bfloat16
    close(safe_norm(x, floor32, axis=0), [5.0, 1.0, np.sqrt(5.0)], rtol=1e-2)
    assert safe_norm(jnp.asarray([3 + 4j], jnp.complex64), 0.0).dtype == jnp.float32
    assert safe_norm(jnp.asarray([3, 4], jnp.int32), 0.0).dtype == jnp.float32  # integers as floats


def test_a_traced_floor_is_accepted():
    value = jax.jit(lambda m: safe_norm(jnp.zeros(2), m))(jnp.asarray(0.75))
    close(value, [0.75])
    close(jax.jit(lambda m: safe_root_mean_squares(jnp.zeros(2), m))(jnp.asarray(0.5)), [0.5])


def test_errors_name_the_function_the_argument_and_the_value():
    with pytest.raises(TypeError, match=r"^safe_norm: `min_norm` must be a real number, got '0.5' \(str\)$"):
        safe_norm(jnp.ones(2), "0.5")
    with pytest.raises(TypeError, match=r"^safe_norm: `min_norm` must be a real number, got True \(bool\)$"):
        safe_norm(jnp.ones(2), True)
    with pytest.raises(
        TypeError,
        match=r"^safe_root_mean_squares: `min_rms` must be a real number, got \(1\+0j\) \(complex\)$",
    ):
        safe_root_mean_squares(jnp.ones(2), 1 + 0j)
    with pytest.raises(
        TypeError, match=r"^safe_root_mean_squares: `min_rms` must be a real number, got None"
    ):
        safe_root_mean_squares(jnp.ones(2), None)
