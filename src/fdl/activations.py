r"""Activation functions: the nonlinearities between affine layers.

A stack of affine maps is still one affine map; an elementwise nonlinearity :math:`\phi` between
them is what lets a network bend. Training only ever sees an activation through two numbers per
input, its value :math:`\phi(x)` and its slope :math:`\phi'(x)`, so every function below states
both. The slope explains most of the folklore:

* **Saturation.** :func:`sigmoid` and :func:`tanh` flatten out for large :math:`|x|`, so
  :math:`\phi'(x) \to 0` and gradients vanish through deep stacks.
* **Rectifiers.** :func:`relu` has slope exactly 1 for :math:`x > 0`, so gradients pass unchanged,
  but a unit whose input stays negative has slope 0 and stops learning ("dead ReLU").
  :func:`leaky_relu` and :func:`elu` keep a nonzero slope on the negative side.
* **Smooth rectifiers.** :func:`softplus`, :func:`gelu` and :func:`silu` follow ReLU for large
  :math:`|x|` but are differentiable at 0; GELU and SiLU dip slightly below zero.
* **Normalisers.** :func:`softmax` and :func:`log_softmax` act on a whole axis rather than one
  entry: they turn a vector of scores (logits) into a probability distribution (or its log).

Conventions shared by every function here:

* **Kinks.** Where :math:`\phi` is not differentiable (``x = 0`` for ReLU, leaky ReLU and ELU),
  ``jax.grad`` returns the left derivative, the slope of the ``x <= 0`` branch, as PyTorch does.
* **Stability.** Values and gradients stay finite for inputs as large as ``±1e4``. Branches that
  would overflow are clamped before they are evaluated (the "double ``where``" trick), because
  ``jnp.where`` differentiates *both* branches and ``0 * inf`` is NaN; softmax subtracts the
  (stop-gradient) maximum before exponentiating.
* **Dtypes.** The output has the input's dtype (``bfloat16`` in, ``bfloat16`` out); all internal
  constants are Python scalars, which JAX treats as weakly typed, so nothing is upcast.

Example:
    >>> import jax.numpy as jnp
    >>> from fdl import activations
    >>> print(activations.relu(jnp.array([-1.0, 0.0, 2.0])).tolist())
    [0.0, 0.0, 2.0]

References:
    Goodfellow, Bengio and Courville, *Deep Learning* (2016), section 6.3 "Hidden Units".
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erfc
from jax.typing import ArrayLike

__all__ = [
    "elu",
    "gelu",
    "leaky_relu",
    "log_softmax",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh",
]

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_CUBIC = 0.044715  # Hendrycks & Gimpel's fitted coefficient of the tanh approximation.


def relu(x: ArrayLike) -> jax.Array:
    r"""Rectified linear unit, elementwise.

    .. math::

        \operatorname{relu}(x) = \max(x, 0), \qquad
        \operatorname{relu}'(x) = \begin{cases} 1 & x > 0 \\ 0 & x \le 0 \end{cases}

    Args:
        x: input of any shape ``(...)``.

    Returns:
        ``(...)``, same shape and dtype as ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> print(relu(jnp.array([-2.0, 0.0, 3.0])).tolist())
        [0.0, 0.0, 3.0]

    References:
        Nair and Hinton, "Rectified Linear Units Improve Restricted Boltzmann Machines", ICML 2010.

    Differs from optax / PyTorch:
        Same values, NaN included (a NaN input stays NaN); the derivative at 0 is 0, as in
        ``jax.nn.relu`` and ``torch.relu`` (``jnp.maximum(x, 0)`` alone would give 0.5 there).
    """
    x = jnp.asarray(x)
    # `x <= 0` is False for NaN, so NaN passes through (as in jax.nn.relu and torch.relu)
    return jnp.where(x <= 0, 0, x)


def leaky_relu(x: ArrayLike, negative_slope: float = 0.01) -> jax.Array:
    r"""Leaky ReLU: a rectifier with a small slope ``negative_slope`` for negative inputs.

    .. math::

        \operatorname{leaky\_relu}(x) = \begin{cases} x & x > 0 \\
            \text{negative\_slope} \cdot x & x \le 0 \end{cases}, \qquad
        \operatorname{leaky\_relu}'(x) = \begin{cases} 1 & x > 0 \\
            \text{negative\_slope} & x \le 0 \end{cases}

    Args:
        x: input of any shape ``(...)``.
        negative_slope: slope for ``x <= 0``; usually a small positive number.

    Returns:
        ``(...)``, same shape and dtype as ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> print(leaky_relu(jnp.array([-2.0, 3.0]), negative_slope=0.5).tolist())
        [-1.0, 3.0]

    References:
        Maas, Hannun and Ng, "Rectifier Nonlinearities Improve Neural Network Acoustic Models",
        ICML Workshop on Deep Learning for Audio, Speech and Language Processing, 2013.

    Differs from optax / PyTorch:
        The derivative at 0 is ``negative_slope`` (left derivative), as in PyTorch;
        ``jax.nn.leaky_relu`` returns 1 there.
    """
    x = jnp.asarray(x)
    return jnp.where(x > 0, x, negative_slope * x)


def elu(x: ArrayLike, alpha: float = 1.0) -> jax.Array:
    r"""Exponential linear unit: identity for positive inputs, a saturating exponential below.

    .. math::

        \operatorname{elu}(x) = \begin{cases} x & x > 0 \\
            \alpha\,(e^{x} - 1) & x \le 0 \end{cases}, \qquad
        \operatorname{elu}'(x) = \begin{cases} 1 & x > 0 \\
            \alpha\, e^{x} & x \le 0 \end{cases}

    The negative branch is evaluated on ``min(x, 0)`` so that ``e^x`` never overflows for large
    positive ``x``; without that clamp its (discarded) gradient ``inf`` would turn into NaN.

    Args:
        x: input of any shape ``(...)``.
        alpha: value the function saturates to (as ``-alpha``) for ``x -> -inf``.

    Returns:
        ``(...)``, same shape and dtype as ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> print([round(v, 4) for v in elu(jnp.array([-1.0, 2.0])).tolist()])
        [-0.6321, 2.0]

    References:
        Clevert, Unterthiner and Hochreiter, "Fast and Accurate Deep Network Learning by
        Exponential Linear Units (ELUs)", ICLR 2016.

    Differs from optax / PyTorch:
        Same values; the derivative at 0 is ``alpha`` (left derivative), as in PyTorch.
    """
    x = jnp.asarray(x)
    positive = x > 0
    safe_x = jnp.where(positive, 0, x)  # clamp: the exp branch never sees large x
    return jnp.where(positive, x, alpha * jnp.expm1(safe_x))


def gelu(x: ArrayLike, approximate: bool = False) -> jax.Array:
    r"""Gaussian error linear unit: ``x`` weighted by the standard normal CDF :math:`\Phi(x)`.

    Exact form (``approximate=False``), with :math:`\varphi` the standard normal density:

    .. math::

        \operatorname{gelu}(x) = x\,\Phi(x)
            = \tfrac12\, x \left(1 + \operatorname{erf}\!\left(x/\sqrt2\right)\right)
            = \tfrac12\, x \operatorname{erfc}\!\left(-x/\sqrt2\right), \qquad
        \operatorname{gelu}'(x) = \Phi(x) + x\,\varphi(x)
            = \Phi(x) + \frac{x}{\sqrt{2\pi}}\, e^{-x^2/2}

    The ``erfc`` form is the one computed: for negative ``x``, :math:`1 + \operatorname{erf}`
    cancels to 0 in floating point (``gelu(-6)`` would be 0 instead of :math:`-5.9 \cdot
    10^{-9}`), while ``erfc`` of a large argument keeps full relative precision.

    Tanh approximation (``approximate=True``), with
    :math:`u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)` and :math:`t = \tanh u`:

    .. math::

        \operatorname{gelu}(x) \approx \tfrac12\, x\,(1 + t), \qquad
        \operatorname{gelu}'(x) \approx \tfrac12\,(1 + t)
            + \tfrac12\, x\,(1 - t^2)\,\sqrt{2/\pi}\,(1 + 3 \cdot 0.044715\,x^2)

    Args:
        x: input of any shape ``(...)``.
        approximate: use the tanh approximation instead of the exact ``erf`` form.

    Returns:
        ``(...)``, same shape and dtype as ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> print([round(v, 4) for v in gelu(jnp.array([-1.0, 1.0])).tolist()])
        [-0.1587, 0.8413]

    References:
        Hendrycks and Gimpel, "Gaussian Error Linear Units (GELUs)", arXiv:1606.08415, 2016.

    Differs from optax / PyTorch:
        The default is the exact form, as in ``torch.nn.functional.gelu`` (whose
        ``approximate="tanh"`` matches ``approximate=True`` here); ``jax.nn.gelu`` defaults to
        the tanh approximation.
    """
    x = jnp.asarray(x)
    if approximate:
        inner = _SQRT_2_OVER_PI * (x + _GELU_CUBIC * x * x * x)
        return 0.5 * x * (1 + jnp.tanh(inner))
    return 0.5 * x * erfc(-x / _SQRT_2)


def sigmoid(x: ArrayLike) -> jax.Array:
    r"""Logistic sigmoid, squashing the real line into :math:`(0, 1)`.

    .. math::

        \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \sigma'(x) = \sigma(x)\,(1 - \sigma(x))

    Computed with ``jax.lax.logistic``, which never overflows: ``sigmoid(-1e4)`` is exactly 0.

    Args:
        x: input of any shape ``(...)``.

    Returns:
        ``(...)``, same shape and dtype as ``x``, with values in ``[0, 1]``.

    Example:
        >>> import jax.numpy as jnp
        >>> print(sigmoid(jnp.array([0.0])).tolist())
        [0.5]

    References:
        Goodfellow, Bengio and Courville, *Deep Learning* (2016), section 6.2.2.2.
    """
    return jax.lax.logistic(jnp.asarray(x))


def tanh(x: ArrayLike) -> jax.Array:
    r"""Hyperbolic tangent, squashing the real line into :math:`(-1, 1)`.

    .. math::

        \tanh(x) = \frac{e^{x} - e^{-x}}{e^{x} + e^{-x}} = 2\sigma(2x) - 1, \qquad
        \tanh'(x) = 1 - \tanh^2(x)

    Args:
        x: input of any shape ``(...)``.

    Returns:
        ``(...)``, same shape and dtype as ``x``, with values in ``[-1, 1]``.

    Example:
        >>> import jax.numpy as jnp
        >>> print(tanh(jnp.array([0.0])).tolist())
        [0.0]

    References:
        LeCun, Bottou, Orr and Müller, "Efficient BackProp", in *Neural Networks: Tricks of the
        Trade*, 1998 (why a zero-centred squashing function trains better than the sigmoid).
    """
    return jnp.tanh(jnp.asarray(x))


def softmax(x: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Softmax along ``axis``: exponentiate and normalise into a probability distribution.

    For a vector ``x`` along ``axis``, with :math:`m = \max_j x_j` (a constant shift that cancels
    in the ratio and keeps every exponent :math:`\le 0`):

    .. math::

        \operatorname{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad
        \frac{\partial\, \operatorname{softmax}(x)_i}{\partial x_k}
            = \operatorname{softmax}(x)_i \left(\delta_{ik} - \operatorname{softmax}(x)_k\right)

    The shift :math:`m` is wrapped in ``stop_gradient``: the result does not depend on it, so its
    gradient contribution is exactly zero and need not be traced.

    Args:
        x: input of any shape ``(..., C, ...)``; entries should be finite.
        axis: the axis of size ``C`` to normalise over.

    Returns:
        Same shape and dtype as ``x``; non-negative and summing to 1 along ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> print([round(v, 4) for v in softmax(jnp.array([1.0, 2.0, 3.0])).tolist()])
        [0.09, 0.2447, 0.6652]

    References:
        Bridle, "Probabilistic Interpretation of Feedforward Classification Network Outputs,
        with Relationships to Statistical Pattern Recognition", 1990.
        Goodfellow, Bengio and Courville, *Deep Learning* (2016), section 6.2.2.3.

    Differs from optax / PyTorch:
        No ``where``/mask argument (``jax.nn.softmax`` has one); mask by setting logits to a
        large negative finite number instead.
    """
    x = jnp.asarray(x)
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    unnormalized = jnp.exp(shifted)
    return unnormalized / jnp.sum(unnormalized, axis=axis, keepdims=True)


