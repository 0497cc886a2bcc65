"""ADOPT (``fdl.optim.adopt``): two steps by hand against its equations in NumPy float64, every
step of a few trajectories against ``optax.contrib``, and every error message."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.adam import ScaleByAdamState
from fdl.optim.adopt import adopt, scale_by_adopt
from tests.optim.helpers import assert_same_trajectory, make_problem, run_trajectories
from tests.optim.test_atoms import close, f32, run

STEPS = 150


def _adopt_by_hand(grads, b1, b2, eps, clip, nesterov):
    """ADOPT's updates and final moments, in float64 (``clip``: a function of t, or None)."""
    m = np.zeros_like(grads[0])
    v = np.zeros_like(grads[0])
    out = []
    for t, g in enumerate(grads):
        if t == 0:
            v = g * g
            out.append(np.zeros_like(g))
            continue
        r = g / np.maximum(np.sqrt(v), eps)
        if clip is not None:
            r = np.clip(r, -clip(t), clip(t))
        m = b1 * m + (1 - b1) * r
        v = b2 * v + (1 - b2) * g * g
        out.append(b1 * m + (1 - b1) * r if nesterov else m)
    return out, m, v


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("use_clipping", [False, True])
def test_scale_by_adopt_three_steps_by_hand(nesterov, use_clipping):
    grads = [np.array([0.5, -2.0]), np.array([1.5, 0.1]), np.array([-3.0, 0.2])]
    expected, m, v = _adopt_by_hand(
        grads, 0.5, 0.75, 1e-3, (lambda t: t**0.25) if use_clipping else None, nesterov
    )
    opt = scale_by_adopt(b1=0.5, b2=0.75, eps=1e-3, nesterov=nesterov, use_clipping=use_clipping)
    updates, state = run(opt, [f32(*g) for g in grads])
    for u, e in zip(updates, expected, strict=True):
        close(u, e)
    assert isinstance(state, ScaleByAdamState) and int(state.count) == 3
    close(state.mu, m), close(state.nu, v)


def test_clipping_bound_is_the_given_function_of_the_count():
    seen = []

    def bound(count):
        seen.append(count.dtype)
        return 0.125 * jnp.ones([], jnp.float32)

    opt = scale_by_adopt(b1=0.0, clip_value_fn=bound)
    (_, u2), _ = run(opt, [f32(1.0, 1.0), f32(10.0, -10.0)])
    close(u2, [0.125, -0.125])  # b1 = 0: the clipped ratio itself
    assert seen == [jnp.int32, jnp.int32]


def test_adopt_is_scale_by_adopt_times_minus_the_learning_rate():
    grads = [f32(0.5, -2.0), f32(1.5, 0.1)]
    (_, step), state = run(adopt(learning_rate=0.25), grads)
    (_, direction), _ = run(scale_by_adopt(), grads)
    close(step, -0.25 * np.asarray(direction, np.float64))
    assert isinstance(state[0], ScaleByAdamState)


def test_updates_keep_the_gradients_dtype_and_mu_its_dtype():
    opt = scale_by_adopt(mu_dtype=jnp.bfloat16)
    (_, u2), state = run(opt, [f32(1.0), f32(2.0)])
    assert u2.dtype == jnp.float32 and state.mu.dtype == jnp.bfloat16 and state.nu.dtype == jnp.float32
    (b,), state = run(scale_by_adopt(), [jnp.ones(2, jnp.bfloat16)])
    assert b.dtype == jnp.bfloat16 and state.nu.dtype == jnp.bfloat16


# ------------------------------------------------------------------------------- against optax


CASES = {
    "default": {},
    "nesterov": dict(nesterov=True),
    "no_clipping": dict(use_clipping=False, b2=0.99),
    "mu_bf16": dict(mu_dtype=jnp.bfloat16, b1=0.8),
}


def test_same_updates_and_states_as_optax_step_by_step():
    pairs, names = [], []
    for name, kwargs in CASES.items():
        for problem in ("rosenbrock", "mlp"):
            fdl_opt = adopt(1e-2, **kwargs)
            optax_opt = optax.contrib.adopt(1e-2, **kwargs)
            pairs.append((fdl_opt, optax_opt, make_problem(problem, jnp.float32)))
            names.append(f"adopt {name} on {problem}:")
    pairs.append((adopt(1e-2), optax.contrib.adopt(1e-2), make_problem("mlp", jnp.bfloat16)))
    names.append("adopt on mlp in bfloat16:")
    records = run_trajectories(pairs, STEPS, teacher_forcing=True)
    for (ours, theirs), where in zip(records, names, strict=True):
        assert_same_trajectory(ours, theirs, where)


# ------------------------------------------------------------------------------------- errors


def test_errors_name_the_argument_and_the_value():
    with pytest.raises(ValueError, match=r"^scale_by_adopt: `b1` must be in \[0, 1\), got 1.0$"):
        scale_by_adopt(b1=1.0)
    with pytest.raises(ValueError, match=r"^adopt: `b2` must be in \[0, 1\), got -0.5$"):
        adopt(0.1, b2=-0.5)
    with pytest.raises(ValueError, match=r"^adopt: `eps` must be a non-negative number, got -1e-06$"):
        adopt(0.1, eps=-1e-6)
    with pytest.raises(TypeError, match=r"^adopt: `eps` must be a real number, got '1e-6' \(str\)$"):
        adopt(0.1, eps="1e-6")
    with pytest.raises(
        TypeError, match=r"^adopt: `clip_value_fn` must be a function of the step count .*got 1.0$"
    ):
        adopt(0.1, clip_value_fn=1.0)
    with pytest.raises(ValueError, match=r"^adopt: `learning_rate` must be a non-negative number"):
        adopt(-0.1)
    with pytest.raises(ValueError, match=r"mu_dtype=bfloat16 is a real dtype, but the parameter at"):
        scale_by_adopt(mu_dtype=jnp.bfloat16).init(jnp.ones(2, jnp.complex64))
    opt = scale_by_adopt()
    with pytest.raises(
        ValueError,
        match=r"^scale_by_adopt: `updates` leaf \(root\) has shape \(3,\), but its `state.nu` leaf has shape \(2,\)",
    ):
        opt.update(f32(1.0, 2.0, 3.0), opt.init(f32(1.0, 2.0)))
