r"""Optimizers written in fdl, with optax's interface: swap ``optax.`` for ``fdl.optim.``.

An optimizer is a pair ``init(params) -> state``, ``update(grads, state, params=None) ->
(updates, state)`` (:class:`GradientTransformation`); the parameters move by
:math:`\theta_{t+1} = \theta_t + u_t` (:func:`apply_updates`). The math lives in small atoms
(``trace``, ``scale_by_adam``, ``scale_by_rms``, ...); each alias (``sgd``, ``adam``, ...) only
chains atoms, exactly as optax composes it, so states compare with optax's leaf by leaf.

One module per idea, each readable on its own (named here without ``fdl.optim.``; each has its
page in the API reference):

* **The contract:** ``base`` (``chain``, ``apply_updates``, learning-rate scaling), ``types``
  (optax's names for its pieces, for hints), ``registry`` (optimizers by name, ``"adam"`` or
  ``"optax:adam"``, derived from this module's ``__all__`` and optax's) and ``torch``
  (PyTorch's conventions, ``fdl.optim.torch.sgd``, ...: not exported here, since their names
  repeat optax's).
* **Momentum and adaptive moments:** ``momentum`` (heavy ball, Nesterov, ``ema``; SGD),
  ``adam`` (Adam, NAdam, AdamW, NAdamW), ``amsgrad``, ``adamax``, ``rms`` (plain and
  centered), ``adagrad``, ``adadelta``, ``belief`` (AdaBelief), ``yogi``, ``radam``, ``adan``,
  ``novograd`` (a second moment per layer), ``adopt``, ``ademamix`` and ``optimistic`` (OGD,
  optimistic Adam).
* **Signs, norms and trust ratios:** ``lion``, ``sign`` (signSGD, Signum), ``trust_ratio``
  (LARS, LAMB), ``fromage``, ``rprop``, and ``muon`` with its ``newton_schulz``
  orthogonalization.
* **Factored and second-order:** ``adafactor``, ``sm3``, ``sophia`` (with Hutchinson's estimate
  of the Hessian's diagonal), ``lbfgs`` and ``linear_algebra`` (power iteration, inverse p-th
  roots).
* **Step sizes and schedules:** ``schedules``, ``inject`` (hyperparameters as state),
  ``linesearch`` (Armijo backtracking; ``value_and_grad_from_state``), ``zoom_linesearch``
  (strong Wolfe), ``polyak``, ``dog``, ``prodigy``, ``schedule_free`` and ``plateau``.
* **Wrappers:** ``sam``, ``lookahead``, ``averaging`` (incremental and periodic),
  ``accumulate`` (``MultiSteps``, ``apply_every``), ``microbatch``, ``conditional``
  (``apply_if_finite``), ``named_chain``, ``freezing`` (a transformation per part, labels by
  path) and ``monitor`` (measurements kept in the state).
* **Gradient surgery:** ``clipping``, ``clip_adaptive`` (block RMS, adaptive, per example),
  ``normalize``, ``weight_decay`` (decoupled, with masks), ``constraints``, ``noise``,
  ``privacy`` (DP-SGD), ``gradient_scaling``, ``numerics`` (``safe_norm``), ``layouts``
  (``flatten``) and ``stateless``.

Hyperparameters are checked where they are given: every factory here refuses a value that is
not a real number (a string, a bool, ``None`` where it is not the default) with a ``TypeError``
and one out of range with a ``ValueError``, each message naming the function called, the
argument and the value (``adam: `b1` must be a real number, got '0.9' (str)``). A traced value
(a hyperparameter swept under ``jit`` or ``vmap``) is accepted unchecked. Updates are never
broadcast: :func:`apply_updates`, and the ``update`` of every transformation with a
per-parameter state, raise a ``ValueError`` naming the leaf and both shapes when an update's
shape differs from its parameter's.

The names exported here shadow the modules of the same name: ``fdl.optim.adam`` is the
optimizer, as ``optax.adam`` is. The module's other names are imported from it directly
(``from fdl.optim.adam import ScaleByAdamState``), or from here.

>>> import jax.numpy as jnp
>>> from fdl import optim
>>> opt = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-2))
>>> params = {"w": jnp.ones(3)}
>>> updates, state = opt.update({"w": jnp.ones(3)}, opt.init(params), params)
>>> [round(x, 6) for x in optim.apply_updates(params, updates)["w"].tolist()]
[0.99, 0.99, 0.99]
"""

