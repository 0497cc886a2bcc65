"""Fromage: by hand in float64, against optax step by step (constant and scheduled learning
rates, float32 and bfloat16), and every error message."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.base import EmptyState, ScaleByScheduleState, apply_updates
from fdl.optim.fromage import fromage
from tests.optim.helpers import assert_same_trajectory, make_problem, run_trajectories
from tests.optim.test_atoms import close, f32


def _fromage_step(params, grads, lr, min_norm=1e-6):
    """One Fromage step per leaf in float64 NumPy: the paper's update, written out."""
    new = {}
    for name, p in params.items():
        g = grads[name]
        p_norm = max(np.linalg.norm(p), min_norm)
        g_norm = max(np.linalg.norm(g), min_norm)
        ratio = 1.0 if p_norm == 0 or g_norm == 0 else p_norm / g_norm
        new[name] = (p - lr * ratio * g) / np.sqrt(1 + lr**2)
    return new


def test_two_steps_by_hand():
    lr = 0.2
    params = {"w": np.array([3.0, -4.0]), "b": np.array([0.5])}
    grads = [
        {"w": np.array([1.0, 2.0]), "b": np.array([-0.25])},
        {"w": np.array([-0.5, 0.1]), "b": np.array([2.0])},
    ]
    opt = fromage(lr)
    ours = {k: f32(*v) for k, v in params.items()}
    state = opt.init(ours)
    assert state == (EmptyState(), EmptyState(), EmptyState())
    for g in grads:
        updates, state = opt.update({k: f32(*v) for k, v in g.items()}, state, ours)
        ours = apply_updates(ours, updates)
        params = _fromage_step(params, g, lr)
        for k in params:
            close(ours[k], params[k])


def test_the_norms_stay_where_the_step_is_orthogonal():
    params = f32(3.0, 4.0)  # norm 5; a gradient orthogonal to it
    updates, _ = fromage(0.5).update(f32(-4.0, 3.0), fromage(0.5).init(params), params)
    close(np.linalg.norm(np.asarray(apply_updates(params, updates), np.float64)), [5.0])


def test_a_schedule_counts_in_the_last_state():
    opt = fromage(lambda count: 0.1 / (1.0 + count.astype(jnp.float32)))
    params = f32(1.0, 2.0)
    state = opt.init(params)
    expected = np.asarray(params, np.float64)
    for t in range(2):
        g = f32(0.5, -1.0)
        updates, state = opt.update(g, state, params)
        expected = _fromage_step({"p": expected}, {"p": np.asarray(g, np.float64)}, 0.1 / (1 + t))["p"]
        params = apply_updates(params, updates)
        close(params, expected)
    assert isinstance(state[2], ScaleByScheduleState) and int(state[2].count) == 2


def test_a_zero_learning_rate_does_not_move():
    params = f32(1.0, -2.0)
    opt = fromage(0.0)
    updates, _ = opt.update(f32(3.0, 1.0), opt.init(params), params)
    np.testing.assert_array_equal(np.asarray(updates), [0.0, 0.0])


# ---------------------------------------------------------------------------- against optax


def test_same_updates_and_states_as_optax():
    cases = [
        ("0.01 mlp", 0.01, "mlp", jnp.float32),
        ("0.3 quadratic", 0.3, "quadratic", jnp.float32),
        ("schedule rosenbrock", optax.linear_schedule(0.1, 0.01, 100), "rosenbrock", jnp.float32),
        ("0.05 bfloat16 mlp", 0.05, "mlp", jnp.bfloat16),
    ]
    pairs = [(fromage(lr), optax.fromage(lr), make_problem(name, dtype)) for _, lr, name, dtype in cases]
    records = run_trajectories(pairs, 100, teacher_forcing=True)
    for (ours, theirs), (where, *_) in zip(records, cases, strict=True):
        assert_same_trajectory(ours, theirs, f"fromage {where}:")


# ------------------------------------------------------------------------------------ errors


def test_every_error_message():
    with pytest.raises(
        ValueError,
        match=r"^fromage: `learning_rate` must be a non-negative number or a schedule \(a function of the step\), got -0\.1$",
    ):
        fromage(-0.1)
    with pytest.raises(
        TypeError,
        match=r"^fromage: `learning_rate` must be a real number or a schedule \(a function of the step\), got '0\.1' \(str\)$",
    ):
        fromage("0.1")
    with pytest.raises(ValueError, match=r"^fromage: `min_norm` must be a non-negative number, got -1\.0$"):
        fromage(0.1, min_norm=-1.0)
    with pytest.raises(
        TypeError, match=r"^fromage: `min_norm` must be a real number, got None \(NoneType\)$"
    ):
        fromage(0.1, min_norm=None)
    opt = fromage(0.1)  # the update's checks are the trust ratio's, the first member's
    with pytest.raises(ValueError, match=r"^scale_by_trust_ratio: `params` is None; the trust ratio"):
        opt.update(f32(1.0), opt.init(f32(1.0)))
    with pytest.raises(
        ValueError,
        match=r"^scale_by_trust_ratio: `updates` leaf \(root\) has shape \(2,\), but its `params` leaf has shape \(1,\)",
    ):
        opt.update(f32(1.0, 2.0), opt.init(f32(1.0)), f32(1.0))
