"""The optimizer test problems: minima checked by hand-derived gradients, data losses by NumPy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.data import load_digits
from fdl.problems import (
    HIMMELBLAU_MINIMA,
    Problem,
    get_problem,
    himmelblau,
    problem_names,
    quadratic,
    rosenbrock,
    saddle,
)

# Gradients written out by hand, in float64 NumPy: an independent reference for jax.grad and for
# the stated minima.


def rosenbrock_grad(x, y, a=1.0, b=100.0):
    return np.array([-2 * (a - x) - 4 * b * x * (y - x**2), 2 * b * (y - x**2)])


def beale_grad(x, y):
    t1, t2, t3 = 1.5 - x + x * y, 2.25 - x + x * y**2, 2.625 - x + x * y**3
    dx = 2 * t1 * (y - 1) + 2 * t2 * (y**2 - 1) + 2 * t3 * (y**3 - 1)
    dy = 2 * t1 * x + 2 * t2 * 2 * x * y + 2 * t3 * 3 * x * y**2
    return np.array([dx, dy])


def himmelblau_grad(x, y):
    u, v = x**2 + y - 11, x + y**2 - 7
    return np.array([4 * x * u + 2 * v, 2 * u + 4 * y * v])


def quadratic_grad(x, y):
    return np.array([x, 100.0 * y])


def saddle_grad(x, y):
    return np.array([2 * x, -2 * y])


HAND_GRADIENTS = {
    "rosenbrock": rosenbrock_grad,
    "beale": beale_grad,
    "himmelblau": himmelblau_grad,
    "quadratic": quadratic_grad,
    "saddle": saddle_grad,
}
TWO_D = ["rosenbrock", "beale", "himmelblau", "quadratic", "saddle"]


def xy(point):
    return {"xy": jnp.asarray(point, jnp.float32)}


@pytest.mark.parametrize("name", ["rosenbrock", "beale", "himmelblau", "quadratic"])
def test_stated_minima_are_stationary_with_the_stated_value(name):
    problem = get_problem(name)
    assert problem.minima and problem.min_value == 0.0 and problem.bounded_below
    for point in problem.minima:
        # float64, hand-derived gradient: the stated coordinates are exact or given to 16
        # digits, so the gradient vanishes up to float64 rounding times the Hessian (~1e3).
        assert np.max(np.abs(HAND_GRADIENTS[name](*point))) < 1e-11
        # float32, through the Problem: value and gradient at the point rounded to float32.
        # Himmelblau's irrational minima move by ~2e-7 when rounded, and its terms are ~30,
        # so the float32 gradient there is ~1e-5 (Hessian ~100 times 2e-7, plus rounding of
        # x^2 + y - 11); 1e-4 leaves room for that and still fails for a point off by 1e-3.
        params = xy(point)
        assert float(problem.loss(params)) == pytest.approx(problem.min_value, abs=1e-10)
        np.testing.assert_allclose(jax.grad(problem.loss)(params)["xy"], 0.0, atol=1e-4)


@pytest.mark.parametrize("name", TWO_D)
def test_jax_gradient_matches_the_hand_derived_one(name):
    problem = get_problem(name)
    rng = np.random.default_rng(len(name))
    (x_lo, x_hi), (y_lo, y_hi) = problem.window
    for x, y in zip(rng.uniform(x_lo, x_hi, 5), rng.uniform(y_lo, y_hi, 5), strict=True):
        expected = HAND_GRADIENTS[name](float(np.float32(x)), float(np.float32(y)))
        got = jax.grad(problem.loss)(xy([x, y]))["xy"]
        # float32 against float64: relative 1e-5 of the largest term (Beale's reach ~1e5).
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.max(np.abs(expected)))


def test_himmelblau_has_four_minima_of_equal_value():
    values = [float(himmelblau(*map(jnp.float32, point))) for point in HIMMELBLAU_MINIMA]
    assert len(set(HIMMELBLAU_MINIMA)) == 4
    assert max(values) < 1e-12


def test_quadratic_has_the_stated_condition_number():
    hessian = jax.hessian(lambda p: quadratic(p[0], p[1]))(jnp.asarray([0.3, -0.7]))
    np.testing.assert_array_equal(hessian, np.diag([1.0, 100.0]))
    assert float(quadratic(2.0, 1.0)) == 0.5 * (4 + 100)


def test_saddle_has_no_minimum_and_says_so():
    problem = get_problem("saddle")
    assert problem.minima == () and problem.min_value is None and not problem.bounded_below
    assert "no minimum" in problem.description.lower()
    # The origin is stationary but the Hessian is indefinite: a saddle, not a minimum.
    np.testing.assert_array_equal(saddle_grad(0.0, 0.0), [0.0, 0.0])
    hessian = jax.hessian(lambda p: saddle(p[0], p[1]))(jnp.zeros(2))
    np.testing.assert_array_equal(hessian, np.diag([2.0, -2.0]))
    # Unbounded below: f(0, y) = -y^2 for every y.
    assert [float(saddle(0.0, 10.0**k)) for k in range(4)] == [-1.0, -100.0, -1e4, -1e6]
    # ... though bounded by -2.25 inside its plot window, as documented.
    (x_lo, x_hi), (y_lo, y_hi) = problem.window
    grid = np.meshgrid(np.linspace(x_lo, x_hi, 31), np.linspace(y_lo, y_hi, 31))
    assert float(jnp.min(saddle(*grid))) == -2.25


@pytest.mark.parametrize("name", TWO_D)
def test_2d_problems_start_at_their_start_whatever_the_key(name, keys):
    problem = get_problem(name)
    a, b = problem.init_params(next(keys)), problem.init_params(next(keys))
    assert problem.is_2d and a["xy"].dtype == jnp.float32
    np.testing.assert_array_equal(a["xy"], np.float32(problem.start))
    np.testing.assert_array_equal(a["xy"], b["xy"])
    assert float(problem.loss(a)) == float(problem.function(*np.float32(problem.start)))
    (x_lo, x_hi), (y_lo, y_hi) = problem.window
    assert x_lo < problem.start[0] < x_hi and y_lo < problem.start[1] < y_hi
    for mx, my in problem.minima:
        assert x_lo < mx < x_hi and y_lo < my < y_hi


def test_from_2d_builds_a_problem_over_one_named_point(key):
    problem = Problem.from_2d("banana", rosenbrock, start=(0.0, 0.0), window=((-1, 1), (-1, 1)))
    params = problem.init_params(key)
    assert list(params) == ["xy"] and params["xy"].shape == (2,)
    assert float(problem.loss(params)) == 1.0  # (1 - 0)^2 + 100 (0 - 0)^2
    assert problem.min_value is None and problem.minima == ()


def test_get_problem_rejects_unknown_names_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown problem 'rosen'; valid problems: rosenbrock"):
        get_problem("rosen")
    with pytest.raises(ValueError, match=r"unknown problem 3; valid problems: .*mlp_digits"):
        get_problem(3)
    assert get_problem("beale") is get_problem("beale")  # built once
    assert set(problem_names()) >= {"rosenbrock", "saddle", "logistic_digits", "mlp_digits"}


def numpy_cross_entropy(logits, labels):
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(labels)), labels].mean()


def test_logistic_digits_matches_a_numpy_softmax_regression(keys):
    problem = get_problem("logistic_digits")
    params = problem.init_params(next(keys))
    assert not problem.is_2d and problem.min_value is None and problem.bounded_below
    # Zero parameters give uniform probabilities: loss log(10), no penalty.
    assert float(problem.loss(params)) == pytest.approx(math.log(10.0), rel=1e-6)
    w = np.asarray(jax.random.normal(next(keys), (64, 10)), np.float64) * 0.3
    b = np.asarray(jax.random.normal(next(keys), (10,)), np.float64) * 0.3
    data = load_digits()
    x = data.x_train.astype(np.float64)
    expected = numpy_cross_entropy(x @ w + b, data.y_train) + 1e-3 * 0.5 * (np.sum(w**2) + np.sum(b**2))
    got = problem.loss({"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)})
    # float32 sums over 1438 examples against float64: relative 1e-5.
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_mlp_digits_matches_a_numpy_forward_pass_and_depends_on_the_key(keys):
    problem = get_problem("mlp_digits")
    params = problem.init_params(next(keys))
    other = problem.init_params(next(keys))
    assert sorted(params) == ["dense_0", "dense_1"]
    assert not np.array_equal(params["dense_0"]["w"], other["dense_0"]["w"])
    first, second = (
        jax.tree.map(lambda a: np.asarray(a, np.float64), params[k]) for k in ("dense_0", "dense_1")
    )
    data = load_digits()
    hidden = np.maximum(data.x_train.astype(np.float64) @ first["w"] + first["b"], 0.0)
    expected = numpy_cross_entropy(hidden @ second["w"] + second["b"], data.y_train)
    got = float(problem.loss(params))
    assert got == pytest.approx(expected, rel=1e-5)  # float32 vs float64, as above
    assert got == float(problem.loss(params))  # full batch: the same every call
