"""NovoGrad (``fdl.optim.novograd``): a few steps against its equations in NumPy float64, every
step and state against optax 0.2.8's on the test problems, and every error message."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.novograd import ScaleByNovogradState, novograd, scale_by_novograd
from tests.optim.helpers import (
    assert_same_trajectory,
    assert_same_tree,
    make_problem,
    optax_promotion,
    run_trajectories,
)
from tests.optim.test_atoms import close, f32

STEPS = 200


def novograd_by_hand(grads, params, b1=0.9, b2=0.25, eps=1e-8, eps_root=0.0, weight_decay=0.0):
    """The equations of ``scale_by_novograd``'s docstring in float64, for a dict of leaves:
    the updates of each step and the last (mu, nu)."""
    mu, nu, outputs = None, None, []
    for t, g in enumerate(grads, start=1):
        g = {k: np.asarray(v, np.float64) for k, v in g.items()}
        sq = {k: float(np.sum(v * v)) for k, v in g.items()}
        nu = sq if t == 1 else {k: b2 * nu[k] + (1 - b2) * sq[k] for k in g}
        d = {
            k: g[k] / (np.sqrt(nu[k] + eps_root) + eps) + weight_decay * np.asarray(params[k], np.float64)
            for k in g
        }
        mu = d if t == 1 else {k: b1 * mu[k] + d[k] for k in g}
        outputs.append(mu)
    return outputs, mu, nu


def _run(opt, grads, params, jit=False):
    state = opt.init(params)
    update = jax.jit(opt.update) if jit else opt.update
    outputs = []
    for g in grads:
        u, state = update(g, state, params)
        outputs.append(u)
    return outputs, state


def test_scale_by_novograd_by_hand():
    params = {"w": f32(1.0, -2.0, 0.5), "b": f32(3.0)}
    grads = [
        {"w": f32(0.3, -0.4, 1.2), "b": f32(2.0)},
        {"w": f32(-1.0, 0.5, 0.1), "b": f32(-0.5)},
        {"w": f32(0.2, 0.2, -2.0), "b": f32(1.0)},
    ]
    kwargs = dict(b1=0.8, b2=0.5, eps=1e-3, eps_root=1e-2, weight_decay=0.1)
    outputs, state = _run(scale_by_novograd(**kwargs), grads, params)
    expected, mu, nu = novograd_by_hand(grads, params, **kwargs)
    for u, e in zip(outputs, expected, strict=True):
        close(u["w"], e["w"]), close(u["b"], e["b"])
    assert isinstance(state, ScaleByNovogradState) and int(state.count) == 3
    close(state.mu["w"], mu["w"]), close(state.nu["w"], nu["w"]), close(state.nu["b"], nu["b"])
    assert state.nu["w"].shape == () and state.nu["w"].dtype == jnp.float32
    # written out: the first step is g / |g| (no decay, no eps), n_1 = |g|^2
    (u,), state = _run(scale_by_novograd(eps=0.0), [{"w": f32(3.0, 4.0)}], {"w": f32(0.0, 0.0)})
    close(u["w"], [0.6, 0.8]), close(state.nu["w"], 25.0)


def test_novograd_steps_along_minus_learning_rate_times_the_atom():
    params = {"w": f32(1.0, -2.0)}
    grads = [{"w": f32(0.5, 1.0)}, {"w": f32(-1.0, 2.0)}]
    steps, state = _run(novograd(0.1, weight_decay=0.01), grads, params)
    expected, _, _ = novograd_by_hand(grads, params, eps=1e-6, weight_decay=0.01)
    for u, e in zip(steps, expected, strict=True):
        close(u["w"], -0.1 * e["w"])
    assert isinstance(state[0], ScaleByNovogradState)


def test_mu_dtype_is_stored_and_updates_keep_the_gradients_dtype():
    params = {"w": f32(1.0, 2.0)}
    grads = [{"w": f32(0.3, 0.4)}, {"w": f32(0.1, -0.2)}]
    # both compiled: XLA computes the bfloat16 product `b1 * m` unrounded inside the fused
    # sum. optax's `lax.cond` is always compiled; fdl's eager operations would round it first.
    outputs, state = _run(scale_by_novograd(mu_dtype=jnp.bfloat16), grads, params, jit=True)
    with optax_promotion():
        theirs, optax_state = _run(optax.scale_by_novograd(mu_dtype=jnp.bfloat16), grads, params, jit=True)
    assert state.mu["w"].dtype == jnp.bfloat16 and outputs[1]["w"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(outputs[1]["w"]), np.asarray(state.mu["w"], np.float32))
    for u, v in zip(outputs, theirs, strict=True):  # optax's values, in optax's bfloat16
        assert v["w"].dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(u["w"]), np.asarray(v["w"], np.float32))
    assert_same_tree(state, optax_state, "novograd mu_dtype=bfloat16 state:")
    # integer parameters: a float state
    assert scale_by_novograd().init(jnp.zeros(2, jnp.int32)).nu.dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(learning_rate=1e-2),
        dict(learning_rate=3e-2, b1=0.5, b2=0.9, eps=1e-3, eps_root=1e-4, weight_decay=1e-2),
    ],
    ids=["default", "tuned"],
)
def test_novograd_same_steps_and_states_as_optax(kwargs):
    names = ("rosenbrock", "mlp")
    pairs = [(novograd(**kwargs), optax.novograd(**kwargs), make_problem(n, jnp.float32)) for n in names]
    for (ours, theirs), name in zip(run_trajectories(pairs, STEPS, teacher_forcing=True), names, strict=True):
        assert_same_trajectory(ours, theirs, f"novograd {kwargs} on {name}:")


def test_novograd_same_steps_as_optax_in_bfloat16():
    pairs = [(novograd(1e-2), optax.novograd(1e-2), make_problem("logistic", jnp.bfloat16))]
    [(ours, theirs)] = run_trajectories(pairs, 100, teacher_forcing=True)
    assert_same_trajectory(ours, theirs, "novograd bfloat16 on logistic:")


def test_novograd_same_steps_as_optax_on_complex_parameters():
    pairs = [(novograd(1e-2), optax.novograd(1e-2), make_problem("complex_regression", jnp.complex64))]
    [(ours, theirs)] = run_trajectories(pairs, 100, teacher_forcing=True)
    assert_same_trajectory(ours, theirs, "novograd complex64 on complex_regression:")


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("factory", [scale_by_novograd, novograd])
def test_bad_hyperparameters_are_refused_with_their_messages(factory):
    name = factory.__name__

    def make(**kwargs):
        return factory(0.1, **kwargs) if factory is novograd else factory(**kwargs)

    with pytest.raises(ValueError, match=rf"^{name}: `b1` must be in \[0, 1\), got 1.0$"):
        make(b1=1.0)
    with pytest.raises(ValueError, match=rf"^{name}: `b2` must be in \[0, 1\), got -0.5$"):
        make(b2=-0.5)
    for arg in ("eps", "eps_root", "weight_decay"):
        with pytest.raises(ValueError, match=rf"^{name}: `{arg}` must be a non-negative number, got -1.0$"):
            make(**{arg: -1.0})
    with pytest.raises(
        TypeError, match=rf"^{name}: `weight_decay` must be a real number, got '0.1' \(str\)$"
    ):
        make(weight_decay="0.1")
    if factory is novograd:
        with pytest.raises(ValueError, match=r"^novograd: `learning_rate` must be a non-negative number"):
            novograd(-0.1)


def test_update_without_params_is_refused():
    opt = scale_by_novograd()
    with pytest.raises(
        ValueError, match=r"^scale_by_novograd needs the parameters \(for `weight_decay`\): call"
    ):
        opt.update(f32(1.0), opt.init(f32(0.0)))


def test_a_real_mu_dtype_for_complex_parameters_is_refused():
    opt = scale_by_novograd(mu_dtype=jnp.float32)
    with pytest.raises(
        ValueError, match=r"^mu_dtype=float32 is a real dtype, but the parameter at \(root\) is complex64"
    ):
        opt.init(jnp.zeros(2, jnp.complex64))


def test_a_gradient_of_another_shape_is_refused():
    opt = scale_by_novograd()
    with pytest.raises(
        ValueError, match=r"^scale_by_novograd: `updates` leaf .* has shape \(3,\), but its `params`"
    ):
        opt.update(jnp.ones(3), opt.init(jnp.zeros(2)), jnp.zeros(2))
