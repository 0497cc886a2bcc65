r"""Attribution: which input features a prediction depends on.

Every method explains a **score** :math:`f(x)`, one number per example, usually the logit (or
log-probability) of the predicted or the true class: ``score_fn(x) -> (B,)`` for a batch ``x``
of shape ``(B, ...)`` (:func:`class_score` builds one from a classifier). An attribution has the
shape of ``x``: one number per input feature.

* :func:`saliency`: the input gradient :math:`\nabla_x f(x)` (Simonyan et al., 2014);
* :func:`gradient_times_input`: :math:`x \odot \nabla_x f(x)`;
* :func:`integrated_gradients`: :math:`(x - x') \odot \int_0^1 \nabla f(x' + \alpha (x - x'))\,
  d\alpha` from a baseline :math:`x'` (Sundararajan et al., 2017), whose sum is
  :math:`f(x) - f(x')` (*completeness*) up to the quadrature's error;
* :func:`smoothgrad`: the gradient averaged over noisy copies of :math:`x` (Smilkov et al., 2017);
* :func:`occlusion`: how much the score drops when a window of the image is blanked out
  (Zeiler and Fergus, 2014);
* :func:`attention_maps`: the weights of every attention layer of a model, read out of it by
  :func:`fdl.nn.capture`; :func:`attention_rollout` chains them through the layers of a
  transformer (Abnar and Zuidema, 2020);
* :func:`rank_correlation`: Spearman's correlation of two attributions per example, the measure
  of the model-randomization sanity check (Adebayo et al., 2018): a method whose maps barely
  change when the model's weights are re-initialized does not explain the model.

The gradient methods take the gradient of the batch's summed score, which is every example's own
gradient when examples do not interact (a model in evaluation mode).

Example:
    >>> import jax.numpy as jnp
    >>> from fdl import attribution
    >>> score_fn = lambda x: jnp.sum(x**2, axis=1)  # f(x) = |x|^2
    >>> x = jnp.array([[1.0, 2.0]])
    >>> attribution.saliency(score_fn, x).tolist()
    [[2.0, 4.0]]
    >>> ig = attribution.integrated_gradients(score_fn, x, steps=8)
    >>> ig.tolist(), float(ig.sum())  # completeness: f(x) - f(0) = 5
    ([[1.0, 4.0]], 5.0)

References:
    K. Simonyan, A. Vedaldi and A. Zisserman, "Deep Inside Convolutional Networks", ICLR 2014.
    M. Sundararajan, A. Taly and Q. Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.
    D. Smilkov, N. Thorat, B. Kim, F. Viégas and M. Wattenberg, "SmoothGrad: removing noise by
    adding noise", arXiv:1706.03825, 2017.
    M. Zeiler and R. Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014.
    S. Abnar and W. Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020.
    J. Adebayo, J. Gilmer, M. Muelly, I. Goodfellow, M. Hardt and B. Kim, "Sanity Checks for
    Saliency Maps", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import check_instance, check_non_negative_finite, check_positive_int, check_prng_key
from fdl.nn import Layer, capture

__all__ = [
    "class_score",
    "saliency",
    "gradient_times_input",
    "integrated_gradients",
    "smoothgrad",
    "occlusion",
    "attention_maps",
    "attention_rollout",
    "rank_correlation",
]

ScoreFn = Callable[[jax.Array], jax.Array]


def _check_x(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.ndim < 1:
        raise TypeError(f"`x` must be a float batch (B, ...), got dtype {x.dtype} and shape {x.shape}")
    return x


def class_score(logits_fn: Callable[[jax.Array], jax.Array], labels: Any) -> ScoreFn:
    r"""``score_fn(x) -> (B,)``: the logit of each example's class, :math:`f(x)_i = z(x_i)_{y_i}`.

    ``labels`` are ``(B,)`` integers (the true or the predicted classes).

    >>> import jax.numpy as jnp
    >>> class_score(lambda x: 2 * x, jnp.array([1]))(jnp.array([[0.5, 3.0]])).tolist()
    [6.0]
    """
    labels = jnp.asarray(labels)

    def score_fn(x: jax.Array) -> jax.Array:
        logits = logits_fn(x)  # (B, C)
        return jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]

    return score_fn


def _gradient(score_fn: ScoreFn, x: jax.Array) -> jax.Array:
    return jax.grad(lambda x: jnp.sum(score_fn(x)))(x)


def saliency(score_fn: ScoreFn, x: Any) -> jax.Array:
    r"""The input gradient of the score, :math:`\nabla_x f(x)`, shaped like ``x``."""
    return _gradient(score_fn, _check_x(x))


def gradient_times_input(score_fn: ScoreFn, x: Any) -> jax.Array:
    r""":math:`x \odot \nabla_x f(x)`: the first-order Taylor term of each feature from a zero
    baseline (exact for a linear score without bias)."""
    x = _check_x(x)
    return x * _gradient(score_fn, x)


def integrated_gradients(score_fn: ScoreFn, x: Any, baseline: Any = None, *, steps: int = 50) -> jax.Array:
    r"""Integrated gradients from ``baseline`` (zeros by default), by the trapezoidal rule:

    .. math::

        \mathrm{IG}(x) = (x - x') \odot \int_0^1 \nabla f\bigl(x' + \alpha (x - x')\bigr)\, d\alpha
        \approx (x - x') \odot \frac{1}{K} \sum_{k=0}^{K} w_k\, \nabla f\bigl(x' + \tfrac{k}{K}
        (x - x')\bigr), \quad w_0 = w_K = \tfrac12,\; w_k = 1

    with :math:`K` = ``steps``. **Completeness**: :math:`\sum_j \mathrm{IG}_j(x) = f(x) - f(x')`
    exactly for the integral (the gradient theorem); the trapezoidal rule's error falls like
    :math:`1/K^2` for a smooth :math:`f`. For a ReLU network the path's kinks make it
    :math:`O(1/K)`; check ``attributions.sum()`` against ``f(x) - f(x')`` and raise ``steps``
    until the gap is small (the tests and ``examples/explain_digits.py`` report it).

    Args:
        score_fn: ``x (B, ...) -> (B,)`` scores.
        x: ``(B, ...)`` inputs.
        baseline: ``x'``, the shape of ``x`` (or of one example, broadcast); ``None`` is zeros.
        steps: :math:`K \ge 1` intervals (``K + 1`` gradient evaluations, mapped one at a time).

    Raises:
        ValueError: ``baseline`` of another shape; ``steps < 1``.
    """
    x = _check_x(x)
    steps = check_positive_int("steps", steps)
    if baseline is None:
        baseline = jnp.zeros_like(x)
    baseline = jnp.asarray(baseline, x.dtype)
    if baseline.shape == x.shape[1:]:
        baseline = jnp.broadcast_to(baseline, x.shape)
    if baseline.shape != x.shape:
        raise ValueError(
            f"`baseline` must have the shape of `x` {x.shape} or of one example {x.shape[1:]}, "
            f"got {baseline.shape}"
        )
    alphas = jnp.linspace(0.0, 1.0, steps + 1, dtype=x.dtype)  # (K + 1,)
    weights = jnp.ones(steps + 1, x.dtype).at[jnp.array([0, steps])].set(0.5) / steps

    def weighted_gradient(
        total: jax.Array, alpha_weight: tuple[jax.Array, jax.Array]
    ) -> tuple[jax.Array, None]:
        alpha, weight = alpha_weight
        return total + weight * _gradient(score_fn, baseline + alpha * (x - baseline)), None

    average, _ = jax.lax.scan(weighted_gradient, jnp.zeros_like(x), (alphas, weights))
    return (x - baseline) * average


def smoothgrad(
    score_fn: ScoreFn, x: Any, key: jax.Array, *, num_samples: int = 50, noise: float = 0.15
) -> jax.Array:
    r"""SmoothGrad: the input gradient averaged over ``num_samples`` noisy copies,

    .. math::

        \frac{1}{n} \sum_{s=1}^{n} \nabla_x f(x + \epsilon_s), \qquad
        \epsilon_s \sim \mathcal{N}(0, \sigma^2), \; \sigma = \text{noise} \cdot
        (\max x - \min x)

    with the range taken per example (Smilkov et al. use 10-20% of it).

    Raises:
        ValueError: ``num_samples < 1``; ``noise`` negative or not finite; a bad ``key``.
    """
    x = _check_x(x)
    key = check_prng_key("key", key)
    num_samples = check_positive_int("num_samples", num_samples)
    noise = check_non_negative_finite("noise", noise)
    axes = tuple(range(1, x.ndim))
    sigma = noise * (jnp.max(x, axis=axes, keepdims=True) - jnp.min(x, axis=axes, keepdims=True))

    def one(total: jax.Array, sample_key: jax.Array) -> tuple[jax.Array, None]:
        noisy = x + sigma * jax.random.normal(sample_key, x.shape, x.dtype)
        return total + _gradient(score_fn, noisy), None

    total, _ = jax.lax.scan(one, jnp.zeros_like(x), jax.random.split(key, num_samples))
    return total / num_samples


def occlusion(
    score_fn: ScoreFn, x: Any, *, window: tuple[int, int] = (2, 2), stride: int = 1, value: float = 0.0
) -> jax.Array:
    r"""Occlusion: the drop of the score when a ``window`` of an image is set to ``value``,
    averaged, for each pixel, over the windows that cover it.

    .. math::

        A_{hw} = \frac{1}{|W_{hw}|} \sum_{w \in W_{hw}} \bigl(f(x) - f(x_{\setminus w})\bigr)

    where :math:`W_{hw}` are the window positions (every ``stride`` pixels) covering pixel
    :math:`(h, w)` and :math:`x_{\setminus w}` is :math:`x` with that window, all channels,
    replaced by ``value``. One forward pass per window position, no gradient: the method sees
    what the model does with a missing region, not its local slope.

    Args:
        score_fn: ``x (B, H, W, C) -> (B,)``.
        x: ``(B, H, W, C)`` images.
        window: ``(height, width)`` of the occluding patch.
        stride: the step between window positions.
        value: what an occluded pixel is set to.

    Returns:
        ``(B, H, W, C)``, the same value for every channel of a pixel.
    """
    x = _check_x(x)
    if x.ndim != 4:
        raise ValueError(f"`x` must be images (B, H, W, C), got shape {x.shape}")
    _, height, width, _ = x.shape
    wh, ww = (check_positive_int("window", w) for w in window)
    stride = check_positive_int("stride", stride)
    if wh > height or ww > width:
        raise ValueError(f"`window` {tuple(window)} must fit the images of height {height} and width {width}")
    starts = [(r, c) for r in range(0, height - wh + 1, stride) for c in range(0, width - ww + 1, stride)]
    rows, cols = jnp.arange(height)[:, None], jnp.arange(width)[None, :]
    masks = jnp.stack(
        [((rows >= r) & (rows < r + wh) & (cols >= c) & (cols < c + ww)) for r, c in starts]
    )  # (P, H, W)
    clean = score_fn(x)  # (B,)

    def drop(mask: jax.Array) -> jax.Array:
        occluded = jnp.where(mask[None, :, :, None], jnp.asarray(value, x.dtype), x)
        return clean - score_fn(occluded)  # (B,)

    drops = jax.lax.map(drop, masks)  # (P, B)
    covered = masks.astype(x.dtype)  # (P, H, W)
    total = jnp.einsum("pb,phw->bhw", drops.astype(x.dtype), covered)
    counts = jnp.maximum(jnp.sum(covered, axis=0), 1.0)  # (H, W)
    return jnp.broadcast_to((total / counts[None])[..., None], x.shape)


_SOWN = "attention_weights"


def attention_maps(
    model: Layer, params: Any, state: Any, x: Any, *, mask: Any = None
) -> dict[str, jax.Array]:
    r"""The attention weights of every :func:`~fdl.nn.MultiHeadAttention` in ``model`` on ``x``,
    keyed by the attention layer's path, in evaluation mode.

    Each map is :math:`A = \mathrm{softmax}(Q K^\top / \sqrt{d} + \log M)` per head, shape
    ``(*batch, H, T_q, T_k)``: row :math:`i` is how query position :math:`i` spreads its
    attention over the key positions (it sums to 1, or is all 0 for a query that may attend to
    nothing). They are the weights the layer used, before attention dropout, read out of the
    model by :func:`fdl.nn.capture`, so the model is not rewritten to return them. An attention
    map shows where a layer reads from, not why the output changes; it is one view among the
    gradient methods (Jain and Wallace, 2019, "Attention is not Explanation").

    Args:
      model, params, state: the model and its trees (``model.init``'s).
      x: its input; ``mask``: its ``mask=`` (a padding mask), passed through.

    Raises:
      ValueError: a model with no attention layer (attention inside a recurrent layer's scan
        is not read out).
      TypeError: ``model`` not a :class:`~fdl.nn.Layer`.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dense(8), fdl.nn.TransformerEncoderBlock(2, 16, name="block"))
    >>> params, state, _ = model.init(jax.random.key(0), (5, 3))
    >>> maps = attention_maps(model, params, state, jnp.ones((4, 5, 3)))
    >>> {path: a.shape for path, a in maps.items()}
    {'block/attention': (4, 2, 5, 5)}
    """
    check_instance("model", model, Layer, "fdl.nn.Layer", "attention_maps")
    suffix = "/" + _SOWN

    def sown(path: str) -> bool:
        return path == _SOWN or path.endswith(suffix)

    _, _, captured = capture(model, sown)(params, state, x, train=False, mask=mask)
    if not captured:
        raise ValueError(
            f"`model` has no attention layer (fdl.nn.MultiHeadAttention) to read maps from: {model!r}"
        )
    return {(path[: -len(suffix)] if path != _SOWN else ""): a for path, a in captured.items()}


def attention_rollout(maps: Sequence[Any], *, residual: float = 0.5) -> jax.Array:
    r"""Attention rollout (Abnar and Zuidema, 2020): how much each output position draws on each
    input position through a stack of self-attention layers with residual connections.

    With :math:`\bar A_l` layer :math:`l`'s map averaged over heads and :math:`r` =
    ``residual``, the share that skips the attention through the residual branch:

    .. math::

        \tilde A_l = r\, I + (1 - r)\, \bar A_l, \qquad
        R = \tilde A_L \tilde A_{L-1} \cdots \tilde A_1 .

    Rows of :math:`R` sum to 1 when the maps' rows do.

    Args:
      maps: the self-attention layers' maps in the order they are applied (first layer
        first), each ``(*batch, H, T, T)`` (:func:`attention_maps`' values, in the model's
        order). A decoder's cross-attention maps are not rolled out: leave them out (a square
        one, ``T_q = T_k``, would not be caught).
      residual: :math:`r \in [0, 1]`; the paper's 0.5; 0 multiplies the bare maps.

    Returns:
      :math:`R`, ``(*batch, T, T)``.

    Raises:
      ValueError: no maps, a map that is not square ``(..., H, T, T)`` (cross-attention), maps of
        different shapes (both named), or ``residual`` outside [0, 1].
    """
    maps = [jnp.asarray(a) for a in maps]
    if not maps:
        raise ValueError("`maps` must hold at least one attention map, got none")
    residual = check_non_negative_finite("residual", residual)
    if residual > 1:
        raise ValueError(f"`residual` must be in [0, 1], got {residual}")
    for i, a in enumerate(maps):
        if a.ndim < 3 or a.shape[-1] != a.shape[-2]:
            raise ValueError(
                f"`maps[{i}]` must be a self-attention map (*batch, H, T, T), got shape {a.shape}"
            )
        if a.shape != maps[0].shape:
            raise ValueError(f"`maps[{i}]` has shape {a.shape}, but `maps[0]` has shape {maps[0].shape}")
    eye = jnp.eye(maps[0].shape[-1], dtype=maps[0].dtype)
    rollout = None
    for a in maps:
        mean = jnp.mean(a, axis=-3)  # (*batch, T, T)
        mixed = residual * jnp.broadcast_to(eye, mean.shape) + (1 - residual) * mean
        rollout = mixed if rollout is None else mixed @ rollout
    assert rollout is not None
    return rollout


def rank_correlation(a: Any, b: Any) -> jax.Array:
    r"""Spearman's rank correlation of two attributions, per example: the Pearson correlation
    of the ranks of their features, tied values sharing their average rank (as
    ``scipy.stats.spearmanr``),

    .. math::

        \rho = \frac{\operatorname{cov}(\operatorname{rank} a, \operatorname{rank} b)}
            {\sigma_{\operatorname{rank} a}\, \sigma_{\operatorname{rank} b}} \in [-1, 1].

    ``a`` and ``b``: ``(B, ...)`` of one shape; returns ``(B,)`` (NaN for an example whose
    features are all equal in ``a`` or ``b``, or that holds a NaN, as SciPy's default
    ``nan_policy="propagate"``). Adebayo et al. (2018) compare the absolute values of
    the maps of a trained and a randomized model this way.

    >>> import jax.numpy as jnp
    >>> rank_correlation(jnp.array([[1.0, 2.0, 3.0]]), jnp.array([[10.0, 20.0, 35.0]])).tolist()
    [1.0]
    """
    a, b = _check_x(a), _check_x(b)
    if a.shape != b.shape:
        raise ValueError(f"`a` and `b` must have one shape, got {a.shape} and {b.shape}")

    def average_ranks(v: jax.Array) -> jax.Array:  # (D,) -> (D,), ties get the mean of their ranks
        ordered = jnp.sort(v)
        first = jnp.searchsorted(ordered, v, side="left")
        last = jnp.searchsorted(ordered, v, side="right") - 1
        return (first + last).astype(jnp.float32) / 2

    def ranks(v: jax.Array) -> jax.Array:  # (B, D) -> (B, D), centred per example
        ranked = jax.vmap(average_ranks)(v)
        return ranked - ranked.mean(axis=1, keepdims=True)

    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)  # (B, D)
    ra, rb = ranks(a), ranks(b)
    rho = jnp.sum(ra * rb, axis=1) / jnp.sqrt(jnp.sum(ra * ra, axis=1) * jnp.sum(rb * rb, axis=1))
    has_nan = jnp.isnan(a).any(axis=1) | jnp.isnan(b).any(axis=1)
    return jnp.where(has_nan, jnp.nan, rho)  # a sort gives NaN a rank; SciPy propagates it
