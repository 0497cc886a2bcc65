"""Properties every fdl optimizer has, checked for every alias (and the atoms where it applies).

* the signature is optax's (names, defaults, keyword-only markers);
* a jitted update compiles once: a second call with new values does not retrace
  (``chex.assert_max_traces``), because the state after a step has the structure, dtypes and
  shapes of the initial state; updates have the gradients' dtypes and structure, and
  ``apply_updates`` keeps the parameters' dtypes (float32, bfloat16, float64);
* zero gradients (before and after nonzero ones) give optax's updates and states, NaN included;
* a trajectory inside ``lax.scan`` equals the same steps taken one jitted call at a time;
* int32 step counts saturate at 2**31 - 1 (a state started at 2**31 - 2, stepped twice), as
  optax's do, with the same updates;
* fdl atoms inside ``optax.chain`` and optax atoms inside ``fdl.optim.base.chain``, in both
  orders, give what the all-fdl and all-optax chains give;
* each alias reduces the quadratic and Rosenbrock losses by the factor its row of
  :data:`REDUCTIONS` states, in the steps and with the hyperparameters it states;
* invalid hyperparameters are rejected at construction, the message naming the argument and the
  value; hyperparameters given as traced arrays are accepted (they cannot be checked);
* fdl's two documented departures from optax behave as documented.

optax's code runs under standard promotion (``optax_promotion``): it raises Python-float decay
rates to an int32 count, which the suite's strict promotion rejects. fdl's code runs strict.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import re
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim import base, schedules
from fdl.regularizers import skip_biases
from tests.optim.helpers import (
    assert_same_tree,
    make_problem,
    minimize,
    optax_promotion,
    start,
)

DTYPES = ("float32", "bfloat16", "float64")
SCHEDULE = schedules.warmup_cosine_decay_schedule(0.0, 0.1, warmup_steps=3, decay_steps=20)


_ADAM_FAMILY = ("adam", "adamw", "nadam", "nadamw", "amsgrad", "adamax")
MODULE_OF = {  # fdl.optim.<module> that defines each transformation
    **dict.fromkeys(("adam", "adamw", "nadam", "nadamw", "scale_by_adam"), "adam"),
    "amsgrad": "amsgrad",
    "scale_by_amsgrad": "amsgrad",
    "adamax": "adamax",
    "scale_by_adamax": "adamax",
    "sgd": "momentum",
    "trace": "momentum",
    "rmsprop": "rms",
    "scale_by_rms": "rms",
    "scale_by_stddev": "rms",
    "adagrad": "adagrad",
    "scale_by_rss": "adagrad",
    "adadelta": "adadelta",
    "scale_by_adadelta": "adadelta",
    "lion": "lion",
    "scale_by_lion": "lion",
    "add_decayed_weights": "weight_decay",
    "masked": "weight_decay",
    "clip": "clipping",
    "clip_by_global_norm": "clipping",
}


def fdl_factory(name: str) -> Any:
    return getattr(importlib.import_module(f"fdl.optim.{MODULE_OF[name]}"), name)


@dataclasses.dataclass(frozen=True)
class Spec:
    """``fdl.optim.<module>.<name>(**kwargs)`` and ``optax.<name>(**kwargs)``."""

    name: str
    kwargs: dict

    def fdl(self, **override: Any) -> Any:
        return fdl_factory(self.name)(**{**self.kwargs, **override})

    def optax(self, **override: Any) -> Any:
        return getattr(optax, self.name)(**{**self.kwargs, **override})


# Every alias, with settings that switch its options on (one row per distinct code path).
ALIASES = {
    "sgd": Spec("sgd", dict(learning_rate=0.1)),
    "sgd-nesterov": Spec("sgd", dict(learning_rate=0.1, momentum=0.9, nesterov=True)),
    "adam": Spec("adam", dict(learning_rate=0.1)),
    "adam-schedule": Spec("adam", dict(learning_rate=SCHEDULE, nesterov=True)),
    "adamw-mask": Spec("adamw", dict(learning_rate=0.1, weight_decay=0.1, mask=skip_biases)),
    "nadam": Spec("nadam", dict(learning_rate=0.1)),
    "nadamw": Spec("nadamw", dict(learning_rate=0.1, weight_decay=0.1)),
    "amsgrad": Spec("amsgrad", dict(learning_rate=0.1)),
    "adamax": Spec("adamax", dict(learning_rate=0.1)),
    "rmsprop": Spec("rmsprop", dict(learning_rate=0.01)),
    "rmsprop-centered-momentum-bias_correction": Spec(
        "rmsprop",
        dict(learning_rate=0.01, centered=True, momentum=0.9, nesterov=True, bias_correction=True),
    ),
    "adagrad": Spec("adagrad", dict(learning_rate=0.1)),
    "adadelta": Spec("adadelta", dict(learning_rate=1.0, weight_decay=0.01)),
    "lion": Spec("lion", dict(learning_rate=0.01)),
}

# The atoms, for the chaining test.
ATOMS = {
    "trace": Spec("trace", dict(decay=0.9, nesterov=True)),
    "scale_by_adam": Spec("scale_by_adam", dict(nesterov=True)),
    "scale_by_amsgrad": Spec("scale_by_amsgrad", dict()),
    "scale_by_adamax": Spec("scale_by_adamax", dict()),
    "scale_by_rms": Spec("scale_by_rms", dict(bias_correction=True)),
    "scale_by_stddev": Spec("scale_by_stddev", dict()),
    "scale_by_rss": Spec("scale_by_rss", dict()),
    "scale_by_adadelta": Spec("scale_by_adadelta", dict()),
    "scale_by_lion": Spec("scale_by_lion", dict()),
    "add_decayed_weights": Spec("add_decayed_weights", dict(weight_decay=0.1, mask=skip_biases)),
    "clip": Spec("clip", dict(max_delta=0.05)),
    "clip_by_global_norm": Spec("clip_by_global_norm", dict(max_norm=0.1)),
}


def nested_params(dtype: Any = jnp.float32) -> Any:
    """The MLP's parameters: a nested dict with a scalar leaf, in a requested dtype."""
    return start(make_problem("mlp", jnp.dtype(dtype)))


