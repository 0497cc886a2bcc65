"""The layer contract: a layer is a pair of pure functions ``(init, apply)``.

.. code-block:: text

    init(key, input_shape)                           -> (params, state, output_shape)
    apply(params, state, x, *, key=None, train=False) -> (y, new_state)

* ``input_shape`` and ``output_shape`` are the shapes of **one example**, with no batch axes:
  ``(64,)`` for a flat digit, ``(28, 28, 1)`` for an NHWC image. ``init`` computes shapes only; it
  never runs the layer.
* ``apply`` accepts any number of leading batch axes in front of the example shape: ``(B, 64)``,
  ``(B1, B2, 64)`` or a single ``(64,)``. So ``jax.vmap`` over single examples gives the same
  result as the batched call, by construction.
* ``params`` is a pytree of named leaves (``{"w": ..., "b": ...}``); combinators hold a tuple of
  their children's trees, so a parameter's path reads ``2/w``.
* ``state`` is the layer's non-trained state (batch-norm statistics), ``{}`` for stateless layers.
  Stateless layers also accept ``state=None`` and hand it back unchanged.
* ``key`` is the PRNG key for stochastic layers (dropout); combinators split it among their
  children. ``train`` selects training behaviour; it is a static Python bool.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import jax

__all__ = ["Layer", "InitFn", "ApplyFn", "Shape", "as_function", "split_key", "check_layers"]

Shape = tuple[int, ...]
PyTree = Any


class InitFn(Protocol):
    """``init(key, input_shape) -> (params, state, output_shape)``."""

    def __call__(self, key: jax.Array, input_shape: Shape) -> tuple[PyTree, PyTree, Any]: ...


class ApplyFn(Protocol):
    """``apply(params, state, x, *, key=None, train=False) -> (y, new_state)``."""

    def __call__(
        self,
        params: PyTree,
        state: PyTree,
        x: Any,
        *,
        key: jax.Array | None = None,
        train: bool = False,
    ) -> tuple[Any, PyTree]: ...


@dataclasses.dataclass(frozen=True)
class Layer:
    """A layer: the pure pair ``(init, apply)`` and a name used in error messages.

    It unpacks like a pair, so ``init, apply = fdl.nn.Dense(10)`` works.

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
    name: str = "layer"

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter((self.init, self.apply))


def check_layers(combinator: str, layers: tuple[Any, ...]) -> tuple[Layer, ...]:
    """Raise a clear error unless every item of ``layers`` is a :class:`Layer`."""
    if not layers:
        raise ValueError(f"{combinator} needs at least one layer, got none")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(
                f"{combinator} argument {i} must be a fdl.nn.Layer, got {layer!r}; "
                "wrap a plain function with fdl.nn.Elementwise(fn)"
            )
    return layers


def split_key(key: jax.Array | None, num: int) -> tuple[jax.Array | None, ...]:
    """Split ``key`` into ``num`` independent keys; ``None`` stays ``None`` for each."""
    if key is None:
        return (None,) * num
    return tuple(jax.random.split(key, num))


def as_function(
    model: Layer, state: PyTree = None, *, train: bool = False
) -> Callable[..., Any]:
    """Turn a model into a plain function ``f(params, x, key=None) -> y``.

    The layer state is fixed to ``state`` (``None`` suits stateless models) and the new state is
    dropped, so gradients are one line:

    .. code-block:: python

        f = fdl.nn.as_function(model)
        grads = jax.grad(lambda p: fdl.losses.mse(f(p, x), y))(params)

    Args:
      model: the layer.
      state: the layer state to run with (from ``init``); ``None`` for stateless models.
      train: run in training mode (dropout then needs ``key``).

    Returns:
      ``f(params, x, key=None)`` returning the model's output.

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

    def f(params: PyTree, x: Any, key: jax.Array | None = None) -> Any:
        y, _ = model.apply(params, state, x, key=key, train=train)
        return y

    return f
