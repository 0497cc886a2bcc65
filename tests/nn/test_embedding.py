"""Embedding and positional encodings: lookups and gradients against NumPy, the sinusoid formula,
the padding mask ignored (they act position by position), names in a Serial, every error message,
and the layer contract."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import initializers
from fdl.nn.combinators import Serial
from fdl.nn.embedding import (
    Embedding,
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
)
from tests.nn.helpers import check_layer_contract

VOCAB = 7


def rng(key):
    """A NumPy generator seeded from a fresh JAX key: draws cost no per-shape compilation."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())


def draw(key, shape, dtype=jnp.float32):
    """Standard normal draws of ``shape`` from ``key``."""
    return jnp.asarray(rng(key).standard_normal(shape), dtype)


def token_ids(key, shape, dtype):
    """Integer ids in [0, VOCAB) (``dtype`` is the contract's float dtype, unused for ids)."""
    del dtype
    return jnp.asarray(rng(key).integers(0, VOCAB, shape), jnp.int32)


# (id, factory, per-example input shape, contract options). Kept short: each row costs ~3 s.
LAYERS = [
    (
        "embedding",
        lambda: Embedding(VOCAB, 3),
        (5,),
        {"make_input": token_ids, "differentiable_input": False},
    ),
    ("sinusoidal_odd_width", lambda: SinusoidalPositionalEncoding(max_length=5), (5, 5), {}),
    ("learned", lambda: LearnedPositionalEncoding(8), (5, 4), {}),
]


@pytest.mark.parametrize("_, factory, shape, options", LAYERS, ids=[row[0] for row in LAYERS])
def test_layer_contract(_, factory, shape, options, keys):
    check_layer_contract(factory, shape, keys, **options)


# --------------------------------------------------------------------------------------------
# Embedding.


def test_embedding_lookup_equals_numpy_indexing(keys):
    layer = Embedding(VOCAB, 4)
    params, _, out_shape = layer.init(next(keys), (6,))
    ids = jnp.asarray(rng(next(keys)).integers(0, VOCAB, (2, 3, 6)), jnp.int32)
    y, _ = layer.apply(params, {}, ids)
    table = np.asarray(params["embedding"])
    assert out_shape == (6, 4)
    assert layer.init(next(keys), (2, 6))[2] == (2, 6, 4)  # any per-example id shape
    np.testing.assert_array_equal(y, table[np.asarray(ids)])  # a lookup is exact


