r"""Weight initializers: choosing the variance of the first draw.

An initializer is a function ``init(key, shape, dtype=jnp.float32) -> array``. Every public name in
this module is a *factory* that returns one (the convention of ``jax.nn.initializers`` and Flax), so
all of them are passed the same way: ``w_init=fdl.initializers.he_normal()``.

Why the variance matters
------------------------
Take a dense layer :math:`y = x W` with ``x`` of shape ``(in,)`` and ``W`` of shape ``(in, out)``,
whose entries are independent with zero mean. Each output is a sum of ``fan_in`` products, so

.. math::

    \operatorname{Var}[y_j] = \mathrm{fan\_in} \cdot \operatorname{Var}[W] \cdot
    \mathbb{E}[x_i^2].

If :math:`\mathrm{fan\_in} \cdot \operatorname{Var}[W]` is above 1 the activations grow
geometrically with depth, below 1 they vanish; either way a deep network stops training. Keeping it
at exactly 1 gives **LeCun** initialization, :math:`\operatorname{Var}[W] = 1 / \mathrm{fan\_in}`
(LeCun et al., 1998). After a ReLU only half of a symmetric pre-activation survives,
:math:`\mathbb{E}[\mathrm{relu}(z)^2] = \operatorname{Var}[z] / 2`, so the factor 2 must be put
back: **He** initialization, :math:`\operatorname{Var}[W] = 2 / \mathrm{fan\_in}` (He et al., 2015).

The backward pass runs the same argument through :math:`W^\top`: the gradient with respect to ``x``
sums ``fan_out`` terms, and preserving its variance asks for
:math:`\operatorname{Var}[W] = 1 / \mathrm{fan\_out}`. **Glorot** (Xavier) initialization takes the
compromise :math:`\operatorname{Var}[W] = 2 / (\mathrm{fan\_in} + \mathrm{fan\_out})`
(Glorot & Bengio, 2010). All three are :func:`variance_scaling` with

.. math::

    \operatorname{Var}[W] = \frac{\mathrm{scale}}{n}, \qquad
    n \in \{\mathrm{fan\_in},\ \mathrm{fan\_out},\ (\mathrm{fan\_in} + \mathrm{fan\_out}) / 2\}.

Only the variance is fixed; the distribution is a free choice, matched to the target as follows:

* normal: :math:`\mathcal{N}(0, \sigma^2)` with :math:`\sigma = \sqrt{\mathrm{target}}`;
* uniform: :math:`U[-a, a]` has variance :math:`a^2 / 3`, so :math:`a = \sqrt{3\,\mathrm{target}}`;
* truncated normal: a normal cut at :math:`\pm 2\sigma` has variance :math:`0.7737\,\sigma^2`, so
  :math:`\sigma` is divided by :math:`0.8796` to make the variance of the *truncated* draw equal the
  target.

**Orthogonal** initialization (Saxe et al., 2014) goes further than matching a variance: every
singular value of ``W`` equals ``scale``, so a linear layer preserves the norm of *every* input
(and of every back-propagated gradient), not just the average one.

Shapes and fans
---------------
fdl stores a dense weight as ``(in, out)`` and a convolution kernel as ``(*receptive, in, out)``
(HWIO), so the fans of :func:`compute_fans` are read from the last two axes and multiplied by the
receptive-field size.

Dtypes
------
Random draws are made in float32 (float64 when that is requested and ``jax_enable_x64`` is on) and
cast to the requested dtype afterwards, so a bfloat16 parameter is the rounding of the float32 one
drawn with the same key. :func:`zeros`, :func:`ones` and :func:`constant` accept any dtype; the
random initializers need a floating-point one.

References
----------
* LeCun, Bottou, Orr & Müller (1998). Efficient BackProp. In *Neural Networks: Tricks of the Trade*.
* Glorot & Bengio (2010). Understanding the difficulty of training deep feedforward neural
  networks. AISTATS.
* He, Zhang, Ren & Sun (2015). Delving deep into rectifiers: surpassing human-level performance
  on ImageNet classification. ICCV.
* Saxe, McClelland & Ganguli (2014). Exact solutions to the nonlinear dynamics of learning in deep
  linear neural networks. ICLR.
* Mezzadri (2007). How to generate random matrices from the classical compact groups. Notices of
  the AMS 54(5).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from fdl._checks import check_choice, check_finite, check_non_negative_finite, check_shape

__all__ = [
    "Initializer",
    "compute_fans",
    "zeros",
    "ones",
    "constant",
    "normal",
    "uniform",
    "truncated_normal",
    "variance_scaling",
    "glorot_normal",
    "glorot_uniform",
    "xavier_normal",
    "xavier_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "orthogonal",
]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")


class Initializer(Protocol):
    """``init(key, shape, dtype=jnp.float32) -> array`` of exactly that ``shape`` and ``dtype``."""

    def __call__(
        self, key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32
    ) -> jax.Array: ...


# --------------------------------------------------------------------------------------------
# Validation and dtype helpers (static Python values only).


def _float_dtypes(dtype: DTypeLike) -> tuple[np.dtype, np.dtype]:
    """Return ``(output dtype, dtype to draw in)``; formats under 32 bits draw in float32."""
    out = jnp.dtype(dtype)
    if not jnp.issubdtype(out, jnp.floating):
        raise ValueError(
            f"`dtype` must be a floating-point dtype for a random initializer, got {out.name}"
        )
    draw = out if jnp.finfo(out).bits >= 32 else jnp.dtype(jnp.float32)
    return out, draw


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


# --------------------------------------------------------------------------------------------
# Samplers, jitted with shape and dtypes static: drawing, scaling and casting compile once per shape
# as one computation instead of once per eager operation. Scales and bounds are traced, so
# initializers that differ only in those share the compiled code. I.i.d. draws are made as a flat
# vector and reshaped (the same distribution): XLA compiles the 1-D draw about twice as fast as a
# 4-D one.


@functools.partial(jax.jit, static_argnames=("shape", "draw", "out"))
def _sample_normal(
    key: jax.Array,
    stddev: float,
    mean: float,
    *,
    shape: tuple[int, ...],
    draw: np.dtype,
    out: np.dtype,
) -> jax.Array:
    z = jax.random.normal(key, (math.prod(shape),), draw).reshape(shape)  # (size,) -> shape
    return (mean + stddev * z).astype(out)


@functools.partial(jax.jit, static_argnames=("shape", "draw", "out"))
def _sample_uniform(
    key: jax.Array, bound: float, *, shape: tuple[int, ...], draw: np.dtype, out: np.dtype
) -> jax.Array:
    u = jax.random.uniform(key, (math.prod(shape),), draw, minval=-bound, maxval=bound)  # (size,)
    return u.reshape(shape).astype(out)


@functools.partial(jax.jit, static_argnames=("shape", "draw", "out"))
def _sample_truncated_normal(
    key: jax.Array,
    stddev: float,
    lower: float,
    upper: float,
    *,
    shape: tuple[int, ...],
    draw: np.dtype,
    out: np.dtype,
) -> jax.Array:
    z = jax.random.truncated_normal(key, lower, upper, (math.prod(shape),), draw)  # (size,)
    return (stddev * z.reshape(shape)).astype(out)


@functools.partial(jax.jit, static_argnames=("tall", "short", "dtype"))
def _haar_columns(key: jax.Array, *, tall: int, short: int, dtype: np.dtype) -> jax.Array:
    """A Haar-random ``(tall, short)`` matrix with orthonormal columns (``tall >= short``).

    Kept apart from the layout below so that every weight shape flattening to the same matrix
    shares one compilation of the QR factorization, the slowest part to compile.
    """
    a = jax.random.normal(key, (tall, short), dtype)  # (m, k)
    q, r = jnp.linalg.qr(a)  # q: (m, k), r: (k, k)
    signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(dtype)  # (k,)
    return q * signs[None, :]  # (m, k)


@functools.partial(jax.jit, static_argnames=("shape", "axis", "out"))
def _orthogonal_layout(
    q: jax.Array, scale: float, *, shape: tuple[int, ...], axis: int, out: np.dtype
) -> jax.Array:
    """Scale the ``(m, k)`` matrix ``q`` and lay it out as ``shape``, columns on ``axis``."""
    cols = shape[axis]
    other = shape[:axis] + shape[axis + 1 :]
    rows = math.prod(other)
    if rows < cols:
        q = q.T  # (rows, cols)
    w = scale * q.reshape(other + (cols,))  # (*other, cols)
    return jnp.moveaxis(w, -1, axis).astype(out)  # shape


# --------------------------------------------------------------------------------------------
# Fans.


def compute_fans(shape: Sequence[int]) -> tuple[int, int]:
    r"""Return ``(fan_in, fan_out)`` of a weight of shape ``shape``.

    .. math::

        \mathrm{fan\_in} = \mathrm{in} \cdot \prod \mathrm{receptive}, \qquad
        \mathrm{fan\_out} = \mathrm{out} \cdot \prod \mathrm{receptive}

    for a shape ``(*receptive, in, out)``: a dense weight ``(in, out)`` has an empty receptive
    field, a 2-D convolution kernel is ``(kh, kw, in, out)``. ``fan_in`` is the number of inputs
    that feed one output unit, ``fan_out`` the number of outputs one input unit feeds. A 1-D shape
    ``(n,)`` (a bias, a scale vector) has ``fan_in = fan_out = n``.

    Args:
      shape: the weight's shape, at least one dimension.

    Returns:
      ``(fan_in, fan_out)`` as Python ints.

    Raises:
      ValueError: if ``shape`` is not a tuple of non-negative ints or is 0-D.

    >>> from fdl.initializers import compute_fans
    >>> compute_fans((64, 10))
    (64, 10)
    >>> compute_fans((3, 3, 16, 32))
    (144, 288)

    Differs from PyTorch: ``torch.nn.init`` reads the fans of an ``(out, in, *receptive)`` tensor,
    so the same layer has the same fans but they come from the other axes.
    """
    shape = check_shape("shape", shape)
    if len(shape) == 0:
        raise ValueError(
            "`shape` must have at least one dimension to define fan_in and fan_out, got ()"
        )
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


# --------------------------------------------------------------------------------------------
# Constant initializers.


def constant(value: float) -> Initializer:
    r"""Return an initializer that fills the array with ``value``.

    .. math:: W_{ij} = \mathrm{value}, \qquad \mathbb{E}[W] = \mathrm{value}, \qquad
              \operatorname{Var}[W] = 0

    Args:
      value: the fill value, a real scalar.

    Returns:
      ``init(key, shape, dtype)``; ``key`` is ignored and any dtype is accepted.

    Raises:
      ValueError: at factory time if ``value`` is not a finite real scalar; at call time for a bad
        ``shape``.

    >>> import jax, fdl
    >>> fdl.initializers.constant(0.5)(jax.random.key(0), (2,)).tolist()
    [0.5, 0.5]
    """
    value = check_finite("value", value)

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        del key  # deterministic
        return jnp.full(check_shape("shape", shape), value, dtype)

    return init


def zeros() -> Initializer:
    r"""Return an initializer that fills the array with 0 (the usual bias initializer).

    .. math:: W_{ij} = 0, \qquad \mathbb{E}[W] = 0, \qquad \operatorname{Var}[W] = 0

    >>> import jax, fdl
    >>> fdl.initializers.zeros()(jax.random.key(0), (2, 2)).sum().item()
    0.0
    """
    return constant(0.0)


def ones() -> Initializer:
    r"""Return an initializer that fills the array with 1 (the usual normalization scale).

    .. math:: W_{ij} = 1, \qquad \mathbb{E}[W] = 1, \qquad \operatorname{Var}[W] = 0

    >>> import jax, fdl
    >>> fdl.initializers.ones()(jax.random.key(0), (3,)).tolist()
    [1.0, 1.0, 1.0]
    """
    return constant(1.0)


# --------------------------------------------------------------------------------------------
# Fixed-scale random initializers.


def normal(stddev: float = 1e-2, mean: float = 0.0) -> Initializer:
    r"""Return an initializer drawing i.i.d. :math:`W_{ij} \sim \mathcal{N}(\mathrm{mean},
    \mathrm{stddev}^2)`.

    .. math::

        \mathbb{E}[W] = \mathrm{mean}, \qquad \operatorname{Var}[W] = \mathrm{stddev}^2

    The scale does not depend on the shape; prefer :func:`variance_scaling` and its aliases for
    weights, whose right scale does.

    Args:
      stddev: standard deviation, ``>= 0``.
      mean: mean of the draw.

    Returns:
      ``init(key, shape, dtype)``.

    Raises:
      ValueError: at factory time for a negative or non-finite ``stddev`` or ``mean``; at call time
        for a bad ``shape`` or a non-float ``dtype``.

    >>> import jax, fdl
    >>> w = fdl.initializers.normal(stddev=0.1)(jax.random.key(0), (300, 300))
    >>> round(float(w.std()), 2)
    0.1

    Differs from PyTorch: ``torch.nn.init.normal_`` defaults to ``std=1``; fdl (like JAX) to 0.01.
    """
    stddev = check_non_negative_finite("stddev", stddev)
    mean = check_finite("mean", mean)

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        shape = check_shape("shape", shape)
        out, draw = _float_dtypes(dtype)
        return _sample_normal(key, stddev, mean, shape=shape, draw=draw, out=out)

    return init


def uniform(scale: float = 1e-2) -> Initializer:
    r"""Return an initializer drawing i.i.d. :math:`W_{ij} \sim U[-\mathrm{scale}, \mathrm{scale}]`.

    .. math::

        \operatorname{Var}[W] = \frac{\mathrm{scale}^2}{3}

    (the variance of :math:`U[-a, a]` is :math:`\frac{1}{2a}\int_{-a}^{a} w^2\,dw = a^2/3`).

    Args:
      scale: half-width of the interval, ``>= 0``.

    Returns:
      ``init(key, shape, dtype)``; every value satisfies ``-scale <= w <= scale``.

    Raises:
      ValueError: at factory time for a negative or non-finite ``scale``; at call time for a bad
        ``shape`` or a non-float ``dtype``.

    >>> import jax, fdl
    >>> w = fdl.initializers.uniform(scale=0.5)(jax.random.key(0), (1000,))
    >>> bool((abs(w) <= 0.5).all())
    True

    Differs from PyTorch: ``torch.nn.init.uniform_(a=0, b=1)`` takes the two ends and defaults to
    ``[0, 1)``; fdl (like JAX) takes a symmetric half-width.
    """
    scale = check_non_negative_finite("scale", scale)

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        shape = check_shape("shape", shape)
        out, draw = _float_dtypes(dtype)
        return _sample_uniform(key, scale, shape=shape, draw=draw, out=out)

    return init


def truncated_normal(stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0) -> Initializer:
    r"""Return an initializer drawing :math:`\mathrm{stddev} \cdot z` with :math:`z \sim
    \mathcal{N}(0, 1)` conditioned on :math:`\mathrm{lower} < z < \mathrm{upper}`.

    The bounds are in units of ``stddev``: the values lie in
    ``(lower * stddev, upper * stddev)``. ``stddev`` is the scale *before* truncation, so the
    variance of the draw is **smaller** than :math:`\mathrm{stddev}^2`. With
    :math:`\varphi, \Phi` the standard normal density and CDF, :math:`Z = \Phi(u) - \Phi(l)`,
    :math:`l = \mathrm{lower}`, :math:`u = \mathrm{upper}`:

    .. math::

        \operatorname{Var}[W] = \mathrm{stddev}^2 \left(1 + \frac{l\varphi(l) - u\varphi(u)}{Z}
        - \left(\frac{\varphi(l) - \varphi(u)}{Z}\right)^2\right)

    which is :math:`0.7737\,\mathrm{stddev}^2` for the default :math:`\pm 2`. Use
    ``variance_scaling(..., distribution="truncated_normal")`` to have the variance corrected.

    Args:
      stddev: scale of the normal before truncation, ``>= 0``.
      lower: lower bound, in units of ``stddev``.
      upper: upper bound, in units of ``stddev``; must exceed ``lower``.

    Returns:
      ``init(key, shape, dtype)``.

    Raises:
      ValueError: at factory time for a negative ``stddev``, non-finite bounds or
        ``lower >= upper``; at call time for a bad ``shape`` or a non-float ``dtype``.

    >>> import jax, fdl
    >>> w = fdl.initializers.truncated_normal(stddev=1.0)(jax.random.key(0), (1000,))
    >>> bool((abs(w) <= 2.0).all())
    True

    Differs from PyTorch: ``torch.nn.init.trunc_normal_(mean, std, a, b)`` takes absolute cut-offs
    ``a, b`` (default ``[-2, 2]`` whatever ``std`` is), not multiples of ``std``.
    """
    stddev = check_non_negative_finite("stddev", stddev)
    lower = check_finite("lower", lower)
    upper = check_finite("upper", upper)
    if not lower < upper:
        raise ValueError(f"`lower` must be less than `upper`, got lower={lower}, upper={upper}")

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        shape = check_shape("shape", shape)
        out, draw = _float_dtypes(dtype)
        return _sample_truncated_normal(key, stddev, lower, upper, shape=shape, draw=draw, out=out)

    return init


# --------------------------------------------------------------------------------------------
# Shape-aware initializers.


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
        out, draw = _float_dtypes(dtype)
        if math.prod(shape) == 0:  # a fan is 0 only for an empty array: nothing to draw
            return jnp.zeros(shape, out)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / n
        if distribution == "normal":
            return _sample_normal(key, math.sqrt(variance), 0.0, shape=shape, draw=draw, out=out)
        if distribution == "uniform":
            bound = math.sqrt(3.0 * variance)
            return _sample_uniform(key, bound, shape=shape, draw=draw, out=out)
        stddev = math.sqrt(variance) / _TRUNCATED_STD
        return _sample_truncated_normal(
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


def orthogonal(scale: float = 1.0, column_axis: int = -1) -> Initializer:
    r"""Return an initializer drawing a (scaled) uniformly random orthogonal matrix.

    The array is viewed as a matrix :math:`W` of shape ``(rows, cols)``, where ``cols`` is the
    size of ``column_axis`` and ``rows`` the product of all other axes (so a kernel
    ``(kh, kw, in, out)`` is ``(kh*kw*in, out)``). Then

    .. math::

        W^\top W = \mathrm{scale}^2 I_{\mathrm{cols}} \ \ (\mathrm{rows} \ge \mathrm{cols}),
        \qquad
        W W^\top = \mathrm{scale}^2 I_{\mathrm{rows}} \ \ (\mathrm{rows} < \mathrm{cols}):

    every singular value equals ``scale``, so a linear layer scales the norm of every input (the
    smaller side) by exactly ``scale``, and gradients likewise on the way back. Saxe et al. (2014)
    show this gives depth-independent learning times in deep linear networks.

    Draw: :math:`A \in \mathbb{R}^{m \times k}` with i.i.d. :math:`\mathcal{N}(0, 1)` entries,
    :math:`m = \max(\mathrm{rows}, \mathrm{cols})`, :math:`k = \min(\ldots)`; factor :math:`A = QR`;
    set :math:`Q \leftarrow Q\,\operatorname{diag}(\operatorname{sign} R_{ii})`. The sign
    correction makes the factorization unique, which makes :math:`Q` Haar-distributed (uniform over
    matrices with orthonormal columns); without it the distribution depends on the QR routine's
    sign convention (Mezzadri, 2007). :math:`W = \mathrm{scale} \cdot Q` (or :math:`Q^\top` when
    ``rows < cols``). Each entry has :math:`\operatorname{Var}[W_{ij}] = \mathrm{scale}^2 / m`.

    Args:
      scale: the common singular value, ``>= 0`` (PyTorch's ``gain``).
      column_axis: the axis holding the columns; ``-1`` (the output axis of fdl weights) by default.

    Returns:
      ``init(key, shape, dtype)`` for shapes with at least two dimensions.

    Raises:
      ValueError: at factory time for a negative ``scale`` or a non-int ``column_axis``; at call
        time for a bad shape, a shape with fewer than 2 dimensions, a ``column_axis`` outside it, or
        a non-float ``dtype``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> w = fdl.initializers.orthogonal()(jax.random.key(0), (6, 3))
    >>> bool(jnp.allclose(w.T @ w, jnp.eye(3), atol=1e-5))
    True

    Differs from PyTorch: ``torch.nn.init.orthogonal_(w, gain)`` flattens every axis after the
    first, treating axis 0 (its output axis) as rows; fdl flattens every axis except
    ``column_axis`` (the output axis), the same matrix in fdl's ``(in, out)`` layout.
    """
    scale = check_non_negative_finite("scale", scale)
    if isinstance(column_axis, bool) or not isinstance(column_axis, (int, np.integer)):
        raise ValueError(f"`column_axis` must be an int, got {column_axis!r}")
    column_axis = int(column_axis)

    def init(key: jax.Array, shape: Sequence[int], dtype: DTypeLike = jnp.float32) -> jax.Array:
        shape = check_shape("shape", shape)
        out, draw = _float_dtypes(dtype)
        ndim = len(shape)
        if ndim < 2:
            raise ValueError(
                "`shape` must have at least 2 dimensions for an orthogonal initializer, "
                f"got {shape}"
            )
        if not -ndim <= column_axis < ndim:
            raise ValueError(
                f"`column_axis` must be in [{-ndim}, {ndim}) for shape {shape}, got {column_axis}"
            )
        if math.prod(shape) == 0:
            return jnp.zeros(shape, out)
        axis = column_axis % ndim
        cols = shape[axis]
        rows = math.prod(shape) // cols
        q = _haar_columns(key, tall=max(rows, cols), short=min(rows, cols), dtype=draw)  # (m, k)
        return _orthogonal_layout(q, scale, shape=shape, axis=axis, out=out)

    return init
