r"""Math on whole pytrees: the pieces every optimizer in :mod:`fdl.optim` shares.

A *tree* is any pytree of arrays (a parameter dict, its gradients, an optimizer's moments). Each
function maps over the leaves, so

.. math::

    m_t = \beta\, m_{t-1} + (1 - \beta)\, g_t^k, \qquad
    \hat m_t = \frac{m_t}{1 - \beta^t}, \qquad
    \lVert g\rVert_2 = \sqrt{\textstyle\sum_\ell \sum_i g_{\ell i}^2}

are each one call, whatever the shape of the model. The names follow ``optax.tree`` (its twins:
``update_moment``, ``bias_correction``, ``norm``, ``zeros_like``, ``full_like``, ``cast``,
``cast_like``), and the tests check each against its twin.

Differs from optax:
  fdl's versions keep the dtypes explicit, so they run under
  ``jax_numpy_dtype_promotion="strict"``: :func:`update_moment` computes each term in its own
  operand's dtype and adds them in the two promoted together, :func:`bias_correction` computes
  :math:`1 - \beta^t` in float32 before casting, and :func:`norm` adds the leaves' sums of
  squares in their promoted dtype.

>>> import jax.numpy as jnp
>>> import fdl
>>> g = {"w": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}
>>> float(fdl.tree.norm(g))
5.0
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes

__all__ = [
    "abs_sq",
    "float_dtype",
    "as_float",
    "floats",
    "update_moment",
    "bias_correction",
    "norm",
    "zeros_like",
    "full_like",
    "cast",
    "cast_like",
]

PyTree = Any


def abs_sq(x: jax.Array) -> jax.Array:
    r"""The squared magnitude :math:`|x|^2 = x \bar x`, elementwise: ``x * x`` for real ``x``
    and the real ``(x * conj(x)).real`` for complex ``x`` (whose plain square ``x * x`` is not
    a magnitude: :math:`j^2 = -1`). Every second moment and norm in fdl squares through it.

    >>> import jax.numpy as jnp
    >>> from fdl.tree import abs_sq
    >>> abs_sq(jnp.asarray([1j, 1 + 1j], jnp.complex64)).tolist()
    [1.0, 2.0]
    """
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        return (x * jnp.conj(x)).real
    return x * x


def update_moment(updates: PyTree, moments: PyTree, decay: Any, order: int) -> PyTree:
    r"""One step of the exponential moving average of the ``order``-th power of the updates.

    .. math:: m_t = (1 - \text{decay})\, g_t^{\text{order}} + \text{decay}\; m_{t-1}

    For ``order=2`` the power is the squared magnitude :math:`|g_t|^2` (:func:`abs_sq`), real
    for complex gradients.

    Each term is computed in the dtype JAX's standard promotion gives its coefficient and its
    operand, and the sum in the two promoted together (the rule written out, so it also runs
    under strict promotion): a Python-number ``decay`` is weakly typed and takes the operand's
    dtype (a bfloat16 moment fed float32 gradients decays in bfloat16 and accumulates in
    float32), while a strongly typed array (``inject_hyperparams(...,
    hyperparam_dtype=jnp.float32)``, a schedule's float32 value) lifts bfloat16 gradients to
    float32 before they are scaled, as in optax. The caller casts the result back to the
    state's dtype (:func:`cast_like`), so a float32 moment of bfloat16 gradients holds the
    float32 product.

    Args:
      updates: the gradients :math:`g_t` (a pytree).
      moments: the previous average :math:`m_{t-1}`, same structure.
      decay: :math:`\beta \in [0, 1)`, a number or a scalar array.
      order: the power :math:`k` (1 for the mean, 2 for the uncentered variance).

    Returns:
      The new average :math:`m_t`, same structure.

    >>> import jax.numpy as jnp
    >>> from fdl.tree import update_moment
    >>> update_moment(jnp.asarray([2.0]), jnp.asarray([1.0]), 0.5, 2).tolist()  # 0.5*4 + 0.5*1
    [2.5]

    Differs from optax:
      ``optax.tree.update_moment`` also skips ``None`` leaves; here a tree of arrays is
      expected. The values agree (tests/test_tree.py).
    """

    def one(g, m):
        g, m = as_float(g), as_float(m)
        power = g if order == 1 else abs_sq(g) if order == 2 else g**order
        keep = 1 - decay
        fresh_dtype, old_dtype = _dtypes.result_type(keep, power), _dtypes.result_type(decay, m)
        fresh = jnp.asarray(keep, fresh_dtype) * power.astype(fresh_dtype)
        old = jnp.asarray(decay, old_dtype) * m.astype(old_dtype)
        dtype = _dtypes.result_type(fresh, old)
        return fresh.astype(dtype) + old.astype(dtype)

    return jax.tree.map(one, updates, moments)


def bias_correction(moment: PyTree, decay: Any, count: jax.Array) -> PyTree:
    r"""Remove the bias of a zero-initialised moving average after ``count`` steps.

    .. math:: \hat m_t = \frac{m_t}{1 - \text{decay}^{\,t}}

    The factor :math:`1 - \text{decay}^t` is computed in float32 (float64 under x64) and only
    then cast to each moment's dtype: in bfloat16, :math:`0.999^t` rounds to 1 for small
    :math:`t` and the factor would be zero.

    Args:
      moment: the average :math:`m_t` (a pytree).
      decay: :math:`\beta`, a number or a scalar array.
      count: the step number :math:`t \ge 1` (int32 scalar).

    Returns:
      :math:`\hat m_t`, same structure and dtypes as ``moment``.

    >>> import jax.numpy as jnp
    >>> from fdl.tree import bias_correction
    >>> m_hat = bias_correction(jnp.asarray([0.1]), 0.9, jnp.asarray(1, jnp.int32))
    >>> [round(x, 6) for x in m_hat.tolist()]  # 0.1 / (1 - 0.9)
    [1.0]
    """
    if isinstance(decay, int | float):  # a Python number: JAX's default float type, as optax
        dtype = _dtypes.default_float()
    else:
        dtype = _dtypes.result_type(jnp.float32, decay)
    base = jnp.asarray(decay, dtype)
    factor = 1 - jax.lax.pow(base, jnp.asarray(count).astype(dtype))
    return jax.tree.map(lambda m: m / factor.astype(jnp.result_type(m)), moment)


def norm(tree: PyTree, *, squared: bool = False) -> jax.Array:
    r"""The Euclidean (global) norm of all leaves together.

    .. math:: \lVert g\rVert_2 = \sqrt{\textstyle\sum_\ell \sum_i g_{\ell i}^2}

    Each leaf's sum of squares is taken in its own dtype; the sums are added in order, in their
    promoted dtype. An empty tree has norm 0 (float32).

    Args:
      tree: a pytree of arrays.
      squared: return :math:`\lVert g\rVert_2^2` instead.

    Returns:
      A scalar.

    >>> import jax.numpy as jnp
    >>> from fdl.tree import norm
    >>> g = {"a": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}
    >>> float(norm(g)), float(norm(g, squared=True))
    (5.0, 25.0)

    Differs from optax:
      ``optax.tree.norm`` also takes ``ord`` (1 and infinity); only the 2-norm is needed here.
    """
    sums = [jnp.sum(abs_sq(g)) for g in jax.tree.leaves(tree)]
    if not sums:
        return jnp.zeros([], jnp.float32)
    total = sums[0]
    for s in sums[1:]:
        dtype = _dtypes.result_type(total, s)
        total = total.astype(dtype) + s.astype(dtype)
    return total if squared else jnp.sqrt(total)


def float_dtype(x: Any) -> jnp.dtype:
    """The dtype an optimizer computes ``x`` in: its own when inexact (float or complex), else
    JAX's default float. Integer, boolean and Python-number parameters take float updates and
    float optimizer state (an int32 state would truncate every step to 0).

    >>> import jax.numpy as jnp
    >>> from fdl.tree import float_dtype
    >>> float_dtype(jnp.ones(1, jnp.bfloat16)), float_dtype(3), float_dtype(jnp.ones(1, jnp.int32))
    (dtype(bfloat16), dtype('float32'), dtype('float32'))
    """
    dtype = jnp.result_type(x)
    return dtype if jnp.issubdtype(dtype, jnp.inexact) else _dtypes.default_float()


def as_float(x: Any) -> jax.Array:
    """``x`` as an array of :func:`float_dtype` (unchanged when already inexact)."""
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(float_dtype(x))


def floats(tree: PyTree) -> PyTree:
    """Every leaf of ``tree`` through :func:`as_float` (``None`` leaves stay ``None``): what
    each fdl transformation does to the updates it receives, so integer and Python-number
    gradients are transformed as floats. A float or complex leaf is returned as it is."""
    return jax.tree.map(lambda x: None if x is None else as_float(x), tree, is_leaf=lambda x: x is None)


def full_like(tree: PyTree, value: Any, dtype: Any = None) -> PyTree:
    r"""``value`` shaped like every leaf of ``tree``: :math:`x_{\ell i} = \text{value}`.

    Args:
      tree: a pytree of arrays (or scalars).
      value: the fill value.
      dtype: the dtype of every leaf (default: each leaf's :func:`float_dtype`, its own for
        float and complex leaves).

    Returns:
      A tree of the same structure and shapes.

    >>> import jax.numpy as jnp
    >>> from fdl.tree import full_like
    >>> full_like({"w": jnp.zeros(2, jnp.bfloat16)}, 0.5)
    {'w': Array([0.5, 0.5], dtype=bfloat16)}
    """
    return jax.tree.map(lambda p: jnp.full(jnp.shape(p), value, dtype or float_dtype(p)), tree)


def zeros_like(tree: PyTree, dtype: Any = None) -> PyTree:
    """Zeros shaped like every leaf of ``tree``, in ``dtype`` (default: each leaf's
    :func:`float_dtype`).

    >>> import jax.numpy as jnp
    >>> from fdl.tree import zeros_like
    >>> zeros_like({"w": jnp.ones(2)})["w"].tolist()
    [0.0, 0.0]
    """
    return full_like(tree, 0, dtype)


def cast(tree: PyTree, dtype: Any) -> PyTree:
    """Every leaf of ``tree`` cast to ``dtype``; ``dtype=None`` returns ``tree`` unchanged.

    >>> import jax.numpy as jnp
    >>> from fdl.tree import cast
    >>> cast({"w": jnp.ones(1)}, jnp.bfloat16)["w"].dtype
    dtype(bfloat16)
    """
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: jnp.asarray(x).astype(dtype), tree)


def cast_like(tree: PyTree, like: PyTree) -> PyTree:
    """Each leaf of ``tree`` cast to the :func:`float_dtype` of the matching leaf of ``like``
    (its dtype, for float and complex leaves).

    >>> import jax.numpy as jnp
    >>> from fdl.tree import cast_like
    >>> cast_like({"w": jnp.ones(1)}, {"w": jnp.zeros(1, jnp.bfloat16)})["w"].dtype
    dtype(bfloat16)
    """
    return jax.tree.map(lambda x, y: jnp.asarray(x).astype(float_dtype(y)), tree, like)
