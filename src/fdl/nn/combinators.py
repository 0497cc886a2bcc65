"""Combinators build models from layers: composition, branches, merges and skips.

Every combinator is itself a :class:`~fdl.nn.Layer`. Its ``params`` and ``state`` are dicts of
its children's trees keyed by the children's names (see :mod:`fdl.nn.layer`), so a parameter's
path reads ``head/w`` or ``dense_1/b``. It splits the PRNG key it is given among its children, so
two dropout layers never share a mask, and hands the ``mask`` keyword to every child.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_choice, check_negative_axis, check_positive_int, check_shape
from fdl.nn._children import (
    apply_child,
    check_entries,
    check_layers,
    child_tree,
    gather,
    init_child,
    is_shape,
    named_children,
    split_key,
    with_children,
)
from fdl.nn.layer import Layer, Shape, layer_factory

__all__ = [
    "Serial",
    "Parallel",
    "FanOut",
    "Concat",
    "Sum",
    "Multiply",
    "Branch",
    "Residual",
    "Identity",
    "Flatten",
    "Elementwise",
]

MERGES = ("concat", "sum", "product")


def _apply_all(where, named, params, state, xs, key, train, mask):
    """Apply child ``i`` to ``xs[i]``; returns the outputs and the gathered new state."""
    check_entries(where, named, params, state)
    outs, states = [], []
    for (child_name, layer), x, k in zip(named, xs, split_key(key, len(named)), strict=True):
        y, s = apply_child(
            child_name,
            layer,
            child_tree(where, params, child_name, "params"),
            child_tree(where, state, child_name, "state"),
            x,
            key=k,
            train=train,
            mask=mask,
        )
        outs.append(y)
        states.append((child_name, s))
    return outs, gather(states)


def _init_all(named, key, shapes):
    """Init child ``i`` for ``shapes[i]``; returns params, state (gathered) and output shapes."""
    params, states, out_shapes = [], [], []
    for (child_name, layer), k, shape in zip(named, jax.random.split(key, len(named)), shapes, strict=True):
        p, s, out = init_child(child_name, layer, k, shape)
        params.append((child_name, p))
        states.append((child_name, s))
        out_shapes.append(out)
    return gather(params), gather(states), out_shapes


@layer_factory
def Serial(*layers: Layer, name: str | None = None) -> Layer:
    r"""Compose layers in order: :math:`f = f_n \circ \cdots \circ f_1`.

    The chain rule gives the backward pass,
    :math:`\partial f / \partial x = J_{f_n} \cdots J_{f_1}`, which ``jax.grad`` evaluates
    right to left (reverse mode).

    Args:
      *layers: the layers, applied first to last.
      name: its name in a parent's paths (automatic if ``None``).

    Returns:
      A :class:`~fdl.nn.Layer` whose ``params`` and ``state`` are dicts keyed by the layers'
      names (``dense_0``, ``relu_0``, ... for unnamed layers); parameter-free layers are left out.

    Raises:
      ValueError: no layers, or two with the same name. TypeError: an argument that is not a
        layer.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dense(8), fdl.nn.Relu(), fdl.nn.Dense(2, name="head"))
    >>> params, state, shape = model.init(jax.random.key(0), (4,))
    >>> shape, sorted(params), sorted(params["head"])
    ((2,), ['dense_0', 'head'], ['b', 'w'])
    """
    return _serial(named_children("Serial", layers), name)


def _serial(named: tuple[tuple[str, Layer], ...], name: str | None) -> Layer:
    where = f"Serial {name!r}" if name else "Serial"

    def init(key: jax.Array, input_shape: Shape):
        params, states, shape = [], [], input_shape
        for (child_name, layer), k in zip(named, jax.random.split(key, len(named)), strict=True):
            p, s, shape = init_child(child_name, layer, k, shape)
            params.append((child_name, p))
            states.append((child_name, s))
        return gather(params), gather(states), shape

    def apply(params, state, x, *, key=None, train=False, mask=None):
        check_entries(where, named, params, state)
        new_states = []
        for (child_name, layer), k in zip(named, split_key(key, len(named)), strict=True):
            x, s = apply_child(
                child_name,
                layer,
                child_tree(where, params, child_name, "params"),
                child_tree(where, state, child_name, "state"),
                x,
                key=k,
                train=train,
                mask=mask,
            )
            new_states.append((child_name, s))
        return x, gather(new_states)

    return Layer(
        init, apply, name=name, kind="Serial", children=named, rebuild=lambda new: _serial(new, name)
    )


@layer_factory
def Parallel(*layers: Layer, name: str | None = None) -> Layer:
    r"""Apply layer :math:`i` to input :math:`i`: :math:`(x_1, \ldots, x_n) \mapsto (f_1(x_1),
    \ldots, f_n(x_n))`.

    The input (and ``input_shape``) is a tuple of ``n`` entries; so is the output. Pair it with
    :func:`FanOut` before and :func:`Concat`, :func:`Sum` or :func:`Multiply` after, or use
    :func:`Branch`.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Parallel(fdl.nn.Dense(2), fdl.nn.Dense(3))
    >>> _, _, shapes = model.init(jax.random.key(0), ((4,), (5,)))
    >>> shapes
    ((2,), (3,))
    """
    return _parallel(named_children("Parallel", layers), name)


def _entries(where: str, value: Any, num: int, what: str) -> tuple[Any, ...]:
    if not isinstance(value, (tuple, list)) or len(value) != num:
        got = f"{type(value).__name__} of length {len(value)}" if hasattr(value, "__len__") else repr(value)
        raise ValueError(
            f"{where} of {num} layers expects `{what}` to be a tuple of {num} entries, got {got}"
        )
    return tuple(value)


def _parallel(named: tuple[tuple[str, Layer], ...], name: str | None) -> Layer:
    where = f"Parallel {name!r}" if name else "Parallel"
    num = len(named)

    def init(key: jax.Array, input_shape: Sequence[Shape]):
        params, state, shapes = _init_all(named, key, _entries(where, input_shape, num, "input_shape"))
        return params, state, tuple(shapes)

    def apply(params, state, x, *, key=None, train=False, mask=None):
        xs = _entries(where, x, num, "x")
        ys, new_state = _apply_all(where, named, params, state, xs, key, train, mask)
        return tuple(ys), new_state

    return Layer(
        init, apply, name=name, kind="Parallel", children=named, rebuild=lambda new: _parallel(new, name)
    )


@layer_factory
def FanOut(num: int, *, name: str | None = None) -> Layer:
    r"""Copy the input ``num`` times: :math:`x \mapsto (x, \ldots, x)`.

    Its gradient sums the cotangents of the copies (the multivariate chain rule).

    >>> import jax, jax.numpy as jnp, fdl
    >>> fdl.nn.FanOut(2).init(jax.random.key(0), (3,))[2]
    ((3,), (3,))
    """
    num = check_positive_int("num", num)

    def init(key: jax.Array, input_shape: Shape):
        return {}, {}, (check_shape("input_shape", input_shape),) * num

    def apply(params, state, x, *, key=None, train=False, mask=None):
        return (x,) * num, state

    return Layer(init, apply)


def _merge_shapes(merge: str, shapes: Any, axis: int, where: str) -> Shape:
    """The output shape of concatenating (along ``axis``), summing or multiplying the
    per-example ``shapes``."""
    if (
        not isinstance(shapes, (tuple, list))
        or not shapes
        or not all(isinstance(s, (tuple, list)) for s in shapes)
    ):
        raise ValueError(f"{where} merges a tuple of inputs, got input_shape {shapes!r}")
    shapes = [check_shape("input_shape", s) for s in shapes]
    first = shapes[0]
    if merge in ("sum", "product"):
        if any(s != first for s in shapes):
            raise ValueError(
                f"{where} needs inputs of equal shapes for its {merge}, got shapes {tuple(shapes)}"
            )
        return first
    if any(len(s) < -axis for s in shapes):
        raise ValueError(f"{where} concatenates along axis {axis}, got shapes {tuple(shapes)}")
    rest = [s[:axis] + s[axis:][1:] for s in shapes]
    if any(r != rest[0] for r in rest):
        raise ValueError(
            f"{where} concatenates along axis {axis}: the other axes must match, got shapes {tuple(shapes)}"
        )
    size = sum(s[axis] for s in shapes)
    return first[:axis] + (size,) + first[axis:][1:]


def _merge(merge: str, xs: Sequence[Any], axis: int) -> Any:
    if merge == "concat":
        return jnp.concatenate(xs, axis=axis)
    total = xs[0]
    for x in xs[1:]:
        total = total + x if merge == "sum" else total * x
    return total


def _merge_layer(merge: str, axis: int, kind: str) -> Layer:
    def init(key: jax.Array, input_shape: Sequence[Shape]):
        return {}, {}, _merge_shapes(merge, input_shape, axis, kind)

    def apply(params, state, x, *, key=None, train=False, mask=None):
        if not isinstance(x, (tuple, list)):
            raise ValueError(f"{kind} merges a tuple of inputs, got a single {type(x).__name__}")
        return _merge(merge, x, axis), state

    return Layer(init, apply)


@layer_factory
def Concat(axis: int = -1, *, name: str | None = None) -> Layer:
    r"""Concatenate a tuple of inputs along ``axis``: :math:`(x_1, \ldots, x_n) \mapsto
    [x_1; \ldots; x_n]`.

    ``axis`` is negative (counted from the end) so that leading batch axes do not shift it.

    >>> import jax, jax.numpy as jnp, fdl
    >>> y, _ = fdl.nn.Concat().apply({}, {}, (jnp.zeros((5, 2)), jnp.ones((5, 3))))
    >>> y.shape
    (5, 5)
    """
    return _merge_layer("concat", check_negative_axis("axis", axis), "Concat")


@layer_factory
def Sum(*, name: str | None = None) -> Layer:
    r"""Sum a tuple of equally shaped inputs: :math:`(x_1, \ldots, x_n) \mapsto \sum_i x_i`.

    >>> import jax.numpy as jnp, fdl
    >>> fdl.nn.Sum().apply({}, {}, (jnp.ones(2), jnp.ones(2)))[0].tolist()
    [2.0, 2.0]
    """
    return _merge_layer("sum", -1, "Sum")


@layer_factory
def Multiply(*, name: str | None = None) -> Layer:
    r"""Multiply a tuple of equally shaped inputs elementwise (a gate):
    :math:`(x_1, \ldots, x_n) \mapsto x_1 \odot \cdots \odot x_n`.

    Its gradient w.r.t. :math:`x_i` is the product of the others,
    :math:`\partial y / \partial x_i = \prod_{j \ne i} x_j` (elementwise): a gate near 0 shuts
    both the value and its gradient (GLU, Dauphin et al., 2017).

    >>> import jax.numpy as jnp, fdl
    >>> fdl.nn.Multiply().apply({}, {}, (jnp.array([2.0, 3.0]), jnp.array([0.5, 0.0])))[0].tolist()
    [1.0, 0.0]
    """
    return _merge_layer("product", -1, "Multiply")


@layer_factory
def Branch(*layers: Layer, merge: str = "concat", axis: int = -1, name: str | None = None) -> Layer:
    r"""Apply every layer to the same input and merge: :math:`x \mapsto
    \mathrm{merge}(f_1(x), \ldots, f_n(x))`.

    The fan-out/parallel/merge pattern of Inception blocks and gates in one layer; equivalent to
    ``Serial(FanOut(n), Parallel(*layers), Concat(axis) / Sum() / Multiply())`` but with the
    branches' trees directly under its own.

    Args:
      *layers: the branches.
      merge: ``"concat"`` (along ``axis``), ``"sum"``, or ``"product"`` (elementwise, a gate:
        ``Branch(Dense(d), Serial(Dense(d), Sigmoid()), merge="product")`` is
        :math:`(xW + b) \odot \sigma(xV + c)`).
      axis: the negative axis to concatenate along.
      name: its name in a parent's paths.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Branch(fdl.nn.Dense(2), fdl.nn.Dense(3))
    >>> model.init(jax.random.key(0), (4,))[2]
    (5,)
    """
    check_choice("merge", merge, MERGES)
    axis = check_negative_axis("axis", axis)
    return _branch(named_children("Branch", layers), merge, axis, name)


def _branch(named, merge: str, axis: int, name: str | None) -> Layer:
    where = f"Branch {name!r}" if name else "Branch"
    num = len(named)

    def init(key: jax.Array, input_shape: Shape):
        params, state, shapes = _init_all(named, key, (input_shape,) * num)
        return params, state, _merge_shapes(merge, shapes, axis, where)

    def apply(params, state, x, *, key=None, train=False, mask=None):
        ys, new_state = _apply_all(where, named, params, state, (x,) * num, key, train, mask)
        return _merge(merge, ys, axis), new_state

    return Layer(
        init,
        apply,
        name=name,
        kind="Branch",
        children=named,
        rebuild=lambda new: _branch(new, merge, axis, name),
    )


def Residual(layer: Layer, *, name: str | None = None) -> Layer:
    r"""A skip connection around ``layer``: :math:`y = x + f(x)`.

    Its Jacobian is :math:`I + J_f`, so the gradient reaches :math:`x` even where :math:`J_f`
    is small (He et al., 2016, "Deep Residual Learning for Image Recognition").

    Transparent in paths: its params and state are ``layer``'s own (no extra level), so
    ``Residual(Serial(LayerNorm(), Dense(d)), name="block")`` has paths ``block/layer_norm_0/...``.

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
                f"Residual: the wrapped {layer.kind} must keep the shape for x + f(x), but maps "
                f"{tuple(input_shape)} to {tuple(out_shape)}"
            )
        return params, state, out_shape

    def apply(params, state, x, *, key=None, train=False, mask=None):
        y, state = layer.apply(params, state, x, key=key, train=train, mask=mask)
        return x + y, state

    def rebuild(children):
        return Residual(with_children(layer, children), name=name)

    return Layer(
        init,
        apply,
        name=name,
        kind="Residual",
        children=layer.children,
        rebuild=rebuild if layer.rebuild is not None else None,
        wraps=layer,
    )


