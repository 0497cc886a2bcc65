r"""The bidirectional recurrent layer: two :func:`~fdl.nn.Recurrent` scans, one reversed,
merged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from fdl._checks import check_bool, check_choice
from fdl.nn._rnn import check_cell, shapes, split_input
from fdl.nn.cells import Cell
from fdl.nn.composites import composite
from fdl.nn.layer import Layer, layer_factory
from fdl.nn.recurrent import Recurrent

__all__ = ["Bidirectional"]


@layer_factory
def Bidirectional(
    forward: Cell,
    backward: Cell | None = None,
    *,
    merge: str = "concat",
    return_sequences: bool = True,
    return_carry: bool = False,
    name: str | None = None,
) -> Layer:
    r"""Read the sequence in both directions with two cells and merge their outputs.

    .. math::

        \overrightarrow{h}_t = \overrightarrow{\mathrm{cell}}(\overrightarrow{h}_{t-1}, x_t),
        \qquad
        \overleftarrow{h}_t = \overleftarrow{\mathrm{cell}}(\overleftarrow{h}_{t+1}, x_t),
        \qquad
        y_t = [\overrightarrow{h}_t; \overleftarrow{h}_t] \ \text{(concat)} \ \text{or} \
        \overrightarrow{h}_t + \overleftarrow{h}_t \ \text{(sum)}

    A composite of two :func:`Recurrent` layers named ``forward`` and ``backward`` (the second
    with ``reverse=True``), so :math:`y_t` sees the whole sequence and the parameters are
    ``{"forward": ..., "backward": ...}``. With ``mask`` (keyword, ``(*batch, T)``) the backward
    cell starts at each sequence's *last real step*, not at the end of the padded array: padded
    steps are skipped in both directions (carry kept, output 0), so a right-padded sequence is
    reversed within its own length and the result equals running each sequence alone (tested).

    Inputs: ``x`` or ``(x, (carry_forward, carry_backward))``. Output: ``(*batch, T, H_f + H_b)``
    (concat) or ``(*batch, T, H)`` (sum); with ``return_sequences=False`` the merge of the two
    last outputs, ``(*batch, H_f + H_b)`` or ``(*batch, H)``: the forward one after the last real
    step and the backward one after the first. With ``return_carry=True``, the pair
    ``(y, (carry_forward, carry_backward))`` of final carries.

    Args:
      forward: the cell reading left to right.
      backward: the cell reading right to left; default ``forward`` (with its own parameters).
      merge: ``"concat"`` (forward first) or ``"sum"`` (equal hidden sizes).
      return_sequences: return every step (else the merged last outputs).
      return_carry: also return both final carries.
      name: its name in a parent's paths.

    Raises:
      TypeError: ``forward``/``backward`` not cells.
      ValueError: an unknown ``merge``; ``"sum"`` with unequal output sizes (at ``init``); an
        initial carry that is not a pair; the input errors of :func:`Recurrent`.

    Differs from PyTorch: ``bidirectional=True`` in ``torch.nn.LSTM`` concatenates the same way
    (forward first), but reverses each sequence within its length only when given a
    ``PackedSequence``; a padded tensor is reversed as a whole, padding first.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.Bidirectional(fdl.nn.GRUCell(3))
    >>> params, state, shape = layer.init(jax.random.key(0), (5, 2))
    >>> shape, sorted(params)
    ((5, 6), ['backward', 'forward'])
    >>> y, _ = layer.apply(params, state, jnp.ones((5, 2)), mask=jnp.arange(5) < 3)
    >>> y.shape, y[3:].tolist() == [[0.0] * 6] * 2
    ((5, 6), True)
    """
    check_cell("Bidirectional", "forward", forward)
    backward = forward if backward is None else check_cell("Bidirectional", "backward", backward)
    check_choice("merge", merge, ("concat", "sum"))
    check_bool("return_sequences", return_sequences)
    check_bool("return_carry", return_carry)
    flags = {"return_sequences": return_sequences, "return_carry": return_carry}
    children = {
        "forward": Recurrent(forward, **flags),
        "backward": Recurrent(backward, reverse=True, **flags),
    }

    def run(call: Callable[..., Any], x: Any, *, train: bool, mask: Any) -> Any:
        carries: Any = (None, None)
        if isinstance(x, (tuple, list)):
            x, carries = split_input("Bidirectional", x)
            if not isinstance(carries, (tuple, list)) or len(carries) != 2:
                raise ValueError(
                    "Bidirectional expects the initial carry as the pair (carry_forward, "
                    f"carry_backward), got shapes {shapes(carries)}"
                )
        outs = [
            call(child, x if carry is None else (x, carry))
            for child, carry in zip(("forward", "backward"), carries, strict=True)
        ]
        ys = [out[0] for out in outs] if return_carry else outs
        if merge == "sum" and ys[0].shape != ys[1].shape:
            raise ValueError(
                f"Bidirectional with merge='sum' needs equal output sizes, got forward "
                f"{ys[0].shape[-1]} and backward {ys[1].shape[-1]}"
            )
        y = jnp.concatenate(ys, axis=-1) if merge == "concat" else ys[0] + ys[1]
        return (y, (outs[0][1], outs[1][1])) if return_carry else y

    return composite(children, run, kind="Bidirectional", name=name)
