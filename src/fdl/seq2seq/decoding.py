"""Greedy decoding, incremental (a cache) and by re-running the prefix, and the transformer decoder block's cached step."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import nn
from fdl._checks import check_non_negative_int, check_positive_int
from fdl.seq2seq._checks import check_mask, check_tokens
from fdl.seq2seq.training import EncoderDecoder

__all__ = ["greedy_decode", "greedy_decode_full", "decoder_block_cache", "decoder_block_step"]

Params = Any


# ----------------------------------------------------------------------------------- decoding


def _check_decode_args(model: Any, source: Any, source_mask: Any, length: Any, start_id: Any):
    if not isinstance(model, EncoderDecoder):
        raise TypeError(f"`model` must be an fdl.seq2seq.EncoderDecoder, got {type(model).__name__}")
    source = check_tokens("source", source)
    source_mask = check_mask("source_mask", source_mask, source, "source")
    length = check_positive_int("length", length)
    start_id = check_non_negative_int("start_id", start_id)
    return source, source_mask


def greedy_decode(
    model: EncoderDecoder,
    params: Params,
    source: jax.Array,
    source_mask: jax.Array,
    *,
    length: int,
    start_id: int,
) -> tuple[jax.Array, jax.Array]:
    r"""Greedy incremental decoding: each step feeds the previous argmax back to ``model.step``.

    .. math::

        \hat y_0 = \langle s\rangle, \qquad
        z_t = f_\theta(\mathrm{enc}_\theta(x),\ \hat y_{<t}), \qquad
        \hat y_t = \arg\max_v z_{t,v} \qquad (t = 1, \ldots, \mathrm{length})

    The encoder runs once; each step is one ``model.step`` on the carried state (the LSTM's
    ``(h, c)``, the transformer's key/value cache), inside one ``jax.lax.scan``. All ``length``
    steps run (no early stop at an end token: the caller masks what follows it).

    Args:
      model: an :class:`EncoderDecoder`.
      params: its parameters.
      source: int ``(B, S)``; source_mask: bool ``(B, S)``.
      length: the number of tokens to decode.
      start_id: the begin-of-sequence id fed first.

    Returns:
      ``(tokens, logits)``: int32 ``(B, length)`` and ``(B, length, V)``.

    Raises:
      TypeError: ``model`` not an :class:`EncoderDecoder`.
      ValueError: bad token or mask shapes or dtypes, a bad ``length`` or ``start_id``.
    """
    source, source_mask = _check_decode_args(model, source, source_mask, length, start_id)
    memory = model.encode(params, source, source_mask)
    carry = model.start(params, memory, source_mask, length)
    first = jnp.full((source.shape[0],), start_id, jnp.int32)  # (B,)

    def body(state, _):
        carry, tokens = state
        logits, carry = model.step(params, carry, tokens)  # (B, V)
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # (B,)
        return (carry, tokens), (tokens, logits)

    _, (tokens, logits) = jax.lax.scan(body, (carry, first), None, length=length)
    return tokens.T, jnp.moveaxis(logits, 0, 1)  # (B, L), (B, L, V)


def greedy_decode_full(
    model: EncoderDecoder,
    params: Params,
    source: jax.Array,
    source_mask: jax.Array,
    *,
    length: int,
    start_id: int,
) -> tuple[jax.Array, jax.Array]:
    r"""Greedy decoding by re-running the whole decoder on the prefix at every step.

    The same :math:`\hat y_t = \arg\max_v f_\theta(\mathrm{enc}_\theta(x), \hat y_{<t})_v` as
    :func:`greedy_decode`, computed as ``model.decode(params, memory, source_mask,
    prefix)[:, -1]`` on the growing prefix :math:`(\langle s\rangle, \hat y_1, \ldots,
    \hat y_{t-1})`: no cache, so step :math:`t` costs a decoder pass over :math:`t` positions.
    The reference the cached decoding is tested against, and its timing baseline. The Python
    loop unrolls into ``length`` decoder calls of growing shapes (under ``jit``, one program).

    Args, Returns, Raises: as :func:`greedy_decode`.
    """
    source, source_mask = _check_decode_args(model, source, source_mask, length, start_id)
    memory = model.encode(params, source, source_mask)
    prefix = jnp.full((source.shape[0], 1), start_id, jnp.int32)  # (B, 1)
    all_logits = []
    for _ in range(length):
        logits = model.decode(params, memory, source_mask, prefix)[:, -1]  # (B, V)
        all_logits.append(logits)
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # (B,)
        prefix = jnp.concatenate([prefix, tokens[:, None]], axis=1)  # (B, t + 1)
    return prefix[:, 1:], jnp.stack(all_logits, axis=1)  # (B, L), (B, L, V)


# ------------------------------------------------------------- the decoder block, one step


def _dense(params: dict, x: jax.Array) -> jax.Array:
    """``x W + b`` by :func:`fdl.nn.Dense` (the layer the block's projections are)."""
    layer = nn.Dense(params["w"].shape[-1], use_bias="b" in params)
    return layer.apply(params, {}, x)[0]


def _heads(x: jax.Array, num_heads: int) -> jax.Array:
    return x.reshape(x.shape[:-1] + (num_heads, x.shape[-1] // num_heads))  # (B, T, H, d)


def _merge(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],))  # (B, T, H d)


_BLOCK_PARTS = (
    "self_attention_norm",
    "self_attention",
    "cross_attention_norm",
    "cross_attention",
    "mlp_norm",
)


def _check_heads(params: Any, num_heads: int) -> None:
    num_heads = check_positive_int("num_heads", num_heads)
    missing = [
        k for k in (*_BLOCK_PARTS, "mlp_hidden", "mlp_out") if not isinstance(params, dict) or k not in params
    ]
    if missing:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(
            f"`params` must be a TransformerDecoderBlock's parameters (with {list(_BLOCK_PARTS)}, ...), "
            f"missing {missing}; got {got}"
        )
    features = params["self_attention"]["query"]["w"].shape[-1]
    if features % num_heads:
        raise ValueError(
            f"`num_heads`={num_heads} must divide the attention width {features} of these "
            "TransformerDecoderBlock parameters"
        )


def decoder_block_cache(params: dict, memory: jax.Array, length: int, *, num_heads: int) -> dict:
    r"""The empty key/value cache of one :func:`fdl.nn.TransformerDecoderBlock` for decoding
    ``length`` positions, with the cross-attention's keys and values of ``memory`` computed once.

    .. math::

        K^{m} = m\, W^K_{\mathrm{cross}} + b^K_{\mathrm{cross}}, \qquad
        V^{m} = m\, W^V_{\mathrm{cross}} + b^V_{\mathrm{cross}}

    (split into heads) and zero self-attention buffers of ``length`` positions.

    Args:
      params: the block's parameters (as its ``init`` returned them).
      memory: the encoder output ``(B, S, D_m)``.
      length: positions to decode.
      num_heads: the block's heads.

    Returns:
      ``{"key", "value"}`` ``(B, length, H, d)`` zeros and ``{"memory_key",
      "memory_value"}`` ``(B, S, H, d)``.

    Raises:
      ValueError: ``params`` not a decoder block's, ``length`` or ``num_heads`` not a positive
        int, or ``num_heads`` not dividing the attention width.
    """
    length = check_positive_int("length", length)
    _check_heads(params, num_heads)
    cross = params["cross_attention"]
    memory_key = _heads(_dense(cross["key"], memory), num_heads)  # (B, S, H, d)
    memory_value = _heads(_dense(cross["value"], memory), num_heads)  # (B, S, H, d)
    self_attention = params["self_attention"]
    features = self_attention["key"]["w"].shape[-1]
    dtype = jnp.result_type(memory_key.dtype, self_attention["key"]["w"].dtype)
    buffer = jnp.zeros((memory.shape[0], length, num_heads, features // num_heads), dtype)  # (B, L, H, d)
    return {"key": buffer, "value": buffer, "memory_key": memory_key, "memory_value": memory_value}


def decoder_block_step(
    params: dict,
    cache: dict,
    x: jax.Array,
    t: jax.Array,
    memory_mask: jax.Array | None,
    *,
    num_heads: int,
    epsilon: float = 1e-5,
) -> tuple[jax.Array, dict]:
    r"""One position of :func:`fdl.nn.TransformerDecoderBlock`, from its parameters and a
    key/value cache: the block's output at position :math:`t` without re-reading the prefix.

    With :math:`a = \mathrm{LN}_1(x_t)` (the block's ``self_attention_norm``):

    .. math::

        K_{t} \leftarrow a W^K + b^K, \quad V_{t} \leftarrow a W^V + b^V
            \quad (\text{written into the cache}), \\
        h_1 = x_t + \mathrm{softmax}\!\Big(\frac{(a W^Q + b^Q) K_{\le t}^\top}{\sqrt d}\Big)
            V_{\le t}\, W^O + b^O, \\
        h_2 = h_1 + \mathrm{MHA}\big(\mathrm{LN}_2(h_1),\ K^m, V^m\big), \qquad
        y_t = h_2 + \mathrm{gelu}(\mathrm{LN}_3(h_2) W_1 + b_1) W_2 + b_2

    per head, which is row :math:`t` of the block (built with ``causal=True``, its default):
    position :math:`t`
    attends to keys :math:`\le t`, and the keys and values of earlier positions do not change
    when later ones arrive (Vaswani et al., 2017, section 3.2.3). The pieces are the public
    layers the block is made of (:func:`fdl.nn.LayerNorm`, :func:`fdl.nn.Dense`,
    :func:`fdl.nn.scaled_dot_product_attention`, :func:`fdl.nn.Gelu`) applied to the block's
    parameter tree (``self_attention/query``, ``cross_attention/key``, ``mlp_hidden``, ...),
    so it is the block's function (tested equal, position by position, to ``block.apply``).
    Inference only: no dropout.

    Args:
      params: the block's parameters.
      cache: from :func:`decoder_block_cache` (or the previous step).
      x: the block's input at position ``t``, ``(B, 1, D)``.
      t: the position, an int32 scalar (traced is fine), ``0 <= t < length``.
      memory_mask: bool ``(B, S)`` (True = may attend) or ``None``.
      num_heads: the block's heads.
      epsilon: the block's LayerNorm epsilon.

    Returns:
      ``(y, cache)``: ``y`` ``(B, 1, D)`` and the cache with position ``t`` written.

    Raises:
      ValueError: ``params`` not a decoder block's, ``num_heads`` not a positive int dividing
        the attention width or not the cache's head count. (``t`` may be traced, so it is not
        checked: a ``t`` outside ``[0, length)`` is clamped by ``dynamic_update_slice``.)
    """
    _check_heads(params, num_heads)
    if cache["key"].shape[2] != num_heads:
        raise ValueError(
            f"`num_heads`={num_heads} is not the head count the cache was built for, "
            f"{cache['key'].shape[2]} (its keys are (B, L, H, d) = {cache['key'].shape})"
        )
    norm = nn.LayerNorm(epsilon=epsilon)
    gelu = nn.Gelu()

    def layer_norm(name: str, h: jax.Array) -> jax.Array:
        return norm.apply(params[name], {}, h)[0]

    def attend(p: dict, h: jax.Array, keys: jax.Array, values: jax.Array, mask: Any) -> jax.Array:
        q = _heads(_dense(p["query"], h), num_heads)  # (B, 1, H, d)
        context = nn.scaled_dot_product_attention(q, keys, values, mask=mask)  # (B, 1, H, d)
        return _dense(p["out"], _merge(context))  # (B, 1, D)

    self_attention = params["self_attention"]
    a = layer_norm("self_attention_norm", x)  # (B, 1, D)
    k_t = _heads(_dense(self_attention["key"], a), num_heads)  # (B, 1, H, d)
    v_t = _heads(_dense(self_attention["value"], a), num_heads)  # (B, 1, H, d)
    keys = jax.lax.dynamic_update_slice_in_dim(cache["key"], k_t.astype(cache["key"].dtype), t, axis=1)
    values = jax.lax.dynamic_update_slice_in_dim(cache["value"], v_t.astype(cache["value"].dtype), t, axis=1)
    length = keys.shape[1]
    seen = jnp.broadcast_to(jnp.arange(length) <= t, (x.shape[0], length))  # (B, L): keys <= t
    branch = attend(self_attention, a, keys, values, seen)
    h = x.astype(branch.dtype) + branch  # (B, 1, D)
    branch = attend(
        params["cross_attention"],
        layer_norm("cross_attention_norm", h),
        cache["memory_key"],
        cache["memory_value"],
        memory_mask,
    )
    h = h.astype(branch.dtype) + branch
    z = _dense(params["mlp_hidden"], layer_norm("mlp_norm", h))  # (B, 1, M)
    branch = _dense(params["mlp_out"], gelu.apply({}, {}, z)[0])  # (B, 1, D)
    return h.astype(branch.dtype) + branch, {**cache, "key": keys, "value": values}
