r"""Convolutions, channels last: ``Conv1D``, ``Conv2D`` and the adjoint ``ConvTranspose2D``.

Layouts (design.md section 3): one example is ``(T, C)`` (1-D) or ``(H, W, C)`` (2-D), with any
number of leading batch axes in front; the kernel is ``(*window, in // groups, features)``
(``WIO`` / ``HWIO``). ``apply`` reshapes the leading batch axes to one, calls
``jax.lax.conv_general_dilated`` with ``NWC``/``NHWC`` dimension numbers, and reshapes back.

Padding, shared by every layer here and by :mod:`fdl.nn.pooling`: ``"VALID"`` (none), ``"SAME"``
(the output has :math:`\lceil n / s \rceil` positions; the odd unit of padding goes at the end, as
in XLA and TensorFlow), a non-negative int (that much at both ends of every spatial axis), or one
``(low, high)`` pair of non-negative ints per spatial axis.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fdl import initializers
from fdl._checks import check_positive_int, check_shape
from fdl.nn.dense import _promote
from fdl.nn.layer import Layer, Shape

__all__ = ["Conv1D", "Conv2D", "ConvTranspose2D"]

Pads = tuple[tuple[int, int], ...]

_DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}
_LAYOUT = {1: ("T",), 2: ("H", "W")}


# ----------------------------------------------------------------------------------------------
# Static argument handling, shared with fdl.nn.pooling.


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _int_tuple(arg: str, value: Any, ndim: int, *, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int, or a sequence of ``ndim`` ints) as a tuple of ``ndim`` ints >= minimum."""
    items: Any = (value,) * ndim if _is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if items is None or len(items) != ndim or not all(_is_int(v) and v >= minimum for v in items):
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(
            f"`{arg}` must be a {what} int or a tuple of {ndim} {what} ints, got {value!r}"
        )
    return tuple(int(v) for v in items)


def _padding_arg(value: Any, ndim: int) -> str | Pads:
    """``"SAME"``, ``"VALID"``, or explicit ``(low, high)`` pairs, one per spatial axis."""
    message = (
        f"`padding` must be 'SAME', 'VALID', a non-negative int or a sequence of {ndim} "
        f"(low, high) pairs of non-negative ints, got {value!r}"
    )
    if isinstance(value, str):
        if value not in ("SAME", "VALID"):
            raise ValueError(message)
        return value
    if _is_int(value):
        if value < 0:
            raise ValueError(message)
        return ((int(value), int(value)),) * ndim
    try:
        pairs = tuple(tuple(pair) for pair in value)
    except TypeError:
        raise ValueError(message) from None
    if len(pairs) != ndim or not all(
        len(pair) == 2 and all(_is_int(v) and v >= 0 for v in pair) for pair in pairs
    ):
        raise ValueError(message)
    return tuple((int(lo), int(hi)) for lo, hi in pairs)


