r"""Variance scaling: the variance of the draw set by the fans of the shape (Glorot, He, LeCun)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from fdl._checks import check_choice, check_non_negative_finite, check_shape
from fdl.initializers._sampling import (
    float_dtypes,
    sample_normal,
    sample_truncated_normal,
    sample_uniform,
)
from fdl.initializers.base import Initializer, compute_fans

__all__ = [
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "variance_scaling",
    "xavier_normal",
    "xavier_uniform",
]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")


def _standard_truncated_std(lower: float, upper: float) -> float:
    r"""Standard deviation of :math:`\mathcal{N}(0, 1)` restricted to ``[lower, upper]``.

    With :math:`\varphi, \Phi` the standard normal density and CDF and
    :math:`Z = \Phi(u) - \Phi(l)`:
    :math:`\operatorname{Var} = 1 + \frac{l\varphi(l) - u\varphi(u)}{Z}
    - \left(\frac{\varphi(l) - \varphi(u)}{Z}\right)^2`.
    """

    def pdf(x: float) -> float:
        return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)

    def cdf(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    z = cdf(upper) - cdf(lower)
    mean = (pdf(lower) - pdf(upper)) / z
    var = 1.0 + (lower * pdf(lower) - upper * pdf(upper)) / z - mean * mean
    return math.sqrt(var)


# Bounds (in units of the pre-truncation stddev) used by variance_scaling's truncated normal, and
# the stddev of N(0, 1) cut there (0.8796...): dividing by it restores the target variance.
_TRUNCATION = 2.0
_TRUNCATED_STD = _standard_truncated_std(-_TRUNCATION, _TRUNCATION)


def variance_scaling(
    scale: float, mode: str = "fan_in", distribution: str = "truncated_normal"
) -> Initializer:
    r"""Return an initializer whose draws have variance ``scale / n``, ``n`` set by ``mode``.

    .. math::

        \operatorname{Var}[W] = \frac{\mathrm{scale}}{n}, \qquad
        n = \begin{cases}
            \mathrm{fan\_in} & \text{mode = "fan\_in"} \\
            \mathrm{fan\_out} & \text{mode = "fan\_out"} \\
            (\mathrm{fan\_in} + \mathrm{fan\_out}) / 2 & \text{mode = "fan\_avg"}
        \end{cases}

    with the fans of :func:`compute_fans`. ``fan_in`` preserves the variance of activations in the
    forward pass, ``fan_out`` that of gradients in the backward pass, ``fan_avg`` compromises (see
    the module docstring). The distribution is matched to the target variance
    :math:`v = \mathrm{scale} / n`:

    * ``"normal"``: :math:`\mathcal{N}(0, v)`;
    * ``"uniform"``: :math:`U[-a, a]` with :math:`a = \sqrt{3v}`;
    * ``"truncated_normal"``: :math:`\mathcal{N}(0, \sigma^2)` cut at :math:`\pm 2\sigma` with
      :math:`\sigma = \sqrt{v} / 0.87962566`, the denominator being the standard deviation of a
      standard normal cut at :math:`\pm 2`, so that the *truncated* draw has variance exactly
      :math:`v`.

    Args:
      scale: the numerator, ``>= 0`` (the square of PyTorch's ``gain``).
      mode: one of ``"fan_in"``, ``"fan_out"``, ``"fan_avg"``.
      distribution: one of ``"normal"``, ``"truncated_normal"``, ``"uniform"``.

    Returns:
      ``init(key, shape, dtype)``.

    Raises:
      ValueError: at factory time for a negative ``scale`` or an unknown ``mode`` or
        ``distribution``; at call time for a bad or 0-D ``shape`` or a non-float ``dtype``.

    >>> import jax, fdl
    >>> init = fdl.initializers.variance_scaling(2.0, "fan_in", "normal")
    >>> w = init(jax.random.key(0), (512, 256))
    >>> round(float(w.var()) * 512 / 2.0, 1)
    1.0

    Differs from PyTorch: ``torch.nn.init`` takes a ``gain`` multiplying the standard deviation;
    ``scale = gain**2``. Same as ``jax.nn.initializers.variance_scaling`` for its default axes.
    """
    scale = check_non_negative_finite("scale", scale)
    mode = check_choice("mode", mode, MODES)
    distribution = check_choice("distribution", distribution, DISTRIBUTIONS)

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        shape = check_shape("shape", shape)
        fan_in, fan_out = compute_fans(shape)
        out, draw = float_dtypes(dtype)
        if math.prod(shape) == 0:  # a fan is 0 only for an empty array: nothing to draw
            return jnp.zeros(shape, out)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / n
        if distribution == "normal":
            return sample_normal(key, math.sqrt(variance), 0.0, shape=shape, draw=draw, out=out)
        if distribution == "uniform":
            bound = math.sqrt(3.0 * variance)
            return sample_uniform(key, bound, shape=shape, draw=draw, out=out)
        stddev = math.sqrt(variance) / _TRUNCATED_STD
        return sample_truncated_normal(
            key, stddev, -_TRUNCATION, _TRUNCATION, shape=shape, draw=draw, out=out
        )

    return init


def glorot_normal() -> Initializer:
    r"""Glorot (Xavier) normal: :math:`W \sim \mathcal{N}\!\left(0,
    \frac{2}{\mathrm{fan\_in} + \mathrm{fan\_out}}\right)`.

    .. math::

        \operatorname{Var}[W] = \frac{2}{\mathrm{fan\_in} + \mathrm{fan\_out}}

    The harmonic compromise between preserving the forward variance (:math:`1/\mathrm{fan\_in}`)
    and the backward variance (:math:`1/\mathrm{fan\_out}`) through a linear or tanh layer.
    Equal to ``variance_scaling(1.0, "fan_avg", "normal")``. Reference: Glorot & Bengio (2010).

    >>> import jax, fdl
    >>> w = fdl.initializers.glorot_normal()(jax.random.key(0), (300, 500))
    >>> round(float(w.var()) * (300 + 500) / 2, 1)
    1.0

    Differs from PyTorch: ``torch.nn.init.xavier_normal_(gain)`` is this with ``gain = 1``.
    Differs from JAX/Flax: their ``glorot_normal`` draws a truncated normal (same variance,
    lighter tails); fdl draws the plain normal its name says.
    """
    return variance_scaling(1.0, "fan_avg", "normal")


def glorot_uniform() -> Initializer:
    r"""Glorot (Xavier) uniform: :math:`W \sim U[-a, a]`, :math:`a =
    \sqrt{6 / (\mathrm{fan\_in} + \mathrm{fan\_out})}`.

    .. math::

        \operatorname{Var}[W] = \frac{a^2}{3} = \frac{2}{\mathrm{fan\_in} + \mathrm{fan\_out}}

    The distribution proposed by Glorot & Bengio (2010); see :func:`glorot_normal` for the
    reasoning. Equal to ``variance_scaling(1.0, "fan_avg", "uniform")``.

    >>> import jax, math, fdl
    >>> w = fdl.initializers.glorot_uniform()(jax.random.key(0), (300, 500))
    >>> bool((abs(w) <= math.sqrt(6 / 800)).all())
    True

    Differs from PyTorch: ``torch.nn.init.xavier_uniform_(gain)`` is this with ``gain = 1``.
    """
    return variance_scaling(1.0, "fan_avg", "uniform")


def he_normal() -> Initializer:
    r"""He (Kaiming) normal: :math:`W \sim \mathcal{N}(0, 2 / \mathrm{fan\_in})`.

    .. math::

        \operatorname{Var}[W] = \frac{2}{\mathrm{fan\_in}}

    A ReLU zeroes half of a symmetric pre-activation, halving its second moment; the factor 2
    restores it so activations keep their scale through a deep ReLU network. Equal to
    ``variance_scaling(2.0, "fan_in", "normal")``. Reference: He et al. (2015).

    >>> import jax, fdl
    >>> w = fdl.initializers.he_normal()(jax.random.key(0), (512, 256))
    >>> round(float(w.var()) * 512 / 2, 1)
    1.0

    Differs from PyTorch: ``torch.nn.init.kaiming_normal_(w, a=0, mode="fan_in")`` gives the same
    variance, but reads ``fan_in`` from axis 1 of its ``(out, in)`` weights, whereas fdl weights
    are ``(in, out)``; for a leaky ReLU of slope ``a`` use
    ``variance_scaling(2 / (1 + a**2), "fan_in", "normal")``. Differs from JAX/Flax: their
    ``he_normal`` draws a truncated normal (same variance); fdl draws the plain normal.
    """
    return variance_scaling(2.0, "fan_in", "normal")


def he_uniform() -> Initializer:
    r"""He (Kaiming) uniform: :math:`W \sim U[-a, a]`, :math:`a = \sqrt{6 / \mathrm{fan\_in}}`.

    .. math::

        \operatorname{Var}[W] = \frac{a^2}{3} = \frac{2}{\mathrm{fan\_in}}

    See :func:`he_normal` for the reasoning. Equal to
    ``variance_scaling(2.0, "fan_in", "uniform")``. Reference: He et al. (2015).

    >>> import jax, math, fdl
    >>> w = fdl.initializers.he_uniform()(jax.random.key(0), (512, 256))
    >>> bool((abs(w) <= math.sqrt(6 / 512)).all())
    True

    Differs from PyTorch: ``torch.nn.init.kaiming_uniform_(w, a=0)`` gives the same bound, with
    ``fan_in`` read from its ``(out, in)`` layout. ``torch.nn.Linear``'s *default* init is
    ``kaiming_uniform_(a=sqrt(5))``, i.e. :math:`a = 1/\sqrt{\mathrm{fan\_in}}`, variance
    :math:`1 / (3\,\mathrm{fan\_in})`, which is neither He nor LeCun.
    """
    return variance_scaling(2.0, "fan_in", "uniform")


def lecun_normal() -> Initializer:
    r"""LeCun normal: :math:`W \sim \mathcal{N}(0, 1 / \mathrm{fan\_in})`.

    .. math::

        \operatorname{Var}[W] = \frac{1}{\mathrm{fan\_in}}

    Keeps :math:`\operatorname{Var}[xW] = \mathbb{E}[x^2]` for unit-variance inputs, the right
    choice for linear, tanh and SELU layers. Equal to ``variance_scaling(1.0, "fan_in", "normal")``.
    Reference: LeCun et al. (1998).

    >>> import jax, fdl
    >>> w = fdl.initializers.lecun_normal()(jax.random.key(0), (400, 100))
    >>> round(float(w.var()) * 400, 1)
    1.0

    Differs from JAX/Flax: their ``lecun_normal`` (Flax's default ``Dense`` kernel init) draws a
    truncated normal with the same variance; fdl draws the plain normal.
    """
    return variance_scaling(1.0, "fan_in", "normal")


def lecun_uniform() -> Initializer:
    r"""LeCun uniform: :math:`W \sim U[-a, a]`, :math:`a = \sqrt{3 / \mathrm{fan\_in}}`.

    .. math::

        \operatorname{Var}[W] = \frac{a^2}{3} = \frac{1}{\mathrm{fan\_in}}

    See :func:`lecun_normal`. Equal to ``variance_scaling(1.0, "fan_in", "uniform")``.
    Reference: LeCun et al. (1998).

    >>> import jax, math, fdl
    >>> w = fdl.initializers.lecun_uniform()(jax.random.key(0), (400, 100))
    >>> bool((abs(w) <= math.sqrt(3 / 400)).all())
    True
    """
    return variance_scaling(1.0, "fan_in", "uniform")


xavier_normal = glorot_normal
xavier_uniform = glorot_uniform
kaiming_normal = he_normal
kaiming_uniform = he_uniform
