"""Adafactor (``scale_by_factored_rms``, ``adafactor``): a few steps by hand in NumPy float64,
the state's layout against optax's for many shapes, 200 steps against optax on the test problems
(the MLP's matrices factored), and every error message.

Tolerances are test_atoms.py's: ``RTOL32`` for float32 against float64 references; the
comparisons with optax use helpers.TOLERANCES (bit for bit in bfloat16).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.adafactor import FactoredState, adafactor, scale_by_factored_rms
from fdl.optim.base import chain, scale
from fdl.optim.momentum import EmaState
from tests.optim.helpers import (
    assert_same_trajectory,
    assert_same_tree,
    make_problem,
    optax_promotion,
    run_trajectories,
)
from tests.optim.test_atoms import close, f32, run

EPS = 1e-30
STEPS = 200


def beta(t: int, exponent: float = 0.8) -> float:
    """Adafactor's decay at step count ``t`` (0 at the first step)."""
    return 1.0 - (t + 1.0) ** -exponent


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x**2)))


# ------------------------------------------------------------------------------------ by hand


def test_unfactored_vector_two_steps_by_hand():
    g1, g2 = np.array([0.5, -2.0]), np.array([1.0, 3.0])
    v1 = g1**2 + EPS  # beta(0) = 0: the first step overwrites
    v2 = beta(1) * v1 + (1 - beta(1)) * (g2**2 + EPS)
    params = f32(0.0, 0.0)
    (u1, u2), state = run(scale_by_factored_rms(), [f32(*g1), f32(*g2)], params)
    close(u1, g1 / np.sqrt(v1)), close(u2, g2 / np.sqrt(v2))
    assert isinstance(state, FactoredState) and int(state.count) == 2
    close(state.v, v2)
    assert state.v_row.shape == state.v_col.shape == (1,)  # optax's dummies
    assert state.v_row.tolist() == state.v_col.tolist() == [0.0]


def _factored_by_hand(grads, row_axis, col_axis, row_mean_axis, decay=beta):
    """The factored equations for arrays: ``r`` averages over ``row_axis`` (the longest axis),
    ``c`` over ``col_axis`` (the next); ``row_mean_axis`` is ``col_axis`` inside ``r``."""
    r = c = 0.0
    updates = []
    for t, g in enumerate(grads):
        s = g**2 + EPS
        r = decay(t) * r + (1 - decay(t)) * s.mean(axis=row_axis)
        c = decay(t) * c + (1 - decay(t)) * s.mean(axis=col_axis)
        row_scale = (r / r.mean(axis=row_mean_axis, keepdims=True)) ** -0.5
        updates.append(g * np.expand_dims(row_scale, row_axis) * np.expand_dims(c**-0.5, col_axis))
    return updates, r, c


def test_factored_matrix_two_steps_by_hand():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(2, 3)) for _ in range(2)]
    expected, r, c = _factored_by_hand(grads, row_axis=1, col_axis=0, row_mean_axis=0)
    opt = scale_by_factored_rms(min_dim_size_to_factor=2)
    params = jnp.zeros((2, 3))
    updates, state = run(opt, [jnp.asarray(g, jnp.float32) for g in grads], params)
    for u, e in zip(updates, expected, strict=True):
        close(u, e)
    close(state.v_row, r), close(state.v_col, c)  # r: a mean per row (2,), c: per column (3,)
    assert state.v.shape == (1,) and state.v.tolist() == [0.0]


def test_factored_three_axes_reduce_the_two_longest():
    """Shape (4, 2, 3): the longest axis is 0, the next 2; axis 1 (length 2) is kept in both."""
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(4, 2, 3)) for _ in range(3)]
    expected, r, c = _factored_by_hand(grads, row_axis=0, col_axis=2, row_mean_axis=1)
    opt = scale_by_factored_rms(min_dim_size_to_factor=3)
    updates, state = run(opt, [jnp.asarray(g, jnp.float32) for g in grads], jnp.zeros((4, 2, 3)))
    for u, e in zip(updates, expected, strict=True):
        close(u, e)
    assert state.v_row.shape == (2, 3) and state.v_col.shape == (4, 2)
    close(state.v_row, r), close(state.v_col, c)


