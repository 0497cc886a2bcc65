"""The differences optax's own suite found in fdl.optim (issue 16, points 1-7), each fixed and
proven here against optax directly, beside that suite (tests/optax_suite)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fdl.optim as fo
from fdl.tree import abs_sq, norm

# every optimizer whose second moment or norm squares the gradient, and plain descent
COMPLEX_OPTIMIZERS = ["adam", "adamw", "amsgrad", "nadam", "nadamw", "rmsprop", "adagrad", "sgd"]


def _run(opt, params, grad_fn, steps, promotion="strict"):
    """``steps`` updates of ``opt`` from ``params``: the list of (updates, state) per step.
    fdl runs under the suite's strict promotion; optax needs JAX's standard rules."""
    with jax.numpy_dtype_promotion(promotion):
        state = opt.init(params)
        out = []
        for _ in range(steps):
            updates, state = opt.update(grad_fn(params), state, params)
            params = fo.apply_updates(params, updates)
            out.append((updates, state))
    return out


@pytest.mark.parametrize("dtype", [jnp.complex64, jnp.complex128])
@pytest.mark.parametrize("name", COMPLEX_OPTIMIZERS)
def test_complex_parameters_follow_optax_step_by_step(name, dtype):
    """|g|^2 = g conj(g), not g*g: 50 steps on a complex parabola, updates and states as optax's."""
    with jax.enable_x64(dtype == jnp.complex128):
        target = jnp.asarray([1 + 1j, -2 + 0.5j, 0.3j], dtype)
        start = jnp.asarray([0.0, 1.0, -1j], dtype)

        def grad(p):  # the conjugate (Wirtinger) gradient JAX gives of sum |p - target|^2
            return jnp.conj(jax.grad(lambda q: jnp.sum(abs_sq(q - target)), holomorphic=False)(p))

        grad = jax.jit(grad)
        ours = _run(getattr(fo, name)(0.05), start, grad, 50)
        theirs = _run(getattr(optax, name)(0.05), start, grad, 50, "standard")
        tol = 1e-6 if dtype == jnp.complex64 else 1e-12
        for step, ((u, s), (u_ref, s_ref)) in enumerate(zip(ours, theirs, strict=True)):
            np.testing.assert_allclose(u, u_ref, rtol=tol, atol=tol, err_msg=f"{name} updates, step {step}")
            for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(s_ref), strict=True):
                assert jnp.result_type(a) == jnp.result_type(b), f"{name} state dtype, step {step}"
                np.testing.assert_allclose(a, b, rtol=tol, atol=tol, err_msg=f"{name} state, step {step}")


def test_the_one_step_of_the_issue():
    g = jnp.asarray([1j, 1 + 1j], jnp.complex64)
    opt = fo.adam(0.1)
    updates, _ = opt.update(g, opt.init(jnp.zeros(2, jnp.complex64)))
    np.testing.assert_allclose(updates, [-0.1j, -0.0707107 - 0.0707107j], rtol=1e-5)
    assert float(norm({"g": g})) == pytest.approx(np.sqrt(3.0))


def test_a_zero_decay_rate_is_a_constant_schedule():
    schedule = jax.jit(fo.exponential_decay(1.0, 2, decay_rate=0.0))
    assert [float(schedule(t)) for t in range(5)] == [1.0] * 5


def test_add_decayed_weights_passes_none_updates_through():
    weights = (jnp.ones(2), {"a": jnp.ones(2), "b": jnp.ones(2)})
    decay = fo.add_decayed_weights(0.1)
    assert decay.update(None, decay.init(weights), weights)[0] is None
    updates = (jnp.ones(2), {"a": jnp.ones(2), "b": None})
    ours = decay.update(updates, decay.init(weights), weights)[0]
    with jax.numpy_dtype_promotion("standard"):
        theirs = optax.add_decayed_weights(0.1).update(updates, optax.EmptyState(), weights)[0]
    assert ours[1]["b"] is None and theirs[1]["b"] is None
    np.testing.assert_array_equal(ours[1]["a"], theirs[1]["a"])
    with pytest.raises(ValueError, match="add_decayed_weights: `updates` must have the tree structure"):
        decay.update({"x": jnp.ones(2)}, decay.init(weights), weights)


