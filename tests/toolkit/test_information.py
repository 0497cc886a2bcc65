"""fdl.information against SciPy, scikit-learn, float64 NumPy and hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.spatial.distance
import scipy.stats
from jax.test_util import check_grads
from sklearn.metrics import mutual_info_score

from fdl import information as info
from fdl import losses

RNG_SEED = 13


def _dirichlet(shape, seed=RNG_SEED, zeros=False):
    """float64 random distributions along the last axis (some exact zeros if ``zeros``)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    if zeros:
        p[..., 0] = 0.0
        p /= p.sum(axis=-1, keepdims=True)
    return p


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def _softmax64(z, axis=-1):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# ------------------------------------------------------------------ hand-computed values


def test_fair_coin_uniform_and_point_mass():
    assert float(info.entropy(_f32([0.5, 0.5]))) == pytest.approx(math.log(2), rel=1e-6)
    assert float(info.entropy(_f32([0.5, 0.5]), base=2)) == pytest.approx(1.0, rel=1e-6)
    for k in (3, 256):
        uniform = jnp.full(k, 1.0 / k, jnp.float32)
        assert float(info.entropy(uniform)) == pytest.approx(math.log(k), rel=1e-5)
        assert float(info.perplexity(uniform)) == pytest.approx(k, rel=1e-5)
        assert float(info.perplexity_from_logits(jnp.zeros(k))) == pytest.approx(k, rel=1e-5)
    point = _f32([0.0, 1.0, 0.0])
    assert float(info.entropy(point)) == 0.0
    assert float(info.perplexity(point)) == 1.0


def test_known_divergences():
    p, q = _f32([1.0, 0.0]), _f32([0.5, 0.5])
    assert float(info.kl_divergence(p, q)) == pytest.approx(math.log(2), rel=1e-6)
    assert float(info.kl_divergence(q, p)) == math.inf  # q puts mass where p has none
    assert float(info.cross_entropy(q, p)) == math.inf
    assert float(info.js_divergence(p, _f32([0.0, 1.0]), base=2)) == pytest.approx(1.0, rel=1e-6)
    diagonal = jnp.eye(4, dtype=jnp.float32) / 4  # Y = X, uniform over 4
    assert float(info.mutual_information(diagonal)) == pytest.approx(math.log(4), rel=1e-6)
    independent = jnp.outer(_f32([0.2, 0.8]), _f32([0.1, 0.3, 0.6]))
    assert float(info.mutual_information(independent)) == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------ against SciPy / sklearn


@pytest.mark.parametrize("base", [None, 2, 10])
def test_entropy_and_kl_match_scipy(base):
    p, q = _dirichlet((6, 9)), _dirichlet((6, 9), seed=RNG_SEED + 1, zeros=True)
    np.testing.assert_allclose(
        info.entropy(_f32(p), base=base), scipy.stats.entropy(p, base=base, axis=-1), rtol=1e-5
    )
    np.testing.assert_allclose(
        info.kl_divergence(_f32(p), _f32(q), base=base),
        scipy.stats.entropy(p, q, base=base, axis=-1),
        rtol=1e-4,
    )
    np.testing.assert_allclose(  # reverse direction: argument order, with 0 log 0 = 0 in q
        info.kl_divergence(_f32(q), _f32(p), base=base),
        scipy.stats.entropy(q, p, base=base, axis=-1),
        rtol=1e-4,
    )
    np.testing.assert_allclose(
        info.entropy(_f32(q), base=base), scipy.stats.entropy(q, base=base, axis=-1), rtol=1e-5
    )


def test_entropy_along_another_axis_with_batch_axes():
    p = _dirichlet((2, 3, 7)).transpose(0, 2, 1)  # (2, 7, 3), distributions along axis 1
    expected = scipy.stats.entropy(p, axis=1)
    np.testing.assert_allclose(info.entropy(_f32(p), axis=1), expected, rtol=1e-5)
    np.testing.assert_allclose(info.entropy(_f32(p), axis=-2), expected, rtol=1e-5)
    z = np.log(p)
    np.testing.assert_allclose(info.entropy_from_logits(_f32(z), axis=1), expected, rtol=1e-5)
    q = _dirichlet((2, 3, 7), seed=5).transpose(0, 2, 1)
    np.testing.assert_allclose(
        info.kl_divergence_from_logits(_f32(z), _f32(np.log(q)), axis=1),
        scipy.stats.entropy(p, q, axis=1),
        rtol=1e-4,
    )


