"""SM3 (``scale_by_sm3``, ``sm3``): a few steps by hand in NumPy float64, leaves of one to three
axes against optax, 200 steps against optax on the test problems, and every error message.

Tolerances are test_atoms.py's: ``RTOL32`` for float32 against float64 references; the
comparisons with optax use helpers.TOLERANCES (bit for bit in bfloat16). optax's SM3 cannot
step a scalar leaf (an ``IndexError``), so the MLP problem (a scalar temperature) is covered
by the error fdl raises instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.base import chain, scale
from fdl.optim.sm3 import ScaleBySM3State, scale_by_sm3, sm3
from tests.optim.helpers import (
    assert_same_trajectory,
    assert_same_tree,
    make_problem,
    optax_promotion,
    run_trajectories,
    start,
)
from tests.optim.test_atoms import close, f32, run

STEPS = 200


def _matrix_by_hand(grads, b1, b2, eps):
    """SM3 on a matrix: a row and a column accumulator, nu from their minimum."""
    rows, cols, m = 0.0, 0.0, 0.0
    fresh = 1.0 if b2 == 1.0 else 1.0 - b2
    outputs = []
    for g in grads:
        nu = fresh * g**2 + b2 * np.minimum(np.reshape(rows, (-1, 1)), np.reshape(cols, (1, -1)))
        r = np.where(nu > 0, g / np.sqrt(np.where(nu > 0, nu, 1.0) + eps), 0.0)  # 0/0 = 0
        m = b1 * m + (1 - b1) * r
        rows, cols = nu.max(axis=1), nu.max(axis=0)
        outputs.append(m)
    return outputs, rows, cols


@pytest.mark.parametrize("b2", [1.0, 0.75, 0.0])
def test_matrix_three_steps_by_hand(b2):
    g1 = np.array([[1.0, 0.0, -2.0], [0.0, 0.0, 0.5]])  # column 1 is zero: nu = 0 there, u = 0
    g2 = np.array([[0.5, 0.0, 1.0], [-3.0, 0.0, 0.25]])
    g3 = np.array([[0.75, 0.0, 0.5], [2.0, 0.0, 1.5]])
    expected, rows, cols = _matrix_by_hand([g1, g2, g3], b1=0.5, b2=b2, eps=1e-8)
    opt = scale_by_sm3(b1=0.5, b2=b2)
    updates, state = run(opt, [jnp.asarray(g, jnp.float32) for g in (g1, g2, g3)])
    for u, e in zip(updates, expected, strict=True):
        close(u, e)
        assert np.all(np.asarray(u)[:, 1] == 0.0)
    assert isinstance(state, ScaleBySM3State)
    assert [m.shape for m in state.mu] == [(2,), (3,)]
    close(state.mu[0], rows), close(state.mu[1], cols), close(state.nu, expected[-1])


def test_vector_is_adagrad_with_momentum():
    grads = [np.array([1.0, -2.0]), np.array([3.0, 0.5]), np.array([0.5, 1.0])]
    total, m, expected = 0.0, 0.0, []
    for g in grads:
        total = total + g**2
        m = 0.25 * m + 0.75 * g / np.sqrt(total + 1e-8)
        expected.append(m)
    updates, state = run(scale_by_sm3(b1=0.25), [f32(*g) for g in grads])
    for u, e in zip(updates, expected, strict=True):
        close(u, e)
    assert len(state.mu) == 1
    close(state.mu[0], total)  # a vector's single accumulator is the whole nu


def test_sm3_is_the_atom_then_a_descent_step():
    g = np.array([2.0, -0.5])
    (u,), state = run(sm3(learning_rate=0.25), [f32(*g)])
    close(u, -0.25 * 0.1 * g / np.sqrt(g**2 + 1e-8))  # momentum 0.9: 0.1 of the first r
    assert isinstance(state[0], ScaleBySM3State) and len(state) == 2


def test_b2_may_be_traced():
    g = jnp.asarray([[1.0, 2.0], [3.0, -1.0]])

    def two_steps(b2):
        opt = scale_by_sm3(b2=b2)
        _, state = opt.update(g, opt.init(g))
        return opt.update(-g, state)[0]

    for b2 in (1.0, 0.5):
        close(jax.jit(two_steps)(b2), np.asarray(two_steps(b2), np.float64))


# --------------------------------------------------------------------------- against optax


SHAPES = [(1,), (5,), (3, 3), (2, 5), (4, 2, 3), (3, 1, 2, 2)]


def test_leaves_of_one_to_four_axes_step_as_optaxs():
    rng = np.random.default_rng(3)
    params = {str(i): jnp.asarray(rng.normal(size=s), jnp.float32) for i, s in enumerate(SHAPES)}
    grads = [
        jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params) for _ in range(3)
    ]
    ours_opt, theirs_opt = scale_by_sm3(b1=0.5, b2=0.9), optax.scale_by_sm3(b1=0.5, b2=0.9)

    def both(params, grads):  # three steps of each, one compiled program
        ours = ours_opt.init(params)
        with optax_promotion():
            theirs = theirs_opt.init(params)
        records = [((None, ours), (None, theirs))]
        for g in grads:
            u, ours = ours_opt.update(g, ours, params)
            with optax_promotion():
                w, theirs = theirs_opt.update(g, theirs, params)
            records.append(((u, ours), (w, theirs)))
        return records

    for step, (ours, theirs) in enumerate(jax.jit(both)(params, grads)):
        assert_same_tree(ours, theirs, f"step {step}")


def test_sm3_and_the_atom_step_by_step_as_optax():
    schedule = optax.linear_schedule(0.1, 0.01, 100)
    cases = {
        "sm3_logistic": (sm3(0.05), optax.sm3(0.05), "logistic", jnp.float32),
        "sm3_momentum_rosenbrock": (
            sm3(0.05, momentum=0.5),
            optax.sm3(0.05, momentum=0.5),
            "rosenbrock",
            jnp.float32,
        ),
        "sm3_logistic_bf16": (sm3(0.05), optax.sm3(0.05), "logistic", jnp.bfloat16),
        "sm3_schedule": (
            sm3(schedule),
            optax.chain(optax.scale_by_sm3(0.9), optax.scale_by_learning_rate(schedule)),
            "quadratic",
            jnp.float32,
        ),
        "atom_moving_average": (
            chain(scale_by_sm3(b1=0.5, b2=0.9, eps=1e-6), scale(-0.05)),
            optax.chain(optax.scale_by_sm3(b1=0.5, b2=0.9, eps=1e-6), optax.scale(-0.05)),
            "logistic",
            jnp.float32,
        ),
        "atom_b2_zero": (
            chain(scale_by_sm3(b1=0.0, b2=0.0), scale(-0.05)),
            optax.chain(optax.scale_by_sm3(b1=0.0, b2=0.0), optax.scale(-0.05)),
            "quadratic",
            jnp.float32,
        ),
    }
    pairs = [(ours, theirs, make_problem(problem, dtype)) for ours, theirs, problem, dtype in cases.values()]
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for name, (ours, theirs) in zip(cases, records, strict=True):
        assert_same_trajectory(ours, theirs, f"{name}:")


# ------------------------------------------------------------------------------------ errors


def test_a_scalar_parameter_is_refused_naming_it():
    params = start(make_problem("mlp", jnp.float32))  # {"net": ..., "temperature": ()}
    with pytest.raises(ValueError) as info:
        sm3(0.1).init(params)
    assert str(info.value) == (
        "scale_by_sm3: the parameter at temperature is a scalar (shape ()); SM3 keeps one "
        "accumulator per axis, and a scalar has none: give it shape (1,)"
    )
    with optax_promotion():
        their_state = optax.scale_by_sm3().init({"t": jnp.ones(())})  # optax's init accepts it
    with pytest.raises(ValueError, match=r"^scale_by_sm3: the parameter at t is a scalar"):
        scale_by_sm3().update({"t": jnp.ones(())}, their_state)


def test_a_complex_parameter_is_refused_naming_it():
    with pytest.raises(ValueError) as info:
        scale_by_sm3().init({"w": jnp.ones(2, jnp.complex64)})
    assert str(info.value) == (
        "scale_by_sm3: the parameter at w is complex64; SM3 compares squared gradients by "
        "size (max, min), so it takes real parameters only"
    )


def test_update_shapes_must_be_the_states():
    opt = scale_by_sm3()
    with pytest.raises(
        ValueError, match=r"^scale_by_sm3: `updates` leaf \(root\) has shape \(3,\), but its `state.nu` leaf"
    ):
        opt.update(jnp.ones(3), opt.init(jnp.ones(2)))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: scale_by_sm3(b1=1.0), ValueError, "scale_by_sm3: `b1` must be in [0, 1), got 1.0"),
        (lambda: scale_by_sm3(b2=1.5), ValueError, "scale_by_sm3: `b2` must be in [0, 1], got 1.5"),
        (
            lambda: scale_by_sm3(eps=-1.0),
            ValueError,
            "scale_by_sm3: `eps` must be a non-negative number, got -1.0",
        ),
        (lambda: scale_by_sm3(b2="1"), TypeError, "scale_by_sm3: `b2` must be a real number, got '1' (str)"),
        (lambda: sm3(0.1, momentum=1.0), ValueError, "sm3: `momentum` must be in [0, 1), got 1.0"),
        (
            lambda: sm3(-0.1),
            ValueError,
            "sm3: `learning_rate` must be a non-negative number or a schedule (a function of the step), got -0.1",
        ),
    ],
)
def test_error_messages(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message
