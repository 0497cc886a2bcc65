"""Attention and transformer blocks (``fdl.nn.attention``, ``fdl.nn.transformer``): NumPy
references with explicit per-head loops, PyTorch's layers (``fixtures/torch_attention.npz``), the
numbers of the code before issue 9 (``fixtures/attention_before_issue9.npz``), causal and padding
properties, fully masked rows, dropout keys, every error message, and the layer contract."""

import functools
import hashlib
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from fdl.nn import padding_mask
from fdl.nn.attention import MultiHeadAttention, attention_weights, scaled_dot_product_attention
from fdl.nn.combinators import Serial
from fdl.nn.embedding import Embedding, SinusoidalPositionalEncoding
from fdl.nn.layer import Layer
from fdl.nn.transformer import TransformerDecoderBlock, TransformerEncoderBlock
from tests.nn.helpers import check_layer_contract

# float64 against float64 NumPy (or PyTorch): the same arithmetic up to summation order, so 1e-12
# on O(1) values (float64 has 2e-16 relative precision; sums here have tens of terms; PyTorch's
# outputs differ from fdl's by at most 2e-15, measured).
TOL64 = 1e-12
FIXTURES = Path(__file__).parent / "fixtures"


def load_fixture(name):
    with np.load(FIXTURES / name, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


TORCH = load_fixture("torch_attention.npz")
BEFORE = load_fixture("attention_before_issue9.npz")


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


def np_mha(params, x_q, heads, allowed, x_kv=None):
    """x_q (B, T_q, D_q); x_kv (B, T_k, D_kv), ``x_q`` if None; allowed (B, T_q, T_k). The
    projections' columns split into ``heads`` blocks."""
    x_kv = x_q if x_kv is None else x_kv
    q = np_dense(params["query"], x_q)
    k, v = np_dense(params["key"], x_kv), np_dense(params["value"], x_kv)
    d = q.shape[-1] // heads
    split = lambda a: a.reshape(a.shape[0], a.shape[1], heads, d)
    context = np_attention(split(q), split(k), split(v), allowed)
    return np_dense(params["out"], context.reshape(x_q.shape[0], x_q.shape[1], heads * d))


def np_layer_norm(p, x, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * np.asarray(p["scale"]) + np.asarray(p["bias"])


def np_mlp(params, h, eps):
    """h + gelu(LN(h) W_1 + b_1) W_2 + b_2, the exact (erf) gelu."""
    z = np_dense(params["mlp_hidden"], np_layer_norm(params["mlp_norm"], h, eps))
    z = 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))
    return h + np_dense(params["mlp_out"], z)


def np_block(params, x, heads, eps, key_mask=None, causal=False):
    batch, length, _ = x.shape
    allowed = allowed_pairs(length, length, batch, key_mask, causal)
    h = x + np_mha(params["attention"], np_layer_norm(params["attention_norm"], x, eps), heads, allowed)
    return np_mlp(params, h, eps)


def np_decoder(params, x, memory, heads, eps, key_mask=None, memory_allowed=None, causal=True):
    batch, length, _ = x.shape
    allowed = allowed_pairs(length, length, batch, key_mask, causal)
    h = x + np_mha(
        params["self_attention"], np_layer_norm(params["self_attention_norm"], x, eps), heads, allowed
    )
    if memory_allowed is None:
        memory_allowed = np.ones((batch, length, memory.shape[1]), bool)
    h = h + np_mha(
        params["cross_attention"],
        np_layer_norm(params["cross_attention_norm"], h, eps),
        heads,
        memory_allowed,
        memory,
    )
    return np_mlp(params, h, eps)


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


def random_norms(params, keys, width):
    """``params`` with every layer norm's scale and bias drawn away from 1 and 0."""
    params = dict(params)
    for part in params:
        if part.endswith("norm"):
            params[part] = {
                "scale": 1.0 + random_bias(next(keys), (width,)),
                "bias": random_bias(next(keys), (width,)),
            }
    return params


# --------------------------------------------------------------------------------------------
# The layer contract. The masked rows run through wrappers that fix the mask, and the
# cross-attention rows split one input into queries (the first T_q steps) and keys/values.


def with_fixed_mask(layer, pattern):
    """``layer`` with ``mask=`` ``pattern`` on every example."""
    pattern = np.asarray(pattern)

    def apply(params, state, x, *, key=None, train=False, mask=None):
        mask = jnp.broadcast_to(jnp.asarray(pattern), x.shape[:-1])
        return layer.apply(params, state, x, key=key, train=train, mask=mask)

    return Layer(layer.init, apply)


def as_cross(layer, t_q, kv_pattern):
    """``x (T, D) -> layer((x[:t_q], x[t_q:], kv_mask))``, ``kv_mask`` = ``kv_pattern``."""
    kv_pattern = np.asarray(kv_pattern)
    t_kv = len(kv_pattern)

    def init(key, input_shape):
        (length, width) = input_shape
        assert length == t_q + t_kv
        return layer.init(key, ((t_q, width), (t_kv, width), (t_kv,)))

    def apply(params, state, x, *, key=None, train=False, mask=None):
        kv_mask = jnp.broadcast_to(jnp.asarray(kv_pattern), x.shape[:-2] + (t_kv,))
        inputs = (x[..., :t_q, :], x[..., t_q:, :], kv_mask)
        return layer.apply(params, state, inputs, key=key, train=train)

    return Layer(init, apply)


def _row_id(row):
    return row.values[0] if hasattr(row, "values") else row[0]  # a pytest.param or a tuple


