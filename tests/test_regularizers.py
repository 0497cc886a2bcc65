"""Tests for fdl.regularizers against NumPy sums written out leaf by leaf."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from fdl.regularizers import l1_penalty, l2_penalty, skip_biases

FLOAT32_EPS = float(np.finfo(np.float32).eps)
# Summing n non-negative float32 terms (each rounded once when squared) in any order has relative
# error at most (n + 1) * eps_32; the params fixture has 54 entries.
N_ENTRIES = 54
RTOL = (N_ENTRIES + 1) * FLOAT32_EPS


@pytest.fixture
def params(key):
    """A nested tree like a model's: a dense layer, a tuple of two blocks, and a scalar leaf."""
    # One draw cut into the leaves (one compilation instead of one per leaf shape).
    pool = iter(np.asarray(jax.random.normal(key, (64,), jnp.float32)).tolist())

    def draw(shape):
        values = [next(pool) for _ in range(int(np.prod(shape)))]
        return jnp.asarray(np.reshape(np.array(values, np.float32), shape))

    return {
        "dense": {"w": draw((3, 4)), "b": draw((4,))},
        "blocks": ({"w": draw((4, 5)), "b": draw((5,))}, {"w": draw((5, 2)), "b": draw((2,))}),
        "temperature": draw(()),
    }


def _np(x):
    return np.asarray(x, dtype=np.float64)


def _leaves_by_name(p):
    """The leaves of the ``params`` fixture, listed by hand (independent of jax's flattening)."""
    return {
        "dense.w": p["dense"]["w"],
        "dense.b": p["dense"]["b"],
        "blocks0.w": p["blocks"][0]["w"],
        "blocks0.b": p["blocks"][0]["b"],
        "blocks1.w": p["blocks"][1]["w"],
        "blocks1.b": p["blocks"][1]["b"],
        "temperature": p["temperature"],
    }


def _reference_l2(p, names):
    leaves = _leaves_by_name(p)
    return 0.5 * sum(float(np.sum(_np(leaves[n]) ** 2)) for n in names)


def _reference_l1(p, names):
    leaves = _leaves_by_name(p)
    return sum(float(np.sum(np.abs(_np(leaves[n])))) for n in names)


ALL = ["dense.w", "dense.b", "blocks0.w", "blocks0.b", "blocks1.w", "blocks1.b", "temperature"]
WEIGHTS = ["dense.w", "blocks0.w", "blocks1.w", "temperature"]


def test_skip_biases_marks_exactly_the_b_leaves(params):
    expected = {
        "dense": {"w": True, "b": False},
        "blocks": ({"w": True, "b": False}, {"w": True, "b": False}),
        "temperature": True,
    }
    assert skip_biases(params) == expected


def test_skip_biases_only_looks_at_dict_keys():
    # A tuple position or a key merely containing "b" is not a bias.
    params = {
        "bias_like": jnp.ones(2),
        "layers": (jnp.ones(2), {"b": jnp.ones(1)}),
        "b2": jnp.ones(1),
    }
    assert skip_biases(params) == {"b2": True, "bias_like": True, "layers": (True, {"b": False})}


@pytest.mark.parametrize("penalty, reference", [(l2_penalty, _reference_l2), (l1_penalty, _reference_l1)])
def test_values_without_mask(params, penalty, reference):
    value = penalty(params)
    chex.assert_shape(value, ())
    chex.assert_type(value, jnp.float32)
    np.testing.assert_allclose(float(value), reference(params, ALL), rtol=RTOL)


@pytest.mark.parametrize("penalty, reference", [(l2_penalty, _reference_l2), (l1_penalty, _reference_l1)])
def test_values_with_skip_biases_pytree_and_callable(params, penalty, reference):
    expected = reference(params, WEIGHTS)
    np.testing.assert_allclose(float(penalty(params, mask=skip_biases(params))), expected, rtol=RTOL)
    np.testing.assert_allclose(float(penalty(params, mask=skip_biases)), expected, rtol=RTOL)


