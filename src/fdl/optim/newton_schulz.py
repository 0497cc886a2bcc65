r"""Orthogonalization by a Newton-Schulz iteration, without an SVD (the core of Muon).

For a matrix :math:`G = U \Sigma V^\top`, the odd polynomial iteration

.. math::

    X_0 = G / (\lVert G \rVert_F + \epsilon), \qquad
    X_{k+1} = a X_k + \big(b A_k + c A_k^2\big) X_k, \quad A_k = X_k X_k^\top

acts on each singular value alone, :math:`\sigma \mapsto a\sigma + b\sigma^3 + c\sigma^5`,
and pushes every one of them towards 1, so :math:`X_k \to U V^\top`. :func:`fdl.optim.muon`
applies it to the momentum of each weight matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from fdl._checks import names_errors
from fdl._checks.hyper import is_traced

__all__ = ["MuonDimensionNumbers", "orthogonalize_via_newton_schulz"]

Scalar = float | jax.Array
NsCoeffs = tuple[float, float, float] | Sequence[tuple[float, float, float]] | str
Preconditioning = Literal["frobenius", "spectral", "aol", "schatten"]

PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
STANDARD_NS_COEFFS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
"""Jordan's quintic :math:`(a, b, c)`: the largest slope at 0 that still keeps every singular
value in about :math:`[0.7, 1.2]` after five steps."""
NS_COEFFS_PRESETS: dict[str, Any] = {
    "standard": STANDARD_NS_COEFFS,
    "dion": (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
}
"""Named Newton-Schulz coefficients: Jordan's quintic, and Dion's five per-step triples."""


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a weight form the matrix that is orthogonalized: the reduction (input)
    axes and the output axes, as in :math:`y = x W`; every other axis is a batch axis, each
    of its slices orthogonalized on its own."""

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


def is_dimension_numbers(x: Any) -> bool:
    """Whether ``x`` is a :class:`MuonDimensionNumbers` (fdl's or optax's: same fields)."""
    return isinstance(x, tuple) and getattr(x, "_fields", None) == MuonDimensionNumbers._fields