def test_decay_rate_step_offset_and_a_custom_schedule_by_hand():
    g1, g2, g3 = 1.0, 2.0, 0.5
    # decay_rate is the exponent; step_offset=-2 starts the schedule at step 2
    b = [beta(t + 2, 0.5) for t in range(3)]
    v = (1 - b[0]) * (g1**2 + EPS)
    us = [g1 / np.sqrt(v)]
    for bt, g in ((b[1], g2), (b[2], g3)):
        v = bt * v + (1 - bt) * (g**2 + EPS)
        us.append(g / np.sqrt(v))
    opt = scale_by_factored_rms(decay_rate=0.5, step_offset=-2)
    updates, _ = run(opt, [f32(g1), f32(g2), f32(g3)], f32(0.0))
    close([float(u[0]) for u in updates], us)

    def capped(step, rate):  # Zhai et al.'s cap on the decay, with `rate` as the cap
        return jnp.minimum(rate, 1.0 - (step + 1).astype(jnp.float32) ** -0.8)

    seen = []
    opt = scale_by_factored_rms(decay_rate=0.25, decay_rate_fn=capped)
    updates, _ = run(opt, [f32(g1), f32(g2), f32(g3)], f32(0.0))
    v = 0.0
    for t, (g, u) in enumerate(zip((g1, g2, g3), updates, strict=True)):
        bt = min(0.25, beta(t))
        v = bt * v + (1 - bt) * g**2
        seen.append(bt)
        close(u, [g / np.sqrt(v)])
    assert seen[1] == 0.25 < beta(1)  # the cap binds from the second step on


def test_adafactor_every_stage_by_hand():
    """Two steps with clipping, learning rate, parameter scale, momentum and weight decay."""
    p = np.array([3.0, 4.0])
    g = [np.array([0.1, 0.2]), np.array([2.0, -1.0])]
    lr, threshold, mom, wd = 0.25, 0.5, 0.5, 0.125
    v = m = 0.0
    expected = []
    for t, gt in enumerate(g):
        v = beta(t) * v + (1 - beta(t)) * (gt**2 + EPS)
        x = gt / np.sqrt(v)
        y = x / max(1.0, rms(x) / threshold)
        z = lr * max(rms(p), 1e-3) * y
        m = mom * m + (1 - mom) * z
        expected.append(-(m + wd * p))
    opt = adafactor(learning_rate=lr, clipping_threshold=threshold, momentum=mom, weight_decay_rate=wd)
    updates, state = run(opt, [f32(*gt) for gt in g], f32(*p))
    close(updates[0], expected[0]), close(updates[1], expected[1])
    assert len(state) == 7 and isinstance(state[0], FactoredState) and isinstance(state[4], EmaState)
    assert state[4].ema.dtype == jnp.float32 and int(state[4].count) == 2


def test_adafactor_without_optional_stages_is_the_negated_rescaled_gradient():
    g = np.array([0.5, -2.0])
    opt = adafactor(clipping_threshold=None, multiply_by_parameter_scale=False)
    (u,), state = run(opt, [f32(*g)], f32(1.0, 1.0))
    close(u, -g / np.sqrt(g**2 + EPS))
    assert len(state) == 2  # scale_by_factored_rms, scale(-1)


# --------------------------------------------------------------------------- against optax


SHAPES = [
    (),
    (1,),
    (4,),
    (3, 3),
    (3, 3, 3),
    (5, 2, 5),
    (2, 5, 5),
    (5, 5, 2),
    (7, 1),
    (1, 7),
    (8, 8),
    (2, 3, 4),
]


@pytest.mark.parametrize("factored", [True, False])
def test_state_layout_is_optaxs_for_many_shapes(factored):
    """Which leaves are factored, which axes are reduced (ties included), and the dummies."""
    params = {str(i): jnp.zeros(s, jnp.bfloat16) for i, s in enumerate(SHAPES)}
    ours = scale_by_factored_rms(factored=factored, min_dim_size_to_factor=3).init(params)
    with optax_promotion():
        theirs = optax.scale_by_factored_rms(factored=factored, min_dim_size_to_factor=3).init(params)
    assert_same_tree(ours, theirs, f"factored={factored}")


