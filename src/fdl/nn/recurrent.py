r"""Recurrent layers: Elman, LSTM and GRU cells, scanned over time in one or both directions.

A **cell** is the one-step rule :math:`(\text{carry}_{t-1}, x_t) \mapsto (\text{carry}_t, h_t)`:
a small frozen dataclass that holds configuration only (hidden size, initializers, dtypes), with

.. code-block:: text

    cell.init(key, input_features)              -> params        # {"w_x", "w_h", "b", ...}
    cell.initial_carry(batch_shape, dtype)      -> carry         # zeros, each (*batch, H)
    cell.step(params, carry, x_t)               -> (carry, h_t)  # x_t: (*batch, F)

A cell is not a :class:`~fdl.nn.Layer`; the layers are :func:`Recurrent` (one direction, a
``jax.lax.scan`` over time), :func:`Bidirectional` (both directions, merged) and :func:`stacked`
(a :func:`~fdl.nn.Serial` of :func:`Recurrent` layers). Sequences are ``(*batch, T, F)``, time on
the second-to-last axis, channels last.

Every cell computes all its gates with **one** matmul on :math:`x_t` and **one** on
:math:`h_{t-1}`: the kernels of the gates are concatenated along the last axis,
``w_x: (F, G·H)`` and ``w_h: (H, G·H)``. :func:`Recurrent` goes further and computes the input
part :math:`x_t W_x + b` for all ``T`` steps in a single matmul before the scan, so the loop body
holds just the recurrent matmul and the elementwise gate arithmetic.

**Masks.** ``(x, mask)`` with ``mask`` bool ``(*batch, T)``, ``True`` at real steps. At a padded
step the carry is *not* updated and the output is zero, so padded steps have no effect at all: the
result equals running each sequence alone on its real steps (tested). Running in reverse skips the
padded tail first, so a right-padded sequence is reversed within its own length.

References: Elman (1990), Finding structure in time, Cognitive Science 14(2); Hochreiter &
Schmidhuber (1997), Long short-term memory, Neural Computation 9(8); Gers, Schmidhuber & Cummins
(2000), Learning to forget: continual prediction with LSTM, Neural Computation 12(10); Cho et al.
(2014), Learning phrase representations using RNN encoder-decoder for statistical machine
translation, EMNLP; Jozefowicz, Zaremba & Sutskever (2015), An empirical exploration of recurrent
network architectures, ICML.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from fdl import initializers
from fdl._checks import check_choice, check_positive_int, check_shape
from fdl.nn.combinators import Serial
from fdl.nn.dense import _promote
from fdl.nn.layer import Layer, Shape

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "Recurrent", "Bidirectional", "stacked"]

Carry = Any
Params = dict


@dataclasses.dataclass(frozen=True)
class _Cell:
    """Shared configuration and machinery of the cells; see :class:`LSTMCell` for the fields."""

    hidden_size: int
    _: dataclasses.KW_ONLY
    input_init: initializers.Initializer | None = None
    recurrent_init: initializers.Initializer | None = None
    bias_init: initializers.Initializer | None = None
    param_dtype: Any = jnp.float32
    dtype: Any = None

    num_gates: ClassVar[int] = 1
    carry_layout: ClassVar[str] = "h"

    def __post_init__(self) -> None:
        check_positive_int("hidden_size", self.hidden_size)

    # -- parameters ------------------------------------------------------------------------

    def _gate_blocks(self, init: Any, key: jax.Array, shape: Shape) -> jax.Array:
        """Call ``init`` once per gate on that gate's block and concatenate on the last axis."""
        keys = jax.random.split(key, self.num_gates)
        blocks = [init(k, shape, self.param_dtype) for k in keys]
        return jnp.concatenate(blocks, axis=-1)  # (*shape[:-1], G*H)

    def init(self, key: jax.Array, input_features: int) -> Params:
        """The parameters for inputs with ``input_features`` features (see the class docstring)."""
        check_positive_int("input_features", input_features)
        input_init = initializers.lecun_normal() if self.input_init is None else self.input_init
        recurrent_init = (
            initializers.orthogonal() if self.recurrent_init is None else self.recurrent_init
        )
        bias_init = initializers.zeros() if self.bias_init is None else self.bias_init
        h = self.hidden_size
        kx, kh, kb, kextra = jax.random.split(key, 4)
        params = {
            "w_x": self._gate_blocks(input_init, kx, (input_features, h)),  # (F, G*H)
            "w_h": self._gate_blocks(recurrent_init, kh, (h, h)),  # (H, G*H)
            "b": self._gate_blocks(bias_init, kb, (h,)),  # (G*H,)
        }
        return self._extra_params(params, bias_init, kextra)

    def _extra_params(self, params: Params, bias_init: Any, key: jax.Array) -> Params:
        return params

    # -- computation -----------------------------------------------------------------------

    def compute_dtype(self, params: Params, x_dtype: Any) -> Any:
        """``dtype`` if set, else the input's and the parameters' dtypes promoted."""
        return self.dtype if self.dtype is not None else _promote(x_dtype, params["w_x"].dtype)

    def project_inputs(self, params: Params, x: jax.Array) -> jax.Array:
        r"""The input part of every gate, :math:`x W_x + b`: ``(..., F) -> (..., G·H)``.

        ``params`` and ``x`` must already be in the compute dtype (as :func:`Recurrent` and
        :meth:`step` arrange); the leading axes are arbitrary (all ``T`` steps at once).
        """
        z = jnp.matmul(x, params["w_x"])  # (..., G*H)
        return z + jnp.broadcast_to(params["b"], z.shape)

    def recur(self, params: Params, carry: Carry, xw_t: jax.Array) -> tuple[Carry, jax.Array]:
        """One step given the projected input ``xw_t = x_t W_x + b`` of shape ``(*batch, G·H)``."""
        raise NotImplementedError

    def step(self, params: Params, carry: Carry, x_t: Any) -> tuple[Carry, jax.Array]:
        """One time step: ``(carry, x_t) -> (new_carry, h_t)``, ``x_t`` of shape ``(*batch, F)``.

        Computes in :meth:`compute_dtype`; the carry is cast to it.
        """
        x_t = jnp.asarray(x_t)
        features = params["w_x"].shape[0]
        if x_t.ndim < 1 or x_t.shape[-1] != features:
            raise ValueError(
                f"{type(self).__name__}.step expects x_t of shape (..., {features}), "
                f"got shape {x_t.shape}"
            )
        compute = self.compute_dtype(params, x_t.dtype)
        params = jax.tree.map(lambda a: a.astype(compute), params)
        carry = jax.tree.map(lambda a: jnp.asarray(a).astype(compute), carry)
        return self.recur(params, carry, self.project_inputs(params, x_t.astype(compute)))

    # -- carries ---------------------------------------------------------------------------

    def initial_carry(self, batch_shape: Sequence[int] = (), dtype: Any = jnp.float32) -> Carry:
        """The zero carry: ``h`` (Elman, GRU) or ``(c, h)`` (LSTM), each ``(*batch_shape, H)``."""
        zeros = jnp.zeros(tuple(batch_shape) + (self.hidden_size,), dtype)  # (*batch, H)
        return (zeros, zeros) if self.carry_layout == "(c, h)" else zeros

    def output(self, carry: Carry) -> jax.Array:
        """The hidden state :math:`h` held in ``carry``."""
        return carry[1] if self.carry_layout == "(c, h)" else carry

    def check_carry(self, carry: Carry, batch_shape: Shape, where: str) -> Carry:
        """Return ``carry`` if it has this cell's structure and shapes, else raise (naming
        ``where``)."""
        want = tuple(batch_shape) + (self.hidden_size,)
        if self.carry_layout == "(c, h)":
            parts = tuple(carry) if isinstance(carry, (tuple, list)) else None
            ok = parts is not None and len(parts) == 2
        else:
            parts = (carry,)
            ok = not isinstance(carry, (tuple, list, dict)) and carry is not None
        ok = ok and all(jnp.shape(p) == want for p in parts)
        if not ok:
            got = jax.tree.map(jnp.shape, carry)
            raise ValueError(
                f"{where}: `initial_carry` for {type(self).__name__} must be "
                f"{self.carry_layout}, each of shape (*batch, H) = {want}, got {got}"
            )
        return parts if self.carry_layout == "(c, h)" else carry  # a list [c, h] as the tuple


