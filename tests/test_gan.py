"""GAN losses, penalties, the alternating step and the sample metrics (fdl.gan) against their
formulas, finite differences, SciPy and a hand-written step with optax."""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

import fdl
from fdl.gan import (
    LOSSES,
    GANState,
    discriminator_loss,
    frechet_distance,
    gaussian_frechet_distance,
    generator_loss,
    gradient_penalty,
    interpolate,
    make_gan_step,
    mode_coverage,
    r1_penalty,
)

# ------------------------------------------------------------------------------------ losses

REAL = [2.0, -1.0, 0.5]
FAKE = [0.5, -2.0, 1.5, 0.0]


def _sigmoid(t):
    return 1.0 / (1.0 + math.exp(-t))


def _mean(values):
    return sum(values) / len(values)


# Each loss's formula written out on Python floats: (discriminator, generator).
FORMULAS = {
    "minimax": (
        lambda r, f: (
            -_mean([math.log(_sigmoid(t)) for t in r]) - _mean([math.log(1 - _sigmoid(t)) for t in f])
        ),
        lambda f: _mean([math.log(1 - _sigmoid(t)) for t in f]),
    ),
    "non_saturating": (
        lambda r, f: (
            -_mean([math.log(_sigmoid(t)) for t in r]) - _mean([math.log(1 - _sigmoid(t)) for t in f])
        ),
        lambda f: -_mean([math.log(_sigmoid(t)) for t in f]),
    ),
    "least_squares": (
        lambda r, f: 0.5 * _mean([(t - 1) ** 2 for t in r]) + 0.5 * _mean([t**2 for t in f]),
        lambda f: 0.5 * _mean([(t - 1) ** 2 for t in f]),
    ),
    "hinge": (
        lambda r, f: _mean([max(0.0, 1 - t) for t in r]) + _mean([max(0.0, 1 + t) for t in f]),
        lambda f: -_mean(f),
    ),
    "wasserstein": (lambda r, f: _mean(f) - _mean(r), lambda f: -_mean(f)),
}


def test_the_table_covers_every_loss():
    assert sorted(FORMULAS) == sorted(LOSSES)


@pytest.mark.parametrize("loss", LOSSES)
def test_losses_match_their_formulas(loss):
    d_formula, g_formula = FORMULAS[loss]
    r, f = jnp.array(REAL), jnp.array(FAKE)
    assert float(discriminator_loss(r, f, loss)) == pytest.approx(d_formula(REAL, FAKE), rel=1e-6)
    assert float(generator_loss(f, loss)) == pytest.approx(g_formula(FAKE), rel=1e-6)
    # (B, 1) logits, as a Dense(1) head gives them, are the same
    assert float(discriminator_loss(r[:, None], f[:, None], loss)) == float(discriminator_loss(r, f, loss))
    assert float(generator_loss(f[:, None], loss)) == float(generator_loss(f, loss))


def test_losses_on_hand_computed_values():
    r, f = jnp.array([1.0, 3.0]), jnp.array([0.0, 2.0])
    # hinge: mean(relu(1 - r)) = mean(0, 0) = 0; mean(relu(1 + f)) = mean(1, 3) = 2
    assert float(discriminator_loss(r, f, "hinge")) == 2.0
    # least squares: 0.5 mean((0, 4)) + 0.5 mean((0, 4)) = 2; generator 0.5 mean((1, 1)) = 0.5
    assert float(discriminator_loss(r, f, "least_squares")) == 2.0
    assert float(generator_loss(f, "least_squares")) == 0.5
    # wasserstein: mean(f) - mean(r) = 1 - 2
    assert float(discriminator_loss(r, f, "wasserstein")) == -1.0
    # at logit 0, D = 1/2: both cross-entropy terms are log 2
    zero = jnp.zeros(3)
    assert float(discriminator_loss(zero, zero, "minimax")) == pytest.approx(2 * math.log(2), rel=1e-6)
    assert float(generator_loss(zero, "minimax")) == pytest.approx(-math.log(2), rel=1e-6)


