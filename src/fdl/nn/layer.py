"""The layer contract: a layer is a pair of pure functions ``(init, apply)`` with named parts.

.. code-block:: text

    init(key, input_shape)                                      -> (params, state, output_shape)
    apply(params, state, x, *, key=None, train=False, mask=None) -> (y, new_state)

* ``input_shape`` and ``output_shape`` are the shapes of **one example**, with no batch axes:
  ``(64,)`` for a flat digit, ``(28, 28, 1)`` for an NHWC image. ``init`` computes shapes only; it
  never runs the layer.
* ``apply`` accepts any number of leading batch axes in front of the example shape: ``(B, 64)``,
  ``(B1, B2, 64)`` or a single ``(64,)``. So ``jax.vmap`` over single examples gives the same
  result as the batched call, by construction.
* ``params`` is a dict of named leaves (``{"w": ..., "b": ...}``). A composite layer holds a dict
  of its children's trees keyed by the children's names, so a parameter's path reads
  ``encoder/conv_1/w``. A child with no parameters (no state) is left out of ``params``
  (``state``), as in Flax, so an MLP's parameters are ``{"dense_0": ..., "dense_1": ...}``.
* ``state`` is the layer's non-trained state (batch-norm statistics), ``{}`` for stateless layers.
  Stateless layers also accept ``state=None`` and treat it as ``{}``.
* ``key`` is the PRNG key for stochastic layers (dropout); composites split it among their
  children. ``train`` selects training behaviour; it is a static Python bool.
* ``mask`` is an optional bool padding mask ``(*batch, T)`` (True = a real position) for inputs
  with a time axis ``(*batch, T, ...)``. Composites hand it to every child, like ``key``; layers
  that act on each position alone (``Dense``, ``LayerNorm``, ``Dropout``, activations) ignore it,
  and the sequence layers (attention, recurrent, pooling over time) use it. An ``apply`` written
  without a ``mask`` keyword is accepted: the :class:`Layer` wraps it to drop the mask.

Names. Every layer has an optional ``name``. A composite names each child by it, or, for an
unnamed child, by its kind in snake case and a count per kind: ``dense_0``, ``dense_1``,
``relu_0`` (Flax's ``Dense_0``, Haiku's ``linear_0``). A duplicate name is an error. Errors raised
by a child (``ValueError`` or ``TypeError``, at ``init`` or while tracing ``apply``) are prefixed
with the child's full path, ``layer 'encoder/conv_1' (Conv2D): ...``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import jax

__all__ = [
    "Layer",
    "InitFn",
    "ApplyFn",
    "Shape",
    "as_function",
    "layer_factory",
    "composite",
    "Eval",
]

Shape = tuple[int, ...]
PyTree = Any


class InitFn(Protocol):
    """``init(key, input_shape) -> (params, state, output_shape)``."""

    def __call__(self, key: jax.Array, input_shape: Any) -> tuple[PyTree, PyTree, Any]: ...


class ApplyFn(Protocol):
    """``apply(params, state, x, *, key=None, train=False, mask=None) -> (y, new_state)``."""

    def __call__(
        self,
        params: PyTree,
        state: PyTree,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
        mask: jax.Array | None = None,
    ) -> tuple[Any, PyTree]: ...


def _takes_mask(apply: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(apply).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: assume the full contract
        return True
    return any(p.name == "mask" or p.kind is p.VAR_KEYWORD for p in parameters)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Layer:
    """A layer: the pure pair ``(init, apply)``, its name, its kind and its named children.

    It unpacks like a pair, so ``init, apply = fdl.nn.Dense(10)`` works. ``repr`` shows the tree
    of layers with each one's settings.

    Attributes:
      init: ``init(key, input_shape) -> (params, state, output_shape)``.
      apply: ``apply(params, state, x, *, key=None, train=False, mask=None) -> (y, state)``.
      name: the name its parent composite gives it in paths; ``None`` for an automatic name.
      kind: the constructor's name (``"Dense"``); automatic names are its snake case.
      children: ``((name, layer), ...)`` of a composite, in order; ``()`` for a leaf.
      rebuild: for a composite, builds the same composite over new ``((name, layer), ...)``
        children (used by :func:`fdl.nn.replace_layer`); ``None`` for a leaf.
      config: ``((argument, value), ...)`` the layer was built with, shown by ``repr``.
      wraps: for a wrapper that is transparent in paths (:func:`~fdl.nn.Residual`,
        :func:`~fdl.nn.Eval`), the wrapped layer: the wrapper's params, state and children are
        its own.

    >>> import jax, jax.numpy as jnp, fdl
    >>> init, apply = fdl.nn.Dense(3)
    >>> params, state, out_shape = init(jax.random.key(0), (4,))
    >>> out_shape
    (3,)
    >>> y, state = apply(params, state, jnp.ones((2, 4)))
    >>> y.shape
    (2, 3)
    """

    init: InitFn
    apply: ApplyFn
    name: str | None = None
    kind: str = "Layer"
    children: tuple[tuple[str, Layer], ...] = ()
    rebuild: Callable[[tuple[tuple[str, Layer], ...]], Layer] | None = None
    config: tuple[tuple[str, Any], ...] = ()
    wraps: Layer | None = None

    def __post_init__(self) -> None:
        if not callable(self.init) or not callable(self.apply):
            raise TypeError(
                f"Layer needs callable `init` and `apply`, got init={self.init!r}, "
                f"apply={self.apply!r}"
            )
        if self.name is not None and (not isinstance(self.name, str) or not _NAME.fullmatch(self.name)):
            raise ValueError(
                f"a layer `name` must be a non-empty string of letters, digits, '_', '-' or '.' "
                f"(no '/', which separates path parts), got {self.name!r}"
            )
        if not _takes_mask(self.apply):
            inner = self.apply

            def apply(params, state, x, *, key=None, train=False, mask=None):
                del mask  # this layer acts on each position alone
                return inner(params, state, x, key=key, train=train)

            object.__setattr__(self, "apply", apply)

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter((self.init, self.apply))

    @property
    def auto_name(self) -> str:
        """The stem of automatic names: the kind in snake case (``Conv2D`` -> ``conv2d``)."""
        if self.kind == "Eval" and self.wraps is not None:
            return self.wraps.auto_name
        return snake_case(self.kind)

    def __repr__(self) -> str:
        return _render(self, 0)


_NAME = re.compile(r"[A-Za-z0-9_.\-]+")


def snake_case(kind: str) -> str:
    """``"BatchNorm"`` -> ``"batch_norm"``, ``"LSTMCell"`` -> ``"lstm_cell"``, ``"Conv2D"`` ->
    ``"conv2d"``."""
    s = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", kind)
    return s.lower()


def _value_repr(value: Any) -> str:
    if callable(value) and not isinstance(value, Layer):
        if isinstance(value, functools.partial):
            return f"{_value_repr(value.func)}(…)"
        return getattr(value, "__name__", type(value).__name__)
    if hasattr(value, "dtype") and hasattr(value, "name") and not hasattr(value, "shape"):
        return str(value.name)  # a numpy dtype
    if isinstance(value, type):
        return value.__name__
    return repr(value)


def _render(layer: Layer, indent: int) -> str:
    if layer.wraps is not None:
        return f"{layer.kind}({_render(layer.wraps, indent)})"
    args = ", ".join(f"{k}={_value_repr(v)}" for k, v in layer.config)
    head = f"{layer.kind}({args}"
    if not layer.children:
        return head + ")"
    pad = "  " * (indent + 1)
    lines = [f"{pad}{name}: {_render(child, indent + 1)}," for name, child in layer.children]
    sep = ", " if args else ""
    return head + f"{sep}\n" + "\n".join(lines) + "\n" + "  " * indent + ")"


def layer_factory(fn: Callable[..., Layer]) -> Callable[..., Layer]:
    """Decorate a layer constructor: the layer it returns records its kind (the constructor's
    name), its ``name`` argument and its other arguments (for ``repr``).

    A constructor written with it needs only return ``Layer(init, apply)``:

    >>> import jax.numpy as jnp, fdl
    >>> @fdl.nn.layer_factory
    ... def Scale(factor: float, *, name=None):
    ...     return fdl.nn.Layer(lambda key, shape: ({}, {}, shape),
    ...                         lambda params, state, x, **kw: (factor * x, state))
    >>> Scale(2.0, name="double")
    Scale(factor=2.0)
    >>> fdl.nn.Serial(Scale(2.0), Scale(3.0, name="triple"))
    Serial(
      scale_0: Scale(factor=2.0),
      triple: Scale(factor=3.0),
    )
    """
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def make(*args: Any, **kwargs: Any) -> Layer:
        layer = fn(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        config = tuple(
            (arg, value)
            for arg, value in bound.arguments.items()
            if arg != "name"
            and signature.parameters[arg].kind is not inspect.Parameter.VAR_POSITIONAL
            and not isinstance(value, Layer)
            and not _is_default(value, signature.parameters[arg].default)
        )
        return dataclasses.replace(
            layer, kind=fn.__name__, name=bound.arguments.get("name"), config=config
        )

    return make


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # arrays and other values without a plain truth value
        return False


# ------------------------------------------------------------------------------ paths in errors

_PATH: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("fdl_layer_path", default=())


def current_path() -> str:
    """The path of the layer being initialized or traced (``""`` at the top)."""
    return "/".join(_PATH.get())


@contextlib.contextmanager
def child_scope(name: str, layer: Layer) -> Iterator[None]:
    """Run a child's ``init`` or ``apply`` under its path: an error it raises names the path."""
    token = _PATH.set(_PATH.get() + (name,))
    try:
        yield
    except (ValueError, TypeError) as err:
        if not getattr(err, "_fdl_path", None) and err.args and isinstance(err.args[0], str):
            path = current_path()
            err.args = (f"layer {path!r} ({layer.kind}): {err.args[0]}", *err.args[1:])
            err._fdl_path = path  # type: ignore[attr-defined]
        raise
    finally:
        _PATH.reset(token)


