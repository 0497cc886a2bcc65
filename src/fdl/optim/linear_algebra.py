r"""Iterative linear algebra for preconditioners: the dominant eigenpair of a matrix by power
iteration, and the inverse :math:`p`-th root :math:`A^{-1/p}` of a symmetric positive
semi-definite matrix by coupled Newton iterations (as Shampoo's preconditioners use it).

Both run a ``lax.while_loop`` that stops at ``num_iters`` or once an error estimate falls below
``error_tolerance``, so they compile once and run under ``jit``; both follow optax's
``power_iteration`` and ``matrix_inverse_pth_root`` step for step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import as_concrete_number, check_non_negative, check_real, names_errors
from fdl.tree import norm

__all__ = ["power_iteration", "matrix_inverse_pth_root"]

PyTree = Any


def _scaled(scalar: jax.Array, tree: PyTree) -> PyTree:
    """``scalar * tree``, the scalar cast to each leaf's dtype (strict promotion)."""
    return jax.tree.map(lambda leaf: jnp.asarray(scalar, leaf.dtype) * leaf, tree)


def _unit(tree: PyTree) -> PyTree:
    """``tree`` divided by its Euclidean norm (as the reciprocal times the tree, as optax)."""
    return _scaled(1.0 / norm(tree), tree)


def _inner(a: PyTree, b: PyTree) -> jax.Array:
    r"""The inner product :math:`\sum_\ell \langle a_\ell, b_\ell\rangle` of two trees, each
    leaf's contraction at the highest precision, the sums added leaf by leaf."""
    total: Any = 0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x = jnp.conj(x) if jnp.issubdtype(x.dtype, jnp.complexfloating) else x
        total = total + jnp.tensordot(x, y, x.ndim, precision=jax.lax.Precision.HIGHEST)
    return total


def _check_square(name: str, matrix: Any) -> None:
    shape = getattr(matrix, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"`{name}` must be a square 2-D array of shape (n, n), got shape {shape}")


def _check_count(name: str, value: Any) -> None:
    """A number of iterations: a real number >= 0 (a traced value passes)."""
    check_non_negative(name, value)


@names_errors("power_iteration")
def power_iteration(
    matrix: jax.Array | Callable[[PyTree], PyTree],
    *,
    v0: PyTree | None = None,
    num_iters: int | jax.Array = 100,
    error_tolerance: float | jax.Array = 1e-6,
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
    key: jax.Array | None = None,
) -> tuple[jax.Array, PyTree]:
    r"""The dominant eigenvalue (largest in magnitude) of ``matrix`` and its unit eigenvector,
    by power iteration.

    From the unit vector :math:`v_0 \leftarrow v_0 / \lVert v_0\rVert` and :math:`z_0 = A v_0`,
    each iteration :math:`k = 1, 2, \dots` computes

    .. math::

        v_k = \frac{z_{k-1}}{\lVert z_{k-1}\rVert}, \qquad z_k = A v_k, \qquad
        \lambda_k = \langle v_k, z_k\rangle

    while :math:`k \le` ``num_iters`` and the relative residual
    :math:`\lVert z_k - \lambda_k v_k\rVert / |\lambda_k|` is not below ``error_tolerance``
    (checked before each iteration; :math:`\lambda_0 = 0`). It returns
    :math:`(\lambda_k, z_k / \lVert z_k\rVert)`.

    ``matrix`` is either an array :math:`A` of shape ``(n, n)`` (then :math:`Av` is a matmul at
    ``precision``) or a function computing :math:`v \mapsto Av` on any pytree (a Hessian-vector
    product, say; then ``v0`` gives the tree's structure and is required). Norms and inner
    products run over all leaves together.

    Args:
      matrix: a square array ``(n, n)``, or a matrix-vector product function.
      v0: the starting vector, ``(n,)`` for an array ``matrix``, a tree the function accepts
        otherwise. For an array ``matrix`` it defaults to a draw uniform in :math:`[-1, 1]^n`
        from ``key``, in ``matrix``'s dtype.
      num_iters: the largest number of iterations, ``>= 0``.
      error_tolerance: stop once the relative residual is below it, ``>= 0``.
      precision: the ``jax.lax.Precision`` of the matmul for an array ``matrix``.
      key: the PRNG key of the default ``v0``; ``jax.random.PRNGKey(0)`` when ``None``.

    Returns:
      ``(eigenvalue, eigenvector)``: a scalar and a unit vector (a tree like ``v0``), in
      optax's order (since optax 0.2.2).

    Raises:
      ValueError: a function ``matrix`` without ``v0``; an array ``matrix`` that is not square
        2-D or a ``v0`` not of shape ``(n,)``; a negative ``num_iters`` or ``error_tolerance``.
      TypeError: a ``num_iters`` or ``error_tolerance`` that is not a real number.

    >>> import jax.numpy as jnp
    >>> value, vector = power_iteration(jnp.asarray([[2.0, 0.0], [0.0, 1.0]]))
    >>> round(float(value), 4), [round(abs(float(x)), 3) for x in vector]
    (2.0, [1.0, 0.0])

    References:
      Golub and Van Loan, *Matrix Computations*, 4th ed., section 7.3.1 (the power method).

    Differs from optax:
      A malformed array ``matrix`` or ``v0`` is refused with a message naming it (optax fails
      inside ``matmul`` or the inner product). The scalars are cast to each leaf's dtype, so
      mixed-precision trees run under strict promotion.
    """
    _check_count("num_iters", num_iters)
    check_non_negative("error_tolerance", error_tolerance)
    if callable(matrix):
        if v0 is None:
            raise ValueError(
                "`v0` must be given when `matrix` is a function (a matrix-vector product): the "
                "structure of its input is unknown, got v0=None"
            )
        product = matrix
    else:
        matrix = jnp.asarray(matrix)
        _check_square("matrix", matrix)
        array = matrix

        def product(v: PyTree) -> PyTree:
            return jnp.matmul(array, v, precision=precision)

        if v0 is None:
            key = jax.random.PRNGKey(0) if key is None else key
            v0 = jax.random.uniform(key, array.shape[-1:], array.dtype, minval=-1.0, maxval=1.0)
        elif getattr(v0, "shape", None) != array.shape[-1:]:
            raise ValueError(
                f"`v0` must be a vector of shape {array.shape[-1:]} for a matrix of shape "
                f"{array.shape}, got {getattr(v0, 'shape', type(v0).__name__)}"
            )

    def keep_going(carry: tuple) -> jax.Array:
        v, z, eigenvalue, k = carry
        residual = jax.tree.map(lambda zi, vi: zi - jnp.asarray(eigenvalue, vi.dtype) * vi, z, v)
        converged = jnp.abs(norm(residual) / eigenvalue) < error_tolerance
        return ~converged & (k < num_iters)

    def iterate(carry: tuple) -> tuple:
        _, z, _, k = carry
        v = _unit(z)
        z = product(v)
        return v, z, _inner(v, z), k + 1

    v = _unit(v0)
    start = (v, product(v), jnp.asarray(0.0), jnp.asarray(0))
    _, z, eigenvalue, _ = jax.lax.while_loop(keep_going, iterate, start)
    return eigenvalue, _unit(z)


