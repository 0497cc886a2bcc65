"""Layers as pure ``(init, apply)`` pairs, and the combinators that build models from them.

See :mod:`fdl.nn.layer` for the contract.
"""

from fdl.nn._children import sow
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
    attention_weights,
    scaled_dot_product_attention,
)
from fdl.nn.batch_norm import BatchNorm
from fdl.nn.bidirectional import Bidirectional
from fdl.nn.cells import Cell, GRUCell, LSTMCell, RNNCell
from fdl.nn.combinators import (
    Branch,
    Concat,
    Elementwise,
    FanOut,
    Flatten,
    Identity,
    Multiply,
    Parallel,
    Residual,
    Serial,
    Sum,
)
from fdl.nn.composites import Eval, composite
from fdl.nn.conv import Conv1D, Conv2D
from fdl.nn.conv_transpose import ConvTranspose1D, ConvTranspose2D
from fdl.nn.dense import Dense
from fdl.nn.dropout import Dropout
from fdl.nn.embedding import (
    Embedding,
    LearnedPositionalEncoding,
    SinusoidalPositionalEncoding,
)
from fdl.nn.layer import Layer, as_function, layer_factory
from fdl.nn.masking import padding_mask
from fdl.nn.mlp import MLP
from fdl.nn.normalization import GroupNorm, LayerNorm, RMSNorm
from fdl.nn.parts import (
    capture,
    combine,
    eval_mode,
    layer_at,
    layer_paths,
    leaf_paths,
    param_count,
    partition,
    replace_layer,
    select,
    swap,
    tree_at,
)
from fdl.nn.pooling import (
    AvgPool1D,
    AvgPool2D,
    GlobalAvgPool,
    GlobalMaxPool,
    MaxPool1D,
    MaxPool2D,
)
from fdl.nn.recurrent import Recurrent, Stacked
from fdl.nn.summary import Summary, summary
from fdl.nn.transformer import TransformerDecoderBlock, TransformerEncoderBlock

__all__ = [
    "Layer",
    "as_function",
    "layer_factory",
    "composite",
    "Eval",
    # reaching into a model
    "leaf_paths",
    "layer_paths",
    "tree_at",
    "layer_at",
    "replace_layer",
    "swap",
    "eval_mode",
    "select",
    "partition",
    "combine",
    "capture",
    "sow",
    "param_count",
    "summary",
    "Summary",
    "Dense",
    "Dropout",
    "Serial",
    "Parallel",
    "FanOut",
    "Concat",
    "Sum",
    "Multiply",
    "Branch",
    "Residual",
    "Identity",
    "Flatten",
    "Elementwise",
    "MLP",
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
    "ConvTranspose1D",
    "ConvTranspose2D",
    "MaxPool1D",
    "MaxPool2D",
    "AvgPool1D",
    "AvgPool2D",
    "GlobalAvgPool",
    "GlobalMaxPool",
    # normalization
    "BatchNorm",
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    # embeddings and attention
    "Embedding",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEncoding",
    "padding_mask",
    "scaled_dot_product_attention",
    "attention_weights",
    "MultiHeadAttention",
    "TransformerEncoderBlock",
    "TransformerDecoderBlock",
    # recurrent
    "Cell",
    "RNNCell",
    "LSTMCell",
    "GRUCell",
    "Recurrent",
    "Bidirectional",
    "Stacked",
]
