"""What the recurrent layers share: the cell check, the ``(x, initial_carry)`` input and
carry shapes (a kernel module)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl.nn.cells import Cell


def check_cell(where: str, arg: str, cell: Any) -> Cell:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{where}: `{arg}` must be a fdl.nn.Cell (RNNCell(H), LSTMCell(H), GRUCell(H) or "
            f"Cell(init, step, initial_carry)), got {cell!r}"
        )
    return cell


def shapes(tree: Any) -> Any:
    """The shapes of a tree of arrays (or ``ShapeDtypeStruct``\\ s), as a tree of tuples."""
    return jax.tree.map(lambda a: tuple(jnp.shape(a)), tree)


def split_input(kind: str, x: Any) -> tuple[Any, Any]:
    """``x`` or ``(x, initial_carry)`` -> ``(x, initial_carry or None)``."""
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(
                f"{kind} takes x or the pair (x, initial_carry), got a {type(x).__name__} of length {len(x)}"
            )
        return x[0], x[1]
    return x, None
