r"""Contrastive losses: learn embeddings that put related examples close and others apart.

An encoder :math:`f` maps examples to embeddings :math:`z = f(x) \in \mathbb{R}^D`; a contrastive
loss compares embeddings only with each other, so it needs either *pairs of views* of the same
example (self-supervised, no labels) or *labels* saying which examples belong together.

* :func:`info_nce`: each query must pick its own key out of the batch's keys, a ``B``-way
  softmax classification (Oord et al., 2018; the CPC/MoCo form).
* :func:`nt_xent`: SimCLR's normalized temperature-scaled cross-entropy over two augmented views,
  each of the ``2B`` embeddings picking its partner among the other ``2B - 1`` (Chen et al., 2020).
  Equal to ``optax.losses.ntxent`` on the stacked views with labels ``[0..B-1, 0..B-1]``.
* :func:`batch_hard_triplet_loss`: with labels, each anchor's farthest positive must be closer
  than its nearest negative by a margin (Hermans et al., 2017).
* :func:`margin_contrastive_loss`: labelled pairs; similar pairs are pulled together,
  dissimilar ones pushed to at least a margin apart (Hadsell, Chopra & LeCun, 2006).
* :func:`simclr_loss`: a model, an augmentation and :func:`nt_xent` as a loss for
  :func:`fdl.fit.fit` (the one loss signature, :data:`fdl.train.LOSS_SIGNATURE`).

Conventions: embeddings are ``(B, D)`` floats, labels ``(B,)`` integers. Similarities are
cosines (:func:`fdl.distances.cosine_similarity`) and distances come from
:mod:`fdl.distances`, whose gradients are finite at zero distance. Each loss is pure and
jit-able; ``temperature``, ``margin``, ``metric`` and ``reduction`` are static settings,
checked when called.

Example:
    >>> import jax.numpy as jnp
    >>> from fdl.contrastive import nt_xent
    >>> a = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(nt_xent(a, a, temperature=0.1)), 4)  # each view finds its twin
    0.0001

References:
    A. van den Oord, Y. Li and O. Vinyals, "Representation Learning with Contrastive Predictive
    Coding", arXiv:1807.03748, 2018 (InfoNCE).
    T. Chen, S. Kornblith, M. Norouzi and G. Hinton, "A Simple Framework for Contrastive Learning
    of Visual Representations", ICML 2020 (SimCLR, NT-Xent).
    A. Hermans, L. Beyer and B. Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", arXiv:1703.07737, 2017 (batch-hard mining).
    R. Hadsell, S. Chopra and Y. LeCun, "Dimensionality Reduction by Learning an Invariant
    Mapping", CVPR 2006 (the margin contrastive loss).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import REDUCTIONS, check_choice, check_non_negative_finite, check_positive_finite
from fdl.distances import cosine_similarity, paired_distances, pairwise_distances

__all__ = [
    "TRIPLET_METRICS",
    "info_nce",
    "nt_xent",
    "batch_hard_triplet_loss",
    "margin_contrastive_loss",
    "simclr_loss",
]

#: The distances :func:`batch_hard_triplet_loss` takes.
TRIPLET_METRICS = ("euclidean", "sqeuclidean", "cosine")


# ------------------------------------------------------------------------------------ checks


def _check_embeddings(name: str, z: Any) -> jax.Array:
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise TypeError(f"`{name}` must be float embeddings (B, D), got dtype {z.dtype}")
    if z.ndim != 2 or z.shape[0] < 1:
        raise ValueError(f"`{name}` must be embeddings of shape (B, D) with B >= 1, got shape {z.shape}")
    return z


def _check_views(name_a: str, a: Any, name_b: str, b: Any) -> tuple[jax.Array, jax.Array]:
    a, b = _check_embeddings(name_a, a), _check_embeddings(name_b, b)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(
            f"`{name_a}` and `{name_b}` must have the same shape and dtype (row i of one pairs with row i "
            f"of the other), got {name_a} {a.shape} {a.dtype} and {name_b} {b.shape} {b.dtype}"
        )
    return a, b


def _check_pair_labels(name: str, labels: Any, batch: int) -> jax.Array:
    labels = jnp.asarray(labels)
    if labels.shape != (batch,):
        raise ValueError(f"`{name}` must have shape ({batch},) (one per embedding), got shape {labels.shape}")
    return labels


def _reduce(losses: jax.Array, reduction: str, weights: jax.Array | None = None) -> jax.Array:
    """``mean`` (over the counted entries when ``weights`` marks them), ``sum`` or ``none``."""
    if reduction == "none":
        return losses
    if weights is None:
        return jnp.mean(losses) if reduction == "mean" else jnp.sum(losses)
    total = jnp.sum(losses * weights)
    return total / jnp.maximum(jnp.sum(weights), 1.0) if reduction == "mean" else total


def _cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``-log softmax(logits)[target]`` per row: ``(N, M), (N,) -> (N,)``."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, targets[:, None], axis=-1)[:, 0]


# ------------------------------------------------------------------------------------ losses


def info_nce(
    queries: Any,
    keys: Any,
    temperature: float = 0.1,
    *,
    normalize: bool = True,
    reduction: str = "mean",
) -> jax.Array:
    r"""InfoNCE: each query :math:`q_i` must recognize its own key :math:`k_i` among the batch's
    ``B`` keys (the others are its negatives).

    .. math::

        \ell_i = -\log \frac{\exp(s(q_i, k_i) / \tau)}{\sum_{j=1}^{B} \exp(s(q_i, k_j) / \tau)},
        \qquad s(q, k) = \frac{q \cdot k}{\lVert q\rVert \lVert k\rVert}
        \ (\text{or } q \cdot k \text{ with } \texttt{normalize=False})

    the cross-entropy of a ``B``-way classification whose logits are the similarities. Oord et
    al. (2018) show :math:`\log B - \mathbb{E}[\ell_i]` is a lower bound of the mutual information
    between the two sides, so the loss is at least :math:`\log B - I` and the bound is
    tighter with more negatives. Not symmetric: it averages over the queries only.

    Args:
        queries: ``(B, D)`` embeddings :math:`q`.
        keys: ``(B, D)`` embeddings :math:`k`; row ``i`` is the positive of query ``i``.
        temperature: :math:`\tau > 0`.
        normalize: cosine similarity (True) or the raw dot product (False).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (the ``(B,)`` values
            :math:`\ell_i`).

    Raises:
        ValueError: ``temperature <= 0``; ``queries`` and ``keys`` of different shapes or not
            ``(B, D)``; an unknown ``reduction``.
        TypeError: non-float embeddings.

    >>> import jax.numpy as jnp
    >>> q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> round(float(info_nce(q, q, temperature=1.0)), 4)  # log(1 + e^-1)
    0.3133
    """
    temperature = check_positive_finite("temperature", temperature)
    reduction = check_choice("reduction", reduction, REDUCTIONS)
    queries, keys = _check_views("queries", queries, "keys", keys)
    if normalize:
        similarity = cosine_similarity(queries, keys)  # (B, B)
    else:
        similarity = jnp.matmul(queries, keys.T, precision=jax.lax.Precision.HIGHEST)  # (B, B)
    losses = _cross_entropy(similarity / temperature, jnp.arange(queries.shape[0]))
    return _reduce(losses, reduction)


def _nt_xent_logits(view_a: jax.Array, view_b: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
    """The ``(2B, 2B)`` logits (self-similarity masked to -inf) and each row's target."""
    batch = view_a.shape[0]
    z = jnp.concatenate([view_a, view_b], axis=0)  # (2B, D)
    logits = cosine_similarity(z) / temperature  # (2B, 2B)
    logits = jnp.where(jnp.eye(2 * batch, dtype=bool), -jnp.inf, logits)
    targets = (jnp.arange(2 * batch) + batch) % (2 * batch)  # row i's partner: i + B mod 2B
    return logits, targets


