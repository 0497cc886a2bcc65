"""A model's summary: per part, its layer, output shape, parameter count and dtype; FLOPs.

Nothing is computed to make it: the shapes come from ``jax.eval_shape`` of ``init``, and the
FLOPs of one example from XLA's cost analysis of the compiled ``apply`` (an estimate of the
multiply-adds XLA will run, counted as 2 FLOPs each).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fdl._checks import check_instance
from fdl.nn._children import abstract_input, recording_init
from fdl.nn.layer import Layer

__all__ = ["summary", "Summary", "SummaryRow", "flops_per_example"]


class SummaryRow(NamedTuple):
    """One part of a model: its path, layer kind, output shape, parameter count and dtypes."""

    path: str
    layer: str
    output_shape: Any
    params: int
    dtypes: tuple[str, ...]


class Summary(NamedTuple):
    """What :func:`summary` returns; ``str()`` prints it as a table."""

    rows: tuple[SummaryRow, ...]
    total_params: int
    flops: float | None

    def __str__(self) -> str:
        header = ("path", "layer", "output shape", "params", "dtype")
        lines = [
            (r.path, r.layer, _shape_text(r.output_shape), f"{r.params:,}", ",".join(r.dtypes) or "-")
            for r in self.rows
        ]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        fmt = "  ".join(f"{{:{'>' if i == 3 else '<'}{w}}}" for i, w in enumerate(widths))
        out = [fmt.format(*header), "  ".join("-" * w for w in widths)]
        out += [fmt.format(*line) for line in lines]
        out.append(f"total parameters: {self.total_params:,}")
        if self.flops is not None:
            out.append(f"FLOPs per example (XLA cost analysis): {self.flops:,.0f}")
        return "\n".join(out)


def _shape_text(shape: Any) -> str:
    return str(tuple(shape)) if all(isinstance(d, int) for d in shape) else str(shape)


def _count(tree: Any) -> tuple[int, tuple[str, ...]]:
    leaves = jax.tree.leaves(tree)
    dtypes = tuple(sorted({str(np.dtype(leaf.dtype)) for leaf in leaves}))
    return sum(math.prod(leaf.shape) for leaf in leaves), dtypes


def flops_per_example(
    model: Layer, params: Any, state: Any, input_shape: Any, dtype: Any = jnp.float32
) -> float | None:
    """XLA's FLOP count of ``model.apply`` (evaluation mode) on one example of ``input_shape``
    (a shape, or a tuple of shapes for a model of several inputs; ``dtype`` one dtype for all,
    or a tuple of them matching a tuple of shapes); ``None`` where the backend reports no cost
    analysis."""
    x = abstract_input(input_shape, dtype, batch=(1,))
    compiled = jax.jit(lambda p, s, xb: model.apply(p, s, xb)[0]).lower(params, state, x).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def summary(model: Layer, input_shape: Any, *, dtype: Any = jnp.float32, flops: bool = True) -> Summary:
    """Summarize ``model`` for per-example inputs of ``input_shape``.

    Rows list every part by path (parents before their children, the whole model first as
    ``""``) with its kind, output shape, parameter count (a composite's is the sum of its
    parts') and parameter dtypes. ``print(summary(...))`` shows the table.

    Args:
      model: the model.
      input_shape: the shape of one example, as for ``init`` (a tuple of shapes for a model of
        several inputs, such as cross-attention's ``((T_q, D_q), (T_k, D_kv))``).
      dtype: the input dtype for the FLOP count (int32 for token ids); for several inputs one
        dtype for all or a tuple of them (e.g. ``(jnp.float32, jnp.float32, jnp.bool_)`` when
        a key mask is the third input).
      flops: count the FLOPs of one example with XLA's cost analysis (compiles ``apply``).

    >>> import jax, fdl
    >>> model = fdl.nn.Serial(fdl.nn.Dense(3), fdl.nn.Relu(), fdl.nn.Dense(2, name="head"))
    >>> s = fdl.nn.summary(model, (4,))
    >>> [(r.path, r.params) for r in s.rows], s.total_params
    ([('', 23), ('dense_0', 15), ('relu_0', 0), ('head', 8)], 23)
    >>> s.flops >= 2 * (4 * 3 + 3 * 2)  # at least the two matmuls' multiply-adds
    True
    """
    check_instance("model", model, Layer, "fdl.nn.Layer", "summary")
    shapes: dict[str, Any] = {}

    def init(key: jax.Array) -> tuple[Any, Any]:
        params, state, shapes["out"] = model.init(key, input_shape)
        return params, state

    with recording_init() as records:
        params, _state = jax.eval_shape(init, jax.random.key(0))
    out_shape = shapes["out"]
    total, dtypes = _count(params)
    rows = [SummaryRow("", model.kind, out_shape, total, dtypes)]
    for path, layer, _, out, p, _ in records:
        count, kinds = _count(p)
        rows.append(SummaryRow(path, layer.kind, out, count, kinds))
    count_flops = None
    if flops:
        concrete = model.init(jax.random.key(0), input_shape)
        count_flops = flops_per_example(model, concrete[0], concrete[1], input_shape, dtype)
    return Summary(tuple(rows), total, count_flops)
