"""Symmetric linear operators given as a matrix or as a function ``(n,) -> (n,)``: the checks
and the compiled runners that :mod:`fdl.spectral`'s eigen-solvers share.

:func:`prepare` checks the operator and the start vector (shape, dtype, symmetry, as the
:mod:`fdl.spectral` module docstring describes) and returns a runner that compiles an algorithm
``algorithm(matvec, start, *statics)`` on it: cached by shape for a matrix, once per eager call
for a function (which is often a fresh closure a cache would keep alive).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fdl._checks import check_bool, check_positive_int
from fdl._dtypes import HIGHEST, default_float

Operator = Callable[[jax.Array], jax.Array] | ArrayLike
_PROBE_SEED = 0  # the symmetry probe's random vectors come from NumPy's generator with this seed


def _is_traced(x: jax.Array) -> bool:
    return isinstance(x, jax.core.Tracer)


def float_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """``dtype`` if it is a float type, else JAX's default float (float32, or float64 with x64)."""
    if jnp.issubdtype(dtype, jnp.floating):
        return jnp.dtype(dtype)
    return default_float()


def _rtol(dtype: jnp.dtype) -> float:
    """The symmetry tolerance: the square root of the dtype's machine epsilon."""
    return float(np.sqrt(np.finfo(dtype).eps))


def prepare(
    matvec: Operator, v0: ArrayLike, check_symmetric: bool | None, caller: str
) -> tuple[Callable[..., Any], Any, jax.Array]:
    """Check the operator and the start vector.

    Returns ``(runner, operand, unit v0)`` in one dtype: ``runner(algorithm, statics, operand,
    q0)`` runs ``algorithm(matvec, q0, *statics)`` compiled (for a matrix, cached by shape).
    """
    v0 = jnp.asarray(v0)
    if v0.ndim != 1 or v0.shape[0] < 1:
        raise ValueError(f"`v0` must be a non-empty vector of shape (n,), got shape {v0.shape}")
    n = v0.shape[0]
    if check_symmetric is not None:
        check_bool("check_symmetric", check_symmetric)
    runner: Callable[..., Any]
    operand: Any
    if callable(matvec):
        dtype = float_dtype(v0.dtype)
        out = jax.eval_shape(matvec, jax.ShapeDtypeStruct((n,), dtype))
        if not hasattr(out, "shape") or tuple(out.shape) != (n,):
            got = getattr(out, "shape", type(out).__name__)
            raise ValueError(f"`matvec` must map a vector of shape ({n},) (= v0.shape) to ({n},), got {got}")
        runner, operand = _on_function, matvec
        if check_symmetric:
            _probe_symmetry(matvec, n, dtype)
    else:
        a = jnp.asarray(matvec)
        if a.ndim != 2 or a.shape[0] != a.shape[1]:
            raise ValueError(
                f"`matvec` must be a function (n,) -> (n,) or a square (n, n) array, got an array of "
                f"shape {a.shape}"
            )
        if a.shape[0] != n:
            raise ValueError(f"`v0` must have shape ({a.shape[0]},) to match the matrix, got {v0.shape}")
        dtype = float_dtype(a.dtype)
        a = a.astype(dtype)
        if check_symmetric is not False and not _is_traced(a):
            scale = float(jnp.max(jnp.abs(a)))
            asym = float(jnp.max(jnp.abs(a - a.T)))
            if asym > _rtol(dtype) * scale:
                raise ValueError(
                    f"`matvec` must be a symmetric matrix: max |A - A^T| = {asym:.3g} exceeds "
                    f"{_rtol(dtype):.2g} * max |A| = {_rtol(dtype) * scale:.3g}"
                )
        runner, operand = _on_matrix, a
    v0 = v0.astype(dtype)
    norm = jnp.linalg.norm(v0)
    if not _is_traced(norm) and float(norm) == 0.0:
        raise ValueError(f"`v0` must be a nonzero vector, got all zeros (in {caller})")
    return runner, operand, v0 / norm


@functools.partial(jax.jit, static_argnums=(0, 1))
def _on_matrix(algorithm: Callable[..., Any], statics: tuple, a: jax.Array, q0: Any) -> Any:
    return algorithm(lambda v: jnp.matmul(a, v, precision=HIGHEST), q0, *statics)


def _on_function(algorithm: Callable[..., Any], statics: tuple, fn: Callable[..., Any], q0: Any) -> Any:
    dtype = jax.tree.leaves(q0)[0].dtype

    def op(v: jax.Array) -> jax.Array:
        return jnp.asarray(fn(v)).astype(dtype)

    return jax.jit(lambda q: algorithm(op, q, *statics))(q0)  # eager: compiled per call (module doc)


def _probe_symmetry(op: Callable[[jax.Array], jax.Array], n: int, dtype: jnp.dtype) -> None:
    """Raise if ``|u.Av - v.Au|`` is far above rounding for two random ``u, v`` (a heuristic)."""
    u, v = jnp.asarray(np.random.default_rng(_PROBE_SEED).standard_normal((2, n)), dtype)  # (2, n)
    au, av = jax.jit(lambda u, v: (jnp.asarray(op(u)).astype(dtype), jnp.asarray(op(v)).astype(dtype)))(u, v)
    if _is_traced(au):
        return  # values unknown under jit: nothing to check
    gap = float(jnp.abs(jnp.vdot(u, av) - jnp.vdot(v, au)))
    bound = _rtol(dtype) * float(
        jnp.linalg.norm(u) * jnp.linalg.norm(av) + jnp.linalg.norm(v) * jnp.linalg.norm(au)
    )
    if gap > bound:
        raise ValueError(
            f"`matvec` does not look symmetric: for random u, v, |u.Av - v.Au| = {gap:.3g} exceeds "
            f"the rounding bound {bound:.3g}; these methods need a symmetric operator"
        )


def check_iterations(num_iterations: object, n: int) -> int:
    m = check_positive_int("num_iterations", num_iterations)
    if m > n:
        raise ValueError(
            f"`num_iterations` must be <= n ({n}): a Krylov space of R^{n} has at most {n} dimensions, "
            f"got {m}"
        )
    return m
