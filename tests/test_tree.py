"""fdl.tree: the tree math the optimizers share, against hand values and optax.tree's twins.

Hand values are the formulas evaluated in NumPy float64 (spelled out next to each). Dyadic
hyperparameters (0.5, 0.75) are exact in float32, so ``RTOL32 = 2e-6`` covers the rounding of a
few float32 operations; bfloat16 keeps 8 significant bits (``rtol=2**-7``).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fdl
from fdl import tree

RTOL32 = 2e-6
RTOL_BF16 = 2.0**-7


def f32(*values: float) -> jax.Array:
    return jnp.asarray(values, jnp.float32)


def close(actual, expected, rtol=RTOL32):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=0)


def grads_and_moments(keys, dtype=jnp.float32):
    """A small two-leaf tree of gradients and one of previous moments (non-negative, like a
    second moment)."""
    g = {
        "w": jax.random.normal(next(keys), (3, 2), dtype),
        "b": jax.random.normal(next(keys), (2,), dtype),
    }
    m = jax.tree.map(
        lambda x: jnp.abs(x),
        {
            "w": jax.random.normal(next(keys), (3, 2), dtype),
            "b": jax.random.normal(next(keys), (2,), dtype),
        },
    )
    return g, m


def test_public_and_exported():
    assert fdl.tree is tree
    assert "tree" in fdl.__all__
    assert set(tree.__all__) == {
        "update_moment",
        "bias_correction",
        "norm",
        "zeros_like",
        "full_like",
        "cast",
        "cast_like",
        "abs_sq",
        "float_dtype",
        "as_float",
        "floats",
    }


# ------------------------------------------------------------------------------------- moments


def test_update_moment_and_bias_correction_by_hand():
    m = tree.update_moment(f32(2.0, -1.0), f32(1.0, 1.0), 0.75, 2)
    close(m, [0.25 * 4 + 0.75 * 1, 0.25 * 1 + 0.75 * 1])
    m1 = tree.update_moment(f32(2.0), f32(1.0), 0.75, 1)
    close(m1, [0.25 * 2 + 0.75 * 1])
    m3 = tree.update_moment(f32(2.0), f32(1.0), 0.5, 3)
    close(m3, [0.5 * 8 + 0.5 * 1])
    corrected = tree.bias_correction(f32(0.5), 0.5, jnp.asarray(3, jnp.int32))
    close(corrected, [0.5 / (1 - 0.5**3)])


def test_bias_correction_stays_finite_in_bfloat16():
    """1 - 0.999 rounds to 0 in bfloat16; the factor is computed in float32 and cast after."""
    moment = jnp.asarray([1e-3], jnp.bfloat16)
    corrected = tree.bias_correction(moment, 0.999, jnp.asarray(1, jnp.int32))
    assert corrected.dtype == jnp.bfloat16
    close(corrected, [1e-3 / (1 - 0.999)], rtol=RTOL_BF16)


def test_bias_correction_with_an_array_decay_keeps_the_moment_dtype():
    moment = {"w": jnp.asarray([0.25], jnp.bfloat16)}
    corrected = tree.bias_correction(moment, jnp.asarray(0.5, jnp.float32), jnp.asarray(2))
    assert corrected["w"].dtype == jnp.bfloat16
    close(corrected["w"], [0.25 / (1 - 0.25)], rtol=RTOL_BF16)


def test_update_moment_mixed_dtypes_accumulate_in_the_promoted_dtype():
    """A bfloat16 moment fed float32 gradients decays in bfloat16 and sums in float32."""
    out = tree.update_moment(f32(2.0), jnp.asarray([1.0], jnp.bfloat16), 0.5, 1)
    assert out.dtype == jnp.float32
    close(out, [0.5 * 2.0 + 0.5 * 1.0])


def test_update_moment_strongly_typed_decay_promotes_as_in_optax():
    """A float32 array decay lifts bfloat16 gradients to float32 before they are scaled (JAX's
    rule, which optax follows); a Python-number decay takes the gradients' bfloat16."""
    g = jnp.asarray([0.3, -1.7, 2.9, 0.011], jnp.bfloat16)
    m = jnp.zeros(4, jnp.float32)
    strong = tree.update_moment(g, m, jnp.asarray(0.9, jnp.float32), 1)
    exact = (1 - np.float32(0.9)) * np.asarray(g, np.float32)  # the float32 product
    np.testing.assert_array_equal(np.asarray(strong), exact)
    with jax.numpy_dtype_promotion("standard"):
        reference = optax.tree.update_moment(g, m, jnp.asarray(0.9, jnp.float32), 1)
        weak_reference = optax.tree.update_moment(g, m, 0.9, 1)
    np.testing.assert_array_equal(np.asarray(strong), np.asarray(reference))
    weak = tree.update_moment(g, m, 0.9, 1)  # (1 - 0.9) * g in bfloat16, then added in float32
    np.testing.assert_array_equal(np.asarray(weak), np.asarray(weak_reference))
    assert not np.array_equal(np.asarray(weak), exact)  # the two rules differ on these values


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("decay", [0.9, 0.999])
def test_update_moment_matches_optax(keys, order, decay):
    g, m = grads_and_moments(keys)
    chex.assert_trees_all_close(
        tree.update_moment(g, m, decay, order),
        optax.tree.update_moment(g, m, decay, order),
        rtol=RTOL32,
    )