@dataclasses.dataclass(frozen=True)
class RNNCell(_Cell):
    r"""The Elman (simple, "vanilla") recurrent cell with a tanh nonlinearity (Elman, 1990).

    .. math::

        h_t = \tanh\!\left(x_t W_x + h_{t-1} W_h + b\right)

    Shapes: :math:`x_t` ``(*batch, F)``, :math:`h_t` ``(*batch, H)``; ``params`` is
    ``{"w_x": (F, H), "w_h": (H, H), "b": (H,)}``. The carry is :math:`h` itself, ``(*batch, H)``,
    and the output at each step is :math:`h_t`.

    Args:
      hidden_size: :math:`H`, a positive int.
      input_init: initializer of ``w_x``; default LeCun normal, :math:`\mathrm{Var} = 1/F`.
      recurrent_init: initializer of ``w_h``; default orthogonal (all singular values 1, so the
        recurrent map neither grows nor shrinks the state at initialization).
      bias_init: initializer of ``b``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: compute dtype; ``None`` promotes the input's and the parameters' dtypes.

    Raises:
      ValueError: ``hidden_size`` is not a positive int (at construction).

    Differs from PyTorch: ``torch.nn.RNNCell`` stores ``weight_ih`` ``(H, F)``, ``weight_hh``
    ``(H, H)`` and two biases; with ours ``w_x = weight_ih.T``, ``w_h = weight_hh.T`` and
    ``b = bias_ih + bias_hh`` (the two biases are redundant). PyTorch initializes every parameter
    :math:`U(-1/\sqrt{H}, 1/\sqrt{H})`.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.recurrent import RNNCell
    >>> cell = RNNCell(4)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> {k: v.shape for k, v in params.items()}
    {'w_x': (3, 4), 'w_h': (4, 4), 'b': (4,)}
    >>> carry, h = cell.step(params, cell.initial_carry((2,)), jnp.ones((2, 3)))
    >>> h.shape
    (2, 4)
    """

    num_gates: ClassVar[int] = 1

    def recur(self, params: Params, carry: Carry, xw_t: jax.Array) -> tuple[Carry, jax.Array]:
        h = jnp.tanh(xw_t + jnp.matmul(carry, params["w_h"]))  # (*batch, H)
        return h, h


