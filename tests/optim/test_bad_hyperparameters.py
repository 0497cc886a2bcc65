"""Every optimizer, atom and schedule fdl exports refuses a non-numeric hyperparameter where it
is given, naming the function, the argument and the value (issue 11, defect 9).

The table is not kept by hand: the factories are read from ``fdl.optim.__all__`` (the registry's
optimizers among them) and ``fdl.optim.torch.__all__``, and their numeric hyperparameters from
their signatures' annotations. A new export, or a new kind of annotation, fails
:func:`test_every_export_is_walked_or_set_aside` until it is classified here.
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl.optim
import fdl.optim.torch
from fdl.optim import GradientTransformation, LookaheadParams, LookaheadState, make_optimizer, optimizer_names

# Exports that build nothing from hyperparameters (functions of trees, the registry, wrappers
# whose arguments are transformations or masks).
NOT_FACTORIES = {
    "apply_updates",
    "chain",
    "identity",
    "safe_increment",
    "global_norm",
    "masked",
    "partition",
    "multi_transform",
    "freeze",
    "selective_transform",
    "labels_by_path",
    "conditionally_transform",
    "conditionally_mask",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
    "skip_not_finite",
    "skip_large_updates",
    "with_extra_args_support",
    "init_empty_state",
    "safe_int32_increment",
    "get_optimizer",
    "make_optimizer",
    "optimizer_names",
    "incremental_update",
    "periodic_update",
    "scale_gradient",
    "stateless",
    "stateless_with_tree_map",
    "value_and_grad_from_state",
    "safe_norm",
    "safe_root_mean_squares",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "schedule_free_eval_params",
    "named_chain",
    "power_iteration",
    "matrix_inverse_pth_root",
    "microbatch",
}

# Annotations of numeric hyperparameters, and of the other arguments (flags, dtypes, masks,
# choices, schedules, tables), exactly as the signatures spell them.
NUMERIC = {
    "Scalar",
    "Scalar | None",
    "ScalarOrSchedule",
    "ScalarOrSchedule | None",
    "Value",
    "Value | None",
    "float",
    "int",
    "float | jax.Array",
    "float | jax.Array | None",
    "int | None",
}
NOT_NUMERIC = {
    "bool",
    "Any | None",
    "Mask | None",
    "Schedule",
    "Literal['hard', 'smooth', 'refined']",
    "Mapping[int, float] | None",
    "Sequence[Schedule]",
    "Sequence[int]",
    "str",
    "Iterable[Mapping[str, Any]]",
    "Mask",
    "GradientTransformation",
    "Measure",
    "Mapping[str, GradientTransformation | Measure]",
    "int | tuple[int, ...] | None",
    "DecayRateFn",
    "Key | None",
    "Key",
    "str | None",
    "NsCoeffs",
    "Preconditioning",
    "tuple[Scalar, Scalar]",
}

# A valid value for each argument that has no numeric default.
VALID = {
    "learning_rate": 0.1,
    "step_size": 0.5,
    "step_size_fn": lambda count: 0.5,
    "decay": 0.9,
    "momentum": 0.5,
    "max_delta": 1.0,
    "max_norm": 1.0,
    "value": 1.0,
    "init_value": 1.0,
    "peak_value": 1.0,
    "end_value": 0.1,
    "power": 2.0,
    "transition_steps": 10,
    "decay_rate": 0.5,
    "decay_steps": 10,
    "warmup_steps": 2,
    "schedules": [fdl.optim.constant_schedule(1.0), fdl.optim.constant_schedule(0.5)],
    "boundaries": [3],
    "interpolate_type": "linear",
    "cosine_kwargs": [dict(init_value=0.0, peak_value=1.0, warmup_steps=1, decay_steps=4)],
    "inner": fdl.optim.sgd(0.1),
    "max_consecutive_errors": 2,
    "fast_optimizer": fdl.optim.sgd(0.1),
    "sync_period": 2,
    "slow_step_size": 0.5,
    "measure": lambda updates: updates,  # _use reads updates["w"]
    "measures": {"norm": fdl.tree.norm},
    "max_backtracking_steps": 15,
    "max_linesearch_steps": 15,
    "max_learning_rate": 1.0,
    "threshold": 1.0,
    "clipping": 1.0,
    "weight_decay_rate": 0.1,
    "eta": 0.01,
    "gamma": 0.55,
    "l2_norm_clip": 1.0,
    "noise_multiplier": 1.0,
    "seed": 0,
    "optimizer": fdl.optim.sgd(0.1),
    "adv_optimizer": fdl.optim.sgd(0.1),
    "consistent_rms": 0.2,
    "adam_learning_rate": 0.1,
    "base_optimizer": fdl.optim.sgd(0.1),
    "weight_decay": 1e-4,
    "beta3": 0.95,
    "optimism": 0.01,
}

# Arguments that shape a schedule in Python: a traced value is refused (ValueError), by design.
CONCRETE_ONLY = {
    "transition_steps",
    "transition_begin",
    "decay_rate",
    "decay_steps",
    "warmup_steps",
    "pct_start",  # a one-cycle's fractions place its boundaries
    "pct_final",
    "memory_size",  # L-BFGS's memory sets the shapes of its state
    "min_dim_size_to_factor",  # which leaves Adafactor factors: the shapes of its state
}
# Arguments of CONCRETE_ONLY's names that are traced values elsewhere: Adafactor's decay_rate
# is the exponent of its decay schedule, computed in the update (as in optax).
TRACED_HERE = {("adafactor", "decay_rate"), ("scale_by_factored_rms", "decay_rate")}

SCHEDULE_ALSO = " or a schedule (a function of the step)"


def _factories():
    """``(label, factory)`` for every exported factory; the label is how its errors name it."""
    found = []
    for namespace, prefix in ((fdl.optim, ""), (fdl.optim.torch, "fdl.optim.torch.")):
        for name in namespace.__all__:
            value = getattr(namespace, name)
            if inspect.isfunction(value) and name not in NOT_FACTORIES:
                found.append((prefix + name, value))
    return found


FACTORIES = _factories()


def _numeric_arguments():
    """``(label, factory, argument, annotation)`` for every numeric hyperparameter."""
    return [
        (label, factory, p.name, p.annotation)
        for label, factory in FACTORIES
        for p in inspect.signature(factory).parameters.values()
        if p.annotation in NUMERIC
    ]


ARGUMENTS = _numeric_arguments()
IDS = [f"{label}-{arg}" for label, _, arg, _ in ARGUMENTS]


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid_value(factory, arg):
    default = inspect.signature(factory).parameters[arg].default
    return default if _is_number(default) else VALID[arg]


def _required(factory, **override):
    """Valid values for the arguments that have no default, then ``override``."""
    kwargs = {
        p.name: VALID[p.name]
        for p in inspect.signature(factory).parameters.values()
        if p.default is inspect.Parameter.empty
    }
    return {**kwargs, **override}


def _expected(label, arg, annotation, value, kind):
    also = SCHEDULE_ALSO if "Schedule" in annotation else ""
    return f"{label}: `{arg}` must be a real number{also}, got {value!r} ({kind})"


# --------------------------------------------------------------------------------- the table


def test_every_export_is_walked_or_set_aside():
    walked = {label for label, _ in FACTORIES}
    for namespace in (fdl.optim, fdl.optim.torch):
        for name in namespace.__all__:
            value = getattr(namespace, name)
            if inspect.isfunction(value):
                assert name in NOT_FACTORIES or name in walked or f"fdl.optim.torch.{name}" in walked
    # the registry's optimizers and every schedule are among the walked factories
    assert set(optimizer_names("fdl", qualified=False)) <= walked
    assert set(fdl.optim.schedules.__all__) <= walked
    assert set(fdl.optim.torch.__all__) - {"DampenedTraceState"} <= {
        label.removeprefix("fdl.optim.torch.") for label in walked if label.startswith("fdl.optim.torch.")
    }
    # every argument of every factory is classified, numeric or not
    for label, factory in FACTORIES:
        for p in inspect.signature(factory).parameters.values():
            assert p.annotation in NUMERIC | NOT_NUMERIC, f"{label}: classify `{p.name}: {p.annotation}`"
    assert len(FACTORIES) >= 41 and len(ARGUMENTS) >= 133  # when written: the walk is not empty


# ------------------------------------------------------------------------------ refused values


@pytest.mark.parametrize("label, factory, arg, annotation", ARGUMENTS, ids=IDS)
def test_a_string_is_refused_naming_function_argument_and_value(label, factory, arg, annotation):
    with pytest.raises(TypeError) as info:
        factory(**_required(factory, **{arg: "0.5"}))
    assert str(info.value) == _expected(label, arg, annotation, "0.5", "str")


@pytest.mark.parametrize("label, factory, arg, annotation", ARGUMENTS, ids=IDS)
def test_bools_complex_and_undocumented_none_are_refused(label, factory, arg, annotation):
    """bool is refused for every real-valued hyperparameter, Python's, NumPy's or an array of
    them; ``None`` only where it is not documented (the default, or ``| None`` in the
    annotation)."""
    refused = [
        (True, "bool"),
        (np.True_, "bool"),
        (jnp.asarray(False), "bool array"),
        (np.asarray([0.5], np.complex64), "complex64 array"),
        (0.5 + 0j, "complex"),
    ]
    # None is documented where it is the default, or where the annotation says `| None`
    # (zoom's approx_dec_rtol: 1e-6 by default, None for Armijo's condition alone)
    if inspect.signature(factory).parameters[arg].default is not None and "None" not in annotation:
        refused.append((None, "NoneType"))
    for value, kind in refused:
        with pytest.raises(TypeError) as info:
            factory(**_required(factory, **{arg: value}))
        assert str(info.value) == _expected(label, arg, annotation, value, kind)


# ----------------------------------------------------------------------------- accepted values


@pytest.mark.parametrize("label, factory, arg, annotation", ARGUMENTS, ids=IDS)
def test_numpy_and_jax_numbers_are_accepted(label, factory, arg, annotation):
    value = _valid_value(factory, arg)
    for given in (np.asarray(value), np.asarray(value)[()], jnp.asarray(value)):
        built = factory(**_required(factory, **{arg: given}))
        assert isinstance(built, GradientTransformation) or callable(built), label


# Transformations of per-example gradients (a leading batch axis on every leaf).
PER_EXAMPLE = {"dpsgd", "differentially_private_aggregate"}
# Transformations that evaluate the objective themselves (Sophia's Hessian estimates): obj_fn.
OBJECTIVE = {"sophia", "scale_by_sophia"}
MATRICES = {"scale_by_muon"}


def _use(built, label=""):
    """Run what a factory built once: a step of a transformation, or a schedule at step 3."""
    if isinstance(built, GradientTransformation):
        params = {"w": jnp.ones(3)}
        if isinstance(built.init(LookaheadParams.init_synced(params)), LookaheadState):
            pair = LookaheadParams.init_synced(params)  # lookahead steps fast and slow params
            updates, _ = built.update({"w": jnp.full(3, 0.5)}, built.init(pair), pair)
            return updates.fast["w"]

        def value_fn(p):
            return 0.25 * jnp.sum(p["w"] ** 2)

        # optax's extra arguments
        if label in MATRICES:  # Muon orthogonalizes matrices (its alias steps the rest by Adam)
            params = {"w": jnp.eye(3)}
        grads = {"w": jnp.full((2, 3) if label in PER_EXAMPLE else params["w"].shape, 0.5)}
        if label in OBJECTIVE:
            extra = dict(obj_fn=value_fn)
        else:  # as the one train step passes them (line searches need them, and refuse others)
            extra = dict(value=value_fn(params), grad=grads, value_fn=value_fn)
        updates, _ = built.update(grads, built.init(params), params, **extra)
        return updates["w"].reshape(-1)
    return built(jnp.asarray(3, jnp.int32))


@pytest.mark.parametrize("label, factory, arg, annotation", ARGUMENTS, ids=IDS)
def test_traced_values_are_accepted_unless_they_shape_a_schedule(label, factory, arg, annotation):
    """A hyperparameter traced under ``jit`` (a sweep, inject_hyperparams-like patterns) is
    accepted unchecked, as before; a schedule's step counts must be concrete."""

    def build_and_use(value):
        return _use(factory(**_required(factory, **{arg: value})), label)

    value = float(_valid_value(factory, arg))
    if arg in CONCRETE_ONLY and (label, arg) not in TRACED_HERE:
        with pytest.raises(ValueError, match=rf"^{label}: `{arg}` must be a concrete, finite real"):
            jax.make_jaxpr(build_and_use)(value)
    else:
        jaxpr = jax.make_jaxpr(build_and_use)(value)
        assert len(jaxpr.in_avals) == 1


