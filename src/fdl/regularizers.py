r"""Weight penalties: L2 (ridge, weight decay) and L1 (lasso).

A regularizer adds a term to the training loss that prefers small weights:

.. math::

    \mathcal{L}_{\text{total}}(\theta) = \mathcal{L}_{\text{data}}(\theta) + \lambda\, R(\theta).

**L2.** :math:`R_2(\theta) = \tfrac12 \sum_i \theta_i^2` has gradient :math:`\theta`, so one step
of gradient descent with learning rate :math:`\eta` becomes

.. math::

    \theta \leftarrow \theta - \eta\,\nabla\mathcal{L}_{\text{data}} - \eta\lambda\,\theta
    = (1 - \eta\lambda)\,\theta - \eta\,\nabla\mathcal{L}_{\text{data}}:

the weights shrink by a constant factor each step, hence the name *weight decay* (Krogh & Hertz,
1992). For a quadratic loss it is equivalent to a Gaussian prior
:math:`\theta \sim \mathcal{N}(0, 1/\lambda)` (MAP estimation), and it shrinks the weights most
along directions of low curvature, where the data say least (Goodfellow et al., 2016, §7.1.1).

**L1.** :math:`R_1(\theta) = \sum_i |\theta_i|` has (sub)gradient
:math:`\operatorname{sign}(\theta)`: a constant pull towards zero whatever the size of the weight,
which drives small weights to exactly zero and so selects features (Tibshirani, 1996). It
corresponds to a Laplace prior.

**Which leaves.** Biases and normalization offsets are usually not penalized: they do not multiply
inputs, so shrinking them does not reduce the model's sensitivity to its inputs, and a large bias is
often needed. Both penalties take ``mask``, in optax's convention: ``None`` (every leaf), a pytree
of Python bools with the structure of ``params`` (``True`` = penalize), or a function
``params -> mask``. :func:`skip_biases` is the common mask: every leaf except those named ``"b"``.

Penalties are accumulated and returned in float32 whatever the parameter dtype, since squaring and
summing many bfloat16 values in bfloat16 loses most of the digits of the total.

References:
* Krogh & Hertz (1992). A simple weight decay can improve generalization. NeurIPS.
* Tibshirani (1996). Regression shrinkage and selection via the lasso. JRSS B 58(1).
* Goodfellow, Bengio & Courville (2016). *Deep Learning*, chapter 7.
* Loshchilov & Hutter (2019). Decoupled weight decay regularization. ICLR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fdl._paths import path_label

__all__ = ["Mask", "l2_penalty", "l1_penalty", "skip_biases"]

PyTree = Any
Mask = PyTree | Callable[[PyTree], PyTree] | None
"""``None``, a pytree of bools shaped like the params, or a function ``params -> that pytree``."""


def _describe(tree: PyTree) -> str:
    """The leaf paths of ``tree``, one per line, followed by its tree structure."""
    paths = [path_label(path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)]
    listing = "\n".join(f"    {p}" for p in paths) or "    (no leaves)"
    return f"{listing}\n  structure: {jax.tree_util.tree_structure(tree)}"


def _selected_leaves(params: PyTree, mask: Mask) -> list[jax.Array]:
    """Return, as arrays, every leaf of ``params`` that ``mask`` selects."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    if mask is None:
        flags = [True] * len(leaves)
    else:
        if callable(mask):
            mask = mask(params)
        # jax's PyTreeDef alias is untyped
        if jax.tree_util.tree_structure(mask) != jax.tree_util.tree_structure(params):  # type: ignore[operator]
            raise ValueError(
                "`mask` must have the same tree structure as `params`, with one bool per leaf "
                "(True = penalize).\n"
                f"  params leaves:\n{_describe(params)}\n"
                f"  mask leaves:\n{_describe(mask)}"
            )
        flags = []
        for (path, _), flag in zip(leaves, jax.tree_util.tree_leaves(mask), strict=True):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"`mask` leaves must be Python bools, got {flag!r} at {path_label(path)}")
            flags.append(bool(flag))
    selected = []
    for (path, leaf), flag in zip(leaves, flags, strict=True):
        if not flag:
            continue
        leaf = jnp.asarray(leaf)
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise ValueError(
                f"penalties apply to floating-point parameters, but the leaf at "
                f"{path_label(path)} has dtype {leaf.dtype.name}; "
                "exclude it with `mask`"
            )
        selected.append(leaf)
    return selected


# The sums are jitted over the list of selected leaves: one compilation per parameter tree instead
# of one per operation and leaf shape when called eagerly; inside a caller's jit they are inlined.


@jax.jit
def _half_sum_of_squares(leaves: list[jax.Array]) -> jax.Array:
    total = jnp.zeros((), jnp.float32)
    for leaf in leaves:
        total = total + jnp.sum(jnp.square(leaf.astype(jnp.float32)))
    return 0.5 * total


@jax.jit
def _sum_of_absolute_values(leaves: list[jax.Array]) -> jax.Array:
    total = jnp.zeros((), jnp.float32)
    for leaf in leaves:
        w = leaf.astype(jnp.float32)
        # w * sign(w) equals |w| exactly; as sign has derivative 0, its gradient is sign(w),
        # which is 0 at w = 0 (the gradient of jnp.abs is 1 there).
        total = total + jnp.sum(w * jnp.sign(w))
    return total


