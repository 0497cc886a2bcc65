"""Attribution methods (fdl.attribution) against hand values, their axioms and SciPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import fdl
from fdl import attribution


def _linear(w):
    return lambda x: jnp.sum(x * w, axis=tuple(range(1, x.ndim)))


@pytest.fixture(scope="module")
def digits_cnn():
    """A CNN trained on the digits, the same CNN freshly initialized, and 50 test images."""
    data = fdl.data.load_digits(seed=0, flat=False)
    model = fdl.models.build_model("cnn", 10)
    params, state, _ = model.init(jax.random.key(0), (8, 8, 1))
    result = fdl.fit.fit(
        fdl.fit.classification_loss(model),
        fdl.optim.adam(2e-3),
        params,
        (data.x_train, data.y_train),
        layer_state=state,
        key=jax.random.key(1),
        batch_size=64,
        steps=400,
        logging=fdl.fit.Logging(progress=False),
    )
    random_params, random_state, _ = model.init(jax.random.key(5), (8, 8, 1))
    x, y = jnp.asarray(data.x_test[:50]), jnp.asarray(data.y_test[:50])

    def logits(params, state):
        return jax.jit(lambda z: model.apply(params, state, z)[0])  # evaluation mode

    trained = logits(result.params, result.layer_state)
    assert float(jnp.mean(jnp.argmax(trained(x), -1) == y)) > 0.9
    return trained, logits(random_params, random_state), x, y


# ------------------------------------------------------------------------------- definitions


def test_saliency_and_gradient_times_input_of_a_linear_score():
    w = jnp.array([[0.5, -2.0, 3.0]])
    x = jnp.array([[1.0, 2.0, -1.0], [0.0, 1.0, 4.0]])
    np.testing.assert_array_equal(attribution.saliency(_linear(w), x), jnp.broadcast_to(w, x.shape))
    np.testing.assert_array_equal(attribution.gradient_times_input(_linear(w), x), x * w)


def test_class_score_picks_each_examples_logit():
    logits_fn = lambda x: jnp.stack([x[:, 0], 2 * x[:, 1], -x[:, 0]], axis=1)
    x = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    assert attribution.class_score(logits_fn, jnp.array([1, 2]))(x).tolist() == [4.0, -3.0]


def test_integrated_gradients_of_a_quadratic_is_exact_and_complete():
    """f(x) = sum_j c_j x_j^2 from 0: IG_j = c_j x_j^2 (the trapezoidal rule is exact for the
    linear integrand), so the attributions sum to f(x) - f(0)."""
    c = jnp.array([[1.0, -0.5, 2.0]])
    score = lambda x: jnp.sum(c * x**2, axis=1)
    x = jnp.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    ig = attribution.integrated_gradients(score, x, steps=4)
    np.testing.assert_allclose(ig, c * x**2, rtol=1e-6)
    np.testing.assert_allclose(ig.sum(axis=1), score(x) - score(jnp.zeros_like(x)), rtol=1e-6)
    baseline = jnp.array([0.5, 0.5, 0.5])  # one example's shape, broadcast
    ig = attribution.integrated_gradients(score, x, baseline, steps=4)
    np.testing.assert_allclose(
        ig.sum(axis=1), score(x) - score(jnp.broadcast_to(baseline, x.shape)), rtol=1e-5
    )


def test_integrated_gradients_completeness_on_a_relu_cnn(digits_cnn):
    """A ReLU CNN's path integral has kinks, so the trapezoidal rule converges like 1/K: the
    largest relative gap |sum IG - (f(x) - f(0))| / |f(x) - f(0)| over 50 digits, measured:
    0.126 (K = 8), 0.022 (32), 0.0068 (128). Stated tolerance: 1% at K = 128."""
    trained, _, x, y = digits_cnn
    score = attribution.class_score(trained, y)
    gap = score(x) - score(jnp.zeros_like(x))
    errors = {}
    for steps in (8, 32, 128):
        total = attribution.integrated_gradients(score, x, steps=steps).reshape(len(y), -1).sum(axis=1)
        errors[steps] = float(jnp.max(jnp.abs(total - gap) / jnp.abs(gap)))
    assert errors[128] < 0.01 and errors[8] > errors[32] > errors[128], errors


def test_smoothgrad_without_noise_is_the_saliency_and_averages_a_linear_gradient():
    score = lambda x: jnp.sum(x**3, axis=1)
    x = jnp.array([[1.0, -2.0, 0.5]])
    key = jax.random.key(0)
    np.testing.assert_array_equal(
        attribution.smoothgrad(score, x, key, num_samples=3, noise=0.0), attribution.saliency(score, x)
    )
    # grad = 3 x^2: its mean under x + N(0, s^2) is 3 (x^2 + s^2), s = 0.1 * (max - min) = 0.3
    smooth = attribution.smoothgrad(score, x, key, num_samples=4000, noise=0.1)
    expected = 3 * (x**2 + 0.3**2)
    standard_error = 3 * np.sqrt((4 * 0.09 * x**2 + 2 * 0.3**4) / 4000)  # sd of (x + e)^2 over sqrt(n)
    assert np.all(np.abs(smooth - expected) < 4 * standard_error), (smooth, expected)


def test_occlusion_of_a_linear_score():
    """f = sum w x: blanking a 1x1 window drops the score by w x there; a 2x2 window's drop is
    the sum over its four pixels, averaged over the windows covering each pixel."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(2, 3, 3, 1)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(1, 3, 3, 1)), jnp.float32)
    np.testing.assert_allclose(
        attribution.occlusion(_linear(w), x, window=(1, 1)), w * x, rtol=1e-5, atol=1e-6
    )
    wx = np.asarray(w * x)[..., 0]  # (2, 3, 3)
    drops = {(r, c): wx[:, r : r + 2, c : c + 2].sum(axis=(1, 2)) for r in range(2) for c in range(2)}
    expected = np.zeros((2, 3, 3))
    for i in range(3):
        for j in range(3):
            covering = [d for (r, c), d in drops.items() if r <= i < r + 2 and c <= j < c + 2]
            expected[:, i, j] = np.mean(covering, axis=0)
    np.testing.assert_allclose(attribution.occlusion(_linear(w), x)[..., 0], expected, rtol=1e-5, atol=1e-6)


