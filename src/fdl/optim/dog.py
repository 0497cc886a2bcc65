r"""DoG, "distance over gradients": a step size set by how far the parameters have travelled.

SGD's best constant step size depends on the distance :math:`\|\theta_0 - \theta^\star\|` to
the solution and on the size of the gradients, neither known in advance. DoG estimates both as
it goes, per parameter array (layer-wise, "LDoG"): the largest distance travelled from the
start so far over the root of the sum of the squared gradients so far,

.. math::

    \eta_t = \frac{\max_{s \le t} \|\theta_s - \theta_0\|}{\sqrt{\sum_{s \le t} \|g_s\|^2}}

so there is no learning rate to tune, only a small initial distance to start from (Ivgi et
al., 2023).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import as_concrete_number, check_non_negative, check_real, check_update_shapes, names_errors
from fdl.optim.base import GradientTransformation
from fdl.tree import abs_sq, as_float, cast, float_dtype, floats

__all__ = ["ScaleByDistanceOverGradientsState", "scale_by_distance_over_gradients"]

PyTree = Any
Scalar = float | jax.Array


class ScaleByDistanceOverGradientsState(NamedTuple):
    """Per parameter array: the largest distance from the start so far (a scalar), the sum of
    the squared gradients so far (shape ``(1,)``, as optax's), and the starting parameters."""

    max_dist: PyTree
    grad_sum_of_squares: PyTree
    init_params: PyTree


def _distance(x: jax.Array, y: Any = 0.0) -> jax.Array:
    r"""The Euclidean norm :math:`\|x - y\|` over all elements of one array."""
    return jnp.sqrt(jnp.sum(abs_sq(x - y)))


@names_errors("scale_by_distance_over_gradients")
def scale_by_distance_over_gradients(
    reps_rel: Scalar = 1e-6,
    eps: Scalar = 1e-8,
    param_dtype: Any | None = jnp.float32,
    global_scale: Scalar = 1.0,
) -> GradientTransformation:
    r"""Scale each parameter array's gradient by DoG's step size (layer-wise DoG).

    For each parameter array :math:`\theta` (a leaf) with gradient :math:`g`:

    .. math::

        r_0 &= \text{reps\_rel}\; (1 + \|\theta_0\|) \\
        r_t &= \max\big(r_{t-1},\ \|\theta_t - \theta_0\|\big), \qquad
        G_t = G_{t-1} + \|g_t\|^2, \quad G_0 = 0 \\
        u_t &= \text{global\_scale}\; \frac{r_t}{\sqrt{G_t + \text{eps}}}\; g_t

    with :math:`\|\cdot\|` the Euclidean norm over all the array's elements and
    :math:`\theta_t` the parameters passed to ``update``. The initial distance :math:`r_0`
    keeps the first steps from being zero. The output has the gradient's sign: chain a
    negative scale (or use ``global_scale=-1``) to descend.

    The state stores one copy of the parameters (:math:`\theta_0`, in ``param_dtype``) and two
    scalars per array. The authors recommend averaging the iterates (see
    :mod:`fdl.optim.averaging`).

    Args:
      reps_rel: the initial distance relative to :math:`1 + \|\theta_0\|`, ``> 0`` (the
        authors recommend 1e-4 for models with batch normalization, 1e-6 otherwise).
      eps: added to the sum of squares under the root, ``>= 0``.
      param_dtype: the dtype :math:`\theta_0` is stored in (float32 by default); ``None``
        keeps the parameters' own dtypes.
      global_scale: a factor on every update, any real number (typically 1 or -1).

    Returns:
      A transformation with state :class:`ScaleByDistanceOverGradientsState`
      ``(max_dist, grad_sum_of_squares, init_params)``, whose ``update`` needs ``params``.

    Raises:
      TypeError: a hyperparameter that is not a real number.
      ValueError: ``reps_rel <= 0`` or a negative ``eps``; at ``update``, no ``params``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_distance_over_gradients(reps_rel=0.5, eps=0.0)
    >>> params = jnp.asarray([3.0, 4.0])  # r = 0.5 * (1 + 5) = 3
    >>> u, state = opt.update(jnp.asarray([0.0, 2.0]), opt.init(params), params)
    >>> u.tolist()  # 3 / sqrt(4) * g
    [0.0, 3.0]

    References:
      Ivgi, Hinder and Carmon, *DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size
      Schedule*, ICML 2023.

    Differs from optax:
      The updates keep each gradient's dtype and shape. optax multiplies the gradient by a
      step size of shape ``(1,)``: a scalar parameter's update comes out with shape ``(1,)``,
      a matrix's needs NumPy's rank promotion, and bfloat16 gradients give float32 updates.
      ``max_dist`` keeps one dtype across steps (that of :math:`\theta - \theta_0`: float32
      by default), where optax's starts in the parameters' dtype and may change after the
      first step. With float32 parameters and gradients, and no scalar parameter, the two agree
      bit for bit.
    """
    check_real("reps_rel", reps_rel)
    number = as_concrete_number(reps_rel)
    if number is not None and not number > 0:
        raise ValueError(
            f"`reps_rel` must be > 0 (a zero initial distance makes every step zero), got {reps_rel!r}"
        )
    check_non_negative("eps", eps)
    check_real("global_scale", global_scale)
    param_dtype = _dtypes.canonical(param_dtype)

    def distance_dtype(p: Any) -> jnp.dtype:
        """The real dtype of :math:`\\|\\theta - \\theta_0\\|`."""
        stored = float_dtype(p) if param_dtype is None else param_dtype
        dtype = _dtypes.promote_types(float_dtype(p), stored)
        return jnp.finfo(dtype).dtype  # the real part's dtype for a complex one

    def init(params: PyTree) -> ScaleByDistanceOverGradientsState:
        def initial_distance(p):
            dtype = distance_dtype(p)
            return (jnp.asarray(reps_rel, dtype) * (1 + _distance(as_float(p).astype(dtype)))).astype(dtype)

        return ScaleByDistanceOverGradientsState(
            max_dist=jax.tree.map(initial_distance, params),
            grad_sum_of_squares=jax.tree.map(lambda p: jnp.zeros(1, _dtypes.default_float()), params),
            init_params=cast(floats(params), param_dtype),
        )

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError(
                "scale_by_distance_over_gradients needs the parameters: call "
                "`update(updates, state, params)` (the step size is the distance they travelled)"
            )
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes(
            "scale_by_distance_over_gradients", updates, params, "init_params", state.init_params
        )
        del extra_args

        def distance(d, p, p0):
            dtype = _dtypes.result_type(as_float(p), p0)
            return jnp.maximum(d, _distance(as_float(p).astype(dtype), p0.astype(dtype)).astype(d.dtype))

        max_dist = jax.tree.map(distance, state.max_dist, params, state.init_params)

        def sum_of_squares(total, g):
            return total + jnp.sum(abs_sq(g)).astype(total.dtype)

        g_sos = jax.tree.map(sum_of_squares, state.grad_sum_of_squares, updates)

        def step(g, d, total):
            dtype = _dtypes.result_type(d, total)
            ratio = d.astype(dtype) / jnp.sqrt(total[0].astype(dtype) + jnp.asarray(eps, dtype))
            eta = jnp.asarray(global_scale, dtype) * ratio
            dtype = _dtypes.result_type(eta, g)
            return (eta.astype(dtype) * g.astype(dtype)).astype(g.dtype)

        new_updates = jax.tree.map(step, updates, max_dist, g_sos)
        return new_updates, ScaleByDistanceOverGradientsState(max_dist, g_sos, state.init_params)

    return GradientTransformation(init, update)
