r"""Sophia: momentum divided by a clipped, running estimate of the Hessian's diagonal.

Sophia (Liu et al., 2023) is a light second-order method: it keeps an exponential moving
average :math:`h` of an estimate of the diagonal of the Hessian, refreshed every few steps,
and steps along the momentum :math:`m` divided elementwise by :math:`\max(\gamma h,
\epsilon)`, clipped to :math:`[-\rho, \rho]`:

.. math::

    u = -\eta\, \operatorname{clip}\!\Big(\frac{m}{\max(\gamma h, \epsilon)}, \rho\Big).

Where the curvature is large the step shrinks (Newton-like); where the estimate is tiny or
negative (non-convex directions) the clip bounds it. The diagonal is estimated with
Hutchinson's trick, :math:`\operatorname{diag}(H) = \mathbb{E}[z \odot H z]` for random signs
:math:`z` (:func:`hutchinson_estimator_diag_hessian`), which costs one Hessian-vector
product.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    as_concrete_number,
    check_decay,
    check_non_negative,
    check_real,
    check_state_dtype,
    check_update_shapes,
    names_errors,
)
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    safe_increment,
    scale_by_required_learning_rate,
    with_extra_args_support,
)
from fdl.optim.weight_decay import Mask, add_decayed_weights
from fdl.tree import bias_correction, cast_like, float_dtype, floats, update_moment, zeros_like

__all__ = [
    "HutchinsonState",
    "SophiaState",
    "hutchinson_estimator_diag_hessian",
    "scale_by_sophia",
    "sophia",
]

PyTree = Any
Scalar = float | jax.Array


# ----------------------------------------------------------------------------- the Hessian diagonal


class HutchinsonState(NamedTuple):
    """:func:`hutchinson_estimator_diag_hessian`'s state: the PRNG key of the next draw."""

    key: jax.Array


def _default_key() -> jax.Array:
    return jax.random.PRNGKey(0)


@names_errors("hutchinson_estimator_diag_hessian")
def hutchinson_estimator_diag_hessian(random_seed: Any | None = None) -> GradientTransformation:
    r"""Hutchinson's estimate of the Hessian's diagonal of ``obj_fn`` at ``params``.

    .. math::

        z_\ell \sim \text{Rademacher} \ (\pm 1 \text{ each with probability } \tfrac12), \qquad
        u = z \odot \big(\nabla^2 f(\theta)\, z\big)

    with :math:`f` = ``obj_fn``, :math:`\theta` = ``params``. The estimate is unbiased,
    :math:`\mathbb{E}[z_i (Hz)_i] = \sum_j H_{ij}\, \mathbb{E}[z_i z_j] = H_{ii}`, and costs
    one Hessian-vector product (forward-over-reverse, ``jax.jvp`` of ``jax.grad``). The
    incoming updates are ignored.

    The draws follow optax's key use, so both give the same signs from the same key: each
    call splits the state's key into (next key, draw key), splits the draw key into one key
    per leaf (in ``jax.tree.leaves`` order) and draws float32 signs with
    ``jax.random.rademacher``.

    Args:
      random_seed: the first PRNG key (``jax.random.PRNGKey(seed)`` or
        ``jax.random.key(seed)``); ``None`` for ``jax.random.PRNGKey(0)``, as optax.

    Returns:
      A transformation with state :class:`HutchinsonState` ``(key,)`` whose ``update``
      needs ``params`` and ``obj_fn=`` (a function of the parameters alone returning a scalar
      loss).

    Raises:
      TypeError: a ``random_seed`` that is not a JAX array.
      ValueError: at ``update``, no ``params`` or no ``obj_fn``.

    >>> import jax.numpy as jnp
    >>> est = hutchinson_estimator_diag_hessian()
    >>> params = jnp.asarray([1.0, 2.0])
    >>> obj_fn = lambda w: jnp.sum(jnp.asarray([3.0, 5.0]) * w**2)  # a diagonal Hessian: 6, 10
    >>> u, _ = est.update(params, est.init(params), params, obj_fn=obj_fn)
    >>> u.tolist()  # exact for a diagonal Hessian: z_i^2 = 1
    [6.0, 10.0]

    References:
      Hutchinson, *A stochastic estimator of the trace of the influence matrix for Laplacian
      smoothing splines*, 1990. Bekas, Kokiopoulou and Saad, *An estimator for the diagonal
      of a matrix*, 2007.

    Differs from optax:
      The signs are cast to each parameter's own dtype (optax casts them all to the lowest
      dtype of the tree, and then ``jax.jvp`` refuses a tree of mixed dtypes); :math:`\pm 1`
      is exact in every float dtype, so the values agree wherever optax runs.
    """
    if random_seed is not None and not isinstance(random_seed, jax.Array):
        raise TypeError(
            "`random_seed` must be a JAX PRNG key (jax.random.PRNGKey(seed) or "
            f"jax.random.key(seed)) or None, got {random_seed!r}"
        )

    def init(params: PyTree) -> HutchinsonState:
        del params
        return HutchinsonState(key=_default_key() if random_seed is None else random_seed)

    def update(updates, state, params=None, obj_fn=None, **extra_args):
        del updates, extra_args
        if params is None:
            raise ValueError(
                "hutchinson_estimator_diag_hessian: `params` must be given to update (the Hessian "
                "is taken there): call update(updates, state, params, obj_fn=obj_fn)"
            )
        if obj_fn is None:
            raise ValueError(
                "hutchinson_estimator_diag_hessian: update needs `obj_fn=`, the loss as a function "
                "of the parameters alone (e.g. obj_fn=lambda p: loss(p, batch))"
            )
        key, draw = jax.random.split(state.key)
        leaves, treedef = jax.tree.flatten(params)
        leaf_keys = jax.random.split(draw, len(leaves))
        signs = [
            jax.random.rademacher(k, jnp.shape(p), jnp.float32).astype(float_dtype(p))
            for k, p in zip(leaf_keys, leaves, strict=True)
        ]
        z = jax.tree.unflatten(treedef, signs)
        primals = jax.tree.map(lambda p, s: jnp.asarray(p).astype(s.dtype), params, z)
        hz = jax.jvp(jax.grad(obj_fn), (primals,), (z,))[1]  # H z
        return jax.tree.map(lambda h, s: h * s.astype(h.dtype), hz, z), HutchinsonState(key=key)

    return GradientTransformation(init, update)


