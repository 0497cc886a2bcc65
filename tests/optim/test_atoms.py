"""Each optimizer atom, a few steps on tiny inputs, against numbers written out by hand.

Every expected value below is the atom's equation evaluated step by step in NumPy float64 (the
arithmetic is spelled out next to it), not a call into fdl or optax. Hyperparameters are mostly
dyadic (0.5, 0.75, 0.25, ...): exactly representable in float32, so float32 results differ
from the float64 reference only by the rounding of a handful of operations.

Tolerances:

* ``RTOL32 = 2e-6``: a few float32 operations, each rounding by at most 2**-24 ~ 6e-8 relative,
  compound to well under 1e-6; 2e-6 leaves room for a square root and a division on top.
* bfloat16 comparisons use ``rtol=2**-7``: bfloat16 keeps 8 significant bits, so one rounding
  is up to 2**-8 relative and a store-and-reload of a moment doubles it.

The exhaustive comparison with optax (every alias, 500 steps, several problems and dtypes) is in
``test_parity.py``; here a few interoperability checks run fdl and optax pieces in one chain.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.adadelta import ScaleByAdaDeltaState, adadelta, scale_by_adadelta
from fdl.optim.adagrad import ScaleByRssState, adagrad, scale_by_rss
from fdl.optim.adam import ScaleByAdamState, adam, adamw, nadam, nadamw, scale_by_adam
from fdl.optim.adamax import adamax, scale_by_adamax
from fdl.optim.amsgrad import ScaleByAmsgradState, amsgrad, scale_by_amsgrad
from fdl.optim.base import EmptyState, ScaleByScheduleState, apply_updates, chain, scale
from fdl.optim.clipping import clip, clip_by_global_norm, global_norm
from fdl.optim.lion import ScaleByLionState, lion, scale_by_lion
from fdl.optim.momentum import TraceState, sgd, trace
from fdl.optim.rms import (
    ScaleByRmsState,
    ScaleByRmsWithCountState,
    ScaleByRStdDevState,
    ScaleByRStdDevWithCountState,
    rmsprop,
    scale_by_rms,
    scale_by_stddev,
)
from fdl.optim.weight_decay import MaskedNode, MaskedState, add_decayed_weights, masked

RTOL32 = 2e-6
RTOL_BF16 = 2.0**-7

sqrt = np.sqrt


def f32(*values: float) -> jax.Array:
    return jnp.asarray(values, jnp.float32)


def run(opt, grads, params=None):
    """Apply ``opt`` to each gradient in turn; return the list of updates and the last state."""
    state = opt.init(grads[0] if params is None else params)
    outputs = []
    for g in grads:
        u, state = opt.update(g, state, params)
        outputs.append(u)
    return outputs, state


def close(actual, expected, rtol=RTOL32):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=0)


# ------------------------------------------------------------------------------------ momentum


def test_trace_polyak_and_nesterov_by_hand():
    g1, g2 = 1.0, -2.0
    m1 = g1  # 1 + 0.5 * 0
    m2 = g2 + 0.5 * m1
    (u1, u2), state = run(trace(decay=0.5), [f32(g1), f32(g2)])
    close(u1, [m1]), close(u2, [m2])
    assert isinstance(state, TraceState)
    close(state.trace, [m2])
    (n1, n2), _ = run(trace(decay=0.5, nesterov=True), [f32(g1), f32(g2)])
    close(n1, [g1 + 0.5 * m1]), close(n2, [g2 + 0.5 * m2])


def test_trace_accumulator_dtype_keeps_state_and_update_dtypes():
    (u,), state = run(trace(0.5, accumulator_dtype=jnp.bfloat16), [f32(1.0, 3.0)])
    assert state.trace.dtype == jnp.bfloat16 and u.dtype == jnp.float32


def test_sgd_with_momentum_and_schedule_by_hand():
    params = {"w": f32(1.0)}
    opt = sgd(learning_rate=lambda count: 0.5 / (count.astype(jnp.float32) + 1), momentum=0.5)
    state = opt.init(params)
    p = 1.0
    trace_value = 0.0
    for step in range(3):
        grad = 2.0 * p  # d/dp p^2
        trace_value = grad + 0.5 * trace_value
        p = p - 0.5 / (step + 1) * trace_value
        updates, state = opt.update({"w": f32(2.0) * params["w"]}, state, params)
        params = apply_updates(params, updates)
        close(params["w"], [p])
    assert int(state[1].count) == 3


def test_sgd_without_momentum_is_chain_of_identity_and_scale():
    opt = sgd(learning_rate=0.25)
    (u,), state = run(opt, [f32(4.0)])
    close(u, [-1.0])
    assert state == (EmptyState(), EmptyState())


# ---------------------------------------------------------------------------------------- adam


def test_scale_by_adam_two_steps_on_a_scalar_by_hand():
    b1, b2, eps = 0.5, 0.75, 0.25
    g = [0.5, -1.0]
    m1 = (1 - b1) * g[0]
    v1 = (1 - b2) * g[0] ** 2
    u1 = (m1 / (1 - b1)) / (sqrt(v1 / (1 - b2)) + eps)
    m2 = b1 * m1 + (1 - b1) * g[1]
    v2 = b2 * v1 + (1 - b2) * g[1] ** 2
    u2 = (m2 / (1 - b1**2)) / (sqrt(v2 / (1 - b2**2)) + eps)
    (a1, a2), state = run(scale_by_adam(b1=b1, b2=b2, eps=eps), [f32(g[0]), f32(g[1])])
    close(a1, [u1]), close(a2, [u2])
    assert isinstance(state, ScaleByAdamState) and state.count.dtype == jnp.int32
    assert int(state.count) == 2
    close(state.mu, [m2]), close(state.nu, [v2])


def test_scale_by_adam_eps_root_goes_inside_the_root():
    (u,), _ = run(scale_by_adam(b1=0.5, b2=0.75, eps=0.25, eps_root=0.5), [f32(2.0)])
    close(u, [2.0 / (sqrt(4.0 + 0.5) + 0.25)])


def test_scale_by_adam_nesterov_is_nadam_by_hand():
    b1, b2, eps = 0.5, 0.75, 0.125
    g = [1.0, 3.0]
    m1, v1 = (1 - b1) * g[0], (1 - b2) * g[0] ** 2
    m1_hat = b1 * m1 / (1 - b1**2) + (1 - b1) * g[0] / (1 - b1)
    u1 = m1_hat / (sqrt(v1 / (1 - b2)) + eps)
    m2, v2 = b1 * m1 + (1 - b1) * g[1], b2 * v1 + (1 - b2) * g[1] ** 2
    m2_hat = b1 * m2 / (1 - b1**3) + (1 - b1) * g[1] / (1 - b1**2)
    u2 = m2_hat / (sqrt(v2 / (1 - b2**2)) + eps)
    atom = scale_by_adam(b1=b1, b2=b2, eps=eps, nesterov=True)
    (a1, a2), _ = run(atom, [f32(g[0]), f32(g[1])])
    close(a1, [u1]), close(a2, [u2])
    (n1, n2), _ = run(nadam(learning_rate=0.5, b1=b1, b2=b2, eps=eps), [f32(g[0]), f32(g[1])])
    close(n1, [-0.5 * u1]), close(n2, [-0.5 * u2])


def test_scale_by_adam_mu_dtype_bfloat16():
    """mu is stored in bfloat16, nu and the updates keep the parameters' float32."""
    (u,), state = run(scale_by_adam(mu_dtype=jnp.bfloat16), [f32(0.5, -2.0)])
    assert state.mu.dtype == jnp.bfloat16 and state.nu.dtype == jnp.float32
    assert u.dtype == jnp.float32
    close(state.mu, [0.05, -0.2], rtol=RTOL_BF16)
    close(u, [1.0, -1.0], rtol=1e-4)  # 0.5 / (0.5 + 1e-8), with 0.999 rounded to float32


