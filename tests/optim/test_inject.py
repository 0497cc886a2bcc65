"""``inject_hyperparams``: hyperparameters in the state, against optax and without recompiling."""

from __future__ import annotations

import contextlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl import optim
from fdl.optim import schedules
from tests.optim.helpers import assert_same_trajectory, make_problem, optax_promotion, run_trajectories

SCHEDULE = schedules.warmup_cosine_decay_schedule(0.0, 0.02, 20, 200, 1e-3)

CASES = {
    "adam": lambda lib: lib.inject_hyperparams(lib.adam)(learning_rate=1e-2, b1=0.8),
    "sgd-schedule": lambda lib: lib.inject_hyperparams(lib.sgd)(learning_rate=SCHEDULE, momentum=0.9),
    "rmsprop-static": lambda lib: lib.inject_hyperparams(lib.rmsprop, static_args="momentum")(
        learning_rate=1e-3, momentum=0.5
    ),
    "adamw-float32-hyperparams": lambda lib: lib.inject_hyperparams(lib.adamw, hyperparam_dtype=jnp.float32)(
        learning_rate=1e-2, weight_decay=1e-3
    ),
}


# float32 only: in bfloat16, optax's injected Adam rounds b2 = 0.999 to 1 (fdl refuses it, see
# below), and with float32 hyperparameters optax's moments turn float32 after one step (fdl keeps
# each state's dtype: the documented difference, tested below).
@pytest.mark.parametrize("case", list(CASES))
def test_same_updates_and_states_as_optax(case):
    problem = make_problem("mlp", jnp.float32)
    pair = (CASES[case](optim), CASES[case](optax), problem)
    [(ours, theirs)] = run_trajectories([pair], 200, teacher_forcing=True)
    assert_same_trajectory(ours, theirs, f"{case}:")


def test_bfloat16_params_with_float32_hyperparameters_keep_their_dtypes():
    params = {"w": jnp.ones(2, jnp.bfloat16)}
    opt = optim.inject_hyperparams(optim.adam, hyperparam_dtype=jnp.float32)(learning_rate=1e-3)
    state = opt.init(params)
    assert all(v.dtype == jnp.float32 for v in state.hyperparams.values())
    for _ in range(2):
        u, state = jax.jit(opt.update)(params, state, params)
    assert u["w"].dtype == jnp.bfloat16 and state.inner_state[0].mu["w"].dtype == jnp.bfloat16


def test_float32_moments_of_bfloat16_gradients_equal_optaxs_under_float32_hyperparameters():
    """With ``mu_dtype=float32`` both libraries keep the first moment in float32; a float32
    ``b1`` lifts the bfloat16 gradients to float32 before ``(1 - b1) g`` (JAX's promotion), so
    the moments agree to the bit, step after step."""
    params = {"w": jnp.ones(4, jnp.bfloat16)}
    grads = [{"w": jnp.asarray(g, jnp.bfloat16)} for g in ([0.3, -1.7, 2.9, 0.011], [1.1, 0.2, -0.4, 3.0])]

    def moments(lib):
        opt = lib.inject_hyperparams(lib.adam, static_args=("mu_dtype",), hyperparam_dtype=jnp.float32)(
            learning_rate=0.01, b1=0.9, mu_dtype=jnp.float32
        )
        state, out = opt.init(params), []
        for g in grads:  # fdl under the suite's strict promotion, optax under the standard
            with optax_promotion() if lib is optax else contextlib.nullcontext():
                _, state = opt.update(g, state, params)
            out.append(np.asarray(state.inner_state[0].mu["w"]))
        return out

    for ours, theirs in zip(moments(optim), moments(optax), strict=True):
        assert ours.dtype == theirs.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)
    exact = (1 - np.float32(0.9)) * np.asarray(grads[0]["w"], np.float32)
    np.testing.assert_array_equal(moments(optim)[0], exact)  # the float32 product, not a bfloat16 one


def test_a_hyperparameter_that_rounds_out_of_range_is_refused_with_a_hint():
    opt = optim.inject_hyperparams(optim.adam)(learning_rate=1e-3)
    with pytest.raises(
        ValueError, match=r"in bfloat16 .* b2=1.0, .*`b2` must be in \[0, 1\).*hyperparam_dtype=jnp.float32"
    ):
        opt.init({"w": jnp.ones(2, jnp.bfloat16)})


def test_a_jitted_step_changes_its_learning_rate_without_recompiling():
    opt = optim.inject_hyperparams(optim.adam)(learning_rate=0.1)
    params = {"w": jnp.ones(3)}

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        grads = jax.tree.map(lambda p: 2.0 * p, params)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state

    state = opt.init(params)
    moved = []
    for lr in (0.1, 0.01, 0.0, 0.3):
        state.hyperparams["learning_rate"] = jnp.asarray(lr)
        new_params, state = step(params, state)
        moved.append(float(params["w"][0] - new_params["w"][0]))
        params = new_params
    # Adam's steps are about the learning rate each (the first is exactly lr * sign(g))
    np.testing.assert_allclose(moved[0], 0.1, rtol=1e-5)
    assert moved[2] == 0.0 and 0.0 < moved[1] < moved[0] < moved[3]
    assert int(state.count) == 4


def test_hyperparams_are_in_the_state_with_the_params_dtype():
    opt = optim.inject_hyperparams(optim.sgd)(learning_rate=1e-3, momentum=0.5)
    state = opt.init({"w": jnp.ones(2, jnp.bfloat16)})
    assert set(state.hyperparams) == {"learning_rate", "momentum"}
    assert all(v.dtype == jnp.bfloat16 for v in state.hyperparams.values())
    assert state.hyperparams_states == {}


def test_a_schedule_is_evaluated_at_the_wrappers_count_and_recorded():
    opt = optim.inject_hyperparams(optim.sgd)(
        learning_rate=lambda count: 0.5 * (count + 1).astype(jnp.float32)
    )
    state = opt.init(jnp.zeros(1))
    seen = []
    for _ in range(3):
        u, state = opt.update(jnp.ones(1), state)
        seen.append((float(u[0]), float(state.hyperparams["learning_rate"])))
    assert seen == [(-0.5, 0.5), (-1.0, 1.0), (-1.5, 1.5)]
    assert int(state.hyperparams_states["learning_rate"].count) == 3


def test_errors_at_construction():
    with pytest.raises(ValueError, match=r"`static_args` \['momentun'\] are not arguments of 'sgd'"):
        optim.inject_hyperparams(optim.sgd, static_args="momentun")
    with pytest.raises(ValueError, match=r"sgd: `learning_rate` must be a non-negative number"):
        optim.inject_hyperparams(optim.sgd)(learning_rate=-1.0)


def test_inject_stateful_hyperparams_warns_and_is_the_same():
    with pytest.warns(DeprecationWarning, match="use inject_hyperparams"):
        factory = optim.inject_stateful_hyperparams(optim.sgd)
    u, _ = factory(learning_rate=0.25).update(jnp.ones(1), factory(learning_rate=0.25).init(jnp.zeros(1)))
    assert u.tolist() == [-0.25]
