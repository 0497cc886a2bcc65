"""Clipping by parts (block RMS, adaptive unit-wise, per example): by hand in NumPy float64,
against optax step by step (updates and states) and on per-example batches, in float32,
bfloat16 and complex64, and every error message."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.base import EmptyState
from fdl.optim.clip_adaptive import (
    AdaptiveGradClipState,
    adaptive_grad_clip,
    clip_by_block_rms,
    per_example_global_norm_clip,
    per_example_layer_norm_clip,
)
from tests.optim.helpers import (
    assert_same_trajectory,
    assert_same_tree,
    make_problem,
    optax_promotion,
    run_trajectories,
)
from tests.optim.test_atoms import close, f32, run

# ------------------------------------------------------------------------------ by hand


def test_clip_by_block_rms_by_hand():
    g = {"w": np.asarray([3.0, -4.0, 0.0, 0.0]), "b": np.asarray([0.5, 0.5])}  # rms 2.5 and 0.5
    (u,), state = run(clip_by_block_rms(1.0), [jax.tree.map(jnp.float32, g)])
    assert state == EmptyState()
    close(u["w"], g["w"] / (2.5 / 1.0))
    close(u["b"], g["b"])  # under the threshold: unchanged
    (u,), _ = run(clip_by_block_rms(0.0), [{"z": jnp.zeros(2, jnp.float32), "a": f32(1.0, -1.0)}])
    close(u["z"], [0.0, 0.0])  # a zero leaf stays zero with a zero threshold (optax: NaN)
    close(u["a"], [0.0, 0.0])


def _unit_clip_by_hand(g, p, clipping, eps, axes):
    g_norm = np.sqrt(np.sum(np.abs(g) ** 2, axis=axes, keepdims=True))
    bound = clipping * np.maximum(np.sqrt(np.sum(np.abs(p) ** 2, axis=axes, keepdims=True)), eps)
    return np.where(g_norm < bound, g, g * bound / np.maximum(g_norm, 1e-6))


@pytest.mark.parametrize(
    "shape, axes",
    [
        ((5,), None),
        ((1, 5), None),  # one axis longer than 1: a vector, one unit
        ((4, 3), 0),
        ((4, 2, 3), 0),
        ((2, 2, 3, 4), (0, 1, 2)),
        ((2, 2, 2, 3, 2), (0, 1, 2, 3)),
    ],
)
def test_adaptive_grad_clip_units_by_rank_by_hand(shape, axes):
    rng = np.random.default_rng(sum(shape))
    p = rng.normal(size=shape)
    g = rng.normal(size=shape) * rng.choice([0.01, 1.0], size=shape)  # some units clipped, some not
    (u,), state = run(
        adaptive_grad_clip(0.3), [jnp.asarray(g, jnp.float32)], params=jnp.asarray(p, jnp.float32)
    )
    assert state == AdaptiveGradClipState()
    expected = _unit_clip_by_hand(g, p, 0.3, 1e-3, axes)
    close(u, expected)


def test_adaptive_grad_clip_by_hand_with_axis_and_zero_params():
    p = np.asarray([[3.0, 0.0], [4.0, 0.0]])
    g = np.asarray([[1.0, 2.0], [0.5, 0.0]])
    (u,), _ = run(
        adaptive_grad_clip(0.5, eps=0.1, axis=1),
        [jnp.asarray(g, jnp.float32)],
        params=jnp.asarray(p, jnp.float32),
    )
    close(u, _unit_clip_by_hand(g, p, 0.5, 0.1, 1))  # rows: norms sqrt 5 > 1.5, 0.5 < 2
    (u,), _ = run(
        adaptive_grad_clip(0.5, eps=0.1), [jnp.asarray(g, jnp.float32)], params=jnp.asarray(p, jnp.float32)
    )
    close(u[:, 1], [2.0 * 0.05 / 2.0, 0.0])  # a zero column of params: bound clipping * eps = 0.05
    close(u[:, 0], g[:, 0])  # |(1, 0.5)| = 1.118 < 0.5 * 5: kept


def test_per_example_global_norm_clip_by_hand():
    grads = [jnp.asarray([[0, 0, 0], [0, 3, 4], [4, 0, 3], [3, 4, 0]], jnp.int32)]  # norms 0, 5, 5, 5
    for bound, total, clipped in [(jnp.inf, 7.0, 0), (0.0, 0.0, 3), (1.25, 1.75, 3), (5.0, 7.0, 0)]:
        s, n = per_example_global_norm_clip(grads, bound)
        assert s[0].dtype == jnp.float32 and n.dtype == jnp.int32
        close(s[0], [total] * 3)
        assert int(n) == clipped
    tree = {"a": np.asarray([[3.0], [0.3]]), "b": np.asarray([[4.0, 0.0], [0.4, 0.0]])}  # norms 5, 0.5
    s, n = per_example_global_norm_clip(jax.tree.map(jnp.float32, tree), 1.0)
    close(s["a"], [3.0 / 5 + 0.3]), close(s["b"], [4.0 / 5 + 0.4, 0.0])
    assert int(n) == 1


def test_per_example_layer_norm_clip_by_hand():
    a = np.asarray([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]])  # norms 5, 0.5; size 3
    b = np.asarray([[1.0], [-2.0]])  # norms 1, 2; size 1
    grads = {"a": jnp.asarray(a, jnp.float32), "b": jnp.asarray(b, jnp.float32)}
    c = 2.0
    s, n = per_example_layer_norm_clip(grads, c)  # uniform: each leaf c / sqrt 2
    ca = cb = c / np.sqrt(2.0)
    close(s["a"], a[0] * min(1, ca / 5) + a[1] * min(1, ca / 0.5))
    close(s["b"], b[0] * min(1, cb / 1) + b[1] * min(1, cb / 2))
    assert (int(n["a"]), int(n["b"])) == (1, 1)
    s, n = per_example_layer_norm_clip(grads, c, uniform=False)  # c sqrt(3/4), c sqrt(1/4)
    ca, cb = c * np.sqrt(3 / 4), c * np.sqrt(1 / 4)
    close(s["a"], a[0] * min(1, ca / 5) + a[1] * min(1, ca / 0.5))
    close(s["b"], b[0] * min(1, cb / 1) + b[1] * min(1, cb / 2))
    assert (int(n["a"]), int(n["b"])) == (1, 1)


# ------------------------------------------------------------------------- against optax


def test_block_rms_and_adaptive_clip_same_steps_as_optax():
    pairs = [
        (clip_by_block_rms(1e-3), optax.clip_by_block_rms(1e-3), make_problem("mlp", jnp.float32)),
        (clip_by_block_rms(0.03), optax.clip_by_block_rms(0.03), make_problem("logistic", jnp.float32)),
        (adaptive_grad_clip(0.01), optax.adaptive_grad_clip(0.01), make_problem("mlp", jnp.float32)),
        (
            adaptive_grad_clip(0.1, 0.05),
            optax.adaptive_grad_clip(0.1, 0.05),
            make_problem("logistic", jnp.float32),
        ),
        (
            adaptive_grad_clip(0.02, axis=-1),
            optax.adaptive_grad_clip(0.02, axis=-1),
            make_problem("logistic", jnp.float32),
        ),
        (clip_by_block_rms(1e-3), optax.clip_by_block_rms(1e-3), make_problem("mlp", jnp.bfloat16)),
        (adaptive_grad_clip(0.01), optax.adaptive_grad_clip(0.01), make_problem("mlp", jnp.bfloat16)),
        (
            clip_by_block_rms(0.05),
            optax.clip_by_block_rms(0.05),
            make_problem("complex_regression", jnp.complex64),
        ),
        (
            adaptive_grad_clip(0.05),
            optax.adaptive_grad_clip(0.05),
            make_problem("complex_regression", jnp.complex64),
        ),
    ]
    records = run_trajectories(pairs, 100, teacher_forcing=True, atom_lr=0.1)
    for i, (ours, theirs) in enumerate(records):
        assert_same_trajectory(ours, theirs, f"case {i}:")


def _per_example_grads(dtype, seed):
    rng = np.random.default_rng(seed)

    def draw(*shape):
        x = rng.normal(size=shape) * rng.choice([0.1, 1.0, 10.0], size=(shape[0],) + (1,) * (len(shape) - 1))
        if np.issubdtype(dtype, np.complexfloating):
            x = x + 1j * rng.normal(size=shape)
        return x

    tree = {"dense": {"w": draw(6, 4, 3), "b": draw(6, 3)}, "scale": draw(6)}
    tree["dense"]["b"][2] = 0.0  # an example whose gradient of one leaf is zero
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64, jnp.bfloat16])
def test_per_example_clips_equal_optax(dtype):
    grads = _per_example_grads(dtype, 7)
    for bound in (0.5, 3.0, 0.0, float("inf")):
        ours = per_example_global_norm_clip(grads, bound)
        with optax_promotion():
            theirs = optax.per_example_global_norm_clip(grads, bound)
        assert_same_tree(ours, theirs, f"per_example_global_norm_clip({bound}) {dtype.__name__}:")
        for uniform in (True, False):
            ours = per_example_layer_norm_clip(grads, bound, uniform)
            with optax_promotion():
                theirs = optax.per_example_layer_norm_clip(grads, bound, uniform)
            assert_same_tree(
                ours, theirs, f"per_example_layer_norm_clip({bound}, {uniform}) {dtype.__name__}:"
            )


def test_per_example_clips_under_jit_with_a_traced_bound():
    grads = _per_example_grads(jnp.float32, 8)
    ours = jax.jit(per_example_global_norm_clip)(grads, jnp.asarray(0.5))
    # optax's jitted too: XLA fuses each norm and the sum over examples its own way under jit,
    # and the sum cancels (entries of about 0.5 add up to 0.02), so an eager reference differs
    # by a few ulps of the summands, more than 1e-6 of the result on some CPUs.
    with optax_promotion():
        theirs = jax.jit(optax.per_example_global_norm_clip)(grads, jnp.asarray(0.5))
    assert_same_tree(ours, theirs, "jit:")


# -------------------------------------------------------------------------------- dtypes


def test_updates_keep_the_gradients_dtype():
    g = jnp.asarray([[3.0, 0.1], [4.0, 0.0]], jnp.bfloat16)
    p = jnp.ones((2, 2), jnp.float32)  # another dtype than the gradients: strict promotion refuses a mix
    (u,), _ = run(adaptive_grad_clip(0.1), [g], params=p)
    assert u.dtype == jnp.bfloat16
    close(u[:, 0], np.asarray([3.0, 4.0]) * 0.1 * np.sqrt(2) / 5, rtol=1e-2)
    (u,), _ = run(clip_by_block_rms(jnp.asarray(0.1, jnp.float32)), [g])
    assert u.dtype == jnp.bfloat16
    mixed = {"a": jnp.ones((2, 2), jnp.bfloat16), "b": jnp.ones((2,), jnp.float32)}
    s, _ = per_example_global_norm_clip(mixed, jnp.asarray(0.5, jnp.float32))
    assert (s["a"].dtype, s["b"].dtype) == (jnp.bfloat16, jnp.float32)


def test_a_complex_gradient_is_clipped_by_its_magnitude():
    g = jnp.asarray([3 + 4j, 0j], jnp.complex64)  # |g| = (5, 0): rms = 5 / sqrt 2
    (u,), _ = run(clip_by_block_rms(1.0), [g])
    assert u.dtype == jnp.complex64
    close(np.abs(np.asarray(u)), [np.sqrt(2.0), 0.0])
    close(np.angle(np.asarray(u[:1])), [np.angle(3 + 4j)])  # the direction is kept
    s, n = per_example_global_norm_clip([jnp.asarray([[3 + 4j], [0.3 + 0.4j]], jnp.complex64)], 1.0)
    close(np.asarray(s[0]).real, [0.6 + 0.3]), close(np.asarray(s[0]).imag, [0.8 + 0.4])
    assert int(n) == 1


# -------------------------------------------------------------------------------- errors


def test_construction_errors_name_the_argument_and_value():
    with pytest.raises(
        ValueError, match=r"^clip_by_block_rms: `threshold` must be a non-negative number, got -1.0$"
    ):
        clip_by_block_rms(-1.0)
    with pytest.raises(
        TypeError, match=r"^clip_by_block_rms: `threshold` must be a real number, got '1' \(str\)$"
    ):
        clip_by_block_rms("1")
    with pytest.raises(
        ValueError, match=r"^adaptive_grad_clip: `clipping` must be a non-negative number, got -0.1$"
    ):
        adaptive_grad_clip(-0.1)
    with pytest.raises(
        ValueError, match=r"^adaptive_grad_clip: `eps` must be a non-negative number, got -1e-05$"
    ):
        adaptive_grad_clip(0.1, eps=-1e-5)
    for axis, kind in [("0", "str"), (1.5, "float"), (True, "bool"), ([0, 1], "list"), ((0, "1"), "tuple")]:
        with pytest.raises(
            TypeError,
            match=rf"^adaptive_grad_clip: `axis` must be an int, a tuple of ints or None, got .* \({kind}\)$",
        ):
            adaptive_grad_clip(0.1, axis=axis)


def test_adaptive_grad_clip_update_errors():
    opt = adaptive_grad_clip(0.1)
    with pytest.raises(
        ValueError, match=r"^adaptive_grad_clip: `params` is None; each unit is clipped relative"
    ):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)))
    with pytest.raises(
        ValueError,
        match=r"^adaptive_grad_clip: `updates` leaf \S* has shape \(3,\), but its `params` leaf has shape \(2,\)",
    ):
        opt.update({"w": jnp.ones(3)}, EmptyState(), {"w": jnp.ones(2)})
    big = jnp.ones((2,) * 6)
    with pytest.raises(
        ValueError,
        match=r"^adaptive_grad_clip: the leaf w has shape \(2, 2, 2, 2, 2, 2\); without `axis` the units are known "
        r"for 1 to 5 dimensions .* pass `axis`",
    ):
        opt.update({"w": big}, EmptyState(), {"w": big})
    u, _ = adaptive_grad_clip(0.1, axis=(0, 1, 2, 3, 4)).update({"w": big}, EmptyState(), {"w": big})
    assert u["w"].shape == big.shape  # with `axis`, any rank


@pytest.mark.parametrize("function", [per_example_global_norm_clip, per_example_layer_norm_clip])
def test_per_example_errors(function):
    name = function.__name__
    argument = "l2_norm_clip" if function is per_example_global_norm_clip else "global_l2_norm_clip"
    with pytest.raises(
        ValueError,
        match=rf"^{name}: `grads` must hold at least one array \(per-example gradients\), got \[\]$",
    ):
        function([], 1.0)
    with pytest.raises(
        ValueError,
        match=rf"^{name}: `grads` must be per-example gradients, every leaf with the same batch size on axis 0 "
        rf"\({name} clips each example, then sums them\); got shapes a: \(3, 2\), b: \(2,\)$",
    ):
        function({"a": jnp.ones((3, 2)), "b": jnp.ones(2)}, 1.0)
    with pytest.raises(
        ValueError, match=rf"^{name}: `grads` must be per-example gradients.*got shapes 0: \(\)$"
    ):
        function([jnp.ones(())], 1.0)
    with pytest.raises(ValueError, match=rf"^{name}: `{argument}` must be a non-negative number, got -1.0$"):
        function([jnp.ones((2, 1))], -1.0)
    with pytest.raises(TypeError, match=rf"^{name}: `{argument}` must be a real number, got '1.0' \(str\)$"):
        function([jnp.ones((2, 1))], "1.0")
