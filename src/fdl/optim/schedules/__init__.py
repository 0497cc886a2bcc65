r"""Learning-rate schedules: a hyperparameter as a function of the step count.

A *schedule* is a pure function :math:`t \mapsto \eta(t)` of the step count
:math:`t = 0, 1, 2, \ldots` (the number of updates already applied). Give one to any optimizer
in place of a constant learning rate: :func:`~fdl.optim.base.scale_by_schedule` keeps the count
in the optimizer state (int32) and evaluates the schedule at it *before* incrementing, so the
first update uses :math:`\eta(0)`.

**Why decay.** Stochastic gradient descent converges to a minimum only if the steps shrink
(Robbins & Monro, 1951: :math:`\sum_t \eta_t = \infty`, :math:`\sum_t \eta_t^2 < \infty`);
with a constant rate the iterates keep bouncing in a noise ball of radius
:math:`\propto \eta`. In practice one trains with a large rate to travel fast, then lowers it to
settle: in steps (:func:`piecewise_constant_schedule`, He et al., 2016), smoothly
(:func:`exponential_decay`, :func:`polynomial_schedule`) or along half a cosine
(:func:`cosine_decay_schedule`, Loshchilov & Hutter, 2017), restarting now and then
(:func:`sgdr_schedule`), or in one cycle up and down (:func:`cosine_onecycle_schedule`, Smith &
Topin, 2018).

**Why warm up.** Early in training the gradients are large and Adam's second-moment estimate
is built from few samples, so a large first step can throw the weights far away. A short linear
ramp from a small value to the peak (Goyal et al., 2017) avoids that:
:func:`warmup_cosine_decay_schedule` is the usual recipe for transformers, and
:func:`join_schedules` builds any other sequence of phases.

**The contract.** Every schedule here

* takes the count as a Python int or an integer array (an int32 scalar from the optimizer
  state, or ``jnp.arange(n)`` to tabulate a whole schedule at once), and works under
  ``jax.jit``, ``jax.vmap`` and ``lax.scan``;
* returns a floating array shaped like the count, in the *schedule dtype*: the values'
  dtypes (``init_value``, ``end_value``, ...) promoted with JAX's default float type, which is
  float32 (float64 with ``jax_enable_x64``). Python numbers enter as weak types, so they are
  rounded once, as in optax;
* evaluates its formula in the same order of floating-point operations as optax 0.2.8, so
  fdl's and optax's schedules agree to the last bit or two (tested at every step).

**Differs from optax.** optax returns some values unchanged (``constant_schedule(5)(0)`` is the
Python int ``5``); fdl always returns an array of the schedule dtype. Where optax silently
accepts a configuration that cannot be what was meant (a negative ``transition_begin``, which it
clamps to 0; a ``decay_rate`` of 0, which it turns into a constant schedule; a negative
``warmup_steps``; more boundaries than schedules, which its ``zip`` drops), fdl raises a
``ValueError`` naming the argument and its value. Each function's docstring lists its own cases.

References:
* Robbins & Monro (1951). A stochastic approximation method. Ann. Math. Statist. 22(3).
* He, Zhang, Ren & Sun (2016). Deep residual learning for image recognition. CVPR.
* Loshchilov & Hutter (2017). SGDR: stochastic gradient descent with warm restarts. ICLR.
* Goyal et al. (2017). Accurate, large minibatch SGD: training ImageNet in 1 hour.
  arXiv:1706.02677.

One module per family: :mod:`~fdl.optim.schedules.polynomial` (constant, polynomial, linear),
:mod:`~fdl.optim.schedules.decay` (exponential, cosine, and a warmup followed by a constant, an
exponential or a cosine decay), :mod:`~fdl.optim.schedules.piecewise` (piecewise constant,
joined schedules) and :mod:`~fdl.optim.schedules.cycles` (piecewise interpolation, the one-cycle
policy, warm restarts).
"""

from fdl.optim.schedules.cycles import (
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
    piecewise_interpolate_schedule,
    sgdr_schedule,
)
from fdl.optim.schedules.decay import (
    cosine_decay_schedule,
    exponential_decay,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from fdl.optim.schedules.piecewise import join_schedules, piecewise_constant_schedule
from fdl.optim.schedules.polynomial import constant_schedule, linear_schedule, polynomial_schedule

__all__ = [
    "constant_schedule",
    "linear_schedule",
    "polynomial_schedule",
    "exponential_decay",
    "cosine_decay_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_constant_schedule",
    "warmup_exponential_decay_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "join_schedules",
    "sgdr_schedule",
    "linear_onecycle_schedule",
    "cosine_onecycle_schedule",
]