@dataclasses.dataclass(frozen=True)
class LSTMCell(_Cell):
    r"""The long short-term memory cell (Hochreiter & Schmidhuber, 1997) with a forget gate
    (Gers et al., 2000).

    .. math::

        i_t &= \sigma\!\left(x_t W_{x,i} + h_{t-1} W_{h,i} + b_i\right) \\
        f_t &= \sigma\!\left(x_t W_{x,f} + h_{t-1} W_{h,f} + b_f\right) \\
        g_t &= \tanh\!\left(x_t W_{x,g} + h_{t-1} W_{h,g} + b_g\right) \\
        o_t &= \sigma\!\left(x_t W_{x,o} + h_{t-1} W_{h,o} + b_o\right) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t &= o_t \odot \tanh(c_t)

    with :math:`\sigma` the logistic sigmoid: input gate :math:`i`, forget gate :math:`f`,
    candidate :math:`g`, output gate :math:`o`, cell state :math:`c`, hidden state :math:`h`.

    Parameters: ``{"w_x": (F, 4H), "w_h": (H, 4H), "b": (4H,)}``, the gates concatenated along
    the last axis in the order **i, f, g, o** (``w_x[:, :H]`` is :math:`W_{x,i}`,
    ``w_x[:, H:2H]`` is :math:`W_{x,f}`, and so on), so all four gates are one matmul on
    :math:`x_t` and one on :math:`h_{t-1}`. The carry is the pair ``(c, h)``, each
    ``(*batch, H)``; the output at each step is :math:`h_t`.

    Initialization: every initializer is called once per gate, on that gate's block (``(F, H)``,
    ``(H, H)``, ``(H,)``), and the blocks are concatenated, so fans are those of one gate and each
    gate's recurrent ``(H, H)`` block is orthogonal on its own. ``b_f`` is then increased by
    ``forget_bias``.

    Args:
      hidden_size: :math:`H`, a positive int.
      input_init: initializer of each gate's block of ``w_x``; default LeCun normal,
        :math:`\mathrm{Var} = 1/F` (as Flax; Keras uses Glorot uniform,
        ``fdl.initializers.glorot_uniform()``).
      recurrent_init: initializer of each gate's block of ``w_h``; default orthogonal.
      bias_init: initializer of each gate's block of ``b``; default zeros.
      forget_bias: added to the initial forget-gate bias :math:`b_f`; default ``1.0``, so
        :math:`f_t \approx \sigma(1) \approx 0.73` at first and the cell state (and its gradient)
        is carried across many steps from the start (Gers et al., 2000; Jozefowicz et al., 2015
        found it closes most of the gap to the GRU). Use ``0.0`` for all-zero biases.
      param_dtype: dtype of the stored parameters.
      dtype: compute dtype; ``None`` promotes the input's and the parameters' dtypes.

    Raises:
      ValueError: ``hidden_size`` is not a positive int (at construction).

    Differs from PyTorch: ``torch.nn.LSTMCell`` uses the same gate order i, f, g, o, but stores
    ``weight_ih`` ``(4H, F)`` and ``weight_hh`` ``(4H, H)`` (ours are the transposes
    ``(F, 4H)``, ``(H, 4H)``) and two biases ``bias_ih + bias_hh`` (ours is their sum ``b``).
    PyTorch initializes everything :math:`U(-1/\sqrt{H}, 1/\sqrt{H})`, forget bias included;
    Keras adds 1 to the forget bias (``unit_forget_bias=True``) as we do; Flax starts all biases
    at 0. Differs from Haiku: Haiku orders the gates i, g, f, o and adds its forget bias in the
    forward pass rather than at initialization.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.recurrent import LSTMCell
    >>> cell = LSTMCell(2)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> params["w_x"].shape, params["w_h"].shape, params["b"].tolist()
    ((3, 8), (2, 8), [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    >>> (c, h), y = cell.step(params, cell.initial_carry(), jnp.ones(3))
    >>> c.shape, bool((y == h).all())
    ((2,), True)
    """

    forget_bias: float = dataclasses.field(default=1.0, kw_only=True)

    num_gates: ClassVar[int] = 4
    carry_layout: ClassVar[str] = "(c, h)"

    def __post_init__(self) -> None:
        super().__post_init__()
        fb = self.forget_bias
        if isinstance(fb, bool) or not isinstance(fb, (int, float)) or math.isnan(fb):
            raise ValueError(f"`forget_bias` must be a real number, got {fb!r}")

    def _extra_params(self, params: Params, bias_init: Any, key: jax.Array) -> Params:
        h = self.hidden_size
        b = params["b"]  # (4H,) = [b_i, b_f, b_g, b_o]
        b_f = b[h : 2 * h] + jnp.asarray(self.forget_bias, b.dtype)
        params["b"] = jnp.concatenate([b[:h], b_f, b[2 * h :]])  # (4H,)
        return params

    def recur(self, params: Params, carry: Carry, xw_t: jax.Array) -> tuple[Carry, jax.Array]:
        c, h = carry  # (*batch, H) each
        z = xw_t + jnp.matmul(h, params["w_h"])  # (*batch, 4H)
        i, f, g, o = jnp.split(z, 4, axis=-1)  # (*batch, H) each
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h