from fdl.optim import torch
from fdl.optim.accumulate import (
    ApplyEvery,
    MultiSteps,
    MultiStepsState,
    apply_every,
    skip_large_updates,
    skip_not_finite,
)
from fdl.optim.adadelta import ScaleByAdaDeltaState, adadelta, scale_by_adadelta
from fdl.optim.adafactor import FactoredState, adafactor, scale_by_factored_rms
from fdl.optim.adagrad import ScaleByRssState, adagrad, scale_by_rss
from fdl.optim.adam import ScaleByAdamState, adam, adamw, nadam, nadamw, scale_by_adam
from fdl.optim.adamax import adamax, adamaxw, scale_by_adamax
from fdl.optim.adan import ScaleByAdanState, adan, scale_by_adan
from fdl.optim.ademamix import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdEMAMixState,
    ademamix,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from fdl.optim.adopt import adopt, scale_by_adopt
from fdl.optim.amsgrad import ScaleByAmsgradState, amsgrad, scale_by_amsgrad
from fdl.optim.averaging import incremental_update, periodic_update
from fdl.optim.base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    ScaleByScheduleState,
    ScaleState,
    Schedule,
    apply_updates,
    chain,
    identity,
    init_empty_state,
    safe_increment,
    safe_int32_increment,
    scale,
    scale_by_learning_rate,
    scale_by_schedule,
    with_extra_args_support,
)
from fdl.optim.belief import ScaleByBeliefState, adabelief, scale_by_belief
from fdl.optim.clip_adaptive import (
    AdaptiveGradClipState,
    adaptive_grad_clip,
    clip_by_block_rms,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)
