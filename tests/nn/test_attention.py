"""Attention against NumPy references with explicit per-head loops; causal and padding properties;
fully masked rows; dropout keys; every error message; the layer contract."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from fdl.nn.attention import (
    MultiHeadAttention,
    TransformerEncoderBlock,
    attention_weights,
    scaled_dot_product_attention,
)
from fdl.nn.combinators import Serial
from fdl.nn.embedding import Embedding, SinusoidalPositionalEncoding
from fdl.nn.layer import Layer

# float64 against float64 NumPy: the same arithmetic up to summation order, so 1e-12 on O(1)
# values (float64 has 2e-16 relative precision; sums here have tens of terms).
TOL64 = 1e-12


# --------------------------------------------------------------------------------------------
# NumPy references, written element by element.


def allowed_pairs(t_q, t_k, batch, key_mask=None, causal=False):
    """``allowed[b, i, j]``: may query ``i`` of example ``b`` attend to key ``j``."""
    allowed = np.ones((batch, t_q, t_k), bool)
    for b in range(batch):
        for i in range(t_q):
            for j in range(t_k):
                if key_mask is not None and not key_mask[b, j]:
                    allowed[b, i, j] = False
                if causal and j > i:
                    allowed[b, i, j] = False
    return allowed


def np_attention(q, k, v, allowed):
    """q (B, T_q, H, d), k (B, T_k, H, d), v (B, T_k, H, e), allowed (B, T_q, T_k)."""
    batch, t_q, heads, d = q.shape
    t_k = k.shape[1]
    out = np.zeros((batch, t_q, heads, v.shape[-1]))
    for b in range(batch):
        for h in range(heads):
            for i in range(t_q):
                keys = [j for j in range(t_k) if allowed[b, i, j]]
                if not keys:
                    continue  # a fully masked query outputs zeros
                scores = np.array([q[b, i, h] @ k[b, j, h] / math.sqrt(d) for j in keys])
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                for w, j in zip(weights, keys, strict=True):
                    out[b, i, h] += w * v[b, j, h]
    return out


def np_dense(p, x):
    y = x @ np.asarray(p["w"])
    return y + np.asarray(p["b"]) if "b" in p else y


def np_mha(params, x, heads, key_mask=None, causal=False):
    """x (B, T, D); the projections' columns split into ``heads`` blocks."""
    batch, length, _ = x.shape
    q, k, v = (np_dense(params[n], x) for n in ("query", "key", "value"))
    d = q.shape[-1] // heads
    split = lambda a: a.reshape(batch, length, heads, d)
    allowed = allowed_pairs(length, length, batch, key_mask, causal)
    context = np_attention(split(q), split(k), split(v), allowed)
    return np_dense(params["out"], context.reshape(batch, length, heads * d))


def np_layer_norm(p, x, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def np_block(params, x, heads, eps, key_mask=None, causal=False):
    h = x + np_mha(
        params["attention"],
        np_layer_norm(params["attention_norm"], x, eps),
        heads,
        key_mask,
        causal,
    )
    z = np_dense(params["mlp_hidden"], np_layer_norm(params["mlp_norm"], h, eps))
    z = 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))
    return h + np_dense(params["mlp_out"], z)


def rng(key):
    """A NumPy generator seeded from a fresh JAX key: draws cost no per-shape compilation."""
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())


def draw(key, shape, dtype=jnp.float32):
    """Standard normal draws of ``shape`` from ``key``."""
    return jnp.asarray(rng(key).standard_normal(shape), dtype)


def to64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def random_bias(key, shape, dtype=jnp.float32):
    """Non-zero biases, so the references also check that every bias is added."""
    return 0.3 * jax.random.normal(key, shape, dtype)


# --------------------------------------------------------------------------------------------
# The layer contract. MHA and the block also run with a mask, through a wrapper that fixes it.


def with_fixed_mask(layer, pattern):
    """Feed ``(x, mask)`` to ``layer``, mask = ``pattern`` on every example; return ``y``."""
    pattern = np.asarray(pattern)

    def init(key, input_shape):
        params, state, (out_shape, _) = layer.init(key, (input_shape, input_shape[:-1]))
        return params, state, out_shape

    def apply(params, state, x, *, key=None, train=False):
        mask = jnp.broadcast_to(jnp.asarray(pattern), x.shape[:-1])
        (y, _), state = layer.apply(params, state, (x, mask), key=key, train=train)
        return y, state

    return Layer(init, apply, f"masked {layer.name}")