def test_adam_first_step_in_bfloat16_params_is_finite():
    """The bias correction 1 - 0.999 is zero in bfloat16; computed in float32 it is not."""
    params = jnp.asarray([1.0, -1.0], jnp.bfloat16)
    (u,), state = run(adam(learning_rate=0.5), [jnp.asarray([0.25, -4.0], jnp.bfloat16)], params)
    assert u.dtype == jnp.bfloat16 and state[0].mu.dtype == jnp.bfloat16
    close(u, [-0.5, 0.5], rtol=RTOL_BF16)


def test_adamw_decays_only_masked_leaves_by_hand():
    params = {"w": f32(2.0), "b": f32(2.0)}
    grads = {"w": f32(0.5), "b": f32(0.5)}
    mask = {"w": True, "b": False}
    opt = adamw(learning_rate=0.5, b1=0.5, b2=0.75, eps=0.25, weight_decay=0.125, mask=mask)
    updates, state = opt.update(grads, opt.init(params), params)
    adam_step = 0.5 / (0.5 + 0.25)  # m_hat = g, sqrt(v_hat) = |g|
    close(updates["w"], [-0.5 * (adam_step + 0.125 * 2.0)])
    close(updates["b"], [-0.5 * adam_step])
    assert isinstance(state[1], MaskedState)


