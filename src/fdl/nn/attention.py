r"""Attention: scaled dot-product attention, multi-head self-attention and the encoder block.

Layout. Per example a sequence is ``(T, D)`` (time, features; channels last like every fdl
layer). Inside attention the heads are split off the feature axis, ``(T, H, d)``, with no
transpose: queries ``q`` are ``(*batch, T_q, H, d_k)``, keys ``k`` ``(*batch, T_k, H, d_k)``,
values ``v`` ``(*batch, T_k, H, d_v)``, attention weights ``(*batch, H, T_q, T_k)`` and the
output ``(*batch, T_q, H, d_v)`` (Flax's layout; PyTorch's ``scaled_dot_product_attention``
puts the heads before time, ``(N, H, T, d)``).

Masks follow :mod:`fdl.nn.embedding`: a layer given ``(x, mask)``, ``mask`` bool ``(*batch, T)``
with True for a real token, masks the padded *keys* and returns ``(y, mask)``. Rows of padded
*queries* are computed like any other (they attend to the real keys) and are not zeroed: later
layers and the loss should use the mask. A query with no key left to attend to (every key
padded, or padded keys before it under ``causal``) gets all-zero weights and a zero output.

References:
  Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser & Polosukhin (2017). Attention is
  all you need. NeurIPS.
  Xiong, Yang, He, Zheng, Zheng, Xing, Zhang, Lan, Wang & Liu (2020). On layer normalization in
  the transformer architecture. ICML (the pre-LayerNorm block).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fdl import activations, initializers
from fdl._checks import check_positive_int, check_rate
from fdl.nn.dense import Dense, _promote
from fdl.nn.dropout import Dropout
from fdl.nn.layer import Layer, split_key
from fdl.nn.masking import (
    check_mask,
    check_sequence_input,
    check_sequence_shape,
    split_masked_input,
    split_masked_shape,
    with_mask,
)
from fdl.nn.normalization import LayerNorm

__all__ = [
    "attention_weights",
    "scaled_dot_product_attention",
    "MultiHeadAttention",
    "TransformerEncoderBlock",
]


# --------------------------------------------------------------------------------------------
# The pure functions.


def _check_qkv(q: jax.Array, k: jax.Array, v: jax.Array | None) -> None:
    where = "scaled_dot_product_attention"
    if q.ndim < 3 or k.ndim != q.ndim or (v is not None and v.ndim != q.ndim):
        shapes = f"q {q.shape}, k {k.shape}" + ("" if v is None else f", v {v.shape}")
        raise ValueError(
            f"{where} expects q (*batch, T_q, H, d_k), k (*batch, T_k, H, d_k) and v "
            f"(*batch, T_k, H, d_v) with the same number of axes (at least 3), got {shapes}"
        )
    batch = q.shape[:-3]
    same = k.shape[:-3] == batch and k.shape[-2:] == q.shape[-2:]
    if v is not None:
        same = same and v.shape[:-3] == batch and v.shape[-3:-1] == k.shape[-3:-1]
    if not same:
        shapes = f"q {q.shape}, k {k.shape}" + ("" if v is None else f", v {v.shape}")
        raise ValueError(
            f"{where}: q, k and v must share the batch axes and the head count H, q and k the "
            f"width d_k, k and v the length T_k; got {shapes}"
        )


def _allowed(q: jax.Array, k: jax.Array, mask: Any, causal: bool) -> jax.Array | None:
    """The bool ``(*batch, H, T_q, T_k)`` of allowed (query, key) pairs; ``None`` = all."""
    batch, t_q, heads = q.shape[:-3], q.shape[-3], q.shape[-2]
    t_k = k.shape[-3]
    full = batch + (heads, t_q, t_k)
    allowed = None
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise ValueError(
                f"scaled_dot_product_attention: `mask` must be bool (True = may attend), got "
                f"dtype {mask.dtype}"
            )
        if mask.shape == batch + (t_k,):  # a key padding mask
            allowed = jnp.broadcast_to(mask[..., None, None, :], full)  # (*batch, H, T_q, T_k)
        elif mask.shape == batch + (t_q, t_k):  # one mask per query
            allowed = jnp.broadcast_to(mask[..., None, :, :], full)  # (*batch, H, T_q, T_k)
        else:
            raise ValueError(
                f"scaled_dot_product_attention: `mask` must have shape {batch + (t_k,)} "
                f"(*batch, T_k) or {batch + (t_q, t_k)} (*batch, T_q, T_k), got {mask.shape}"
            )
    if causal:
        lower = jnp.arange(t_k)[None, :] <= jnp.arange(t_q)[:, None]  # (T_q, T_k): key <= query
        lower = jnp.broadcast_to(lower, full)
        allowed = lower if allowed is None else allowed & lower
    return allowed


def attention_weights(
    q: jax.Array, k: jax.Array, *, mask: jax.Array | None = None, causal: bool = False
) -> jax.Array:
    r"""The attention weights :math:`A = \mathrm{softmax}(q k^\top / \sqrt{d_k})` over allowed keys.

    For batch index :math:`b`, head :math:`h`, query :math:`i` and key :math:`j`, with
    :math:`M_{bij} \in \{0, 1\}` the allowed pairs (the mask, and :math:`j \le i` if ``causal``):

    .. math::

        s_{bhij} = \frac{1}{\sqrt{d_k}} \sum_{c=1}^{d_k} q_{bihc}\, k_{bjhc}, \qquad
        A_{bhij} = \frac{M_{bij}\, e^{s_{bhij}}}{\sum_{j'} M_{bij'}\, e^{s_{bhij'}}}

    and :math:`A_{bhij} = 0` for every :math:`j` when no key is allowed for query :math:`i`
    (defined so, instead of 0/0). Masked logits are replaced by the most negative finite value of
    the softmax dtype before a max-shifted softmax, and the weights of masked keys are then set
    to exactly 0, so no NaN or infinity appears in the values or in the gradients.

    The logits and the softmax are computed in at least float32 (bfloat16 inputs are upcast for
    them) and the weights are returned in the promoted dtype of ``q`` and ``k``.

    Args:
      q: queries ``(*batch, T_q, H, d_k)``.
      k: keys ``(*batch, T_k, H, d_k)``.
      mask: bool, True = may attend: a key padding mask ``(*batch, T_k)`` or a per-query mask
        ``(*batch, T_q, T_k)`` (shared by the heads).
      causal: also forbid keys after the query, :math:`j > i` (indices aligned at 0, as
        PyTorch's ``is_causal``).

    Returns:
      ``(*batch, H, T_q, T_k)``; each row sums to 1 (or is all zero if fully masked).

    Raises:
      ValueError: mismatched shapes of ``q``/``k`` (both printed), a non-bool mask or a mask of
        another shape.
    """
    q, k = jnp.asarray(q), jnp.asarray(k)
    _check_qkv(q, k, None)
    return _weights(q, k, mask, causal)


def _weights(q: jax.Array, k: jax.Array, mask: Any, causal: bool) -> jax.Array:
    compute = _promote(q.dtype, k.dtype)
    stats = _promote(compute, jnp.float32)
    scale = 1.0 / math.sqrt(q.shape[-1])
    q = q.astype(stats) * jnp.asarray(scale, stats)  # (*batch, T_q, H, d_k)
    logits = jnp.einsum("...qhd,...khd->...hqk", q, k.astype(stats))  # (*batch, H, T_q, T_k)
    allowed = _allowed(q, k, mask, causal)
    if allowed is None:
        return activations.softmax(logits, axis=-1).astype(compute)
    lowest = jnp.full(logits.shape, jnp.finfo(stats).min, stats)
    weights = activations.softmax(jnp.where(allowed, logits, lowest), axis=-1)
    return jnp.where(allowed, weights, jnp.zeros_like(weights)).astype(compute)


def scaled_dot_product_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    mask: jax.Array | None = None,
    causal: bool = False,
) -> jax.Array:
    r"""Scaled dot-product attention (Vaswani et al., 2017, eq. 1), heads kept separate.

    .. math::

        \mathrm{Attention}(q, k, v) = \mathrm{softmax}\!\left(\frac{q k^\top}{\sqrt{d_k}}
            + \log M\right) v, \qquad
        o_{bihe} = \sum_{j} A_{bhij}\, v_{bjhe}

    with :math:`A` of :func:`attention_weights` and :math:`M` the allowed (query, key) pairs;
    :math:`\log 0 = -\infty` is realised as the weight set to exactly 0. A query with no allowed
    key outputs zeros. Dividing by :math:`\sqrt{d_k}` keeps the logits' variance near 1 when the
    entries of ``q`` and ``k`` have unit variance, so the softmax does not saturate.

    Args:
      q: queries ``(*batch, T_q, H, d_k)``.
      k: keys ``(*batch, T_k, H, d_k)``.
      v: values ``(*batch, T_k, H, d_v)``.
      mask: bool, True = may attend: ``(*batch, T_k)`` (key padding) or ``(*batch, T_q, T_k)``.
      causal: forbid query ``i`` to attend to keys ``j > i``.

    Returns:
      ``(*batch, T_q, H, d_v)`` in the promoted dtype of ``q``, ``k`` and ``v``.

    Raises:
      ValueError: mismatched shapes (all three printed), a non-bool mask or a mask of another
        shape.

    Differs from PyTorch: ``torch.nn.functional.scaled_dot_product_attention`` takes
    ``(N, H, T, d)`` (heads before time) and, for a fully masked row, can return NaN (a softmax
    over only :math:`-\infty`); fdl returns 0.
    Its boolean ``attn_mask`` uses the same convention (True = take part in attention).

    >>> import jax.numpy as jnp
    >>> from fdl.nn.attention import scaled_dot_product_attention
    >>> q = jnp.zeros((2, 1, 1))                  # T_q=2, H=1, d_k=1: uniform weights
    >>> k = jnp.zeros((3, 1, 1))
    >>> v = jnp.array([1.0, 2.0, 6.0]).reshape(3, 1, 1)
    >>> scaled_dot_product_attention(q, k, v).ravel().tolist()
    [3.0, 3.0]
    >>> scaled_dot_product_attention(q, k, v, causal=True).ravel().tolist()
    [1.0, 1.5]
    """
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    _check_qkv(q, k, v)
    compute = _promote(_promote(q.dtype, k.dtype), v.dtype)
    weights = _weights(q, k, mask, causal).astype(compute)  # (*batch, H, T_q, T_k)
    return jnp.einsum("...hqk,...khd->...qhd", weights, v.astype(compute))  # (*batch, T_q, H, d_v)


# --------------------------------------------------------------------------------------------
# Multi-head self-attention.


def _check_heads(where: str, num_heads: int, features: int, from_input: bool) -> None:
    if features % num_heads == 0:
        return
    if from_input:
        raise ValueError(
            f"{where}: num_heads={num_heads} must divide the input width D={features} "
            "(qkv_features is None, so the heads split D); pass qkv_features or another num_heads"
        )
    raise ValueError(
        f"{where}: num_heads={num_heads} must divide qkv_features={features} (each head gets "
        "qkv_features / num_heads features)"
    )


def MultiHeadAttention(
    num_heads: int,
    *,
    qkv_features: int | None = None,
    out_features: int | None = None,
    causal: bool = False,
    dropout_rate: float = 0.0,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str = "multi_head_attention",
) -> Layer:
    r"""Multi-head self-attention over a sequence ``(T, D)`` (Vaswani et al., 2017, section 3.2.2).

    With :math:`F` = ``qkv_features``, :math:`H` heads of width :math:`d = F / H`, and head
    :math:`h` reading columns :math:`hd, \ldots, (h+1)d - 1` of the projections:

    .. math::

        Q = x W^Q + b^Q, \quad K = x W^K + b^K, \quad V = x W^V + b^V
            \qquad (T \times F,\ \text{split into } H \text{ blocks of } d)

        \mathrm{head}_h = \mathrm{softmax}\!\left(\frac{Q_h K_h^\top}{\sqrt{d}} + \log M\right)
            V_h, \qquad
        y = [\mathrm{head}_1, \ldots, \mathrm{head}_H]\, W^O + b^O

    :math:`M` holds the allowed pairs: the key padding mask (if ``(x, mask)`` is given) and
    :math:`j \le i` if ``causal``. With ``dropout_rate > 0`` the attention weights are dropped
    (inverted dropout) in training, which then needs ``key``.

    Shapes: ``x`` is ``(*batch, T, D)``, ``mask`` ``(*batch, T)``, ``y`` ``(*batch, T, out)``.

    Args:
      num_heads: :math:`H`.
      qkv_features: :math:`F`, the width of the queries, keys and values summed over heads;
        default the input width :math:`D`. Must be divisible by ``num_heads``.
      out_features: the output width; default :math:`D`.
      causal: each position attends only to itself and earlier positions.
      dropout_rate: drop probability of the attention weights in training.
      use_bias: add the biases :math:`b^Q, b^K, b^V, b^O`.
      w_init, b_init: initializers of every projection's ``w`` and ``b`` (default as
        :func:`~fdl.nn.Dense`: LeCun normal and zeros).
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the projections; ``None`` promotes input and parameters. The softmax runs
        in at least float32.
      name: the name shown in error messages.

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"query": {"w": (D, F), "b": (F,)}, "key": ...,
      "value": ..., "out": {"w": (F, out), "b": (out,)}}``. Given ``(x, mask)`` it returns
      ``(y, mask)``.

    Raises:
      ValueError: at construction, ``num_heads`` not dividing ``qkv_features`` (both named), or
        a bad count or rate; at ``init``, ``num_heads`` not dividing the input width when
        ``qkv_features`` is ``None``; an input not ``(..., T, D)``; a mask whose shape is not the
        input's without ``D``; training with dropout and no key.

    Differs from PyTorch / Flax: ``torch.nn.MultiheadAttention`` fuses the three input
    projections into one ``in_proj_weight (3F, D)``, stores ``(out, in)`` and is
    sequence-first unless ``batch_first=True``; its ``key_padding_mask`` uses True = *ignore*
    (the opposite of fdl's). Flax's ``MultiHeadDotProductAttention`` stores ``(D, H, d)`` kernels;
    fdl's ``(D, F)`` is the same numbers reshaped.

    >>> import jax, jax.numpy as jnp
    >>> from fdl.nn.attention import MultiHeadAttention
    >>> layer = MultiHeadAttention(2, causal=True)
    >>> params, state, shape = layer.init(jax.random.key(0), ((5, 4), (5,)))
    >>> shape, sorted(params), params["query"]["w"].shape
    (((5, 4), (5,)), ['key', 'out', 'query', 'value'], (4, 4))
    >>> x, mask = jnp.ones((3, 5, 4)), jnp.ones((3, 5), bool)
    >>> (y, mask), _ = layer.apply(params, state, (x, mask))
    >>> y.shape
    (3, 5, 4)
    """
    check_positive_int("num_heads", num_heads)
    where = f"MultiHeadAttention layer {name!r}"
    if qkv_features is not None:
        check_positive_int("qkv_features", qkv_features)
        _check_heads(where, num_heads, qkv_features, from_input=False)
    if out_features is not None:
        check_positive_int("out_features", out_features)
    dropout = Dropout(check_rate("dropout_rate", dropout_rate), name=f"{name}/attention_dropout")

    def dense(features: int, part: str) -> Layer:
        return Dense(
            features, use_bias=use_bias, w_init=w_init, b_init=b_init,
            param_dtype=param_dtype, dtype=dtype, name=f"{name}/{part}",
        )

    def init(key: jax.Array, input_shape: Any):
        shape, mask_shape = split_masked_shape(input_shape)
        check_sequence_shape(where, shape, mask_shape)
        length, width = shape
        features = qkv_features
        if features is None:
            features = width
            _check_heads(where, num_heads, features, from_input=True)
        out = width if out_features is None else out_features
        keys = jax.random.split(key, 4)
        params = {
            part: dense(features, part).init(k, shape)[0]
            for part, k in zip(("query", "key", "value"), keys[:3], strict=True)
        }
        params["out"] = dense(out, "out").init(keys[3], (length, features))[0]
        return params, {}, with_mask((length, out), mask_shape)

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False):
        x, mask = split_masked_input(where, x)
        width, features = params["query"]["w"].shape
        check_sequence_input(where, x, width)
        if mask is not None:
            check_mask(where, mask, x.shape[:-1])
        heads = x.shape[:-1] + (num_heads, features // num_heads)

        def project(part: str, h: jax.Array) -> jax.Array:
            return dense(features, part).apply(params[part], {}, h)[0]

        q = project("query", x).reshape(heads)  # (*batch, T, H, d)
        k = project("key", x).reshape(heads)  # (*batch, T, H, d)
        v = project("value", x).reshape(heads)  # (*batch, T, H, d)
        weights = _weights(q, k, mask, causal).astype(v.dtype)  # (*batch, H, T, T)
        weights, _ = dropout.apply({}, {}, weights, key=key, train=train)
        context = jnp.einsum("...hqk,...khd->...qhd", weights, v)  # (*batch, T, H, d)
        context = context.reshape(x.shape[:-1] + (features,))  # (*batch, T, F)
        out = params["out"]["w"].shape[1]
        y, _ = dense(out, "out").apply(params["out"], {}, context)  # (*batch, T, out)
        return with_mask(y, mask), state

    return Layer(init, apply, name)


# --------------------------------------------------------------------------------------------
# The pre-LayerNorm transformer encoder block.


def TransformerEncoderBlock(
    num_heads: int,
    mlp_features: int,
    *,
    qkv_features: int | None = None,
    dropout_rate: float = 0.0,
    attention_dropout_rate: float = 0.0,
    causal: bool = False,
    epsilon: float = 1e-5,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str = "transformer_encoder_block",
) -> Layer:
    r"""A pre-LayerNorm transformer encoder block (Xiong et al., 2020; GPT-2, ViT).

    .. math::

        h = x + \mathrm{Dropout}\big(\mathrm{MHA}(\mathrm{LN}_1(x))\big), \qquad
        y = h + \mathrm{Dropout}\big(\mathrm{gelu}(\mathrm{LN}_2(h)\, W_1 + b_1)\, W_2 + b_2\big)

    with :func:`MultiHeadAttention` (output width :math:`D`), layer norms over the feature axis,
    :math:`W_1` of shape ``(D, mlp_features)`` and :math:`W_2` ``(mlp_features, D)``, and the
    exact (erf) gelu. Putting the norm inside the residual branch leaves an identity path from
    input to output, so gradients at initialization are well scaled without learning-rate
    warm-up (the post-LN block of the original paper, :math:`\mathrm{LN}(x + \mathrm{MHA}(x))`,
    needs it).

    Every position is processed alone except in attention, so with ``causal=True`` output
    :math:`t` depends on inputs :math:`\le t` only, and with a mask real outputs do not depend on
    padded inputs.

    Shapes: ``x`` and ``y`` are ``(*batch, T, D)``; ``mask`` ``(*batch, T)``.

    Args:
      num_heads: attention heads; must divide ``qkv_features`` (default :math:`D`).
      mlp_features: the hidden width of the MLP (commonly :math:`4D`).
      qkv_features: the attention width :math:`F`; default :math:`D`.
      dropout_rate: drop probability on both residual branches' outputs, in training.
      attention_dropout_rate: drop probability on the attention weights, in training.
      causal: causal self-attention.
      epsilon: the layer norms' :math:`\epsilon`.
      use_bias, w_init, b_init: passed to every dense projection.
      param_dtype, dtype: passed to every sub-layer; the residual sums run in ``dtype`` (or
        the input's and parameters' promoted dtype).
      name: the name shown in error messages.

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"attention_norm": LayerNorm, "attention": MHA,
      "mlp_norm": LayerNorm, "mlp_hidden": Dense, "mlp_out": Dense}`` (each its sub-layer's
      dict). Given ``(x, mask)`` it returns ``(y, mask)``.

    Raises:
      ValueError: bad counts or rates, or ``num_heads`` not dividing ``qkv_features``
        (construction); an input not ``(..., T, D)``, ``num_heads`` not dividing ``D``, a bad
        mask, training with dropout and no key.

    Differs from PyTorch: ``torch.nn.TransformerEncoderLayer`` is post-LN by default
    (``norm_first=False``), uses relu and also drops inside the MLP (after the activation).

    >>> import jax, jax.numpy as jnp
    >>> from fdl.nn.attention import TransformerEncoderBlock
    >>> block = TransformerEncoderBlock(num_heads=2, mlp_features=16)
    >>> params, state, shape = block.init(jax.random.key(0), (5, 8))
    >>> y, _ = block.apply(params, state, jnp.ones((3, 5, 8)))
    >>> shape, y.shape
    ((5, 8), (3, 5, 8))
    """
    check_positive_int("num_heads", num_heads)
    check_positive_int("mlp_features", mlp_features)
    where = f"TransformerEncoderBlock layer {name!r}"
    attention_dropout_rate = check_rate("attention_dropout_rate", attention_dropout_rate)
    attention = MultiHeadAttention(
        num_heads, qkv_features=qkv_features, causal=causal, dropout_rate=attention_dropout_rate,
        use_bias=use_bias, w_init=w_init, b_init=b_init, param_dtype=param_dtype, dtype=dtype,
        name=f"{name}/attention",
    )
    norms = {
        part: LayerNorm(epsilon=epsilon, param_dtype=param_dtype, dtype=dtype, name=f"{name}/{part}")
        for part in ("attention_norm", "mlp_norm")
    }
    residual_dropout = Dropout(check_rate("dropout_rate", dropout_rate), name=f"{name}/dropout")
    dense = {
        "use_bias": use_bias, "w_init": w_init, "b_init": b_init,
        "param_dtype": param_dtype, "dtype": dtype,
    }
    hidden = Dense(mlp_features, name=f"{name}/mlp_hidden", **dense)

    def mlp_out(width: int) -> Layer:
        return Dense(width, name=f"{name}/mlp_out", **dense)

    def init(key: jax.Array, input_shape: Any):
        shape, mask_shape = split_masked_shape(input_shape)
        check_sequence_shape(where, shape, mask_shape)
        length, width = shape
        k_attn, k_norm1, k_norm2, k_hidden, k_out = jax.random.split(key, 5)
        params = {
            "attention_norm": norms["attention_norm"].init(k_norm1, shape)[0],
            "attention": attention.init(k_attn, shape)[0],
            "mlp_norm": norms["mlp_norm"].init(k_norm2, shape)[0],
            "mlp_hidden": hidden.init(k_hidden, shape)[0],
            "mlp_out": mlp_out(width).init(k_out, (length, mlp_features))[0],
        }
        return params, {}, with_mask(shape, mask_shape)

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False):
        x, mask = split_masked_input(where, x)
        width = params["mlp_hidden"]["w"].shape[0]
        check_sequence_input(where, x, width)
        if mask is not None:
            check_mask(where, mask, x.shape[:-1])
        k_attn, k_drop1, k_drop2 = split_key(key, 3)
        compute = dtype if dtype is not None else _promote(x.dtype, params["mlp_hidden"]["w"].dtype)
        x = x.astype(compute)  # (*batch, T, D)

        def sublayer(part: str, h: jax.Array) -> jax.Array:
            return norms[part].apply(params[part], {}, h)[0]

        attended, _ = attention.apply(
            params["attention"], {}, with_mask(sublayer("attention_norm", x), mask),
            key=k_attn, train=train,
        )
        attended = attended if mask is None else attended[0]  # (*batch, T, D)
        attended, _ = residual_dropout.apply({}, {}, attended, key=k_drop1, train=train)
        h = x + attended.astype(compute)  # (*batch, T, D)

        z, _ = hidden.apply(params["mlp_hidden"], {}, sublayer("mlp_norm", h))  # (*batch, T, M)
        z, _ = mlp_out(width).apply(params["mlp_out"], {}, activations.gelu(z))  # (*batch, T, D)
        z, _ = residual_dropout.apply({}, {}, z, key=k_drop2, train=train)
        return with_mask(h + z.astype(compute), mask), state

    return Layer(init, apply, name)