# First key padded: with causal=True query 0 then has no key at all (a fully masked row).
PATTERN = [False, True, True, True, False]
# (id, factory, per-example input shape). Kept to one row per layer: each row costs seconds.
# The other tests reuse these configurations and the contract's batch shapes ((7,) in float32,
# (3,) in float64), so JAX's compiled-op cache is shared with them.
LAYERS = [
    (
        "mha_masked_causal",
        lambda: with_fixed_mask(MultiHeadAttention(2, causal=True, b_init=random_bias), PATTERN),
        (5, 4),
    ),
    (
        "encoder_block_masked_causal",
        lambda: with_fixed_mask(
            TransformerEncoderBlock(2, 16, causal=True, b_init=random_bias), PATTERN
        ),
        (5, 8),
    ),
]


@pytest.mark.parametrize("_, factory, shape", LAYERS, ids=[row[0] for row in LAYERS])
def test_layer_contract(_, factory, shape, layer_contract, keys):
    layer_contract(factory, shape, keys)


# --------------------------------------------------------------------------------------------
# scaled_dot_product_attention.


@pytest.mark.parametrize(
    "t_q, t_k, mask_kind, causal",
    [
        (4, 4, "none", False),
        (4, 4, "keys", True),
        (4, 4, "per_query", True),
        (3, 5, "none", True),
        (3, 5, "keys", False),
        (3, 5, "per_query", False),
    ],
)
def test_attention_equals_numpy_reference(t_q, t_k, mask_kind, causal, keys):
    batch, heads, d, e = 3, 2, 4, 3
    with jax.enable_x64(True):
        q = draw(next(keys), (batch, t_q, heads, d), jnp.float64)
        k = draw(next(keys), (batch, t_k, heads, d), jnp.float64)
        v = draw(next(keys), (batch, t_k, heads, e), jnp.float64)
        mask, key_mask = None, None
        allowed = allowed_pairs(t_q, t_k, batch, causal=causal)
        if mask_kind == "keys":
            key_mask = np.arange(t_k)[None, :] < np.array([[t_k], [2], [1]])  # lengths t_k, 2, 1
            mask = jnp.asarray(key_mask)
            allowed = allowed_pairs(t_q, t_k, batch, key_mask, causal)
        elif mask_kind == "per_query":
            mask = jnp.asarray(rng(next(keys)).random((batch, t_q, t_k)) < 0.6)
            allowed = allowed & np.asarray(mask)
        # Jitted: one compilation per case instead of one per op (the MHA contract checks
        # that eager and jit agree).
        sdpa = jax.jit(scaled_dot_product_attention, static_argnames="causal")
        y = sdpa(q, k, v, mask=mask, causal=causal)
        assert y.shape == (batch, t_q, heads, e) and y.dtype == jnp.float64
        np.testing.assert_allclose(
            y, np_attention(*map(np.asarray, (q, k, v)), allowed), atol=TOL64
        )
        w = jax.jit(attention_weights, static_argnames="causal")(q, k, mask=mask, causal=causal)
        assert w.shape == (batch, heads, t_q, t_k)
        np.testing.assert_array_equal(
            np.asarray(w)[np.broadcast_to(~allowed[:, None], w.shape)], 0.0
        )
        row_sums = np.asarray(w.sum(-1))  # 1 where a key is allowed, else 0
        np.testing.assert_allclose(
            row_sums, np.broadcast_to(allowed.any(-1)[:, None], row_sums.shape), atol=TOL64
        )


def test_attention_by_hand():
    # One head, d_k = 1: logits q k / 1 = [0, log 3] for the second query -> weights [1/4, 3/4].
    q = jnp.array([[[0.0]], [[1.0]]])  # (T_q=2, H=1, d=1)
    k = jnp.array([[[0.0]], [[math.log(3.0)]]])  # (T_k=2, H=1, d=1)
    v = jnp.array([[[4.0]], [[8.0]]])
    y = scaled_dot_product_attention(q, k, v)
    np.testing.assert_allclose(y.ravel(), [6.0, 7.0], rtol=1e-6)  # [(4+8)/2, 4/4 + 8*3/4]
    y = scaled_dot_product_attention(q, k, v, causal=True)
    np.testing.assert_allclose(y.ravel(), [4.0, 7.0], rtol=1e-6)


