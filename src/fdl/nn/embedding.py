r"""Token embeddings and positional encodings: from integer ids to vectors that know their place.

An :func:`Embedding` maps each id of a sequence ``(T,)`` to a learned row of a table, giving
``(T, D)``. Attention is blind to order (it is equivariant under permuting the positions), so a
positional encoding is added next: fixed sinusoids (:func:`SinusoidalPositionalEncoding`,
Vaswani et al., 2017) or a learned table (:func:`LearnedPositionalEncoding`).

Masks. Each layer here acts on every position alone, so it takes the padding mask keyword of
the layer contract (``apply(..., mask=mask)``, bool ``(*batch, T)``, :mod:`fdl.nn.masking`) and
ignores it: in ``Serial(Embedding(...), SinusoidalPositionalEncoding(),
TransformerEncoderBlock(...))`` the combinator hands the mask to every layer and the attention
uses it. Inputs and outputs are plain arrays.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fdl import _dtypes, initializers
from fdl._checks import check_positive_int, check_shape, is_real_number
from fdl.nn.layer import Layer, layer_factory
from fdl.nn.masking import check_sequence_input, sequence_shape

__all__ = ["Embedding", "SinusoidalPositionalEncoding", "LearnedPositionalEncoding"]


# --------------------------------------------------------------------------------------------
# Embedding.


@layer_factory
def Embedding(
    num_embeddings: int,
    features: int,
    *,
    embedding_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""A lookup table: id :math:`i` becomes row :math:`E_i` of a learned matrix.

    .. math::

        y_{\ldots t} = E_{\mathrm{ids}_{\ldots t}}, \qquad
        \frac{\partial L}{\partial E_v} = \sum_{(\ldots, t)\,:\,\mathrm{ids}_{\ldots t} = v}
            \frac{\partial L}{\partial y_{\ldots t}}

    It equals ``one_hot(ids) @ E``; the gradient is a scatter-add of the output cotangents into
    the rows that were looked up (rows never looked up get zero).

    Shapes: ``ids`` is integer, ``(*batch, *ids_shape)`` (per example usually ``(T,)``), ``E`` is
    ``(V, D)`` and ``y`` is ``(*batch, *ids_shape, D)``.

    Out-of-range ids (outside ``[0, V)``, negative ones included: they do **not** wrap around as
    in NumPy) raise a ``ValueError`` when ``ids`` is concrete (an eager call). Under ``jit`` or
    ``vmap`` no error is possible; the row is then NaN in every feature (so the mistake shows in
    the loss) and receives no gradient.

    Args:
      num_embeddings: :math:`V`, the vocabulary size.
      features: :math:`D`, the embedding width.
      embedding_init: initializer of ``E``; default :math:`\mathcal{N}(0, 1)` (as PyTorch).
      param_dtype: dtype of the stored table.
      dtype: dtype of the output; ``None`` keeps ``param_dtype``.
      name: its name in a parent's paths (automatic ``embedding_<i>`` if ``None``).

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"embedding": (V, D)}``; it ignores the padding
      mask (each id is looked up alone).

    Raises:
      ValueError: ``num_embeddings`` or ``features`` not a positive int (construction); float
        ids, or (eagerly) an id outside ``[0, V)``.

    Differs from PyTorch / Flax: ``torch.nn.Embedding`` also draws :math:`\mathcal{N}(0, 1)`;
    ``flax.linen.Embed`` draws with variance :math:`1/D`. No ``padding_idx`` (a row kept at zero
    with no gradient): pass a mask instead.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn import Embedding
    >>> layer = Embedding(5, 3)
    >>> params, state, shape = layer.init(jax.random.key(0), (4,))
    >>> shape, params["embedding"].shape
    ((4, 3), (5, 3))
    >>> y, _ = layer.apply(params, state, jnp.array([0, 4, 4, 1]))
    >>> bool((y[1] == params["embedding"][4]).all())
    True
    """
    num_embeddings = check_positive_int("num_embeddings", num_embeddings)
    features = check_positive_int("features", features)
    embedding_init = initializers.normal(stddev=1.0) if embedding_init is None else embedding_init

    def init(key: jax.Array, input_shape: Any) -> tuple[dict, dict, Any]:
        shape = check_shape("input_shape", input_shape)
        params = {"embedding": embedding_init(key, (num_embeddings, features), param_dtype)}
        return params, {}, shape + (features,)

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del key, train, mask  # deterministic, id by id
        ids = jnp.asarray(x)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise ValueError(f"Embedding expects integer ids, got dtype {ids.dtype}")
        table = params["embedding"]  # (V, D)
        if not isinstance(ids, jax.core.Tracer):
            _check_ids_in_range(np.asarray(ids), table.shape[0])
        valid = (ids >= 0) & (ids < table.shape[0])  # (*batch, T)
        safe = jnp.where(valid, ids, jnp.zeros_like(ids))
        rows = jnp.take(table, safe, axis=0)  # (*batch, T, D)
        out_dtype = table.dtype if dtype is None else dtype
        rows = rows.astype(out_dtype)
        nan = jnp.full(rows.shape, jnp.nan, out_dtype)
        y = jnp.where(jnp.broadcast_to(valid[..., None], rows.shape), rows, nan)  # (*batch, T, D)
        return y, state

    return Layer(init, apply)