def test_minimax_generator_gradient_saturates_and_non_saturating_does_not():
    # a discriminator that confidently rejects the fakes (logit -10): the minimax generator's
    # gradient d/df log(1 - sigma(f)) = -sigma(f) is ~4.5e-5, the non-saturating one's
    # d/df -log sigma(f) = -(1 - sigma(f)) is ~-1 (Goodfellow et al. 2014, section 3)
    f = jnp.full((4,), -10.0)
    minimax = jax.grad(lambda f: generator_loss(f, "minimax"))(f)
    non_saturating = jax.grad(lambda f: generator_loss(f, "non_saturating"))(f)
    np.testing.assert_allclose(minimax, -_sigmoid(-10.0) / 4, rtol=1e-4)
    np.testing.assert_allclose(non_saturating, -(1 - _sigmoid(-10.0)) / 4, rtol=1e-6)


def test_the_losses_stay_finite_for_saturated_logits():
    big = jnp.array([-200.0, 200.0])
    for loss in LOSSES:
        assert bool(jnp.isfinite(discriminator_loss(big, big, loss))) and bool(
            jnp.isfinite(generator_loss(big, loss))
        )
        grads = jax.grad(lambda r, loss=loss: discriminator_loss(r, big, loss) + generator_loss(r, loss))(big)
        assert bool(jnp.all(jnp.isfinite(grads)))


@pytest.mark.parametrize("loss", LOSSES)
def test_loss_gradients_match_finite_differences(loss):
    r, f = jnp.array(REAL), jnp.array(FAKE)
    jax.test_util.check_grads(lambda r, f: discriminator_loss(r, f, loss), (r, f), order=1, modes=["rev"])
    jax.test_util.check_grads(lambda f: generator_loss(f, loss), (f,), order=1, modes=["rev"])


# --------------------------------------------------------------------------------- penalties


def _smooth_critic(key, features=3):
    """A tanh MLP critic (smooth, so finite differences are accurate) with gradient norms ~2."""
    model = fdl.nn.MLP((16, 1), activation=jnp.tanh)
    params, _, _ = model.init(key, (features,))
    params = jax.tree.map(lambda w: 2.0 * w, params)
    return lambda x: model.apply(params, {}, x)[0]  # (B, 1)


def _finite_difference_norms(critic, x, h=1e-2):
    """Each example's gradient norm by central differences, one input coordinate at a time."""
    rows = []
    for j in range(x.shape[1]):
        step = jnp.zeros_like(x).at[:, j].set(h)
        rows.append((critic(x + step)[:, 0] - critic(x - step)[:, 0]) / (2 * h))  # (B,)
    return np.linalg.norm(np.stack([np.asarray(r, np.float64) for r in rows], axis=1), axis=1)


def test_gradient_penalty_matches_a_finite_difference_norm():
    critic = _smooth_critic(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (6, 3))
    norms = _finite_difference_norms(critic, x)
    # real == fake: every interpolate is x itself, whatever the epsilons
    expected = np.mean((norms - 1) ** 2)
    assert expected > 0.3, norms  # norms far from 1: the comparison is not vacuous
    assert float(gradient_penalty(critic, x, x, jax.random.key(2))) == pytest.approx(expected, rel=2e-3)


def test_gradient_penalty_at_the_interpolates():
    critic = _smooth_critic(jax.random.key(3))
    real = jax.random.normal(jax.random.key(4), (5, 3))
    fake = jax.random.normal(jax.random.key(5), (5, 3)) + 2.0
    key = jax.random.key(6)
    norms = _finite_difference_norms(critic, interpolate(key, real, fake))
    assert float(gradient_penalty(critic, real, fake, key)) == pytest.approx(
        np.mean((norms - 1) ** 2), rel=2e-3
    )


def test_interpolates_lie_on_the_segments_one_epsilon_per_example():
    real = jax.random.normal(jax.random.key(0), (64, 2, 3))
    fake = jax.random.normal(jax.random.key(1), (64, 2, 3))
    x_hat = interpolate(jax.random.key(2), real, fake)
    eps = np.asarray((x_hat - fake) / (real - fake)).reshape(64, -1)  # each row: one epsilon
    np.testing.assert_allclose(eps, eps[:, :1] * np.ones((1, 6)), atol=1e-4)
    assert eps.min() >= 0 and eps.max() <= 1 and np.std(eps[:, 0]) > 0.2  # spread over [0, 1]


