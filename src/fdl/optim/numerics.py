r"""Norms with a floor whose derivative stays finite at zero.

Scaling by a norm bounded from below, :math:`\max(\lVert x\rVert, m)`, is how trust ratios,
normalized updates and clipping keep a zero-initialized parameter from dividing by zero. Written
plainly it has a NaN gradient at :math:`x = 0`: the Euclidean norm's derivative
:math:`x / \lVert x\rVert` is :math:`0/0` there, and ``jnp.maximum`` differentiates both of its
arguments, so the NaN reaches the result even though the floor was chosen. The functions here
swap a floored :math:`x` for ones *before* the norm that is differentiated, so the branch that
is not taken is finite, and the floor's derivative (zero) is what comes out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fdl._checks import check_real, names_errors
from fdl.tree import abs_sq, as_float

__all__ = ["safe_norm", "safe_root_mean_squares"]

Scalar = float | jax.Array


def _real_dtype(x: jax.Array) -> jnp.dtype:
    """The dtype of ``|x|``: ``x``'s own, or the real counterpart of a complex dtype."""
    return jnp.real(jnp.zeros((), x.dtype)).dtype


@names_errors("safe_norm")
def safe_norm(
    x: jax.Array,
    min_norm: Scalar,
    ord: int | float | str | None = None,  # numpy's and optax's name
    axis: int | tuple[int, ...] | None = None,
    keepdims: bool = False,
) -> jax.Array:
    r"""The norm of ``x`` floored at ``min_norm``, with a finite gradient where it is floored.

    .. math::

        \operatorname{safe\_norm}(x) = \begin{cases}
            \text{min\_norm} & \lVert x\rVert \le \text{min\_norm} \\
            \lVert x\rVert & \text{otherwise}
        \end{cases}
        \qquad
        \frac{\partial\, \operatorname{safe\_norm}}{\partial x} = \begin{cases}
            0 & \lVert x\rVert \le \text{min\_norm} \\
            \dfrac{\partial \lVert x\rVert}{\partial x} & \text{otherwise}
        \end{cases}

    with :math:`\lVert\cdot\rVert` ``jnp.linalg.norm(x, ord, axis, keepdims)`` (each norm taken
    over ``axis`` is floored on its own). The value is ``jnp.maximum(jnp.linalg.norm(x),
    min_norm)``; the gradient of that expression is NaN at :math:`x = 0`, this one is 0.

    Args:
      x: an array (real or complex; an integer array is taken as floats).
      min_norm: the floor :math:`m` (a number, or an array of the shape returned: a floor per norm).
      ord: the order of the norm, as ``jnp.linalg.norm`` takes it (``None``: the Euclidean norm
        of a vector, the Frobenius norm of a matrix; an int, ``jnp.inf``, ``"fro"``, ``"nuc"``).
      axis: the axis (an int) or the two matrix axes (a tuple) the norm is taken over;
        ``None``: all of ``x``, as ``jnp.linalg.norm``.
      keepdims: keep the reduced axes, with size 1.

    Returns:
      The floored norm, in ``x``'s real dtype (float32 for a complex64 ``x``).

    Raises:
      TypeError: a ``min_norm`` that is not a real number (a string, a bool, a complex number).

    >>> import jax, jax.numpy as jnp
    >>> float(safe_norm(jnp.asarray([3.0, 4.0]), 1.0)), float(safe_norm(jnp.zeros(2), 1.0))
    (5.0, 1.0)
    >>> jax.grad(lambda x: safe_norm(x, 0.0))(jnp.zeros(2)).tolist()  # plain norm: [nan, nan]
    [0.0, 0.0]

    Differs from optax:
      the result is always in ``x``'s real dtype: a ``min_norm`` given as an array of another
      dtype is cast to it (optax promotes the two; the same for a Python number).
    """
    check_real("min_norm", min_norm)
    x = as_float(x)
    floor = jnp.asarray(min_norm).astype(_real_dtype(x))
    kept = jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True)  # x's rank, 1 on the reduced axes
    shown = kept if keepdims else jnp.squeeze(kept, axis=axis)  # the shape returned
    floored = shown <= floor
    # the test at x's rank (size 1 on the reduced axes) broadcasts against x: floored units -> ones
    floored_kept = jnp.broadcast_to(floored, shown.shape).reshape(kept.shape)
    ones_where_floored = jnp.where(floored_kept, jnp.ones_like(x), x)
    norm = jnp.linalg.norm(ones_where_floored, ord=ord, axis=axis, keepdims=keepdims)
    return jnp.where(floored, floor, norm)


@names_errors("safe_root_mean_squares")
def safe_root_mean_squares(x: jax.Array, min_rms: Scalar) -> jax.Array:
    r"""The root mean square of all of ``x`` floored at ``min_rms``, with a finite gradient
    where it is floored.

    .. math::

        \operatorname{rms}(x) = \sqrt{\tfrac1n \textstyle\sum_{i=1}^n |x_i|^2}, \qquad
        \operatorname{safe\_root\_mean\_squares}(x) = \begin{cases}
            \text{min\_rms} & \operatorname{rms}(x) \le \text{min\_rms} \\
            \operatorname{rms}(x) & \text{otherwise}
        \end{cases}

    over the :math:`n` elements of ``x`` (:math:`|x_i|` the magnitude of a complex element);
    the gradient is 0 where the floor is taken (the plain ``jnp.maximum`` form is NaN at
    :math:`x = 0`).

    Args:
      x: an array (real or complex; an integer array is taken as floats).
      min_rms: the floor (a number, or a scalar array).

    Returns:
      A scalar in ``x``'s real dtype.

    Raises:
      TypeError: a ``min_rms`` that is not a real number.

    >>> import jax, jax.numpy as jnp
    >>> float(safe_root_mean_squares(jnp.asarray([3.0, 4.0, 0.0, 0.0]), 0.1))  # sqrt(25 / 4)
    2.5
    >>> jax.grad(lambda x: safe_root_mean_squares(x, 0.0))(jnp.zeros(3)).tolist()
    [0.0, 0.0, 0.0]

    Differs from optax:
      as :func:`safe_norm`, the result is in ``x``'s real dtype whatever ``min_rms``'s dtype.
    """
    check_real("min_rms", min_rms)
    x = as_float(x)
    floor = jnp.asarray(min_rms).astype(_real_dtype(x))
    floored = jnp.sqrt(jnp.mean(abs_sq(x))) <= floor
    ones_where_floored = jnp.where(floored, jnp.ones_like(x), x)
    return jnp.where(floored, floor, jnp.sqrt(jnp.mean(abs_sq(ones_where_floored))))
