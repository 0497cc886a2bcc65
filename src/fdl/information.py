r"""Information theory: how many nats a distribution's outcomes carry, and how far apart two are.

For discrete distributions :math:`p, q` over the same :math:`C` outcomes (an axis of an array):

* **entropy** :math:`H(p) = -\sum_i p_i \log p_i`, the average surprise :math:`-\log p_i`;
* **cross-entropy** :math:`H(p, q) = -\sum_i p_i \log q_i`, the average surprise of a code built
  for :math:`q` when outcomes come from :math:`p` (the classification loss);
* **KL divergence** :math:`D(p \,\|\, q) = H(p, q) - H(p) \ge 0`, the nats wasted by that code;
* **Jensen-Shannon divergence**, a symmetric and bounded (:math:`\le \log 2`) KL to the midpoint;
* **mutual information** :math:`I(X; Y) = D\bigl(p(x, y) \,\|\, p(x)\,p(y)\bigr)`, what one
  variable says about the other;
* **perplexity** :math:`e^{H(p)}`, the number of equally likely outcomes with the same entropy.

Conventions shared by every function here:

* **Two forms.** ``f(probs, ...)`` takes probabilities; ``f_from_logits(logits, ...)`` takes
  unnormalised log-probabilities and works in log space throughout (``log_softmax``, never
  ``log(softmax(...))``), so values and gradients stay finite for logits as large as ``±1e4``.
* **0 log 0 = 0.** A zero probability contributes nothing, and its gradient is taken as 0 (the
  true derivative of :math:`p \log p` diverges at 0), through a double ``jnp.where`` so no NaN
  leaks into the backward pass. A :math:`q_i = 0` where :math:`p_i > 0` gives ``inf``, as it must.
* **Axes.** The outcomes lie along ``axis`` (default last); all other axes are batch axes and
  the result has ``axis`` removed. Two-argument functions require identical shapes (no
  broadcasting). :func:`mutual_information` reads a joint table from the last two axes.
* **Units.** ``base=None`` gives nats (natural log); ``base=2`` bits; any ``base > 0, != 1``.
* **Validation.** Concrete (not traced) probabilities are checked by :func:`check_distribution`:
  no negative entry and each distribution summing to 1 within a tolerance set by the dtype.
  Under ``jit``, ``vmap`` or ``grad`` the values are traced and are not checked.

Example:
    >>> import jax.numpy as jnp
    >>> from fdl import information
    >>> print(round(float(information.entropy(jnp.array([0.5, 0.5]), base=2)), 4))  # a fair coin
    1.0

References:
    Shannon, "A Mathematical Theory of Communication", Bell System Technical Journal, 1948.
    Cover and Thomas, *Elements of Information Theory* (2nd ed., 2006), chapters 2 and 8.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jax.typing import ArrayLike

from fdl._distributions import (
    as_float,
    check_distribution,
    checked_logits,
    checked_probs,
    in_base,
    logit_pair,
    p_log_ratio,
    prob_pair,
)
from fdl.activations import log_softmax, softmax
from fdl.losses import softmax_cross_entropy

__all__ = [
    "check_distribution",
    "cross_entropy",
    "cross_entropy_from_logits",
    "entropy",
    "entropy_from_logits",
    "js_divergence",
    "js_divergence_from_logits",
    "kl_divergence",
    "kl_divergence_from_logits",
    "mutual_information",
    "mutual_information_from_logits",
    "perplexity",
    "perplexity_from_logits",
]


def entropy(probs: ArrayLike, axis: int = -1, base: float | None = None) -> jax.Array:
    r"""Shannon entropy of the distributions ``probs`` along ``axis``.

    .. math::

        H(p) = -\sum_{i=1}^{C} p_i \log p_i, \qquad 0 \log 0 = 0,
        \qquad 0 \le H(p) \le \log C

    Zero for a point mass, :math:`\log C` for the uniform distribution (:math:`\log 2` for a
    fair coin). Divided by :math:`\log b` for ``base`` :math:`b`.

    Args:
        probs: ``(..., C, ...)`` probabilities summing to 1 along ``axis``.
        axis: the axis of the :math:`C` outcomes.
        base: ``None`` for nats, ``2`` for bits, any number > 0 and != 1.

    Returns:
        ``probs.shape`` without ``axis``; ``probs``' dtype (ints become float32).

    Raises:
        ValueError: if ``axis`` or ``base`` is invalid, or concrete ``probs`` are negative or do
            not sum to 1 (see :func:`check_distribution`).

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(entropy(jnp.full(4, 0.25))), 4), round(float(jnp.log(4.0)), 4))
        1.3863 1.3863

    References:
        Shannon, 1948; Cover and Thomas (2006), section 2.1.

    Differs from SciPy:
        ``scipy.stats.entropy(pk)`` silently renormalises ``pk``; here it must already sum to 1.
    """
    p, axis = checked_probs("probs", probs, axis)
    return in_base(-jnp.sum(p_log_ratio(p, lambda safe: jnp.log(safe(p))), axis=axis), base)


def entropy_from_logits(logits: ArrayLike, axis: int = -1, base: float | None = None) -> jax.Array:
    r"""Entropy of :math:`p = \operatorname{softmax}(\text{logits})` along ``axis``.

    .. math::

        H(p) = -\sum_i \operatorname{softmax}(z)_i \, \operatorname{log\_softmax}(z)_i

    An outcome whose logit is far below the maximum has :math:`p_i = 0` exactly and a finite
    :math:`\operatorname{log\_softmax}(z)_i`, so it adds exactly 0; values and gradients are
    finite for logits of ``±1e4``.

    Args:
        logits: ``(..., C, ...)`` unnormalised log-probabilities, finite.
        axis: the axis of the :math:`C` outcomes.
        base: ``None`` for nats, or the log base.

    Returns:
        ``logits.shape`` without ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(entropy_from_logits(jnp.array([0.0, 0.0]))), 4))
        0.6931
    """
    z, axis = checked_logits("logits", logits, axis)
    log_p = log_softmax(z, axis=axis)
    return in_base(-jnp.sum(jnp.exp(log_p) * log_p, axis=axis), base)


def cross_entropy(p: ArrayLike, q: ArrayLike, axis: int = -1, base: float | None = None) -> jax.Array:
    r"""Cross-entropy of ``q`` relative to ``p`` along ``axis``.

    .. math::

        H(p, q) = -\sum_i p_i \log q_i = H(p) + D(p \,\|\, q) \ge H(p)

    Terms with :math:`p_i = 0` are 0 whatever :math:`q_i`; a :math:`q_i = 0` with
    :math:`p_i > 0` gives ``inf``.

    Args:
        p: ``(..., C, ...)`` the true (data) distribution.
        q: the model distribution, same shape and dtype as ``p``.
        axis: the axis of the :math:`C` outcomes.
        base: ``None`` for nats, or the log base.

    Returns:
        ``p.shape`` without ``axis``.

    Raises:
        ValueError: if the shapes differ, or ``p`` or ``q`` is not a distribution.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(cross_entropy(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]))), 4))
        0.6931
    """
    p, q, axis = prob_pair(p, q, axis)
    return in_base(-jnp.sum(p_log_ratio(p, lambda safe: jnp.log(safe(q))), axis=axis), base)


def cross_entropy_from_logits(
    p_logits: ArrayLike, q_logits: ArrayLike, axis: int = -1, base: float | None = None
) -> jax.Array:
    r""":math:`H(p, q)` with :math:`p = \operatorname{softmax}(\text{p\_logits})`,
    :math:`q = \operatorname{softmax}(\text{q\_logits})` along ``axis``.

    .. math::

        H(p, q) = -\sum_i \operatorname{softmax}(z^p)_i \, \operatorname{log\_softmax}(z^q)_i

    Computed by :func:`fdl.losses.softmax_cross_entropy` (``q_logits`` as its logits, the
    softmax of ``p_logits`` as its labels, ``axis`` moved last). Use that loss directly when the
    target is given as probabilities; this form takes both sides as logits (a distillation
    teacher and student), any ``axis`` and a ``base``.

    Args:
        p_logits: ``(..., C, ...)`` logits of the true distribution.
        q_logits: logits of the model distribution, same shape and dtype.
        axis: the axis of the :math:`C` outcomes.
        base: ``None`` for nats, or the log base.

    Returns:
        ``p_logits.shape`` without ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(cross_entropy_from_logits(jnp.array([0.0, 0.0]), jnp.array([0.0, 0.0]))), 4))
        0.6931
    """
    zp, zq, axis = logit_pair(p_logits, q_logits, axis)
    p = softmax(zp, axis=axis)
    return in_base(softmax_cross_entropy(jnp.moveaxis(zq, axis, -1), jnp.moveaxis(p, axis, -1)), base)


def kl_divergence(p: ArrayLike, q: ArrayLike, axis: int = -1, base: float | None = None) -> jax.Array:
    r"""Kullback-Leibler divergence :math:`D(p \,\|\, q)` along ``axis``.

    .. math::

        D(p \,\|\, q) = \sum_i p_i \log \frac{p_i}{q_i} = H(p, q) - H(p) \ge 0

    Not symmetric: the argument order chooses the direction. With ``p`` the data and ``q`` a
    model, ``kl_divergence(p, q)`` is the *forward* KL (minimised by maximum likelihood; it
    punishes a model that misses data mass: mass-covering), ``kl_divergence(q, p)`` the
    *reverse* KL (variational inference; it punishes model mass where the data has none:
    mode-seeking). Terms with :math:`p_i = 0` are 0; :math:`q_i = 0 < p_i` gives ``inf``.

    Args:
        p: ``(..., C, ...)`` the first distribution.
        q: the second, same shape and dtype as ``p``.
        axis: the axis of the :math:`C` outcomes.
        base: ``None`` for nats, or the log base.

    Returns:
        ``p.shape`` without ``axis``.

    Raises:
        ValueError: if the shapes differ, or ``p`` or ``q`` is not a distribution.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(kl_divergence(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5]))), 4))
        0.6931

    References:
        Kullback and Leibler, "On Information and Sufficiency", Annals of Mathematical
        Statistics, 1951.

    Differs from SciPy / optax / PyTorch:
        Equals ``scipy.stats.entropy(p, q, base=base, axis=axis)``, which renormalises its inputs.
        ``optax.kl_divergence(log_predictions, targets)`` and
        ``torch.nn.functional.kl_div(input, target)`` take the *model* first, as
        log-probabilities, and return :math:`D(\text{targets} \,\|\, \text{predictions})`, that
        is ``kl_divergence(targets, exp(log_predictions))``; PyTorch's default
        ``reduction="mean"`` also averages over every entry rather than per distribution.
    """
    p, q, axis = prob_pair(p, q, axis)
    terms = p_log_ratio(p, lambda safe: jnp.log(safe(p)) - jnp.log(safe(q)))
    return in_base(jnp.sum(terms, axis=axis), base)


def kl_divergence_from_logits(
    p_logits: ArrayLike, q_logits: ArrayLike, axis: int = -1, base: float | None = None
) -> jax.Array:
    r""":math:`D(p \,\|\, q)` between the softmaxes of ``p_logits`` and ``q_logits``.

    .. math::

        D(p \,\|\, q) = \sum_i \operatorname{softmax}(z^p)_i
            \bigl(\operatorname{log\_softmax}(z^p)_i - \operatorname{log\_softmax}(z^q)_i\bigr)

    Computed directly, not as :math:`H(p, q) - H(p)` (which would lose a small divergence to
    cancellation). The reverse KL is ``kl_divergence_from_logits(q_logits, p_logits)``.

    Args:
        p_logits: ``(..., C, ...)`` logits of the first distribution.
        q_logits: logits of the second, same shape and dtype.
        axis: the axis of the :math:`C` outcomes.
        base: ``None`` for nats, or the log base.

    Returns:
        ``p_logits.shape`` without ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(kl_divergence_from_logits(jnp.array([1.0, 2.0]), jnp.array([1.0, 2.0]))), 4))
        0.0
    """
    zp, zq, axis = logit_pair(p_logits, q_logits, axis)
    log_p, log_q = log_softmax(zp, axis=axis), log_softmax(zq, axis=axis)
    return in_base(jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=axis), base)


def js_divergence(p: ArrayLike, q: ArrayLike, axis: int = -1, base: float | None = None) -> jax.Array:
    r"""Jensen-Shannon divergence between ``p`` and ``q`` along ``axis``.

    .. math::

        \operatorname{JS}(p, q) = \tfrac12 D(p \,\|\, m) + \tfrac12 D(q \,\|\, m),
        \qquad m = \tfrac12 (p + q), \qquad 0 \le \operatorname{JS} \le \log 2

    Symmetric, and finite even for disjoint supports (then exactly :math:`\log 2`, 1 bit).

    Args:
        p: ``(..., C, ...)`` the first distribution.
        q: the second, same shape and dtype as ``p``.
        axis: the axis of the :math:`C` outcomes.
        base: ``None`` for nats, or the log base.

    Returns:
        ``p.shape`` without ``axis``.

    Raises:
        ValueError: if the shapes differ, or ``p`` or ``q`` is not a distribution.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(js_divergence(jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0]), base=2)), 4))
        1.0

    References:
        Lin, "Divergence Measures Based on the Shannon Entropy", IEEE Transactions on
        Information Theory, 1991.

    Differs from SciPy:
        ``scipy.spatial.distance.jensenshannon`` returns the *square root* of this (a metric).
    """
    p, q, axis = prob_pair(p, q, axis)
    log_m = lambda safe: jnp.log(0.5 * (safe(p) + safe(q)))
    to_m = lambda x: p_log_ratio(x, lambda safe: jnp.log(safe(x)) - log_m(safe))
    return in_base(0.5 * jnp.sum(to_m(p) + to_m(q), axis=axis), base)


def js_divergence_from_logits(
    p_logits: ArrayLike, q_logits: ArrayLike, axis: int = -1, base: float | None = None
) -> jax.Array:
    r"""Jensen-Shannon divergence between the softmaxes of ``p_logits`` and ``q_logits``.

    The midpoint is formed in log space,
    :math:`\log m_i = \operatorname{logaddexp}(\log p_i, \log q_i) - \log 2`, then
    :math:`\operatorname{JS} = \tfrac12 \sum_i p_i (\log p_i - \log m_i) + \tfrac12 \sum_i q_i
    (\log q_i - \log m_i)` as in :func:`js_divergence`.

    Args:
        p_logits: ``(..., C, ...)`` logits of the first distribution.
        q_logits: logits of the second, same shape and dtype.
        axis: the axis of the :math:`C` outcomes.
        base: ``None`` for nats, or the log base.

    Returns:
        ``p_logits.shape`` without ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> js = js_divergence_from_logits(jnp.array([50.0, 0.0]), jnp.array([0.0, 50.0]))
        >>> print(round(float(js), 4), round(float(jnp.log(2.0)), 4))
        0.6931 0.6931
    """
    zp, zq, axis = logit_pair(p_logits, q_logits, axis)
    log_p, log_q = log_softmax(zp, axis=axis), log_softmax(zq, axis=axis)
    log_m = jnp.logaddexp(log_p, log_q) - math.log(2.0)
    terms = jnp.exp(log_p) * (log_p - log_m) + jnp.exp(log_q) * (log_q - log_m)
    return in_base(0.5 * jnp.sum(terms, axis=axis), base)


def _check_joint(name: str, joint: jax.Array) -> None:
    if joint.ndim < 2:
        raise ValueError(
            f"`{name}` must have at least 2 dimensions (the table (..., X, Y)), got shape {joint.shape}"
        )


def mutual_information(joint: ArrayLike, base: float | None = None) -> jax.Array:
    r"""Mutual information :math:`I(X; Y)` from a table of *joint probabilities* (last two axes).

    With :math:`p(x, y)` = ``joint[..., x, y]`` and its marginals
    :math:`p(x) = \sum_y p(x, y)`, :math:`p(y) = \sum_x p(x, y)`:

    .. math::

        I(X; Y) = \sum_{x, y} p(x, y) \log \frac{p(x, y)}{p(x)\, p(y)}
                = H(X) + H(Y) - H(X, Y) \ge 0

    Zero exactly when :math:`X` and :math:`Y` are independent; :math:`\log k` when :math:`Y = X`
    is uniform over :math:`k` values. Pass counts as ``counts / counts.sum()``.

    Args:
        joint: ``(..., X, Y)`` joint probabilities summing to 1 over the last two axes.
        base: ``None`` for nats, or the log base.

    Returns:
        ``joint.shape[:-2]``.

    Raises:
        ValueError: if ``joint`` has fewer than 2 dimensions or is not a joint distribution.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(mutual_information(jnp.array([[0.5, 0.0], [0.0, 0.5]]), base=2)), 4))
        1.0

    References:
        Cover and Thomas (2006), section 2.4.

    Differs from scikit-learn:
        ``sklearn.metrics.mutual_info_score(None, None, contingency=counts)`` takes counts and
        normalises them; here the table must already be a distribution.
    """
    p = as_float("joint", joint)
    _check_joint("joint", p)
    check_distribution("joint", p, (-2, -1))
    px = jnp.sum(p, axis=-1, keepdims=True)  # (..., X, 1)
    py = jnp.sum(p, axis=-2, keepdims=True)  # (..., 1, Y)
    log_ratio = lambda safe: (
        jnp.log(safe(p))
        - jnp.log(safe(jnp.broadcast_to(px, p.shape)))
        - jnp.log(safe(jnp.broadcast_to(py, p.shape)))
    )
    return in_base(jnp.sum(p_log_ratio(p, log_ratio), axis=(-2, -1)), base)


def mutual_information_from_logits(joint_logits: ArrayLike, base: float | None = None) -> jax.Array:
    r""":math:`I(X; Y)` of the joint :math:`p(x, y) \propto \exp(\text{joint\_logits}[..., x, y])`.

    The joint is normalised over both last axes at once, and the marginals come from
    log-sum-exp: :math:`\log p(x) = \operatorname{logsumexp}_y \log p(x, y)`, then

    .. math::

        I(X; Y) = \sum_{x, y} p(x, y) \bigl(\log p(x, y) - \log p(x) - \log p(y)\bigr)

    Args:
        joint_logits: ``(..., X, Y)`` unnormalised log joint probabilities, finite.
        base: ``None`` for nats, or the log base.

    Returns:
        ``joint_logits.shape[:-2]``.

    Raises:
        ValueError: if ``joint_logits`` has fewer than 2 dimensions.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(mutual_information_from_logits(jnp.zeros((3, 4)))), 4))  # independent
        0.0
    """
    z = as_float("joint_logits", joint_logits)
    _check_joint("joint_logits", z)
    flat = z.reshape(*z.shape[:-2], -1)  # (..., X * Y)
    log_joint = log_softmax(flat, axis=-1).reshape(z.shape)  # (..., X, Y)
    log_px = logsumexp(log_joint, axis=-1, keepdims=True)  # (..., X, 1)
    log_py = logsumexp(log_joint, axis=-2, keepdims=True)  # (..., 1, Y)
    log_ratio = log_joint - jnp.broadcast_to(log_px, z.shape) - jnp.broadcast_to(log_py, z.shape)
    return in_base(jnp.sum(jnp.exp(log_joint) * log_ratio, axis=(-2, -1)), base)


def perplexity(probs: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Perplexity :math:`e^{H(p)}` of the distributions ``probs`` along ``axis``.

    .. math::

        \operatorname{PP}(p) = e^{H(p)} = b^{H_b(p)} = \prod_i p_i^{-p_i}, \qquad
        1 \le \operatorname{PP}(p) \le C

    The effective number of equally likely outcomes: :math:`C` for the uniform distribution
    over :math:`C`, 1 for a point mass. It does not depend on the log base. A language model's
    perplexity is instead the exponential of its *average cross-entropy* on held-out tokens:
    ``jnp.exp(fdl.losses.softmax_cross_entropy_with_integer_labels(logits, tokens,
    reduction="mean"))``.

    Args:
        probs: ``(..., C, ...)`` probabilities summing to 1 along ``axis``.
        axis: the axis of the :math:`C` outcomes.

    Returns:
        ``probs.shape`` without ``axis``.

    Raises:
        ValueError: as :func:`entropy`.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(perplexity(jnp.full(5, 0.2))), 4))
        5.0

    References:
        Jelinek, Mercer, Bahl and Baker, "Perplexity: a measure of the difficulty of speech
        recognition tasks", JASA, 1977.
    """
    return jnp.exp(entropy(probs, axis=axis))


def perplexity_from_logits(logits: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Perplexity :math:`e^{H(p)}` of :math:`p = \operatorname{softmax}(\text{logits})`.

    .. math::

        \operatorname{PP}(p) = \exp\Bigl(-\sum_i \operatorname{softmax}(z)_i \,
            \operatorname{log\_softmax}(z)_i\Bigr)

    Args:
        logits: ``(..., C, ...)`` unnormalised log-probabilities, finite.
        axis: the axis of the :math:`C` outcomes.

    Returns:
        ``logits.shape`` without ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(perplexity_from_logits(jnp.zeros(7))), 4))
        7.0
    """
    return jnp.exp(entropy_from_logits(logits, axis=axis))