@dataclasses.dataclass(frozen=True)
class GRUCell(_Cell):
    r"""The gated recurrent unit (Cho et al., 2014), in the convention of PyTorch and cuDNN.

    .. math::

        r_t &= \sigma\!\left(x_t W_{x,r} + h_{t-1} W_{h,r} + b_r\right) \\
        z_t &= \sigma\!\left(x_t W_{x,z} + h_{t-1} W_{h,z} + b_z\right) \\
        n_t &= \tanh\!\left(x_t W_{x,n} + b_n
               + r_t \odot \left(h_{t-1} W_{h,n} + b_{hn}\right)\right) \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    with reset gate :math:`r`, update gate :math:`z` and candidate :math:`n`. The reset gate
    multiplies the recurrent term *after* the matmul (PyTorch's
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, Keras's ``reset_after=True``). Cho et
    al.'s original applies it *before*: :math:`n_t = \tanh(x_t W_{x,n} + (r_t \odot h_{t-1})
    W_{h,n} + b_n)`, which needs :math:`r_t` before the recurrent matmul of :math:`n` and so
    cannot share one matmul with the other gates; with the same weights the two conventions give
    different results (tested), so weights do not carry over between them. Because :math:`r_t`
    scales the recurrent term, its bias :math:`b_{hn}` cannot be merged into :math:`b_n` and is a
    separate parameter; ``b = [b_r, b_z, b_n]`` holds the rest.

    Parameters: ``{"w_x": (F, 3H), "w_h": (H, 3H), "b": (3H,), "b_hn": (H,)}``, gates in the
    order **r, z, n**: one matmul on :math:`x_t` and one on :math:`h_{t-1}`. The carry is
    :math:`h`, ``(*batch, H)``; the output at each step is :math:`h_t`.

    Initialization: as :class:`LSTMCell` (each initializer called once per gate block, LeCun normal
    ``w_x``, orthogonal ``w_h`` blocks, zero ``b``), and ``b_hn`` from ``bias_init``.

    Args:
      hidden_size: :math:`H`, a positive int.
      input_init: initializer of each gate's block of ``w_x``; default LeCun normal.
      recurrent_init: initializer of each gate's block of ``w_h``; default orthogonal.
      bias_init: initializer of ``b`` (per gate block) and ``b_hn``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: compute dtype; ``None`` promotes the input's and the parameters' dtypes.

    Raises:
      ValueError: ``hidden_size`` is not a positive int (at construction).

    Differs from PyTorch: same equations and gate order (r, z, n). ``torch.nn.GRUCell`` stores
    ``weight_ih`` ``(3H, F)`` and ``weight_hh`` ``(3H, H)`` (ours are the transposes) and two
    biases ``bias_ih``, ``bias_hh`` ``(3H,)``; with ours ``b = bias_ih + [b_hr, b_hz, 0]`` and
    ``b_hn = bias_hh[2H:]``. Same as Flax's ``GRUCell`` (which uses the r, z, n equations with
    ``b_hn`` and no separate ``b_hr``, ``b_hz``).

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.recurrent import GRUCell
    >>> cell = GRUCell(4)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> {k: v.shape for k, v in params.items()}
    {'w_x': (3, 12), 'w_h': (4, 12), 'b': (12,), 'b_hn': (4,)}
    """

    num_gates: ClassVar[int] = 3

    def _extra_params(self, params: Params, bias_init: Any, key: jax.Array) -> Params:
        params["b_hn"] = bias_init(key, (self.hidden_size,), self.param_dtype)  # (H,)
        return params

    def recur(self, params: Params, carry: Carry, xw_t: jax.Array) -> tuple[Carry, jax.Array]:
        h = carry  # (*batch, H)
        hw = jnp.matmul(h, params["w_h"])  # (*batch, 3H)
        x_r, x_z, x_n = jnp.split(xw_t, 3, axis=-1)  # (*batch, H) each
        h_r, h_z, h_n = jnp.split(hw, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * (h_n + jnp.broadcast_to(params["b_hn"], h_n.shape)))
        h = (1.0 - z) * n + z * h
        return h, h


