r"""Microbatching: evaluate a function on a large batch as a sequential loop over smaller
microbatches, and combine the microbatch results (sum, mean, running mean or concatenation).

When ``fun(batch)`` needs more memory than the device has, split the batch of :math:`B` rows
into :math:`K = B / b` microbatches of :math:`b` rows and combine :math:`y_j = f(x^{(j)})`:

.. math::

    \text{SUM: } \sum_{j<K} y_j, \qquad \text{MEAN: } \frac1K \sum_{j<K} y_j, \qquad
    \text{CONCAT: } [y_0; \dots; y_{K-1}] \text{ in the batch's row order}

A gradient of a loss summed (or averaged) over examples is then exactly the big-batch
gradient, at the memory cost of one microbatch. The loop is a ``lax.fori_loop``, so it runs in
sequence under ``jit``. The twin of ``optax.microbatch`` (``optax.microbatching``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fdl._checks import as_concrete_number, check_real, names_errors

__all__ = ["Accumulator", "AccumulationType", "microbatch", "reshape_batch_axis"]

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Accumulator:
    """How to combine the microbatch results :math:`y_0, \\dots, y_{K-1}` of one leaf (or of
    a tree, once lifted):

    .. code-block:: python

        carry = init(shape_dtype_of_y0)
        for j in range(K):
            carry = update(carry, y[j], j)
        result = finalize(carry)

    ``aggregate`` reduces results stacked along axis 0 at once (optax's ``micro_vmap`` uses
    it). The fields and their order are optax's.
    """

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], Any]
    finalize: Callable[[Any], Any]
    aggregate: Callable[[Any], Any]


class AccumulationType(enum.Enum):
    """The built-in ways to combine the microbatch results, as optax names them."""

    MEAN = enum.auto()
    """:math:`\\frac1K \\sum_j y_j` over all :math:`K` microbatches (floating leaves only)."""
    SUM = enum.auto()
    """:math:`\\sum_j y_j`."""
    RUNNING_MEAN = enum.auto()
    """The mean over the microbatches actually run (``num_real_microbatches``)."""
    CONCAT = enum.auto()
    """The results concatenated along axis 0, in the batch's original row order."""


def _on_leaves(acc: Accumulator) -> Accumulator:
    """``acc`` (on arrays) applied leaf by leaf to trees."""
    return Accumulator(
        init=lambda values: jax.tree.map(acc.init, values),
        update=lambda carry, values, j: jax.tree.map(lambda c, v: acc.update(c, v, j), carry, values),
        finalize=lambda carry: jax.tree.map(acc.finalize, carry),
        aggregate=lambda values: jax.tree.map(acc.aggregate, values),
    )


def _zeros(shaped: Any, need_float: bool) -> jax.Array:
    if need_float and not jnp.issubdtype(shaped.dtype, jnp.floating):
        raise ValueError(
            "microbatch: the MEAN and RUNNING_MEAN accumulators need floating-point results, "
            f"got a {shaped.dtype} result of shape {shaped.shape}"
        )
    return jnp.zeros(shaped.shape, shaped.dtype)


def _summing() -> Accumulator:
    return _on_leaves(
        Accumulator(
            init=lambda y: _zeros(y, False),
            update=lambda carry, y, _: carry + y,
            finalize=lambda carry: carry,
            aggregate=lambda ys: jnp.sum(ys, axis=0),
        )
    )


def _averaging(k: int) -> Accumulator:
    return _on_leaves(
        Accumulator(
            init=lambda y: _zeros(y, True),
            update=lambda carry, y, _: carry + y,
            finalize=lambda carry: carry / k,
            aggregate=lambda ys: jnp.mean(ys, axis=0),
        )
    )


def _running_averaging() -> Accumulator:
    def update(carry: jax.Array, y: jax.Array, j: jax.Array) -> jax.Array:
        # after j + 1 results: mean_j = mean_{j-1} * j / (j + 1) + y_j / (j + 1)
        kept = jnp.asarray(j / (j + 1), carry.dtype)
        return carry * kept + y * (1 - kept)

    return _on_leaves(
        Accumulator(
            init=lambda y: _zeros(y, True),
            update=update,
            finalize=lambda carry: carry,
            aggregate=lambda ys: jnp.mean(ys, axis=0),
        )
    )


def _concatenating(k: int) -> Accumulator:
    def finalize(carry: jax.Array) -> jax.Array:
        # (K, b, ...) -> (K * b, ...): row r of microbatch j was row j + K * r of the batch
        return carry.reshape(-1, *carry.shape[2:], order="F")

    return _on_leaves(
        Accumulator(
            init=lambda y: jnp.zeros((k, *y.shape), y.dtype),
            update=lambda carry, y, j: carry.at[j].set(y),
            finalize=finalize,
            aggregate=lambda ys: ys,
        )
    )


