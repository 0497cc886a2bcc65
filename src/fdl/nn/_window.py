r"""Window geometry shared by convolutions, transposed convolutions and pooling (a kernel module).

Static argument handling (ints or one int per spatial axis, padding), the meaning of ``"SAME"``
and ``"VALID"``, output sizes, and the shape checks of channels-last inputs ``(*batch, *spatial,
C)``. Every message starts with the layer's kind (``where``); a parent composite prefixes the
layer's path.

Padding: ``"VALID"`` (none), ``"SAME"`` (the output has :math:`\lceil n / s \rceil` positions;
the odd unit of padding goes at the end, as in XLA and TensorFlow), a non-negative int (that much
at both ends of every spatial axis), or one ``(low, high)`` pair of non-negative ints per spatial
axis.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fdl._checks import check_shape

Shape = tuple[int, ...]
Pads = tuple[tuple[int, int], ...]

DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}
LAYOUT = {1: ("T",), 2: ("H", "W")}


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def int_tuple(arg: str, value: Any, ndim: int, *, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int, or a sequence of ``ndim`` ints) as a tuple of ``ndim`` ints >= minimum."""
    items: Any = (value,) * ndim if is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        items = None
    if items is None or len(items) != ndim or not all(is_int(v) and v >= minimum for v in items):
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"`{arg}` must be a {what} int or a tuple of {ndim} {what} ints, got {value!r}")
    return tuple(int(v) for v in items)


def padding_arg(value: Any, ndim: int) -> str | Pads:
    """``"SAME"``, ``"VALID"``, or explicit ``(low, high)`` pairs, one per spatial axis."""
    message = (
        f"`padding` must be 'SAME', 'VALID', a non-negative int or a sequence of {ndim} "
        f"(low, high) pairs of non-negative ints, got {value!r}"
    )
    if isinstance(value, str):
        if value not in ("SAME", "VALID"):
            raise ValueError(message)
        return value
    if is_int(value):
        if value < 0:
            raise ValueError(message)
        return ((int(value), int(value)),) * ndim
    try:
        pairs = tuple(tuple(pair) for pair in value)
    except TypeError:
        raise ValueError(message) from None
    if len(pairs) != ndim or not all(
        len(pair) == 2 and all(is_int(v) and v >= 0 for v in pair) for pair in pairs
    ):
        raise ValueError(message)
    return tuple((int(lo), int(hi)) for lo, hi in pairs)


def same_pads(size: int, span: int, stride: int) -> tuple[int, int]:
    """XLA's ``"SAME"``: ``ceil(size / stride)`` outputs, the odd unit of padding at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def explicit_pads(padding: str | Pads, spatial: Shape, spans: Shape, strides: Shape) -> Pads:
    """The ``(low, high)`` pairs that ``padding`` means for inputs of spatial shape ``spatial``."""
    if padding == "VALID":
        return ((0, 0),) * len(spatial)
    if padding == "SAME":
        return tuple(same_pads(n, k, s) for n, k, s in zip(spatial, spans, strides, strict=True))
    return padding  # type: ignore[return-value]


def output_spatial(
    where: str, spatial: Shape, pads: Pads, spans: Shape, strides: Shape, window: str
) -> Shape:
    r"""Output sizes :math:`\lfloor (n + lo + hi - span) / s \rfloor + 1`; raise if one is empty."""
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pads, strict=True))
    if any(p < k for p, k in zip(padded, spans, strict=True)):
        raise ValueError(
            f"{where}: the {window} spans {spans}, more than the padded input {padded} "
            f"(spatial shape {spatial}, padding {pads}), so the output would be empty"
        )
    return tuple((p - k) // s + 1 for p, k, s in zip(padded, spans, strides, strict=True))


def spans(window: Shape, dilation: Shape) -> Shape:
    """The extent of a dilated window: :math:`d (k - 1) + 1`."""
    return tuple(d * (k - 1) + 1 for k, d in zip(window, dilation, strict=True))


def layout(ndim: int, channels: Any = "C") -> str:
    """``"(..., H, W, C)"``, with the channel count if known."""
    return "(..., " + ", ".join((*LAYOUT[ndim], str(channels))) + ")"


def check_example_shape(where: str, input_shape: Any, ndim: int) -> Shape:
    """The per-example ``input_shape``, which must be exactly ``(*spatial, C)``."""
    shape = check_shape("input_shape", input_shape)
    if len(shape) != ndim + 1:
        example = "(" + ", ".join((*LAYOUT[ndim], "C")) + ")"
        raise ValueError(f"{where} expects a per-example input_shape {example}, got {shape}")
    return shape


def check_input(where: str, x: jax.Array, ndim: int, channels: int | None) -> None:
    """``x`` must be ``(*batch, *spatial, C)``, with ``C == channels`` unless that is None."""
    if x.ndim < ndim + 1:
        raise ValueError(f"{where} expects inputs of shape {layout(ndim)}, got shape {x.shape}")
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(f"{where} expects inputs of shape {layout(ndim, channels)}, got shape {x.shape}")


def add_bias(y: jax.Array, params: dict, use_bias: bool) -> jax.Array:
    """``y + b`` along the last axis when the layer has a bias."""
    if not use_bias:
        return y
    return y + jnp.broadcast_to(params["b"].astype(y.dtype), y.shape)
