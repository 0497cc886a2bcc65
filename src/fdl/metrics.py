r"""Classification metrics: what a person reads, as opposed to what the optimiser minimises.

A loss has to be differentiable; a metric only has to mean something. Accuracy, the fraction of
examples whose highest-scoring class is the right one, has zero gradient almost everywhere and
is useless to train on, but it is the number to report. Cross-entropy can keep falling while
accuracy stays flat (the model grows more confident on examples it already gets right), and the
two are best watched side by side.

Both metrics here take the model's ``logits`` (any monotone transform, such as the softmax,
gives the same answer) and return a float32 scalar in ``[0, 1]``. They are pure JAX and can be
called inside ``jax.jit``; shape checks use static shapes and run at trace time.

**Ties** between classes are broken towards the lower class index, as ``jnp.argmax`` does: an
example whose logits are all equal is predicted as class 0. The same rule applies to the
argmax of one-hot or soft labels.

Example:
    >>> import jax.numpy as jnp
    >>> from fdl import metrics
    >>> logits = jnp.array([[2.0, 1.0], [0.0, 3.0]])
    >>> print(float(metrics.accuracy(logits, jnp.array([0, 0]))))
    0.5

References:
    Hastie, Tibshirani and Friedman, *The Elements of Statistical Learning* (2nd ed., 2009),
    section 2.4 (0-1 loss and the Bayes classifier).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fdl._checks import check_positive_int

__all__ = ["accuracy", "top_k_accuracy"]


def _check_integer_labels(
    logits: jax.Array, labels: jax.Array, other_shapes: str = "", hint: str = ""
) -> None:
    """Raise unless ``labels`` are integer class indices of shape ``logits.shape[:-1]``.

    ``other_shapes`` lists further accepted shapes in the message, ``hint`` is appended to it.
    """
    if logits.ndim < 1:
        raise ValueError(
            f"`logits` must have at least 1 dimension (the class axis, last), got shape {logits.shape}"
        )
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"`labels` must have shape {logits.shape[:-1]} (= logits.shape[:-1]) for integer "
            f"labels{other_shapes}, got {labels.shape}{hint}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(
            f"`labels` of shape logits.shape[:-1] must have an integer dtype (class indices), "
            f"got {labels.dtype}"
        )


def accuracy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Fraction of examples whose highest logit is at the labelled class.

    Over the :math:`N` examples (all leading positions ``(...)``), with
    :math:`z = \text{logits}`:

    .. math::

        \text{accuracy} = \frac{1}{N} \sum_{b=1}^{N}
            \bigl[\operatorname{argmax}_c z_{bc} = y_b\bigr]

    where :math:`y_b` is the integer label, or :math:`\operatorname{argmax}_c \text{labels}_{bc}`
    for one-hot / soft labels. Ties go to the lower class index.

    Args:
        logits: ``(..., C)`` class scores over the last axis.
        labels: either ``(...)`` integer class indices (``logits.shape[:-1]``), or ``(..., C)``
            one-hot / soft labels (``logits.shape``), reduced with argmax.

    Returns:
        A float32 scalar in ``[0, 1]``; NaN for an empty batch. An integer label outside
        ``[0, C)`` never counts as correct.

    Raises:
        ValueError: if ``logits`` is a scalar or ``labels`` has neither accepted shape.
        TypeError: if labels of shape ``logits.shape[:-1]`` are not integers.

    Example:
        >>> import jax.numpy as jnp
        >>> logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.5, 0.5]])  # last row: tie -> class 0
        >>> print(round(float(accuracy(logits, jnp.array([1, 1, 0]))), 4))
        0.6667
        >>> print(round(float(accuracy(logits, jnp.array([[0, 1], [0, 1], [1, 0]]))), 4))
        0.6667

    References:
        Hastie, Tibshirani and Friedman, *The Elements of Statistical Learning* (2nd ed., 2009),
        section 2.4.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim >= 1 and labels.shape == logits.shape:
        labels = jnp.argmax(labels, axis=-1)  # (...)
    else:
        _check_integer_labels(
            logits, labels, other_shapes=f", or {logits.shape} (= logits.shape) for one-hot labels"
        )
        labels = labels.astype(jnp.int32)
    predictions = jnp.argmax(logits, axis=-1)  # (...)
    return jnp.mean((predictions == labels).astype(jnp.float32))


def top_k_accuracy(logits: ArrayLike, labels: ArrayLike, k: int = 5) -> jax.Array:
    r"""Fraction of examples whose labelled class is among the ``k`` highest logits.

    The rank of the label :math:`y_b` among the :math:`C` classes is the number of classes
    ahead of it, with ties going to the lower class index (the order of a stable descending
    sort):

    .. math::

        \operatorname{rank}_b = \#\{c : z_{bc} > z_{b y_b}\}
            + \#\{c < y_b : z_{bc} = z_{b y_b}\}, \qquad
        \text{top-}k\text{ accuracy} = \frac{1}{N} \sum_{b=1}^{N} [\operatorname{rank}_b < k]

    With ``k=1`` this equals :func:`accuracy`; with ``k=C`` it is 1.

    Args:
        logits: ``(..., C)`` class scores over the last axis.
        labels: ``(...)`` integer class indices, shape ``logits.shape[:-1]``.
        k: how many of the top classes count as a hit; ``1 <= k <= C``.

    Returns:
        A float32 scalar in ``[0, 1]``; NaN for an empty batch. A label outside ``[0, C)``
        never counts as correct.

    Raises:
        ValueError: if ``logits`` is a scalar, ``labels.shape != logits.shape[:-1]``, or ``k``
            is not a positive integer at most ``C``.
        TypeError: if ``labels`` does not have an integer dtype.

    Example:
        >>> import jax.numpy as jnp
        >>> logits = jnp.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
        >>> print(float(top_k_accuracy(logits, jnp.array([1, 0]), k=2)))
        0.5

    References:
        Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional
        Neural Networks", NeurIPS 2012 (top-1 and top-5 error).

    Differs from optax / PyTorch / scikit-learn:
        ``torchmetrics``' multiclass accuracy with ``top_k`` averages per class by default
        (``average="macro"``); this is the plain micro average over examples.
        ``sklearn.metrics.top_k_accuracy_score`` breaks ties the other way, the higher class
        index first (it reverses a stable ascending sort), so scores ``[0.5, 0.5, 0.0]`` with
        label 0 count at ``k=1`` here (as :func:`accuracy`'s ``argmax`` does) and not there.
        The two agree wherever the label's score is not tied with another class's.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    _check_integer_labels(
        logits,
        labels,
        hint="; top_k_accuracy takes integer labels only (for one-hot labels pass "
        "jnp.argmax(labels, axis=-1))",
    )
    k = check_positive_int("k", k)
    num_classes = logits.shape[-1]
    if k > num_classes:
        raise ValueError(
            f"`k` must be at most the number of classes (logits.shape[-1] = {num_classes}), got {k}"
        )
    labels = labels.astype(jnp.int32)
    in_range = (labels >= 0) & (labels < num_classes)  # (...)
    safe_labels = jnp.clip(labels, 0, num_classes - 1)
    label_logit = jnp.take_along_axis(logits, safe_labels[..., None], axis=-1)  # (..., 1)
    class_index = jax.lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
    # class_index: (..., C), entry c holds c
    ahead = (logits > label_logit) | (
        (logits == label_logit) & (class_index < safe_labels[..., None])
    )  # (..., C)
    rank = jnp.sum(ahead, axis=-1)  # (...)
    return jnp.mean(((rank < k) & in_range).astype(jnp.float32))
