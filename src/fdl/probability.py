r"""Probability: sampling and scoring the Gaussian and Bernoulli distributions, and Bayes' rule.

A model that outputs a distribution needs two operations on it: **draw** from it and **score**
an outcome under it (the log-density, whose negative is the training loss). Here:

* **Gaussian** :math:`\mathcal N(\mu, \sigma^2)` and :math:`\mathcal N(\mu, \Sigma)`. Samples are
  *reparameterized*: :math:`x = \mu + \sigma \varepsilon` and :math:`x = \mu + L \varepsilon`
  with :math:`\Sigma = L L^\top` (Cholesky) and :math:`\varepsilon \sim \mathcal N(0, I)` drawn
  from ``key``. The randomness is in :math:`\varepsilon` alone, so ``jax.grad`` flows through a
  sample to :math:`\mu`, :math:`\sigma`, :math:`\Sigma` (the trick behind variational
  autoencoders).
* **Bernoulli** :math:`x \in \{0, 1\}`, :math:`P(x = 1) = p = \sigma(z)`, from probabilities or
  from logits (stable at ``±1e4``). Samples are not differentiable.
* **Bayes' rule** over discrete hypotheses, in probability and in log space.

Shapes: a sampler returns ``(num_samples, *batch_shape)``; a log-density takes ``x`` with any
leading sample axes before the parameters' shape and returns one value per point. Parameters of
one call must share a dtype; nothing broadcasts implicitly. Concrete (not traced) arguments are
checked (positive ``std``, a positive-definite ``cov``, probabilities in range, a normalised
prior); under ``jit`` or ``vmap`` they cannot be read, and a bad value gives NaN instead.
Arrays of different float dtypes raise a ``TypeError`` (cast explicitly); a Python number takes
the dtype of the array it goes with.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from fdl import probability
    >>> x = probability.normal_sample(jax.random.key(0), jnp.zeros(2), jnp.ones(2), num_samples=5)
    >>> x.shape
    (5, 2)

References:
    Bishop, *Pattern Recognition and Machine Learning* (2006), chapters 1.2 and 2.
    Kingma and Welling, "Auto-Encoding Variational Bayes", ICLR 2014 (reparameterization).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp
from jax.typing import ArrayLike

from fdl._checks import check_positive_int, check_prng_key, concrete_float64, is_integer_number
from fdl._dtypes import HIGHEST, default_float
from fdl.activations import softplus
from fdl.information import check_distribution

__all__ = [
    "bayes_rule",
    "bernoulli_log_prob",
    "bernoulli_log_prob_from_logits",
    "bernoulli_sample",
    "bernoulli_sample_from_logits",
    "log_bayes_rule",
    "multivariate_normal_log_prob",
    "multivariate_normal_sample",
    "normal_log_prob",
    "normal_sample",
]

_LOG_2PI = math.log(2.0 * math.pi)
_SYMMETRY_TOLERANCE = {"float64": 1e-10, "float32": 1e-5}  # relative to max |cov|; 1e-2 otherwise


def _float(x: ArrayLike, like: jax.Array | None = None) -> jax.Array:
    """``x`` as a float array; a Python number takes the dtype of ``like`` (if given)."""
    if like is not None and isinstance(x, (int, float)) and not isinstance(x, bool):
        return jnp.asarray(x, like.dtype)
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(default_float())


def _same_dtype(*named: tuple[str, jax.Array]) -> None:
    dtypes = {x.dtype for _, x in named}
    if len(dtypes) > 1:
        listed = ", ".join(f"{name}: {x.dtype}" for name, x in named)
        raise TypeError(f"the arguments must share one dtype, got {listed}; cast explicitly")


def _broadcast_to_suffix(name: str, value: jax.Array, shape: tuple[int, ...], of: str) -> jax.Array:
    """``value`` broadcast to ``shape``, whose trailing axes must be ``value.shape``."""
    if shape[len(shape) - value.ndim :] != value.shape:
        raise ValueError(f"`{of}` must have shape (..., *{name}.shape) = (..., *{value.shape}), got {shape}")
    return jnp.broadcast_to(value, shape)


def _check_range(name: str, x: jax.Array, low: float, high: float | None, what: str) -> None:
    values = concrete_float64(x)
    if values is None or values.size == 0:
        return
    if values.min() < low or (high is not None and values.max() > high) or np.isnan(values).any():
        raise ValueError(f"`{name}` must be {what}, got values in [{values.min():.6g}, {values.max():.6g}]")


def _check_outcomes(x: jax.Array) -> None:
    """Bernoulli outcomes are 0 or 1; a concrete ``x`` is checked (a traced one cannot be)."""
    values = concrete_float64(x)
    bad = np.empty(0) if values is None else values[(values != 0.0) & (values != 1.0)]
    if bad.size:
        raise ValueError(
            f"`x` must be Bernoulli outcomes, 0 or 1, got {bad.size} other value(s), e.g. {bad.flat[0]:.6g} "
            "(for soft targets in [0, 1] use fdl.losses.binary_cross_entropy_with_logits, the cross-entropy)"
        )


def normal_sample(key: jax.Array, mean: ArrayLike, std: ArrayLike, *, num_samples: int = 1) -> jax.Array:
    r"""Reparameterized samples of independent Gaussians :math:`\mathcal N(\text{mean}, \text{std}^2)`.

    .. math::

        x_s = \mu + \sigma \odot \varepsilon_s, \quad \varepsilon_s \sim \mathcal N(0, I), \qquad
        \frac{\partial x_s}{\partial \mu} = 1, \quad \frac{\partial x_s}{\partial \sigma} = \varepsilon_s

    Args:
        key: a JAX PRNG key.
        mean: ``(...)`` means :math:`\mu`.
        std: ``(...)`` standard deviations :math:`\sigma > 0`, the shape of ``mean`` or a scalar.
        num_samples: how many draws (keyword-only).

    Returns:
        ``(num_samples, *mean.shape)`` in ``mean``'s dtype.

    Raises:
        ValueError: if ``num_samples`` is not a positive int, the shapes differ, or a concrete
            ``std`` is not positive.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> normal_sample(jax.random.key(0), jnp.zeros(3), 2.0, num_samples=4).shape
        (4, 3)
    """
    check_prng_key("key", key)
    num_samples = check_positive_int("num_samples", num_samples)
    mu = _float(mean)
    sigma = _float(std, like=mu)
    _same_dtype(("mean", mu), ("std", sigma))
    if sigma.shape not in ((), mu.shape):
        raise ValueError(f"`std` must be a scalar or have the shape of `mean` {mu.shape}, got {sigma.shape}")
    _check_range("std", sigma, math.ulp(0.0), None, "positive")
    eps = jax.random.normal(key, (num_samples, *mu.shape), mu.dtype)
    return jnp.broadcast_to(mu, eps.shape) + jnp.broadcast_to(sigma, eps.shape) * eps


def normal_log_prob(x: ArrayLike, mean: ArrayLike, std: ArrayLike) -> jax.Array:
    r"""Log-density of independent Gaussians, entry by entry (``scipy.stats.norm.logpdf``).

    .. math::

        \log \mathcal N(x; \mu, \sigma^2)
            = -\frac{(x - \mu)^2}{2 \sigma^2} - \log \sigma - \tfrac12 \log 2\pi

    Args:
        x: ``(..., *mean.shape)`` points (any leading sample axes).
        mean: ``(*B)`` means.
        std: ``(*B)`` standard deviations, or a scalar.

    Returns:
        ``x.shape``.

    Raises:
        ValueError: if the trailing shape of ``x`` is not ``mean.shape``, ``std``'s shape is
            wrong, or a concrete ``std`` is not positive.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(normal_log_prob(0.0, 0.0, 1.0)), 4))  # -log(2 pi) / 2
        -0.9189
    """
    x = _float(x)
    mu, sigma = _float(mean, like=x), _float(std, like=x)
    _same_dtype(("x", x), ("mean", mu), ("std", sigma))
    if sigma.shape not in ((), mu.shape):
        raise ValueError(f"`std` must be a scalar or have the shape of `mean` {mu.shape}, got {sigma.shape}")
    _check_range("std", sigma, math.ulp(0.0), None, "positive")
    mu = _broadcast_to_suffix("mean", mu, x.shape, of="x")
    sigma = jnp.broadcast_to(sigma, x.shape)
    z = (x - mu) / sigma
    return -0.5 * z * z - jnp.log(sigma) - 0.5 * _LOG_2PI


def _cholesky(mean: jax.Array, cov: jax.Array) -> jax.Array:
    """The lower Cholesky factor of ``cov`` ``(..., D, D)``, after checking shapes and values."""
    if mean.ndim < 1 or cov.shape != (*mean.shape, mean.shape[-1]):
        raise ValueError(
            f"`cov` must have shape (*mean.shape, D) = (..., D, D) for `mean` of shape (..., D), got "
            f"mean.shape={mean.shape} and cov.shape={cov.shape}"
        )
    values = concrete_float64(cov)
    if values is not None:
        asymmetry = float(np.abs(values - np.swapaxes(values, -1, -2)).max(initial=0.0))
        scale = float(np.abs(values).max(initial=0.0))
        if asymmetry > _SYMMETRY_TOLERANCE.get(cov.dtype.name, 1e-2) * scale or math.isnan(asymmetry):
            raise ValueError(f"`cov` must be symmetric, got max |cov - cov^T| = {asymmetry:.3g}")
    chol = jnp.linalg.cholesky(cov)  # (..., D, D)
    if values is not None and not bool(jnp.all(jnp.isfinite(chol))):
        smallest = float(np.linalg.eigvalsh(values).min())
        raise ValueError(
            f"`cov` must be positive definite: its Cholesky factorisation failed (smallest "
            f"eigenvalue {smallest:.6g}); add a small multiple of the identity"
        )
    return chol


def multivariate_normal_sample(
    key: jax.Array, mean: ArrayLike, cov: ArrayLike, *, num_samples: int = 1
) -> jax.Array:
    r"""Reparameterized samples of :math:`\mathcal N(\text{mean}, \text{cov})` via Cholesky.

    .. math::

        \Sigma = L L^\top, \qquad x_s = \mu + L \varepsilon_s, \quad
        \varepsilon_s \sim \mathcal N(0, I_D), \qquad
        \operatorname{Cov}(x) = L\, \mathbb E[\varepsilon \varepsilon^\top] L^\top = \Sigma

    Args:
        key: a JAX PRNG key.
        mean: ``(..., D)`` means (leading batch axes allowed).
        cov: ``(..., D, D)`` symmetric positive-definite covariances, one per mean.
        num_samples: how many draws (keyword-only).

    Returns:
        ``(num_samples, ..., D)`` in ``mean``'s dtype.

    Raises:
        ValueError: if ``num_samples`` is not a positive int, the shapes do not match, or a
            concrete ``cov`` is not symmetric positive definite (the message gives its smallest
            eigenvalue).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> cov = jnp.array([[1.0, 0.5], [0.5, 1.0]])
        >>> multivariate_normal_sample(jax.random.key(0), jnp.zeros(2), cov, num_samples=3).shape
        (3, 2)
    """
    check_prng_key("key", key)
    num_samples = check_positive_int("num_samples", num_samples)
    mu = _float(mean)
    sigma = _float(cov, like=mu)
    _same_dtype(("mean", mu), ("cov", sigma))
    chol = _cholesky(mu, sigma)  # (..., D, D)
    eps = jax.random.normal(key, (num_samples, *mu.shape), mu.dtype)  # (S, ..., D)
    return jnp.broadcast_to(mu, eps.shape) + jnp.einsum("...ij,s...j->s...i", chol, eps, precision=HIGHEST)


def multivariate_normal_log_prob(x: ArrayLike, mean: ArrayLike, cov: ArrayLike) -> jax.Array:
    r"""Log-density of :math:`\mathcal N(\text{mean}, \text{cov})` (``multivariate_normal.logpdf``).

    With :math:`\Sigma = L L^\top` and :math:`u = L^{-1} (x - \mu)` (a triangular solve, never
    an inverse):

    .. math::

        \log \mathcal N(x; \mu, \Sigma)
            = -\tfrac12 \lVert u \rVert^2 - \sum_{d} \log L_{dd} - \tfrac{D}{2} \log 2\pi

    since :math:`(x - \mu)^\top \Sigma^{-1} (x - \mu) = \lVert u \rVert^2` and
    :math:`\tfrac12 \log \det \Sigma = \sum_d \log L_{dd}`.

    Args:
        x: ``(..., *mean.shape)`` points (any leading sample axes).
        mean: ``(*B, D)`` means.
        cov: ``(*B, D, D)`` covariances.

    Returns:
        ``x.shape[:-1]``.

    Raises:
        ValueError: as :func:`multivariate_normal_sample`, or if ``x``'s trailing shape is not
            ``mean.shape``.

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(multivariate_normal_log_prob(jnp.zeros(2), jnp.zeros(2), jnp.eye(2))), 4))
        -1.8379
    """
    x = _float(x)
    mu, sigma = _float(mean, like=x), _float(cov, like=x)
    _same_dtype(("x", x), ("mean", mu), ("cov", sigma))
    chol = _cholesky(mu, sigma)  # (*B, D, D)
    diff = x - _broadcast_to_suffix("mean", mu, x.shape, of="x")  # (..., *B, D)
    chol = jnp.broadcast_to(chol, (*x.shape, x.shape[-1]))  # (..., *B, D, D)
    u = solve_triangular(chol, diff[..., None], lower=True)[..., 0]  # (..., *B, D)
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * jnp.sum(u * u, axis=-1) - half_log_det - 0.5 * x.shape[-1] * _LOG_2PI


def bernoulli_sample(key: jax.Array, probs: ArrayLike, *, num_samples: int = 1) -> jax.Array:
    r"""Samples :math:`x \in \{0, 1\}` with :math:`P(x = 1) = p`: :math:`x = [u < p]`, :math:`u \sim U[0, 1)`.

    Args:
        key: a JAX PRNG key.
        probs: ``(...)`` probabilities of a 1, in ``[0, 1]``.
        num_samples: how many draws (keyword-only).

    Returns:
        ``(num_samples, *probs.shape)`` zeros and ones in ``probs``' float dtype.

    Raises:
        ValueError: if ``num_samples`` is not a positive int or concrete ``probs`` leave [0, 1].

    Example:
        >>> import jax, jax.numpy as jnp
        >>> print(bernoulli_sample(jax.random.key(0), jnp.array([0.0, 1.0]), num_samples=2).tolist())
        [[0.0, 1.0], [0.0, 1.0]]
    """
    check_prng_key("key", key)
    num_samples = check_positive_int("num_samples", num_samples)
    p = _float(probs)
    _check_range("probs", p, 0.0, 1.0, "probabilities in [0, 1]")
    u = jax.random.uniform(key, (num_samples, *p.shape), p.dtype)
    return (u < jnp.broadcast_to(p, u.shape)).astype(p.dtype)


def bernoulli_sample_from_logits(key: jax.Array, logits: ArrayLike, *, num_samples: int = 1) -> jax.Array:
    r"""Bernoulli samples with :math:`P(x = 1) = \sigma(z)`, compared in log-odds space.

    .. math::

        x = [u < \sigma(z)] = [\log u - \log(1 - u) < z], \qquad u \sim U[0, 1)

    so :math:`\sigma(z)` is never formed (in float32 it is exactly 1 from :math:`z \approx 17`):
    logits of ``±1e4`` give all ones / all zeros without overflow or NaN.

    Args:
        key: a JAX PRNG key.
        logits: ``(...)`` log-odds :math:`z`.
        num_samples: how many draws (keyword-only).

    Returns:
        ``(num_samples, *logits.shape)`` zeros and ones in ``logits``' float dtype.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> print(bernoulli_sample_from_logits(jax.random.key(0), jnp.array([-1e4, 1e4])).tolist())
        [[0.0, 1.0]]
    """
    check_prng_key("key", key)
    num_samples = check_positive_int("num_samples", num_samples)
    z = _float(logits)
    u = jax.random.uniform(key, (num_samples, *z.shape), z.dtype)
    return (jnp.log(u) - jnp.log1p(-u) < jnp.broadcast_to(z, u.shape)).astype(z.dtype)


def bernoulli_log_prob(x: ArrayLike, probs: ArrayLike) -> jax.Array:
    r"""Log-pmf of a Bernoulli outcome (``scipy.stats.bernoulli.logpmf``), with :math:`0 \log 0 = 0`.

    .. math::

        \log P(x) = x \log p + (1 - x) \log(1 - p), \qquad x \in \{0, 1\}

    Args:
        x: ``(..., *probs.shape)`` outcomes, 0 or 1 (any leading sample axes).
        probs: ``(*B)`` probabilities of a 1.

    Returns:
        ``x.shape``: ``-inf`` for an impossible outcome (:math:`x = 1` at :math:`p = 0`).

    Raises:
        ValueError: if a concrete ``x`` holds a value other than 0 or 1 (SciPy's ``logpmf``
            returns ``-inf`` there; the formula would give a soft cross-entropy instead), or
            ``probs`` is outside [0, 1]. A traced ``x`` is not checked.

    Example:
        >>> import jax.numpy as jnp
        >>> print([round(v, 4) for v in bernoulli_log_prob(jnp.array([1.0, 0.0]), jnp.array([0.8, 0.8])).tolist()])
        [-0.2231, -1.6094]
    """
    p = _float(probs)
    x = _float(x, like=p)
    _same_dtype(("x", x), ("probs", p))
    _check_range("probs", p, 0.0, 1.0, "probabilities in [0, 1]")
    _check_outcomes(x)
    p = _broadcast_to_suffix("probs", p, x.shape, of="x")
    one, zero = jnp.ones_like(p), jnp.zeros_like(p)
    hit = jnp.where(x > 0, x * jnp.log(jnp.where(x > 0, p, one)), zero)
    miss = jnp.where(x < 1, (1 - x) * jnp.log1p(-jnp.where(x < 1, p, zero)), zero)
    return hit + miss


def bernoulli_log_prob_from_logits(x: ArrayLike, logits: ArrayLike) -> jax.Array:
    r"""Log-pmf of a Bernoulli outcome with :math:`p = \sigma(z)`, finite at logits of ``±1e4``.

    .. math::

        \log P(x) = -x \operatorname{softplus}(-z) - (1 - x) \operatorname{softplus}(z),
        \qquad \log \sigma(z) = -\operatorname{softplus}(-z), \quad
        \log\bigl(1 - \sigma(z)\bigr) = -\operatorname{softplus}(z)

    This is ``-fdl.losses.binary_cross_entropy_with_logits(z, x)``, but that loss's form
    :math:`\operatorname{softplus}(z) - x z` subtracts two numbers near :math:`z` when the
    outcome is likely (:math:`x = 1`, large :math:`z`); the two-softplus form keeps the
    *relative* accuracy of a log-probability near 0 (float32, ``logits=8``, ``x=1``: relative error 2e-8 against 9e-4).

    Args:
        x: ``(..., *logits.shape)`` outcomes, 0 or 1 (any leading sample axes).
        logits: ``(*B)`` log-odds.

    Returns:
        ``x.shape``.

    Raises:
        ValueError: a concrete ``x`` holding a value other than 0 or 1 (a traced one is not).

    Example:
        >>> import jax.numpy as jnp
        >>> print(round(float(bernoulli_log_prob_from_logits(1.0, 0.0)), 4))
        -0.6931
    """
    z = _float(logits)
    x = _float(x, like=z)
    _same_dtype(("x", x), ("logits", z))
    _check_outcomes(x)
    z = _broadcast_to_suffix("logits", z, x.shape, of="x")
    return -(x * softplus(-z) + (1 - x) * softplus(z))


def _check_hypotheses(
    prior_name: str, prior: jax.Array, like_name: str, likelihood: jax.Array, axis: int
) -> None:
    if prior.shape != likelihood.shape:
        raise ValueError(
            f"`{prior_name}` and `{like_name}` must have the same shape (one entry per hypothesis), got "
            f"{prior_name}.shape={prior.shape} and {like_name}.shape={likelihood.shape}; broadcast explicitly"
        )
    if not is_integer_number(axis) or not -prior.ndim <= axis < prior.ndim:
        raise ValueError(
            f"`axis` must be an int indexing `{prior_name}` of shape {prior.shape}, got {axis!r}"
        )
    _same_dtype((prior_name, prior), (like_name, likelihood))


def bayes_rule(prior: ArrayLike, likelihood: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Posterior over discrete hypotheses :math:`h` from a prior and the data's likelihoods.

    .. math::

        P(h \mid d) = \frac{P(d \mid h)\, P(h)}{\sum_{h'} P(d \mid h')\, P(h')}

    The denominator is the evidence :math:`P(d)`. The likelihood is a function of :math:`h`,
    not a distribution over it: it need not sum to 1. Updating on independent data one at a
    time, or once with the product of their likelihoods, gives the same posterior.

    Args:
        prior: ``(..., H, ...)`` prior probabilities, summing to 1 along ``axis``.
        likelihood: :math:`P(d \mid h)`, non-negative, the same shape and dtype.
        axis: the hypothesis axis.

    Returns:
        The posterior, shape of ``prior``, summing to 1 along ``axis``.

    Raises:
        ValueError: if the shapes differ, a concrete ``prior`` is not a distribution, a
            concrete ``likelihood`` is negative, or the evidence is 0 (under ``jit``: NaN).

    Example:
        >>> import jax.numpy as jnp
        >>> # 1% have the disease; the test has 99% sensitivity, 95% specificity; it says yes
        >>> posterior = bayes_rule(jnp.array([0.01, 0.99]), jnp.array([0.99, 0.05]))
        >>> print(round(float(posterior[0]), 4))  # 0.0099 / (0.0099 + 0.0495) = 1/6
        0.1667

    References:
        Bayes, "An Essay towards solving a Problem in the Doctrine of Chances", 1763; Bishop
        (2006), section 1.2.3.
    """
    prior = _float(prior)
    likelihood = _float(likelihood, like=prior)
    _check_hypotheses("prior", prior, "likelihood", likelihood, axis)
    check_distribution("prior", prior, axis)
    _check_range("likelihood", likelihood, 0.0, None, "non-negative")
    joint = prior * likelihood
    evidence = jnp.sum(joint, axis=axis, keepdims=True)
    values = concrete_float64(evidence)
    if values is not None and not np.all(values > 0):
        raise ValueError(
            "the evidence sum(prior * likelihood) is 0: the data are impossible under every hypothesis "
            "with prior mass (for likelihoods that underflow, use log_bayes_rule)"
        )
    return joint / jnp.broadcast_to(evidence, joint.shape)


