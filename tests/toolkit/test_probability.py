"""fdl.probability against scipy.stats, sample moments (seeded, 4 standard errors) and worked
examples of Bayes' rule computed by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from fdl import probability as prob

N = 20_000  # draws per moment test
Z = 4.0  # tolerance in standard errors: a seeded draw fails a correct sampler with prob ~6e-5


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def _cov64():
    a = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [-0.3, 0.5, 0.4]])
    return a @ a.T  # symmetric positive definite, with correlations of both signs


# ------------------------------------------------------------------ Gaussian


def test_normal_sample_moments(key):
    mean, std = np.array([0.0, -2.0, 5.0]), np.array([1.0, 0.5, 3.0])
    x = np.asarray(prob.normal_sample(key, _f32(mean), _f32(std), num_samples=N), np.float64)
    assert x.shape == (N, 3)
    # sample mean: standard error std / sqrt(N)
    assert np.all(np.abs(x.mean(0) - mean) <= Z * std / math.sqrt(N))
    # sample variance of a Gaussian: standard error var * sqrt(2 / (N - 1))
    var = std**2
    assert np.all(np.abs(x.var(0, ddof=1) - var) <= Z * var * math.sqrt(2 / (N - 1)))


def test_normal_sample_is_reparameterized(keys):
    key = next(keys)
    mean, std = _f32([1.0, -1.0]), _f32([2.0, 0.5])
    x = prob.normal_sample(key, mean, std, num_samples=4)
    eps = prob.normal_sample(key, jnp.zeros(2), jnp.ones(2), num_samples=4)
    np.testing.assert_allclose(x, mean[None, :] + std[None, :] * eps, rtol=1e-6)
    # d sum(x) / d mean = num_samples; d sum(x) / d std = sum(eps)
    g_mean, g_std = jax.grad(lambda m, s: jnp.sum(prob.normal_sample(key, m, s, num_samples=4)), (0, 1))(
        mean, std
    )
    np.testing.assert_allclose(g_mean, [4.0, 4.0])
    np.testing.assert_allclose(g_std, jnp.sum(eps, axis=0), rtol=1e-6)
    assert prob.normal_sample(next(keys), mean, 2.0).shape == (1, 2)  # scalar std


def test_normal_log_prob_matches_scipy():
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=4), rng.uniform(0.5, 2.0, size=4)
    x = rng.normal(size=(6, 4)) * 2  # a leading sample axis
    expected = scipy.stats.norm.logpdf(x, loc=mean, scale=std)
    np.testing.assert_allclose(prob.normal_log_prob(_f32(x), _f32(mean), _f32(std)), expected, rtol=1e-5)
    assert float(prob.normal_log_prob(0.0, 0.0, 1.0)) == pytest.approx(-0.5 * math.log(2 * math.pi), rel=1e-6)


def test_multivariate_normal_sample_moments(key):
    cov, mean = _cov64(), np.array([1.0, -1.0, 0.5])
    x = np.asarray(prob.multivariate_normal_sample(key, _f32(mean), _f32(cov), num_samples=N), np.float64)
    assert x.shape == (N, 3)
    assert np.all(np.abs(x.mean(0) - mean) <= Z * np.sqrt(np.diag(cov) / N))
    # sample covariance of a Gaussian: Var(S_ij) ~ (S_ii S_jj + S_ij^2) / N
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / N)
    assert np.all(np.abs(np.cov(x, rowvar=False) - cov) <= Z * se)


def test_multivariate_normal_batches_and_gradients(keys):
    cov = np.stack([_cov64(), np.eye(3) * 4.0])  # (2, 3, 3): a batch of two Gaussians
    mean = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    x = prob.multivariate_normal_sample(next(keys), _f32(mean), _f32(cov), num_samples=5)
    assert x.shape == (5, 2, 3)
    for b in range(2):
        expected = scipy.stats.multivariate_normal.logpdf(np.asarray(x[:, b], np.float64), mean[b], cov[b])
        np.testing.assert_allclose(
            prob.multivariate_normal_log_prob(x[:, b], _f32(mean[b]), _f32(cov[b])), expected, rtol=1e-5
        )
    np.testing.assert_allclose(  # batched log-density == per-Gaussian scipy
        prob.multivariate_normal_log_prob(x, _f32(mean), _f32(cov))[:, 1],
        scipy.stats.multivariate_normal.logpdf(np.asarray(x[:, 1], np.float64), mean[1], cov[1]),
        rtol=1e-5,
    )
    key = next(keys)
    sample_sum = lambda m, c: jnp.sum(prob.multivariate_normal_sample(key, m, c, num_samples=3))
    g_mean, g_cov = jax.jit(jax.grad(sample_sum, (0, 1)))(_f32(mean), _f32(cov))
    np.testing.assert_allclose(g_mean, np.full((2, 3), 3.0))  # reparameterized: d x / d mean = I
    assert bool(jnp.all(jnp.isfinite(g_cov)))


def test_multivariate_normal_log_prob_matches_scipy_with_x64():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        x, mean = rng.normal(size=(7, 3)), rng.normal(size=3)
        got = prob.multivariate_normal_log_prob(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(_cov64()))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, scipy.stats.multivariate_normal.logpdf(x, mean, _cov64()), rtol=1e-12)
        # a Python number takes the dtype of the array it goes with
        got = prob.normal_log_prob(jnp.asarray(x), 0.0, 2.0)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, scipy.stats.norm.logpdf(x, 0.0, 2.0), rtol=1e-12)


# ------------------------------------------------------------------ Bernoulli


def test_bernoulli_sample_moments(keys):
    p = np.array([0.05, 0.3, 0.5, 0.9])
    se = np.sqrt(p * (1 - p) / N)
    x = np.asarray(prob.bernoulli_sample(next(keys), _f32(p), num_samples=N))
    assert x.shape == (N, 4) and set(np.unique(x)) <= {0.0, 1.0}
    assert np.all(np.abs(x.mean(0) - p) <= Z * se)
    logits = np.log(p) - np.log1p(-p)
    y = np.asarray(prob.bernoulli_sample_from_logits(next(keys), _f32(logits), num_samples=N))
    assert np.all(np.abs(y.mean(0) - p) <= Z * se)


def test_bernoulli_extremes_are_exact(key):
    x = prob.bernoulli_sample_from_logits(key, _f32([-1e4, 1e4, -100.0, 100.0]), num_samples=1000)
    np.testing.assert_array_equal(jnp.mean(x, axis=0), [0.0, 1.0, 0.0, 1.0])
    y = prob.bernoulli_sample(key, _f32([0.0, 1.0]), num_samples=1000)
    np.testing.assert_array_equal(jnp.mean(y, axis=0), [0.0, 1.0])


def test_bernoulli_log_prob_matches_scipy():
    p = np.array([0.0, 0.2, 0.5, 0.99, 1.0])
    x = np.array([[0.0] * 5, [1.0] * 5])  # (2, 5): both outcomes for each p
    with np.errstate(divide="ignore"):
        expected = scipy.stats.bernoulli.logpmf(x, p)  # -inf for impossible outcomes
    np.testing.assert_allclose(prob.bernoulli_log_prob(_f32(x), _f32(p)), expected, rtol=1e-6)
    logits = np.array([-3.0, -0.5, 0.0, 2.0, 8.0])
    expected = scipy.stats.bernoulli.logpmf(x, scipy.special.expit(logits))
    np.testing.assert_allclose(
        prob.bernoulli_log_prob_from_logits(_f32(x), _f32(logits)), expected, rtol=1e-5
    )
    big = prob.bernoulli_log_prob_from_logits(_f32([[1.0, 0.0]]), _f32([1e4, 1e4]))
    np.testing.assert_allclose(big, [[0.0, -1e4]])  # finite where sigmoid(1e4) rounds to 1
    grads = jax.grad(lambda z: jnp.sum(prob.bernoulli_log_prob_from_logits(_f32([1.0, 0.0]), z)))(
        _f32([1e4, -1e4])
    )
    np.testing.assert_allclose(grads, [0.0, 0.0])
    g = jax.grad(lambda q: jnp.sum(prob.bernoulli_log_prob(_f32([0.0, 1.0]), q)))(_f32([0.0, 1.0]))
    np.testing.assert_allclose(g, [-1.0, 1.0])  # finite at the boundary for the certain outcome


# ------------------------------------------------------------------ Bayes' rule


def test_medical_test_worked_example():
    # 1% prevalence; sensitivity P(+ | ill) = 0.99; specificity P(- | healthy) = 0.95.
    # P(ill | +) = 0.01 * 0.99 / (0.01 * 0.99 + 0.99 * 0.05) = 0.0099 / 0.0594 = 1/6
    prior, positive = _f32([0.01, 0.99]), _f32([0.99, 0.05])
    posterior = prob.bayes_rule(prior, positive)
    np.testing.assert_allclose(posterior, [1 / 6, 5 / 6], rtol=1e-5)
    # a second, independent positive test: (1/6 * 0.99) / (1/6 * 0.99 + 5/6 * 0.05) = 0.99/1.24
    twice = prob.bayes_rule(posterior, positive)
    np.testing.assert_allclose(twice, [0.99 / 1.24, 0.25 / 1.24], rtol=1e-5)
    np.testing.assert_allclose(prob.bayes_rule(prior, positive * positive), twice, rtol=1e-5)  # at once
    negative = prob.bayes_rule(prior, 1.0 - positive)  # P(ill | -) = 0.0001 / (0.0001 + 0.9405)
    np.testing.assert_allclose(negative[0], 0.01 * 0.01 / (0.01 * 0.01 + 0.99 * 0.95), rtol=1e-5)


def test_monty_hall_and_log_form():
    # you pick door 0, the host (who knows) opens door 2: P(opens 2 | car behind 0, 1, 2) = 1/2, 1, 0
    prior, likelihood = jnp.full(3, 1 / 3, jnp.float32), _f32([0.5, 1.0, 0.0])
    np.testing.assert_allclose(prob.bayes_rule(prior, likelihood), [1 / 3, 2 / 3, 0.0], rtol=1e-6)
    with np.errstate(divide="ignore"):
        log_post = prob.log_bayes_rule(jnp.log(prior), jnp.log(likelihood))
    np.testing.assert_allclose(jnp.exp(log_post), [1 / 3, 2 / 3, 0.0], rtol=1e-6)
    assert float(log_post[2]) == -math.inf


def test_log_bayes_rule_survives_underflow():
    # 2000 coin flips, 1200 heads; hypotheses: heads prob 0.5 or 0.6, prior 1/2 each. By hand:
    # log-odds = 1200 log(0.6/0.5) + 800 log(0.4/0.5); each likelihood underflows to 0.
    thetas = np.array([0.5, 0.6])
    log_lik = 1200 * np.log(thetas) + 800 * np.log1p(-thetas)  # about -1386 and -1346
    log_odds = log_lik[1] - log_lik[0]
    expected = [1 / (1 + math.exp(log_odds)), 1 / (1 + math.exp(-log_odds))]
    log_post = prob.log_bayes_rule(jnp.log(_f32([0.5, 0.5])), _f32(log_lik))
    np.testing.assert_allclose(jnp.exp(log_post), expected, rtol=1e-4)
    with pytest.raises(ValueError, match=r"the evidence sum\(prior \* likelihood\) is 0.*use log_bayes_rule"):
        prob.bayes_rule(_f32([0.5, 0.5]), jnp.exp(_f32(log_lik)))
    batch = prob.bayes_rule(_f32([[0.5, 0.5], [0.2, 0.8]]).T, _f32([[0.5, 1.0], [0.5, 1.0]]).T, axis=0)
    np.testing.assert_allclose(
        batch, np.array([[0.25 / 0.75, 0.5 / 0.75], [0.1 / 0.9, 0.8 / 0.9]]).T, rtol=1e-6
    )


def test_jit_and_vmap():
    prior, likelihood = _f32([[0.01, 0.99], [0.5, 0.5]]), _f32([[0.99, 0.05], [0.2, 0.6]])
    eager = prob.bayes_rule(prior, likelihood)
    np.testing.assert_allclose(jax.jit(prob.bayes_rule)(prior, likelihood), eager, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(prob.bayes_rule)(prior, likelihood), eager, rtol=1e-6)
    # traced values are not checked: a bad prior under jit gives a result, not an error
    assert jax.jit(prob.bayes_rule)(_f32([0.7, 0.7]), _f32([1.0, 1.0])).shape == (2,)


# ------------------------------------------------------------------ errors


def test_sampler_errors(key):
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=rf"`num_samples` must be a positive integer, got {bad!r}"):
            prob.normal_sample(key, jnp.zeros(2), jnp.ones(2), num_samples=bad)
    with pytest.raises(ValueError, match="`num_samples` must be a positive integer, got 0"):
        prob.bernoulli_sample_from_logits(key, jnp.zeros(2), num_samples=0)
    with pytest.raises(ValueError, match=r"`std` must be positive, got values in \[-1, 1\]"):
        prob.normal_sample(key, jnp.zeros(2), _f32([1.0, -1.0]))
    with pytest.raises(
        ValueError, match=r"`std` must be a scalar or have the shape of `mean` \(2,\), got \(3,\)"
    ):
        prob.normal_log_prob(jnp.zeros(2), jnp.zeros(2), jnp.ones(3))
    with pytest.raises(
        ValueError, match=r"`probs` must be probabilities in \[0, 1\], got values in \[0.5, 1.5\]"
    ):
        prob.bernoulli_sample(key, _f32([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"`x` must have shape \(\.\.\., \*probs.shape\)"):
        prob.bernoulli_log_prob(jnp.zeros((4, 3)), jnp.full(2, 0.5))
    soft = r"`x` must be Bernoulli outcomes, 0 or 1, got 2 other value\(s\), e.g. 0.5 \(for soft targets"
    with pytest.raises(ValueError, match=soft):
        prob.bernoulli_log_prob(_f32([0.5, 1.0, 2.0]), _f32([0.3, 0.3, 0.3]))
    with pytest.raises(ValueError, match=soft):
        prob.bernoulli_log_prob_from_logits(_f32([0.5, 0.0, -1.0]), _f32([0.3, 0.3, 0.3]))
    with pytest.raises(TypeError, match="must share one dtype, got x: float32, mean: float16"):
        prob.normal_log_prob(jnp.zeros(2), jnp.zeros(2, jnp.float16), jnp.ones(2, jnp.float16))
    with pytest.raises(ValueError, match="`key` must be a JAX PRNG key"):
        prob.normal_sample(0, jnp.zeros(2), jnp.ones(2))


def test_covariance_errors(key):
    not_pd = _f32([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3 and -1
    with pytest.raises(ValueError, match=r"`cov` must be positive definite: .*smallest eigenvalue -1\)"):
        prob.multivariate_normal_sample(key, jnp.zeros(2), not_pd)
    with pytest.raises(ValueError, match="`cov` must be positive definite"):
        prob.multivariate_normal_log_prob(jnp.zeros(2), jnp.zeros(2), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"`cov` must be symmetric, got max \|cov - cov\^T\| = 0.5"):
        prob.multivariate_normal_sample(key, jnp.zeros(2), _f32([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"`cov` must have shape \(\*mean.shape, D\).* cov.shape=\(3, 3\)"):
        prob.multivariate_normal_sample(key, jnp.zeros(2), jnp.eye(3))
    with pytest.raises(ValueError, match=r"`x` must have shape \(\.\.\., \*mean.shape\)"):
        prob.multivariate_normal_log_prob(jnp.zeros(3), jnp.zeros(2), jnp.eye(2))


def test_bayes_rule_errors():
    with pytest.raises(ValueError, match=r"`prior` must sum to 1 along axis -1 .* got a sum of 1.1"):
        prob.bayes_rule(_f32([0.5, 0.6]), _f32([1.0, 1.0]))
    with pytest.raises(ValueError, match=r"`exp\(log_prior\)` must sum to 1 .* got a sum of 2"):
        prob.log_bayes_rule(jnp.zeros(2), jnp.zeros(2))
    with pytest.raises(ValueError, match=r"`prior` must be non-negative probabilities"):
        prob.bayes_rule(_f32([1.5, -0.5]), _f32([1.0, 1.0]))
    with pytest.raises(
        ValueError,
        match=r"`prior` and `likelihood` must have the same shape \(one entry per hypothesis\), got "
        r"prior.shape=\(2,\) and likelihood.shape=\(3,\)",
    ):
        prob.bayes_rule(_f32([0.5, 0.5]), _f32([1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="`log_prior` and `log_likelihood` must have the same shape"):
        prob.log_bayes_rule(jnp.zeros(2), jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"`likelihood` must be non-negative, got values in \[-0.1, 1\]"):
        prob.bayes_rule(_f32([0.5, 0.5]), _f32([-0.1, 1.0]))
    with pytest.raises(ValueError, match=r"`axis` must be an int indexing `prior` of shape \(2,\), got 1"):
        prob.bayes_rule(_f32([0.5, 0.5]), _f32([1.0, 1.0]), axis=1)
