"""Ready-made losses and evaluations for ``fit``: a classifier's cross-entropy and accuracy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fdl._checks import check_labels

__all__ = ["classification_loss", "classification_eval", "initial_layer_state"]


def classification_loss(model: Any) -> Callable[..., Any]:
    """The softmax cross-entropy loss of ``model`` on integer labels, in the one loss signature
    (:data:`fdl.train.LOSS_SIGNATURE`).

    ``loss_fn(params, layer_state, (x, y), key) -> (loss, (layer_state, {"accuracy": acc}))``,
    running the model in training mode (dropout draws from ``key``; batch norm updates its state).
    The function carries ``model`` as ``loss_fn.model``, so :func:`fdl.fit.fit` can start from the
    model's own layer state when none is given, and ``loss_fn.check_data(data)``, which ``fit``
    calls once, host-side, before training: the labels must be integers in ``[0, classes)``
    (a label out of range would otherwise surface as a "non-finite loss").
    """
    from fdl import losses, metrics

    def loss_fn(params, layer_state, batch, key):
        x, y = batch
        logits, layer_state = model.apply(params, layer_state, x, key=key, train=True)
        loss = losses.softmax_cross_entropy_with_integer_labels(logits, y, reduction="mean")
        return loss, (layer_state, {"accuracy": metrics.accuracy(logits, y)})

    def check_data(data: tuple[Any, ...]) -> None:
        """The labels ``data[1]`` against the model's outputs, host-side, once (fit calls it)."""
        if len(data) != 2:
            raise ValueError(f"`data` of classification_loss must be (x, y), got {len(data)} arrays")
        classes = num_outputs(model, tuple(np.shape(data[0])[1:]))
        check_labels("`data[1]` (the labels)", data[1], classes, where=f"for a model with {classes} outputs")

    loss_fn.model = model  # type: ignore[attr-defined]  # fit reads the initial layer state
    loss_fn.check_data = check_data  # type: ignore[attr-defined]
    return loss_fn


def num_outputs(model: Any, example_shape: tuple[int, ...]) -> int:
    """The size of the last axis of ``model``'s output for one example of ``example_shape``
    (its classes, for a classifier), found by tracing ``init`` abstractly (nothing computed)."""
    found: dict[str, Any] = {}

    def init(key):
        params, _, out_shape = model.init(key, example_shape)
        found["shape"] = out_shape
        return params

    jax.eval_shape(init, jax.random.key(0))
    return int(found["shape"][-1])


def classification_eval(model: Any, x: Any, y: Any) -> Callable[..., dict[str, jax.Array]]:
    """``eval_fn(params, layer_state) -> {"loss", "accuracy"}`` on ``(x, y)``, in eval mode.

    Raises:
      ValueError: a label of ``y`` outside ``[0, classes)`` (checked here, once).
    """
    from fdl import losses, metrics

    classes = num_outputs(model, tuple(np.shape(x)[1:]))
    check_labels("`y` of classification_eval", y, classes, where=f"for a model with {classes} outputs")
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
