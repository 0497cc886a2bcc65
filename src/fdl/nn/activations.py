"""Activation functions as layers.

Each is :func:`~fdl.nn.Elementwise` around the function of the same name in
:mod:`fdl.activations`, where the formula and its derivative are written out.
"""

from __future__ import annotations

import functools

from fdl import activations
from fdl.nn.combinators import Elementwise
from fdl.nn.layer import Layer

__all__ = [
    "Relu",
    "LeakyRelu",
    "Elu",
    "Gelu",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "Softplus",
    "Silu",
]


def Relu() -> Layer:
    """Layer of :func:`fdl.activations.relu`."""
    return Elementwise(activations.relu, name="relu")


def LeakyRelu(negative_slope: float = 0.01) -> Layer:
    """Layer of :func:`fdl.activations.leaky_relu`."""
    fn = functools.partial(activations.leaky_relu, negative_slope=negative_slope)
    return Elementwise(fn, name="leaky_relu")


def Elu(alpha: float = 1.0) -> Layer:
    """Layer of :func:`fdl.activations.elu`."""
    return Elementwise(functools.partial(activations.elu, alpha=alpha), name="elu")


def Gelu(approximate: bool = False) -> Layer:
    """Layer of :func:`fdl.activations.gelu`."""
    return Elementwise(functools.partial(activations.gelu, approximate=approximate), name="gelu")


def Sigmoid() -> Layer:
    """Layer of :func:`fdl.activations.sigmoid`."""
    return Elementwise(activations.sigmoid, name="sigmoid")


def Tanh() -> Layer:
    """Layer of :func:`fdl.activations.tanh`."""
    return Elementwise(activations.tanh, name="tanh")


def Softmax() -> Layer:
    """Layer of :func:`fdl.activations.softmax` over the last axis."""
    return Elementwise(activations.softmax, name="softmax")


def LogSoftmax() -> Layer:
    """Layer of :func:`fdl.activations.log_softmax` over the last axis."""
    return Elementwise(activations.log_softmax, name="log_softmax")


def Softplus() -> Layer:
    """Layer of :func:`fdl.activations.softplus`."""
    return Elementwise(activations.softplus, name="softplus")


def Silu() -> Layer:
    """Layer of :func:`fdl.activations.silu`."""
    return Elementwise(activations.silu, name="silu")