# ------------------------------------------------------------------------------- children


def check_layers(combinator: str, layers: Sequence[Any]) -> tuple[Layer, ...]:
    """Raise a clear error unless every item of ``layers`` is a :class:`Layer`."""
    if not layers:
        raise ValueError(f"{combinator} needs at least one layer, got none")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(
                f"{combinator} argument {i} must be a fdl.nn.Layer, got {layer!r}; "
                "wrap a plain function with fdl.nn.Elementwise(fn)"
            )
    return tuple(layers)


def named_children(combinator: str, layers: Sequence[Any]) -> tuple[tuple[str, Layer], ...]:
    """``((name, layer), ...)``: each layer's own name, or ``<kind>_<i>`` counted per kind among
    the unnamed ones. Raises on a duplicate name."""
    layers = check_layers(combinator, layers)
    counts: dict[str, int] = {}
    named = []
    for layer in layers:
        if layer.name is not None:
            named.append((layer.name, layer))
            continue
        stem = layer.auto_name
        named.append((f"{stem}_{counts.get(stem, 0)}", layer))
        counts[stem] = counts.get(stem, 0) + 1
    return check_unique(combinator, named)


def check_unique(combinator: str, named: Sequence[tuple[str, Layer]]) -> tuple[tuple[str, Layer], ...]:
    """Raise unless the children's names are unique."""
    seen: set[str] = set()
    for child_name, _ in named:
        if child_name in seen:
            names = [n for n, _ in named]
            raise ValueError(
                f"{combinator}: duplicate child name {child_name!r} among {names}; give each "
                "child its own `name=`"
            )
        seen.add(child_name)
    return tuple(named)