def log_softmax(x: ArrayLike, axis: int = -1) -> jax.Array:
    r"""Log of the softmax along ``axis``, computed without forming the softmax.

    With :math:`m = \max_j x_j` (held constant by ``stop_gradient``):

    .. math::

        \operatorname{log\_softmax}(x)_i = (x_i - m) - \log \sum_j e^{x_j - m}, \qquad
        \frac{\partial\, \operatorname{log\_softmax}(x)_i}{\partial x_k}
            = \delta_{ik} - \operatorname{softmax}(x)_k

    Subtracting :math:`m` makes the largest exponent :math:`e^0 = 1`, so the sum lies in
    :math:`[1, C]` and its log can neither overflow nor be :math:`\log 0`; this is the
    log-sum-exp trick.

    Args:
        x: input of any shape ``(..., C, ...)``; entries should be finite.
        axis: the axis of size ``C`` to normalise over.

    Returns:
        Same shape and dtype as ``x``; ``exp`` of it sums to 1 along ``axis``.

    Example:
        >>> import jax.numpy as jnp
        >>> print([round(v, 4) for v in log_softmax(jnp.array([0.0, 0.0])).tolist()])
        [-0.6931, -0.6931]

    References:
        Goodfellow, Bengio and Courville, *Deep Learning* (2016), section 4.1 (the log-sum-exp
        trick) and section 6.2.2.3.
    """
    x = jnp.asarray(x)
    shifted = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))


