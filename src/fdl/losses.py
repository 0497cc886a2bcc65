r"""Loss functions: the scalar a training loop minimises.

A loss compares a model's output with a target and returns one number per example (per entry for
the elementwise losses), exactly as optax's losses do; a reduction, ``jnp.mean(...)`` or
``reduction="mean"``, then turns those into the single scalar whose gradient drives the
optimiser. Two families:

* **Regression** (:func:`mse`, :func:`mae`, :func:`huber`) compare ``predictions`` and
  ``targets`` of the same shape entry by entry, through the residual :math:`r = p - t`. The
  squared error punishes outliers quadratically (its gradient grows with :math:`r`), the absolute
  error only linearly (its gradient is :math:`\pm 1`); Huber is quadratic near 0 and linear in the
  tails, trading the two off at ``delta``.
* **Classification** (the cross-entropies) read the model's output as *logits* :math:`z`,
  unnormalised log-probabilities, and score :math:`-\log q(\text{label})` under the distribution
  :math:`q` they define: a sigmoid per entry for :func:`binary_cross_entropy_with_logits`, a
  softmax over the last axis for :func:`softmax_cross_entropy` and
  :func:`softmax_cross_entropy_with_integer_labels`. Minimising it is maximum likelihood, and its
  gradient with respect to the logits is simply :math:`q - y`.

Every loss takes logits, never probabilities: working in log space (``log_softmax``, and
softplus in its ``max(z, 0) + log1p(exp(-|z|))`` form) keeps values and gradients finite for
logits as large as ``±1e4``, where ``log(sigmoid(z))`` or ``log(softmax(z))`` would return ``-inf``.

Conventions shared by every loss here:

* **Shapes are checked, never broadcast.** Arguments that are compared entry by entry must have
  identical static shapes, so a ``(B, 1)`` vs ``(B,)`` slip raises instead of silently producing a
  ``(B, B)`` loss. Checks use static shapes, so they also run (at trace time) under ``jax.jit``.
* **Per-example by default, as optax.** ``reduction="none"`` (the default) returns the
  per-example losses: the elementwise shape for regression losses and for binary cross-entropy,
  ``logits.shape[:-1]`` for the softmax cross-entropies. That is what optax returns, so the two
  functions that carry optax's names (:func:`softmax_cross_entropy`,
  :func:`softmax_cross_entropy_with_integer_labels`) return the same values and shape as
  optax's, and every other loss names its optax equivalent in its docstring. The keyword-only
  ``reduction="mean"`` averages over *all* of those entries, ``"sum"`` adds them up; a training
  loss needs one of them (or ``jnp.mean``), since ``jax.grad`` wants a scalar.
* **Dtypes.** Targets and labels are cast to the dtype of ``predictions`` / ``logits``, and the
  loss is computed and returned in that dtype.

Example:
    >>> import jax.numpy as jnp
    >>> from fdl import losses
    >>> predictions, targets = jnp.array([1.0, 2.0]), jnp.array([0.0, 0.0])
    >>> print(losses.mse(predictions, targets).tolist())  # per entry, as optax.squared_error
    [1.0, 4.0]
    >>> print(round(float(losses.mse(predictions, targets, reduction="mean")), 4))
    2.5

References:
    Goodfellow, Bengio and Courville, *Deep Learning* (2016), section 5.5 (maximum likelihood)
    and section 6.2.2 (output units and their losses).
    Bishop, *Pattern Recognition and Machine Learning* (2006), section 4.3.4.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fdl._checks import REDUCTIONS, check_choice, check_same_array_shape, is_real_number
from fdl.activations import log_softmax, softplus

__all__ = [
    "binary_cross_entropy_with_logits",
    "huber",
    "mae",
    "mse",
    "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels",
]


def _reduce(per_example: jax.Array, reduction: str) -> jax.Array:
    """Apply a validated ``reduction`` to per-example losses."""
    if reduction == "mean":
        return jnp.mean(per_example)
    if reduction == "sum":
        return jnp.sum(per_example)
    return per_example


def _check_has_class_axis(logits: jax.Array) -> None:
    """Raise if ``logits`` has no trailing class axis."""
    if logits.ndim < 1:
        raise ValueError(
            f"`logits` must have at least 1 dimension (the class axis, last), got shape {logits.shape}"
        )


def _residual(predictions: ArrayLike, targets: ArrayLike) -> jax.Array:
    """``predictions - targets`` after checking shapes; computed in ``predictions``' dtype."""
    predictions = jnp.asarray(predictions)
    targets = jnp.asarray(targets)
    check_same_array_shape("predictions", predictions, "targets", targets)
    return predictions - targets.astype(predictions.dtype)