def nt_xent(view_a: Any, view_b: Any, temperature: float = 0.5, *, reduction: str = "mean") -> jax.Array:
    r"""NT-Xent, SimCLR's loss: the ``2B`` embeddings of two views each pick their partner among
    the other ``2B - 1``.

    Stack the views, :math:`z = [a_1, \dots, a_B, b_1, \dots, b_B]`, and let :math:`p(i)` be the
    other view of the same example (:math:`i \pm B`). With cosine similarities
    :math:`s_{ij}`,

    .. math::

        \ell_i = -\log \frac{\exp(s_{i,p(i)} / \tau)}{\sum_{k \ne i} \exp(s_{ik} / \tau)},
        \qquad L = \frac{1}{2B} \sum_{i=1}^{2B} \ell_i

    so both views serve as anchors (the symmetric loss of Chen et al., 2020) and each anchor has
    :math:`2(B - 1)` negatives, the other examples' two views.

    Equal to ``optax.losses.ntxent(z, labels, temperature)`` with ``labels = [0, ..., B-1, 0,
    ..., B-1]``: optax takes the stacked embeddings and integer labels marking the positives,
    and averages over the ordered positive pairs, here the ``2B`` anchors. Differs from optax:
    the default :math:`\tau` is 0.5 (optax 0.07; Chen et al. use 0.5 on CIFAR-10 and 0.1 with
    ImageNet's large batches), and the norms are exact (:func:`fdl.distances.cosine_similarity`, 0 for a zero
    embedding) where optax clips each squared norm at the dtype's epsilon, which differs only
    for embeddings shorter than :math:`\sqrt{\epsilon}`.

    Args:
        view_a: ``(B, D)`` embeddings of the first view.
        view_b: ``(B, D)`` embeddings of the second view; row ``i`` pairs with row ``i`` of
            ``view_a``.
        temperature: :math:`\tau > 0`.
        reduction: ``"mean"`` (default, :math:`L`), ``"sum"`` or ``"none"`` (the ``(2B,)``
            values :math:`\ell_i`, the rows of ``view_a`` first).

    Raises:
        ValueError: ``temperature <= 0``; views of different shapes, or not ``(B, D)``; an
            unknown ``reduction``.
        TypeError: non-float embeddings.

    >>> import jax.numpy as jnp
    >>> a = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> b = jnp.array([[0.0, 1.0], [1.0, 0.0]])  # each twin is the other example's view
    >>> round(float(nt_xent(a, b, temperature=1.0)), 4)  # -log(e^0 / (e^0 + e^0 + e^1))
    1.5514
    """
    temperature = check_positive_finite("temperature", temperature)
    reduction = check_choice("reduction", reduction, REDUCTIONS)
    view_a, view_b = _check_views("view_a", view_a, "view_b", view_b)
    logits, targets = _nt_xent_logits(view_a, view_b, temperature)
    return _reduce(_cross_entropy(logits, targets), reduction)