def _check_ids_in_range(ids: np.ndarray, size: int) -> None:
    bad = (ids < 0) | (ids >= size)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"Embedding: ids must be in [0, {size}) (num_embeddings={size}), got id "
            f"{int(ids[first])} at index {first}"
        )


# --------------------------------------------------------------------------------------------
# Positional encodings.


def sinusoidal_table(length: int, features: int, base: float = 10000.0) -> np.ndarray:
    r"""The ``(length, features)`` table of sinusoidal positional encodings, in float64.

    .. math::

        \mathrm{PE}_{t,\,2i} = \sin\!\left(t / \mathrm{base}^{2i/D}\right), \qquad
        \mathrm{PE}_{t,\,2i+1} = \cos\!\left(t / \mathrm{base}^{2i/D}\right)

    for positions :math:`t = 0, \ldots, T-1` and :math:`D` = ``features``; an odd :math:`D` ends
    with a sine column.
    """
    positions = np.arange(length, dtype=np.float64)[:, None]  # (T, 1)
    even = np.arange(0, features, 2, dtype=np.float64)[None, :]  # (1, ceil(D/2)): 2i
    angles = positions / np.power(base, even / features)  # (T, ceil(D/2))
    table = np.empty((length, features), np.float64)  # (T, D)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : features // 2])
    return table


@layer_factory
def SinusoidalPositionalEncoding(
    *, max_length: int | None = None, base: float = 10000.0, name: str | None = None
) -> Layer:
    r"""Add fixed sinusoids of the position to a sequence (Vaswani et al., 2017, section 3.5).

    .. math::

        y_{\ldots t d} = x_{\ldots t d} + \mathrm{PE}_{t d}, \qquad
        \mathrm{PE}_{t,\,2i} = \sin\!\left(\frac{t}{\mathrm{base}^{2i/D}}\right), \qquad
        \mathrm{PE}_{t,\,2i+1} = \cos\!\left(\frac{t}{\mathrm{base}^{2i/D}}\right)

    Each pair of features is a rotation at its own frequency, so :math:`\mathrm{PE}_{t+k}` is a
    fixed linear map of :math:`\mathrm{PE}_t` for every offset :math:`k`. Positions start at 0.
    The table is computed in float64 on the host at trace time (the shapes are static) and cast
    to the input's dtype; the layer has no parameters.

    Shapes: ``x`` is ``(*batch, T, D)`` and so is ``y``.

    Args:
      max_length: if given, longer sequences are an error (else any ``T`` works).
      base: the wavelength scale, 10000 in the paper.
      name: its name in a parent's paths.

    Returns:
      A parameter-free :class:`~fdl.nn.Layer`; it ignores the padding mask (padded positions
      get their sinusoids too, and attention then ignores them).

    Raises:
      ValueError: a bad ``max_length`` or ``base`` (construction); an input not ``(..., T, D)``,
        not floating, or longer than ``max_length``.

    Differs from PyTorch / Flax: neither ships this as a layer (PyTorch's tutorial and Flax's
    examples write it by hand, with the same interleaved sin/cos layout); no scaling of ``x`` by
    :math:`\sqrt{D}` is applied (the paper scales the embeddings: do it in the embedding's init).

    >>> import jax.numpy as jnp
    >>> from fdl.nn import SinusoidalPositionalEncoding
    >>> y, _ = SinusoidalPositionalEncoding().apply({}, {}, jnp.zeros((3, 2)))
    >>> [[round(v, 4) for v in row] for row in y.tolist()]
    [[0.0, 1.0], [0.8415, 0.5403], [0.9093, -0.4161]]
    """
    if max_length is not None:
        max_length = check_positive_int("max_length", max_length)
    if not is_real_number(base) or not base > 1.0:
        raise ValueError(f"`base` must be a number > 1, got {base!r}")
    kind = "SinusoidalPositionalEncoding"

    def init(key: jax.Array, input_shape: Any):
        del key
        shape = sequence_shape(kind, input_shape)
        _check_length(kind, shape[0], max_length)
        return {}, {}, shape

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del params, key, train, mask  # deterministic, position by position
        x = check_sequence_input(kind, x)
        length, features = x.shape[-2:]
        _check_length(kind, length, max_length)
        table = jnp.asarray(sinusoidal_table(length, features, float(base)), x.dtype)  # (T, D)
        return x + jnp.broadcast_to(table, x.shape), state

    return Layer(init, apply)