# First key padded: with causal=True query 0 then has no key at all (a fully masked row).
PATTERN = [False, True, True, True, False]
# (id, factory, per-example input shape). Kept to one row per configuration: each costs seconds.
# The two blocks (compositions of the attention rows above, tens of seconds each on 2 cores) are
# slow: they run in CI, outside the quick tier.
# The other tests reuse these configurations and the contract's batch shapes ((7,) in float32,
# (3,) in float64), so JAX's compiled-op cache is shared with them.
LAYERS = [
    (
        "mha_masked_causal",
        lambda: with_fixed_mask(MultiHeadAttention(2, causal=True, b_init=random_bias), PATTERN),
        (5, 4),
    ),
    (
        "mha_cross_masked",
        lambda: as_cross(MultiHeadAttention(2, out_features=3, b_init=random_bias), 2, [True, False, True]),
        (5, 4),
    ),
    pytest.param(
        "encoder_block_masked_causal",
        lambda: with_fixed_mask(TransformerEncoderBlock(2, 16, causal=True, b_init=random_bias), PATTERN),
        (5, 8),
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "decoder_block_memory_masked",
        lambda: as_cross(TransformerDecoderBlock(2, 16, b_init=random_bias), 3, [True, True, False]),
        (6, 8),
        marks=pytest.mark.slow,
    ),
]


@pytest.mark.parametrize("_, factory, shape", LAYERS, ids=[_row_id(row) for row in LAYERS])
def test_layer_contract(_, factory, shape, keys):
    check_layer_contract(factory, shape, keys)


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
        np.testing.assert_allclose(y, np_attention(*map(np.asarray, (q, k, v)), allowed), atol=TOL64)
        w = jax.jit(attention_weights, static_argnames="causal")(q, k, mask=mask, causal=causal)
        assert w.shape == (batch, heads, t_q, t_k)
        np.testing.assert_array_equal(np.asarray(w)[np.broadcast_to(~allowed[:, None], w.shape)], 0.0)
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
    with pytest.raises(ValueError, match=r"`mask` must be bool \(True = may attend\), got dtype float32"):
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
    params, state, out_shape = layer.init(next(keys), (length, width))
    assert out_shape == (length, out or width)
    assert sorted(params) == ["key", "out", "query", "value"]
    assert params["query"]["w"].shape == (width, qkv or width)
    assert ("b" in params["out"]) == use_bias
    key_mask = np.arange(length)[None, :] < np.array([[5], [3], [1]])
    with jax.enable_x64(True):
        params = to64(params)
        x = draw(next(keys), (batch, length, width), jnp.float64)
        mask = jnp.asarray(key_mask) if masked else None
        y, _ = layer.apply(params, state, x, mask=mask)
        allowed = allowed_pairs(length, length, batch, key_mask if masked else None, causal)
        np.testing.assert_allclose(y, np_mha(params, np.asarray(x), heads, allowed), atol=TOL64)


@pytest.mark.parametrize(
    "mask_kind, causal",
    [("none", False), ("keys", False), ("per_query", True)],
)
def test_cross_attention_equals_numpy_reference(mask_kind, causal, keys):
    batch, t_q, t_k, d_q, d_kv, heads = 3, 4, 6, 4, 6, 2
    layer = MultiHeadAttention(heads, qkv_features=8, out_features=5, causal=causal, b_init=random_bias)
    shape = ((t_q, d_q), (t_k, d_kv)) + {"none": (), "keys": ((t_k,),), "per_query": ((t_q, t_k),)}[mask_kind]
    params, state, out_shape = layer.init(next(keys), shape)
    assert out_shape == (t_q, 5)
    assert params["query"]["w"].shape == (d_q, 8) and params["key"]["w"].shape == (d_kv, 8)
    assert params["value"]["w"].shape == (d_kv, 8) and params["out"]["w"].shape == (8, 5)
    allowed = allowed_pairs(t_q, t_k, batch, causal=causal)
    with jax.enable_x64(True):
        params = to64(params)
        x_q = draw(next(keys), (batch, t_q, d_q), jnp.float64)
        x_kv = draw(next(keys), (batch, t_k, d_kv), jnp.float64)
        inputs = (x_q, x_kv)
        if mask_kind == "keys":
            key_mask = np.asarray(padding_mask(jnp.array([6, 2, 1]), t_k))
            inputs += (jnp.asarray(key_mask),)
            allowed = allowed_pairs(t_q, t_k, batch, key_mask, causal)
        elif mask_kind == "per_query":
            per_query = rng(next(keys)).random((batch, t_q, t_k)) < 0.6
            inputs += (jnp.asarray(per_query),)
            allowed = allowed & per_query
        # The queries' padding mask is checked and changes nothing.
        query_mask = padding_mask(jnp.array([4, 1, 2]), t_q)
        y, _ = layer.apply(params, state, inputs, mask=query_mask)
        expected = np_mha(params, np.asarray(x_q), heads, allowed, np.asarray(x_kv))
        np.testing.assert_allclose(y, expected, atol=TOL64)
        np.testing.assert_array_equal(y, layer.apply(params, state, inputs)[0])


def test_self_attention_is_cross_attention_to_itself(keys):
    layer = MultiHeadAttention(2, causal=True, b_init=random_bias)
    params, state, _ = layer.init(next(keys), (5, 4))
    x = draw(next(keys), (3, 5, 4))
    mask = padding_mask(jnp.array([5, 2, 4]), 5)
    y, _ = layer.apply(params, state, x, mask=mask)
    # A padding mask is a key mask (*batch, T_k) of x to itself.
    np.testing.assert_array_equal(y, layer.apply(params, state, (x, x, mask))[0])


