r"""Reverse-mode automatic differentiation on a tape, small enough to read in one sitting.

What ``jax.grad`` does, without tracing or compilation. While ``f`` runs, every primitive
operation on a :class:`Var` appends one entry to a :class:`Tape` (a *Wengert list*): the output,
its inputs, and the operation's *vector-Jacobian product* (VJP), the map
:math:`\bar v \mapsto \bar v \, \partial v / \partial u` for each input :math:`u`. The entries are
recorded in the order they ran, which is a topological order of the computation graph (an input
is always recorded before what uses it), so the backward pass walks the tape in reverse and
accumulates *adjoints* :math:`\bar u = \partial f / \partial u`:

.. math::

    \bar f = 1, \qquad
    \bar u \mathrel{+}= \bar v \, \frac{\partial v}{\partial u}
    \quad \text{for each recorded } v = \mathrm{op}(\dots, u, \dots), \text{ latest first}.

A value used twice gets the sum of both contributions (the multivariate chain rule). The VJPs of
the primitives (shapes: ``a`` and ``b`` the inputs, ``g`` the output's adjoint):

=================  ==========================================================
``a + b``          :math:`\bar a = g, \; \bar b = g`
``a * b``          :math:`\bar a = g\,b, \; \bar b = g\,a`
``a / b``          :math:`\bar a = g / b, \; \bar b = -g\,a / b^2`
``a @ b``          :math:`\bar a = g\,b^\top, \; \bar b = a^\top g`
``tanh(a)``        :math:`\bar a = g\,(1 - \tanh^2 a)`
``exp(a)``         :math:`\bar a = g\,e^a`
``log(a)``         :math:`\bar a = g / a`
``relu(a)``        :math:`\bar a = g\,\mathbb{1}[a > 0]`
``sum(a, axis)``   :math:`\bar a = g` broadcast back over the summed axes
=================  ==========================================================

**Broadcasting.** When ``a`` of shape ``(3, 1)`` is added to ``b`` of shape ``(3, 4)``, each
entry of ``a`` is used 4 times, so its adjoint is the *sum* of the 4 output adjoints:
:func:`unbroadcast` sums ``g`` over the axes that broadcasting created or stretched.

Values are NumPy or JAX arrays (NumPy operations for NumPy inputs, so float64 works without
``jax_enable_x64``). Only what is written here is differentiable: call the module's functions
(:func:`tanh`, :func:`exp`, ...) on a :class:`Var`, not ``numpy``'s.

References:
    R. E. Wengert, "A simple automatic derivative evaluation program", Comm. ACM 7(8), 1964.
    A. G. Baydin, B. A. Pearlmutter, A. A. Radul and J. M. Siskind, "Automatic differentiation in
    machine learning: a survey", JMLR 18(153), 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Tape",
    "Var",
    "exp",
    "grad",
    "log",
    "matmul",
    "mean",
    "mlp_loss",
    "relu",
    "sigmoid",
    "softmax_cross_entropy",
    "sum",
    "tanh",
    "unbroadcast",
    "value_and_grad",
]

Vjp = Callable[[Any], Sequence[Any]]


def _xp(*values: Any) -> Any:
    """NumPy for NumPy values, jax.numpy as soon as one value is a JAX array."""
    return jnp if any(isinstance(v, jax.Array) for v in values) else np


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    r"""Sum the adjoint ``g`` back to ``shape``, undoing NumPy broadcasting.

    Broadcasting prepends axes and stretches size-1 axes; an input entry used :math:`k` times
    receives the sum of those :math:`k` adjoints.

    >>> import numpy as np
    >>> unbroadcast(np.ones((2, 3, 4)), (3, 1)).tolist()
    [[8.0], [8.0], [8.0]]
    """
    xp = _xp(g)
    g = xp.sum(g, axis=tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = xp.sum(g, axis=stretched, keepdims=True)
    return g


class Tape:
    """A Wengert list: the primitive operations in the order they ran.

    Each entry is ``(output, inputs, vjp)``; ``vjp(g)`` returns one adjoint contribution per input.
    """

    def __init__(self) -> None:
        self.entries: list[tuple[Var, tuple[Var, ...], Vjp]] = []

    def __len__(self) -> int:
        return len(self.entries)

    def backward(self, output: Var) -> dict[int, Any]:
        r"""Adjoints :math:`\partial\,\text{output} / \partial v` of every recorded ``v`` (by ``id``).

        ``output`` must be a scalar. Walks the tape latest first; a node no path reaches keeps no
        entry.
        """
        if np.ndim(output.value) != 0:
            raise ValueError(f"grad needs a scalar output, got shape {np.shape(output.value)}")
        adjoints: dict[int, Any] = {id(output): _xp(output.value).ones_like(output.value)}
        for out, inputs, vjp in reversed(self.entries):
            g = adjoints.get(id(out))
            if g is None:  # the output does not depend on this node
                continue
            for var, contribution in zip(inputs, vjp(g), strict=True):
                if var.tape is not self:  # a constant
                    continue
                contribution = unbroadcast(contribution, np.shape(var.value))
                previous = adjoints.get(id(var))
                adjoints[id(var)] = contribution if previous is None else previous + contribution
        return adjoints


class Var:
    """A value on a tape: an array plus the bookkeeping to differentiate through it.

    Arithmetic operators (``+ - * / @``, unary ``-``) are recorded on the tape; a plain array or
    number on the other side is a constant. ``tape=None`` makes a constant ``Var``.
    """

    __array_ufunc__ = None  # numpy_array + Var calls Var.__radd__, not NumPy's loop
    __array_priority__ = 1000

    def __init__(self, value: Any, tape: Tape | None = None) -> None:
        keep = isinstance(value, (np.ndarray, jax.Array, int, float)) and not isinstance(value, bool)
        self.value = value if keep else np.asarray(value)  # Python numbers stay weakly typed
        self.tape = tape

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.value))

    def __repr__(self) -> str:
        return f"Var({self.value!r})"

    def __add__(self, other: Any) -> Var:
        return _add(self, other)

    def __radd__(self, other: Any) -> Var:
        return _add(other, self)

    def __sub__(self, other: Any) -> Var:
        return _add(self, -_as_var(other))

    def __rsub__(self, other: Any) -> Var:
        return _add(other, -self)

    def __mul__(self, other: Any) -> Var:
        return _mul(self, other)

    def __rmul__(self, other: Any) -> Var:
        return _mul(other, self)

    def __truediv__(self, other: Any) -> Var:
        return _div(self, other)

    def __rtruediv__(self, other: Any) -> Var:
        return _div(other, self)

    def __matmul__(self, other: Any) -> Var:
        return matmul(self, other)

    def __rmatmul__(self, other: Any) -> Var:
        return matmul(other, self)

    def __neg__(self) -> Var:
        return _record(-self.value, (self,), lambda g: (-g,))


def _as_var(x: Any) -> Var:
    return x if isinstance(x, Var) else Var(x)


def _record(value: Any, inputs: tuple[Var, ...], vjp: Vjp) -> Var:
    """A new ``Var`` for ``value``; on the inputs' tape (with its VJP) if any input is on one."""
    tapes = {id(v.tape): v.tape for v in inputs if v.tape is not None}
    if len(tapes) > 1:
        raise ValueError("cannot combine Vars from two different tapes (nested grad is not supported)")
    tape = next(iter(tapes.values()), None)
    out = Var(value, tape)
    if tape is not None:
        tape.entries.append((out, inputs, vjp))
    return out