def _accumulator(spec: Any, k: int) -> Accumulator:
    """One tree accumulator from ``spec``: an :class:`Accumulator`, an
    :class:`AccumulationType`, or a tree (a prefix of the results' tree) of them."""

    def one(leaf: Any) -> Accumulator:
        if isinstance(leaf, Accumulator):
            return leaf
        if leaf is AccumulationType.SUM:
            return _summing()
        if leaf is AccumulationType.MEAN:
            return _averaging(k)
        if leaf is AccumulationType.RUNNING_MEAN:
            return _running_averaging()
        if leaf is AccumulationType.CONCAT:
            return _concatenating(k)
        raise ValueError(
            "`accumulator` must be an Accumulator, an AccumulationType (MEAN, SUM, RUNNING_MEAN, "
            f"CONCAT) or a tree of them, got a leaf {leaf!r}"
        )

    accs = jax.tree.map(one, spec)
    return Accumulator(
        init=lambda ys: jax.tree.map(lambda a, y: a.init(y), accs, ys),
        update=lambda carry, ys, j: jax.tree.map(lambda a, c, y: a.update(c, y, j), accs, carry, ys),
        finalize=lambda carry: jax.tree.map(lambda a, c: a.finalize(c), accs, carry),
        aggregate=lambda ys: jax.tree.map(lambda a, y: a.aggregate(y), accs, ys),
    )


def reshape_batch_axis(tree: PyTree, microbatch_size: int, axis: int = 0) -> PyTree:
    """Split the batch axis ``axis`` of every leaf into ``(K, microbatch_size)`` in
    column-major order: entry ``[j, r]`` is row ``j + K * r``, so microbatch :math:`j` takes
    the rows :math:`j, j + K, j + 2K, \\dots` (a strided split, which keeps a sharding of the
    batch axis on the ``microbatch_size`` axis).

    Args:
      tree: a tree of arrays, each with a batch axis ``axis`` whose size ``microbatch_size``
        divides.
      microbatch_size: :math:`b`, the rows per microbatch.
      axis: the batch axis.

    Returns:
      The tree, each leaf of shape ``shape[:axis] + (K, b) + shape[axis + 1:]``.

    >>> import jax.numpy as jnp
    >>> reshape_batch_axis(jnp.arange(6), 2).tolist()
    [[0, 3], [1, 4], [2, 5]]

    Differs from optax:
      Explicitly sharded arrays (JAX's ``out_sharding``) are not handled.
    """

    def split(x: jax.Array) -> jax.Array:
        return x.reshape((*x.shape[:axis], -1, microbatch_size, *x.shape[axis + 1 :]), order="F")

    return jax.tree.map(split, tree)


def _tuple_of(name: str, value: Any, kind: type) -> tuple:
    items = (value,) if isinstance(value, kind) else tuple(value)
    for item in items:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise TypeError(f"`{name}` must be a {kind.__name__} or a sequence of them, got {value!r}")
    return items


