"""Contrastive losses (fdl.contrastive) against optax, hand-computed values and brute force."""

from __future__ import annotations

import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import fdl
from fdl import contrastive


def _normal(key, shape):
    return jax.random.normal(key, shape, jnp.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def _distances(z: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return 1.0 - _cosines(z, z)
    squared = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    return squared if metric == "sqeuclidean" else np.sqrt(squared)


# ---------------------------------------------------------------------------------- NT-Xent


@pytest.mark.parametrize(("batch", "temperature"), [(2, 1.0), (5, 0.5), (16, 0.07), (9, 2.0)])
def test_nt_xent_equals_optax_ntxent_on_the_stacked_views(keys, batch, temperature):
    a, b = _normal(next(keys), (batch, 6)), _normal(next(keys), (batch, 6))
    labels = jnp.concatenate([jnp.arange(batch), jnp.arange(batch)])  # view i and i + B: positives
    # jitted: the value and both gradients in one program each (eager dispatch took 5 s a case)
    ours, grad = jax.jit(
        jax.value_and_grad(lambda a, b: contrastive.nt_xent(a, b, temperature), argnums=(0, 1))
    )(a, b)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes bool and int masks
        reference, grad_ref = jax.jit(
            jax.value_and_grad(
                lambda a, b: optax.losses.ntxent(jnp.concatenate([a, b]), labels, temperature), argnums=(0, 1)
            )
        )(a, b)
    np.testing.assert_allclose(ours, reference, rtol=1e-5)
    # and the gradients with respect to both views
    chex.assert_trees_all_close(grad, grad_ref, rtol=2e-4, atol=1e-6)


def test_nt_xent_by_hand():
    # z = [e1, e2, e2, e1]; each anchor's partner is orthogonal (cosine 0), one negative is its
    # copy (cosine 1) and one orthogonal: l = -log(e^0 / (e^0 + e^0 + e^1)) = log(2 + e).
    a = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    b = jnp.array([[0.0, 1.0], [1.0, 0.0]])
    per_anchor = contrastive.nt_xent(a, b, 1.0, reduction="none")
    np.testing.assert_allclose(per_anchor, np.full(4, math.log(2 + math.e)), rtol=1e-6)
    # and twins at temperature 0.5: -log(e^2 / (e^2 + 2 e^0))
    twin = contrastive.nt_xent(a, a, 0.5)
    assert float(twin) == pytest.approx(-math.log(math.e**2 / (math.e**2 + 2)), rel=1e-6)


def test_nt_xent_per_anchor_matches_a_loop_over_the_formula(keys):
    a, b = np.asarray(_normal(next(keys), (4, 3))), np.asarray(_normal(next(keys), (4, 3)))
    z = np.concatenate([a, b]).astype(np.float64)
    s, tau, expected = _cosines(z, z), 0.3, []
    for i in range(8):
        partner = (i + 4) % 8
        denominator = sum(math.exp(s[i, k] / tau) for k in range(8) if k != i)
        expected.append(-math.log(math.exp(s[i, partner] / tau) / denominator))
    ours = contrastive.nt_xent(a, b, tau, reduction="none")
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    assert float(contrastive.nt_xent(a, b, tau, reduction="sum")) == pytest.approx(sum(expected), rel=1e-5)


def test_nt_xent_is_scale_invariant_and_differentiable(keys):
    a, b = _normal(next(keys), (3, 4)), _normal(next(keys), (3, 4))
    np.testing.assert_allclose(contrastive.nt_xent(3.0 * a, b), contrastive.nt_xent(a, b), rtol=1e-5)
    check_grads(
        lambda a, b: contrastive.nt_xent(a, b, 0.5), (a, b), order=1, modes=["rev"], atol=1e-2, rtol=1e-2
    )


# ---------------------------------------------------------------------------------- InfoNCE


def test_info_nce_by_hand():
    q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    # each query: its key at cosine 1, the other at 0: -log(e / (e + 1)) = log(1 + e^-1)
    assert float(contrastive.info_nce(q, q, 1.0)) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    # raw dot products with keys scaled by 2: -log(e^2 / (e^2 + e^0))
    value = contrastive.info_nce(q, 2.0 * q, 1.0, normalize=False)
    assert float(value) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    assert float(contrastive.info_nce(q[:1], q[:1], 0.1)) == 0.0  # no negatives: nothing to lose


@pytest.mark.parametrize("normalize", [True, False])
def test_info_nce_matches_a_loop_over_the_formula(keys, normalize):
    q, k = np.asarray(_normal(next(keys), (5, 3))), np.asarray(_normal(next(keys), (5, 3)))
    s = _cosines(q, k) if normalize else q.astype(np.float64) @ k.T
    tau = 0.7
    expected = [-(s[i, i] / tau - math.log(sum(math.exp(s[i, j] / tau) for j in range(5)))) for i in range(5)]
    ours = contrastive.info_nce(q, k, tau, normalize=normalize, reduction="none")
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    mean = contrastive.info_nce(q, k, tau, normalize=normalize)
    assert float(mean) == pytest.approx(np.mean(expected), rel=1e-5)


def test_info_nce_is_bounded_by_log_batch_size_for_uninformative_keys():
    # all similarities equal: every query is a uniform guess among B keys, loss log B
    q = jnp.ones((6, 2))
    assert float(contrastive.info_nce(q, q, 0.2)) == pytest.approx(math.log(6), rel=1e-6)


# ---------------------------------------------------------------------------------- triplet


def _brute_force_triplet(z, y, margin, metric, soft):
    """Each anchor's worst triple over *all* (positive, negative) pairs: the hinge (or softplus)
    is increasing, so its max over the triples is the batch-hard value."""
    d = _distances(np.asarray(z, np.float64), metric)
    out = []
    for a in range(len(y)):
        triples = [
            margin + d[a, p] - d[a, n]
            for p, n in itertools.product(range(len(y)), repeat=2)
            if p != a and y[p] == y[a] and y[n] != y[a]
        ]
        if not triples:
            out.append(None)
            continue
        worst = max(triples)
        out.append(math.log1p(math.exp(worst)) if soft else max(worst, 0.0))
    return out


@pytest.mark.parametrize("metric", contrastive.TRIPLET_METRICS)
@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_equals_the_worst_triple_by_brute_force(keys, metric, soft):
    z = _normal(next(keys), (10, 3))
    y = np.array([0, 0, 1, 1, 1, 2, 2, 3, 0, 1])  # class 3 alone: no triplet for anchor 7
    expected = _brute_force_triplet(z, y, 0.5, metric, soft)
    per_anchor = contrastive.batch_hard_triplet_loss(
        z, jnp.asarray(y), 0.5, metric=metric, soft=soft, reduction="none"
    )
    valid = [e is not None for e in expected]
    np.testing.assert_allclose(
        np.asarray(per_anchor)[valid], [e for e in expected if e is not None], rtol=1e-4, atol=1e-5
    )
    assert float(per_anchor[7]) == 0.0
    mean = contrastive.batch_hard_triplet_loss(z, jnp.asarray(y), 0.5, metric=metric, soft=soft)
    assert float(mean) == pytest.approx(np.mean([e for e in expected if e is not None]), rel=1e-4, abs=1e-6)


def test_batch_hard_by_hand():
    z = jnp.array([[0.0], [1.0], [3.0], [3.5]])
    y = jnp.array([0, 0, 1, 1])
    # anchor 0: hardest positive 1, hardest negative 3 -> [1 + 1 - 3]_+ = 0
    # anchor 1: 1 and 2 -> [1 + 1 - 2]_+ = 0 ; anchor 2: 0.5 and 2 -> 0 ; anchor 3: 0.5 and 2.5 -> 0
    np.testing.assert_allclose(contrastive.batch_hard_triplet_loss(z, y, 1.0, reduction="none"), [0, 0, 0, 0])
    # margin 2.5: [2.5 + 1 - 3, 2.5 + 1 - 2, 2.5 + 0.5 - 2, 2.5 + 0.5 - 2.5] = [0.5, 1.5, 1.0, 0.5]
    per_anchor = contrastive.batch_hard_triplet_loss(z, y, 2.5, reduction="none")
    np.testing.assert_allclose(per_anchor, [0.5, 1.5, 1.0, 0.5], rtol=1e-6)
    assert float(contrastive.batch_hard_triplet_loss(z, y, 2.5)) == pytest.approx(0.875)


def test_batch_hard_without_any_triplet_is_zero_not_nan(keys):
    z = _normal(next(keys), (4, 2))
    assert float(contrastive.batch_hard_triplet_loss(z, jnp.arange(4), 1.0)) == 0.0  # no positives
    assert float(contrastive.batch_hard_triplet_loss(z, jnp.zeros(4, jnp.int32), 1.0)) == 0.0  # no negatives


@pytest.mark.slow  # gradient checks of every metric; heavy, run in CI
def test_batch_hard_gradients(keys):
    z = _normal(next(keys), (6, 3))
    y = jnp.array([0, 0, 0, 1, 1, 1])
    check_grads(
        lambda z: contrastive.batch_hard_triplet_loss(z, y, 2.0),
        (z,),
        order=1,
        modes=["rev"],
        atol=1e-2,
        rtol=1e-2,
    )
    twins = jnp.concatenate([z[:3], z[:3]])  # zero distances between same-label copies
    grad = jax.grad(lambda z: contrastive.batch_hard_triplet_loss(z, jnp.array([0, 1, 2, 0, 1, 2]), 1.0))(
        twins
    )
    assert bool(jnp.all(jnp.isfinite(grad)))


# ------------------------------------------------------------------------ margin contrastive


def test_margin_contrastive_by_hand():
    x1 = jnp.zeros((4, 2))
    x2 = jnp.array([[3.0, 4.0], [0.3, 0.4], [3.0, 4.0], [0.0, 0.0]])
    similar = jnp.array([True, False, False, True])
    # D = 5, 0.5, 5, 0: [25/2, (1 - 0.5)^2 / 2, 0 (past the margin), 0]
    losses = contrastive.margin_contrastive_loss(x1, x2, similar, 1.0, reduction="none")
    np.testing.assert_allclose(losses, [12.5, 0.125, 0.0, 0.0], rtol=1e-6)
    as_numbers = contrastive.margin_contrastive_loss(x1, x2, jnp.array([1.0, 0.0, 0.0, 1.0]), 1.0)
    assert float(as_numbers) == pytest.approx((12.5 + 0.125) / 4, rel=1e-6)


def test_margin_contrastive_matches_the_formula_and_has_finite_gradients(keys):
    x1, x2 = _normal(next(keys), (8, 3)), _normal(next(keys), (8, 3))
    similar = jax.random.bernoulli(next(keys), 0.5, (8,))
    d = np.linalg.norm(np.asarray(x1, np.float64) - np.asarray(x2, np.float64), axis=1)
    s = np.asarray(similar, np.float64)
    expected = s * d**2 / 2 + (1 - s) * np.maximum(2.0 - d, 0) ** 2 / 2
    np.testing.assert_allclose(
        contrastive.margin_contrastive_loss(x1, x2, similar, 2.0, reduction="none"), expected, rtol=1e-5
    )
    check_grads(
        lambda a, b: contrastive.margin_contrastive_loss(a, b, similar, 2.0),
        (x1, x2),
        order=1,
        modes=["rev"],
        atol=1e-2,
        rtol=1e-2,
    )
    grad = jax.grad(lambda a: contrastive.margin_contrastive_loss(a, a, jnp.array([False]), 1.0))(x1[:1])
    assert bool(jnp.all(jnp.isfinite(grad)))  # D = 0 for a dissimilar pair


# ------------------------------------------------------------------------------------ jit


def test_losses_jit_to_the_eager_values(keys):
    a, b = _normal(next(keys), (6, 4)), _normal(next(keys), (6, 4))
    y = jnp.array([0, 1, 0, 1, 2, 2])
    similar = jnp.array([1, 0, 1, 0, 1, 0])
    calls = {
        "info_nce": lambda a, b: contrastive.info_nce(a, b, 0.3),
        "nt_xent": lambda a, b: contrastive.nt_xent(a, b, 0.3),
        "triplet": lambda a, b: contrastive.batch_hard_triplet_loss(a, y, 0.5),
        "margin": lambda a, b: contrastive.margin_contrastive_loss(a, b, similar, 1.5),
    }
    for name, fn in calls.items():
        np.testing.assert_allclose(jax.jit(fn)(a, b), fn(a, b), rtol=1e-5, err_msg=name)


# ------------------------------------------------------------------------------------ SimCLR


def test_simclr_loss_is_nt_xent_of_the_model_on_two_views(keys):
    model = fdl.nn.Dense(3)
    params, state, _ = model.init(next(keys), (4,))
    x, key = _normal(next(keys), (5, 4)), next(keys)

    def noise(k, x):
        return x + 0.1 * jax.random.normal(k, x.shape)

    loss_fn = contrastive.simclr_loss(model, noise, temperature=0.4)
    loss, (new_state, metrics) = loss_fn(params, state, (x,), key)
    key_a, key_b, _ = jax.random.split(key, 3)
    za = model.apply(params, state, noise(key_a, x))[0]
    zb = model.apply(params, state, noise(key_b, x))[0]
    np.testing.assert_allclose(loss, contrastive.nt_xent(za, zb, 0.4), rtol=1e-5)
    similarity = np.array(fdl.distances.cosine_similarity(jnp.concatenate([za, zb])))
    np.fill_diagonal(similarity, -np.inf)
    hits = np.argmax(similarity, axis=1) == (np.arange(10) + 5) % 10
    assert float(metrics["pair_accuracy"]) == pytest.approx(hits.mean())
    assert new_state == state and loss_fn.model is model


@pytest.mark.slow  # a training run, end to end
def test_simclr_loss_trains_through_fit(keys):
    # two clusters of noisy points: a few hundred steps make the two views of a point agree
    x = jnp.concatenate([_normal(next(keys), (64, 4)) + 3.0, _normal(next(keys), (64, 4)) - 3.0])
    model = fdl.nn.MLP((16, 8))
    params, state, _ = model.init(next(keys), (4,))
    loss_fn = contrastive.simclr_loss(model, lambda k, x: x + 0.2 * jax.random.normal(k, x.shape), 0.5)
    before = float(loss_fn(params, state, (x[:32],), next(keys))[0])
    result = fdl.fit.fit(
        loss_fn,
        fdl.optim.adam(1e-2),
        params,
        (x,),
        key=next(keys),
        batch_size=32,
        steps=150,
        logging=fdl.fit.Logging(progress=False),
    )
    after = float(loss_fn(result.params, state, (x[:32],), next(keys))[0])
    assert after < before - 0.5, (before, after)
    assert result.history[-1]["pair_accuracy"] > 0.5


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), True, "0.1"])
def test_temperature_must_be_positive(temperature):
    z = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"`temperature` must be a finite number > 0, got"):
        contrastive.nt_xent(z, z, temperature)
    with pytest.raises(ValueError, match=r"`temperature` must be a finite number > 0, got"):
        contrastive.info_nce(z, z, temperature)
    with pytest.raises(ValueError, match=r"`temperature` must be a finite number > 0, got"):
        contrastive.simclr_loss(fdl.nn.Dense(2), lambda k, x: x, temperature)