def test_fully_masked_rows_give_zeros_and_finite_gradients(keys):
    q = draw(next(keys), (2, 3, 2, 4))
    k = draw(next(keys), (2, 3, 2, 4))
    v = draw(next(keys), (2, 3, 2, 4))
    mask = jnp.array([[False, True, True], [False, False, False]])  # example 1: nothing to attend
    sdpa = jax.jit(functools.partial(scaled_dot_product_attention, mask=mask, causal=True))
    y = sdpa(q, k, v)
    np.testing.assert_array_equal(y[1], 0.0)
    np.testing.assert_array_equal(y[0, 0], 0.0)  # causal query 0 may only see the padded key 0
    assert np.isfinite(np.asarray(y)).all() and np.any(np.asarray(y[0, 1:]) != 0)
    grads = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(sdpa(*a))), argnums=(0, 1, 2)))(q, k, v)
    for g in grads:
        assert np.isfinite(np.asarray(g)).all()
        np.testing.assert_array_equal(g[1], 0.0)


def test_attention_with_large_logits_is_finite(keys):
    q = 1e3 * draw(next(keys), (4, 1, 8))
    k = 1e3 * draw(next(keys), (4, 1, 8))
    v = draw(next(keys), (4, 1, 8))
    y = jax.jit(functools.partial(scaled_dot_product_attention, causal=True))(q, k, v)
    assert np.isfinite(np.asarray(y)).all()


def test_attention_leading_axes_and_bfloat16(keys):
    q = draw(next(keys), (2, 3, 4, 2, 5))
    k = draw(next(keys), (2, 3, 6, 2, 5))
    v = draw(next(keys), (2, 3, 6, 2, 3))
    sdpa = jax.jit(scaled_dot_product_attention)
    y = sdpa(q, k, v)
    single = sdpa(q[1, 2], k[1, 2], v[1, 2])
    np.testing.assert_allclose(y[1, 2], single, rtol=1e-6, atol=1e-6)  # same float32 ops
    y16 = sdpa(*(a.astype(jnp.bfloat16) for a in (q, k, v)))
    assert y16.dtype == jnp.bfloat16
    # bfloat16 inputs and output (8 bits of mantissa, one rounding ~2**-8 = 0.004 of an O(1)
    # value): the inputs' rounding propagates through q k^T, the softmax and the weighted sum of
    # up to T values, measured at most 0.015 over 20 seeds; 3e-2 is twice that, and a float32
    # result that ignored the bfloat16 inputs' rounding would still be caught by the dtype check.
    np.testing.assert_allclose(y16.astype(jnp.float32), y, atol=3e-2)


def test_attention_errors():
    q, k, v = jnp.zeros((4, 2, 3)), jnp.zeros((5, 2, 3)), jnp.zeros((5, 2, 1))
    with pytest.raises(
        ValueError,
        match=r"expects q \(\*batch, T_q, H, d_k\), k .* got q \(4, 3\), k \(5, 2, 3\), v "
        r"\(5, 2, 1\)",
    ):
        scaled_dot_product_attention(jnp.zeros((4, 3)), k, v)
    with pytest.raises(
        ValueError,
        match=r"must share the batch axes and the head count H.* got q \(4, 2, 3\), k \(5, 3, "
        r"3\), v \(5, 2, 1\)",
    ):
        scaled_dot_product_attention(q, jnp.zeros((5, 3, 3)), v)
    with pytest.raises(ValueError, match=r"got q \(4, 2, 3\), k \(5, 2, 3\), v \(6, 2, 1\)"):
        scaled_dot_product_attention(q, k, jnp.zeros((6, 2, 1)))
    with pytest.raises(ValueError, match=r"got q \(4, 2, 3\), k \(5, 2, 2\)$"):
        attention_weights(q, jnp.zeros((5, 2, 2)))
    with pytest.raises(
        ValueError, match=r"`mask` must be bool \(True = may attend\), got dtype float32"
    ):
        scaled_dot_product_attention(q, k, v, mask=jnp.ones(5))
    with pytest.raises(
        ValueError,
        match=r"`mask` must have shape \(5,\) \(\*batch, T_k\) or \(4, 5\) \(\*batch, T_q, "
        r"T_k\), got \(4,\)",
    ):
        scaled_dot_product_attention(q, k, v, mask=jnp.ones(4, bool))