# Maps PyTorch's parameters (``(out, in)`` matrices, the fused ``in_proj``) to fdl's trees.


def torch_param(case, name):
    return jnp.asarray(TORCH[f"{case}/param/{name}"])


def mha_params_from_torch(case, prefix=""):
    """``nn.MultiheadAttention`` -> ``{"query": {"w": (D_q, F), "b": (F,)}, "key": ..., ...}``."""
    out_w = torch_param(case, prefix + "out_proj.weight")
    f = out_w.shape[1]
    bias = torch_param(case, prefix + "in_proj_bias")  # (3F,): [b^Q; b^K; b^V]
    if f"{case}/param/{prefix}in_proj_weight" in TORCH:
        fused = torch_param(case, prefix + "in_proj_weight")  # (3F, D): [W^Q; W^K; W^V]
        weights = [fused[:f], fused[f : 2 * f], fused[2 * f :]]
    else:  # kdim != embed_dim: separate q/k/v projections
        weights = [torch_param(case, prefix + f"{p}_proj_weight") for p in "qkv"]
    params = {
        part: {"w": w.T, "b": bias[i * f : (i + 1) * f]}
        for i, (part, w) in enumerate(zip(("query", "key", "value"), weights, strict=True))
    }
    params["out"] = {"w": out_w.T, "b": torch_param(case, prefix + "out_proj.bias")}
    return params


def norm_from_torch(case, name):
    return {"scale": torch_param(case, f"{name}.weight"), "bias": torch_param(case, f"{name}.bias")}


def dense_from_torch(case, name):
    return {"w": torch_param(case, f"{name}.weight").T, "b": torch_param(case, f"{name}.bias")}


def torch_array(name):
    return jnp.asarray(TORCH[name])


def test_fixtures_come_from_torch():
    assert str(TORCH["generator"]) == "scripts/torch_attention_reference.py"
    script = Path(__file__).parents[2] / "scripts" / "torch_attention_reference.py"
    assert str(TORCH["script_sha256"]) == hashlib.sha256(script.read_bytes()).hexdigest()
    assert str(TORCH["torch_version"]).startswith("2.")
    assert TORCH["mha_self/y_plain"].dtype == np.float64
    assert str(BEFORE["generator"]).startswith("MultiHeadAttention and TransformerEncoderBlock")


def test_self_attention_equals_torch():
    """``nn.MultiheadAttention(8, 2, batch_first=True)``; torch's masks are True = ignore."""
    with jax.enable_x64(True):
        params = mha_params_from_torch("mha_self")
        x, mask = torch_array("mha_self/x"), torch_array("mha_self/mask")
        for causal, m, expected in [
            (False, None, "y_plain"),
            (False, mask, "y_padded"),  # key_padding_mask = ~mask
            (True, mask, "y_causal_padded"),  # and attn_mask = the upper triangle
        ]:
            y, _ = MultiHeadAttention(2, causal=causal).apply(params, {}, x, mask=m)
            np.testing.assert_allclose(y, TORCH[f"mha_self/{expected}"], atol=TOL64, err_msg=expected)


def test_cross_attention_equals_torch():
    """``nn.MultiheadAttention(8, 2, kdim=6, vdim=6, batch_first=True)``, 4 queries, 6 keys."""
    with jax.enable_x64(True):
        params = mha_params_from_torch("mha_cross")
        x_q, x_kv = torch_array("mha_cross/x_q"), torch_array("mha_cross/x_kv")
        kv_mask, allowed = torch_array("mha_cross/kv_mask"), torch_array("mha_cross/attn_mask")
        layer = MultiHeadAttention(2)
        for inputs, expected in [
            ((x_q, x_kv), "y_plain"),
            ((x_q, x_kv, kv_mask), "y_padded"),  # key_padding_mask = ~kv_mask
            # attn_mask (T_q, T_k) = ~allowed, with key_padding_mask: one per-query mask.
            ((x_q, x_kv, allowed[None] & kv_mask[:, None, :]), "y_attn_mask_padded"),
        ]:
            y, _ = layer.apply(params, {}, inputs)
            np.testing.assert_allclose(y, TORCH[f"mha_cross/{expected}"], atol=TOL64, err_msg=expected)


def before_params(case):
    """The parameters the code before issue 9 ran with: the same tree and names as now."""
    params = {}
    prefix = f"{case}/params/"
    for name, value in BEFORE.items():
        if name.startswith(prefix):
            *path, leaf = name[len(prefix) :].split("/")
            node = params
            for part in path:
                node = node.setdefault(part, {})
            node[leaf] = jnp.asarray(value)
    return params


BEFORE_CASES = [
    ("mha_plain", lambda: MultiHeadAttention(2), 4),
    ("mha_masked", lambda: MultiHeadAttention(2), 4),
    ("mha_causal_masked", lambda: MultiHeadAttention(2, causal=True), 4),
    (
        "mha_widths_causal",
        lambda: MultiHeadAttention(4, qkv_features=8, out_features=3, causal=True),
        4,
    ),
    ("mha_no_bias_masked", lambda: MultiHeadAttention(1, qkv_features=6, use_bias=False), 4),
    ("encoder_plain", lambda: TransformerEncoderBlock(2, 16), 8),
    ("encoder_masked", lambda: TransformerEncoderBlock(2, 16), 8),
    ("encoder_causal_masked", lambda: TransformerEncoderBlock(2, 16, causal=True), 8),
]


