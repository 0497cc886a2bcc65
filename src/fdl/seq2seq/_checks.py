"""Token and mask checks shared by :mod:`fdl.seq2seq`'s modules (a kernel)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["check_tokens", "check_mask"]


def check_tokens(name: str, tokens: Any) -> jax.Array:
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(
            f"`{name}` must be integer token ids (B, T), got dtype {tokens.dtype} and shape {tokens.shape}"
        )
    return tokens


def check_mask(name: str, mask: Any, like: jax.Array, like_name: str) -> jax.Array:
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_ or mask.shape != like.shape[:2]:
        raise ValueError(
            f"`{name}` must be a bool mask of the shape of `{like_name}`, {like.shape[:2]}, got dtype "
            f"{mask.dtype} and shape {mask.shape}"
        )
    return mask
