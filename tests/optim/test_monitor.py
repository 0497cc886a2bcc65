"""monitor and measure_with_ema: against optax step by step (after each update; optax's state
before the first has no measurements), by hand, and what they promise (updates pass unchanged,
the state keeps one structure, extra arguments reach the measures)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fdl.optim
import fdl.tree
from fdl.optim.base import EmptyState, GradientTransformation, apply_updates, chain
from fdl.optim.clipping import clip_by_global_norm
from fdl.optim.momentum import EmaState, sgd
from fdl.optim.monitor import MonitorState, measure_with_ema, monitor
from tests.optim.helpers import assert_same_tree, make_problem, optax_promotion, start
from tests.optim.test_atoms import close, f32

STEPS = 30
CLIP = 0.3  # the momentum updates' norms on the MLP problem rise from 0.09 to 0.37 and fall back


def _is_clipped(updates):
    return fdl.tree.norm(updates) > CLIP


def _clipped_fraction(updates):
    return _is_clipped(updates).astype(jnp.float32)


def _pair(fdl_side, ema_kwargs):
    """The chain of optax's monitoring test: momentum, the monitor, clipping. Both libraries
    use the same measure functions (fdl's), so the comparison is of the monitors alone. With a
    bfloat16 accumulator the clipping is measured as a float (optax returns the average of a
    bool measurement in the accumulator's dtype, fdl in float32: see measure_with_ema)."""
    clipped = _clipped_fraction if "accumulator_dtype" in ema_kwargs else _is_clipped
    measures = {
        "norm_before_clip": fdl.tree.norm,
        "norm_ema": (measure_with_ema if fdl_side else optax.measure_with_ema)(
            fdl.tree.norm, 0.9, **ema_kwargs
        ),
        "clipped_ema": (measure_with_ema if fdl_side else optax.measure_with_ema)(clipped, 0.5, **ema_kwargs),
    }
    if fdl_side:
        return chain(sgd(0.1, momentum=0.9), monitor(measures), clip_by_global_norm(CLIP))
    return optax.chain(optax.sgd(0.1, momentum=0.9), optax.monitor(measures), optax.clip_by_global_norm(CLIP))


@pytest.mark.parametrize("ema_kwargs", [{}, {"debias": False}, {"accumulator_dtype": jnp.bfloat16}])
def test_same_updates_and_states_as_optax_after_every_step(ema_kwargs):
    problem = make_problem("mlp", jnp.float32)
    ours, theirs = _pair(True, ema_kwargs), _pair(False, ema_kwargs)
    grad = jax.grad(problem.loss)

    @jax.jit
    def step(params, fdl_state, optax_state):
        grads = grad(params)
        fdl_updates, fdl_state = ours.update(grads, fdl_state, params)
        with optax_promotion():
            optax_updates, optax_state = theirs.update(grads, optax_state, params)
        return apply_updates(params, fdl_updates), fdl_updates, fdl_state, optax_updates, optax_state

    params = start(problem)
    fdl_state = ours.init(params)
    with optax_promotion():
        optax_state = theirs.init(params)
    for t in range(STEPS):
        params, fdl_updates, fdl_state, optax_updates, optax_state = step(params, fdl_state, optax_state)
        assert_same_tree(fdl_updates, optax_updates, f"monitor step {t + 1} updates")
        assert_same_tree(fdl_state, optax_state, f"monitor step {t + 1} state")
    assert 0.0 < float(optax.tree.get(fdl_state, "clipped_ema")) < 1.0  # some steps were clipped


def test_measurements_by_hand():
    opt = monitor(
        {
            "norm": fdl.tree.norm,
            "ema": measure_with_ema(fdl.tree.norm, decay=0.5),
            "ema_biased": measure_with_ema(fdl.tree.norm, decay=0.5, debias=False),
            "above_4": measure_with_ema(lambda u: fdl.tree.norm(u) > 4.0, decay=0.5, debias=False),
        }
    )
    state = opt.init(f32(0.0, 0.0))
    norms = [5.0, 1.0]
    m = 0.0
    for t, g in enumerate([f32(3.0, 4.0), f32(0.6, 0.8)], start=1):
        updates, state = opt.update(g, state)
        assert updates is g  # passed on as they came
        m = 0.5 * m + 0.5 * norms[t - 1]
        close(state.measurements["norm"], norms[t - 1])
        close(state.measurements["ema_biased"], m)
        close(state.measurements["ema"], m / (1 - 0.5**t))
    close(state.measurements["above_4"], 0.25)  # 0.5 * (0.5 * 0 + 0.5 * 1) + 0.5 * 0
    assert isinstance(state, MonitorState)
    empty, ema_state = state.measure_states[1]
    assert empty == EmptyState() and isinstance(ema_state, EmaState) and int(ema_state.count) == 2
    assert state.measure_states[0] == EmptyState()


def test_init_has_the_structure_of_an_updated_state_so_it_runs_in_a_scan():
    opt = chain(monitor({"norm": fdl.tree.norm, "ema": measure_with_ema(_is_clipped, 0.9)}), sgd(0.1))
    params = {"w": jnp.ones(3), "b": jnp.zeros((), jnp.bfloat16)}
    state = opt.init(params)
    assert float(state[0].measurements["norm"]) == 0.0
    assert state[0].measurements["norm"].dtype == jnp.float32
    assert state[0].measurements["ema"].dtype == jnp.float32  # a bool measurement averages as a float
    _, updated = opt.update(params, state, params)
    assert jax.tree.structure(updated) == jax.tree.structure(state)
    assert jax.tree.map(lambda a: a.dtype, updated) == jax.tree.map(lambda a: a.dtype, state)

    def step(carry, _):
        p, s = carry
        u, s = opt.update(p, s, p)
        return (apply_updates(p, u), s), s[0].measurements["norm"]

    _, norms = jax.lax.scan(step, (params, state), None, length=3)
    close(norms[0], np.sqrt(3.0))
    close(norms[1], np.sqrt(3.0) * 0.9)


def test_a_transformation_measure_gets_params_and_extra_arguments():
    def init(params):
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        # init measures the parameters without extra arguments: a default keeps it working
        return {"loss": extra_args.get("loss", jnp.zeros(())), "params": fdl.tree.norm(params)}, state

    opt = monitor({"seen": GradientTransformation(init, update)})
    params = f32(3.0, 4.0)
    state = opt.init(params)
    assert float(state.measurements["seen"]["loss"]) == 0.0
    _, state = opt.update(f32(1.0, 1.0), state, params, loss=jnp.asarray(2.5))
    assert float(state.measurements["seen"]["loss"]) == 2.5
    assert float(state.measurements["seen"]["params"]) == 5.0


def test_monitor_of_optax_measures_and_no_measures():
    opt = monitor({"ema": optax.measure_with_ema(fdl.tree.norm, 0.5)})
    with optax_promotion():
        state = opt.init(f32(0.0))
        _, state = opt.update(f32(-2.0), state)
    close(state.measurements["ema"], 2.0)
    nothing = monitor({})
    updates, state = nothing.update(f32(1.0), nothing.init(f32(0.0)))
    assert state == MonitorState({}, ()) and updates.tolist() == [1.0]


def test_bad_arguments_are_refused():
    with pytest.raises(
        TypeError, match=r"^monitor: `measures` must be a dict of names to measures .*got \[.*\] \(list\)$"
    ):
        monitor([fdl.tree.norm])
    with pytest.raises(
        TypeError,
        match=r"^monitor: `measures\['norm'\]` must be a function of the updates or a transformation .*got 3$",
    ):
        monitor({"norm": 3})
    with pytest.raises(
        TypeError, match=r"^measure_with_ema: `measure` must be a function of the updates .*got 'norm'$"
    ):
        measure_with_ema("norm", 0.9)
    with pytest.raises(ValueError, match=r"^measure_with_ema: `decay` must be in \[0, 1\), got 1.0$"):
        measure_with_ema(fdl.tree.norm, 1.0)
    with pytest.raises(
        TypeError, match=r"^measure_with_ema: `decay` must be a real number, got '0.9' \(str\)$"
    ):
        measure_with_ema(fdl.tree.norm, "0.9")


# ------------------------------------------------------------------------------------ snapshot


def test_snapshot_keeps_the_measure_of_the_updates_where_it_sits_and_equals_optax():
    params = {"w": jnp.asarray([3.0, 4.0]), "b": jnp.asarray([0.0])}
    grads = [jax.tree.map(lambda p, i=i: (i + 1.0) * p + 1.0, params) for i in range(3)]

    def build(lib):
        return lib.chain(
            lib.sgd(0.1, momentum=0.9), lib.snapshot("before_clip", optax.tree.norm), lib.clip(0.2)
        )

    ours, theirs = build(fdl.optim), build(optax)
    state, optax_state = ours.init(params), theirs.init(params)
    assert float(state[1].measurement["before_clip"]) == pytest.approx(5.0)  # |params| at init
    trace = jax.tree.map(jnp.zeros_like, params)
    for g in grads:
        trace = jax.tree.map(lambda t, gi: 0.9 * t + gi, trace, g)
        u, state = ours.update(g, state, params)
        with optax_promotion():
            optax_u, optax_state = theirs.update(g, optax_state, params)
        expected = float(jnp.sqrt(sum(jnp.sum((0.1 * t) ** 2) for t in jax.tree.leaves(trace))))
        assert float(state[1].measurement["before_clip"]) == pytest.approx(expected, rel=1e-6)
        assert_same_tree(state, optax_state, "snapshot state:")
        assert_same_tree(u, optax_u, "snapshot updates:")
        assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(u)) <= np.float32(0.2)  # clipped after


def test_snapshot_refuses_a_bad_name_or_measure():
    with pytest.raises(TypeError, match=r"^snapshot: `measure_name` must be a string, got 3$"):
        fdl.optim.snapshot(3, optax.tree.norm)
    with pytest.raises(
        TypeError, match=r"^snapshot: `measure` must be a function of the updates, got 'norm'$"
    ):
        fdl.optim.snapshot("n", "norm")
