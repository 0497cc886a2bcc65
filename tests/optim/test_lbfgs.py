"""L-BFGS: the two-loop recursion against the dense BFGS inverse-Hessian formula (NumPy
float64), a few steps on a quadratic by hand, optax's iterates step by step on Rosenbrock and
logistic regression (with its line-search loop), and every error message."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim import apply_updates, constant_schedule
from fdl.optim.lbfgs import ScaleByLBFGSState, lbfgs, precondition_by_lbfgs, scale_by_lbfgs
from fdl.optim.linesearch import scale_by_backtracking_linesearch, value_and_grad_from_state
from tests.optim.helpers import assert_same_trajectory, make_problem, optax_promotion, run_trajectories, start
from tests.optim.test_linesearch import run_with_linesearch


def _dense_inverse_hessian(pairs, gamma, dim):
    r"""BFGS's recursion :math:`P \leftarrow V^\top P V + \rho\, s s^\top`,
    :math:`V = I - \rho\, y s^\top`, from :math:`\gamma I` over ``pairs`` ``(s, y)``, oldest
    first, in float64."""
    p = gamma * np.eye(dim)
    for s, y in pairs:
        rho = 1.0 / (y @ s)
        v = np.eye(dim) - rho * np.outer(y, s)
        p = v.T @ p @ v + rho * np.outer(s, s)
    return p


def _spd(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T + dim * np.eye(dim)  # (dim, dim), well conditioned


@pytest.mark.parametrize("memory_idx", [0, 2])
def test_two_loop_recursion_equals_the_dense_formula(memory_idx):
    """Three pairs from a quadratic (:math:`y = H s`) in a memory of four slots, the oldest at
    ``memory_idx`` (so the slots wrap around for ``memory_idx=2``), one slot empty."""
    rng = np.random.default_rng(7)
    dim, size = 5, 4
    hessian = _spd(rng, dim)
    pairs = [(s, hessian @ s) for s in rng.normal(size=(3, dim))]
    dw, du, rho = np.zeros((size, dim)), np.zeros((size, dim)), np.zeros(size)
    for j, (s, y) in enumerate(pairs):  # oldest at memory_idx + 1: slot memory_idx is empty
        slot = (memory_idx + 1 + j) % size
        dw[slot], du[slot], rho[slot] = s, y, 1.0 / (y @ s)
    g, gamma = rng.normal(size=dim), 0.3
    out = precondition_by_lbfgs(
        jnp.asarray(g, jnp.float32),
        jnp.asarray(dw, jnp.float32),
        jnp.asarray(du, jnp.float32),
        jnp.asarray(rho, jnp.float32),
        jnp.asarray(gamma, jnp.float32),
        memory_idx,
    )
    expected = _dense_inverse_hessian(pairs, gamma, dim) @ g
    np.testing.assert_allclose(
        np.asarray(out, np.float64), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max()
    )
    # the secant condition of the newest pair: P y = s
    s, y = pairs[-1]
    np.testing.assert_allclose(_dense_inverse_hessian(pairs, gamma, dim) @ y, s, rtol=1e-10)


def test_four_steps_on_a_quadratic_by_hand():
    """``lbfgs(learning_rate=0.5, memory_size=2, linesearch=None)`` on
    :math:`f(w) = \\tfrac12 w^\\top H w - b^\\top w`, against the dense formula with
    :math:`\\gamma_k` from the last pair (the first step: :math:`\\min(1, 1/\\lVert g\\rVert)`)."""
    rng = np.random.default_rng(3)
    dim, lr = 3, 0.5
    hessian, b = _spd(rng, dim) / 10, rng.normal(size=dim)
    opt = lbfgs(learning_rate=lr, memory_size=2, linesearch=None)
    w = jnp.zeros(dim, jnp.float32)
    state = opt.init(w)
    w64, pairs, prev = np.zeros(dim), [], None
    for k in range(4):
        g64 = hessian @ w64 - b
        if prev is not None:
            pairs = [*pairs, (w64 - prev[0], g64 - prev[1])][-2:]
        s, y = pairs[-1] if pairs else (None, None)
        gamma = min(1.0, 1.0 / np.linalg.norm(g64)) if k == 0 else (y @ s) / (y @ y)
        step = -lr * _dense_inverse_hessian(pairs, gamma, dim) @ g64
        grad = jnp.asarray(hessian, jnp.float32) @ w - jnp.asarray(b, jnp.float32)
        u, state = opt.update(grad, state, w)
        np.testing.assert_allclose(np.asarray(u, np.float64), step, rtol=2e-5, atol=1e-6)
        prev, w64, w = (w64, g64), w64 + step, w + u
    lbfgs_state = state[0]
    assert isinstance(lbfgs_state, ScaleByLBFGSState) and int(lbfgs_state.count) == 4
    # pair 2 (the last formed, at step 3) sits in slot 2 % 2 = 0, pair 1 in slot 1
    s, y = pairs[-1]
    np.testing.assert_allclose(np.asarray(lbfgs_state.diff_params_memory[0], np.float64), s, rtol=1e-4)
    np.testing.assert_allclose(float(lbfgs_state.weights_memory[0]), 1.0 / (y @ s), rtol=1e-4)


def test_init_state_layout_and_dtypes():
    params = {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.zeros((3,), jnp.float32)}
    state = scale_by_lbfgs(memory_size=4).init(params)
    assert state.count.dtype == jnp.int32 and state.weights_memory.shape == (4,)
    assert state.weights_memory.dtype == jnp.float32
    assert jax.tree.map(jnp.shape, state.diff_params_memory) == {"w": (4, 2, 3), "b": (4, 3)}
    assert jax.tree.map(jnp.shape, state.diff_updates_memory) == {"w": (4, 2, 3), "b": (4, 3)}
    assert float(jnp.sum(state.params["w"])) == 0.0


# ------------------------------------------------------------------------------ against optax

SEARCH = dict(max_backtracking_steps=15, store_grad=True)


def _backtracking_pair():
    return scale_by_backtracking_linesearch(**SEARCH), optax.scale_by_backtracking_linesearch(**SEARCH)


@pytest.mark.parametrize(
    "kwargs, backtracking",
    [
        (dict(), False),  # optax's default: the zoom line search, memory 10
        (dict(memory_size=3, scale_init_precond=False), False),
        (dict(memory_size=10), True),
        (dict(memory_size=4, learning_rate=0.5), True),
    ],
)
def test_lbfgs_reaches_optax_iterates_step_by_step(kwargs, backtracking):
    """Rosenbrock and logistic regression, each library on its own trajectory (optax's loop),
    equal to float32 precision at every step: parameters, updates, values and states."""
    names = ("rosenbrock", "logistic")
    pairs = []
    for name in names:
        ours, theirs = {}, {}
        if backtracking:
            ours["linesearch"], theirs["linesearch"] = _backtracking_pair()
        pairs.append(
            (lbfgs(**kwargs, **ours), optax.lbfgs(**kwargs, **theirs), make_problem(name, jnp.float32))
        )
    for (ours, theirs), name in zip(run_with_linesearch(pairs), names, strict=True):
        assert_same_trajectory(ours, theirs, f"lbfgs {kwargs} (backtracking: {backtracking}) on {name}")
        values = ours["updates"]["value"]
        assert values[-1] < 0.5 * values[0]  # it optimizes, it does not merely agree


def test_the_atom_and_a_fixed_step_match_optax_step_by_step():
    pairs = [
        (
            scale_by_lbfgs(memory_size=5),
            optax.scale_by_lbfgs(memory_size=5),
            make_problem("rosenbrock", jnp.float32),
        ),
        (
            scale_by_lbfgs(memory_size=2),
            optax.scale_by_lbfgs(memory_size=2),
            make_problem("logistic", jnp.float32),
        ),
    ]
    for (ours, theirs), (_, _, problem) in zip(
        run_trajectories(pairs, 40, teacher_forcing=True, atom_lr=0.05), pairs, strict=True
    ):
        assert_same_trajectory(ours, theirs, f"scale_by_lbfgs on {problem.name}")
    schedule = [
        (
            lbfgs(constant_schedule(0.1), memory_size=3, linesearch=None),
            optax.lbfgs(optax.constant_schedule(0.1), memory_size=3, linesearch=None),
            make_problem("logistic", jnp.float32),
        )
    ]
    ((ours, theirs),) = run_trajectories(schedule, 40)
    assert_same_trajectory(ours, theirs, "lbfgs with a schedule and no line search on logistic")


def test_bfloat16_runs_under_strict_promotion_with_optax_state_dtypes():
    """bfloat16 parameters, a float32 loss, the default (zoom) line search: updates stay
    bfloat16, the state has optax's dtypes after a step, and the loss falls over five steps."""
    problem = make_problem("logistic", jnp.bfloat16)
    opt, reference = lbfgs(), optax.lbfgs()
    value_and_grad = value_and_grad_from_state(problem.loss)

    @jax.jit
    def step(params, state):
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=problem.loss)
        return apply_updates(params, updates), state, updates, value

    params, state, losses = start(problem), opt.init(start(problem)), []
    for _ in range(5):
        params, state, updates, value = step(params, state)
        assert jax.tree.map(lambda u: u.dtype, updates) == {"w": jnp.bfloat16, "b": jnp.bfloat16}
        losses.append(float(value))
    assert losses[-1] < 0.5 * losses[0]

    def optax_step(params):
        with optax_promotion():
            value, grad = jax.value_and_grad(problem.loss)(params)
            state = reference.init(params)
            return reference.update(grad, state, params, value=value, grad=grad, value_fn=problem.loss)[1]

    optax_state = jax.jit(optax_step)(start(problem))
    # leaf by leaf, by position (the classes differ, the field order does not)
    assert [x.dtype for x in jax.tree.leaves(state)] == [x.dtype for x in jax.tree.leaves(optax_state)]


