"""Optimistic gradients (``scale_by_optimistic_gradient``, OGD, optimistic Adam): a few steps by
hand against the equations in NumPy float64, step by step against optax, and every error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.base import EmptyState
from fdl.optim.optimistic import (
    ScaleByOptimisticGradientState,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    scale_by_optimistic_gradient,
)
from fdl.optim.schedules import linear_schedule
from tests.optim.helpers import assert_same_trajectory, make_problem, optax_promotion, run_trajectories
from tests.optim.test_atoms import RTOL32, close, f32, run

STEPS = 200


# ------------------------------------------------------------------------------------ by hand


def test_scale_by_optimistic_gradient_by_hand():
    alpha, beta = 0.7, 0.3
    g = [np.array([2.0, -1.0]), np.array([3.0, 0.5]), np.array([-4.0, 1.0])]
    expected = [alpha * g[0]]  # g_0 := g_1: (alpha + beta) g_1 - beta g_1
    expected += [(alpha + beta) * g[t] - beta * g[t - 1] for t in (1, 2)]
    outputs, state = run(scale_by_optimistic_gradient(alpha, beta), [f32(*x) for x in g])
    for u, e in zip(outputs, expected, strict=True):
        close(u, e)
    assert isinstance(state, ScaleByOptimisticGradientState)
    assert state.is_initial_step.dtype == jnp.bool_ and not bool(state.is_initial_step)
    close(state.previous_gradient, g[2])


def test_optax_own_example_default_coefficients():
    """optax's transform_test: with alpha = beta = 1, the first update is the gradient, then
    2 g_t - g_{t-1}."""
    opt = scale_by_optimistic_gradient()
    state = opt.init(jnp.asarray(10.0))
    assert bool(state.is_initial_step) and float(state.previous_gradient) == 0.0
    u0, state = opt.update(jnp.asarray(2.0), state)
    u1, state = opt.update(jnp.asarray(3.0), state)
    u2, _ = opt.update(jnp.asarray(4.0), state)
    assert (float(u0), float(u1), float(u2)) == (2.0, 2 * 3.0 - 2.0, 2 * 4.0 - 3.0)


def test_optimistic_gradient_descent_by_hand():
    lr, alpha, beta = 0.1, 0.7, 0.1
    g = [np.array([1.0, -2.0]), np.array([0.5, 3.0])]
    (u1, u2), state = run(optimistic_gradient_descent(lr, alpha, beta), [f32(*x) for x in g])
    close(u1, -lr * alpha * g[0])
    close(u2, -lr * ((alpha + beta) * g[1] - beta * g[0]))
    assert isinstance(state[0], ScaleByOptimisticGradientState) and state[1] == EmptyState()


def _adam_steps(grads, b1=0.5, b2=0.75, eps=1e-8):
    """Adam's (not NAdam's) normalized steps r_t, in float64 (b2 = 0.75: 1 - 0.999 would lose
    digits to cancellation in float32)."""
    m = v = 0.0
    steps = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        steps.append((m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps))
    return steps


def close_sum(actual, expected, terms):
    """``close`` for a difference of terms: a float32 result is exact to a few ulp of its
    largest term (``terms``, the magnitudes summed), not of itself when the terms cancel."""
    error = np.abs(np.asarray(actual, np.float64) - expected)
    assert np.all(error <= RTOL32 * terms), (actual, expected, error / terms)


def test_optimistic_adam_by_hand():
    lr, optimism = 0.01, 0.5
    g = [np.array([1.0, -2.0]), np.array([3.0, 0.5]), np.array([-1.0, 1.0])]
    r = _adam_steps(g)
    expected = [-lr * r[0]]  # r_0 := r_1
    expected += [-lr * r[t] - optimism * (r[t] - r[t - 1]) for t in (1, 2)]
    outputs, _ = run(optimistic_adam(lr, optimism, b1=0.5, b2=0.75, nesterov=False), [f32(*x) for x in g])
    close(outputs[0], expected[0])
    for t in (1, 2):
        close_sum(outputs[t], expected[t], (lr + 2 * optimism) * np.abs(r[t]) + optimism * np.abs(r[t - 1]))
    # optimism defaults to the learning rate
    default, _ = run(optimistic_adam(lr, b1=0.5, b2=0.75, nesterov=False), [f32(*x) for x in g])
    close_sum(default[1], -lr * r[1] - lr * (r[1] - r[0]), 3 * lr * np.abs(r[1]) + lr * np.abs(r[0]))


def test_optimistic_adam_v2_by_hand_and_with_a_schedule():
    alpha, beta = 0.7, 0.2
    g = [np.array([1.0, -2.0]), np.array([3.0, 0.5])]
    r = _adam_steps(g)
    (u1, u2), _ = run(
        optimistic_adam_v2(0.1, alpha=alpha, beta=beta, b1=0.5, b2=0.75, nesterov=False), [f32(*x) for x in g]
    )
    close(u1, -0.1 * alpha * r[0])
    close_sum(u2, -0.1 * ((alpha + beta) * r[1] - beta * r[0]), 0.2 * (np.abs(r[1]) + np.abs(r[0])))
    schedule = linear_schedule(0.1, 0.0, 10)  # 0.1 at step 0, 0.09 at step 1
    (s1, s2), _ = run(
        optimistic_adam_v2(schedule, alpha=alpha, beta=beta, b1=0.5, b2=0.75, nesterov=False),
        [f32(*x) for x in g],
    )
    close(s1, -0.1 * alpha * r[0])
    close_sum(s2, -0.09 * ((alpha + beta) * r[1] - beta * r[0]), 0.2 * (np.abs(r[1]) + np.abs(r[0])))


def test_optimistic_adam_is_v2_with_the_learning_rate_as_alpha():
    g = [f32(1.0, -2.0), f32(3.0, 0.5), f32(-1.0, 1.0)]
    ours, _ = run(optimistic_adam(0.02, 0.3), g)
    v2, _ = run(optimistic_adam_v2(1.0, alpha=0.02, beta=0.3), g)
    for a, b in zip(ours, v2, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_dtypes_the_gradients_and_the_state_keep():
    opt = scale_by_optimistic_gradient(0.5, 0.25)
    params = {"w": jnp.ones(2, jnp.bfloat16), "n": jnp.ones(2, jnp.int32)}
    state = opt.init(params)
    assert state.previous_gradient["w"].dtype == jnp.bfloat16
    assert state.previous_gradient["n"].dtype == jnp.float32  # integer parameters: float state
    grads = {"w": jnp.ones(2, jnp.float32), "n": jnp.ones(2, jnp.float32)}
    updates, state = opt.update(grads, state)
    updates, state = opt.update(grads, state)
    assert updates["w"].dtype == jnp.float32 and state.previous_gradient["w"].dtype == jnp.bfloat16
    close(updates["w"], [0.5, 0.5])  # 0.75 - 0.25


def test_works_under_jit_with_traced_coefficients():
    @jax.jit
    def first_two(alpha, beta):
        opt = scale_by_optimistic_gradient(alpha, beta)
        state = opt.init(jnp.zeros(1))
        u1, state = opt.update(f32(2.0), state)
        u2, _ = opt.update(f32(3.0), state)
        return u1, u2

    u1, u2 = first_two(0.5, 0.25)
    close(u1, [1.0]), close(u2, [0.75 * 3.0 - 0.25 * 2.0])


# ----------------------------------------------------------------------------- against optax


def _optax_optimistic_adam(*args, **kwargs):
    with pytest.warns(DeprecationWarning, match="optimistic_adam_v2"):
        return optax.optimistic_adam(*args, **kwargs)


CASES = [
    ("ogd", lambda lib: lib.optimistic_gradient_descent(0.05, alpha=0.7, beta=0.1)),
    ("ogd_default", lambda lib: lib.optimistic_gradient_descent(0.05)),
    ("adam", lambda lib: lib.optimistic_adam(0.01)),
    ("adam_optimism", lambda lib: lib.optimistic_adam(0.01, 0.3, nesterov=False, eps_root=1e-8)),
    ("adam_v2", lambda lib: lib.optimistic_adam_v2(0.01)),
    ("adam_v2_schedule", lambda lib: lib.optimistic_adam_v2(lib.linear_schedule(0.02, 0.001, 100), beta=0.5)),
]


class _Fdl:
    optimistic_gradient_descent = staticmethod(optimistic_gradient_descent)
    optimistic_adam = staticmethod(optimistic_adam)
    optimistic_adam_v2 = staticmethod(optimistic_adam_v2)
    linear_schedule = staticmethod(linear_schedule)


class _Optax:
    optimistic_gradient_descent = staticmethod(optax.optimistic_gradient_descent)
    optimistic_adam = staticmethod(_optax_optimistic_adam)
    optimistic_adam_v2 = staticmethod(optax.optimistic_adam_v2)
    linear_schedule = staticmethod(optax.linear_schedule)


def test_same_updates_and_states_as_optax():
    pairs, names = [], []
    for name, build in CASES:  # the MLP (a tree with a scalar leaf) for two of them
        for problem in ("quadratic", "mlp") if name in ("ogd", "adam") else ("quadratic",):
            pairs.append((build(_Fdl), build(_Optax), make_problem(problem, jnp.float32)))
            names.append(f"{name} on {problem}")
    pairs.append((build(_Fdl), build(_Optax), make_problem("logistic", jnp.bfloat16)))
    names.append(f"{CASES[-1][0]} on logistic, bfloat16")
    pairs.append((CASES[0][1](_Fdl), CASES[0][1](_Optax), make_problem("rosenbrock", jnp.bfloat16)))
    names.append(f"{CASES[0][0]} on rosenbrock, bfloat16")
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for (ours, theirs), name in zip(records, names, strict=True):
        assert_same_trajectory(ours, theirs, name)


def test_same_atom_as_optax_one_step_at_a_time():
    grads = [{"a": f32(1.0, -2.0), "b": f32(0.5)}, {"a": f32(3.0, 1.0), "b": f32(-2.0)}]
    ours, theirs = scale_by_optimistic_gradient(0.3, 0.6), optax.scale_by_optimistic_gradient(0.3, 0.6)
    s_ours = ours.init(grads[0])
    with optax_promotion():
        s_theirs = theirs.init(grads[0])
    for g in grads:
        u_ours, s_ours = ours.update(g, s_ours)
        with optax_promotion():
            u_theirs, s_theirs = theirs.update(g, s_theirs)
        for a, b in zip(
            jax.tree.leaves((u_ours, s_ours)), jax.tree.leaves((u_theirs, s_theirs)), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            assert a.dtype == b.dtype


# ------------------------------------------------------------------------------------- errors


def test_optimistic_adam_refuses_a_schedule_naming_v2():
    with pytest.raises(ValueError) as info:
        optimistic_adam(linear_schedule(0.1, 0.0, 10))
    assert str(info.value).startswith(
        "optimistic_adam: `learning_rate` must be a number: optimistic_adam does not take a "
        "schedule (optimistic_adam_v2 does), got <function"
    )


def test_negative_learning_rates_are_refused():
    with pytest.raises(
        ValueError, match=r"^optimistic_adam: `learning_rate` must be a non-negative number, got -0\.1$"
    ):
        optimistic_adam(-0.1)
    with pytest.raises(
        ValueError,
        match=r"^optimistic_adam_v2: `learning_rate` must be a non-negative number or a schedule .*got -0\.1$",
    ):
        optimistic_adam_v2(-0.1)
    with pytest.raises(
        ValueError, match=r"^optimistic_gradient_descent: `learning_rate` must be a non-negative"
    ):
        optimistic_gradient_descent(-0.1)


def test_non_numbers_are_refused_naming_the_function_called():
    with pytest.raises(
        TypeError, match=r"^scale_by_optimistic_gradient: `alpha` must be a real number, got '1' \(str\)$"
    ):
        scale_by_optimistic_gradient(alpha="1")
    with pytest.raises(
        TypeError, match=r"^scale_by_optimistic_gradient: `beta` must be a real number, got True \(bool\)$"
    ):
        scale_by_optimistic_gradient(beta=True)
    with pytest.raises(
        TypeError, match=r"^optimistic_gradient_descent: `beta` must be a real number, got <function"
    ):
        optimistic_gradient_descent(0.1, beta=linear_schedule(1.0, 0.0, 10))  # no schedules here
    with pytest.raises(
        TypeError, match=r"^optimistic_adam: `optimism` must be a real number, got '0.1' \(str\)$"
    ):
        optimistic_adam(0.1, optimism="0.1")
    with pytest.raises(ValueError, match=r"^optimistic_adam_v2: `b1` must be in \[0, 1\), got 1\.0$"):
        optimistic_adam_v2(0.1, b1=1.0)


def test_an_update_of_another_shape_is_refused():
    opt = scale_by_optimistic_gradient()
    state = opt.init({"w": jnp.zeros(3)})
    with pytest.raises(ValueError) as info:
        opt.update({"w": jnp.zeros(2)}, state)
    assert str(info.value) == (
        "scale_by_optimistic_gradient: `updates` leaf 'w' has shape (2,), but its "
        "`state.previous_gradient` leaf has shape (3,) (fdl.optim does not broadcast: an update "
        "must have the shape of its parameter)"
    )