def test_leaves_of_every_shape_step_as_optaxs():
    rng = np.random.default_rng(2)
    params = {str(i): jnp.asarray(rng.normal(size=s), jnp.float32) for i, s in enumerate(SHAPES)}
    grads = [
        jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params) for _ in range(3)
    ]
    ours_opt = scale_by_factored_rms(min_dim_size_to_factor=2)
    theirs_opt = optax.scale_by_factored_rms(min_dim_size_to_factor=2)

    def both(params, grads):  # three steps of each, one compiled program
        ours = ours_opt.init(params)
        with optax_promotion():
            theirs = theirs_opt.init(params)
        records = []
        for g in grads:
            u, ours = ours_opt.update(g, ours, params)
            with optax_promotion():
                w, theirs = theirs_opt.update(g, theirs, params)
            records.append(((u, ours), (w, theirs)))
        return records

    for step, (ours, theirs) in enumerate(jax.jit(both)(params, grads)):
        assert_same_tree(ours, theirs, f"step {step + 1}")


def _capped(step, rate):
    return jnp.minimum(rate, 1.0 - (step + 1).astype(jnp.float32) ** -0.8)


def _mask(params):
    return jax.tree.map(lambda p: p.ndim > 1, params)


CASES = {
    "mlp": (dict(learning_rate=0.01, min_dim_size_to_factor=8), "mlp", jnp.float32),
    "mlp_momentum_decay_no_clip": (
        dict(
            learning_rate=0.01,
            min_dim_size_to_factor=8,
            momentum=0.9,
            weight_decay_rate=1e-3,
            clipping_threshold=None,
        ),
        "mlp",
        jnp.float32,
    ),
    "mlp_bf16": (dict(learning_rate=0.01, min_dim_size_to_factor=8), "mlp", jnp.bfloat16),
    "logistic_unfactored_absolute_offset": (
        dict(learning_rate=0.01, factored=False, multiply_by_parameter_scale=False, decay_offset=-3),
        "logistic",
        jnp.float32,
    ),
    "logistic_schedules_mask_bf16_momentum": (
        dict(
            learning_rate=optax.linear_schedule(0.02, 0.002, 100),
            min_dim_size_to_factor=10,
            momentum=0.5,
            dtype_momentum=jnp.bfloat16,
            weight_decay_rate=optax.constant_schedule(1e-2),
            weight_decay_mask=_mask,
            clipping_threshold=2.0,
        ),
        "logistic",
        jnp.float32,
    ),
}


def test_adafactor_and_the_atom_step_by_step_as_optax():
    pairs, names = [], []
    for name, (kwargs, problem, dtype) in CASES.items():
        pairs.append((adafactor(**kwargs), optax.adafactor(**kwargs), make_problem(problem, dtype)))
        names.append(name)
    atom = dict(
        decay_rate=0.9, step_offset=-5, min_dim_size_to_factor=8, decay_rate_fn=_capped, epsilon=1e-20
    )
    pairs.append(
        (
            chain(scale_by_factored_rms(**atom), scale(-0.01)),
            optax.chain(optax.scale_by_factored_rms(**atom), optax.scale(-0.01)),
            make_problem("mlp", jnp.float32),
        )
    )
    names.append("atom_capped_schedule_offset")
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for name, (ours, theirs) in zip(names, records, strict=True):
        assert_same_trajectory(ours, theirs, f"{name}:")
    # the MLP's two weight matrices were factored (min_dim_size_to_factor=8)
    ours, _ = records[0]
    factored = ours["state"][0]
    rows, cols = factored.v_row["net"], factored.v_col["net"]  # (steps, ...)
    assert rows["dense_0"]["w"].shape[1:] == (32,) and cols["dense_0"]["w"].shape[1:] == (64,)
    assert rows["dense_1"]["w"].shape[1:] == (10,) and cols["dense_1"]["w"].shape[1:] == (32,)
    assert factored.v["net"]["dense_0"]["w"].shape[1:] == (1,)


def test_updates_keep_the_gradients_dtype_and_the_state_the_parameters():
    params = {"w": jnp.zeros((4, 4), jnp.bfloat16), "b": jnp.zeros(4, jnp.bfloat16)}
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 0.5, jnp.float32), params)
    opt = scale_by_factored_rms(min_dim_size_to_factor=2)
    u, state = opt.update(grads, opt.init(params), params)
    assert u["w"].dtype == u["b"].dtype == jnp.float32
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves((state.v_row, state.v_col, state.v)))
    close(u["w"], np.ones((4, 4))), close(u["b"], np.ones(4))  # g / sqrt(g^2)
    state = adafactor(momentum=0.5, dtype_momentum=None).init(params)
    assert state[3].ema["w"].dtype == jnp.bfloat16  # None: the parameters' dtype


