"""reduce_on_plateau (``fdl.optim.plateau``): the scale by hand through plateaus, cooldowns,
accumulation and the floor; every step against ``optax.contrib`` (updates and states); and
every error message."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.adam import adam
from fdl.optim.base import chain
from fdl.optim.plateau import ReduceLROnPlateauState, reduce_on_plateau
from tests.optim.helpers import assert_same_tree, optax_promotion
from tests.optim.test_atoms import f32


def _scales(opt, values, params=None):
    params = f32(0.0) if params is None else params
    state = opt.init(params)
    scales = []
    for v in values:
        _, state = opt.update(jax.tree.map(jnp.ones_like, params), state, params, value=v)
        scales.append(float(state.scale))
    return scales, state


def test_scale_is_reduced_after_patience_checks_without_improvement():
    # best 5, then 3 checks without improvement: reduced at the 2nd (patience 2), floor 0.3
    values = [5.0, 5.0, 5.0, 4.0, 6.0, 6.0, 6.0, 6.0]
    scales, state = _scales(reduce_on_plateau(factor=0.5, patience=2, min_scale=0.3), values)
    assert scales == [1.0, 1.0, 0.5, 0.5, 0.5] + [float(np.float32(0.3))] * 3
    assert isinstance(state, ReduceLROnPlateauState)
    assert float(state.best_value) == 4.0 and int(state.plateau_count) == 0


def test_cooldown_pauses_the_plateau_count():
    values = [1.0] * 8
    scales, _ = _scales(reduce_on_plateau(factor=0.5, patience=1, cooldown=2), values)
    # reduce at the 2nd check, 2 checks of cooldown, count again: reduce at the 5th, the 8th
    assert scales == [1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]


def test_tolerances_decide_what_counts_as_an_improvement():
    scales, _ = _scales(reduce_on_plateau(factor=0.5, patience=1, rtol=0.1), [10.0, 9.5])
    assert scales == [1.0, 0.5]  # 9.5 is not below 0.9 * 10
    scales, _ = _scales(reduce_on_plateau(factor=0.5, patience=1, rtol=0.0, atol=1.0), [10.0, 8.5])
    assert scales == [1.0, 1.0]  # 8.5 < 10 - 1


def test_accumulation_checks_the_mean_every_few_calls():
    opt = reduce_on_plateau(factor=0.5, patience=1, accumulation_size=3)
    scales, state = _scales(opt, [1.0, 2.0, 3.0, 0.0, 4.0, 5.0])  # means 2 and 3: reduced
    assert scales == [1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    assert float(state.best_value) == 2.0 and int(state.count) == 0
    _, state = _scales(opt, [1.0, 2.0])
    assert int(state.count) == 2 and float(state.avg_value) == 1.5


def test_updates_are_the_gradients_times_the_scale_in_their_dtype():
    params = {"w": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(1, jnp.float32)}
    opt = reduce_on_plateau(factor=0.5, patience=1)
    state = opt.init(params)
    assert state.scale.dtype == jnp.bfloat16 and state.best_value.dtype == jnp.float32
    for _ in range(2):
        u, state = opt.update(params, state, params, value=1.0)
    assert u["w"].dtype == jnp.bfloat16 and u["w"].tolist() == [0.5, 0.5] and u["b"].tolist() == [0.5]


# ------------------------------------------------------------------------------- against optax


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(factor=0.5, patience=3, cooldown=2, min_scale=0.01),
        dict(factor=0.8, patience=2, rtol=0.0, atol=1e-3, accumulation_size=4),
    ],
)
def test_same_updates_and_states_as_optax_step_by_step(kwargs):
    rng = np.random.default_rng(3)
    params = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2, jnp.float32)}
    values = np.concatenate([np.linspace(2.0, 1.0, 20), 1.0 + 0.01 * rng.normal(size=100)]).astype(np.float32)
    ours = chain(adam(1e-2), reduce_on_plateau(**kwargs))
    theirs = optax.chain(optax.adam(1e-2), optax.contrib.reduce_on_plateau(**kwargs))

    def optax_update(g, s, p, v):
        with optax_promotion():
            return theirs.update(g, s, p, value=v)

    our_update = jax.jit(lambda g, s, p, v: ours.update(g, s, p, value=v))
    optax_update = jax.jit(optax_update)
    s1 = ours.init(params)
    with optax_promotion():
        s2 = theirs.init(params)
    assert_same_tree(s1, s2, "init")
    for k, v in enumerate(values):
        g = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        u1, s1 = our_update(g, s1, params, v)
        u2, s2 = optax_update(g, s2, params, v)
        assert_same_tree(u1, u2, f"step {k} updates")
        assert_same_tree(s1, s2, f"step {k} state")
    assert float(s1[1].scale) < 1.0  # the plateau was reached


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(factor=1.0),
            ValueError,
            r"`factor` must be in \(0, 1\) \(the scale is multiplied by it\), got 1.0$",
        ),
        (dict(factor=0.0), ValueError, r"`factor` must be in \(0, 1\)"),
        (dict(factor="0.1"), TypeError, r"`factor` must be a real number, got '0.1' \(str\)$"),
        (dict(rtol=-1.0), ValueError, r"`rtol` must be a non-negative number, got -1.0$"),
        (dict(atol=-1.0), ValueError, r"`atol` must be a non-negative number, got -1.0$"),
        (
            dict(rtol=0.0, atol=0.0),
            ValueError,
            r"`rtol` and `atol` must not both be 0 \(no loss would count as an improvement\), got 0.0 and 0.0$",
        ),
        (dict(rtol=1.5), ValueError, r"`rtol` must be at most 1, got 1.5$"),
        (dict(patience=-1), ValueError, r"`patience` must be a non-negative number, got -1$"),
        (dict(cooldown=-1), ValueError, r"`cooldown` must be a non-negative number, got -1$"),
        (
            dict(accumulation_size=0),
            ValueError,
            r"`accumulation_size` must be >= 1 \(values per check\), got 0$",
        ),
        (
            dict(accumulation_size="2"),
            TypeError,
            r"`accumulation_size` must be a real number, got '2' \(str\)$",
        ),
        (dict(min_scale=-0.1), ValueError, r"`min_scale` must be a non-negative number, got -0.1$"),
    ],
)
def test_errors_name_the_argument_and_the_value(kwargs, error, message):
    with pytest.raises(error, match=rf"^reduce_on_plateau: {message}"):
        reduce_on_plateau(**kwargs)


def test_update_without_the_value_names_the_keyword():
    opt = reduce_on_plateau()
    with pytest.raises(
        ValueError,
        match=r"^reduce_on_plateau needs the monitored loss: call `update\(updates, state, params, value=loss\)`$",
    ):
        opt.update(f32(1.0), opt.init(f32(1.0)))