def test_chain_passes_extra_arguments_only_to_members_that_take_them():
    """optax's own scale_by_adam has no **kwargs; inside fdl's chain it no longer sees `loss`."""
    params = {"w": jnp.ones(3)}
    seen = {}

    def update_with_extras(updates, state, params=None, **extra_args):
        seen.update(extra_args)
        return updates, state

    recorder = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update_with_extras)
    opt = fo.chain(optax.scale_by_adam(), recorder, fo.scale(-0.1))
    reference = optax.chain(optax.scale_by_adam(), optax.scale(-0.1))
    with jax.numpy_dtype_promotion("standard"):  # optax's scale_by_adam needs JAX's default rules
        updates, _ = opt.update(params, opt.init(params), params, loss=jnp.asarray(2.0))
        expected, _ = reference.update(params, reference.init(params), params)
    np.testing.assert_array_equal(updates["w"], expected["w"])
    assert set(seen) == {"loss"}
    assert isinstance(opt, optax.GradientTransformationExtraArgs)
    assert isinstance(fo.adam(1e-3), optax.GradientTransformation)


def test_masked_treats_a_callable_pytree_as_a_mask_tree():
    @dataclasses.dataclass
    class Module:  # an Equinox-style module: a pytree that is also callable
        w: object

        def __call__(self, x):
            return x

    jax.tree_util.register_pytree_node(Module, lambda m: ((m.w,), None), lambda _, c: Module(*c))
    params = Module(jnp.asarray([1.0, 2.0]))
    for mask, factor in ((Module(False), 1.0), (Module(True), -0.5)):
        opt = fo.masked(fo.scale(-0.5), mask)
        updates, _ = opt.update(params, opt.init(params))
        np.testing.assert_array_equal(updates.w, factor * params.w)


def test_optax_map_params_sees_through_fdl_masked_states():
    params = {"a": jnp.ones(2), "b": {"c": jnp.ones(3)}}
    opt = fo.masked(fo.adam(1e-3), {"a": True, "b": False})
    state = opt.init(params)
    doubled = optax.tree.map_params(opt, lambda x: x + 1, state)
    np.testing.assert_array_equal(doubled.inner_state[0].nu["a"], state.inner_state[0].nu["a"] + 1)


@pytest.mark.parametrize(
    "name", ["adam", "adamw", "rmsprop", "lion", "adagrad", "sgd", "amsgrad", "adadelta"]
)
@pytest.mark.parametrize("kind", ["python", "int32"])
def test_integer_parameters_get_float_updates_and_state(name, kind):
    """Python-number and int32 parameters: float updates and float state (never truncated to
    0), equal to those of the same values as float32; the first update equals optax's (not for
    adagrad: optax's refuses Python numbers, and for int32 it keeps an int32 accumulator, whose
    initial value 0.1 truncates to 0). Parameters keep their own dtype in ``apply_updates``, as
    in optax, so only the step from the same values is compared."""
    values = {"a": 1, "b": 2}
    params = values if kind == "python" else {k: jnp.asarray([v, v + 1]) for k, v in values.items()}
    as_float = jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), params)
    opt = getattr(fo, name)(1e-3)
    (ours,) = _run(opt, params, lambda p: p, 1)
    (floats,) = _run(opt, as_float, lambda p: p, 1)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(floats), strict=True):
        assert jnp.result_type(a) == jnp.result_type(b)
        np.testing.assert_array_equal(a, b)
    assert all(jnp.result_type(x) == jnp.float32 for x in jax.tree.leaves(ours[0]))
    assert any(np.any(np.asarray(x) != 0) for x in jax.tree.leaves(ours[0]))
    if name != "adagrad":
        reference = getattr(optax, name)(1e-3)
        with jax.numpy_dtype_promotion("standard"):
            first, _ = reference.update(params, reference.init(params), params)
        for a, b in zip(jax.tree.leaves(ours[0]), jax.tree.leaves(first), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