def test_schedules_and_none_defaults_stay_accepted():
    schedule = fdl.optim.constant_schedule(0.1)
    for built in (
        fdl.optim.adam(schedule),
        fdl.optim.adamw(0.1, weight_decay=schedule),
        fdl.optim.torch.adagrad(schedule, lr_decay=0.1),
        fdl.optim.sgd(0.1, momentum=None),
        fdl.optim.rmsprop(0.1, momentum=None),
        fdl.optim.adadelta(None),
    ):
        assert math.isfinite(float(_use(built)[0]))
    assert float(fdl.optim.exponential_decay(1.0, 2, 0.5, end_value=None)(4)) == 0.25


# ------------------------------------------------------------------------------- the messages


def test_the_function_named_is_the_one_called_not_the_atom_inside_it():
    cases = [
        (lambda: fdl.optim.adam(0.1, b1="0.9"), "adam: `b1`"),
        (lambda: fdl.optim.nadam(0.1, b1="0.9"), "nadam: `b1`"),  # nadam calls adam
        (lambda: fdl.optim.scale_by_adam(b1="0.9"), "scale_by_adam: `b1`"),
        (lambda: fdl.optim.adamw(0.1, weight_decay="1e-4"), "adamw: `weight_decay`"),
        (lambda: fdl.optim.linear_schedule(1.0, "0", 10), "linear_schedule: `end_value`"),
        (lambda: fdl.optim.torch.adam(b2="0.99"), "fdl.optim.torch.adam: `b2`"),
    ]
    for make, start in cases:
        with pytest.raises(TypeError, match=rf"^{start} must be a real number[^,]*, got '"):
            make()
    # range errors name the function the same way
    with pytest.raises(ValueError) as info:
        fdl.optim.nadam(0.1, b2=1.0)
    assert str(info.value) == "nadam: `b2` must be in [0, 1), got 1.0"
    with pytest.raises(ValueError) as info:
        fdl.optim.warmup_cosine_decay_schedule(0.0, 1.0, 2, 10, exponent=0.0)
    assert str(info.value) == (
        "warmup_cosine_decay_schedule: `exponent` must be > 0 (a negative exponent is infinite "
        "from `decay_steps` on, and 0 ignores `alpha`), got 0.0"
    )


