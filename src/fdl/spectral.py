r"""Eigenpairs of a symmetric linear operator that is only known through its action ``v -> A v``.

The Hessian of a network's loss has as many rows as the network has parameters: it is never
built, but a Hessian-vector product costs about two gradients (``jax.jvp`` over ``jax.grad``).
The methods here need nothing else: the operator is a function ``matvec: (n,) -> (n,)`` (or, for
small problems and tests, a symmetric ``(n, n)`` array).

* :func:`power_iteration` repeats :math:`v \leftarrow A v / \lVert A v \rVert`: the eigenpair of
  largest *magnitude*, at a rate set by :math:`|\lambda_2 / \lambda_1|`.
* :func:`lanczos` builds an orthonormal basis :math:`Q` of the Krylov space
  :math:`\operatorname{span}\{v_0, A v_0, \dots, A^{m-1} v_0\}` in which :math:`Q^\top A Q = T`
  is tridiagonal.
* :func:`top_eigenpairs` diagonalises that small :math:`T` (Rayleigh-Ritz): its top
  eigenvalues (the *Ritz values*) approximate the top eigenvalues of :math:`A`, and
  :math:`Q s` (the *Ritz vectors*) their eigenvectors. Extreme eigenvalues converge first, at a
  Chebyshev rate, far faster than power iteration.

**Symmetry.** Every method assumes :math:`A = A^\top`. A matrix is checked by default (it costs
one pass over it; ``check_symmetric=False`` skips it, and it is skipped for a traced matrix): :math:`\max_{ij} |A_{ij} - A_{ji}| \le \sqrt{\varepsilon}\, \max_{ij} |A_{ij}|`,
with :math:`\varepsilon` the machine epsilon of its dtype (``3.5e-4`` relative in float32,
``1.5e-8`` in float64). A function can only be probed: with ``check_symmetric=True``, two
standard normal vectors :math:`u, v` (NumPy's generator, seed 0) must satisfy

.. math::

    |u^\top A v - v^\top A u| \le \sqrt{\varepsilon}\,
        (\lVert u \rVert \lVert A v \rVert + \lVert v \rVert \lVert A u \rVert).

That is a *heuristic*: a non-symmetric operator can pass it by chance (it tests one bilinear
form on one pair), though random vectors make that unlikely. It is **off by default** for
functions because it costs two extra products (for a Hessian, two extra gradient passes), it
reads values back to Python (so it is skipped when the values are traced under ``jax.jit``),
and the operators it is meant for (Hessians from autodiff, Gram matrices) are symmetric by
construction.

**Precision and reorthogonalisation.** In exact arithmetic the Lanczos vectors are orthogonal;
in floating point they lose orthogonality as soon as a Ritz value converges (Paige, 1971), and
the tridiagonal matrix then grows spurious copies ("ghosts") of the converged eigenvalues. With
``reorthogonalize=True`` (the default) every new vector is orthogonalised against the whole
basis, twice (classical Gram-Schmidt, "twice is enough"): :math:`O(n m)` more work per step,
:math:`O(n m)` memory for the basis, and no ghosts. ``tests/toolkit/test_spectral.py`` shows both:
without it, float32 Lanczos on a 120-dimensional operator with eigenvalues 10, 9 and 118 in
[0, 1] reports the eigenvalue 10 several times after 30 steps (4 of its top 5 Ritz values are
10); with it, the top Ritz values equal ``numpy.linalg.eigh``'s.

**Compilation.** An operator given as a matrix runs through one jitted program per shape and
dtype. An operator given as a function is compiled on every eager call: the function is not
kept in a cache, since it is often a fresh closure over large arrays (a linearised Hessian,
a batch) that a cache keyed on it would keep alive and never hit again. Called inside your own
``jax.jit`` (as ``examples/edge_of_stability.py`` does), it compiles once with your function.

Example:
    >>> import jax.numpy as jnp
    >>> from fdl import spectral
    >>> a = jnp.diag(jnp.array([3.0, 1.0, 2.0, -1.0]))
    >>> values, vectors = spectral.top_eigenpairs(a, jnp.ones(4), 2, num_iterations=4)
    >>> print(jnp.round(values, 4).tolist(), vectors.shape)
    [3.0, 2.0] (4, 2)

References:
    C. Lanczos, "An iteration method for the solution of the eigenvalue problem of linear
    differential and integral operators", J. Res. Nat. Bur. Standards 45 (1950).
    C. C. Paige, "The computation of eigenvalues and eigenvectors of very large sparse
    matrices", PhD thesis, University of London (1971).
    G. H. Golub and C. F. Van Loan, *Matrix Computations* (4th ed., 2013), chapter 10.
    B. N. Parlett, *The Symmetric Eigenvalue Problem* (1998), chapters 13 and 15.
    L. Giraud, J. Langou and M. Rozloznik, "The loss of orthogonality in the Gram-Schmidt
    orthogonalization process", Comput. Math. Appl. 50 (2005) ("twice is enough").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fdl._checks import check_bool, check_positive_int, is_real_number
from fdl._dtypes import HIGHEST, default_float
from fdl._operators import Operator, check_iterations, float_dtype, prepare

__all__ = ["LanczosResult", "PowerIterationResult", "lanczos", "power_iteration", "top_eigenpairs"]


class PowerIterationResult(NamedTuple):
    """What :func:`power_iteration` found.

    Attributes:
        eigenvalue: the Rayleigh quotient :math:`v^\\top A v`, a scalar.
        eigenvector: ``(n,)`` unit vector :math:`v`.
        num_iterations: int32 scalar, the number of products with :math:`A` taken.
        residual: :math:`\\lVert A v - \\lambda v \\rVert` at the returned pair.
    """

    eigenvalue: jax.Array
    eigenvector: jax.Array
    num_iterations: jax.Array
    residual: jax.Array


class LanczosResult(NamedTuple):
    """The tridiagonal matrix and the basis built by :func:`lanczos`.

    Attributes:
        alphas: ``(m,)`` diagonal of :math:`T`.
        betas: ``(m - 1,)`` off-diagonal of :math:`T` (0 where the process restarted).
        basis: ``(n, m)`` the Lanczos vectors :math:`Q` as columns.
    """

    alphas: jax.Array
    betas: jax.Array
    basis: jax.Array


# ---------------------------------------------------------------------------- power iteration


def power_iteration(
    matvec: Operator,
    v0: ArrayLike,
    *,
    num_iterations: int = 1000,
    tol: float = 1e-5,
    check_symmetric: bool | None = None,
) -> PowerIterationResult:
    r"""The eigenpair of largest magnitude of a symmetric operator, by power iteration.

    From :math:`v_1 = v_0 / \lVert v_0 \rVert`, with the Rayleigh quotient
    :math:`\lambda_i = v_i^\top A v_i`:

    .. math::

        v_{i+1} = \frac{A v_i}{\lVert A v_i \rVert}, \qquad
        \text{stop when } \lVert A v_i - \lambda_i v_i \rVert \le \mathrm{tol}\, |\lambda_i|
        \text{ or } i = \mathrm{num\_iterations}.

    For symmetric :math:`A` the residual bounds the error: some eigenvalue lies within
    :math:`\lVert A v - \lambda v \rVert` of :math:`\lambda`. The error shrinks by
    :math:`|\lambda_2/\lambda_1|` per step (the eigenvalue's by its square), so it stalls when
    the two largest magnitudes are close, and never settles when :math:`\lambda` and
    :math:`-\lambda` are both eigenvalues (use :func:`top_eigenpairs` then). In float32 the
    residual cannot go much below :math:`\varepsilon \sqrt{n}\, \lVert A \rVert`: a ``tol``
    below about ``1e-6`` then runs all ``num_iterations``. Runs in one ``lax.while_loop``.

    Args:
        matvec: the operator: a function ``(n,) -> (n,)`` or a symmetric ``(n, n)`` array.
        v0: ``(n,)`` nonzero start vector (not orthogonal to the top eigenvector).
        num_iterations: the most products with :math:`A` to take, >= 1.
        tol: relative residual at which to stop, >= 0.
        check_symmetric: check the operator's symmetry (module docstring); ``None``: check a
            matrix, do not probe a function.

    Returns:
        A :class:`PowerIterationResult` ``(eigenvalue, eigenvector, num_iterations, residual)``.

    Raises:
        ValueError: for a non-symmetric matrix (or a function that fails the probe), a
            ``v0`` that is not a nonzero ``(n,)`` vector, ``num_iterations < 1`` or ``tol < 0``.

    Example:
        >>> import jax.numpy as jnp
        >>> a = jnp.array([[2.0, 1.0], [1.0, 2.0]])
        >>> result = power_iteration(a, jnp.array([1.0, 0.0]))
        >>> print(round(float(result.eigenvalue), 4), int(result.num_iterations) < 30)
        3.0 True

    References:
        Golub and Van Loan, *Matrix Computations* (4th ed., 2013), section 8.2.1.
    """
    max_iter = check_positive_int("num_iterations", num_iterations)
    if not is_real_number(tol) or not tol >= 0:
        raise ValueError(f"`tol` must be a number >= 0, got {tol!r}")
    runner, operand, q0 = prepare(matvec, v0, check_symmetric, "power_iteration")
    limits = (jnp.int32(max_iter), jnp.asarray(tol, q0.dtype))  # traced: one compile for all
    return runner(_power_iteration, (), operand, (q0, limits))


def _power_iteration(
    op: Callable[[jax.Array], jax.Array], start: tuple[jax.Array, tuple[jax.Array, jax.Array]]
) -> PowerIterationResult:
    v, (max_iter, tol) = start

    def rayleigh(v: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        w = op(v)
        lam = jnp.vdot(v, w, precision=HIGHEST)
        return w, lam, jnp.linalg.norm(w - lam * v)

    def cond(carry: tuple) -> jax.Array:
        i, _, _, lam, res = carry
        return (i < max_iter) & (res > tol * jnp.abs(lam))

    def body(carry: tuple) -> tuple:
        i, _, w, _, _ = carry
        norm = jnp.linalg.norm(w)
        v = w / jnp.where(norm > 0, norm, 1)  # norm 0 stops the loop before this step
        w, lam, res = rayleigh(v)
        return i + 1, v, w, lam, res

    w, lam, res = rayleigh(v)
    i, v, _, lam, res = jax.lax.while_loop(cond, body, (jnp.int32(1), v, w, lam, res))
    return PowerIterationResult(lam, v, i, res)


# ------------------------------------------------------------------------------------ Lanczos


def _orthogonalize(w: jax.Array, basis: jax.Array) -> jax.Array:
    """``w`` minus its projection on the columns of ``basis`` (unused columns are zero), twice."""
    for _ in range(2):  # classical Gram-Schmidt twice: orthogonal to rounding ("twice is enough")
        w = w - jnp.matmul(basis, jnp.matmul(basis.T, w, precision=HIGHEST), precision=HIGHEST)  # (n,)
    return w


def _lanczos(
    op: Callable[[jax.Array], jax.Array], q0: jax.Array, m: int, reorthogonalize: bool
) -> LanczosResult:
    n, dtype = q0.shape[0], q0.dtype
    eps = float(np.finfo(dtype).eps)

    def step(carry: tuple, j: jax.Array) -> tuple:
        basis, q_prev, q, beta_prev, scale = carry
        basis = basis.at[:, j].set(q)  # (n, m), columns > j still zero
        w = op(q)
        alpha = jnp.vdot(q, w, precision=HIGHEST)
        w = w - alpha * q - beta_prev * q_prev
        if reorthogonalize:
            w = _orthogonalize(w, basis)
        beta = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(alpha) + beta_prev + beta)  # a lower bound on ||A||
        # Breakdown: the Krylov space is (numerically) invariant. Go on from the coordinate axis
        # least covered by the basis, orthogonalised, with a zero coupling, so T stays the
        # projection of A: ||(I - Q Q^T) e_i||^2 = 1 - ||Q_i||^2 > 0 while fewer than n columns.
        breakdown = beta <= np.sqrt(n) * eps * scale

        def restart(_: None) -> jax.Array:
            axis = jnp.argmin(jnp.sum(basis * basis, axis=1))  # row of Q with the least weight
            r = _orthogonalize(jnp.zeros((n,), dtype).at[axis].set(1), basis)
            norm = jnp.linalg.norm(r)
            return r / jnp.where(norm > 0, norm, 1)  # zero only at the last step of m = n

        q_next = jax.lax.cond(breakdown, restart, lambda _: w / jnp.where(beta > 0, beta, 1), None)
        beta = jnp.where(breakdown, jnp.zeros((), dtype), beta)
        return (basis, q, q_next, beta, scale), (alpha, beta)

    zeros = jnp.zeros((n,), dtype)
    init = (jnp.zeros((n, m), dtype), zeros, q0, jnp.zeros((), dtype), jnp.zeros((), dtype))
    carry, (alphas, betas) = jax.lax.scan(step, init, jnp.arange(m))  # type: ignore[var-annotated]
    # alphas (m,), betas (m,): the last beta couples to a vector not kept
    return LanczosResult(alphas, betas[:-1], carry[0])


def lanczos(
    matvec: Operator,
    v0: ArrayLike,
    num_iterations: int,
    *,
    reorthogonalize: bool = True,
    check_symmetric: bool | None = None,
) -> LanczosResult:
    r"""The Lanczos tridiagonalisation :math:`Q^\top A Q = T` of a symmetric operator.

    With :math:`q_1 = v_0 / \lVert v_0 \rVert`, :math:`q_0 = 0`, :math:`\beta_0 = 0`, for
    :math:`j = 1, \dots, m`:

    .. math::

        \alpha_j = q_j^\top A q_j, \qquad
        w_j = A q_j - \alpha_j q_j - \beta_{j-1} q_{j-1}, \qquad
        \beta_j = \lVert w_j \rVert, \qquad q_{j+1} = w_j / \beta_j,

    so that :math:`A Q_m = Q_m T_m + \beta_m q_{m+1} e_m^\top` with :math:`T_m` tridiagonal
    (:math:`\alpha` on the diagonal, :math:`\beta_1..\beta_{m-1}` beside it). With
    ``reorthogonalize=True``, :math:`w_j` is also projected off all of :math:`q_1..q_j`, twice,
    before its norm is taken (module docstring). When :math:`\beta_j \le \sqrt{n}\,
    \varepsilon\, \lVert T \rVert` the Krylov space is invariant (breakdown): :math:`\beta_j`
    is set to 0 and the process restarts from the coordinate axis :math:`e_i` least covered by
    the basis (smallest :math:`\lVert Q_{i,:} \rVert`), orthogonalised against
    :math:`q_1..q_j`: deterministic, and nonzero while :math:`j < n`, since
    :math:`\lVert (I - Q Q^\top) e_i \rVert^2 = 1 - \lVert Q_{i,:} \rVert^2 \ge 1 - j/n`.
    That restart is how repeated
    eigenvalues get all their copies: a single start vector's Krylov space holds only one
    eigenvector per distinct eigenvalue. Runs in one ``lax.scan`` of ``num_iterations`` steps.

    Args:
        matvec: the operator: a function ``(n,) -> (n,)`` or a symmetric ``(n, n)`` array.
        v0: ``(n,)`` nonzero start vector.
        num_iterations: :math:`m`, the number of steps (products with :math:`A`), ``1..n``.
        reorthogonalize: full reorthogonalisation against the basis (the default).
        check_symmetric: check the operator's symmetry (module docstring); ``None``: check a
            matrix, do not probe a function.

    Returns:
        A :class:`LanczosResult` ``(alphas (m,), betas (m - 1,), basis (n, m))``.

    Raises:
        ValueError: for a non-symmetric matrix (or a function that fails the probe), a ``v0``
            that is not a nonzero ``(n,)`` vector, or ``num_iterations`` not in ``1..n``.
        TypeError: if ``reorthogonalize`` is not a bool.

    Example:
        >>> import jax.numpy as jnp
        >>> a = jnp.array([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
        >>> alphas, betas, basis = lanczos(a, jnp.array([1.0, 0.0, 0.0]), 3)
        >>> print(alphas.round(4).tolist(), betas.round(4).tolist(), basis.shape)
        [2.0, 2.0, 2.0] [1.0, 1.0] (3, 3)

    References:
        Lanczos (1950); Golub and Van Loan, *Matrix Computations* (4th ed., 2013), section 10.1;
        Parlett, *The Symmetric Eigenvalue Problem* (1998), chapter 13.
    """
    check_bool("reorthogonalize", reorthogonalize)
    runner, operand, q0 = prepare(matvec, v0, check_symmetric, "lanczos")
    m = check_iterations(num_iterations, q0.shape[0])
    return runner(_lanczos, (m, reorthogonalize), operand, q0)


def top_eigenpairs(
    matvec: Operator,
    dim_or_v0: int | ArrayLike,
    k: int,
    *,
    key: jax.Array | None = None,
    num_iterations: int | None = None,
    reorthogonalize: bool = True,
    check_symmetric: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
    r"""The ``k`` largest eigenvalues of a symmetric operator and their eigenvectors (Ritz pairs).

    Runs :func:`lanczos` for :math:`m` steps, diagonalises the small tridiagonal matrix,
    :math:`T_m = S \Theta S^\top` (``jnp.linalg.eigh``), and returns the ``k`` largest Ritz
    values :math:`\theta_i` with the Ritz vectors :math:`y_i = Q_m s_i`. Each satisfies

    .. math::

        \lVert A y_i - \theta_i y_i \rVert = \beta_m |e_m^\top s_i|,

    the classical Lanczos error bound: extreme eigenvalues converge first. "Largest" is by value
    (algebraic), as for a Hessian's top curvature; for the most negative ones pass
    ``lambda v: -matvec(v)`` and negate the values.

    How many steps: with reorthogonalisation, ``num_iterations = n`` reproduces
    ``numpy.linalg.eigh`` to rounding on any symmetric matrix, repeated eigenvalues included
    (each copy after a breakdown restart, see :func:`lanczos`). Well separated top eigenvalues
    need far fewer (``tests/toolkit/test_spectral.py``: 30 steps give the top 5 eigenpairs of a
    120 x 120 matrix with eigenvalues :math:`10 \cdot 0.8^i` to rounding, in float32 and
    float64); a near-degenerate pair such as 1 and 1 + 1e-6 is resolved as soon as the pair's
    eigenspace is found (30 steps for a 120 x 120 matrix whose other eigenvalues are <= 0.5:
    both values and vectors in float64; in float32, where the gap is 8 ulps, the values and the
    2-dimensional eigenspace, as with ``eigh``). A repeated eigenvalue: one start vector's
    Krylov space holds one eigenvector per distinct eigenvalue in exact arithmetic; in floating
    point the other copies emerge from rounding at no predictable step, so only
    ``num_iterations = n`` (breakdown, then restart) guarantees every copy.

    Args:
        matvec: the operator: a function ``(n,) -> (n,)`` or a symmetric ``(n, n)`` array.
        dim_or_v0: the start vector ``(n,)``, or the dimension ``n``, in which case a standard
            normal start vector is drawn from ``key``.
        k: how many eigenpairs, ``1 <= k <= num_iterations``.
        key: PRNG key for the start vector; required when ``dim_or_v0`` is an int.
        num_iterations: Lanczos steps :math:`m` (``k..n``); default
            :math:`\min(n, \max(2k + 1, 20))` (ARPACK's default subspace size).
        reorthogonalize: full reorthogonalisation (default; without it ghost copies of
            converged eigenvalues appear, module docstring).
        check_symmetric: check the operator's symmetry (module docstring); ``None``: check a
            matrix, do not probe a function.

    Returns:
        ``(eigenvalues, eigenvectors)``: ``(k,)`` in descending order and ``(n, k)`` unit
        columns, each with its entry of largest magnitude positive (eigenvectors are defined up
        to sign; a fixed sign makes results comparable).

    Raises:
        ValueError: for a non-symmetric matrix (or a function that fails the probe), a start
            vector that is not a nonzero ``(n,)`` vector, ``k`` not in ``1..n``, ``k >
            num_iterations``, ``num_iterations`` not in ``1..n``, or an int ``dim_or_v0``
            without a ``key``.

    Example:
        >>> import jax
        >>> import jax.numpy as jnp
        >>> a = jnp.array([[4.0, 1.0, 0.0], [1.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
        >>> values, vectors = top_eigenpairs(a, 3, 1, key=jax.random.key(0))
        >>> print(round(float(values[0]), 4), vectors.shape)
        4.618 (3, 1)

    References:
        Golub and Van Loan, *Matrix Computations* (4th ed., 2013), section 10.1.4 (Ritz
        values, error bound); Parlett (1998), chapter 13.
    """
    if isinstance(dim_or_v0, (int, np.integer)) and not isinstance(dim_or_v0, bool):
        n = check_positive_int("dim_or_v0", int(dim_or_v0))
        if key is None:
            raise ValueError(
                "`key` is required when `dim_or_v0` is an int (the start vector is drawn from it): "
                f"call top_eigenpairs(matvec, {n}, k, key=jax.random.key(0)) or pass a start vector"
            )
        dtype = default_float() if callable(matvec) else float_dtype(jnp.asarray(matvec).dtype)
        v0 = jax.random.normal(key, (n,), dtype)
    else:
        v0 = jnp.asarray(dim_or_v0)
    check_bool("reorthogonalize", reorthogonalize)
    runner, operand, q0 = prepare(matvec, v0, check_symmetric, "top_eigenpairs")
    n = q0.shape[0]
    k = check_positive_int("k", k)
    if k > n:
        raise ValueError(f"`k` must be <= n, the operator's dimension ({n}), got {k}")
    m = min(n, max(2 * k + 1, 20)) if num_iterations is None else check_iterations(num_iterations, n)
    if k > m:
        raise ValueError(f"`k` must be <= num_iterations ({m}): there are only {m} Ritz values, got {k}")
    return runner(_ritz_pairs, (k, m, reorthogonalize), operand, q0)


def _ritz_pairs(
    op: Callable[[jax.Array], jax.Array], q0: jax.Array, k: int, m: int, reorthogonalize: bool
) -> tuple[jax.Array, jax.Array]:
    alphas, betas, basis = _lanczos(op, q0, m, reorthogonalize)
    t = jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)  # (m, m) tridiagonal
    theta, s = jnp.linalg.eigh(t)  # ascending
    values = theta[::-1][:k]  # (k,) descending
    vectors = jnp.matmul(basis, s[:, ::-1][:, :k], precision=HIGHEST)  # (n, k) Ritz vectors
    vectors = vectors / jnp.linalg.norm(vectors, axis=0, keepdims=True)
    peak = jnp.take_along_axis(vectors, jnp.argmax(jnp.abs(vectors), axis=0)[None, :], axis=0)  # (1, k)
    return values, vectors * jnp.where(peak < 0, -1, 1).astype(vectors.dtype)
