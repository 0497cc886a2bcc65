r"""Recurrent layers: Elman, LSTM and GRU cells, scanned over time in one or both directions.

A **cell** is the one-step rule :math:`(\text{carry}_{t-1}, x_t) \mapsto (\text{carry}_t, y_t)`,
held in a :class:`Cell`: a record of three pure functions, like a layer's ``(init, apply)`` pair,

.. code-block:: text

    init(key, input_features)              -> params              # {"w_x", "w_h", "b", ...}
    step(params, carry, x_t)               -> (carry, y_t)        # x_t: (*batch, F)
    initial_carry(batch_shape=(), dtype)   -> carry               # zeros

The carry is an ordinary pytree, with no layout tags: :math:`h` itself, ``(*batch, H)``, for
:func:`RNNCell` and :func:`GRUCell`, and the pair ``(h, c)`` for :func:`LSTMCell`, in PyTorch's
order (``torch.nn.LSTM`` returns ``(h_n, c_n)``). The output :math:`y_t` is :math:`h_t` for all
three. Any ``Cell(init, step, initial_carry)`` with that contract works with the layers.

The layers are :func:`Recurrent` (one direction, a ``jax.lax.scan`` over time),
:func:`Bidirectional` (both directions, merged) and :func:`stacked` (a :func:`~fdl.nn.Serial` of
:func:`Recurrent` layers). Sequences are ``(*batch, T, F)``, time on the second-to-last axis,
channels last. :func:`Recurrent` can return its final carry beside the outputs
(``return_carry=True``) and starts from a given carry when its input is the pair
``(x, initial_carry)``; so a sequence can be run in pieces, or an encoder's final carry can
start a decoder.

**Masks.** ``apply(..., mask=mask)``, ``mask`` bool ``(*batch, T)``, ``True`` at real steps. At a
padded step the carry is *not* updated and the output is zero, so padded steps have no effect at
all: the result equals running each sequence alone on its real steps (tested), and the final
carry is the carry after the last real step. Running in reverse skips the padded tail first, so
a right-padded sequence is reversed within its own length.

**Speed.** Every cell computes all its gates with one matmul on :math:`x_t` and one on
:math:`h_{t-1}` (the gates' kernels concatenated, ``w_x: (F, G·H)``, ``w_h: (H, G·H)``), both
inside the scan's step, as Flax's ``OptimizedLSTMCell`` does. Computing :math:`x W_x + b` for all
``T`` steps before the scan (one big matmul) was measured slower on CPU: it writes, transposes
and re-reads a ``(T, *batch, G·H)`` array both ways (16 times the size of ``x`` for the LSTM of
the benchmark), where the in-step matmul reads a ``(*batch, F)`` slice. When only the last output
is wanted (``return_sequences=False``, no mask) the last step runs after the scan, so the scan
stacks no outputs. See ``docs/design.md`` and ``benchmarks/lstm.py``.

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
from fdl._checks import check_bool, check_choice, check_positive_int, check_shape
from fdl.nn.combinators import Serial
from fdl.nn.layer import Layer, composite, layer_factory

__all__ = ["Cell", "RNNCell", "LSTMCell", "GRUCell", "Recurrent", "Bidirectional", "stacked"]

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

    def __post_init__(self) -> None:
        for field in ("init", "step", "initial_carry"):
            value = getattr(self, field)
            if not callable(value):
                raise TypeError(f"Cell needs a callable `{field}`, got {value!r}")

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


def _settings(kind: str, gates: int, hidden_size: Any, input_init: Any, recurrent_init: Any,
              bias_init: Any, param_dtype: Any, dtype: Any) -> _Settings:
    check_positive_int("hidden_size", hidden_size)
    return _Settings(kind, hidden_size, gates, input_init, recurrent_init, bias_init, param_dtype,
                     dtype)


def _gate_blocks(
    init: Any, key: jax.Array, shape: tuple[int, ...], gates: int, dtype: Any
) -> jax.Array:
    """Call ``init`` once per gate on that gate's block and concatenate on the last axis."""
    blocks = [init(k, shape, dtype) for k in jax.random.split(key, gates)]
    return jnp.concatenate(blocks, axis=-1)  # (*shape[:-1], G*H)


def _init_weights(s: _Settings, key: jax.Array, input_features: Any) -> Params:
    """``{"w_x": (F, G·H), "w_h": (H, G·H), "b": (G·H,)}``, each initializer per gate block."""
    check_positive_int("input_features", input_features)
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


def _prepare(
    s: _Settings, params: Params, carry: Carry, x_t: Any
) -> tuple[Params, Carry, jax.Array]:
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
    s = _settings("RNNCell", 1, hidden_size, input_init, recurrent_init, bias_init, param_dtype,
                  dtype)

    def step(params: Params, carry: jax.Array, x_t: Any) -> tuple[jax.Array, jax.Array]:
        params, h, x_t = _prepare(s, params, carry, x_t)
        h = jnp.tanh(_gate_sums(params, x_t, h))  # (*batch, H)
        return h, h

    return Cell(functools.partial(_init_weights, s), step, _zeros_carry(s), kind=s.kind,
                config=s.config())


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
    s = _settings("LSTMCell", 4, hidden_size, input_init, recurrent_init, bias_init, param_dtype,
                  dtype)
    fb = forget_bias
    if isinstance(fb, bool) or not isinstance(fb, (int, float)) or math.isnan(fb):
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

    extra = {} if forget_bias == 1.0 else {"forget_bias": forget_bias}
    return Cell(init, step, initial_carry, kind=s.kind, config=s.config(**extra))


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
    s = _settings("GRUCell", 3, hidden_size, input_init, recurrent_init, bias_init, param_dtype,
                  dtype)

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