# --------------------------------------------------------------------------------------------
# MultiHeadAttention.


@pytest.mark.parametrize(
    "heads, qkv, out, use_bias, causal, masked",
    [
        (2, None, None, True, False, False),
        (2, None, None, True, False, True),
        (4, 8, 3, True, True, False),
        (1, 6, None, False, True, True),
    ],
    ids=["plain", "masked", "causal_widths", "one_head_no_bias_causal_masked"],
)
def test_mha_equals_numpy_reference(heads, qkv, out, use_bias, causal, masked, keys):
    batch, length, width = 3, 5, 4
    layer = MultiHeadAttention(
        heads,
        qkv_features=qkv,
        out_features=out,
        causal=causal,
        use_bias=use_bias,
        b_init=random_bias,
    )
    shape = ((length, width), (length,)) if masked else (length, width)
    params, state, out_shape = layer.init(next(keys), shape)
    expected_out = (length, out or width)
    assert out_shape == ((expected_out, (length,)) if masked else expected_out)
    assert sorted(params) == ["key", "out", "query", "value"]
    assert params["query"]["w"].shape == (width, qkv or width)
    assert ("b" in params["out"]) == use_bias
    key_mask = np.arange(length)[None, :] < np.array([[5], [3], [1]])
    with jax.enable_x64(True):
        params = to64(params)
        x = draw(next(keys), (batch, length, width), jnp.float64)
        if masked:
            (y, mask_out), _ = layer.apply(params, state, (x, jnp.asarray(key_mask)))
            np.testing.assert_array_equal(mask_out, key_mask)
        else:
            y, _ = layer.apply(params, state, x)
        expected = np_mha(params, np.asarray(x), heads, key_mask if masked else None, causal)
        np.testing.assert_allclose(y, expected, atol=TOL64)