def test_hyperparameters_may_be_traced():
    def step(decay_rate, eps, threshold, offset):
        opt = adafactor(decay_rate=decay_rate, eps=eps, clipping_threshold=threshold, decay_offset=offset)
        params = jnp.ones((3, 3))
        return opt.update(jnp.full((3, 3), 0.5), opt.init(params), params)[0]

    traced = jax.jit(step)(0.8, 1e-30, 1.0, 0)
    close(traced, step(0.8, 1e-30, 1.0, 0))


# ------------------------------------------------------------------------------------ errors


def test_update_needs_the_parameters():
    for opt in (scale_by_factored_rms(), adafactor()):
        with pytest.raises(
            ValueError, match=r"^scale_by_factored_rms: `params` is None; their shapes decide"
        ):
            opt.update(f32(1.0), opt.init(f32(0.0)))


def test_update_shapes_must_be_the_parameters():
    opt = scale_by_factored_rms()
    with pytest.raises(
        ValueError,
        match=r"^scale_by_factored_rms: `updates` leaf \(root\) has shape \(3,\), but its `params`",
    ):
        opt.update(jnp.ones(3), opt.init(jnp.ones(2)), jnp.ones(2))


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: adafactor(decay_rate=-0.5),
            ValueError,
            "adafactor: `decay_rate` must be a non-negative number, got -0.5",
        ),
        (
            lambda: scale_by_factored_rms(decay_rate=-0.5),
            ValueError,
            "scale_by_factored_rms: `decay_rate` must be a non-negative number, got -0.5",
        ),
        (
            lambda: adafactor(min_dim_size_to_factor=-1),
            ValueError,
            "adafactor: `min_dim_size_to_factor` must be >= 0 (the axis length from which a leaf is "
            "factored), got -1",
        ),
        (lambda: adafactor(eps=-1.0), ValueError, "adafactor: `eps` must be a non-negative number, got -1.0"),
        (
            lambda: scale_by_factored_rms(epsilon=-1.0),
            ValueError,
            "scale_by_factored_rms: `epsilon` must be a non-negative number, got -1.0",
        ),
        (
            lambda: adafactor(clipping_threshold=0.0),
            ValueError,
            "adafactor: `clipping_threshold` must be > 0 (the largest root mean square of a step), got 0.0",
        ),
        (lambda: adafactor(momentum=1.0), ValueError, "adafactor: `momentum` must be in [0, 1), got 1.0"),
        (
            lambda: adafactor(weight_decay_rate=-1.0),
            ValueError,
            "adafactor: `weight_decay_rate` must be a non-negative number or a schedule (a function of "
            "the step), got -1.0",
        ),
        (
            lambda: adafactor(learning_rate=-1.0),
            ValueError,
            "adafactor: `learning_rate` must be a non-negative number or a schedule (a function of the "
            "step), got -1.0",
        ),
        (
            lambda: adafactor(decay_offset="0"),
            TypeError,
            "adafactor: `decay_offset` must be a real number, got '0' (str)",
        ),
        (
            lambda: scale_by_factored_rms(step_offset=True),
            TypeError,
            "scale_by_factored_rms: `step_offset` must be a real number, got True (bool)",
        ),
        (
            lambda: scale_by_factored_rms(decay_rate_fn=0.8),
            TypeError,
            "scale_by_factored_rms: `decay_rate_fn` must be callable as decay_rate_fn(step, decay_rate), got 0.8",
        ),
    ],
)
def test_error_messages(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message


def test_a_custom_schedule_takes_any_real_decay_rate():
    opt = scale_by_factored_rms(decay_rate=-0.5, decay_rate_fn=lambda step, rate: jnp.asarray(0.5))
    (u,), _ = run(opt, [f32(2.0)], f32(0.0))
    close(u, [2.0 / np.sqrt(0.5 * 4.0)])


def test_min_dim_size_to_factor_must_be_concrete():
    with pytest.raises(
        ValueError, match=r"^adafactor: `min_dim_size_to_factor` must be a concrete, finite real number"
    ):
        jax.make_jaxpr(lambda size: adafactor(min_dim_size_to_factor=size).init(jnp.ones(2)))(128.0)
