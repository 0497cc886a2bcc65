r"""Bayesian deep learning: predictive uncertainty from stochastic forward passes.

A network trained as usual gives one softmax per input, and that softmax is often confident on
inputs unlike anything it was trained on. A Bayesian network keeps a *distribution* over its
weights, :math:`q(\theta)`, and predicts with the average over it,

.. math::

    p(y \mid x) = \mathbb{E}_{\theta \sim q}\, p(y \mid x, \theta)
        \approx \frac{1}{T} \sum_{t=1}^{T} p(y \mid x, \theta_t), \qquad \theta_t \sim q,

so the spread of the :math:`T` sampled predictions measures what the model does not know. Two
ways to get :math:`q` cheaply are here:

* **MC dropout** (Gal and Ghahramani, 2016): a network trained with dropout, kept in training
  mode at test time, samples a thinned network per pass. :func:`mc_dropout_predict` runs the
  :math:`T` passes (``jax.vmap`` over one PRNG key per pass) and splits the uncertainty.
* **Bayes by backprop** (Blundell et al., 2015): :func:`BayesDense` stores a mean-field Gaussian
  per weight and samples it by the reparameterization trick; it is trained on the evidence lower
  bound, the data loss plus :func:`bayes_kl` (a closed form) divided by the number of examples:
  :func:`elbo_loss`, a loss for :func:`fdl.fit.fit`.

The decomposition (:func:`uncertainty`) of the predictive entropy into the mean entropy of each
pass (*aleatoric*: noise the model expects) and the mutual information between the prediction
and the weights (*epistemic*: disagreement between passes, the BALD score of Houlsby et al.,
2011) is the same for both.

Entropies are in nats, by :func:`fdl.information.entropy` (:math:`0 \log 0 = 0`).

References:
    Y. Gal and Z. Ghahramani, "Dropout as a Bayesian Approximation: Representing Model
    Uncertainty in Deep Learning", ICML 2016.
    C. Blundell, J. Cornebise, K. Kavukcuoglu and D. Wierstra, "Weight Uncertainty in Neural
    Networks", ICML 2015.
    N. Houlsby, F. Huszár, Z. Ghahramani and M. Lengyel, "Bayesian Active Learning for
    Classification and Preference Learning", arXiv:1112.5745, 2011.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fdl import _dtypes, information, initializers
from fdl._checks import (
    check_instance,
    check_non_negative_finite,
    check_positive_int,
    check_prng_key,
    check_shape,
    is_real_number,
)
from fdl.nn.layer import Layer, Shape, layer_factory

__all__ = [
    "Uncertainty",
    "uncertainty",
    "sample_probabilities",
    "mc_dropout_predict",
    "BayesDense",
    "bayes_dense_kl",
    "bayes_kl",
    "elbo_loss",
]


class Uncertainty(NamedTuple):
    """The Monte-Carlo predictive distribution and its entropy decomposition.

    Attributes:
        probs: ``(..., C)`` the predictive mean :math:`\\bar p = \\frac1T \\sum_t p_t`.
        predictive_entropy: ``(...)`` :math:`H[\\bar p]`, the total uncertainty.
        expected_entropy: ``(...)`` :math:`\\frac1T \\sum_t H[p_t]`, the aleatoric part.
        mutual_information: ``(...)`` their difference, the epistemic part (BALD), ``>= 0``.
    """

    probs: jax.Array
    predictive_entropy: jax.Array
    expected_entropy: jax.Array
    mutual_information: jax.Array


def uncertainty(probs: ArrayLike) -> Uncertainty:
    r"""Split the uncertainty of :math:`T` sampled predictions into aleatoric and epistemic parts.

    With :math:`p_t` the class probabilities of pass :math:`t` (``probs[t]``),
    :math:`H[p] = -\sum_c p_c \log p_c` (nats, :math:`0 \log 0 = 0`):

    .. math::

        \bar p = \frac1T \sum_{t=1}^T p_t, \qquad
        \underbrace{H[\bar p]}_{\text{predictive}}
            = \underbrace{\frac1T \sum_{t=1}^T H[p_t]}_{\text{expected}}
            + \underbrace{I(y; \theta \mid x)}_{\text{mutual information}}

    The mutual information is :math:`\ge 0` by Jensen's inequality (entropy is concave); it is
    0 when all passes agree. It is clipped at 0 against rounding.

    Args:
        probs: ``(T, ..., C)`` probabilities, the sample axis first, classes last.

    Returns:
        An :class:`Uncertainty` with ``probs`` ``(..., C)`` and three ``(...)`` arrays.

    Raises:
        ValueError: ``probs`` has fewer than 2 axes (samples and classes); concrete ``probs``
        negative or not summing to 1 (see :func:`fdl.information.check_distribution`).

    >>> import jax.numpy as jnp
    >>> u = uncertainty(jnp.array([[1.0, 0.0], [0.0, 1.0]]))  # two confident passes disagree
    >>> [round(float(v), 4) for v in (u.predictive_entropy, u.expected_entropy, u.mutual_information)]
    [0.6931, 0.0, 0.6931]

    References:
        N. Houlsby et al., "Bayesian Active Learning for Classification and Preference
        Learning", 2011 (BALD); Y. Gal, "Uncertainty in Deep Learning", PhD thesis, 2016, §3.3.
    """
    probs = jnp.asarray(probs)
    if probs.ndim < 2:
        raise ValueError(
            f"`probs` must have shape (T, ..., C) with the sample axis first and the classes last, "
            f"got shape {probs.shape}"
        )
    mean = jnp.mean(probs, axis=0)  # (..., C)
    predictive = information.entropy(mean)  # (...)
    expected = jnp.mean(information.entropy(probs), axis=0)  # (...)
    mutual = jnp.maximum(predictive - expected, jnp.zeros_like(predictive))
    return Uncertainty(mean, predictive, expected, mutual)


def sample_probabilities(
    model: Layer,
    params: Any,
    state: Any,
    x: ArrayLike,
    *,
    key: jax.Array,
    num_samples: int,
    train: bool = True,
) -> jax.Array:
    r"""The softmax of ``T = num_samples`` stochastic passes of ``model``, one PRNG key each.

    .. math::

        p_t = \operatorname{softmax}\bigl(f(x; \theta_t)\bigr), \qquad
        \theta_t \sim q \text{ drawn from } \mathrm{key}_t, \quad t = 1, \dots, T

    The passes run as one ``jax.vmap`` over ``jax.random.split(key, T)``; the layer state that
    ``apply`` returns is dropped, so ``state`` is never updated.

    Args:
        model: a :class:`~fdl.nn.Layer` whose output is logits ``(..., C)``.
        params, state: its parameters and layer state (from ``init`` or training).
        x: ``(*batch, *example)`` inputs.
        key: the PRNG key, split into one key per pass.
        num_samples: :math:`T`, a positive int (static).
        train: the ``train`` flag of every pass; ``True`` keeps dropout on (MC dropout). Note that
            it also puts batch norm in training mode: wrap batch-norm layers in
            :func:`fdl.nn.Eval` to sample dropout alone.

    Returns:
        ``(T, *batch, C)`` class probabilities.

    Raises:
        TypeError: ``model`` is not a Layer. ValueError: ``num_samples`` is not a positive int,
        or ``key`` is not a PRNG key.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dropout(0.5), fdl.nn.Dense(3))
    >>> params, state, _ = model.init(jax.random.key(0), (4,))
    >>> p = sample_probabilities(model, params, state, jnp.ones((2, 4)), key=jax.random.key(1), num_samples=5)
    >>> p.shape, bool(jnp.allclose(p.sum(-1), 1.0))
    ((5, 2, 3), True)
    """
    check_instance("model", model, Layer, "fdl.nn.Layer (e.g. fdl.models.build_model('mlp', 10))")
    num_samples = check_positive_int("num_samples", num_samples)
    check_prng_key("key", key)
    x = jnp.asarray(x)

    def one_pass(k: jax.Array) -> jax.Array:
        logits, _ = model.apply(params, state, x, key=k, train=train)
        return jax.nn.softmax(logits, axis=-1)  # (*batch, C)

    return jax.vmap(one_pass)(jax.random.split(key, num_samples))  # (T, *batch, C)


def mc_dropout_predict(
    model: Layer,
    params: Any,
    state: Any,
    x: ArrayLike,
    *,
    key: jax.Array,
    num_samples: int = 32,
    train: bool = True,
) -> Uncertainty:
    r"""MC-dropout prediction: :math:`T` stochastic passes, their mean and its uncertainty.

    Keeps dropout on at test time and averages the softmax of ``T = num_samples`` passes, each
    with its own dropout masks (Gal and Ghahramani, 2016):

    .. math::

        \bar p = \frac1T \sum_{t=1}^T \operatorname{softmax} f(x; \theta \odot m_t), \qquad
        \mathrm{MI} = H[\bar p] - \frac1T \sum_t H[p_t]

    It is :func:`sample_probabilities` followed by :func:`uncertainty`. Any stochastic layer
    that samples from ``key`` works the same way: a model of :func:`BayesDense` layers gives
    the Bayes-by-backprop predictive. Pure; jit it with ``model`` and ``num_samples`` static
    (``jax.jit(mc_dropout_predict, static_argnames=("model", "num_samples"))``) or close over
    them.

    Args:
        model, params, state, x, key, num_samples, train: as in :func:`sample_probabilities`.

    Returns:
        An :class:`Uncertainty`: predictive mean ``(*batch, C)``, predictive entropy, expected
        entropy and mutual information ``(*batch,)``, in nats.

    Raises:
        As :func:`sample_probabilities`.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.models.build_model("mlp", 10, hidden=(32,), dropout=0.5)
    >>> params, state, _ = model.init(jax.random.key(0), (64,))
    >>> u = mc_dropout_predict(model, params, state, jnp.ones((3, 64)), key=jax.random.key(1), num_samples=8)
    >>> u.probs.shape, u.mutual_information.shape, bool((u.mutual_information > 0).all())
    ((3, 10), (3,), True)

    References:
        Y. Gal and Z. Ghahramani, "Dropout as a Bayesian Approximation", ICML 2016.
    """
    probs = sample_probabilities(model, params, state, x, key=key, num_samples=num_samples, train=train)
    return uncertainty(probs)


def _inverse_softplus(y: float) -> float:
    """:math:`\\rho = \\log(e^\\sigma - 1)`, so that :math:`\\operatorname{softplus}(\\rho) = \\sigma`."""
    return math.log(math.expm1(y))


@layer_factory
def BayesDense(
    features: int,
    *,
    init_sigma: float = 1e-3,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    name: str | None = None,
) -> Layer:
    r"""A dense layer with a mean-field Gaussian over its weights (Bayes by backprop).

    Every weight and bias has its own mean :math:`\mu` and scale
    :math:`\sigma = \operatorname{softplus}(\rho) = \log(1 + e^\rho) > 0`; a pass samples them by
    the reparameterization trick, so gradients flow to :math:`\mu` and :math:`\rho`:

    .. math::

        W = \mu_W + \sigma_W \odot \varepsilon_W, \quad
        b = \mu_b + \sigma_b \odot \varepsilon_b, \quad
        \varepsilon \sim \mathcal N(0, I), \qquad z = x W + b

    One weight sample per call is shared by the whole batch (as in the paper). With a ``key``
    the layer samples (in training or evaluation: that is how the predictive is sampled, see
    :func:`mc_dropout_predict`); without one, evaluation uses the means :math:`W = \mu_W`,
    :math:`b = \mu_b`, and training raises. Train on the negative evidence lower bound,
    ``loss = mean cross-entropy + bayes_kl(params, prior_sigma) / N`` for :math:`N` training
    examples.

    Args:
        features: the output width.
        init_sigma: the initial :math:`\sigma` of every weight (:math:`\rho` starts at
            :math:`\log(e^{\sigma} - 1)`); small, so training starts near a plain network.
        use_bias: keep a Gaussian bias too.
        w_init: initializer of :math:`\mu_W`; default LeCun normal. :math:`\mu_b` starts at 0.
        param_dtype: dtype of the stored parameters.
        name: its name in a parent's paths (automatic ``bayes_dense_<i>`` if ``None``).

    Returns:
        A :class:`~fdl.nn.Layer` with ``params = {"w_mu", "w_rho": (in, features),
        "b_mu", "b_rho": (features,)}``.

    Raises:
        ValueError: ``features`` not a positive int or ``init_sigma`` not > 0 (at construction);
        a mismatched input width; training without a key.

    >>> import jax, jax.numpy as jnp, fdl
    >>> layer = BayesDense(2)
    >>> params, state, shape = layer.init(jax.random.key(0), (3,))
    >>> sorted(params), shape
    (['b_mu', 'b_rho', 'w_mu', 'w_rho'], (2,))
    >>> mean, _ = layer.apply(params, state, jnp.ones(3))  # no key: the mean weights
    >>> bool(jnp.allclose(mean, jnp.ones(3) @ params["w_mu"]))
    True

    References:
        C. Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015, §3.2.
        D. P. Kingma and M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014
        (the reparameterization trick).
    """
    features = check_positive_int("features", features)
    if not is_real_number(init_sigma) or not init_sigma > 0:
        raise ValueError(f"`init_sigma` must be a positive number, got {init_sigma!r}")
    rho0 = _inverse_softplus(float(init_sigma))
    w_init = initializers.lecun_normal() if w_init is None else w_init

    def init(key: jax.Array, input_shape: Shape) -> tuple[dict, dict, Shape]:
        shape = check_shape("input_shape", input_shape)
        if len(shape) < 1:
            raise ValueError(f"BayesDense needs inputs with at least one axis, got input_shape {shape}")
        w_shape = (shape[-1], features)
        params = {"w_mu": w_init(key, w_shape, param_dtype), "w_rho": jnp.full(w_shape, rho0, param_dtype)}
        if use_bias:
            params["b_mu"] = jnp.zeros((features,), param_dtype)
            params["b_rho"] = jnp.full((features,), rho0, param_dtype)
        return params, {}, shape[:-1] + (features,)

    def sample(params: dict, part: str, key: Any) -> jax.Array:
        mu = params[f"{part}_mu"]
        if key is None:
            return mu
        eps = jax.random.normal(key, mu.shape, mu.dtype)
        return mu + jax.nn.softplus(params[f"{part}_rho"]) * eps

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del mask  # position by position
        if train and key is None:
            raise ValueError(
                "BayesDense samples its weights in training and needs a PRNG key: call "
                "apply(params, state, x, key=key, train=True)"
            )
        w_key, b_key = (None, None) if key is None else jax.random.split(key)
        w = sample(params, "w", w_key)
        x = jnp.asarray(x)
        if x.ndim < 1 or x.shape[-1] != w.shape[0]:
            raise ValueError(f"BayesDense expects inputs of shape (..., {w.shape[0]}), got shape {x.shape}")
        compute = _dtypes.promote_types(x.dtype, w.dtype)
        z = jnp.matmul(x.astype(compute), w.astype(compute))  # (*batch, features)
        if use_bias:
            z = z + jnp.broadcast_to(sample(params, "b", b_key).astype(compute), z.shape)
        return z, state

    return Layer(init, apply)


def _log_softplus(rho: jax.Array) -> jax.Array:
    """:math:`\\log \\operatorname{softplus}(\\rho)`, equal to :math:`\\rho` (to ~1e-9) below -20,
    where softplus itself would underflow."""
    small = rho < -20.0
    safe = jnp.where(small, jnp.zeros_like(rho), rho)
    return jnp.where(small, rho, jnp.log(jax.nn.softplus(safe)))


def _gaussian_kl(mu: jax.Array, rho: jax.Array, prior_sigma: Any) -> jax.Array:
    sigma = jax.nn.softplus(rho)
    prior_var = jnp.square(jnp.asarray(prior_sigma, mu.dtype))
    log_ratio = jnp.log(jnp.asarray(prior_sigma, mu.dtype)) - _log_softplus(rho)
    return jnp.sum(log_ratio + (jnp.square(sigma) + jnp.square(mu)) / (2.0 * prior_var) - 0.5)


def _check_prior_sigma(prior_sigma: Any) -> None:
    if isinstance(prior_sigma, (int, float)) and not isinstance(prior_sigma, bool) and not prior_sigma > 0:
        raise ValueError(f"`prior_sigma` must be > 0, got {prior_sigma!r}")


def bayes_dense_kl(params: dict, prior_sigma: Any = 1.0) -> jax.Array:
    r"""KL divergence of one :func:`BayesDense` layer's posterior from the prior
    :math:`\mathcal N(0, s_p^2)` per weight, in closed form.

    For each weight with :math:`q = \mathcal N(\mu, \sigma^2)`, :math:`\sigma =
    \operatorname{softplus}(\rho)`, and the prior :math:`p = \mathcal N(0, s_p^2)`:

    .. math::

        \mathrm{KL}(q \,\|\, p) = \log\frac{s_p}{\sigma}
            + \frac{\sigma^2 + \mu^2}{2 s_p^2} - \frac12,

    summed over every weight and bias. It is 0 exactly when :math:`\mu = 0, \sigma = s_p`.

    Args:
        params: the layer's ``{"w_mu", "w_rho", "b_mu", "b_rho"}`` (the bias pair optional).
        prior_sigma: :math:`s_p > 0`, a number or a scalar array.

    Returns:
        A scalar in the parameters' dtype, nats.

    Raises:
        ValueError: ``params`` is not a BayesDense parameter dict, or ``prior_sigma <= 0``.

    >>> import jax, jax.numpy as jnp
    >>> params = {"w_mu": jnp.zeros((2, 1)), "w_rho": jnp.full((2, 1), jnp.log(jnp.expm1(1.0)))}
    >>> round(float(bayes_dense_kl(params, 1.0)), 5)  # q equals the prior
    0.0

    References:
        C. Blundell et al., "Weight Uncertainty in Neural Networks", ICML 2015;
        D. P. Kingma and M. Welling, "Auto-Encoding Variational Bayes", ICLR 2014, appendix B.
    """
    if not isinstance(params, dict) or "w_mu" not in params or "w_rho" not in params:
        keys = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(
            f"`params` must be the parameters of a BayesDense layer (keys w_mu, w_rho, and b_mu, "
            f"b_rho with a bias), got {keys}; for a whole model use bayes_kl"
        )
    _check_prior_sigma(prior_sigma)
    total = _gaussian_kl(params["w_mu"], params["w_rho"], prior_sigma)
    if "b_mu" in params:
        total = total + _gaussian_kl(params["b_mu"], params["b_rho"], prior_sigma)
    return total


def bayes_kl(params: Any, prior_sigma: Any = 1.0) -> jax.Array:
    r"""The sum of :func:`bayes_dense_kl` over every :func:`BayesDense` layer in a model.

    .. math::

        \mathrm{KL}(q \,\|\, p) = \sum_{\text{layers } \ell} \mathrm{KL}(q_\ell \,\|\, p_\ell)

    (the posterior and the prior factorize over layers). A layer is recognised by its
    ``w_mu`` / ``w_rho`` leaves; other layers' parameters are point estimates and add nothing.

    Args:
        params: a model's parameter tree (nested dicts, lists and tuples).
        prior_sigma: :math:`s_p > 0`, the same prior scale for every weight.

    Returns:
        A scalar in the promoted dtype of the layers' KLs (float64 for float64 layers); 0 in the
        default float for a model without BayesDense layers.

    Raises:
        ValueError: ``prior_sigma <= 0``.

    >>> import jax, fdl
    >>> model = fdl.nn.Serial(BayesDense(4), fdl.nn.Relu(), BayesDense(2))
    >>> params, _, _ = model.init(jax.random.key(0), (3,))
    >>> total = bayes_kl(params, 1.0)
    >>> bool(jnp.isclose(total, bayes_dense_kl(params["bayes_dense_0"]) + bayes_dense_kl(params["bayes_dense_1"])))
    True
    """
    _check_prior_sigma(prior_sigma)
    terms = _layer_kls(params, prior_sigma)
    if not terms:
        return jnp.zeros((), _dtypes.default_float())
    dtype = _dtypes.result_type(*terms)  # float64 layers keep float64; bfloat16 with float32 gives float32
    return sum((term.astype(dtype) for term in terms[1:]), terms[0].astype(dtype))


def elbo_loss(model: Layer, kl_weight: float, prior_sigma: float = 1.0) -> Any:
    r"""The negative evidence lower bound of a classifier, per example, as a loss for
    :func:`fdl.fit.fit` (the one loss signature, :data:`fdl.train.LOSS_SIGNATURE`):

    .. math::

        L(\phi) = -\frac{1}{B} \sum_{i \in B} \log p(y_i \mid x_i, \theta), \quad \theta \sim
        q_\phi \;+\; w \, \mathrm{KL}(q_\phi \,\|\, p)

    where one weight sample :math:`\theta` is drawn per step from the step's key (by each
    :func:`BayesDense`'s reparameterization) and :math:`w` is ``kl_weight``. With :math:`w =
    1/N`, :math:`N` the number of training examples, :math:`L` is the negative ELBO divided by
    :math:`N`, as in Blundell et al. (2015); :math:`w = 0` gives the plain cross-entropy, as
    :func:`fdl.fit.classification_loss` (a dropout network for MC dropout trains on that).

    The metrics are the batch ``accuracy`` and the ``kl``; the loss carries ``model`` and the
    label check of :func:`fdl.fit.classification_loss`.

    Args:
        model: a classifier whose output is logits; its :func:`BayesDense` layers enter the KL.
        kl_weight: :math:`w \ge 0`.
        prior_sigma: :math:`s_p > 0`, the prior scale of every weight (:func:`bayes_kl`).

    Raises:
        ValueError: ``kl_weight`` negative or not finite; ``prior_sigma <= 0``.

    >>> import jax, jax.numpy as jnp, fdl
    >>> model = fdl.nn.Serial(BayesDense(4), fdl.nn.Relu(), BayesDense(3))
    >>> params, state, _ = model.init(jax.random.key(0), (2,))
    >>> loss_fn = elbo_loss(model, kl_weight=0.01)
    >>> batch = (jnp.ones((5, 2)), jnp.array([0, 1, 2, 0, 1]))
    >>> loss, (_, metrics) = loss_fn(params, state, batch, jax.random.key(1))
    >>> sorted(metrics), bool(loss > 0.01 * metrics["kl"])
    (['accuracy', 'kl'], True)
    """
    from fdl.fit import classification_loss  # fdl.fit imports the layers; bayesian is a layer

    kl_weight = check_non_negative_finite("kl_weight", kl_weight)
    _check_prior_sigma(prior_sigma)
    data_loss = classification_loss(model)

    def loss_fn(params: Any, layer_state: Any, batch: Any, key: jax.Array) -> Any:
        loss, (layer_state, metrics) = data_loss(params, layer_state, batch, key)
        kl = bayes_kl(params, prior_sigma)
        return loss + kl_weight * kl.astype(loss.dtype), (layer_state, {**metrics, "kl": kl})

    loss_fn.model = model  # type: ignore[attr-defined]  # fit reads the initial layer state
    loss_fn.check_data = data_loss.check_data  # type: ignore[attr-defined]
    return loss_fn


def _layer_kls(params: Any, prior_sigma: Any) -> list[jax.Array]:
    """One KL per BayesDense layer found in nested dicts, lists and tuples."""
    if isinstance(params, dict):
        if "w_mu" in params and "w_rho" in params:
            return [bayes_dense_kl(params, prior_sigma)]
        children: Any = params.values()
    elif isinstance(params, (list, tuple)):
        children = params
    else:
        return []
    return [term for child in children for term in _layer_kls(child, prior_sigma)]
