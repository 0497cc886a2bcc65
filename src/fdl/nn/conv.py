r"""Convolutions, channels last: ``Conv1D`` and ``Conv2D`` (their adjoints, the transposed
convolutions, are in :mod:`fdl.nn.conv_transpose`).

Layouts (design.md section 3): one example is ``(T, C)`` (1-D) or ``(H, W, C)`` (2-D), with any
number of leading batch axes in front; the kernel is ``(*window, in // groups, features)``
(``WIO`` / ``HWIO``). ``apply`` reshapes the leading batch axes to one, calls
``jax.lax.conv_general_dilated`` with ``NWC``/``NHWC`` dimension numbers, and reshapes back. The
call goes through :mod:`fdl.nn._convolve`, whose derivatives are channels-last convolutions too,
so that XLA:CPU runs them fast inside ``fit``'s loop (design.md, "Convolutions in a loop").

Padding, shared with :mod:`fdl.nn.conv_transpose` and :mod:`fdl.nn.pooling`: ``"VALID"``
(none), ``"SAME"`` (the output has :math:`\lceil n / s \rceil` positions; the odd unit of
padding goes at the end, as in XLA and TensorFlow), a non-negative int (that much at both ends
of every spatial axis), or one ``(low, high)`` pair of non-negative ints per spatial axis.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes, initializers
from fdl._checks import check_positive_int
from fdl.nn import _convolve, _window
from fdl.nn.layer import Layer, Shape, layer_factory

__all__ = ["Conv1D", "Conv2D"]


# ----------------------------------------------------------------------------------------------
# Convolution.


def _conv(
    kind: str,
    ndim: int,
    features: int,
    kernel_size: Any,
    strides: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    use_bias: bool,
    w_init: initializers.Initializer | None,
    b_init: initializers.Initializer | None,
    param_dtype: Any,
    dtype: Any,
) -> Layer:
    """The ``ndim``-dimensional convolution layer behind :func:`Conv1D` and :func:`Conv2D`."""
    features = check_positive_int("features", features)
    window = _window.int_tuple("kernel_size", kernel_size, ndim)
    strides = _window.int_tuple("strides", strides, ndim)
    dilation = _window.int_tuple("dilation", dilation, ndim)
    padding = _window.padding_arg(padding, ndim)
    groups = check_positive_int("groups", groups)
    if features % groups:
        raise ValueError(f"{kind}: `groups` ({groups}) must divide `features` ({features})")
    spans = _window.spans(window, dilation)
    w_init = initializers.lecun_normal() if w_init is None else w_init
    b_init = initializers.zeros() if b_init is None else b_init

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = _window.check_example_shape(kind, input_shape, ndim)
        spatial, channels = shape[:-1], shape[-1]
        if channels % groups:
            raise ValueError(
                f"{kind}: `groups` ({groups}) must divide the input channels ({channels}) of "
                f"input_shape {shape}"
            )
        pads = _window.explicit_pads(padding, spatial, spans, strides)
        out = _window.output_spatial(kind, spatial, pads, spans, strides, "dilated kernel")
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (*window, channels // groups, features), param_dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (features,), param_dtype)
        return params, {}, (*out, features)

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del key, train, mask  # deterministic; padded time steps are convolved like real ones
        w = params["w"]
        x = jnp.asarray(x)
        _window.check_input(kind, x, ndim, w.shape[-2] * groups)
        batch, example = x.shape[: x.ndim - ndim - 1], x.shape[x.ndim - ndim - 1 :]
        pads = _window.explicit_pads(padding, example[:-1], spans, strides)
        _window.output_spatial(kind, example[:-1], pads, spans, strides, "dilated kernel")
        compute = dtype if dtype is not None else _dtypes.promote_types(x.dtype, w.dtype)
        flat = jnp.reshape(x, (math.prod(batch), *example)).astype(compute)  # (B, *spatial, C)
        geometry = _convolve.Geometry(strides, pads, (1,) * ndim, dilation, groups)
        y = _convolve.convolve(flat, w.astype(compute), geometry)  # (B, *out_spatial, features)
        y = jnp.reshape(y, (*batch, *y.shape[1:]))  # (*batch, *out_spatial, features)
        return _window.add_bias(y, params, use_bias), state

    return Layer(init, apply)


@layer_factory
def Conv1D(
    features: int,
    kernel_size: int | tuple[int],
    *,
    strides: int | tuple[int] = 1,
    padding: str | int | Any = "SAME",
    dilation: int | tuple[int] = 1,
    groups: int = 1,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""A 1-D convolution (cross-correlation) of channels-last signals ``(T, C)``.

    With :math:`G` = ``groups``, :math:`C_g = C / G` input and :math:`F_g = F / G` output
    channels per group, stride :math:`s`, dilation :math:`d`, kernel length :math:`k` and the
    input :math:`\tilde x` zero-padded by :math:`(lo, hi)`:

    .. math::

        y_{t, f} = b_f + \sum_{p=0}^{k-1} \sum_{c=0}^{C_g - 1}
            \tilde x_{\, t s + p d,\ g C_g + c} \; w_{p, c, f},
        \qquad g = \lfloor f / F_g \rfloor

    The output length is :math:`T' = \lfloor (T + lo + hi - d(k - 1) - 1) / s \rfloor + 1`:
    ``"VALID"`` has :math:`lo = hi = 0`; ``"SAME"`` gives :math:`T' = \lceil T / s \rceil` with
    :math:`lo + hi = \max((T' - 1) s + d(k - 1) + 1 - T, 0)`, :math:`lo = \lfloor (lo + hi) / 2
    \rfloor`. See :func:`Conv2D` for the shared details (groups, dtypes, PyTorch).

    Shapes: ``x`` is ``(*batch, T, C)``, ``w`` is ``(k, C / groups, features)``, ``b`` is
    ``(features,)``, ``y`` is ``(*batch, T', features)``.

    Args:
      features: :math:`F`, the number of output channels.
      kernel_size: :math:`k`, an int or a 1-tuple.
      strides: :math:`s`.
      padding: ``"SAME"``, ``"VALID"``, an int, or ``[(lo, hi)]``.
      dilation: :math:`d`, the kernel (rhs, "atrous") dilation.
      groups: :math:`G`; must divide ``features`` and the input channels.
      use_bias: add the bias ``b``.
      w_init: initializer of ``w``; default LeCun normal with
        :math:`\mathrm{fan\_in} = k \, C / G`.
      b_init: initializer of ``b``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the computation; ``None`` promotes the input's and the parameters' dtypes.
      name: its name in a parent's paths (automatic ``conv1d_<i>`` if ``None``).

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"w": (k, C / groups, features),
      "b": (features,)}``.

    Raises:
      ValueError: a bad ``features``, ``kernel_size``, ``strides``, ``dilation``, ``groups`` or
        ``padding`` (at construction); an input that is not ``(..., T, C)``, whose channels
        differ from ``init``'s or are not divisible by ``groups``, or too short for the kernel.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn import Conv1D
    >>> layer = Conv1D(1, 3, padding="VALID", w_init=fdl.initializers.ones())
    >>> params, state, shape = layer.init(jax.random.key(0), (4, 1))
    >>> shape
    (2, 1)
    >>> layer.apply(params, state, jnp.array([[1.0], [2.0], [3.0], [4.0]]))[0].tolist()
    [[6.0], [9.0]]
    """
    return _conv(
        "Conv1D",
        1,
        features,
        kernel_size,
        strides,
        padding,
        dilation,
        groups,
        use_bias,
        w_init,
        b_init,
        param_dtype,
        dtype,
    )