def _power(m: jax.Array, p: int, precision: jax.lax.Precision) -> jax.Array:
    """:math:`m^p` for a whole ``p >= 1`` by repeated squaring (``m^4 = (m^2)(m^2)``)."""
    while not p % 2:  # m^(2q) = (m^2)^q
        m, p = jnp.matmul(m, m, precision=precision), p // 2
    result = m
    while p > 1:  # odd p: multiply in m^(2^i) for each set bit i of p
        m, p = jnp.matmul(m, m, precision=precision), p // 2
        if p % 2:
            result = jnp.matmul(result, m, precision=precision)
    return result


def _traced_power(m: jax.Array, p: Any, precision: jax.lax.Precision) -> jax.Array:
    """:math:`m^{2^j}` for :math:`j = \\mathrm{round}(\\log_2 p)` in ``0..3``: optax's
    power for a ``p`` only known at run time (exact for ``p`` in 1, 2, 4, 8)."""
    branches = [lambda x, e=e: _power(x, 2**e, precision) for e in range(4)]
    return jax.lax.switch(jnp.round(jnp.log2(p)).astype(jnp.int32), branches, m)


@names_errors("matrix_inverse_pth_root")
def matrix_inverse_pth_root(
    matrix: jax.Array,
    p: int | jax.Array,
    num_iters: int | jax.Array = 100,
    ridge_epsilon: float | jax.Array = 1e-6,
    error_tolerance: float | jax.Array = 1e-6,
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array]:
    r"""The inverse :math:`p`-th root :math:`(A + \epsilon I)^{-1/p}` of a symmetric positive
    semi-definite ``matrix`` :math:`A`, by the coupled Newton iteration.

    With :math:`\epsilon =` ``ridge_epsilon`` :math:`\cdot \max(\lambda_{\max}, 10^{-16})`
    (:math:`\lambda_{\max}` by :func:`power_iteration`, 100 iterations, tolerance 1e-6),
    :math:`D = A + \epsilon I`, :math:`\alpha = -1/p` and :math:`z = (1 + p) / (2 \lVert D
    \rVert_F)`, it starts from :math:`M_0 = z D`, :math:`H_0 = z^{1/p} I` and iterates

    .. math::

        T_k = (1 - \alpha) I + \alpha M_k, \qquad M_{k+1} = T_k^{\,p} M_k, \qquad
        H_{k+1} = H_k T_k

    while :math:`k <` ``num_iters``, the error :math:`e_k = \max_{ij} |M_k - I|_{ij}` is above
    ``error_tolerance`` and did not grow: an iteration whose error exceeds :math:`1.2\,
    e_{k-1}` is the last, and then the previous :math:`H` is returned. :math:`H_k \to
    D^{-1/p}` as :math:`M_k \to I`. A ``(1, 1)`` matrix gets :math:`D^{-1/p}` directly.

    Args:
      matrix: the symmetric PSD matrix, ``(n, n)``.
      p: the root, a whole number ``>= 1``. A traced ``p`` is raised as optax does, by
        :math:`2^{\mathrm{round}(\log_2 p)}` matmul squarings (exact for 1, 2, 4 and 8 only).
      num_iters: the largest number of Newton iterations, ``>= 0``.
      ridge_epsilon: the relative ridge :math:`\epsilon / \lambda_{\max}`, ``>= 0``.
      error_tolerance: stop once :math:`e_k` is at or below it, ``>= 0``.
      precision: the ``jax.lax.Precision`` of the matmuls.

    Returns:
      ``(root, error)``: :math:`D^{-1/p}` ``(n, n)`` in ``matrix``'s dtype, and the last
      :math:`e_k` (a scalar; 0 for a ``(1, 1)`` matrix).

    Raises:
      ValueError: ``matrix`` not square 2-D; ``p`` not a whole number ``>= 1``; a negative
        ``num_iters``, ``ridge_epsilon`` or ``error_tolerance``.
      TypeError: a numeric argument that is not a real number.

    >>> import jax.numpy as jnp
    >>> root, error = matrix_inverse_pth_root(jnp.diag(jnp.asarray([4.0, 16.0])), p=2)
    >>> [round(float(x), 3) for x in jnp.diag(root)]
    [0.5, 0.25]

    References:
      Higham, *Functions of Matrices: Theory and Computation*, SIAM 2008, eq. 7.18.
      Gupta, Koren and Singer, *Shampoo: Preconditioned Stochastic Tensor Optimization*,
      ICML 2018.

    Differs from optax:
      A concrete ``p`` that is not a power of two is raised to exactly that power (optax's
      ``lax.switch`` raises to :math:`2^{\mathrm{round}(\log_2 p)}`: :math:`p = 3` uses
      :math:`T^4` and does not converge to the cube root); ``p < 1`` is refused. The error of a
      ``(1, 1)`` matrix is a 0 array in the computation dtype (optax: the Python int 0). The
      computation runs in ``result_type(matrix, float32)``, where optax lets standard
      promotion reach the same dtype.
    """
    check_real("p", p)
    _check_count("num_iters", num_iters)
    check_non_negative("ridge_epsilon", ridge_epsilon)
    check_non_negative("error_tolerance", error_tolerance)
    matrix = jnp.asarray(matrix)
    _check_square("matrix", matrix)
    whole = as_concrete_number(p)
    if whole is not None and (whole != int(whole) or whole < 1):
        raise ValueError(f"`p` must be a whole number >= 1 (the root's order), got {p!r}")

    dtype = _dtypes.result_type(matrix.dtype, jnp.float32)
    n = matrix.shape[0]
    alpha = jnp.asarray(-1.0 / p, jnp.float32).astype(dtype)
    identity = jnp.eye(n, dtype=dtype)
    largest, _ = power_iteration(matrix, num_iters=100, error_tolerance=1e-6, precision=precision)
    ridge = (ridge_epsilon * jnp.maximum(largest, 1e-16)).astype(dtype)
    a = matrix.astype(dtype)

    if n == 1:
        return ((a + ridge) ** alpha).astype(matrix.dtype), jnp.zeros([], dtype)

    def raise_to_p(t: jax.Array) -> jax.Array:
        if whole is None:
            return _traced_power(t, p, precision)
        return _power(t, int(whole), precision)

    def keep_going(carry: tuple) -> jax.Array:
        k, _, _, _, error, improving = carry
        return (k < num_iters) & (error > error_tolerance) & improving

    def iterate(carry: tuple) -> tuple:
        k, m, h, _, error, _ = carry
        t = (1 - alpha) * identity + alpha * m
        new_m = jnp.matmul(raise_to_p(t), m, precision=precision)
        new_h = jnp.matmul(h, t, precision=precision)
        new_error = jnp.max(jnp.abs(new_m - identity))
        return k + 1, new_m, new_h, h, new_error, new_error < error * 1.2

    damped = a + ridge * identity
    z = (1 + jnp.asarray(p, dtype)) / (2 * jnp.linalg.norm(damped))
    m0 = damped * z
    h0 = identity * jnp.power(z, 1.0 / jnp.asarray(p, dtype))
    start = (0, m0, h0, h0, jnp.max(jnp.abs(m0 - identity)), jnp.asarray(True))
    _, m, h, previous, _, improving = jax.lax.while_loop(keep_going, iterate, start)
    error = jnp.max(jnp.abs(m - identity))
    root = jnp.where(improving, h, previous)
    return root.astype(matrix.dtype), error