def test_rank_correlation_equals_scipy_spearman_with_ties():
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=(5, 40)), 1)  # rounded: ties
    b = a + rng.normal(size=(5, 40))
    b[:, :10] = 0.0  # a block of tied zeros, as dark pixels give
    ours = attribution.rank_correlation(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    expected = [scipy.stats.spearmanr(a[i], b[i]).statistic for i in range(5)]
    np.testing.assert_allclose(ours, expected, rtol=1e-5)
    a[1, 3], b[4, 0] = np.nan, np.nan  # SciPy propagates a NaN; a sort alone would rank it
    ours = attribution.rank_correlation(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    expected = [scipy.stats.spearmanr(a[i], b[i]).statistic for i in range(5)]
    assert np.isnan(expected[1]) and np.isnan(expected[4])
    np.testing.assert_allclose(ours, expected, rtol=1e-5)  # NaN where SciPy's is NaN


# ------------------------------------------------------------------------------- sanity check


def test_model_randomization_sanity_check(digits_cnn):
    """Adebayo et al. (2018): re-initialize the weights; a map that explains the model changes.
    Measured (rank correlation of |map| between the trained and the random CNN, mean over 50
    digits): saliency 0.15, SmoothGrad 0.18, occlusion 0.64; gradient x input and integrated
    gradients 0.92 (they are multiplied by the input, so the digit's own shape dominates them,
    as Adebayo et al. found); an edge detector of the input alone, 1.0 by construction."""
    trained, random, x, y = digits_cnn
    trained_score, random_score = attribution.class_score(trained, y), attribution.class_score(random, y)

    def similarity(explain):
        return float(
            jnp.mean(
                attribution.rank_correlation(jnp.abs(explain(trained_score)), jnp.abs(explain(random_score)))
            )
        )

    key = jax.random.key(0)
    assert similarity(lambda s: attribution.saliency(s, x)) < 0.5
    assert similarity(lambda s: attribution.smoothgrad(s, x, key, num_samples=20)) < 0.5

    def edges(_score_fn):  # a Sobel edge magnitude of the image: it never looks at the model
        image = x[..., 0]
        gx = image[:, 1:-1, 2:] - image[:, 1:-1, :-2]
        gy = image[:, 2:, 1:-1] - image[:, :-2, 1:-1]
        return jnp.sqrt(gx**2 + gy**2)

    assert similarity(edges) > 0.99  # the check flags it: identical maps for any weights


# ------------------------------------------------------------------------------- bad input


def test_bad_input_messages():
    score = lambda x: jnp.sum(x, axis=1)
    x = jnp.ones((2, 3))
    with pytest.raises(
        ValueError,
        match=r"`baseline` must have the shape of `x` \(2, 3\) or of one example \(3,\), got \(4,\)",
    ):
        attribution.integrated_gradients(score, x, jnp.zeros(4))
    with pytest.raises(ValueError, match=r"`steps` must be a positive integer, got 0"):
        attribution.integrated_gradients(score, x, steps=0)
    with pytest.raises(ValueError, match=r"`num_samples` must be a positive integer, got 0"):
        attribution.smoothgrad(score, x, jax.random.key(0), num_samples=0)
    with pytest.raises(ValueError, match=r"`x` must be images \(B, H, W, C\), got shape \(2, 3\)"):
        attribution.occlusion(score, x)
    with pytest.raises(ValueError, match=r"`window` \(3, 3\) must fit the images of height 2 and width 2"):
        attribution.occlusion(score, jnp.ones((1, 2, 2, 1)), window=(3, 3))
    with pytest.raises(TypeError, match=r"`x` must be a float batch \(B, \.\.\.\), got dtype int32"):
        attribution.saliency(score, jnp.ones((2, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"`a` and `b` must have one shape, got \(2, 3\) and \(2, 4\)"):
        attribution.rank_correlation(x, jnp.ones((2, 4)))


# --------------------------------------------------------------------------- attention maps


def _two_block_transformer():
    blocks = [fdl.nn.TransformerEncoderBlock(2, 16, name=f"block_{i}") for i in range(2)]
    return fdl.nn.Serial(fdl.nn.Dense(8, name="embed"), *blocks)


def test_attention_maps_are_each_layers_weights_with_their_masks():
    model = _two_block_transformer()
    params, state, _ = model.init(jax.random.key(0), (6, 3))
    x = jax.random.normal(jax.random.key(1), (4, 6, 3))
    mask = jnp.arange(6)[None, :] < jnp.array([6, 4, 2, 5])[:, None]  # (4, 6) padding
    maps = attribution.attention_maps(model, params, state, x, mask=mask)
    assert list(maps) == ["block_0/attention", "block_1/attention"]
    # the first block's map, by hand: its queries and keys read the layer-normed embedding
    _, _, inside = fdl.nn.capture(model, "block_0/attention_norm")(params, state, x, mask=mask)
    h = inside["block_0/attention_norm"]
    p = params["block_0"]["attention"]
    q = jnp.einsum("btd,df->btf", h, p["query"]["w"]) + p["query"]["b"][None, None]
    k = jnp.einsum("btd,df->btf", h, p["key"]["w"]) + p["key"]["b"][None, None]
    q, k = q.reshape(4, 6, 2, 4), k.reshape(4, 6, 2, 4)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / 2.0  # sqrt(d) = 2
    scores = jnp.where(mask[:, None, None, :], scores, -jnp.inf)
    np.testing.assert_allclose(maps["block_0/attention"], jax.nn.softmax(scores, axis=-1), atol=1e-6)
    for a in maps.values():
        assert a.shape == (4, 2, 6, 6)
        np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)
        assert not jnp.any(jnp.where(mask[:, None, None, :], 0.0, a))  # padded keys get nothing
    jitted = jax.jit(lambda p, v: attribution.attention_maps(model, p, state, v, mask=mask))(params, x)
    np.testing.assert_allclose(jitted["block_1/attention"], maps["block_1/attention"], atol=1e-6)


def test_attention_maps_of_a_causal_layer_are_lower_triangular():
    model = fdl.nn.Serial(fdl.nn.MultiHeadAttention(1, causal=True, name="attn"))
    params, state, _ = model.init(jax.random.key(0), (5, 4))
    (a,) = attribution.attention_maps(model, params, state, jnp.ones((2, 5, 4))).values()
    assert not jnp.any(jnp.triu(a[0, 0], k=1))
    # equal inputs give equal scores: query i spreads evenly over keys 0..i
    np.testing.assert_allclose(a[0, 0], jnp.tril(jnp.ones((5, 5))) / jnp.arange(1.0, 6.0)[:, None], rtol=1e-6)


def test_attention_rollout_by_hand():
    a1 = jnp.array([[1.0, 0.0], [0.5, 0.5]])[None]  # one head
    a2 = jnp.array([[0.0, 1.0], [1.0, 0.0]])[None]
    m1, m2 = 0.5 * jnp.eye(2) + 0.5 * a1[0], 0.5 * jnp.eye(2) + 0.5 * a2[0]
    np.testing.assert_allclose(attribution.attention_rollout([a1, a2]), m2 @ m1, rtol=1e-6)
    # hand values: m1 = [[1, 0], [.25, .75]], m2 = [[.5, .5], [.5, .5]] -> every row [.625, .375]
    np.testing.assert_allclose(attribution.attention_rollout([a1, a2]), [[0.625, 0.375]] * 2, rtol=1e-6)
    np.testing.assert_allclose(attribution.attention_rollout([a1, a2], residual=0.0), a2[0] @ a1[0])
    # heads are averaged first; a batch axis is kept
    two_heads = jnp.stack([a1[0], a2[0]])[None]  # (1, 2, 2, 2)
    rolled = attribution.attention_rollout([two_heads], residual=0.0)
    np.testing.assert_allclose(rolled, ((a1[0] + a2[0]) / 2)[None], rtol=1e-6)


def test_attention_bad_input_messages():
    dense = fdl.nn.Serial(fdl.nn.Dense(2))
    params, state, _ = dense.init(jax.random.key(0), (3,))
    with pytest.raises(ValueError, match=r"`model` has no attention layer \(fdl.nn.MultiHeadAttention\)"):
        attribution.attention_maps(dense, params, state, jnp.ones((1, 3)))
    with pytest.raises(TypeError, match=r"attention_maps: `model` must be a fdl.nn.Layer, got 'model'"):
        attribution.attention_maps("model", params, state, jnp.ones((1, 3)))
    square = jnp.ones((1, 3, 3)) / 3
    with pytest.raises(ValueError, match=r"`maps` must hold at least one attention map, got none"):
        attribution.attention_rollout([])
    with pytest.raises(
        ValueError,
        match=r"`maps\[1\]` must be a self-attention map \(\*batch, H, T, T\), got shape \(1, 3, 4\)",
    ):
        attribution.attention_rollout([square, jnp.ones((1, 3, 4))])
    with pytest.raises(
        ValueError, match=r"`maps\[1\]` has shape \(2, 3, 3\), but `maps\[0\]` has shape \(1, 3, 3\)"
    ):
        attribution.attention_rollout([square, jnp.ones((2, 3, 3))])
    with pytest.raises(ValueError, match=r"`residual` must be in \[0, 1\], got 1.5"):
        attribution.attention_rollout([square], residual=1.5)
    with pytest.raises(ValueError, match=r"residual"):
        attribution.attention_rollout([square], residual=-0.1)