def test_nadamw_adds_decay_to_the_nesterov_step():
    params = f32(4.0)
    opt = nadamw(learning_rate=1.0, b1=0.5, b2=0.75, eps=0.0, weight_decay=0.25)
    updates, _ = opt.update(f32(1.0), opt.init(params), params)
    nesterov_m_hat = 0.5 * 0.5 / (1 - 0.25) + 0.5 * 1.0 / 0.5
    close(updates, [-(nesterov_m_hat / 1.0 + 0.25 * 4.0)])


@pytest.mark.parametrize(
    ("flags", "expected_nu_max"),
    [
        # v_t: 0.25 * 4 = 1, then 0.75 * 1 + 0.25 * 0 = 0.75
        ((True, True), [1.0 / 0.25, max(1.0 / 0.25, 0.75 / (1 - 0.75**2))]),
        ((True, False), [1.0, max(1.0, 0.75)]),
    ],
)
def test_scale_by_amsgrad_keeps_the_maximum_by_hand(flags, expected_nu_max):
    bc_mu, bc_nu = flags
    atom = scale_by_amsgrad(b1=0.5, b2=0.75, eps=0.25, bias_correction_mu=bc_mu, bias_correction_nu=bc_nu)
    state = atom.init(f32(0.0))
    m = 0.0
    for g, nu_max in zip([2.0, 0.0], expected_nu_max, strict=True):
        u, state = atom.update(f32(g), state)
        m = 0.5 * m + 0.5 * g
        m_hat = m / (1 - 0.5 ** int(state.count))
        close(state.nu_max, [nu_max])
        close(u, [m_hat / (sqrt(nu_max) + 0.25)])
    assert isinstance(state, ScaleByAmsgradState)


def test_scale_by_amsgrad_without_mu_correction_uses_raw_mu():
    atom = scale_by_amsgrad(b1=0.5, b2=0.75, eps=0.0, bias_correction_mu=False)
    (u,), _ = run(atom, [f32(2.0)])
    close(u, [(0.5 * 2.0) / sqrt(0.25 * 4.0 / 0.25)])


def test_amsgrad_alias_scales_by_minus_learning_rate():
    (u,), _ = run(amsgrad(learning_rate=0.5, b1=0.5, b2=0.75, eps=0.0), [f32(-3.0)])
    close(u, [0.5])


