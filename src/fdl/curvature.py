r"""Curvature of a loss over a parameter pytree, without ever forming the Hessian.

A network with :math:`n` parameters has an :math:`n \times n` Hessian
:math:`H = \nabla^2 L(\theta)`: far too large to build, yet its action on a vector is as cheap as
two gradients. Everything here is built from that action, over parameters held as any pytree
(``{"w": ..., "b": ...}`` dicts, as fdl's layers make them):

* :func:`hvp`: the Hessian-vector product :math:`H v`, forward-over-reverse (``jax.jvp`` of
  ``jax.grad``), one forward and one backward pass;
* :func:`gnvp`: the generalised Gauss-Newton product :math:`J^\top H_\ell J v` of a model
  :math:`f(\theta)` under a loss :math:`\ell(f)`, which drops the second derivatives of the model
  and is positive semi-definite whenever :math:`\ell` is convex in the outputs;
* :func:`hutchinson_trace` and :func:`hutchinson_diagonal`: unbiased random estimates of
  :math:`\operatorname{tr} H` and :math:`\operatorname{diag} H` from Rademacher probes;
* :func:`hessian_top_eigenvalues`: the top of the spectrum by Lanczos (``fdl.spectral``), e.g.
  the *sharpness* :math:`\lambda_{\max}(H)` that gradient descent drives to :math:`2/\eta`.

Functions take ``loss_fn(params) -> scalar``: close over the data (``lambda p: loss(p, batch)``).
They are pure and can be called under ``jax.jit`` with ``loss_fn`` closed over (not passed as
a traced argument). Do so when you call them more than once: called eagerly, each call
linearises and compiles anew (``fdl.spectral``, "Compilation", says why nothing is cached).

Example:
    >>> import jax.numpy as jnp
    >>> from fdl import curvature
    >>> loss_fn = lambda p: jnp.sum(p["w"] ** 3)  # H = diag(6 w)
    >>> params = {"w": jnp.array([1.0, 2.0])}
    >>> curvature.hvp(loss_fn, params, {"w": jnp.array([1.0, 1.0])})["w"].tolist()
    [6.0, 12.0]

References:
    Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation (1994).
    Schraudolph, "Fast curvature matrix-vector products for second-order gradient descent",
    Neural Computation (2002).
    Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines", Communications in Statistics (1990).
    Bekas, Kokiopoulou and Saad, "An estimator for the diagonal of a matrix", Applied Numerical
    Mathematics (2007).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from fdl import spectral
from fdl._checks import check_positive_int, check_prng_key
from fdl._paths import quoted_path_label

__all__ = [
    "gnvp",
    "hessian_top_eigenvalues",
    "hutchinson_diagonal",
    "hutchinson_trace",
    "hvp",
]

PyTree = Any


def _check_like_params(caller: str, v: PyTree, params: PyTree) -> PyTree:
    """``v`` as arrays, after checking it has the tree structure, shapes and dtypes of ``params``
    (static facts: this runs at trace time under ``jit``). Messages name the leaf path."""
    leaves, structure = jax.tree_util.tree_flatten_with_path(v)
    like_leaves, like_structure = jax.tree_util.tree_flatten_with_path(params)
    if structure != like_structure:  # type: ignore[operator]  # jax's PyTreeDef alias is untyped
        paths = [quoted_path_label(p) for p, _ in leaves]
        like_paths = [quoted_path_label(p) for p, _ in like_leaves]
        only_params = ", ".join(p for p in like_paths if p not in set(paths)) or "none"
        only_v = ", ".join(p for p in paths if p not in set(like_paths)) or "none"
        raise ValueError(
            f"{caller}: `v` must have the tree structure of `params`; leaves only in params: "
            f"{only_params}, only in v: {only_v} (params: {like_structure}, v: {structure})"
        )
    out = []
    for (path, leaf), (_, like) in zip(leaves, like_leaves, strict=True):
        leaf, like = jnp.asarray(leaf), jnp.asarray(like)
        if leaf.shape != like.shape:
            raise ValueError(
                f"{caller}: `v` leaf {quoted_path_label(path)} has shape {leaf.shape}, but the params leaf "
                f"there has shape {like.shape} (v must be shaped like params, leaf by leaf)"
            )
        if leaf.dtype != like.dtype:
            raise ValueError(
                f"{caller}: `v` leaf {quoted_path_label(path)} has dtype {leaf.dtype}, but the params leaf "
                f"there has dtype {like.dtype} (cast v to the parameters' dtypes)"
            )
        out.append(leaf)
    return jax.tree_util.tree_unflatten(structure, out)


def hvp(loss_fn: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree) -> PyTree:
    r"""The Hessian-vector product :math:`H v` of ``loss_fn`` at ``params``.

    .. math::

        H v = \nabla^2_\theta L(\theta)\, v
            = \frac{\partial}{\partial t} \nabla_\theta L(\theta + t v) \Big|_{t=0}

    computed forward-over-reverse: the JVP (forward mode) of the gradient (reverse mode), at
    about the cost of two gradients and without forming :math:`H` (:math:`n \times n`).

    Args:
        loss_fn: ``loss_fn(params) -> scalar``, twice differentiable.
        params: the point :math:`\theta`, any pytree of float arrays.
        v: the direction, a pytree with the structure, shapes and dtypes of ``params``.

    Returns:
        :math:`H v`, a pytree like ``params``.

    Raises:
        ValueError: if ``v`` is not shaped like ``params`` (the message names the leaf path).

    Example:
        >>> import jax.numpy as jnp
        >>> loss_fn = lambda p: p["a"] * p["b"] ** 2  # H = [[0, 2b], [2b, 2a]]
        >>> hv = hvp(loss_fn, {"a": jnp.array(1.0), "b": jnp.array(3.0)},
        ...          {"a": jnp.array(1.0), "b": jnp.array(0.0)})
        >>> float(hv["a"]), float(hv["b"])
        (0.0, 6.0)

    References:
        Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation (1994).
    """
    v = _check_like_params("hvp", v, params)
    return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]


def gnvp(
    model_fn: Callable[[PyTree], PyTree],
    loss_of_outputs: Callable[[PyTree], jax.Array],
    params: PyTree,
    v: PyTree,
) -> PyTree:
    r"""The generalised Gauss-Newton-vector product :math:`G v = J^\top H_\ell J v`.

    For a loss :math:`L(\theta) = \ell(f(\theta))` of a model's outputs :math:`z = f(\theta)`:

    .. math::

        \nabla^2 L = \underbrace{J^\top H_\ell\, J}_{G}
            + \sum_k \frac{\partial \ell}{\partial z_k} \nabla^2_\theta f_k(\theta),
        \qquad J = \frac{\partial f}{\partial \theta}, \quad H_\ell = \nabla^2_z \ell(z)

    :math:`G` keeps the curvature of the loss in output space and drops the model's own second
    derivatives; it is positive semi-definite when :math:`\ell` is convex in :math:`z`
    (squared error, softmax cross-entropy). Three passes: :math:`u = J v` (``jax.jvp`` of the
    model), :math:`w = H_\ell u` (forward-over-reverse in output space), :math:`J^\top w`
    (``jax.vjp`` of the model).

    Args:
        model_fn: ``model_fn(params) -> outputs`` (any pytree of arrays, e.g. the logits of a
            whole batch: close over the inputs).
        loss_of_outputs: ``loss_of_outputs(outputs) -> scalar`` (close over the targets).
        params: the point :math:`\theta`, any pytree of float arrays.
        v: a pytree with the structure, shapes and dtypes of ``params``.

    Returns:
        :math:`G v`, a pytree like ``params``.

    Raises:
        ValueError: if ``v`` is not shaped like ``params`` (the message names the leaf path).

    Example:
        >>> import jax.numpy as jnp
        >>> model_fn = lambda p: p["w"] ** 2          # J = diag(2 w)
        >>> loss_of_outputs = lambda z: jnp.sum(z ** 2)  # H_l = 2 I
        >>> w = {"w": jnp.array([1.0, 2.0])}
        >>> gnvp(model_fn, loss_of_outputs, w, {"w": jnp.array([1.0, 1.0])})["w"].tolist()
        [8.0, 32.0]

    References:
        Schraudolph, "Fast curvature matrix-vector products for second-order gradient
        descent", Neural Computation (2002). Martens, "New insights and perspectives on the
        natural gradient method", JMLR (2020), section 8.
    """
    v = _check_like_params("gnvp", v, params)
    outputs, jv = jax.jvp(model_fn, (params,), (v,))  # u = J v
    hjv = jax.jvp(jax.grad(loss_of_outputs), (outputs,), (jv,))[1]  # w = H_l u
    _, pullback = jax.vjp(model_fn, params)
    return pullback(hjv)[0]  # J^T w


def _flat_hvp(loss_fn: Callable[[PyTree], jax.Array], params: PyTree) -> tuple[jax.Array, Callable]:
    """``(theta, matvec)``: the flattened parameters ``(n,)`` and ``z (n,) -> H z (n,)``, with
    the gradient linearised once so every product reuses its forward pass."""
    flat, unravel = ravel_pytree(params)
    _, linear = jax.linearize(jax.grad(loss_fn), params)
    return flat, lambda z: ravel_pytree(linear(unravel(z)))[0]


def _probe_products(loss_fn: Callable, params: PyTree, key: Any, num_samples: int, caller: str):
    """Rademacher probes ``Z`` ``(S, n)`` and their products ``H Z`` ``(S, n)``, vmapped."""
    num_samples = check_positive_int("num_samples", num_samples)
    check_prng_key("key", key)
    flat, matvec = _flat_hvp(loss_fn, params)
    if not jnp.issubdtype(flat.dtype, jnp.floating):
        raise ValueError(f"{caller}: `params` must hold float arrays, got dtype {flat.dtype}")
    probes = jax.random.rademacher(key, (num_samples, flat.size), dtype=flat.dtype)  # (S, n)
    return probes, jax.vmap(matvec)(probes)  # (S, n)


def hutchinson_trace(
    loss_fn: Callable[[PyTree], jax.Array], params: PyTree, *, key: jax.Array, num_samples: int
) -> jax.Array:
    r"""Hutchinson's unbiased estimate of :math:`\operatorname{tr} H`, from Rademacher probes.

    .. math::

        \widehat{\operatorname{tr}}\,H = \frac{1}{S} \sum_{s=1}^{S} z_s^\top H z_s, \qquad
        z_s \in \{-1, +1\}^n \text{ i.i.d. uniform}, \qquad
        \operatorname{Var} = \frac{2}{S} \sum_{i \neq j} H_{ij}^2

    Unbiased since :math:`E[z z^\top] = I`; Rademacher probes give the smallest variance of any
    probe with independent entries (no diagonal term, unlike Gaussian probes'
    :math:`\tfrac{2}{S}\|H\|_F^2`). The error shrinks as :math:`1/\sqrt{S}`. The :math:`S`
    Hessian-vector products are vmapped over the probes.

    Args:
        loss_fn: ``loss_fn(params) -> scalar``.
        params: the point, any pytree of float arrays (flattened with ``ravel_pytree``).
        key: the PRNG key of the probes.
        num_samples: the number of probes :math:`S \ge 1` (a Python int).

    Returns:
        The estimate, a scalar in the parameters' dtype.

    Raises:
        ValueError: if ``num_samples`` is not a positive integer, or ``key`` not a PRNG key.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> loss_fn = lambda p: jnp.sum(p ** 2)  # H = 2 I: diagonal, so the estimate is exact
        >>> float(hutchinson_trace(loss_fn, jnp.ones(5), key=jax.random.key(0), num_samples=3))
        10.0

    References:
        Hutchinson (1990), cited in the module docstring. Avron and Toledo, "Randomized
        algorithms for estimating the trace of an implicit symmetric positive semi-definite
        matrix", JACM (2011).
    """
    probes, products = _probe_products(loss_fn, params, key, num_samples, "hutchinson_trace")
    return jnp.mean(jnp.sum(probes * products, axis=1))


def hutchinson_diagonal(
    loss_fn: Callable[[PyTree], jax.Array], params: PyTree, *, key: jax.Array, num_samples: int
) -> PyTree:
    r"""An unbiased estimate of the Hessian's diagonal, a pytree like ``params``.

    .. math::

        \widehat{\operatorname{diag}}\,H = \frac{1}{S} \sum_{s=1}^{S} z_s \odot H z_s, \qquad
        \operatorname{Var}\big[\widehat{H}_{ii}\big] = \frac{1}{S} \sum_{j \neq i} H_{ij}^2

    with i.i.d. Rademacher probes :math:`z_s` (entry :math:`i` of :math:`z \odot Hz` is
    :math:`H_{ii} + \sum_{j \ne i} H_{ij} z_i z_j`, whose mean is :math:`H_{ii}`). This is the
    estimator behind AdaHessian's preconditioner.

    Args:
        loss_fn: ``loss_fn(params) -> scalar``.
        params: the point, any pytree of float arrays.
        key: the PRNG key of the probes.
        num_samples: the number of probes :math:`S \ge 1` (a Python int).

    Returns:
        The estimated diagonal, a pytree like ``params``.

    Raises:
        ValueError: if ``num_samples`` is not a positive integer, or ``key`` not a PRNG key.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> loss_fn = lambda p: jnp.sum(p["w"] ** 3)  # diagonal Hessian 6 w: estimated exactly
        >>> d = hutchinson_diagonal(loss_fn, {"w": jnp.array([1.0, -1.0])},
        ...                         key=jax.random.key(0), num_samples=2)
        >>> d["w"].tolist()
        [6.0, -6.0]

    References:
        Bekas, Kokiopoulou and Saad (2007), cited in the module docstring. Yao et al.,
        "ADAHESSIAN: an adaptive second order optimizer for machine learning", AAAI (2021).
    """
    probes, products = _probe_products(loss_fn, params, key, num_samples, "hutchinson_diagonal")
    unravel = ravel_pytree(params)[1]
    return unravel(jnp.mean(probes * products, axis=0))  # (n,) -> pytree


def hessian_top_eigenvalues(
    loss_fn: Callable[[PyTree], jax.Array],
    params: PyTree,
    k: int,
    *,
    key: jax.Array,
    num_iterations: int | None = None,
) -> jax.Array:
    r"""The ``k`` largest (algebraic) eigenvalues of the Hessian, by Lanczos on :func:`hvp`.

    .. math::

        \lambda_1 \ge \lambda_2 \ge \dots \ge \lambda_k, \qquad H u_i = \lambda_i u_i, \qquad
        H = \nabla^2_\theta L(\theta) \in \mathbb{R}^{n \times n}

    The parameters are flattened (``ravel_pytree``) to :math:`n` numbers and
    :func:`fdl.spectral.top_eigenpairs` runs ``num_iterations`` Lanczos steps from a random
    Gaussian start vector, one Hessian-vector product each (the gradient is linearised once).
    :math:`\lambda_1` is the *sharpness* of the loss at ``params``: gradient descent with step
    :math:`\eta` is unstable along :math:`u_1` when :math:`\lambda_1 > 2/\eta`.

    Args:
        loss_fn: ``loss_fn(params) -> scalar``.
        params: the point, any pytree of float arrays.
        k: how many eigenvalues, ``1 <= k <= n`` (a Python int).
        key: the PRNG key of the Lanczos start vector.
        num_iterations: Lanczos steps (Krylov dimension), at least ``k`` and at most ``n``;
            ``None`` takes ``min(n, max(2 k + 20, 40))``. With ``n`` steps the result is exact
            up to rounding; the extreme eigenvalues converge in far fewer.

    Returns:
        The eigenvalues, shape ``(k,)``, in descending order.

    Raises:
        ValueError: if ``k`` is not an integer in ``[1, n]``, ``num_iterations`` not an integer
            in ``[k, n]``, or ``key`` not a PRNG key.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> loss_fn = lambda p: 0.5 * jnp.sum(jnp.array([5.0, 3.0, 1.0]) * p ** 2)
        >>> top = hessian_top_eigenvalues(loss_fn, jnp.zeros(3), 2, key=jax.random.key(0))
        >>> [round(float(x), 4) for x in top]
        [5.0, 3.0]

    References:
        Lanczos, "An iteration method for the solution of the eigenvalue problem of linear
        differential and integral operators", J. Res. Nat. Bur. Standards (1950). Ghorbani,
        Krishnan and Xiao, "An investigation into neural net optimization via Hessian eigenvalue
        density", ICML (2019).
    """
    check_prng_key("key", key)
    flat, matvec = _flat_hvp(loss_fn, params)
    n = flat.size
    k = check_positive_int("k", k)
    if k > n:
        raise ValueError(f"`k` must be <= the number of parameters ({n}), got {k}")
    if num_iterations is None:
        num_iterations = min(n, max(2 * k + 20, 40))
    num_iterations = check_positive_int("num_iterations", num_iterations)
    if not k <= num_iterations <= n:
        raise ValueError(
            f"`num_iterations` must be in [k, n] = [{k}, {n}] (the Krylov space must hold k "
            f"eigenvectors and cannot exceed the number of parameters), got {num_iterations}"
        )
    v0 = jax.random.normal(key, (n,), dtype=flat.dtype)  # (n,)
    eigenvalues, _ = spectral.top_eigenpairs(matvec, v0, k, num_iterations=num_iterations)
    return eigenvalues
