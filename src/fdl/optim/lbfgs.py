r"""L-BFGS: a quasi-Newton direction from the last few steps, without forming a matrix.

Newton's method steps along :math:`-H^{-1} g`. BFGS builds an approximation :math:`P_k` of the
inverse Hessian :math:`H^{-1}` from the *secant pairs* of the steps taken so far,

.. math::

    \delta w_j = w_{j+1} - w_j, \qquad \delta u_j = g_{j+1} - g_j, \qquad
    \rho_j = 1 / \langle \delta u_j, \delta w_j\rangle,

each update making :math:`P` satisfy :math:`P\, \delta u_j = \delta w_j` (the curvature seen
along the last step). L-BFGS keeps only the last :math:`m` pairs (``memory_size``), and never
forms :math:`P_k` (a :math:`p \times p` matrix): it computes :math:`P_k g_k` by the *two-loop
recursion*, :math:`O(m p)` work (Nocedal & Wright, Algorithm 7.4). A line search then picks the
step along :math:`-P_k g_k` (:mod:`fdl.optim.linesearch`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_update_shapes, check_whole_steps, names_errors
from fdl.optim._inner import axpy, real_vdot, scaled
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    identity,
    safe_increment,
    scale,
    scale_by_required_learning_rate,
)
from fdl.optim.zoom_linesearch import scale_by_zoom_linesearch
from fdl.tree import floats, norm, zeros_like

__all__ = ["ScaleByLBFGSState", "scale_by_lbfgs", "lbfgs", "precondition_by_lbfgs"]

PyTree = Any


class ScaleByLBFGSState(NamedTuple):
    r"""The state of :func:`scale_by_lbfgs`, as optax's.

    ``count`` (int32) is the step :math:`k`; ``params`` and ``updates`` are :math:`w_{k-1}`
    and :math:`g_{k-1}`, the previous step's; ``diff_params_memory`` and
    ``diff_updates_memory`` stack the last :math:`m` pairs :math:`\delta w_j`,
    :math:`\delta u_j` along a leading axis of length ``memory_size`` (each leaf of shape
    ``(memory_size, *param_shape)``), and ``weights_memory`` (``(memory_size,)``, the default
    float dtype) their :math:`\rho_j`. Pair :math:`j` lives in slot :math:`j \bmod m`; empty
    slots hold zeros (:math:`\rho = 0`: a no-op in the recursion)."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    params: PyTree
    updates: PyTree
    diff_params_memory: PyTree
    diff_updates_memory: PyTree
    weights_memory: jax.Array


def _slot(tree: PyTree, index: jax.Array) -> PyTree:
    return jax.tree.map(lambda x: x[index], tree)


