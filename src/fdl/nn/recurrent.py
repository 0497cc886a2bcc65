r"""Recurrent layers: a :class:`~fdl.nn.Cell` scanned over time, and stacks of them.

The cells (the one-step rules :func:`~fdl.nn.RNNCell`, :func:`~fdl.nn.LSTMCell`,
:func:`~fdl.nn.GRUCell`, or any :class:`~fdl.nn.Cell`) are in :mod:`fdl.nn.cells`. The layers
are :func:`Recurrent` (one direction, a ``jax.lax.scan`` over time), :func:`Stacked` (a
:func:`~fdl.nn.Serial` of :func:`Recurrent` layers) and :func:`~fdl.nn.Bidirectional` (both
directions, merged; :mod:`fdl.nn.bidirectional`). Sequences are ``(*batch, T, F)``, time on the
second-to-last axis, channels last. :func:`Recurrent` can return its final carry beside the
outputs (``return_carry=True``) and starts from a given carry when its input is the pair
``(x, initial_carry)``; so a sequence can be run in pieces, or an encoder's final carry can
start a decoder.

**Masks.** ``apply(..., mask=mask)``, ``mask`` bool ``(*batch, T)``, ``True`` at real steps. At a
padded step the carry is *not* updated and the output is zero, so padded steps have no effect at
all: the result equals running each sequence alone on its real steps (tested), and the final
carry is the carry after the last real step. Running in reverse skips the padded tail first, so
a right-padded sequence is reversed within its own length.

**Speed.** Every cell computes all its gates with one matmul on :math:`x_t` and one on
:math:`h_{t-1}` (the gates' kernels concatenated, ``w_x: (F, G·H)``, ``w_h: (H, G·H)``), both
inside the scan's step, as Flax's ``OptimizedLSTMCell`` does: computing :math:`x W_x + b` for all
``T`` steps before the scan was measured slower on CPU (it writes, transposes and re-reads a
``(T, *batch, G·H)`` array both ways). A cell may run the whole sequence itself
(:attr:`Cell.scan`); :func:`~fdl.nn.LSTMCell`'s does, with its own JVP, so that reverse mode takes
the weight gradients in one matmul over all steps after the backward loop instead of
accumulating them at every step. When only the last output is wanted (``return_sequences=False``,
no mask) a cell without ``scan`` runs its last step after the scan, so the scan stacks no outputs.
See ``docs/design.md`` and ``benchmarks/lstm.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_bool, check_shape
from fdl.nn._children import capture_paused, is_shape
from fdl.nn._rnn import check_cell, shapes, split_input
from fdl.nn.cells import Cell
from fdl.nn.combinators import Serial
from fdl.nn.layer import Layer, layer_factory

__all__ = ["Recurrent", "Stacked"]

Carry = Any
Params = dict


def _step_types(cell: Cell, params: Params, batch: tuple[int, ...], x_t: Any) -> tuple[Any, Any]:
    """``(carry, y_t)`` of one step from the zero carry, as ``ShapeDtypeStruct``\\ s (nothing is
    computed). Raises the cell's own error for an ``x_t`` it does not take."""

    def one_step(p: Params, x: jax.Array) -> tuple[Carry, jax.Array]:
        return cell.step(p, cell.initial_carry(batch, x.dtype), x)

    return jax.eval_shape(one_step, params, x_t)


def _split_input_shape(kind: str, input_shape: Any) -> tuple[tuple[int, int], Any]:
    """``(T, F)`` or ``((T, F), carry_shapes)`` -> ``((T, F), carry_shapes or None)``."""
    carry_shapes = None
    shape = input_shape
    if isinstance(input_shape, (tuple, list)) and input_shape and not is_shape(input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"{kind} takes input_shape (T, F), or ((T, F), carry_shapes) when given an "
                f"initial carry, got {input_shape!r}"
            )
        shape, carry_shapes = input_shape
    shape = check_shape("input_shape", shape)
    if len(shape) != 2:
        raise ValueError(f"{kind} expects (..., T, F) inputs, so input_shape (T, F), got {shape}")
    return shape, carry_shapes