def split_key(key: jax.Array | None, num: int) -> tuple[jax.Array | None, ...]:
    """Split ``key`` into ``num`` independent keys; ``None`` stays ``None`` for each."""
    if key is None:
        return (None,) * num
    return tuple(jax.random.split(key, num))


def is_empty(tree: Any) -> bool:
    """Whether ``tree`` is ``None`` or an empty dict (left out of a composite's trees)."""
    return tree is None or (isinstance(tree, Mapping) and not tree)


def child_tree(where: str, tree: Any, name: str, what: str) -> Any:
    """A child's entry of a composite's ``params``/``state`` dict (``{}`` if left out)."""
    if tree is None:
        return {}
    if not isinstance(tree, Mapping):
        raise ValueError(
            f"{where} expects `{what}` to be a dict keyed by its children's names (as its init "
            f"returned), got {type(tree).__name__}"
        )
    return tree.get(name, {})


def gather(named_trees: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """The composite's tree: the children's non-empty trees keyed by name."""
    return {name: tree for name, tree in named_trees if not is_empty(tree)}


_RECORD: contextvars.ContextVar[list | None] = contextvars.ContextVar("fdl_init_record", default=None)


@contextlib.contextmanager
def recording_init() -> Iterator[list[tuple[str, Layer, Any, Any, Any, Any]]]:
    """Record every child's ``init`` inside the block as ``(path, layer, input_shape,
    output_shape, params, state)`` (used by :func:`fdl.nn.summary` and :func:`fdl.nn.swap`)."""
    rows: list[tuple[str, Layer, Any, Any, Any, Any]] = []
    token = _RECORD.set(rows)
    try:
        yield rows
    finally:
        _RECORD.reset(token)


@contextlib.contextmanager
def _not_recording() -> Iterator[None]:
    token = _RECORD.set(None)
    try:
        yield
    finally:
        _RECORD.reset(token)


def init_child(name: str, layer: Layer, key: jax.Array, input_shape: Any) -> tuple[Any, Any, Any]:
    """``layer.init`` under the child's path (errors name it; :func:`recording_init` sees it)."""
    with child_scope(name, layer):
        rows = _RECORD.get()
        index = None if rows is None else len(rows)
        if rows is not None:
            rows.append(None)  # keep the parent before its children
        params, state, out_shape = layer.init(key, input_shape)
        if rows is not None:
            rows[index] = (current_path(), layer, input_shape, out_shape, params, state)
        return params, state, out_shape


def apply_child(
    name: str,
    layer: Layer,
    params: Any,
    state: Any,
    x: Any,
    *,
    key: jax.Array | None,
    train: bool,
    mask: Any,
) -> tuple[Any, Any]:
    """``layer.apply`` under the child's path, checking the contract: it must return
    ``(y, state)`` with the state's tree structure unchanged."""
    with child_scope(name, layer):
        out = layer.apply(params, state, x, key=key, train=train, mask=mask)
        if not isinstance(out, tuple) or len(out) != 2:
            got = f"{type(out).__name__}" + (f" of shape {out.shape}" if hasattr(out, "shape") else "")
            raise TypeError(
                f"`apply` must return the pair (y, new_state), got a {got}; a stateless layer "
                "returns (y, state)"
            )
        y, new_state = out
        before = jax.tree.structure({} if state is None else state)
        after = jax.tree.structure({} if new_state is None else new_state)
        if before != after:
            raise ValueError(
                f"`apply` returned a state whose structure differs from the state it was given: "
                f"got {after}, expected {before}"
            )
    return y, new_state


# ------------------------------------------------------------------------------- composites


def composite(
    children: Sequence[tuple[str, Layer]] | Mapping[str, Layer],
    forward: Callable[..., Any],
    *,
    kind: str = "Composite",
    name: str | None = None,
    config: tuple[tuple[str, Any], ...] = (),
) -> Layer:
    """A layer wired from named children by a plain function, ``forward(call, x, *, train,
    mask)``.

    ``call(child_name, x, *, mask=<the caller's>)`` applies that child (its params, state and
    key are looked up and threaded for you) and returns its output; ``forward`` may do any array
    math between calls. ``init`` runs ``forward`` once abstractly (``jax.eval_shape``, nothing
    computed) to learn each child's input shape, then initializes each child for it: a child's
    input shape may depend on the others' outputs. Inputs of ``init`` are taken as float32
    arrays of ``input_shape``; pass a ``jax.ShapeDtypeStruct`` (or a tuple of them) for other
    dtypes (token ids). ``forward`` must branch on shapes only, never on values.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.layer import composite
    >>> def gated(call, x, *, train, mask):
    ...     return call("value", x) * jax.nn.sigmoid(call("gate", x))
    >>> layer = composite({"value": fdl.nn.Dense(3), "gate": fdl.nn.Dense(3)}, gated, kind="Gated")
    >>> params, state, shape = layer.init(jax.random.key(0), (4,))
    >>> shape, sorted(params)
    ((3,), ['gate', 'value'])
    """
    named = check_unique(kind, tuple(children.items()) if isinstance(children, Mapping) else tuple(children))
    check_layers(kind, [layer for _, layer in named])
    index = {child_name: i for i, (child_name, _) in enumerate(named)}
    layers = dict(named)
    where = f"{kind} {name!r}" if name else kind

    def unknown(child_name: str) -> KeyError:
        return KeyError(f"{where}: no child named {child_name!r}; children are {list(index)}")

    def init(key: jax.Array, input_shape: Any):
        keys = jax.random.split(key, len(named))
        shapes: dict[str, Any] = {}

        def abstract_call(child_name: str, x: Any, *, mask: Any = None, train: bool | None = None):
            if child_name not in index:
                raise unknown(child_name)
            layer = layers[child_name]
            in_shape = _example_shape(x)
            shapes.setdefault(child_name, in_shape)
            p, s, _ = init_child(child_name, layer, keys[index[child_name]], shapes[child_name])
            y, _ = apply_child(child_name, layer, p, s, x, key=None, train=False, mask=mask)
            return y

        example = _abstract_input(input_shape)
        with _not_recording():
            out = jax.eval_shape(lambda x: forward(abstract_call, x, train=False, mask=None), example)
        params, state = [], []
        for child_name, layer in named:
            if child_name not in shapes:
                raise ValueError(f"{where}: `forward` never calls the child {child_name!r}")
            p, s, _ = init_child(child_name, layer, keys[index[child_name]], shapes[child_name])
            params.append((child_name, p))
            state.append((child_name, s))
        out_shape = jax.tree.map(lambda a: tuple(a.shape), out)
        return gather(params), gather(state), out_shape

    def apply(params, state, x, *, key=None, train=False, mask=None):
        keys = split_key(key, len(named))
        new_state = {child_name: child_tree(where, state, child_name, "state") for child_name, _ in named}
        outer_mask = mask

        def call(child_name: str, h: Any, *, mask: Any = outer_mask, train: bool = train):
            if child_name not in index:
                raise unknown(child_name)
            y, s = apply_child(
                child_name, layers[child_name], child_tree(where, params, child_name, "params"),
                new_state[child_name], h, key=keys[index[child_name]], train=train, mask=mask,
            )
            new_state[child_name] = s
            return y

        y = forward(call, x, train=train, mask=mask)
        return y, gather(list(new_state.items()))

    def rebuild(new_children: tuple[tuple[str, Layer], ...]) -> Layer:
        return composite(new_children, forward, kind=kind, name=name, config=config)

    return Layer(init, apply, name=name, kind=kind, children=named, rebuild=rebuild, config=config)


def _is_shape(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(d, int) for d in value)


def _abstract_input(input_shape: Any) -> Any:
    """``input_shape`` (a shape, a ``ShapeDtypeStruct``, or a tuple of them) as abstract arrays."""
    if isinstance(input_shape, jax.ShapeDtypeStruct):
        return input_shape
    if _is_shape(input_shape):
        return jax.ShapeDtypeStruct(tuple(input_shape), jax.numpy.float32)
    if isinstance(input_shape, (tuple, list)):
        return tuple(_abstract_input(s) for s in input_shape)
    raise ValueError(f"`input_shape` must be a shape tuple or a tuple of shapes, got {input_shape!r}")


def _example_shape(x: Any) -> Any:
    """The per-example shape(s) of an abstract value inside ``init`` (no batch axis there)."""
    if isinstance(x, (tuple, list)):
        return tuple(_example_shape(v) for v in x)
    return tuple(x.shape)


def with_children(layer: Layer, children: tuple[tuple[str, Layer], ...]) -> Layer:
    """``layer`` rebuilt over new ``((name, child), ...)``, keeping its name, kind and config."""
    if layer.rebuild is None:
        raise ValueError(f"{layer.kind} has no children to replace")
    rebuilt = layer.rebuild(children)
    return dataclasses.replace(rebuilt, name=layer.name, kind=layer.kind, config=layer.config)


# ----------------------------------------------------------------------------- modes, functions


def Eval(layer: Layer) -> Layer:
    """Run ``layer`` in evaluation mode whatever ``train`` says: dropout off, batch norm
    normalizing with (and keeping) its running statistics.

    Transparent in paths: its params and state are ``layer``'s own, and its children are
    ``layer``'s, so ``Eval`` can wrap a frozen part of a model without moving any path
    (:func:`fdl.nn.eval_mode`). The PRNG key is still passed on.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.Eval(fdl.nn.Dropout(0.5))
    >>> layer.apply({}, {}, jnp.ones(3), key=jax.random.key(0), train=True)[0].tolist()
    [1.0, 1.0, 1.0]
    """
    (layer,) = check_layers("Eval", (layer,))

    def apply(params, state, x, *, key=None, train=False, mask=None):
        del train
        return layer.apply(params, state, x, key=key, train=False, mask=mask)

    def rebuild(children: tuple[tuple[str, Layer], ...]) -> Layer:
        return Eval(with_children(layer, children))

    return Layer(
        layer.init,
        apply,
        name=layer.name,
        kind="Eval",
        children=layer.children,
        rebuild=rebuild if layer.rebuild is not None else None,
        wraps=layer,
    )


def as_function(model: Layer, state: PyTree = None, *, train: bool = False) -> Callable[..., Any]:
    """Turn a model into a plain function ``f(params, x, key=None, mask=None) -> y``.

    The layer state is fixed to ``state`` (``None`` suits stateless models) and the new state is
    dropped, so gradients are one line:

    .. code-block:: python

        f = fdl.nn.as_function(model)
        grads = jax.grad(lambda p: fdl.losses.mse(f(p, x), y, reduction="mean"))(params)

    Args:
      model: the layer.
      state: the layer state to run with (from ``init``); ``None`` for stateless models.
      train: run in training mode (dropout then needs ``key``).

    Returns:
      ``f(params, x, key=None, mask=None)`` returning the model's output.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Dense(1)
    >>> params, _, _ = model.init(jax.random.key(0), (2,))
    >>> f = fdl.nn.as_function(model)
    >>> g = jax.grad(lambda p: f(p, jnp.array([1.0, 2.0])).sum())(params)
    >>> [float(v) for v in g["w"][:, 0]]
    [1.0, 2.0]
    """
    if not isinstance(model, Layer):
        raise TypeError(f"as_function: `model` must be a fdl.nn.Layer, got {model!r}")

    def f(params: PyTree, x: Any, key: jax.Array | None = None, mask: Any = None) -> Any:
        y, _ = model.apply(params, {} if state is None else state, x, key=key, train=train, mask=mask)
        return y

    return f