def mse(predictions: ArrayLike, targets: ArrayLike, *, reduction: str = "none") -> jax.Array:
    r"""Squared error between ``predictions`` and ``targets``, per entry (``optax.squared_error``).

    .. math::

        \ell_i = (\text{predictions}_i - \text{targets}_i)^2, \qquad
        \text{reduction="mean": } \frac{1}{N} \sum_{i=1}^{N} \ell_i

    where :math:`i` runs over all :math:`N` entries. Gradient:
    :math:`\partial \ell_i / \partial\, \text{predictions}_i = 2\,(\text{predictions}_i -
    \text{targets}_i)`.

    Returns the elementwise :math:`\ell_i` by default, as ``optax.squared_error`` does; the
    *mean* squared error the name abbreviates is ``mse(..., reduction="mean")``.

    Args:
        predictions: ``(...)`` model outputs.
        targets: ``(...)`` regression targets, the same shape as ``predictions``.
        reduction: ``"none"`` (default) for the elementwise losses, ``"mean"`` over all
            entries, or ``"sum"``; keyword-only.

    Returns:
        ``(...)``, the shape of ``predictions``, or a scalar for ``"mean"`` / ``"sum"``; dtype of
        ``predictions``.

    Raises:
        ValueError: if the shapes differ or ``reduction`` is not one of the three.

    Example:
        >>> import jax.numpy as jnp
        >>> predictions, targets = jnp.array([1.0, 2.0]), jnp.array([1.0, 0.0])
        >>> print(mse(predictions, targets).tolist())
        [0.0, 4.0]
        >>> print(round(float(mse(predictions, targets, reduction="mean")), 4))
        2.0

    References:
        Goodfellow, Bengio and Courville, *Deep Learning* (2016), section 5.5.1 (MSE as the
        Gaussian negative log-likelihood, up to constants).

    Differs from optax / PyTorch:
        Equals ``optax.squared_error(predictions, targets)`` (same values, same shape), except
        that ``targets`` is required and must have the same shape (optax broadcasts, and treats a
        missing ``targets`` as zeros). ``optax.l2_loss`` is half of this (:math:`\tfrac12 r^2`).
        ``reduction="mean"`` matches ``torch.nn.functional.mse_loss``.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    residual = _residual(predictions, targets)
    return _reduce(residual * residual, reduction)


def mae(predictions: ArrayLike, targets: ArrayLike, *, reduction: str = "none") -> jax.Array:
    r"""Absolute error between ``predictions`` and ``targets``, per entry.

    .. math::

        \ell_i = \lvert \text{predictions}_i - \text{targets}_i \rvert, \qquad
        \text{reduction="mean": } \frac{1}{N} \sum_{i=1}^{N} \ell_i

    Gradient: :math:`\operatorname{sign}(\text{predictions}_i - \text{targets}_i)`, taken as 0
    where the residual is exactly 0.

    Returns the elementwise :math:`\ell_i` by default, as optax's losses do; the *mean*
    absolute error the name abbreviates is ``mae(..., reduction="mean")``.

    Args:
        predictions: ``(...)`` model outputs.
        targets: ``(...)`` regression targets, the same shape as ``predictions``.
        reduction: ``"none"`` (default) for the elementwise losses, ``"mean"`` over all
            entries, or ``"sum"``; keyword-only.

    Returns:
        ``(...)``, the shape of ``predictions``, or a scalar for ``"mean"`` / ``"sum"``; dtype of
        ``predictions``.

    Raises:
        ValueError: if the shapes differ or ``reduction`` is not one of the three.

    Example:
        >>> import jax.numpy as jnp
        >>> predictions, targets = jnp.array([1.0, -2.0]), jnp.array([0.0, 0.0])
        >>> print(mae(predictions, targets).tolist())
        [1.0, 2.0]
        >>> print(round(float(mae(predictions, targets, reduction="mean")), 4))
        1.5

    References:
        Hastie, Tibshirani and Friedman, *The Elements of Statistical Learning* (2nd ed., 2009),
        section 10.6 (absolute loss and robustness).

    Differs from optax / PyTorch:
        optax has no absolute-error loss; this equals
        ``jnp.abs(predictions - targets)``, which is ``jnp.sqrt(optax.squared_error(predictions,
        targets))``. ``reduction="mean"`` matches ``torch.nn.functional.l1_loss``.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    return _reduce(jnp.abs(_residual(predictions, targets)), reduction)