def batch_hard_triplet_loss(
    embeddings: Any,
    labels: Any,
    margin: float = 0.2,
    *,
    metric: str = "euclidean",
    soft: bool = False,
    reduction: str = "mean",
) -> jax.Array:
    r"""The triplet loss with batch-hard mining: each anchor against its *hardest* positive and
    its *hardest* negative in the batch (Hermans et al., 2017).

    .. math::

        \ell_a = \Bigl[\, m + \max_{p:\, y_p = y_a,\, p \ne a} D(z_a, z_p)
            - \min_{n:\, y_n \ne y_a} D(z_a, z_n) \Bigr]_+

    with :math:`[x]_+ = \max(x, 0)`, or :math:`\log(1 + e^{x})` with ``soft=True`` (Hermans et
    al.'s soft margin, which keeps pulling satisfied triplets; they use it with :math:`m = 0`).
    An anchor without a positive (its label alone in the batch) or without a negative has no
    triplet: ``"mean"`` averages over the anchors that have one (0 if none does), ``"none"``
    gives them 0. Hermans et al. sample batches of :math:`P` classes times :math:`K` examples so
    that every anchor has both.

    Differs from ``optax.losses.triplet_margin_loss``: optax takes given (anchor, positive,
    negative) triples; this one mines them from a labelled batch. The euclidean :math:`D` is
    not squared (Hermans et al. found it more stable); ``metric="sqeuclidean"`` gives the
    squared one of FaceNet (Schroff et al., 2015).

    Args:
        embeddings: ``(B, D)`` embeddings :math:`z`.
        labels: ``(B,)`` integer classes :math:`y`.
        margin: :math:`m \ge 0`.
        metric: :math:`D`, one of ``"euclidean"``, ``"sqeuclidean"``, ``"cosine"`` (cosine
            distance, :math:`1 - \cos`).
        soft: softplus instead of the hinge.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``(B,)`` values :math:`\ell_a`).

    Raises:
        ValueError: ``margin < 0``; ``labels`` not ``(B,)``; an unknown ``metric`` or
            ``reduction``.
        TypeError: non-float embeddings, non-integer labels, ``soft`` not a bool.

    >>> import jax.numpy as jnp
    >>> z = jnp.array([[0.0], [1.0], [3.0]])
    >>> y = jnp.array([0, 0, 1])
    >>> # anchor 0: [1.5 + 1 - 3]_+ = 0; anchor 1: [1.5 + 1 - 2]_+ = 0.5; anchor 2: no positive
    >>> batch_hard_triplet_loss(z, y, 1.5, reduction="none").tolist()
    [0.0, 0.5, 0.0]
    """
    margin = check_non_negative_finite("margin", margin)
    metric = check_choice("metric", metric, TRIPLET_METRICS)
    reduction = check_choice("reduction", reduction, REDUCTIONS)
    if not isinstance(soft, bool):
        raise TypeError(f"`soft` must be a bool, got {soft!r}")
    embeddings = _check_embeddings("embeddings", embeddings)
    labels = _check_pair_labels("labels", labels, embeddings.shape[0])
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"`labels` must be integer classes, got dtype {labels.dtype}")
    distances = pairwise_distances(embeddings, metric=metric)  # (B, B)
    same = labels[:, None] == labels[None, :]  # (B, B)
    positive = same & ~jnp.eye(labels.shape[0], dtype=bool)
    negative = ~same
    hardest_positive = jnp.max(jnp.where(positive, distances, -jnp.inf), axis=1)  # (B,)
    hardest_negative = jnp.min(jnp.where(negative, distances, jnp.inf), axis=1)  # (B,)
    valid = jnp.any(positive, axis=1) & jnp.any(negative, axis=1)  # (B,)
    gap = jnp.where(valid, margin + hardest_positive - hardest_negative, 0.0)
    losses = jax.nn.softplus(gap) if soft else jax.nn.relu(gap)
    losses = jnp.where(valid, losses, 0.0)
    return _reduce(losses, reduction, valid.astype(losses.dtype))


