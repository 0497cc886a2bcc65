"""fdl.gradcheck: it passes correct gradients, names the leaf of a planted wrong one, and its
finite differences match hand-computed derivatives.

The planted bug is a ``jax.custom_vjp`` dense layer whose backward rule gets one gradient wrong
(the bias of the output layer, by 1%): the report must fail on that leaf path and only on it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import gradcheck


def dense_with_rule(bias_factor):
    """A dense layer ``x @ w + b`` with a hand-written backward rule that scales ``db`` by
    ``bias_factor`` (1.0: the correct rule)."""

    @jax.custom_vjp
    def dense(x, w, b):
        return x @ w + b[None, :]

    def forward(x, w, b):
        return dense(x, w, b), (x, w)

    def backward(saved, g):  # g: (B, out)
        x, w = saved
        return g @ w.T, x.T @ g, bias_factor * jnp.sum(g, axis=0)

    dense.defvjp(forward, backward)
    return dense


def mlp_loss(out_layer):
    x = jnp.linspace(-1.0, 1.0, 15).reshape(5, 3)
    targets = jnp.cos(jnp.arange(10.0)).reshape(5, 2)

    def loss(params):
        h = jnp.tanh(x.astype(jnp.float64) @ params["hidden"]["w"] + params["hidden"]["b"][None, :])  # (B, 4)
        y = out_layer(h, params["out"]["w"], params["out"]["b"])  # (B, 2)
        return jnp.mean((y - targets.astype(jnp.float64)) ** 2)

    return loss


def mlp_params(key):
    k = jax.random.split(key, 4)
    return {
        "hidden": {"w": jax.random.normal(k[0], (3, 4)), "b": jax.random.normal(k[1], (4,))},
        "out": {"w": jax.random.normal(k[2], (4, 2)), "b": jax.random.normal(k[3], (2,))},
    }


PATHS = ["hidden/b", "hidden/w", "out/b", "out/w"]


def test_a_correct_gradient_passes_with_errors_near_rounding(key):
    with jax.enable_x64(True):
        plain = lambda h, w, b: h @ w + b[None, :]
        report = gradcheck.check_gradients(mlp_loss(plain), mlp_params(key))
    assert report.passed, str(report)
    assert sorted(report.errors) == PATHS
    assert max(report.errors.values()) < 1e-6  # central differences: ~1e-9 here, 100x margin
    assert report.checked == {"hidden/b": 4, "hidden/w": 12, "out/b": 2, "out/w": 8}
    assert report.jvp_source == "forward" and report.jvp_vjp_error < 1e-12
    assert "gradient check (passed" in str(report)


def test_a_correct_custom_vjp_passes(key):
    with jax.enable_x64(True):
        report = gradcheck.check_gradients(mlp_loss(dense_with_rule(1.0)), mlp_params(key))
    assert report.passed, str(report)
    assert report.jvp_source == "finite differences" and report.jvp_vjp_error < 1e-6


def test_a_planted_wrong_gradient_is_caught_and_its_leaf_named(key):
    with jax.enable_x64(True):
        report = gradcheck.check_gradients(mlp_loss(dense_with_rule(1.01)), mlp_params(key))
    assert not report.passed
    assert report.failing == ["out/b"]
    # A 1% error in db: e = |1.01 g - g| / (1.01 |g|) = 0.0099 at every coordinate.
    np.testing.assert_allclose(report.errors["out/b"], 0.01 / 1.01, rtol=1e-5)
    assert all(report.errors[p] < 1e-6 for p in PATHS if p != "out/b")
    _, autodiff, finite_difference = report.worst["out/b"]
    np.testing.assert_allclose(autodiff, 1.01 * finite_difference, rtol=1e-7)
    # The forward/reverse check sees it too (J v by finite differences: custom_vjp).
    assert report.jvp_vjp_error > report.tolerance
    text = str(report)
    assert "FAILED" in text and "FAIL out/b: max relative error 9.90e-03" in text
    assert "ok   out/w" in text


def test_finite_differences_match_hand_computed_derivatives():
    # f = sum(exp(a)) + sum(b^3) / 3: df/da = exp(a), df/db = b^2, with |x| from 1e-3 to 30
    # (the step grows with |x|: h = eps^(1/3) max(1, |x|)). Rounding noise in a central
    # difference is ~ eps |f| / h ~ 4e-11 |f|, about 4e-7 here (|f| ~ 9e3): every worst
    # coordinate's finite difference must match the hand-computed derivative to 1e-6 of |f|.
    a = np.array([-2.0, 0.0, 0.5, 3.0])
    b = np.array([1e-3, -1.0, 5.0, 30.0])
    f = lambda p: jnp.sum(jnp.exp(p["a"])) + jnp.sum(p["b"] ** 3) / 3
    with jax.enable_x64(True):
        report = gradcheck.check_gradients(f, {"a": jnp.asarray(a), "b": jnp.asarray(b)})
    assert report.passed, str(report)
    scale = np.sum(np.exp(a)) + np.sum(b**3) / 3
    for leaf, derivative in (("a", np.exp(a)), ("b", b**2)):
        index, autodiff, finite_difference = report.worst[leaf]
        assert abs(finite_difference - derivative[index]) < 1e-6 * scale
        np.testing.assert_allclose(autodiff, derivative[index], rtol=1e-14)


def test_large_leaves_are_sampled_with_the_key(keys):
    params = {"big": jnp.linspace(-1.0, 1.0, 500), "small": jnp.ones(3)}
    f = lambda p: jnp.sum(jnp.sin(p["big"]) ** 2) + jnp.sum(p["small"] ** 2)
    key = next(keys)
    with jax.enable_x64(True):
        first = gradcheck.check_gradients(f, params, max_coordinates_per_leaf=20, key=key)
        again = gradcheck.check_gradients(f, params, max_coordinates_per_leaf=20, key=key)
        other = gradcheck.check_gradients(f, params, max_coordinates_per_leaf=20, key=next(keys))
    assert first.checked == {"big": 20, "small": 3} and first.passed
    assert first == again  # the same key, the same coordinates
    assert first.coordinates == again.coordinates and len(set(first.coordinates["big"])) == 20
    assert first.coordinates["big"] != other.coordinates["big"]  # another key, another sample
    assert first.coordinates["small"] == (0, 1, 2)


def test_a_sample_still_catches_a_wrong_leaf(key):
    with jax.enable_x64(True):
        report = gradcheck.check_gradients(
            mlp_loss(dense_with_rule(0.5)), mlp_params(key), max_coordinates_per_leaf=3, key=key
        )
    assert report.failing == ["out/b"]
    assert report.checked == {"hidden/b": 3, "hidden/w": 3, "out/b": 2, "out/w": 3}


def test_check_jvp_vjp_on_a_vector_function():
    f = lambda p: {"y": jnp.sin(p["x"]) * p["x"][::-1], "z": jnp.sum(p["x"] ** 2)}
    with jax.enable_x64(True):
        error, source = gradcheck.check_jvp_vjp(f, {"x": jnp.arange(5.0)}, num_probes=3)
    assert source == "forward" and error < 1e-12


def test_check_jvp_vjp_catches_a_wrong_custom_vjp(key):
    @jax.custom_vjp
    def double(x):
        return 2 * x

    double.defvjp(lambda x: (2 * x, None), lambda _, g: (-2 * g,))  # wrong sign
    with jax.enable_x64(True):
        error, source = gradcheck.check_jvp_vjp(double, jnp.ones(3), key=key)
    assert source == "finite differences"
    np.testing.assert_allclose(error, 2.0, rtol=1e-6)  # |a - (-a)| / |a|


# ------------------------------------------------------------------ bad input


def test_float64_must_be_enabled():
    with jax.enable_x64(False):
        with pytest.raises(
            RuntimeError,
            match=r"check_gradients compares against finite differences in float64, but float64 is disabled",
        ):
            gradcheck.check_gradients(lambda p: jnp.sum(p), jnp.ones(2))
        with pytest.raises(RuntimeError, match=r"check_jvp_vjp .* `with jax.enable_x64\(True\):`"):
            gradcheck.check_jvp_vjp(jnp.sin, jnp.ones(2))


def test_bad_arguments_are_named():
    with jax.enable_x64(True):
        with pytest.raises(ValueError, match=r"`f` must return a scalar .* got shape \(2,\)"):
            gradcheck.check_gradients(jnp.sin, jnp.ones(2))
        with pytest.raises(ValueError, match=r"leaf 'layer/steps' has dtype int32; only float leaves"):
            gradcheck.check_gradients(
                lambda p: jnp.sum(p["layer"]["w"]),
                {"layer": {"w": jnp.ones(2), "steps": jnp.zeros(2, jnp.int32)}},
            )
        with pytest.raises(ValueError, match=r"`max_coordinates_per_leaf` must be a positive integer, got 0"):
            gradcheck.check_gradients(jnp.sum, jnp.ones(2), max_coordinates_per_leaf=0)
        with pytest.raises(ValueError, match=r"`tolerance` must be a positive number, got 0"):
            gradcheck.check_gradients(jnp.sum, jnp.ones(2), tolerance=0)
        with pytest.raises(ValueError, match=r"`params` has no leaves"):
            gradcheck.check_gradients(lambda p: jnp.zeros(()), {})
        with pytest.raises(ValueError, match=r"`key` must be a JAX PRNG key"):
            gradcheck.check_gradients(jnp.sum, jnp.ones(2), key=3)
        with pytest.raises(ValueError, match=r"`num_probes` must be a positive integer, got 0"):
            gradcheck.check_jvp_vjp(jnp.sin, jnp.ones(2), num_probes=0)
