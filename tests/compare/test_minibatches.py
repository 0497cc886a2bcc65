"""compare(batch_size=...): minibatch gradients, the batch a pure function of the step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.compare import compare, minibatches, simulate
from fdl.problems import Problem, get_problem


def test_sgd_on_minibatches_matches_a_hand_written_loop():
    problem = get_problem("logistic_digits")
    result = compare(
        {"gd": ("optax:sgd", {"learning_rate": 0.5})}, problem, steps=12, seed=4, batch_size=100, twins=False
    )
    key = jax.random.key(4)
    batch_at = minibatches(problem.data, 100, jax.random.fold_in(key, 1))
    params = problem.init_params(key)
    expected = []
    for t in range(12):
        expected.append(float(problem.loss(params)))  # the full loss is what is recorded
        grads = jax.grad(problem.batch_loss)(params, batch_at(jnp.int32(t)))
        params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
    expected.append(float(problem.loss(params)))
    np.testing.assert_allclose(result.runs["gd"].losses, expected, rtol=2e-6)
    assert result.batch_size == 100 and "minibatches of 100" in repr(result)


def test_minibatches_differ_from_full_batch_and_every_lane_gets_the_same_batch():
    specs = {"gd": ("sgd", {"learning_rate": 0.5})}
    full = compare(specs, "logistic_digits", steps=10)
    mini = compare(specs, "logistic_digits", steps=10, batch_size=64)
    assert full.runs["gd"].losses[0] == mini.runs["gd"].losses[0]  # one start
    assert not np.array_equal(full.runs["gd"].losses, mini.runs["gd"].losses)
    # fdl:sgd and optax:sgd ran as twins on the same batches: float32 rounding apart.
    assert mini.runs["gd"].divergence.max() < 1e-6
    # The same optimizer twice in one scan agrees exactly, which it would not on other batches.
    same = compare(
        {"a": ("sgd", {"learning_rate": 0.5})},
        "logistic_digits",
        steps=10,
        batch_size=64,
        reference={"a": ("sgd", {"learning_rate": 0.5})},
    )
    assert np.all(same.runs["a"].divergence == 0.0)
    np.testing.assert_array_equal(same.runs["a"].losses, mini.runs["gd"].losses)


def test_the_batch_of_a_step_is_a_pure_function_of_the_step(key):
    data = (jnp.arange(10) * 10, jnp.arange(10))
    batch_at = minibatches(data, 3, key)
    first = [batch_at(jnp.int32(t)) for t in range(6)]
    again = jax.jit(batch_at)(jnp.int32(4))
    np.testing.assert_array_equal(first[4][0], again[0])
    for x, y in first:
        np.testing.assert_array_equal(x, 10 * y)  # the arrays stay aligned
    epoch0 = np.concatenate([y for _, y in first[:3]])  # 3 steps per epoch, one example left out
    assert len(set(epoch0.tolist())) == 9


def test_minibatch_errors(key):
    ok = {"gd": ("sgd", {"learning_rate": 0.1})}
    with pytest.raises(
        ValueError,
        match=r"`batch_size` needs a problem with data; `beale` has "
        r"none .* Problems with data: logistic_digits, mlp_digits",
    ):
        compare(ok, "beale", steps=2, batch_size=8)
    with pytest.raises(ValueError, match=r"`batch_size` must be a positive integer, got 0"):
        compare(ok, "logistic_digits", steps=2, batch_size=0)
    with pytest.raises(
        ValueError,
        match=r"`batch_size` must be at most the number of examples, "
        r"1438; got 5000",
    ):
        compare(ok, "logistic_digits", steps=2, batch_size=5000)
    problem = get_problem("logistic_digits")
    with pytest.raises(
        ValueError,
        match=r"simulate: minibatch gradients need both `batch_loss` "
        r"and `batch_at`; got only `batch_loss`",
    ):
        simulate([optax.sgd(0.1)], problem.loss, problem.init_params(key), 2, batch_loss=problem.batch_loss)


def test_a_problem_needs_data_and_batch_loss_together():
    with pytest.raises(ValueError, match=r"Problem 'p': `data` and `batch_loss` go together"):
        Problem("p", "", loss=lambda p: p, init_params=lambda k: 0.0, data=(jnp.zeros(3),))
