r"""What Adam and AMSGrad share (a kernel module): the checks of their hyperparameters, the
first-moment update and the ratio :math:`\hat m / (\sqrt{\hat v + \epsilon_{root}} + \epsilon)`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_decay, check_non_negative
from fdl.optim.base import safe_increment
from fdl.tree import bias_correction

PyTree = Any


def check_adam_args(b1: Any, b2: Any, eps: Any, eps_root: Any) -> None:
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_non_negative("eps", eps)
    check_non_negative("eps_root", eps_root)


def weighted_sum(b1: Any):
    r""":math:`(m, g) \mapsto \text{b1}\, m + (1 - \text{b1})\, g`, each term in its own dtype."""

    def one(m, g):
        left = jnp.asarray(b1, m.dtype) * m
        right = jnp.asarray(1 - b1, g.dtype) * g
        dtype = _dtypes.result_type(left, right)
        return left.astype(dtype) + right.astype(dtype)

    return one


def adam_ratio(mu_hat: PyTree, nu_hat: PyTree, eps: Any, eps_root: Any) -> PyTree:
    r""":math:`\hat m / (\sqrt{\hat v + \epsilon_{root}} + \epsilon)`, leaf by leaf."""

    def one(m, v):
        dtype = jnp.result_type(v)
        denominator = jnp.sqrt(v + jnp.asarray(eps_root, dtype)) + jnp.asarray(eps, dtype)
        common = _dtypes.result_type(m, v)
        return m.astype(common) / denominator.astype(common)

    return jax.tree.map(one, mu_hat, nu_hat)


def first_moment_hat(mu: PyTree, updates: PyTree, b1: Any, count: jax.Array, nesterov: bool) -> PyTree:
    r"""Adam's bias-corrected first moment :math:`\hat m_t`, or NAdam's look-ahead with
    ``nesterov``: :math:`\text{b1}\, m_t / (1 - \text{b1}^{t+1}) + (1 - \text{b1})\, g_t /
    (1 - \text{b1}^t)`."""
    if nesterov:
        return jax.tree.map(
            weighted_sum(b1),
            bias_correction(mu, b1, safe_increment(count)),
            bias_correction(updates, b1, count),
        )
    return bias_correction(mu, b1, count)
