r"""The LSTM over a whole sequence, written so that reverse mode takes the weight gradients in
one matmul over all steps (what cuDNN does) instead of accumulating them step by step.

Reverse-mode autodiff of a ``lax.scan`` over the cell accumulates the weight gradients inside the
backward loop: at every step :math:`\partial W_h \mathrel{+}= h_{t-1}^\top \delta z_t` and
:math:`\partial W_x \mathrel{+}= x_t^\top \delta z_t`, two matmuls whose inner dimension is only
the batch size, plus a read and a write of the ``(H, 4H)`` accumulator. Here the LSTM has its own
JVP (``jax.custom_jvp``). Its tangent splits the pre-activations' tangent
:math:`\dot z_t = u_t + \dot h_{t-1} W_h` into the part that does not go through the recurrence,

.. math::

    u_t = \dot x_t W_x + x_t \dot W_x + h_{t-1} \dot W_h + \dot b ,

computed for all steps at once (batched matmuls over ``(T, *batch)``), and a scan over the
recurrence alone, which is linear in :math:`u` and the carry's tangents:

.. math::

    \dot c_t = \dot z_{t,i}\, i(1-i)\, g + \dot z_{t,f}\, f(1-f)\, c_{t-1}
        + \dot z_{t,g}\, (1-g^2)\, i + f\, \dot c_{t-1}, \qquad
    \dot h_t = \dot z_{t,o}\, o(1-o) \tanh c_t + o\,(1-\tanh^2 c_t)\, \dot c_t ,

with the gates :math:`i, f, o = \sigma(\cdot)`, :math:`g = \tanh(\cdot)` and their coefficients
saved by the primal scan. JAX transposes this for reverse mode: the transposed scan carries only
:math:`\delta h, \delta c` and stacks :math:`\delta u_t` (one ``(*batch, H) @ (H, 4H)`` matmul per
step), and the transposes of the batched matmuls give :math:`\partial W_h = \sum_t h_{t-1}^\top
\delta u_t` and :math:`\partial W_x` as one matmul each. Forward mode (``jax.jvp``, ``jacfwd``,
``hessian``) works as for any JAX function. Under a mask a padded step keeps the carry and
outputs 0, and its tangents do the same. The numbers equal those of autodiff through the plain
scan up to the order of the sums (tested, with masks, reversed, and to second order).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

Array = jax.Array


def _keep(keep_t: Array) -> Array:
    return keep_t[..., None]  # (*batch, 1)


def _forward(reverse: bool, save: bool, w_x, w_h, b, xs, h0, c0, keep):
    """Scan the cell: the outputs ``ys (T, *batch, H)``, the final ``(h, c)`` and, if ``save``,
    what the tangent recurrence reads at every step (see :func:`_tangents`)."""

    def body(carry, inputs):
        h, c = carry  # (*batch, H) each
        x_t, keep_t = inputs
        z = jnp.matmul(x_t, w_x) + jnp.matmul(h, w_h)  # (*batch, 4H)
        z = z + jnp.broadcast_to(b, z.shape)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c_new = f * c + i * g
        tanh_c = jnp.tanh(c_new)
        h_new = o * tanh_c
        y = h_new
        if keep_t is not None:  # a padded step keeps the carry and outputs 0
            k = _keep(keep_t)
            y = jnp.where(k, h_new, jnp.zeros_like(h_new))
            h_new, c_new = jnp.where(k, h_new, h), jnp.where(k, c_new, c)
        saved = None
        if save:  # the tangent step's coefficients: dc_t = sum(dz_t * coef_t[:3H]) + f dc_{t-1}, ...
            coef = [i * (1 - i) * g, f * (1 - f) * c, (1 - g * g) * i, o * (1 - o) * tanh_c]
            saved = (h, jnp.concatenate(coef, axis=-1), f, o * (1 - tanh_c * tanh_c))
        return (h_new, c_new), (y, saved)

    (h, c), (ys, saved) = jax.lax.scan(body, (h0, c0), (xs, keep), reverse=reverse)
    return ys, (h, c), saved


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _lstm(reverse: bool, w_x, w_h, b, xs, h0, c0, keep):
    ys, carry, _ = _forward(reverse, False, w_x, w_h, b, xs, h0, c0, keep)
    return ys, carry


def _is_zero(tangent: Any) -> bool:
    return isinstance(tangent, SymbolicZero)


def _tangents(reverse: bool, primals, tangents):
    """The JVP: the primal scan, then the tangent's inputs for all steps at once, then a scan
    over the tangent recurrence alone (linear in the tangents, so reverse mode transposes it)."""
    w_x, w_h, _, xs, h0, c0, keep = primals
    dw_x, dw_h, db, dxs, dh0, dc0, _ = tangents
    ys, final, (h_prev, coef, forget, dtanh) = _forward(reverse, True, *primals)
    terms = []  # dz_t minus its recurrent term, for all steps at once: (T, *batch, 4H)
    if not _is_zero(dxs):
        terms.append(jnp.matmul(dxs, w_x))
    if not _is_zero(dw_x):
        terms.append(jnp.matmul(xs, dw_x))
    if not _is_zero(dw_h):
        terms.append(jnp.matmul(h_prev, dw_h))
    if not _is_zero(db):
        terms.append(jnp.broadcast_to(db, coef.shape))
    u = functools.reduce(jnp.add, terms) if terms else jnp.zeros(coef.shape, coef.dtype)
    dh0 = jnp.zeros_like(h0) if _is_zero(dh0) else dh0
    dc0 = jnp.zeros_like(c0) if _is_zero(dc0) else dc0

    def body(carry, inputs):
        dh, dc = carry  # the tangents of h_{t-1}, c_{t-1}
        u_t, coef_t, f, dtanh_t, keep_t = inputs
        di, df, dg, do = jnp.split((u_t + jnp.matmul(dh, w_h)) * coef_t, 4, axis=-1)
        dc_new = di + df + dg + f * dc
        dh_new = do + dtanh_t * dc_new
        dy = dh_new
        if keep_t is not None:
            k = _keep(keep_t)
            dy = jnp.where(k, dh_new, jnp.zeros_like(dh_new))
            dh_new, dc_new = jnp.where(k, dh_new, dh), jnp.where(k, dc_new, dc)
        return (dh_new, dc_new), dy

    d_final, d_ys = jax.lax.scan(body, (dh0, dc0), (u, coef, forget, dtanh, keep), reverse=reverse)
    return (ys, final), (d_ys, d_final)


_lstm.defjvp(_tangents, symbolic_zeros=True)


def lstm_scan(params: dict, carry: Any, xs: Array, keep: Array | None, *, reverse: bool):
    """The LSTM over ``xs (T, *batch, F)`` from ``carry = (h, c)``, with ``params`` and every
    input already in the compute dtype: ``((h_T, c_T), ys (T, *batch, H))``."""
    h0, c0 = carry
    ys, final = _lstm(reverse, params["w_x"], params["w_h"], params["b"], xs, h0, c0, keep)
    return final, ys
