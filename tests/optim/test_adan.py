"""Adan (``fdl.optim.adan``): a few steps against its equations in NumPy float64, every step and
state against optax 0.2.8's on the test problems, the dtypes, and every error message."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.adan import ScaleByAdanState, adan, scale_by_adan
from tests.optim.helpers import assert_same_trajectory, make_problem, run_trajectories
from tests.optim.test_atoms import close, f32, run

STEPS = 200


def adan_by_hand(grads, b1=0.98, b2=0.92, b3=0.99, eps=1e-8, eps_root=0.0):
    """The equations of ``scale_by_adan``'s docstring in float64: the updates of each step and
    the last (m, v, n)."""
    m = v = n = previous = np.zeros_like(np.asarray(grads[0], np.float64))
    outputs = []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64)
        delta = np.zeros_like(g) if t == 1 else g - previous
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * delta
        n = b3 * n + (1 - b3) * (g + (1 - b2) * delta) ** 2
        m_hat, v_hat, n_hat = m / (1 - b1**t), v / (1 - b2**t), n / (1 - b3**t)
        outputs.append((m_hat + (1 - b2) * v_hat) / (np.sqrt(n_hat + eps_root) + eps))
        previous = g
    return outputs, m, v, n


def test_scale_by_adan_by_hand():
    grads = [[0.5, -2.0, 1.0], [1.5, -1.0, -3.0], [-0.5, 0.25, 2.0], [2.0, 2.0, 0.0]]
    kwargs = dict(b1=0.7, b2=0.6, b3=0.9, eps=1e-3, eps_root=1e-2)
    outputs, state = run(scale_by_adan(**kwargs), [f32(*g) for g in grads])
    expected, m, v, n = adan_by_hand(grads, **kwargs)
    for u, e in zip(outputs, expected, strict=True):
        close(u, e)
    assert isinstance(state, ScaleByAdanState) and int(state.t) == 4
    close(state.m, m), close(state.v, v), close(state.n, n), close(state.g, grads[-1])
    # written out: the first step is m_hat / sqrt(n_hat) = g / |g| (no change yet, eps = 0)
    (u,), _ = run(scale_by_adan(eps=0.0), [f32(0.5, -2.0)])
    close(u, [1.0, -1.0])


def test_adan_steps_along_minus_learning_rate_times_the_atom_plus_decay():
    params = f32(1.0, -2.0)
    grads = [f32(0.5, 1.0), f32(-1.0, 2.0)]
    steps, state = run(adan(0.1, weight_decay=0.01), grads, params)
    expected, _, _, _ = adan_by_hand(grads, eps_root=1e-8)
    for u, e in zip(steps, expected, strict=True):
        close(u, -0.1 * (e + 0.01 * np.asarray(params, np.float64)))
    assert isinstance(state[0], ScaleByAdanState)


def test_adan_same_steps_as_optax_in_bfloat16():
    pairs = [
        (
            adan(1e-2, weight_decay=1e-3),
            optax.adan(1e-2, weight_decay=1e-3),
            make_problem("logistic", jnp.bfloat16),
        )
    ]
    [(ours, theirs)] = run_trajectories(pairs, 100, teacher_forcing=True)
    assert_same_trajectory(ours, theirs, "adan bfloat16 on logistic:")
    assert ours["state"][0].n["w"].dtype == jnp.bfloat16 and ours["updates"]["w"].dtype == jnp.bfloat16


def _not_scalars(params):
    """Decay every leaf but the scalars (the MLP's temperature): a mask function."""
    return jax.tree.map(lambda p: jnp.ndim(p) > 0, params)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(learning_rate=1e-2),
        dict(learning_rate=3e-2, b1=0.9, b2=0.5, b3=0.95, eps=1e-3, eps_root=0.0, weight_decay=1e-2),
        dict(learning_rate=1e-2, weight_decay=0.1, mask=_not_scalars),
    ],
    ids=["default", "tuned", "masked_decay"],
)
def test_adan_same_steps_and_states_as_optax(kwargs):
    names = ("rosenbrock", "mlp")
    pairs = [(adan(**kwargs), optax.adan(**kwargs), make_problem(n, jnp.float32)) for n in names]
    for (ours, theirs), name in zip(run_trajectories(pairs, STEPS, teacher_forcing=True), names, strict=True):
        assert_same_trajectory(ours, theirs, f"adan {kwargs} on {name}:")


def test_adan_same_steps_as_optax_on_complex_parameters():
    pairs = [(adan(1e-2), optax.adan(1e-2), make_problem("complex_regression", jnp.complex64))]
    [(ours, theirs)] = run_trajectories(pairs, 100, teacher_forcing=True)
    assert_same_trajectory(ours, theirs, "adan complex64 on complex_regression:")


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("factory", [scale_by_adan, adan])
def test_bad_hyperparameters_are_refused_with_their_messages(factory):
    name = factory.__name__

    def make(**kwargs):
        return factory(0.1, **kwargs) if factory is adan else factory(**kwargs)

    for arg in ("b1", "b2", "b3"):
        with pytest.raises(ValueError, match=rf"^{name}: `{arg}` must be in \[0, 1\), got 1.0$"):
            make(**{arg: 1.0})
    for arg in ("eps", "eps_root"):
        with pytest.raises(ValueError, match=rf"^{name}: `{arg}` must be a non-negative number, got -1.0$"):
            make(**{arg: -1.0})
    with pytest.raises(TypeError, match=rf"^{name}: `b3` must be a real number, got '0.9' \(str\)$"):
        make(b3="0.9")
    if factory is adan:
        with pytest.raises(ValueError, match=r"^adan: `learning_rate` must be a non-negative number"):
            adan(-0.1)
        with pytest.raises(ValueError, match=r"^adan: `weight_decay` must be a non-negative number"):
            adan(0.1, weight_decay=-1.0)


def test_adan_update_without_params_is_refused():
    opt = adan(0.1)
    with pytest.raises(ValueError, match=r"^add_decayed_weights needs the parameters"):
        opt.update(f32(1.0), opt.init(f32(0.0)))


def test_a_gradient_of_another_shape_is_refused():
    opt = scale_by_adan()
    with pytest.raises(
        ValueError, match=r"^scale_by_adan: `updates` leaf .* has shape \(3,\), but its `state.m`"
    ):
        opt.update(jnp.ones(3), opt.init(jnp.zeros(2)))
