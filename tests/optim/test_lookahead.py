"""Lookahead: by hand, against optax step by step, and what it promises (the slow copy moves
every ``sync_period`` steps only, both copies meet at a synchronisation, the fast state resets)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.adam import adam
from fdl.optim.base import apply_updates
from fdl.optim.lookahead import LookaheadParams, LookaheadState, lookahead
from fdl.optim.momentum import sgd
from tests.optim.helpers import assert_same_trajectory, descent_gradient, make_problem, optax_promotion, start

STEPS = 200


def _run_pair(fdl_opt, optax_opt, problem, steps):
    """Both lookaheads for ``steps`` steps in one ``lax.scan``, both fed fdl's fast gradients and
    fdl's parameters (teacher forcing); the records of :func:`assert_same_trajectory`."""
    grad = descent_gradient(problem.loss)

    def step(carry, _):
        params, fdl_state, optax_state = carry
        grads = grad(params.fast)
        fdl_updates, fdl_state = fdl_opt.update(grads, fdl_state, params)
        with optax_promotion():
            optax_params = optax.LookaheadParams(fast=params.fast, slow=params.slow)
            optax_updates, optax_state = optax_opt.update(grads, optax_state, optax_params)
        params = apply_updates(params, fdl_updates)
        return (params, fdl_state, optax_state), (
            {"updates": fdl_updates, "state": fdl_state},
            {"updates": optax_updates, "state": optax_state},
        )

    def run():
        params = LookaheadParams.init_synced(start(problem))
        fdl_state = fdl_opt.init(params)
        with optax_promotion():
            optax_state = optax_opt.init(optax.LookaheadParams.init_synced(start(problem)))
        _, (ours, theirs) = jax.lax.scan(step, (params, fdl_state, optax_state), None, length=steps)
        return {"init_state": fdl_state, **ours}, {"init_state": optax_state, **theirs}

    return jax.device_get(jax.jit(run)())


@pytest.mark.parametrize(
    "problem_name, dtype, inner, kwargs",
    [
        ("mlp", jnp.float32, "adam", dict(sync_period=5, slow_step_size=0.5)),
        ("quadratic", jnp.float32, "sgd", dict(sync_period=3, slow_step_size=0.8, reset_state=True)),
        ("mlp", jnp.float32, "adam", dict(sync_period=4, slow_step_size=1 / 3, reset_state=True)),
        ("rosenbrock", jnp.bfloat16, "adam", dict(sync_period=2, slow_step_size=0.3)),
    ],
    ids=["mlp-adam-k5", "quadratic-momentum-reset", "mlp-adam-reset", "rosenbrock-bf16"],
)
def test_same_updates_and_states_as_optax(problem_name, dtype, inner, kwargs):
    if inner == "adam":
        fdl_inner, optax_inner = adam(1e-2), optax.adam(1e-2)
    else:
        fdl_inner, optax_inner = sgd(0.1, momentum=0.9), optax.sgd(0.1, momentum=0.9)
    fdl_opt = lookahead(fdl_inner, **kwargs)
    optax_opt = optax.lookahead(optax_inner, **kwargs)
    ours, theirs = _run_pair(fdl_opt, optax_opt, make_problem(problem_name, dtype), STEPS)
    assert_same_trajectory(ours, theirs, f"lookahead {problem_name} {kwargs}:")
    leaves = jax.tree.leaves(ours["updates"])
    assert all(leaf.dtype == dtype for leaf in leaves)


# ------------------------------------------------------------------------------------ by hand


def _sgd_by_hand(grad_of, fast, slow, lr, k, alpha, steps):
    """Lookahead over plain SGD in float64: the fast and slow parameters after each step."""
    history = []
    for t in range(steps):
        fast = fast - lr * grad_of(fast)
        if t % k == k - 1:
            slow = slow + alpha * (fast - slow)
            fast = slow
        history.append((fast.copy(), slow.copy()))
    return history


