r"""Muon: momentum whose matrix leaves are orthogonalized by a Newton-Schulz iteration.

For a weight matrix, the steepest-descent step under the spectral norm is not the gradient
:math:`G = U \Sigma V^\top` but its *orthogonal factor* :math:`U V^\top`: every singular
direction moves by the same amount. Muon (Jordan, 2024) applies this to the momentum
:math:`M` and approximates :math:`U V^\top` without an SVD, by iterating an odd polynomial
that pushes every singular value towards 1:

.. math::

    X_0 = M / (\lVert M \rVert_F + \epsilon), \qquad
    X_{k+1} = a X_k + \big(b A_k + c A_k^2\big) X_k, \quad A_k = X_k X_k^\top

With the default quintic coefficients :math:`(a, b, c) = (3.4445, -4.7750, 2.0315)` five steps
give singular values in about :math:`[0.7, 1.2]`, enough for training. Leaves that are not
matrices (biases, scalars) are trained by AdamW instead, as in optax's :func:`muon`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import (
    check_decay,
    check_learning_rate,
    check_non_negative,
    check_real,
    check_same_shapes,
    check_state_dtype,
    check_update_shapes,
    names_errors,
)
from fdl._checks.hyper import is_traced
from fdl.optim._adam import first_moment_hat
from fdl.optim.adam import adamw
from fdl.optim.base import (
    GradientTransformation,
    ScalarOrSchedule,
    chain,
    init_empty_state,
    safe_increment,
    scale_by_required_learning_rate,
)
from fdl.optim.freezing import partition
from fdl.optim.newton_schulz import (
    NS_COEFFS_PRESETS,
    PRECONDITIONINGS,
    STANDARD_NS_COEFFS,
    MuonDimensionNumbers,
    NsCoeffs,
    Preconditioning,
    check_coeffs,
    fans,
    is_dimension_numbers,
    orthogonalize_via_newton_schulz,
)
from fdl.optim.weight_decay import Mask, MaskedNode, add_decayed_weights
from fdl.tree import bias_correction, cast_like, floats, update_moment, zeros_like

__all__ = [
    "MuonDimensionNumbers",
    "MuonState",
    "orthogonalize_via_newton_schulz",
    "scale_by_shape",
    "scale_by_muon",
    "muon",
]

PyTree = Any
Scalar = float | jax.Array


class MuonState(NamedTuple):
    """The state of :func:`scale_by_muon`, with optax's field names and order."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    """The step count :math:`t` (int32)."""
    mu: PyTree
    """The momentum :math:`m`."""
    ns_coeffs: jax.Array
    """The Newton-Schulz coefficients, ``(3,)`` or one row per step ``(n, 3)``."""


def _resolve(dims: Any, updates: PyTree) -> PyTree:
    return dims(updates) if callable(dims) else dims


def _per_leaf(f: Callable, tree: PyTree, dims: PyTree, *rest: PyTree) -> PyTree:
    """``f(leaf, leaf_dims, *rest_leaves)`` over ``tree``; ``dims=None``: every leaf a matrix."""
    if dims is None:
        return jax.tree.map(lambda x, *r: f(x, None, *r), tree, *rest)
    return jax.tree.map(lambda x, d, *r: f(x, d, *r), tree, dims, *rest, is_leaf=is_dimension_numbers)


@names_errors("scale_by_shape")
def scale_by_shape(
    weight_dimension_numbers: Any | None = None,
    consistent_rms: Scalar | None = None,
) -> GradientTransformation:
    r"""Scale each matrix update by a factor of its shape.

    .. math::

        u = \sqrt{\max(1, \text{fan\_out} / \text{fan\_in})}\; g
        \quad\text{or, with consistent\_rms,}\quad
        u = \text{consistent\_rms} \sqrt{\max(\text{fan\_in}, \text{fan\_out})}\; g

    Args:
      weight_dimension_numbers: a tree of :class:`MuonDimensionNumbers` (or a function of
        the updates returning one); ``None``: every leaf is a ``(fan_in, fan_out)`` matrix.
      consistent_rms: the target root mean square of an orthogonal update (0.2 matches
        AdamW's), or ``None`` for the width scaling.

    Returns:
      A stateless transformation (``EmptyState``).

    Raises:
      ValueError: a negative ``consistent_rms``.

    >>> import jax.numpy as jnp
    >>> opt, g = scale_by_shape(), jnp.ones((1, 4))
    >>> u, _ = opt.update(g, opt.init(g))
    >>> u.tolist()  # sqrt(4 / 1)
    [[2.0, 2.0, 2.0, 2.0]]
    """
    if consistent_rms is not None:
        check_non_negative("consistent_rms", consistent_rms)

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        del params, extra_args

        def one(g, dims):
            fan_in, fan_out = fans(g, MuonDimensionNumbers() if dims is None else dims)
            if consistent_rms is None:
                factor = jnp.sqrt(jnp.asarray(max(1, fan_out / fan_in), jnp.float32))
            else:
                factor = jnp.sqrt(jnp.asarray(max(fan_in, fan_out), jnp.float32)) * jnp.asarray(
                    consistent_rms, jnp.float32
                )
            return factor.astype(g.dtype) * g

        return _per_leaf(one, updates, _resolve(weight_dimension_numbers, updates)), state

    return GradientTransformation(init_empty_state, update)


