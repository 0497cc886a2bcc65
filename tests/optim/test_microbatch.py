"""fdl.optim.microbatch: equal to optax.microbatch on the same inputs, the combinations by hand
in NumPy, under jit, and every error message."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.optim.microbatch import AccumulationType, Accumulator, microbatch, reshape_batch_axis
from tests.optim.helpers import optax_promotion

OPTAX_TYPES = optax.microbatching.AccumulationType


def as_optax(spec):
    """The same accumulation spec with optax's enum members."""
    return jax.tree.map(lambda t: OPTAX_TYPES[t.name], spec)


def assert_equal_trees(ours, theirs):
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def both(fun, argnums, size, spec, **kwargs):
    """fdl's and optax's microbatched ``fun`` (optax's run under standard promotion)."""
    ours = microbatch(fun, argnums, size, spec, **kwargs)
    theirs = optax.microbatch(fun, argnums, size, as_optax(spec), **kwargs)

    def run_theirs(*args, **kw):
        with optax_promotion():
            return theirs(*args, **kw)

    return ours, run_theirs


def loss(w, x, y):
    """Per-batch squared error and its per-row residuals: ``(sum of squares, residuals)``."""
    r = x @ w - y  # (b,)
    return jnp.sum(r * r), r


@pytest.mark.parametrize("kind", ["SUM", "MEAN", "RUNNING_MEAN"])
def test_reductions_equal_optax_and_numpy(keys, kind):
    w, x, y = (
        jax.random.normal(next(keys), (3,)),
        jax.random.normal(next(keys), (12, 3)),
        jax.random.normal(next(keys), (12,)),
    )
    spec = (AccumulationType[kind], AccumulationType.CONCAT)
    ours, theirs = both(loss, (1, 2), 3, spec)
    result = ours(w, x, y)
    assert_equal_trees(result, theirs(w, x, y))
    # by hand: microbatch j takes rows j, j + 4, j + 8 (K = 4); CONCAT restores the row order
    r = np.asarray(x, np.float64) @ np.asarray(w, np.float64) - np.asarray(y, np.float64)
    parts = [np.sum(r[j::4] ** 2) for j in range(4)]
    expected = sum(parts) if kind == "SUM" else np.mean(parts)
    np.testing.assert_allclose(float(result[0]), expected, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(result[1]), r, rtol=1e-5, atol=1e-6)


def test_microbatched_gradient_is_the_full_batch_gradient(keys):
    w, x, y = (
        jax.random.normal(next(keys), (3,)),
        jax.random.normal(next(keys), (8, 3)),
        jax.random.normal(next(keys), (8,)),
    )
    grad = jax.grad(lambda w, x, y: loss(w, x, y)[0])
    ours, theirs = both(grad, (1, 2), 2, AccumulationType.SUM)
    assert_equal_trees(ours(w, x, y), theirs(w, x, y))
    np.testing.assert_allclose(np.asarray(ours(w, x, y)), np.asarray(grad(w, x, y)), rtol=1e-5)


def test_tree_prefix_accumulators_keywords_and_axes_equal_optax(keys):
    def fun(scale, batch, *, extra):
        # batch["a"], batch["b"]: (b, 2) (or (2, b) for in_axes=1); extra: (3, b)
        return {
            "rows": batch["a"] * scale,
            "stats": {"s": jnp.sum(batch["b"]) + jnp.sum(extra), "m": jnp.mean(batch["a"], axis=0)},
        }

    batch = {"a": jax.random.normal(next(keys), (6, 2)), "b": jax.random.normal(next(keys), (6, 2))}
    extra = jax.random.normal(next(keys), (3, 6))
    spec = {"rows": AccumulationType.CONCAT, "stats": AccumulationType.MEAN}
    for in_axes in ((0, 1), 1):
        args = (batch, extra) if in_axes != 1 else (jax.tree.map(jnp.transpose, batch), extra)
        ours, theirs = both(fun, 1, 2, spec, argnames="extra", in_axes=in_axes)
        assert_equal_trees(ours(2.0, args[0], extra=args[1]), theirs(2.0, args[0], extra=args[1]))


