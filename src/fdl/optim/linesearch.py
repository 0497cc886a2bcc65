r"""Line searches: pick the step size along an update direction by evaluating the objective.

A gradient transformation proposes a direction :math:`u` at the parameters :math:`w`; a line
search then looks along the ray :math:`\eta \mapsto f(w + \eta u)` for a step size
:math:`\eta` that decreases :math:`f` enough, and returns :math:`\eta\, u`. It needs more than
the gradient: ``update`` takes optax's extra keyword arguments ``value`` (:math:`f(w)`),
``grad`` (:math:`\nabla f(w)`) and ``value_fn`` (:math:`f` itself), plus any keyword arguments
``value_fn`` accepts (a batch, say):

.. code-block:: python

    value_and_grad = value_and_grad_from_state(f)
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)

:func:`value_and_grad_from_state` reuses the value and gradient the search already computed at
the accepted point, so a deterministic objective is evaluated once per trial step only.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl._checks import check_non_negative, check_unit_interval, names_errors
from fdl._checks.hyper import as_concrete_number
from fdl.optim._inner import axpy, real_vdot, scaled
from fdl.optim.base import GradientTransformation
from fdl.tree import float_dtype, zeros_like

__all__ = [
    "BacktrackingLinesearchInfo",
    "ScaleByBacktrackingLinesearchState",
    "scale_by_backtracking_linesearch",
    "value_and_grad_from_state",
]

PyTree = Any
Scalar = float | jax.Array


class BacktrackingLinesearchInfo(NamedTuple):
    """What the last search did: the number of trial steps (int32) and the final
    ``decrease_error`` (0 when the accepted step satisfies the Armijo condition, > 0 when the
    search gave up)."""

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """The state of :func:`scale_by_backtracking_linesearch`: the accepted step size
    :math:`\\eta`, the value :math:`f` at the accepted point, its gradient there (``None``
    unless ``store_grad``), and :class:`BacktrackingLinesearchInfo`. ``value`` and ``grad`` are
    what :func:`value_and_grad_from_state` reads."""

    learning_rate: jax.Array
    value: jax.Array
    grad: PyTree
    info: BacktrackingLinesearchInfo


class _Search(NamedTuple):
    """The carry of the inner loop: trial step, value (and gradient) there, error, trials."""

    learning_rate: jax.Array
    new_value: jax.Array
    new_grad: PyTree
    decrease_error: jax.Array
    iter_num: jax.Array


def value_dtype(params: PyTree) -> jnp.dtype:
    """The real dtype of the first parameter leaf (float32 for complex64): the dtype of the
    objective's value, step size and errors in the state, as optax chooses it."""
    leaves = jax.tree.leaves(params)
    if not leaves:
        raise ValueError("the line search needs at least one parameter array, got an empty tree")
    return jnp.real(jnp.zeros([], float_dtype(leaves[0]))).dtype


def whole_steps(name: str, value: Any) -> Any:
    """Accept a whole number of trial steps ``>= 0`` (``15`` or ``15.0``) or a traced value;
    raise naming ``name`` otherwise."""
    check_non_negative(name, value)
    number = as_concrete_number(value)
    if number is not None and number != int(number):
        raise ValueError(f"`{name}` must be a whole number of trial steps, got {value!r}")
    return value


def split_value_fn_kwargs(caller: str, value_fn: Callable[..., Any], extra_args: dict) -> dict:
    """The extra keyword arguments of ``update`` that ``value_fn`` takes (by name); raise a
    ``TypeError`` naming those it does not take."""
    names = inspect.signature(value_fn).parameters
    unused = sorted(k for k in extra_args if k not in names)
    if unused:
        raise TypeError(
            f"Unexpected keyword arguments passed to {caller}.update, which `value_fn` does "
            f"not take: {unused}; "
            f"pass only `value`, `grad`, `value_fn` and arguments of `value_fn` "
            f"(it takes {list(names)})"
        )
    return dict(extra_args)


def check_line_search_args(caller: str, params: Any, value: Any, grad: Any, value_fn: Any) -> None:
    """Raise a ``TypeError`` naming what is missing when ``update`` lacks ``value``, ``grad``
    or a callable ``value_fn``, a ``ValueError`` when it lacks ``params``."""
    missing = [n for n, v in (("value", value), ("grad", grad), ("value_fn", value_fn)) if v is None]
    if missing:
        raise TypeError(
            f"{caller}.update needs the keyword arguments `value`, `grad` and `value_fn` "
            f"(the objective at `params`, its gradient, and the objective itself), missing "
            f"{missing}: call update(updates, state, params, value=value, grad=grad, value_fn=f)"
        )
    if not callable(value_fn):
        raise TypeError(f"{caller}.update: `value_fn` must be callable, got {value_fn!r}")
    if params is None:
        raise ValueError(f"{caller}.update needs `params` (the point the search starts from), got None")


