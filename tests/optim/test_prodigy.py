"""Prodigy (``fdl.optim.prodigy``): three steps by hand against the equations in NumPy
float64, every step of a few trajectories against ``optax.contrib``, and every error
message."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.prodigy import ProdigyState, prodigy
from fdl.optim.schedules import linear_schedule
from tests.optim.helpers import assert_same_trajectory, make_problem, run_trajectories
from tests.optim.test_atoms import close, f32

STEPS = 150


def _by_hand(grads, params, b1, b2, b3, eps, d0, coef, wd, lrs, safeguard):
    theta0 = params[0]
    m = v = s = np.zeros_like(theta0)
    r, d = 0.0, d0
    out = []
    for t, (g, p, lr) in enumerate(zip(grads, params, lrs, strict=True), start=1):
        d_hat = d * lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        dg = d * g
        m = b1 * m + (1 - b1) * dg
        v = b2 * v + (1 - b2) * dg * dg
        s = b3 * s + (d if safeguard else d_hat) * dg / d0
        r = b3 * r + (d / d0) * d_hat * np.dot(g, theta0 - p)
        d = max(d, coef * r / np.abs(s).sum())
        out.append(-wd * d_hat * p - d_hat * m / (np.sqrt(v) + d * eps))
    return out, m, v, s, r, d


@pytest.mark.parametrize("safeguard", [False, True])
def test_prodigy_three_steps_by_hand(safeguard):
    grads = [np.array([0.5, -2.0]), np.array([1.5, 0.1]), np.array([-3.0, 0.2])]
    params = [np.array([1.0, 2.0]), np.array([0.5, 2.5]), np.array([-0.5, 3.0])]
    lrs = [1.0, 0.75, 0.5]  # linear from 1 by -0.25 per step
    kw = dict(b1=0.5, b2=0.75, b3=0.625, eps=1e-3, d0=0.1, coef=2.0, wd=0.125)
    expected, m, v, s, r, d = _by_hand(grads, params, lrs=lrs, safeguard=safeguard, **kw)
    opt = prodigy(
        learning_rate=linear_schedule(1.0, 0.0, 4),
        betas=(0.5, 0.75),
        beta3=0.625,
        eps=1e-3,
        estim_lr0=0.1,
        estim_lr_coef=2.0,
        weight_decay=0.125,
        safeguard_warmup=safeguard,
    )
    state = opt.init(f32(*params[0]))
    for g, p, e in zip(grads, params, expected, strict=True):
        u, state = opt.update(f32(*g), state, f32(*p))
        close(u, e, rtol=5e-6)
    assert isinstance(state, ProdigyState) and int(state.count) == 3
    close(state.exp_avg, m), close(state.exp_avg_sq, v), close(state.grad_sum, s)
    close(state.numerator_weighted, r, rtol=5e-6), close(state.estim_lr, d, rtol=5e-6)
    assert d > 0.1  # the estimate grew
    close(state.params0, params[0])


def test_beta3_defaults_to_the_root_of_b2():
    g, p = f32(1.0, -1.0), f32(0.5, 0.5)
    explicit, implicit = prodigy(betas=(0.9, 0.81), beta3=0.9), prodigy(betas=(0.9, 0.81))
    s1 = explicit.update(g, explicit.init(p), p - 0.25)[1]
    s2 = implicit.update(g, implicit.init(p), p - 0.25)[1]
    close(s2.grad_sum, np.asarray(s1.grad_sum, np.float64))
    close(s2.numerator_weighted, float(s1.numerator_weighted))


# ------------------------------------------------------------------------------- against optax


CASES = {
    "default": dict(),
    "decay_coef": dict(weight_decay=1e-2, estim_lr_coef=0.5, eps=1e-6, estim_lr0=1e-5),
    "beta3_safeguard": dict(betas=(0.8, 0.99), beta3=0.95, safeguard_warmup=True),
}


def test_same_updates_and_states_as_optax_step_by_step():
    pairs, names = [], []
    for name, kwargs in CASES.items():
        for problem in ("rosenbrock", "mlp"):
            pairs.append(
                (prodigy(**kwargs), optax.contrib.prodigy(**kwargs), make_problem(problem, jnp.float32))
            )
            names.append(f"prodigy {name} on {problem}:")
    schedule = linear_schedule(1.0, 0.0, STEPS)
    pairs.append(
        (
            prodigy(learning_rate=schedule),
            optax.contrib.prodigy(learning_rate=schedule),
            make_problem("mlp", jnp.float32),
        )
    )
    names.append("prodigy with a schedule on mlp:")
    pairs.append((prodigy(), optax.contrib.prodigy(), make_problem("mlp", jnp.bfloat16)))
    names.append("prodigy on mlp in bfloat16:")
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for (ours, theirs), where in zip(records, names, strict=True):
        assert_same_trajectory(ours, theirs, where)


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(betas=(0.9,)),
            ValueError,
            r"`betas` must be a pair \(b1, b2\) of numbers in \[0, 1\), got \(0.9,\)$",
        ),
        (dict(betas=0.9), ValueError, r"`betas` must be a pair \(b1, b2\) of numbers in \[0, 1\), got 0.9$"),
        (dict(betas=(1.0, 0.999)), ValueError, r"`betas\[0\]` must be in \[0, 1\), got 1.0$"),
        (dict(betas=(0.9, "0.999")), TypeError, r"`betas\[1\]` must be a real number, got '0.999' \(str\)$"),
        (dict(beta3=1.5), ValueError, r"`beta3` must be in \[0, 1\), got 1.5$"),
        (dict(eps=-1.0), ValueError, r"`eps` must be a non-negative number, got -1.0$"),
        (dict(estim_lr0=0.0), ValueError, r"`estim_lr0` must be > 0 \(sums are divided by it\), got 0.0$"),
        (dict(estim_lr_coef=-1.0), ValueError, r"`estim_lr_coef` must be a non-negative number, got -1.0$"),
        (dict(weight_decay=-1.0), ValueError, r"`weight_decay` must be a non-negative number, got -1.0$"),
        (
            dict(learning_rate=-1.0),
            ValueError,
            r"`learning_rate` must be a non-negative number or a schedule",
        ),
    ],
)
def test_errors_name_the_argument_and_the_value(kwargs, error, message):
    with pytest.raises(error, match=rf"^prodigy: {message}"):
        prodigy(**kwargs)


def test_update_without_params_says_how_to_call_it():
    opt = prodigy()
    with pytest.raises(
        ValueError, match=r"^prodigy needs the parameters: call `update\(updates, state, params\)`$"
    ):
        opt.update(f32(1.0), opt.init(f32(1.0)))