@layer_factory
def Identity(*, name: str | None = None) -> Layer:
    """The identity layer :math:`y = x` (a placeholder, or the skip branch of a :func:`Branch`).

    >>> import jax.numpy as jnp, fdl
    >>> fdl.nn.Identity().apply({}, {}, jnp.ones(2))[0].tolist()
    [1.0, 1.0]
    """

    def init(key: jax.Array, input_shape: Any):
        return {}, {}, input_shape

    def apply(params, state, x, *, key=None, train=False, mask=None):
        return x, state

    return Layer(init, apply)


@layer_factory
def Flatten(ndim: int, *, name: str | None = None) -> Layer:
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
    ndim = check_positive_int("ndim", ndim)

    def init(key: jax.Array, input_shape: Shape):
        shape = check_shape("input_shape", input_shape)
        if len(shape) < ndim:
            raise ValueError(f"Flatten flattens the last {ndim} axes, got input_shape {shape}")
        return {}, {}, shape[: len(shape) - ndim] + (math.prod(shape[len(shape) - ndim :]),)

    def apply(params, state, x, *, key=None, train=False, mask=None):
        if jnp.ndim(x) < ndim:
            raise ValueError(f"Flatten flattens the last {ndim} axes, got an input of shape {jnp.shape(x)}")
        shape = jnp.shape(x)
        lead, tail = shape[: len(shape) - ndim], shape[len(shape) - ndim :]
        return jnp.reshape(x, lead + (math.prod(tail),)), state  # (*batch, d_1 ... d_ndim)

    return Layer(init, apply)