@names_errors("scale_by_backtracking_linesearch")
def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: Scalar = 1e-4,
    decrease_factor: Scalar = 0.8,
    increase_factor: Scalar = 1.5,
    max_learning_rate: Scalar = 1.0,
    atol: Scalar = 0.0,
    rtol: Scalar = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
) -> GradientTransformation:
    r"""Backtracking line search: shrink the step until the Armijo (sufficient decrease)
    condition holds, then scale the updates by it.

    With :math:`f` = ``value_fn``, :math:`w` = ``params``, :math:`u` = ``updates`` and
    :math:`s = \operatorname{Re}\langle u, \nabla f(w)\rangle` the slope of
    :math:`\eta \mapsto f(w + \eta u)` at 0, the trial steps are

    .. math::

        \eta^{(0)} = \min(\text{increase\_factor}\; \eta_{t-1},\ \text{max\_learning\_rate}),
        \qquad \eta^{(k+1)} = \text{decrease\_factor}\; \eta^{(k)}

    (:math:`\eta_{-1} = 1`), until the decrease error

    .. math::

        e(\eta) = \max\big(0,\ f(w + \eta u) - (1 + \text{rtol}) f(w)
                  - \eta\, \text{slope\_rtol}\; s\big)

    is at most ``atol``, or ``max_backtracking_steps`` reductions were tried (so at most
    ``max_backtracking_steps + 1`` evaluations of :math:`f`). A NaN value counts as
    :math:`e = \infty`. The output is :math:`\eta\, u` with the last trial :math:`\eta`, or
    :math:`0` when its error is infinite (a NaN or infinite objective there).

    The condition can only be met when :math:`u` is a descent direction (:math:`s < 0`), as
    :math:`-\nabla f` or L-BFGS's direction; put this transformation after the one that
    proposes it, e.g. ``chain(sgd(1.0), scale_by_backtracking_linesearch(15))``.

    Args:
      max_backtracking_steps: the most reductions of the step in one search, ``>= 0``.
      slope_rtol: the Armijo constant :math:`c`, the fraction of the linear decrease
        required, ``>= 0``.
      decrease_factor: the factor a rejected step is multiplied by, in ``[0, 1]``.
      increase_factor: the factor the last accepted step is multiplied by to start the next
        search, ``>= 0`` (1 keeps it; ``math.inf`` always starts at ``max_learning_rate``).
      max_learning_rate: the largest first trial step, ``>= 0``.
      atol: the decrease error accepted, ``>= 0``.
      rtol: the relative slack on :math:`f(w)`, ``>= 0``.
      store_grad: also compute :math:`\nabla f` at the accepted point and keep it in the
        state, for :func:`value_and_grad_from_state`.
      verbose: print the search's numbers when it fails (``jax.debug.print``).

    Returns:
      A transformation with state :class:`ScaleByBacktrackingLinesearchState`, whose
      ``update(updates, state, params, *, value, grad, value_fn, **fn_kwargs)`` calls
      ``value_fn(params, **fn_kwargs)``.

    Raises:
      TypeError: a non-numeric hyperparameter; in ``update``, missing ``value``, ``grad`` or
        ``value_fn``, or extra keyword arguments ``value_fn`` does not take.
      ValueError: a negative hyperparameter, ``decrease_factor`` outside ``[0, 1]``, or a
        fractional ``max_backtracking_steps``.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import chain, sgd
    >>> f = lambda w: jnp.sum(w**2)
    >>> opt = chain(sgd(1.0), scale_by_backtracking_linesearch(max_backtracking_steps=15))
    >>> w = jnp.asarray([1.0, 2.0])
    >>> state = opt.init(w)
    >>> u, state = opt.update(2 * w, state, w, value=f(w), grad=2 * w, value_fn=f)
    >>> float(f(w + u)) < float(f(w)), round(float(state[-1].learning_rate), 4)  # 1.0 failed
    (True, 0.8)

    References:
      Nocedal & Wright, *Numerical Optimization*, 2nd ed., Algorithm 3.1, 2006.
      Vaswani et al., *Painless Stochastic Gradient*, NeurIPS 2019.
    """
    whole_steps("max_backtracking_steps", max_backtracking_steps)
    check_non_negative("slope_rtol", slope_rtol)
    check_unit_interval("decrease_factor", decrease_factor)
    check_non_negative("increase_factor", increase_factor)
    check_non_negative("max_learning_rate", max_learning_rate)
    check_non_negative("atol", atol)
    check_non_negative("rtol", rtol)
    caller = "scale_by_backtracking_linesearch"

    def init(params: PyTree) -> ScaleByBacktrackingLinesearchState:
        dtype = value_dtype(params)
        return ScaleByBacktrackingLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=jnp.full([], jnp.inf, dtype),
            grad=zeros_like(params) if store_grad else None,
            info=BacktrackingLinesearchInfo(
                num_linesearch_steps=jnp.zeros([], jnp.int32),
                decrease_error=jnp.full([], jnp.inf, dtype),
            ),
        )

    def update(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
        check_line_search_args(caller, params, value, grad, value_fn)
        f = functools.partial(value_fn, **split_value_fn_kwargs(caller, value_fn, extra_args))
        dtype = state.value.dtype
        value = jnp.asarray(value).astype(dtype)
        slope = real_vdot(updates, jax.tree.map(jnp.conj, grad)).astype(dtype)
        max_steps = jnp.asarray(max_backtracking_steps).astype(jnp.int32)
        tolerance = jnp.asarray(atol).astype(dtype)

        def error(step: jax.Array, new_value: jax.Array) -> jax.Array:
            e = new_value - jnp.asarray(1.0 + rtol).astype(dtype) * value
            e = e - step * jnp.asarray(slope_rtol).astype(dtype) * slope
            return jnp.maximum(jnp.where(jnp.isnan(e), jnp.inf, e), 0.0)

        def searching(s: _Search) -> jax.Array:
            return ~(s.decrease_error <= tolerance) & (s.iter_num <= max_steps)

        def trial(s: _Search) -> _Search:
            step = jnp.where(
                s.iter_num > 0, jnp.asarray(decrease_factor).astype(dtype) * s.learning_rate, s.learning_rate
            )
            candidate = axpy(params, step, updates)
            if store_grad:  # the value and a linearization; the gradient only if accepted
                raw_value, jvp = jax.linearize(f, candidate)
                new_value = jnp.asarray(raw_value).astype(dtype)
                e = error(step, new_value)

                def gradient(p: PyTree) -> PyTree:
                    (g,) = jax.linear_transpose(jvp, p)(jnp.ones_like(raw_value))
                    return jax.tree.map(lambda a, b: a.astype(b.dtype), g, s.new_grad)

                accepted = (e <= tolerance) | (s.iter_num == max_steps)
                new_grad = jax.lax.cond(accepted, gradient, lambda p: s.new_grad, candidate)
            else:
                new_value = jnp.asarray(f(candidate)).astype(dtype)
                e = error(step, new_value)
                new_grad = s.new_grad
            return _Search(step, new_value, new_grad, e, s.iter_num + 1)

        first = jnp.minimum(
            jnp.asarray(increase_factor).astype(dtype) * state.learning_rate,
            jnp.asarray(max_learning_rate).astype(dtype),
        )
        start = _Search(
            first, value, zeros_like(params), jnp.full([], jnp.inf, dtype), jnp.zeros([], jnp.int32)
        )
        found = jax.lax.while_loop(searching, trial, start)
        step = jnp.where(jnp.isinf(found.decrease_error), jnp.zeros([], dtype), found.learning_rate)
        if verbose:
            _report_failure(found, value, slope, tolerance)
        new_state = ScaleByBacktrackingLinesearchState(
            learning_rate=step,
            value=found.new_value,
            grad=found.new_grad if store_grad else None,
            info=BacktrackingLinesearchInfo(found.iter_num, found.decrease_error),
        )
        return scaled(step, updates), new_state

    return GradientTransformation(init, update)


def _report_failure(found: _Search, value: jax.Array, slope: jax.Array, tolerance: jax.Array) -> None:
    """Print the search's numbers when it ended above ``atol`` (``verbose=True``)."""
    jax.lax.cond(
        found.decrease_error > tolerance,
        lambda: jax.debug.print(
            "scale_by_backtracking_linesearch: no step with sufficient decrease found: value "
            "{value}, slope {slope}, last step {step}, decrease error {error} (infinite: a step "
            "of 0 is taken, to avoid NaN or infinite values)",
            value=value,
            slope=slope,
            step=found.learning_rate,
            error=found.decrease_error,
            ordered=True,
        ),
        lambda: None,
    )


def _find(tree: PyTree, name: str) -> list[Any]:
    """Every field or dict entry called ``name`` in ``tree`` (NamedTuples, tuples, lists and
    dicts are searched; the values found are not searched further)."""
    found = []
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        for field, value in zip(tree._fields, tree, strict=True):
            found += [value] if field == name else _find(value, name)
    elif isinstance(tree, (tuple, list)):
        for value in tree:
            found += _find(value, name)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            found += [value] if key == name else _find(value, name)
    return found


def value_and_grad_from_state(value_fn: Callable[..., Any]) -> Callable[..., tuple[jax.Array, PyTree]]:
    r"""``jax.value_and_grad(value_fn)`` that reuses the value and gradient a line search left
    in the optimizer state.

    The returned function, called as ``value_and_grad(params, *args, state=state, **kwargs)``,
    finds the one field ``value`` and the one field ``grad`` in ``state`` (e.g.
    :class:`ScaleByBacktrackingLinesearchState` with ``store_grad=True``): where the value is
    finite it returns them, :math:`(f(w_t), \nabla f(w_t))` computed at the end of the last
    search; where it is infinite or NaN (the first step: ``init`` stores :math:`+\infty`) it
    computes ``jax.value_and_grad(value_fn)(params, *args, **kwargs)``. The pair read from the
    state is cast to the dtypes ``value_fn`` would give (a float32 loss of bfloat16 parameters
    is stored as bfloat16, as in optax).

    Args:
      value_fn: the objective :math:`f`, a scalar function of the parameters.

    Returns:
      ``value_and_grad(params, *args, state, **kwargs) -> (value, grad)``.

    Raises:
      ValueError: (when called) a state without a ``value`` or a ``grad`` field, or whose
        ``grad`` is ``None`` (a line search built without ``store_grad=True``).
      KeyError: (when called) a state with several of them (as optax's).

    >>> import jax.numpy as jnp
    >>> from fdl.optim import chain, sgd
    >>> f = lambda w: jnp.sum(w**2)
    >>> opt = chain(sgd(1.0), scale_by_backtracking_linesearch(15, store_grad=True))
    >>> value_and_grad = value_and_grad_from_state(f)
    >>> w = jnp.asarray([1.0, 2.0])
    >>> state = opt.init(w)
    >>> value, grad = value_and_grad(w, state=state)  # the state holds inf: computed
    >>> u, state = opt.update(grad, state, w, value=value, grad=grad, value_fn=f)
    >>> value, grad = value_and_grad(w + u, state=state)  # read from the state
    >>> float(value) == float(f(w + u)), grad.tolist() == (2 * (w + u)).tolist()
    (True, True)
    """
    if not callable(value_fn):
        raise TypeError(f"value_and_grad_from_state: `value_fn` must be callable, got {value_fn!r}")

    def value_and_grad(params: PyTree, *args: Any, state: Any, **kwargs: Any) -> tuple[jax.Array, PyTree]:
        values, grads = _find(state, "value"), _find(state, "grad")
        if len(values) > 1 or len(grads) > 1:  # ambiguous: a KeyError, as optax's tree.get
            raise KeyError(
                f"value_and_grad_from_state needs exactly one `value` and one `grad` field in "
                f"`state`, found {len(values)} and {len(grads)}: keep one line search in the chain"
            )
        if len(values) != 1 or len(grads) != 1:
            raise ValueError(
                f"value_and_grad_from_state needs exactly one `value` and one `grad` field in "
                f"`state`, found {len(values)} and {len(grads)}: use a line search that stores "
                f"them, e.g. scale_by_backtracking_linesearch(..., store_grad=True)"
            )
        (value,), (grad,) = values, grads
        if grad is None:
            raise ValueError(
                "value_and_grad_from_state: the state's `grad` is None: build the line search "
                "with store_grad=True so that it keeps the gradient at the accepted point"
            )
        compute = jax.value_and_grad(value_fn)
        shapes = jax.eval_shape(compute, params, *args, **kwargs)  # the stored pair in its dtypes
        stored = jax.tree.map(lambda x, like: jnp.asarray(x).astype(like.dtype), (value, grad), shapes)
        return jax.lax.cond(
            jnp.isfinite(value),
            lambda p, a, k: stored,
            lambda p, a, k: compute(p, *a, **k),
            params,
            args,
            kwargs,
        )

    return value_and_grad
