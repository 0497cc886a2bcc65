"""What more than one figure module uses: a digits MLP trained by ``fit`` (not a chapter)."""

from __future__ import annotations

from typing import Any

import jax

import fdl


def train_mlp(model: fdl.nn.Layer, loss_fn: Any, data: fdl.data.Split) -> tuple[Any, Any]:
    """300 Adam steps (3e-3, batch 128) of ``fit`` from ``model``'s init at key 0; returns the
    trained parameters and the layer state."""
    params, state, _ = model.init(jax.random.key(0), (64,))
    result = fdl.fit.fit(
        loss_fn,
        fdl.optim.adam(3e-3),
        params,
        (data.x_train, data.y_train),
        key=jax.random.key(1),
        batch_size=128,
        steps=300,
        logging=fdl.fit.Logging(progress=False),
    )
    return result.params, state