def test_gradient_penalty_is_differentiable_where_the_gradient_is_zero():
    # a constant critic: the gradient norm is 0, the penalty (0 - 1)^2 = 1, and its gradient
    # with respect to the critic's parameters stays finite
    x = jnp.ones((3, 2))
    value, grad = jax.value_and_grad(
        lambda c: gradient_penalty(lambda x: c * jnp.zeros((x.shape[0],)), x, x, jax.random.key(0))
    )(1.0)
    assert float(value) == 1.0 and bool(jnp.isfinite(grad))


def test_r1_penalty_on_hand_values_and_finite_differences():
    # d(x) = a . x^2 per example: gradient 2 a x
    a = jnp.array([1.0, 3.0])
    x = jnp.array([[1.0, 1.0], [0.5, -2.0]])
    # example 1: (2, 6) -> 40; example 2: (1, -12) -> 145; mean 92.5
    assert float(r1_penalty(lambda x: jnp.sum(a[None, :] * x**2, axis=1), x)) == 92.5
    critic = _smooth_critic(jax.random.key(7))
    x = jax.random.normal(jax.random.key(8), (6, 3))
    expected = np.mean(_finite_difference_norms(critic, x) ** 2)
    assert float(r1_penalty(critic, x)) == pytest.approx(expected, rel=2e-3)


# ----------------------------------------------------------------------------------- metrics


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(250, 6)) @ rng.normal(size=(6, 6)) + 0.5
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * root)
    got = frechet_distance(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    assert float(got) == pytest.approx(expected, rel=1e-3)
    assert expected > 1.0  # not a vacuous comparison near zero


def test_gaussian_frechet_distance_of_diagonal_covariances():
    # closed form for commuting covariances: |m_a - m_b|^2 + sum (sqrt(a_k) - sqrt(b_k))^2
    var_a, var_b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mean_b = np.array([1.0, 0.0, -2.0])
    expected = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0.0
    got = gaussian_frechet_distance(
        jnp.zeros(3),
        jnp.diag(jnp.asarray(var_a, jnp.float32)),
        jnp.asarray(mean_b, jnp.float32),
        jnp.diag(jnp.asarray(var_b, jnp.float32)),
    )
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_it_is_symmetric():
    a = jax.random.normal(jax.random.key(0), (100, 4))
    b = jax.random.normal(jax.random.key(1), (80, 4)) * 2.0
    assert abs(float(frechet_distance(a, a))) < 1e-4
    assert float(frechet_distance(a, b)) == pytest.approx(float(frechet_distance(b, a)), rel=1e-4)


def test_mode_coverage_counts_modes_and_high_quality_samples():
    modes = jnp.array([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]])
    near = [[2.0, 0.05]] * 5 + [[0.0, 1.95]] * 4 + [[-2.0, 0.0]] * 1  # 3 sigma = 0.06 at std 0.02
    far = [[1.0, 1.0]] * 10
    covered, quality = mode_coverage(jnp.array(near + far), modes, 0.02, min_fraction=0.1)
    # 10 high-quality of 20; modes 0 and 1 hold >= 2 samples (10% of 20), mode 2 only 1
    assert int(covered) == 2 and float(quality) == 0.5
    covered, _ = mode_coverage(jnp.array(near + far), modes, 0.02, min_fraction=0.05)
    assert int(covered) == 3


# ---------------------------------------------------------------------------------- the step

G_LR, D_LR, LATENT = 0.05, 0.1, 3


def _models():
    """Generator and discriminator with batch norm, so the step must thread layer state."""
    # no bias before batch norm: its gradient is zero up to round-off, which Adam would amplify
    generator = fdl.nn.Serial(
        fdl.nn.Dense(8, use_bias=False), fdl.nn.BatchNorm(), fdl.nn.Relu(), fdl.nn.Dense(2)
    )
    discriminator = fdl.nn.Serial(
        fdl.nn.Dense(8, use_bias=False), fdl.nn.BatchNorm(), fdl.nn.Tanh(), fdl.nn.Dense(1)
    )
    return generator, discriminator


