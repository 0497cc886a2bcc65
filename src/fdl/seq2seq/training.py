"""Teacher forcing: the model record, shifted targets, the masked loss and exact match."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import losses, nn
from fdl._checks import check_non_negative_int
from fdl.seq2seq._checks import check_mask, check_tokens
from fdl.train import simple_loss

__all__ = ["EncoderDecoder", "shift_right", "sequence_cross_entropy", "exact_match", "teacher_forcing_loss"]

Params = Any


class EncoderDecoder(NamedTuple):
    """An encoder–decoder as five pure functions over one parameter tree.

    Attributes:
      init: ``init(key) -> params``.
      encode: ``encode(params, source (B, S), source_mask (B, S)) -> memory`` (a pytree).
      decode: ``decode(params, memory, source_mask, decoder_inputs (B, T)) -> logits (B, T, V)``,
        all positions in one pass (teacher forcing); causal: position ``t`` reads inputs
        ``<= t`` only.
      start: ``start(params, memory, source_mask, length) -> carry``, the decoding state before
        the first token, for up to ``length`` steps.
      step: ``step(params, carry, tokens (B,)) -> (logits (B, V), carry)``, one decoding step:
        the logits after reading ``tokens`` at the next position.
      layer: the whole model as one :class:`fdl.nn.Layer` on ``(source, source_mask,
        decoder_inputs)`` (for :func:`fdl.nn.summary` and paths).
    """

    init: Callable[[jax.Array], Params]
    encode: Callable[..., Any]
    decode: Callable[..., jax.Array]
    start: Callable[..., Any]
    step: Callable[..., tuple[jax.Array, Any]]
    layer: nn.Layer


# ------------------------------------------------------------------------- teacher forcing


def shift_right(targets: jax.Array, start_id: int) -> jax.Array:
    r"""The teacher-forcing decoder inputs: the targets delayed by one step behind ``start_id``.

    .. math::

        \mathrm{inputs}_{b,1} = \langle s\rangle, \qquad \mathrm{inputs}_{b,t} = y_{b,t-1}
        \quad (t = 2, \ldots, T)

    so the prediction at position :math:`t` reads the reference :math:`y_{<t}`
    (Williams & Zipser, 1989).

    Args:
      targets: int ``(B, T)``.
      start_id: the begin-of-sequence id :math:`\langle s\rangle`.

    Returns:
      int ``(B, T)`` of the targets' dtype.

    Raises:
      ValueError: ``targets`` not integer ``(B, T)``; ``start_id`` not a non-negative int.

    >>> import jax.numpy as jnp
    >>> from fdl.seq2seq import shift_right
    >>> shift_right(jnp.array([[5, 6, 2]]), start_id=1).tolist()
    [[1, 5, 6]]
    """
    targets = check_tokens("targets", targets)
    start_id = check_non_negative_int("start_id", start_id)
    first = jnp.full((targets.shape[0], 1), start_id, targets.dtype)  # (B, 1)
    return jnp.concatenate([first, targets[:, :-1]], axis=1)  # (B, T)


def sequence_cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    r"""The teacher-forcing loss: the mean negative log-likelihood of the real target tokens.

    .. math::

        L = -\frac{1}{\max(1, \sum_{b,t} m_{bt})} \sum_{b,t} m_{bt}\,
            \log \mathrm{softmax}(z_{bt})_{y_{bt}}

    with logits :math:`z`, targets :math:`y` and padding mask :math:`m` (padded positions add
    nothing). Each real token counts once, so long sequences weigh more than short ones.

    Args:
      logits: ``(B, T, V)``.
      targets: int ``(B, T)``.
      mask: bool ``(B, T)``, True at real target tokens.

    Returns:
      A scalar.

    Raises:
      ValueError: shapes that do not match (each named with its shape).

    >>> import jax.numpy as jnp
    >>> from fdl.seq2seq import sequence_cross_entropy
    >>> logits = jnp.zeros((1, 2, 4))                 # uniform over 4 tokens: log 4 per token
    >>> loss = sequence_cross_entropy(logits, jnp.array([[3, 0]]), jnp.array([[True, False]]))
    >>> round(float(loss), 4)
    1.3863
    """
    targets = check_tokens("targets", targets)
    mask = check_mask("mask", mask, targets, "targets")
    logits = jnp.asarray(logits)
    if logits.shape[:-1] != targets.shape or logits.ndim != 3:
        raise ValueError(
            f"`logits` must be (B, T, V) with (B, T) = {targets.shape} the shape of `targets`, got shape {logits.shape}"
        )
    nll = losses.softmax_cross_entropy_with_integer_labels(logits, targets)  # (B, T)
    weights = mask.astype(nll.dtype)  # (B, T)
    return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), jnp.ones((), nll.dtype))


def exact_match(predicted: jax.Array, targets: jax.Array, mask: jax.Array) -> jax.Array:
    r"""Whether each predicted sequence equals its target on every real position.

    .. math::

        \mathrm{EM}_b = \prod_{t} \big[\, m_{bt} = 0 \ \lor\ \hat y_{bt} = y_{bt} \,\big]

    With the end-of-sequence token inside the mask, a prediction that stops early or late fails.

    Args:
      predicted, targets: int ``(B, T)`` (``predicted`` may be longer: its first ``T``
        columns are compared).
      mask: bool ``(B, T)``, True at the target's real tokens.

    Returns:
      bool ``(B,)``.

    Raises:
      ValueError: ``predicted`` shorter than ``targets``, or other shapes that do not match.

    >>> import jax.numpy as jnp
    >>> from fdl.seq2seq import exact_match
    >>> y = jnp.array([[4, 5, 2], [4, 5, 2]])
    >>> exact_match(jnp.array([[4, 5, 2], [4, 6, 2]]), y, jnp.ones((2, 3), bool)).tolist()
    [True, False]
    """
    targets = check_tokens("targets", targets)
    predicted = check_tokens("predicted", predicted)
    mask = check_mask("mask", mask, targets, "targets")
    if predicted.shape[0] != targets.shape[0] or predicted.shape[1] < targets.shape[1]:
        raise ValueError(
            f"`predicted` must have the batch size of `targets` and at least its length, "
            f"shape (B, >= T) with (B, T) = {targets.shape}, got shape {predicted.shape}"
        )
    same = predicted[:, : targets.shape[1]] == targets  # (B, T)
    return jnp.all(same | ~mask, axis=1)


def teacher_forcing_loss(model: EncoderDecoder, *, start_id: int) -> Callable[..., Any]:
    r"""A loss for :func:`fdl.fit.fit` / :func:`fdl.train.make_train_step`: the model decodes
    ``shift_right(targets)`` and is scored by :func:`sequence_cross_entropy`.

    .. math::

        L(\theta) = -\frac{1}{\sum m} \sum_{b,t} m_{bt} \log p_\theta(y_{bt} \mid y_{b,<t},\ x_b)

    The batch is ``(source (B, S), source_mask (B, S), targets (B, T), target_mask (B, T))``;
    the metrics are ``token_accuracy`` (teacher-forced argmax on the real tokens).

    Raises:
      TypeError: ``model`` not an :class:`EncoderDecoder`.
      ValueError: ``start_id`` not a non-negative int.
    """
    if not isinstance(model, EncoderDecoder):
        raise TypeError(f"`model` must be an fdl.seq2seq.EncoderDecoder, got {type(model).__name__}")
    start_id = check_non_negative_int("start_id", start_id)

    def loss(params, batch, key):
        del key  # no dropout in these models
        source, source_mask, targets, target_mask = batch
        memory = model.encode(params, source, source_mask)
        logits = model.decode(params, memory, source_mask, shift_right(targets, start_id))  # (B, T, V)
        value = sequence_cross_entropy(logits, targets, target_mask)
        hits = (jnp.argmax(logits, axis=-1) == targets) & target_mask  # (B, T)
        accuracy = jnp.sum(hits) / jnp.maximum(jnp.sum(target_mask), 1)
        return value, {"token_accuracy": accuracy.astype(value.dtype)}

    return simple_loss(loss)