def test_a_numpy_scalar_temperature_is_a_number():
    z = jax.random.normal(jax.random.key(0), (4, 3))
    assert contrastive.nt_xent(z, z, np.float32(0.5)) == contrastive.nt_xent(z, z, 0.5)
    assert contrastive.nt_xent(z, z, jnp.array(0.5)) == contrastive.nt_xent(z, z, 0.5)  # a 0-d array
    with pytest.raises(ValueError, match=r"`temperature` must be a finite number > 0, got JitTracer"):
        jax.jit(lambda t: contrastive.nt_xent(z, z, t))(0.5)  # a traced one is not a number yet
    with pytest.raises(ValueError, match=r"`temperature` must be a finite number > 0, got -0.5"):
        contrastive.nt_xent(z, z, np.float64(-0.5))


def test_simclr_loss_names_a_bare_array_batch():
    model = fdl.nn.Dense(2)
    params, state, _ = model.init(jax.random.key(0), (3,))
    loss_fn = contrastive.simclr_loss(model, lambda k, x: x, 0.5)
    with pytest.raises(
        TypeError, match=r"expects `batch` to be a 1-tuple \(images,\).* got ArrayImpl of shape \(4, 3\)"
    ):
        loss_fn(params, state, jnp.ones((4, 3)), jax.random.key(1))


