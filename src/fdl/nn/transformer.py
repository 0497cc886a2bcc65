r"""Pre-LayerNorm transformer blocks, composed of public layers: an encoder block (self-attention
and an MLP) and a decoder block (causal self-attention, cross-attention and an MLP).

Each block is :func:`fdl.nn.composite` over named :func:`~fdl.nn.LayerNorm`,
:func:`~fdl.nn.MultiHeadAttention`, :func:`~fdl.nn.Dense`, :func:`~fdl.nn.Gelu` and
:func:`~fdl.nn.Dropout` children, with the residual sums written out in its ``forward``, so a
parameter path reads ``attention/query/w`` or ``mlp_norm/scale``. The padding mask (the ``mask=``
keyword) reaches every child; only the attentions use it.

References:
  Vaswani et al. (2017). Attention is all you need. NeurIPS.
  Xiong, Yang, He, Zheng, Zheng, Xing, Zhang, Lan, Wang & Liu (2020). On layer normalization in
  the transformer architecture. ICML (the pre-LayerNorm block).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from fdl import initializers
from fdl._checks import check_positive_int, check_rate
from fdl.nn.activations import Gelu
from fdl.nn.attention import MultiHeadAttention
from fdl.nn.composites import composite
from fdl.nn.dense import Dense
from fdl.nn.dropout import Dropout
from fdl.nn.layer import Layer, layer_factory
from fdl.nn.masking import built_for_width, sequence_shape, split_attention_shape
from fdl.nn.normalization import LayerNorm

__all__ = ["TransformerEncoderBlock", "TransformerDecoderBlock"]


def _residual(x: jax.Array, branch: jax.Array) -> jax.Array:
    """``x + branch`` in the branch's dtype: the compute dtype of its layers (``dtype``, or the
    input's and parameters' promoted dtype, never narrower than ``x``'s)."""
    return x.astype(branch.dtype) + branch  # (*batch, T, D)


def _mlp_children(mlp_features: int, width: int, dropout_rate: float, dense: dict) -> dict[str, Layer]:
    return {
        "mlp_hidden": Dense(mlp_features, name="mlp_hidden", **dense),
        "gelu": Gelu(name="gelu"),
        "mlp_out": Dense(width, name="mlp_out", **dense),
        "mlp_out_dropout": Dropout(dropout_rate, name="mlp_out_dropout"),
    }


def _mlp(call, h: jax.Array) -> jax.Array:
    """``h + Dropout(gelu(LN(h) W_1 + b_1) W_2 + b_2)``."""
    z = call("mlp_hidden", call("mlp_norm", h))  # (*batch, T, M)
    z = call("mlp_out", call("gelu", z))  # (*batch, T, D)
    return _residual(h, call("mlp_out_dropout", z))