def test_mha_attention_dropout_drops_weights(keys):
    rate, heads, (batch, length, width) = 0.5, 2, (7, 5, 4)
    layer = MultiHeadAttention(heads, dropout_rate=rate, b_init=random_bias, name="mha")
    params, state, _ = layer.init(next(keys), (length, width))
    x = draw(next(keys), (batch, length, width))
    with pytest.raises(
        ValueError,
        match=r"Dropout layer 'mha/attention_dropout' needs a PRNG key in training: call "
        r"apply\(params, state, x, key=key, train=True\)",
    ):
        layer.apply(params, state, x, train=True)
    key = next(keys)
    y, _ = layer.apply(params, state, x, key=key, train=True)
    np.testing.assert_array_equal(y, layer.apply(params, state, x, key=key, train=True)[0])
    assert np.any(
        np.asarray(y) != np.asarray(layer.apply(params, state, x, key=next(keys), train=True)[0])
    )
    # Reference: the same Bernoulli draw on the weights (B, H, T, T), kept weights scaled by 2.
    keep = np.asarray(jax.random.bernoulli(key, 1.0 - rate, (batch, heads, length, length)))
    p = jax.tree.map(np.asarray, params)
    xn = np.asarray(x, np.float64)
    split = lambda a: a.reshape(batch, length, heads, width // heads)
    q, k, v = (split(np_dense(p[n], xn)) for n in ("query", "key", "value"))
    scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(width // heads)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights = weights / weights.sum(-1, keepdims=True) * keep / (1.0 - rate)
    context = np.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, length, width)
    # float32 layer vs float64 NumPy: float32 rounding of O(1) values through four matmuls.
    np.testing.assert_allclose(y, np_dense(p["out"], context), rtol=2e-5, atol=2e-5)
    # Evaluation ignores dropout (and the key).
    np.testing.assert_array_equal(
        layer.apply(params, state, x, key=key)[0],
        MultiHeadAttention(heads, b_init=random_bias).apply(params, state, x)[0],
    )


def _change_after(x, t, key):
    """``x`` with every position >= ``t`` replaced by fresh noise."""
    noise = draw(key, x.shape, x.dtype)
    future = jnp.arange(x.shape[-2])[:, None] >= t  # (T, 1)
    return jnp.where(jnp.broadcast_to(future, x.shape), noise, x)


# The contract's configurations and float32 batch shape (7, 5, D).
SEQUENCE_LAYERS = [
    ("mha", lambda causal: MultiHeadAttention(2, causal=causal, b_init=random_bias), 4),
    (
        "encoder_block",
        lambda causal: TransformerEncoderBlock(2, 16, causal=causal, b_init=random_bias),
        8,
    ),
]


@pytest.mark.parametrize("_, factory, width", SEQUENCE_LAYERS, ids=[r[0] for r in SEQUENCE_LAYERS])
def test_causal_outputs_ignore_the_future(_, factory, width, keys):
    layer = factory(True)
    params, state, _ = layer.init(next(keys), (5, width))
    x = draw(next(keys), (7, 5, width))
    y, _ = layer.apply(params, state, x)
    for t in (1, 3, 4):
        y_changed, _ = layer.apply(params, state, _change_after(x, t, next(keys)))
        # Exactly equal: masked logits are replaced before the softmax and their weights are 0.
        np.testing.assert_array_equal(y_changed[:, :t], y[:, :t])
        assert np.any(np.asarray(y_changed[:, t:]) != np.asarray(y[:, t:]))
    # The same parameters without causal masking: the future leaks into earlier outputs.
    x_changed = _change_after(x, 4, next(keys))
    y_full, _ = factory(False).apply(params, state, x)
    y_full_changed, _ = factory(False).apply(params, state, x_changed)
    assert np.any(np.asarray(y_full_changed[:, :4]) != np.asarray(y_full[:, :4]))


@pytest.mark.parametrize("_, factory, width", SEQUENCE_LAYERS, ids=[r[0] for r in SEQUENCE_LAYERS])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_padded_tokens_do_not_change_real_outputs(_, factory, width, causal, keys):
    layer = factory(causal)
    params, state, _ = layer.init(next(keys), ((5, width), (5,)))
    x = draw(next(keys), (7, 5, width))
    lengths = jnp.array([5, 4, 3, 2, 1, 1, 3])[:, None]
    if causal:  # left padding (right padding would be in every real token's future anyway)
        mask = jnp.arange(5)[None, :] >= 5 - lengths  # (7, 5)
    else:
        mask = jnp.arange(5)[None, :] < lengths  # (7, 5)
    (y, _), _ = layer.apply(params, state, (x, mask))
    noise = draw(next(keys), x.shape)
    x_changed = jnp.where(jnp.broadcast_to(mask[..., None], x.shape), x, noise)
    (y_changed, _), _ = layer.apply(params, state, (x_changed, mask))
    real = np.broadcast_to(np.asarray(mask)[..., None], y.shape)
    np.testing.assert_array_equal(np.asarray(y_changed)[real], np.asarray(y)[real])
    # Without the mask the padded tokens would matter (for every example that has padding).
    leaked = np.asarray(layer.apply(params, state, x_changed)[0]) != np.asarray(y)
    assert np.any(leaked & real)


def test_mha_errors(key):
    where = r"MultiHeadAttention layer 'mha'"
    with pytest.raises(
        ValueError,
        match=where
        + r": num_heads=3 must divide qkv_features=8 \(each head gets qkv_features / "
        r"num_heads features\)",
    ):
        MultiHeadAttention(3, qkv_features=8, name="mha")
    layer = MultiHeadAttention(3, name="mha")  # fine until the width is known
    with pytest.raises(
        ValueError,
        match=where
        + r": num_heads=3 must divide the input width D=8 \(qkv_features is None, so the "
        r"heads split D\)",
    ):
        layer.init(key, (5, 8))
    with pytest.raises(ValueError, match=r"`num_heads` must be a positive integer, got 0"):
        MultiHeadAttention(0)
    with pytest.raises(ValueError, match=r"`out_features` must be a positive integer, got 0"):
        MultiHeadAttention(2, out_features=0)
    with pytest.raises(ValueError, match=r"`dropout_rate` must be in \[0, 1\), got 1.0"):
        MultiHeadAttention(2, dropout_rate=1.0)
    layer = MultiHeadAttention(2, name="mha")
    with pytest.raises(
        ValueError,
        match=where + r" expects per-example inputs of shape \(T, D\), got input_shape \(8,\)",
    ):
        layer.init(key, (8,))
    with pytest.raises(
        ValueError,
        match=where
        + r": the mask must have shape \(5,\) \(the input's shape without its last axis\), "
        r"got mask shape \(4,\)",
    ):
        layer.init(key, ((5, 4), (4,)))
    params, state, _ = layer.init(key, (5, 4))
    with pytest.raises(
        ValueError, match=where + r" expects inputs of shape \(\.\.\., T, 4\), got shape \(4,\)"
    ):
        layer.apply(params, state, jnp.zeros(4))
    with pytest.raises(
        ValueError, match=where + r" expects inputs of shape \(\.\.\., T, 4\), got shape \(5, 6\)"
    ):
        layer.apply(params, state, jnp.zeros((5, 6)))
    with pytest.raises(
        ValueError,
        match=where
        + r": the mask must have shape \(3, 5\) \(the input's shape without its last axis\), "
        r"got mask shape \(2, 5\)",
    ):
        layer.apply(params, state, (jnp.zeros((3, 5, 4)), jnp.ones((2, 5), bool)))
    with pytest.raises(
        ValueError,
        match=where + r": the mask must be bool \(True = real token\), got dtype float32",
    ):
        layer.apply(params, state, (jnp.zeros((5, 4)), jnp.ones(5)))
    with pytest.raises(
        ValueError, match=where + r" expects a floating-point input, got dtype int32"
    ):
        layer.apply(params, state, jnp.zeros((5, 4), jnp.int32))


# --------------------------------------------------------------------------------------------
# TransformerEncoderBlock.


@pytest.mark.parametrize(
    "causal, masked", [(False, False), (True, True)], ids=["plain", "causal_masked"]
)
def test_encoder_block_equals_numpy_reference(causal, masked, keys):
    eps, heads = 1e-5, 2
    block = TransformerEncoderBlock(heads, 16, causal=causal, epsilon=eps, b_init=random_bias)
    shape = ((5, 8), (5,)) if masked else (5, 8)
    params, state, out_shape = block.init(next(keys), shape)
    assert out_shape == shape
    assert sorted(params) == ["attention", "attention_norm", "mlp_hidden", "mlp_norm", "mlp_out"]
    assert params["mlp_hidden"]["w"].shape == (8, 16) and params["mlp_out"]["w"].shape == (16, 8)
    assert sorted(params["attention_norm"]) == ["bias", "scale"]
    params = dict(params)
    for norm in ("attention_norm", "mlp_norm"):  # non-trivial scale and bias
        params[norm] = {
            "scale": 1.0 + random_bias(next(keys), (8,)),
            "bias": random_bias(next(keys), (8,)),
        }
    key_mask = np.arange(5)[None, :] < np.array([[5], [2], [1]])
    with jax.enable_x64(True):
        params = to64(params)
        x = draw(next(keys), (3, 5, 8), jnp.float64)
        if masked:
            (y, mask_out), _ = block.apply(params, state, (x, jnp.asarray(key_mask)))
            np.testing.assert_array_equal(mask_out, key_mask)
        else:
            y, _ = block.apply(params, state, x)
        expected = np_block(params, np.asarray(x), heads, eps, key_mask if masked else None, causal)
        np.testing.assert_allclose(y, expected, atol=TOL64)


def test_encoder_block_dropout_needs_a_key_and_is_deterministic(keys):
    block = TransformerEncoderBlock(2, 16, dropout_rate=0.3, attention_dropout_rate=0.2, name="enc")
    params, state, _ = block.init(next(keys), (5, 8))
    x = draw(next(keys), (7, 5, 8))
    with pytest.raises(
        ValueError,
        match=r"Dropout layer 'enc/attention/attention_dropout' needs a PRNG key in training: "
        r"call apply\(params, state, x, key=key, train=True\)",
    ):
        block.apply(params, state, x, train=True)
    only_residual = TransformerEncoderBlock(2, 16, dropout_rate=0.3, name="enc")
    with pytest.raises(
        ValueError, match=r"Dropout layer 'enc/dropout' needs a PRNG key in training"
    ):
        only_residual.apply(params, state, x, train=True)
    # Jitted (train static): one compilation instead of one per op; the contract checks that
    # eager and jit agree.
    run = jax.jit(block.apply, static_argnames="train")
    key = next(keys)
    y, _ = run(params, state, x, key=key, train=True)
    np.testing.assert_array_equal(y, run(params, state, x, key=key, train=True)[0])
    y_other, _ = run(params, state, x, key=next(keys), train=True)
    assert np.any(np.asarray(y_other) != np.asarray(y))
    evaluated, _ = block.apply(params, state, x, key=key)  # eager ops cached by the contract
    plain = TransformerEncoderBlock(2, 16)
    np.testing.assert_array_equal(evaluated, plain.apply(params, state, x)[0])
    assert np.any(np.asarray(evaluated) != np.asarray(y))
    # No dropout configured: training needs no key and changes nothing.
    np.testing.assert_array_equal(plain.apply(params, state, x, train=True)[0], evaluated)


def test_encoder_block_errors(key):
    with pytest.raises(ValueError, match=r"`mlp_features` must be a positive integer, got 0"):
        TransformerEncoderBlock(2, 0)
    with pytest.raises(ValueError, match=r"`dropout_rate` must be in \[0, 1\), got -0.1"):
        TransformerEncoderBlock(2, 4, dropout_rate=-0.1)
    with pytest.raises(ValueError, match=r"`attention_dropout_rate` must be in \[0, 1\), got 2"):
        TransformerEncoderBlock(2, 4, attention_dropout_rate=2)
    with pytest.raises(
        ValueError, match=r"'enc/attention': num_heads=2 must divide qkv_features=5"
    ):
        TransformerEncoderBlock(2, 4, qkv_features=5, name="enc")
    block = TransformerEncoderBlock(3, 4, name="enc")
    with pytest.raises(
        ValueError, match=r"'enc/attention': num_heads=3 must divide the input width D=8"
    ):
        block.init(key, (5, 8))
    where = r"TransformerEncoderBlock layer 'enc'"
    with pytest.raises(
        ValueError,
        match=where + r" expects per-example inputs of shape \(T, D\), got input_shape \(2, 5, 6\)",
    ):
        block.init(key, (2, 5, 6))
    params, state, _ = block.init(key, (5, 6))
    with pytest.raises(
        ValueError, match=where + r" expects inputs of shape \(\.\.\., T, 6\), got shape \(6,\)"
    ):
        block.apply(params, state, jnp.zeros(6))
    with pytest.raises(
        ValueError,
        match=where
        + r": the mask must have shape \(5,\) \(the input's shape without its last axis\), "
        r"got mask shape \(5, 1\)",
    ):
        block.apply(params, state, (jnp.zeros((5, 6)), jnp.ones((5, 1), bool)))


def test_encoder_block_dtypes(key):
    block = TransformerEncoderBlock(2, 16, dtype=jnp.bfloat16)
    params, state, _ = block.init(key, (5, 8))
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    y, _ = jax.jit(block.apply)(params, state, jnp.ones((7, 5, 8)))
    assert y.dtype == jnp.bfloat16


def test_token_pipeline_with_padding(keys):
    """Ids and their mask flow through embedding, positions and two blocks as one value."""
    model = Serial(
        Embedding(11, 8),
        SinusoidalPositionalEncoding(),
        TransformerEncoderBlock(2, 16),
        TransformerEncoderBlock(2, 16, causal=True),
    )
    params, state, shape = model.init(next(keys), ((5,), (5,)))
    assert shape == ((5, 8), (5,))
    ids = jnp.asarray(rng(next(keys)).integers(0, 11, (7, 5)), jnp.int32)
    mask = jnp.arange(5)[None, :] < jnp.array([5, 3, 1, 2, 4, 5, 3])[:, None]
    run = jax.jit(model.apply)
    (y, mask_out), _ = run(params, state, (ids, mask))
    np.testing.assert_array_equal(mask_out, mask)
    other = jnp.where(mask, ids, (ids + 1) % 11)  # change every padded id
    (y_other, _), _ = run(params, state, (other, mask))
    real = np.broadcast_to(np.asarray(mask)[..., None], y.shape)
    np.testing.assert_array_equal(np.asarray(y_other)[real], np.asarray(y)[real])
    assert np.any(np.asarray(y_other)[~real] != np.asarray(y)[~real])
