"""compare(reference=...): any optimizer, a user's own included, checked against a reference."""

import numpy as np
import optax
import pytest

from fdl.compare import compare
from fdl.optim import chain, scale


def test_a_users_own_transformation_against_its_reference_is_identical():
    # fdl's scale(-lr) is exactly optax.sgd(lr)'s update, u = -lr * g: bit for bit.
    result = compare(
        {"mine": chain(scale(-1e-3))},
        "rosenbrock",
        steps=50,
        reference={"mine": ("optax:sgd", {"learning_rate": 1e-3})},
    )
    run = result.runs["mine"]
    assert run.twin == "optax:sgd(learning_rate=0.001)"
    assert np.all(np.isfinite(run.losses)) and run.losses[-1] < run.losses[0]
    assert run.divergence.shape == (51,) and np.all(run.divergence == 0.0)
    assert result.notes == ("'mine' is checked against its reference optax:sgd(learning_rate=0.001)",)
    assert "max |θ − θ_twin|" in repr(result)


def test_the_divergence_is_the_distance_to_the_references_own_trajectory():
    reference = ("optax:sgd", {"learning_rate": 1e-3, "momentum": 0.9})
    paired = compare(
        {"adam": ("adam", {"learning_rate": 1e-2})}, "rosenbrock", steps=100, reference={"adam": reference}
    )
    alone = compare(
        {"adam": ("adam", {"learning_rate": 1e-2}), "ref": reference}, "rosenbrock", steps=100, twins=False
    )
    run = paired.runs["adam"]
    assert run.twin == "optax:sgd(learning_rate=0.001, momentum=0.9)"  # not optax:adam
    np.testing.assert_array_equal(run.losses, alone.runs["adam"].losses)
    expected = np.abs(alone.runs["adam"].path - alone.runs["ref"].path).max(axis=1)
    np.testing.assert_array_equal(run.divergence, expected)
    assert run.divergence.max() > 0.1


def test_a_reference_can_be_a_transformation_and_other_labels_keep_their_twins():
    result = compare(
        {"mine": chain(scale(-0.01)), "adam": ("adam", {"learning_rate": 1e-2})},
        "quadratic",
        steps=20,
        reference={"mine": optax.sgd(0.01)},
    )
    assert result.runs["mine"].twin == "GradientTransformationExtraArgs (given)"
    assert np.all(result.runs["mine"].divergence == 0.0)
    assert result.runs["adam"].twin == "optax:adam(learning_rate=0.01)"


def test_reference_errors():
    ok = {"gd": ("sgd", {"learning_rate": 0.1})}
    with pytest.raises(
        ValueError,
        match=r"`reference` names 'other', which is not one of the "
        r"optimizers' labels: 'gd'",
    ):
        compare(ok, "beale", steps=2, reference={"other": "optax:sgd"})
    with pytest.raises(TypeError, match=r"reference of 'gd': the spec must be a registry name"):
        compare(ok, "beale", steps=2, reference={"gd": ("optax:sgd", 0.1)})
    with pytest.raises(ValueError, match=r"unknown optimizer 'optax:nope'"):
        compare(ok, "beale", steps=2, reference={"gd": "optax:nope"})
    with pytest.raises(TypeError, match=r"`reference` must be a mapping label -> spec"):
        compare(ok, "beale", steps=2, reference=["optax:sgd"])