def huber(
    predictions: ArrayLike, targets: ArrayLike, delta: float = 1.0, *, reduction: str = "none"
) -> jax.Array:
    r"""Huber loss: quadratic for residuals up to ``delta``, linear beyond.

    With :math:`r_i = \text{predictions}_i - \text{targets}_i`:

    .. math::

        \ell_i = \begin{cases} \tfrac12\, r_i^2 & \lvert r_i \rvert \le \delta \\
            \delta \left(\lvert r_i \rvert - \tfrac12\,\delta\right) & \lvert r_i \rvert > \delta
            \end{cases}, \qquad
        \frac{\partial \ell_i}{\partial r_i} = \operatorname{clip}(r_i, -\delta, \delta)

    Both pieces and their slopes meet at :math:`\lvert r \rvert = \delta`, so the loss is
    continuously differentiable. Computed branch-free as :math:`\tfrac12 q^2 + \delta\,(|r| - q)`
    with :math:`q = \min(|r|, \delta)`.

    Args:
        predictions: ``(...)`` model outputs.
        targets: ``(...)`` regression targets, the same shape as ``predictions``.
        delta: the positive residual size where the loss turns from quadratic to linear.
        reduction: ``"none"`` (default) for the elementwise losses, ``"mean"`` over all
            entries, or ``"sum"``; keyword-only.

    Returns:
        ``(...)``, the shape of ``predictions``, or a scalar for ``"mean"`` / ``"sum"``; dtype of
        ``predictions``.

    Raises:
        ValueError: if the shapes differ, ``delta`` is not a positive number or ``reduction`` is
            not one of the three.

    Example:
        >>> import jax.numpy as jnp
        >>> print(huber(jnp.array([0.5, 3.0]), jnp.array([0.0, 0.0])).tolist())
        [0.125, 2.5]

    References:
        Huber, "Robust Estimation of a Location Parameter", Annals of Mathematical Statistics,
        1964.

    Differs from optax / PyTorch:
        Equals ``optax.huber_loss(predictions, targets, delta=delta)`` (same ``delta``
        convention, same values, same shape), except that ``targets`` is required and must have
        the same shape. ``reduction="mean"`` matches
        ``torch.nn.functional.huber_loss(..., delta=delta)``;
        ``torch.nn.functional.smooth_l1_loss(..., beta=b)`` is this loss *divided by* ``b``
        (slope 1 in the tails instead of ``delta``).
    """
    check_choice("reduction", reduction, REDUCTIONS)
    if not is_real_number(delta) or not delta > 0:
        raise ValueError(f"`delta` must be a positive number, got {delta!r}")
    abs_residual = jnp.abs(_residual(predictions, targets))
    quadratic = jnp.minimum(abs_residual, delta)
    linear = abs_residual - quadratic
    return _reduce(0.5 * quadratic * quadratic + delta * linear, reduction)


