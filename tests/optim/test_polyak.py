"""Polyak's step size (``scale_by_polyak``, ``polyak_sgd``): by hand, against optax step by step
with the loss passed as ``value=`` (optax's extra-args protocol), and every error message."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.base import EmptyState, chain, scale
from fdl.optim.polyak import polyak_sgd, scale_by_polyak
from tests.optim.helpers import assert_same_trajectory, make_problem, optax_promotion
from tests.optim.test_atoms import close, f32
from tests.optim.test_noise import trajectory

# ------------------------------------------------------------------------------------ by hand


def test_scale_by_polyak_by_hand():
    g = {"a": f32(1.0, 2.0), "b": f32(2.0)}  # |g|^2 = 9
    opt = scale_by_polyak(f_min=0.5, max_learning_rate=10.0, eps=1.0)
    state = opt.init(g)
    assert state == EmptyState()
    u, state = opt.update(g, state, value=5.0)
    s = (5.0 - 0.5) / (9.0 + 1.0)
    close(u["a"], [s * 1.0, s * 2.0]), close(u["b"], [s * 2.0])
    # the cap
    u, _ = scale_by_polyak(max_learning_rate=0.1).update(g, state, value=jnp.asarray(100.0))
    close(u["a"], [0.1, 0.2])


def test_sps_plus_clips_a_negative_gap_and_sps_keeps_it():
    g = f32(3.0, 4.0)  # |g|^2 = 25
    u, _ = scale_by_polyak(f_min=1.0, variant="sps").update(g, EmptyState(), value=0.0)
    close(u, [-3.0 / 25.0, -4.0 / 25.0])  # a step uphill: the loss is below f_min
    u, _ = scale_by_polyak(f_min=1.0, variant="sps+").update(g, EmptyState(), value=0.0)
    np.testing.assert_array_equal(u, [0.0, 0.0])


def test_a_zero_gradient_gives_a_zero_step():
    u, _ = scale_by_polyak().update(f32(0.0, 0.0), EmptyState(), value=3.0)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    assert not np.isnan(np.asarray(u)).any()


def test_polyak_sgd_two_steps_by_hand():
    """``chain(sgd(scaling), scale_by_polyak)``: the norm is of the scaled step."""
    c, cap = 0.5, 1.5
    opt = polyak_sgd(max_learning_rate=cap, scaling=c)
    params = np.array([1.0, -2.0])
    state = opt.init(f32(*params))
    for _ in range(2):
        loss = 0.5 * float(params @ params)
        g = params  # the gradient of |p|^2 / 2
        scaled = -c * g
        s = min(loss / float(scaled @ scaled), cap)
        u, state = opt.update(f32(*g), state, f32(*params), value=loss)
        close(u, s * scaled)
        params = params + s * scaled


def test_the_updates_keep_their_dtype():
    g = jnp.asarray([1.0, 2.0], jnp.bfloat16)
    u, _ = scale_by_polyak().update(g, EmptyState(), value=jnp.asarray(1.0, jnp.bfloat16))
    assert u.dtype == jnp.bfloat16
    close(u, [0.2, 0.4], rtol=1e-2)


# -------------------------------------------------------------------------------- extra args


def test_value_reaches_the_atom_through_fdl_and_optax_chains():
    g = f32(3.0, 4.0)
    for opt in (
        chain(scale(2.0), scale_by_polyak()),  # |2 g|^2 = 100
        chain(optax.scale(2.0), scale_by_polyak()),  # an optax member takes no extras
        optax.chain(optax.scale(2.0), scale_by_polyak()),
    ):
        with optax_promotion():
            u, _ = opt.update(g, opt.init(g), None, value=50.0)
        close(u, [3.0, 4.0])  # 0.5 * 2 g


def test_value_works_under_jit_and_other_extras_are_ignored():
    opt = polyak_sgd(scaling=1.0)
    g = f32(3.0, 4.0)
    u, _ = jax.jit(lambda g, v: opt.update(g, opt.init(g), value=v, loss=v, grad=g))(g, 5.0)
    close(u, [-0.6, -0.8])


# ---------------------------------------------------------------------------- against optax


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(max_learning_rate=0.5, scaling=0.3, f_min=0.1, eps=1e-3, variant="sps+"),
        dict(max_learning_rate=5.0, scaling=optax.linear_schedule(1.0, 0.1, 100), f_min=-0.5),
    ],
    ids=["defaults", "sps+", "schedule"],
)
def test_polyak_sgd_same_updates_and_states_as_optax(kwargs):
    for name in ("mlp", "rosenbrock"):
        problem = make_problem(name, jnp.float32)
        ours, theirs = trajectory(
            polyak_sgd(**kwargs), optax.polyak_sgd(**kwargs), problem, 200, extra_args=True
        )
        assert_same_trajectory(ours, theirs, f"polyak_sgd {kwargs} on {name}:")


def test_scale_by_polyak_same_as_optax():
    problem = make_problem("logistic", jnp.float32)
    kwargs = dict(f_min=0.2, max_learning_rate=0.3, eps=1e-4)
    ours, theirs = trajectory(
        scale_by_polyak(**kwargs), optax.scale_by_polyak(**kwargs), problem, 100, extra_args=True
    )
    assert_same_trajectory(ours, theirs, "scale_by_polyak:")


# ------------------------------------------------------------------------------------ errors


def test_every_error_message():
    with pytest.raises(
        ValueError, match=r"^scale_by_polyak: `variant` must be one of \('sps', 'sps\+'\), got 'SPS'$"
    ):
        scale_by_polyak(variant="SPS")
    with pytest.raises(
        ValueError, match=r"^polyak_sgd: `variant` must be one of \('sps', 'sps\+'\), got 'spsplus'$"
    ):
        polyak_sgd(variant="spsplus")
    with pytest.raises(
        ValueError, match=r"^scale_by_polyak: `max_learning_rate` must be a non-negative number, got -1\.0$"
    ):
        scale_by_polyak(max_learning_rate=-1.0)
    with pytest.raises(
        ValueError, match=r"^scale_by_polyak: `eps` must be a non-negative number, got -0\.1$"
    ):
        scale_by_polyak(eps=-0.1)
    with pytest.raises(TypeError, match=r"^scale_by_polyak: `f_min` must be a real number, got '0' \(str\)$"):
        scale_by_polyak(f_min="0")
    with pytest.raises(
        ValueError, match=r"^polyak_sgd: `scaling` must be a non-negative number or a schedule"
    ):
        polyak_sgd(scaling=-1.0)
    with pytest.raises(
        TypeError, match=r"^polyak_sgd: `scaling` must be a real number or a schedule .*got '1' \(str\)$"
    ):
        polyak_sgd(scaling="1")
    message = (
        r"^scale_by_polyak needs the loss at the current parameters: call "
        r"`update\(updates, state, params, value=loss\)` \(optax's extra-args protocol\)$"
    )
    g = f32(1.0)
    with pytest.raises(TypeError, match=message):
        scale_by_polyak().update(g, EmptyState())
    opt = polyak_sgd()
    with pytest.raises(TypeError, match=message):
        opt.update(g, opt.init(g), g)