@pytest.mark.parametrize("penalty, reference", [(l2_penalty, _reference_l2), (l1_penalty, _reference_l1)])
def test_values_with_hand_written_mask(params, penalty, reference):
    mask = {
        "dense": {"w": False, "b": True},
        "blocks": ({"w": True, "b": False}, {"w": False, "b": False}),
        "temperature": True,
    }
    expected = reference(params, ["dense.b", "blocks0.w", "temperature"])
    np.testing.assert_allclose(float(penalty(params, mask=mask)), expected, rtol=RTOL)
    # The same selection as a callable mask, computed from the params.
    only_first_block_w = lambda p: jax.tree_util.tree_map_with_path(
        lambda path, _: (
            jax.tree_util.keystr(path) in ("['blocks'][0]['w']", "['dense']['b']", "['temperature']")
        ),
        p,
    )
    np.testing.assert_allclose(float(penalty(params, mask=only_first_block_w)), expected, rtol=RTOL)


@pytest.mark.parametrize("penalty", [l2_penalty, l1_penalty])
def test_all_false_mask_and_empty_tree_give_zero(params, penalty):
    nothing = jax.tree_util.tree_map(lambda _: False, params)
    assert float(penalty(params, mask=nothing)) == 0.0
    assert float(penalty({})) == 0.0
    chex.assert_type(penalty({}), jnp.float32)


def test_hand_computed_small_case():
    params = {"w": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "b": jnp.array([3.0])}
    assert float(l2_penalty(params)) == 0.5 * (1 + 4 + 0.25 + 0 + 9)
    assert float(l1_penalty(params)) == 1 + 2 + 0.5 + 0 + 3
    assert float(l2_penalty(params, mask=skip_biases)) == 0.5 * (1 + 4 + 0.25)


def _masked(p, mask, fn):
    """Expected gradient: fn(leaf) on masked leaves, zeros elsewhere (built in NumPy)."""
    return jax.tree_util.tree_map(lambda leaf, m: fn(_np(leaf)) if m else np.zeros(np.shape(leaf)), p, mask)


def test_l2_gradient_is_w_on_masked_leaves(params):
    mask = skip_biases(params)
    grads = jax.grad(l2_penalty)(params, mask)
    chex.assert_trees_all_close(jax.tree_util.tree_map(_np, grads), _masked(params, mask, lambda w: w))
    grads_all = jax.grad(l2_penalty)(params)
    chex.assert_trees_all_close(grads_all, params)


def test_l1_gradient_is_sign_w_on_masked_leaves(params):
    mask = skip_biases(params)
    grads = jax.grad(l1_penalty)(params, mask)
    chex.assert_trees_all_close(jax.tree_util.tree_map(_np, grads), _masked(params, mask, np.sign))


# Finite-difference step. Central differences are exact for a quadratic (L2) and for a function that
# is linear between the steps (L1 away from 0), so the step adds no truncation error; a larger one
# only shrinks the float32 round-off of the penalty (ulp(~40) / (2 * step)). jax's default step
# (1e-4 in float32) gives round-off near 2e-2, above check_grads' own float32 tolerance.
FD_STEP = 1e-2


def test_l1_gradient_at_zero_is_zero():
    # sign(0) = 0: the minimum-norm subgradient of |w| at 0, as documented.
    params = {"w": jnp.array([0.0, -1.5, 2.0, 0.0]), "b": jnp.zeros(2)}
    grads = jax.grad(l1_penalty)(params)
    chex.assert_trees_all_equal(grads, {"w": jnp.array([0.0, -1.0, 1.0, 0.0]), "b": jnp.zeros(2)})
    assert float(l1_penalty(params)) == 3.5


def test_check_grads_l2(params):
    f = jax.jit(lambda p: l2_penalty(p, skip_biases))
    check_grads(f, (params,), order=2, modes=("fwd", "rev"), eps=FD_STEP)


def test_check_grads_l1_away_from_zero(params):
    # |w| is smooth away from 0: push every entry at least 0.5 from it, 50 steps away.
    away = jax.tree_util.tree_map(lambda w: w + 0.5 * jnp.where(w < 0, -1.0, 1.0), params)
    f = jax.jit(lambda p: l1_penalty(p, skip_biases))
    check_grads(f, (away,), order=2, modes=("fwd", "rev"), eps=FD_STEP)


