"""scale_gradient: the identity forward, the gradient times ``scale`` backward; against optax,
by hand, dtypes, traced scales, and its error."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
import pytest

from fdl.optim.gradient_scaling import scale_gradient
from tests.optim.helpers import assert_same_tree, optax_promotion


def _loss(scale_fn, scale):
    def loss(params):
        scaled = scale_fn(params, scale)
        return jnp.sum(scaled["w"] ** 2) + jnp.sum(jnp.sin(scaled["b"]))

    return loss


PARAMS = {"w": jnp.asarray([1.0, -2.0]), "b": jnp.asarray([0.5])}


@pytest.mark.parametrize("scale", [0.5, -1.0, 0.0, 1.0, 3])
def test_same_gradients_as_optax_and_by_hand(scale):
    ours = jax.grad(_loss(scale_gradient, scale))(PARAMS)
    with optax_promotion():
        theirs = jax.grad(_loss(optax.scale_gradient, scale))(PARAMS)
    assert_same_tree(ours, theirs, f"scale_gradient {scale}")
    assert ours["w"].tolist() == [scale * 2.0, scale * -4.0]
    assert float(ours["b"][0]) == pytest.approx(scale * float(jnp.cos(0.5)), rel=1e-6)


def test_forward_is_the_identity_and_dtypes_are_kept():
    tree = {"w": jnp.asarray([1.5], jnp.bfloat16), "v": jnp.asarray([2.0])}
    out = scale_gradient(tree, 0.25)
    assert out["w"].dtype == jnp.bfloat16 and out["w"].tolist() == [1.5] and out["v"].tolist() == [2.0]
    grads = jax.grad(lambda t: jnp.sum(scale_gradient(t, 0.25)["w"]).astype(jnp.float32))(tree)
    assert grads["w"].dtype == jnp.bfloat16 and grads["w"].tolist() == [0.25]
    assert scale_gradient(tree, 1.0) is tree


def test_a_traced_scale_works_and_gets_no_gradient():
    def loss(x, scale):
        return jnp.sum(scale_gradient(x, scale) ** 2)

    grad = jax.jit(jax.grad(loss))(jnp.asarray([3.0]), 0.5)
    assert grad.tolist() == [3.0]
    assert float(jax.jit(jax.grad(loss, argnums=1))(jnp.asarray([3.0]), 0.5)) == 0.0
    assert jax.jit(jax.grad(loss))(jnp.asarray([3.0]), 0.0).tolist() == [0.0]


def test_a_non_numeric_scale_is_refused():
    with pytest.raises(
        TypeError, match=r"^scale_gradient: `scale` must be a real number, got '0.5' \(str\)$"
    ):
        scale_gradient(jnp.ones(1), "0.5")
