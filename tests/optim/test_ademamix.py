"""AdEMAMix and Simplified AdEMAMix (``fdl.optim.ademamix``): steps by hand against the
equations in NumPy float64, every step of a few trajectories against ``optax.contrib``, and
every error message."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.ademamix import (
    ScaleByAdemamixState,
    ScaleBySimplifiedAdEMAMixState,
    ademamix,
    scale_by_ademamix,
    scale_by_simplified_ademamix,
    simplified_ademamix,
)
from tests.optim.helpers import assert_same_trajectory, make_problem, run_trajectories
from tests.optim.test_atoms import close, f32, run

STEPS = 150
GRADS = [np.array([0.5, -2.0]), np.array([1.5, 0.1]), np.array([-3.0, 0.2])]


def test_scale_by_ademamix_three_steps_by_hand():
    b1, b2, b3, alpha, eps, eps_root = 0.5, 0.75, 0.875, 3.0, 1e-3, 1e-4
    m1 = m2 = v = np.zeros(2)
    expected = []
    for t, g in enumerate(GRADS, start=1):
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b3 * m2 + (1 - b3) * g
        v = b2 * v + (1 - b2) * g * g
        expected.append((m1 / (1 - b1**t) + alpha * m2) / (np.sqrt(v / (1 - b2**t) + eps_root) + eps))
    opt = scale_by_ademamix(b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps, eps_root=eps_root)
    updates, state = run(opt, [f32(*g) for g in GRADS])
    for u, e in zip(updates, expected, strict=True):
        close(u, e)
    assert isinstance(state, ScaleByAdemamixState)
    assert int(state.count) == 3 and int(state.count_m2) == 3
    close(state.m1, m1), close(state.m2, m2), close(state.nu, v)


def test_b3_and_alpha_schedules_are_evaluated_at_count_m2_before_the_step():
    seen = []

    def b3(count):
        seen.append(int(count))
        return jnp.where(count == 0, 0.5, 0.25).astype(jnp.float32)

    def alpha(count):
        return count.astype(jnp.float32) + 1.0

    opt = scale_by_ademamix(b1=0.0, b2=0.0, b3=b3, alpha=alpha, eps=0.0)
    (u1, u2), state = run(opt, [f32(2.0), f32(4.0)])
    m2_1 = 0.5 * 2.0
    m2_2 = 0.25 * m2_1 + 0.75 * 4.0
    close(u1, [(2.0 + 1.0 * m2_1) / 2.0]), close(u2, [(4.0 + 2.0 * m2_2) / 4.0])
    assert seen == [0, 1]
    close(state.m2, [m2_2])


def test_ademamix_adds_decayed_weights_then_scales_by_minus_the_learning_rate():
    params = f32(1.0, -2.0)
    grads = [f32(*g) for g in GRADS[:2]]
    (_, step), state = run(ademamix(0.25, weight_decay=0.5), grads, params)
    (_, direction), _ = run(scale_by_ademamix(alpha=5.0), grads)
    close(step, -0.25 * (np.asarray(direction, np.float64) + 0.5 * np.asarray(params, np.float64)))
    assert isinstance(state[0], ScaleByAdemamixState)


def test_scale_by_simplified_ademamix_three_steps_by_hand():
    b1, b2, alpha, eps, eps_root = 0.5, 0.75, 2.0, 1e-3, 1e-4
    m = n = np.zeros(2)
    expected = []
    for t, g in enumerate(GRADS, start=1):
        m = b1 * m + g
        n = b2 * n + (1 - b2) * g * g
        expected.append((m + alpha * g) / (np.sqrt(n / (1 - b2**t) + eps_root) + eps))
    opt = scale_by_simplified_ademamix(b1=b1, b2=b2, alpha=alpha, eps=eps, eps_root=eps_root)
    updates, state = run(opt, [f32(*g) for g in GRADS])
    for u, e in zip(updates, expected, strict=True):
        close(u, e)
    assert isinstance(state, ScaleBySimplifiedAdEMAMixState) and int(state.t) == 3
    close(state.m, m), close(state.n, n)


def test_simplified_ademamix_alpha_schedule_and_weight_decay():
    params = f32(2.0)
    opt = simplified_ademamix(
        0.5, b2=0.5, alpha=lambda t: 3.0 * t.astype(jnp.float32), eps=0.0, weight_decay=0.25
    )
    (u1, u2), _ = run(opt, [f32(1.0), f32(1.0)], params)
    # step 1: alpha(0) = 0, m = 1, n_hat = 1: u = 1; step 2: alpha(1) = 3, m = 1.99, n_hat = 1
    close(u1, [-0.5 * (1.0 + 0.25 * 2.0)])
    close(u2, [-0.5 * ((0.99 + 1.0 + 3.0) / 1.0 + 0.25 * 2.0)])


def test_moments_keep_their_dtype_and_updates_the_gradients():
    (u,), state = run(scale_by_ademamix(mu_dtype=jnp.bfloat16), [f32(1.0, 2.0)])
    assert u.dtype == jnp.float32
    assert {state.m1.dtype, state.m2.dtype, state.nu.dtype} == {jnp.dtype(jnp.bfloat16)}
    (u,), state = run(scale_by_simplified_ademamix(), [jnp.ones(2, jnp.bfloat16)])
    assert u.dtype == jnp.bfloat16 and state.m.dtype == jnp.bfloat16 and state.n.dtype == jnp.bfloat16


# ------------------------------------------------------------------------------- against optax


def _warmup(final, steps):
    return lambda count: final * jnp.minimum(count.astype(jnp.float32) / steps, 1.0)


CASES = {
    "default": (dict(), dict()),
    "fast_b3_wd": (dict(b3=0.99, alpha=2.0, weight_decay=1e-2, eps_root=1e-8), dict()),
    "alpha_schedule": (dict(alpha=_warmup(5.0, 50), b3=0.999), dict()),
    "mu_f32": (dict(mu_dtype=jnp.float32), dict()),
}
SIMPLIFIED = {
    "default": dict(),
    "alpha": dict(alpha=10.0, b1=0.9, weight_decay=1e-2),
    "alpha_schedule": dict(alpha=_warmup(5.0, 50), eps_root=1e-8),
}


def test_same_updates_and_states_as_optax_step_by_step():
    pairs, names = [], []
    for name, (kwargs, _) in CASES.items():
        for problem in ("rosenbrock", "mlp"):
            pairs.append(
                (
                    ademamix(1e-2, **kwargs),
                    optax.contrib.ademamix(1e-2, **kwargs),
                    make_problem(problem, jnp.float32),
                )
            )
            names.append(f"ademamix {name} on {problem}:")
    for name, kwargs in SIMPLIFIED.items():
        for problem in ("rosenbrock", "mlp"):
            pairs.append(
                (
                    simplified_ademamix(1e-3, **kwargs),
                    optax.contrib.simplified_ademamix(1e-3, **kwargs),
                    make_problem(problem, jnp.float32),
                )
            )
            names.append(f"simplified_ademamix {name} on {problem}:")
    pairs.append((ademamix(1e-2), optax.contrib.ademamix(1e-2), make_problem("mlp", jnp.bfloat16)))
    names.append("ademamix on mlp in bfloat16:")
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for (ours, theirs), where in zip(records, names, strict=True):
        assert_same_trajectory(ours, theirs, where)


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: scale_by_ademamix(b1=1.0),
            ValueError,
            r"^scale_by_ademamix: `b1` must be in \[0, 1\), got 1.0$",
        ),
        (lambda: ademamix(0.1, b2=-0.1), ValueError, r"^ademamix: `b2` must be in \[0, 1\), got -0.1$"),
        (lambda: ademamix(0.1, b3=1.5), ValueError, r"^ademamix: `b3` must be in \[0, 1\), got 1.5$"),
        (
            lambda: ademamix(0.1, b3="0.9"),
            TypeError,
            r"^ademamix: `b3` must be a real number or a schedule \(a function of the step\), got '0.9' \(str\)$",
        ),
        (
            lambda: ademamix(0.1, alpha=-1.0),
            ValueError,
            r"^ademamix: `alpha` must be a non-negative number or a schedule \(a function of the step\), got -1.0$",
        ),
        (
            lambda: ademamix(0.1, eps=-1.0),
            ValueError,
            r"^ademamix: `eps` must be a non-negative number, got -1.0$",
        ),
        (
            lambda: ademamix(0.1, eps_root=-1.0),
            ValueError,
            r"^ademamix: `eps_root` must be a non-negative number, got -1.0$",
        ),
        (
            lambda: ademamix(0.1, weight_decay=-1.0),
            ValueError,
            r"^ademamix: `weight_decay` must be a non-negative number, got -1.0$",
        ),
        (lambda: ademamix(-0.1), ValueError, r"^ademamix: `learning_rate` must be a non-negative number"),
        (
            lambda: scale_by_simplified_ademamix(b2=1.0),
            ValueError,
            r"^scale_by_simplified_ademamix: `b2` must be in \[0, 1\), got 1.0$",
        ),
        (
            lambda: simplified_ademamix(0.1, alpha=-2.0),
            ValueError,
            r"^simplified_ademamix: `alpha` must be a non-negative number or a schedule \(a function of the step\), got -2.0$",
        ),
        (
            lambda: simplified_ademamix(0.1, weight_decay=-1.0),
            ValueError,
            r"^simplified_ademamix: `weight_decay` must be a non-negative number, got -1.0$",
        ),
    ],
)
def test_errors_name_the_function_the_argument_and_the_value(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_errors_at_init_and_update():
    with pytest.raises(ValueError, match=r"mu_dtype=bfloat16 is a real dtype, but the parameter at"):
        scale_by_ademamix(mu_dtype=jnp.bfloat16).init(jnp.ones(2, jnp.complex64))
    for opt, field in ((scale_by_ademamix(), "nu"), (scale_by_simplified_ademamix(), "n")):
        with pytest.raises(
            ValueError, match=rf"has shape \(3,\), but its `state.{field}` leaf has shape \(2,\)"
        ):
            opt.update(f32(1.0, 2.0, 3.0), opt.init(f32(1.0, 2.0)))
