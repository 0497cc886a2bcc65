"""The backtracking line search and ``value_and_grad_from_state``: the Armijo search by hand in
NumPy float64, step-by-step equality with optax on Rosenbrock and logistic regression (optax's
documented loop: ``value_and_grad_from_state``, then ``update`` with ``value=``, ``grad=``,
``value_fn=``), and every error message."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim import apply_updates, chain, sgd
from fdl.optim.linesearch import (
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState,
    scale_by_backtracking_linesearch,
    value_and_grad_from_state,
)
from tests.optim.helpers import assert_same_trajectory, make_problem, optax_promotion, start

STEPS = 30


def _recomputed(value_fn):
    """``jax.value_and_grad`` with the signature of ``value_and_grad_from_state``'s result."""
    return lambda params, state: jax.value_and_grad(value_fn)(params)


def run_with_linesearch(pairs, steps=STEPS, from_state=True):
    """Run each ``(fdl_opt, optax_opt, problem)`` ``steps`` steps of optax's documented
    line-search loop, each library on its own trajectory, all in one compiled program; return
    per pair the records of :func:`assert_same_trajectory` (``updates`` also holds the
    parameters after the step and the value before it). ``from_state=False``: the value and
    gradient are recomputed at each step (a search without ``store_grad``)."""

    def trajectory(opt, reuse, problem, promotion):
        value_and_grad = reuse(problem.loss)

        def step(carry, _):
            params, state = carry
            with promotion():
                value, grad = value_and_grad(params, state=state)
                updates, state = opt.update(
                    grad, state, params, value=value, grad=grad, value_fn=problem.loss
                )
                params = optax.apply_updates(params, updates)
            return (params, state), {
                "updates": {"updates": updates, "params": params, "value": value},
                "state": state,
            }

        with promotion():
            init = opt.init(start(problem))
        _, record = jax.lax.scan(step, (start(problem), init), None, length=steps)
        return {"init_state": init, **record}

    def run_all():
        return [
            (
                trajectory(
                    ours,
                    value_and_grad_from_state if from_state else _recomputed,
                    problem,
                    contextlib.nullcontext,
                ),
                trajectory(
                    theirs,
                    optax.value_and_grad_from_state if from_state else _recomputed,
                    problem,
                    optax_promotion,
                ),
            )
            for ours, theirs, problem in pairs
        ]

    return jax.device_get(jax.jit(run_all)())


def _sgd_searches(**kwargs):
    """SGD (step 1) then the search, in fdl and in optax."""
    ours = chain(sgd(1.0), scale_by_backtracking_linesearch(max_backtracking_steps=15, **kwargs))
    theirs = optax.chain(
        optax.sgd(1.0), optax.scale_by_backtracking_linesearch(max_backtracking_steps=15, **kwargs)
    )
    return ours, theirs


# ----------------------------------------------------------------------------------- by hand


def _armijo_by_hand(f, w, u, g, eta_prev, c=1e-4, shrink=0.8, grow=1.5, top=1.0, steps=15):
    """The search in NumPy float64: (accepted step, number of trials)."""
    slope = float(u @ g)
    eta, trials = min(grow * eta_prev, top), 0
    while trials <= steps:
        if trials > 0:
            eta *= shrink
        trials += 1
        if f(w + eta * u) - f(w) - eta * c * slope <= 0:
            break
    return eta, trials