@layer_factory
def Elementwise(fn: Callable[..., Any], *, name: str | None = None) -> Layer:
    """Wrap a parameter-free function as a layer: ``fn(x)``, or ``fn(*x)`` for a tuple input.

    ``fn`` must act on the trailing axes only (elementwise, or along ``axis=-1`` like softmax),
    so that leading batch axes pass through. Given a tuple of inputs (and a tuple of shapes at
    ``init``) it is called with them as separate arguments, so a gate is
    ``Elementwise(lambda h, g: h * jax.nn.sigmoid(g))``. The output shape is found with
    ``jax.eval_shape``, without computing anything.

    Raises:
      TypeError: ``fn`` not callable (at construction); ``fn`` failing on the input shape(s) (at
        ``init``, naming the shapes).

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.Elementwise(jnp.square)
    >>> layer.apply({}, {}, jnp.array([2.0, 3.0]))[0].tolist()
    [4.0, 9.0]
    >>> gate = fdl.nn.Elementwise(lambda h, g: h * g)
    >>> gate.init(jax.random.key(0), ((3,), (3,)))[2]
    (3,)
    """
    if not callable(fn):
        raise TypeError(f"Elementwise: `fn` must be callable, got {fn!r}")
    fn_name = getattr(fn, "__name__", type(fn).__name__)

    def call(x: Any) -> Any:
        return fn(*x) if isinstance(x, (tuple, list)) else fn(x)

    def init(key: jax.Array, input_shape: Any):
        if is_shape(input_shape):
            example: Any = jax.ShapeDtypeStruct(check_shape("input_shape", input_shape), jnp.float32)
        elif isinstance(input_shape, (tuple, list)) and input_shape and all(is_shape(s) for s in input_shape):
            example = tuple(jax.ShapeDtypeStruct(tuple(s), jnp.float32) for s in input_shape)
        else:
            raise ValueError(
                f"Elementwise({fn_name}) expects input_shape to be a shape or a tuple of shapes, "
                f"got {input_shape!r}"
            )
        try:
            out = jax.eval_shape(call, example)
        except TypeError as err:
            raise TypeError(
                f"Elementwise({fn_name}) could not be applied to inputs of shape(s) {input_shape}: {err}"
            ) from err
        return {}, {}, jax.tree.map(lambda a: tuple(a.shape), out)

    def apply(params, state, x, *, key=None, train=False, mask=None):
        return call(x), state

    return Layer(init, apply)
