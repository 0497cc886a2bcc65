r"""Reshaping the update's geometry without state: centering and normalizing.

* :func:`centralize` subtracts, from each row of a weight's gradient, its own mean over the
  other axes (Gradient Centralization, Yong et al. 2020): for a dense weight
  :math:`W \in \mathbb{R}^{n \times m}`, :math:`g_{ij} - \frac1m\sum_k g_{ik}`. Vectors (biases)
  are left alone.
* :func:`normalize_by_update_norm` divides the whole update by its global norm, so every step
  has length ``scale_factor`` (up to ``eps``): gradient descent on the direction only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_non_negative, check_real, check_same_shapes, names_errors
from fdl.optim.base import GradientTransformation, init_empty_state
from fdl.tree import floats, norm

__all__ = ["centralize", "normalize_by_update_norm"]

PyTree = Any
Scalar = float | jax.Array


def _stateless(caller: str, fn) -> GradientTransformation:

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        if params is not None:
            check_same_shapes(caller, "`updates`", updates, "`params`", params)
        del params, extra_args
        return fn(updates), state

    return GradientTransformation(init_empty_state, update)


def centralize() -> GradientTransformation:
    r"""Subtract from each leaf of rank :math:`\ge 2` its mean over every axis but the first.

    .. math:: u_{i\ldots} = g_{i\ldots} - \operatorname{mean}_{\ldots}\, g_{i\ldots}
        \quad (\text{rank} \ge 2), \qquad u = g \quad (\text{rank} \le 1)

    As in optax, the mean is over every axis but the first: for fdl's ``Dense`` weight of
    shape ``(in, out)``, over the outputs of each input row. (The paper centers each output's
    weights over its inputs, the rows of PyTorch's ``(out, in)`` layout.)

    >>> import jax.numpy as jnp
    >>> u, _ = centralize().update({"w": jnp.asarray([[1.0, 3.0], [0.0, 4.0]]), "b": jnp.ones(2)}, init_empty_state(None))
    >>> u["w"].tolist(), u["b"].tolist()
    ([[-1.0, 1.0], [-2.0, 2.0]], [1.0, 1.0])

    References:
      Yong et al., *Gradient Centralization: A New Optimization Technique for Deep Neural
      Networks*, ECCV 2020.
    """

    def one(g):
        if g.ndim < 2:
            return g
        return g - g.mean(tuple(range(1, g.ndim)), keepdims=True)

    return _stateless("centralize", lambda updates: jax.tree.map(one, updates))


@names_errors("normalize_by_update_norm")
def normalize_by_update_norm(scale_factor: Scalar = 1.0, eps: Scalar = 1e-6) -> GradientTransformation:
    r"""Divide the updates by their global norm: :math:`u = \text{scale\_factor}\; g /
    (\|g\| + \text{eps})`, with :math:`\|g\|` the Euclidean norm of all leaves together.

    Args:
      scale_factor: the length of the resulting step (a real number; negative flips it).
      eps: added to the norm, ``>= 0`` (a zero gradient stays zero).

    >>> import jax.numpy as jnp
    >>> opt = normalize_by_update_norm(eps=0.0)
    >>> u, _ = opt.update({"a": jnp.asarray([3.0]), "b": jnp.asarray([4.0])}, init_empty_state(None))
    >>> u["a"].tolist(), u["b"].tolist()
    ([0.6000000238418579], [0.800000011920929])
    """
    check_real("scale_factor", scale_factor)
    check_non_negative("eps", eps)

    def fn(updates):
        g_norm = (norm(updates) + eps) / scale_factor
        return jax.tree.map(lambda g: g / g_norm.astype(jnp.result_type(g)), updates)

    return _stateless("normalize_by_update_norm", fn)
