"""Row blocks: apply a function to consecutive blocks of rows one after the other.

The kernel behind :func:`fdl.distances.pairwise_reduce` and the assignment step of
:func:`fdl.clustering.kmeans`: it bounds how much of an ``(n, m)`` intermediate exists at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def map_row_blocks(fn: Callable[[jax.Array], Any], x: jax.Array, rows: int) -> Any:
    """``fn`` on each block of ``rows`` consecutive rows of ``x`` (``lax.map``), the outputs
    concatenated along their leading axis to length ``len(x)``.

    ``fn`` must treat rows independently and return a pytree of arrays whose leading axis is the
    block's rows: the last block is padded with copies of row 0, whose outputs are dropped.
    One block (``rows >= len(x)``) is a plain call.
    """
    n = x.shape[0]
    if rows >= n:
        return fn(x)
    blocks = -(-n // rows)
    padded = jnp.concatenate([x, jnp.broadcast_to(x[:1], (blocks * rows - n, *x.shape[1:]))])
    out = jax.lax.map(fn, padded.reshape(blocks, rows, *x.shape[1:]))
    return jax.tree.map(lambda a: a.reshape(blocks * rows, *a.shape[2:])[:n], out)