@pytest.mark.parametrize("case, factory, width", BEFORE_CASES, ids=[c[0] for c in BEFORE_CASES])
def test_same_numbers_as_before_the_composition(case, factory, width, key):
    """The hand-wired layers of commit d341921 ran on these parameters and inputs (float32 and
    float64); the compositions give the same outputs, with the same parameter paths."""
    layer = factory()
    params = before_params(case)
    fresh, state, _ = layer.init(key, (5, width))
    assert jax.tree.structure(params) == jax.tree.structure(fresh)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, fresh)
    x = BEFORE[f"{case}/x"]
    mask = jnp.asarray(BEFORE[f"{case}/mask"]) if f"{case}/mask" in BEFORE else None
    y, _ = layer.apply(params, state, jnp.asarray(x), mask=mask)
    # The same float32 operations in the same order (measured: bitwise equal); 1e-6 allows one
    # rounding of an O(1) value should XLA reorder a sum.
    np.testing.assert_allclose(y, BEFORE[f"{case}/y_float32"], rtol=0, atol=1e-6)
    with jax.enable_x64(True):
        y, _ = layer.apply(to64(params), state, jnp.asarray(x, jnp.float64), mask=mask)
        np.testing.assert_allclose(y, BEFORE[f"{case}/y_float64"], rtol=0, atol=TOL64)


def test_mha_attention_dropout_drops_weights(keys):
    rate, heads, (batch, length, width) = 0.5, 2, (7, 5, 4)
    layer = MultiHeadAttention(heads, dropout_rate=rate, b_init=random_bias)
    params, state, _ = layer.init(next(keys), (length, width))
    x = draw(next(keys), (batch, length, width))
    with pytest.raises(
        ValueError,
        match=r"layer 'attention_dropout' \(Dropout\): Dropout needs a PRNG key in training: "
        r"call apply\(params, state, x, key=key, train=True\)",
    ):
        layer.apply(params, state, x, train=True)
    key = next(keys)
    y, _ = layer.apply(params, state, x, key=key, train=True)
    np.testing.assert_array_equal(y, layer.apply(params, state, x, key=key, train=True)[0])
    assert np.any(np.asarray(y) != np.asarray(layer.apply(params, state, x, key=next(keys), train=True)[0]))
    # Reference: the same Bernoulli draw on the weights (B, H, T, T), kept weights scaled by 2.
    # The composite hands its children (query, key, value, attention_dropout, out) the keys
    # jax.random.split(key, 5), in order.
    dropout_key = jax.random.split(key, 5)[3]
    keep = np.asarray(jax.random.bernoulli(dropout_key, 1.0 - rate, (batch, heads, length, length)))
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


def test_mha_fully_masked_rows_are_finite(keys):
    """A query with no key to attend to outputs W^O 0 + b^O = b^O, and gradients stay finite."""
    layer = MultiHeadAttention(2, causal=True, b_init=random_bias)
    params, state, _ = layer.init(next(keys), (5, 4))
    x = draw(next(keys), (3, 5, 4))
    mask = jnp.array([[False, True, True, True, True], [False] * 5, [True] * 5])
    run = jax.jit(lambda p, x: layer.apply(p, state, x, mask=mask)[0])
    y = np.asarray(run(params, x))
    bias = np.asarray(params["out"]["b"])
    np.testing.assert_array_equal(y[1], np.broadcast_to(bias, (5, 4)))  # every key padded
    np.testing.assert_array_equal(y[0, 0], bias)  # causal query 0 sees only the padded key 0
    assert np.isfinite(y).all()
    grads = jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.sin(run(p, x))), argnums=(0, 1)))(params, x)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


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
    params, state, _ = layer.init(next(keys), (5, width))
    x = draw(next(keys), (7, 5, width))
    lengths = jnp.array([5, 4, 3, 2, 1, 1, 3])[:, None]
    if causal:  # left padding (right padding would be in every real token's future anyway)
        mask = jnp.arange(5)[None, :] >= 5 - lengths  # (7, 5)
    else:
        mask = jnp.arange(5)[None, :] < lengths  # (7, 5)
    y, _ = layer.apply(params, state, x, mask=mask)
    noise = draw(next(keys), x.shape)
    x_changed = jnp.where(jnp.broadcast_to(mask[..., None], x.shape), x, noise)
    y_changed, _ = layer.apply(params, state, x_changed, mask=mask)
    real = np.broadcast_to(np.asarray(mask)[..., None], y.shape)
    np.testing.assert_array_equal(np.asarray(y_changed)[real], np.asarray(y)[real])
    # Without the mask the padded tokens would matter (for every example that has padding).
    leaked = np.asarray(layer.apply(params, state, x_changed)[0]) != np.asarray(y)
    assert np.any(leaked & real)