# -------------------------------------------------------------------------------------- errors


def test_memory_size_errors():
    with pytest.raises(
        ValueError,
        match=r"^scale_by_lbfgs: `memory_size` must be >= 1 \(the number of past steps kept\), got 0$",
    ):
        scale_by_lbfgs(memory_size=0)
    with pytest.raises(
        ValueError, match=r"^lbfgs: `memory_size` must be a whole number of steps \(.*\), got 2.5$"
    ):
        lbfgs(memory_size=2.5, linesearch=None)
    with pytest.raises(
        TypeError, match=r"^scale_by_lbfgs: `memory_size` must be a real number, got '10' \(str\)$"
    ):
        scale_by_lbfgs(memory_size="10")
    with pytest.raises(ValueError, match=r"`memory_size` must be a concrete, finite real number"):
        jax.jit(lambda m: scale_by_lbfgs(memory_size=m).init(jnp.ones(2)))(3)


def test_linesearch_learning_rate_and_update_errors():
    with pytest.raises(
        ValueError, match=r"^lbfgs: `learning_rate` must be a non-negative number or a schedule"
    ):
        lbfgs(learning_rate=-1.0, linesearch=None)
    with pytest.raises(
        TypeError, match=r"^lbfgs: `linesearch` must be a gradient transformation .* or None, got 3$"
    ):
        lbfgs(linesearch=3)
    opt = scale_by_lbfgs(memory_size=2)
    state = opt.init(jnp.ones(2))
    with pytest.raises(ValueError, match=r"^scale_by_lbfgs.update needs `params` .*, got None$"):
        opt.update(jnp.ones(2), state)
    with pytest.raises(ValueError, match=r"scale_by_lbfgs"):
        opt.update(jnp.ones(3), state, jnp.ones(3))