def test_sgd_on_a_quadratic_by_hand():
    # L(w) = 0.5 * sum(c * w^2): gradient c * w
    c = np.array([1.0, 0.25])
    w0 = np.array([2.0, -4.0])
    expected = _sgd_by_hand(lambda w: c * w, w0, w0, lr=0.5, k=3, alpha=0.4, steps=7)
    opt = lookahead(sgd(0.5), sync_period=3, slow_step_size=0.4)
    params = LookaheadParams.init_synced(jnp.asarray(w0, jnp.float32))
    state = opt.init(params)
    cc = jnp.asarray(c, jnp.float32)
    for t, (fast, slow) in enumerate(expected):
        updates, state = opt.update(cc * params.fast, state, params)
        params = apply_updates(params, updates)
        np.testing.assert_allclose(np.asarray(params.fast, np.float64), fast, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(params.slow, np.float64), slow, rtol=1e-6, atol=1e-6)
        assert int(state.steps_since_sync) == (t + 1) % 3


def _constant_gradient_loop(opt, steps):
    """optax's analytic test: gradients {x: 2, y: -2} every step, from {x: 3, y: -3}."""
    grads = {"x": jnp.asarray(2.0), "y": jnp.asarray(-2.0)}
    params = LookaheadParams.init_synced({"x": jnp.asarray(3.0), "y": jnp.asarray(-3.0)})
    state = opt.init(params)
    for _ in range(steps):
        updates, state = opt.update(grads, state, params)
        params = apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize(
    "sync_period, slow_step_size, lr, steps, x",
    [
        (3, 1 / 3, 0.5, 6, 1.0),  # each slow step: 3 - (1/3) * 3 * 0.5 * 2 = 2, then 1
        (1, 0.5, 1.0, 2, 1.0),  # 3 -> 3 - 0.5 * 2 = 2 -> 1
        (1, 0.0, 1.0, 2, 3.0),  # the slow copy never moves
        (1, 1.0, 1.0, 2, -1.0),  # the slow copy follows the fast one
        (2, 1.0, 1.0, 2, -1.0),
    ],
)
def test_optax_analytic_cases(sync_period, slow_step_size, lr, steps, x):
    params, _ = _constant_gradient_loop(lookahead(sgd(lr), sync_period, slow_step_size), steps)
    assert float(params.slow["x"]) == pytest.approx(x, abs=1e-6)
    assert float(params.slow["y"]) == pytest.approx(-x, abs=1e-6)


# ------------------------------------------------------------------------------------ semantics


def test_slow_params_move_every_sync_period_steps_only_and_the_copies_meet():
    problem = make_problem("mlp", jnp.float32)
    opt = lookahead(adam(1e-2), sync_period=4, slow_step_size=0.5)
    params = LookaheadParams.init_synced(start(problem))
    state = opt.init(params)
    step = jax.jit(lambda p, s: opt.update(jax.grad(problem.loss)(p.fast), s, p))
    for t in range(12):
        updates, state = step(params, state)
        new = apply_updates(params, updates)
        moved = any(
            bool(jnp.any(a != b))
            for a, b in zip(jax.tree.leaves(new.slow), jax.tree.leaves(params.slow), strict=True)
        )
        assert moved == (t % 4 == 3), t
        if t % 4 == 3:  # after a synchronisation, fast and slow coincide (up to rounding)
            for a, b in zip(jax.tree.leaves(new.fast), jax.tree.leaves(new.slow), strict=True):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)
        else:  # between them, every slow update is exactly zero
            assert all(float(jnp.max(jnp.abs(u))) == 0.0 for u in jax.tree.leaves(updates.slow))
        params = new


def test_sync_period_one_and_step_size_one_is_the_fast_optimizer_alone():
    problem = make_problem("quadratic", jnp.float32)
    opt = lookahead(adam(0.1), sync_period=1, slow_step_size=1.0)
    inner = adam(0.1)
    params = LookaheadParams.init_synced(start(problem))
    plain = start(problem)
    state, inner_state = opt.init(params), inner.init(plain)
    for _ in range(10):
        updates, state = opt.update(jax.grad(problem.loss)(params.fast), state, params)
        params = apply_updates(params, updates)
        inner_updates, inner_state = inner.update(jax.grad(problem.loss)(plain), inner_state, plain)
        plain = apply_updates(plain, inner_updates)
        np.testing.assert_allclose(np.asarray(params.slow), np.asarray(plain), rtol=1e-6)


