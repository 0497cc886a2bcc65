"""DoG (``scale_by_distance_over_gradients``): two steps by hand against the equations in NumPy
float64, step by step against optax, what fdl keeps that optax does not (shapes, dtypes), and
every error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.base import GradientTransformation, apply_updates
from fdl.optim.dog import ScaleByDistanceOverGradientsState, scale_by_distance_over_gradients
from tests.optim.helpers import assert_same_trajectory, make_problem, run_trajectories
from tests.optim.test_atoms import close

STEPS = 300


def _norm(x):
    return np.sqrt(np.sum(np.square(x)))


def test_two_steps_by_hand():
    reps_rel, eps, scale_ = 0.1, 1e-3, 0.5
    p0 = {"a": np.array([3.0, 4.0]), "b": np.array([[1.0, 0.0], [0.0, -2.0]])}
    g1 = {"a": np.array([0.5, -1.0]), "b": np.array([[2.0, 1.0], [0.0, 1.0]])}
    g2 = {"a": np.array([1.5, 0.5]), "b": np.array([[-1.0, 0.0], [3.0, 0.5]])}
    as32 = lambda tree: jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)

    opt = scale_by_distance_over_gradients(reps_rel=reps_rel, eps=eps, global_scale=scale_)
    state = opt.init(as32(p0))
    assert isinstance(state, ScaleByDistanceOverGradientsState)
    for k in p0:
        r0 = reps_rel * (1 + _norm(p0[k]))
        close(state.max_dist[k], r0)
        assert state.max_dist[k].shape == () and state.grad_sum_of_squares[k].shape == (1,)
        assert float(state.grad_sum_of_squares[k][0]) == 0.0

    u1, state = opt.update(as32(g1), state, as32(p0))
    p1 = {k: p0[k] - np.asarray(u1[k], np.float64) for k in p0}  # a descent step along -u
    u2, state = opt.update(as32(g2), state, as32(p1))
    for k in p0:
        r0 = reps_rel * (1 + _norm(p0[k]))
        d1, sum1 = r0, _norm(g1[k]) ** 2  # no distance travelled yet at the first step
        close(u1[k], scale_ * d1 / np.sqrt(sum1 + eps) * g1[k])
        d2, sum2 = max(r0, _norm(p1[k] - p0[k])), sum1 + _norm(g2[k]) ** 2
        close(u2[k], scale_ * d2 / np.sqrt(sum2 + eps) * g2[k])
        close(state.max_dist[k], d2)
        close(state.grad_sum_of_squares[k], [sum2])
        close(state.init_params[k], p0[k])
    assert float(state.max_dist["a"]) > reps_rel * (1 + 5.0)  # "a" moved further than r0


def test_param_dtype_sets_the_stored_start():
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    assert scale_by_distance_over_gradients().init(params).init_params["w"].dtype == jnp.float32
    kept = scale_by_distance_over_gradients(param_dtype=None).init(params)
    assert kept.init_params["w"].dtype == jnp.bfloat16 and kept.max_dist["w"].dtype == jnp.bfloat16


def test_shapes_and_dtypes_stay_put_where_optax_changes_them():
    """A scalar parameter's update is a scalar (optax's has shape (1,)); bfloat16 gradients give
    bfloat16 updates (optax's are float32); the state's dtypes do not change over steps."""
    params = {"s": jnp.asarray(2.0, jnp.bfloat16), "m": jnp.ones((2, 3), jnp.bfloat16)}
    opt = scale_by_distance_over_gradients(global_scale=-1.0)
    state = opt.init(params)
    kinds = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    assert state.max_dist["m"].dtype == jnp.float32  # the dtype of theta - theta_0, float32 start
    for _ in range(3):
        grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
        updates, state = opt.update(grads, state, params)
        assert jax.tree.map(lambda u: (u.shape, u.dtype), updates) == jax.tree.map(
            lambda p: (p.shape, p.dtype), params
        )
        assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == kinds
        params = apply_updates(params, updates)
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        theirs, _ = optax.scale_by_distance_over_gradients().update(
            {"s": jnp.asarray(0.5)},
            optax.scale_by_distance_over_gradients().init({"s": jnp.asarray(2.0)}),
            {"s": jnp.asarray(2.0)},
        )
    assert theirs["s"].shape == (1,)  # what fdl does not copy


def test_under_jit_and_scan_with_traced_hyperparameters():
    @jax.jit
    def run(reps_rel, global_scale):
        opt = scale_by_distance_over_gradients(reps_rel=reps_rel, global_scale=global_scale)

        def step(carry, _):
            params, state = carry
            updates, state = opt.update(2.0 * params, state, params)  # the gradient of |p|^2
            return (apply_updates(params, updates), state), jnp.sum(params**2)

        params = jnp.asarray([3.0, -4.0])
        _, losses = jax.lax.scan(step, (params, opt.init(params)), None, length=50)
        return losses

    losses = np.asarray(run(1e-3, -1.0))
    assert losses[0] == 25.0 and np.all(np.diff(losses) <= 0) and losses[-1] < 1e-3 * losses[0]


# ----------------------------------------------------------------------------- against optax


def _rank_promoting(tx):
    """optax's DoG multiplies each gradient by a step size of shape (1,): a matrix's needs
    NumPy's rank promotion, which the suite otherwise refuses."""

    def update(updates, state, params=None):
        with jax.numpy_rank_promotion("allow"):
            return tx.update(updates, state, params)

    return optax.GradientTransformation(tx.init, update)


SETTINGS = [
    dict(global_scale=-1.0),
    dict(global_scale=-1.0, reps_rel=1e-4, eps=1e-6),
    dict(global_scale=-0.5, reps_rel=1e-3, param_dtype=None),
]


def test_same_updates_and_states_as_optax():
    """float32, on the problems without a scalar parameter (optax's update of a scalar has
    shape (1,), see above): the quadratic, Rosenbrock's valley and the logistic regression."""
    pairs, names = [], []
    for kwargs in SETTINGS:
        for problem in ("quadratic", "rosenbrock", "logistic"):
            ours = scale_by_distance_over_gradients(**kwargs)
            theirs = _rank_promoting(optax.scale_by_distance_over_gradients(**kwargs))
            pairs.append((ours, theirs, make_problem(problem, jnp.float32)))
            names.append(f"DoG {kwargs} on {problem}:")
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for (ours, theirs), name in zip(records, names, strict=True):
        assert_same_trajectory(ours, theirs, name)


# ------------------------------------------------------------------------------------- errors


def test_hyperparameters_out_of_range_are_refused():
    for bad in (0.0, -1e-6):
        with pytest.raises(ValueError) as info:
            scale_by_distance_over_gradients(reps_rel=bad)
        assert str(info.value) == (
            "scale_by_distance_over_gradients: `reps_rel` must be > 0 (a zero initial distance "
            f"makes every step zero), got {bad!r}"
        )
    with pytest.raises(ValueError) as info:
        scale_by_distance_over_gradients(eps=-1.0)
    assert (
        str(info.value) == "scale_by_distance_over_gradients: `eps` must be a non-negative number, got -1.0"
    )


def test_non_numbers_are_refused():
    for arg in ("reps_rel", "eps", "global_scale"):
        with pytest.raises(TypeError) as info:
            scale_by_distance_over_gradients(**{arg: "1"})
        assert (
            str(info.value)
            == f"scale_by_distance_over_gradients: `{arg}` must be a real number, got '1' (str)"
        )


def test_an_update_needs_the_parameters_of_their_shapes():
    opt = scale_by_distance_over_gradients()
    params = {"w": jnp.ones(3)}
    state = opt.init(params)
    with pytest.raises(ValueError) as info:
        opt.update({"w": jnp.ones(3)}, state)
    assert str(info.value) == (
        "scale_by_distance_over_gradients needs the parameters: call `update(updates, state, params)` "
        "(the step size is the distance they travelled)"
    )
    with pytest.raises(ValueError) as info:
        opt.update({"w": jnp.ones(2)}, state, params)
    assert str(info.value) == (
        "scale_by_distance_over_gradients: `updates` leaf 'w' has shape (2,), but its `params` leaf "
        "has shape (3,) (fdl.optim does not broadcast: an update must have the shape of its parameter)"
    )


def test_is_a_gradient_transformation():
    assert isinstance(scale_by_distance_over_gradients(), GradientTransformation)