def test_integer_results_sum_and_concat_as_optax_doc_example():
    fun = lambda x: (x + 1, jnp.sum(3 * x))
    data = jnp.asarray([1, 2, 3, 4])
    ours, theirs = both(fun, 0, 2, (AccumulationType.CONCAT, AccumulationType.SUM))
    result = ours(data)
    assert_equal_trees(result, theirs(data))
    assert result[0].tolist() == [2, 3, 4, 5] and int(result[1]) == 30


def test_a_custom_accumulator_keeps_the_largest_result(keys):
    largest = Accumulator(
        init=lambda shaped: jax.tree.map(lambda s: jnp.full(s.shape, -jnp.inf, s.dtype), shaped),
        update=lambda carry, y, j: jax.tree.map(jnp.maximum, carry, y),
        finalize=lambda carry: carry,
        aggregate=lambda ys: jax.tree.map(lambda v: jnp.max(v, axis=0), ys),
    )
    x = jax.random.normal(next(keys), (10,))
    result = microbatch(jnp.sum, 0, 2, largest)(x)
    np.testing.assert_allclose(float(result), max(np.sum(np.asarray(x)[j::5]) for j in range(5)), rtol=1e-6)


def traced_run(kind, x, n):
    """Column sums over the first ``n`` microbatches of 2 rows, ``n`` traced under ``jit``."""
    return microbatch(lambda x: jnp.sum(x, axis=0), 0, 2, kind, num_real_microbatches=n)(x)


def test_num_real_microbatches_concrete_and_traced_equal_optax(keys):
    x = jax.random.normal(next(keys), (8, 2))
    for kind in ("SUM", "MEAN", "RUNNING_MEAN"):
        ours, theirs = both(
            lambda x: jnp.sum(x, axis=0), 0, 2, AccumulationType[kind], num_real_microbatches=3
        )
        assert_equal_trees(ours(x), theirs(x))
        traced = jax.jit(traced_run, static_argnums=0)(AccumulationType[kind], x, 3)
        np.testing.assert_array_equal(np.asarray(traced), np.asarray(ours(x)))
    # by hand: the running mean is over the 3 microbatches run (rows 0,4 / 1,5 / 2,6)
    sums = [np.asarray(x)[[j, j + 4]].sum(axis=0) for j in range(3)]
    result = microbatch(
        lambda x: jnp.sum(x, axis=0), 0, 2, AccumulationType.RUNNING_MEAN, num_real_microbatches=3
    )(x)
    np.testing.assert_allclose(np.asarray(result), np.mean(sums, axis=0), rtol=1e-6)


def test_runs_under_jit_and_none_returns_fun_itself(keys):
    x = jax.random.normal(next(keys), (6, 4))
    fun = lambda x: jnp.sum(x * x)
    assert microbatch(fun, 0, None) is fun
    jitted = jax.jit(microbatch(fun, 0, 3, AccumulationType.MEAN))
    with optax_promotion():
        theirs = jax.jit(optax.microbatch(fun, 0, 3, OPTAX_TYPES.MEAN))(x)
    assert_equal_trees(jitted(x), theirs)
    np.testing.assert_allclose(float(jitted(x)), np.sum(np.asarray(x, np.float64) ** 2) / 2, rtol=1e-5)


def test_running_mean_keeps_bfloat16(keys):
    x = jax.random.normal(next(keys), (4, 2)).astype(jnp.bfloat16)
    result = microbatch(lambda x: jnp.sum(x, axis=0), 0, 2, AccumulationType.RUNNING_MEAN)(x)
    assert result.dtype == jnp.bfloat16
    expected = (np.asarray(x, np.float64)[[0, 2]].sum(0) + np.asarray(x, np.float64)[[1, 3]].sum(0)) / 2
    np.testing.assert_allclose(np.asarray(result, np.float64), expected, rtol=2e-2, atol=2e-2)


