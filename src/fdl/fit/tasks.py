"""Ready-made losses and evaluations for ``fit``: a classifier's cross-entropy and accuracy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["classification_loss", "classification_eval", "initial_layer_state"]


def classification_loss(model: Any) -> Callable[..., Any]:
    """The softmax cross-entropy loss of ``model`` on integer labels, in the one loss signature
    (:data:`fdl.train.LOSS_SIGNATURE`).

    ``loss_fn(params, layer_state, (x, y), key) -> (loss, (layer_state, {"accuracy": acc}))``,
    running the model in training mode (dropout draws from ``key``; batch norm updates its state).
    The function carries ``model`` as ``loss_fn.model``, so :func:`fdl.fit.fit` can start from the
    model's own layer state when none is given.
    """
    from fdl import losses, metrics

    def loss_fn(params, layer_state, batch, key):
        x, y = batch
        logits, layer_state = model.apply(params, layer_state, x, key=key, train=True)
        loss = losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="mean")
        return loss, (layer_state, {"accuracy": metrics.accuracy(logits, y)})

    loss_fn.model = model  # type: ignore[attr-defined]  # fit reads the initial layer state
    return loss_fn


def classification_eval(model: Any, x: Any, y: Any) -> Callable[..., dict[str, jax.Array]]:
    """``eval_fn(params, layer_state) -> {"loss", "accuracy"}`` on ``(x, y)``, in eval mode."""
    from fdl import losses, metrics

    x, y = jnp.asarray(x), jnp.asarray(y)

    def eval_fn(params, layer_state):
        logits, _ = model.apply(params, layer_state, x)
        return {
            "loss": losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="mean"),
            "accuracy": metrics.accuracy(logits, y),
        }

    return eval_fn


def initial_layer_state(loss_fn: Any, data: tuple[Any, ...]) -> Any:
    """The layer state ``fit`` starts from when none is given: the model's ``init`` state for a
    loss that carries its model (:func:`classification_loss`), else ``{}``."""
    model = getattr(loss_fn, "model", None)
    if model is None:
        return {}
    example_shape = tuple(np.shape(data[0])[1:])
    # fdl's layer states (batch norm's statistics) do not depend on the key
    return model.init(jax.random.key(0), example_shape)[1]