def test_mha_errors(key):
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention: num_heads=3 must divide qkv_features=8 \(each head gets "
        r"qkv_features / num_heads features\)",
    ):
        MultiHeadAttention(3, qkv_features=8)
    layer = MultiHeadAttention(3)  # fine until the width is known
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention: num_heads=3 must divide the query width D_q=8 \(qkv_features "
        r"is None, so the heads split D_q\); pass qkv_features or another num_heads",
    ):
        layer.init(key, (5, 8))
    with pytest.raises(ValueError, match=r"`num_heads` must be a positive integer, got 0"):
        MultiHeadAttention(0)
    with pytest.raises(ValueError, match=r"`qkv_features` must be a positive integer, got -4"):
        MultiHeadAttention(2, qkv_features=-4)
    with pytest.raises(ValueError, match=r"`out_features` must be a positive integer, got 0"):
        MultiHeadAttention(2, out_features=0)
    with pytest.raises(ValueError, match=r"`dropout_rate` must be in \[0, 1\), got 1.0"):
        MultiHeadAttention(2, dropout_rate=1.0)
    layer = MultiHeadAttention(2)
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention expects per-example inputs of shape \(T, D\), got "
        r"input_shape \(8,\)",
    ):
        layer.init(key, (8,))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention expects input_shape \(T, D\) for self-attention, or "
        r"\(\(T_q, D_q\), \(T_k, D_kv\)\) or \(\(T_q, D_q\), \(T_k, D_kv\), mask_shape\) for "
        r"cross-attention, got \(\(5, 4\),\)",
    ):
        layer.init(key, ((5, 4),))
    params, state, _ = layer.init(key, (5, 4))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention expects inputs with a feature axis \(\.\.\., D\), got shape "
        r"\(\)",
    ):
        layer.apply(params, state, jnp.zeros(()))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention expects inputs of shape \(\.\.\., T, D\), got shape \(4,\)",
    ):
        layer.apply(params, state, jnp.zeros(4))
    with pytest.raises(
        ValueError,
        match=r"layer 'query' \(Dense\): Dense expects inputs of shape \(\.\.\., 4\), got shape "
        r"\(5, 6\)",
    ):
        layer.apply(params, state, jnp.zeros((5, 6)))
    with pytest.raises(
        ValueError, match=r"MultiHeadAttention expects floating-point inputs, got dtype int32"
    ):
        layer.apply(params, state, jnp.zeros((5, 4), jnp.int32))


def test_a_mask_that_does_not_fit_names_both_shapes(key):
    layer = MultiHeadAttention(2)
    params, state, _ = layer.init(key, (5, 4))
    x = jnp.zeros((3, 5, 4))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention: `mask` of shape \(2, 5\) does not fit the input of shape "
        r"\(3, 5, 4\): expected \(\*batch, T\) = \(3, 5\)",
    ):
        layer.apply(params, state, x, mask=jnp.ones((2, 5), bool))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention: `mask` must be bool \(True = real position\), got dtype "
        r"float32",
    ):
        layer.apply(params, state, x, mask=jnp.ones((3, 5)))
    # Deep in a model, the message starts with the attention's path.
    model = Serial(Embedding(11, 4), TransformerEncoderBlock(2, 8, name="encoder"))
    params, state, _ = model.init(key, (5,))
    with pytest.raises(
        ValueError,
        match=r"layer 'encoder/attention' \(MultiHeadAttention\): MultiHeadAttention: `mask` of "
        r"shape \(3, 4\) does not fit the input of shape \(3, 5, 4\): expected \(\*batch, T\) = "
        r"\(3, 5\)",
    ):
        model.apply(params, state, jnp.zeros((3, 5), jnp.int32), mask=jnp.ones((3, 4), bool))


def test_cross_attention_errors(key):
    layer = MultiHeadAttention(2)
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention: the key/value mask shape \(4,\) does not fit queries of shape "
        r"\(5, 4\) and keys/values of shape \(6, 3\): expected \(T_k,\) = \(6,\) or \(T_q, T_k\) "
        r"= \(5, 6\)",
    ):
        layer.init(key, ((5, 4), (6, 3), (4,)))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention expects per-example inputs of shape \(T, D\), got input_shape "
        r"\(6,\)",
    ):
        layer.init(key, ((5, 4), (6,)))
    params, state, _ = layer.init(key, ((5, 4), (6, 3)))
    x_q, x_kv = jnp.zeros((2, 5, 4)), jnp.zeros((2, 6, 3))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention: the key/value mask of shape \(2, 5\) does not fit queries of "
        r"shape \(2, 5, 4\) and keys/values of shape \(2, 6, 3\): expected \(\*batch, T_k\) = "
        r"\(2, 6\) or \(\*batch, T_q, T_k\) = \(2, 5, 6\)",
    ):
        layer.apply(params, state, (x_q, x_kv, jnp.ones((2, 5), bool)))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention: the key/value mask must be bool \(True = may attend\), got "
        r"dtype int32",
    ):
        layer.apply(params, state, (x_q, x_kv, jnp.ones((2, 6), jnp.int32)))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention: queries of shape \(2, 5, 4\) and keys/values of shape "
        r"\(3, 6, 3\) must have the same batch axes \(\*batch, T, D\)",
    ):
        layer.apply(params, state, (x_q, jnp.zeros((3, 6, 3))))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention takes x \(self-attention\), \(x_q, x_kv\) or \(x_q, x_kv, "
        r"kv_mask\) \(cross-attention\), got a tuple of 4 entries",
    ):
        layer.apply(params, state, (x_q, x_kv, None, None))
    with pytest.raises(
        ValueError, match=r"MultiHeadAttention expects floating-point keys/values, got dtype int32"
    ):
        layer.apply(params, state, (x_q, jnp.zeros((2, 6, 3), jnp.int32)))
    with pytest.raises(
        ValueError,
        match=r"MultiHeadAttention: `mask` of shape \(2, 6\) does not fit the input of shape "
        r"\(2, 5, 4\): expected \(\*batch, T\) = \(2, 5\)",
    ):
        layer.apply(params, state, (x_q, x_kv), mask=jnp.ones((2, 6), bool))


