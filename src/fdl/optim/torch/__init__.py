r"""Optimizers with PyTorch's conventions, composed from fdl's atoms.

``torch.optim`` and optax disagree on small things that change every trajectory: where
:math:`\epsilon` sits (outside the square root in torch), where the accumulators start
(:math:`v_0 = 0` for torch's Adagrad, 0.1 for optax's), whether the momentum buffer holds the
step before or after the learning rate, and whether ``weight_decay`` is an L2 term added to the
gradient (torch's SGD, RMSprop, Adagrad and Adam: *coupled*) or a shrinkage of the weights
(AdamW: *decoupled*). This module reproduces ``torch.optim``'s update rules exactly, with
optax's ``(init, update)`` interface, so a PyTorch recipe carries over without retuning. Each is
checked at every step of 150 against trajectories recorded from torch 2.13 (float64 and float32,
``tests/optim/test_torch.py``; the recording script is ``scripts/torch_reference.py``).

**Coupled weight decay.** With :math:`\lambda` = ``weight_decay`` > 0, the gradient becomes

.. math:: g_t \leftarrow g_t + \lambda\, \theta_t

before anything else, so ``update`` needs the parameters: ``update(grads, state, params)``.
Without them it raises a ``ValueError`` saying so.

**Arguments.** optax's names where the concept is shared, torch's for torch-only concepts
(torch argument → ``fdl.optim.torch`` argument):

* ``lr`` → ``learning_rate`` (a number or a schedule);
* ``betas=(b1, b2)`` → ``b1``, ``b2``;
* ``eps``, ``weight_decay``, and the torch-only ``momentum``, ``dampening``, ``nesterov``
  (SGD), ``alpha`` (RMSprop's decay, which optax calls ``decay``), ``centered`` and
  ``momentum`` (RMSprop), ``lr_decay`` and ``initial_accumulator_value`` (Adagrad) → the same
  names;
* ``maximize``, ``amsgrad``, ``foreach``, ``fused``, ``capturable``, ``differentiable`` → not
  offered (negate the loss to maximize; ``fdl.optim.amsgrad`` is optax's AMSGrad).

Defaults are torch's (``rmsprop``'s ``learning_rate=1e-2, alpha=0.99``, ``adamw``'s
``weight_decay=1e-2``, ...), except that ``sgd`` needs its learning rate (torch's default
``lr=1e-3``; optax's ``sgd`` has none either). The learning rate may also be a schedule
(:mod:`fdl.optim.schedules`), evaluated at the step count :math:`t - 1 = 0, 1, \ldots`,
which torch does with a separate ``lr_scheduler`` object.

**Rounding.** The update rules are torch's; the order of floating-point operations is fdl's
atoms' (e.g. Adam's bias corrections are computed in float32, torch's in Python doubles), so
float32 trajectories agree with torch's to about 1e-5 relative, float64 ones to about 1e-12
(the measured figures are in the test module).

The optimizers are in :mod:`fdl.optim.torch.optimizers`, the two atoms only torch needs
(:func:`dampened_trace`, torch's :func:`scale_by_rss`) in :mod:`fdl.optim.torch.atoms`.
"""

from fdl.optim.torch.atoms import DampenedTraceState, dampened_trace, scale_by_rss
from fdl.optim.torch.optimizers import adagrad, adam, adamw, rmsprop, sgd

__all__ = [
    "DampenedTraceState",
    "dampened_trace",
    "scale_by_rss",
    "sgd",
    "rmsprop",
    "adagrad",
    "adam",
    "adamw",
]
