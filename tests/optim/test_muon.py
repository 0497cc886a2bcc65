"""Muon (``fdl.optim.muon``): the Newton-Schulz iteration and a step by hand in NumPy float64,
every step against ``optax.contrib`` (the atom on matrices and tensors, the alias with its
AdamW fallback on the MLP and logistic problems), and every error message."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.base import EmptyState
from fdl.optim.muon import (
    MuonDimensionNumbers,
    MuonState,
    muon,
    orthogonalize_via_newton_schulz,
    scale_by_muon,
    scale_by_shape,
)
from tests.optim.helpers import (
    assert_same_trajectory,
    assert_same_tree,
    make_problem,
    optax_promotion,
    run_trajectories,
)
from tests.optim.test_atoms import close, run

STEPS = 100
COEFFS = (3.4445, -4.7750, 2.0315)


def _ns_by_hand(x, coeffs, steps):
    x = x / (np.linalg.norm(x) + 1e-8)
    transposed = x.shape[0] > x.shape[1]
    x = x.T if transposed else x
    for _ in range(steps):
        a = x @ x.T
        x = coeffs[0] * x + (coeffs[1] * a + coeffs[2] * a @ a) @ x
    return x.T if transposed else x


def test_newton_schulz_by_hand_and_its_singular_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5))
    for matrix in (x, x.T):
        out = orthogonalize_via_newton_schulz(
            jnp.asarray(matrix, jnp.float32), jnp.asarray(COEFFS), ns_steps=5
        )
        close(out, _ns_by_hand(matrix, COEFFS, 5), rtol=2e-5)
        singular = np.linalg.svd(np.asarray(out, np.float64), compute_uv=False)
        assert singular.min() > 0.6 and singular.max() < 1.25  # about orthogonal, as promised


def test_scale_by_muon_two_steps_by_hand():
    beta = 0.5
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=(2, 3)) for _ in range(2)]
    m, expected = np.zeros((2, 3)), []
    for t, g in enumerate(grads, start=1):
        m = beta * m + (1 - beta) * g
        m_hat = beta * m / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t)
        expected.append(_ns_by_hand(m_hat, COEFFS, 3))
    updates, state = run(scale_by_muon(ns_steps=3, beta=beta), [jnp.asarray(g, jnp.float32) for g in grads])
    for u, e in zip(updates, expected, strict=True):
        close(u, e, rtol=2e-5)
    assert isinstance(state, MuonState) and int(state.count) == 2
    close(state.mu, m)
    close(state.ns_coeffs, COEFFS)


def test_scale_by_shape_width_and_consistent_rms():
    (u,), state = run(scale_by_shape(), [jnp.ones((2, 8))])
    close(u, np.full((2, 8), 2.0))  # sqrt(max(1, 8 / 2))
    assert state == EmptyState()
    (u,), _ = run(scale_by_shape(consistent_rms=0.5), [jnp.ones((8, 2))])
    close(u, np.full((8, 2), 0.5 * np.sqrt(8.0)))
    dims = {"k": MuonDimensionNumbers(reduction_axis=(0, 1), output_axis=2)}
    (u,), _ = run(scale_by_shape(dims), [{"k": jnp.ones((2, 2, 16))}])
    close(u["k"], np.full((2, 2, 16), 2.0))  # fan_in 4, fan_out 16


# ------------------------------------------------------------------------------- against optax


def _steps_against_optax(ours, theirs, grads, where):
    fdl_state = ours.init(grads[0])
    with optax_promotion():
        optax_state = theirs.init(grads[0])
    assert_same_tree(fdl_state, optax_state, f"{where} init")
    for k, g in enumerate(grads):
        fdl_u, fdl_state = ours.update(g, fdl_state)
        with optax_promotion():
            optax_u, optax_state = theirs.update(g, optax_state)
        assert_same_tree(fdl_u, optax_u, f"{where} step {k} updates")
        assert_same_tree(fdl_state, optax_state, f"{where} step {k} state")


ATOM_CASES = {
    "default": dict(),
    "no_nesterov_adaptive": dict(nesterov=False, adaptive=True),
    "spectral": dict(preconditioning="spectral"),
    "aol": dict(preconditioning="aol", ns_steps=4),
    "schatten": dict(preconditioning="schatten"),
    "dion": dict(
        ns_coeffs=(
            (4.0848, -6.8946, 2.9270),
            (3.9505, -6.3029, 2.6377),
            (3.7418, -5.5913, 2.3037),
            (2.8769, -3.1427, 1.2046),
            (2.8366, -3.0525, 1.2012),
        ),
        ns_steps=6,
    ),
}


@pytest.mark.parametrize("name", list(ATOM_CASES))
def test_scale_by_muon_same_updates_and_states_as_optax(name):
    kwargs = ATOM_CASES[name]
    rng = np.random.default_rng(2)
    dims = {"w": MuonDimensionNumbers(), "k": MuonDimensionNumbers(reduction_axis=(0, 1), output_axis=3)}
    optax_dims = {
        "w": optax.contrib.MuonDimensionNumbers(),
        "k": optax.contrib.MuonDimensionNumbers((0, 1), 3),
    }
    grads = [
        {
            "w": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32),
            "k": jnp.asarray(rng.normal(size=(2, 3, 5, 4)), jnp.float32),
        }
        for _ in range(4)
    ]
    ours = jax.jit(lambda g, s: scale_by_muon(weight_dimension_numbers=dims, **kwargs).update(g, s))
    theirs = jax.jit(
        lambda g, s: optax.contrib.scale_by_muon(weight_dimension_numbers=optax_dims, **kwargs).update(g, s)
    )
    _steps_against_optax(
        scale_by_muon(weight_dimension_numbers=dims, **kwargs)._replace(update=ours),
        optax.contrib.scale_by_muon(weight_dimension_numbers=optax_dims, **kwargs)._replace(update=theirs),
        grads,
        f"scale_by_muon {name}:",
    )


MUON_CASES = {
    "default": (dict(), "mlp"),
    "decay_rms_dion": (
        dict(
            weight_decay=1e-2,
            consistent_rms=0.2,
            adam_weight_decay=1e-3,
            adam_learning_rate=3e-3,
            ns_coeffs="dion",
            nesterov=False,
            adam_b1=0.8,
        ),
        "logistic",
    ),
}


AOL = dict(preconditioning="aol", ns_steps=4, adaptive=True)


def test_muon_same_updates_and_states_as_optax_step_by_step():
    pairs, names = [], []
    for name, (kwargs, problem) in MUON_CASES.items():
        pairs.append(
            (muon(1e-2, **kwargs), optax.contrib.muon(1e-2, **kwargs), make_problem(problem, jnp.float32))
        )
        names.append(f"muon {name} on {problem}:")

    # a tree of dimension numbers: the first layer's matrix goes to AdamW
    def dims(cls):
        return {
            "net": {"dense_0": {"w": None, "b": None}, "dense_1": {"w": cls(), "b": None}},
            "temperature": None,
        }

    pairs.append(
        (
            muon(1e-2, muon_weight_dimension_numbers=dims(MuonDimensionNumbers), **AOL),
            optax.contrib.muon(
                1e-2, muon_weight_dimension_numbers=dims(optax.contrib.MuonDimensionNumbers), **AOL
            ),
            make_problem("mlp", jnp.float32),
        )
    )
    names.append("muon with dimension numbers, aol, adaptive on mlp:")
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for (ours, theirs), where in zip(records, names, strict=True):
        assert_same_trajectory(ours, theirs, where)


def test_muon_labels_matrices_muon_and_the_rest_adam():
    params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2), "s": jnp.ones(())}
    state = muon(0.1).init(params)
    muon_mu = state.inner_states["muon"].inner_state[0].mu
    adam_mu = state.inner_states["adam"].inner_state[0].mu
    assert jax.tree.leaves(muon_mu)[0].shape == (3, 2) and len(jax.tree.leaves(muon_mu)) == 1
    assert sorted(k for k, v in adam_mu.items() if jax.tree.leaves(v)) == ["b", "s"]


# ------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "make, error, message",
    [
        (
            lambda: scale_by_muon(beta=1.0),
            ValueError,
            r"^scale_by_muon: `beta` must be in \[0, 1\), got 1.0$",
        ),
        (
            lambda: scale_by_muon(eps=-1.0),
            ValueError,
            r"^scale_by_muon: `eps` must be a non-negative number, got -1.0$",
        ),
        (
            lambda: scale_by_muon(ns_steps=-1),
            ValueError,
            r"^scale_by_muon: `ns_steps` must be a non-negative number, got -1$",
        ),
        (
            lambda: scale_by_muon(ns_steps="5"),
            TypeError,
            r"^scale_by_muon: `ns_steps` must be a real number, got '5' \(str\)$",
        ),
        (
            lambda: scale_by_muon(ns_coeffs=(1.0, 2.0)),
            ValueError,
            r"^scale_by_muon: `ns_coeffs` must have shape \(3,\) or \(n, 3\) \(a triple or one per step\), got shape \(2,\)$",
        ),
        (
            lambda: scale_by_muon(ns_coeffs="dion"),
            ValueError,
            r"^scale_by_muon: `ns_coeffs` must be numbers in scale_by_muon \(a preset name such as 'dion' is for muon\)",
        ),
        (
            lambda: scale_by_muon(preconditioning="svd"),
            ValueError,
            r"^scale_by_muon: `preconditioning` must be one of \('frobenius', 'spectral', 'aol', 'schatten'\), got 'svd'$",
        ),
        (
            lambda: muon(0.1, ns_coeffs="polar"),
            ValueError,
            r"^muon: `ns_coeffs` must be a preset in \['dion', 'standard'\] or numbers, got 'polar'$",
        ),
        (
            lambda: muon(0.1, weight_decay=-1.0),
            ValueError,
            r"^muon: `weight_decay` must be a non-negative number, got -1.0$",
        ),
        (lambda: muon(0.1, adam_b1=1.0), ValueError, r"^muon: `adam_b1` must be in \[0, 1\), got 1.0$"),
        (lambda: muon(0.1, adam_b2=2.0), ValueError, r"^muon: `adam_b2` must be in \[0, 1\), got 2.0$"),
        (
            lambda: muon(0.1, adam_eps_root=-1.0),
            ValueError,
            r"^muon: `adam_eps_root` must be a non-negative number, got -1.0$",
        ),
        (
            lambda: muon(0.1, adam_weight_decay=-1.0),
            ValueError,
            r"^muon: `adam_weight_decay` must be a non-negative number, got -1.0$",
        ),
        (
            lambda: muon(0.1, consistent_rms=-0.2),
            ValueError,
            r"^muon: `consistent_rms` must be a non-negative number, got -0.2$",
        ),
        (lambda: muon(-0.1), ValueError, r"^muon: `learning_rate` must be a non-negative number"),
        (
            lambda: scale_by_shape(consistent_rms="0.2"),
            TypeError,
            r"^scale_by_shape: `consistent_rms` must be a real number, got '0.2' \(str\)$",
        ),
    ],
)
def test_errors_name_the_function_the_argument_and_the_value(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_errors_of_the_iteration_and_of_init():
    coeffs = jnp.asarray(COEFFS)
    with pytest.raises(
        ValueError,
        match=r"^orthogonalize_via_newton_schulz: `x` must be a matrix \(m, n\), or `dimension_numbers`",
    ):
        orthogonalize_via_newton_schulz(jnp.ones(3), coeffs)
    with pytest.raises(ValueError, match=r"`ns_coeffs` must have shape \(3,\) or \(n, 3\), got \(4,\)$"):
        orthogonalize_via_newton_schulz(jnp.ones((2, 2)), jnp.ones(4))
    with pytest.raises(ValueError, match=r"`preconditioning` must be one of .*got 'qr'$"):
        orthogonalize_via_newton_schulz(jnp.ones((2, 2)), coeffs, preconditioning="qr")
    with pytest.raises(
        ValueError,
        match=r"the reduction axes \(0,\) and output axes \(0,\) of `dimension_numbers` must be disjoint",
    ):
        orthogonalize_via_newton_schulz(
            jnp.ones((2, 2, 2)), coeffs, dimension_numbers=MuonDimensionNumbers(0, 0)
        )
    with pytest.raises(
        ValueError,
        match=r"^scale_by_muon: 2 rows of `ns_coeffs` are more than ns_steps=1: pass ns_steps >= 2$",
    ):
        scale_by_muon(ns_coeffs=(COEFFS, COEFFS), ns_steps=1).init(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match=r"mu_dtype=bfloat16 is a real dtype, but the parameter at"):
        scale_by_muon(mu_dtype=jnp.bfloat16).init(jnp.ones((2, 2), jnp.complex64))