def test_scale_by_adamax_two_steps_by_hand():
    b1, b2, eps = 0.5, 0.75, 0.125
    g = [2.0, -1.0]
    m1, v1 = (1 - b1) * g[0], max(abs(g[0]) + eps, 0.0)
    m2, v2 = b1 * m1 + (1 - b1) * g[1], max(abs(g[1]) + eps, b2 * v1)
    (u1, u2), state = run(scale_by_adamax(b1=b1, b2=b2, eps=eps), [f32(g[0]), f32(g[1])])
    close(u1, [m1 / (1 - b1) / v1]), close(u2, [m2 / (1 - b1**2) / v2])
    assert isinstance(state, ScaleByAdamState)
    close(state.nu, [v2])
    (a,), _ = run(adamax(learning_rate=0.25, b1=b1, b2=b2, eps=eps), [f32(g[0])])
    close(a, [-0.25 * m1 / (1 - b1) / v1])


# ----------------------------------------------------------------------------------------- rms


@pytest.mark.parametrize("eps_in_sqrt", [True, False])
def test_scale_by_rms_two_steps_by_hand(eps_in_sqrt):
    decay, eps, v0 = 0.75, 0.25, 1.0
    g = [2.0, -1.0]
    v1 = decay * v0 + (1 - decay) * g[0] ** 2
    v2 = decay * v1 + (1 - decay) * g[1] ** 2

    def expected(gi, v):
        return gi / sqrt(v + eps) if eps_in_sqrt else gi / (sqrt(v) + eps)

    atom = scale_by_rms(decay=decay, eps=eps, initial_scale=v0, eps_in_sqrt=eps_in_sqrt)
    (u1, u2), state = run(atom, [f32(g[0]), f32(g[1])])
    close(u1, [expected(g[0], v1)]), close(u2, [expected(g[1], v2)])
    assert isinstance(state, ScaleByRmsState)
    close(state.nu, [v2])


def test_scale_by_rms_bias_correction_counts_steps():
    atom = scale_by_rms(decay=0.75, eps=0.0, bias_correction=True)
    (u1, u2), state = run(atom, [f32(2.0), f32(-1.0)])
    v1, v2 = 0.25 * 4.0, 0.75 * 0.25 * 4.0 + 0.25 * 1.0
    close(u1, [2.0 / sqrt(v1 / 0.25)]), close(u2, [-1.0 / sqrt(v2 / (1 - 0.75**2))])
    assert isinstance(state, ScaleByRmsWithCountState) and int(state.count) == 2


@pytest.mark.parametrize("bias", [False, True])
def test_scale_by_stddev_two_steps_by_hand(bias):
    decay, eps = 0.5, 0.25
    g = [2.0, 1.0]
    m1, v1 = 0.5 * g[0], 0.5 * g[0] ** 2
    m2, v2 = 0.5 * m1 + 0.5 * g[1], 0.5 * v1 + 0.5 * g[1] ** 2
    c1, c2 = (1 - decay, 1 - decay**2) if bias else (1.0, 1.0)
    expected = [
        g[0] / sqrt(v1 / c1 - (m1 / c1) ** 2 + eps),
        g[1] / sqrt(v2 / c2 - (m2 / c2) ** 2 + eps),
    ]
    atom = scale_by_stddev(decay=decay, eps=eps, bias_correction=bias)
    (u1, u2), state = run(atom, [f32(g[0]), f32(g[1])])
    close(u1, [expected[0]]), close(u2, [expected[1]])
    assert isinstance(state, ScaleByRStdDevWithCountState if bias else ScaleByRStdDevState)
    close(state.mu, [m2]), close(state.nu, [v2])


def test_scale_by_stddev_eps_outside_the_root():
    (u,), _ = run(scale_by_stddev(decay=0.5, eps=0.25, eps_in_sqrt=False), [f32(2.0)])
    close(u, [2.0 / (sqrt(0.5 * 4.0 - 1.0) + 0.25)])