def _aligned(a: Any, b: Any) -> tuple[Var, Var, Any, Any]:
    """Both operands as Vars, and their values with the lower rank given leading size-1 axes.

    NumPy would add those axes itself; doing it here keeps JAX values working under
    ``jax_numpy_rank_promotion="raise"``. The adjoint is summed back by :func:`unbroadcast`.
    """
    a, b = _as_var(a), _as_var(b)
    x, y = a.value, b.value
    rank_x, rank_y = np.ndim(x), np.ndim(y)
    if isinstance(x, (np.ndarray, jax.Array)) and isinstance(y, (np.ndarray, jax.Array)):
        if rank_x < rank_y:
            x = _xp(x).reshape(x, (1,) * (rank_y - rank_x) + np.shape(x))
        elif rank_y < rank_x:
            y = _xp(y).reshape(y, (1,) * (rank_x - rank_y) + np.shape(y))
    return a, b, x, y


def _add(a: Any, b: Any) -> Var:
    a, b, x, y = _aligned(a, b)
    return _record(x + y, (a, b), lambda g: (g, g))


def _mul(a: Any, b: Any) -> Var:
    a, b, x, y = _aligned(a, b)
    return _record(x * y, (a, b), lambda g: (g * y, g * x))


def _div(a: Any, b: Any) -> Var:
    a, b, x, y = _aligned(a, b)
    return _record(x / y, (a, b), lambda g: (g / y, -g * x / (y * y)))


