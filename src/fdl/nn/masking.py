r"""Padding masks and the inputs of the sequence layers, in one place.

A padding mask is a bool array ``(*batch, T)``, True at a real position, for inputs
``(*batch, T, D)``. It is not part of the input: it is the ``mask=`` keyword of ``apply``, which
every combinator hands to its children like ``key`` (:mod:`fdl.nn.layer`), so it reaches every
layer of ``Serial(Embedding(...), SinusoidalPositionalEncoding(), TransformerEncoderBlock(...))``
with no wiring. Layers that act on each position alone (``Dense``, ``LayerNorm``, ``Dropout``,
the embeddings) ignore it; the layers that mix positions (attention, recurrent layers, pooling
over time) check it with :func:`check_mask` and use it.

Attention with two sequences (cross-attention) takes the tuple ``(x_q, x_kv)`` or
``(x_q, x_kv, kv_mask)``, and ``init`` the tuple of their shapes
``((T_q, D_q), (T_k, D_kv))`` or ``((T_q, D_q), (T_k, D_kv), mask_shape)``: the threaded
``mask`` is the padding mask of the queries, the sequence that flows through the model, and the
mask of the keys travels with them (:func:`split_attention_input`).

>>> import jax.numpy as jnp
>>> from fdl.nn import padding_mask
>>> padding_mask(jnp.array([3, 1]), 4).tolist()
[[True, True, True, False], [True, False, False, False]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_positive_int, check_shape
from fdl.nn._children import is_shape
from fdl.nn.layer import Layer, Shape

# The public API is padding_mask (also fdl.nn.padding_mask); the other functions are the
# shared checks of the sequence layers in fdl.nn, not part of the API.
__all__ = ["padding_mask"]


def padding_mask(lengths: jax.Array, length: int) -> jax.Array:
    r"""The padding mask of sequences of the given ``lengths``, padded at the end to ``length``.

    .. math::

        m_{\ldots t} = [\, t < \mathrm{lengths}_{\ldots} \,], \qquad t = 0, \ldots, T - 1

    Args:
      lengths: integer ``(*batch,)``, the number of real positions of each sequence.
      length: :math:`T`, the padded length.

    Returns:
      bool ``(*batch, T)``, True at the real positions.

    Raises:
      ValueError: ``length`` not a positive int.
    """
    length = check_positive_int("length", length)
    lengths = jnp.asarray(lengths)
    shape = lengths.shape + (length,)
    positions = jnp.broadcast_to(jnp.arange(length), shape)  # (*batch, T)
    return positions < jnp.broadcast_to(lengths[..., None], shape)  # (*batch, T)


def check_mask(kind: str, mask: Any, x_shape: Shape) -> jax.Array:
    """``mask`` as an array, if it is a bool padding mask ``(*batch, T)`` for an input
    ``(*batch, T, D)`` of shape ``x_shape``; else a ``ValueError`` naming both shapes."""
    mask = jnp.asarray(mask)
    expected = tuple(x_shape[:-1])
    if mask.dtype != jnp.bool_:
        raise ValueError(f"{kind}: `mask` must be bool (True = real position), got dtype {mask.dtype}")
    if tuple(mask.shape) != expected:
        raise ValueError(
            f"{kind}: `mask` of shape {tuple(mask.shape)} does not fit the input of shape "
            f"{tuple(x_shape)}: expected (*batch, T) = {expected}"
        )
    return mask


def check_kv_mask(kind: str, kv_mask: Any, q_shape: Shape, kv_shape: Shape) -> jax.Array:
    """``kv_mask`` as an array, if it is a bool key padding mask ``(*batch, T_k)`` or a
    per-query mask ``(*batch, T_q, T_k)`` for queries ``(*batch, T_q, D_q)`` and keys/values
    ``(*batch, T_k, D_kv)``; else a ``ValueError`` naming the three shapes."""
    kv_mask = jnp.asarray(kv_mask)
    batch, t_q, t_k = tuple(q_shape[:-2]), q_shape[-2], kv_shape[-2]
    if kv_mask.dtype != jnp.bool_:
        raise ValueError(
            f"{kind}: the key/value mask must be bool (True = may attend), got dtype {kv_mask.dtype}"
        )
    if tuple(kv_mask.shape) not in (batch + (t_k,), batch + (t_q, t_k)):
        raise ValueError(
            f"{kind}: the key/value mask of shape {tuple(kv_mask.shape)} does not fit queries "
            f"of shape {tuple(q_shape)} and keys/values of shape {tuple(kv_shape)}: expected "
            f"(*batch, T_k) = {batch + (t_k,)} or (*batch, T_q, T_k) = {batch + (t_q, t_k)}"
        )
    return kv_mask


def sequence_shape(kind: str, shape: Any) -> Shape:
    """``shape`` as a tuple if it is a per-example sequence shape ``(T, D)``, else a
    ``ValueError``."""
    shape = check_shape("input_shape", shape)
    if len(shape) != 2:
        raise ValueError(f"{kind} expects per-example inputs of shape (T, D), got input_shape {shape}")
    return shape


def check_sequence_input(kind: str, x: Any, what: str = "inputs") -> jax.Array:
    """``x`` as an array if it is a floating-point ``(..., T, D)``, else a ``ValueError``."""
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{kind} expects {what} of shape (..., T, D), got shape {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{kind} expects floating-point {what}, got dtype {x.dtype}")
    return x


def split_attention_shape(kind: str, input_shape: Any) -> tuple[Shape, Shape | None, Any]:
    """``(q_shape, kv_shape, mask_shape)`` of an attention layer's ``init`` input shape.

    ``(T, D)`` is self-attention (``kv_shape`` and ``mask_shape`` ``None``);
    ``((T_q, D_q), (T_k, D_kv))`` and ``((T_q, D_q), (T_k, D_kv), mask_shape)`` are
    cross-attention, ``mask_shape`` ``(T_k,)``, ``(T_q, T_k)``, ``None`` or a
    ``jax.ShapeDtypeStruct`` of one of them.
    """
    if is_shape(input_shape):
        return sequence_shape(kind, input_shape), None, None
    if isinstance(input_shape, (tuple, list)) and len(input_shape) in (2, 3):
        q_shape = sequence_shape(kind, input_shape[0])
        kv_shape = sequence_shape(kind, input_shape[1])
        mask_shape = input_shape[2] if len(input_shape) == 3 else None
        if mask_shape is not None:
            got = mask_shape.shape if isinstance(mask_shape, jax.ShapeDtypeStruct) else mask_shape
            if not is_shape(got) or tuple(got) not in (kv_shape[:1], (q_shape[0], kv_shape[0])):
                raise ValueError(
                    f"{kind}: the key/value mask shape {got!r} does not fit queries of shape "
                    f"{q_shape} and keys/values of shape {kv_shape}: expected (T_k,) = "
                    f"{kv_shape[:1]} or (T_q, T_k) = {(q_shape[0], kv_shape[0])}"
                )
        return q_shape, kv_shape, mask_shape
    raise ValueError(
        f"{kind} expects input_shape (T, D) for self-attention, or ((T_q, D_q), (T_k, D_kv)) "
        f"or ((T_q, D_q), (T_k, D_kv), mask_shape) for cross-attention, got {input_shape!r}"
    )


def split_attention_input(kind: str, x: Any) -> tuple[jax.Array, jax.Array | None, Any]:
    """``(x_q, x_kv, kv_mask)`` of an attention layer's input: an array ``x`` is
    self-attention (``(x, None, None)``); ``(x_q, x_kv)`` or ``(x_q, x_kv, kv_mask)`` is
    cross-attention (``kv_mask`` possibly ``None``)."""
    if isinstance(x, (tuple, list)):
        if len(x) not in (2, 3):
            raise ValueError(
                f"{kind} takes x (self-attention), (x_q, x_kv) or (x_q, x_kv, kv_mask) "
                f"(cross-attention), got a {type(x).__name__} of {len(x)} entries"
            )
        return x[0], x[1], x[2] if len(x) == 3 else None
    return x, None, None


def with_bool_mask_shape(input_shape: Any) -> Any:
    """``input_shape`` with a plain mask shape, the third entry of a cross-attention triple, as
    a bool ``jax.ShapeDtypeStruct``: :func:`fdl.nn.composite` traces ``init`` on abstract
    inputs, float32 unless told otherwise."""
    if (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and not is_shape(input_shape)
        and is_shape(input_shape[2])
    ):
        mask = jax.ShapeDtypeStruct(tuple(input_shape[2]), jnp.bool_)
        return (input_shape[0], input_shape[1], mask)
    return input_shape


def _first_width(kind: str, x: Any) -> int:
    """The last axis of ``x``, or of its first entry: a shape, an array or a tuple of them."""
    while isinstance(x, (tuple, list)) and x and not is_shape(x):
        x = x[0]
    shape = tuple(x) if is_shape(x) else tuple(getattr(x, "shape", jnp.shape(x)))
    if len(shape) < 1:
        raise ValueError(f"{kind} expects inputs with a feature axis (..., D), got shape {shape}")
    return shape[-1]


def built_for_width(kind: str, build: Callable[[int], Layer]) -> Layer:
    """The layer ``build(D)``, with ``D`` the width (last axis) of the input, or of its first
    entry for a tuple input, read from the static shapes at ``init`` and at ``apply``.

    For composites whose sub-layers' widths default to the input's (the output projection of
    attention, the second dense layer of a transformer's MLP): ``build`` wires the public layers
    for a known width, and this defers the choice to the shapes, as Flax's modules read widths
    from their inputs. ``build`` runs at ``init`` and at every trace of ``apply``: it must be
    pure and cheap (construct layers, compute nothing). A plain mask shape in a cross-attention
    triple is given to ``init`` as a bool ``jax.ShapeDtypeStruct``.
    """

    def init(key: jax.Array, input_shape: Any):
        return build(_first_width(kind, input_shape)).init(key, with_bool_mask_shape(input_shape))

    def apply(params, state, x, *, key=None, train=False, mask=None):
        return build(_first_width(kind, x)).apply(params, state, x, key=key, train=train, mask=mask)

    return Layer(init, apply)