@pytest.mark.parametrize("base", [None, 2])
def test_js_matches_scipy_jensenshannon_squared(base):
    p, q = _dirichlet((5, 8)), _dirichlet((5, 8), seed=7, zeros=True)
    expected = scipy.spatial.distance.jensenshannon(p, q, base=base, axis=-1) ** 2
    np.testing.assert_allclose(info.js_divergence(_f32(p), _f32(q), base=base), expected, rtol=1e-4)
    np.testing.assert_allclose(
        info.js_divergence(_f32(q), _f32(p), base=base), expected, rtol=1e-4
    )  # symmetric
    logits_form = info.js_divergence_from_logits(_f32(np.log(p)), _f32(np.log(q + 1e-30)), base=base)
    np.testing.assert_allclose(logits_form, expected, rtol=1e-4, atol=1e-7)


def test_logits_forms_match_float64_references():
    rng = np.random.default_rng(RNG_SEED)
    zp, zq = rng.normal(size=(4, 6)) * 3, rng.normal(size=(4, 6)) * 3
    p, q = _softmax64(zp), _softmax64(zq)
    np.testing.assert_allclose(info.entropy_from_logits(_f32(zp)), scipy.stats.entropy(p, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(
        info.cross_entropy_from_logits(_f32(zp), _f32(zq)), -(p * np.log(q)).sum(-1), rtol=1e-5
    )
    np.testing.assert_allclose(
        info.kl_divergence_from_logits(_f32(zp), _f32(zq)), scipy.stats.entropy(p, q, axis=-1), rtol=1e-4
    )
    np.testing.assert_allclose(
        info.perplexity_from_logits(_f32(zp)), np.exp(scipy.stats.entropy(p, axis=-1)), rtol=1e-5
    )
    # the probability forms agree with the same references
    np.testing.assert_allclose(info.cross_entropy(_f32(p), _f32(q)), -(p * np.log(q)).sum(-1), rtol=1e-5)


def test_kl_argument_order_against_optax():
    p, q = _dirichlet((3, 5)), _dirichlet((3, 5), seed=9)
    # optax takes the model first, as log-probabilities: kl_divergence(log q, p) = D(p || q)
    expected = optax.kl_divergence(_f32(np.log(q)), _f32(p))
    np.testing.assert_allclose(info.kl_divergence(_f32(p), _f32(q)), expected, rtol=1e-5)
    assert not np.allclose(info.kl_divergence(_f32(q), _f32(p)), expected, rtol=1e-2)  # not symmetric


def test_cross_entropy_from_logits_reuses_the_loss():
    rng = np.random.default_rng(3)
    zp, zq = _f32(rng.normal(size=(3, 5))), _f32(rng.normal(size=(3, 5)))
    loss = losses.softmax_cross_entropy(zq, jax.nn.softmax(zp))
    np.testing.assert_allclose(info.cross_entropy_from_logits(zp, zq), loss, rtol=1e-6)
    # H(p, q) = H(p) + KL(p || q)
    np.testing.assert_allclose(
        info.cross_entropy_from_logits(zp, zq),
        info.entropy_from_logits(zp) + info.kl_divergence_from_logits(zp, zq),
        rtol=1e-5,
    )


def test_mutual_information_matches_sklearn_and_entropies():
    rng = np.random.default_rng(RNG_SEED)
    counts = rng.integers(0, 20, size=(4, 6)).astype(np.float64)
    counts[0, :] = 0.0  # a row and a cell of zeros
    joint = counts / counts.sum()
    expected = mutual_info_score(None, None, contingency=counts)
    assert float(info.mutual_information(_f32(joint))) == pytest.approx(expected, rel=1e-4)
    assert float(info.mutual_information(_f32(joint), base=2)) == pytest.approx(
        expected / math.log(2), rel=1e-4
    )
    h = lambda x: scipy.stats.entropy(x.ravel())
    assert expected == pytest.approx(h(joint.sum(1)) + h(joint.sum(0)) - h(joint), rel=1e-10)
    logits = np.log(counts + 1.0)  # a different, everywhere-positive joint
    soft = (counts + 1.0) / (counts + 1.0).sum()
    assert float(info.mutual_information_from_logits(_f32(logits))) == pytest.approx(
        mutual_info_score(None, None, contingency=soft * 1e6), rel=1e-4
    )
    batch = np.stack([joint, soft])  # (2, X, Y): leading batch axis
    np.testing.assert_allclose(
        info.mutual_information(_f32(batch)),
        [expected, mutual_info_score(None, None, contingency=soft * 1e6)],
        rtol=1e-4,
    )


# ------------------------------------------------------------------ numerics and gradients


def _all_logits_forms(z, w):
    """Every logits form at once, each with its own weight: one compile for all gradients."""
    outputs = [
        info.entropy_from_logits(z),
        info.perplexity_from_logits(z),
        info.cross_entropy_from_logits(z, w),
        info.kl_divergence_from_logits(z, w),
        info.js_divergence_from_logits(z, w),
        info.mutual_information_from_logits(z),
    ]
    return sum((i + 1.0) * jnp.sum(out) for i, out in enumerate(outputs))


def _all_probability_forms(p, q):
    """Every probability form at once (``(..., 2, C)`` inputs make a joint table too)."""
    outputs = [
        info.entropy(p),
        info.perplexity(p),
        info.cross_entropy(p, q),
        info.kl_divergence(p, q),
        info.js_divergence(p, q),
        info.mutual_information(p / 2),
    ]
    return sum((i + 1.0) * jnp.sum(out) for i, out in enumerate(outputs))


def test_logits_forms_finite_at_1e4():
    z = _f32([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4]])
    w = _f32([[-1e4, 1e4, 0.0], [1e4, -1e4, 1e4]])
    np.testing.assert_allclose(info.entropy_from_logits(z), [0.0, math.log(2)], atol=1e-6)
    np.testing.assert_allclose(info.perplexity_from_logits(z), [1.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(
        info.js_divergence_from_logits(z, w), [math.log(2), 0.5 * math.log(2)], rtol=1e-5
    )
    kl = info.kl_divergence_from_logits(z, w)
    np.testing.assert_allclose(kl, [2e4, 0.5 * 2e4], rtol=1e-5)  # log p - log q = 2e4 where p lives
    np.testing.assert_allclose(
        info.cross_entropy_from_logits(z, w), [2e4, 0.5 * 2e4 + math.log(2)], rtol=1e-5
    )
    joint = _f32([[1e4, -1e4], [-1e4, 1e4]])
    assert float(info.mutual_information_from_logits(joint)) == pytest.approx(math.log(2), rel=1e-6)
    grads = jax.jit(jax.grad(_all_logits_forms, argnums=(0, 1)))(z, w)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_zero_probabilities_have_finite_gradients():
    p = _f32([[0.5, 0.5, 0.0], [0.25, 0.0, 0.75]])  # also a joint table, halved
    q = _f32([[0.2, 0.3, 0.5], [0.5, 0.0, 0.5]])  # zero only where p is zero
    assert float(info.entropy(p[0])) == pytest.approx(math.log(2), rel=1e-6)
    grads = jax.jit(jax.grad(_all_probability_forms, argnums=(0, 1)))(p, q)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)
    # the gradient of -p log p at p > 0 is -log p - 1 (hand-computed), 0 at the zero entry
    np.testing.assert_allclose(
        jax.jit(jax.grad(info.entropy))(p[0]), [math.log(2) - 1, math.log(2) - 1, 0.0], rtol=1e-6
    )


def test_gradients_match_finite_differences():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        p = jnp.asarray(_dirichlet((2, 4)), jnp.float64)
        q = jnp.asarray(_dirichlet((2, 4), seed=2), jnp.float64)
        zp, zq = jnp.asarray(rng.normal(size=(2, 4))), jnp.asarray(rng.normal(size=(2, 4)))
        check_grads(jax.jit(_all_probability_forms), (p, q), order=1, modes=["rev"], eps=1e-6)
        check_grads(jax.jit(_all_logits_forms), (zp, zq), order=1, modes=["rev"], eps=1e-6)
        assert info.entropy(p).dtype == jnp.float64


def test_jit_vmap_and_traced_values_are_not_checked():
    p = _f32(_dirichlet((5, 3)))
    np.testing.assert_allclose(jax.jit(info.entropy)(p), info.entropy(p), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(info.entropy)(p), info.entropy(p), rtol=1e-6)
    unnormalised = _f32([0.5, 0.6])  # under jit the values are traced: no check, no error
    assert bool(jnp.isfinite(jax.jit(info.entropy)(unnormalised)))
    assert info.entropy(jnp.array([1, 0])).dtype == jnp.float32  # ints become the default float


def test_float32_softmax_over_a_large_vocabulary_passes_the_check():
    z = jax.random.normal(jax.random.key(0), (50_000,)) * 5
    p = jax.nn.softmax(z)
    np.testing.assert_allclose(info.entropy(p), info.entropy_from_logits(z), rtol=1e-4)


# ------------------------------------------------------------------ errors


def test_unnormalised_and_negative_probabilities_raise():
    with pytest.raises(
        ValueError, match=r"`probs` must sum to 1 along axis -1 \(within 1e-05\), got a sum of 1.1"
    ):
        info.entropy(_f32([0.5, 0.6]))
    with pytest.raises(ValueError, match=r"`q` must sum to 1 .* got a sum of 0.9"):
        info.kl_divergence(_f32([0.5, 0.5]), _f32([0.5, 0.4]))
    with pytest.raises(ValueError, match=r"`p` must be non-negative probabilities, got a minimum of -0.5"):
        info.cross_entropy(_f32([1.5, -0.5]), _f32([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"`joint` must sum to 1 along axis \(-2, -1\)"):
        info.mutual_information(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match=r"`probs` must sum to 1 .* got a sum of nan"):
        info.entropy(_f32([0.5, math.nan]))
    with pytest.raises(ValueError, match=r"got a sum of 1\.00002"):  # 2e-5 > 1e-5 in float32
        info.entropy(_f32([0.5, 0.50002]))
    info.entropy(_f32([0.5, 0.500005]))  # within the float32 tolerance
    with pytest.raises(ValueError, match=r"`probs` must sum to 1 along axis 0 .* got a sum of 0.5"):
        info.entropy(jnp.full((2, 3), 0.25), axis=0)
    with jax.enable_x64(True), pytest.raises(ValueError, match=r"within 1e-10\), got a sum of 1"):
        info.entropy(jnp.asarray([0.5, 0.5 + 1e-9], jnp.float64))
    with pytest.raises(ValueError, match=r"within 0.02\), got a sum of 1.0[0-9]"):
        info.entropy(jnp.asarray([0.5, 0.56], jnp.bfloat16))


def test_argument_errors():
    with pytest.raises(
        ValueError, match=r"`p` and `q` must have the same shape, got p.shape=\(2,\) and q.shape=\(3,\)"
    ):
        info.js_divergence(_f32([0.5, 0.5]), jnp.full(3, 1 / 3, jnp.float32))
    with pytest.raises(ValueError, match=r"`p_logits` and `q_logits` must have the same shape"):
        info.kl_divergence_from_logits(jnp.zeros(2), jnp.zeros((1, 2)))
    with pytest.raises(TypeError, match="`p` and `q` must have the same dtype, got float32 and float16"):
        info.kl_divergence(_f32([0.5, 0.5]), jnp.asarray([0.5, 0.5], jnp.float16))
    with pytest.raises(ValueError, match=r"`base` must be None \(nats\) or a number > 0 and != 1, got 1"):
        info.entropy(_f32([0.5, 0.5]), base=1)
    with pytest.raises(ValueError, match=r"`base` must be .* got -2"):
        info.entropy_from_logits(jnp.zeros(2), base=-2)
    with pytest.raises(ValueError, match=r"`axis` 2 is out of range for `probs` of shape \(2, 2\)"):
        info.entropy(jnp.full((2, 2), 0.5), axis=2)
    with pytest.raises(ValueError, match=r"`axis` -1 is out of range for `logits` of shape \(\)"):
        info.entropy_from_logits(jnp.float32(0.0))
    with pytest.raises(TypeError, match=r"`axis` must be an int, got 0\.5"):
        info.entropy(_f32([0.5, 0.5]), axis=0.5)
    with pytest.raises(TypeError, match="`probs` must be real, got dtype complex64"):
        info.entropy(jnp.asarray([0.5, 0.5], jnp.complex64))
    with pytest.raises(ValueError, match=r"`joint` must have at least 2 dimensions .* got shape \(2,\)"):
        info.mutual_information(_f32([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"`joint_logits` must have at least 2 dimensions"):
        info.mutual_information_from_logits(jnp.zeros(3))
