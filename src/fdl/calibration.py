r"""Calibration: whether a classifier's confidence matches how often it is right.

A classifier is *calibrated* when, among the inputs it labels with confidence 0.8, it is right
80% of the time. Modern networks trained to low cross-entropy are often overconfident (Guo et
al., 2017). This module measures that and repairs the simplest kind of it:

* :func:`reliability_diagram` bins the examples by their top-label confidence and returns, per
  bin, the mean confidence, the accuracy and the count: the data of a reliability diagram.
* :func:`expected_calibration_error` is the count-weighted mean gap between the two.
* :func:`fit_temperature` fits one temperature :math:`T > 0` on held-out logits;
  :func:`temperature_scale` divides the logits by it. Dividing every logit by the same
  :math:`T` keeps the argmax, so the accuracy is unchanged and only the confidence moves.

**Bins.** ``num_bins`` equal-width bins on :math:`[0, 1]` with edges :math:`e_b = b / B`; bin
:math:`b` (0-based) holds the confidences :math:`e_b < \hat p \le e_{b+1}`: bins are closed on
the right, as in Guo et al.'s code, and a confidence of exactly 0 goes to the first bin. Top-label
confidences are at least :math:`1/C`, so the first bins are often empty.

**Input checks.** ``probs`` must be ``(..., C)`` with integer ``labels`` of shape
``probs.shape[:-1]``. Where the values are concrete (not traced under ``jit``), ``probs`` must be
non-negative and sum to 1 over the last axis within the tolerance of
:func:`fdl.information.check_distribution` (``1e-5`` in float32, where a softmax sums to 1 within
about ``1e-7``): pass ``jax.nn.softmax(logits)``, not logits. Concrete labels must lie in
``[0, C)``.

References:
    C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of Modern Neural Networks",
    ICML 2017.
    M. P. Naeini, G. F. Cooper and M. Hauskrecht, "Obtaining Well Calibrated Probabilities Using
    Bayesian Binning", AAAI 2015 (ECE).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fdl import losses
from fdl._checks import check_labels, check_positive_int, concrete_float64, is_real_number
from fdl.information import check_distribution

__all__ = [
    "ReliabilityDiagram",
    "reliability_diagram",
    "expected_calibration_error",
    "temperature_scale",
    "fit_temperature",
]


class ReliabilityDiagram(NamedTuple):
    """Per-bin statistics of top-label confidence against accuracy.

    Attributes:
        edges: ``(B + 1,)`` bin edges ``0, 1/B, ..., 1``.
        confidence: ``(B,)`` mean top-label confidence per bin; NaN for an empty bin.
        accuracy: ``(B,)`` fraction of correct top labels per bin; NaN for an empty bin.
        counts: ``(B,)`` int32 number of examples per bin.
    """

    edges: jax.Array
    confidence: jax.Array
    accuracy: jax.Array
    counts: jax.Array


def _check_labels(labels: jax.Array, scores: jax.Array, what: str) -> None:
    """``labels`` of shape ``scores.shape[:-1]``, integers in ``[0, C)`` where concrete."""
    if labels.shape != scores.shape[:-1]:
        raise ValueError(
            f"`labels` must have shape {scores.shape[:-1]} (= {what}.shape[:-1]), got {labels.shape}"
        )
    classes = scores.shape[-1]
    check_labels("`labels`", labels, classes, where=f"(`{what}` has {classes} classes)")


def _check_inputs(probs: jax.Array, labels: jax.Array) -> None:
    if probs.ndim < 1:
        raise ValueError(f"`probs` must have a class axis (last), got shape {probs.shape}")
    _check_labels(labels, probs, "probs")
    check_distribution("probs", probs)  # pass jax.nn.softmax(logits), not logits


def reliability_diagram(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> ReliabilityDiagram:
    r"""The data of a reliability diagram: per confidence bin, mean confidence, accuracy, count.

    With top-label confidence :math:`\hat p_i = \max_c p_{ic}`, prediction
    :math:`\hat y_i = \operatorname{argmax}_c p_{ic}` (ties to the lower class) and bin
    :math:`B_b = \{i : b/B < \hat p_i \le (b+1)/B\}` (see the module docstring):

    .. math::

        \operatorname{conf}(B_b) = \frac{1}{|B_b|} \sum_{i \in B_b} \hat p_i, \qquad
        \operatorname{acc}(B_b) = \frac{1}{|B_b|} \sum_{i \in B_b} [\hat y_i = y_i]

    A calibrated model has :math:`\operatorname{acc} \approx \operatorname{conf}` in every bin.

    Args:
        probs: ``(..., C)`` class probabilities; all leading axes are examples.
        labels: ``(...)`` integer labels, ``probs.shape[:-1]``.
        num_bins: :math:`B`, a positive int (static).

    Returns:
        A :class:`ReliabilityDiagram`; empty bins have NaN confidence and accuracy.

    Raises:
        ValueError: ``num_bins < 1``; mismatched shapes; (concrete values) labels outside
            ``[0, C)``, negative entries or rows not summing to 1 (see
            :func:`fdl.information.check_distribution`).
        TypeError: non-integer labels.

    >>> import jax.numpy as jnp
    >>> probs = jnp.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> d = reliability_diagram(probs, jnp.array([0, 1, 1]), num_bins=2)
    >>> d.counts.tolist(), [round(v, 4) for v in d.confidence.tolist()], [round(v, 4) for v in d.accuracy.tolist()]
    ([0, 3], [nan, 0.7333], [nan, 0.6667])

    References:
        A. Niculescu-Mizil and R. Caruana, "Predicting Good Probabilities with Supervised
        Learning", ICML 2005; C. Guo et al., "On Calibration of Modern Neural Networks", 2017.
    """
    num_bins = check_positive_int("num_bins", num_bins)
    probs = jnp.asarray(probs)
    labels = jnp.asarray(labels)
    _check_inputs(probs, labels)
    flat = probs.reshape(-1, probs.shape[-1])  # (N, C)
    confidence = jnp.max(flat, axis=-1)  # (N,)
    correct = (jnp.argmax(flat, axis=-1) == labels.reshape(-1)).astype(confidence.dtype)  # (N,)
    edges = jnp.linspace(0.0, 1.0, num_bins + 1, dtype=confidence.dtype)  # (B + 1,)
    # side="left": the first edge >= confidence, so e_{b} < conf <= e_{b+1} lands in bin b.
    index = jnp.clip(jnp.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)  # (N,)
    counts = jnp.zeros((num_bins,), jnp.int32).at[index].add(1)
    conf_sum = jnp.zeros((num_bins,), confidence.dtype).at[index].add(confidence)
    acc_sum = jnp.zeros((num_bins,), confidence.dtype).at[index].add(correct)
    filled = counts > 0
    denominator = jnp.maximum(counts, 1).astype(confidence.dtype)
    nan = jnp.full((num_bins,), jnp.nan, confidence.dtype)
    return ReliabilityDiagram(
        edges,
        jnp.where(filled, conf_sum / denominator, nan),
        jnp.where(filled, acc_sum / denominator, nan),
        counts,
    )


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, num_bins: int = 15) -> jax.Array:
    r"""Expected calibration error: the count-weighted gap between accuracy and confidence.

    Over :math:`N` examples and the bins :math:`B_b` of :func:`reliability_diagram`:

    .. math::

        \mathrm{ECE} = \sum_{b=0}^{B-1} \frac{|B_b|}{N}
            \bigl|\operatorname{acc}(B_b) - \operatorname{conf}(B_b)\bigr|
            = \frac1N \sum_b \Bigl|\sum_{i \in B_b} ([\hat y_i = y_i] - \hat p_i)\Bigr|

    It is 0 for a calibrated model and at most 1. Empty bins contribute 0.

    Args:
        probs: ``(..., C)`` class probabilities.
        labels: ``(...)`` integer labels.
        num_bins: :math:`B` equal-width bins on :math:`[0, 1]`, closed on the right (15 as in
            Guo et al.).

    Returns:
        A scalar in the dtype of ``probs``; NaN for no examples.

    Raises:
        As :func:`reliability_diagram`.

    >>> import jax.numpy as jnp
    >>> probs = jnp.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    >>> round(float(expected_calibration_error(probs, jnp.array([0, 1, 1]), num_bins=2)), 4)
    0.0667

    Differs from some libraries: torchmetrics also uses right-closed equal-width bins (15 by
    default); others (e.g. bins closed on the left) can put an example that sits exactly on an
    edge in the next bin.

    References:
        M. P. Naeini et al., AAAI 2015; C. Guo et al., "On Calibration of Modern Neural
        Networks", ICML 2017, eq. (3).
    """
    diagram = reliability_diagram(probs, labels, num_bins)
    counts = diagram.counts.astype(diagram.confidence.dtype)
    gaps = jnp.where(
        diagram.counts > 0,
        jnp.abs(diagram.accuracy - diagram.confidence),
        jnp.zeros_like(diagram.confidence),
    )
    return jnp.sum(counts * gaps) / jnp.sum(counts)


def temperature_scale(logits: ArrayLike, temperature: ArrayLike) -> jax.Array:
    r"""Divide logits by a temperature: :math:`\operatorname{softmax}(z / T)`'s argument.

    .. math::

        z' = z / T, \qquad T > 1 \text{ softens}, \quad T < 1 \text{ sharpens},
        \quad \operatorname{argmax} z' = \operatorname{argmax} z

    Args:
        logits: ``(..., C)`` logits.
        temperature: a scalar :math:`T > 0` (e.g. from :func:`fit_temperature`).

    Returns:
        ``(..., C)`` scaled logits, the dtype of ``logits``.

    >>> import jax.numpy as jnp
    >>> temperature_scale(jnp.array([2.0, 4.0]), 2.0).tolist()
    [1.0, 2.0]
    """
    logits = jnp.asarray(logits)
    values = concrete_float64(temperature)
    if values is not None and (values.shape != () or not 0 < values < math.inf):
        raise ValueError(f"`temperature` must be a positive finite scalar, got {temperature!r}")
    return logits / jnp.asarray(temperature, logits.dtype)


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    lower: float = 1e-2,
    upper: float = 1e2,
    iterations: int = 60,
) -> jax.Array:
    r"""Fit the temperature :math:`T` that minimises the held-out negative log-likelihood.

    .. math::

        T^\star = \operatorname*{argmin}_{T \in [T_{lo}, T_{hi}]} \mathrm{NLL}(T), \qquad
        \mathrm{NLL}(T) = \frac1N \sum_{i=1}^N
            \Bigl(\log \sum_c e^{z_{ic}/T} - z_{i y_i}/T\Bigr)

    The minimisation is a golden-section search over :math:`s = \log T` on
    :math:`[\log T_{lo}, \log T_{hi}]`, ``iterations`` steps (each shrinks the bracket by
    :math:`1/\varphi \approx 0.618`; 60 steps take a bracket of width 9.2 to ``3e-12``), inside
    one ``lax.fori_loop``, so it is pure and jit-able. The search finds the global minimum: with
    :math:`\beta = 1/T` the NLL is convex in :math:`\beta` (a log-sum-exp of linear functions
    minus a linear one), hence unimodal in :math:`s = -\log\beta`. If the NLL keeps falling
    towards an end of the bracket (a held-out set the model gets all right, say), the result is
    that end (in float32, where the NLL rounds to exactly 0, wherever the flat zero starts). Its precision is that of the NLL's dtype: the NLL is flat at the minimum, so in
    float32 :math:`T` is good to about ``1e-3`` relative.

    Args:
        logits: ``(..., C)`` held-out logits (not probabilities).
        labels: ``(...)`` integer labels, ``logits.shape[:-1]``.
        lower, upper: the bracket :math:`0 < T_{lo} < T_{hi}`.
        iterations: golden-section steps, a positive int.

    Returns:
        The scalar :math:`T^\star`, in the dtype of ``logits``.

    Raises:
        ValueError: a bad bracket or ``iterations``; mismatched shapes; (concrete) labels
            outside ``[0, C)``.
        TypeError: non-integer labels or non-float logits.

    >>> import jax, jax.numpy as jnp
    >>> logits = 5.0 * jax.random.normal(jax.random.key(0), (500, 3))  # labels drawn from softmax(z / 5)
    >>> labels = jax.random.categorical(jax.random.key(1), logits / 5.0)
    >>> 3.5 < float(fit_temperature(logits, labels)) < 7.0
    True

    Differs from Guo et al.'s code, which runs LBFGS on :math:`T` itself from :math:`T = 1.5`;
    the minimiser is the same.

    References:
        C. Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, §4.2;
        J. Kiefer, "Sequential Minimax Search for a Maximum", Proc. AMS 4(3), 1953.
    """
    iterations = check_positive_int("iterations", iterations)
    for name, value in (("lower", lower), ("upper", upper)):
        if not is_real_number(value) or not 0 < value < math.inf:
            raise ValueError(f"`{name}` must be a positive finite number, got {value!r}")
    if not lower < upper:
        raise ValueError(f"`lower` must be < `upper`, got lower={lower!r}, upper={upper!r}")
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"`logits` must be floating point, got dtype {logits.dtype}")
    if logits.ndim < 1:
        raise ValueError(f"`logits` must have a class axis (last), got shape {logits.shape}")
    _check_labels(labels, logits, "logits")
    dtype = logits.dtype

    def nll(s: jax.Array) -> jax.Array:
        return losses.softmax_cross_entropy_with_integer_labels(
            logits * jnp.exp(-s), labels, reduction="mean"
        )

    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0  # 1/phi

    def step(_: int, bracket: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        a, b, c, d, fc, fd = bracket  # a < c < d < b, fc = nll(c), fd = nll(d)
        left = fc <= fd  # the minimum lies in [a, d]
        new_a, new_b = jnp.where(left, a, c), jnp.where(left, d, b)
        new_c = jnp.where(left, new_b - inv_phi * (new_b - new_a), d)
        new_d = jnp.where(left, c, new_a + inv_phi * (new_b - new_a))
        probe = jnp.where(left, new_c, new_d)  # the one new point
        f_probe = nll(probe)
        return (
            new_a,
            new_b,
            new_c,
            new_d,
            jnp.where(left, f_probe, fd),
            jnp.where(left, fc, f_probe),
        )

    a = jnp.asarray(math.log(lower), dtype)
    b = jnp.asarray(math.log(upper), dtype)
    c = b - inv_phi * (b - a)
    d = a + inv_phi * (b - a)
    a, b, c, d, fc, fd = jax.lax.fori_loop(0, iterations, step, (a, b, c, d, nll(c), nll(d)))
    return jnp.exp(jnp.where(fc <= fd, c, d))