def test_rmsprop_momentum_accumulates_the_scaled_step():
    """optax's order: RMS scaling, then -lr, then the trace of the scaled steps."""
    opt = rmsprop(learning_rate=0.5, decay=0.75, eps=0.0, momentum=0.5)
    (u1, u2), _ = run(opt, [f32(2.0), f32(2.0)])
    s1 = -0.5 * 2.0 / sqrt(0.25 * 4.0)
    s2 = -0.5 * 2.0 / sqrt(0.75 * 1.0 + 0.25 * 4.0)
    close(u1, [s1]), close(u2, [s2 + 0.5 * s1])
    centered = rmsprop(learning_rate=0.5, decay=0.5, eps=0.25, centered=True)
    (c1,), _ = run(centered, [f32(2.0)])
    close(c1, [-0.5 * 2.0 / sqrt(0.5 * 4.0 - 1.0 + 0.25)])


# ------------------------------------------------------------------------------------- adagrad


def test_scale_by_rss_two_steps_by_hand():
    g = [3.0, 4.0]
    total1, total2 = 0.25 + 9.0, 0.25 + 9.0 + 16.0
    atom = scale_by_rss(initial_accumulator_value=0.25, eps=0.5)
    (u1, u2), state = run(atom, [f32(g[0]), f32(g[1])])
    close(u1, [g[0] / sqrt(total1 + 0.5)]), close(u2, [g[1] / sqrt(total2 + 0.5)])
    assert isinstance(state, ScaleByRssState)
    close(state.sum_of_squares, [total2])


def test_scale_by_rss_zero_accumulator_gives_zero_not_nan():
    (u,), _ = run(scale_by_rss(initial_accumulator_value=0.0, eps=0.0), [f32(0.0, 2.0)])
    close(u, [0.0, 1.0])


def test_adagrad_alias_by_hand():
    (u,), _ = run(adagrad(learning_rate=0.5, initial_accumulator_value=0.0, eps=0.0), [f32(-3.0)])
    close(u, [0.5])


# ------------------------------------------------------------------------------------ adadelta


def test_scale_by_adadelta_two_steps_by_hand():
    rho, eps = 0.5, 0.25
    g = [2.0, -1.0]
    e_g1 = (1 - rho) * g[0] ** 2
    u1 = sqrt(0.0 + eps) / sqrt(e_g1 + eps) * g[0]
    e_x1 = (1 - rho) * u1**2
    e_g2 = rho * e_g1 + (1 - rho) * g[1] ** 2
    u2 = sqrt(e_x1 + eps) / sqrt(e_g2 + eps) * g[1]
    e_x2 = rho * e_x1 + (1 - rho) * u2**2
    (a1, a2), state = run(scale_by_adadelta(rho=rho, eps=eps), [f32(g[0]), f32(g[1])])
    close(a1, [u1]), close(a2, [u2])
    assert isinstance(state, ScaleByAdaDeltaState)
    close(state.e_g, [e_g2]), close(state.e_x, [e_x2])


def test_adadelta_without_learning_rate_descends_and_decays_before_scaling():
    params = f32(2.0)
    opt = adadelta(rho=0.5, eps=0.25, weight_decay=0.5)
    (u,), state = run(opt, [f32(1.0)], params)
    decayed = 1.0 + 0.5 * 2.0  # coupled: added to the gradient first
    close(u, [-(sqrt(0.25) / sqrt(0.5 * decayed**2 + 0.25) * decayed)])
    assert state[0] == EmptyState() and state[2] == EmptyState()


# ---------------------------------------------------------------------------------------- lion


def test_scale_by_lion_two_steps_by_hand():
    b1, b2 = 0.5, 0.75
    g = [np.array([2.0, -1.0]), np.array([-1.0, -1.0])]
    m1 = (1 - b2) * g[0]
    u1 = np.sign((1 - b1) * g[0])
    u2 = np.sign(b1 * m1 + (1 - b1) * g[1])  # uses m before this step's gradient
    m2 = b2 * m1 + (1 - b2) * g[1]
    (a1, a2), state = run(scale_by_lion(b1=b1, b2=b2), [f32(*g[0]), f32(*g[1])])
    close(a1, u1), close(a2, u2)
    assert isinstance(state, ScaleByLionState) and int(state.count) == 2
    close(state.mu, m2)


