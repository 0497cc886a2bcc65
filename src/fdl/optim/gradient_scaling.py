r"""Scale a gradient on its way back: the identity forward, a multiple backward.

:func:`scale_gradient` returns its input unchanged, but the gradient that flows back through
it is multiplied by ``scale``:

.. math:: y = x, \qquad \frac{\partial L}{\partial x} = c\, \frac{\partial L}{\partial y} .

It slows the learning of one part of a model without touching the forward pass (a smaller
learning rate for an embedding, a shared trunk that two heads pull on), and with ``scale=-1``
it is the *gradient reversal layer* of domain-adversarial training (Ganin and Lempitsky, 2015).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import as_concrete_number, check_real, names_errors

__all__ = ["scale_gradient"]

PyTree = Any
Scalar = float | jax.Array


@jax.custom_vjp
def _scaled_backward(inputs: PyTree, scale: Any) -> PyTree:
    del scale  # used by the backward pass only
    return inputs


def _forward(inputs: PyTree, scale: Any) -> tuple[PyTree, Any]:
    return inputs, scale


def _backward(scale: Any, cotangents: PyTree) -> tuple[PyTree, None]:
    scaled = jax.tree.map(lambda g: jnp.asarray(scale).astype(g.dtype) * g, cotangents)
    return scaled, None  # no gradient with respect to the scale


_scaled_backward.defvjp(_forward, _backward)


@names_errors("scale_gradient")
def scale_gradient(inputs: PyTree, scale: Scalar) -> PyTree:
    r"""The identity on ``inputs`` whose backward pass multiplies the gradient by ``scale``.

    .. math:: \operatorname{scale\_gradient}(x) = x, \qquad
              \frac{\partial L}{\partial x} = \text{scale}\cdot\frac{\partial L}{\partial y}

    Each cotangent keeps its dtype (``scale`` is cast to it). ``scale`` gets no gradient.
    A concrete ``scale`` of 1 returns ``inputs`` as they are, and 0 stops the gradient
    (``jax.lax.stop_gradient``).

    Args:
      inputs: a pytree of arrays.
      scale: :math:`c`, any real number (negative reverses the gradient), traced or not.

    Returns:
      ``inputs``, unchanged in value.

    Raises:
      TypeError: a non-numeric ``scale``.

    >>> import jax, jax.numpy as jnp
    >>> jax.grad(lambda x: jnp.sum(scale_gradient(x, 0.5) ** 2))(jnp.asarray([3.0])).tolist()
    [3.0]

    Differs from optax:
      A traced ``scale`` (an argument of a ``jit``-ted function) works: optax compares it
      with 1 and 0 in Python, which fails on a traced value.
    """
    check_real("scale", scale)
    number = as_concrete_number(scale)
    if number == 1.0:
        return inputs
    if number == 0.0:
        return jax.lax.stop_gradient(inputs)
    return _scaled_backward(inputs, scale)
