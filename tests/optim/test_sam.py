"""SAM (``fdl.optim.sam``): by hand, its two steps, and step by step against optax.contrib."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

from fdl.optim.adam import adam
from fdl.optim.base import EmptyState, GradientTransformation, apply_updates, chain
from fdl.optim.momentum import sgd
from fdl.optim.sam import NormalizeState, SAMState, normalize, sam
from tests.optim.helpers import (
    assert_same_trajectory,
    assert_same_tree,
    make_problem,
    optax_promotion,
    run_trajectories,
)

STEPS = 120


def _loss(w):
    return 0.5 * jnp.sum(jnp.asarray([1.0, 4.0], w.dtype) * w**2)


def _grad64(w):
    return np.asarray([1.0, 4.0]) * w


def _step(opt, params, state, **kwargs):
    updates, state = opt.update(jax.grad(_loss)(params), state, params, **kwargs)
    return apply_updates(params, updates), updates, state


# ----------------------------------------------------------------------------------- by hand


def test_normalize_divides_by_the_global_norm():
    u, state = normalize().update({"a": jnp.asarray([3.0]), "b": jnp.asarray([[0.0, 4.0]])}, NormalizeState())
    np.testing.assert_array_equal(u["a"], np.float32([0.6]))
    np.testing.assert_array_equal(u["b"], np.float32([[0.0, 0.8]]))
    assert state == EmptyState() and normalize().init({"a": jnp.ones(1)}) == EmptyState()


def test_sam_two_periods_by_hand():
    lr, rho = 0.1, 0.5
    opt = sam(sgd(lr), chain(normalize(), sgd(rho)), sync_period=2)
    params = jnp.asarray([1.0, -2.0], jnp.float32)
    state = opt.init(params)
    theta = np.asarray([1.0, -2.0])
    for _ in range(2):
        g = _grad64(theta)
        adversarial = theta + rho * g / np.linalg.norm(g)
        expected = theta - lr * _grad64(adversarial)
        params, _, state = _step(opt, params, state)  # the ascent
        np.testing.assert_allclose(params, adversarial, rtol=1e-6)
        assert int(state.steps_since_sync) == 1
        np.testing.assert_allclose(state.cache, theta, rtol=1e-6)
        params, _, state = _step(opt, params, state)  # the descent, from theta
        np.testing.assert_allclose(params, expected, rtol=1e-6)
        assert int(state.steps_since_sync) == 0
        theta = expected


def test_the_descent_starts_from_the_original_params_with_the_adversarial_gradient():
    """sync_period=3, Adam adversary, Adam outer: two ascents, then one descent step of the
    outer optimizer taken at the period's start with the last ascent point's gradient."""
    opt = sam(adam(0.05), adam(0.2), sync_period=3)
    params = jnp.asarray([1.0, -2.0], jnp.float32)
    state = opt.init(params)
    outer, adversary = adam(0.05), adam(0.2)
    for period in range(2):
        start_params, start_state = params, state
        adv_params, adv_state = params, adversary.init(params)
        for j in range(2):  # the ascent steps: the adversary's update, negated
            a, adv_state = adversary.update(jax.grad(_loss)(adv_params), adv_state, adv_params)
            adv_params = apply_updates(adv_params, jax.tree.map(jnp.negative, a))
            params, _, state = _step(opt, params, state)
            np.testing.assert_array_equal(params, adv_params)
            assert_same_tree(state.adv_state, adv_state, f"period {period} ascent {j}")
            assert_same_tree(state.opt_state, start_state.opt_state, "the outer state waits")
            np.testing.assert_array_equal(state.cache, start_params)
        d, outer_state = outer.update(jax.grad(_loss)(adv_params), start_state.opt_state, start_params)
        params, _, state = _step(opt, params, state)
        np.testing.assert_allclose(params, apply_updates(start_params, d), rtol=1e-6, atol=1e-7)
        assert_same_tree(state.opt_state, outer_state, "the outer state advances")
        assert_same_tree(state.adv_state, adversary.init(params), "reset_state restarts the adversary")
        assert int(state.steps_since_sync) == 0


def test_without_reset_the_adversary_keeps_its_state_across_the_descent():
    opt = sam(sgd(0.1), adam(0.2), sync_period=2, reset_state=False)
    params = jnp.asarray([1.0, -2.0], jnp.float32)
    state = opt.init(params)
    params, _, state = _step(opt, params, state)
    after_ascent = state.adv_state
    params, _, state = _step(opt, params, state)
    assert_same_tree(state.adv_state, after_ascent, "not advanced by the descent")
    assert int(state.adv_state[0].count) == 1
    params, _, state = _step(opt, params, state)
    assert int(state.adv_state[0].count) == 2  # and carried into the next period


def test_sync_period_one_is_the_outer_optimizer_alone():
    """A deliberate difference: optax's sync_period=1 descends from the previous call's
    params (its cache is read before it is refreshed)."""
    opt, outer = sam(adam(0.1), sgd(1.0), sync_period=1), adam(0.1)
    params = other = jnp.asarray([1.0, -2.0], jnp.float32)
    state, outer_state = opt.init(params), outer.init(params)
    for _ in range(3):
        params, _, state = _step(opt, params, state)
        other, _, outer_state = _step(outer, other, outer_state)
        np.testing.assert_allclose(params, other, rtol=1e-6)


def test_optax_sync_period_one_descends_from_the_previous_params():
    """The difference above, shown on optax: its second call lands at p0 + O(g(p1))."""
    theirs = optax.contrib.sam(optax.sgd(0.1), optax.sgd(1.0), sync_period=1)
    p0 = jnp.asarray([1.0, -2.0], jnp.float32)
    with optax_promotion():
        state = theirs.init(p0)
        u, state = theirs.update(jax.grad(_loss)(p0), state, p0)
        p1 = optax.apply_updates(p0, u)
        u, state = theirs.update(jax.grad(_loss)(p1), state, p1)
        p2 = optax.apply_updates(p1, u)
    np.testing.assert_allclose(p2, np.asarray(p0) - 0.1 * _grad64(np.asarray(p1)), rtol=1e-6)
    ours = sam(sgd(0.1), sgd(1.0), sync_period=1)
    q1, _, ours_state = _step(ours, p0, ours.init(p0))
    q2, _, _ = _step(ours, q1, ours_state)
    np.testing.assert_allclose(q2, np.asarray(q1) - 0.1 * _grad64(np.asarray(q1)), rtol=1e-6)


def test_the_unused_result_cannot_poison_the_update():
    """A zero gradient on the descent call makes normalize's ascent NaN; it is not chosen, so
    the descent update stays finite (optax's blend 1 * d + 0 * NaN is NaN)."""
    opt = sam(sgd(0.1), chain(normalize(), sgd(0.5)), sync_period=2)
    params = jnp.asarray([1.0, -2.0], jnp.float32)
    state = opt.init(params)
    params, _, state = _step(opt, params, state)
    u, state = opt.update(jnp.zeros(2), state, params)
    np.testing.assert_allclose(apply_updates(params, u), [1.0, -2.0], rtol=1e-6)


def test_opaque_mode_is_one_period_of_transparent_mode_in_one_call():
    transparent = sam(sgd(0.1), chain(normalize(), sgd(0.3)), sync_period=3)
    opaque = sam(sgd(0.1), chain(normalize(), sgd(0.3)), sync_period=3, opaque_mode=True)
    p_t = p_o = jnp.asarray([1.0, -2.0], jnp.float32)
    s_t, s_o = transparent.init(p_t), opaque.init(p_o)
    assert s_o.cache is None
    calls = []

    def grad_fn(params, i):
        calls.append(i)
        return jax.grad(_loss)(params)

    for _ in range(2):
        for _ in range(3):
            p_t, _, s_t = _step(transparent, p_t, s_t)
        p_o, _, s_o = _step(opaque, p_o, s_o, grad_fn=grad_fn)
        np.testing.assert_allclose(p_o, p_t, rtol=1e-6)
        assert int(s_o.steps_since_sync) == 0 and s_o.cache is None
    assert calls == [0, 1, 0, 1]


def test_jit_and_a_traced_sync_period_in_transparent_mode():
    def run(period):
        opt = sam(sgd(0.1), chain(normalize(), sgd(0.3)), sync_period=period)
        params = jnp.asarray([1.0, -2.0], jnp.float32)
        state = opt.init(params)
        for _ in range(4):
            params, _, state = _step(opt, params, state)
        return params

    np.testing.assert_array_equal(jax.jit(run)(2), run(2))


def test_extra_arguments_reach_both_optimizers():
    seen = []

    def spy(name):
        def update(updates, state, params=None, **extra_args):
            seen.append((name, sorted(extra_args)))
            return updates, state

        return GradientTransformation(lambda params: EmptyState(), update)

    opt = sam(spy("outer"), spy("adversary"))
    params = jnp.ones(2)
    opt.update(jnp.ones(2), opt.init(params), params, value=1.0)
    assert seen == [("adversary", ["value"]), ("outer", ["value"])]


def test_batch_axis_name_averages_the_adversarial_gradients():
    opaque = sam(sgd(0.1), sgd(0.5), sync_period=2, opaque_mode=True, batch_axis_name="devices")
    scales = jnp.asarray([1.0, 3.0], jnp.float32)  # each "device" sees a differently scaled loss
    params = jnp.asarray([1.0, -2.0], jnp.float32)

    def one(scale):
        def grad_fn(p, i):
            return scale * jax.grad(_loss)(p)

        updates, _ = opaque.update(grad_fn(params, -1), opaque.init(params), params, grad_fn=grad_fn)
        return updates

    updates = jax.vmap(one, axis_name="devices")(scales)
    # device d ascends along its own gradient, then both descend with the mean of the gradients
    mean = np.mean(
        [s * _grad64(np.asarray(params) + 0.5 * s * _grad64(np.asarray(params))) for s in (1.0, 3.0)], 0
    )
    np.testing.assert_allclose(updates, np.stack([-0.1 * mean] * 2), rtol=1e-6)


# -------------------------------------------------------------------------------- against optax


def _pair(opaque_mode=False, **kwargs):
    ours = sam(sgd(0.05), chain(normalize(), adam(0.01)), opaque_mode=opaque_mode, **kwargs)
    theirs = optax.contrib.sam(
        optax.sgd(0.05),
        optax.chain(optax.contrib.normalize(), optax.adam(0.01)),
        opaque_mode=opaque_mode,
        **kwargs,
    )
    return ours, theirs


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(sync_period=3), dict(sync_period=3, reset_state=False)],
    ids=["default", "period3", "no_reset"],
)
def test_transparent_mode_same_updates_and_states_as_optax(kwargs):
    ours, theirs = _pair(**kwargs)
    problems = [make_problem(name, jnp.float32) for name in ("mlp", "rosenbrock")]
    records = run_trajectories([(ours, theirs, p) for p in problems], STEPS, teacher_forcing=True)
    for name, (fdl_record, optax_record) in zip(("mlp", "rosenbrock"), records, strict=True):
        assert_same_trajectory(fdl_record, optax_record, f"sam {kwargs} on {name}:")