_DEFAULT_HESSIAN = hutchinson_estimator_diag_hessian()


# --------------------------------------------------------------------------------------- Sophia


class SophiaState(NamedTuple):
    """:func:`scale_by_sophia`'s state (optax's fields).

    Attributes:
      count: the step count :math:`t` after the step (int32).
      mu: the momentum :math:`m` (``mu_dtype``).
      nu: the moving average :math:`h` of the Hessian-diagonal estimates (parameters' dtype).
      hessian_fn_state: the state of ``hessian_diagonal_fn``.
    """

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    mu: PyTree
    nu: PyTree
    hessian_fn_state: Any


def _steps(name: str, value: Any, least: int, why: str) -> Any:
    """A whole number ``>= least`` as an int if concrete, as an int32 array if traced."""
    check_real(name, value)
    number = as_concrete_number(value)
    if number is None:
        return jnp.asarray(value).astype(jnp.int32)
    if number < least or number != int(number):
        raise ValueError(f"`{name}` must be a whole number >= {least} ({why}), got {value!r}")
    return int(number)


@names_errors("scale_by_sophia")
def scale_by_sophia(
    b1: Scalar = 0.965,
    b2: Scalar = 0.99,
    eps: Scalar = 1e-8,
    gamma: Scalar = 0.01,
    clip_threshold: Scalar | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation = _DEFAULT_HESSIAN,
    mu_dtype: Any | None = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    r"""Rescale updates by Sophia: momentum over the clipped Hessian-diagonal average.

    .. math::

        m_t &= \text{b1}\; m_{t-1} + (1 - \text{b1})\, g_t, \qquad
        \hat m_t = \frac{m_t}{1 - \text{b1}^t} \\
        u_t &= \operatorname{clip}\!\Big(\frac{\hat m_t}{\max(\text{gamma}\; h_{t-1},\
            \text{eps})},\ -\text{clip\_threshold},\ \text{clip\_threshold}\Big) \\
        h_t &= \begin{cases}
            \text{b2}\; h_{t-1} + (1 - \text{b2})\, \hat H_t & (t - 1) \bmod
                \text{update\_interval} = 0 \\
            h_{t-1} & \text{otherwise}
        \end{cases}

    for :math:`t = 1, 2, \ldots`, with :math:`m_0 = h_0 = 0` and :math:`\hat H_t` the output of
    ``hessian_diagonal_fn`` (given the gradients, ``params`` and ``update``'s extra keyword
    arguments, e.g. ``obj_fn``). The step uses :math:`h_{t-1}`, the average *before* this
    step's estimate; the first step divides by ``eps``, so it is clipped. ``h`` is not
    bias-corrected: the effective decay of ``b2`` is :math:`1 - (1 - \text{b2}) /
    \text{update\_interval}` per step.

    Args:
      b1: decay of the momentum, in ``[0, 1)``.
      b2: decay of the Hessian-diagonal average, in ``[0, 1)``.
      eps: floor of the denominator, ``>= 0``.
      gamma: scale of the Hessian diagonal, ``>= 0`` (raise it if too many updates clip).
      clip_threshold: :math:`\rho \ge 0`, the largest update magnitude; ``None``: no clip.
      update_interval: steps between two Hessian estimates, a whole number >= 1.
      hessian_diagonal_fn: the estimator (default :func:`hutchinson_estimator_diag_hessian`
        with key ``PRNGKey(0)``); fdl's or optax's. Under ``pmap``, it must average its
        estimate across devices itself.
      mu_dtype: dtype to store :math:`m` in; default the parameters'.
      verbose: print the *win rate* (the fraction of updates not clipped; the authors advise
        0.1 to 0.5) with ``jax.debug.print`` every ``print_win_rate_every_n_steps`` steps.
      print_win_rate_every_n_steps: how often to print, a whole number >= 0 (0: never).

    Returns:
      A transformation with state :class:`SophiaState` ``(count, mu, nu, hessian_fn_state)``
      whose ``update`` needs ``params`` (and what ``hessian_diagonal_fn`` needs: ``obj_fn=``
      for the default).

    Raises:
      TypeError: a non-numeric hyperparameter, a ``hessian_diagonal_fn`` without ``init`` and
        ``update``.
      ValueError: ``b1``/``b2`` outside ``[0, 1)``; a negative ``eps``, ``gamma`` or
        ``clip_threshold``; ``update_interval`` not a whole number >= 1;
        ``print_win_rate_every_n_steps`` not a whole number >= 0; at ``update``, no
        ``params``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_sophia(b1=0.0, b2=0.5, gamma=1.0, clip_threshold=None)
    >>> params = jnp.asarray([1.0])
    >>> obj_fn = lambda w: jnp.sum(2.0 * w**2)  # Hessian 4
    >>> state = opt.init(params)
    >>> u, state = opt.update(jnp.asarray([4.0]), state, params, obj_fn=obj_fn)
    >>> float(state.nu[0])  # (1 - 0.5) * 4
    2.0
    >>> u, state = opt.update(jnp.asarray([4.0]), state, params, obj_fn=obj_fn)
    >>> float(u[0])  # m_hat / (gamma * h) = 4 / 2
    2.0

    References:
      Liu, Li, Hall, Liang and Ma, `Sophia: A Scalable Stochastic Second-order Optimizer for
      Language Model Pre-training <https://arxiv.org/abs/2305.14342>`_, 2023.

    Differs from optax:
      The updates keep the gradients' dtype, and the Hessian average keeps its stored dtype.
      Negative ``eps``, ``gamma``, ``clip_threshold`` and a non-whole ``update_interval`` are
      refused (optax does not check). With ``verbose`` and ``print_win_rate_every_n_steps=0``
      nothing is printed (optax takes a remainder by zero).
    """
    check_decay("b1", b1)
    check_decay("b2", b2)
    check_non_negative("eps", eps)
    check_non_negative("gamma", gamma)
    if clip_threshold is not None:
        check_non_negative("clip_threshold", clip_threshold)
    interval = _steps("update_interval", update_interval, 1, "steps between two Hessian estimates")
    every = _steps("print_win_rate_every_n_steps", print_win_rate_every_n_steps, 0, "0: never")
    if not (
        callable(getattr(hessian_diagonal_fn, "init", None))
        and callable(getattr(hessian_diagonal_fn, "update", None))
    ):
        raise TypeError(
            "`hessian_diagonal_fn` must be a gradient transformation with init and update "
            f"(e.g. hutchinson_estimator_diag_hessian()), got {hessian_diagonal_fn!r}"
        )
    estimator = with_extra_args_support(hessian_diagonal_fn)
    mu_dtype = _dtypes.canonical(mu_dtype)

    def init(params: PyTree) -> SophiaState:
        check_state_dtype("mu_dtype", mu_dtype, params)
        return SophiaState(
            count=jnp.zeros([], jnp.int32),
            mu=zeros_like(params, mu_dtype),
            nu=zeros_like(params),
            hessian_fn_state=estimator.init(params),
        )

    def update(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError(
                "scale_by_sophia: `params` must be given to update (the Hessian diagonal is "
                "estimated there): call opt.update(grads, state, params, obj_fn=obj_fn)"
            )
        grads = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_sophia", grads, params, "nu", state.nu)
        count = safe_increment(state.count)
        mu = update_moment(grads, state.mu, b1, 1)
        mu_hat = bias_correction(mu, b1, count)

        def ratio(m, h):
            dtype = _dtypes.result_type(m, h, gamma, eps)
            h = jnp.asarray(gamma, dtype) * h.astype(dtype)
            return m.astype(dtype) / jnp.maximum(h, jnp.asarray(eps, dtype))

        new_updates = jax.tree.map(ratio, mu_hat, state.nu)
        if clip_threshold is not None:
            if verbose:
                _print_win_rate(new_updates, clip_threshold, count, every)
            new_updates = jax.tree.map(
                lambda u: jnp.clip(
                    u, -jnp.asarray(clip_threshold, u.dtype), jnp.asarray(clip_threshold, u.dtype)
                ),
                new_updates,
            )

        def refresh(hessian_state, nu):
            diagonal, hessian_state = estimator.update(grads, hessian_state, params=params, **extra_args)
            return hessian_state, cast_like(update_moment(diagonal, nu, b2, 1), nu)

        hessian_fn_state, nu = jax.lax.cond(
            state.count % interval == 0,
            refresh,
            lambda hessian_state, nu: (hessian_state, nu),
            state.hessian_fn_state,
            state.nu,
        )
        new_state = SophiaState(
            count=count, mu=cast_like(mu, state.mu), nu=nu, hessian_fn_state=hessian_fn_state
        )
        return cast_like(new_updates, grads), new_state

    return GradientTransformation(init, update)


def _print_win_rate(updates: PyTree, clip_threshold: Any, count: jax.Array, every: Any) -> None:
    """Print the fraction of updates below ``clip_threshold`` in magnitude, every ``every``
    steps (never when ``every`` is 0)."""
    leaves = jax.tree.leaves(updates)
    kept = sum(jnp.sum(jnp.abs(u) < jnp.asarray(clip_threshold, u.dtype)) for u in leaves)
    size = sum(u.size for u in leaves)
    due = jnp.logical_and(every > 0, count % jnp.maximum(every, 1) == 0)
    jax.lax.cond(
        due,
        lambda: jax.debug.print("Sophia optimizer win rate: {}", kept / size),
        lambda: None,
    )


@names_errors("sophia")
def sophia(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.965,
    b2: Scalar = 0.99,
    eps: Scalar = 1e-8,
    weight_decay: Scalar = 1e-4,
    weight_decay_mask: Mask | None = None,
    gamma: Scalar = 0.01,
    clip_threshold: Scalar | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation = _DEFAULT_HESSIAN,
    mu_dtype: Any | None = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    r"""Sophia: :func:`scale_by_sophia`, decoupled weight decay, then the learning rate.

    .. math:: u_t = -\text{learning\_rate}_t\, \big(s_t + \text{weight\_decay}\;\theta_t\big)

    with :math:`s_t` the update of :func:`scale_by_sophia` (``chain(scale_by_sophia(...),
    add_decayed_weights(weight_decay, weight_decay_mask), scale_by_learning_rate(learning_rate))``,
    as optax composes it). ``update`` needs ``params`` and, for the default Hutchinson
    estimator, ``obj_fn=`` the loss as a function of the parameters alone (``lambda p:
    loss(p, batch)``); other keyword arguments go to ``hessian_diagonal_fn``.

    Args:
      learning_rate: :math:`\eta \ge 0`, a number or a schedule.
      weight_decay: :math:`\lambda \ge 0`.
      weight_decay_mask: which leaves to decay (see :func:`fdl.optim.masked`); ``None`` all.
      b1, b2, eps, gamma, clip_threshold, update_interval, hessian_diagonal_fn, mu_dtype,
        verbose, print_win_rate_every_n_steps: as in :func:`scale_by_sophia`.

    Returns:
      The optimizer (state ``(SophiaState, weight-decay state, step-size state)``).

    Raises:
      TypeError, ValueError: as :func:`scale_by_sophia`, and for a negative ``learning_rate``
        or ``weight_decay``.

    >>> import jax, jax.numpy as jnp
    >>> loss = lambda w: jnp.sum(w**2)
    >>> opt = sophia(learning_rate=0.1, weight_decay=0.0)
    >>> params = jnp.asarray([1.0, -2.0])
    >>> u, state = opt.update(jax.grad(loss)(params), opt.init(params), params, obj_fn=loss)
    >>> u.tolist()  # the first step divides by eps: clipped to -0.1 * sign(g)
    [-0.10000000149011612, 0.10000000149011612]

    References:
      Liu, Li, Hall, Liang and Ma, `Sophia: A Scalable Stochastic Second-order Optimizer for
      Language Model Pre-training <https://arxiv.org/abs/2305.14342>`_, 2023.
      `Levanter <https://github.com/stanford-crfm/levanter>`_.
    """
    check_non_negative("weight_decay", weight_decay)
    return chain(
        scale_by_sophia(
            b1=b1,
            b2=b2,
            eps=eps,
            gamma=gamma,
            clip_threshold=clip_threshold,
            update_interval=update_interval,
            hessian_diagonal_fn=hessian_diagonal_fn,
            mu_dtype=mu_dtype,
            verbose=verbose,
            print_win_rate_every_n_steps=print_win_rate_every_n_steps,
        ),
        add_decayed_weights(weight_decay, mask=weight_decay_mask),
        scale_by_required_learning_rate(learning_rate),
    )