def _same_pads(size: int, span: int, stride: int) -> tuple[int, int]:
    """XLA's ``"SAME"``: ``ceil(size / stride)`` outputs, the odd unit of padding at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def _explicit_pads(
    padding: str | Pads, spatial: Shape, spans: Shape, strides: Shape
) -> Pads:
    """The ``(low, high)`` pairs that ``padding`` means for inputs of spatial shape ``spatial``."""
    if padding == "VALID":
        return ((0, 0),) * len(spatial)
    if padding == "SAME":
        return tuple(
            _same_pads(n, k, s) for n, k, s in zip(spatial, spans, strides, strict=True)
        )
    return padding  # type: ignore[return-value]


def _output_spatial(
    where: str, spatial: Shape, pads: Pads, spans: Shape, strides: Shape, window: str
) -> Shape:
    r"""Output sizes :math:`\lfloor (n + lo + hi - span) / s \rfloor + 1`; raise if one is empty."""
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pads, strict=True))
    if any(p < k for p, k in zip(padded, spans, strict=True)):
        raise ValueError(
            f"{where}: the {window} spans {spans}, more than the padded input {padded} "
            f"(spatial shape {spatial}, padding {pads}), so the output would be empty"
        )
    return tuple((p - k) // s + 1 for p, k, s in zip(padded, spans, strides, strict=True))


def _layout(ndim: int, channels: Any = "C") -> str:
    return "(..., " + ", ".join((*_LAYOUT[ndim], str(channels))) + ")"


def _check_example_shape(where: str, input_shape: Any, ndim: int) -> Shape:
    """The per-example ``input_shape``, which must be exactly ``(*spatial, C)``."""
    shape = check_shape("input_shape", input_shape)
    if len(shape) != ndim + 1:
        layout = "(" + ", ".join((*_LAYOUT[ndim], "C")) + ")"
        raise ValueError(f"{where} expects a per-example input_shape {layout}, got {shape}")
    return shape


def _check_input(where: str, x: jax.Array, ndim: int, channels: int | None) -> None:
    """``x`` must be ``(*batch, *spatial, C)``, with ``C == channels`` unless ``channels`` is None."""
    if x.ndim < ndim + 1:
        raise ValueError(f"{where} expects inputs of shape {_layout(ndim)}, got shape {x.shape}")
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(
            f"{where} expects inputs of shape {_layout(ndim, channels)}, got shape {x.shape}"
        )


def _spans(window: Shape, dilation: Shape) -> Shape:
    """The extent of a dilated window: :math:`d (k - 1) + 1`."""
    return tuple(d * (k - 1) + 1 for k, d in zip(window, dilation, strict=True))


def _add_bias(y: jax.Array, params: dict, use_bias: bool) -> jax.Array:
    if not use_bias:
        return y
    return y + jnp.broadcast_to(params["b"].astype(y.dtype), y.shape)


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
    name: str,
) -> Layer:
    """The ``ndim``-dimensional convolution layer behind :func:`Conv1D` and :func:`Conv2D`."""
    check_positive_int("features", features)
    window = _int_tuple("kernel_size", kernel_size, ndim)
    strides = _int_tuple("strides", strides, ndim)
    dilation = _int_tuple("dilation", dilation, ndim)
    padding = _padding_arg(padding, ndim)
    check_positive_int("groups", groups)
    where = f"{kind} layer {name!r}"
    if features % groups:
        raise ValueError(
            f"{where}: `groups` ({groups}) must divide `features` ({features})"
        )
    spans = _spans(window, dilation)
    w_init = initializers.lecun_normal() if w_init is None else w_init
    b_init = initializers.zeros() if b_init is None else b_init

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = _check_example_shape(where, input_shape, ndim)
        spatial, channels = shape[:-1], shape[-1]
        if channels % groups:
            raise ValueError(
                f"{where}: `groups` ({groups}) must divide the input channels ({channels}) of "
                f"input_shape {shape}"
            )
        pads = _explicit_pads(padding, spatial, spans, strides)
        out = _output_spatial(where, spatial, pads, spans, strides, "dilated kernel")
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (*window, channels // groups, features), param_dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (features,), param_dtype)
        return params, {}, (*out, features)

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False):
        del key, train  # deterministic
        w = params["w"]
        x = jnp.asarray(x)
        _check_input(where, x, ndim, w.shape[-2] * groups)
        batch, example = x.shape[: x.ndim - ndim - 1], x.shape[x.ndim - ndim - 1 :]
        pads = _explicit_pads(padding, example[:-1], spans, strides)
        _output_spatial(where, example[:-1], pads, spans, strides, "dilated kernel")
        compute = dtype if dtype is not None else _promote(x.dtype, w.dtype)
        flat = jnp.reshape(x, (math.prod(batch), *example)).astype(compute)  # (B, *spatial, C)
        y = lax.conv_general_dilated(
            flat,
            w.astype(compute),
            window_strides=strides,
            padding=pads,
            rhs_dilation=dilation,
            dimension_numbers=_DIMENSION_NUMBERS[ndim],
            feature_group_count=groups,
        )  # (B, *out_spatial, features)
        y = jnp.reshape(y, (*batch, *y.shape[1:]))  # (*batch, *out_spatial, features)
        return _add_bias(y, params, use_bias), state

    return Layer(init, apply, name)


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
    name: str = "conv1d",
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
      name: the name shown in error messages.

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"w": (k, C / groups, features),
      "b": (features,)}``.

    Raises:
      ValueError: a bad ``features``, ``kernel_size``, ``strides``, ``dilation``, ``groups`` or
        ``padding`` (at construction); an input that is not ``(..., T, C)``, whose channels
        differ from ``init``'s or are not divisible by ``groups``, or too short for the kernel.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.conv import Conv1D
    >>> layer = Conv1D(1, 3, padding="VALID", w_init=fdl.initializers.ones())
    >>> params, state, shape = layer.init(jax.random.key(0), (4, 1))
    >>> shape
    (2, 1)
    >>> layer.apply(params, state, jnp.array([[1.0], [2.0], [3.0], [4.0]]))[0].tolist()
    [[6.0], [9.0]]
    """
    return _conv(
        "Conv1D", 1, features, kernel_size, strides, padding, dilation, groups, use_bias,
        w_init, b_init, param_dtype, dtype, name,
    )


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
    name: str = "conv2d",
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
      name: the name shown in error messages.

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
    >>> from fdl.nn.conv import Conv2D
    >>> layer = Conv2D(8, 3, strides=2)
    >>> params, state, shape = layer.init(jax.random.key(0), (28, 28, 1))
    >>> shape, params["w"].shape
    ((14, 14, 8), (3, 3, 1, 8))
    >>> layer.apply(params, state, jnp.zeros((5, 28, 28, 1)))[0].shape
    (5, 14, 14, 8)
    """
    return _conv(
        "Conv2D", 2, features, kernel_size, strides, padding, dilation, groups, use_bias,
        w_init, b_init, param_dtype, dtype, name,
    )


# ----------------------------------------------------------------------------------------------
# Transposed convolution.


def ConvTranspose2D(
    features: int,
    kernel_size: int | tuple[int, int],
    *,
    strides: int | tuple[int, int] = 1,
    padding: str | int | Any = "SAME",
    dilation: int | tuple[int, int] = 1,
    output_padding: int | tuple[int, int] = 0,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str = "conv_transpose2d",
) -> Layer:
    r"""The transposed 2-D convolution: the adjoint of :func:`Conv2D` with respect to its input.

    Let :math:`\mathcal{C}_w` be ``Conv2D(C, kernel_size, strides=strides, padding=padding,
    dilation=dilation, use_bias=False)`` with kernel :math:`w` of shape ``(k_h, k_w, features,
    C)``, mapping ``(H, W, features)`` images to ``(H', W', C)``. This layer, given **the same
    kernel array** :math:`w` and arguments, computes :math:`\mathcal{C}_w^\top` (plus its bias),
    so that for all ``x`` of shape ``(H, W, features)`` and ``y`` of shape ``(H', W', C)``:

    .. math::

        \langle \mathcal{C}_w(x),\, y \rangle = \langle x,\, \mathcal{C}_w^\top(y) \rangle,
        \qquad
        \mathcal{C}_w^\top(y)_{u, v, c} = b_c + \sum_{\substack{i, p:\ i s_h + p d_h - lo_h = u}}
            \ \sum_{\substack{j, q:\ j s_w + q d_w - lo_w = v}} \ \sum_{f}
            y_{i, j, f} \; w_{p, q, c, f}

    Each input pixel scatters a copy of the kernel, scaled by its value, into the output at
    stride :math:`s`; it is ``jax.vjp`` of the convolution with respect to ``x`` (tested). It is
    computed as one convolution of :math:`y` dilated by :math:`s` (``lhs_dilation``) with the
    kernel flipped in space and its channel axes swapped, padded by
    :math:`(d(k-1) - lo,\ d(k-1) - hi + r)` per axis.

    Kernel layout: ``w`` is the **forward** convolution's HWIO kernel, ``(k_h, k_w, features,
    C)``: its "in" axis is this layer's output channels. (PyTorch's ``ConvTranspose2d`` weight is
    likewise the forward ``Conv2d``'s weight.)

    Output size per spatial axis, from the input size :math:`n'` (the forward output):

    * ``"SAME"``: :math:`n = n' s`, the forward ``"SAME"`` padding computed for that :math:`n`
      (then :math:`\lceil n / s \rceil = n'`);
    * ``"VALID"`` or explicit :math:`(lo, hi)`:
      :math:`n = (n' - 1) s + d(k - 1) + 1 - lo - hi + r`, with :math:`r` = ``output_padding``.

    A strided forward convolution maps :math:`s` input sizes to the same :math:`n'`;
    ``output_padding`` :math:`r \in [0, s)` picks one (``"SAME"`` always takes the largest and
    allows only :math:`r = 0`). For every such :math:`n` the forward convolution maps
    ``(n, ...)`` back to ``(n', ...)``, so the identity above holds whenever the shapes match.

    Shapes: ``y`` is ``(*batch, H', W', C)``, ``w`` is ``(k_h, k_w, features, C)``, ``b`` is
    ``(features,)``, the output is ``(*batch, H, W, features)``.

    Args:
      features: the output channels (the forward convolution's input channels).
      kernel_size: :math:`(k_h, k_w)` or an int.
      strides: :math:`(s_h, s_w)` of the forward convolution (the upsampling factor).
      padding: the forward convolution's padding: ``"SAME"``, ``"VALID"``, an int, or
        ``((lo_h, hi_h), (lo_w, hi_w))``.
      dilation: :math:`(d_h, d_w)`, the forward convolution's kernel dilation.
      output_padding: :math:`r`, an int or a pair, each in ``[0, stride)``; extra rows/columns
        at the end of the output (``"VALID"``/explicit padding only).
      use_bias: add the bias ``b`` (then the layer is affine, the adjoint plus ``b``).
      w_init: initializer of ``w``; default LeCun normal with the fans of the kernel shape,
        :math:`\mathrm{fan\_in} = k_h k_w \cdot \mathrm{features}`.
      b_init: initializer of ``b``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the computation; ``None`` promotes the input's and the parameters' dtypes.
      name: the name shown in error messages.

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"w": (k_h, k_w, features, C),
      "b": (features,)}``.

    Raises:
      ValueError: a bad argument (at construction), including ``output_padding`` outside
        ``[0, stride)`` or nonzero with ``"SAME"``; an input that is not ``(..., H', W', C)`` or
        whose channels differ from ``init``'s; padding that leaves an empty output.

    Differs from PyTorch: ``torch.nn.ConvTranspose2d`` is channels-first with weight
    ``(C, features, k_h, k_w)``; its ``padding`` and ``output_padding`` mean the same as here
    (:math:`n = (n'-1)s - 2p + d(k-1) + r + 1`), but it has no ``"SAME"``. Differs from
    JAX/Flax: ``jax.lax.conv_transpose`` (and Flax's ``nn.ConvTranspose``) by default neither
    flips nor swaps the kernel and reads explicit padding as the padding of the dilated input;
    with ``transpose_kernel=True`` it flips and swaps as here. fdl's explicit padding is the
    forward convolution's (as PyTorch and ``use_consistent_padding=True``).

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn.conv import ConvTranspose2D
    >>> layer = ConvTranspose2D(1, (1, 2), strides=(1, 2), padding="VALID",
    ...                         w_init=fdl.initializers.ones(), use_bias=False)
    >>> params, state, shape = layer.init(jax.random.key(0), (1, 2, 1))
    >>> shape
    (1, 4, 1)
    >>> layer.apply(params, state, jnp.array([[[1.0], [10.0]]]))[0][..., 0].tolist()
    [[1.0, 1.0, 10.0, 10.0]]
    """
    ndim = 2
    check_positive_int("features", features)
    window = _int_tuple("kernel_size", kernel_size, ndim)
    strides = _int_tuple("strides", strides, ndim)
    dilation = _int_tuple("dilation", dilation, ndim)
    padding = _padding_arg(padding, ndim)
    extra = _int_tuple("output_padding", output_padding, ndim, minimum=0)
    if any(r >= s for r, s in zip(extra, strides, strict=True)):
        raise ValueError(
            f"`output_padding` must be smaller than `strides` on every axis (else the forward "
            f"convolution would not map the output back to the input's size), got "
            f"output_padding {extra} with strides {strides}"
        )
    if padding == "SAME" and any(extra):
        raise ValueError(
            f"`output_padding` must be 0 with padding 'SAME' (the output size is input size "
            f"times stride), got {output_padding!r}"
        )
    where = f"ConvTranspose2D layer {name!r}"
    spans = _spans(window, dilation)
    w_init = initializers.lecun_normal() if w_init is None else w_init
    b_init = initializers.zeros() if b_init is None else b_init

    def geometry(spatial: Shape) -> tuple[Shape, Pads]:
        """Output spatial shape and the forward convolution's padding, for input ``spatial``."""
        if padding == "SAME":
            out = tuple(m * s for m, s in zip(spatial, strides, strict=True))
            return out, _explicit_pads("SAME", out, spans, strides)
        pads = _explicit_pads(padding, (0,) * ndim, spans, strides)
        out = tuple(
            (m - 1) * s + k - lo - hi + r
            for m, s, k, (lo, hi), r in zip(spatial, strides, spans, pads, extra, strict=True)
        )
        if any(n < 1 for n in out):
            raise ValueError(
                f"{where}: padding {pads} removes the whole output: an input of spatial shape "
                f"{spatial} would give spatial shape {out}"
            )
        return out, pads

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = _check_example_shape(where, input_shape, ndim)
        out, _ = geometry(shape[:-1])
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (*window, features, shape[-1]), param_dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (features,), param_dtype)
        return params, {}, (*out, features)

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False):
        del key, train  # deterministic
        w = params["w"]  # (k_h, k_w, features, C)
        x = jnp.asarray(x)
        _check_input(where, x, ndim, w.shape[-1])
        batch, example = x.shape[: x.ndim - ndim - 1], x.shape[x.ndim - ndim - 1 :]
        out, pads = geometry(example[:-1])
        # Adjoint padding of the stride-dilated input: d(k-1) - lo before, n - 1 - s(n'-1) + lo
        # after (that is d(k-1) - hi + r), which makes the output exactly n long.
        adjoint_pads = tuple(
            (k - 1 - lo, n - 1 - s * (m - 1) + lo)
            for k, (lo, _), n, s, m in zip(spans, pads, out, strides, example[:-1], strict=True)
        )
        compute = dtype if dtype is not None else _promote(x.dtype, w.dtype)
        kernel = jnp.flip(w, axis=(0, 1))  # (k_h, k_w, features, C), reversed in space
        kernel = jnp.swapaxes(kernel, 2, 3)  # (k_h, k_w, C, features)
        flat = jnp.reshape(x, (math.prod(batch), *example)).astype(compute)  # (B, H', W', C)
        y = lax.conv_general_dilated(
            flat,
            kernel.astype(compute),
            window_strides=(1,) * ndim,
            padding=adjoint_pads,
            lhs_dilation=strides,
            rhs_dilation=dilation,
            dimension_numbers=_DIMENSION_NUMBERS[ndim],
        )  # (B, H, W, features)
        y = jnp.reshape(y, (*batch, *y.shape[1:]))  # (*batch, H, W, features)
        return _add_bias(y, params, use_bias), state

    return Layer(init, apply, name)