@layer_factory
def Conv2D(
    features: int,
    kernel_size: int | tuple[int, int],
    *,
    strides: int | tuple[int, int] = 1,
    padding: str | int | Any = "SAME",
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""A 2-D convolution (cross-correlation) of channels-last images ``(H, W, C)``.

    With :math:`G` = ``groups``, :math:`C_g = C / G` input and :math:`F_g = F / G` output
    channels per group, strides :math:`(s_h, s_w)`, dilations :math:`(d_h, d_w)`, a
    :math:`k_h \times k_w` kernel and :math:`\tilde x` the input zero-padded by
    :math:`(lo_h, hi_h)` rows and :math:`(lo_w, hi_w)` columns:

    .. math::

        y_{i, j, f} = b_f + \sum_{p=0}^{k_h - 1} \sum_{q=0}^{k_w - 1} \sum_{c=0}^{C_g - 1}
            \tilde x_{\, i s_h + p d_h,\ j s_w + q d_w,\ g C_g + c} \; w_{p, q, c, f},
        \qquad g = \lfloor f / F_g \rfloor

    Output channel :math:`f` sees only the input channels of its group :math:`g`.
    ``groups = C`` is a depthwise convolution (``features = m C`` gives channel multiplier
    :math:`m`). The kernel is not flipped (cross-correlation, as every DL library computes).

    Output size per spatial axis (input :math:`n`, kernel :math:`k`, stride :math:`s`, dilation
    :math:`d`):

    .. math::

        n' = \left\lfloor \frac{n + lo + hi - d(k - 1) - 1}{s} \right\rfloor + 1

    * ``"VALID"``: :math:`lo = hi = 0`, so :math:`n' = \lceil (n - d(k-1)) / s \rceil`.
    * ``"SAME"``: :math:`n' = \lceil n / s \rceil`, with
      :math:`lo + hi = \max((n' - 1) s + d(k - 1) + 1 - n,\ 0)`,
      :math:`lo = \lfloor (lo + hi) / 2 \rfloor` (the odd unit at the end, as XLA/TensorFlow).
    * an int :math:`p`: :math:`lo = hi = p` on both axes; ``((lo_h, hi_h), (lo_w, hi_w))``:
      explicit, possibly asymmetric.

    Shapes: ``x`` is ``(*batch, H, W, C)``, ``w`` is ``(k_h, k_w, C / groups, features)``
    (HWIO), ``b`` is ``(features,)``, ``y`` is ``(*batch, H', W', features)``. Leading batch
    axes are reshaped to one for ``jax.lax.conv_general_dilated`` and back, so the batched call
    equals ``jax.vmap`` over single examples.

    Args:
      features: :math:`F`, the number of output channels.
      kernel_size: :math:`(k_h, k_w)`, or an int for a square kernel.
      strides: :math:`(s_h, s_w)` or an int.
      padding: ``"SAME"``, ``"VALID"``, an int, or ``((lo_h, hi_h), (lo_w, hi_w))``.
      dilation: :math:`(d_h, d_w)` or an int: the kernel (rhs, "atrous") dilation.
      groups: :math:`G` (``feature_group_count``); must divide ``features`` and the input
        channels.
      use_bias: add the bias ``b``.
      w_init: initializer of ``w``; default LeCun normal,
        :math:`\mathrm{Var}[w] = 1 / \mathrm{fan\_in}`, :math:`\mathrm{fan\_in} = k_h k_w C / G`
        (the inputs one output sees; :func:`fdl.initializers.compute_fans` of the kernel shape).
      b_init: initializer of ``b``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the computation; ``None`` promotes the input's and the parameters' dtypes.
      name: its name in a parent's paths (automatic ``conv2d_<i>`` if ``None``).

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"w": (k_h, k_w, C / groups, features),
      "b": (features,)}``.

    Raises:
      ValueError: a bad ``features``, ``kernel_size``, ``strides``, ``dilation``, ``groups`` or
        ``padding``, or ``groups`` not dividing ``features`` (at construction); an input that is
        not ``(..., H, W, C)``, whose channels differ from ``init``'s or are not divisible by
        ``groups``, or smaller than the dilated kernel plus padding (at ``init``/``apply``).

    Differs from PyTorch: ``torch.nn.Conv2d`` is channels-first (``NCHW`` inputs, ``OIHW``
    weights ``(features, C / groups, k_h, k_w)``); fdl is ``NHWC``/``HWIO``, so a PyTorch weight
    maps over by ``w.permute(2, 3, 1, 0)``. PyTorch's int ``padding`` is symmetric and its
    ``padding="same"`` (stride 1 only) puts the odd unit at the end too; fdl's ``"SAME"`` also
    works with strides. PyTorch's default init is uniform with
    :math:`\mathrm{Var}[w] = 1 / (3\, \mathrm{fan\_in})`. Same as Flax's ``nn.Conv`` in layout,
    ``"SAME"`` and fans (Flax draws a truncated normal).

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn import Conv2D
    >>> layer = Conv2D(8, 3, strides=2)
    >>> params, state, shape = layer.init(jax.random.key(0), (28, 28, 1))
    >>> shape, params["w"].shape
    ((14, 14, 8), (3, 3, 1, 8))
    >>> layer.apply(params, state, jnp.zeros((5, 28, 28, 1)))[0].shape
    (5, 14, 14, 8)
    """
    return _conv(
        "Conv2D",
        2,
        features,
        kernel_size,
        strides,
        padding,
        dilation,
        groups,
        use_bias,
        w_init,
        b_init,
        param_dtype,
        dtype,
    )