def test_masking_helpers():
    np.testing.assert_array_equal(
        padding_mask(jnp.array([[2], [0]]), 3), [[[True, True, False]], [[False, False, False]]]
    )
    with pytest.raises(ValueError, match=r"`length` must be a positive integer, got 0"):
        padding_mask(jnp.array([1]), 0)


# --------------------------------------------------------------------------------------------
# TransformerEncoderBlock.


@pytest.mark.parametrize("causal, masked", [(False, False), (True, True)], ids=["plain", "causal_masked"])
def test_encoder_block_equals_numpy_reference(causal, masked, keys):
    eps, heads = 1e-5, 2
    block = TransformerEncoderBlock(heads, 16, causal=causal, epsilon=eps, b_init=random_bias)
    params, state, out_shape = block.init(next(keys), (5, 8))
    assert out_shape == (5, 8)
    assert sorted(params) == ["attention", "attention_norm", "mlp_hidden", "mlp_norm", "mlp_out"]
    assert sorted(params["attention"]) == ["key", "out", "query", "value"]
    assert params["mlp_hidden"]["w"].shape == (8, 16) and params["mlp_out"]["w"].shape == (16, 8)
    assert sorted(params["attention_norm"]) == ["bias", "scale"]
    params = random_norms(params, keys, 8)
    key_mask = np.arange(5)[None, :] < np.array([[5], [2], [1]])
    with jax.enable_x64(True):
        params = to64(params)
        x = draw(next(keys), (3, 5, 8), jnp.float64)
        y, _ = block.apply(params, state, x, mask=jnp.asarray(key_mask) if masked else None)
        expected = np_block(params, np.asarray(x), heads, eps, key_mask if masked else None, causal)
        np.testing.assert_allclose(y, expected, atol=TOL64)


def encoder_params_from_torch(case="encoder"):
    return {
        "attention": mha_params_from_torch(case, "self_attn."),
        "attention_norm": norm_from_torch(case, "norm1"),
        "mlp_norm": norm_from_torch(case, "norm2"),
        "mlp_hidden": dense_from_torch(case, "linear1"),
        "mlp_out": dense_from_torch(case, "linear2"),
    }


def test_encoder_block_equals_torch():
    """``nn.TransformerEncoderLayer(8, 2, 16, dropout=0, activation="gelu", batch_first=True,
    norm_first=True)``: norm1, self_attn, norm2, linear1, linear2."""
    with jax.enable_x64(True):
        params = encoder_params_from_torch()
        x, mask = torch_array("encoder/x"), torch_array("encoder/mask")
        y, _ = TransformerEncoderBlock(2, 16).apply(params, {}, x)
        np.testing.assert_allclose(y, TORCH["encoder/y_plain"], atol=TOL64)
        # src_mask = the upper triangle, src_key_padding_mask = ~mask.
        y, _ = TransformerEncoderBlock(2, 16, causal=True).apply(params, {}, x, mask=mask)
        np.testing.assert_allclose(y, TORCH["encoder/y_causal_padded"], atol=TOL64)