def softplus(x: ArrayLike) -> jax.Array:
    r"""Softplus: a smooth ReLU, the log-partition of a binary choice.

    .. math::

        \operatorname{softplus}(x) = \log(1 + e^{x})
            = \max(x, 0) + \log\!\left(1 + e^{-|x|}\right), \qquad
        \operatorname{softplus}'(x) = \sigma(x)

    Computed as ``logaddexp(x, 0)``, the second (overflow-free) form.

    Args:
        x: input of any shape ``(...)``.

    Returns:
        ``(...)``, same shape and dtype as ``x``, with positive values.

    Example:
        >>> import jax.numpy as jnp
        >>> print([round(v, 4) for v in softplus(jnp.array([0.0, 1.0])).tolist()])
        [0.6931, 1.3133]

    References:
        Dugas, Bengio, Bélisle, Nadeau and Garcia, "Incorporating Second-Order Functional
        Knowledge for Better Option Pricing", NeurIPS 2000.

    Differs from optax / PyTorch:
        No ``beta``/``threshold`` arguments (``torch.nn.functional.softplus`` has them and
        switches to the identity above ``threshold``); this version is exact everywhere.
    """
    return jnp.logaddexp(jnp.asarray(x), 0)


def silu(x: ArrayLike) -> jax.Array:
    r"""Sigmoid linear unit (also "swish"): ``x`` gated by its own sigmoid.

    .. math::

        \operatorname{silu}(x) = x\,\sigma(x), \qquad
        \operatorname{silu}'(x) = \sigma(x)\,\bigl(1 + x\,(1 - \sigma(x))\bigr)

    Args:
        x: input of any shape ``(...)``.

    Returns:
        ``(...)``, same shape and dtype as ``x``.

    Example:
        >>> import jax.numpy as jnp
        >>> print([round(v, 4) for v in silu(jnp.array([-1.0, 1.0])).tolist()])
        [-0.2689, 0.7311]

    References:
        Elfwing, Uchibe and Doya, "Sigmoid-Weighted Linear Units for Neural Network Function
        Approximation in Reinforcement Learning", Neural Networks, 2018.
        Ramachandran, Zoph and Le, "Searching for Activation Functions", arXiv:1710.05941, 2017.
    """
    x = jnp.asarray(x)
    return x * jax.lax.logistic(x)