CELLS = (RNNCell, LSTMCell, GRUCell)


def _check_cell(where: str, arg: str, cell: Any) -> _Cell:
    if not isinstance(cell, _Cell):
        raise TypeError(
            f"{where}: `{arg}` must be a recurrent cell (RNNCell, LSTMCell or GRUCell), "
            f"got {cell!r}"
        )
    return cell


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}")
    return value


def _parse_input_shape(input_shape: Any, where: str) -> tuple[int, int, bool]:
    """``(T, F)``, ``((T, F), (T,))`` or ``((T, F), (T,) | None, carry)`` -> ``(T, F, masked)``."""
    masked = False
    shape = input_shape
    if isinstance(input_shape, (tuple, list)) and input_shape and not isinstance(
        input_shape[0], int
    ):
        if len(input_shape) not in (2, 3):
            raise ValueError(
                f"{where} takes input_shape (T, F), ((T, F), (T,)) or ((T, F), (T,), carry), "
                f"got {input_shape!r}"
            )
        shape, mask_shape = input_shape[0], input_shape[1]
        masked = mask_shape is not None
    shape = check_shape("input_shape", shape)
    if len(shape) != 2:
        raise ValueError(f"{where} expects (..., T, F) inputs, so input_shape (T, F), got {shape}")
    if masked and check_shape("mask shape", mask_shape) != shape[:1]:
        raise ValueError(
            f"{where}: the mask shape must be (T,) = {shape[:1]} for input_shape {shape}, "
            f"got {tuple(mask_shape)}"
        )
    return shape[0], shape[1], masked


def _parse_input(x: Any, where: str) -> tuple[Any, Any, Any]:
    """``x``, ``(x, mask)`` or ``(x, mask, initial_carry)`` -> ``(x, mask, carry)``."""
    if isinstance(x, (tuple, list)):
        if len(x) == 2:
            return x[0], x[1], None
        if len(x) == 3:
            return x[0], x[1], x[2]
        raise ValueError(
            f"{where} takes x, (x, mask) or (x, mask, initial_carry), got a {type(x).__name__} "
            f"of length {len(x)}"
        )
    return x, None, None


def _validate(
    cell: _Cell, params: Params, x: Any, mask: Any, carry: Carry, where: str
) -> tuple[jax.Array, jax.Array | None, Carry]:
    """Check ``x (*batch, T, F)``, ``mask (*batch, T)`` and ``carry`` on static shapes."""
    x = jnp.asarray(x)
    features = params["w_x"].shape[0]
    if x.ndim < 2 or x.shape[-1] != features:
        raise ValueError(
            f"{where} expects inputs of shape (..., T, F) with F = {features}, got shape {x.shape}"
        )
    batch = x.shape[:-2]
    if mask is not None:
        mask = jnp.asarray(mask)
        if mask.dtype != jnp.bool_:
            raise ValueError(
                f"{where}: `mask` must be bool (True at real steps), got dtype {mask.dtype}"
            )
        if mask.shape != x.shape[:-1]:
            raise ValueError(
                f"{where}: `mask` must have shape (*batch, T) = {x.shape[:-1]} for inputs of "
                f"shape {x.shape}, got {mask.shape}"
            )
    if carry is not None:
        carry = cell.check_carry(carry, batch, where)
    return x, mask, carry


@functools.partial(jax.jit, static_argnames=("cell", "reverse", "return_sequences"))
def _run(
    cell: _Cell,
    params: Params,
    x: jax.Array,
    mask: jax.Array | None,
    carry: Carry,
    *,
    reverse: bool,
    return_sequences: bool,
) -> jax.Array:
    """The scan itself, on validated inputs.

    Jitted (the cell and the flags static) so that eager calls, and eager ``jvp``/``vjp`` through
    them, run one compiled program instead of dispatching every operation on its own.
    """
    batch = x.shape[:-2]
    compute = cell.compute_dtype(params, x.dtype)
    params = jax.tree.map(lambda a: a.astype(compute), params)
    if carry is None:
        carry = cell.initial_carry(batch, compute)
    else:
        carry = jax.tree.map(lambda a: jnp.asarray(a).astype(compute), carry)

    xw = cell.project_inputs(params, x.astype(compute))  # (*batch, T, G*H), all steps at once
    xw = jnp.moveaxis(xw, -2, 0)  # (T, *batch, G*H)
    keep = None if mask is None else jnp.moveaxis(mask, -1, 0)[..., None]  # (T, *batch, 1)

    def body(carry: Carry, inputs: tuple[jax.Array, Any]) -> tuple[Carry, Any]:
        xw_t, keep_t = inputs  # (*batch, G*H), (*batch, 1) or None
        new, h = cell.recur(params, carry, xw_t)
        if keep_t is not None:
            new = jax.tree.map(lambda n, old: jnp.where(keep_t, n, old), new, carry)
            h = jnp.where(keep_t, h, jnp.zeros_like(h))
        return new, (h if return_sequences else None)

    final, ys = jax.lax.scan(body, carry, (xw, keep), reverse=reverse)
    if return_sequences:
        return jnp.moveaxis(ys, 0, -2)  # (T, *batch, H) -> (*batch, T, H)
    return cell.output(final)  # (*batch, H)


