"""Probability vectors along an axis: the checks and helpers that :mod:`fdl.information`'s
functions share (a kernel: :func:`check_distribution` is public as
``fdl.information.check_distribution``).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fdl._checks import check_same_array_shape, concrete_float64, is_integer_number, is_real_number
from fdl._dtypes import default_float

# The tolerance of |sum - 1| per dtype (see check_distribution).
SUM_TOLERANCE = {"float64": 1e-10, "float32": 1e-5, "float16": 1e-2, "bfloat16": 2e-2}


def as_float(name: str, x: ArrayLike) -> jax.Array:
    """``x`` as a float array (ints and bools become the default float)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        if jnp.issubdtype(x.dtype, jnp.complexfloating):
            raise TypeError(f"`{name}` must be real, got dtype {x.dtype}")
        x = x.astype(default_float())
    return x


def check_axis(name: str, x: jax.Array, axis: int) -> int:
    """Return ``axis`` as a non-negative index into ``x``, or raise naming ``name``."""
    if not is_integer_number(axis):
        raise TypeError(f"`axis` must be an int, got {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"`axis` {axis} is out of range for `{name}` of shape {x.shape}")
    return axis % x.ndim


def check_same_shape(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
    check_same_array_shape(name_a, a, name_b, b)
    if a.dtype != b.dtype:
        raise TypeError(
            f"`{name_a}` and `{name_b}` must have the same dtype, got {a.dtype} and {b.dtype}; "
            f"cast one explicitly"
        )


def log_base(base: Any) -> float | None:
    """``log(base)``, or ``None`` for nats; raise unless ``base`` is a number > 0 and != 1."""
    if base is None:
        return None
    if not is_real_number(base) or not base > 0 or base == 1:
        raise ValueError(f"`base` must be None (nats) or a number > 0 and != 1, got {base!r}")
    return math.log(base)


def in_base(nats: jax.Array, base: Any) -> jax.Array:
    divisor = log_base(base)
    return nats if divisor is None else nats / divisor


def check_distribution(name: str, probs: ArrayLike, axis: int | tuple[int, ...] = -1) -> None:
    r"""Raise unless concrete ``probs`` are non-negative and sum to 1 along ``axis``.

    A traced ``probs`` (inside ``jit``, ``vmap`` or ``grad``) cannot be read and passes
    unchecked. The sums are taken in float64 and accepted when

    .. math::

        \Bigl|\sum_i p_i - 1\Bigr| \le \text{tol}(\text{dtype})

    with ``tol`` = 1e-5 for float32 (about 84 machine epsilons), 1e-10 for float64, 1e-2 for
    float16 and 2e-2 for bfloat16 (2.6 epsilons). Rounding each :math:`p_i` moves the sum by at
    most :math:`\varepsilon / 2` whatever the number of outcomes: a float32 softmax over
    :math:`10^6` classes sums to 1 within about :math:`1.2 \times 10^{-7}` (measured), far
    inside the tolerance, while a table off by a typo is not.

    Args:
        name: the argument's name, for the message.
        probs: ``(...)`` candidate probabilities.
        axis: the outcome axis (or axes, for a joint table).

    Raises:
        ValueError: naming ``name``, if an entry is negative or a sum is off by more than the
            tolerance (the message shows the worst sum).

    Example:
        >>> check_distribution("p", [0.5, 0.6])
        Traceback (most recent call last):
        ...
        ValueError: `p` must sum to 1 along axis -1 (within 1e-05), got a sum of 1.1
    """
    x = as_float(name, probs)
    values = concrete_float64(x)
    if values is None:
        return
    if values.size and values.min() < 0:
        raise ValueError(f"`{name}` must be non-negative probabilities, got a minimum of {values.min():.6g}")
    sums = values.sum(axis=axis)
    tol = SUM_TOLERANCE.get(x.dtype.name, 1e-5)
    error = np.abs(sums - 1.0)
    if error.size and not np.all(error <= tol):
        worst = np.asarray(sums).flat[int(np.nanargmax(np.where(np.isnan(error), np.inf, error)))]
        raise ValueError(
            f"`{name}` must sum to 1 along axis {axis} (within {tol:.2g}), got a sum of {worst:.6g}"
        )


def checked_probs(name: str, probs: ArrayLike, axis: int) -> tuple[jax.Array, int]:
    x = as_float(name, probs)
    index = check_axis(name, x, axis)
    check_distribution(name, x, axis)  # the caller's spelling of the axis, in the message
    return x, index


def checked_logits(name: str, logits: ArrayLike, axis: int) -> tuple[jax.Array, int]:
    x = as_float(name, logits)
    return x, check_axis(name, x, axis)


def prob_pair(p: ArrayLike, q: ArrayLike, axis: int) -> tuple[jax.Array, jax.Array, int]:
    """``p`` and ``q`` checked as distributions of one shape and dtype along ``axis``."""
    p, index = checked_probs("p", p, axis)
    q, _ = checked_probs("q", q, axis)
    check_same_shape("p", p, "q", q)
    return p, q, index


def logit_pair(p_logits: ArrayLike, q_logits: ArrayLike, axis: int) -> tuple[jax.Array, jax.Array, int]:
    """``p_logits`` and ``q_logits`` checked as logits of one shape and dtype along ``axis``."""
    zp, index = checked_logits("p_logits", p_logits, axis)
    zq, _ = checked_logits("q_logits", q_logits, axis)
    check_same_shape("p_logits", zp, "q_logits", zq)
    return zp, zq, index


def p_log_ratio(p: jax.Array, log_ratio_where_positive: Any) -> jax.Array:
    r""":math:`p \cdot r(p)` with 0 where :math:`p = 0` (and a zero gradient there).

    ``log_ratio_where_positive(safe)`` gets a mask-safe mapping ``safe(a)`` that replaces the
    entries of ``a`` at :math:`p = 0` by 1, so no ``log 0`` enters the backward pass.
    """
    positive = p > 0
    safe = lambda a: jnp.where(positive, a, jnp.ones_like(a))
    return jnp.where(positive, p * log_ratio_where_positive(safe), jnp.zeros_like(p))