def test_embedding_gradient_is_scatter_add_of_cotangents(keys):
    layer = Embedding(VOCAB, 3)
    params, _, _ = layer.init(next(keys), (5,))
    ids = jnp.array([[0, 2, 2, 6, 2], [6, 1, 0, 0, 4]])  # repeats, and ids 3 and 5 never used
    cotangent = draw(next(keys), (2, 5, 3))
    grad = jax.grad(lambda p: jnp.sum(layer.apply(p, {}, ids)[0] * cotangent))(params)
    expected = np.zeros((VOCAB, 3), np.float32)
    np.add.at(expected, np.asarray(ids).ravel(), np.asarray(cotangent).reshape(-1, 3))
    # Sums of at most three float32 numbers in possibly another order: 1e-6 covers the rounding.
    np.testing.assert_allclose(grad["embedding"], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(grad["embedding"][np.array([3, 5])], 0.0)


def test_embedding_default_init_is_standard_normal(key):
    table = Embedding(400, 80).init(key, (1,))[0]["embedding"]
    n = table.size
    # Sample mean has std 1/sqrt(n), sample std has std ~1/sqrt(2n); allow 6 of each.
    assert abs(float(table.mean())) < 6 / math.sqrt(n)
    assert abs(float(table.std()) - 1.0) < 6 / math.sqrt(2 * n)


def test_embedding_custom_init_and_dtypes(key):
    layer = Embedding(3, 2, embedding_init=initializers.ones(), param_dtype=jnp.bfloat16)
    params, _, _ = layer.init(key, (2,))
    assert params["embedding"].dtype == jnp.bfloat16
    y, _ = layer.apply(params, {}, jnp.array([0, 2]))
    assert y.dtype == jnp.bfloat16
    np.testing.assert_array_equal(y.astype(jnp.float32), np.ones((2, 2)))
    y32, _ = Embedding(3, 2, dtype=jnp.float32).apply(params, {}, jnp.array([1]))
    assert y32.dtype == jnp.float32


def test_embedding_ignores_the_mask(keys):
    layer = Embedding(VOCAB, 3)
    params, _, out_shape = layer.init(next(keys), (4,))
    assert out_shape == (4, 3)
    ids = jnp.array([[1, 2, 0, 0], [3, 3, 3, 0]])
    y, _ = layer.apply(params, {}, ids, mask=ids != 0)
    np.testing.assert_array_equal(y, layer.apply(params, {}, ids)[0])  # padded ids looked up too


@pytest.mark.parametrize("bad_id, index", [(VOCAB, (1, 0)), (-1, (0, 2))])
def test_embedding_out_of_range_ids_raise_eagerly(bad_id, index, key):
    layer = Embedding(VOCAB, 3)
    params, _, _ = layer.init(key, (3,))
    ids = np.zeros((2, 3), np.int32)
    ids[index] = bad_id
    with pytest.raises(
        ValueError,
        match=rf"Embedding: ids must be in \[0, 7\) \(num_embeddings=7\), "
        rf"got id {bad_id} at index \({index[0]}, {index[1]}\)",
    ):
        layer.apply(params, {}, jnp.asarray(ids))


def test_embedding_out_of_range_ids_under_jit_give_nan_rows(key):
    layer = Embedding(VOCAB, 3)
    params, _, _ = layer.init(key, (4,))
    ids = jnp.array([0, VOCAB, -1, 6])
    y, _ = jax.jit(layer.apply)(params, {}, ids)
    table = np.asarray(params["embedding"])
    assert np.isnan(np.asarray(y[1:3])).all()
    np.testing.assert_array_equal(y[np.array([0, 3])], table[[0, 6]])
    # The bad rows receive no gradient (and the good ones theirs).
    loss = lambda p, i: jnp.sum(layer.apply(p, {}, i)[0][np.array([0, 3])])
    grad = jax.jit(jax.grad(loss))(params, ids)["embedding"]
    expected = np.zeros((VOCAB, 3), np.float32)
    expected[[0, 6]] = 1.0
    np.testing.assert_array_equal(grad, expected)


def test_embedding_errors(key):
    with pytest.raises(ValueError, match=r"`num_embeddings` must be a positive integer, got 0"):
        Embedding(0, 3)
    with pytest.raises(ValueError, match=r"`features` must be a positive integer, got 2.5"):
        Embedding(3, 2.5)
    with pytest.raises(ValueError, match=r"`input_shape` must be a tuple of non-negative ints"):
        Embedding(3, 2).init(key, ((3,), (3,)))  # the old (ids, mask) shapes
    layer = Embedding(VOCAB, 3)
    params, _, _ = layer.init(key, (3,))
    with pytest.raises(ValueError, match=r"^Embedding expects integer ids, got dtype float32$"):
        layer.apply(params, {}, jnp.zeros(3))
    # In a model, the message starts with the layer's path.
    model = Serial(Embedding(VOCAB, 3, name="tokens"))
    with pytest.raises(ValueError, match=r"^layer 'tokens' \(Embedding\): Embedding expects integer ids"):
        model.apply({"tokens": params}, {}, jnp.zeros(3))


# --------------------------------------------------------------------------------------------
# Sinusoidal positional encoding.


def sinusoid_reference(length, width, base=10000.0):
    """PE[t, 2i] = sin(t / base^(2i/D)), PE[t, 2i+1] = cos(t / base^(2i/D)), element by element."""
    table = np.zeros((length, width))
    for t in range(length):
        for d in range(width):
            i = d // 2
            angle = t / base ** (2 * i / width)
            table[t, d] = math.sin(angle) if d % 2 == 0 else math.cos(angle)
    return table


@pytest.mark.parametrize("length, width, base", [(6, 8, 10000.0), (4, 5, 10000.0), (3, 4, 100.0)])
def test_sinusoidal_encoding_equals_the_formula(length, width, base):
    x = np.linspace(-1.0, 1.0, 2 * length * width).reshape(2, length, width)
    with jax.enable_x64(True):
        y, _ = SinusoidalPositionalEncoding(base=base).apply({}, {}, jnp.asarray(x, jnp.float64))
        # float64 all the way: the only difference is the last-ulp rounding of sin/cos.
        np.testing.assert_allclose(
            y - x, np.broadcast_to(sinusoid_reference(length, width, base), x.shape), atol=1e-12
        )
    y32, _ = SinusoidalPositionalEncoding(base=base).apply({}, {}, jnp.asarray(x, jnp.float32))
    assert y32.dtype == jnp.float32
    # float32: the table is rounded once to float32 and one addition rounds again (~2 ulp of 2).
    np.testing.assert_allclose(y32, x + sinusoid_reference(length, width, base), atol=5e-7)


def test_sinusoidal_encoding_ignores_the_mask_and_has_no_params(key):
    layer = SinusoidalPositionalEncoding()
    params, state, shape = layer.init(key, (3, 4))
    assert (params, state, shape) == ({}, {}, (3, 4))
    mask = jnp.array([[True, True, False], [True, False, False]])
    x = jnp.zeros((2, 3, 4))
    y, _ = layer.apply({}, {}, x, mask=mask)
    np.testing.assert_array_equal(y, layer.apply({}, {}, x)[0])


def test_sinusoidal_encoding_errors(key):
    with pytest.raises(ValueError, match=r"`max_length` must be a positive integer, got 0"):
        SinusoidalPositionalEncoding(max_length=0)
    with pytest.raises(ValueError, match=r"`base` must be a number > 1, got 1.0"):
        SinusoidalPositionalEncoding(base=1.0)
    layer = SinusoidalPositionalEncoding(max_length=4)
    where = r"SinusoidalPositionalEncoding"
    with pytest.raises(
        ValueError,
        match=where + r" expects per-example inputs of shape \(T, D\), got input_shape \(4,\)",
    ):
        layer.init(key, (4,))
    with pytest.raises(ValueError, match=where + r": sequences may have at most max_length=4 steps, got T=5"):
        layer.init(key, (5, 2))
    with pytest.raises(ValueError, match=where + r": sequences may have at most max_length=4 steps, got T=6"):
        layer.apply({}, {}, jnp.zeros((6, 2)))
    with pytest.raises(
        ValueError, match=where + r" expects inputs of shape \(\.\.\., T, D\), got shape \(3,\)"
    ):
        layer.apply({}, {}, jnp.zeros(3))
    with pytest.raises(ValueError, match=where + r" expects floating-point inputs, got dtype int32"):
        layer.apply({}, {}, jnp.zeros((3, 2), jnp.int32))


# --------------------------------------------------------------------------------------------
# Learned positional encoding.


def test_learned_encoding_adds_its_first_rows_and_gets_their_gradient(keys):
    layer = LearnedPositionalEncoding(6)
    params, _, shape = layer.init(next(keys), (4, 3))
    assert shape == (4, 3) and params["embedding"].shape == (6, 3)
    x = draw(next(keys), (2, 4, 3))
    y, _ = layer.apply(params, {}, x)
    table = np.asarray(params["embedding"])
    np.testing.assert_array_equal(y, np.asarray(x) + table[None, :4])  # one float32 addition each
    cotangent = draw(next(keys), (2, 4, 3))
    grad = jax.grad(lambda p: jnp.sum(layer.apply(p, {}, x)[0] * cotangent))(params)["embedding"]
    expected = np.zeros((6, 3), np.float32)
    expected[:4] = np.asarray(cotangent).sum(axis=0)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-6)  # a 2-term float32 sum