@names_errors("scale_by_muon")
def scale_by_muon(
    ns_coeffs: NsCoeffs = STANDARD_NS_COEFFS,
    ns_steps: int = 5,
    beta: Scalar = 0.95,
    eps: Scalar = 1e-8,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: Preconditioning = "frobenius",
    weight_dimension_numbers: Any | None = None,
) -> GradientTransformation:
    r"""Rescale updates by Muon: orthogonalize the (Nesterov) momentum of each matrix.

    .. math::

        m_t &= \text{beta}\; m_{t-1} + (1 - \text{beta})\, g_t, \qquad
        \hat m_t = \begin{cases}
            \text{beta}\, \dfrac{m_t}{1 - \text{beta}^{t+1}}
                + (1 - \text{beta})\, \dfrac{g_t}{1 - \text{beta}^t} & \text{nesterov} \\[1ex]
            m_t / (1 - \text{beta}^t) & \text{otherwise} \end{cases} \\
        u_t &= O(\hat m_t) \quad\text{or, adaptive,}\quad
            u_t = \langle \hat m_t, O(\hat m_t) \rangle\, O(\hat m_t)

    with :math:`O` = :func:`orthogonalize_via_newton_schulz`. Every leaf must be a matrix,
    or have :class:`MuonDimensionNumbers` in ``weight_dimension_numbers``.

    Args:
      ns_coeffs: the Newton-Schulz :math:`(a, b, c)`, or one triple per step (the last
        ``ns_steps`` rows are kept).
      ns_steps: the number of Newton-Schulz steps, ``>= 0``.
      beta: decay of the momentum, in ``[0, 1)``.
      eps: keeps the scaling of :math:`O` finite, ``>= 0``.
      mu_dtype: dtype to store :math:`m` in; default the parameters'.
      nesterov: Nesterov's look-ahead momentum.
      adaptive: scale :math:`O(\hat m)` by its inner product with :math:`\hat m` (the
        dual norm, Bernstein and Newhouse, 2024).
      preconditioning: how :math:`O` scales its input (see
        :func:`orthogonalize_via_newton_schulz`).
      weight_dimension_numbers: a tree of :class:`MuonDimensionNumbers` for non-matrix
        leaves, or a function of the updates returning one; ``None``: every leaf a matrix.

    Returns:
      A transformation with state :class:`MuonState` ``(count, mu, ns_coeffs)``.

    Raises:
      ValueError: ``beta`` outside ``[0, 1)``, a negative ``eps`` or ``ns_steps``,
        coefficients of another shape, fewer rows than ``ns_steps`` (in ``init``), an
        unknown ``preconditioning``.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_muon(ns_coeffs=(1.5, -0.5, 0.0), ns_steps=30, nesterov=False)
    >>> u, _ = opt.update(jnp.asarray([[2.0, 0.0], [0.0, -0.1]]), opt.init(jnp.zeros((2, 2))))
    >>> [round(v, 3) for v in u.ravel().tolist()]
    [1.0, 0.0, 0.0, -1.0]

    References:
      Jordan, *Muon: An optimizer for hidden layers in neural networks*, 2024.
      Bernstein and Newhouse, *Old Optimizer, New Norm: An Anthology*, 2024.

    Differs from optax:
      ``weight_dimension_numbers=None`` treats every leaf as a matrix, as documented (optax
      fails on a tree of several leaves). The updates keep the gradients' dtype.
    """
    check_coeffs(ns_coeffs)
    check_real("ns_steps", ns_steps)
    if not is_traced(ns_steps):
        check_non_negative("ns_steps", ns_steps)
    check_decay("beta", beta)
    check_non_negative("eps", eps)
    if preconditioning not in PRECONDITIONINGS:
        raise ValueError(f"`preconditioning` must be one of {PRECONDITIONINGS}, got {preconditioning!r}")
    if isinstance(ns_coeffs, str):
        raise ValueError(
            f"`ns_coeffs` must be numbers in scale_by_muon (a preset name such as {ns_coeffs!r} "
            "is for muon), got a string"
        )
    mu_dtype = _dtypes.canonical(mu_dtype)

    def init(params: PyTree) -> MuonState:
        check_state_dtype("mu_dtype", mu_dtype, params)
        coeffs = jnp.asarray(ns_coeffs)
        if coeffs.ndim == 2:
            if coeffs.shape[0] > ns_steps:
                raise ValueError(
                    f"scale_by_muon: {coeffs.shape[0]} rows of `ns_coeffs` are more than "
                    f"ns_steps={ns_steps}: pass ns_steps >= {coeffs.shape[0]}"
                )
            coeffs = coeffs[-ns_steps:]
        return MuonState(count=jnp.zeros([], jnp.int32), mu=zeros_like(params, mu_dtype), ns_coeffs=coeffs)

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        check_update_shapes("scale_by_muon", updates, params, "mu", state.mu)
        del params, extra_args
        dims = _resolve(weight_dimension_numbers, updates)
        mu = update_moment(updates, state.mu, beta, 1)
        count = safe_increment(state.count)
        mu_hat = (
            first_moment_hat(mu, updates, beta, count, nesterov)
            if nesterov
            else bias_correction(mu, beta, count)
        )

        def orthogonal(m, d):
            return orthogonalize_via_newton_schulz(m, state.ns_coeffs, ns_steps, preconditioning, eps, d)

        out = _per_leaf(orthogonal, mu_hat, dims)
        if adaptive:
            out = jax.tree.map(lambda m, o: jnp.sum(m.conj() * o) * o, mu_hat, out)
        new_state = MuonState(count=count, mu=cast_like(mu, state.mu), ns_coeffs=state.ns_coeffs)
        return cast_like(out, updates), new_state

    return GradientTransformation(init, update)


