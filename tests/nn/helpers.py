"""The layer contract as one reusable check, for every test module of a layer family.

``check_layer_contract(factory, shape, keys, ...)`` builds the layer and asserts, for one example
shape:

1. the declared output shape equals the actual one, with no, one and two leading batch axes,
   and ``apply`` returns a state of the same structure as ``init``'s;
2. ``jax.vmap`` over single examples equals the batched call;
3. ``jax.jit(apply)`` equals the eager call;
4. reverse- and forward-mode derivatives match central finite differences
   (``jax.test_util.check_grads``) with respect to the input and to every parameter, in float64;
5. ``init`` is deterministic in its key and traces with an abstract key (``jax.eval_shape``).

``test_layer_contract.py`` runs it on the foundation's layers; each later family (conv,
normalization, recurrent, attention) runs it on its own table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads


def away_from_kinks(x):
    """Push inputs at least 0.1 away from 0, where relu-like functions have a kink."""
    return x + 0.1 * jnp.sign(x)


def _build(factory, shape, key, dtype=jnp.float32):
    layer = factory()
    params, state, out_shape = layer.init(key, shape)
    params = jax.tree.map(lambda p: p.astype(dtype), params)
    state = jax.tree.map(lambda s: s.astype(dtype) if jnp.issubdtype(s.dtype, jnp.floating) else s, state)
    return layer, params, state, out_shape


def _normal_input(key, shape, dtype):
    """Standard normal draws, seeded by ``key``, made by NumPy: a ``jax.random`` draw compiles a
    program per shape, which would be most of a contract check's time."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))
    return jnp.asarray(rng.standard_normal(shape), dtype)


def check_layer_contract(
    factory: Callable[[], Any],
    shape: Any,
    keys: Any,
    *,
    make_input: Callable[[jax.Array, tuple, Any], Any] = _normal_input,
    differentiable_input: bool = True,
    grad_tol: float = 1e-6,
    rtol: float = 1e-6,
) -> None:
    """Run the five checks of the module docstring on ``factory()`` with example ``shape``.

    Args:
      factory: builds a fresh layer.
      shape: the per-example input shape given to ``init``.
      keys: the suite's key generator fixture.
      make_input: ``make_input(key, full_shape, dtype)`` draws an input (integer token ids for
        an embedding, say).
      differentiable_input: whether to check gradients with respect to the input.
      grad_tol: ``atol`` and ``rtol`` of the finite-difference check (float64).
      rtol: tolerance of the vmap and jit comparisons (float32).
    """
    layer, params, state, out_shape = _build(factory, shape, next(keys))
    compiled_apply = jax.jit(layer.apply)  # one compilation per shape instead of one per op
    for batch in ((), (7,), (2, 3)):
        x = make_input(next(keys), batch + tuple(shape), jnp.float32)
        y, new_state = compiled_apply(params, state, x)
        assert y.shape == batch + tuple(out_shape), f"batch {batch}: {y.shape} vs {out_shape}"
        chex.assert_trees_all_equal_structs(new_state, state)

    x = make_input(next(keys), (5, *shape), jnp.float32)
    batched, _ = layer.apply(params, state, x)
    mapped = jax.jit(jax.vmap(lambda xi: layer.apply(params, state, xi)[0]))(x)
    np.testing.assert_allclose(mapped, batched, rtol=rtol, atol=rtol, err_msg="vmap vs batched")
    compiled, _ = compiled_apply(params, state, x)
    np.testing.assert_allclose(compiled, batched, rtol=rtol, atol=rtol, err_msg="jit vs eager")

    with jax.enable_x64(True):
        layer, params, state, _ = _build(factory, shape, next(keys), jnp.float64)
        x = make_input(next(keys), (3, *shape), jnp.float64)
        if differentiable_input:
            x = away_from_kinks(x)
            # jitted: one compilation per shape instead of one per op (the checks are unchanged)
            wrt_x = jax.jit(functools.partial(lambda p, xi: layer.apply(p, state, xi)[0], params))
            check_grads(wrt_x, (x,), order=1, modes=("fwd", "rev"), eps=1e-6, atol=grad_tol, rtol=grad_tol)
        if jax.tree.leaves(params):
            wrt_params = jax.jit(lambda p: layer.apply(p, state, x)[0])
            check_grads(
                wrt_params,
                (params,),
                order=1,
                modes=("fwd", "rev"),
                eps=1e-6,
                atol=grad_tol,
                rtol=grad_tol,
            )

    layer = factory()
    key = next(keys)
    first = layer.init(key, shape)
    chex.assert_trees_all_equal(first, layer.init(key, shape))
    out = jax.eval_shape(lambda k: layer.init(k, shape)[:2], key)
    chex.assert_trees_all_equal_shapes_and_dtypes(out, first[:2])