def test_scale_by_lion_smooth_and_refined_modes():
    c = 0.5 * np.array([0.5, 4.0])  # (1 - b1) g with b1 = 0.5 and m = 0
    (smooth,), _ = run(scale_by_lion(b1=0.5, mode="smooth", smooth_beta=2.0), [f32(0.5, 4.0)])
    close(smooth, np.tanh(2.0 * c))
    (refined,), _ = run(scale_by_lion(b1=0.5, mode="refined"), [f32(0.5, 4.0)])
    close(refined, [0.25, 1.0])


def test_lion_alias_adds_decoupled_decay_by_hand():
    params = f32(2.0)
    opt = lion(learning_rate=0.25, weight_decay=0.125, mu_dtype=jnp.bfloat16)
    (u,), state = run(opt, [f32(-3.0)], params)
    close(u, [-0.25 * (-1.0 + 0.125 * 2.0)])
    assert state[0].mu.dtype == jnp.bfloat16


# -------------------------------------------------------------------------------- weight decay


def test_add_decayed_weights_constant_and_zero():
    params = {"w": f32(2.0, -4.0)}
    opt = add_decayed_weights(0.25)
    updates, state = opt.update({"w": f32(1.0, 1.0)}, opt.init(params), params)
    close(updates["w"], [1.0 + 0.25 * 2.0, 1.0 - 0.25 * 4.0])
    assert state == EmptyState()
    untouched, _ = add_decayed_weights(0.0).update({"w": f32(1.0, 1.0)}, EmptyState(), params)
    close(untouched["w"], [1.0, 1.0])


def test_add_decayed_weights_schedule_is_evaluated_at_the_count():
    params = f32(2.0)
    opt = add_decayed_weights(lambda count: 0.5 * count.astype(jnp.float32))
    state = opt.init(params)
    assert isinstance(state, ScaleByScheduleState)
    for count in range(3):
        updates, state = opt.update(f32(1.0), state, params)
        close(updates, [1.0 + 0.5 * count * 2.0])
    assert int(state.count) == 3


def test_add_decayed_weights_needs_params():
    opt = add_decayed_weights(0.1)
    with pytest.raises(ValueError, match=r"add_decayed_weights needs the parameters"):
        opt.update(f32(1.0), opt.init(f32(1.0)))


def test_add_decayed_weights_mask_callable_skips_biases():
    params = {"w": f32(2.0), "b": f32(2.0)}
    opt = add_decayed_weights(0.5, mask=lambda p: {"w": True, "b": False})
    updates, state = opt.update({"w": f32(1.0), "b": f32(1.0)}, opt.init(params), params)
    close(updates["w"], [2.0]), close(updates["b"], [1.0])
    assert isinstance(state, MaskedState)


# -------------------------------------------------------------------------------------- masked


def test_masked_inner_sees_only_selected_leaves():
    params = {"w": f32(1.0, 1.0), "layer": {"a": f32(1.0), "b": f32(1.0)}}
    grads = {"w": f32(2.0, 4.0), "layer": {"a": f32(3.0), "b": f32(5.0)}}
    opt = masked(trace(decay=0.5), {"w": True, "layer": False})  # a prefix mask
    state = opt.init(params)
    assert isinstance(state, MaskedState)
    assert state.inner_state.trace["layer"] == MaskedNode()
    assert len(jax.tree.leaves(state)) == 1  # only w's trace
    for _ in range(2):
        updates, state = opt.update(grads, state, params)
    close(updates["w"], [2.0 + 0.5 * 2.0, 4.0 + 0.5 * 4.0])
    close(updates["layer"]["a"], [3.0]), close(updates["layer"]["b"], [5.0])