def test_encoder_block_dropout_needs_a_key_and_is_deterministic(keys):
    block = TransformerEncoderBlock(2, 16, dropout_rate=0.3, attention_dropout_rate=0.2)
    params, state, _ = block.init(next(keys), (5, 8))
    x = draw(next(keys), (7, 5, 8))
    with pytest.raises(
        ValueError,
        match=r"layer 'attention/attention_dropout' \(Dropout\): Dropout needs a PRNG key in "
        r"training: call apply\(params, state, x, key=key, train=True\)",
    ):
        block.apply(params, state, x, train=True)
    only_residual = TransformerEncoderBlock(2, 16, dropout_rate=0.3)
    with pytest.raises(
        ValueError,
        match=r"layer 'attention_out_dropout' \(Dropout\): Dropout needs a PRNG key in training",
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
    with pytest.raises(ValueError, match=r"`num_heads` must be a positive integer, got 0"):
        TransformerEncoderBlock(0, 4)
    with pytest.raises(ValueError, match=r"`dropout_rate` must be in \[0, 1\), got -0.1"):
        TransformerEncoderBlock(2, 4, dropout_rate=-0.1)
    with pytest.raises(ValueError, match=r"`attention_dropout_rate` must be in \[0, 1\), got 2"):
        TransformerEncoderBlock(2, 4, attention_dropout_rate=2)
    with pytest.raises(ValueError, match=r"MultiHeadAttention: num_heads=2 must divide qkv_features=5"):
        TransformerEncoderBlock(2, 4, qkv_features=5)
    block = TransformerEncoderBlock(3, 4)
    with pytest.raises(
        ValueError,
        match=r"layer 'attention' \(MultiHeadAttention\): MultiHeadAttention: num_heads=3 must "
        r"divide the query width D_q=8",
    ):
        block.init(key, (5, 8))
    with pytest.raises(
        ValueError,
        match=r"TransformerEncoderBlock expects per-example inputs of shape \(T, D\), got "
        r"input_shape \(2, 5, 6\)",
    ):
        block.init(key, (2, 5, 6))
    params, state, _ = block.init(key, (5, 6))
    with pytest.raises(
        ValueError,
        match=r"layer 'attention' \(MultiHeadAttention\): MultiHeadAttention expects inputs of "
        r"shape \(\.\.\., T, D\), got shape \(6,\)",
    ):
        block.apply(params, state, jnp.zeros(6))
    with pytest.raises(
        ValueError,
        match=r"layer 'attention' \(MultiHeadAttention\): MultiHeadAttention: `mask` of shape "
        r"\(5, 1\) does not fit the input of shape \(5, 6\): expected \(\*batch, T\) = \(5,\)",
    ):
        block.apply(params, state, jnp.zeros((5, 6)), mask=jnp.ones((5, 1), bool))


def test_encoder_block_dtypes(key):
    block = TransformerEncoderBlock(2, 16, dtype=jnp.bfloat16)
    params, state, _ = block.init(key, (5, 8))
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    y, _ = jax.jit(block.apply)(params, state, jnp.ones((7, 5, 8)))
    assert y.dtype == jnp.bfloat16


def test_token_pipeline_with_padding(keys):
    """Ids flow through embedding, positions and two blocks; the mask keyword reaches the
    attentions through Serial, and the parameters are named by their paths."""
    model = Serial(
        Embedding(11, 8),
        SinusoidalPositionalEncoding(),
        TransformerEncoderBlock(2, 16, name="encoder"),
        TransformerEncoderBlock(2, 16, causal=True),
    )
    params, state, shape = model.init(next(keys), (5,))
    assert shape == (5, 8)
    assert sorted(params) == ["embedding_0", "encoder", "transformer_encoder_block_0"]
    assert params["encoder"]["attention"]["query"]["w"].shape == (8, 8)
    ids = jnp.asarray(rng(next(keys)).integers(0, 11, (7, 5)), jnp.int32)
    mask = padding_mask(jnp.array([5, 3, 1, 2, 4, 5, 3]), 5)
    run = jax.jit(lambda p, i, m: model.apply(p, state, i, mask=m)[0])
    y = run(params, ids, mask)
    other = jnp.where(mask, ids, (ids + 1) % 11)  # change every padded id
    y_other = run(params, other, mask)
    real = np.broadcast_to(np.asarray(mask)[..., None], y.shape)
    np.testing.assert_array_equal(np.asarray(y_other)[real], np.asarray(y)[real])
    assert np.any(np.asarray(y_other)[~real] != np.asarray(y)[~real])


# --------------------------------------------------------------------------------------------
# TransformerDecoderBlock.


def decoder_params_from_torch(case="decoder"):
    return {
        "self_attention_norm": norm_from_torch(case, "norm1"),
        "self_attention": mha_params_from_torch(case, "self_attn."),
        "cross_attention_norm": norm_from_torch(case, "norm2"),
        "cross_attention": mha_params_from_torch(case, "multihead_attn."),
        "mlp_norm": norm_from_torch(case, "norm3"),
        "mlp_hidden": dense_from_torch(case, "linear1"),
        "mlp_out": dense_from_torch(case, "linear2"),
    }


def test_decoder_block_equals_torch(key):
    """``nn.TransformerDecoderLayer(8, 2, 16, dropout=0, activation="gelu", batch_first=True,
    norm_first=True)``: norm1 + self_attn, norm2 + multihead_attn (to the memory), norm3 + MLP."""
    fresh = TransformerDecoderBlock(2, 16).init(key, ((5, 8), (6, 8), (6,)))[0]
    with jax.enable_x64(True):
        params = decoder_params_from_torch()
        assert jax.tree.map(jnp.shape, fresh) == jax.tree.map(jnp.shape, params)
        assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float64)}
        x, memory = torch_array("decoder/x"), torch_array("decoder/memory")
        mask, memory_mask = torch_array("decoder/mask"), torch_array("decoder/memory_mask")
        y, _ = TransformerDecoderBlock(2, 16, causal=False).apply(params, {}, (x, memory))
        np.testing.assert_allclose(y, TORCH["decoder/y_plain"], atol=TOL64)
        block = TransformerDecoderBlock(2, 16)
        y, _ = block.apply(params, {}, (x, memory))  # tgt_mask = the upper triangle
        np.testing.assert_allclose(y, TORCH["decoder/y_causal"], atol=TOL64)
        # tgt_key_padding_mask = ~mask, memory_key_padding_mask = ~memory_mask.
        y, _ = block.apply(params, {}, (x, memory, memory_mask), mask=mask)
        np.testing.assert_allclose(y, TORCH["decoder/y_causal_padded"], atol=TOL64)


@pytest.mark.parametrize("memory_mask_kind", ["keys", "per_query"])
def test_decoder_block_equals_numpy_reference(memory_mask_kind, keys):
    """A memory of another width than the sequence's (torch's decoder layer cannot), masks."""
    eps, heads, (batch, t, s, width, memory_width) = 1e-5, 2, (3, 5, 6, 8, 6)
    block = TransformerDecoderBlock(heads, 16, epsilon=eps, b_init=random_bias)
    mask_shape = (s,) if memory_mask_kind == "keys" else (t, s)
    params, state, out_shape = block.init(next(keys), ((t, width), (s, memory_width), mask_shape))
    assert out_shape == (t, width)
    assert params["cross_attention"]["key"]["w"].shape == (memory_width, width)
    assert params["self_attention"]["key"]["w"].shape == (width, width)
    params = random_norms(params, keys, width)
    key_mask = np.asarray(padding_mask(jnp.array([5, 3, 1]), t))
    if memory_mask_kind == "keys":
        memory_mask = np.asarray(padding_mask(jnp.array([6, 1, 4]), s))
        memory_allowed = allowed_pairs(t, s, batch, memory_mask)
    else:
        memory_mask = rng(next(keys)).random((batch, t, s)) < 0.6
        memory_allowed = memory_mask
    with jax.enable_x64(True):
        params = to64(params)
        x = draw(next(keys), (batch, t, width), jnp.float64)
        memory = draw(next(keys), (batch, s, memory_width), jnp.float64)
        y, _ = block.apply(params, state, (x, memory, jnp.asarray(memory_mask)), mask=jnp.asarray(key_mask))
        expected = np_decoder(params, np.asarray(x), np.asarray(memory), heads, eps, key_mask, memory_allowed)
        np.testing.assert_allclose(y, expected, atol=TOL64)


