"""Shuffled minibatches for one epoch, drawn with an explicit PRNG key.

An epoch visits every example once, in an order given by ``jax.random.permutation(key, n)``: the
caller splits a fresh key per epoch, so the order is reproducible and no hidden RNG stream exists.
Slicing happens on the host with NumPy, which keeps the data set out of accelerator memory and
avoids one compiled gather per batch shape.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from fdl._checks import check_bool, check_non_negative_int, check_positive_int

__all__ = ["batches", "num_batches"]

HostOrDeviceArray = np.ndarray | jax.Array


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    r"""Number of batches :func:`batches` yields for ``n`` examples.

    .. math::

        \text{num\_batches} = \lfloor n / \text{batch\_size} \rfloor \ \text{(drop remainder)},
        \qquad \lceil n / \text{batch\_size} \rceil \ \text{(keep it)}.

    Unlike :func:`batches`, this returns 0 (rather than raising) when ``batch_size > n`` and the
    remainder is dropped: the count is well defined, only the empty epoch is an error.

    Args:
        n: number of examples, a non-negative int.
        batch_size: examples per batch, a positive int.
        drop_remainder: whether a last batch with fewer than ``batch_size`` examples is dropped.

    Returns:
        The number of batches in one epoch.

    Raises:
        ValueError: if ``n`` is not a non-negative int or ``batch_size`` not a positive int.

    Example:
        >>> from fdl.data import num_batches
        >>> num_batches(10, 3), num_batches(10, 3, drop_remainder=False)
        (3, 4)
    """
    n = check_non_negative_int("n", n)
    batch_size = check_positive_int("batch_size", batch_size)
    drop_remainder = check_bool("drop_remainder", drop_remainder)
    return n // batch_size if drop_remainder else math.ceil(n / batch_size)


def _leading_length(arrays: Sequence[Any]) -> int:
    """Return the shared leading length of ``arrays``, else raise naming each length."""
    if isinstance(arrays, (np.ndarray, jax.Array)) or not isinstance(arrays, (tuple, list)):
        raise TypeError(
            f"`arrays` must be a tuple or list of arrays, got {type(arrays).__name__}; "
            "wrap a single array as `(x,)`"
        )
    if len(arrays) == 0:
        raise ValueError("`arrays` must hold at least one array, got an empty sequence")
    lengths = []
    for i, array in enumerate(arrays):
        shape = np.shape(array)
        if len(shape) == 0:
            raise ValueError(f"`arrays[{i}]` must have a leading (example) axis, got a scalar of shape ()")
        lengths.append(shape[0])
    if len(set(lengths)) > 1:
        listed = ", ".join(f"arrays[{i}] has {length}" for i, length in enumerate(lengths))
        raise ValueError(f"`arrays` must share their leading length (examples), got: {listed}")
    return lengths[0]


def batches(
    key: jax.Array,
    arrays: Sequence[HostOrDeviceArray],
    batch_size: int,
    *,
    drop_remainder: bool = True,
) -> Iterator[tuple[HostOrDeviceArray, ...]]:
    r"""Yield one epoch of shuffled minibatches of ``arrays``, sliced together.

    With :math:`\pi = \text{permutation}(\text{key}, n)`, batch :math:`b` holds the examples

    .. math::

        \pi[b \cdot \text{batch\_size} : (b + 1) \cdot \text{batch\_size}]

    of every array, so rows that belong together (an image and its label) stay together. The
    permutation is drawn once with :func:`jax.random.permutation`, moved to the host, and each batch
    is gathered with NumPy. NumPy arrays come back as NumPy arrays; JAX arrays are copied to the
    host once per epoch and each batch comes back as a JAX array on the default device.

    Shapes: each ``arrays[i]`` is ``(N, ...)``; its batches are ``(B, ...)`` with ``B =
    batch_size``, the last one shorter when ``drop_remainder=False`` and ``batch_size`` does not
    divide ``N``. :func:`num_batches` gives the count.

    Arguments are checked when :func:`batches` is called, not when the first batch is drawn.

    Args:
        key: PRNG key that fixes this epoch's order; split a fresh one per epoch.
        arrays: tuple or list of arrays (NumPy or JAX) sharing their leading length ``N``.
        batch_size: examples per batch, a positive int.
        drop_remainder: if True (the default), a last batch with fewer than ``batch_size``
            examples is dropped, so every batch has the same shape (one compilation of a jitted
            step); if False it is yielded, and every example is visited exactly once.

    Returns:
        An iterator over tuples ``(arrays[0][idx], arrays[1][idx], ...)``, one per batch, in the
        order of ``arrays``.

    Raises:
        TypeError: if ``arrays`` is not a tuple or list (a bare array), or ``drop_remainder`` not
            a bool.
        ValueError: if ``arrays`` is empty, an array is a scalar, the leading lengths differ,
            ``batch_size`` is not a positive int, or ``batch_size > N`` while ``drop_remainder``
            is True (the epoch would be empty).

    Example:
        >>> import jax, numpy as np
        >>> from fdl.data import batches
        >>> x = np.arange(10, dtype=np.float32).reshape(5, 2)  # (N, D)
        >>> y = np.arange(5, dtype=np.int32)  # (N,)
        >>> for xb, yb in batches(jax.random.key(0), (x, y), 2):
        ...     print(xb.shape, yb.shape, bool((xb[:, 0] == 2 * yb).all()))
        (2, 2) (2,) True
        (2, 2) (2,) True
        >>> [len(yb) for _, yb in batches(jax.random.key(0), (x, y), 2, drop_remainder=False)]
        [2, 2, 1]
    """
    n = _leading_length(arrays)
    batch_size = check_positive_int("batch_size", batch_size)
    drop_remainder = check_bool("drop_remainder", drop_remainder)
    if drop_remainder and batch_size > n:
        raise ValueError(
            f"`batch_size` must be at most the number of examples ({n}) when "
            f"`drop_remainder=True`, got {batch_size}; the epoch would yield no batch "
            "(pass a smaller batch_size or drop_remainder=False)"
        )
    if key is None:
        raise TypeError("`key` must be a JAX PRNG key such as `jax.random.key(0)`, got None")
    count = num_batches(n, batch_size, drop_remainder)
    order = np.asarray(jax.random.permutation(key, n))  # (N,) on the host
    return _iterate(arrays, order, batch_size, count)


def _iterate(
    arrays: Sequence[HostOrDeviceArray], order: np.ndarray, batch_size: int, count: int
) -> Iterator[tuple[HostOrDeviceArray, ...]]:
    """Gather ``count`` batches of ``order`` from host copies of ``arrays``."""
    on_device = [isinstance(array, jax.Array) for array in arrays]
    host = [np.asarray(array) for array in arrays]  # one host copy per JAX array per epoch
    for b in range(count):
        idx = order[b * batch_size : (b + 1) * batch_size]  # (B,)
        yield tuple(
            jax.device_put(array[idx]) if device else array[idx]
            for array, device in zip(host, on_device, strict=True)
        )
