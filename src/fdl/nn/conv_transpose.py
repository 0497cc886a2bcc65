r"""Transposed convolutions, channels last: ``ConvTranspose1D`` and ``ConvTranspose2D``, the
adjoints of :func:`fdl.nn.Conv1D` and :func:`fdl.nn.Conv2D` with respect to their input.

A transposed convolution stores **the forward convolution's kernel** (``WIO``/``HWIO``,
``(*window, features // groups, C)``) and reads ``strides``, ``padding``, ``dilation`` and
``groups`` as the forward convolution's, so that with the same kernel array it computes exactly
the transpose :math:`\mathcal{C}_w^\top` of the linear map :math:`\mathcal{C}_w` (tested as
:math:`\langle \mathcal{C}_w(x), y\rangle = \langle x, \mathcal{C}_w^\top(y)\rangle` and against
``jax.vjp``). PyTorch's ``ConvTranspose1d/2d`` make the same choices.
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

__all__ = ["ConvTranspose1D", "ConvTranspose2D"]


def _conv_transpose(
    kind: str,
    ndim: int,
    features: int,
    kernel_size: Any,
    strides: Any,
    padding: Any,
    dilation: Any,
    output_padding: Any,
    groups: int,
    use_bias: bool,
    w_init: initializers.Initializer | None,
    b_init: initializers.Initializer | None,
    param_dtype: Any,
    dtype: Any,
) -> Layer:
    """The ``ndim``-dimensional transposed convolution behind :func:`ConvTranspose1D` and
    :func:`ConvTranspose2D`."""
    features = check_positive_int("features", features)
    window = _window.int_tuple("kernel_size", kernel_size, ndim)
    strides = _window.int_tuple("strides", strides, ndim)
    dilation = _window.int_tuple("dilation", dilation, ndim)
    padding = _window.padding_arg(padding, ndim)
    extra = _window.int_tuple("output_padding", output_padding, ndim, minimum=0)
    groups = check_positive_int("groups", groups)
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
    if features % groups:
        raise ValueError(f"{kind}: `groups` ({groups}) must divide `features` ({features})")
    spans = _window.spans(window, dilation)
    w_init = initializers.lecun_normal() if w_init is None else w_init
    b_init = initializers.zeros() if b_init is None else b_init

    def geometry(spatial: Shape) -> tuple[Shape, _window.Pads]:
        """Output spatial shape and the forward convolution's padding, for input ``spatial``."""
        if padding == "SAME":
            out = tuple(m * s for m, s in zip(spatial, strides, strict=True))
            return out, _window.explicit_pads("SAME", out, spans, strides)
        pads = _window.explicit_pads(padding, (0,) * ndim, spans, strides)
        out = tuple(
            (m - 1) * s + k - lo - hi + r
            for m, s, k, (lo, hi), r in zip(spatial, strides, spans, pads, extra, strict=True)
        )
        if any(n < 1 for n in out):
            raise ValueError(
                f"{kind}: padding {pads} removes the whole output: an input of spatial shape "
                f"{spatial} would give spatial shape {out}"
            )
        return out, pads

    def check_groups(channels: int, shape: Shape) -> None:
        if channels % groups:
            raise ValueError(
                f"{kind}: `groups` ({groups}) must divide the input channels ({channels}) of "
                f"input shape {shape}"
            )

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = _window.check_example_shape(kind, input_shape, ndim)
        check_groups(shape[-1], shape)
        out, _ = geometry(shape[:-1])
        w_key, b_key = jax.random.split(key)
        params = {"w": w_init(w_key, (*window, features // groups, shape[-1]), param_dtype)}
        if use_bias:
            params["b"] = b_init(b_key, (features,), param_dtype)
        return params, {}, (*out, features)

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del key, train, mask  # deterministic; padded time steps are scattered like real ones
        w = params["w"]  # (*window, features / G, C)
        x = jnp.asarray(x)
        _window.check_input(kind, x, ndim, w.shape[-1])
        batch, example = x.shape[: x.ndim - ndim - 1], x.shape[x.ndim - ndim - 1 :]
        out, pads = geometry(example[:-1])
        # Adjoint padding of the stride-dilated input: d(k-1) - lo before, n - 1 - s(n'-1) + lo
        # after (that is d(k-1) - hi + r), which makes the output exactly n long.
        adjoint_pads = tuple(
            (k - 1 - lo, n - 1 - s * (m - 1) + lo)
            for k, (lo, _), n, s, m in zip(spans, pads, out, strides, example[:-1], strict=True)
        )
        compute = dtype if dtype is not None else _dtypes.promote_types(x.dtype, w.dtype)
        flat = jnp.reshape(x, (math.prod(batch), *example)).astype(compute)  # (B, *in_spatial, C)
        adjoint = _convolve.Geometry((1,) * ndim, adjoint_pads, strides, dilation, groups)
        kernel = _convolve.adjoint_kernel(w, groups).astype(compute)
        y = _convolve.convolve(flat, kernel, adjoint)  # (B, *out_spatial, features)
        y = jnp.reshape(y, (*batch, *y.shape[1:]))  # (*batch, *out_spatial, features)
        return _window.add_bias(y, params, use_bias), state

    return Layer(init, apply)


@layer_factory
def ConvTranspose1D(
    features: int,
    kernel_size: int | tuple[int],
    *,
    strides: int | tuple[int] = 1,
    padding: str | int | Any = "SAME",
    dilation: int | tuple[int] = 1,
    output_padding: int | tuple[int] = 0,
    groups: int = 1,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""The transposed 1-D convolution of ``(T', C)`` signals: the adjoint of
    :func:`fdl.nn.Conv1D` with respect to its input.

    With ``w`` the kernel of ``Conv1D(C, kernel_size, strides=s, padding=padding, dilation=d,
    groups=G)`` mapping ``(T, features)`` to ``(T', C)``, this layer computes, for
    :math:`F_g = F / G` and :math:`C_g = C / G`,

    .. math::

        \mathcal{C}_w^\top(y)_{u, f} = b_f + \sum_{\substack{t, p:\ t s + p d - lo = u}}
            \ \sum_{c = g C_g}^{(g + 1) C_g - 1} y_{t, c} \; w_{p,\ f - g F_g,\ c},
        \qquad g = \lfloor f / F_g \rfloor,

    so that :math:`\langle \mathcal{C}_w(x), y \rangle = \langle x, \mathcal{C}_w^\top(y)
    \rangle` (tested). The output length :math:`T` is :math:`T' s` for ``"SAME"``, else
    :math:`(T' - 1) s + d (k - 1) + 1 - lo - hi + r` with :math:`r` = ``output_padding``. See
    :func:`ConvTranspose2D` for how it is computed, the sizes and the PyTorch mapping.

    Shapes: ``y`` is ``(*batch, T', C)``, ``w`` is ``(k, features / groups, C)``, ``b`` is
    ``(features,)``, the output is ``(*batch, T, features)``.

    Args:
      features: :math:`F`, the output channels (the forward convolution's input channels).
      kernel_size: :math:`k`, an int or a 1-tuple.
      strides: :math:`s`, the forward convolution's stride (the upsampling factor).
      padding: the forward convolution's padding: ``"SAME"``, ``"VALID"``, an int, or
        ``[(lo, hi)]``.
      dilation: :math:`d`, the forward convolution's kernel dilation.
      output_padding: :math:`r \in [0, s)`, extra steps at the end (not with ``"SAME"``).
      groups: :math:`G`, the forward convolution's groups; must divide ``features`` and ``C``.
      use_bias: add the bias ``b``.
      w_init: initializer of ``w``; default LeCun normal,
        :math:`\mathrm{fan\_in} = k F / G` (the fans of the kernel shape).
      b_init: initializer of ``b``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the computation; ``None`` promotes the input's and the parameters' dtypes.
      name: its name in a parent's paths (automatic ``conv_transpose1d_<i>`` if ``None``).

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"w": (k, features / groups, C),
      "b": (features,)}``.

    Raises:
      ValueError: a bad argument (at construction), including ``output_padding`` outside
        ``[0, strides)`` or nonzero with ``"SAME"`` and ``groups`` not dividing ``features``;
        an input that is not ``(..., T', C)``, whose ``C`` differs from ``init``'s or is not
        divisible by ``groups``; padding that leaves an empty output.

    Differs from PyTorch: ``torch.nn.ConvTranspose1d(C, F, k, groups=G)`` is channels-first
    with weight ``(C, F / G, k)``; fdl's ``w`` is ``weight.permute(2, 1, 0)``. ``stride``,
    ``padding`` (an int), ``output_padding``, ``dilation`` and ``groups`` mean the same (tested
    against PyTorch); PyTorch has no ``"SAME"``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.ConvTranspose1D(1, 2, strides=2, padding="VALID", use_bias=False,
    ...                                w_init=fdl.initializers.ones())
    >>> params, state, shape = layer.init(jax.random.key(0), (2, 1))
    >>> shape
    (4, 1)
    >>> layer.apply(params, state, jnp.array([[1.0], [10.0]]))[0][:, 0].tolist()
    [1.0, 1.0, 10.0, 10.0]
    """
    return _conv_transpose(
        "ConvTranspose1D",
        1,
        features,
        kernel_size,
        strides,
        padding,
        dilation,
        output_padding,
        groups,
        use_bias,
        w_init,
        b_init,
        param_dtype,
        dtype,
    )


@layer_factory
def ConvTranspose2D(
    features: int,
    kernel_size: int | tuple[int, int],
    *,
    strides: int | tuple[int, int] = 1,
    padding: str | int | Any = "SAME",
    dilation: int | tuple[int, int] = 1,
    output_padding: int | tuple[int, int] = 0,
    groups: int = 1,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""The transposed 2-D convolution: the adjoint of :func:`fdl.nn.Conv2D` with respect to its
    input.

    Let :math:`\mathcal{C}_w` be ``Conv2D(C, kernel_size, strides=strides, padding=padding,
    dilation=dilation, groups=groups, use_bias=False)`` with kernel :math:`w` of shape
    ``(k_h, k_w, features / groups, C)``, mapping ``(H, W, features)`` images to
    ``(H', W', C)``. This layer, given **the same kernel array** :math:`w` and arguments,
    computes :math:`\mathcal{C}_w^\top` (plus its bias), so that for all ``x`` of shape
    ``(H, W, features)`` and ``y`` of shape ``(H', W', C)``, with :math:`G` = ``groups``,
    :math:`F_g = F / G` and :math:`C_g = C / G`:

    .. math::

        \langle \mathcal{C}_w(x),\, y \rangle = \langle x,\, \mathcal{C}_w^\top(y) \rangle,
        \qquad
        \mathcal{C}_w^\top(y)_{u, v, f} = b_f
            + \sum_{\substack{i, p:\ i s_h + p d_h - lo_h = u}}
            \ \sum_{\substack{j, q:\ j s_w + q d_w - lo_w = v}}
            \ \sum_{c = g C_g}^{(g + 1) C_g - 1} y_{i, j, c} \; w_{p, q,\ f - g F_g,\ c},
        \qquad g = \lfloor f / F_g \rfloor

    Each input pixel scatters a copy of the kernel, scaled by its value, into the output at
    stride :math:`s`; output channel :math:`f` of group :math:`g` receives only the input
    channels of group :math:`g`, as the forward convolution's channel :math:`c` reads only the
    features of its group. It is ``jax.vjp`` of the convolution with respect to ``x`` (tested).
    It is computed as one grouped convolution of :math:`y` dilated by :math:`s`
    (``lhs_dilation``) with the kernel flipped in space and its channel axes swapped within each
    group (:func:`fdl.nn._convolve.adjoint_kernel`), padded by :math:`(d(k-1) - lo,\ d(k-1) - hi + r)` per axis.

    Kernel layout: ``w`` is the **forward** convolution's HWIO kernel, ``(k_h, k_w,
    features / groups, C)``: its "in" axis is this layer's output channels (per group).

    Output size per spatial axis, from the input size :math:`n'` (the forward output):

    * ``"SAME"``: :math:`n = n' s`, the forward ``"SAME"`` padding computed for that :math:`n`
      (then :math:`\lceil n / s \rceil = n'`);
    * ``"VALID"`` or explicit :math:`(lo, hi)`:
      :math:`n = (n' - 1) s + d(k - 1) + 1 - lo - hi + r`, with :math:`r` = ``output_padding``.

    A strided forward convolution maps :math:`s` input sizes to the same :math:`n'`;
    ``output_padding`` :math:`r \in [0, s)` picks one (``"SAME"`` always takes the largest and
    allows only :math:`r = 0`). For every such :math:`n` the forward convolution maps
    ``(n, ...)`` back to ``(n', ...)``, so the identity above holds whenever the shapes match.

    Shapes: ``y`` is ``(*batch, H', W', C)``, ``w`` is ``(k_h, k_w, features / groups, C)``,
    ``b`` is ``(features,)``, the output is ``(*batch, H, W, features)``.

    Args:
      features: :math:`F`, the output channels (the forward convolution's input channels).
      kernel_size: :math:`(k_h, k_w)` or an int.
      strides: :math:`(s_h, s_w)` of the forward convolution (the upsampling factor).
      padding: the forward convolution's padding: ``"SAME"``, ``"VALID"``, an int, or
        ``((lo_h, hi_h), (lo_w, hi_w))``.
      dilation: :math:`(d_h, d_w)`, the forward convolution's kernel dilation.
      output_padding: :math:`r`, an int or a pair, each in ``[0, stride)``; extra rows/columns
        at the end of the output (``"VALID"``/explicit padding only).
      groups: :math:`G`, the forward convolution's ``groups``; must divide ``features`` and the
        input channels ``C``. ``groups = C = features`` is a depthwise transposed convolution.
      use_bias: add the bias ``b`` (then the layer is affine, the adjoint plus ``b``).
      w_init: initializer of ``w``; default LeCun normal with the fans of the kernel shape,
        :math:`\mathrm{fan\_in} = k_h k_w F / G`.
      b_init: initializer of ``b``; default zeros.
      param_dtype: dtype of the stored parameters.
      dtype: dtype of the computation; ``None`` promotes the input's and the parameters' dtypes.
      name: its name in a parent's paths (automatic ``conv_transpose2d_<i>`` if ``None``).

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"w": (k_h, k_w, features / groups, C),
      "b": (features,)}``.

    Raises:
      ValueError: a bad argument (at construction), including ``output_padding`` outside
        ``[0, stride)`` or nonzero with ``"SAME"`` and ``groups`` not dividing ``features``; an
        input that is not ``(..., H', W', C)``, whose channels differ from ``init``'s or are
        not divisible by ``groups``; padding that leaves an empty output.

    Differs from PyTorch: ``torch.nn.ConvTranspose2d(C, F, k, groups=G)`` is channels-first with
    weight ``(C, F / G, k_h, k_w)`` (also the forward ``Conv2d``'s weight); fdl's ``w`` is
    ``weight.permute(2, 3, 1, 0)``. Its ``stride``, ``padding`` (ints), ``output_padding``,
    ``dilation`` and ``groups`` mean the same as here
    (:math:`n = (n'-1)s - 2p + d(k-1) + r + 1`; tested against PyTorch), but it has no
    ``"SAME"``, and it allows :math:`r` up to :math:`\max(s, d) - 1` where fdl requires
    :math:`r < s`. Differs from JAX/Flax: ``jax.lax.conv_transpose`` (and Flax's
    ``nn.ConvTranspose``) by default neither flips nor swaps the kernel and reads explicit
    padding as the padding of the dilated input; with ``transpose_kernel=True`` it flips and
    swaps as here. fdl's explicit padding is the forward convolution's (as PyTorch and
    ``use_consistent_padding=True``).

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = fdl.nn.ConvTranspose2D(1, (1, 2), strides=(1, 2), padding="VALID",
    ...                                w_init=fdl.initializers.ones(), use_bias=False)
    >>> params, state, shape = layer.init(jax.random.key(0), (1, 2, 1))
    >>> shape
    (1, 4, 1)
    >>> layer.apply(params, state, jnp.array([[[1.0], [10.0]]]))[0][..., 0].tolist()
    [[1.0, 1.0, 10.0, 10.0]]
    """
    return _conv_transpose(
        "ConvTranspose2D",
        2,
        features,
        kernel_size,
        strides,
        padding,
        dilation,
        output_padding,
        groups,
        use_bias,
        w_init,
        b_init,
        param_dtype,
        dtype,
    )
