"""Tests for fdl.data.batches and fdl.data.num_batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.data import batches, num_batches


def _data(n):
    """x of shape (n, 2) whose row i is (i, -i), y of shape (n,) equal to i: a row's id is y."""
    ids = np.arange(n, dtype=np.int32)
    x = np.stack([ids, -ids], axis=1).astype(np.float32)  # (n, 2)
    return x, ids


# (n, batch_size): divisible, not divisible, one batch, batch of one, batch of exactly n.
CASES = [(12, 4), (10, 3), (7, 7), (5, 1), (9, 9), (1, 1), (100, 32)]


@pytest.mark.parametrize(("n", "batch_size"), CASES)
def test_keep_remainder_visits_every_example_once(key, n, batch_size):
    x, y = _data(n)
    out = list(batches(key, (x, y), batch_size, drop_remainder=False))
    assert len(out) == num_batches(n, batch_size, drop_remainder=False) == -(-n // batch_size)
    sizes = [len(yb) for _, yb in out]
    assert sizes[:-1] == [batch_size] * (len(out) - 1)
    assert sizes[-1] == n - batch_size * (len(out) - 1)
    seen = np.concatenate([yb for _, yb in out])
    np.testing.assert_array_equal(np.sort(seen), y)


@pytest.mark.parametrize(("n", "batch_size"), CASES)
def test_drop_remainder_yields_full_batches(key, n, batch_size):
    x, y = _data(n)
    out = list(batches(key, (x, y), batch_size))
    assert len(out) == num_batches(n, batch_size) == n // batch_size
    for xb, yb in out:
        assert xb.shape == (batch_size, 2) and yb.shape == (batch_size,)
    seen = np.concatenate([yb for _, yb in out])
    assert len(np.unique(seen)) == len(seen) == batch_size * (n // batch_size)


def test_order_is_the_keys_permutation(key):
    x, y = _data(10)
    expected = np.asarray(jax.random.permutation(key, 10))
    out = list(batches(key, (x, y), 4, drop_remainder=False))
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in out]), expected)


def test_rows_stay_paired(key):
    x, y = _data(50)
    z = np.arange(50 * 3 * 2, dtype=np.int16).reshape(50, 3, 2)  # (N, 3, 2), a third array
    for xb, yb, zb in batches(key, [x, y, z], 8, drop_remainder=False):
        np.testing.assert_array_equal(xb[:, 0], yb.astype(np.float32))
        np.testing.assert_array_equal(xb[:, 1], -yb.astype(np.float32))
        np.testing.assert_array_equal(zb, z[yb])


def test_same_key_same_order_other_key_other_order(keys):
    x, y = _data(100)
    key_a, key_b = next(keys), next(keys)

    def order(k):
        return np.concatenate([yb for _, yb in batches(k, (x, y), 10)])

    np.testing.assert_array_equal(order(key_a), order(key_a))
    assert not np.array_equal(order(key_a), order(key_b))
    assert not np.array_equal(order(key_a), y)  # shuffled, not the identity


def test_raw_uint32_keys_work():
    x, y = _data(6)
    out = list(batches(jax.random.PRNGKey(3), (x, y), 3))
    assert [len(yb) for _, yb in out] == [3, 3]


def test_numpy_in_numpy_out(key):
    x, y = _data(9)
    for xb, yb in batches(key, (x, y), 4, drop_remainder=False):
        assert type(xb) is np.ndarray and type(yb) is np.ndarray
        assert xb.dtype == np.float32 and yb.dtype == np.int32


def test_jax_in_jax_out_and_mixed(key):
    x, y = _data(9)
    x_jax = jnp.asarray(x)
    for xb, yb in batches(key, (x_jax, y), 4, drop_remainder=False):
        assert isinstance(xb, jax.Array) and type(yb) is np.ndarray
        assert xb.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(xb), x[yb])


def test_empty_data_without_drop_yields_nothing(key):
    x, y = _data(0)
    assert list(batches(key, (x, y), 4, drop_remainder=False)) == []
    assert num_batches(0, 4, drop_remainder=False) == 0


def test_num_batches_table():
    assert [num_batches(n, 4) for n in range(10)] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert [num_batches(n, 4, False) for n in range(10)] == [0, 1, 1, 1, 1, 2, 2, 2, 2, 3]


def test_error_empty_arrays(key):
    with pytest.raises(ValueError, match=r"`arrays` must hold at least one array, got an empty"):
        batches(key, (), 4)


def test_error_bare_array(key):
    x, _ = _data(8)
    with pytest.raises(TypeError, match=r"`arrays` must be a tuple or list of arrays, got ndarray"):
        batches(key, x, 4)


def test_error_scalar_array(key):
    x, _ = _data(8)
    with pytest.raises(ValueError, match=r"`arrays\[1\]` must have a leading \(example\) axis"):
        batches(key, (x, np.float32(1.0)), 4)


def test_error_mismatched_lengths(key):
    x, _ = _data(8)
    _, y = _data(7)
    with pytest.raises(
        ValueError,
        match=r"`arrays` must share their leading length \(examples\), got: arrays\[0\] has 8, "
        r"arrays\[1\] has 7, arrays\[2\] has 8",
    ):
        batches(key, (x, y, x), 4)


@pytest.mark.parametrize("bad", [0, -3, 2.0, True, None])
def test_error_bad_batch_size(key, bad):
    x, y = _data(8)
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer, got "):
        batches(key, (x, y), bad)
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer, got "):
        num_batches(8, bad)


def test_error_batch_larger_than_data(key):
    x, y = _data(5)
    with pytest.raises(
        ValueError,
        match=r"`batch_size` must be at most the number of examples \(5\) when "
        r"`drop_remainder=True`, got 6; the epoch would yield no batch",
    ):
        batches(key, (x, y), 6)
    assert len(list(batches(key, (x, y), 6, drop_remainder=False))) == 1


def test_errors_are_raised_at_call_time_not_first_next(key):
    # A generator function would defer the check until iteration; batches checks eagerly.
    with pytest.raises(ValueError, match=r"`batch_size`"):
        batches(key, _data(5), 0)


def test_error_bad_drop_remainder(key):
    with pytest.raises(TypeError, match=r"`drop_remainder` must be a bool, got 'yes'"):
        batches(key, _data(5), 2, drop_remainder="yes")


def test_error_missing_key():
    with pytest.raises(TypeError, match=r"`key` must be a JAX PRNG key .*got None"):
        batches(None, _data(5), 2)


@pytest.mark.parametrize("bad", [-1, 2.5, None])
def test_num_batches_bad_n(bad):
    with pytest.raises(ValueError, match=r"`n` must be a non-negative integer, got "):
        num_batches(bad, 2)
