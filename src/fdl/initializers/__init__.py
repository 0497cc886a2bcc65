r"""Weight initializers: choosing the variance of the first draw.

An initializer is a function ``init(key, shape, dtype=jnp.float32) -> array``. Every public name in
this package is a *factory* that returns one (the convention of ``jax.nn.initializers`` and
Flax), so all of them are passed the same way: ``w_init=fdl.initializers.he_normal()``.

One module per family: :mod:`~fdl.initializers.base` (the contract and :func:`compute_fans`),
:mod:`~fdl.initializers.constants`, :mod:`~fdl.initializers.distributions` (fixed-scale random
draws and orthogonal matrices) and :mod:`~fdl.initializers.scaling` (variance scaling: Glorot,
He, LeCun).

**Why the variance matters.**
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

**Shapes and fans.**
fdl stores a dense weight as ``(in, out)`` and a convolution kernel as ``(*receptive, in, out)``
(HWIO), so the fans of :func:`compute_fans` are read from the last two axes and multiplied by the
receptive-field size.

**Dtypes.**
Random draws are made in float32 (float64 when that is requested and ``jax_enable_x64`` is on) and
cast to the requested dtype afterwards, so a bfloat16 parameter is the rounding of the float32 one
drawn with the same key. :func:`zeros`, :func:`ones` and :func:`constant` accept any dtype; the
random initializers need a floating-point one.

References:
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

from fdl.initializers.base import Initializer, compute_fans
from fdl.initializers.constants import constant, ones, zeros
from fdl.initializers.distributions import normal, orthogonal, truncated_normal, uniform
from fdl.initializers.scaling import (
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    kaiming_normal,
    kaiming_uniform,
    lecun_normal,
    lecun_uniform,
    variance_scaling,
    xavier_normal,
    xavier_uniform,
)

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
