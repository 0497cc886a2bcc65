r"""Attention: scaled dot-product attention and multi-head attention, self and cross.

Layout. Per example a sequence is ``(T, D)`` (time, features; channels last like every fdl
layer). Inside attention the heads are split off the feature axis, ``(T, H, d)``, with no
transpose: queries ``q`` are ``(*batch, T_q, H, d_k)``, keys ``k`` ``(*batch, T_k, H, d_k)``,
values ``v`` ``(*batch, T_k, H, d_v)``, attention weights ``(*batch, H, T_q, T_k)`` and the
output ``(*batch, T_q, H, d_v)`` (Flax's layout; PyTorch's ``scaled_dot_product_attention``
puts the heads before time, ``(N, H, T, d)``).

Masks (:mod:`fdl.nn.masking`). The padding mask is the ``mask=`` keyword of ``apply``, bool
``(*batch, T)``, True at a real position, which every combinator hands on. In self-attention it
masks the padded *keys*. Rows of padded *queries* are computed like any other (they attend to
the real keys) and are not zeroed: later layers and the loss should use the mask. A query with
no key left to attend to (every key padded, or padded keys before it under ``causal``) gets
all-zero weights and a zero output, never NaN.

:func:`MultiHeadAttention` is a composition of public layers: four :func:`~fdl.nn.Dense`
projections and a :func:`~fdl.nn.Dropout` on the weights, wired around :func:`attention_weights`
by :func:`fdl.nn.composite`. The transformer blocks built from it are in
:mod:`fdl.nn.transformer`.

References:
  Vaswani, Shazeer, Parmar, Uszkoreit, Jones, Gomez, Kaiser & Polosukhin (2017). Attention is
  all you need. NeurIPS.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes, activations, initializers
from fdl._checks import check_positive_int, check_rate
from fdl.nn._children import sow
from fdl.nn.composites import composite
from fdl.nn.dense import Dense
from fdl.nn.dropout import Dropout
from fdl.nn.layer import Layer, layer_factory
from fdl.nn.masking import (
    built_for_width,
    check_kv_mask,
    check_mask,
    check_sequence_input,
    split_attention_input,
    split_attention_shape,
)

__all__ = [
    "attention_weights",
    "scaled_dot_product_attention",
    "MultiHeadAttention",
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
    compute = _dtypes.promote_types(q.dtype, k.dtype)
    stats = _dtypes.promote_types(compute, jnp.float32)
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
    >>> from fdl.nn import scaled_dot_product_attention
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
    compute = _dtypes.promote_types(q.dtype, k.dtype, v.dtype)
    weights = _weights(q, k, mask, causal).astype(compute)  # (*batch, H, T_q, T_k)
    return jnp.einsum("...hqk,...khd->...qhd", weights, v.astype(compute))  # (*batch, T_q, H, d_v)


# --------------------------------------------------------------------------------------------
# Multi-head attention.

_KIND = "MultiHeadAttention"


def _check_heads(num_heads: int, features: int, from_input: bool) -> None:
    if features % num_heads == 0:
        return
    if from_input:
        raise ValueError(
            f"{_KIND}: num_heads={num_heads} must divide the query width D_q={features} "
            "(qkv_features is None, so the heads split D_q); pass qkv_features or another "
            "num_heads"
        )
    raise ValueError(
        f"{_KIND}: num_heads={num_heads} must divide qkv_features={features} (each head gets "
        "qkv_features / num_heads features)"
    )


@layer_factory
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
    name: str | None = None,
) -> Layer:
    r"""Multi-head attention (Vaswani et al., 2017, section 3.2.2): self-attention over ``x``, or
    cross-attention from queries ``x_q`` to keys/values ``x_kv``.

    With :math:`F` = ``qkv_features``, :math:`H` heads of width :math:`d = F / H`, and head
    :math:`h` reading columns :math:`hd, \ldots, (h+1)d - 1` of the projections:

    .. math::

        Q = x_q W^Q + b^Q, \quad K = x_{kv} W^K + b^K, \quad V = x_{kv} W^V + b^V
            \qquad (T \times F,\ \text{split into } H \text{ blocks of } d)

        \mathrm{head}_h = \mathrm{softmax}\!\left(\frac{Q_h K_h^\top}{\sqrt{d}} + \log M\right)
            V_h, \qquad
        y = [\mathrm{head}_1, \ldots, \mathrm{head}_H]\, W^O + b^O

    (:func:`attention_weights` and :func:`scaled_dot_product_attention` per head), with
    :math:`x_{kv} = x_q = x` in self-attention. :math:`M` holds the allowed (query, key) pairs:
    the key mask, and :math:`j \le i` if ``causal``. With ``dropout_rate > 0`` the attention
    weights are dropped (inverted dropout) in training, which then needs ``key``.

    Inputs and masks:

    * **Self-attention**: ``x`` ``(*batch, T, D)``, ``init`` shape ``(T, D)``. The ``mask=``
      keyword, bool ``(*batch, T)``, is the padding mask: padded positions are not attended to.
      For another mask per query, pass ``(x, x, kv_mask)`` (the same numbers, as cross-attention
      of ``x`` to itself).
    * **Cross-attention**: ``(x_q, x_kv)`` or ``(x_q, x_kv, kv_mask)``, ``x_q``
      ``(*batch, T_q, D_q)`` and ``x_kv`` ``(*batch, T_k, D_kv)`` (``D_kv`` may differ from
      ``D_q``, like torch's ``kdim``/``vdim``); ``init`` shape ``((T_q, D_q), (T_k, D_kv))``, or
      with a third entry ``(T_k,)`` / ``(T_q, T_k)`` for the mask. ``kv_mask`` (True = may
      attend) is a key padding mask ``(*batch, T_k)`` or a per-query mask ``(*batch, T_q, T_k)``
      shared by the heads; ``None`` allows every key. The ``mask=`` keyword is then the
      queries' padding mask ``(*batch, T_q)``: it is checked, and changes no output (a padded
      query row is computed like any other), so it can flow through a model unchanged.

    The output is ``(*batch, T_q, out)``.

    Args:
      num_heads: :math:`H`.
      qkv_features: :math:`F`, the width of the queries, keys and values summed over heads;
        default the query width :math:`D_q`. Must be divisible by ``num_heads``.
      out_features: the output width; default :math:`D_q`.
      causal: query :math:`i` attends only to keys :math:`j \le i` (indices aligned at 0, as
        torch's ``is_causal``).
      dropout_rate: drop probability of the attention weights in training.
      use_bias: add the biases :math:`b^Q, b^K, b^V, b^O`.
      w_init, b_init: initializers of every projection's ``w`` and ``b`` (default as
        :func:`~fdl.nn.Dense`: LeCun normal and zeros).
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the projections; ``None`` promotes input and parameters. The softmax runs
        in at least float32.
      name: its name in a parent's paths (automatic ``multi_head_attention_<i>`` if ``None``).

    Returns:
      A :class:`~fdl.nn.Layer` wired from the public layers ``query``, ``key``, ``value``
      (:func:`~fdl.nn.Dense` to :math:`F`), ``attention_dropout`` (:func:`~fdl.nn.Dropout` of
      the weights) and ``out`` (:func:`~fdl.nn.Dense` to ``out``), so ``params = {"query":
      {"w": (D_q, F), "b": (F,)}, "key": {"w": (D_kv, F), ...}, "value": ..., "out": {"w":
      (F, out), "b": (out,)}}``. The widths that default to :math:`D_q` are read from the input
      shape (:func:`fdl.nn.masking.built_for_width`). Its attention weights, before dropout,
      are sown as ``<its path>/attention_weights``, ``(*batch, H, T_q, T_k)``: read them with
      :func:`fdl.nn.capture` or :func:`fdl.attribution.attention_maps`.

    Raises:
      ValueError: at construction, ``num_heads`` not dividing ``qkv_features`` (both named), or
        a bad count or rate; at ``init``, ``num_heads`` not dividing :math:`D_q` when
        ``qkv_features`` is ``None``, or shapes other than the ones above; at ``apply``, inputs
        not floating ``(..., T, D)``, queries and keys with other batch axes, a mask whose shape
        does not fit the input (both shapes named) or is not bool, training with dropout and
        no key; a width other than ``init``'s (from the projection, ``layer 'query' (Dense)``).

    Differs from PyTorch / Flax: ``torch.nn.MultiheadAttention(D_q, H, kdim=D_kv, vdim=D_kv,
    batch_first=True)`` computes the same function (tested) with ``F = out = D_q`` fixed; it
    fuses the input projections into ``in_proj_weight (3F, D)`` (or ``q/k/v_proj_weight`` when
    ``kdim != D_q``), stores ``(out, in)``, and its masks use True = *ignore*: fdl's
    ``kv_mask`` is ``~key_padding_mask`` or ``~attn_mask``. It takes separate key and value
    inputs and per-head masks, and returns NaN rows for a fully masked query. Flax's
    ``MultiHeadDotProductAttention`` stores ``(D, H, d)`` kernels (fdl's ``(D, F)`` reshaped)
    and reads ``qkv_features``/``out_features`` from the input too.

    >>> import jax, jax.numpy as jnp
    >>> from fdl.nn import MultiHeadAttention
    >>> layer = MultiHeadAttention(2, causal=True)
    >>> params, state, shape = layer.init(jax.random.key(0), (5, 4))
    >>> shape, sorted(params), params["query"]["w"].shape
    ((5, 4), ['key', 'out', 'query', 'value'], (4, 4))
    >>> x, mask = jnp.ones((3, 5, 4)), jnp.ones((3, 5), bool)
    >>> layer.apply(params, state, x, mask=mask)[0].shape
    (3, 5, 4)
    >>> cross = MultiHeadAttention(2)
    >>> params, state, shape = cross.init(jax.random.key(0), ((5, 4), (7, 6), (7,)))
    >>> shape, params["key"]["w"].shape
    ((5, 4), (6, 4))
    >>> memory, memory_mask = jnp.ones((3, 7, 6)), jnp.ones((3, 7), bool)
    >>> cross.apply(params, state, (x, memory, memory_mask))[0].shape
    (3, 5, 4)
    """
    num_heads = check_positive_int("num_heads", num_heads)
    if qkv_features is not None:
        qkv_features = check_positive_int("qkv_features", qkv_features)
        _check_heads(num_heads, qkv_features, from_input=False)
    if out_features is not None:
        out_features = check_positive_int("out_features", out_features)
    dropout_rate = check_rate("dropout_rate", dropout_rate)
    dense = {
        "use_bias": use_bias,
        "w_init": w_init,
        "b_init": b_init,
        "param_dtype": param_dtype,
        "dtype": dtype,
    }

    def split_heads(h: jax.Array) -> jax.Array:
        return h.reshape(h.shape[:-1] + (num_heads, h.shape[-1] // num_heads))  # (*batch, T, H, d)

    def forward(call, inputs, *, train, mask):
        x_q, x_kv, kv_mask = split_attention_input(_KIND, inputs)
        x_q = check_sequence_input(_KIND, x_q, "inputs" if x_kv is None else "queries")
        if mask is not None:
            mask = check_mask(_KIND, mask, x_q.shape)
        if x_kv is None:  # self-attention: the padding mask hides the padded keys
            x_kv, allowed = x_q, mask
        else:  # cross-attention: the keys' own mask; the queries' mask changes no real output
            x_kv = check_sequence_input(_KIND, x_kv, "keys/values")
            if x_kv.shape[:-2] != x_q.shape[:-2]:
                raise ValueError(
                    f"{_KIND}: queries of shape {x_q.shape} and keys/values of shape "
                    f"{x_kv.shape} must have the same batch axes (*batch, T, D)"
                )
            allowed = kv_mask
            if kv_mask is not None:
                allowed = check_kv_mask(_KIND, kv_mask, x_q.shape, x_kv.shape)
        q = split_heads(call("query", x_q))  # (*batch, T_q, H, d)
        k = split_heads(call("key", x_kv))  # (*batch, T_k, H, d)
        v = split_heads(call("value", x_kv))  # (*batch, T_k, H, d)
        weights = _weights(q, k, allowed, causal)  # (*batch, H, T_q, T_k)
        sow("attention_weights", weights)  # read by fdl.nn.capture, fdl.attribution.attention_maps
        weights = weights.astype(v.dtype)
        weights = call("attention_dropout", weights, mask=None)
        context = jnp.einsum("...hqk,...khd->...qhd", weights, v)  # (*batch, T_q, H, d)
        heads, width = context.shape[-2:]
        context = context.reshape(context.shape[:-2] + (heads * width,))  # (*batch, T_q, F)
        return call("out", context)  # (*batch, T_q, out)

    def build(width: int) -> Layer:
        if qkv_features is None:
            _check_heads(num_heads, width, from_input=True)
        features = width if qkv_features is None else qkv_features
        children = {
            "query": Dense(features, name="query", **dense),
            "key": Dense(features, name="key", **dense),
            "value": Dense(features, name="value", **dense),
            "attention_dropout": Dropout(dropout_rate, name="attention_dropout"),
            "out": Dense(width if out_features is None else out_features, name="out", **dense),
        }
        return composite(children, forward, kind=_KIND)

    layer = built_for_width(_KIND, build)

    def init(key: jax.Array, input_shape: Any):
        split_attention_shape(_KIND, input_shape)  # clear errors before tracing
        return layer.init(key, input_shape)

    return Layer(init, layer.apply)