def binary_cross_entropy_with_logits(
    logits: ArrayLike, labels: ArrayLike, *, reduction: str = "none"
) -> jax.Array:
    r"""Binary cross-entropy of independent Bernoulli outputs, from logits.

    Each entry is its own yes/no prediction :math:`q_i = \sigma(z_i)` with
    :math:`z = \text{logits}`, :math:`y = \text{labels} \in [0, 1]`:

    .. math::

        \ell_i &= -y_i \log \sigma(z_i) - (1 - y_i) \log\bigl(1 - \sigma(z_i)\bigr)
                = \operatorname{softplus}(z_i) - z_i\, y_i \\
               &= \max(z_i, 0) - z_i\, y_i + \log\!\left(1 + e^{-\lvert z_i \rvert}\right),
        \qquad \frac{\partial \ell_i}{\partial z_i} = \sigma(z_i) - y_i

    The second line is how it is computed: no exponent is ever positive, so nothing overflows.
    It is evaluated as :func:`fdl.activations.softplus` (``logaddexp(z, 0)``, the same stable
    form) minus :math:`z_i y_i`, rather than term by term, because the autodiff derivatives of
    ``max`` and ``|.|`` at their kink do not add up to the true slope: written out, ``jax.grad``
    would return :math:`-y_i` instead of :math:`\tfrac12 - y_i` at :math:`z_i = 0`, exactly
    where a zero-initialised output layer starts.

    Args:
        logits: ``(...)`` unnormalised log-odds.
        labels: ``(...)`` targets in ``[0, 1]`` (hard 0/1 or soft), the same shape as
            ``logits``; cast to ``logits``' dtype.
        reduction: ``"none"`` (default) for the elementwise losses, ``"mean"`` over all
            entries, or ``"sum"``; keyword-only.

    Returns:
        ``(...)``, the shape of ``logits``, or a scalar for ``"mean"`` / ``"sum"``; dtype of
        ``logits``.

    Raises:
        ValueError: if the shapes differ or ``reduction`` is not one of the three.

    Example:
        >>> import jax.numpy as jnp
        >>> loss = binary_cross_entropy_with_logits(jnp.array([0.0, 0.0]), jnp.array([1.0, 0.5]))
        >>> print([round(v, 4) for v in loss.tolist()])  # log 2 for either label
        [0.6931, 0.6931]

    References:
        Bishop, *Pattern Recognition and Machine Learning* (2006), section 4.3.2.

    Differs from optax / PyTorch:
        Equals ``optax.sigmoid_binary_cross_entropy(logits, labels)`` (same values, same shape),
        except that ``labels`` must have the same shape (optax broadcasts). ``reduction="mean"``
        matches ``torch.nn.functional.binary_cross_entropy_with_logits`` (without ``weight`` /
        ``pos_weight``).
    """
    check_choice("reduction", reduction, REDUCTIONS)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    check_same_array_shape("logits", logits, "labels", labels)
    labels = labels.astype(logits.dtype)
    per_entry = softplus(logits) - logits * labels
    return _reduce(per_entry, reduction)


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike, *, reduction: str = "none") -> jax.Array:
    r"""Cross-entropy between a label distribution and the softmax of ``logits``.

    For each example :math:`b`, over the ``C`` classes of the last axis, with
    :math:`z = \text{logits}` and :math:`y = \text{labels}` (one-hot or soft, each row summing
    to 1):

    .. math::

        \ell_b = -\sum_{c=1}^{C} y_{bc} \log \operatorname{softmax}(z_b)_c, \qquad
        \frac{\partial \ell_b}{\partial z_{bc}}
            = \operatorname{softmax}(z_b)_c \sum_{c'} y_{bc'} - y_{bc}

    which is :math:`\operatorname{softmax}(z_b)_c - y_{bc}` when the row sums to 1. The log
    probabilities come from :func:`fdl.activations.log_softmax`, never ``log(softmax(...))``.

    Args:
        logits: ``(..., C)`` unnormalised log-probabilities over the last axis.
        labels: ``(..., C)`` class probabilities, the same shape as ``logits``; cast to
            ``logits``' dtype.
        reduction: ``"none"`` (default) for the per-example losses, ``"mean"`` over all
            examples ``(...)``, or ``"sum"``; keyword-only.

    Returns:
        ``(...)`` (``= logits.shape[:-1]``), or a scalar for ``"mean"`` / ``"sum"``; dtype of
        ``logits``.

    Raises:
        ValueError: if ``logits`` is a scalar, the shapes differ (with a pointer to
            :func:`softmax_cross_entropy_with_integer_labels`), or ``reduction`` is not one of
            the three.

    Example:
        >>> import jax.numpy as jnp
        >>> logits = jnp.array([[0.0, 0.0], [0.0, 0.0]])
        >>> labels = jnp.array([[1.0, 0.0], [0.5, 0.5]])
        >>> print([round(v, 4) for v in softmax_cross_entropy(logits, labels).tolist()])
        [0.6931, 0.6931]

    References:
        Goodfellow, Bengio and Courville, *Deep Learning* (2016), section 6.2.2.3.

    Differs from optax / PyTorch:
        Returns what ``optax.softmax_cross_entropy(logits, labels)`` returns (same values, shape
        ``logits.shape[:-1]``); it has no ``axis`` / ``where`` (classes are always the last axis)
        and requires ``labels.shape == logits.shape``. ``reduction="mean"`` matches
        ``torch.nn.functional.cross_entropy`` with probability targets, except that PyTorch puts
        the classes on axis 1 and has ``label_smoothing`` / ``weight`` arguments.
        Entries of ``logits`` must be finite: a ``-inf`` logit times a zero label gives NaN (as in
        optax; ``optax.safe_softmax_cross_entropy`` handles that case).
    """
    check_choice("reduction", reduction, REDUCTIONS)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    _check_has_class_axis(logits)
    check_same_array_shape(
        "logits",
        logits,
        "labels",
        labels,
        hint="; for integer class labels of shape logits.shape[:-1] use "
        "softmax_cross_entropy_with_integer_labels",
    )
    labels = labels.astype(logits.dtype)
    per_example = -jnp.sum(labels * log_softmax(logits, axis=-1), axis=-1)  # (...)
    return _reduce(per_example, reduction)