@pytest.mark.parametrize("count", [1, 2, 10, 1000])
def test_bias_correction_matches_optax(keys, count):
    _, m = grads_and_moments(keys)
    t = jnp.asarray(count, jnp.int32)
    with jax.numpy_dtype_promotion("standard"):  # optax raises a float to an int32 power
        expected = optax.tree.bias_correction(m, 0.9, t)
    chex.assert_trees_all_close(tree.bias_correction(m, 0.9, t), expected, rtol=RTOL32)


# --------------------------------------------------------------------------------------- norms


def test_norm_by_hand():
    g = {"a": f32(3.0), "b": {"c": f32(4.0, 12.0)}}
    close(tree.norm(g), 13.0)  # sqrt(9 + 16 + 144)
    close(tree.norm(g, squared=True), 169.0)
    empty = tree.norm({})
    assert empty.dtype == jnp.float32 and float(empty) == 0.0


def test_norm_of_mixed_dtypes_sums_in_the_promoted_dtype():
    g = {"a": jnp.asarray([3.0], jnp.bfloat16), "b": f32(4.0)}
    out = tree.norm(g)
    assert out.dtype == jnp.float32
    close(out, 5.0)


@pytest.mark.parametrize("squared", [False, True])
def test_norm_matches_optax(keys, squared):
    g, _ = grads_and_moments(keys)
    close(tree.norm(g, squared=squared), optax.tree.norm(g, squared=squared))


def test_fdl_optim_global_norm_is_the_tree_norm(keys):
    g, _ = grads_and_moments(keys)
    close(fdl.optim.global_norm(g), tree.norm(g))


def test_norm_has_the_gradient_of_the_l2_norm():
    g = {"a": f32(3.0), "b": f32(4.0)}
    grad = jax.grad(tree.norm)(g)
    close(grad["a"], [3.0 / 5.0])
    close(grad["b"], [4.0 / 5.0])


# -------------------------------------------------------------------------- building and casts


def test_zeros_like_and_full_like_by_hand():
    params = {"w": jnp.ones((2, 3), jnp.bfloat16), "b": jnp.ones(3)}
    zeros = tree.zeros_like(params)
    chex.assert_trees_all_equal_shapes_and_dtypes(zeros, params)
    assert all(float(jnp.max(jnp.abs(z))) == 0.0 for z in jax.tree.leaves(zeros))
    halves = tree.full_like(params, 0.5, jnp.float32)
    assert {k: v.dtype for k, v in halves.items()} == {"w": jnp.float32, "b": jnp.float32}
    close(halves["w"], np.full((2, 3), 0.5))


@pytest.mark.parametrize("dtype", [None, jnp.bfloat16, jnp.float32])
def test_zeros_like_and_full_like_match_optax(dtype):
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3, jnp.bfloat16)}
    chex.assert_trees_all_equal(tree.zeros_like(params, dtype), optax.tree.zeros_like(params, dtype))
    chex.assert_trees_all_equal(
        tree.full_like(params, 0.25, dtype), optax.tree.full_like(params, 0.25, dtype)
    )


def test_cast_and_cast_like_match_optax():
    t = {"w": f32(1.5, -2.0), "b": jnp.asarray([3.0], jnp.bfloat16)}
    chex.assert_trees_all_equal(tree.cast(t, jnp.bfloat16), optax.tree.cast(t, jnp.bfloat16))
    assert tree.cast(t, None) is t
    like = {"w": jnp.zeros(2, jnp.bfloat16), "b": jnp.zeros(1, jnp.float32)}
    cast = tree.cast_like(t, like)
    chex.assert_trees_all_equal_dtypes(cast, like)
    chex.assert_trees_all_equal(cast, optax.tree.cast_like(t, like))


def test_every_function_runs_under_jit(keys):
    g, m = grads_and_moments(keys)
    count = jnp.asarray(3, jnp.int32)

    @jax.jit
    def step(g, m):
        m = tree.cast_like(tree.update_moment(g, m, 0.9, 2), m)
        return tree.norm(tree.bias_correction(m, 0.9, count)), tree.zeros_like(m)

    n, z = step(g, m)
    expected = tree.norm(tree.bias_correction(tree.update_moment(g, m, 0.9, 2), 0.9, count))
    close(n, expected)
    chex.assert_trees_all_equal_shapes_and_dtypes(z, m)
