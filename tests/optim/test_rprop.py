"""Rprop (``fdl.optim.rprop``): a few steps against its equations in NumPy float64, every step
and state against optax 0.2.8's on the test problems, and every error message."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.rprop import ScaleByRpropState, rprop, scale_by_rprop
from tests.optim.helpers import assert_same_trajectory, make_problem, optax_promotion, run_trajectories
from tests.optim.test_atoms import close, f32, run

STEPS = 200


def rprop_by_hand(grads, lr, eta_minus=0.5, eta_plus=1.2, low=1e-6, high=50.0):
    """The equations of ``scale_by_rprop``'s docstring in float64: the outputs u_t and the
    last (step sizes, previous updates)."""
    step = np.full_like(np.asarray(grads[0], np.float64), lr)
    prev = np.zeros_like(step)
    outputs = []
    for g in grads:
        g = np.asarray(g, np.float64)
        s = g * prev
        changed = np.clip(step * np.where(s > 0, eta_plus, eta_minus), low, high)
        step = np.where(s == 0, step, changed)
        new_prev = np.where(s < 0, 0.0, step * np.sign(g))
        outputs.append(np.where(s < 0, 0.0, prev))
        prev = new_prev
    return outputs, step, prev


def test_scale_by_rprop_by_hand():
    # kept sign (grow, then hit max), flipped sign, zero gradient, shrink to the floor
    grads = [
        [1.0, 2.0, -1.0, 0.0, 1.0],
        [3.0, -2.0, -1.0, 1.0, -1.0],
        [1.0, 5.0, -4.0, 1.0, 1.0],
        [2.0, 5.0, 0.0, -1.0, -1.0],
        [1.0, -1.0, -1.0, -1.0, 1.0],
    ]
    kwargs = dict(eta_minus=0.25, eta_plus=2.0, min_step_size=0.04, max_step_size=0.5)
    outputs, state = run(scale_by_rprop(0.2, **kwargs), [f32(*g) for g in grads])
    expected, step, prev = rprop_by_hand(grads, 0.2, 0.25, 2.0, 0.04, 0.5)
    for u, e in zip(outputs, expected, strict=True):
        close(u, e)
    assert isinstance(state, ScaleByRpropState)
    close(state.step_sizes, step), close(state.prev_updates, prev)
    assert np.asarray(outputs[0]).tolist() == [0.0] * 5  # optax 0.2.8's one-step lag
    close(outputs[2], [0.4, 0.0, -0.4, 0.2, 0.0])  # written out: p_2, 0 after a flip


def test_rprop_steps_against_minus_the_atom_and_keeps_dtypes():
    grads = [f32(1.0, -1.0), f32(1.0, 1.0), f32(1.0, 1.0)]
    steps, state = run(rprop(0.1), grads)
    expected, _, _ = rprop_by_hand(grads, 0.1)
    for u, e in zip(steps, expected, strict=True):
        close(u, -e)
    assert isinstance(state[0], ScaleByRpropState)
    bf = [jnp.asarray([1.0, -2.0], jnp.bfloat16)] * 2
    (u1, u2), state = run(rprop(0.1), bf)
    assert u2.dtype == jnp.bfloat16 and state[0].step_sizes.dtype == jnp.bfloat16
    tenth = float(jnp.asarray(0.1, jnp.bfloat16))
    assert np.asarray(u1, np.float64).tolist() == [-0.0, -0.0]
    assert np.asarray(u2, np.float64).tolist() == [-tenth, tenth]
    # integer parameters: float step sizes (optax's would truncate 0.1 to 0)
    opt = scale_by_rprop(0.1)
    assert opt.init(jnp.zeros(2, jnp.int32)).step_sizes.dtype == jnp.float32


def _pairs(kwargs, dtype, names):
    return [(rprop(**kwargs), optax.rprop(**kwargs), make_problem(name, dtype)) for name in names]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(learning_rate=1e-3),
        dict(learning_rate=0.05, eta_minus=0.3, eta_plus=1.5, min_step_size=1e-3, max_step_size=0.2),
    ],
    ids=["default", "tight"],
)
def test_rprop_same_steps_and_states_as_optax(kwargs):
    pairs = _pairs(kwargs, jnp.float32, ("rosenbrock", "mlp"))
    for (ours, theirs), (*_, problem) in zip(
        run_trajectories(pairs, STEPS, teacher_forcing=True), pairs, strict=True
    ):
        assert_same_trajectory(ours, theirs, f"rprop {kwargs} on {problem.name}:")


def test_rprop_same_steps_as_optax_in_bfloat16():
    pairs = _pairs(dict(learning_rate=1e-2), jnp.bfloat16, ("logistic",))
    [(ours, theirs)] = run_trajectories(pairs, 100, teacher_forcing=True)
    assert_same_trajectory(ours, theirs, "rprop bfloat16 on logistic:")


def test_scale_by_rprop_same_outputs_as_optax_with_zeros_and_flips():
    grads = [f32(1.0, 0.0, -2.0), f32(-1.0, 1.0, -2.0), f32(0.0, 1.0, 2.0), f32(1.0, -1.0, 2.0)]
    ours, theirs = scale_by_rprop(0.1), optax.scale_by_rprop(0.1)
    state, optax_state = ours.init(grads[0]), theirs.init(grads[0])
    for g in grads:
        u, state = ours.update(g, state)
        with optax_promotion():
            v, optax_state = theirs.update(g, optax_state)
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
        for a, b in zip(state, optax_state, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("factory", [scale_by_rprop, rprop])
def test_bad_hyperparameters_are_refused_with_their_messages(factory):
    name = factory.__name__
    with pytest.raises(
        ValueError, match=rf"^{name}: `learning_rate` must be a non-negative number, got -0.1$"
    ):
        factory(-0.1)
    with pytest.raises(ValueError, match=rf"^{name}: `eta_minus` must be in \[0, 1\], got 1.5$"):
        factory(0.1, eta_minus=1.5)
    with pytest.raises(
        ValueError, match=rf"^{name}: `eta_plus` must be >= 1 \(it grows the step size\), got 0.9$"
    ):
        factory(0.1, eta_plus=0.9)
    with pytest.raises(
        ValueError, match=rf"^{name}: `min_step_size` must be a non-negative number, got -1.0$"
    ):
        factory(0.1, min_step_size=-1.0)
    with pytest.raises(
        ValueError, match=rf"^{name}: `max_step_size` must be a non-negative number, got -1.0$"
    ):
        factory(0.1, max_step_size=-1.0)
    with pytest.raises(
        ValueError, match=rf"^{name}: `min_step_size` must be <= `max_step_size`, got 2.0 > 1.0$"
    ):
        factory(0.1, min_step_size=2.0, max_step_size=1.0)
    with pytest.raises(TypeError, match=rf"^{name}: `eta_plus` must be a real number, got '1.2' \(str\)$"):
        factory(0.1, eta_plus="1.2")


def test_traced_hyperparameters_are_accepted_unchecked():
    def step(eta_plus, low):
        opt = rprop(0.1, eta_plus=eta_plus, min_step_size=low)
        return opt.update(f32(1.0), opt.init(f32(0.0)))[0]

    assert jax.jit(step)(0.5, 3.0).tolist() == [0.0]


def test_complex_gradients_are_refused():
    opt = scale_by_rprop(0.1)
    params = {"z": jnp.zeros(2, jnp.complex64)}
    with pytest.raises(
        TypeError, match=r"^scale_by_rprop: the update leaf z is complex64, but Rprop compares"
    ):
        opt.update({"z": jnp.ones(2, jnp.complex64)}, opt.init(params))


def test_a_gradient_of_another_shape_is_refused():
    opt = scale_by_rprop(0.1)
    with pytest.raises(
        ValueError, match=r"^scale_by_rprop: `updates` leaf .* has shape \(3,\), but its `state.step_sizes`"
    ):
        opt.update(jnp.ones(3), opt.init(jnp.zeros(2)))


def test_rprop_on_an_empty_tree_returns_an_empty_tree_as_optax():
    for make in (rprop, scale_by_rprop):
        opt = make(0.1)
        updates, state = opt.update({}, opt.init({}), {})
        assert updates == {} and jax.tree.leaves(state) == []
