"""Layers as pure ``(init, apply)`` pairs, and the combinators that build models from them.

See :mod:`fdl.nn.layer` for the contract.
"""

from fdl.nn.activations import (
    Elu,
    Gelu,
    LeakyRelu,
    LogSoftmax,
    Relu,
    Sigmoid,
    Silu,
    Softmax,
    Softplus,
    Tanh,
)
from fdl.nn.attention import (
    MultiHeadAttention,
    TransformerEncoderBlock,
    attention_weights,
    scaled_dot_product_attention,
)
from fdl.nn.combinators import (
    Branch,
    Concat,
    Elementwise,
    FanOut,
    Flatten,
    Identity,
    Parallel,
    Residual,
    Serial,
    Sum,
)
from fdl.nn.conv import Conv1D, Conv2D, ConvTranspose2D
from fdl.nn.dense import Dense
from fdl.nn.dropout import Dropout
from fdl.nn.embedding import (
    Embedding,
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
)
from fdl.nn.layer import Layer, as_function
from fdl.nn.mlp import mlp
from fdl.nn.normalization import BatchNorm, GroupNorm, LayerNorm
from fdl.nn.pooling import AvgPool1D, AvgPool2D, GlobalAvgPool, MaxPool1D, MaxPool2D
from fdl.nn.recurrent import (
    Bidirectional,
    GRUCell,
    LSTMCell,
    Recurrent,
    RNNCell,
    stacked,
)

__all__ = [
    "Layer",
    "as_function",
    "Dense",
    "Dropout",
    "Serial",
    "Parallel",
    "FanOut",
    "Concat",
    "Sum",
    "Branch",
    "Residual",
    "Identity",
    "Flatten",
    "Elementwise",
    "mlp",
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
    # convolution and pooling
    "Conv1D",
    "Conv2D",
    "ConvTranspose2D",
    "MaxPool1D",
    "MaxPool2D",
    "AvgPool1D",
    "AvgPool2D",
    "GlobalAvgPool",
    # normalization
    "BatchNorm",
    "LayerNorm",
    "GroupNorm",
    # embeddings and attention
    "Embedding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEncoding",
    "scaled_dot_product_attention",
    "attention_weights",
    "MultiHeadAttention",
    "TransformerEncoderBlock",
    # recurrent
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "Recurrent",
    "Bidirectional",
    "stacked",
]