@layer_factory
def TransformerEncoderBlock(
    num_heads: int,
    mlp_features: int,
    *,
    qkv_features: int | None = None,
    dropout_rate: float = 0.0,
    attention_dropout_rate: float = 0.0,
    causal: bool = False,
    epsilon: float = 1e-5,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""A pre-LayerNorm transformer encoder block (Xiong et al., 2020; GPT-2, ViT).

    .. math::

        h = x + \mathrm{Dropout}\big(\mathrm{MHA}(\mathrm{LN}_1(x))\big), \qquad
        y = h + \mathrm{Dropout}\big(\mathrm{gelu}(\mathrm{LN}_2(h)\, W_1 + b_1)\, W_2 + b_2\big)

    with :func:`~fdl.nn.MultiHeadAttention` (self-attention, output width :math:`D`), layer
    norms over the feature axis, :math:`W_1` of shape ``(D, mlp_features)`` and :math:`W_2`
    ``(mlp_features, D)``, and the exact (erf) gelu. Putting the norm inside the residual branch
    leaves an identity path from input to output, so gradients at initialization are well scaled
    without learning-rate warm-up (the post-LN block of the original paper,
    :math:`\mathrm{LN}(x + \mathrm{MHA}(x))`, needs it).

    Every position is processed alone except in attention, so with ``causal=True`` output
    :math:`t` depends on inputs :math:`\le t` only, and with a padding ``mask`` real outputs do
    not depend on padded inputs.

    Shapes: ``x`` and ``y`` are ``(*batch, T, D)`` (``init`` shape ``(T, D)``); ``mask``, the
    keyword, ``(*batch, T)``.

    Args:
      num_heads: attention heads; must divide ``qkv_features`` (default :math:`D`).
      mlp_features: the hidden width of the MLP (commonly :math:`4D`).
      qkv_features: the attention width :math:`F`; default :math:`D`.
      dropout_rate: drop probability on both residual branches' outputs, in training.
      attention_dropout_rate: drop probability on the attention weights, in training.
      causal: causal self-attention.
      epsilon: the layer norms' :math:`\epsilon`.
      use_bias, w_init, b_init: passed to every dense projection.
      param_dtype, dtype: passed to every sub-layer; the residual sums run in the sub-layers'
        compute dtype.
      name: its name in a parent's paths.

    Returns:
      A :class:`~fdl.nn.Layer` composed of ``attention_norm`` (LayerNorm), ``attention``
      (MultiHeadAttention), ``attention_out_dropout``, ``mlp_norm``, ``mlp_hidden`` (Dense),
      ``gelu``, ``mlp_out`` (Dense) and ``mlp_out_dropout``; ``params`` holds the five with
      parameters, so paths read ``attention/query/w``, ``attention_norm/scale``,
      ``mlp_hidden/w``.

    Raises:
      ValueError: bad counts or rates, or ``num_heads`` not dividing ``qkv_features``
        (construction); an input shape not ``(T, D)``, ``num_heads`` not dividing ``D``
        (``init``); a bad input or mask, training with dropout and no key (``apply``, from the
        child that finds it, named by its path).

    Differs from PyTorch: ``torch.nn.TransformerEncoderLayer(D, H, mlp_features,
    norm_first=True, activation="gelu", dropout=0.0, batch_first=True)`` is the same function
    (tested; its default is post-LN with relu). It also drops inside the MLP (after the
    activation) and uses one ``dropout`` for every place.

    >>> import jax, jax.numpy as jnp
    >>> from fdl.nn import TransformerEncoderBlock
    >>> block = TransformerEncoderBlock(num_heads=2, mlp_features=16)
    >>> params, state, shape = block.init(jax.random.key(0), (5, 8))
    >>> y, _ = block.apply(params, state, jnp.ones((3, 5, 8)), mask=jnp.ones((3, 5), bool))
    >>> shape, y.shape, sorted(params)
    ((5, 8), (3, 5, 8), ['attention', 'attention_norm', 'mlp_hidden', 'mlp_norm', 'mlp_out'])
    """
    kind = "TransformerEncoderBlock"
    num_heads = check_positive_int("num_heads", num_heads)
    mlp_features = check_positive_int("mlp_features", mlp_features)
    dropout_rate = check_rate("dropout_rate", dropout_rate)
    attention_dropout_rate = check_rate("attention_dropout_rate", attention_dropout_rate)
    dense = {
        "use_bias": use_bias,
        "w_init": w_init,
        "b_init": b_init,
        "param_dtype": param_dtype,
        "dtype": dtype,
    }
    attention = MultiHeadAttention(
        num_heads,
        qkv_features=qkv_features,
        causal=causal,
        dropout_rate=attention_dropout_rate,
        name="attention",
        **dense,
    )

    def norm(part: str) -> Layer:
        return LayerNorm(epsilon=epsilon, param_dtype=param_dtype, dtype=dtype, name=part)

    def forward(call, x, *, train, mask):
        attended = call("attention", call("attention_norm", x))  # (*batch, T, D)
        h = _residual(x, call("attention_out_dropout", attended))
        return _mlp(call, h)

    def build(width: int) -> Layer:
        children = {
            "attention_norm": norm("attention_norm"),
            "attention": attention,
            "attention_out_dropout": Dropout(dropout_rate, name="attention_out_dropout"),
            "mlp_norm": norm("mlp_norm"),
            **_mlp_children(mlp_features, width, dropout_rate, dense),
        }
        return composite(children, forward, kind=kind)

    layer = built_for_width(kind, build)

    def init(key: jax.Array, input_shape: Any):
        sequence_shape(kind, input_shape)
        return layer.init(key, input_shape)

    return Layer(init, layer.apply)


@layer_factory
def TransformerDecoderBlock(
    num_heads: int,
    mlp_features: int,
    *,
    qkv_features: int | None = None,
    dropout_rate: float = 0.0,
    attention_dropout_rate: float = 0.0,
    causal: bool = True,
    epsilon: float = 1e-5,
    use_bias: bool = True,
    w_init: initializers.Initializer | None = None,
    b_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""A pre-LayerNorm transformer decoder block: causal self-attention, cross-attention to a
    memory (the encoder's output), and an MLP, each in a residual branch.

    .. math::

        h_1 &= x + \mathrm{Dropout}\big(\mathrm{MHA}_{\mathrm{causal}}(\mathrm{LN}_1(x))\big) \\
        h_2 &= h_1 + \mathrm{Dropout}\big(\mathrm{MHA}(\mathrm{LN}_2(h_1),\ m)\big) \\
        y &= h_2 + \mathrm{Dropout}\big(\mathrm{gelu}(\mathrm{LN}_3(h_2)\, W_1 + b_1)\,
            W_2 + b_2\big)

    with :math:`m` the memory, :math:`\mathrm{MHA}(\cdot, m)` cross-attention from the block's
    sequence to the memory (:func:`~fdl.nn.MultiHeadAttention` with keys/values :math:`m`), and
    the MLP of :func:`TransformerEncoderBlock`. The memory is not normalized here (a pre-LN
    encoder ends with its own final LayerNorm).

    Inputs: ``(x, memory)`` or ``(x, memory, memory_mask)``, ``x`` ``(*batch, T, D)``,
    ``memory`` ``(*batch, S, D_m)``, ``memory_mask`` bool (True = may attend) ``(*batch, S)``
    (memory padding) or ``(*batch, T, S)``; ``init`` shape ``((T, D), (S, D_m))`` or
    ``((T, D), (S, D_m), (S,))``. The ``mask=`` keyword is the padding mask of ``x``
    ``(*batch, T)``: the self-attention does not attend to padded positions. Output
    ``(*batch, T, D)``; with ``causal`` output :math:`t` depends on ``x`` at positions
    :math:`\le t` only (and on all of the memory).

    Args:
      num_heads: heads of both attentions; must divide ``qkv_features`` (default :math:`D`).
      mlp_features: the hidden width of the MLP.
      qkv_features: the width :math:`F` of both attentions; default :math:`D`.
      dropout_rate: drop probability on the three residual branches' outputs, in training.
      attention_dropout_rate: drop probability on both attentions' weights, in training.
      causal: causal self-attention (the default: a decoder predicts the next position).
      epsilon: the layer norms' :math:`\epsilon`.
      use_bias, w_init, b_init: passed to every dense projection.
      param_dtype, dtype: passed to every sub-layer.
      name: its name in a parent's paths.

    Returns:
      A :class:`~fdl.nn.Layer` composed of ``self_attention_norm``, ``self_attention``,
      ``self_attention_out_dropout``, ``cross_attention_norm``, ``cross_attention``,
      ``cross_attention_out_dropout``, ``mlp_norm``, ``mlp_hidden``, ``gelu``, ``mlp_out`` and
      ``mlp_out_dropout``; paths read ``self_attention/query/w``, ``cross_attention/key/w``
      (``(D_m, F)``), ``mlp_norm/scale``.

    Raises:
      ValueError: bad counts or rates, or ``num_heads`` not dividing ``qkv_features``
        (construction); an input shape other than the above, ``num_heads`` not dividing ``D``
        (``init``); a bad input or mask, training with dropout and no key (``apply``, from the
        child that finds it, named by its path).

    Differs from PyTorch: ``torch.nn.TransformerDecoderLayer(D, H, mlp_features,
    norm_first=True, activation="gelu", dropout=0.0, batch_first=True)`` is the same function
    (tested, with ``tgt_mask`` causal, ``tgt_key_padding_mask = ~mask`` and
    ``memory_key_padding_mask = ~memory_mask``); its memory must have width :math:`D`, and it
    also drops inside the MLP.

    >>> import jax, jax.numpy as jnp
    >>> from fdl.nn import TransformerDecoderBlock
    >>> block = TransformerDecoderBlock(num_heads=2, mlp_features=16)
    >>> params, state, shape = block.init(jax.random.key(0), ((5, 8), (7, 6), (7,)))
    >>> x, memory, memory_mask = jnp.ones((3, 5, 8)), jnp.ones((3, 7, 6)), jnp.ones((3, 7), bool)
    >>> y, _ = block.apply(params, state, (x, memory, memory_mask), mask=jnp.ones((3, 5), bool))
    >>> shape, y.shape, params["cross_attention"]["key"]["w"].shape
    ((5, 8), (3, 5, 8), (6, 8))
    """
    kind = "TransformerDecoderBlock"
    num_heads = check_positive_int("num_heads", num_heads)
    mlp_features = check_positive_int("mlp_features", mlp_features)
    dropout_rate = check_rate("dropout_rate", dropout_rate)
    attention_dropout_rate = check_rate("attention_dropout_rate", attention_dropout_rate)
    dense = {
        "use_bias": use_bias,
        "w_init": w_init,
        "b_init": b_init,
        "param_dtype": param_dtype,
        "dtype": dtype,
    }

    def attention(part: str, is_causal: bool) -> Layer:
        return MultiHeadAttention(
            num_heads,
            qkv_features=qkv_features,
            causal=is_causal,
            dropout_rate=attention_dropout_rate,
            name=part,
            **dense,
        )

    def norm(part: str) -> Layer:
        return LayerNorm(epsilon=epsilon, param_dtype=param_dtype, dtype=dtype, name=part)

    def dropout(part: str) -> Layer:
        return Dropout(dropout_rate, name=part)

    def forward(call, inputs, *, train, mask):
        if not isinstance(inputs, (tuple, list)) or len(inputs) not in (2, 3):
            got = (
                f"a {type(inputs).__name__} of {len(inputs)} entries"
                if isinstance(inputs, (tuple, list))
                else f"a single input of shape {jnp.shape(inputs)}"
            )
            raise ValueError(f"{kind} takes (x, memory) or (x, memory, memory_mask), got {got}")
        x, memory, *memory_mask = inputs  # memory_mask: [] or [mask]
        attended = call("self_attention", call("self_attention_norm", x))  # (*batch, T, D)
        h = _residual(x, call("self_attention_out_dropout", attended))
        context = call("cross_attention", (call("cross_attention_norm", h), memory, *memory_mask))
        h = _residual(h, call("cross_attention_out_dropout", context))  # (*batch, T, D)
        return _mlp(call, h)

    def build(width: int) -> Layer:
        children = {
            "self_attention_norm": norm("self_attention_norm"),
            "self_attention": attention("self_attention", causal),
            "self_attention_out_dropout": dropout("self_attention_out_dropout"),
            "cross_attention_norm": norm("cross_attention_norm"),
            "cross_attention": attention("cross_attention", False),
            "cross_attention_out_dropout": dropout("cross_attention_out_dropout"),
            "mlp_norm": norm("mlp_norm"),
            **_mlp_children(mlp_features, width, dropout_rate, dense),
        }
        return composite(children, forward, kind=kind)

    layer = built_for_width(kind, build)

    def init(key: jax.Array, input_shape: Any):
        if not (
            isinstance(input_shape, (tuple, list))
            and len(input_shape) in (2, 3)
            and isinstance(input_shape[0], (tuple, list))
        ):
            raise ValueError(
                f"{kind} takes input_shape ((T, D), (S, D_m)) or ((T, D), (S, D_m), mask_shape) "
                f"for (x, memory) or (x, memory, memory_mask), got {input_shape!r}"
            )
        split_attention_shape(kind, input_shape)
        return layer.init(key, input_shape)

    return Layer(init, layer.apply)