def test_margin_must_be_non_negative():
    z, y = jnp.ones((2, 3)), jnp.array([0, 1])
    with pytest.raises(ValueError, match=r"`margin` must be a non-negative finite number, got -0\.5"):
        contrastive.batch_hard_triplet_loss(z, y, -0.5)
    with pytest.raises(ValueError, match="`margin` must be a non-negative finite number, got -1"):
        contrastive.margin_contrastive_loss(z, z, y, -1)


def test_mismatched_views_name_both():
    a, b = jnp.ones((4, 3)), jnp.ones((5, 3))
    with pytest.raises(
        ValueError,
        match=r"`view_a` and `view_b` must have the same shape .* view_a \(4, 3\) float32 and view_b \(5, 3\)",
    ):
        contrastive.nt_xent(a, b)
    with pytest.raises(
        ValueError,
        match=r"`queries` and `keys` must have the same shape .* queries \(4, 3\) .* keys \(4, 2\)",
    ):
        contrastive.info_nce(a, jnp.ones((4, 2)))
    with pytest.raises(
        ValueError, match=r"`x1` and `x2` must have the same shape .* x1 \(4, 3\) .* x2 \(5, 3\)"
    ):
        contrastive.margin_contrastive_loss(a, b, jnp.ones(4))


def test_labels_of_the_wrong_length():
    z = jnp.ones((4, 3))
    with pytest.raises(
        ValueError, match=r"`labels` must have shape \(4,\) \(one per embedding\), got shape \(3,\)"
    ):
        contrastive.batch_hard_triplet_loss(z, jnp.array([0, 1, 0]))
    with pytest.raises(
        ValueError, match=r"`similar` must have shape \(4,\) \(one per embedding\), got shape \(4, 1\)"
    ):
        contrastive.margin_contrastive_loss(z, z, jnp.ones((4, 1)))
    with pytest.raises(TypeError, match="`labels` must be integer classes, got dtype float32"):
        contrastive.batch_hard_triplet_loss(z, jnp.zeros(4))