def _validate(
    kind: str, cell: Cell, params: Params, x: Any, mask: Any, carry: Carry
) -> tuple[jax.Array, jax.Array | None, Carry]:
    """Check ``x (*batch, T, F)``, ``mask (*batch, T)`` and ``carry`` on static shapes."""
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{kind} expects inputs of shape (..., T, F), got shape {x.shape}")
    batch = x.shape[:-2]
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise ValueError(f"{kind} expects a bool mask (True at real steps), got dtype {mask.dtype}")
        if mask.shape != x.shape[:-1]:
            raise ValueError(
                f"{kind} expects a mask of shape (*batch, T) = {x.shape[:-1]} for inputs of shape "
                f"{x.shape}, got a mask of shape {mask.shape}"
            )
    x_t = jax.ShapeDtypeStruct(batch + x.shape[-1:], x.dtype)  # (*batch, F)
    try:
        carry_type, _ = _step_types(cell, params, batch, x_t)
    except ValueError as err:
        raise ValueError(f"{kind} got inputs of shape {x.shape} (steps {x_t.shape}): {err}") from err
    if carry is not None:
        want, got = shapes(carry_type), shapes(carry)
        if want != got:  # nested tuples (dicts): the structure and every shape
            raise ValueError(
                f"{kind} expects an initial carry like {cell!r}'s for inputs of shape {x.shape}: "
                f"shapes {want}, got {got}"
            )
    return x, mask, carry


def _keep_like(keep_t: jax.Array, leaf: jax.Array) -> jax.Array:
    """``keep_t (*batch,)`` with trailing unit axes to broadcast against ``leaf (*batch, ...)``."""
    return keep_t.reshape(keep_t.shape + (1,) * (leaf.ndim - keep_t.ndim))


@functools.partial(jax.jit, static_argnames=("cell", "reverse", "return_sequences"))
def _run(
    cell: Cell,
    params: Params,
    x: jax.Array,
    mask: jax.Array | None,
    carry: Carry,
    *,
    reverse: bool,
    return_sequences: bool,
) -> tuple[jax.Array, Carry]:
    """The scan itself, on validated inputs: ``(ys (*batch, T, H) or y_last (*batch, H),
    final carry)``.

    Jitted (the cell and the flags static) so that eager calls, and eager ``jvp``/``vjp`` through
    them, run one compiled program instead of dispatching every operation on its own.
    """
    batch = x.shape[:-2]
    xs = jnp.moveaxis(x, -2, 0)  # (T, *batch, F)
    keep = None if mask is None else jnp.moveaxis(mask, -1, 0)  # (T, *batch)
    x_t = jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype)  # (*batch, F)
    carry_type, y_type = _step_types(cell, params, batch, x_t)
    if carry is None:
        carry = cell.initial_carry(batch, x.dtype)
    carry = jax.tree.map(lambda a, t: jnp.asarray(a).astype(t.dtype), carry, carry_type)
    if cell.scan is not None:  # the cell runs the whole sequence itself
        final, ys = cell.scan(params, carry, xs, keep, reverse=reverse)  # ys: (T, *batch, H)
        if return_sequences:
            return jnp.moveaxis(ys, 0, -2), final  # (*batch, T, H)
        if keep is not None:
            return _last_output(ys, keep, reverse=reverse), final
        if xs.shape[0] == 0:
            return jnp.zeros(y_type.shape, y_type.dtype), final
        return ys[0 if reverse else -1], final
    if keep is None and not return_sequences:  # only the last output: stack none
        if xs.shape[0] == 0:
            return jnp.zeros(y_type.shape, y_type.dtype), carry
        # the last step read runs after the scan, so the scan itself outputs nothing
        rest, x_last = (xs[1:], xs[0]) if reverse else (xs[:-1], xs[-1])
        final, _ = jax.lax.scan(
            lambda c, x_t: (cell.step(params, c, x_t)[0], None), carry, rest, reverse=reverse
        )
        final, y = cell.step(params, final, x_last)
        return y, final

    def body(old: Carry, inputs: tuple[jax.Array, Any]) -> tuple[Carry, jax.Array]:
        x_t, keep_t = inputs  # (*batch, F), (*batch,) or None
        new, y = cell.step(params, old, x_t)
        if keep_t is not None:  # a padded step keeps the carry and outputs 0
            new = jax.tree.map(lambda n, o: jnp.where(_keep_like(keep_t, n), n, o), new, old)
            y = jnp.where(_keep_like(keep_t, y), y, jnp.zeros_like(y))
        return new, y

    final, ys = jax.lax.scan(body, carry, (xs, keep), reverse=reverse)  # ys: (T, *batch, H)
    if return_sequences:
        return jnp.moveaxis(ys, 0, -2), final  # (*batch, T, H)
    assert keep is not None  # without a mask, the last output was returned before the scan
    return _last_output(ys, keep, reverse=reverse), final