@names_errors("muon")
def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: NsCoeffs = STANDARD_NS_COEFFS,
    ns_steps: int = 5,
    beta: Scalar = 0.95,
    eps: Scalar = 1e-8,
    weight_decay: Scalar = 0.0,
    weight_decay_mask: Mask | None = None,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: Preconditioning = "frobenius",
    adam_b1: Scalar = 0.9,
    adam_b2: Scalar = 0.999,
    adam_eps_root: Scalar = 0.0,
    adam_weight_decay: Scalar = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any | None = None,
    consistent_rms: Scalar | None = None,
) -> GradientTransformation:
    r"""Muon on the matrices, AdamW on every other leaf.

    .. math::

        \theta_{t+1} = \theta_t - \eta_t\big(s\, u_t + \text{weight\_decay}\; \theta_t\big)
        \quad\text{(matrix leaves)}

    with :math:`u_t` from :func:`scale_by_muon` and :math:`s` from :func:`scale_by_shape`.
    The other leaves (and those whose ``muon_weight_dimension_numbers`` entry is ``None``)
    get ``adamw(adam_learning_rate, adam_b1, adam_b2, eps, adam_eps_root, weight_decay=
    adam_weight_decay, mu_dtype=mu_dtype, nesterov=nesterov)``. The state is a
    :class:`~fdl.optim.freezing.PartitionState` with labels ``'muon'`` and ``'adam'``, as optax's.

    Args:
      learning_rate: :math:`\eta \ge 0` of the matrices, a number or a schedule.
      ns_coeffs: as in :func:`scale_by_muon`, or a preset name: 'standard' or 'dion'.
      ns_steps, beta, eps, mu_dtype, nesterov, adaptive, preconditioning: as in
        :func:`scale_by_muon`.
      weight_decay: :math:`\ge 0`, decoupled, of the matrices.
      weight_decay_mask: which matrices decay.
      adam_b1, adam_b2, adam_eps_root, adam_weight_decay: AdamW's, for the other leaves.
      adam_learning_rate: AdamW's learning rate; ``None``: ``learning_rate``.
      muon_weight_dimension_numbers: a tree (or a function of the parameters) of
        :class:`MuonDimensionNumbers` or ``None`` per leaf; default: the 2-D leaves.
      consistent_rms: as in :func:`scale_by_shape`.

    Returns:
      The optimizer.

    Raises:
      ValueError: an unknown preset, or an invalid argument of the parts.

    >>> import jax.numpy as jnp
    >>> params = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}
    >>> opt = muon(learning_rate=0.1)
    >>> u, state = opt.update({"w": jnp.eye(2), "b": jnp.ones(2)}, opt.init(params), params)
    >>> sorted(state.inner_states)
    ['adam', 'muon']

    References:
      Jordan, *Muon: An optimizer for hidden layers in neural networks*, 2024.
      Liu et al., *Muon is Scalable for LLM Training*, 2025 (``consistent_rms``).
    """
    check_learning_rate("learning_rate", learning_rate)
    if adam_learning_rate is None:
        adam_learning_rate = learning_rate
    else:
        check_learning_rate("adam_learning_rate", adam_learning_rate)
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in NS_COEFFS_PRESETS:
            raise ValueError(
                f"`ns_coeffs` must be a preset in {sorted(NS_COEFFS_PRESETS)} or numbers, got {ns_coeffs!r}"
            )
        ns_coeffs = NS_COEFFS_PRESETS[ns_coeffs]
    check_non_negative("weight_decay", weight_decay)
    check_decay("adam_b1", adam_b1)
    check_decay("adam_b2", adam_b2)
    check_non_negative("adam_eps_root", adam_eps_root)
    check_non_negative("adam_weight_decay", adam_weight_decay)
    dims_given = muon_weight_dimension_numbers

    def dims_of(params: PyTree) -> PyTree:
        if dims_given is None:
            return jax.tree.map(lambda _: MuonDimensionNumbers(), params)
        return dims_given(params) if callable(dims_given) else dims_given

    def labels(params: PyTree) -> PyTree:
        if dims_given is None:
            return jax.tree.map(lambda x: "muon" if jnp.ndim(x) == 2 else "adam", params)
        return jax.tree.map(
            lambda d, sub: jax.tree.map(lambda _: "adam" if d is None else "muon", sub),
            dims_of(params),
            params,
            is_leaf=lambda x: x is None or is_dimension_numbers(x),
        )

    def muon_dims(updates: PyTree) -> PyTree:
        """The dimension numbers of the leaves muon owns, ``MaskedNode`` elsewhere."""
        mask = jax.tree.map(lambda label: label == "muon", labels(updates))
        given = (
            jax.tree.map(
                lambda _: MuonDimensionNumbers(), updates, is_leaf=lambda x: isinstance(x, MaskedNode)
            )
            if dims_given is None
            else dims_of(updates)
        )
        return jax.tree.map(
            lambda d, sub: jax.tree.map(lambda m: d if m else MaskedNode(), sub),
            given,
            mask,
            is_leaf=lambda x: x is None or is_dimension_numbers(x) or isinstance(x, MaskedNode),
        )

    parts = partition(
        {
            "muon": chain(
                scale_by_muon(
                    ns_coeffs=ns_coeffs,
                    ns_steps=ns_steps,
                    beta=beta,
                    eps=eps,
                    mu_dtype=mu_dtype,
                    nesterov=nesterov,
                    adaptive=adaptive,
                    preconditioning=preconditioning,
                    weight_dimension_numbers=muon_dims,
                ),
                scale_by_shape(weight_dimension_numbers=muon_dims, consistent_rms=consistent_rms),
                add_decayed_weights(weight_decay, weight_decay_mask),
                scale_by_required_learning_rate(learning_rate),
            ),
            "adam": adamw(
                learning_rate=adam_learning_rate,
                b1=adam_b1,
                b2=adam_b2,
                eps=eps,
                eps_root=adam_eps_root,
                weight_decay=adam_weight_decay,
                mu_dtype=mu_dtype,
                nesterov=nesterov,
            ),
        },
        labels,
    )

    def update(updates, state, params=None, **extra_args):
        # before the labels (taken from the updates' ranks) could send a leaf astray
        if params is not None:
            check_same_shapes("muon", "`updates`", floats(updates), "`params`", params)
        return parts.update(updates, state, params, **extra_args)

    return GradientTransformation(parts.init, update)
