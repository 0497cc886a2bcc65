"""Per-example gradients, norms and the gradient noise scale of fdl.per_example."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import per_example as pe


def mlp_loss(params, example):
    """A one-hidden-layer regression net on ONE example {"x": (3,), "y": ()}."""
    h = jnp.tanh(example["x"] @ params["hidden"]["w"] + params["hidden"]["b"])  # (4,)
    return (h @ params["out"] - example["y"]) ** 2


def problem(batch=6):
    rng = np.random.default_rng(0)
    params = {
        "hidden": {"w": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=4))},
        "out": jnp.asarray(rng.normal(size=4)),
    }
    data = {"x": jnp.asarray(rng.normal(size=(batch, 3))), "y": jnp.asarray(rng.normal(size=batch))}
    return params, data


def test_mean_of_per_example_grads_is_the_batch_gradient():
    with jax.enable_x64(True):
        params, data = problem()
        grads = pe.per_example_grads(mlp_loss, params, data)
        assert jax.tree.map(jnp.shape, grads) == {"hidden": {"w": (6, 3, 4), "b": (6, 4)}, "out": (6, 4)}
        batch_loss = lambda p: jnp.mean(jax.vmap(mlp_loss, in_axes=(None, 0))(p, data))
        expected = jax.grad(batch_loss)(params)
        for mine, ref in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(jnp.mean(mine, axis=0), ref, rtol=1e-12, atol=1e-15)


def test_norms_equal_one_example_at_a_time():
    with jax.enable_x64(True):
        params, data = problem()
        norms, leaf_norms = pe.per_example_grad_norms(mlp_loss, params, data, per_leaf=True)
        np.testing.assert_array_equal(pe.per_example_grad_norms(mlp_loss, params, data), norms)
        for i in range(6):
            example = jax.tree.map(lambda leaf, i=i: leaf[i], data)
            g = jax.grad(mlp_loss)(params, example)
            flat = np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(g)])
            np.testing.assert_allclose(norms[i], np.linalg.norm(flat), rtol=1e-13)
            np.testing.assert_allclose(
                leaf_norms["hidden"]["w"][i], np.linalg.norm(g["hidden"]["w"]), rtol=1e-13
            )
            np.testing.assert_allclose(leaf_norms["out"][i], np.linalg.norm(g["out"]), rtol=1e-13)


def test_norms_have_a_finite_gradient_at_a_zero_example():
    grads = {"a": jnp.array([[3.0, 4.0], [0.0, 0.0]]), "b": jnp.array([[0.0], [0.0]])}
    naive = jax.grad(lambda g: jnp.sqrt(jnp.sum(g["a"] ** 2, axis=1)).sum())(grads)["a"]
    assert np.isnan(np.asarray(naive[1])).all()  # the plain square root: 0 * inf
    total = jax.grad(lambda g: pe.example_norms(g).sum())(grads)
    per_leaf = jax.grad(
        lambda g: jax.tree.reduce(jnp.add, jax.tree.map(jnp.sum, pe.example_norms(g, per_leaf=True)[1]))
    )(grads)
    for got in (total, per_leaf):
        np.testing.assert_allclose(np.asarray(got["a"]), [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(got["b"]), [[0.0], [0.0]])


def test_chunks_and_jit_give_the_same_gradients():
    with jax.enable_x64(True):
        params, data = problem(7)
        whole = pe.per_example_grads(mlp_loss, params, data)
        chunked = pe.per_example_grads(mlp_loss, params, data, chunk_size=3)  # 7 = 3 + 3 + 1
        jitted = jax.jit(lambda p, d: pe.per_example_grad_norms(mlp_loss, p, d))(params, data)
        for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(chunked), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(jitted, pe.example_norms(whole), rtol=1e-13)


def test_noise_scale_estimators_by_hand():
    g = np.random.default_rng(3).normal(size=(5, 2, 3))  # 5 examples of a (2, 3) leaf
    grads = {"a": jnp.asarray(g[:, 0], jnp.float32), "b": jnp.asarray(g[:, 1], jnp.float32)}
    flat = g.reshape(5, 6)
    mean = flat.mean(axis=0)
    spread = np.sum((flat - mean) ** 2)
    unbiased = pe.gradient_noise_scale(grads)
    np.testing.assert_allclose(unbiased.trace_sigma, spread / 4, rtol=1e-5)
    np.testing.assert_allclose(unbiased.grad_norm_sq, mean @ mean - spread / 4 / 5, rtol=1e-5)
    np.testing.assert_allclose(unbiased.b_simple, (spread / 4) / (mean @ mean - spread / 20), rtol=1e-4)
    plug_in = pe.gradient_noise_scale(grads, unbiased=False)
    np.testing.assert_allclose(plug_in.trace_sigma, spread / 5, rtol=1e-5)
    np.testing.assert_allclose(plug_in.grad_norm_sq, mean @ mean, rtol=1e-5)


# ---- B_simple on linear regression, where Sigma and G are known in closed form -----------------
#
# Example (x, y): x ~ N(0, I_d), y = x . w_star + eps, eps ~ N(0, s^2); loss (x . w - y)^2 / 2.
# Per-example gradient g = x x^T delta - x eps, delta = w - w_star. Then G = E[g] = delta and, by
# Isserlis' theorem, E[x x^T A x x^T] = A + A^T + tr(A) I, so E[g g^T] = 2 delta delta^T +
# (|delta|^2 + s^2) I and Sigma = delta delta^T + (|delta|^2 + s^2) I:
#     tr(Sigma) = (d + 1)|delta|^2 + d s^2,   |G|^2 = |delta|^2.
D, NOISE, BATCH, REPEATS = 5, 1.0, 64, 400
DELTA = np.array([0.6, -0.8, 0.0, 0.0, 0.0])  # |delta| = 1
TRACE = (D + 1) * DELTA @ DELTA + D * NOISE**2  # 11
NORM_SQ = DELTA @ DELTA  # 1


def regression_estimates(unbiased):
    """(REPEATS, 3) estimates (b_simple, trace, |G|^2), one row per independent batch."""
    with jax.enable_x64(True):
        w_star = jnp.asarray(np.linspace(-1.0, 1.0, D))
        w = w_star + jnp.asarray(DELTA)

        def one_batch(key):
            kx, ke = jax.random.split(key)
            x = jax.random.normal(kx, (BATCH, D), jnp.float64)
            y = x @ w_star + NOISE * jax.random.normal(ke, (BATCH,), jnp.float64)
            loss = lambda w, ex: (ex["x"] @ w - ex["y"]) ** 2 / 2
            grads = pe.per_example_grads(loss, w, {"x": x, "y": y})
            return jnp.stack(pe.gradient_noise_scale(grads, unbiased=unbiased))

        keys = jax.random.split(jax.random.key(2018), REPEATS)
        return np.asarray(jax.jit(jax.vmap(one_batch))(keys))


def within_4_standard_errors(samples, truth):
    """The mean of independent replicates is within 4 standard errors of its expectation."""
    se = samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(samples.mean() - truth) <= 4 * se, (samples.mean(), truth, se)


def test_unbiased_estimators_recover_the_analytic_trace_and_gradient_norm():
    est = regression_estimates(unbiased=True)
    within_4_standard_errors(est[:, 1], TRACE)
    within_4_standard_errors(est[:, 2], NORM_SQ)
    # B_simple = E[trace] / E[|G|^2] estimated by the ratio of the pooled means; its standard
    # error by the delta method over the replicates (the ratio's own bias is O(1 / (R B))).
    t, n = est[:, 1].mean(), est[:, 2].mean()
    cov = np.cov(est[:, 1], est[:, 2]) / REPEATS
    se = np.sqrt(cov[0, 0] / n**2 - 2 * t * cov[0, 1] / n**3 + t**2 * cov[1, 1] / n**4)
    assert abs(t / n - TRACE / NORM_SQ) <= 4 * se, (t / n, se)


def test_plug_in_estimators_carry_the_stated_bias():
    est = regression_estimates(unbiased=False)
    within_4_standard_errors(est[:, 1], (BATCH - 1) / BATCH * TRACE)
    within_4_standard_errors(est[:, 2], NORM_SQ + TRACE / BATCH)  # E|mean g|^2 = |G|^2 + tr(Sigma)/B
    assert abs(est[:, 2].mean() - NORM_SQ) > 4 * est[:, 2].std(ddof=1) / np.sqrt(REPEATS)  # the bias shows


# ---- errors ------------------------------------------------------------------------------------


def test_leading_axes_must_agree():
    params, _ = problem()
    bad = {"x": jnp.ones((5, 3)), "y": jnp.ones(4)}
    with pytest.raises(
        ValueError,
        match=r"`batch` leaves must share their leading \(example\) axis, got sizes \{x: 5, y: 4\}",
    ):
        pe.per_example_grads(mlp_loss, params, bad)
    with pytest.raises(ValueError, match=r"`grads` leaves must share their leading"):
        pe.gradient_noise_scale({"a": jnp.ones((3, 2)), "b": jnp.ones((2, 2))})
    with pytest.raises(ValueError, match=r"`grads` leaves must share their leading"):
        pe.example_norms([jnp.ones((3, 2)), jnp.ones(2)])


def test_counts_below_one_and_scalars():
    params, data = problem()
    with pytest.raises(ValueError, match=r"`chunk_size` must be a positive integer, got 0"):
        pe.per_example_grads(mlp_loss, params, data, chunk_size=0)
    with pytest.raises(ValueError, match=r"`batch` must hold at least 1 example, got a leading axis of 0"):
        pe.per_example_grads(mlp_loss, params, {"x": jnp.ones((0, 3)), "y": jnp.ones(0)})
    with pytest.raises(
        ValueError, match=r"`batch` leaf y is a scalar: every leaf needs a leading example axis"
    ):
        pe.per_example_grads(mlp_loss, params, {"x": jnp.ones((2, 3)), "y": jnp.ones(())})
    with pytest.raises(ValueError, match=r"`batch` has no arrays \(an empty pytree\)"):
        pe.per_example_grads(mlp_loss, params, {})
    with pytest.raises(
        ValueError, match=r"`grads` must hold at least 2 examples for the unbiased estimators, got 1"
    ):
        pe.gradient_noise_scale(jnp.ones((1, 3)))
    assert float(pe.gradient_noise_scale(jnp.ones((1, 3)), unbiased=False).trace_sigma) == 0.0