def _reference_step(generator, discriminator, state, real, key, *, loss, n_critic, gp_weight, r1_weight):
    """The documented step written out by hand: optax's SGD with momentum, jax.grad, the key
    schedule. (SGD, not Adam: batch norm makes some gradients zero up to round-off, and Adam's
    normalization would blow that round-off up to a full step.)"""
    g_opt, d_opt = optax.sgd(G_LR, momentum=0.9), optax.sgd(D_LR, momentum=0.9)
    gp, gs, gos = state.generator.params, state.generator.layer_state, state.generator.opt_state
    dp, ds, dos = state.discriminator.params, state.discriminator.layer_state, state.discriminator.opt_state
    keys = jax.random.split(key, n_critic + 1)
    batch = real.shape[1]
    for k in range(n_critic):
        latent_key, gen_key, d_key = jax.random.split(keys[k], 3)
        z = jax.random.normal(latent_key, (batch, LATENT))
        fake, gs = generator.apply(gp, gs, z, key=gen_key, train=True)
        real_key, fake_key, mix_key, penalty_key = jax.random.split(d_key, 4)

        def objective(dp, ds=ds, fake=fake, x=real[k], keys=(real_key, fake_key, mix_key, penalty_key)):
            r, new = discriminator.apply(dp, ds, x, key=keys[0], train=True)
            f, new = discriminator.apply(dp, new, fake, key=keys[1], train=True)
            critic = lambda v: discriminator.apply(dp, ds, v, key=keys[3], train=True)[0]
            total = discriminator_loss(r, f, loss)
            total += gp_weight * gradient_penalty(critic, x, fake, keys[2])
            total += 0.5 * r1_weight * r1_penalty(critic, x)
            return total, new

        grads, ds = jax.grad(objective, has_aux=True)(dp)
        updates, dos = d_opt.update(grads, dos, dp)
        dp = optax.apply_updates(dp, updates)
    latent_key, step_key = jax.random.split(keys[n_critic])
    z = jax.random.normal(latent_key, (batch, LATENT))
    gen_key, disc_key = jax.random.split(step_key)

    def g_objective(gp):
        fake, new = generator.apply(gp, gs, z, key=gen_key, train=True)
        logits, _ = discriminator.apply(dp, ds, fake, key=disc_key, train=True)
        return generator_loss(logits, loss), new

    grads, gs = jax.grad(g_objective, has_aux=True)(gp)
    updates, gos = g_opt.update(grads, gos, gp)
    gp = optax.apply_updates(gp, updates)
    return (gp, gs, gos), (dp, ds, dos)


