r"""Compare optimizers on one problem, and fdl's optimizers against optax's, step by step.

Which optimizer suits a problem is best seen by running several from the same point and
watching them: the path each one draws on a 2-D contour plot, and the loss it reaches step by
step. :func:`compare` does that in one call:

.. code-block:: python

    from fdl.compare import compare

    result = compare(
        {"sgd": ("sgd", {"learning_rate": 1e-3}),
         "adam": ("adam", {"learning_rate": 1e-2})},
        "rosenbrock", steps=1000, threshold=1e-3)
    print(result)                # a short summary, one line per optimizer
    result.save("out/")          # table.md/csv/json, curves.csv, contour.png, losses.png, ...

Every optimizer starts from the **same** parameters (``problem.init_params(key(seed))``) and
takes gradient steps with the one train step, :func:`fdl.train.make_step`,

.. math::

    g_t = \nabla L_{B_t}(\theta_t), \qquad (u_t, s_{t+1}) = \text{update}(g_t, s_t, \theta_t),
    \qquad \theta_{t+1} = \theta_t + u_t, \qquad t = 0, \dots, T - 1,

on the full loss (:math:`L_{B_t} = L`), or with ``batch_size=`` on the minibatch :math:`B_t`, a
pure function of the step shared by every optimizer. The whole trajectory of :math:`T` =
``steps`` steps is one ``jax.lax.scan``, compiled into one XLA call. The loss curve holds
:math:`L(\theta_0), \dots, L(\theta_T)` (``steps + 1`` values of the full loss; the first is
the common starting loss).

**The twin check.** An optimizer named from the registry that both libraries have
(``"adam"``, ``"fdl:adam"`` or ``"optax:adam"``) is automatically run again with the other
library's version and the same hyperparameters, inside the same compiled scan, and its
divergence is reported per step:

.. math::

    d_t = \max_i \bigl|\theta_{t,i} - \theta^{\text{twin}}_{t,i}\bigr| ,

the largest difference over every parameter entry. fdl's optimizers are written to follow
optax's order of floating-point operations, so :math:`d_t` stays at the level of float32
rounding; a bug shows up as a divergence that grows. ``reference=`` pairs any optimizer, your
own transformation included, with a reference of your choice instead. Both trajectories apply
their updates with :func:`fdl.optim.apply_updates`, so :math:`d_t` measures the update rules
alone.

**Names.** The registry lives with the optimizers, :mod:`fdl.optim.registry`
(:func:`fdl.optim.get_optimizer`, :func:`fdl.optim.make_optimizer`,
:func:`fdl.optim.optimizer_names`; re-exported here): ``"fdl:NAME"`` or a bare ``"NAME"`` is
fdl's optimizer, ``"optax:NAME"`` optax's. Hyperparameters are the factories' own keyword
arguments (optax's names: ``learning_rate``, ``b1``, ``momentum``...); an unknown one is a
``TypeError`` listing the valid names, and fdl's factories reject invalid values (a negative
learning rate) with a ``ValueError`` naming the argument.

**dtype promotion.** optax raises ``b1`` to an int32 step count, which JAX's strict dtype
promotion rejects, so transformations not built by fdl (optax's, or any object from another
library) are traced under standard promotion, scoped to their own ``init`` and ``update``.
fdl's run under the caller's setting, so a promotion bug in fdl still surfaces.

**Modules.** :mod:`~fdl.compare.core` (the simulation, a pure function),
:mod:`~fdl.compare.runner` (:func:`compare`: planning the twin and reference pairs),
:mod:`~fdl.compare.result` (:class:`Comparison`, :class:`Run`), :mod:`~fdl.compare.reports`
(table, CSV, JSON, the printed summary) and :mod:`~fdl.compare.plots`.
"""

from fdl.compare.core import Trajectories, minibatches, simulate
from fdl.compare.plots import IDENTICAL
from fdl.compare.result import Comparison, Run, SummaryRow
from fdl.compare.runner import OptimizerSpec, compare
from fdl.optim.registry import LIBRARIES, get_optimizer, make_optimizer, optimizer_names

__all__ = [
    "IDENTICAL",
    "LIBRARIES",
    "Comparison",
    "OptimizerSpec",
    "Run",
    "SummaryRow",
    "Trajectories",
    "compare",
    "get_optimizer",
    "make_optimizer",
    "minibatches",
    "optimizer_names",
    "simulate",
]