def test_other_bad_arguments():
    z = jnp.ones((4, 3))
    with pytest.raises(
        ValueError, match=r"`embeddings` must be embeddings of shape \(B, D\) with B >= 1, got shape \(4,\)"
    ):
        contrastive.batch_hard_triplet_loss(jnp.ones(4), jnp.arange(4))
    with pytest.raises(TypeError, match="`view_a` must be float embeddings"):
        contrastive.nt_xent(jnp.ones((2, 2), jnp.int32), jnp.ones((2, 2), jnp.int32))
    with pytest.raises(
        ValueError, match="`metric` must be one of 'euclidean', 'sqeuclidean', 'cosine', got 'manhattan'"
    ):
        contrastive.batch_hard_triplet_loss(z, jnp.arange(4), metric="manhattan")
    with pytest.raises(ValueError, match="`reduction` must be one of 'mean', 'sum', 'none', got 'max'"):
        contrastive.nt_xent(z, z, reduction="max")
    with pytest.raises(TypeError, match="`soft` must be a bool, got 1"):
        contrastive.batch_hard_triplet_loss(z, jnp.arange(4), soft=1)
    with pytest.raises(TypeError, match="`augment` must be callable as augment"):
        contrastive.simclr_loss(fdl.nn.Dense(2), None)
    with pytest.raises(TypeError, match=r"`model` must be an fdl.nn.Layer \(with init and apply\)"):
        contrastive.simclr_loss(object(), lambda k, x: x)
