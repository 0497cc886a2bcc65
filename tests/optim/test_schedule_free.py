"""Schedule-Free (``fdl.optim.schedule_free``): steps by hand against the equations in NumPy
float64, every step of a few trajectories against ``optax.contrib``, the evaluation
parameters, and every error message."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.adam import adam
from fdl.optim.base import apply_updates
from fdl.optim.momentum import sgd
from fdl.optim.schedule_free import (
    ScheduleFreeState,
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from fdl.optim.schedules import warmup_constant_schedule
from tests.optim.helpers import (
    assert_same_trajectory,
    assert_same_tree,
    make_problem,
    optax_promotion,
    run_trajectories,
    start,
)
from tests.optim.test_atoms import close, f32

STEPS = 150


def _by_hand(grads_fn, y0, lrs, base_lrs, b1, power):
    """Schedule-free SGD in float64: the updates, z, x and the weight sum after the steps
    (``lrs``: the learning rates of the averaging weights, ``base_lrs``: of the SGD steps)."""
    y, z, x = y0.copy(), y0.copy(), y0.copy()
    max_lr, weight_sum, updates = 0.0, 0.0, []
    for lr, base_lr in zip(lrs, base_lrs, strict=True):
        g = grads_fn(y)
        max_lr = max(max_lr, lr)
        weight = max_lr**power
        weight_sum += weight
        c = weight / weight_sum if weight_sum > 0 else 0.0
        z = z - base_lr * g
        x = (1 - c) * x + c * z
        new_y = b1 * x + (1 - b1) * z
        updates.append(new_y - y)
        y = new_y
    return updates, z, x, weight_sum


def test_schedule_free_sgd_with_warmup_three_steps_by_hand():
    target = np.array([1.0, -2.0])

    def grad(y):
        return y - target

    y0 = np.array([0.5, 0.25])

    def warmup(t):  # to 0.5 over 2 steps
        return 0.5 * min(t, 2) / 2

    # the averaging weights use the schedule at step_count = 1, 2, 3; SGD's own count starts at 0
    lrs, base_lrs = [warmup(t) for t in (1, 2, 3)], [warmup(t) for t in (0, 1, 2)]
    expected, z, x, weight_sum = _by_hand(grad, y0, lrs, base_lrs, 0.75, 2.0)
    opt = schedule_free_sgd(learning_rate=0.5, warmup_steps=2, b1=0.75)
    y = jnp.asarray(y0, jnp.float32)
    state = opt.init(y)
    for e in expected:
        u, state = opt.update(jnp.asarray(y - jnp.asarray(target, jnp.float32)), state, y)
        close(u, e)
        y = apply_updates(y, u)
    assert isinstance(state, ScheduleFreeState) and int(state.step_count) == 4
    close(state.z, z), close(state.weight_sum, weight_sum), close(state.max_lr, 0.5)
    close(schedule_free_eval_params(state, y), x)


def test_first_step_from_a_zero_learning_rate_keeps_the_average_at_the_start():
    opt = schedule_free(sgd(0.0), learning_rate=0.0, b1=0.5)
    y = f32(1.0)
    u, state = opt.update(f32(3.0), opt.init(y), y)
    close(u, [0.0])  # c = 0/0 -> 0, z = y: nothing moves
    assert float(state.weight_sum) == 0.0


def test_schedule_free_adamw_is_schedule_free_around_rms_decay_and_lr():
    y = f32(2.0, -1.0)
    g = f32(0.5, 4.0)
    u, state = schedule_free_adamw(0.1, b1=1.0, b2=0.5, eps=0.0, weight_decay=0.25).update(
        g, schedule_free_adamw(0.1).init(y), y
    )
    # b1 = 1: y = x = z after the first step (c = 1); the base step is Adam's with b1 = 0
    close(u, -0.1 * (np.sign([0.5, 4.0]) + 0.25 * np.array([2.0, -1.0])))
    assert isinstance(state, ScheduleFreeState)


def test_eval_params_of_the_initial_state_are_the_parameters():
    y = {"w": f32(1.0, 2.0)}
    state = schedule_free_adamw().init(y)
    close(schedule_free_eval_params(state, y)["w"], [1.0, 2.0])
    assert state.z["w"] is not y["w"]  # z is a copy


# ------------------------------------------------------------------------------- against optax


# With a warmup, optax's side is built from its parts around fdl's warmup schedule: the
# comparison is of schedule_free, and fdl's schedule differs from optax's under jit by an ulp
# at some steps (it computes (W - t) / W where optax computes 1 - t / W).
WARMUP_SGD = warmup_constant_schedule(0.0, 0.5, 20)
WARMUP_ADAMW = warmup_constant_schedule(0.0, 1e-2, 30)


def test_same_updates_and_states_as_optax_step_by_step():
    cases = [
        ("sgd", schedule_free_sgd(0.5), optax.contrib.schedule_free_sgd(0.5)),
        ("adamw", schedule_free_adamw(1e-2), optax.contrib.schedule_free_adamw(1e-2)),
        (
            "adamw_warmup_power",
            schedule_free_adamw(1e-2, warmup_steps=30, weight_decay=1e-2, weight_lr_power=1.0),
            optax.contrib.schedule_free(
                optax.chain(
                    optax.scale_by_rms(decay=0.999, eps=1e-8, eps_in_sqrt=False, bias_correction=True),
                    optax.add_decayed_weights(1e-2),
                    optax.scale_by_learning_rate(WARMUP_ADAMW),
                ),
                WARMUP_ADAMW,
                weight_lr_power=1.0,
            ),
        ),
        (
            "adam_b1_0_state_f32",
            schedule_free(adam(1e-2, b1=0.0), 1e-2, b1=0.8, state_dtype=jnp.float32),
            optax.contrib.schedule_free(optax.adam(1e-2, b1=0.0), 1e-2, b1=0.8, state_dtype=jnp.float32),
        ),
    ]
    pairs, names = [], []
    for name, ours, theirs in cases:
        for problem in ("rosenbrock", "mlp"):
            pairs.append((ours, theirs, make_problem(problem, jnp.float32)))
            names.append(f"{name} on {problem}:")
    pairs.append(
        (
            schedule_free_adamw(1e-2),
            optax.contrib.schedule_free_adamw(1e-2),
            make_problem("mlp", jnp.bfloat16),
        )
    )
    names.append("adamw on mlp in bfloat16:")
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for (ours, theirs), where in zip(records, names, strict=True):
        assert_same_trajectory(ours, theirs, where)


def test_warmup_and_weight_decay_same_as_optax_each_step_compiled_alone():
    """SGD with warmup and weight decay, each library's step compiled on its own.

    In one scan program with optax's step beside it, XLA fuses this case's arithmetic
    differently from optax's (the jaxprs are the same operations): at 2 of 150 steps the new
    parameters differ by one float32 ulp, which the update ``y_new - y`` shows at 5e-6 of its
    size. Compiled alone, the two agree bit for bit at every step."""
    problem = make_problem("rosenbrock", jnp.float32)
    ours = schedule_free_sgd(0.5, warmup_steps=20, b1=0.95, weight_decay=1e-3)
    theirs = optax.contrib.schedule_free(
        optax.chain(optax.add_decayed_weights(1e-3), optax.sgd(WARMUP_SGD)), WARMUP_SGD, b1=0.95
    )

    def optax_step(g, s, y):
        with optax_promotion():
            return theirs.update(g, s, y)

    our_step, optax_step = jax.jit(ours.update), jax.jit(optax_step)
    grad = jax.jit(jax.grad(problem.loss))
    y = start(problem)
    s1 = ours.init(y)
    with optax_promotion():
        s2 = theirs.init(y)
    for k in range(STEPS):
        g = grad(y)
        u1, s1 = our_step(g, s1, y)
        u2, s2 = optax_step(g, s2, y)
        np.testing.assert_array_equal(np.asarray(u1), np.asarray(u2), err_msg=f"step {k}")
        assert_same_tree(s1, s2, f"step {k} state")
        y = apply_updates(y, u1)


def test_eval_params_same_as_optax():
    y = {"w": f32(1.0, 2.0), "b": f32(-0.5)}
    g = jax.tree.map(lambda p: 0.3 * p + 0.1, y)
    ours, theirs = schedule_free_adamw(0.1), optax.contrib.schedule_free_adamw(0.1)
    s1, _ = ours.init(y), None
    with optax_promotion():
        s2 = theirs.init(y)
    u1, s1 = ours.update(g, s1, y)
    with optax_promotion():
        u2, s2 = theirs.update(g, s2, y)
        y2 = optax.apply_updates(y, u2)
        theirs_eval = optax.contrib.schedule_free_eval_params(s2, y2)
    assert_same_tree(schedule_free_eval_params(s1, apply_updates(y, u1)), theirs_eval, "eval params")


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: schedule_free(sgd(0.1), 0.1, b1=0.0),
            ValueError,
            r"^schedule_free: `b1` must be in \(0, 1\] \(the parameters are divided by it\), got 0.0$",
        ),
        (lambda: schedule_free_sgd(b1=1.5), ValueError, r"^schedule_free_sgd: `b1` must be in \(0, 1\]"),
        (
            lambda: schedule_free(sgd(0.1), 0.1, b1="0.9"),
            TypeError,
            r"^schedule_free: `b1` must be a real number, got '0.9' \(str\)$",
        ),
        (
            lambda: schedule_free(sgd(0.1), -0.1),
            ValueError,
            r"^schedule_free: `learning_rate` must be a non-negative number or a schedule",
        ),
        (
            lambda: schedule_free(sgd(0.1), 0.1, weight_lr_power=-1.0),
            ValueError,
            r"^schedule_free: `weight_lr_power` must be a non-negative number, got -1.0$",
        ),
        (
            lambda: schedule_free(0.1, 0.1),
            TypeError,
            r"^schedule_free: `base_optimizer` must be a gradient transformation \(init, update\), e.g. fdl.optim.adam\(1e-3, b1=0.0\), got 0.1$",
        ),
        (
            lambda: schedule_free_sgd(-1.0),
            ValueError,
            r"^schedule_free_sgd: `learning_rate` must be a non-negative number, got -1.0$",
        ),
        (
            lambda: schedule_free_sgd(weight_decay=-1.0),
            ValueError,
            r"^schedule_free_sgd: `weight_decay` must be a non-negative number, got -1.0$",
        ),
        (
            lambda: schedule_free_sgd(warmup_steps=2.5),
            ValueError,
            r"^schedule_free_sgd: `warmup_steps` must be a whole number of steps",
        ),
        (
            lambda: schedule_free_adamw(-1.0),
            ValueError,
            r"^schedule_free_adamw: `learning_rate` must be a non-negative number, got -1.0$",
        ),
        (
            lambda: schedule_free_adamw(b2=1.0),
            ValueError,
            r"^schedule_free_adamw: `b2` must be in \[0, 1\), got 1.0$",
        ),
        (
            lambda: schedule_free_adamw(eps=-1.0),
            ValueError,
            r"^schedule_free_adamw: `eps` must be a non-negative number, got -1.0$",
        ),
        (
            lambda: schedule_free_adamw(weight_decay=-1.0),
            ValueError,
            r"^schedule_free_adamw: `weight_decay` must be a non-negative number, got -1.0$",
        ),
    ],
)
def test_errors_name_the_function_the_argument_and_the_value(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_errors_at_update_and_of_eval_params():
    opt = schedule_free_sgd()
    with pytest.raises(
        ValueError, match=r"^schedule_free needs the parameters: call `update\(grads, state, params\)`$"
    ):
        opt.update(f32(1.0), opt.init(f32(1.0)))
    with pytest.raises(
        ValueError,
        match=r"^schedule_free_eval_params: `state` must be the ScheduleFreeState of schedule_free \(with `b1` and `z`\), got tuple$",
    ):
        schedule_free_eval_params((), f32(1.0))
