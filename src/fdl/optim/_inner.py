r"""Inner products and axpy on whole trees, for the quasi-Newton and line-search modules (a
kernel module).

.. math::

    \langle x, y\rangle = \textstyle\sum_\ell \sum_i \bar x_{\ell i}\, y_{\ell i}, \qquad
    \text{axpy}(x, a, y) = x + a\, y

Each leaf's product is taken at the highest matmul precision, in the leaves' promoted dtype,
and the leaves' products are added in order (optax's ``tree.vdot`` adds them the same way, so
the two agree to the bit). Everything runs under strict dtype promotion: the operands are cast
to their promoted dtype explicitly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes

PyTree = Any


def _leaf_vdot(x: jax.Array, y: jax.Array) -> jax.Array:
    x, y = jnp.asarray(x), jnp.asarray(y)
    dtype = _dtypes.result_type(x, y)
    x, y = x.astype(dtype), y.astype(dtype)
    return jnp.vdot(x, y, precision=jax.lax.Precision.HIGHEST)  # conjugates x; (): raveled


def vdot(x: PyTree, y: PyTree) -> jax.Array:
    r""":math:`\langle x, y\rangle = \sum_\ell \sum_i \bar x_{\ell i} y_{\ell i}` (a scalar; the
    first tree is conjugated)."""
    products = [_leaf_vdot(a, b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True)]
    if not products:
        return jnp.zeros([], _dtypes.default_float())
    total = products[0]
    for p in products[1:]:
        dtype = _dtypes.result_type(total, p)
        total = total.astype(dtype) + p.astype(dtype)
    return total


def real_vdot(x: PyTree, y: PyTree) -> jax.Array:
    r""":math:`\operatorname{Re}\langle x, y\rangle`."""
    return jnp.real(vdot(x, y))


def axpy(x: PyTree, scalar: Any, y: PyTree) -> PyTree:
    r""":math:`x + a\, y` leaf by leaf (``a`` a scalar), computed in the promoted dtype of
    :math:`x`, :math:`a` and :math:`y`, returned in :math:`x`'s dtype."""

    def leaf(a: jax.Array, b: jax.Array) -> jax.Array:
        a, b = jnp.asarray(a), jnp.asarray(b)
        dtype = _dtypes.result_type(a, scalar, b)
        s = jnp.asarray(scalar).astype(dtype)
        return (a.astype(dtype) + s * b.astype(dtype)).astype(a.dtype)

    return jax.tree.map(leaf, x, y)


def scaled(scalar: Any, x: PyTree) -> PyTree:
    r""":math:`a\, x` leaf by leaf, computed in the promoted dtype, returned in each leaf's
    dtype."""

    def leaf(a: jax.Array) -> jax.Array:
        a = jnp.asarray(a)
        dtype = _dtypes.result_type(scalar, a)
        return (jnp.asarray(scalar).astype(dtype) * a.astype(dtype)).astype(a.dtype)

    return jax.tree.map(leaf, x)