def margin_contrastive_loss(
    x1: Any,
    x2: Any,
    similar: Any,
    margin: float = 1.0,
    *,
    reduction: str = "mean",
) -> jax.Array:
    r"""The margin contrastive loss of Hadsell, Chopra & LeCun (2006) on labelled pairs.

    With the euclidean distance :math:`D_i = \lVert x_{1,i} - x_{2,i}\rVert_2` of pair :math:`i`
    and :math:`S_i = 1` for a similar pair, 0 for a dissimilar one,

    .. math::

        \ell_i = S_i\, \tfrac12 D_i^2 + (1 - S_i)\, \tfrac12 \max(0, m - D_i)^2 :

    similar pairs are pulled together, dissimilar ones pushed apart until they are :math:`m`
    apart, and no further (the margin keeps the loss from collapsing everything onto a point
    while not spreading the space forever).

    Differs from the paper's notation: the paper's label :math:`Y = 0` marks a *similar* pair;
    here ``similar`` is 1 (True) for a similar pair, :math:`S = 1 - Y`.

    Args:
        x1: ``(B, D)`` embeddings of the pairs' first members.
        x2: ``(B, D)`` embeddings of their second members.
        similar: ``(B,)`` bools or 0/1 numbers :math:`S`.
        margin: :math:`m \ge 0`.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (``(B,)`` values :math:`\ell_i`).

    Raises:
        ValueError: ``margin < 0``; ``x1`` and ``x2`` of different shapes; ``similar`` not
            ``(B,)``; an unknown ``reduction``.
        TypeError: non-float embeddings.

    >>> import jax.numpy as jnp
    >>> x1 = jnp.array([[0.0, 0.0], [0.0, 0.0]])
    >>> x2 = jnp.array([[3.0, 4.0], [0.3, 0.4]])
    >>> margin_contrastive_loss(x1, x2, jnp.array([True, False]), 1.0, reduction="none").tolist()
    [12.5, 0.125]
    """
    margin = check_non_negative_finite("margin", margin)
    reduction = check_choice("reduction", reduction, REDUCTIONS)
    x1, x2 = _check_views("x1", x1, "x2", x2)
    similar = _check_pair_labels("similar", similar, x1.shape[0]).astype(x1.dtype)
    distance = paired_distances(x1, x2)  # (B,), finite gradient at 0
    losses = similar * 0.5 * distance**2 + (1.0 - similar) * 0.5 * jax.nn.relu(margin - distance) ** 2
    return _reduce(losses, reduction)


