r"""Pooling of channels-last inputs: max and average over windows, and global max and average.

Each channel is pooled on its own over a window of the spatial axes of ``(T, C)`` or
``(H, W, C)`` examples; leading batch axes get a window of 1, so ``jax.lax.reduce_window`` runs
on the input as it is (no reshape). Padding is as in :mod:`fdl.nn.conv` (``"VALID"``,
``"SAME"``, an int, or ``(low, high)`` pairs), with each pad smaller than the window, so every
window holds at least one real element.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fdl._checks import check_positive_int, check_shape
from fdl.nn import _window
from fdl.nn.layer import Layer, Shape, layer_factory

__all__ = [
    "AvgPool1D",
    "AvgPool2D",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "MaxPool1D",
    "MaxPool2D",
]


def _window_counts(spatial: Shape, pads: _window.Pads, window: Shape, strides: Shape) -> np.ndarray:
    r"""How many real (unpadded) elements each output window holds: ``(*out_spatial, 1)``.

    The window is a box, so the count is the product of one count per axis:
    :math:`|[o s - lo,\ o s - lo + k) \cap [0, n)|`.
    """
    counts = np.ones((), np.int64)
    for n, (lo, hi), k, s in zip(spatial, pads, window, strides, strict=True):
        starts = np.arange((n + lo + hi - k) // s + 1) * s - lo
        axis = np.minimum(starts + k, n) - np.maximum(starts, 0)  # (out,)
        counts = np.multiply.outer(counts, axis)
    return counts[..., None]


def _pool(
    kind: str,
    ndim: int,
    reduce: str,
    window: Any,
    strides: Any,
    padding: Any,
    count_include_pad: bool,
) -> Layer:
    """The ``ndim``-dimensional max (``reduce="max"``) or average pooling layer."""
    window = _window.int_tuple("window", window, ndim)
    strides = window if strides is None else _window.int_tuple("strides", strides, ndim)
    padding = _window.padding_arg(padding, ndim)
    if not isinstance(padding, str) and any(
        lo >= k or hi >= k for (lo, hi), k in zip(padding, window, strict=True)
    ):
        raise ValueError(
            f"`padding` of pooling must be smaller than the window on each side (so every "
            f"window holds a real element), got padding {padding} with window {window}"
        )

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        del key
        shape = _window.check_example_shape(kind, input_shape, ndim)
        pads = _window.explicit_pads(padding, shape[:-1], window, strides)
        out = _window.output_spatial(kind, shape[:-1], pads, window, strides, "window")
        return {}, {}, (*out, shape[-1])

    def apply(params: Any, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del params, key, train, mask  # deterministic, no parameters; padding is pooled too
        x = jnp.asarray(x)
        _window.check_input(kind, x, ndim, None)
        lead, spatial = x.ndim - ndim - 1, x.shape[x.ndim - ndim - 1 : -1]
        pads = _window.explicit_pads(padding, spatial, window, strides)
        _window.output_spatial(kind, spatial, pads, window, strides, "window")
        dims = (1,) * lead + window + (1,)
        steps = (1,) * lead + strides + (1,)
        full_pads = ((0, 0),) * lead + pads + ((0, 0),)
        if reduce == "max":
            # The identity of max (-inf, or the integer minimum): padding never wins, and JAX
            # recognises the monoid, so the max has a derivative (to the window's argmax).
            if jnp.issubdtype(x.dtype, jnp.floating):
                lowest = np.array(-np.inf, x.dtype)
            elif jnp.issubdtype(x.dtype, jnp.integer):
                lowest = np.array(jnp.iinfo(x.dtype).min, x.dtype)
            else:
                lowest = np.array(False)
            return lax.reduce_window(x, lowest, lax.max, dims, steps, full_pads), state
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(jnp.float32)  # an average of integers is a float, as jnp.mean
        total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, dims, steps, full_pads)
        if count_include_pad:
            return total / np.array(math.prod(window), x.dtype), state
        counts = _window_counts(spatial, pads, window, strides).astype(x.dtype)
        return total / jnp.broadcast_to(counts, total.shape), state  # (*batch, *out, C)

    return Layer(init, apply)


@layer_factory
def MaxPool1D(
    window: int | tuple[int],
    *,
    strides: int | tuple[int] | None = None,
    padding: str | int | Any = "VALID",
    name: str | None = None,
) -> Layer:
    r"""Max pooling of ``(T, C)`` signals: the largest value of each window, per channel.

    .. math::

        y_{t, c} = \max_{0 \le p < k} \tilde x_{\, t s + p,\ c},
        \qquad T' = \left\lfloor \frac{T + lo + hi - k}{s} \right\rfloor + 1

    with :math:`\tilde x` padded by :math:`-\infty`, so padding never wins. The derivative is 1
    at the window's maximum and 0 elsewhere (at a tie, JAX picks one). See :func:`MaxPool2D`.

    Args:
      window: :math:`k`, the window (an int or one int per spatial axis).
      strides: :math:`s`; ``None`` (default) means ``window`` (non-overlapping windows).
      padding: ``"VALID"`` (default), ``"SAME"`` (:math:`\lceil n / s \rceil` outputs), an int,
        or one ``(lo, hi)`` pair per spatial axis, each smaller than the window.
      name: its name in a parent's paths (automatic if ``None``).

    Returns:
      A parameter-free :class:`~fdl.nn.Layer` mapping ``(*batch, T, C)`` to
      ``(*batch, T', C)``.

    Raises:
      ValueError: a bad ``window``, ``strides`` or ``padding`` (at construction); an input that
        is not ``(..., T, C)`` or is shorter than the padded window.

    >>> import jax.numpy as jnp
    >>> from fdl.nn import MaxPool1D
    >>> MaxPool1D(2).apply({}, {}, jnp.array([[1.0], [3.0], [2.0], [5.0], [4.0]]))[0].tolist()
    [[3.0], [5.0]]
    """
    return _pool("MaxPool1D", 1, "max", window, strides, padding, True)


@layer_factory
def MaxPool2D(
    window: int | tuple[int, int],
    *,
    strides: int | tuple[int, int] | None = None,
    padding: str | int | Any = "VALID",
    name: str | None = None,
) -> Layer:
    r"""Max pooling of ``(H, W, C)`` images: the largest value of each window, per channel.

    .. math::

        y_{i, j, c} = \max_{0 \le p < k_h,\ 0 \le q < k_w}
            \tilde x_{\, i s_h + p,\ j s_w + q,\ c},
        \qquad n' = \left\lfloor \frac{n + lo + hi - k}{s} \right\rfloor + 1 \text{ per axis}

    :math:`\tilde x` is the input padded by :math:`-\infty` (the integer minimum for integer
    inputs), so a pad never wins. ``"SAME"`` pads as :func:`fdl.nn.conv.Conv2D` does.
    :math:`\partial y / \partial x` is 1 at each window's maximum, 0 elsewhere.

    Args:
      window: :math:`k`, the window (an int or one int per spatial axis).
      strides: :math:`s`; ``None`` (default) means ``window`` (non-overlapping windows).
      padding: ``"VALID"`` (default), ``"SAME"`` (:math:`\lceil n / s \rceil` outputs), an int,
        or one ``(lo, hi)`` pair per spatial axis, each smaller than the window.
      name: its name in a parent's paths (automatic if ``None``).

    Returns:
      A parameter-free :class:`~fdl.nn.Layer` mapping ``(*batch, H, W, C)`` to
      ``(*batch, H', W', C)``.

    Raises:
      ValueError: a bad ``window``, ``strides`` or ``padding`` (at construction); an input that
        is not ``(..., H, W, C)`` or is smaller than the padded window.

    Differs from PyTorch: ``torch.nn.MaxPool2d`` is channels-first, allows padding only up to
    half the window, and has ``dilation`` and ``ceil_mode`` (fdl: use ``"SAME"`` or explicit
    high padding for the ceiling's extra window).

    >>> import jax, jax.numpy as jnp
    >>> from fdl.nn import MaxPool2D
    >>> layer = MaxPool2D(2)
    >>> layer.init(jax.random.key(0), (28, 28, 8))[2]
    (14, 14, 8)
    >>> x = jnp.arange(16.0).reshape(4, 4, 1)
    >>> layer.apply({}, {}, x)[0][..., 0].tolist()
    [[5.0, 7.0], [13.0, 15.0]]
    """
    return _pool("MaxPool2D", 2, "max", window, strides, padding, True)


@layer_factory
def AvgPool1D(
    window: int | tuple[int],
    *,
    strides: int | tuple[int] | None = None,
    padding: str | int | Any = "VALID",
    count_include_pad: bool = True,
    name: str | None = None,
) -> Layer:
    r"""Average pooling of ``(T, C)`` signals: the mean of each window, per channel.

    .. math::

        y_{t, c} = \frac{1}{N_t} \sum_{0 \le p < k} \tilde x_{\, t s + p,\ c},
        \qquad N_t = k \text{ (count\_include\_pad)} \text{ or }
            |\{p : 0 \le t s + p - lo < T\}|

    :math:`\tilde x` is zero-padded. See :func:`AvgPool2D` for the choice of divisor.

    Args:
      window: :math:`k`, the window (an int or one int per spatial axis).
      strides: :math:`s`; ``None`` (default) means ``window`` (non-overlapping windows).
      padding: ``"VALID"`` (default), ``"SAME"`` (:math:`\lceil n / s \rceil` outputs), an int,
        or one ``(lo, hi)`` pair per spatial axis, each smaller than the window.
      count_include_pad: divide by the full window :math:`k` (default, as PyTorch and Flax),
        padded zeros included; ``False`` divides by the number of real elements in the window.
      name: its name in a parent's paths (automatic if ``None``).

    Returns:
      A parameter-free :class:`~fdl.nn.Layer` mapping ``(*batch, T, C)`` to
      ``(*batch, T', C)``; integer inputs are averaged in float32.

    Raises:
      ValueError: a bad ``window``, ``strides`` or ``padding`` (at construction); an input that
        is not ``(..., T, C)`` or is shorter than the padded window.

    >>> import jax.numpy as jnp
    >>> from fdl.nn import AvgPool1D
    >>> x = jnp.array([[3.0], [6.0], [9.0]])
    >>> AvgPool1D(3, strides=1, padding="SAME").apply({}, {}, x)[0][:, 0].tolist()
    [3.0, 6.0, 5.0]
    >>> AvgPool1D(3, strides=1, padding="SAME", count_include_pad=False).apply({}, {}, x)[0][:, 0].tolist()
    [4.5, 6.0, 7.5]
    """
    return _pool("AvgPool1D", 1, "avg", window, strides, padding, count_include_pad)


@layer_factory
def AvgPool2D(
    window: int | tuple[int, int],
    *,
    strides: int | tuple[int, int] | None = None,
    padding: str | int | Any = "VALID",
    count_include_pad: bool = True,
    name: str | None = None,
) -> Layer:
    r"""Average pooling of ``(H, W, C)`` images: the mean of each window, per channel.

    .. math::

        y_{i, j, c} = \frac{1}{N_{ij}} \sum_{0 \le p < k_h,\ 0 \le q < k_w}
            \tilde x_{\, i s_h + p,\ j s_w + q,\ c}

    :math:`\tilde x` is zero-padded; the output size is as for :func:`MaxPool2D`. The divisor
    :math:`N_{ij}` is :math:`k_h k_w` with ``count_include_pad=True`` (the default: padded zeros
    count, so border outputs shrink toward 0, and the layer is linear with the same weights
    everywhere), or the number of real pixels in the window with ``False`` (every output is a
    true mean of pixels). Without padding both agree.

    Args:
      window: :math:`k`, the window (an int or one int per spatial axis).
      strides: :math:`s`; ``None`` (default) means ``window`` (non-overlapping windows).
      padding: ``"VALID"`` (default), ``"SAME"`` (:math:`\lceil n / s \rceil` outputs), an int,
        or one ``(lo, hi)`` pair per spatial axis, each smaller than the window.
      count_include_pad: divide by the full window :math:`k_h k_w` (default, as PyTorch and
        Flax) or by the number of real pixels in it (``False``, as TensorFlow's ``"SAME"``).
      name: its name in a parent's paths (automatic if ``None``).

    Returns:
      A parameter-free :class:`~fdl.nn.Layer` mapping ``(*batch, H, W, C)`` to
      ``(*batch, H', W', C)``; integer inputs are averaged in float32.

    Raises:
      ValueError: a bad ``window``, ``strides`` or ``padding`` (at construction); an input that
        is not ``(..., H, W, C)`` or is smaller than the padded window.

    Differs from PyTorch: ``torch.nn.AvgPool2d`` is channels-first; its ``count_include_pad``
    means the same, but with ``ceil_mode`` it never counts the windows' overhang.

    >>> import jax.numpy as jnp
    >>> from fdl.nn import AvgPool2D
    >>> x = jnp.arange(16.0).reshape(4, 4, 1)
    >>> AvgPool2D(2).apply({}, {}, x)[0][..., 0].tolist()
    [[2.5, 4.5], [10.5, 12.5]]
    """
    return _pool("AvgPool2D", 2, "avg", window, strides, padding, count_include_pad)


def _global_pool(kind: str, reduce: str, spatial_ndim: int) -> Layer:
    """The max (``reduce="max"``) or mean over the ``spatial_ndim`` axes before the channels."""
    spatial_ndim = check_positive_int("spatial_ndim", spatial_ndim)
    layout = "(..., " + ", ".join(f"d{i}" for i in range(1, spatial_ndim + 1)) + ", C)"
    verb = "takes the max over" if reduce == "max" else "averages"
    axis_word = "axis" if spatial_ndim == 1 else "axes"

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        del key
        shape = check_shape("input_shape", input_shape)
        if len(shape) != spatial_ndim + 1:
            raise ValueError(
                f"{kind} {verb} {spatial_ndim} spatial {axis_word} and expects a per-example "
                f"input_shape of {spatial_ndim + 1} axes (*spatial, C), got {shape}"
            )
        if reduce == "max" and 0 in shape[:-1]:
            raise ValueError(f"{kind} needs a non-empty window, got input_shape {shape}")
        return {}, {}, shape[-1:]

    def apply(params: Any, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del params, key, train, mask  # deterministic, no parameters; padding is pooled too
        x = jnp.asarray(x)
        if x.ndim < spatial_ndim + 1:
            raise ValueError(f"{kind} expects inputs of shape {layout}, got shape {x.shape}")
        axes = tuple(range(x.ndim - spatial_ndim - 1, x.ndim - 1))
        if reduce == "max":
            if any(x.shape[a] == 0 for a in axes):
                raise ValueError(f"{kind} needs a non-empty window, got shape {x.shape}")
            return jnp.max(x, axis=axes), state  # (*batch, C)
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(jnp.float32)  # an average of integers is a float
        return jnp.mean(x, axis=axes), state  # (*batch, C)

    return Layer(init, apply)


@layer_factory
def GlobalAvgPool(spatial_ndim: int, *, name: str | None = None) -> Layer:
    r"""The mean over all spatial axes of a channels-last example: ``(H, W, C) -> (C,)``.

    .. math::

        y_c = \frac{1}{H W} \sum_{i, j} x_{i, j, c}
        \qquad \text{(or } \tfrac{1}{T} \textstyle\sum_t x_{t, c} \text{ for } (T, C))

    ``spatial_ndim`` (2 for images, 1 for signals) is explicit for the same reason as
    :func:`fdl.nn.Flatten`'s ``ndim``: ``apply`` accepts any number of leading batch axes, so it
    cannot tell ``(B, T, C)`` from ``(H, W, C)`` by itself. It takes no padding mask: a ``mask``
    handed down by a composite is ignored, so padded time steps of ``(T, C)`` inputs are
    averaged too.

    Args:
      spatial_ndim: the number of spatial axes in front of the channel axis.
      name: its name in a parent's paths (automatic ``global_avg_pool_<i>`` if ``None``).

    Returns:
      A parameter-free :class:`~fdl.nn.Layer` mapping ``(*batch, *spatial, C)`` to
      ``(*batch, C)``; integer inputs are averaged in float32.

    Raises:
      ValueError: ``spatial_ndim`` not a positive int (at construction); an input with fewer
        than ``spatial_ndim + 1`` axes, or an ``input_shape`` without exactly
        ``spatial_ndim + 1`` axes.

    Differs from PyTorch: there ``nn.AdaptiveAvgPool2d(1)`` on ``NCHW`` keeps the spatial axes
    as ``(N, C, 1, 1)``; Flax has no layer (``x.mean(axis=(1, 2))``).

    >>> import jax, jax.numpy as jnp
    >>> from fdl.nn import GlobalAvgPool
    >>> layer = GlobalAvgPool(2)
    >>> layer.init(jax.random.key(0), (7, 7, 16))[2]
    (16,)
    >>> layer.apply({}, {}, jnp.arange(8.0).reshape(2, 2, 2))[0].tolist()
    [3.0, 4.0]
    """
    return _global_pool("GlobalAvgPool", "mean", spatial_ndim)


@layer_factory
def GlobalMaxPool(spatial_ndim: int, *, name: str | None = None) -> Layer:
    r"""The maximum over all spatial axes of a channels-last example: ``(H, W, C) -> (C,)``.

    .. math::

        y_c = \max_{i, j} x_{i, j, c}
        \qquad \text{(or } \max_t x_{t, c} \text{ for } (T, C)),
        \qquad \frac{\partial y_c}{\partial x_{i, j, c}} =
            [\,(i, j) = \operatorname{argmax}\,]

    The derivative is 1 at each channel's maximum and 0 elsewhere (at a tie, JAX's ``max``
    splits it equally among the tied entries). ``spatial_ndim`` is explicit, as for
    :func:`GlobalAvgPool`. It takes no padding mask (as :func:`GlobalAvgPool`): a ``mask``
    handed down by a composite is ignored, so padded time steps of ``(T, C)`` inputs compete
    for the maximum too.

    Args:
      spatial_ndim: the number of spatial axes in front of the channel axis.
      name: its name in a parent's paths (automatic ``global_max_pool_<i>`` if ``None``).

    Returns:
      A parameter-free :class:`~fdl.nn.Layer` mapping ``(*batch, *spatial, C)`` to
      ``(*batch, C)``, in the input's dtype.

    Raises:
      ValueError: ``spatial_ndim`` not a positive int (at construction); an input with fewer
        than ``spatial_ndim + 1`` axes, an ``input_shape`` without exactly ``spatial_ndim + 1``
        axes, or an empty spatial axis (the maximum of nothing is undefined).

    Differs from PyTorch: ``nn.AdaptiveMaxPool2d(1)`` on ``NCHW`` keeps the spatial axes as
    ``(N, C, 1, 1)`` and routes the gradient of a tie to one entry; the values agree (tested
    against PyTorch). Flax has no layer (``x.max(axis=(1, 2))``).

    >>> import jax, jax.numpy as jnp
    >>> from fdl.nn import GlobalMaxPool
    >>> layer = GlobalMaxPool(2)
    >>> layer.init(jax.random.key(0), (7, 7, 16))[2]
    (16,)
    >>> layer.apply({}, {}, jnp.array([[[1.0, -2.0], [3.0, -4.0]]]))[0].tolist()
    [3.0, -2.0]
    """
    return _global_pool("GlobalMaxPool", "max", spatial_ndim)