@functools.partial(
    jax.jit, static_argnames=("forward", "backward", "merge", "return_sequences")
)
def _run_bidirectional(
    forward: _Cell,
    backward: _Cell,
    params: Params,
    x: jax.Array,
    mask: jax.Array | None,
    carries: tuple[Carry, Carry],
    *,
    merge: str,
    return_sequences: bool,
) -> jax.Array:
    """Both scans and the merge, on validated inputs, as one compiled program."""
    y_f = _run(forward, params["forward"], x, mask, carries[0], reverse=False,
               return_sequences=return_sequences)  # (*batch, [T,] H_f)
    y_b = _run(backward, params["backward"], x, mask, carries[1], reverse=True,
               return_sequences=return_sequences)  # (*batch, [T,] H_b)
    return jnp.concatenate([y_f, y_b], axis=-1) if merge == "concat" else y_f + y_b


def Recurrent(
    cell: _Cell,
    *,
    return_sequences: bool = True,
    reverse: bool = False,
    name: str = "recurrent",
) -> Layer:
    r"""Run a recurrent ``cell`` over the time axis of a sequence (a ``jax.lax.scan``).

    .. math::

        (\text{carry}_t, h_t) = \mathrm{cell}(\text{carry}_{t-1}, x_t), \quad t = 1, \ldots, T,
        \qquad \text{carry}_0 = 0 \text{ or given}

    (with ``reverse=True``, :math:`t = T, \ldots, 1`). Output: all hidden states
    :math:`(h_1, \ldots, h_T)` ``(*batch, T, H)`` if ``return_sequences``, else the last one,
    ``(*batch, H)`` (:math:`h_T`, or :math:`h_1` in reverse: the state after the whole sequence
    has been read). With ``reverse=True`` the output stays aligned with the input: ``y[..., t, :]``
    is the state after reading :math:`x_T, \ldots, x_t`.

    Inputs (any number of leading batch axes):

    * ``x``, ``(*batch, T, F)``: the carry starts at zero;
    * ``(x, mask)``, ``mask`` bool ``(*batch, T)``, ``True`` at real steps. At a padded step the
      carry is kept, :math:`\text{carry}_t = \text{carry}_{t-1}`, and the output is 0, so padded
      steps change nothing and the last state is the one after the last real step;
    * ``(x, mask, initial_carry)``, ``mask`` possibly ``None``: the carry starts at
      ``initial_carry``, ``h`` ``(*batch, H)`` for :class:`RNNCell` and :class:`GRUCell`, the pair
      ``(c, h)`` of ``(*batch, H)`` arrays for :class:`LSTMCell`.

    With a mask and ``return_sequences=True`` the output is ``(y, mask)``, so the mask flows to the
    next recurrent layer in a :func:`~fdl.nn.Serial` (see :func:`stacked`); otherwise it is ``y``.
    ``init`` takes ``input_shape`` ``(T, F)``, or ``((T, F), (T,))`` with a mask (a third entry,
    for the carry, is accepted and ignored: the carry has no parameters), and declares
    ``(T, H)``, ``((T, H), (T,))`` or ``(H,)`` accordingly.

    A layer that takes no mask (:func:`~fdl.nn.Dense`) goes after a ``return_sequences=False``
    layer. The time loop runs time-major inside (``(T, *batch, ...)``), the input projections
    :math:`x_t W_x + b` of all steps are one matmul before the loop, and the loop is compiled
    (``jax.jit``) even when called eagerly. A given carry is cast to the compute dtype.

    Args:
      cell: a :class:`RNNCell`, :class:`LSTMCell` or :class:`GRUCell`.
      return_sequences: return every step's hidden state (else only the last).
      reverse: scan from the last step to the first.
      name: the name shown in error messages.

    Returns:
      A :class:`~fdl.nn.Layer` whose ``params`` are the cell's (``{"w_x", "w_h", "b", ...}``) and
      whose state is ``{}``.

    Raises:
      TypeError: ``cell`` is not a cell (at construction).
      ValueError: ``return_sequences``/``reverse`` not bools (at construction); an input shape
        that is not ``(T, F)`` per example, a feature count other than ``init``'s, a mask that is
        not bool of shape ``(*batch, T)``, an ``initial_carry`` of the wrong structure or shape
        (at ``init`` or ``apply``, naming the layer and the shapes).

    Differs from PyTorch: ``torch.nn.LSTM``/``GRU``/``RNN`` default to time-major ``(T, B, F)``
    and take padding as a ``PackedSequence``; fdl is batch-first with a boolean mask. Keras's
    ``go_backwards=True`` returns the reverse-ordered sequence; ours stays aligned with the input,
    as Flax's ``nn.RNN(cell, reverse=True, keep_order=True)`` (which takes ``seq_lengths``
    instead of a mask).

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.recurrent import LSTMCell, Recurrent
    >>> layer = Recurrent(LSTMCell(4), return_sequences=False)
    >>> params, state, shape = layer.init(jax.random.key(0), (6, 3))
    >>> shape
    (4,)
    >>> x = jnp.ones((2, 6, 3))
    >>> mask = jnp.array([[True] * 6, [True] * 3 + [False] * 3])
    >>> y, _ = layer.apply(params, state, (x, mask))
    >>> y3, _ = layer.apply(params, state, x[1:, :3])   # the second sequence alone
    >>> bool(jnp.allclose(y[1:], y3))
    True
    """
    _check_cell("Recurrent", "cell", cell)
    _check_bool("return_sequences", return_sequences)
    _check_bool("reverse", reverse)
    where = f"Recurrent layer {name!r}"
    hidden = cell.hidden_size

    def init(key: jax.Array, input_shape: Any) -> tuple[Params, dict, Any]:
        t, features, masked = _parse_input_shape(input_shape, where)
        params = cell.init(key, features)
        out = (t, hidden) if return_sequences else (hidden,)
        if masked and return_sequences:
            return params, {}, (out, (t,))
        return params, {}, out

    def apply(params: Params, state: Any, x: Any, *, key: Any = None, train: bool = False):
        del key, train  # deterministic
        x, mask, carry = _parse_input(x, where)
        x, mask, carry = _validate(cell, params, x, mask, carry, where)
        y = _run(cell, params, x, mask, carry, reverse=reverse, return_sequences=return_sequences)
        if mask is not None and return_sequences:
            return (y, mask), state
        return y, state

    return Layer(init, apply, name)


