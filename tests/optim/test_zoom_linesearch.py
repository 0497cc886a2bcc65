"""The zoom line search: its interpolants and the strong Wolfe conditions by hand (NumPy
float64), step-by-step equality with optax (SGD and L-BFGS directions, on Rosenbrock and
logistic regression, with failing searches among them), and every error message."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim import chain, sgd
from fdl.optim.lbfgs import lbfgs
from fdl.optim.zoom_linesearch import (
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    cubic_minimizer,
    quadratic_minimizer,
    scale_by_zoom_linesearch,
)
from tests.optim.helpers import assert_same_trajectory, make_problem
from tests.optim.test_linesearch import run_with_linesearch


def test_interpolants_find_the_stationary_points():
    # p(x) = (x - 1)^3 - 3 (x - 1)^2 + 2: stationary at x = 1 (max) and x = 3 (min)
    def p(x):
        return (x - 1) ** 3 - 3 * (x - 1) ** 2 + 2

    def dp(x):
        return 3 * (x - 1) ** 2 - 6 * (x - 1)

    a, b, c = 2.0, 4.0, 5.0
    args = [jnp.asarray(v, jnp.float32) for v in (a, p(a), dp(a), b, p(b), c, p(c))]
    np.testing.assert_allclose(float(cubic_minimizer(*args)), 3.0, rtol=1e-5)
    # q(x) = 2 (x - 0.75)^2: minimum at 0.75 from q(0), q'(0), q(2)
    q = [jnp.asarray(v, jnp.float32) for v in (0.0, 2 * 0.75**2, -4 * 0.75, 2.0, 2 * 1.25**2)]
    np.testing.assert_allclose(float(quadratic_minimizer(*q)), 0.75, rtol=1e-6)


@pytest.mark.parametrize("approx_dec_rtol", [1e-6, None])
def test_the_step_found_satisfies_the_strong_wolfe_conditions(approx_dec_rtol):
    """An ill-scaled quadratic along minus the gradient: the first trial (1) overshoots, so the
    search brackets and zooms; the step returned meets both conditions, checked in float64."""
    scales = np.asarray([1.0, 30.0])

    def f64(w):
        return float(np.sum(scales * w**2))

    def f(w):
        return jnp.sum(jnp.asarray(scales, jnp.float32) * w**2)

    opt = chain(sgd(1.0), scale_by_zoom_linesearch(10, curv_rtol=0.5, approx_dec_rtol=approx_dec_rtol))
    w = jnp.asarray([1.0, 0.2], jnp.float32)
    grad = jax.grad(f)(w)
    u, state = opt.update(grad, opt.init(w), w, value=f(w), grad=grad, value_fn=f)
    search = state[-1]
    assert isinstance(search, ScaleByZoomLinesearchState) and isinstance(search.info, ZoomLinesearchInfo)
    eta, w64, g64 = (
        float(search.learning_rate),
        np.asarray(w, np.float64),
        2 * scales * np.asarray(w, np.float64),
    )
    d = -g64
    new = w64 + eta * d
    assert 0 < eta < 1 and int(search.info.num_linesearch_steps) > 1
    assert f64(new) <= f64(w64) + 1e-4 * eta * float(g64 @ d) + 1e-6  # sufficient decrease
    assert abs(float((2 * scales * new) @ d)) <= 0.5 * abs(float(g64 @ d)) * (1 + 1e-5)  # curvature
    assert float(search.info.decrease_error) == 0.0 and float(search.info.curvature_error) == 0.0
    np.testing.assert_allclose(np.asarray(u, np.float64), eta * d, rtol=1e-5)
    # the value and gradient kept are those at the step returned
    np.testing.assert_allclose(float(search.value), f64(new), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(search.grad, np.float64), 2 * scales * new, rtol=1e-4, atol=1e-6)


def test_a_nan_objective_gives_a_zero_step_and_verbose_prints(capfd):
    opt = chain(sgd(1.0), scale_by_zoom_linesearch(3, verbose=True))
    w = jnp.ones(2)
    u, state = opt.update(
        w, opt.init(w), w, value=jnp.asarray(2.0), grad=w, value_fn=lambda p: jnp.nan * p[0]
    )
    jax.effects_barrier()
    assert u.tolist() == [0.0, 0.0] and float(state[-1].learning_rate) == 0.0
    assert np.isinf(state[-1].info.decrease_error) and int(state[-1].info.num_linesearch_steps) == 3
    assert "no step satisfies both conditions" in capfd.readouterr().out


def test_init_state():
    params = {"w": jnp.ones(2, jnp.float32)}
    state = scale_by_zoom_linesearch(5).init(params)
    assert float(state.learning_rate) == 1.0 and np.isinf(state.value)
    assert state.info.num_linesearch_steps.dtype == jnp.int32 and np.isinf(state.info.curvature_error)
    assert state.grad["w"].tolist() == [0.0, 0.0]


# ------------------------------------------------------------------------------ against optax

CASES = [
    ("sgd", dict(max_linesearch_steps=15)),
    ("sgd", dict(max_linesearch_steps=15, approx_dec_rtol=None, max_learning_rate=0.5, increase_factor=3.0)),
    ("lbfgs", dict(max_linesearch_steps=3, initial_guess_strategy="one", curv_rtol=0.1)),  # fails often
    (
        "lbfgs",
        dict(max_linesearch_steps=20, initial_guess_strategy="keep", tol=1e-6, stepsize_precision=1e-3),
    ),
]


@pytest.mark.parametrize("direction, kwargs", CASES)
def test_matches_optax_step_by_step(direction, kwargs):
    names = ("rosenbrock", "logistic")
    pairs = []
    for name in names:
        ours, theirs = scale_by_zoom_linesearch(**kwargs), optax.scale_by_zoom_linesearch(**kwargs)
        if direction == "sgd":
            pair = chain(sgd(1.0), ours), optax.chain(optax.sgd(1.0), theirs)
        else:
            pair = lbfgs(memory_size=5, linesearch=ours), optax.lbfgs(memory_size=5, linesearch=theirs)
        pairs.append((*pair, make_problem(name, jnp.float32)))
    trials = []
    for (ours, theirs), name in zip(run_with_linesearch(pairs), names, strict=True):
        assert_same_trajectory(ours, theirs, f"zoom {kwargs} after {direction} on {name}")
        trials.append(ours["state"][-1].info.num_linesearch_steps.max())
    assert max(trials) > 1  # it searched (with a capped step, logistic stops at the cap)


# -------------------------------------------------------------------------------------- errors


def test_hyperparameter_errors():
    with pytest.raises(
        ValueError,
        match=r"^scale_by_zoom_linesearch: `initial_guess_strategy` must be one of 'one', 'keep', got 'two'$",
    ):
        scale_by_zoom_linesearch(5, initial_guess_strategy="two")
    with pytest.raises(
        ValueError,
        match=r"^scale_by_zoom_linesearch: `max_linesearch_steps` must be a whole number of trial steps, got 2.5$",
    ):
        scale_by_zoom_linesearch(2.5)
    with pytest.raises(ValueError, match=r"`curv_rtol` must be a non-negative number, got -0.9$"):
        scale_by_zoom_linesearch(5, curv_rtol=-0.9)
    with pytest.raises(ValueError, match=r"`max_learning_rate` must be a non-negative number, got -1.0$"):
        scale_by_zoom_linesearch(5, max_learning_rate=-1.0)
    with pytest.raises(ValueError, match=r"`approx_dec_rtol` must be a non-negative number, got -1.0$"):
        scale_by_zoom_linesearch(5, approx_dec_rtol=-1.0)
    with pytest.raises(TypeError, match=r"`tol` must be a real number, got '0' \(str\)$"):
        scale_by_zoom_linesearch(5, tol="0")
    scale_by_zoom_linesearch(5, max_learning_rate=None, approx_dec_rtol=None, curv_rtol=float("inf"))


def test_update_errors():
    opt = scale_by_zoom_linesearch(5)
    w = jnp.ones(2)
    state = opt.init(w)
    with pytest.raises(TypeError, match=r"^scale_by_zoom_linesearch.update needs .* missing \['grad'\]"):
        opt.update(w, state, w, value=1.0, value_fn=jnp.sum)
    with pytest.raises(
        TypeError,
        match=r"^Unexpected keyword arguments passed to scale_by_zoom_linesearch.update, .*: \['x'\]",
    ):
        opt.update(w, state, w, value=1.0, grad=w, value_fn=lambda p: jnp.sum(p), x=1)