@pytest.mark.parametrize(
    ("loss", "n_critic", "gp_weight", "r1_weight"),
    [("wasserstein", 3, 10.0, 0.0), ("non_saturating", 2, 0.0, 4.0), ("hinge", 1, 0.0, 0.0)],
)
def test_one_call_is_n_critic_steps_then_a_generator_step(loss, n_critic, gp_weight, r1_weight):
    generator, discriminator = _models()
    gan = make_gan_step(
        generator,
        discriminator,
        fdl.optim.sgd(G_LR, momentum=0.9),
        fdl.optim.sgd(D_LR, momentum=0.9),
        latent_dim=LATENT,
        loss=loss,
        n_critic=n_critic,
        gp_weight=gp_weight,
        r1_weight=r1_weight,
        donate=False,
    )
    state = gan.init(jax.random.key(0), (2,))
    real = jax.random.normal(jax.random.key(1), (n_critic, 16, 2)) + 3.0
    key = jax.random.key(2)
    # jitted like the step it checks: eager, the reference itself moves by 2e-5 (relative) on
    # the Wasserstein critic with its gradient penalty, as XLA fuses and orders the sums its own way
    reference = functools.partial(
        _reference_step,
        generator,
        discriminator,
        loss=loss,
        n_critic=n_critic,
        gp_weight=gp_weight,
        r1_weight=r1_weight,
    )
    (gp, gs, gos), (dp, ds, dos) = jax.jit(reference)(state, real, key)
    new, metrics = gan.step(state, real, key)
    chex.assert_trees_all_close(
        (new.generator.params, new.generator.layer_state), (gp, gs), rtol=2e-5, atol=1e-6
    )
    chex.assert_trees_all_close(
        (new.discriminator.params, new.discriminator.layer_state), (dp, ds), rtol=2e-5, atol=1e-6
    )
    # the momentum traces, leaf by leaf
    for ours, theirs in [(new.generator.opt_state, gos), (new.discriminator.opt_state, dos)]:
        ours, theirs = jax.tree.leaves(ours), jax.tree.leaves(theirs)
        assert len(ours) == len(theirs)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert int(new.discriminator.step) == n_critic and int(new.generator.step) == 1
    # the weights moved (the biases next to batch norm get no gradient), and batch norm's
    # statistics of both models changed
    for before, after in [(state.generator, new.generator), (state.discriminator, new.discriminator)]:
        for layer in ("dense_0", "dense_1"):
            assert not np.allclose(before.params[layer]["w"], after.params[layer]["w"])
        for leaf_before, leaf_after in zip(
            jax.tree.leaves(before.layer_state), jax.tree.leaves(after.layer_state), strict=True
        ):
            assert not np.allclose(leaf_before, leaf_after)
    expected = {"d_loss", "g_loss", "real_logit", "fake_logit"}
    expected |= {"gradient_penalty"} if gp_weight else set()
    expected |= {"r1"} if r1_weight else set()
    assert set(metrics) == expected


def test_the_step_donates_the_state_and_says_so_when_it_is_reused():
    generator, discriminator = _models()
    gan = make_gan_step(
        generator, discriminator, fdl.optim.adam(1e-3), fdl.optim.sgd(1e-2), latent_dim=LATENT
    )
    state = gan.init(jax.random.key(0), (2,))
    real = jnp.ones((1, 8, 2))
    new, _ = gan.step(state, real, jax.random.key(1))
    leaves = jax.tree.leaves(state)
    if all(leaf.is_deleted() for leaf in leaves):  # XLA's CPU backend honours donation
        with pytest.raises(
            RuntimeError, match="donated to an earlier call: pass the state that the last call returned"
        ):
            gan.step(state, real, jax.random.key(2))
    else:
        pytest.fail(
            f"the state was not donated: {sum(leaf.is_deleted() for leaf in leaves)} of {len(leaves)} deleted"
        )
    new, _ = gan.step(new, real, jax.random.key(3))  # the returned state is usable
    kept = make_gan_step(
        generator, discriminator, fdl.optim.adam(1e-3), fdl.optim.sgd(1e-2), latent_dim=LATENT, donate=False
    )
    state = kept.init(jax.random.key(0), (2,))
    kept.step(state, real, jax.random.key(1))
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(state))


def test_the_step_compiles_once():
    traces = []

    def counted(x):
        traces.append(1)
        return x

    generator = fdl.nn.Serial(fdl.nn.Dense(2), fdl.nn.Elementwise(counted))
    gan = make_gan_step(generator, fdl.nn.MLP((4, 1)), fdl.optim.sgd(0.1), fdl.optim.sgd(0.1), latent_dim=2)
    state = gan.init(jax.random.key(0), (2,))
    state, _ = gan.step(state, jnp.ones((1, 4, 2)), jax.random.key(1))
    first = len(traces)
    state, _ = gan.step(state, jnp.zeros((1, 4, 2)), jax.random.key(2))
    assert first > 0 and len(traces) == first