def matmul(a: Any, b: Any) -> Var:
    r"""Matrix product of 2-D arrays, :math:`c = a b`; VJP :math:`\bar a = g b^\top`, :math:`\bar b = a^\top g`.

    >>> import numpy as np
    >>> grad(lambda a: sum(matmul(a, np.ones((2, 3)))))(np.ones((1, 2))).tolist()
    [[3.0, 3.0]]
    """
    a, b = _as_var(a), _as_var(b)
    if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul needs shapes (m, k) and (k, n), got {a.shape} and {b.shape}")
    return _record(a.value @ b.value, (a, b), lambda g: (g @ b.value.T, a.value.T @ g))


def tanh(a: Any) -> Var:
    r"""Elementwise :math:`\tanh`; VJP :math:`\bar a = g (1 - \tanh^2 a)`."""
    a = _as_var(a)
    t = _xp(a.value).tanh(a.value)
    return _record(t, (a,), lambda g: (g * (1.0 - t * t),))


def exp(a: Any) -> Var:
    r"""Elementwise :math:`e^a`; VJP :math:`\bar a = g e^a`."""
    a = _as_var(a)
    e = _xp(a.value).exp(a.value)
    return _record(e, (a,), lambda g: (g * e,))


def log(a: Any) -> Var:
    r"""Elementwise natural logarithm; VJP :math:`\bar a = g / a`."""
    a = _as_var(a)
    return _record(_xp(a.value).log(a.value), (a,), lambda g: (g / a.value,))


def relu(a: Any) -> Var:
    r"""Elementwise :math:`\max(a, 0)`; VJP :math:`\bar a = g \, \mathbb{1}[a > 0]` (0 at 0, as JAX)."""
    a = _as_var(a)
    xp = _xp(a.value)
    positive = a.value > 0
    return _record(xp.where(positive, a.value, 0 * a.value), (a,), lambda g: (xp.where(positive, g, 0 * g),))


def sigmoid(a: Any) -> Var:
    r"""Elementwise :math:`\sigma(a) = 1 / (1 + e^{-a})`; VJP :math:`\bar a = g\,\sigma(a)(1 - \sigma(a))`."""
    a = _as_var(a)
    xp = _xp(a.value)
    s = 0.5 * (xp.tanh(0.5 * a.value) + 1.0)  # = 1 / (1 + e^{-a}), without overflow
    return _record(s, (a,), lambda g: (g * s * (1.0 - s),))


