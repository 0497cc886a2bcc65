r"""Adafactor: an RMSprop whose second moment of a matrix is stored as a row and a column.

RMSprop keeps one running average :math:`V_{ij}` of :math:`g_{ij}^2` per weight: as much memory
as the model. For a matrix :math:`G \in \mathbb{R}^{n \times m}` Adafactor keeps only the running
averages of the row means :math:`R_i` and of the column means :math:`C_j` of :math:`G^2`
(:math:`n + m` numbers) and rebuilds the full moment as their rank-one product

.. math::

    \hat V_{ij} = \frac{R_i\, C_j}{\frac1n \sum_{k} R_k},

the best rank-one fit to :math:`V` in the generalized Kullback-Leibler sense (Shazeer and
Stern, 2018). Vectors, scalars and matrices with small axes keep the full :math:`V`. The decay of
the averages grows with the step, :math:`\hat\beta_t = 1 - t^{-0.8}`, so the first step uses
:math:`g^2` alone and no bias correction is needed. :func:`adafactor` adds the paper's update
clipping, the step relative to the parameters' scale, and optional momentum and weight decay.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    check_concrete_non_negative,
    check_decay,
    check_learning_rate,
    check_non_negative,
    check_positive_exponent,
    check_real,
    check_same_shapes,
    names_errors,
)
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale,
    scale_by_required_learning_rate,
)
from fdl.optim.clip_adaptive import clip_by_block_rms
from fdl.optim.momentum import ema
from fdl.optim.trust_ratio import scale_by_param_block_rms
from fdl.optim.weight_decay import Mask, add_decayed_weights
from fdl.tree import abs_sq, as_float, float_dtype, floats

__all__ = ["FactoredState", "scale_by_factored_rms", "adafactor"]

PyTree = Any
Scalar = float | jax.Array
DecayRateFn = Callable[[jax.Array, Any], jax.Array]
"""``decay_rate_fn(step, decay_rate) -> decay``: the decay of the second moment at a step."""


class FactoredState(NamedTuple):
    """The step count :math:`t` (int32) and, per parameter leaf, the row and column averages
    (factored leaves) or the full average (other leaves), as optax's ``FactoredState``.

    Each leaf has an entry in all three trees: where a tree is unused for a leaf (``v`` of a
    factored leaf, ``v_row`` and ``v_col`` of the others) it holds zeros of shape ``(1,)``, in
    the parameter's dtype, as optax stores them.
    """

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    v_row: PyTree
    v_col: PyTree
    v: PyTree


def _decay_rate_pow(step: jax.Array, exponent: Any) -> jax.Array:
    r"""Adafactor's decay schedule, :math:`\hat\beta = 1 - (\text{step} + 1)^{-\text{exponent}}`
    (0 at step 0), in float32."""
    t = jnp.asarray(step + 1).astype(jnp.float32)
    if isinstance(exponent, int | float):  # a Python number stays weak: float32
        return 1.0 - t ** (-exponent)
    dtype = _dtypes.result_type(t, exponent)
    return 1.0 - t.astype(dtype) ** (-jnp.asarray(exponent, dtype))


def _factored_axes(shape: tuple[int, ...], factored: bool, min_size: float) -> tuple[int, int] | None:
    """``(second, largest)``: the two longest axes of ``shape`` (the later one wins a tie), or
    ``None`` when the leaf is not factored (``factored=False``, fewer than two axes, or the
    second longest shorter than ``min_size``)."""
    if not factored or len(shape) < 2:
        return None
    by_size = sorted(range(len(shape)), key=lambda axis: shape[axis])  # stable: ties keep order
    second, largest = by_size[-2], by_size[-1]
    if shape[second] < min_size:
        return None
    return second, largest


def _moving_average(decay: Any, old: jax.Array, fresh: jax.Array) -> jax.Array:
    r""":math:`\hat\beta\, v + (1 - \hat\beta)\, x` in the dtype of the three promoted together
    (:math:`1 - \hat\beta` taken in the decay's own dtype, as optax does)."""
    keep, take = decay, 1.0 - decay
    dtype = _dtypes.result_type(keep, old, fresh)
    return jnp.asarray(keep, dtype) * old.astype(dtype) + jnp.asarray(take, dtype) * fresh.astype(dtype)


def _times(g: jax.Array, *factors: jax.Array) -> jax.Array:
    """``g * factors[0] * factors[1] ...`` in the promoted dtype, back in ``g``'s dtype."""
    dtype = _dtypes.result_type(g, *factors)
    out = g.astype(dtype)
    for factor in factors:
        out = out * factor.astype(dtype)
    return out.astype(g.dtype)


@names_errors("scale_by_factored_rms")
def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: Scalar = 0.8,
    step_offset: Scalar = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: Scalar = 1e-30,
    decay_rate_fn: DecayRateFn = _decay_rate_pow,
) -> GradientTransformation:
    r"""Divide the gradient by a root mean square whose matrices are factored (Adafactor's core).

    With :math:`t = 0, 1, \ldots` the step count before the update and the decay

    .. math:: \hat\beta_t = \text{decay\_rate\_fn}(t - \text{step\_offset},\ \text{decay\_rate}),
        \qquad \text{by default } 1 - (t - \text{step\_offset} + 1)^{-\text{decay\_rate}},

    each leaf :math:`g` with squares :math:`s = |g|^2 + \text{epsilon}` is rescaled as follows.
    If its two longest axes :math:`a` (the longest) and :math:`b` (the next) both have at least
    ``min_dim_size_to_factor`` entries (and ``factored``),

    .. math::

        r_t &= \hat\beta_t\, r_{t-1} + (1 - \hat\beta_t) \operatorname{mean}_a s, \qquad
        c_t = \hat\beta_t\, c_{t-1} + (1 - \hat\beta_t) \operatorname{mean}_b s \\
        u_t &= g\; \Big(\frac{r_t}{\operatorname{mean}_b r_t}\Big)^{-1/2} c_t^{-1/2}

    (:math:`r` lacks axis :math:`a`, :math:`c` lacks axis :math:`b`; for a matrix of shape
    ``(n, m)``, ``n <= m``, :math:`r` has the ``n`` row means and :math:`c` the ``m`` column
    means, and :math:`r_i c_j / \operatorname{mean} r` estimates :math:`V_{ij}`). Otherwise

    .. math:: v_t = \hat\beta_t\, v_{t-1} + (1 - \hat\beta_t)\, s, \qquad u_t = g\, v_t^{-1/2}.

    All averages start at 0; with the default schedule :math:`\hat\beta_0 = 0`, so the first
    step overwrites them.

    Args:
      factored: factor the second moment of leaves with two long axes.
      decay_rate: the exponent of the default schedule, ``>= 0`` (any real number when
        ``decay_rate_fn`` is given: it is passed to it).
      step_offset: subtracted from the step count before the schedule (for fine-tuning from a
        restored count).
      min_dim_size_to_factor: factor a leaf only if its two longest axes have at least this
        many entries, ``>= 0`` and concrete (it decides the state's shapes).
      epsilon: added to the squared gradients, ``>= 0``.
      decay_rate_fn: ``(step, decay_rate) -> decay``, the schedule of :math:`\hat\beta_t`.

    Returns:
      A transformation with state :class:`FactoredState` ``(count, v_row, v_col, v)``; its
      ``update`` needs ``params`` (their shapes choose which leaves are factored, their dtypes
      are the state's).

    Raises:
      TypeError: a ``decay_rate_fn`` that is not callable.
      ValueError: a negative ``epsilon``, a negative ``decay_rate`` with the default schedule,
        a negative or traced ``min_dim_size_to_factor``; in ``update``, ``params=None`` or
        updates whose shapes are not the parameters'.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_factored_rms(min_dim_size_to_factor=2)
    >>> params = jnp.zeros((2, 3))
    >>> state = opt.init(params)
    >>> state.v_row.shape, state.v_col.shape, state.v.shape  # rows (2,), columns (3,), dummy
    ((2,), (3,), (1,))
    >>> u, state = opt.update(jnp.ones((2, 3)), state, params)  # r = 1, c = 1: u = g
    >>> u.tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]

    References:
      Shazeer and Stern, *Adafactor: Adaptive Learning Rates with Sublinear Memory Cost*,
      ICML 2018.

      Zhai et al., *Scaling Vision Transformers*, CVPR 2022 (a capped decay schedule).

    Differs from optax:
      The updates keep the gradients' dtype (optax's take the promoted dtype of gradients and
      parameters), and integer parameters get float state. Ties between equally long axes go
      to the later axis, as optax's ``np.argsort`` does for any realistic number of axes.
    """
    check_real("decay_rate", decay_rate)
    if decay_rate_fn is _decay_rate_pow:
        check_non_negative("decay_rate", decay_rate)
    check_real("step_offset", step_offset)
    min_size = check_concrete_non_negative(
        "min_dim_size_to_factor", min_dim_size_to_factor, "the axis length from which a leaf is factored"
    )
    check_non_negative("epsilon", epsilon)
    if not callable(decay_rate_fn):
        raise TypeError(
            f"`decay_rate_fn` must be callable as decay_rate_fn(step, decay_rate), got {decay_rate_fn!r}"
        )

    def init_leaf(param: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        shape, dtype = jnp.shape(param), float_dtype(param)
        # a fresh buffer per use: a state holding one array twice cannot be donated to a jit
        dummy = lambda: jnp.zeros((1,), dtype)
        axes = _factored_axes(shape, factored, min_size)
        if axes is None:
            return dummy(), dummy(), jnp.zeros(shape, dtype)
        second, largest = axes
        without = lambda axis: tuple(n for i, n in enumerate(shape) if i != axis)
        return jnp.zeros(without(largest), dtype), jnp.zeros(without(second), dtype), dummy()

    def init(params: PyTree) -> FactoredState:
        triples = [init_leaf(p) for p in jax.tree.leaves(params)]
        treedef = jax.tree.structure(params)
        v_row, v_col, v = (jax.tree.unflatten(treedef, [t[k] for t in triples]) for k in range(3))
        return FactoredState(count=jnp.zeros([], jnp.int32), v_row=v_row, v_col=v_col, v=v)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "scale_by_factored_rms: `params` is None; their shapes decide which leaves are "
                "factored, so pass them: update(updates, state, params)"
            )
        updates = floats(updates)  # integer / Python-number updates as floats
        check_same_shapes("scale_by_factored_rms", "`updates`", updates, "`params`", params)
        offset_dtype = _dtypes.result_type(state.count, step_offset)
        step = state.count.astype(offset_dtype) - jnp.asarray(step_offset, offset_dtype)
        decay = decay_rate_fn(step, decay_rate)

        def one(g, v_row, v_col, v, param):
            shape, dtype = jnp.shape(param), float_dtype(param)
            g = as_float(g)
            squares = abs_sq(g)
            eps_dtype = _dtypes.result_type(squares, epsilon)
            squares = squares.astype(eps_dtype) + jnp.asarray(epsilon, eps_dtype)
            dummy = jnp.zeros((1,), dtype)
            axes = _factored_axes(shape, factored, min_size)
            if axes is None:
                new_v = _moving_average(decay, v, squares).astype(dtype)
                return _times(g, new_v**-0.5), dummy, dummy, new_v
            second, largest = axes
            new_row = _moving_average(decay, v_row, jnp.mean(squares, axis=largest)).astype(dtype)
            new_col = _moving_average(decay, v_col, jnp.mean(squares, axis=second)).astype(dtype)
            second_in_row = second - 1 if second > largest else second  # axis b of r (a removed)
            row_scale = (new_row / jnp.mean(new_row, axis=second_in_row, keepdims=True)) ** -0.5
            col_scale = new_col**-0.5
            row_scale = jnp.expand_dims(row_scale, largest)  # back to g's rank, 1 along a
            col_scale = jnp.expand_dims(col_scale, second)  # 1 along b
            return _times(g, row_scale, col_scale), new_row, new_col, dummy

        leaves, treedef = jax.tree.flatten(updates)
        columns = [jax.tree.leaves(tree) for tree in (state.v_row, state.v_col, state.v, params)]
        outputs = [one(g, *rest) for g, *rest in zip(leaves, *columns, strict=True)]
        new_updates, v_row, v_col, v = (
            jax.tree.unflatten(treedef, [out[k] for out in outputs]) for k in range(4)
        )
        return new_updates, FactoredState(safe_increment(state.count), v_row, v_col, v)

    return GradientTransformation(init, update)