def test_the_examples_of_the_issue():
    with pytest.raises(TypeError) as info:
        fdl.optim.adam(1e-3, b1="0.9")
    assert str(info.value) == "adam: `b1` must be a real number, got '0.9' (str)"
    with pytest.raises(TypeError) as info:
        fdl.optim.rmsprop(1e-3, decay="0.9")
    assert str(info.value) == "rmsprop: `decay` must be a real number, got '0.9' (str)"
    with pytest.raises(TypeError) as info:
        fdl.optim.sgd("0.1")
    assert str(info.value) == (
        "sgd: `learning_rate` must be a real number or a schedule (a function of the step), got '0.1' (str)"
    )


def test_a_call_that_does_not_fit_the_signature_keeps_pythons_message():
    with pytest.raises(TypeError, match=r"^adam\(\) got an unexpected keyword argument 'lr'$"):
        fdl.optim.adam(0.1, lr=0.1)
    with pytest.raises(TypeError, match=r"^adam\(\) missing 1 required positional argument"):
        fdl.optim.adam()


def test_the_registry_passes_the_message_on_under_the_qualified_name():
    with pytest.raises(TypeError) as info:
        make_optimizer("adam", {"learning_rate": 0.1, "b1": "0.9"})
    assert str(info.value) == "fdl:adam: `b1` must be a real number, got '0.9' (str)"
    with pytest.raises(TypeError) as info:
        make_optimizer("fdl:rmsprop", {"learning_rate": 0.1, "momentum": True})
    assert str(info.value) == "fdl:rmsprop: `momentum` must be a real number, got True (bool)"
    with pytest.raises(ValueError) as info:
        make_optimizer("nadamw", {"learning_rate": 0.1, "b1": 1.5})
    assert str(info.value) == "fdl:nadamw: `b1` must be in [0, 1), got 1.5"