def _check_cell(where: str, arg: str, cell: Any) -> Cell:
    if not isinstance(cell, Cell):
        raise TypeError(
            f"{where}: `{arg}` must be a fdl.nn.Cell (RNNCell(H), LSTMCell(H), GRUCell(H) or "
            f"Cell(init, step, initial_carry)), got {cell!r}"
        )
    return cell


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(
        isinstance(d, int) and not isinstance(d, bool) for d in value
    )


def _shapes(tree: Any) -> Any:
    """The shapes of a tree of arrays (or ``ShapeDtypeStruct``\\ s), as a tree of tuples."""
    return jax.tree.map(lambda a: tuple(jnp.shape(a)), tree)


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
    if isinstance(input_shape, (tuple, list)) and input_shape and not _is_shape(input_shape):
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


def _split_input(kind: str, x: Any) -> tuple[Any, Any]:
    """``x`` or ``(x, initial_carry)`` -> ``(x, initial_carry or None)``."""
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(
                f"{kind} takes x or the pair (x, initial_carry), got a {type(x).__name__} of "
                f"length {len(x)}"
            )
        return x[0], x[1]
    return x, None


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
            raise ValueError(
                f"{kind} expects a bool mask (True at real steps), got dtype {mask.dtype}"
            )
        if mask.shape != x.shape[:-1]:
            raise ValueError(
                f"{kind} expects a mask of shape (*batch, T) = {x.shape[:-1]} for inputs of shape "
                f"{x.shape}, got a mask of shape {mask.shape}"
            )
    x_t = jax.ShapeDtypeStruct(batch + x.shape[-1:], x.dtype)  # (*batch, F)
    try:
        carry_type, _ = _step_types(cell, params, batch, x_t)
    except ValueError as err:
        raise ValueError(
            f"{kind} got inputs of shape {x.shape} (steps {x_t.shape}): {err}"
        ) from err
    if carry is not None:
        want, got = _shapes(carry_type), _shapes(carry)
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
    if keep is None and not return_sequences:  # only the last output: stack none
        if xs.shape[0] == 0:
            return jnp.zeros(y_type.shape, y_type.dtype), carry
        # the last step read runs after the scan, so the scan itself outputs nothing
        rest, x_last = (xs[1:], xs[0]) if reverse else (xs[:-1], xs[-1])
        final, _ = jax.lax.scan(lambda c, x_t: (cell.step(params, c, x_t)[0], None), carry, rest,
                                reverse=reverse)
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
    _check_cell("Recurrent", "cell", cell)
    for flag, value in (("return_sequences", return_sequences), ("return_carry", return_carry),
                        ("reverse", reverse)):
        check_bool(flag, value)

    def init(key: jax.Array, input_shape: Any) -> tuple[Params, dict, Any]:
        (t, features), carry_shapes = _split_input_shape("Recurrent", input_shape)
        params = cell.init(key, features)
        carry_type, y_type = _step_types(
            cell, params, (), jax.ShapeDtypeStruct((features,), jnp.float32)
        )
        want = _shapes(carry_type)
        if carry_shapes is not None and _as_tuples(carry_shapes) != want:
            raise ValueError(
                f"Recurrent expects the initial carry's shapes to be {want} (per example) for "
                f"{cell!r}, got {carry_shapes!r}"
            )
        out = (t, *y_type.shape) if return_sequences else tuple(y_type.shape)
        return params, {}, ((out, want) if return_carry else out)

    def apply(params: Params, state: Any, x: Any, *, key: Any = None, train: bool = False,
              mask: Any = None):
        del key, train  # deterministic
        x, carry = _split_input("Recurrent", x)
        x, mask, carry = _validate("Recurrent", cell, params, x, mask, carry)
        y, final = _run(cell, params, x, mask, carry, reverse=reverse,
                        return_sequences=return_sequences)
        return ((y, final) if return_carry else y), state

    return Layer(init, apply)


def _as_tuples(shapes: Any) -> Any:
    """A tree of shapes with every list turned into a tuple (shapes may be written as lists)."""
    if isinstance(shapes, (tuple, list)):
        return tuple(_as_tuples(v) for v in shapes)
    if isinstance(shapes, dict):
        return {k: _as_tuples(v) for k, v in shapes.items()}
    return shapes


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
    _check_cell("Bidirectional", "forward", forward)
    backward = forward if backward is None else _check_cell("Bidirectional", "backward", backward)
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
            x, carries = _split_input("Bidirectional", x)
            if not isinstance(carries, (tuple, list)) or len(carries) != 2:
                raise ValueError(
                    "Bidirectional expects the initial carry as the pair (carry_forward, "
                    f"carry_backward), got shapes {_shapes(carries)}"
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


def stacked(
    cells: Sequence[Cell], *, return_sequences: bool = True, name: str | None = None
) -> Layer:
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
    >>> from fdl.nn.recurrent import stacked
    >>> model = stacked([fdl.nn.LSTMCell(8), fdl.nn.GRUCell(4)], return_sequences=False)
    >>> params, state, shape = model.init(jax.random.key(0), (6, 3))
    >>> shape, sorted(params)
    ((4,), ['recurrent_0', 'recurrent_1'])
    """
    cells = tuple(cells)
    if not cells:
        raise ValueError("stacked needs at least one cell, got none")
    for i, cell in enumerate(cells):
        _check_cell("stacked", f"cells[{i}]", cell)
    check_bool("return_sequences", return_sequences)
    layers = [
        Recurrent(cell, return_sequences=return_sequences if i == len(cells) - 1 else True)
        for i, cell in enumerate(cells)
    ]
    return Serial(*layers, name=name)