def test_two_searches_by_hand_and_the_armijo_condition_holds():
    scales = np.asarray([1.0, 10.0])

    def f64(w):
        return float(np.sum(scales * w**2))

    def f(w):
        return jnp.sum(jnp.asarray(scales, jnp.float32) * w**2)

    opt = chain(sgd(1.0), scale_by_backtracking_linesearch(max_backtracking_steps=15))
    w = jnp.asarray([1.0, 1.0], jnp.float32)
    state = opt.init(w)
    eta_prev = 1.0
    for _ in range(2):
        w64 = np.asarray(w, np.float64)
        g64 = 2 * scales * w64
        eta, trials = _armijo_by_hand(f64, w64, -g64, g64, eta_prev)
        grad = jax.grad(f)(w)
        u, state = opt.update(grad, state, w, value=f(w), grad=grad, value_fn=f)
        search = state[-1]
        np.testing.assert_allclose(float(search.learning_rate), eta, rtol=1e-6)
        assert int(search.info.num_linesearch_steps) == trials
        np.testing.assert_allclose(np.asarray(u, np.float64), -eta * g64, rtol=1e-5)
        # Armijo at the accepted step, and the value kept is the value there
        new = np.asarray(w + u, np.float64)
        assert f64(new) <= f64(w64) - 1e-4 * eta * float(g64 @ g64) + 1e-6
        assert float(search.info.decrease_error) == 0.0
        np.testing.assert_allclose(float(search.value), f64(new), rtol=1e-6)
        w, eta_prev = w + u, eta
    assert trials > 1  # the second search backtracked


def test_init_state_and_the_gradient_kept_at_the_accepted_point():
    params = {"w": jnp.ones(2, jnp.float32), "b": jnp.zeros((), jnp.float32)}
    state = scale_by_backtracking_linesearch(3, store_grad=True).init(params)
    assert isinstance(state, ScaleByBacktrackingLinesearchState)
    assert isinstance(state.info, BacktrackingLinesearchInfo)
    assert float(state.learning_rate) == 1.0 and np.isinf(state.value) and np.isinf(state.info.decrease_error)
    assert state.info.num_linesearch_steps.dtype == jnp.int32
    assert jax.tree.map(jnp.shape, state.grad) == {"w": (2,), "b": ()}
    assert scale_by_backtracking_linesearch(3).init(params).grad is None

    def f(p):
        return jnp.sum((p["w"] - 3.0) ** 2) + p["b"] ** 2

    opt = chain(sgd(0.1), scale_by_backtracking_linesearch(3, store_grad=True))
    state = opt.init(params)
    value, grad = jax.value_and_grad(f)(params)
    u, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)
    new = apply_updates(params, u)
    np.testing.assert_allclose(np.asarray(state[-1].grad["w"]), np.asarray(jax.grad(f)(new)["w"]), rtol=1e-6)
    # value_and_grad_from_state reads them back instead of computing
    value2, grad2 = value_and_grad_from_state(lambda p: jnp.zeros(()))(new, state=state)
    assert float(value2) == float(state[-1].value) and float(grad2["w"][0]) == float(state[-1].grad["w"][0])


def test_extra_arguments_reach_value_fn():
    def f(w, x, y):
        return jnp.sum((x * w - y) ** 2)

    opt = chain(sgd(1.0), scale_by_backtracking_linesearch(10))
    w, x, y = jnp.ones(2), jnp.asarray([1.0, 2.0]), jnp.asarray([0.0, 1.0])
    value, grad = jax.value_and_grad(f)(w, x, y)
    u, state = opt.update(grad, opt.init(w), w, value=value, grad=grad, value_fn=f, x=x, y=y)
    assert float(f(w + u, x, y)) < float(value)
    assert float(state[-1].info.decrease_error) == 0.0


def test_a_nan_objective_gives_a_zero_step_and_verbose_prints(capfd):
    opt = chain(sgd(1.0), scale_by_backtracking_linesearch(2, verbose=True))
    w = jnp.ones(2)
    u, state = opt.update(
        w, opt.init(w), w, value=jnp.asarray(1.0), grad=w, value_fn=lambda p: jnp.nan * p[0]
    )
    jax.effects_barrier()
    assert u.tolist() == [0.0, 0.0] and float(state[-1].learning_rate) == 0.0
    assert int(state[-1].info.num_linesearch_steps) == 3  # 1 + max_backtracking_steps trials
    assert "no step with sufficient decrease found" in capfd.readouterr().out