def test_jit_matches_eager(params):
    for penalty in (l2_penalty, l1_penalty):
        jitted = jax.jit(lambda p, f=penalty: f(p, skip_biases))
        np.testing.assert_allclose(float(jitted(params)), float(penalty(params, skip_biases)), rtol=RTOL)


def test_bfloat16_leaves_accumulate_in_float32():
    # 4097 ones: 0.5 * 4097 = 2048.5 needs 12 significant bits; bfloat16 has 8 (its neighbours of
    # 2048.5 are 2048 and 2064), float32 holds it exactly.
    params = {"w": jnp.ones((4097,), jnp.bfloat16), "b": jnp.full((3,), -2.0, jnp.bfloat16)}
    l2 = l2_penalty(params)
    chex.assert_type(l2, jnp.float32)
    assert float(l2) == 0.5 * 4097 + 0.5 * 3 * 4.0
    assert float(l2_penalty(params, skip_biases)) == 2048.5
    l1 = l1_penalty(params)
    chex.assert_type(l1, jnp.float32)
    assert float(l1) == 4097 + 6


def test_bfloat16_random_leaves_match_numpy(keys):
    params = {
        "w": jax.random.normal(next(keys), (30, 20), jnp.float32).astype(jnp.bfloat16),
        "b": jax.random.normal(next(keys), (20,), jnp.float32).astype(jnp.bfloat16),
    }
    np.testing.assert_allclose(
        float(l2_penalty(params)),
        0.5 * sum(float(np.sum(_np(v) ** 2)) for v in params.values()),
        rtol=(30 * 20 + 20 + 1) * FLOAT32_EPS,
    )
    np.testing.assert_allclose(
        float(l1_penalty(params)),
        sum(float(np.sum(np.abs(_np(v)))) for v in params.values()),
        rtol=(30 * 20 + 20 + 1) * FLOAT32_EPS,
    )
    grads = jax.grad(l2_penalty)(params)
    chex.assert_trees_all_equal_dtypes(grads, params)
    chex.assert_trees_all_equal(grads, params)  # d/dw (w^2 / 2) = w, exactly representable


def test_python_scalar_leaf():
    assert float(l2_penalty({"w": 3.0, "b": jnp.ones(1)}, skip_biases)) == 4.5


def test_mask_structure_mismatch_prints_both_structures(params):
    mask = {"dense": {"w": True}, "blocks": (True, True), "temperature": True}
    with pytest.raises(ValueError) as info:
        l2_penalty(params, mask)
    message = str(info.value)
    assert "`mask` must have the same tree structure as `params`, with one bool per leaf" in message
    # Both leaf listings and both structures appear.
    for path in ("    dense/b\n", "    blocks/0/w\n", "    blocks/1/b\n", "    temperature\n"):
        assert path in message
    assert "    blocks/1\n" in message  # the mask's leaf at the tuple position
    assert message.count("structure: PyTreeDef(") == 2
    assert str(jax.tree_util.tree_structure(params)) in message
    assert str(jax.tree_util.tree_structure(mask)) in message


def test_callable_mask_returning_wrong_structure_raises(params):
    with pytest.raises(ValueError, match=re.escape("`mask` must have the same tree structure as `params`")):
        l1_penalty(params, mask=lambda p: True)


def test_mask_leaf_must_be_bool(params):
    mask = jax.tree_util.tree_map(lambda _: 1, params)
    with pytest.raises(
        ValueError,
        match=re.escape("`mask` leaves must be Python bools, got 1 at blocks/0/b"),
    ):
        l2_penalty(params, mask)


def test_integer_leaf_must_be_masked_out():
    params = {"w": jnp.ones(3), "step": jnp.array(4, jnp.int32)}
    with pytest.raises(
        ValueError, match=re.escape("the leaf at step has dtype int32; exclude it with `mask`")
    ):
        l2_penalty(params)
    assert float(l2_penalty(params, {"w": True, "step": False})) == 1.5