def random_like(key, tree, scale=1.0):
    """Normal draws shaped and typed like ``tree``'s leaves (drawn in float32, then cast)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    draws = [
        (scale * jax.random.normal(k, jnp.shape(x), jnp.float32)).astype(jnp.result_type(x))
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, draws)


def run_steps(runs, grads_list, params):
    """Each ``(optimizer, optax_code, start_state)`` of ``runs`` applied to the gradients of
    ``grads_list`` in turn (parameters held fixed), all in one compiled program, a ``lax.scan``
    each; returns per run the stacked updates and states after each step. ``start_state=None``
    starts from ``init``; ``optax_code`` traces the run under the promotion rules optax needs.

    Compiled, as optimizers are used: in eager mode each operation is compiled on its own while
    optax's bias correction is one jitted function, so roundings could differ by an ulp, which
    ``1 - b2**t`` (cancellation at small t) inflates 500-fold.
    """

    grads = jax.tree.map(lambda *g: jnp.stack(g), *grads_list)

    def program(grads, params, starts):
        outputs = []
        for (optimizer, optax_code, _), first in zip(runs, starts, strict=True):
            with optax_promotion() if optax_code else contextlib.nullcontext():
                state = optimizer.init(params) if first is None else first

                def step(state, g, optimizer=optimizer):
                    updates, state = optimizer.update(g, state, params)
                    return state, (updates, state)

                outputs.append(jax.lax.scan(step, state, grads)[1])
        return outputs

    return jax.jit(program)(grads, params, [first for _, _, first in runs])


# ------------------------------------------------------------------------------------ signatures


@pytest.mark.parametrize("name", sorted(MODULE_OF))
def test_signature_is_optax(name):
    describe = lambda f: [(p.name, p.default, p.kind) for p in inspect.signature(f).parameters.values()]
    assert describe(fdl_factory(name)) == describe(getattr(optax, name))


# ------------------------------------------------------------- compilation, dtypes and structure


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alias", ALIASES, ids=str)
def test_jitted_update_compiles_once_and_keeps_dtypes_and_structure(alias, dtype, keys):
    with jax.enable_x64(dtype == "float64"):
        params = nested_params(dtype)
        optimizer = ALIASES[alias].fdl()

        def step(grads, state, params):
            return optimizer.update(grads, state, params)

        chex.clear_trace_counter()  # chex counts traces per function definition, across tests
        step = jax.jit(chex.assert_max_traces(step, n=1))
        state0 = optimizer.init(params)
        grads1, grads2 = random_like(next(keys), params), random_like(next(keys), params)
        updates1, state1 = step(grads1, state0, params)
        updates2, state2 = step(grads2, state1, params)  # a retrace here fails the test

        describe = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
        assert jax.tree.structure(state1) == jax.tree.structure(state0)
        assert describe(state1) == describe(state0) == describe(state2)
        for updates in (updates1, updates2):
            assert jax.tree.structure(updates) == jax.tree.structure(grads1)
            assert describe(updates) == describe(grads1)
        new_params = base.apply_updates(params, updates2)
        assert describe(new_params) == describe(params)


@pytest.mark.parametrize(
    "param_dtype, update_dtype",
    [("float32", "bfloat16"), ("bfloat16", "float32"), ("bfloat16", "bfloat16")],
)
def test_apply_updates_keeps_the_parameter_dtype_and_equals_optax(param_dtype, update_dtype, keys):
    params = nested_params(param_dtype)
    updates = random_like(next(keys), params, scale=0.1)
    updates = jax.tree.map(lambda u: u.astype(update_dtype), updates)
    ours = base.apply_updates(params, updates)
    with optax_promotion():
        theirs = optax.apply_updates(params, updates)
    assert jax.tree.map(lambda x: x.dtype, ours) == jax.tree.map(lambda x: x.dtype, params)
    chex.assert_trees_all_equal(ours, theirs)


# ---------------------------------------------------------------------------- zero gradients


ZERO_GRADIENT_CASES = {
    **ALIASES,
    # 0/0 cases: both libraries must produce the same thing (NaN here, 0 for adagrad's guard)
    "adam-eps=0": Spec("adam", dict(learning_rate=0.1, eps=0.0)),
    "adagrad-zero_start": Spec("adagrad", dict(learning_rate=0.1, initial_accumulator_value=0.0)),
    "rmsprop-eps=0": Spec("rmsprop", dict(learning_rate=0.1, eps=0.0)),
}


@pytest.mark.parametrize("case", ZERO_GRADIENT_CASES, ids=str)
def test_zero_gradients_as_optax(case, keys):
    params = nested_params()
    zeros = jax.tree.map(jnp.zeros_like, params)
    grads = [zeros, zeros, random_like(next(keys), params), zeros, zeros]
    spec = ZERO_GRADIENT_CASES[case]
    ours, theirs = run_steps([(spec.fdl(), False, None), (spec.optax(), True, None)], grads, params)
    assert_same_tree(ours[0], theirs[0], f"{case} updates, steps 1-5")
    assert_same_tree(ours[1], theirs[1], f"{case} states, steps 1-5")


# ------------------------------------------------------------------------------ inside lax.scan


@pytest.mark.parametrize("alias", ALIASES, ids=str)
def test_scan_equals_step_by_step(alias):
    problem = make_problem("mlp", jnp.float32)
    optimizer = ALIASES[alias].fdl()

    def step(carry, _):
        params, state = carry
        updates, state = optimizer.update(jax.grad(problem.loss)(params), state, params)
        return (base.apply_updates(params, updates), state), None

    init = (start(problem), optimizer.init(start(problem)))
    scanned, _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=10))(init)
    one = jax.jit(lambda c: step(c, None)[0])
    carry = init
    for _ in range(10):
        carry = one(carry)
    # two compilations of the same operations: at most a rounding apart per step (float32)
    chex.assert_trees_all_close(scanned, carry, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------- saturating counts


def _with_counts(state, value):
    """``state`` with every int32 leaf (a step count) set to ``value``."""
    return jax.tree.map(lambda x: jnp.full_like(x, value) if x.dtype == jnp.int32 else x, state)


def _counts(state):
    return [int(x) for x in jax.tree.leaves(state) if x.dtype == jnp.int32]


COUNTED = [a for a in ALIASES if a.startswith(("adam", "nadam", "amsgrad", "lion", "rmsprop-"))]


def test_the_counted_aliases_are_those_with_counts():
    params = nested_params()
    counted = {a for a in ALIASES if _counts(ALIASES[a].fdl().init(params))}
    assert counted == set(COUNTED)


@pytest.mark.parametrize("alias", COUNTED, ids=str)
def test_int32_count_saturates_as_optax(alias, keys):
    params = nested_params()
    top = 2**31 - 1
    spec = ALIASES[alias]
    grads = [random_like(next(keys), params), random_like(next(keys), params)]
    fdl_start = _with_counts(spec.fdl().init(params), top - 1)
    with optax_promotion():
        optax_start = _with_counts(spec.optax().init(params), top - 1)
    ours, theirs = run_steps(
        [(spec.fdl(), False, fdl_start), (spec.optax(), True, optax_start)], grads, params
    )
    counts = [x for x in jax.tree.leaves(ours[1]) if x.dtype == jnp.int32]
    assert counts and all(np.array_equal(c, [top, top]) for c in counts), counts
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(ours[0]))
    assert_same_tree(ours[0], theirs[0], f"{alias} updates, steps 1-2")
    assert_same_tree(ours[1], theirs[1], f"{alias} states, steps 1-2")


# ---------------------------------------------------------------------- mixing fdl and optax


@pytest.mark.parametrize("atom", ATOMS, ids=str)
def test_fdl_and_optax_atoms_chain_in_both_orders(atom, keys):
    """optax.chain(fdl atom, optax atom) and fdl chain(optax atom, fdl atom) equal the all-fdl
    and all-optax chains (the other atom is a stateful trace, so the state threading shows)."""
    params = nested_params()
    grads = [random_like(next(keys), params) for _ in range(4)]
    spec = ATOMS[atom]
    fdl_other = fdl_factory("trace")(decay=0.5)
    optax_other = optax.trace(decay=0.5)
    runs = [
        # fdl atom first: mixed (in optax's chain), all fdl, all optax
        (optax.chain(spec.fdl(), optax_other), True, None),
        (base.chain(spec.fdl(), fdl_other), False, None),
        (optax.chain(spec.optax(), optax_other), True, None),
        # optax atom first: mixed (in fdl's chain), all fdl, all optax
        (base.chain(optax_other, spec.fdl()), True, None),
        (base.chain(fdl_other, spec.fdl()), False, None),
        (optax.chain(optax_other, spec.optax()), True, None),
    ]
    results = run_steps(runs, grads, params)
    for order, (mixed, all_fdl, all_optax) in (
        ("fdl atom first", results[0:3]),
        ("optax atom first", results[3:6]),
    ):
        for name, reference in (("all-fdl", all_fdl), ("all-optax", all_optax)):
            where = f"{atom}, {order}, vs {name}"
            assert_same_tree(mixed[0], reference[0], f"{where} updates")
            assert_same_tree(mixed[1], reference[1], f"{where} states")


# ------------------------------------------------------------------------------- loss reduction

# (alias, problem, hyperparameters, steps, factor): after `steps` steps from the problem's start
# the loss is at most loss(start) / factor. Each factor is about half (or less) of the reduction
# measured in float32 on these fixed problems, so it is met with margin; a row says what its
# optimizer achieves, not a shared bar (Lion moves by a fixed step, Adagrad's steps shrink, ...).
_CENTERED_MOMENTUM = dict(learning_rate=0.003, centered=True, momentum=0.9)
REDUCTIONS = [
    ("sgd", "quadratic", dict(learning_rate=1.0), 300, 1e3),
    ("sgd", "rosenbrock", dict(learning_rate=0.1), 300, 5),
    ("sgd-momentum", "quadratic", dict(learning_rate=0.1, momentum=0.9), 300, 2e3),
    ("sgd-momentum", "rosenbrock", dict(learning_rate=0.1, momentum=0.9), 300, 1e3),
    ("sgd-nesterov", "quadratic", dict(learning_rate=0.1, momentum=0.9, nesterov=True), 300, 2e3),
    ("sgd-nesterov", "rosenbrock", dict(learning_rate=0.05, momentum=0.9, nesterov=True), 300, 100),
    ("adam", "quadratic", dict(learning_rate=0.1), 300, 2e3),
    ("adam", "rosenbrock", dict(learning_rate=0.1), 300, 50),
    ("adamw", "quadratic", dict(learning_rate=0.1, weight_decay=1e-4), 300, 2e3),
    ("adamw", "rosenbrock", dict(learning_rate=0.1, weight_decay=1e-4), 300, 50),
    ("nadam", "quadratic", dict(learning_rate=0.1), 300, 5e3),
    ("nadam", "rosenbrock", dict(learning_rate=0.1), 300, 200),
    ("nadamw", "quadratic", dict(learning_rate=0.1, weight_decay=1e-4), 300, 5e3),
    ("nadamw", "rosenbrock", dict(learning_rate=0.1, weight_decay=1e-4), 300, 200),
    ("amsgrad", "quadratic", dict(learning_rate=0.1), 300, 5),
    ("amsgrad", "rosenbrock", dict(learning_rate=0.1), 300, 5),
    ("adamax", "quadratic", dict(learning_rate=0.1), 300, 10),
    ("adamax", "rosenbrock", dict(learning_rate=0.1), 300, 5),
    ("rmsprop", "quadratic", dict(learning_rate=0.01), 300, 10),
    ("rmsprop", "rosenbrock", dict(learning_rate=0.03), 300, 30),
    ("rmsprop-centered-momentum", "quadratic", dict(_CENTERED_MOMENTUM), 300, 2e5),
    ("rmsprop-centered-momentum", "rosenbrock", dict(_CENTERED_MOMENTUM), 300, 1e4),
    ("adagrad", "quadratic", dict(learning_rate=1.0), 300, 1e4),
    ("adagrad", "rosenbrock", dict(learning_rate=0.3), 300, 5),
    ("adadelta", "quadratic", dict(learning_rate=3.0), 300, 10),
    ("adadelta", "rosenbrock", dict(learning_rate=3.0), 300, 10),
    ("lion", "quadratic", dict(learning_rate=0.01, weight_decay=0.0), 300, 10),
    ("lion", "rosenbrock", dict(learning_rate=0.01, weight_decay=0.0), 300, 200),
]
_NAME_OF = {"sgd-momentum": "sgd", "sgd-nesterov": "sgd", "rmsprop-centered-momentum": "rmsprop"}


def test_every_alias_has_reduction_rows_on_both_problems():
    names = {_NAME_OF.get(row[0], row[0]) for row in REDUCTIONS}
    assert names == {spec.name for spec in ALIASES.values()}
    for alias in {row[0] for row in REDUCTIONS}:
        assert {row[1] for row in REDUCTIONS if row[0] == alias} == {"quadratic", "rosenbrock"}


@pytest.mark.parametrize(
    "alias, problem, kwargs, steps, factor", REDUCTIONS, ids=[f"{r[0]}-{r[1]}" for r in REDUCTIONS]
)
def test_reduces_the_loss_by_the_stated_factor(alias, problem, kwargs, steps, factor):
    optimizer = Spec(_NAME_OF.get(alias, alias), kwargs).fdl()
    losses = minimize(optimizer, make_problem(problem, jnp.float32), steps)
    assert np.all(np.isfinite(losses))
    assert losses[-1] <= losses[0] / factor, (
        f"{alias} on {problem}: loss {losses[0]:.4g} -> {losses[-1]:.4g} in {steps} steps, "
        f"a reduction of {losses[0] / losses[-1]:.3g}, stated {factor:g}"
    )


# ------------------------------------------------------------------------ invalid hyperparameters

INVALID = [
    *[
        (name, "learning_rate", v)
        for name in (*_ADAM_FAMILY, "sgd", "rmsprop", "adagrad", "adadelta", "lion")
        for v in (-0.1, float("nan"))
    ],
    *[(name, arg, v) for name in _ADAM_FAMILY for arg in ("b1", "b2") for v in (1.0, -0.1, 1.5)],
    *[(name, "eps", -1e-8) for name in _ADAM_FAMILY],
    *[(name, "eps_root", -1e-8) for name in ("adam", "adamw", "nadam", "nadamw", "amsgrad")],
    *[(name, "weight_decay", -1e-4) for name in ("adamw", "nadamw", "adadelta", "lion")],
    ("sgd", "momentum", 1.0),
    ("sgd", "momentum", -0.1),
    ("rmsprop", "decay", 1.0),
    ("rmsprop", "decay", -0.5),
    ("rmsprop", "eps", -1e-8),
    ("rmsprop", "initial_scale", -1.0),
    ("rmsprop", "momentum", 1.0),
    ("rmsprop", "momentum", -0.5),
    ("adagrad", "initial_accumulator_value", -0.1),
    ("adagrad", "eps", -1e-7),
    ("adadelta", "rho", 1.0),
    ("adadelta", "rho", -0.1),
    ("adadelta", "eps", -1e-6),
    ("lion", "b1", 1.0),
    ("lion", "b2", -0.1),
    # atoms
    ("trace", "decay", 1.0),
    ("scale_by_adam", "b1", 1.0),
    ("scale_by_adam", "eps", -1.0),
    ("scale_by_amsgrad", "b2", 1.0),
    ("scale_by_adamax", "b1", -0.1),
    ("scale_by_rms", "decay", 1.0),
    ("scale_by_stddev", "eps", -1.0),
    ("scale_by_rss", "initial_accumulator_value", -1.0),
    ("scale_by_adadelta", "rho", 1.0),
    ("scale_by_lion", "b2", 1.0),
    ("add_decayed_weights", "weight_decay", -0.1),
    ("clip", "max_delta", -1.0),
    ("clip_by_global_norm", "max_norm", -1.0),
]
# the arguments every call needs besides the invalid one
_REQUIRED = {"clip": {"max_delta": 1.0}, "clip_by_global_norm": {"max_norm": 1.0}}


@pytest.mark.parametrize("name, arg, value", INVALID, ids=[f"{n}-{a}={v}" for n, a, v in INVALID])
def test_invalid_hyperparameters_are_rejected_naming_argument_and_value(name, arg, value):
    factory = fdl_factory(name)
    kwargs = {**_REQUIRED.get(name, {}), arg: value}
    if "learning_rate" in inspect.signature(factory).parameters and arg != "learning_rate":
        kwargs.setdefault("learning_rate", 0.1)
    with pytest.raises(ValueError, match=rf"^{name}: `{arg}` must .*, got {re.escape(repr(value))}$"):
        factory(**kwargs)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("adam", dict(b1=0.9, b2=0.99, eps=1e-6)),
        ("sgd", dict(momentum=0.9)),
        ("rmsprop", dict(decay=0.9, eps=1e-6)),
        ("lion", dict(b1=0.9, b2=0.99)),
        ("adagrad", dict(initial_accumulator_value=0.1)),
        ("adadelta", dict(rho=0.9)),
    ],
)
def test_traced_hyperparameters_are_accepted_and_match_optax(name, kwargs, keys):
    """A hyperparameter can be a traced array (a sweep under jit or vmap): fdl cannot check it
    and must accept it, as optax does."""
    params = nested_params()
    grads = random_like(next(keys), params)
    names = sorted(kwargs)

    def step(factory, learning_rate, *values):
        optimizer = factory(learning_rate=learning_rate, **dict(zip(names, values, strict=True)))
        return optimizer.update(grads, optimizer.init(params), params)

    values = (0.1, *(kwargs[n] for n in names))
    ours = jax.jit(lambda *v: step(fdl_factory(name), *v))(*values)
    with optax_promotion():
        theirs = jax.jit(lambda *v: step(getattr(optax, name), *v))(*values)
    assert_same_tree(ours[0], theirs[0], f"{name} updates")
    assert_same_tree(ours[1], theirs[1], f"{name} state")


# ---------------------------------------------------------------------- documented departures


def test_adadelta_without_learning_rate_descends_where_optax_ascends(keys):
    """fdl reads ``learning_rate=None`` as 1.0 with the usual minus sign; optax 0.2.8 as
    ``identity()``, whose updates point uphill. Same state, opposite updates."""
    params = nested_params()
    grads = [random_like(next(keys), params) for _ in range(3)]
    ours, theirs = run_steps(
        [
            (ALIASES["adadelta"].fdl(learning_rate=None, weight_decay=0.0), False, None),
            (optax.adadelta(learning_rate=None), True, None),
        ],
        grads,
        params,
    )
    assert_same_tree(ours[0], jax.tree.map(jnp.negative, theirs[0]), "updates, steps 1-3")
    assert_same_tree(ours[1], theirs[1], "states, steps 1-3")


def test_weight_decay_schedule_keeps_bfloat16_where_optax_promotes(keys):
    """A float32 schedule value times bfloat16 parameters: optax's updates become float32,
    fdl's keep the gradients' bfloat16 and equal optax's rounded to bfloat16."""
    params = nested_params("bfloat16")
    grads = random_like(next(keys), params)
    decay = schedules.exponential_decay(0.1, transition_steps=10, decay_rate=0.5)
    spec = Spec("add_decayed_weights", dict(weight_decay=decay))
    runs = [(spec.fdl(), False, None), (spec.optax(), True, None)]
    ours, theirs = run_steps(runs, [grads] * 3, params)
    assert {x.dtype for x in jax.tree.leaves(ours[0])} == {jnp.dtype(jnp.bfloat16)}
    assert {x.dtype for x in jax.tree.leaves(theirs[0])} == {jnp.dtype(jnp.float32)}
    chex.assert_trees_all_equal(ours[0], jax.tree.map(lambda u: u.astype(jnp.bfloat16), theirs[0]))
