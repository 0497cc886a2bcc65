"""incremental_update (Polyak averaging) and periodic_update (target copies): by hand, against
optax, dtypes, ``None`` leaves, under ``jit``, and their errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.averaging import incremental_update, periodic_update
from tests.optim.helpers import assert_same_tree, optax_promotion


def _trees(dtype):
    rng = np.random.default_rng(7)
    new = {"w": jnp.asarray(rng.normal(size=(3, 2)), dtype), "b": jnp.asarray(rng.normal(size=2), dtype)}
    old = {"w": jnp.asarray(rng.normal(size=(3, 2)), dtype), "b": jnp.asarray(rng.normal(size=2), dtype)}
    return new, old


def test_incremental_update_by_hand():
    new = {"w": jnp.asarray([4.0, -2.0]), "b": jnp.asarray(1.0)}
    old = {"w": jnp.asarray([0.0, 2.0]), "b": jnp.asarray(3.0)}
    out = incremental_update(new, old, 0.25)
    assert out["w"].tolist() == [1.0, 1.0]  # 0.25 * 4 + 0.75 * 0, 0.25 * -2 + 0.75 * 2
    assert float(out["b"]) == 2.5
    assert incremental_update(new, old, 1.0)["w"].tolist() == [4.0, -2.0]
    assert incremental_update(new, old, 0.0)["w"].tolist() == [0.0, 2.0]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("step_size", [0.1, 0.999])
def test_incremental_update_same_as_optax(dtype, step_size):
    new, old = _trees(dtype)
    ours = incremental_update(new, old, step_size)
    with optax_promotion():
        theirs = optax.incremental_update(new, old, step_size)
    assert_same_tree(ours, theirs, f"incremental_update {dtype.__name__} {step_size}")


def test_incremental_update_dtypes_none_leaves_and_jit():
    new = {"w": jnp.ones(2, jnp.bfloat16), "frozen": None}
    old = {"w": jnp.zeros(2, jnp.bfloat16), "frozen": jnp.ones(1)}
    out = incremental_update(new, old, jnp.asarray(0.5))  # a float32 step size keeps bfloat16
    assert out["frozen"] is None and out["w"].dtype == jnp.bfloat16 and out["w"].tolist() == [0.5, 0.5]
    mixed = incremental_update({"w": jnp.ones(1, jnp.bfloat16)}, {"w": jnp.zeros(1)}, 0.5)
    assert mixed["w"].dtype == jnp.float32  # the promoted dtype, as optax
    traced = jax.jit(incremental_update)({"w": jnp.ones(1)}, {"w": jnp.zeros(1)}, 0.25)
    assert traced["w"].tolist() == [0.25]


def test_periodic_update_by_hand_and_under_jit():
    new, old = {"w": jnp.asarray([1.0])}, {"w": jnp.asarray([0.0])}
    picks = [float(periodic_update(new, old, t, 3)["w"][0]) for t in range(7)]
    assert picks == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    step = jax.jit(lambda t: periodic_update(new, old, t, 3)["w"][0])
    assert [float(step(jnp.asarray(t, jnp.int32))) for t in (5, 6)] == [0.0, 1.0]
    traced_period = jax.jit(lambda k: periodic_update(new, old, 4, k)["w"][0])
    assert float(traced_period(2)) == 1.0 and float(traced_period(3)) == 0.0


@pytest.mark.parametrize("steps", [0, 4, 5])
def test_periodic_update_same_as_optax(steps):
    new, old = _trees(jnp.float32)
    with optax_promotion():
        theirs = optax.periodic_update(new, old, jnp.asarray(steps, jnp.int32), 5)
    assert_same_tree(periodic_update(new, old, jnp.asarray(steps, jnp.int32), 5), theirs, f"periodic {steps}")


def test_bad_arguments_are_refused():
    new, old = {"w": jnp.ones(2)}, {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match=r"^incremental_update: `step_size` must be in \[0, 1\], got 1.5$"):
        incremental_update(new, old, 1.5)
    with pytest.raises(
        TypeError, match=r"^incremental_update: `step_size` must be a real number, got '0.5' \(str\)$"
    ):
        incremental_update(new, old, "0.5")
    with pytest.raises(
        ValueError,
        match=r"^incremental_update: `old_tensors` leaf 'w' has shape \(3,\), but its `new_tensors` leaf has "
        r"shape \(2,\) \(the two trees must match leaf for leaf\)$",
    ):
        incremental_update(new, {"w": jnp.zeros(3)}, 0.5)
    with pytest.raises(
        ValueError, match=r"^periodic_update: `update_period` must be a whole number >= 1 .*, got 0$"
    ):
        periodic_update(new, old, 1, 0)
    with pytest.raises(
        ValueError, match=r"^periodic_update: `update_period` must be a whole number >= 1 .*, got 2.5$"
    ):
        periodic_update(new, old, 1, 2.5)
    with pytest.raises(
        TypeError, match=r"^periodic_update: `update_period` must be a real number, got '3' \(str\)$"
    ):
        periodic_update(new, old, 1, "3")
    with pytest.raises(
        TypeError, match=r"^periodic_update: `steps` must be a real number, got None \(NoneType\)$"
    ):
        periodic_update(new, old, None, 3)
    with pytest.raises(
        ValueError,
        match=r"^periodic_update: `old_tensors` must have the tree structure of `new_tensors`; "
        r"leaves of `new_tensors`: 'w'; of `old_tensors`: 'v'$",
    ):
        periodic_update(new, {"v": jnp.zeros(2)}, 1, 3)
    with pytest.raises(
        ValueError,
        match=r"^periodic_update: `old_tensors` leaf 'w' is bfloat16, but its `new_tensors` leaf is float32 ",
    ):
        periodic_update(new, {"w": jnp.zeros(2, jnp.bfloat16)}, 1, 3)
