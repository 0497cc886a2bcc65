r"""Recurrent cells: the one-step rules of the Elman RNN, the LSTM and the GRU.

A **cell** is the one-step rule :math:`(\text{carry}_{t-1}, x_t) \mapsto (\text{carry}_t, y_t)`,
held in a :class:`Cell`: a record of three pure functions, like a layer's ``(init, apply)`` pair,

.. code-block:: text

    init(key, input_features)              -> params              # {"w_x", "w_h", "b", ...}
    step(params, carry, x_t)               -> (carry, y_t)        # x_t: (*batch, F)
    initial_carry(batch_shape=(), dtype)   -> carry               # zeros

The carry is an ordinary pytree, with no layout tags: :math:`h` itself, ``(*batch, H)``, for
:func:`RNNCell` and :func:`GRUCell`, and the pair ``(h, c)`` for :func:`LSTMCell`, in PyTorch's
order (``torch.nn.LSTM`` returns ``(h_n, c_n)``). The output :math:`y_t` is :math:`h_t` for all
three. Any ``Cell(init, step, initial_carry)`` with that contract works with the layers that
scan a cell over time (:mod:`fdl.nn.recurrent`). Each cell computes all its gates with one
matmul on :math:`x_t` and one on :math:`h_{t-1}` (the gates' kernels concatenated).

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
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes, initializers
from fdl._checks import check_positive_int, is_real_number
from fdl.nn._lstm_scan import lstm_scan

__all__ = ["Cell", "GRUCell", "LSTMCell", "RNNCell"]

Carry = Any
Params = dict


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Cell:
    r"""A recurrent cell: three pure functions and, for ``repr``, its kind and settings.

    Attributes:
      init: ``init(key, input_features) -> params``.
      step: ``step(params, carry, x_t) -> (carry, y_t)``, ``x_t`` of shape ``(*batch, F)``, any
        number of leading batch axes. It must return a carry of the structure, shapes and dtypes
        it will be given next (:func:`Recurrent` casts the first carry to the dtypes ``step``
        returns, so a cell may compute in another dtype than its input).
      initial_carry: ``initial_carry(batch_shape=(), dtype=float32) -> carry``, the carry before
        the first step (zeros for the cells here).
      kind: the constructor's name, shown by ``repr`` and in errors.
      config: ``((argument, value), ...)`` shown by ``repr``.
      scan: optional, the whole sequence at once,
        ``scan(params, carry, xs, keep, *, reverse) -> (carry_T, ys)`` with ``xs (T, *batch, F)``
        time-major, ``keep (T, *batch)`` bool or ``None`` (a padded step keeps the carry and
        outputs 0) and ``ys (T, *batch, H)``; it must compute what scanning ``step`` computes.
        :func:`Recurrent` uses it when given (:func:`LSTMCell`'s has a hand-written backward pass).

    It unpacks like a triple, ``init, step, initial_carry = fdl.nn.GRUCell(4)``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> cell = fdl.nn.GRUCell(4)
    >>> cell
    GRUCell(hidden_size=4)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> carry, y = cell.step(params, cell.initial_carry((2,)), jnp.ones((2, 3)))
    >>> carry.shape, bool((y == carry).all())
    ((2, 4), True)

    A cell of your own is three functions (here a leaky integrator :math:`h_t = \tfrac12 h_{t-1}
    + x_t`, no parameters):

    >>> from fdl.nn import Cell
    >>> def step(params, h, x_t):
    ...     h = 0.5 * h + x_t
    ...     return h, h
    >>> def zeros(batch_shape=(), dtype=jnp.float32):
    ...     return jnp.zeros((*batch_shape, 1), dtype)  # (*batch, 1)
    >>> leaky = Cell(init=lambda key, features: {}, step=step, initial_carry=zeros)
    >>> y, _ = fdl.nn.Recurrent(leaky).apply({}, {}, jnp.ones((3, 1)))
    >>> y[:, 0].tolist()
    [1.0, 1.5, 1.75]
    """

    init: Callable[[jax.Array, int], Params]
    step: Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]
    initial_carry: Callable[..., Carry]
    kind: str = "Cell"
    config: tuple[tuple[str, Any], ...] = ()
    scan: Callable[..., tuple[Carry, jax.Array]] | None = None

    def __post_init__(self) -> None:
        for field in ("init", "step", "initial_carry"):
            value = getattr(self, field)
            if not callable(value):
                raise TypeError(f"Cell needs a callable `{field}`, got {value!r}")
        if self.scan is not None and not callable(self.scan):
            raise TypeError(f"Cell's `scan` must be callable or None, got {self.scan!r}")

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter((self.init, self.step, self.initial_carry))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_value_repr(v)}" for k, v in self.config)
        return f"{self.kind}({args})"


def _value_repr(value: Any) -> str:
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    if hasattr(value, "dtype") and hasattr(value, "name") and not hasattr(value, "shape"):
        return str(value.name)  # a NumPy dtype
    if isinstance(value, type):
        return value.__name__
    return repr(value)


# ----------------------------------------------------------------------------- the cells' parts


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What every cell here is configured with (see :func:`LSTMCell` for the meanings)."""

    kind: str
    hidden_size: int
    gates: int
    input_init: Any
    recurrent_init: Any
    bias_init: Any
    param_dtype: Any
    dtype: Any

    def config(self, **extra: Any) -> tuple[tuple[str, Any], ...]:
        """The settings that differ from the defaults, for ``repr``."""
        items = [("hidden_size", self.hidden_size)]
        for arg in ("input_init", "recurrent_init", "bias_init", "dtype"):
            if getattr(self, arg) is not None:
                items.append((arg, getattr(self, arg)))
        if self.param_dtype != jnp.float32:
            items.append(("param_dtype", self.param_dtype))
        return tuple(items) + tuple(extra.items())


def _settings(
    kind: str,
    gates: int,
    hidden_size: Any,
    input_init: Any,
    recurrent_init: Any,
    bias_init: Any,
    param_dtype: Any,
    dtype: Any,
) -> _Settings:
    hidden_size = check_positive_int("hidden_size", hidden_size)
    return _Settings(kind, hidden_size, gates, input_init, recurrent_init, bias_init, param_dtype, dtype)


def _gate_blocks(init: Any, key: jax.Array, shape: tuple[int, ...], gates: int, dtype: Any) -> jax.Array:
    """Call ``init`` once per gate on that gate's block and concatenate on the last axis."""
    blocks = [init(k, shape, dtype) for k in jax.random.split(key, gates)]
    return jnp.concatenate(blocks, axis=-1)  # (*shape[:-1], G*H)


def _init_weights(s: _Settings, key: jax.Array, input_features: Any) -> Params:
    """``{"w_x": (F, G·H), "w_h": (H, G·H), "b": (G·H,)}``, each initializer per gate block."""
    input_features = check_positive_int("input_features", input_features)
    input_init = initializers.lecun_normal() if s.input_init is None else s.input_init
    recurrent_init = initializers.orthogonal() if s.recurrent_init is None else s.recurrent_init
    kx, kh, kb = jax.random.split(key, 3)
    h, g = s.hidden_size, s.gates
    return {
        "w_x": _gate_blocks(input_init, kx, (input_features, h), g, s.param_dtype),  # (F, G*H)
        "w_h": _gate_blocks(recurrent_init, kh, (h, h), g, s.param_dtype),  # (H, G*H)
        "b": _gate_blocks(_bias_init(s), kb, (h,), g, s.param_dtype),  # (G*H,)
    }


def _bias_init(s: _Settings) -> Any:
    return initializers.zeros() if s.bias_init is None else s.bias_init


def _zeros_carry(s: _Settings) -> Callable[..., jax.Array]:
    def initial_carry(batch_shape: Sequence[int] = (), dtype: Any = jnp.float32) -> jax.Array:
        return jnp.zeros((*batch_shape, s.hidden_size), dtype)  # (*batch, H)

    return initial_carry


def _prepare(s: _Settings, params: Params, carry: Carry, x_t: Any) -> tuple[Params, Carry, jax.Array]:
    """Check ``x_t (*batch, F)`` and cast ``params``, ``carry`` and ``x_t`` to the compute dtype:
    ``dtype`` if set, else the input's and the parameters' dtypes promoted."""
    x_t = jnp.asarray(x_t)
    features = params["w_x"].shape[0]
    if x_t.ndim < 1 or x_t.shape[-1] != features:
        raise ValueError(f"{s.kind} expects x_t of shape (..., {features}), got shape {x_t.shape}")
    compute = s.dtype
    if compute is None:
        compute = _dtypes.promote_types(x_t.dtype, params["w_x"].dtype)
    params = jax.tree.map(lambda a: a.astype(compute), params)
    carry = jax.tree.map(lambda a: jnp.asarray(a).astype(compute), carry)
    return params, carry, x_t.astype(compute)


def _gate_sums(params: Params, x_t: jax.Array, h: jax.Array) -> jax.Array:
    r"""All gates' pre-activations :math:`x_t W_x + h_{t-1} W_h + b`, ``(*batch, G·H)``."""
    z = jnp.matmul(x_t, params["w_x"]) + jnp.matmul(h, params["w_h"])  # (*batch, G*H)
    return z + jnp.broadcast_to(params["b"], z.shape)


# ------------------------------------------------------------------------------------ the cells


def RNNCell(
    hidden_size: int,
    *,
    input_init: initializers.Initializer | None = None,
    recurrent_init: initializers.Initializer | None = None,
    bias_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
) -> Cell:
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

    Returns:
      A :class:`Cell` whose carry is :math:`h`.

    Raises:
      ValueError: ``hidden_size`` is not a positive int (at construction); ``input_features``
        not a positive int (at ``init``); ``x_t`` without ``F`` features (at ``step``).

    Differs from PyTorch: ``torch.nn.RNNCell`` stores ``weight_ih`` ``(H, F)``, ``weight_hh``
    ``(H, H)`` and two biases; with ours ``w_x = weight_ih.T``, ``w_h = weight_hh.T`` and
    ``b = bias_ih + bias_hh`` (the two biases are redundant). PyTorch initializes every parameter
    :math:`U(-1/\sqrt{H}, 1/\sqrt{H})`.

    >>> import jax, jax.numpy as jnp, fdl
    >>> cell = fdl.nn.RNNCell(4)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> {k: v.shape for k, v in params.items()}
    {'w_x': (3, 4), 'w_h': (4, 4), 'b': (4,)}
    >>> h, y = cell.step(params, cell.initial_carry((2,)), jnp.ones((2, 3)))
    >>> y.shape
    (2, 4)
    """
    s = _settings("RNNCell", 1, hidden_size, input_init, recurrent_init, bias_init, param_dtype, dtype)

    def step(params: Params, carry: jax.Array, x_t: Any) -> tuple[jax.Array, jax.Array]:
        params, h, x_t = _prepare(s, params, carry, x_t)
        h = jnp.tanh(_gate_sums(params, x_t, h))  # (*batch, H)
        return h, h

    return Cell(functools.partial(_init_weights, s), step, _zeros_carry(s), kind=s.kind, config=s.config())


def LSTMCell(
    hidden_size: int,
    *,
    input_init: initializers.Initializer | None = None,
    recurrent_init: initializers.Initializer | None = None,
    bias_init: initializers.Initializer | None = None,
    forget_bias: float = 1.0,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
) -> Cell:
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
    :math:`x_t` and one on :math:`h_{t-1}`. The carry is the pair **(h, c)**, each
    ``(*batch, H)``, in PyTorch's order; the output at each step is :math:`h_t`.

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
    Returns:
      A :class:`Cell` whose carry is ``(h, c)``.

    Raises:
      ValueError: ``hidden_size`` not a positive int, ``forget_bias`` not a real number (at
        construction); the errors of :func:`RNNCell` at ``init`` and ``step``.

    Differs from PyTorch: ``torch.nn.LSTMCell`` uses the same gate order i, f, g, o and the same
    carry order ``(h, c)``, but stores ``weight_ih`` ``(4H, F)`` and ``weight_hh`` ``(4H, H)``
    (ours are the transposes ``(F, 4H)``, ``(H, 4H)``) and two biases ``bias_ih + bias_hh``
    (ours is their sum ``b``). PyTorch initializes everything :math:`U(-1/\sqrt{H}, 1/\sqrt{H})`,
    forget bias included; Keras adds 1 to the forget bias (``unit_forget_bias=True``) as we do;
    Flax starts all biases at 0 and orders its carry ``(c, h)``. Differs from Haiku: Haiku orders
    the gates i, g, f, o and adds its forget bias in the forward pass rather than at
    initialization.

    >>> import jax, jax.numpy as jnp, fdl
    >>> cell = fdl.nn.LSTMCell(2)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> params["w_x"].shape, params["w_h"].shape, params["b"].tolist()
    ((3, 8), (2, 8), [0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    >>> (h, c), y = cell.step(params, cell.initial_carry(), jnp.ones(3))
    >>> c.shape, bool((y == h).all())
    ((2,), True)
    """
    s = _settings("LSTMCell", 4, hidden_size, input_init, recurrent_init, bias_init, param_dtype, dtype)
    fb = forget_bias
    if not is_real_number(fb) or math.isnan(fb):
        raise ValueError(f"`forget_bias` must be a real number, got {forget_bias!r}")

    def init(key: jax.Array, input_features: int) -> Params:
        params = _init_weights(s, key, input_features)
        h, b = s.hidden_size, params["b"]  # (4H,) = [b_i, b_f, b_g, b_o]
        b_f = b[h : 2 * h] + jnp.asarray(forget_bias, b.dtype)
        params["b"] = jnp.concatenate([b[:h], b_f, b[2 * h :]])  # (4H,)
        return params

    def step(params: Params, carry: tuple[jax.Array, jax.Array], x_t: Any):
        params, (h, c), x_t = _prepare(s, params, tuple(carry), x_t)  # (*batch, H) each
        i, f, g, o = jnp.split(_gate_sums(params, x_t, h), 4, axis=-1)  # (*batch, H) each
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    zeros = _zeros_carry(s)

    def initial_carry(batch_shape: Sequence[int] = (), dtype: Any = jnp.float32):
        return zeros(batch_shape, dtype), zeros(batch_shape, dtype)  # (h, c)

    def scan(params: Params, carry: tuple[jax.Array, jax.Array], xs: Any, keep: Any, *, reverse: bool):
        params, carry, xs = _prepare(s, params, tuple(carry), xs)  # xs: (T, *batch, F)
        return lstm_scan(params, carry, xs, keep, reverse=reverse)

    extra = {} if forget_bias == 1.0 else {"forget_bias": forget_bias}
    return Cell(init, step, initial_carry, kind=s.kind, config=s.config(**extra), scan=scan)


def GRUCell(
    hidden_size: int,
    *,
    input_init: initializers.Initializer | None = None,
    recurrent_init: initializers.Initializer | None = None,
    bias_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
) -> Cell:
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

    Initialization: as :func:`LSTMCell` (each initializer called once per gate block, LeCun
    normal ``w_x``, orthogonal ``w_h`` blocks, zero ``b``), and ``b_hn`` from ``bias_init``.

    Args:
      hidden_size: :math:`H`, a positive int.
      input_init: initializer of each gate's block of ``w_x``; default LeCun normal.
      recurrent_init: initializer of each gate's block of ``w_h``; default orthogonal.
      bias_init: initializer of ``b`` (per gate block) and ``b_hn``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: compute dtype; ``None`` promotes the input's and the parameters' dtypes.

    Returns:
      A :class:`Cell` whose carry is :math:`h`.

    Raises:
      ValueError: as :func:`RNNCell`.

    Differs from PyTorch: same equations and gate order (r, z, n). ``torch.nn.GRUCell`` stores
    ``weight_ih`` ``(3H, F)`` and ``weight_hh`` ``(3H, H)`` (ours are the transposes) and two
    biases ``bias_ih``, ``bias_hh`` ``(3H,)``; with ours ``b = bias_ih + [b_hr, b_hz, 0]`` and
    ``b_hn = bias_hh[2H:]``. Same as Flax's ``GRUCell`` (which uses the r, z, n equations with
    ``b_hn`` and no separate ``b_hr``, ``b_hz``).

    >>> import jax, jax.numpy as jnp, fdl
    >>> cell = fdl.nn.GRUCell(4)
    >>> params = cell.init(jax.random.key(0), 3)
    >>> {k: v.shape for k, v in params.items()}
    {'w_x': (3, 12), 'w_h': (4, 12), 'b': (12,), 'b_hn': (4,)}
    """
    s = _settings("GRUCell", 3, hidden_size, input_init, recurrent_init, bias_init, param_dtype, dtype)

    def init(key: jax.Array, input_features: int) -> Params:
        k_weights, k_hn = jax.random.split(key)
        params = _init_weights(s, k_weights, input_features)
        params["b_hn"] = _bias_init(s)(k_hn, (s.hidden_size,), s.param_dtype)  # (H,)
        return params

    def step(params: Params, carry: jax.Array, x_t: Any) -> tuple[jax.Array, jax.Array]:
        params, h, x_t = _prepare(s, params, carry, x_t)  # h: (*batch, H)
        xw = jnp.matmul(x_t, params["w_x"])  # (*batch, 3H)
        xw = xw + jnp.broadcast_to(params["b"], xw.shape)
        hw = jnp.matmul(h, params["w_h"])  # (*batch, 3H)
        x_r, x_z, x_n = jnp.split(xw, 3, axis=-1)  # (*batch, H) each
        h_r, h_z, h_n = jnp.split(hw, 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * (h_n + jnp.broadcast_to(params["b_hn"], h_n.shape)))
        h = (1.0 - z) * n + z * h
        return h, h

    return Cell(init, step, _zeros_carry(s), kind=s.kind, config=s.config())


# ----------------------------------------------------------------------------------- the scan