def test_learned_encoding_default_init_std(key):
    table = LearnedPositionalEncoding(500).init(key, (1, 64))[0]["embedding"]
    n = table.size
    # The sample std of n normal draws has std ~ sigma / sqrt(2n); allow 6 of them.
    assert abs(float(table.std()) - 0.02) < 6 * 0.02 / math.sqrt(2 * n)


def test_learned_encoding_mask_and_dtypes(key):
    layer = LearnedPositionalEncoding(4, param_dtype=jnp.bfloat16)
    params, _, shape = layer.init(key, (3, 2))
    assert shape == (3, 2) and params["embedding"].dtype == jnp.bfloat16
    mask = jnp.array([True, True, False])
    y, _ = layer.apply(params, {}, jnp.zeros((3, 2)), mask=mask)
    assert y.dtype == jnp.float32  # float32 input, bfloat16 table: promoted
    np.testing.assert_array_equal(y, layer.apply(params, {}, jnp.zeros((3, 2)))[0])  # mask ignored
    y16, _ = LearnedPositionalEncoding(4, dtype=jnp.bfloat16).apply(params, {}, jnp.zeros((3, 2)))
    assert y16.dtype == jnp.bfloat16


def test_learned_encoding_errors(key):
    with pytest.raises(ValueError, match=r"`max_length` must be a positive integer, got -1"):
        LearnedPositionalEncoding(-1)
    layer = LearnedPositionalEncoding(4)
    where = r"LearnedPositionalEncoding"
    with pytest.raises(ValueError, match=where + r": sequences may have at most max_length=4 steps, got T=5"):
        layer.init(key, (5, 2))
    params, _, _ = layer.init(key, (3, 2))
    with pytest.raises(ValueError, match=where + r": sequences may have at most max_length=4 steps, got T=7"):
        layer.apply(params, {}, jnp.zeros((7, 2)))
    with pytest.raises(
        ValueError, match=where + r" expects inputs of shape \(\.\.\., T, 2\), got shape \(3, 5\)"
    ):
        layer.apply(params, {}, jnp.zeros((3, 5)))
    with pytest.raises(
        ValueError,
        match=where + r" expects per-example inputs of shape \(T, D\), got input_shape \(1, 3, 2\)",
    ):
        layer.init(key, (1, 3, 2))


def test_embedding_then_positions_in_serial(keys):
    model = Serial(Embedding(VOCAB, 4), SinusoidalPositionalEncoding(), LearnedPositionalEncoding(5))
    params, _, shape = model.init(next(keys), (5,))
    assert shape == (5, 4)
    # Named by kind; the parameter-free sinusoids are left out.
    assert sorted(params) == ["embedding_0", "learned_positional_encoding_0"]
    ids = jnp.asarray(rng(next(keys)).integers(0, VOCAB, (2, 5)), jnp.int32)
    mask = jnp.arange(5)[None, :] < jnp.array([[3], [5]])
    y, _ = model.apply(params, None, ids, mask=mask)  # handed to every layer, ignored by each
    expected = (
        np.asarray(params["embedding_0"]["embedding"])[np.asarray(ids)]
        + sinusoid_reference(5, 4)
        + np.asarray(params["learned_positional_encoding_0"]["embedding"])
    )
    np.testing.assert_allclose(y, expected, atol=1e-6)  # two float32 additions of O(1) numbers