def test_reshape_batch_axis_equals_optax(keys):
    tree = {"a": jax.random.normal(next(keys), (2, 6, 3)), "b": jnp.arange(12).reshape(2, 6)}
    assert_equal_trees(
        reshape_batch_axis(tree, 3, axis=1), optax.microbatching.reshape_batch_axis(tree, 3, axis=1)
    )
    assert reshape_batch_axis(jnp.arange(6), 3).tolist() == [[0, 2, 4], [1, 3, 5]]


def test_errors_at_construction():
    f = jnp.sum
    with pytest.raises(
        ValueError, match=r"microbatch: `microbatch_size` must be a whole number >= 1 or None, got 0"
    ):
        microbatch(f, 0, 0)
    with pytest.raises(ValueError, match=r"`microbatch_size` must be a whole number >= 1 or None, got 1.5"):
        microbatch(f, 0, 1.5)
    with pytest.raises(
        TypeError, match=r"microbatch: `microbatch_size` must be a real number, got '2' \(str\)"
    ):
        microbatch(f, 0, "2")
    with pytest.raises(TypeError, match=r"`argnums` must be a int or a sequence of them, got '0'"):
        microbatch(f, "0", 2)
    with pytest.raises(TypeError, match=r"`argnames` must be a str or a sequence of them, got \[1\]"):
        microbatch(f, 0, 2, argnames=[1])
    with pytest.raises(TypeError, match=r"`in_axes` must be a int or a sequence of them, got \(0.5,\)"):
        microbatch(f, 0, 2, in_axes=(0.5,))
    with pytest.raises(
        ValueError,
        match=r"`in_axes` must be one axis >= 0, or one per batch argument \(argnums \+ argnames: 2\), got \(0,\)",
    ):
        microbatch(f, (0, 1), 2, in_axes=(0,))
    with pytest.raises(ValueError, match=r"`in_axes` must be one axis >= 0, .* got -1"):
        microbatch(f, 0, 2, in_axes=-1)
    with pytest.raises(
        ValueError, match=r"`num_real_microbatches` must be a whole number >= 0 or None, got -1"
    ):
        microbatch(f, 0, 2, num_real_microbatches=-1)
    with pytest.raises(TypeError, match=r"`num_real_microbatches` must be a real number, got True \(bool\)"):
        microbatch(f, 0, 2, num_real_microbatches=True)
    with pytest.raises(
        ValueError,
        match=r"microbatch: `accumulator` must be an Accumulator, an AccumulationType .* got a leaf 'sum'",
    ):
        microbatch(f, 0, 2, accumulator={"a": "sum"})


def test_errors_when_called():
    with pytest.raises(
        ValueError, match=r"microbatch: the batch arguments \(argnums, argnames\) hold no arrays"
    ):
        microbatch(lambda x: 0.0, 0, 2)({})
    with pytest.raises(
        ValueError, match=r"microbatch: the batch arguments' batch axes differ in size: \[4, 6\]"
    ):
        microbatch(lambda x, y: jnp.sum(x) + jnp.sum(y), (0, 1), 2)(jnp.ones(4), jnp.ones(6))
    with pytest.raises(
        ValueError, match=r"microbatch: the batch size 5 is not divisible by microbatch_size=2"
    ):
        microbatch(jnp.sum, 0, 2)(jnp.ones(5))
    with pytest.raises(
        ValueError, match=r"microbatch: num_real_microbatches=3 exceeds the 2 microbatches of a batch of 4"
    ):
        microbatch(jnp.sum, 0, 2, num_real_microbatches=3)(jnp.ones(4))
    with pytest.raises(
        ValueError,
        match=r"microbatch: the MEAN and RUNNING_MEAN accumulators need floating-point results, got a int32 result of shape \(\)",
    ):
        microbatch(jnp.sum, 0, 2, AccumulationType.MEAN)(jnp.arange(4))


def test_names_and_fields_are_optax_s():
    assert [t.name for t in AccumulationType] == [t.name for t in OPTAX_TYPES]
    ours = [f.name for f in dataclasses.fields(Accumulator)]
    assert ours == [f.name for f in dataclasses.fields(optax.microbatching.Accumulator)]