@names_errors("microbatch")
def microbatch(
    fun: Callable[..., Any],
    argnums: int | Sequence[int],
    microbatch_size: int | None,
    accumulator: Accumulator | AccumulationType | Any = AccumulationType.SUM,
    *,
    argnames: str | Sequence[str] = (),
    in_axes: int | Sequence[int] = 0,
    num_real_microbatches: int | jax.Array | None = None,
) -> Callable[..., Any]:
    r"""``fun`` evaluated on microbatches of its batch arguments in a sequential loop, the
    results combined by ``accumulator``.

    The batch arguments (positions ``argnums``, keywords ``argnames``) share a batch size
    :math:`B` along their axes ``in_axes``; with :math:`b =` ``microbatch_size`` and
    :math:`K = B / b`, microbatch :math:`j` holds the rows :math:`j, j + K, \dots, j + (b-1)K`
    (:func:`reshape_batch_axis`) and the other arguments pass unchanged. With
    :math:`y_j = f(x^{(j)})` the combinations are

    .. math::

        \text{SUM } \sum_{j<J} y_j, \quad \text{MEAN } \frac1K \sum_{j<J} y_j, \quad
        \text{RUNNING\_MEAN } m_j = \frac{j}{j+1} m_{j-1} + \frac{1}{j+1} y_j, \quad
        \text{CONCAT } [y_0; \dots; y_{K-1}]

    over the first :math:`J =` ``num_real_microbatches`` microbatches (all :math:`K` by
    default); CONCAT puts the rows back in the batch's order (its results' batch axis is 0).

    Args:
      fun: any function of arrays.
      argnums: the position(s) of the arguments with a batch axis.
      microbatch_size: :math:`b`, rows per microbatch, a whole number ``>= 1`` dividing
        :math:`B`; ``None`` returns ``fun`` itself.
      accumulator: an :class:`AccumulationType`, an :class:`Accumulator`, or a tree of them
        that is a prefix of ``fun``'s output tree (one per sub-tree).
      argnames: the keyword(s) of the arguments with a batch axis.
      in_axes: the batch axis (``>= 0``) of every batch argument, or one per argument in the
        order ``argnums + argnames``.
      num_real_microbatches: :math:`J`, stop after this many microbatches (a traced value
        lets the batch size vary without recompiling); ``None`` runs all :math:`K`.

    Returns:
      A function with ``fun``'s signature returning the combined results.

    Raises:
      ValueError: ``microbatch_size`` not a whole number ``>= 1``; ``in_axes`` of the wrong
        length or negative; a negative ``num_real_microbatches``. When called: batch
        arguments without leaves, batch sizes that differ, a batch size ``microbatch_size``
        does not divide, more ``num_real_microbatches`` than microbatches, an unknown
        accumulator, MEAN or RUNNING_MEAN of a non-floating result.
      TypeError: ``argnums``/``in_axes`` not integers, ``argnames`` not strings, a
        non-numeric ``microbatch_size`` or ``num_real_microbatches``.

    >>> import jax.numpy as jnp
    >>> f = lambda x: (x + 1, jnp.sum(3 * x))
    >>> both = (AccumulationType.CONCAT, AccumulationType.SUM)
    >>> rows, total = microbatch(f, argnums=0, microbatch_size=2, accumulator=both)(jnp.arange(4))
    >>> rows.tolist(), int(total)
    ([1, 2, 3, 4], 18)

    Differs from optax:
      Arguments are checked when ``microbatch`` is called and messages name them (optax
      divides by a zero ``microbatch_size``, indexes past the batch for too many
      ``num_real_microbatches``, and misplaces a negative ``in_axes``); RUNNING_MEAN keeps
      the results' dtype (optax's carry turns bfloat16 into float32 and the loop fails).
      Explicitly sharded arrays are not handled.
    """
    if microbatch_size is None:
        return fun
    check_real("microbatch_size", microbatch_size)
    size = as_concrete_number(microbatch_size)
    if size is None or size != int(size) or size < 1:
        raise ValueError(f"`microbatch_size` must be a whole number >= 1 or None, got {microbatch_size!r}")
    size = int(size)
    argnums = _tuple_of("argnums", argnums, int)
    argnames = _tuple_of("argnames", argnames, str)
    axes = _tuple_of("in_axes", in_axes, int)
    if isinstance(in_axes, int):
        axes = axes * (len(argnums) + len(argnames))
    if len(axes) != len(argnums) + len(argnames) or any(a < 0 for a in axes):
        raise ValueError(
            "`in_axes` must be one axis >= 0, or one per batch argument (argnums + argnames: "
            f"{len(argnums) + len(argnames)}), got {in_axes!r}"
        )
    if num_real_microbatches is not None:
        check_real("num_real_microbatches", num_real_microbatches)
        real = as_concrete_number(num_real_microbatches)
        if real is not None and (real != int(real) or real < 0):
            raise ValueError(
                f"`num_real_microbatches` must be a whole number >= 0 or None, got {num_real_microbatches!r}"
            )
    _accumulator(accumulator, 1)  # an unknown accumulator is refused here, not when called
    positions = list(zip(argnums, axes[: len(argnums)], strict=True))
    keywords = list(zip(argnames, axes[len(argnums) :], strict=True))

    def microbatched(*args: Any, **kwargs: Any) -> Any:
        batch = [(args[i], a) for i, a in positions] + [(kwargs[n], a) for n, a in keywords]
        sizes = [leaf.shape[a] for tree, a in batch for leaf in jax.tree.leaves(tree)]
        if not sizes:
            raise ValueError("microbatch: the batch arguments (argnums, argnames) hold no arrays")
        if len(set(sizes)) > 1:
            raise ValueError(f"microbatch: the batch arguments' batch axes differ in size: {sizes}")
        if sizes[0] % size:
            raise ValueError(
                f"microbatch: the batch size {sizes[0]} is not divisible by microbatch_size={size}"
            )
        k = sizes[0] // size
        real = None if num_real_microbatches is None else as_concrete_number(num_real_microbatches)
        if real is not None and real > k:
            raise ValueError(
                f"microbatch: num_real_microbatches={num_real_microbatches!r} exceeds the "
                f"{k} microbatches of a batch of {sizes[0]}"
            )
        split_args = list(args)
        split_kwargs = dict(kwargs)
        for i, a in positions:
            split_args[i] = reshape_batch_axis(args[i], size, a)
        for n, a in keywords:
            split_kwargs[n] = reshape_batch_axis(kwargs[n], size, a)
        acc = _accumulator(accumulator, k)

        def on_microbatch(j: Any) -> Any:
            call_args, call_kwargs = list(split_args), dict(split_kwargs)
            for i, a in positions:
                call_args[i] = jax.tree.map(lambda x, a=a: jnp.take(x, j, axis=a), split_args[i])
            for n, a in keywords:
                call_kwargs[n] = jax.tree.map(lambda x, a=a: jnp.take(x, j, axis=a), split_kwargs[n])
            return fun(*call_args, **call_kwargs)

        def step(j: Any, carry: Any) -> Any:
            return acc.update(carry, on_microbatch(j), j)

        carry = acc.init(jax.eval_shape(on_microbatch, 0))
        stop = k if num_real_microbatches is None else num_real_microbatches
        return acc.finalize(jax.lax.fori_loop(0, stop, step, carry))

    return microbatched