@pytest.mark.slow  # a training run, end to end
def test_a_small_gan_learns_a_shifted_gaussian():
    # data N(3, 0.5^2) in 1-D; an affine generator z -> a z + b from N(0, 1) starts near
    # N(0, a^2); least-squares GAN training moves it to the data (measured: mean 3.02, std 0.43)
    gan = make_gan_step(
        fdl.nn.Dense(1),
        fdl.nn.MLP((32, 32, 1)),
        fdl.optim.adam(1e-2, b1=0.5, b2=0.9),
        fdl.optim.adam(1e-2, b1=0.5, b2=0.9),
        latent_dim=1,
        loss="least_squares",
    )
    state = gan.init(jax.random.key(0), (1,))
    key = jax.random.key(1)
    for _ in range(500):
        key, data_key, step_key = jax.random.split(key, 3)
        state, _ = gan.step(state, 3.0 + 0.5 * jax.random.normal(data_key, (1, 64, 1)), step_key)
    samples = gan.sample(state, jax.random.key(2), 4000)
    assert samples.shape == (4000, 1)
    assert abs(float(jnp.mean(samples)) - 3.0) < 0.15 and abs(float(jnp.std(samples)) - 0.5) < 0.15


@pytest.mark.slow  # the mixture example vmaps it too; heavy, run in CI
def test_the_pure_step_vmaps_over_seeds():
    generator, discriminator = _models()
    gan = make_gan_step(
        generator, discriminator, fdl.optim.sgd(0.1), fdl.optim.sgd(0.1), latent_dim=LATENT, donate=False
    )
    keys = jax.random.split(jax.random.key(0), 2)
    states = jax.vmap(lambda k: gan.init(k, (2,)))(keys)
    real = jax.random.normal(jax.random.key(1), (2, 1, 8, 2))
    batched, _ = jax.jit(jax.vmap(gan.step.pure))(states, real, keys)
    single, _ = gan.step(jax.tree.map(lambda a: a[1], states), real[1], keys[1])
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[1], batched), single, rtol=1e-5, atol=1e-6)
    assert isinstance(batched, GANState)


# -------------------------------------------------------------------------------- bad input


def _gan(**kwargs):
    settings = {"latent_dim": 2, **kwargs}
    return make_gan_step(
        fdl.nn.MLP((4, 2)), fdl.nn.MLP((4, 1)), fdl.optim.sgd(0.1), fdl.optim.sgd(0.1), **settings
    )


def test_mismatched_generator_and_discriminator_shapes_are_named():
    gan = make_gan_step(
        fdl.nn.MLP((4, 3)), fdl.nn.MLP((4, 1)), fdl.optim.sgd(0.1), fdl.optim.sgd(0.1), latent_dim=2
    )
    with pytest.raises(
        ValueError, match=r"generator's output shape \(3,\) .* is not the discriminator's input shape \(2,\)"
    ):
        gan.init(jax.random.key(0), (2,))
    # a state built by hand for other data: found when the step is traced
    state = _gan().init(jax.random.key(0), (2,))
    with pytest.raises(
        ValueError,
        match=r"generator's output shape \(2,\) .* is not the shape of the real examples in `real`, \(5,\)",
    ):
        _gan().step(state, jnp.ones((1, 4, 5)), jax.random.key(1))


def test_a_discriminator_with_more_than_one_logit_is_rejected():
    gan = make_gan_step(
        fdl.nn.MLP((4, 2)), fdl.nn.MLP((4, 10)), fdl.optim.sgd(0.1), fdl.optim.sgd(0.1), latent_dim=2
    )
    with pytest.raises(
        ValueError, match=r"one logit per example \(shape \(\) or \(1,\)\), got output shape \(10,\)"
    ):
        gan.init(jax.random.key(0), (2,))