def _check_length(kind: str, length: int, max_length: int | None) -> None:
    if max_length is not None and length > max_length:
        raise ValueError(f"{kind}: sequences may have at most max_length={max_length} steps, got T={length}")


@layer_factory
def LearnedPositionalEncoding(
    max_length: int,
    *,
    embedding_init: initializers.Initializer | None = None,
    param_dtype: Any = jnp.float32,
    dtype: Any = None,
    name: str | None = None,
) -> Layer:
    r"""Add a learned vector per position: :math:`y_{\ldots t d} = x_{\ldots t d} + P_{t d}`.

    .. math::

        y_{\ldots t d} = x_{\ldots t d} + P_{t d}, \qquad
        \frac{\partial L}{\partial P_{t d}} = \sum_{\ldots} \frac{\partial L}{\partial y_{\ldots t d}}

    A sequence of length :math:`T \le` ``max_length`` uses the first :math:`T` rows of
    :math:`P`; the rows beyond get zero gradient. Used by BERT and GPT-2.

    Shapes: ``x`` is ``(*batch, T, D)``, ``P`` is ``(max_length, D)``, ``y`` is ``(*batch, T, D)``.

    Args:
      max_length: the number of rows of :math:`P` (the longest sequence accepted).
      embedding_init: initializer of :math:`P`; default :math:`\mathcal{N}(0, 0.02^2)` (as BERT
        and GPT-2).
      param_dtype: dtype of the stored table.
      dtype: dtype of the computation; ``None`` promotes the input's and the table's dtypes.
      name: its name in a parent's paths.

    Returns:
      A :class:`~fdl.nn.Layer` with ``params = {"embedding": (max_length, D)}``; it ignores the
      padding mask.

    Raises:
      ValueError: ``max_length`` not a positive int (construction); an input not
        ``(..., T, D)`` with ``D`` the table's width, or ``T > max_length``.

    Differs from PyTorch: the equivalent is an ``nn.Embedding(max_length, D)`` looked up at
    ``arange(T)`` by hand; its default init is :math:`\mathcal{N}(0, 1)`.

    >>> import jax, jax.numpy as jnp, fdl
    >>> from fdl.nn import LearnedPositionalEncoding
    >>> layer = LearnedPositionalEncoding(8)
    >>> params, state, shape = layer.init(jax.random.key(0), (5, 4))
    >>> params["embedding"].shape, shape
    ((8, 4), (5, 4))
    """
    max_length = check_positive_int("max_length", max_length)
    embedding_init = initializers.normal(stddev=0.02) if embedding_init is None else embedding_init
    kind = "LearnedPositionalEncoding"

    def init(key: jax.Array, input_shape: Any):
        shape = sequence_shape(kind, input_shape)
        _check_length(kind, shape[0], max_length)
        params = {"embedding": embedding_init(key, (max_length, shape[1]), param_dtype)}
        return params, {}, shape

    def apply(params: dict, state: Any, x: Any, *, key: Any = None, train: bool = False, mask: Any = None):
        del key, train, mask  # deterministic, position by position
        table = params["embedding"]  # (max_length, D)
        x = check_sequence_input(kind, x)
        if x.shape[-1] != table.shape[1]:
            raise ValueError(
                f"{kind} expects inputs of shape (..., T, {table.shape[1]}), got shape {x.shape}"
            )
        length = x.shape[-2]
        _check_length(kind, length, max_length)
        compute = dtype if dtype is not None else _dtypes.promote_types(x.dtype, table.dtype)
        rows = table[:length].astype(compute)  # (T, D)
        return x.astype(compute) + jnp.broadcast_to(rows, x.shape), state

    return Layer(init, apply)