def softmax_cross_entropy_with_integer_labels(
    logits: ArrayLike, labels: ArrayLike, *, reduction: str = "none"
) -> jax.Array:
    r"""Cross-entropy of integer class labels under the softmax of ``logits``.

    For each example :math:`b` with class index :math:`y_b \in \{0, \dots, C-1\}` and
    :math:`z = \text{logits}`:

    .. math::

        \ell_b = -\log \operatorname{softmax}(z_b)_{y_b}
               = \log \sum_{c} e^{z_{bc}} - z_{b y_b}, \qquad
        \frac{\partial \ell_b}{\partial z_{bc}}
            = \operatorname{softmax}(z_b)_c - [c = y_b]

    This is :func:`softmax_cross_entropy` with one-hot labels, without building the one-hot
    array. A label outside ``[0, C)`` cannot raise under ``jit``; its loss is NaN instead, so
    any mean over it is NaN and the mistake is visible.

    Args:
        logits: ``(..., C)`` unnormalised log-probabilities over the last axis.
        labels: ``(...)`` integer class indices, shape ``logits.shape[:-1]``.
        reduction: ``"none"`` (default) for the per-example losses, ``"mean"`` over all
            examples ``(...)``, or ``"sum"``; keyword-only.

    Returns:
        ``(...)`` (``= logits.shape[:-1]``), or a scalar for ``"mean"`` / ``"sum"``; dtype of
        ``logits``.

    Raises:
        ValueError: if ``logits`` is a scalar, ``labels.shape != logits.shape[:-1]`` (with a
            pointer to :func:`softmax_cross_entropy` for one-hot labels), or ``reduction`` is
            not one of the three.
        TypeError: if ``labels`` does not have an integer dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> logits = jnp.array([[2.0, 0.0], [0.0, 2.0]])
        >>> loss = softmax_cross_entropy_with_integer_labels(logits, jnp.array([0, 0]))
        >>> print([round(v, 4) for v in loss.tolist()])
        [0.1269, 2.1269]
        >>> print(round(float(jnp.mean(loss)), 4))  # the training loss
        1.1269

    References:
        Goodfellow, Bengio and Courville, *Deep Learning* (2016), section 6.2.2.3.

    Differs from optax / PyTorch:
        Returns what ``optax.softmax_cross_entropy_with_integer_labels(logits, labels)`` returns
        for labels in ``[0, C)`` (same values, shape ``logits.shape[:-1]``); it has no ``axis`` /
        ``where`` (classes are always the last axis). Out of range, optax gives NaN for a label
        ``>= C`` but wraps a negative one (``-1`` scores the last class); here every label outside
        ``[0, C)`` gives NaN. ``reduction="mean"`` matches ``torch.nn.functional.cross_entropy``
        with class indices, except that PyTorch puts the classes on axis 1 and has
        ``ignore_index``; here, mask the per-example losses instead.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    _check_has_class_axis(logits)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"`labels` must have shape {logits.shape[:-1]} (= logits.shape[:-1]) for integer "
            f"labels, got {labels.shape}; for one-hot labels use softmax_cross_entropy"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"`labels` must have an integer dtype (class indices), got {labels.dtype}; for "
            f"one-hot or soft labels use softmax_cross_entropy"
        )
    labels = labels.astype(jnp.int32)
    num_classes = logits.shape[-1]
    log_probs = log_softmax(logits, axis=-1)  # (..., C)
    picked = jnp.take_along_axis(log_probs, labels[..., None], axis=-1, mode="clip")  # (..., 1)
    per_example = -picked[..., 0]  # (...)
    in_range = (labels >= 0) & (labels < num_classes)
    per_example = jnp.where(in_range, per_example, jnp.nan)
    return _reduce(per_example, reduction)
