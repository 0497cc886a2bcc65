"""fdl.curvature against the dense float64 Hessian (``jax.hessian``) of a small MLP.

The problem: a 4 -> 8 (tanh) -> 3 MLP, 67 parameters in a nested dict, softmax cross-entropy on
20 random examples, all in float64. The Hutchinson rate tests, which need 2000 independent
replicates, run on the quadratic whose Hessian is exactly that MLP's Hessian (same pytree, same
matrix; see ``quadratic_with_the_mlp_hessian``); a direct test runs them on the MLP itself. The references are built densely and independently of the
code under test: ``jax.hessian`` of the flattened loss, ``J^T H_l J`` from ``jax.jacfwd`` of the
model and ``jax.hessian`` of the loss in output space, and ``numpy.linalg.eigh``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from fdl import curvature

N_IN, N_HIDDEN, N_OUT, N_EXAMPLES = 4, 8, 3, 20
N_PARAMS = N_IN * N_HIDDEN + N_HIDDEN + N_HIDDEN * N_OUT + N_OUT  # 67


@functools.cache
def mlp_problem(seed=0):
    """``(params, model_fn, loss_of_outputs, loss_fn)`` of the small MLP (call under x64), built
    once per seed: the tests share it, so its functions compile once."""
    k = jax.random.split(jax.random.key(seed), 6)
    f64 = jnp.float64
    params = {
        "hidden": {
            "w": jax.random.normal(k[0], (N_IN, N_HIDDEN), f64) / 2,
            "b": 0.1 * jax.random.normal(k[1], (N_HIDDEN,), f64),
        },
        "out": {
            "w": jax.random.normal(k[2], (N_HIDDEN, N_OUT), f64) / 2,
            "b": 0.1 * jax.random.normal(k[3], (N_OUT,), f64),
        },
    }
    x = jax.random.normal(k[4], (N_EXAMPLES, N_IN), f64)
    labels = jax.random.randint(k[5], (N_EXAMPLES,), 0, N_OUT)

    def model_fn(p):
        h = jnp.tanh(x @ p["hidden"]["w"] + p["hidden"]["b"][None, :])  # (B, H)
        return h @ p["out"]["w"] + p["out"]["b"][None, :]  # (B, C)

    def loss_of_outputs(logits):
        log_q = jax.nn.log_softmax(logits)  # (B, C)
        return -jnp.mean(jnp.take_along_axis(log_q, labels[:, None], axis=1))

    return params, model_fn, loss_of_outputs, lambda p: loss_of_outputs(model_fn(p))


@functools.cache
def mlp_hessian():
    params, _, _, loss_fn = mlp_problem()
    return dense_hessian(loss_fn, params)


def dense_hessian(loss_fn, params):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda f: loss_fn(unravel(f))))(flat))  # (n, n)


def dense_ggn(model_fn, loss_of_outputs, params):
    flat, unravel = ravel_pytree(params)
    outputs = model_fn(params)
    jac = jax.jit(jax.jacfwd(lambda f: model_fn(unravel(f)).reshape(-1)))(flat)  # (B*C, n)
    h_out = jax.jit(jax.hessian(lambda z: loss_of_outputs(z.reshape(outputs.shape))))(
        outputs.reshape(-1)
    )  # (B*C, B*C)
    return np.asarray(jac.T @ h_out @ jac)  # (n, n)


def random_like(key, params):
    flat, unravel = ravel_pytree(params)
    return unravel(jax.random.normal(key, flat.shape, flat.dtype))


def test_problem_has_the_stated_size_and_the_quadratic_its_hessian():
    with jax.enable_x64(True):
        params = mlp_problem()[0]
        assert ravel_pytree(params)[0].size == N_PARAMS
        _, loss_fn, hessian = quadratic_with_the_mlp_hessian()
        np.testing.assert_allclose(dense_hessian(loss_fn, params), hessian, rtol=1e-12, atol=1e-14)


def test_hvp_equals_the_dense_hessian_times_v(keys):
    with jax.enable_x64(True):
        params, _, _, loss_fn = mlp_problem()
        hessian = mlp_hessian()
        for _ in range(3):
            v = random_like(next(keys), params)
            hv = jax.jit(curvature.hvp, static_argnums=0)(loss_fn, params, v)
            assert jax.tree_util.tree_structure(hv) == jax.tree_util.tree_structure(params)
            np.testing.assert_allclose(
                ravel_pytree(hv)[0], hessian @ ravel_pytree(v)[0], rtol=1e-10, atol=1e-13
            )


def test_hvp_on_every_basis_vector_rebuilds_the_hessian_under_jit_and_vmap(key):
    with jax.enable_x64(True):
        params, _, _, loss_fn = mlp_problem()
        hessian = mlp_hessian()
        unravel = ravel_pytree(params)[1]
        columns = jax.jit(jax.vmap(lambda e: ravel_pytree(curvature.hvp(loss_fn, params, unravel(e)))[0]))
        rebuilt = columns(jnp.eye(N_PARAMS, dtype=jnp.float64))  # row i = H e_i
        np.testing.assert_allclose(rebuilt, hessian, rtol=1e-10, atol=1e-13)


def test_gnvp_equals_dense_jt_h_j_times_v_and_differs_from_the_hessian(keys):
    with jax.enable_x64(True):
        params, model_fn, loss_of_outputs, _ = mlp_problem()
        ggn = dense_ggn(model_fn, loss_of_outputs, params)
        for _ in range(3):
            v = random_like(next(keys), params)
            gv = jax.jit(curvature.gnvp, static_argnums=(0, 1))(model_fn, loss_of_outputs, params, v)
            np.testing.assert_allclose(ravel_pytree(gv)[0], ggn @ ravel_pytree(v)[0], rtol=1e-10, atol=1e-13)
        # The GGN of a convex loss is positive semi-definite; the Hessian of this MLP is not.
        assert np.linalg.eigvalsh(ggn).min() > -1e-12
        assert np.linalg.eigvalsh(mlp_hessian()).min() < -1e-4


def test_top_eigenvalues_match_numpy_eigh(keys):
    with jax.enable_x64(True):
        params, _, _, loss_fn = mlp_problem()
        reference = np.linalg.eigh(mlp_hessian())[0][::-1]  # descending
        # The default Krylov dimension for k = 6 is 40 steps (of n = 67): with full
        # reorthogonalisation the top 6 have converged to rounding (measured: 1e-15 relative;
        # 20 steps leave the 6th at 3e-4, so the default matters).
        top = jax.jit(curvature.hessian_top_eigenvalues, static_argnums=(0, 2))
        found = top(loss_fn, params, 6, key=next(keys))
        assert found.shape == (6,) and found.dtype == jnp.float64
        np.testing.assert_allclose(found, reference[:6], rtol=1e-10)


def hutchinson_errors(estimator, loss_fn, params, key, truth):
    """The errors of R independent estimates at S and at 16 S probes (independent keys),
    ``(R,)`` or ``(R, n)`` each, from one compiled program."""

    def estimates(keys, num_samples):
        return jax.vmap(
            lambda k: ravel_pytree(estimator(loss_fn, params, key=k, num_samples=num_samples))[0]
        )(keys)

    key_s, key_16s = jax.random.split(key)
    run = jax.jit(lambda a, b: (estimates(a, S), estimates(b, 16 * S)))
    estimates_s, estimates_16s = run(jax.random.split(key_s, R), jax.random.split(key_16s, R))
    return np.asarray(estimates_s) - truth, np.asarray(estimates_16s) - truth


# Hutchinson's error shrinks as 1/sqrt(S): with independent replicates at S and 16 S probes,
# the mean squared error must equal the exact variance V / S (V below) and the RMS ratio be 4.
# Tolerances: each mean over R = 2000 replicates is compared within 4 of its standard errors,
# estimated from the replicates themselves (the CLT over R); the ratio's standard error follows
# by the delta method, sqrt(MSE_1 / MSE_16) having relative error (1/2) sqrt(r_1^2 + r_16^2) for
# the MSEs' relative standard errors r. The band is also asserted to be narrow (< 0.6 around 4),
# so the test has the power to see a wrong rate (1/S would give a ratio of 16).
S, R = 4, 2000


def check_error_rate(errors_s, errors_16s, exact_variance):
    """Assert mean square errors V / S and V / (16 S) and an RMS ratio of 4, to 4 SEs."""
    ratios = []
    for errors, samples in ((errors_s, S), (errors_16s, 16 * S)):
        squares = np.sum(errors.reshape(R, -1) ** 2, axis=1)  # (R,) squared error per replicate
        mse, se = squares.mean(), squares.std(ddof=1) / np.sqrt(R)
        assert abs(mse - exact_variance / samples) < 4 * se, (mse, exact_variance / samples, se)
        ratios.append((mse, se / mse))
    (mse_s, rel_s), (mse_16s, rel_16s) = ratios
    ratio = np.sqrt(mse_s / mse_16s)
    band = 4 * 4.0 * 0.5 * np.hypot(rel_s, rel_16s)
    assert band < 0.6, band
    assert abs(ratio - 4.0) < band, (ratio, band)


def quadratic_with_the_mlp_hessian():
    """``(params, loss_fn, H)``: ``loss_fn(p) = theta^T H theta / 2`` over the MLP's parameter
    pytree, ``H`` the MLP's dense Hessian. Its Hessian is exactly ``H``, and each product costs a
    67 x 67 matvec, so 2000 replicates of 68 probes run in a second (the MLP itself would take
    ~30x longer); the estimators see the same pytree and the same matrix."""
    params = mlp_problem()[0]
    hessian = mlp_hessian()
    matrix = jnp.asarray(hessian)

    def loss_fn(p):
        theta = ravel_pytree(p)[0]
        return 0.5 * theta @ (matrix @ theta)

    return params, loss_fn, hessian


def test_hutchinson_trace_is_unbiased_with_the_rademacher_variance_and_rate(keys):
    with jax.enable_x64(True):
        params, loss_fn, hessian = quadratic_with_the_mlp_hessian()
        trace = np.trace(hessian)
        variance = 2 * (np.sum(hessian**2) - np.sum(np.diag(hessian) ** 2))  # 2 sum_{i!=j} H_ij^2
        errors_s, errors_16s = hutchinson_errors(
            curvature.hutchinson_trace, loss_fn, params, next(keys), trace
        )
        assert abs(errors_s.mean()) < 4 * np.sqrt(variance / (S * R))  # unbiased, exact SE
        check_error_rate(errors_s, errors_16s, variance)


def test_hutchinson_diagonal_is_unbiased_with_the_rademacher_variance_and_rate(keys):
    with jax.enable_x64(True):
        params, loss_fn, hessian = quadratic_with_the_mlp_hessian()
        diagonal = np.diag(hessian)
        per_entry = np.sum(hessian**2, axis=1) - diagonal**2  # Var of entry i: sum_{j!=i} H_ij^2
        errors_s, errors_16s = hutchinson_errors(
            curvature.hutchinson_diagonal, loss_fn, params, next(keys), diagonal
        )
        z = errors_s.mean(axis=0) / np.sqrt(per_entry / (S * R))  # (n,) standardised mean errors
        assert np.all(np.abs(z) < 5.0)  # 67 entries: 5 SEs keeps the family-wise risk below 1e-4
        check_error_rate(errors_s, errors_16s, per_entry.sum())


def test_hutchinson_trace_on_the_mlp_itself_is_close_with_many_probes(keys):
    """The trace estimator on the MLP loss (not the quadratic): 1024 probes, within 5 exact SEs."""
    with jax.enable_x64(True):
        params, _, _, loss_fn = mlp_problem()
        hessian = mlp_hessian()
        samples = 1024
        variance = 2 * (np.sum(hessian**2) - np.sum(np.diag(hessian) ** 2))
        estimate = jax.jit(curvature.hutchinson_trace, static_argnums=0, static_argnames="num_samples")
        trace = estimate(loss_fn, params, key=next(keys), num_samples=samples)
        assert abs(float(trace) - np.trace(hessian)) < 5 * np.sqrt(variance / samples)


def test_estimates_keep_the_parameters_structure_and_dtype(key):
    params = {"a": jnp.ones(3), "b": {"c": jnp.ones((2, 2))}}
    loss_fn = lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(jnp.sin(p["b"]["c"]))
    diagonal = curvature.hutchinson_diagonal(loss_fn, params, key=key, num_samples=2)
    assert jax.tree_util.tree_structure(diagonal) == jax.tree_util.tree_structure(params)
    assert diagonal["b"]["c"].shape == (2, 2) and diagonal["a"].dtype == jnp.float32
    assert curvature.hutchinson_trace(loss_fn, params, key=key, num_samples=2).dtype == jnp.float32


# ------------------------------------------------------------------ bad input

PARAMS = {"layer": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}}
LOSS = lambda p: jnp.sum(p["layer"]["w"] ** 2) + jnp.sum(p["layer"]["b"] ** 3)


@pytest.mark.parametrize("estimator", [curvature.hutchinson_trace, curvature.hutchinson_diagonal])
@pytest.mark.parametrize("bad", [0, -1, 2.0])
def test_num_samples_must_be_a_positive_int(estimator, bad, key):
    with pytest.raises(ValueError, match=r"`num_samples` must be a positive integer, got"):
        estimator(LOSS, PARAMS, key=key, num_samples=bad)


def test_estimators_need_a_prng_key():
    with pytest.raises(ValueError, match=r"`key` must be a JAX PRNG key"):
        curvature.hutchinson_trace(LOSS, PARAMS, key=0, num_samples=1)


def test_k_must_be_between_1_and_the_number_of_parameters(key):
    with pytest.raises(ValueError, match=r"`k` must be a positive integer, got 0"):
        curvature.hessian_top_eigenvalues(LOSS, PARAMS, 0, key=key)
    with pytest.raises(ValueError, match=r"`k` must be <= the number of parameters \(9\), got 10"):
        curvature.hessian_top_eigenvalues(LOSS, PARAMS, 10, key=key)


def test_num_iterations_must_be_between_k_and_n(key):
    with pytest.raises(ValueError, match=r"`num_iterations` must be in \[k, n\] = \[3, 9\].*got 2"):
        curvature.hessian_top_eigenvalues(LOSS, PARAMS, 3, key=key, num_iterations=2)
    with pytest.raises(ValueError, match=r"`num_iterations` must be in \[k, n\] = \[1, 9\].*got 10"):
        curvature.hessian_top_eigenvalues(LOSS, PARAMS, 1, key=key, num_iterations=10)


@pytest.mark.parametrize("product", ["hvp", "gnvp"])
def test_v_must_be_shaped_like_params_naming_the_leaf(product):
    call = {
        "hvp": lambda v: curvature.hvp(LOSS, PARAMS, v),
        "gnvp": lambda v: curvature.gnvp(lambda p: p["layer"]["w"], lambda z: jnp.sum(z**2), PARAMS, v),
    }[product]
    wrong_shape = {"layer": {"w": jnp.ones((3, 2)), "b": jnp.zeros(3)}}
    with pytest.raises(
        ValueError,
        match=rf"{product}: `v` leaf 'layer/w' has shape \(3, 2\), but the params leaf there has shape \(2, 3\)",
    ):
        call(wrong_shape)
    missing = {"layer": {"w": jnp.ones((2, 3))}}
    with pytest.raises(
        ValueError,
        match=rf"{product}: `v` must have the tree structure of `params`; leaves only in params: 'layer/b', only in v: none",
    ):
        call(missing)
    wrong_dtype = {"layer": {"w": jnp.ones((2, 3)), "b": jnp.zeros(3, jnp.int32)}}
    with pytest.raises(
        ValueError, match=r"`v` leaf 'layer/b' has dtype int32, but the params leaf there has dtype float32"
    ):
        call(wrong_dtype)