def _times(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a * b`` in their promoted dtype (a float32 weight times a bfloat16 product)."""
    dtype = _dtypes.result_type(a, b)
    return a.astype(dtype) * b.astype(dtype)


def precondition_by_lbfgs(
    updates: PyTree,
    diff_params_memory: PyTree,
    diff_updates_memory: PyTree,
    weights_memory: jax.Array,
    identity_scale: Any,
    memory_idx: Any,
) -> PyTree:
    r""":math:`P\, g` by the two-loop recursion, :math:`P` the L-BFGS inverse-Hessian
    approximation of the stored pairs.

    With :math:`g` = ``updates``, :math:`\gamma` = ``identity_scale`` and the pairs
    :math:`(\delta w_j, \delta u_j, \rho_j)` taken from newest to oldest (slots
    ``memory_idx - 1, memory_idx - 2, ...`` modulo :math:`m`):

    .. math::

        q &\leftarrow g; \quad \text{newest to oldest:}\ \
            \alpha_j = \rho_j \operatorname{Re}\langle \delta w_j, q\rangle,\ \
            q \leftarrow q - \alpha_j\, \delta u_j \\
        r &\leftarrow \gamma\, q; \quad \text{oldest to newest:}\ \
            \beta_j = \rho_j \operatorname{Re}\langle \delta u_j, r\rangle,\ \
            r \leftarrow r + (\alpha_j - \beta_j)\, \delta w_j

    and :math:`r = P g`, where :math:`P = V_{k-1}^\top \cdots V_{k-m}^\top (\gamma I)
    V_{k-m} \cdots V_{k-1} + \ldots` is the BFGS recursion
    :math:`P_{j+1} = V_j^\top P_j V_j + \rho_j\, \delta w_j \delta w_j^\top`,
    :math:`V_j = I - \rho_j\, \delta u_j\, \delta w_j^\top`, started at :math:`\gamma I`.

    Args:
      updates: the tree :math:`g` to multiply.
      diff_params_memory, diff_updates_memory: the stacked pairs (leading axis :math:`m`).
      weights_memory: :math:`\rho`, shape ``(m,)``.
      identity_scale: :math:`\gamma`, a scalar.
      memory_idx: the slot of the oldest pair (the next to be overwritten).

    Returns:
      :math:`P g`, in the dtypes of ``updates``.

    >>> import jax.numpy as jnp
    >>> dw, du = jnp.asarray([[1.0, 0.0]]), jnp.asarray([[2.0, 0.0]])  # one pair: H = 2 on e1
    >>> precondition_by_lbfgs(jnp.asarray([4.0, 4.0]), dw, du, jnp.asarray([0.5]), 1.0, 0).tolist()
    [2.0, 4.0]
    """
    size = weights_memory.shape[0]
    start = jnp.asarray(memory_idx, jnp.int32)
    order = (start + jnp.arange(size, dtype=jnp.int32)) % size  # oldest to newest

    def newest_first(q: PyTree, i: jax.Array) -> tuple[PyTree, jax.Array]:
        alpha = _times(weights_memory[i], real_vdot(_slot(diff_params_memory, i), q))
        return axpy(q, -alpha, _slot(diff_updates_memory, i)), alpha

    q, alphas = jax.lax.scan(newest_first, updates, order, reverse=True)
    r = scaled(identity_scale, q)

    def oldest_first(r: PyTree, i_alpha: tuple[jax.Array, jax.Array]) -> tuple[PyTree, jax.Array]:
        i, alpha = i_alpha
        beta = _times(weights_memory[i], real_vdot(_slot(diff_updates_memory, i), r))
        return axpy(r, alpha - beta, _slot(diff_params_memory, i)), beta

    r, _ = jax.lax.scan(oldest_first, r, (order, alphas))
    return r


@names_errors("scale_by_lbfgs")
def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> GradientTransformation:
    r"""Precondition the updates by L-BFGS's inverse-Hessian approximation: :math:`u_k = P_k g_k`.

    At step :math:`k` the pair of the last step enters the memory (in place of the oldest):

    .. math::

        \delta w_{k-1} = w_k - w_{k-1}, \quad \delta u_{k-1} = g_k - g_{k-1}, \quad
        \rho_{k-1} = \begin{cases} 1 / \operatorname{Re}\langle \delta u_{k-1},
            \delta w_{k-1}\rangle & \text{if it is} \ne 0 \\ 0 & \text{else} \end{cases}

    (nothing at :math:`k = 0`), then :math:`u_k = P_k g_k` by the two-loop recursion
    (:func:`precondition_by_lbfgs`) over the last ``memory_size`` pairs, from
    :math:`P = \gamma_k I`:

    .. math::

        \gamma_k = \begin{cases}
            \min(1,\ 1 / \lVert g_0\rVert) & k = 0 \\
            \operatorname{Re}\langle \delta u_{k-1}, \delta w_{k-1}\rangle
                / \lVert \delta u_{k-1}\rVert^2 & k > 0,\ \delta u_{k-1} \ne 0 \\
            1 & \text{else}
        \end{cases}
        \qquad \text{if scale\_init\_precond, else } \gamma_k = 1.

    The first step's :math:`\gamma_0` caps the step :math:`-u_0` at length 1, a heuristic of
    optax's (the references leave :math:`\gamma_0` open). The pair is stored *before* the
    direction is computed, so that a line search chained after it has moved the parameters by
    the time the next pair is formed. The output is a descent direction's opposite (as a
    gradient is): follow it with ``scale(-1.0)`` or a learning rate, then a line search, as
    :func:`lbfgs` does.

    Args:
      memory_size: :math:`m`, the number of pairs kept, a whole number ``>= 1`` (concrete: it
        sets the state's shapes).
      scale_init_precond: start from :math:`\gamma_k I` (else from :math:`I`).

    Returns:
      A transformation with state :class:`ScaleByLBFGSState`.

    Raises:
      TypeError: a non-numeric ``memory_size``.
      ValueError: a ``memory_size`` that is traced, fractional or below 1.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_lbfgs(memory_size=3)
    >>> u, state = opt.update(jnp.asarray([3.0, 4.0]), opt.init(jnp.zeros(2)), jnp.zeros(2))
    >>> [round(x, 6) for x in u.tolist()]  # the gradient over its norm: gamma_0 = 1 / 5
    [0.6, 0.8]

    References:
      Nocedal & Wright, *Numerical Optimization*, 2nd ed., Algorithms 7.4 and 7.5, 2006.
      Liu & Nocedal, *On the limited memory BFGS method for large scale optimization*,
      Mathematical Programming 45, 1989.
    """
    size = check_whole_steps("memory_size", memory_size, "the number of past steps kept")
    if size < 1:
        raise ValueError(f"`memory_size` must be >= 1 (the number of past steps kept), got {memory_size!r}")

    def init(params: PyTree) -> ScaleByLBFGSState:
        # called once per field: a state that holds one buffer twice cannot be donated
        stacked = lambda: jax.tree.map(
            lambda p: jnp.zeros((size, *jnp.shape(p)), jnp.result_type(p)), zeros_like(params)
        )
        return ScaleByLBFGSState(
            count=jnp.zeros([], jnp.int32),
            params=zeros_like(params),
            updates=zeros_like(params),
            diff_params_memory=stacked(),
            diff_updates_memory=stacked(),
            weights_memory=jnp.zeros([size], _dtypes.default_float()),
        )

    def update(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError(
                "scale_by_lbfgs.update needs `params` (it stores the steps' differences), got None"
            )
        updates, params = floats(updates), floats(params)  # integers as floats
        check_update_shapes("scale_by_lbfgs", updates, params, "params", state.params)
        k = state.count
        memory_idx, prev_idx = k % size, (k - 1) % size  # slots of pair k (next) and k - 1
        started = k > 0

        dw = jax.tree.map(lambda p, q: jnp.asarray(p) - q, params, state.params)
        du = jax.tree.map(lambda g, h: g - h, updates, state.updates)
        curvature = real_vdot(du, dw)
        weight = jnp.where(curvature == 0.0, 0.0, 1.0 / curvature)
        dw, du = (jax.tree.map(lambda x: jnp.where(started, x, jnp.zeros_like(x)), t) for t in (dw, du))
        weight = jnp.where(started, weight, jnp.zeros_like(weight))
        dw_memory = jax.tree.map(
            lambda m, x: m.at[prev_idx].set(x.astype(m.dtype)), state.diff_params_memory, dw
        )
        du_memory = jax.tree.map(
            lambda m, x: m.at[prev_idx].set(x.astype(m.dtype)), state.diff_updates_memory, du
        )
        weights = state.weights_memory.at[prev_idx].set(weight.astype(state.weights_memory.dtype))

        if scale_init_precond:
            numerator, denominator = real_vdot(du, dw), norm(du, squared=True)
            gamma = jnp.where(denominator > 0.0, numerator / denominator, 1.0)
            first = jnp.minimum(1.0, 1.0 / norm(jax.lax.stop_gradient(updates)))
            gamma = jnp.where(started, gamma, first.astype(gamma.dtype))
        else:
            gamma = jnp.ones([], weights.dtype)

        direction = precondition_by_lbfgs(updates, dw_memory, du_memory, weights, gamma, memory_idx)
        new_state = ScaleByLBFGSState(
            count=safe_increment(k),
            params=jax.tree.map(lambda p, s: jnp.asarray(p).astype(s.dtype), params, state.params),
            updates=jax.tree.map(lambda g, s: g.astype(s.dtype), updates, state.updates),
            diff_params_memory=dw_memory,
            diff_updates_memory=du_memory,
            weights_memory=weights,
        )
        return direction, new_state

    return GradientTransformation(init, update)


_DEFAULT_LINESEARCH = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")


@names_errors("lbfgs")
def lbfgs(
    learning_rate: ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: Any | None = _DEFAULT_LINESEARCH,
) -> GradientTransformation:
    r"""L-BFGS: the quasi-Newton direction :math:`-P_k g_k`, scaled by a line search.

    .. math::

        w_{k+1} = w_k - \eta_k\, P_k\, \nabla f(w_k)

    ``chain(scale_by_lbfgs(memory_size, scale_init_precond), scale(-1.0) or
    scale_by_learning_rate(learning_rate), linesearch)``, as optax composes it. The line search
    picks :math:`\eta_k`; its ``update`` needs optax's extra arguments, so the loop is
    optax's:

    .. code-block:: python

        value_and_grad = value_and_grad_from_state(f)
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)
        params = apply_updates(params, updates)

    Args:
      learning_rate: a fixed factor (number or schedule) on the direction; ``None`` (the
        default) leaves the step size to the line search.
      memory_size: the number of secant pairs kept (:func:`scale_by_lbfgs`).
      scale_init_precond: see :func:`scale_by_lbfgs`.
      linesearch: the transformation that scales the direction: by default, as in optax,
        ``scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")``
        (:mod:`fdl.optim.zoom_linesearch`, the strong Wolfe conditions); or e.g.
        ``scale_by_backtracking_linesearch(max_backtracking_steps=15, store_grad=True)``;
        ``None`` for none (a fixed step: no extra arguments needed).

    Returns:
      The optimizer (state ``(ScaleByLBFGSState, step-size state, line-search state)``).

    Raises:
      TypeError: a ``linesearch`` that is not a transformation (nor ``None``).
      ValueError: a negative learning rate, or an invalid ``memory_size``.

    >>> import jax.numpy as jnp
    >>> from fdl.optim.linesearch import value_and_grad_from_state
    >>> f = lambda w: jnp.sum((w - 1.0) ** 2)
    >>> opt = lbfgs()  # the zoom line search
    >>> w, value_and_grad = jnp.zeros(2), value_and_grad_from_state(f)
    >>> state = opt.init(w)
    >>> for _ in range(3):
    ...     value, grad = value_and_grad(w, state=state)
    ...     u, state = opt.update(grad, state, w, value=value, grad=grad, value_fn=f)
    ...     w = w + u
    >>> [round(x, 4) for x in w.tolist()]
    [1.0, 1.0]

    Differs from PyTorch:
      ``torch.optim.LBFGS`` is the same two-loop recursion with the same initial scaling
      :math:`\gamma_k = s_{k-1}^\top y_{k-1} / y_{k-1}^\top y_{k-1}`, but one call of its
      ``step(closure)`` runs up to ``max_iter=20`` iterations (stopping when
      :math:`\lVert g \rVert_\infty \le` ``tolerance_grad`` or a step changes the loss or
      the parameters by less than ``tolerance_change``), where one ``update`` here is one
      iteration. It keeps ``history_size=100`` pairs (here ``memory_size=10``) and drops a pair
      with :math:`s^\top y \le 10^{-10}` (here only :math:`s^\top y = 0` gives the pair weight
      0). Without a line search its step is :math:`-\text{lr}\, P_k g_k`, the first one
      :math:`-\text{lr} \min(1, 1/\lVert g_0 \rVert_1)\, g_0` (an L1 norm; here the first
      direction is :math:`\min(1, 1/\lVert g_0 \rVert_2)\, g_0` with
      ``scale_init_precond``). Its ``line_search_fn="strong_wolfe"`` is a cubic-interpolation
      zoom of up to 25 evaluations with :math:`c_1 = 10^{-4}, c_2 = 0.9`, the same conditions
      as :func:`~fdl.optim.zoom_linesearch.scale_by_zoom_linesearch` (20 steps by default).

    References:
      Nocedal & Wright, *Numerical Optimization*, 2nd ed., Algorithms 7.4 and 7.5, 2006.
    """
    if linesearch is not None and not (
        callable(getattr(linesearch, "init", None)) and callable(getattr(linesearch, "update", None))
    ):
        raise TypeError(
            f"`linesearch` must be a gradient transformation (e.g. "
            f"scale_by_backtracking_linesearch(15)) or None, got {linesearch!r}"
        )
    step = scale(-1.0) if learning_rate is None else scale_by_required_learning_rate(learning_rate)
    return chain(
        scale_by_lbfgs(memory_size=memory_size, scale_init_precond=scale_init_precond),
        step,
        identity() if linesearch is None else linesearch,
    )
