"""Combinators build models from layers: composition, branches, merges and skips.

Every combinator is itself a :class:`~fdl.nn.Layer`. Its ``params`` and ``state`` are tuples of
its children's, in order, so parameter paths read ``2/w`` (the ``w`` of the third child). It splits
the PRNG key it is given among its children, so two dropout layers never share a mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_choice, check_positive_int, check_shape
from fdl.nn.layer import Layer, Shape, check_layers, split_key

__all__ = [
    "Serial",
    "Parallel",
    "FanOut",
    "Concat",
    "Sum",
    "Branch",
    "Residual",
    "Identity",
    "Flatten",
    "Elementwise",
]


def _children(combinator: str, tree: Any, num: int, what: str) -> tuple[Any, ...]:
    """The per-child entries of ``params``/``state``; ``None`` (stateless) fans out as ``None``."""
    if tree is None and what == "state":
        return (None,) * num
    if not isinstance(tree, (tuple, list)) or len(tree) != num:
        got = f"{type(tree).__name__} of length {len(tree)}" if hasattr(tree, "__len__") else tree
        raise ValueError(
            f"{combinator} of {num} layers expects `{what}` to be a tuple of {num} entries "
            f"(one per layer, as its init returned), got {got}"
        )
    return tuple(tree)


def Serial(*layers: Layer, name: str = "serial") -> Layer:
    r"""Compose layers in order: :math:`f = f_n \circ \cdots \circ f_1`.

    The chain rule gives the backward pass,
    :math:`\partial f / \partial x = J_{f_n} \cdots J_{f_1}`, which ``jax.grad`` evaluates
    right to left (reverse mode).

    Args:
      *layers: the layers, applied first to last.
      name: the name shown in error messages.

    Returns:
      A :class:`~fdl.nn.Layer` whose ``params`` and ``state`` are tuples of the layers'.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dense(8), fdl.nn.Relu(), fdl.nn.Dense(2))
    >>> params, state, shape = model.init(jax.random.key(0), (4,))
    >>> shape, len(params), sorted(params[2])
    ((2,), 3, ['b', 'w'])
    """
    layers = check_layers("Serial", layers)
    num = len(layers)

    def init(key: jax.Array, input_shape: Shape):
        params, states, shape = [], [], input_shape
        for layer, k in zip(layers, jax.random.split(key, num), strict=True):
            p, s, shape = layer.init(k, shape)
            params.append(p)
            states.append(s)
        return tuple(params), tuple(states), shape

    def apply(params, state, x, *, key=None, train=False):
        params = _children(f"Serial {name!r}", params, num, "params")
        states = _children(f"Serial {name!r}", state, num, "state")
        new_states = []
        for layer, p, s, k in zip(layers, params, states, split_key(key, num), strict=True):
            x, s = layer.apply(p, s, x, key=k, train=train)
            new_states.append(s)
        return x, tuple(new_states)

    return Layer(init, apply, name)


def Parallel(*layers: Layer, name: str = "parallel") -> Layer:
    r"""Apply layer :math:`i` to input :math:`i`: :math:`(x_1, \ldots, x_n) \mapsto (f_1(x_1),
    \ldots, f_n(x_n))`.

    The input (and ``input_shape``) is a tuple of ``n`` entries; so is the output. Pair it with
    :func:`FanOut` before and :func:`Concat` or :func:`Sum` after, or use :func:`Branch`.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Parallel(fdl.nn.Dense(2), fdl.nn.Dense(3))
    >>> _, _, shapes = model.init(jax.random.key(0), ((4,), (5,)))
    >>> shapes
    ((2,), (3,))
    """
    layers = check_layers("Parallel", layers)
    num = len(layers)

    def init(key: jax.Array, input_shape: Sequence[Shape]):
        shapes = _children(f"Parallel {name!r}", input_shape, num, "input_shape")
        results = [
            layer.init(k, s)
            for layer, k, s in zip(layers, jax.random.split(key, num), shapes, strict=True)
        ]
        params, states, out_shapes = zip(*results, strict=True)
        return tuple(params), tuple(states), tuple(out_shapes)

    def apply(params, state, x, *, key=None, train=False):
        where = f"Parallel {name!r}"
        xs = _children(where, x, num, "x")
        params = _children(where, params, num, "params")
        states = _children(where, state, num, "state")
        outs = [
            layer.apply(p, s, xi, key=k, train=train)
            for layer, p, s, xi, k in zip(layers, params, states, xs, split_key(key, num), strict=True)
        ]
        ys, new_states = zip(*outs, strict=True)
        return tuple(ys), tuple(new_states)

    return Layer(init, apply, name)


def FanOut(num: int, *, name: str = "fan_out") -> Layer:
    """Copy the input ``num`` times: :math:`x \\mapsto (x, \\ldots, x)`.

    Its gradient sums the cotangents of the copies (the multivariate chain rule).

    >>> import jax, jax.numpy as jnp, fdl
    >>> fdl.nn.FanOut(2).init(jax.random.key(0), (3,))[2]
    ((3,), (3,))
    """
    check_positive_int("num", num)

    def init(key: jax.Array, input_shape: Shape):
        return {}, {}, (check_shape("input_shape", input_shape),) * num

    def apply(params, state, x, *, key=None, train=False):
        return (x,) * num, state

    return Layer(init, apply, name)


def _merge_shapes(merge: str, shapes: Sequence[Shape], axis: int, where: str) -> Shape:
    """The output shape of concatenating (along ``axis``) or summing per-example ``shapes``."""
    shapes = [check_shape("input_shape", s) for s in shapes]
    first = shapes[0]
    if merge == "sum":
        if any(s != first for s in shapes):
            raise ValueError(f"{where} sums inputs of equal shapes, got shapes {tuple(shapes)}")
        return first
    if any(len(s) < -axis for s in shapes):
        raise ValueError(f"{where} concatenates along axis {axis}, got shapes {tuple(shapes)}")
    rest = [s[:axis] + s[axis:][1:] for s in shapes]
    if any(r != rest[0] for r in rest):
        raise ValueError(
            f"{where} concatenates along axis {axis}: the other axes must match, "
            f"got shapes {tuple(shapes)}"
        )
    size = sum(s[axis] for s in shapes)
    return first[:axis] + (size,) + first[axis:][1:]


def _merge(merge: str, xs: Sequence[Any], axis: int) -> Any:
    if merge == "sum":
        total = xs[0]
        for x in xs[1:]:
            total = total + x
        return total
    return jnp.concatenate(xs, axis=axis)


def _check_axis(axis: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int) or axis >= 0:
        raise ValueError(
            f"`axis` must be a negative int (counted from the end, so it means the same with "
            f"any number of leading batch axes), got {axis!r}"
        )
    return axis


def Concat(axis: int = -1, *, name: str = "concat") -> Layer:
    r"""Concatenate a tuple of inputs along ``axis``: :math:`(x_1, \ldots, x_n) \mapsto
    [x_1; \ldots; x_n]`.

    ``axis`` is negative (counted from the end) so that leading batch axes do not shift it.

    >>> import jax, jax.numpy as jnp, fdl
    >>> y, _ = fdl.nn.Concat().apply({}, {}, (jnp.zeros((5, 2)), jnp.ones((5, 3))))
    >>> y.shape
    (5, 5)
    """
    axis = _check_axis(axis)

    def init(key: jax.Array, input_shape: Sequence[Shape]):
        return {}, {}, _merge_shapes("concat", input_shape, axis, f"Concat {name!r}")

    def apply(params, state, x, *, key=None, train=False):
        return _merge("concat", x, axis), state

    return Layer(init, apply, name)


def Sum(*, name: str = "sum") -> Layer:
    r"""Sum a tuple of equally shaped inputs: :math:`(x_1, \ldots, x_n) \mapsto \sum_i x_i`.

    >>> import jax.numpy as jnp, fdl
    >>> fdl.nn.Sum().apply({}, {}, (jnp.ones(2), jnp.ones(2)))[0].tolist()
    [2.0, 2.0]
    """

    def init(key: jax.Array, input_shape: Sequence[Shape]):
        return {}, {}, _merge_shapes("sum", input_shape, -1, f"Sum {name!r}")

    def apply(params, state, x, *, key=None, train=False):
        return _merge("sum", x, -1), state

    return Layer(init, apply, name)


def Branch(*layers: Layer, merge: str = "concat", axis: int = -1, name: str = "branch") -> Layer:
    r"""Apply every layer to the same input and merge: :math:`x \mapsto
    \mathrm{merge}(f_1(x), \ldots, f_n(x))`.

    The fan-out/parallel/merge pattern of Inception blocks in one layer; equivalent to
    ``Serial(FanOut(n), Parallel(*layers), Concat(axis) or Sum())`` but with ``params`` a flat
    tuple of the branches'.

    Args:
      *layers: the branches.
      merge: ``"concat"`` (along ``axis``) or ``"sum"``.
      axis: the negative axis to concatenate along.
      name: the name shown in error messages.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Branch(fdl.nn.Dense(2), fdl.nn.Dense(3))
    >>> model.init(jax.random.key(0), (4,))[2]
    (5,)
    """
    layers = check_layers("Branch", layers)
    check_choice("merge", merge, ("concat", "sum"))
    axis = _check_axis(axis)
    num = len(layers)
    where = f"Branch {name!r}"

    def init(key: jax.Array, input_shape: Shape):
        results = [layer.init(k, input_shape) for layer, k in zip(layers, jax.random.split(key, num), strict=True)]
        params, states, shapes = zip(*results, strict=True)
        return tuple(params), tuple(states), _merge_shapes(merge, shapes, axis, where)

    def apply(params, state, x, *, key=None, train=False):
        params = _children(where, params, num, "params")
        states = _children(where, state, num, "state")
        outs = [
            layer.apply(p, s, x, key=k, train=train)
            for layer, p, s, k in zip(layers, params, states, split_key(key, num), strict=True)
        ]
        ys, new_states = zip(*outs, strict=True)
        return _merge(merge, ys, axis), tuple(new_states)

    return Layer(init, apply, name)


def Residual(layer: Layer, *, name: str = "residual") -> Layer:
    r"""A skip connection around ``layer``: :math:`y = x + f(x)`.

    Its Jacobian is :math:`I + J_f`, so the gradient reaches :math:`x` even where :math:`J_f`
    is small (He et al., 2016, "Deep Residual Learning for Image Recognition").

    Raises:
      ValueError: at ``init``, if ``layer`` changes the shape (the sum needs equal shapes).

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Residual(fdl.nn.Dense(3, w_init=fdl.initializers.zeros()))
    >>> params, state, _ = model.init(jax.random.key(0), (3,))
    >>> model.apply(params, state, jnp.ones(3))[0].tolist()
    [1.0, 1.0, 1.0]
    """
    (layer,) = check_layers("Residual", (layer,))

    def init(key: jax.Array, input_shape: Shape):
        params, state, out_shape = layer.init(key, input_shape)
        if tuple(out_shape) != tuple(input_shape):
            raise ValueError(
                f"Residual {name!r}: the wrapped layer {layer.name!r} must keep the shape for "
                f"x + f(x), but maps {tuple(input_shape)} to {tuple(out_shape)}"
            )
        return params, state, out_shape

    def apply(params, state, x, *, key=None, train=False):
        y, state = layer.apply(params, state, x, key=key, train=train)
        return x + y, state

    return Layer(init, apply, name)


def Identity(*, name: str = "identity") -> Layer:
    """The identity layer :math:`y = x` (a placeholder, or the skip branch of a :func:`Branch`).

    >>> import jax.numpy as jnp, fdl
    >>> fdl.nn.Identity().apply({}, {}, jnp.ones(2))[0].tolist()
    [1.0, 1.0]
    """

    def init(key: jax.Array, input_shape: Shape):
        return {}, {}, input_shape

    def apply(params, state, x, *, key=None, train=False):
        return x, state

    return Layer(init, apply, name)


def Flatten(ndim: int, *, name: str = "flatten") -> Layer:
    r"""Flatten the last ``ndim`` axes into one: ``(*batch, d_1, ..., d_ndim) -> (*batch,
    d_1 ... d_ndim)``.

    ``ndim`` is explicit because ``apply`` accepts any number of leading batch axes: flattening
    "all but the first axis" would flatten a single example differently from a batch, and
    ``jax.vmap`` would disagree with the batched call. For NHWC images use ``Flatten(3)``.

    Raises:
      ValueError: ``ndim`` not a positive int; an input with fewer than ``ndim`` axes.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.Flatten(3)
    >>> layer.init(jax.random.key(0), (8, 8, 1))[2]
    (64,)
    >>> layer.apply({}, {}, jnp.zeros((5, 8, 8, 1)))[0].shape
    (5, 64)
    """
    check_positive_int("ndim", ndim)

    def init(key: jax.Array, input_shape: Shape):
        shape = check_shape("input_shape", input_shape)
        if len(shape) < ndim:
            raise ValueError(
                f"Flatten {name!r} flattens the last {ndim} axes, got input_shape {shape}"
            )
        return {}, {}, shape[: len(shape) - ndim] + (math.prod(shape[len(shape) - ndim :]),)

    def apply(params, state, x, *, key=None, train=False):
        if jnp.ndim(x) < ndim:
            raise ValueError(
                f"Flatten {name!r} flattens the last {ndim} axes, got an input of shape "
                f"{jnp.shape(x)}"
            )
        shape = jnp.shape(x)
        lead, tail = shape[: len(shape) - ndim], shape[len(shape) - ndim :]
        return jnp.reshape(x, lead + (math.prod(tail),)), state  # (*batch, d_1 ... d_ndim)

    return Layer(init, apply, name)


def Elementwise(fn: Callable[[Any], Any], *, name: str | None = None) -> Layer:
    """Wrap a parameter-free function ``fn(x)`` (an activation, say) as a layer.

    ``fn`` must act on the trailing axes only (elementwise, or along ``axis=-1`` like softmax),
    so that leading batch axes pass through. The output shape is found with ``jax.eval_shape``,
    without computing anything.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.Elementwise(jnp.square)
    >>> layer.apply({}, {}, jnp.array([2.0, 3.0]))[0].tolist()
    [4.0, 9.0]
    """
    if not callable(fn):
        raise TypeError(f"Elementwise: `fn` must be callable, got {fn!r}")
    layer_name = name if name is not None else getattr(fn, "__name__", "elementwise")

    def init(key: jax.Array, input_shape: Shape):
        shape = check_shape("input_shape", input_shape)
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct(shape, jnp.float32))
        return {}, {}, tuple(out.shape)

    def apply(params, state, x, *, key=None, train=False):
        return fn(x), state

    return Layer(init, apply, layer_name)