def l2_penalty(params: PyTree, mask: Mask = None) -> jax.Array:
    r"""Half the sum of squares of the selected parameters.

    .. math::

        R_2(\theta) = \frac12 \sum_{\ell \in \text{mask}} \sum_i \theta_{\ell, i}^2, \qquad
        \frac{\partial R_2}{\partial \theta_{\ell, i}} = \theta_{\ell, i} \ \text{(selected leaves;
        0 elsewhere)}.

    The :math:`\tfrac12` makes the gradient exactly :math:`\theta`, so adding
    ``weight_decay * l2_penalty(params)`` to the loss adds ``weight_decay * w`` to every selected
    gradient: classic weight decay.

    Args:
      params: a pytree of floating-point arrays (or scalars).
      mask: ``None`` (all leaves), a pytree of bools with the structure of ``params``, or a callable
        ``params -> mask``, as in ``optax.masked``.

    Returns:
      A float32 scalar; squares are summed in float32 whatever the leaf dtype.

    Raises:
      ValueError: if the mask's tree structure differs from ``params`` (both are printed), a mask
        leaf is not a bool, or a selected leaf is not floating point.

    >>> import jax.numpy as jnp
    >>> from fdl.regularizers import l2_penalty, skip_biases
    >>> params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}
    >>> l2_penalty(params).item()  # (1 + 4 + 9) / 2
    7.0
    >>> l2_penalty(params, mask=skip_biases).item()  # (1 + 4) / 2
    2.5

    Differs from PyTorch: ``torch.optim.SGD(weight_decay=λ)`` adds :math:`\lambda\theta` to the
    gradient, i.e. the gradient of ``λ * l2_penalty``; it applies to every parameter unless you
    build parameter groups. Adam's ``weight_decay`` is the same coupled L2, unlike AdamW's decoupled
    decay (Loshchilov & Hutter, 2019; ``optax.adamw``), which is not a loss term at all. Keras's
    ``regularizers.L2(l2)`` computes :math:`\lambda\sum\theta^2` without the :math:`\tfrac12`, as do
    some texts: halve :math:`\lambda` to compare.
    """
    return _half_sum_of_squares(_selected_leaves(params, mask))


def l1_penalty(params: PyTree, mask: Mask = None) -> jax.Array:
    r"""Sum of absolute values of the selected parameters.

    .. math::

        R_1(\theta) = \sum_{\ell \in \text{mask}} \sum_i |\theta_{\ell, i}|, \qquad
        \frac{\partial R_1}{\partial \theta_{\ell, i}} = \operatorname{sign}(\theta_{\ell, i})
        \ \text{(selected leaves; 0 elsewhere)}.

    :math:`|\cdot|` is not differentiable at 0, where any value in :math:`[-1, 1]` is a
    subgradient. fdl returns :math:`\operatorname{sign}(0) = 0`, the smallest in magnitude, so a
    weight at exactly zero is left there (``jax.grad(jnp.abs)(0.0)`` is 1, which would push it off).
    Plain gradient descent still oscillates around zero rather than landing on it; proximal methods
    (soft thresholding) give exact zeros.

    Args:
      params: a pytree of floating-point arrays (or scalars).
      mask: ``None`` (all leaves), a pytree of bools with the structure of ``params``, or a callable
        ``params -> mask``.

    Returns:
      A float32 scalar; absolute values are summed in float32 whatever the leaf dtype.

    Raises:
      ValueError: if the mask's tree structure differs from ``params`` (both are printed), a mask
        leaf is not a bool, or a selected leaf is not floating point.

    >>> import jax.numpy as jnp
    >>> from fdl.regularizers import l1_penalty
    >>> params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}
    >>> l1_penalty(params).item()
    6.0
    >>> l1_penalty(params, mask={"w": False, "b": True}).item()
    3.0

    Differs from Keras: ``regularizers.L1(l1)`` includes the factor ``l1``; here it is applied by
    the caller (``lam * l1_penalty(params)``).
    """
    return _sum_of_absolute_values(_selected_leaves(params, mask))


def skip_biases(params: PyTree) -> PyTree:
    """Return a mask selecting every leaf except biases (leaves whose dict key is ``"b"``).

    fdl layers name their parameters ``{"w": ..., "b": ...}`` and combinators nest them in dicts and
    tuples, so a leaf is a bias exactly when the last key on its path is the dict key ``"b"``.

    Args:
      params: a parameter pytree.

    Returns:
      A pytree with the structure of ``params`` holding ``False`` at biases and ``True`` elsewhere;
      pass it (or the function itself) as ``mask``.

    >>> import jax.numpy as jnp
    >>> from fdl.regularizers import skip_biases
    >>> skip_biases(({"w": jnp.ones(2), "b": jnp.zeros(1)}, {"w": jnp.ones(3)}))
    ({'b': False, 'w': True}, {'w': True})
    """

    def is_weight(path: tuple[Any, ...], leaf: Any) -> bool:
        del leaf
        last = path[-1] if path else None
        return not (isinstance(last, jax.tree_util.DictKey) and last.key == "b")

    return jax.tree_util.tree_map_with_path(is_weight, params)