# ------------------------------------------------------------------------------------ training


def simclr_loss(
    model: Any,
    augment: Callable[[jax.Array, jax.Array], jax.Array],
    temperature: float = 0.5,
) -> Callable[..., Any]:
    r"""SimCLR (Chen et al., 2020) as a loss for :func:`fdl.fit.fit` and
    :func:`fdl.train.make_train_step`: two augmented views of each image, through ``model``,
    scored by :func:`nt_xent`.

    .. math::

        \tilde x^{(1)} = t_1(x), \quad \tilde x^{(2)} = t_2(x), \quad
        L = \text{NT-Xent}\bigl(g(f(\tilde x^{(1)})),\, g(f(\tilde x^{(2)}));\, \tau\bigr)

    with :math:`t_1, t_2` two independent draws of ``augment``, :math:`f` the encoder and
    :math:`g` the projection head (``model`` is their composition, e.g.
    ``fdl.nn.Serial(encoder, head)``; after training, the representation is the encoder's
    output, before the head, as Chen et al. recommend). Both views go through ``model`` in one
    call on the ``(2B, ...)`` stack, so batch norm normalizes over both views (SimCLR's global
    batch norm).

    Returns ``loss_fn(params, layer_state, batch, key) -> (loss, (layer_state, metrics))``,
    :data:`fdl.train.LOSS_SIGNATURE`. ``batch`` is a tuple whose first entry is the images
    (``fit(..., data=(x,))``: no labels are used; any further entries are ignored). ``metrics``
    holds ``"pair_accuracy"``: the fraction of the ``2B`` embeddings whose most similar other
    embedding is their partner view.

    Args:
        model: an :class:`fdl.nn.Layer` mapping images to projections ``(2B, P)``.
        augment: ``augment(key, images) -> images``, e.g. :func:`fdl.augment.compose` of
            random transforms.
        temperature: :math:`\tau > 0`.

    Raises:
        ValueError: ``temperature <= 0``.
        TypeError: ``augment`` not callable, ``model`` without ``init``/``apply``.
    """
    temperature = check_positive_finite("temperature", temperature)
    if not callable(augment):
        raise TypeError(f"`augment` must be callable as augment(key, images), got {augment!r}")
    if not (callable(getattr(model, "init", None)) and callable(getattr(model, "apply", None))):
        raise TypeError(f"`model` must be an fdl.nn.Layer (with init and apply), got {model!r}")

    def loss_fn(params: Any, layer_state: Any, batch: Any, key: jax.Array) -> Any:
        if not isinstance(batch, (tuple, list)) or len(batch) != 1:
            raise TypeError(
                "simclr_loss expects `batch` to be a 1-tuple (images,), as fit and the data "
                f"iterators pass it, got {type(batch).__name__}"
                + (f" of shape {batch.shape}" if hasattr(batch, "shape") else "")
            )
        x = batch[0]
        key_a, key_b, model_key = jax.random.split(key, 3)
        views = jnp.concatenate([augment(key_a, x), augment(key_b, x)], axis=0)  # (2B, ...)
        z, layer_state = model.apply(params, layer_state, views, key=model_key, train=True)  # (2B, P)
        batch_size = x.shape[0]
        logits, targets = _nt_xent_logits(z[:batch_size], z[batch_size:], temperature)
        loss = jnp.mean(_cross_entropy(logits, targets))
        hits = jnp.argmax(logits, axis=-1) == targets
        return loss, (layer_state, {"pair_accuracy": jnp.mean(hits.astype(jnp.float32))})

    loss_fn.model = model  # type: ignore[attr-defined]  # fit reads the initial layer state
    return loss_fn
