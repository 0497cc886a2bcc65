r"""The channels-last convolution behind ``Conv*`` and ``ConvTranspose*`` (a kernel module), with
derivatives whose convolutions are all channels last.

Why: reverse mode of ``jax.lax.conv_general_dilated`` takes the kernel's gradient with a
convolution whose dimension numbers swap the batch and feature axes (``f01b_i01o->01bf`` in HLO).
At the top level of a jitted function XLA:CPU rewrites that into a channels-last convolution it
runs fast; inside a loop or a conditional (``fit`` runs its steps in a ``jax.lax.scan``, each
under a ``jax.lax.cond``) it does not, and the same gradient took 16 times as long (jax 0.10.2,
a 3×3 kernel of 32→64 channels on 32 images of 14×14: 99 ms against 3.8 ms; jax-ml/jax#12868
is the same slowness for the forward convolution). docs/design.md ("Convolutions in a loop")
has the measurements.

Here the convolution has its own JVP (``jax.custom_jvp``). For a kernel of :math:`k` taps per
axis, stride :math:`s`, dilation :math:`d` and input dilation :math:`l`, with :math:`\tilde x`
the input dilated by :math:`l` and padded by :math:`(lo, hi)`, the two derivatives are

.. math::

    \frac{\partial L}{\partial w_{p, c, f}} = \sum_{n, t} \tilde x_{n,\, t s + p d,\, c}\,
        \delta y_{n, t, f}, \qquad
    \frac{\partial L}{\partial \tilde x_{n, q, c}} = \sum_{t, p:\ t s + p d = q}
        \delta y_{n, t, f}\, w_{p, c, f},

and :func:`kernel_gradient` and :func:`input_gradient` compute each as one channels-last
convolution, with the axes moved by transposes (the kernel's gradient convolves :math:`\tilde
x` with its channels as the batch and its examples as the features, by :math:`\delta y`, whose
examples are the input features). The JVP's tangent is written as the *transpose* of these two
functions (``jax.linear_transpose``), so that when reverse mode transposes the tangent it gets
them back: the backward pass runs exactly these convolutions. Forward mode (``jax.jvp``,
Hessian-vector products) works as for any JAX function. The numbers are those of
``conv_general_dilated``'s own derivatives (tested equal, to second order).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from fdl.nn import _window

Pads = tuple[tuple[int, int], ...]


class Geometry(NamedTuple):
    """The static arguments of one convolution: per spatial axis the window strides, the
    explicit ``(low, high)`` padding, the input (lhs) and kernel (rhs) dilations; and the
    feature groups."""

    strides: tuple[int, ...]
    padding: Pads
    lhs_dilation: tuple[int, ...]
    rhs_dilation: tuple[int, ...]
    groups: int


def adjoint_kernel(w: jax.Array, groups: int) -> jax.Array:
    r"""The kernel of the adjoint (transposed) convolution, from the forward one.

    The forward kernel ``w`` is ``(*window, C / G, F)``: its output channel ``g F_g + j`` reads
    the input channels ``g C_g + i`` of group ``g``. The adjoint reads channel ``g F_g + j`` and
    writes ``g C_g + i``, through the spatially flipped tap:

    .. math::

        K_{p, j, g C_g + i} = w_{\bar p, i, g F_g + j}, \qquad \bar p = k - 1 - p \text{ per axis}

    Returns ``K`` of shape ``(*window, F / G, C)``, for ``feature_group_count=G``.
    """
    ndim = w.ndim - 2
    c_group, features = w.shape[-2], w.shape[-1]
    kernel = jnp.flip(w, axis=tuple(range(ndim)))  # (*window, C/G, F), reversed in space
    kernel = jnp.reshape(
        kernel, (*w.shape[:ndim], c_group, groups, features // groups)
    )  # (*window, C/G, G, F/G)
    kernel = jnp.transpose(kernel, (*range(ndim), ndim + 2, ndim + 1, ndim))  # (*window, F/G, G, C/G)
    shape = (*w.shape[:ndim], features // groups, groups * c_group)
    return jnp.reshape(kernel, shape)  # (*window, F/G, C)


def _conv(lhs, rhs, strides, padding, lhs_dilation, rhs_dilation, *, feature_groups=1, batch_groups=1):
    """``jax.lax.conv_general_dilated`` with channels-last dimension numbers (``NWC``/``NHWC``)."""
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides=strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=_window.DIMENSION_NUMBERS[lhs.ndim - 2],
        feature_group_count=feature_groups,
        batch_group_count=batch_groups,
    )


def _plain(x: jax.Array, w: jax.Array, g: Geometry) -> jax.Array:
    return _conv(x, w, g.strides, g.padding, g.lhs_dilation, g.rhs_dilation, feature_groups=g.groups)


def _per_axis(spatial, out, window, geometry: Geometry) -> list[tuple[int, ...]]:
    """Per spatial axis ``(n, m, k, lo, s, d, l)``: the input and output sizes, the taps, the
    low padding, the stride, the kernel dilation and the input dilation."""
    axes = zip(
        spatial,
        out,
        window,
        geometry.padding,
        geometry.strides,
        geometry.rhs_dilation,
        geometry.lhs_dilation,
        strict=True,
    )
    return [(n, m, k, lo, s, d, step) for n, m, k, (lo, _), s, d, step in axes]


def kernel_gradient(x: jax.Array, dy: jax.Array, window: tuple[int, ...], g: Geometry) -> jax.Array:
    """The gradient with respect to the kernel ``(*window, C / G, F)`` of the convolution of
    ``x (B, *spatial, C)`` whose output's cotangent is ``dy (B, *out, F)``: one channels-last
    convolution of the input (channels as its batch, examples as its features; dilated and
    padded as the forward one's) by ``dy`` (examples as its input features), ``batch_group_count
    = G`` pairing the groups."""
    ndim = x.ndim - 2
    out = dy.shape[1:-1]
    # the padding that leaves exactly the positions the window reaches, (m - 1) s + (k - 1) d + 1
    pads = [
        (lo, (m - 1) * s + (k - 1) * d + 1 - (n - 1) * step - 1 - lo)
        for n, m, k, lo, s, d, step in _per_axis(x.shape[1:-1], out, window, g)
    ]
    lhs = jnp.transpose(x, (ndim + 1, *range(1, ndim + 1), 0))  # (C, *spatial, B)
    rhs = jnp.transpose(dy, (*range(1, ndim + 1), 0, ndim + 1))  # (*out, B, F)
    # the forward's kernel dilation strides over the taps; its stride dilates dy
    grad = _conv(lhs, rhs, g.rhs_dilation, pads, g.lhs_dilation, g.strides, batch_groups=g.groups)
    return jnp.transpose(grad, (*range(1, ndim + 1), 0, ndim + 1))  # (*window, C / G, F)


def input_gradient(w: jax.Array, dy: jax.Array, spatial: tuple[int, ...], g: Geometry) -> jax.Array:
    """The gradient with respect to the input ``(B, *spatial, C)`` of the convolution by ``w``
    whose output's cotangent is ``dy (B, *out, F)``: the full correlation of the stride-dilated
    ``dy`` with the adjoint kernel, read at the input's own positions (``lo + j l``)."""
    ndim = w.ndim - 2
    out = dy.shape[1:-1]
    pads = []
    for n, m, k, lo, s, d, step in _per_axis(spatial, out, w.shape[:ndim], g):
        before = d * (k - 1) - lo
        span = d * (k - 1) + 1
        pads.append((before, (n - 1) * step + span - (m - 1) * s - 1 - before))  # exactly n outputs
    # the forward's input dilation strides over dy's full correlation; its stride dilates dy
    kernel = adjoint_kernel(w, g.groups)
    return _conv(dy, kernel, g.lhs_dilation, pads, g.strides, g.rhs_dilation, feature_groups=g.groups)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def convolve(x: jax.Array, w: jax.Array, geometry: Geometry) -> jax.Array:
    """``jax.lax.conv_general_dilated`` of channels-last ``x (B, *spatial, C)`` by ``w (*window,
    C / G, F)`` (``NWC``/``NHWC`` dimension numbers): ``(B, *out, F)``, with the derivatives
    described in the module docstring."""
    return _plain(x, w, geometry)


def _tangent(geometry: Geometry, primals: tuple[Any, Any], tangents: tuple[Any, Any]):
    x, w = primals
    dx, dw = tangents
    y = _plain(x, w, geometry)
    cotangent = jax.ShapeDtypeStruct(y.shape, y.dtype)
    terms = []
    if not isinstance(dx, SymbolicZero):
        from_input = functools.partial(input_gradient, w, spatial=x.shape[1:-1], g=geometry)
        terms.append(jax.linear_transpose(from_input, cotangent)(dx)[0])
    if not isinstance(dw, SymbolicZero):
        from_kernel = functools.partial(kernel_gradient, x, window=w.shape[:-2], g=geometry)
        terms.append(jax.linear_transpose(from_kernel, cotangent)(dw)[0])
    return y, functools.reduce(jnp.add, terms)


convolve.defjvp(_tangent, symbolic_zeros=True)