@names_errors("adafactor")
def adafactor(
    learning_rate: ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: Scalar = 0.8,
    decay_offset: Scalar = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: Scalar | None = 1.0,
    momentum: Scalar | None = None,
    dtype_momentum: Any | None = jnp.float32,
    weight_decay_rate: ScalarOrSchedule | None = None,
    eps: Scalar = 1e-30,
    factored: bool = True,
    weight_decay_mask: Mask | None = None,
) -> GradientTransformation:
    r"""Adafactor: the factored second moment, clipped, relative to the parameters' scale.

    .. math::

        x_t &= \text{scale\_by\_factored\_rms}(g_t) \\
        y_t &= x_t \,/\, \max\big(1,\ \operatorname{rms}(x_t) / \text{clipping\_threshold}\big)
            \qquad \text{per leaf} \\
        z_t &= \eta_t\; \max(\operatorname{rms}(\theta_t), 10^{-3})\; y_t \qquad
            \text{per leaf} \\
        m_t &= \text{momentum}\; m_{t-1} + (1 - \text{momentum})\, z_t \qquad
            (m_t = z_t \text{ without momentum}) \\
        \theta_{t+1} &= \theta_t - \big(m_t + \lambda_t\, \theta_t\big)

    with :math:`x_t` from :func:`scale_by_factored_rms`,
    :math:`\operatorname{rms}(x) = \sqrt{\operatorname{mean}_i |x_i|^2}` over one leaf,
    :math:`\eta` the ``learning_rate`` and :math:`\lambda` the ``weight_decay_rate``. Each
    optional stage is left out of the chain when disabled (``clipping_threshold=None``,
    ``learning_rate=None``, ``multiply_by_parameter_scale=False``, ``momentum=None``,
    ``weight_decay_rate=None``), as optax builds it: ``chain(scale_by_factored_rms(factored,
    decay_rate, decay_offset, min_dim_size_to_factor, eps), clip, scale_by_learning_rate(lr,
    flip_sign=False), scale_by_param_block_rms(), ema(momentum, debias=False,
    accumulator_dtype=dtype_momentum), add_decayed_weights(weight_decay_rate,
    weight_decay_mask), scale(-1))``.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule; ``None``: no scaling (with
        ``multiply_by_parameter_scale`` the step is then relative to the parameters).
      min_dim_size_to_factor: factor a leaf only if its two longest axes have at least this
        many entries (concrete, ``>= 0``).
      decay_rate: the exponent of the decay schedule :math:`1 - t^{-\text{decay\_rate}}`,
        ``>= 0``.
      decay_offset: subtracted from the step count in the schedule (fine-tuning).
      multiply_by_parameter_scale: multiply each leaf's step by its parameters' root mean
        square (at least 1e-3).
      clipping_threshold: the largest root mean square of a leaf's step before the learning
        rate, ``> 0``, or ``None`` for no clipping (the paper uses 1).
      momentum: the decay of a moving average of the steps (not bias-corrected), in ``[0, 1)``, or
        ``None`` for none.
      dtype_momentum: the dtype of the momentum's average (``None``: the parameters').
      weight_decay_rate: :math:`\lambda \ge 0`, a number or a schedule, or ``None``.
      eps: added to the squared gradients, ``>= 0``.
      factored: factor the second moment of matrices.
      weight_decay_mask: which leaves are decayed (a tree of bools or a function of the
        parameters returning one); ``None``: all.

    Returns:
      The optimizer (its ``update`` needs ``params``); its state is the tuple of the chain's
      states, :class:`FactoredState` first.

    Raises:
      TypeError: a non-numeric hyperparameter.
      ValueError: a negative ``learning_rate``, ``decay_rate``, ``eps``, ``weight_decay_rate``
        or ``min_dim_size_to_factor``, a traced ``min_dim_size_to_factor``, a
        ``clipping_threshold <= 0``, a ``momentum`` outside ``[0, 1)``.

    >>> import jax.numpy as jnp
    >>> opt = adafactor(learning_rate=0.1)
    >>> params = jnp.asarray([3.0, 4.0])  # rms 3.536
    >>> u, _ = opt.update(jnp.asarray([1.0, -1.0]), opt.init(params), params)
    >>> [round(x, 4) for x in u.tolist()]  # -0.1 * 3.536 * g / |g|
    [-0.3536, 0.3536]

    References:
      Shazeer and Stern, *Adafactor: Adaptive Learning Rates with Sublinear Memory Cost*,
      ICML 2018.

    Differs from optax:
      The updates keep the gradients' dtype; ``dtype_momentum=None`` is accepted (the
      parameters' dtype).
    """
    if learning_rate is not None:
        check_learning_rate("learning_rate", learning_rate)
    check_non_negative("decay_rate", decay_rate)
    check_real("decay_offset", decay_offset)
    if clipping_threshold is not None:
        check_positive_exponent(
            "clipping_threshold", clipping_threshold, "the largest root mean square of a step"
        )
    if momentum is not None:
        check_decay("momentum", momentum)
    if weight_decay_rate is not None:
        check_learning_rate("weight_decay_rate", weight_decay_rate)
    check_non_negative("eps", eps)
    parts = [
        scale_by_factored_rms(
            factored=factored,
            decay_rate=decay_rate,
            step_offset=decay_offset,
            min_dim_size_to_factor=min_dim_size_to_factor,
            epsilon=eps,
        )
    ]
    if clipping_threshold is not None:
        parts.append(clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:
        parts.append(scale_by_required_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        parts.append(scale_by_param_block_rms())
    if momentum is not None:
        parts.append(ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        parts.append(add_decayed_weights(weight_decay_rate, mask=weight_decay_mask))
    parts.append(scale(-1))
    return chain(*parts)
