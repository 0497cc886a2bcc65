r"""``fit``: the training loop users run, as small pure pieces and a thin host loop.

Training is the recursion

.. math::

    \big(\ell_s, (\sigma_{s+1}, m_s)\big), g_s = \big(L, \nabla_\theta L\big)
        (\theta_s, \sigma_s; B_s, k_s), \qquad
    (u_s, o_{s+1}) = \mathrm{update}(g_s, o_s, \theta_s), \qquad
    \theta_{s+1} = \theta_s + u_s

over steps :math:`s = 0, 1, \ldots`, with parameters :math:`\theta`, layer state :math:`\sigma`
(batch norm's statistics), optimizer state :math:`o`, and a batch :math:`B_s` and PRNG key
:math:`k_s` that are *functions of the step alone*:

* epoch :math:`e = \lfloor s / S \rfloor` with :math:`S = \lfloor N / \text{batch} \rfloor`
  steps per epoch (the last partial batch is dropped), position :math:`p = s \bmod S`;
* :math:`B_s` = examples :math:`\pi_e[p \cdot b : (p + 1) \cdot b]` of the permutation
  :math:`\pi_e = \text{permutation}(\text{fold\_in}(k_{\text{data}}, e), N)`, drawn **on the
  device** from data placed there once;
* :math:`k_s = \text{fold\_in}(k_{\text{step}}, s)`.

So the whole training state is :math:`(\theta, \sigma, o, s)` plus the two base keys, a
checkpoint of it resumes *exactly* (bit for bit), and the data position needs no iterator state.

**Fused steps.** ``Execution(steps_per_call=)`` steps run inside one ``jax.lax.scan``, one XLA call: for a
small model, Python's per-call dispatch then costs once per call instead of once per step
(``benchmarks/fit.py``). Calls end at multiples of ``steps_per_call`` and at every evaluation and
checkpoint step (and every period a callback asks for), so a resumed run executes the very same compiled calls as an uninterrupted one.

**Parts.** :mod:`fdl.fit.pieces` holds the pure pieces (batching as a function of the step,
mixed precision, the non-finite guard, the scan of fused steps) around the one step of
:func:`fdl.train.make_step`; :mod:`fdl.fit.loop` the host loop, which runs small actions
between compiled calls (evaluate, log, checkpoint, progress, callbacks), each configured by its
own record (:mod:`fdl.fit.config`); :mod:`fdl.fit.callbacks` and :mod:`fdl.fit.loggers` the
callbacks and loggers users pass in.

**NaN guard.** Every step checks that the loss, every gradient leaf, and every leaf of the
parameters and optimizer state the update would produce are finite (an overflowing update is
caught at the step that makes it). A non-finite step is never applied, so neither the returned
parameters nor a checkpoint ever hold non-finite values that training made. ``Execution(nan_policy="raise")`` stops: the call freezes the state before the bad
step and ``fit`` raises :class:`NonFiniteError` naming the step and the first offending
parameter path (the last checkpoint stays valid). ``nan_policy="skip"`` drops that update,
counts it, and goes on.

**Mixed precision.** ``Execution(compute_dtype=jnp.bfloat16)`` casts the floating parameters and inputs
to bfloat16 *inside* the loss, so the forward and backward passes compute in bfloat16 while the
parameters, their gradients (the cast is differentiable) and the optimizer state stay float32.
Layers also take ``dtype``/``param_dtype`` for the same split per layer.

**Multi-device.** With ``mesh`` (:func:`fdl.parallel.make_mesh`), the state and the data are
replicated and each gathered batch is constrained to be sharded along the mesh's data axis:
XLA partitions the step and inserts the gradient all-reduce (data parallelism).
"""

from fdl.fit.callbacks import Control, EarlyStopping, Every, ReduceLROnPlateau
from fdl.fit.config import NAN_POLICIES, Checkpoint, Eval, Execution, Logging, prepare_outputs
from fdl.fit.loggers import HistoryFile, TensorBoardLogger, save_history_plot
from fdl.fit.loop import FitResult, NonFiniteError, fit
from fdl.fit.tasks import classification_eval, classification_loss

__all__ = [
    "fit",
    "FitResult",
    "NonFiniteError",
    "Eval",
    "Checkpoint",
    "Logging",
    "Execution",
    "NAN_POLICIES",
    "prepare_outputs",
    "Control",
    "EarlyStopping",
    "Every",
    "ReduceLROnPlateau",
    "HistoryFile",
    "TensorBoardLogger",
    "save_history_plot",
    "classification_loss",
    "classification_eval",
]
