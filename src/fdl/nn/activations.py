"""Activation functions as layers.

Each is :func:`~fdl.nn.Elementwise` around the function of the same name in
:mod:`fdl.activations`, where the formula and its derivative are written out.
"""

from __future__ import annotations

import functools

from fdl import activations
from fdl.nn.combinators import Elementwise
from fdl.nn.layer import Layer, layer_factory

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


@layer_factory
def Relu(*, name: str | None = None) -> Layer:
    """Layer of :func:`fdl.activations.relu`."""
    return Elementwise(activations.relu)


@layer_factory
def LeakyRelu(negative_slope: float = 0.01, *, name: str | None = None) -> Layer:
    """Layer of :func:`fdl.activations.leaky_relu`."""
    return Elementwise(functools.partial(activations.leaky_relu, negative_slope=negative_slope))


@layer_factory
def Elu(alpha: float = 1.0, *, name: str | None = None) -> Layer:
    """Layer of :func:`fdl.activations.elu`."""
    return Elementwise(functools.partial(activations.elu, alpha=alpha))


@layer_factory
def Gelu(approximate: bool = False, *, name: str | None = None) -> Layer:
    """Layer of :func:`fdl.activations.gelu`."""
    return Elementwise(functools.partial(activations.gelu, approximate=approximate))


@layer_factory
def Sigmoid(*, name: str | None = None) -> Layer:
    """Layer of :func:`fdl.activations.sigmoid`."""
    return Elementwise(activations.sigmoid)


@layer_factory
def Tanh(*, name: str | None = None) -> Layer:
    """Layer of :func:`fdl.activations.tanh`."""
    return Elementwise(activations.tanh)


@layer_factory
def Softmax(*, name: str | None = None) -> Layer:
    """Layer of :func:`fdl.activations.softmax` over the last axis."""
    return Elementwise(activations.softmax)


@layer_factory
def LogSoftmax(*, name: str | None = None) -> Layer:
    """Layer of :func:`fdl.activations.log_softmax` over the last axis."""
    return Elementwise(activations.log_softmax)


@layer_factory
def Softplus(*, name: str | None = None) -> Layer:
    """Layer of :func:`fdl.activations.softplus`."""
    return Elementwise(activations.softplus)


@layer_factory
def Silu(*, name: str | None = None) -> Layer:
    """Layer of :func:`fdl.activations.silu`."""
    return Elementwise(activations.silu)
