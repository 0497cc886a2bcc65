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

Layers built from named children are in :mod:`fdl.nn.composites` (:func:`~fdl.nn.composite`,
:func:`~fdl.nn.Eval`) and :mod:`fdl.nn.combinators` (``Serial``, ``Parallel``, ...).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax
import numpy as np

from fdl._checks import check_instance

__all__ = [
    "Layer",
    "InitFn",
    "ApplyFn",
    "Shape",
    "as_function",
    "layer_factory",
]

#: The shape of one example (no batch axis), as ``init`` takes and returns it.
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
                f"Layer needs callable `init` and `apply`, got init={self.init!r}, apply={self.apply!r}"
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
        qualname = getattr(value, "__qualname__", "")
        if ".<locals>." in qualname:  # made by a factory (he_normal() is variance_scaling's init)
            return f"{qualname.split('.<locals>.')[0]}(…)"
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
    sep = "," if args else ""
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
            (arg, value.item() if isinstance(value, np.generic) else value)  # np.int64(16) reads 16
            for arg, value in bound.arguments.items()
            if arg != "name"
            and signature.parameters[arg].kind is not inspect.Parameter.VAR_POSITIONAL
            and not isinstance(value, Layer)
            and not _is_default(value, signature.parameters[arg].default)
        )
        return dataclasses.replace(layer, kind=fn.__name__, name=bound.arguments.get("name"), config=config)

    return make


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # arrays and other values without a plain truth value
        return False


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
    check_instance("model", model, Layer, "fdl.nn.Layer", "as_function")

    def f(params: PyTree, x: Any, key: jax.Array | None = None, mask: Any = None) -> Any:
        y, _ = model.apply(params, {} if state is None else state, x, key=key, train=train, mask=mask)
        return y

    return f