def Bidirectional(
    forward: _Cell,
    backward: _Cell | None = None,
    *,
    merge: str = "concat",
    return_sequences: bool = True,
    name: str = "bidirectional",
) -> Layer:
    r"""Read the sequence in both directions with two cells and merge their hidden states.

    .. math::

        \overrightarrow{h}_t = \overrightarrow{\mathrm{cell}}(\overrightarrow{h}_{t-1}, x_t),
        \qquad
        \overleftarrow{h}_t = \overleftarrow{\mathrm{cell}}(\overleftarrow{h}_{t+1}, x_t),
        \qquad
        y_t = [\overrightarrow{h}_t; \overleftarrow{h}_t] \ \text{(concat)} \ \text{or} \
        \overrightarrow{h}_t + \overleftarrow{h}_t \ \text{(sum)}

    Both directions are :func:`Recurrent` scans (the backward one with ``reverse=True``), so
    :math:`y_t` sees the whole sequence. With a mask ``(*batch, T)``, the backward cell starts at
    each sequence's *last real step*, not at the end of the padded array: padded steps are
    skipped in both directions (carry kept, output 0), so a right-padded sequence is reversed
    within its own length and the result equals running each sequence alone (tested).

    Inputs as :func:`Recurrent`: ``x``, ``(x, mask)``, or ``(x, mask, (carry_forward,
    carry_backward))``. Output: ``(*batch, T, H_f + H_b)`` (concat) or ``(*batch, T, H)`` (sum),
    returned as ``(y, mask)`` when a mask was given; with ``return_sequences=False`` the merge of
    the two final states, ``(*batch, H_f + H_b)`` or ``(*batch, H)``: the forward state after the
    last real step and the backward state after the first.

    Args:
      forward: the cell reading left to right.
      backward: the cell reading right to left; default ``forward``'s configuration (with its own
        parameters).
      merge: ``"concat"`` (forward first) or ``"sum"`` (equal hidden sizes).
      return_sequences: return every step (else the merged final states).
      name: the name shown in error messages.

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"forward": ..., "backward": ...}`` (each a cell's
      parameters) and state ``{}``.

    Raises:
      TypeError: ``forward``/``backward`` not cells.
      ValueError: an unknown ``merge``; ``"sum"`` with unequal hidden sizes; the input errors of
        :func:`Recurrent`.

    Differs from PyTorch: ``bidirectional=True`` in ``torch.nn.LSTM`` concatenates the same way
    (forward first), but reverses each sequence within its length only when given a
    ``PackedSequence``; a padded tensor is reversed as a whole, padding first. Keras's
    ``Bidirectional`` wraps two layers; fdl takes the two cells and builds both scans itself.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.recurrent import Bidirectional, GRUCell
    >>> layer = Bidirectional(GRUCell(3))
    >>> params, state, shape = layer.init(jax.random.key(0), ((5, 2), (5,)))
    >>> shape
    ((5, 6), (5,))
    >>> (y, mask), _ = layer.apply(params, state, (jnp.ones((5, 2)), jnp.arange(5) < 3))
    >>> y.shape, y[3:].tolist() == [[0.0] * 6] * 2
    ((5, 6), True)
    """
    _check_cell("Bidirectional", "forward", forward)
    backward = forward if backward is None else _check_cell("Bidirectional", "backward", backward)
    check_choice("merge", merge, ("concat", "sum"))
    _check_bool("return_sequences", return_sequences)
    where = f"Bidirectional layer {name!r}"
    if merge == "sum" and forward.hidden_size != backward.hidden_size:
        raise ValueError(
            f"{where}: merge='sum' needs equal hidden sizes, got forward {forward.hidden_size} "
            f"and backward {backward.hidden_size}"
        )
    hidden = (
        forward.hidden_size + backward.hidden_size if merge == "concat" else forward.hidden_size
    )

    def init(key: jax.Array, input_shape: Any) -> tuple[Params, dict, Any]:
        t, features, masked = _parse_input_shape(input_shape, where)
        kf, kb = jax.random.split(key)
        params = {"forward": forward.init(kf, features), "backward": backward.init(kb, features)}
        out = (t, hidden) if return_sequences else (hidden,)
        if masked and return_sequences:
            return params, {}, (out, (t,))
        return params, {}, out

    def apply(params: Params, state: Any, x: Any, *, key: Any = None, train: bool = False):
        del key, train  # deterministic
        x, mask, carries = _parse_input(x, where)
        if carries is None:
            carries = (None, None)
        elif not isinstance(carries, (tuple, list)) or len(carries) != 2:
            raise ValueError(
                f"{where}: `initial_carry` must be a pair (carry_forward, carry_backward), "
                f"got {jax.tree.map(jnp.shape, carries)}"
            )
        if not isinstance(params, dict) or set(params) != {"forward", "backward"}:
            raise ValueError(
                f"{where} expects params {{'forward': ..., 'backward': ...}} (as its init "
                f"returned), got {type(params).__name__} with keys "
                f"{sorted(params) if isinstance(params, dict) else None}"
            )
        x, mask, carry_f = _validate(
            forward, params["forward"], x, mask, carries[0], f"{where} (forward)"
        )
        _, _, carry_b = _validate(
            backward, params["backward"], x, mask, carries[1], f"{where} (backward)"
        )
        y = _run_bidirectional(
            forward, backward, params, x, mask, (carry_f, carry_b),
            merge=merge, return_sequences=return_sequences,
        )
        if mask is not None and return_sequences:
            return (y, mask), state
        return y, state

    return Layer(init, apply, name)