# ------------------------------------------------------------------------------ against optax


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(store_grad=True),
        dict(store_grad=False),
        dict(
            store_grad=True, slope_rtol=0.3, decrease_factor=0.5, increase_factor=1.0, max_learning_rate=2.0
        ),
    ],
)
def test_sgd_with_backtracking_matches_optax_step_by_step(kwargs):
    pairs = [
        (*_sgd_searches(**kwargs), make_problem(name, jnp.float32)) for name in ("rosenbrock", "logistic")
    ]
    for (ours, theirs), name in zip(
        run_with_linesearch(pairs, from_state=kwargs["store_grad"]), ("rosenbrock", "logistic"), strict=True
    ):
        assert_same_trajectory(ours, theirs, f"backtracking {kwargs} on {name}")
        assert ours["state"][1].info.num_linesearch_steps.max() > 1 or name == "logistic"


# -------------------------------------------------------------------------------------- errors


def test_hyperparameter_errors():
    with pytest.raises(
        ValueError,
        match=r"^scale_by_backtracking_linesearch: `decrease_factor` must be in \[0, 1\], got 1.5$",
    ):
        scale_by_backtracking_linesearch(5, decrease_factor=1.5)
    with pytest.raises(
        ValueError, match=r"`max_backtracking_steps` must be a whole number of trial steps, got 2.5$"
    ):
        scale_by_backtracking_linesearch(2.5)
    with pytest.raises(ValueError, match=r"`max_backtracking_steps` must be a non-negative number, got -1$"):
        scale_by_backtracking_linesearch(-1)
    with pytest.raises(TypeError, match=r"`slope_rtol` must be a real number, got '0.1' \(str\)$"):
        scale_by_backtracking_linesearch(5, slope_rtol="0.1")
    with pytest.raises(ValueError, match=r"`atol` must be a non-negative number, got -1.0$"):
        scale_by_backtracking_linesearch(5, atol=-1.0)


def test_update_errors():
    opt = scale_by_backtracking_linesearch(5)
    w = jnp.ones(2)
    state = opt.init(w)
    with pytest.raises(
        TypeError,
        match=r"needs the keyword arguments `value`, `grad` and `value_fn` .* missing \['value_fn'\]",
    ):
        opt.update(w, state, w, value=1.0, grad=w)
    with pytest.raises(TypeError, match=r"missing \['value', 'grad', 'value_fn'\]: call update"):
        opt.update(w, state, w)
    with pytest.raises(TypeError, match=r"`value_fn` must be callable, got 3"):
        opt.update(w, state, w, value=1.0, grad=w, value_fn=3)
    with pytest.raises(
        TypeError,
        match=r"^Unexpected keyword arguments passed to scale_by_backtracking_linesearch.update, "
        r"which `value_fn` does not take: \['batch'\]; .* \(it takes \['p'\]\)$",
    ):
        opt.update(w, state, w, value=1.0, grad=w, value_fn=lambda p: jnp.sum(p), batch=2)
    with pytest.raises(
        ValueError, match=r"^scale_by_backtracking_linesearch.update needs `params` .*, got None$"
    ):
        opt.update(w, state, None, value=1.0, grad=w, value_fn=jnp.sum)
    with pytest.raises(ValueError, match=r"needs at least one parameter array, got an empty tree"):
        opt.init({})


def test_value_and_grad_from_state_errors():
    with pytest.raises(TypeError, match=r"^value_and_grad_from_state: `value_fn` must be callable, got 1$"):
        value_and_grad_from_state(1)
    value_and_grad = value_and_grad_from_state(jnp.sum)
    w = jnp.ones(2)
    with pytest.raises(
        ValueError, match=r"exactly one `value` and one `grad` field in `state`, found 0 and 0"
    ):
        value_and_grad(w, state=sgd(0.1).init(w))
    two = (scale_by_backtracking_linesearch(2, store_grad=True).init(w),) * 2
    with pytest.raises(KeyError, match=r"found 2 and 2: keep one line search in the chain"):
        value_and_grad(w, state=two)
    with pytest.raises(
        ValueError, match=r"the state's `grad` is None: build the line search with store_grad=True"
    ):
        value_and_grad(w, state=scale_by_backtracking_linesearch(2).init(w))
    # a dict state is searched too, and an infinite value is recomputed
    value, grad = value_and_grad(w, state={"value": jnp.asarray(jnp.inf), "grad": jnp.zeros(2)})
    assert float(value) == 2.0 and grad.tolist() == [1.0, 1.0]