def sum(a: Any, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Var:
    r"""Sum over ``axis`` (all axes if ``None``); VJP: ``g`` broadcast back to ``a``'s shape.

    >>> import numpy as np
    >>> grad(lambda a: sum(a * a))(np.array([1.0, 2.0])).tolist()
    [2.0, 4.0]
    """
    a = _as_var(a)
    xp = _xp(a.value)
    shape = a.shape

    def vjp(g: Any) -> tuple[Any]:
        if not keepdims and axis is not None:
            g = xp.expand_dims(g, axis)  # put the summed axes back as size 1
        return (xp.broadcast_to(g, shape),)

    return _record(xp.sum(a.value, axis=axis, keepdims=keepdims), (a,), vjp)


def mean(a: Any, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Var:
    r"""Mean over ``axis``: :func:`sum` divided by the number of entries summed."""
    a = _as_var(a)
    axes = range(len(a.shape)) if axis is None else ((axis,) if isinstance(axis, int) else axis)
    count = int(np.prod([a.shape[i] for i in axes]))
    return sum(a, axis=axis, keepdims=keepdims) * (1.0 / count)


def softmax_cross_entropy(logits: Var, labels: Any) -> Var:
    r"""Mean softmax cross-entropy of ``(B, C)`` logits and integer labels, from the primitives.

    .. math::

        \mathcal{L} = \frac1B \sum_n \Big(m_n + \log \sum_c e^{z_{nc} - m_n} - z_{n y_n}\Big),
        \qquad m_n = \max_c z_{nc}

    The shift :math:`m_n` keeps ``exp`` from overflowing; it is taken as a constant (not on the
    tape): the value does not depend on it, so neither does the gradient. The tape then
    produces :math:`(\operatorname{softmax}(z) - \operatorname{onehot}(y)) / B` without being
    told.

    >>> import numpy as np
    >>> round(float(softmax_cross_entropy(Var(np.zeros((2, 4))), np.array([0, 3])).value), 4)  # log 4
    1.3863
    """
    logits = _as_var(logits)
    xp = _xp(logits.value)
    classes = logits.shape[-1]
    shift = xp.max(logits.value, axis=-1, keepdims=True)  # (B, 1), a constant
    lse = log(sum(exp(logits - shift), axis=-1, keepdims=True)) + shift  # (B, 1)
    onehot = (
        xp.asarray(labels)[:, None] == xp.arange(classes, dtype=xp.asarray(labels).dtype)[None, :]
    ).astype(logits.value.dtype)  # (B, C)
    picked = sum(logits * onehot, axis=-1, keepdims=True)  # (B, 1): z_{n, y_n}
    return mean(lse - picked)


def mlp_loss(params: dict, x: Any, labels: Any, activation: str = "relu") -> Var:
    r"""An MLP's mean softmax cross-entropy written with the tape's primitives.

    The same function as :func:`fdl.backprop.mlp_loss`: ``params`` in fdl.nn.MLP's layout
    (``{"dense_0": {"w", "b"}, ...}``), :math:`h_k = \sigma(h_{k-1} W_k + b_k)` between layers.
    ``grad(mlp_loss)(params, x, labels)`` is then reverse mode on the recorded tape.

    >>> import numpy as np
    >>> params = {"dense_0": {"w": np.zeros((3, 2)), "b": np.zeros(2)}}
    >>> g = grad(mlp_loss)(params, np.ones((4, 3)), np.array([0, 1, 0, 1]))
    >>> g["dense_0"]["b"].tolist()
    [0.0, 0.0]
    """
    functions = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid}
    if activation not in functions:
        raise ValueError(f"`activation` must be one of {', '.join(map(repr, functions))}, got {activation!r}")
    h = x
    count = len(params)
    for k in range(count):
        layer = params[f"dense_{k}"]
        z = matmul(h, layer["w"]) + layer["b"]  # (B, out_k): b broadcast over the batch
        h = functions[activation](z) if k < count - 1 else z
    return softmax_cross_entropy(h, labels)


def value_and_grad(f: Callable[..., Any], argnums: int = 0) -> Callable[..., tuple[Any, Any]]:
    r"""``f``'s value and its gradient with respect to argument ``argnums``, by the tape.

    The argument may be an array or any pytree of arrays (a params dict): every leaf becomes a
    :class:`Var` on a fresh :class:`Tape`, ``f`` runs once (recording), then one backward pass
    gives all leaves' adjoints. ``f`` must return a scalar ``Var``.

    Returns:
      A function of ``f``'s arguments returning ``(value, gradient)``, the gradient with the
      argument's structure (zeros for leaves the output does not depend on).

    Raises:
      ValueError: ``f`` returns something that is not a scalar computed from the argument.

    >>> import numpy as np
    >>> value, g = value_and_grad(lambda x: sum(tanh(x)))(np.zeros(2))
    >>> float(value), g.tolist()
    (0.0, [1.0, 1.0])
    """

    def wrapped(*args: Any) -> tuple[Any, Any]:
        if not 0 <= argnums < len(args):
            raise ValueError(f"`argnums` is {argnums} but the function got {len(args)} arguments")
        tape = Tape()
        leaves, treedef = jax.tree_util.tree_flatten(args[argnums])
        variables = [Var(leaf, tape) for leaf in leaves]
        inputs = list(args)
        inputs[argnums] = jax.tree_util.tree_unflatten(treedef, variables)
        out = f(*inputs)
        if not isinstance(out, Var) or out.tape is not tape:
            raise ValueError(
                f"the function must return a scalar Var computed from argument {argnums}, "
                f"got {type(out).__name__}"
            )
        adjoints = tape.backward(out)
        grads = [adjoints.get(id(v), _xp(v.value).zeros_like(v.value)) for v in variables]
        return out.value, jax.tree_util.tree_unflatten(treedef, grads)

    return wrapped


def grad(f: Callable[..., Any], argnums: int = 0) -> Callable[..., Any]:
    r"""The gradient of a scalar function by reverse mode on a tape, like ``jax.grad``.

    .. math::

        \texttt{grad(f)(x)} = \nabla_x f(x), \text{ by one forward (recording) and one reverse pass}

    See :func:`value_and_grad`.

    >>> import numpy as np
    >>> grad(lambda x: sum(x * x * x))(np.array([1.0, 2.0])).tolist()  # 3 x^2
    [3.0, 12.0]
    """
    value_and_grad_f = value_and_grad(f, argnums)
    return lambda *args: value_and_grad_f(*args)[1]