def test_masked_with_adam_passes_masked_leaves_through_unchanged():
    grads = {"w": f32(0.5), "b": f32(-7.0)}
    opt = masked(scale_by_adam(b1=0.5, b2=0.75, eps=0.0), lambda tree: {"w": True, "b": False})
    updates, state = opt.update(grads, opt.init(grads))
    close(updates["w"], [1.0]), close(updates["b"], [-7.0])
    assert state.inner_state.mu["b"] == MaskedNode()


def test_masked_rejects_non_bool_leaves():
    opt = masked(scale(2.0), {"w": jnp.asarray(True)})
    with pytest.raises(TypeError, match=r"mask leaf w must be a Python bool"):
        opt.init({"w": f32(1.0)})


def test_masked_rejects_a_mask_of_another_structure():
    opt = masked(scale(2.0), {"v": True})
    with pytest.raises(ValueError, match=r"structure of the parameters .*mask: .*parameters: "):
        opt.init({"w": f32(1.0)})


def test_masked_compatible_extra_args_are_masked_too():
    seen = {}

    class Spy:
        def init(self, params):
            return EmptyState()

        def update(self, updates, state, params=None, **extra_args):
            seen.update(extra_args)
            return updates, state

    grads = {"w": f32(1.0), "b": f32(1.0)}
    mask = {"w": True, "b": False}
    opt = masked(Spy(), mask, mask_compatible_extra_args=True)
    opt.update(grads, opt.init(grads), tag={"w": 1, "b": 2}, other=3)
    assert seen == {"tag": {"w": 1, "b": MaskedNode()}, "other": 3}


# ------------------------------------------------------------------------------------ clipping


def test_clip_bounds_each_coordinate():
    (u,), state = run(clip(1.5), [f32(-3.0, 0.5, 2.0)])
    close(u, [-1.5, 0.5, 1.5])
    assert state == EmptyState()


def test_clip_by_global_norm_rescales_the_whole_tree():
    grads = {"a": f32(3.0, 0.0), "b": f32(4.0)}  # norm 5
    close(global_norm(grads), [5.0])
    opt = clip_by_global_norm(2.5)
    updates, state = opt.update(grads, opt.init(grads))
    close(updates["a"], [1.5, 0.0]), close(updates["b"], [2.0])
    assert state == EmptyState()
    unchanged, _ = clip_by_global_norm(6.0).update(grads, EmptyState())
    close(unchanged["a"], [3.0, 0.0]), close(unchanged["b"], [4.0])


# ---------------------------------------------------------------------- interoperability


def test_fdl_atoms_inside_optax_chain_and_optax_atoms_inside_fdl_chain():
    """Both mixed chains take the same steps as an all-optax chain, three steps, float32."""
    params = {"w": f32(0.5, -1.0, 2.0), "b": f32(0.25)}
    grads = [jax.tree.map(lambda p, k=k: p * (k + 1.5), params) for k in range(3)]
    reference = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(0.1, weight_decay=0.5))
    fdl_in_optax = optax.chain(clip_by_global_norm(1.0), adamw(0.1, weight_decay=0.5))
    optax_in_fdl = chain(optax.clip_by_global_norm(1.0), optax.adamw(0.1, weight_decay=0.5))
    # optax's Adam raises its float b1 to the int32 count, which the suite's strict
    # promotion rejects: every chain that contains optax code runs under standard promotion.
    with jax.numpy_dtype_promotion("standard"):
        expected, _ = run(reference, grads, params)
        mixed_a, _ = run(fdl_in_optax, grads, params)
        mixed_b, _ = run(optax_in_fdl, grads, params)
    for want, got_a, got_b in zip(expected, mixed_a, mixed_b, strict=True):
        for key in params:
            close(got_a[key], np.asarray(want[key], np.float64))
            close(got_b[key], np.asarray(want[key], np.float64))