def stacked(
    cells: Sequence[_Cell], *, return_sequences: bool = True, name: str = "stacked"
) -> Layer:
    r"""A stack of :func:`Recurrent` layers: layer :math:`\ell` reads the hidden states of
    layer :math:`\ell - 1`.

    .. math::

        h^{(0)}_t = x_t, \qquad
        (\text{carry}^{(\ell)}_t, h^{(\ell)}_t)
        = \mathrm{cell}_\ell\big(\text{carry}^{(\ell)}_{t-1}, h^{(\ell-1)}_t\big),
        \qquad \ell = 1, \ldots, L

    It is ``Serial(Recurrent(cells[0]), ..., Recurrent(cells[-1],
    return_sequences=return_sequences))``, so ``params`` is a tuple of the cells' parameters. A
    mask given as ``(x, mask)`` flows from layer to layer (each returns ``(y, mask)``); an
    ``initial_carry`` in ``(x, mask, carry)`` goes to the first layer only.

    Args:
      cells: the cells, bottom to top (at least one).
      return_sequences: whether the *top* layer returns every step (the others always do).
      name: the name shown in error messages; layer ``i`` is named ``f"{name}/{i}"``.

    Raises:
      TypeError: an entry of ``cells`` is not a cell.
      ValueError: ``cells`` is empty.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.recurrent import GRUCell, LSTMCell, stacked
    >>> model = stacked([LSTMCell(8), GRUCell(4)], return_sequences=False)
    >>> params, state, shape = model.init(jax.random.key(0), ((6, 3), (6,)))
    >>> shape, len(params)
    ((4,), 2)
    """
    cells = tuple(cells)
    if not cells:
        raise ValueError(f"stacked {name!r} needs at least one cell, got none")
    for i, cell in enumerate(cells):
        _check_cell(f"stacked {name!r}", f"cells[{i}]", cell)
    _check_bool("return_sequences", return_sequences)
    layers = [
        Recurrent(
            cell,
            return_sequences=return_sequences if i == len(cells) - 1 else True,
            name=f"{name}/{i}",
        )
        for i, cell in enumerate(cells)
    ]
    return Serial(*layers, name=name)