def log_bayes_rule(log_prior: ArrayLike, log_likelihood: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Bayes' rule in log space: the log-posterior, stable for log-likelihoods of ``-1e4``.

    .. math::

        \log P(h \mid d) = \log P(d \mid h) + \log P(h)
            - \operatorname{logsumexp}_{h'} \bigl(\log P(d \mid h') + \log P(h')\bigr)

    A long sequence of observations makes every likelihood underflow to 0 in
    :func:`bayes_rule`; their log-likelihoods add up finitely here. ``-inf`` marks a zero prior.

    Args:
        log_prior: ``(..., H, ...)`` log prior, ``exp`` of it summing to 1 along ``axis``.
        log_likelihood: :math:`\log P(d \mid h)`, the same shape and dtype.
        axis: the hypothesis axis.

    Returns:
        The log-posterior, shape of ``log_prior``.

    Raises:
        ValueError: if the shapes differ or ``exp(log_prior)`` is concretely not a distribution.

    Example:
        >>> import jax.numpy as jnp
        >>> log_post = log_bayes_rule(jnp.log(jnp.array([0.5, 0.5])), jnp.array([-1000.0, -1001.0]))
        >>> print([round(v, 4) for v in jnp.exp(log_post).tolist()])  # 1 / (1 + e^-1), e^-1 / (1 + e^-1)
        [0.7311, 0.2689]
    """
    log_prior = _float(log_prior)
    log_likelihood = _float(log_likelihood, like=log_prior)
    _check_hypotheses("log_prior", log_prior, "log_likelihood", log_likelihood, axis)
    check_distribution("exp(log_prior)", jnp.exp(log_prior), axis)
    joint = log_prior + log_likelihood
    return joint - jnp.broadcast_to(logsumexp(joint, axis=axis, keepdims=True), joint.shape)