def _with_grad_fn(opt, loss):
    grad = jax.grad(loss)

    def update(updates, state, params=None):
        return opt.update(updates, state, params, grad_fn=lambda p, i: grad(p))

    return GradientTransformation(opt.init, update)


@pytest.mark.parametrize(
    "kwargs", [dict(), dict(sync_period=3, reset_state=False)], ids=["default", "no_reset"]
)
def test_opaque_mode_same_updates_and_states_as_optax(kwargs):
    ours, theirs = _pair(opaque_mode=True, **kwargs)
    problem = make_problem("mlp", jnp.float32)
    pair = (_with_grad_fn(ours, problem.loss), _with_grad_fn(theirs, problem.loss), problem)
    [(fdl_record, optax_record)] = run_trajectories([pair], STEPS // 2, teacher_forcing=True)
    assert_same_trajectory(fdl_record, optax_record, f"opaque sam {kwargs}:")


def test_bfloat16_updates_keep_the_gradients_dtype():
    ours, theirs = _pair(sync_period=2)
    params = {"w": jnp.asarray([1.0, -2.0], jnp.bfloat16)}
    grads = {"w": jnp.asarray([0.5, 0.25], jnp.bfloat16)}
    state = ours.init(params)
    with optax_promotion():
        their_state = theirs.init(params)
    for _ in range(2):
        u, state = jax.jit(ours.update)(grads, state, params)
        with optax_promotion():
            v, their_state = jax.jit(theirs.update)(grads, their_state, params)
        assert u["w"].dtype == jnp.bfloat16
        np.testing.assert_array_equal(u["w"], v["w"].astype(jnp.bfloat16))
    assert isinstance(state, SAMState)


# -------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("period", [0, -1, 1.5])
def test_sync_period_must_be_a_whole_number_at_least_one(period):
    with pytest.raises(
        ValueError, match=rf"^sam: `sync_period` must be a whole number >= 1 \(.*\), got {period}$"
    ):
        sam(sgd(0.1), sgd(0.1), sync_period=period)


def test_sync_period_must_be_a_number():
    with pytest.raises(TypeError, match=r"^sam: `sync_period` must be a real number, got '2' \(str\)$"):
        sam(sgd(0.1), sgd(0.1), sync_period="2")


def test_a_traced_sync_period_is_refused_in_opaque_mode():
    with pytest.raises(
        ValueError, match=r"^sam: `sync_period` must be a concrete whole number >= 1 with opaque"
    ):
        jax.jit(lambda k: sam(sgd(0.1), sgd(0.1), sync_period=k, opaque_mode=True).init(jnp.ones(1)))(2)


@pytest.mark.parametrize("name", ["optimizer", "adv_optimizer"])
def test_both_optimizers_must_be_transformations(name):
    args = {"optimizer": sgd(0.1), "adv_optimizer": sgd(0.1), name: 0.1}
    with pytest.raises(TypeError, match=rf"^sam: `{name}` must be a gradient transformation .*, got 0.1$"):
        sam(**args)


def test_transparent_update_needs_params():
    opt = sam(sgd(0.1), sgd(0.1))
    with pytest.raises(ValueError, match=r"^sam: `params` must be given to update \(the descent step starts"):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)))


def test_opaque_update_needs_grad_fn_and_params():
    opt = sam(sgd(0.1), sgd(0.1), opaque_mode=True)
    state = opt.init(jnp.ones(2))
    with pytest.raises(ValueError, match=r"^sam: with opaque_mode=True, update needs the gradient function"):
        opt.update(jnp.ones(2), state, jnp.ones(2))
    with pytest.raises(
        ValueError, match=r"^sam: `params` must be given to update \(the adversarial steps start"
    ):
        opt.update(jnp.ones(2), state, grad_fn=lambda p, i: p)


@pytest.mark.parametrize("opaque_mode", [False, True])
def test_updates_must_match_the_params(opaque_mode):
    opt = sam(sgd(0.1), sgd(0.1), opaque_mode=opaque_mode)
    with pytest.raises(ValueError, match=r"^sam: `updates` .*`params`"):
        opt.update(jnp.ones(3), opt.init(jnp.ones(2)), jnp.ones(2), grad_fn=lambda p, i: p)
