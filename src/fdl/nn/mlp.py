"""The multilayer perceptron: dense layers with a nonlinearity between them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp

from fdl import activations, initializers
from fdl._checks import check_positive_int, check_rate
from fdl.nn.combinators import Elementwise, Serial
from fdl.nn.dense import Dense
from fdl.nn.dropout import Dropout
from fdl.nn.layer import Layer

__all__ = ["MLP"]


def MLP(
    features: Sequence[int],
    *,
    activation: Callable[[Any], Any] = activations.relu,
    dropout_rate: float = 0.0,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""A multilayer perceptron: ``Dense(features[0])``, activation, ..., ``Dense(features[-1])``.

    .. math::

        h_0 = x, \qquad h_k = \sigma(h_{k-1} W_k + b_k) \;\; (k < L), \qquad
        y = h_{L-1} W_L + b_L

    The last layer has no activation (it outputs logits or regression values). With
    ``dropout_rate > 0`` a :func:`~fdl.nn.Dropout` follows each hidden activation.

    Args:
      features: the width of every dense layer, the output width last, e.g. ``(256, 256, 10)``.
      activation: the elementwise nonlinearity :math:`\sigma` (a function of :mod:`fdl.activations`
        or any shape-preserving function).
      dropout_rate: drop probability after each hidden activation; ``0`` adds no dropout layer.
      w_init, b_init, param_dtype, dtype: passed to every :func:`~fdl.nn.Dense`.
      name: the name of the :func:`~fdl.nn.Serial` it returns (its path in a parent).

    Returns:
      A :func:`~fdl.nn.Serial` layer; the dense layers are named ``dense_0``, ``dense_1``, ...

    >>> import jax, fdl
    >>> model = fdl.nn.MLP((32, 32, 10))
    >>> params, state, out_shape = model.init(jax.random.key(0), (64,))
    >>> out_shape, {path: p["w"].shape for path, p in params.items()}
    ((10,), {'dense_0': (64, 32), 'dense_1': (32, 32), 'dense_2': (32, 10)})
    """
    features = tuple(features)
    if not features:
        raise ValueError("`features` must list at least one layer width, got ()")
    features = tuple(check_positive_int(f"features[{i}]", width) for i, width in enumerate(features))
    dropout_rate = check_rate("dropout_rate", dropout_rate)
    act_name = getattr(activation, "__name__", "activation")
    layers: list[Layer] = []
    for i, width in enumerate(features):
        dense = Dense(
            width,
            w_init=w_init,
            b_init=b_init,
            param_dtype=param_dtype,
            dtype=dtype,
            name=f"dense_{i}",
        )
        layers.append(dense)
        if i < len(features) - 1:
            layers.append(Elementwise(activation, name=f"{act_name}_{i}"))
            if dropout_rate > 0.0:
                layers.append(Dropout(dropout_rate, name=f"dropout_{i}"))
    return Serial(*layers, name=name)