from fdl.optim.clipping import (
    ClipByGlobalNormState,
    ClipState,
    clip,
    clip_by_global_norm,
    global_norm,
)
from fdl.optim.conditional import (
    ApplyIfFiniteState,
    ConditionallyMaskState,
    ConditionallyTransformState,
    apply_if_finite,
    conditionally_mask,
    conditionally_transform,
)
from fdl.optim.constraints import NonNegativeParamsState, ZeroNansState, keep_params_nonnegative, zero_nans
from fdl.optim.dog import ScaleByDistanceOverGradientsState, scale_by_distance_over_gradients
from fdl.optim.freezing import (
    MultiTransformState,
    PartitionState,
    freeze,
    labels_by_path,
    multi_transform,
    partition,
    selective_transform,
    set_to_zero,
)
from fdl.optim.fromage import fromage
from fdl.optim.gradient_scaling import scale_gradient
from fdl.optim.inject import (
    InjectHyperparamsState,
    InjectStatefulHyperparamsState,
    WrappedSchedule,
    WrappedScheduleState,
    inject_hyperparams,
    inject_stateful_hyperparams,
)
from fdl.optim.layouts import flatten
from fdl.optim.lbfgs import ScaleByLBFGSState, lbfgs, scale_by_lbfgs
from fdl.optim.linear_algebra import matrix_inverse_pth_root, power_iteration
from fdl.optim.linesearch import (
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState,
    scale_by_backtracking_linesearch,
    value_and_grad_from_state,
)
from fdl.optim.lion import ScaleByLionState, lion, scale_by_lion
from fdl.optim.lookahead import LookaheadParams, LookaheadState, lookahead
from fdl.optim.microbatch import AccumulationType, Accumulator, microbatch
from fdl.optim.momentum import EmaState, TraceState, ema, sgd, trace
from fdl.optim.monitor import MonitorState, SnapshotState, measure_with_ema, monitor, snapshot
from fdl.optim.muon import MuonDimensionNumbers, MuonState, muon, scale_by_muon
from fdl.optim.named_chain import named_chain
from fdl.optim.noise import AddNoiseState, add_noise, noisy_sgd
from fdl.optim.normalize import centralize, normalize_by_update_norm
from fdl.optim.novograd import ScaleByNovogradState, novograd, scale_by_novograd
from fdl.optim.numerics import safe_norm, safe_root_mean_squares
from fdl.optim.optimistic import (
    ScaleByOptimisticGradientState,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    scale_by_optimistic_gradient,
)
from fdl.optim.plateau import ReduceLROnPlateauState, reduce_on_plateau
from fdl.optim.polyak import polyak_sgd, scale_by_polyak
from fdl.optim.privacy import DifferentiallyPrivateAggregateState, differentially_private_aggregate, dpsgd
from fdl.optim.prodigy import ProdigyState, prodigy
from fdl.optim.radam import radam, scale_by_radam
from fdl.optim.registry import get_optimizer, make_optimizer, optimizer_names
from fdl.optim.rms import (
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    rmsprop,
    scale_by_rms,
    scale_by_stddev,
)
from fdl.optim.rprop import ScaleByRpropState, rprop, scale_by_rprop
from fdl.optim.sam import NormalizeState, SAMState, normalize, sam
from fdl.optim.schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from fdl.optim.schedules import (
    constant_schedule,
    cosine_decay_schedule,
    cosine_onecycle_schedule,
    exponential_decay,
    join_schedules,
    linear_onecycle_schedule,
    linear_schedule,
    piecewise_constant_schedule,
    piecewise_interpolate_schedule,
    polynomial_schedule,
    sgdr_schedule,
    warmup_constant_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from fdl.optim.sign import scale_by_sign, sign_sgd, signum
from fdl.optim.sm3 import ScaleBySM3State, scale_by_sm3, sm3
from fdl.optim.sophia import (
    HutchinsonState,
    SophiaState,
    hutchinson_estimator_diag_hessian,
    scale_by_sophia,
    sophia,
)
from fdl.optim.stateless import stateless, stateless_with_tree_map
from fdl.optim.trust_ratio import (
    ScaleByTrustRatioState,
    lamb,
    lars,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
    scale_by_trust_ratio,
)
from fdl.optim.types import (
    MaskOrFn,
    OptState,
    Params,
    ShouldSkipUpdateFunction,
    TransformInitFn,
    TransformUpdateExtraArgsFn,
    TransformUpdateFn,
    Updates,
)
from fdl.optim.weight_decay import (
    AddDecayedWeightsState,
    MaskedNode,
    MaskedState,
    add_decayed_weights,
    masked,
)
from fdl.optim.yogi import scale_by_yogi, yogi
from fdl.optim.zoom_linesearch import ScaleByZoomLinesearchState, ZoomLinesearchInfo, scale_by_zoom_linesearch

__all__ = [
    # the contract and combinators
    "GradientTransformation",
    "Params",
    "Updates",
    "OptState",
    "TransformInitFn",
    "TransformUpdateFn",
    "TransformUpdateExtraArgsFn",
    "MaskOrFn",
    "ShouldSkipUpdateFunction",
    "GradientTransformationExtraArgs",
    "with_extra_args_support",
    "init_empty_state",
    "safe_int32_increment",
    "ScaleState",
    "AddDecayedWeightsState",
    "ScaleByTrustRatioState",
    "MultiTransformState",
    "EmptyState",
    "Schedule",
    "ScalarOrSchedule",
    "apply_updates",
    "chain",
    "identity",
    "safe_increment",
    # atoms
    "scale",
    "scale_by_schedule",
    "scale_by_learning_rate",
    "ScaleByScheduleState",
    "trace",
    "TraceState",
    "ema",
    "EmaState",
    "scale_by_adam",
    "ScaleByAdamState",
    "scale_by_amsgrad",
    "ScaleByAmsgradState",
    "scale_by_adamax",
    "scale_by_rms",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "scale_by_stddev",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "scale_by_rss",
    "ScaleByRssState",
    "scale_by_adadelta",
    "ScaleByAdaDeltaState",
    "scale_by_lion",
    "ScaleByLionState",
    "scale_by_belief",
    "ScaleByBeliefState",
    "scale_by_yogi",
    "scale_by_radam",
    "scale_by_sign",
    "scale_by_trust_ratio",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "centralize",
    "normalize_by_update_norm",
    "keep_params_nonnegative",
    "NonNegativeParamsState",
    "zero_nans",
    "ZeroNansState",
    "add_decayed_weights",
    "masked",
    "MaskedState",
    "MaskedNode",
    "set_to_zero",
    "partition",
    "multi_transform",
    "PartitionState",
    "freeze",
    "selective_transform",
    "labels_by_path",
    "apply_every",
    "ApplyEvery",
    "MultiSteps",
    "MultiStepsState",
    "skip_not_finite",
    "skip_large_updates",
    "conditionally_transform",
    "ConditionallyTransformState",
    "conditionally_mask",
    "ConditionallyMaskState",
    "apply_if_finite",
    "ApplyIfFiniteState",
    "inject_hyperparams",
    "InjectHyperparamsState",
    "inject_stateful_hyperparams",
    "InjectStatefulHyperparamsState",
    "WrappedSchedule",
    "WrappedScheduleState",
    "clip",
    "ClipState",
    "clip_by_global_norm",
    "ClipByGlobalNormState",
    "global_norm",
    "scale_by_rprop",
    "ScaleByRpropState",
    "scale_by_novograd",
    "ScaleByNovogradState",
    "scale_by_adan",
    "ScaleByAdanState",
    "lookahead",
    "LookaheadParams",
    "LookaheadState",
    "monitor",
    "MonitorState",
    "snapshot",
    "SnapshotState",
    "measure_with_ema",
    "flatten",
    "stateless",
    "stateless_with_tree_map",
    "incremental_update",
    "periodic_update",
    "scale_gradient",
    "BacktrackingLinesearchInfo",
    "ScaleByBacktrackingLinesearchState",
    "scale_by_backtracking_linesearch",
    "value_and_grad_from_state",
    "ScaleByLBFGSState",
    "scale_by_lbfgs",
    "ZoomLinesearchInfo",
    "ScaleByZoomLinesearchState",
    "scale_by_zoom_linesearch",
    "AdaptiveGradClipState",
    "adaptive_grad_clip",
    "clip_by_block_rms",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "safe_norm",
    "safe_root_mean_squares",
    "FactoredState",
    "scale_by_factored_rms",
    "ScaleBySM3State",
    "scale_by_sm3",
    "AddNoiseState",
    "add_noise",
    "scale_by_polyak",
    "DifferentiallyPrivateAggregateState",
    "differentially_private_aggregate",
    "SAMState",
    "normalize",
    "NormalizeState",
    "sam",
    "SophiaState",
    "scale_by_sophia",
    "HutchinsonState",
    "hutchinson_estimator_diag_hessian",
    "scale_by_adopt",
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
    "scale_by_ademamix",
    "scale_by_simplified_ademamix",
    "MuonDimensionNumbers",
    "MuonState",
    "scale_by_muon",
    "ScheduleFreeState",
    "schedule_free",
    "schedule_free_eval_params",
    "ReduceLROnPlateauState",
    "reduce_on_plateau",
    "ProdigyState",
    "ScaleByOptimisticGradientState",
    "scale_by_optimistic_gradient",
    "ScaleByDistanceOverGradientsState",
    "scale_by_distance_over_gradients",
    "named_chain",
    "power_iteration",
    "matrix_inverse_pth_root",
    "microbatch",
    "AccumulationType",
    "Accumulator",
    # aliases
    "sgd",
    "adam",
    "adamw",
    "nadam",
    "nadamw",
    "amsgrad",
    "adamax",
    "rmsprop",
    "adagrad",
    "adadelta",
    "lion",
    "adabelief",
    "yogi",
    "radam",
    "sign_sgd",
    "signum",
    "adamaxw",
    "lars",
    "lamb",
    "rprop",
    "novograd",
    "adan",
    "lbfgs",
    "adafactor",
    "sm3",
    "noisy_sgd",
    "polyak_sgd",
    "fromage",
    "dpsgd",
    "sophia",
    "adopt",
    "ademamix",
    "simplified_ademamix",
    "muon",
    "schedule_free_adamw",
    "schedule_free_sgd",
    "prodigy",
    "optimistic_gradient_descent",
    "optimistic_adam",
    "optimistic_adam_v2",
    # schedules
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
    # PyTorch's conventions
    "torch",
    # optimizers by name (fdl.optim.registry)
    "get_optimizer",
    "make_optimizer",
    "optimizer_names",
]
