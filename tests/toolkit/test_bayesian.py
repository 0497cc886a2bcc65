"""fdl.bayesian: the entropy decomposition, MC dropout, and the Bayes-by-backprop layer and KL.

References: NumPy float64 (entropies, the closed-form KL by hand), a Monte-Carlo estimate of the
KL, a Python loop of passes (for the vmapped passes), and on digits the behaviour the method is
for: more predictive entropy on inputs unlike the training set.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fdl
from fdl import bayesian


def _np_entropy(p):
    p = np.asarray(p, np.float64)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


# ------------------------------------------------------------------ the entropy decomposition


def test_uncertainty_hand_computed():
    # Two passes over one example: (1, 0) and (1/2, 1/2). Mean (3/4, 1/4).
    u = bayesian.uncertainty(jnp.array([[1.0, 0.0], [0.5, 0.5]]))
    predictive = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    expected = 0.5 * (0.0 + np.log(2.0))
    np.testing.assert_allclose(u.probs, [0.75, 0.25])
    np.testing.assert_allclose(u.predictive_entropy, predictive, rtol=1e-6)
    np.testing.assert_allclose(u.expected_entropy, expected, rtol=1e-6)
    np.testing.assert_allclose(u.mutual_information, predictive - expected, rtol=1e-5)


def test_uncertainty_matches_numpy_float64():
    draws = np.random.default_rng(0).dirichlet(np.full(5, 0.3), (7, 4, 3))  # (T=7, 4, 3, C=5)
    probs = jnp.asarray(draws, jnp.float32)
    u = bayesian.uncertainty(probs)
    p = np.asarray(probs, np.float64)
    mean = p.mean(0)
    np.testing.assert_allclose(u.probs, mean, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(u.predictive_entropy, _np_entropy(mean), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(u.expected_entropy, _np_entropy(p).mean(0), rtol=1e-5, atol=1e-6)
    mi = _np_entropy(mean) - _np_entropy(p).mean(0)
    np.testing.assert_allclose(u.mutual_information, mi, atol=2e-6)
    assert (np.asarray(u.mutual_information) >= 0).all()


def test_agreeing_passes_have_no_mutual_information():
    p = jnp.tile(jnp.array([[0.2, 0.3, 0.5]]), (6, 1))  # (T=6, C=3), all equal
    u = bayesian.uncertainty(p)
    assert float(u.mutual_information) == pytest.approx(0.0, abs=1e-6)
    assert float(u.predictive_entropy) == pytest.approx(float(_np_entropy([0.2, 0.3, 0.5])), rel=1e-6)


def test_uncertainty_needs_a_sample_axis():
    with pytest.raises(ValueError, match=r"`probs` must have shape \(T, \.\.\., C\).*got shape \(3,\)"):
        bayesian.uncertainty(jnp.array([0.2, 0.3, 0.5]))


# ------------------------------------------------------------------ MC dropout passes


def _dropout_model():
    model = fdl.nn.Serial(fdl.nn.Dense(16), fdl.nn.Relu(), fdl.nn.Dropout(0.5), fdl.nn.Dense(4))
    params, state, _ = model.init(jax.random.key(0), (5,))
    return model, params, state


def test_passes_equal_a_python_loop_of_apply(key):
    model, params, state = _dropout_model()
    x = jax.random.normal(jax.random.key(1), (3, 5))
    probs = bayesian.sample_probabilities(model, params, state, x, key=key, num_samples=3)
    assert probs.shape == (3, 3, 4)
    for t, k in enumerate(jax.random.split(key, 3)):
        logits, _ = model.apply(params, state, x, key=k, train=True)
        np.testing.assert_allclose(probs[t], jax.nn.softmax(logits), rtol=1e-5, atol=1e-7)
    assert not np.allclose(probs[0], probs[1])  # different masks per pass


def test_mc_dropout_predict_is_jittable_and_consistent(key):
    model, params, state = _dropout_model()
    x = jax.random.normal(jax.random.key(1), (3, 5))
    predict = jax.jit(bayesian.mc_dropout_predict, static_argnames=("model", "num_samples"))
    u = predict(model, params, state, x, key=key, num_samples=16)
    eager = bayesian.mc_dropout_predict(model, params, state, x, key=key, num_samples=16)
    for a, b in zip(u, eager, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert u.probs.shape == (3, 4) and u.mutual_information.shape == (3,)
    assert (np.asarray(u.mutual_information) > 0).all()


def test_deterministic_model_has_no_epistemic_uncertainty(key):
    model, params, state = _dropout_model()
    x = jax.random.normal(jax.random.key(1), (3, 5))
    u = bayesian.mc_dropout_predict(model, params, state, x, key=key, num_samples=4, train=False)
    np.testing.assert_allclose(u.mutual_information, 0.0, atol=1e-6)


def test_pass_argument_errors(key):
    model, params, state = _dropout_model()
    x = jnp.ones((2, 5))
    with pytest.raises(TypeError, match=r"`model` must be a fdl.nn.Layer"):
        bayesian.sample_probabilities(model.apply, params, state, x, key=key, num_samples=2)
    with pytest.raises(ValueError, match=r"`num_samples` must be a positive integer, got 0"):
        bayesian.mc_dropout_predict(model, params, state, x, key=key, num_samples=0)
    with pytest.raises(ValueError, match=r"`key` must be a JAX PRNG key"):
        bayesian.mc_dropout_predict(model, params, state, x, key=0, num_samples=2)


# ------------------------------------------------------------------ BayesDense


def test_bayes_dense_samples_by_reparameterization(key):
    layer = bayesian.BayesDense(3, init_sigma=0.5)
    params, state, shape = layer.init(jax.random.key(0), (4,))
    assert shape == (3,)
    assert {k: v.shape for k, v in params.items()} == {
        "w_mu": (4, 3),
        "w_rho": (4, 3),
        "b_mu": (3,),
        "b_rho": (3,),
    }
    np.testing.assert_allclose(jax.nn.softplus(params["w_rho"]), 0.5, rtol=1e-6)
    x = jax.random.normal(jax.random.key(1), (2, 4))
    y, _ = layer.apply(params, state, x, key=key, train=True)
    w_key, b_key = jax.random.split(key)
    w = params["w_mu"] + 0.5 * jax.random.normal(w_key, (4, 3))
    b = params["b_mu"] + 0.5 * jax.random.normal(b_key, (3,))
    np.testing.assert_allclose(y, x @ w + b[None, :], rtol=1e-5, atol=1e-6)
    # No key in evaluation: the mean weights.
    mean, _ = layer.apply(params, state, x)
    np.testing.assert_allclose(mean, x @ params["w_mu"] + params["b_mu"][None, :], rtol=1e-6)
    # vmap over examples with one key shares the weight sample: equals the batched call.
    one = jax.vmap(lambda xi: layer.apply(params, state, xi, key=key, train=True)[0])(x)
    np.testing.assert_allclose(one, y, rtol=1e-6)


def test_bayes_dense_gradients_reach_mu_and_rho(key):
    layer = bayesian.BayesDense(2)
    params, state, _ = layer.init(jax.random.key(0), (3,))
    grads = jax.grad(lambda p: jnp.sum(layer.apply(p, state, jnp.ones((4, 3)), key=key, train=True)[0] ** 2))(
        params
    )
    for name in ("w_mu", "w_rho", "b_mu", "b_rho"):
        assert np.isfinite(np.asarray(grads[name])).all() and np.abs(np.asarray(grads[name])).sum() > 0


def test_bayes_dense_composes_in_serial(key):
    model = fdl.nn.Serial(bayesian.BayesDense(8), fdl.nn.Relu(), bayesian.BayesDense(2, name="head"))
    params, state, shape = model.init(jax.random.key(0), (5,))
    assert sorted(params) == ["bayes_dense_0", "head"] and shape == (2,)
    y1, _ = model.apply(params, state, jnp.ones((3, 5)), key=key, train=True)
    y2, _ = model.apply(params, state, jnp.ones((3, 5)), key=jax.random.fold_in(key, 1), train=True)
    assert y1.shape == (3, 2) and not np.allclose(y1, y2)
    assert "BayesDense" in repr(model)


def test_bayes_dense_errors():
    with pytest.raises(ValueError, match=r"`features` must be a positive integer, got 0"):
        bayesian.BayesDense(0)
    with pytest.raises(ValueError, match=r"`init_sigma` must be a positive number, got 0.0"):
        bayesian.BayesDense(2, init_sigma=0.0)
    layer = bayesian.BayesDense(2)
    params, state, _ = layer.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"BayesDense samples its weights in training and needs a PRNG key"):
        layer.apply(params, state, jnp.ones(3), train=True)
    with pytest.raises(
        ValueError, match=r"BayesDense expects inputs of shape \(\.\.\., 3\), got shape \(4,\)"
    ):
        layer.apply(params, state, jnp.ones(4))
    with pytest.raises(ValueError, match=r"BayesDense needs inputs with at least one axis"):
        layer.init(jax.random.key(0), ())


# ------------------------------------------------------------------ the KL term


def _random_bayes_params(key, dtype=jnp.float32):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return {
        "w_mu": jax.random.normal(k1, (3, 2), dtype),
        "w_rho": jax.random.uniform(k2, (3, 2), dtype, -3.0, 1.0),
        "b_mu": jax.random.normal(k3, (2,), dtype),
        "b_rho": jax.random.uniform(k4, (2,), dtype, -3.0, 1.0),
    }


def test_kl_matches_the_closed_form_by_hand_in_float64(key):
    with jax.enable_x64(True):
        params = _random_bayes_params(key, jnp.float64)
        prior = 0.7
        total = 0.0
        for part in ("w", "b"):
            mu = np.asarray(params[f"{part}_mu"], np.float64)
            sigma = np.log1p(np.exp(np.asarray(params[f"{part}_rho"], np.float64)))
            total += np.sum(np.log(prior / sigma) + (sigma**2 + mu**2) / (2 * prior**2) - 0.5)
        kl = bayesian.bayes_dense_kl(params, prior)
        assert kl.dtype == jnp.float64
        np.testing.assert_allclose(float(kl), total, rtol=1e-12)


def test_kl_matches_a_monte_carlo_estimate(key):
    params = _random_bayes_params(jax.random.key(3))
    prior = 0.8
    mu = jnp.concatenate([params["w_mu"].ravel(), params["b_mu"]])  # (8,)
    sigma = jax.nn.softplus(jnp.concatenate([params["w_rho"].ravel(), params["b_rho"]]))
    n = 40_000
    w = mu[None, :] + sigma[None, :] * jax.random.normal(key, (n, 8))  # (n, 8)
    # log q(w) - log p(w) per sample (the 2 pi terms cancel).
    log_q = jnp.sum(-jnp.log(sigma)[None, :] - 0.5 * ((w - mu[None, :]) / sigma[None, :]) ** 2, axis=1)
    log_p = jnp.sum(-jnp.log(prior) - 0.5 * (w / prior) ** 2, axis=1)
    samples = np.asarray(log_q - log_p, np.float64)
    estimate, se = samples.mean(), samples.std(ddof=1) / np.sqrt(n)
    kl = float(bayesian.bayes_dense_kl(params, prior))
    assert abs(kl - estimate) <= 4 * se, (kl, estimate, se)  # 4 standard errors


def test_kl_is_zero_at_the_prior_and_sums_over_a_model():
    rho = float(np.log(np.expm1(0.5)))
    params = {"w_mu": jnp.zeros((2, 3)), "w_rho": jnp.full((2, 3), rho)}
    assert float(bayesian.bayes_dense_kl(params, 0.5)) == pytest.approx(0.0, abs=1e-5)
    model = fdl.nn.Serial(bayesian.BayesDense(4), fdl.nn.Dense(3), bayesian.BayesDense(2))
    tree, _, _ = model.init(jax.random.key(0), (5,))
    expected = bayesian.bayes_dense_kl(tree["bayes_dense_0"], 2.0) + bayesian.bayes_dense_kl(
        tree["bayes_dense_1"], 2.0
    )
    np.testing.assert_allclose(bayesian.bayes_kl(tree, 2.0), expected, rtol=1e-6)
    assert float(bayesian.bayes_kl({"dense": {"w": jnp.ones(2)}})) == 0.0
    # the layers' own dtype is kept: float64 layers are not summed in float32
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda leaf: leaf.astype(jnp.float64), tree)
        total = bayesian.bayes_kl([wide], 2.0)  # found inside a list too
        assert total.dtype == jnp.float64
        exact = sum(
            float(bayesian.bayes_dense_kl(wide[name], 2.0)) for name in ("bayes_dense_0", "bayes_dense_1")
        )
        assert float(total) == pytest.approx(exact, rel=1e-14)


def test_kl_gradient_is_finite_for_tiny_sigmas():
    params = {"w_mu": jnp.ones((2, 2)), "w_rho": jnp.array([[-30.0, -100.0], [0.0, 3.0]])}
    value, grads = jax.value_and_grad(bayesian.bayes_dense_kl)(params, 1.0)
    assert np.isfinite(float(value))
    assert all(np.isfinite(np.asarray(g)).all() for g in grads.values())
    # d KL / d rho = (sigma^2 / s_p^2 - 1) * sigmoid(rho) / sigma -> -1 as rho -> -inf.
    np.testing.assert_allclose(grads["w_rho"][0], [-1.0, -1.0], atol=1e-6)


def test_kl_errors():
    with pytest.raises(
        ValueError, match=r"`params` must be the parameters of a BayesDense layer.*\['b', 'w'\]"
    ):
        bayesian.bayes_dense_kl({"w": jnp.ones(2), "b": jnp.ones(2)})
    params = {"w_mu": jnp.zeros((2, 3)), "w_rho": jnp.zeros((2, 3))}
    with pytest.raises(ValueError, match=r"`prior_sigma` must be > 0, got 0.0"):
        bayesian.bayes_dense_kl(params, 0.0)
    with pytest.raises(ValueError, match=r"`prior_sigma` must be > 0, got -1"):
        bayesian.bayes_kl({"a": params}, -1)


def test_elbo_loss_is_the_cross_entropy_plus_the_weighted_kl():
    model = fdl.nn.Serial(bayesian.BayesDense(4), fdl.nn.Relu(), bayesian.BayesDense(3))
    params, state, _ = model.init(jax.random.key(0), (2,))
    x = jax.random.normal(jax.random.key(1), (6, 2))
    y = jnp.array([0, 1, 2, 2, 1, 0])
    key = jax.random.key(2)
    loss, (new_state, metrics) = bayesian.elbo_loss(model, 0.25, prior_sigma=0.5)(params, state, (x, y), key)
    logits, _ = model.apply(params, state, x, key=key, train=True)  # the same weight sample
    ce = fdl.losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="mean")
    kl = bayesian.bayes_kl(params, 0.5)
    np.testing.assert_allclose(loss, ce + 0.25 * kl, rtol=1e-6)
    np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-6)
    assert new_state == state and set(metrics) == {"accuracy", "kl"}
    # kl_weight 0 is the classification loss of fit
    plain, _ = fdl.fit.classification_loss(model)(params, state, (x, y), key)
    assert float(bayesian.elbo_loss(model, 0.0)(params, state, (x, y), key)[0]) == float(plain)


def test_elbo_loss_bad_input():
    model = bayesian.BayesDense(2)
    with pytest.raises(ValueError, match=r"`kl_weight` must be .*got -0.1"):
        bayesian.elbo_loss(model, -0.1)
    with pytest.raises(ValueError, match=r"`kl_weight` must be .*got inf"):
        bayesian.elbo_loss(model, float("inf"))
    with pytest.raises(ValueError, match=r"`prior_sigma` must be > 0, got 0.0"):
        bayesian.elbo_loss(model, 0.1, prior_sigma=0.0)


# ------------------------------------------------------------------ on digits


def _train(model, x, y, *, steps, learning_rate, key, kl_weight=0.0, prior_sigma=1.0):
    """Full-batch Adam on the negative ELBO (the cross-entropy alone at kl_weight 0), by fit."""
    init_key, key = jax.random.split(key)
    params, state, _ = model.init(init_key, x.shape[1:])
    loss_fn = bayesian.elbo_loss(model, kl_weight, prior_sigma)
    optimizer = fdl.optim.adam(learning_rate)
    logging = fdl.fit.Logging(progress=False)
    result = fdl.fit.fit(
        loss_fn,
        optimizer,
        params,
        (x, y),
        layer_state=state,
        key=key,
        batch_size=len(x),
        steps=steps,
        logging=logging,
    )
    return result.params, result.layer_state


@pytest.fixture(scope="module")
def digits():
    data = fdl.data.load_digits(seed=0)
    rng = np.random.default_rng(0)
    noise = rng.uniform(size=data.x_test.shape).astype(np.float32)  # pure noise, same pixel range
    images = data.x_test.reshape(-1, 8, 8)
    rotated = {
        f"rotated_{90 * turns}": np.ascontiguousarray(np.rot90(images, turns, axes=(1, 2)).reshape(-1, 64))
        for turns in (1, 2)
    }
    return data, {"test": data.x_test, "noise": noise, **rotated}


def _mean_entropies(model, params, state, groups, key, train):
    out = {}
    for name, x in groups.items():
        u = bayesian.mc_dropout_predict(
            model, params, state, jnp.asarray(x), key=key, num_samples=32, train=train
        )
        out[name] = np.asarray(u.predictive_entropy)
    return out


@pytest.mark.slow
def test_mc_dropout_is_more_uncertain_on_noise_and_upside_down_digits(digits):
    """Noise and digits turned by 180 degrees: z = +14 to +15 over seeds 0-3 (measured). Digits
    turned by 90 degrees are *not* flagged (z = -6.7 to -1.5: the thinned networks agree on some
    digit), so they are not asserted here; Bayes by backprop flags them (the next test)."""
    data, groups = digits
    model = fdl.models.build_model("mlp", 10, hidden=(128, 128), dropout=0.2)
    params, state = _train(
        model,
        jnp.asarray(data.x_train),
        jnp.asarray(data.y_train),
        steps=400,
        learning_rate=3e-3,
        key=jax.random.key(0),
    )
    entropy = _mean_entropies(model, params, state, groups, jax.random.key(1), train=True)
    accuracy = np.mean(
        np.argmax(
            bayesian.mc_dropout_predict(
                model, params, state, jnp.asarray(data.x_test), key=jax.random.key(2), num_samples=32
            ).probs,
            -1,
        )
        == data.y_test
    )
    assert accuracy >= 0.95
    # The difference of means, against 4 standard errors of that difference.
    test = entropy["test"]
    for name in ("noise", "rotated_180"):
        other = entropy[name]
        se = np.sqrt(test.var(ddof=1) / len(test) + other.var(ddof=1) / len(other))
        assert other.mean() - test.mean() > 4 * se, (name, other.mean(), test.mean(), se)


@pytest.mark.slow
def test_bayes_by_backprop_is_more_uncertain_off_the_training_distribution(digits):
    data, groups = digits
    n = len(data.y_train)
    model = fdl.nn.Serial(
        bayesian.BayesDense(64, init_sigma=1e-3), fdl.nn.Relu(), bayesian.BayesDense(10, init_sigma=1e-3)
    )
    params, state = _train(
        model,
        jnp.asarray(data.x_train),
        jnp.asarray(data.y_train),
        steps=1000,
        learning_rate=1e-2,
        key=jax.random.key(0),
        kl_weight=1.0 / n,  # the ELBO per example: KL / N
    )
    entropy = _mean_entropies(model, params, state, groups, jax.random.key(1), train=False)
    mean_probs = bayesian.mc_dropout_predict(
        model, params, state, jnp.asarray(data.x_test), key=jax.random.key(2), num_samples=32, train=False
    ).probs
    assert np.mean(np.argmax(mean_probs, -1) == data.y_test) >= 0.9
    test = entropy["test"]
    for name in ("noise", "rotated_90", "rotated_180"):
        other = entropy[name]
        se = np.sqrt(test.var(ddof=1) / len(test) + other.var(ddof=1) / len(other))
        assert other.mean() - test.mean() > 4 * se, (name, other.mean(), test.mean(), se)
