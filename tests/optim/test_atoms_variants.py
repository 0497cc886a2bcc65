"""The Adam variants and sign methods (AdaBelief, Yogi, RAdam, signSGD, Signum, ema), a few steps
on tiny inputs, against their equations written out in NumPy float64 (as ``test_atoms.py``).

The 500-step comparison with optax in every dtype is in ``test_parity.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.optim.adam import ScaleByAdamState, adam
from fdl.optim.adamax import adamaxw
from fdl.optim.base import EmptyState
from fdl.optim.belief import ScaleByBeliefState, adabelief, scale_by_belief
from fdl.optim.momentum import EmaState, ema
from fdl.optim.radam import radam, scale_by_radam
from fdl.optim.sign import scale_by_sign, sign_sgd, signum
from fdl.optim.trust_ratio import lamb, lars, scale_by_trust_ratio
from fdl.optim.yogi import scale_by_yogi, yogi
from tests.optim.test_atoms import close, f32, run

sqrt = np.sqrt


def test_ema_debiased_and_not_by_hand():
    g1, g2 = 2.0, -1.0
    m1 = 0.25 * g1  # 0.75 * 0 + 0.25 * g1
    m2 = 0.75 * m1 + 0.25 * g2
    (u1, u2), state = run(ema(decay=0.75), [f32(g1), f32(g2)])
    close(u1, [m1 / (1 - 0.75)]), close(u2, [m2 / (1 - 0.75**2)])
    assert isinstance(state, EmaState) and int(state.count) == 2
    close(state.ema, [m2])
    (v1, v2), _ = run(ema(decay=0.75, debias=False), [f32(g1), f32(g2)])
    close(v1, [m1]), close(v2, [m2])


def test_ema_keeps_its_accumulator_dtype_and_the_gradients_dtype():
    (u,), state = run(ema(decay=0.5, accumulator_dtype=jnp.bfloat16), [f32(1.0, 3.0)])
    assert state.ema.dtype == jnp.bfloat16 and u.dtype == jnp.float32
    close(u, [1.0, 3.0])  # debiased: 0.5 g / 0.5


def test_scale_by_sign_and_sign_sgd_by_hand():
    (u,), state = run(scale_by_sign(), [f32(-3.0, 0.0, 2e-30)])
    assert u.tolist() == [-1.0, 0.0, 1.0] and state == EmptyState()
    (step,), _ = run(sign_sgd(learning_rate=0.25), [f32(-3.0, 0.5)])
    close(step, [0.25, -0.25])


def test_sign_of_a_complex_gradient_is_its_direction():
    (u,), _ = run(scale_by_sign(), [jnp.asarray([3 + 4j], jnp.complex64)])
    np.testing.assert_allclose(np.asarray(u), [0.6 + 0.8j], rtol=1e-6)


def test_signum_follows_the_sign_of_the_average_not_of_the_gradient():
    g = [4.0, -1.0, -1.0, -1.0]
    m, expected = 0.0, []
    for gi in g:
        m = 0.5 * m + 0.5 * gi
        expected.append(-0.125 * np.sign(m))
    # m: 2, 0.5, -0.25, -0.625: the second step still moves against a negative gradient
    updates, state = run(signum(learning_rate=0.125, beta=0.5), [f32(x) for x in g])
    close([float(u[0]) for u in updates], expected)
    assert expected[1] == -0.125 and isinstance(state[0], EmaState)


def test_scale_by_belief_two_steps_by_hand():
    b1, b2, eps, eps_root = 0.5, 0.75, 1e-3, 1e-4
    g1, g2 = 2.0, -1.0
    m1 = (1 - b1) * g1
    s1 = (1 - b2) * (g1 - m1) ** 2 + eps_root
    m2 = b1 * m1 + (1 - b1) * g2
    s2 = b2 * s1 + (1 - b2) * (g2 - m2) ** 2 + eps_root
    u1 = (m1 / (1 - b1)) / (sqrt(s1 / (1 - b2)) + eps)
    u2 = (m2 / (1 - b1**2)) / (sqrt(s2 / (1 - b2**2)) + eps)
    opt = scale_by_belief(b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    (a1, a2), state = run(opt, [f32(g1), f32(g2)])
    close(a1, [u1]), close(a2, [u2])
    assert isinstance(state, ScaleByBeliefState)
    close(state.mu, [m2]), close(state.nu, [s2])


def test_scale_by_belief_nesterov_by_hand():
    b1, b2 = 0.5, 0.75
    g1 = 2.0
    m1 = (1 - b1) * g1
    s1 = (1 - b2) * (g1 - m1) ** 2
    m_hat = b1 * m1 / (1 - b1**2) + (1 - b1) * g1 / (1 - b1)
    (u,), _ = run(scale_by_belief(b1=b1, b2=b2, eps=0.0, eps_root=0.0, nesterov=True), [f32(g1)])
    close(u, [m_hat / sqrt(s1 / (1 - b2))])


def test_adabelief_step_is_large_where_the_gradient_is_steady_and_small_where_it_jumps():
    """The 'belief': a constant gradient leaves only a shrinking prediction error, so s falls
    below Adam's v = g^2 and the step grows past Adam's; alternating gradients make it shrink."""
    lr = 1e-3
    steady, _ = run(adabelief(learning_rate=lr, eps=1e-8), [f32(1.0)] * 20)
    adam_steady, _ = run(adam(learning_rate=lr, eps=1e-8), [f32(1.0)] * 20)
    jumping, _ = run(adabelief(learning_rate=lr, eps=1e-8), [f32((-1.0) ** i) for i in range(20)])
    assert abs(float(steady[-1][0])) > 1.5 * abs(float(adam_steady[-1][0]))
    assert abs(float(adam_steady[-1][0])) == pytest.approx(lr, rel=1e-3)
    assert abs(float(jumping[-1][0])) < lr


def test_scale_by_yogi_two_steps_by_hand():
    b1, b2, eps, v0 = 0.5, 0.75, 1e-3, 0.25
    g1, g2 = 2.0, 0.25
    m1 = b1 * v0 + (1 - b1) * g1
    v1 = v0 - (1 - b2) * np.sign(v0 - g1**2) * g1**2  # grows: v0 < g1^2
    m2 = b1 * m1 + (1 - b1) * g2
    v2 = v1 - (1 - b2) * np.sign(v1 - g2**2) * g2**2  # shrinks by (1 - b2) g2^2 only
    u2 = (m2 / (1 - b1**2)) / (sqrt(v2 / (1 - b2**2)) + eps)
    opt = scale_by_yogi(b1=b1, b2=b2, eps=eps, initial_accumulator_value=v0)
    (_, a2), state = run(opt, [f32(g1), f32(g2)])
    close(a2, [u2])
    assert isinstance(state, ScaleByAdamState)
    close(state.mu, [m2]), close(state.nu, [v2])
    assert v1 - v2 == pytest.approx((1 - b2) * g2**2)


def test_yogi_alias_is_the_atom_and_a_learning_rate():
    (u,), _ = run(yogi(learning_rate=0.5, b1=0.5, b2=0.75, eps=1e-3), [f32(2.0)])
    (a,), _ = run(scale_by_yogi(b1=0.5, b2=0.75, eps=1e-3), [f32(2.0)])
    close(u, [-0.5 * float(a[0])])


def _rho(t, b2):
    rho_inf = 2 / (1 - b2) - 1
    return rho_inf - 2 * t * b2**t / (1 - b2**t), rho_inf


def test_scale_by_radam_momentum_steps_then_rectified_adam_by_hand():
    b1, b2, eps = 0.5, 0.75, 1e-8  # rho_inf = 7: rho_t crosses 5 at t = 8 (rho_7 = 4.84)
    grads = [2.0, -1.0, 0.5, 1.0, 2.0, -0.5, 1.5, 1.0, -2.0, 0.25]
    m = v = 0.0
    expected = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        rho, rho_inf = _rho(t, b2)
        if rho >= 5.0:
            r = sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            expected.append(r * m_hat / (sqrt(v_hat) + eps))
        else:
            expected.append(m_hat)
    switched = [_rho(t, b2)[0] >= 5.0 for t in range(1, len(grads) + 1)]
    assert switched == [False] * 7 + [True] * 3  # both branches are exercised
    updates, state = run(scale_by_radam(b1=b1, b2=b2, eps=eps), [f32(g) for g in grads])
    close([float(u[0]) for u in updates], expected)
    assert isinstance(state, ScaleByAdamState) and int(state.count) == len(grads)


def test_radam_threshold_moves_the_switch():
    grads = [f32(1.0)] * 3
    # b2 = 0.75: rho_inf = 7, rho_1 = 1 >= -1, so step 1 is already rectified (r_1^2 = 21/15)
    early, _ = run(scale_by_radam(b2=0.75, threshold=-1.0), grads)
    late, _ = run(scale_by_radam(b2=0.5), grads)  # rho_inf = 3 < 5: never rectified
    assert [float(u[0]) for u in late] == pytest.approx([1.0, 1.0, 1.0])  # m_hat of g = 1
    close(early[0], [sqrt(21 / 15) / (1 + 1e-8)])
    (u,), _ = run(radam(learning_rate=0.1), [f32(3.0)])
    close(u, [-0.3])


def test_scale_by_trust_ratio_per_leaf_by_hand():
    params = {"w": f32(3.0, 4.0), "b": f32(0.0, 0.0), "v": f32(1.0, 0.0)}
    grads = {"w": f32(0.0, 0.5), "b": f32(1.0, -1.0), "v": f32(0.0, 0.0)}
    opt = scale_by_trust_ratio(trust_coefficient=0.5, eps=0.25)
    u, state = opt.update(grads, opt.init(params), params)
    close(u["w"], [0.0, 0.5 * 0.5 * 5.0 / (0.5 + 0.25)])  # c |w| / (|g| + eps) times g
    close(u["b"], [1.0, -1.0])  # |b| = 0: ratio 1
    close(u["v"], [0.0, 0.0])  # |g| = 0: ratio 1 (and nothing to scale)
    assert state == EmptyState()


def test_scale_by_trust_ratio_min_norm_floors_both_norms():
    params, grads = f32(0.0, 0.0), f32(0.0, 0.1)
    (u,), _ = run(scale_by_trust_ratio(min_norm=2.0), [grads], params=params)
    close(u, [0.0, 0.1 * 2.0 / 2.0])  # max(0, 2) / max(0.1, 2): no fallback to 1


def test_trust_ratio_gradient_is_finite_at_zero_params():
    def moved(p):
        u, _ = scale_by_trust_ratio(min_norm=1e-3).update(f32(1.0, 2.0), None, p)
        return jnp.sum(u)

    assert bool(jnp.all(jnp.isfinite(jax.grad(moved)(f32(0.0, 0.0)))))


def test_scale_by_trust_ratio_needs_params():
    with pytest.raises(ValueError, match=r"scale_by_trust_ratio: `params` is None; .* pass the parameters"):
        scale_by_trust_ratio().update(f32(1.0), EmptyState())


def test_lamb_two_steps_by_hand():
    lr, b1, b2, eps, wd = 0.1, 0.5, 0.75, 1e-6, 0.25
    theta = np.array([3.0, 4.0])
    grads = [np.array([1.0, -2.0]), np.array([0.5, 0.5])]
    opt = lamb(learning_rate=lr, b1=b1, b2=b2, eps=eps, weight_decay=wd)
    params, state = f32(*theta), None
    state = opt.init(params)
    m = v = np.zeros(2)
    for t, g in enumerate(grads, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        r = (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps) + wd * theta
        theta = theta - lr * np.linalg.norm(theta) / np.linalg.norm(r) * r
        u, state = opt.update(f32(*g), state, params)
        params = params + u
        close(params, theta, rtol=5e-6)


def test_lars_two_steps_by_hand():
    lr, wd, c, mu = 0.5, 0.125, 0.01, 0.5
    theta = np.array([3.0, 4.0])
    grads = [np.array([1.0, -2.0]), np.array([0.5, 0.5])]
    opt = lars(learning_rate=lr, weight_decay=wd, trust_coefficient=c, momentum=mu)
    params = f32(*theta)
    state = opt.init(params)
    trace = np.zeros(2)
    for g in grads:
        d = g + wd * theta
        step = -lr * c * np.linalg.norm(theta) / np.linalg.norm(d) * d
        trace = step + mu * trace
        theta = theta + trace
        u, state = opt.update(f32(*g), state, params)
        params = params + u
        close(params, theta)


def test_adamaxw_decays_masked_leaves_only():
    params = {"w": f32(2.0), "b": f32(2.0)}
    grads = {"w": f32(3.0), "b": f32(3.0)}
    opt = adamaxw(learning_rate=0.1, weight_decay=0.5, mask={"w": True, "b": False})
    u, _ = opt.update(grads, opt.init(params), params)
    close(u["w"], [-0.1 * (3.0 / (3.0 + 1e-8) + 0.5 * 2.0)])
    close(u["b"], [-0.1 * 3.0 / (3.0 + 1e-8)])


@pytest.mark.parametrize(
    "opt",
    [scale_by_belief(), scale_by_yogi(), scale_by_radam(), scale_by_sign(), ema(0.9)],
    ids=["belief", "yogi", "radam", "sign", "ema"],
)
def test_variants_jit_and_keep_bfloat16(opt):
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    grads = {"w": jnp.asarray([1.0, -2.0, 0.5], jnp.bfloat16)}
    u, state = jax.jit(opt.update)(grads, opt.init(params), params)
    assert u["w"].dtype == jnp.bfloat16
    assert all(leaf.dtype in (jnp.bfloat16, jnp.int32) for leaf in jax.tree.leaves(state))
    assert bool(jnp.all(jnp.isfinite(u["w"].astype(jnp.float32))))


INVALID = [
    (ema, dict(decay=1.0), r"ema: `decay` must be in \[0, 1\), got 1.0"),
    (signum, dict(learning_rate=0.1, beta=1.5), r"signum: `beta` must be in \[0, 1\), got 1.5"),
    (sign_sgd, dict(learning_rate=-0.1), r"sign_sgd: `learning_rate` must be a non-negative"),
    (scale_by_belief, dict(b2=1.0), r"scale_by_belief: `b2` must be in \[0, 1\), got 1.0"),
    (adabelief, dict(learning_rate=0.1, eps_root=-1.0), r"adabelief: `eps_root` must be a non-neg"),
    (scale_by_yogi, dict(initial_accumulator_value=-1.0), r"`initial_accumulator_value` must be a"),
    (yogi, dict(learning_rate=0.1, eps=-1e-3), r"yogi: `eps` must be a non-negative number"),
    (scale_by_radam, dict(b1=1.0), r"scale_by_radam: `b1` must be in \[0, 1\), got 1.0"),
    (radam, dict(learning_rate=-1.0), r"radam: `learning_rate` must be a non-negative number"),
    (scale_by_trust_ratio, dict(min_norm=-1.0), r"scale_by_trust_ratio: `min_norm` must be a non-neg"),
    (lars, dict(learning_rate=0.1, momentum=1.0), r"lars: `momentum` must be in \[0, 1\), got 1.0"),
    (lars, dict(learning_rate=0.1, trust_coefficient=-1.0), r"lars: `trust_coefficient` must be a"),
    (lamb, dict(learning_rate=0.1, b2=1.0), r"lamb: `b2` must be in \[0, 1\), got 1.0"),
    (lamb, dict(learning_rate=0.1, weight_decay=-0.1), r"lamb: `weight_decay` must be a non-neg"),
    (adamaxw, dict(learning_rate=0.1, weight_decay=-0.1), r"adamaxw: `weight_decay` must be a non"),
]


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"), INVALID, ids=[f"{f.__name__}-{k}" for f, k, _ in INVALID]
)
def test_invalid_hyperparameters_are_rejected_at_construction(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_a_non_numeric_threshold_is_refused():
    with pytest.raises(TypeError, match=r"radam: `threshold` must be a real number, got '5'"):
        radam(1e-3, threshold="5")