def _axes(x: jax.Array, dims: MuonDimensionNumbers) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The reduction and output axes of ``x`` as tuples of non-negative ints."""

    def as_tuple(axis: Sequence[int] | int) -> tuple[int, ...]:
        return tuple(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))

    return as_tuple(dims.reduction_axis), as_tuple(dims.output_axis)


def fans(x: jax.Array, dims: MuonDimensionNumbers) -> tuple[int, int]:
    reduction, output = _axes(x, dims)
    return math.prod(x.shape[a] for a in reduction), math.prod(x.shape[a] for a in output)


PRECONDITIONING_FLOOR = 1e-8
"""The floor of the 'aol' and 'schatten' rescalings (fixed, as in optax, whatever ``eps``)."""


def _newton_schulz_step(x: jax.Array, coeffs: jax.Array, first: bool, preconditioning: str) -> jax.Array:
    r"""One step :math:`X \mapsto a X + (b A + c A^2) X`, :math:`A = X X^H`; on the first step
    'aol' and 'schatten' rescale :math:`X` (and :math:`A`) first."""
    eps = PRECONDITIONING_FLOOR
    if first and preconditioning == "schatten":
        a = x @ x.T
        size = jnp.maximum(jnp.linalg.norm(a, ord="fro"), jnp.asarray(eps, a.real.dtype))
        s = jax.lax.rsqrt(size)[None, None]  # (1, 1)
        x, a = x * s, a * s**2
    else:
        a = x @ x.T.conj()  # (m, m)
        if first and preconditioning == "aol":
            rows = jnp.maximum(jnp.abs(a).sum(axis=-1), jnp.asarray(eps, a.real.dtype))
            s = jax.lax.rsqrt(rows)[:, None]  # (m, 1)
            x, a = x * s, a * s * s.T
    b = coeffs[1] * a + coeffs[2] * a @ a
    return coeffs[0] * x + b @ x


@names_errors("orthogonalize_via_newton_schulz")
def orthogonalize_via_newton_schulz(
    x: jax.Array,
    ns_coeffs: jax.Array,
    ns_steps: int = 5,
    preconditioning: Preconditioning = "frobenius",
    eps: Scalar = 1e-8,
    dimension_numbers: MuonDimensionNumbers | None = None,
) -> jax.Array:
    r"""Approximately orthogonalize ``x``: :math:`U \Sigma V^\top \mapsto U S V^\top`,
    :math:`S \approx I`.

    The matrix (the ``(fan_in, fan_out)`` reshape given by ``dimension_numbers``, each batch
    slice on its own; transposed to be wide) is scaled, then iterated:

    .. math::

        X_0 = \frac{X}{\lVert X \rVert + \text{eps}}, \qquad
        X_{k+1} = a_k X_k + \big(b_k X_k X_k^H + c_k (X_k X_k^H)^2\big) X_k

    where :math:`\lVert\cdot\rVert` is the Frobenius norm ('frobenius') or the spectral
    norm ('spectral'); 'aol' instead scales row :math:`i` by
    :math:`(\sum_j |A_{ij}|)^{-1/2}` and 'schatten' by :math:`\lVert A \rVert_F^{-1/2}`
    (:math:`A = X X^\top`) inside the first step. With ``ns_coeffs`` of shape ``(3,)`` the
    same :math:`(a, b, c)` serve ``ns_steps`` steps; with ``(n, 3)``, row :math:`k` serves
    step :math:`k` and ``ns_steps`` is ignored.

    Args:
      x: the array, a matrix unless ``dimension_numbers`` says which axes form one.
      ns_coeffs: the coefficients, ``(3,)`` or ``(n, 3)``.
      ns_steps: the number of steps for ``(3,)`` coefficients.
      preconditioning: 'frobenius', 'spectral', 'aol' or 'schatten'.
      eps: keeps the scaling finite at :math:`X = 0`.
      dimension_numbers: the reduction and output axes of a non-matrix ``x``.

    Returns:
      The orthogonalized array, shaped as ``x``.

    Raises:
      ValueError: ``x`` not a matrix and no ``dimension_numbers``; coefficients of another
        shape; an unknown ``preconditioning``; overlapping axes.

    >>> import jax.numpy as jnp
    >>> x = jnp.asarray([[3.0, 0.0], [0.0, 0.5]])
    >>> o = orthogonalize_via_newton_schulz(x, jnp.asarray([1.5, -0.5, 0.0]), ns_steps=30)
    >>> [round(v, 3) for v in o.ravel().tolist()]  # the cubic iteration converges to U V^T
    [1.0, 0.0, 0.0, 1.0]
    """
    if preconditioning not in PRECONDITIONINGS:
        raise ValueError(f"`preconditioning` must be one of {PRECONDITIONINGS}, got {preconditioning!r}")
    if x.ndim != 2 and not is_dimension_numbers(dimension_numbers):
        raise ValueError(
            f"`x` must be a matrix (m, n), or `dimension_numbers` must say which axes form one; "
            f"got shape {x.shape} and dimension_numbers={dimension_numbers!r}"
        )
    coeffs = jnp.asarray(ns_coeffs)
    if coeffs.ndim not in (1, 2) or coeffs.shape[-1] != 3:
        raise ValueError(f"`ns_coeffs` must have shape (3,) or (n, 3), got {coeffs.shape}")
    dims = MuonDimensionNumbers(0, 1) if x.ndim == 2 or dimension_numbers is None else dimension_numbers
    reduction, output = _axes(x, dims)
    if set(reduction) & set(output):
        raise ValueError(
            f"the reduction axes {reduction} and output axes {output} of `dimension_numbers` must "
            f"be disjoint (x.shape={x.shape})"
        )
    batch = tuple(sorted(set(range(x.ndim)) - set(reduction) - set(output)))
    order = batch + reduction + output

    def sizes(axes: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(x.shape[a] for a in axes)

    flat = (math.prod(sizes(batch)), math.prod(sizes(reduction)), math.prod(sizes(output)))
    steps_: Any  # a traced count (a sweep) is an int32 loop bound of whole steps
    if is_traced(ns_steps):
        steps_ = jnp.asarray(ns_steps).astype(jnp.int32)
    else:
        steps_ = ns_steps if coeffs.ndim == 2 else int(ns_steps)

    def one(m: jax.Array) -> jax.Array:  # (fan_in, fan_out)
        wide = m.shape[0] <= m.shape[1]
        m = m if wide else m.T  # (short, long)
        if preconditioning == "frobenius":
            m = m / (jnp.linalg.norm(m, ord="fro") + jnp.asarray(eps, m.real.dtype)).astype(m.dtype)
        elif preconditioning == "spectral":
            m = m / (jnp.linalg.norm(m, ord=2) + jnp.asarray(eps, m.real.dtype)).astype(m.dtype)
        c = coeffs.astype(m.dtype)
        if c.ndim == 2:
            for k in range(c.shape[0]):
                m = _newton_schulz_step(m, c[k], k == 0, preconditioning)
        elif isinstance(steps_, int):
            for k in range(steps_):
                m = _newton_schulz_step(m, c, k == 0, preconditioning)
        else:  # a traced number of steps: a loop XLA runs, the first step apart
            m = jax.lax.cond(
                steps_ > 0, lambda v: _newton_schulz_step(v, c, True, preconditioning), lambda v: v, m
            )
            m = jax.lax.fori_loop(
                1, steps_, lambda _, v: _newton_schulz_step(v, c, False, preconditioning), m
            )
        return m if wide else m.T

    matrices = x.transpose(order).reshape(flat)  # (batch, fan_in, fan_out)
    done = jax.vmap(one)(matrices)
    inverse = tuple(sorted(range(x.ndim), key=lambda i: order[i]))
    return done.reshape(sizes(batch) + sizes(reduction) + sizes(output)).transpose(inverse)


def check_coeffs(ns_coeffs: Any) -> None:
    if isinstance(ns_coeffs, str):
        return
    shape = jnp.shape(jnp.asarray(ns_coeffs))
    if len(shape) not in (1, 2) or shape[-1] != 3:
        raise ValueError(
            f"`ns_coeffs` must have shape (3,) or (n, 3) (a triple or one per step), got shape {shape}"
        )