@pytest.mark.parametrize("reset_state", [False, True])
def test_reset_state_restarts_the_fast_optimizer_at_each_synchronisation(reset_state):
    opt = lookahead(adam(0.1), sync_period=3, slow_step_size=0.5, reset_state=reset_state)
    _, state = _constant_gradient_loop(opt, 3)
    assert isinstance(state, LookaheadState) and int(state.steps_since_sync) == 0
    adam_state = state.fast_state[0]
    if reset_state:
        assert int(adam_state.count) == 0
        assert all(float(m) == 0.0 for m in jax.tree.leaves(adam_state.mu))
    else:
        assert int(adam_state.count) == 3
        np.testing.assert_allclose(float(adam_state.mu["x"]), 2.0 * (1 - 0.9**3), rtol=1e-6)
    _, state = _constant_gradient_loop(opt, 4)  # one step after the synchronisation
    assert int(state.fast_state[0].count) == (1 if reset_state else 4)


def test_init_takes_plain_parameters_as_the_fast_ones_and_state_dtypes():
    opt = lookahead(adam(0.1), sync_period=2, slow_step_size=0.5)
    plain = {"w": jnp.ones(3, jnp.bfloat16)}
    from_plain, from_pair = opt.init(plain), opt.init(LookaheadParams.init_synced(plain))
    assert jax.tree.structure(from_plain) == jax.tree.structure(from_pair)
    assert from_pair.steps_since_sync.dtype == jnp.int32
    assert from_pair.fast_state[0].mu["w"].dtype == jnp.bfloat16


def test_traced_hyperparameters_are_accepted():
    def run(period, alpha):
        params, _ = _constant_gradient_loop(lookahead(sgd(0.5), period, alpha), 6)
        return params.slow["x"]

    np.testing.assert_allclose(float(jax.jit(run)(3, 1 / 3)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(jax.jit(run)(3.0, 1 / 3)), 1.0, rtol=1e-6)  # a float period


# ------------------------------------------------------------------------------------ errors


def test_bad_arguments_are_refused():
    with pytest.raises(
        TypeError, match=r"^lookahead: `fast_optimizer` must be a gradient transformation with init"
    ):
        lookahead(0.1, 2, 0.5)
    with pytest.raises(ValueError, match=r"^lookahead: `sync_period` must be a whole number >= 1 .*, got 0$"):
        lookahead(sgd(0.1), 0, 0.5)
    with pytest.raises(
        ValueError, match=r"^lookahead: `sync_period` must be a whole number >= 1 .*, got 2.5$"
    ):
        lookahead(sgd(0.1), 2.5, 0.5)
    with pytest.raises(TypeError, match=r"^lookahead: `sync_period` must be a real number, got '2' \(str\)$"):
        lookahead(sgd(0.1), "2", 0.5)
    with pytest.raises(ValueError, match=r"^lookahead: `slow_step_size` must be in \[0, 1\], got 1.5$"):
        lookahead(sgd(0.1), 2, 1.5)
    with pytest.raises(
        TypeError, match=r"^lookahead: `slow_step_size` must be a real number, got True \(bool\)$"
    ):
        lookahead(sgd(0.1), 2, True)


def test_bad_parameters_at_update_are_refused():
    opt = lookahead(sgd(0.1), 2, 0.5)
    plain = {"w": jnp.ones(3)}
    state = opt.init(plain)
    with pytest.raises(
        TypeError,
        match=r"^lookahead: `params` must be the LookaheadParams\(fast=\.\.\., slow=\.\.\.\) .* got dict$",
    ):
        opt.update(plain, state, plain)
    with pytest.raises(TypeError, match=r"got NoneType$"):
        opt.update(plain, state)
    pair = LookaheadParams.init_synced(plain)
    with pytest.raises(
        ValueError,
        match=r"^lookahead: `updates` leaf 'w' has shape \(2,\), but its `params.fast` leaf has shape \(3,\)",
    ):
        opt.update({"w": jnp.ones(2)}, state, pair)
    with pytest.raises(
        ValueError, match=r"^lookahead: `params.slow` leaf 'w' has shape \(1,\), but its `params.fast`"
    ):
        opt.update(plain, state, LookaheadParams(fast=plain, slow={"w": jnp.ones(1)}))