def test_real_batches_must_match_n_critic():
    gan = _gan(n_critic=3)
    state = gan.init(jax.random.key(0), (2,))
    with pytest.raises(
        ValueError, match=r"shape \(n_critic, B, \*data_shape\) with n_critic=3, got shape \(8, 2\)"
    ):
        gan.step(state, jnp.ones((8, 2)), jax.random.key(1))
    with pytest.raises(ValueError, match=r"n_critic=3, got shape \(1, 8, 2\)"):
        gan.step(state, jnp.ones((1, 8, 2)), jax.random.key(1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_critic": 0}, "`n_critic` must be a positive integer, got 0"),
        ({"n_critic": 2.0}, "`n_critic` must be a positive integer, got 2.0"),
        ({"gp_weight": -1.0}, "`gp_weight` must be a non-negative finite number, got -1.0"),
        ({"r1_weight": float("nan")}, "`r1_weight` must be a non-negative finite number, got nan"),
        ({"loss": "wgan"}, "`loss` must be one of 'minimax', .*'wasserstein', got 'wgan'"),
        ({"latent_dim": 0}, "`latent_dim` must be a positive integer, got 0"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _gan(**kwargs)


def test_bad_models_and_optimizers_are_named():
    with pytest.raises(TypeError, match=r"`generator` must be a fdl\.nn\.Layer"):
        make_gan_step(lambda z: z, fdl.nn.MLP((4, 1)), fdl.optim.sgd(0.1), fdl.optim.sgd(0.1), latent_dim=2)
    with pytest.raises(TypeError, match=r"`discriminator` must be a fdl\.nn\.Layer"):
        make_gan_step(fdl.nn.MLP((4, 2)), None, fdl.optim.sgd(0.1), fdl.optim.sgd(0.1), latent_dim=2)
    with pytest.raises(TypeError, match=r"`d_optimizer` must have optax's \(init, update\) interface"):
        make_gan_step(fdl.nn.MLP((4, 2)), fdl.nn.MLP((4, 1)), fdl.optim.sgd(0.1), 0.1, latent_dim=2)
    with pytest.raises(TypeError, match=r"`g_optimizer` must have optax's \(init, update\) interface"):
        make_gan_step(fdl.nn.MLP((4, 2)), fdl.nn.MLP((4, 1)), "adam", fdl.optim.sgd(0.1), latent_dim=2)


def test_bad_arguments_to_the_functions_are_named():
    with pytest.raises(ValueError, match=r"`loss` must be one of .* got 'lsgan'"):
        discriminator_loss(jnp.zeros(2), jnp.zeros(2), "lsgan")
    with pytest.raises(
        ValueError, match=r"`fake_logits` must be float logits of shape \(B,\) or \(B, 1\).* shape \(2, 3\)"
    ):
        generator_loss(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"`real_logits` must be float logits .* got dtype int32"):
        discriminator_loss(jnp.zeros(2, jnp.int32), jnp.zeros(2))
    with pytest.raises(
        ValueError, match=r"`real` and `fake` must be batches .* same shape, got \(2, 3\) and \(3, 3\)"
    ):
        interpolate(jax.random.key(0), jnp.zeros((2, 3)), jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="`key` must be a JAX PRNG key"):
        interpolate(0, jnp.zeros((2, 3)), jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"same F and at least 2 rows, got shapes \(5, 3\) and \(5, 4\)"):
        frechet_distance(jnp.zeros((5, 3)), jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"means must be \(F,\) and the covariances \(F, F\)"):
        gaussian_frechet_distance(jnp.zeros(2), jnp.eye(3), jnp.zeros(2), jnp.eye(2))
    with pytest.raises(ValueError, match="`std` must be a positive finite number, got 0"):
        mode_coverage(jnp.zeros((4, 2)), jnp.zeros((2, 2)), 0.0)
    with pytest.raises(ValueError, match=r"same D, got shapes \(4, 3\) and \(2, 2\)"):
        mode_coverage(jnp.zeros((4, 3)), jnp.zeros((2, 2)), 0.1)
    with pytest.raises(ValueError, match="`num` must be a positive integer, got 0"):
        _gan().sample(_gan().init(jax.random.key(0), (2,)), jax.random.key(1), 0)
    # a critic that averages over the batch, or returns two numbers per example
    x = jnp.zeros((4, 2))
    with pytest.raises(
        ValueError,
        match=r"`critic_fn` must return one logit per example, shape \(4,\) or \(4, 1\) for a batch of shape \(4, 2\), got \(\)",
    ):
        gradient_penalty(lambda v: jnp.mean(v @ jnp.array([3.0, 4.0])), x, x + 1, jax.random.key(0))
    with pytest.raises(ValueError, match=r"`critic_fn` must return one logit per example.* got \(4, 2\)"):
        r1_penalty(lambda v: v, x)