def test_decoder_block_causality_and_masks(keys):
    block = TransformerDecoderBlock(2, 16, b_init=random_bias)
    params, state, _ = block.init(next(keys), ((5, 8), (6, 8), (6,)))
    run = jax.jit(lambda x, m, mm, mask: block.apply(params, state, (x, m, mm), mask=mask)[0])
    x, memory = draw(next(keys), (7, 5, 8)), draw(next(keys), (7, 6, 8))
    mask = padding_mask(jnp.array([5, 4, 3, 2, 1, 5, 2]), 5)
    memory_mask = padding_mask(jnp.array([6, 1, 3, 2, 6, 4, 5]), 6)
    y = np.asarray(run(x, memory, memory_mask, mask))
    real = np.broadcast_to(np.asarray(mask)[..., None], y.shape)
    # Output t depends on x at positions <= t only.
    y_changed = np.asarray(run(_change_after(x, 3, next(keys)), memory, memory_mask, mask))
    np.testing.assert_array_equal(y_changed[:, :3], y[:, :3])
    assert np.any(y_changed[:, 3:] != y[:, 3:])
    # Padded memory steps and padded positions of x change no real output.
    memory_noise = jnp.where(memory_mask[..., None], memory, draw(next(keys), memory.shape))
    x_noise = jnp.where(mask[..., None], x, draw(next(keys), x.shape))
    y_changed = np.asarray(run(x_noise, memory_noise, memory_mask, mask))
    np.testing.assert_array_equal(y_changed[real], y[real])
    # Every real memory step matters, at every position (the cross-attention is not causal).
    y_changed = np.asarray(run(x, memory.at[:, 0].add(1.0), memory_mask, mask))
    assert (np.abs(y_changed - y).max(axis=-1) > 0).all()
    # A memory with no real step: the cross-attention adds its output bias alone, finitely.
    y_empty = np.asarray(run(x, memory, jnp.zeros_like(memory_mask), mask))
    assert np.isfinite(y_empty).all()


def test_decoder_block_dropout_paths(keys):
    block = TransformerDecoderBlock(2, 16, attention_dropout_rate=0.1)
    params, state, _ = block.init(next(keys), ((5, 8), (6, 8)))
    inputs = (draw(next(keys), (2, 5, 8)), draw(next(keys), (2, 6, 8)))
    run = jax.jit(block.apply, static_argnames="train")  # one compilation, not one per op
    with pytest.raises(
        ValueError,
        match=r"layer 'self_attention/attention_dropout' \(Dropout\): Dropout needs a PRNG key "
        r"in training",
    ):
        run(params, state, inputs, train=True)
    y, _ = run(params, state, inputs, key=next(keys), train=True)
    assert y.shape == (2, 5, 8) and np.isfinite(np.asarray(y)).all()


def test_decoder_block_errors(key):
    block = TransformerDecoderBlock(2, 16)
    with pytest.raises(
        ValueError,
        match=r"TransformerDecoderBlock takes input_shape \(\(T, D\), \(S, D_m\)\) or \(\(T, D\), "
        r"\(S, D_m\), mask_shape\) for \(x, memory\) or \(x, memory, memory_mask\), got \(5, 8\)",
    ):
        block.init(key, (5, 8))
    with pytest.raises(
        ValueError,
        match=r"TransformerDecoderBlock: the key/value mask shape \(5,\) does not fit queries of "
        r"shape \(5, 8\) and keys/values of shape \(6, 8\): expected \(T_k,\) = \(6,\) or "
        r"\(T_q, T_k\) = \(5, 6\)",
    ):
        block.init(key, ((5, 8), (6, 8), (5,)))
    with pytest.raises(ValueError, match=r"`mlp_features` must be a positive integer, got 0"):
        TransformerDecoderBlock(2, 0)
    with pytest.raises(ValueError, match=r"`dropout_rate` must be in \[0, 1\), got 1"):
        TransformerDecoderBlock(2, 4, dropout_rate=1)
    params, state, _ = block.init(key, ((5, 8), (6, 8)))
    with pytest.raises(
        ValueError,
        match=r"TransformerDecoderBlock takes \(x, memory\) or \(x, memory, memory_mask\), got "
        r"a single input of shape \(5, 8\)",
    ):
        block.apply(params, state, jnp.zeros((5, 8)))
    with pytest.raises(
        ValueError,
        match=r"layer 'cross_attention' \(MultiHeadAttention\): MultiHeadAttention: the "
        r"key/value mask of shape \(5,\) does not fit queries of shape \(5, 8\) and keys/values "
        r"of shape \(6, 8\)",
    ):
        block.apply(params, state, (jnp.zeros((5, 8)), jnp.zeros((6, 8)), jnp.ones(5, bool)))
    with pytest.raises(
        ValueError,
        match=r"layer 'self_attention' \(MultiHeadAttention\): MultiHeadAttention: `mask` of "
        r"shape \(6,\) does not fit the input of shape \(5, 8\): expected \(\*batch, T\) = \(5,\)",
    ):
        block.apply(params, state, (jnp.zeros((5, 8)), jnp.zeros((6, 8))), mask=jnp.ones(6, bool))
