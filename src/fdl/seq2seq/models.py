"""The two encoder–decoders, built from fdl's layers: LSTM and transformer."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import nn
from fdl._checks import check_positive_int
from fdl.seq2seq.decoding import decoder_block_cache, decoder_block_step
from fdl.seq2seq.training import EncoderDecoder

__all__ = ["lstm_encoder_decoder", "transformer_encoder_decoder"]

Params = Any


# ---------------------------------------------------------------------------------- the models


def _model(children: dict[str, nn.Layer], encoder: list[str], encode_fn, decode_fn, step, start, kind):
    """An :class:`EncoderDecoder` from named children and the two halves of its forward pass."""

    def forward(call, inputs, *, train, mask):
        source, source_mask, decoder_inputs = inputs
        return decode_fn(call, encode_fn(call, source, source_mask), source_mask, decoder_inputs)

    layer = nn.composite(children, forward, kind=kind)
    encoder_layer = nn.composite(
        {k: children[k] for k in encoder},
        lambda call, inputs, *, train, mask: encode_fn(call, *inputs),
        kind=f"{kind}.encoder",
    )
    decoder_layer = nn.composite(
        {k: v for k, v in children.items() if k not in encoder},
        lambda call, inputs, *, train, mask: decode_fn(call, *inputs),
        kind=f"{kind}.decoder",
    )

    def init(key: jax.Array) -> Params:
        ids, flags = jax.ShapeDtypeStruct((1,), jnp.int32), jax.ShapeDtypeStruct((1,), jnp.bool_)
        return layer.init(key, (ids, flags, ids))[0]

    def part(params: Params, names) -> Params:  # a half's own entries of the model's params
        return {k: params[k] for k in names if k in params}

    def encode(params, source, source_mask):
        return encoder_layer.apply(part(params, encoder), {}, (source, source_mask))[0]

    def decode(params, memory, source_mask, decoder_inputs):
        decoder = [k for k in children if k not in encoder]
        return decoder_layer.apply(part(params, decoder), {}, (memory, source_mask, decoder_inputs))[0]

    # jitted, so that a call outside jit (a test, a notebook) runs one compiled program per
    # shape instead of dispatching every operation; inside jit they are inlined as before
    return EncoderDecoder(init, jax.jit(encode), jax.jit(decode), start, step, layer)


def lstm_encoder_decoder(vocab_size: int, features: int, hidden_size: int) -> EncoderDecoder:
    r"""An LSTM encoder–decoder (Sutskever et al., 2014): the encoder's final state starts the
    decoder.

    .. math::

        (h^{e}_S, c^{e}_S) = \mathrm{LSTM}_{enc}(E_x x_1, \ldots, E_x x_S), \qquad
        (h_t, c_t) = \mathrm{LSTM}_{dec}\big((h_{t-1}, c_{t-1}),\ E_y\, y_{t-1}\big),\
            (h_0, c_0) = (h^e_S, c^e_S), \qquad
        z_t = h_t W + b

    with the gate equations of :func:`fdl.nn.LSTMCell`. Padded source steps leave the encoder's
    state unchanged (:func:`fdl.nn.Recurrent`'s mask), so the decoder starts from the state
    after the last real token. The decoding step is the decoder's own cell step.

    Children: ``source_embedding``, ``encoder`` (``Recurrent(LSTMCell(hidden_size))``),
    ``target_embedding``, ``decoder`` and ``head`` (``Dense(vocab_size)``). Sutskever et al.
    also reverse the source and stack four layers; this is one layer, reading in order.

    Raises:
      ValueError: a size that is not a positive int.

    >>> import jax, jax.numpy as jnp
    >>> from fdl.seq2seq import lstm_encoder_decoder, greedy_decode
    >>> model = lstm_encoder_decoder(vocab_size=7, features=8, hidden_size=16)
    >>> params = model.init(jax.random.key(0))
    >>> source = jnp.array([[3, 4, 5]])
    >>> tokens, logits = greedy_decode(model, params, source, source > 0, length=4, start_id=1)
    >>> tokens.shape, logits.shape, sorted(params)
    ((1, 4), (1, 4, 7), ['decoder', 'encoder', 'head', 'source_embedding', 'target_embedding'])
    """
    for name, value in (("vocab_size", vocab_size), ("features", features), ("hidden_size", hidden_size)):
        check_positive_int(name, value)
    cell = nn.LSTMCell(hidden_size)
    children = {
        "source_embedding": nn.Embedding(vocab_size, features, name="source_embedding"),
        "encoder": nn.Recurrent(cell, return_sequences=False, return_carry=True, name="encoder"),
        "target_embedding": nn.Embedding(vocab_size, features, name="target_embedding"),
        "decoder": nn.Recurrent(cell, name="decoder"),
        "head": nn.Dense(vocab_size, name="head"),
    }

    def encode_fn(call, source, source_mask):
        _, carry = call("encoder", call("source_embedding", source), mask=source_mask)  # (h, c)
        return carry

    def decode_fn(call, memory, source_mask, decoder_inputs):
        del source_mask  # the encoder's final state already stops at the last real token
        hidden = call("decoder", (call("target_embedding", decoder_inputs), memory), mask=None)  # (B, T, H)
        return call("head", hidden)  # (B, T, V)

    def start(params, memory, source_mask, length):
        del params, source_mask, length
        return memory

    def step(params, carry, tokens):
        x = children["target_embedding"].apply(params["target_embedding"], {}, tokens)[0]  # (B, F)
        carry, hidden = cell.step(params["decoder"], carry, x)  # (B, H)
        return children["head"].apply(params["head"], {}, hidden)[0], carry  # (B, V)

    return _model(children, ["source_embedding", "encoder"], encode_fn, decode_fn, step, start, "LSTMSeq2Seq")


def transformer_encoder_decoder(
    vocab_size: int,
    width: int,
    *,
    num_heads: int,
    mlp_features: int,
    num_layers: int,
    epsilon: float = 1e-5,
) -> EncoderDecoder:
    r"""A pre-LayerNorm transformer encoder–decoder (Vaswani et al., 2017).

    .. math::

        m = \mathrm{LN}\big(\mathrm{Enc}^{(N)} \circ \cdots \circ \mathrm{Enc}^{(1)}
            (E_x x + \mathrm{PE})\big), \qquad
        z = \mathrm{LN}\big(\mathrm{Dec}^{(N)}_m \circ \cdots \circ \mathrm{Dec}^{(1)}_m
            (E_y\, \mathrm{inputs} + \mathrm{PE})\big)\, W + b

    with :func:`fdl.nn.TransformerEncoderBlock` (self-attention under the source padding mask),
    :func:`fdl.nn.TransformerDecoderBlock` (causal self-attention, cross-attention to
    :math:`m` under the source mask), sinusoidal positions
    :math:`\mathrm{PE}` (:func:`fdl.nn.SinusoidalPositionalEncoding`) and final LayerNorms, as
    in pre-LN transformers. The decoding step runs each decoder block with
    :func:`decoder_block_step` on a key/value cache.

    Children: ``source_embedding``, ``source_position``, ``encoder_0`` ... ``encoder_{N-1}``,
    ``encoder_norm``, ``target_embedding``, ``target_position``, ``decoder_0`` ...,
    ``decoder_norm``, ``head``. No dropout (decoding is deterministic).

    Raises:
      ValueError: a size that is not a positive int; ``num_heads`` not dividing ``width`` (at
        ``init``, from the attention).

    >>> import jax, jax.numpy as jnp
    >>> from fdl.seq2seq import transformer_encoder_decoder, greedy_decode, greedy_decode_full
    >>> model = transformer_encoder_decoder(7, 8, num_heads=2, mlp_features=16, num_layers=1)
    >>> params = model.init(jax.random.key(0))
    >>> source = jnp.array([[3, 4, 5, 0]])
    >>> decode = jax.jit(lambda p: greedy_decode(model, p, source, source > 0, length=5, start_id=1))
    >>> redecode = jax.jit(lambda p: greedy_decode_full(model, p, source, source > 0, length=5, start_id=1))
    >>> (cached, _), (full, _) = decode(params), redecode(params)
    >>> bool((cached == full).all()), params["decoder_0"]["self_attention"]["key"]["w"].shape
    (True, (8, 8))
    """
    for name, value in (
        ("vocab_size", vocab_size),
        ("width", width),
        ("num_heads", num_heads),
        ("mlp_features", mlp_features),
        ("num_layers", num_layers),
    ):
        check_positive_int(name, value)
    encoders = [f"encoder_{i}" for i in range(num_layers)]
    decoders = [f"decoder_{i}" for i in range(num_layers)]
    children: dict[str, nn.Layer] = {
        "source_embedding": nn.Embedding(vocab_size, width, name="source_embedding"),
        "source_position": nn.SinusoidalPositionalEncoding(name="source_position"),
        **{k: nn.TransformerEncoderBlock(num_heads, mlp_features, epsilon=epsilon, name=k) for k in encoders},
        "encoder_norm": nn.LayerNorm(epsilon=epsilon, name="encoder_norm"),
        "target_embedding": nn.Embedding(vocab_size, width, name="target_embedding"),
        "target_position": nn.SinusoidalPositionalEncoding(name="target_position"),
        **{k: nn.TransformerDecoderBlock(num_heads, mlp_features, epsilon=epsilon, name=k) for k in decoders},
        "decoder_norm": nn.LayerNorm(epsilon=epsilon, name="decoder_norm"),
        "head": nn.Dense(vocab_size, name="head"),
    }

    def encode_fn(call, source, source_mask):
        h = call("source_position", call("source_embedding", source))  # (B, S, D)
        for k in encoders:
            h = call(k, h, mask=source_mask)
        return call("encoder_norm", h)  # (B, S, D)

    def decode_fn(call, memory, source_mask, decoder_inputs):
        h = call("target_position", call("target_embedding", decoder_inputs), mask=None)  # (B, T, D)
        for k in decoders:
            h = call(k, (h, memory, source_mask), mask=None)
        return call("head", call("decoder_norm", h, mask=None), mask=None)  # (B, T, V)

    def start(params, memory, source_mask, length):
        blocks = [decoder_block_cache(params[k], memory, length, num_heads=num_heads) for k in decoders]
        zeros = jnp.zeros((length, width), memory.dtype)  # (L, D)
        table, _ = children["target_position"].apply({}, {}, zeros)  # (L, D): the PE the model adds
        return {
            "blocks": blocks,
            "positions": table,
            "memory_mask": source_mask,
            "t": jnp.zeros((), jnp.int32),
        }

    def step(params, carry, tokens):
        t = carry["t"]
        x, _ = children["target_embedding"].apply(
            params["target_embedding"], {}, tokens[:, None]
        )  # (B, 1, D)
        pe = jax.lax.dynamic_slice_in_dim(carry["positions"], t, 1, axis=0)  # (1, D)
        x = x + jnp.broadcast_to(pe, x.shape)
        blocks = []
        for k, cache in zip(decoders, carry["blocks"], strict=True):
            x, cache = decoder_block_step(
                params[k], cache, x, t, carry["memory_mask"], num_heads=num_heads, epsilon=epsilon
            )
            blocks.append(cache)
        h = children["decoder_norm"].apply(params["decoder_norm"], {}, x)[0]
        logits = children["head"].apply(params["head"], {}, h)[0][:, 0]  # (B, V)
        return logits, {**carry, "blocks": blocks, "t": t + 1}

    return _model(children, ["source_embedding", "source_position", *encoders, "encoder_norm"],
                  encode_fn, decode_fn, step, start, "TransformerSeq2Seq")  # fmt: skip
