"""Attacks, robust accuracy and adversarial training (fdl.adversarial) against their definitions."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fdl
from fdl import adversarial


def _cross_entropy(logits_fn, x, labels):
    """Per-example cross-entropy, written with optax (an independent reference)."""
    return optax.losses.softmax_cross_entropy_with_integer_labels(logits_fn(x), labels)


def _random_mlp(key, features=6, classes=4):
    model = fdl.nn.MLP((16, classes))
    params, _, _ = model.init(key, (features,))
    return lambda x: model.apply(params, {}, x)[0]


@pytest.fixture(scope="module")
def trained():
    """An MLP trained on the digits (pixels in [0, 1]), and 200 test images."""
    data = fdl.data.load_digits(seed=0)
    model = fdl.nn.MLP((64, 10))
    params, state, _ = model.init(jax.random.key(0), (64,))
    result = fdl.fit.fit(
        fdl.fit.classification_loss(model),
        fdl.optim.adam(3e-3),
        params,
        (data.x_train, data.y_train),
        key=jax.random.key(1),
        batch_size=128,
        steps=300,
        logging=fdl.fit.Logging(progress=False),
    )
    logits_fn = jax.jit(lambda x: model.apply(result.params, state, x)[0])
    x, y = jnp.asarray(data.x_test[:200]), jnp.asarray(data.y_test[:200])
    assert float(jnp.mean(jnp.argmax(logits_fn(x), -1) == y)) > 0.9
    return logits_fn, x, y


# ------------------------------------------------------------------------------- definitions


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_is_epsilon_times_the_sign_of_the_gradient(targeted):
    logits_fn = _random_mlp(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (5, 6), minval=0.2, maxval=0.8)  # no clipping at 0.05
    labels = jnp.array([0, 1, 2, 3, 0])
    grad = jax.grad(lambda x: jnp.sum(_cross_entropy(logits_fn, x, labels)))(x)
    step = (-0.05 if targeted else 0.05) * jnp.sign(grad)
    x_adv = adversarial.fgsm(logits_fn, x, labels, 0.05, targeted=targeted)
    np.testing.assert_array_equal(x_adv - x, (x + step) - x)
    assert bool(jnp.all(grad != 0))  # every entry moved: the comparison is not vacuous


def test_fgsm_clips_to_the_data_range():
    logits_fn = _random_mlp(jax.random.key(0))
    x = jnp.concatenate([jnp.zeros((2, 6)), jnp.ones((2, 6))])
    x_adv = adversarial.fgsm(logits_fn, x, jnp.array([0, 1, 2, 3]), 0.3)
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert float(jnp.max(jnp.abs(x_adv - x))) == pytest.approx(0.3, rel=1e-6)  # some entries moved inward


def test_project_onto_the_balls():
    delta = jnp.array([[3.0, -4.0], [0.1, 0.2]])
    np.testing.assert_allclose(adversarial.project(delta, 1.0, "l2"), [[0.6, -0.8], [0.1, 0.2]], rtol=1e-6)
    np.testing.assert_array_equal(
        adversarial.project(delta, 0.5, "linf"), np.float32([[0.5, -0.5], [0.1, 0.2]])
    )
    np.testing.assert_array_equal(adversarial.project(jnp.zeros((1, 3)), 1.0, "l2"), jnp.zeros((1, 3)))


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_stays_inside_the_ball_and_the_data_range(norm, targeted):
    logits_fn = _random_mlp(jax.random.key(0), features=12)
    x = jax.random.uniform(jax.random.key(1), (64, 12))  # some entries near 0 and 1
    labels = jax.random.randint(jax.random.key(2), (64,), 0, 4)
    epsilon = 0.3 if norm == "linf" else 1.0
    x_adv = adversarial.pgd(
        logits_fn, x, labels, epsilon, steps=10, norm=norm, key=jax.random.key(3), targeted=targeted
    )
    delta = np.asarray(x_adv - x, np.float64)
    size = np.max(np.abs(delta), axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= epsilon * (1 + 1e-6) and size.max() > 0.5 * epsilon
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_random_l2_start_is_uniform_in_the_ball():
    """The radius of a uniform point in the d-ball has P(r <= t eps) = t^d: its mean is d/(d+1)."""
    x = jnp.full((4000, 3), 0.5)
    logits_fn = _random_mlp(jax.random.key(0), features=3)
    # steps with a negligible step size: the random start alone
    x_adv = adversarial.pgd(
        logits_fn,
        x,
        jnp.zeros(4000, jnp.int32),
        0.2,
        steps=1,
        step_size=1e-12,
        norm="l2",
        key=jax.random.key(1),
    )
    r = np.linalg.norm(np.asarray(x_adv - x, np.float64), axis=1) / 0.2
    assert r.max() <= 1 + 1e-6
    assert abs(r.mean() - 3 / 4) < 4 * np.sqrt(3 / 80 / 4000)  # var of r: d/((d+2)(d+1)^2) = 3/80


# ------------------------------------------------------------------------------- on the digits


def test_pgd_finds_at_least_the_loss_fgsm_finds(trained):
    logits_fn, x, y = trained
    fgsm_x = adversarial.fgsm(logits_fn, x, y, 0.1)
    pgd_x = adversarial.pgd(logits_fn, x, y, 0.1, steps=20, key=jax.random.key(0))
    clean, one, many = (float(jnp.mean(_cross_entropy(logits_fn, z, y))) for z in (x, fgsm_x, pgd_x))
    assert clean < one <= many, (clean, one, many)


def test_more_pgd_steps_never_raise_robust_accuracy_beyond_noise(trained):
    """The gradient-masking check: a stronger attack (more steps) may only lower the accuracy,
    up to the noise of 200 examples (two standard errors of the difference)."""
    logits_fn, x, y = trained
    accuracy = {
        steps: float(
            adversarial.robust_accuracy(
                logits_fn,
                x,
                y,
                functools.partial(adversarial.pgd, epsilon=0.08, steps=steps, key=jax.random.key(1)),
            )
        )
        for steps in (1, 5, 20, 40)
    }
    clean = float(jnp.mean(jnp.argmax(logits_fn(x), -1) == y))
    assert accuracy[40] < clean - 0.2, (clean, accuracy)  # the attack works at all
    noise = 2 * np.sqrt(2 * 0.25 / len(y))
    ordered = [accuracy[s] for s in (1, 5, 20, 40)]
    assert all(later <= earlier + noise for earlier, later in itertools.pairwise(ordered)), accuracy


def test_targeted_pgd_moves_predictions_to_the_target(trained):
    logits_fn, x, y = trained
    target = (y + 1) % 10
    x_adv = adversarial.pgd(logits_fn, x, target, 0.3, steps=30, key=jax.random.key(0), targeted=True)
    hit = float(jnp.mean(jnp.argmax(logits_fn(x_adv), -1) == target))
    before = float(jnp.mean(jnp.argmax(logits_fn(x), -1) == target))
    assert before < 0.05 and hit > 0.8, (before, hit)


def test_adversarial_loss_is_the_clean_loss_at_the_pgd_examples():
    model = fdl.nn.MLP((8, 3))
    params, state, _ = model.init(jax.random.key(0), (5,))
    x = jax.random.uniform(jax.random.key(1), (6, 5))
    y = jnp.array([0, 1, 2, 0, 1, 2])
    key = jax.random.key(2)
    loss_fn = adversarial.adversarial_loss(model, 0.1, steps=3, norm="l2")
    loss, (_, metrics) = loss_fn(params, state, (x, y), key)
    attack_key, step_key = jax.random.split(key)
    x_adv = adversarial.pgd(
        lambda z: model.apply(params, state, z)[0], x, y, 0.1, steps=3, norm="l2", key=attack_key
    )
    expected, (_, expected_metrics) = fdl.fit.classification_loss(model)(params, state, (x_adv, y), step_key)
    assert float(loss) == float(expected) and float(metrics["accuracy"]) == float(
        expected_metrics["accuracy"]
    )
    # Danskin: the attack is held fixed, so the gradient is the clean loss's at x_adv
    grads = jax.grad(lambda p: loss_fn(p, state, (x, y), key)[0])(params)
    expected_grads = jax.grad(
        lambda p: fdl.fit.classification_loss(model)(p, state, (x_adv, y), step_key)[0]
    )(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), grads, expected_grads)


# ------------------------------------------------------------------------------- bad input


def test_bad_input_messages():
    logits_fn = _random_mlp(jax.random.key(0))
    x, y = jnp.full((2, 6), 0.5), jnp.array([0, 1])
    with pytest.raises(ValueError, match=r"`epsilon` must be .*got -0.1"):
        adversarial.fgsm(logits_fn, x, y, -0.1)
    with pytest.raises(ValueError, match=r"`epsilon` must be .*got -1"):
        adversarial.pgd(logits_fn, x, y, -1, steps=3)
    with pytest.raises(ValueError, match=r"`steps` must be a positive integer, got 0"):
        adversarial.pgd(logits_fn, x, y, 0.1, steps=0)
    with pytest.raises(
        ValueError, match=r"`step_size` must be a finite number > 0 or None \(2.5 epsilon / steps\), got 0.0"
    ):
        adversarial.pgd(logits_fn, x, y, 0.1, steps=3, step_size=0.0)
    with pytest.raises(ValueError, match=r"`norm` must be one of 'linf', 'l2', got 'l1'"):
        adversarial.pgd(logits_fn, x, y, 0.1, steps=3, norm="l1")
    with pytest.raises(
        ValueError,
        match=r"`labels` must be integers of shape \(B,\) = \(2,\) .*got dtype int32 and shape \(3,\)",
    ):
        adversarial.fgsm(logits_fn, x, jnp.array([0, 1, 2]), 0.1)
    with pytest.raises(
        ValueError, match=r"`data_range` must be None or a pair \(lo, hi\) .*got \(1.0, 0.0\)"
    ):
        adversarial.fgsm(logits_fn, x, y, 0.1, data_range=(1.0, 0.0))
    with pytest.raises(ValueError, match=r"`steps` must be a positive integer, got 0"):
        adversarial.adversarial_loss(fdl.nn.MLP((3,)), 0.1, steps=0)
    with pytest.raises(ValueError, match=r"`epsilon` must be .*got -0.5"):
        adversarial.adversarial_loss(fdl.nn.MLP((3,)), -0.5)