def _last_output(ys: jax.Array, keep: jax.Array, *, reverse: bool) -> jax.Array:
    """The output of the last real step read, from the time-major outputs ``ys (T, *batch, H)``:
    at the last ``True`` of ``keep (T, *batch)`` (the first in reverse); 0 for a sequence with no
    real step (its outputs are all 0).

    Taken after the scan rather than carried through it: a carried copy costs a copy per step
    forward and a cotangent update per step backward.
    """
    t_len = ys.shape[0]
    if t_len == 0:
        return jnp.zeros(ys.shape[1:], ys.dtype)  # (*batch, H)
    steps = jnp.arange(t_len).reshape((t_len,) + (1,) * (keep.ndim - 1))  # (T, 1, ...)
    steps = jnp.broadcast_to(steps, keep.shape)  # (T, *batch)
    if reverse:
        index = jnp.min(jnp.where(keep, steps, t_len - 1), axis=0)  # (*batch,)
    else:
        index = jnp.max(jnp.where(keep, steps, 0), axis=0)  # (*batch,)
    index = index.reshape((1,) + index.shape + (1,) * (ys.ndim - keep.ndim))  # (1, *batch, 1)
    return jnp.take_along_axis(ys, index, axis=0)[0]  # (*batch, H)


@layer_factory
def Recurrent(
    cell: Cell,
    *,
    return_sequences: bool = True,
    return_carry: bool = False,
    reverse: bool = False,
    name: str | None = None,
) -> Layer:
    r"""Run a recurrent ``cell`` over the time axis of a sequence (a ``jax.lax.scan``).

    .. math::

        (\text{carry}_t, y_t) = \mathrm{step}(\text{carry}_{t-1}, x_t), \quad t = 1, \ldots, T,
        \qquad \text{carry}_0 = \text{initial\_carry} \ (\text{zeros}) \text{ or given}

    (with ``reverse=True``, :math:`t = T, \ldots, 1`). Output: all outputs
    :math:`(y_1, \ldots, y_T)` ``(*batch, T, H)`` if ``return_sequences``, else the last one,
    ``(*batch, H)`` (:math:`y_T`, or :math:`y_1` in reverse: the output after the whole sequence
    has been read). With ``reverse=True`` the output stays aligned with the input: ``y[..., t, :]``
    is the output after reading :math:`x_T, \ldots, x_t`. With ``return_carry=True`` the output is
    the pair ``(y, carry_T)``: the final carry, ``(h, c)`` for :func:`LSTMCell`, ``h`` for
    :func:`GRUCell` and :func:`RNNCell`, each ``(*batch, H)``.

    Inputs (any number of leading batch axes):

    * ``x``, ``(*batch, T, F)``: the carry starts at ``cell.initial_carry`` (zeros);
    * ``(x, initial_carry)``: the carry starts at ``initial_carry`` (cast to the dtype the cell
      computes in). So ``Serial(Recurrent(encoder, return_carry=True), Recurrent(decoder))``
      starts the decoder from the encoder's final carry, and running the second half of a
      sequence from the first half's final carry equals one run over the whole (tested).

    ``mask`` (keyword), bool ``(*batch, T)``, ``True`` at real steps. At a padded step the carry
    is kept, :math:`\text{carry}_t = \text{carry}_{t-1}`, and the output is 0, so padded steps
    change nothing: the last output and the final carry are those after the last real step (the
    last output is 0 for a sequence with no real step).

    ``init`` takes ``input_shape`` ``(T, F)``, or ``((T, F), carry_shapes)`` with an initial
    carry (``((H,), (H,))`` for the LSTM, ``(H,)`` otherwise), and declares ``(T, H)`` or
    ``(H,)``, paired with ``carry_shapes`` when ``return_carry``.

    The time loop runs time-major inside (``(T, *batch, ...)``) and is compiled (``jax.jit``)
    even when called eagerly.

    Args:
      cell: a :class:`Cell`: :func:`RNNCell`, :func:`LSTMCell`, :func:`GRUCell` or your own.
      return_sequences: return every step's output (else only the last).
      return_carry: also return the final carry, as ``(y, carry_T)``.
      reverse: scan from the last step to the first.
      name: its name in a parent's paths (automatic ``recurrent_<i>`` if ``None``).

    Returns:
      A :class:`~fdl.nn.Layer` whose ``params`` are the cell's (``{"w_x", "w_h", "b", ...}``) and
      whose state is ``{}``.

    Raises:
      TypeError: ``cell`` is not a :class:`Cell` (at construction).
      ValueError: a flag that is not a bool (at construction); an input shape that is not
        ``(T, F)`` per example, a feature count the cell's parameters do not take, a mask that is
        not bool of shape ``(*batch, T)``, an initial carry of the wrong structure or shapes (at
        ``init`` or ``apply``, naming the shapes).

    Differs from PyTorch: ``torch.nn.LSTM``/``GRU``/``RNN`` default to time-major ``(T, B, F)``,
    take padding as a ``PackedSequence`` and always return the final state ``(h_n, c_n)``; fdl is
    batch-first with a boolean mask and returns the carry on request, in the same order. Keras's
    ``go_backwards=True`` returns the reverse-ordered sequence; ours stays aligned with the input,
    as Flax's ``nn.RNN(cell, reverse=True, keep_order=True)`` (which takes ``seq_lengths``
    instead of a mask).

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.Recurrent(fdl.nn.LSTMCell(4), return_sequences=False)
    >>> params, state, shape = layer.init(jax.random.key(0), (6, 3))
    >>> shape
    (4,)
    >>> x = jnp.ones((2, 6, 3))
    >>> mask = jnp.array([[True] * 6, [True] * 3 + [False] * 3])
    >>> y, _ = layer.apply(params, state, x, mask=mask)
    >>> y3, _ = layer.apply(params, state, x[1:, :3])   # the second sequence alone
    >>> bool(jnp.allclose(y[1:], y3))
    True
    >>> with_carry = fdl.nn.Recurrent(fdl.nn.LSTMCell(4), return_carry=True)
    >>> (ys, (h, c)), _ = with_carry.apply(params, state, x)
    >>> ys.shape, h.shape, c.shape
    ((2, 6, 4), (2, 4), (2, 4))
    """
    check_cell("Recurrent", "cell", cell)
    for flag, value in (
        ("return_sequences", return_sequences),
        ("return_carry", return_carry),
        ("reverse", reverse),
    ):
        check_bool(flag, value)

    def init(key: jax.Array, input_shape: Any) -> tuple[Params, dict, Any]:
        (t, features), carry_shapes = _split_input_shape("Recurrent", input_shape)
        params = cell.init(key, features)
        carry_type, y_type = _step_types(cell, params, (), jax.ShapeDtypeStruct((features,), jnp.float32))
        want = shapes(carry_type)
        if carry_shapes is not None and _as_tuples(carry_shapes) != want:
            raise ValueError(
                f"Recurrent expects the initial carry's shapes to be {want} (per example) for "
                f"{cell!r}, got {carry_shapes!r}"
            )
        out = (t, *y_type.shape) if return_sequences else tuple(y_type.shape)
        return params, {}, ((out, want) if return_carry else out)

    def apply(params: Params, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del key, train  # deterministic
        x, carry = split_input("Recurrent", x)
        with capture_paused():  # fdl.nn.capture: what a step traces exists only inside the scan
            x, mask, carry = _validate("Recurrent", cell, params, x, mask, carry)
            y, final = _run(cell, params, x, mask, carry, reverse=reverse, return_sequences=return_sequences)
        return ((y, final) if return_carry else y), state

    return Layer(init, apply)


def _as_tuples(tree: Any) -> Any:
    """A tree of shapes with every list turned into a tuple (shapes may be written as lists)."""
    if isinstance(tree, (tuple, list)):
        return tuple(_as_tuples(v) for v in tree)
    if isinstance(tree, dict):
        return {k: _as_tuples(v) for k, v in tree.items()}
    return tree


def Stacked(cells: Sequence[Cell], *, return_sequences: bool = True, name: str | None = None) -> Layer:
    r"""A stack of :func:`Recurrent` layers: layer :math:`\ell` reads the outputs of layer
    :math:`\ell - 1`.

    .. math::

        h^{(0)}_t = x_t, \qquad
        (\text{carry}^{(\ell)}_t, h^{(\ell)}_t)
        = \mathrm{step}_\ell\big(\text{carry}^{(\ell)}_{t-1}, h^{(\ell-1)}_t\big),
        \qquad \ell = 1, \ldots, L

    It is ``Serial(Recurrent(cells[0]), ..., Recurrent(cells[-1],
    return_sequences=return_sequences))``, so ``params`` is ``{"recurrent_0": ...,
    "recurrent_1": ...}``. The ``mask`` keyword reaches every layer (as with any
    :func:`~fdl.nn.Serial`); an initial carry in ``(x, carry)`` goes to the first layer only.

    Args:
      cells: the cells, bottom to top (at least one).
      return_sequences: whether the *top* layer returns every step (the others always do).
      name: its name in a parent's paths.

    Raises:
      TypeError: an entry of ``cells`` is not a :class:`Cell`.
      ValueError: ``cells`` is empty.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Stacked([fdl.nn.LSTMCell(8), fdl.nn.GRUCell(4)], return_sequences=False)
    >>> params, state, shape = model.init(jax.random.key(0), (6, 3))
    >>> shape, sorted(params)
    ((4,), ['recurrent_0', 'recurrent_1'])
    """
    cells = tuple(cells)
    if not cells:
        raise ValueError("Stacked needs at least one cell, got none")
    for i, cell in enumerate(cells):
        check_cell("Stacked", f"cells[{i}]", cell)
    check_bool("return_sequences", return_sequences)
    layers = [
        Recurrent(cell, return_sequences=return_sequences if i == len(cells) - 1 else True)
        for i, cell in enumerate(cells)
    ]
    return Serial(*layers, name=name)