def test_atoms_run_under_jit_and_scan():
    opt = chain(clip_by_global_norm(1.0), adam(0.1))
    params = f32(1.0, -2.0)

    def step(carry, _):
        p, s = carry
        u, s = opt.update(2.0 * p, s, p)
        return (apply_updates(p, u), s), None

    (p, state), _ = jax.jit(lambda: jax.lax.scan(step, (params, opt.init(params)), None, 20))()
    assert int(state[1][0].count) == 20
    assert float(jnp.max(jnp.abs(p))) < 1.0  # moved toward the minimum at 0


# -------------------------------------------------------------------------------------- errors

INVALID = [
    (trace, dict(decay=1.0), r"`decay` must be in \[0, 1\), got 1.0"),
    (sgd, dict(learning_rate=-0.1), r"`learning_rate` must be a non-negative number"),
    (sgd, dict(learning_rate=0.1, momentum=-0.5), r"`momentum` must be in \[0, 1\), got -0.5"),
    (scale_by_adam, dict(b1=1.0), r"`b1` must be in \[0, 1\), got 1.0"),
    (scale_by_adam, dict(b2=-0.1), r"`b2` must be in \[0, 1\), got -0.1"),
    (scale_by_adam, dict(eps=-1e-8), r"`eps` must be a non-negative number, got -1e-08"),
    (scale_by_adam, dict(eps_root=-1.0), r"`eps_root` must be a non-negative number, got -1.0"),
    (adam, dict(learning_rate=-1e-3), r"`learning_rate` must be a non-negative number"),
    (adamw, dict(learning_rate=1e-3, weight_decay=-0.1), r"`weight_decay` must be a non-neg"),
    (nadam, dict(learning_rate=1e-3, b1=1.5), r"`b1` must be in \[0, 1\), got 1.5"),
    (amsgrad, dict(learning_rate=1e-3, b2=1.0), r"`b2` must be in \[0, 1\), got 1.0"),
    (scale_by_adamax, dict(eps=-1.0), r"`eps` must be a non-negative number, got -1.0"),
    (adamax, dict(learning_rate=1e-3, b1=2.0), r"`b1` must be in \[0, 1\), got 2.0"),
    (scale_by_rms, dict(decay=1.0), r"`decay` must be in \[0, 1\), got 1.0"),
    (scale_by_rms, dict(initial_scale=-1.0), r"`initial_scale` must be a non-negative number"),
    (scale_by_stddev, dict(eps=-1.0), r"`eps` must be a non-negative number, got -1.0"),
    (rmsprop, dict(learning_rate=0.1, momentum=1.0), r"`momentum` must be in \[0, 1\), got 1.0"),
    (scale_by_rss, dict(initial_accumulator_value=-0.1), r"`initial_accumulator_value` must"),
    (adagrad, dict(learning_rate=0.1, eps=-1.0), r"`eps` must be a non-negative number"),
    (scale_by_adadelta, dict(rho=1.0), r"`rho` must be in \[0, 1\), got 1.0"),
    (adadelta, dict(learning_rate=-1.0), r"`learning_rate` must be a non-negative number"),
    (scale_by_lion, dict(b2=1.0), r"`b2` must be in \[0, 1\), got 1.0"),
    (scale_by_lion, dict(mode="soft"), r"`mode` must be one of 'hard', 'smooth', 'refined', got"),
    (scale_by_lion, dict(smooth_beta=-1.0), r"`smooth_beta` must be a non-negative number"),
    (lion, dict(learning_rate=1e-4, weight_decay=-1.0), r"`weight_decay` must be a non-neg"),
    (add_decayed_weights, dict(weight_decay=-0.5), r"`weight_decay` must be a non-negative"),
    (clip, dict(max_delta=-1.0), r"`max_delta` must be a non-negative number, got -1.0"),
    (clip_by_global_norm, dict(max_norm=-1.0), r"`max_norm` must be a non-negative number"),
]


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"), INVALID, ids=[f"{f.__name__}-{k}" for f, k, _ in INVALID]
)
def test_invalid_hyperparameters_are_rejected_at_construction(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)
