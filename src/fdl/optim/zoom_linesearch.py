r"""The zoom line search: a step size with sufficient decrease *and* small curvature (the strong
Wolfe conditions), by bracketing then interpolating (Nocedal & Wright, Algorithms 3.5 and 3.6).

Along :math:`\phi(\eta) = f(w + \eta u)`, with :math:`\phi'(\eta) = \operatorname{Re}\langle
\nabla f(w + \eta u), u\rangle`, it looks for :math:`\eta` with

.. math::

    \phi(\eta) \le \phi(0) + c_1\, \eta\, \phi'(0) \quad\text{and}\quad
    |\phi'(\eta)| \le c_2\, |\phi'(0)|.

The first phase grows the trial step until an interval :math:`[\eta_{lo}, \eta_{hi}]` is known
to hold such a step; the second shrinks it, each trial at the minimum of a cubic (or quadratic)
interpolation of :math:`\phi`, or at the midpoint when the interpolant's minimum falls near an
end. Every trial evaluates :math:`f` and :math:`\nabla f`; the gradient at the accepted step is
kept in the state for :func:`fdl.optim.linesearch.value_and_grad_from_state`. It is L-BFGS's
default line search (:func:`fdl.optim.lbfgs.lbfgs`).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fdl import _dtypes
from fdl._checks import check_choice, check_non_negative, names_errors
from fdl.optim._inner import axpy, real_vdot, scaled
from fdl.optim.base import GradientTransformation
from fdl.optim.linesearch import check_line_search_args, split_value_fn_kwargs, value_dtype, whole_steps
from fdl.tree import zeros_like

__all__ = ["ZoomLinesearchInfo", "ScaleByZoomLinesearchState", "scale_by_zoom_linesearch"]

PyTree = Any
Scalar = float | jax.Array


class ZoomLinesearchInfo(NamedTuple):
    """What the last search did: its number of trials (int32), and the decrease and curvature
    errors of the step returned (0 where the condition holds)."""

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
    """The state of :func:`scale_by_zoom_linesearch`: the step size returned, the value and
    gradient of the objective there (read by ``value_and_grad_from_state``), and
    :class:`ZoomLinesearchInfo`."""

    learning_rate: jax.Array
    value: jax.Array
    grad: PyTree
    info: ZoomLinesearchInfo


class _Search(NamedTuple):
    """The carry of the search: the last trial, the bracket, the best sufficient-decrease step
    seen (``safe_*``), and the flags that end the loop."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    stepsize: jax.Array
    value: jax.Array
    grad: PyTree
    slope: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array
    interval_found: jax.Array
    done: jax.Array
    failed: jax.Array
    low: jax.Array
    value_low: jax.Array
    slope_low: jax.Array
    high: jax.Array
    value_high: jax.Array
    slope_high: jax.Array
    cubic_ref: jax.Array
    value_cubic_ref: jax.Array
    safe_stepsize: jax.Array
    safe_value: jax.Array
    safe_grad: PyTree


def cubic_minimizer(a, fa, fpa, b, fb, c, fc) -> jax.Array:
    r"""The stationary point of the cubic :math:`p` with :math:`p(a) = f_a`, :math:`p'(a) =
    f'_a`, :math:`p(b) = f_b`, :math:`p(c) = f_c` (NaN when it has none):

    .. math::

        p(x) = A (x-a)^3 + B (x-a)^2 + f'_a (x-a) + f_a, \qquad
        x^\star = a + \frac{-B + \sqrt{B^2 - 3 A f'_a}}{3A}

    with :math:`A, B` solving the 2x2 system of the values at :math:`b` and :math:`c`."""
    db, dc = b - a, c - a
    denominator = (db * dc) ** 2 * (db - dc)
    inverse = jnp.array([[dc**2, -(db**2)], [-(dc**3), db**3]])  # (2, 2), times the denominator
    rhs = jnp.array([fb - fa - fpa * db, fc - fa - fpa * dc])  # (2,)
    cubic, square = jnp.dot(inverse, rhs, precision=jax.lax.Precision.HIGHEST) / denominator
    return a + (-square + jnp.sqrt(square * square - 3.0 * cubic * fpa)) / (3.0 * cubic)


def quadratic_minimizer(a, fa, fpa, b, fb) -> jax.Array:
    r"""The stationary point of the parabola with :math:`p(a) = f_a`, :math:`p'(a) = f'_a`,
    :math:`p(b) = f_b`: :math:`x^\star = a - f'_a / (2B)`,
    :math:`B = (f_b - f_a - f'_a (b - a)) / (b - a)^2`."""
    db = b - a
    curvature = (fb - fa - fpa * db) / (db**2)
    return a - fpa / (2.0 * curvature)


@names_errors("scale_by_zoom_linesearch")
def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: Scalar | None = None,
    tol: Scalar = 0.0,
    increase_factor: Scalar = 2.0,
    slope_rtol: Scalar = 1e-4,
    curv_rtol: Scalar = 0.9,
    approx_dec_rtol: Scalar | None = 1e-6,
    stepsize_precision: Scalar = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> GradientTransformation:
    r"""Scale the updates by a step size that satisfies the strong Wolfe conditions, found by the
    zoom line search.

    With :math:`\phi(\eta) = f(w + \eta u)` (:math:`f` = ``value_fn``, :math:`w` = ``params``,
    :math:`u` = ``updates``), :math:`c_1` = ``slope_rtol``, :math:`c_2` = ``curv_rtol``,
    :math:`c_3` = ``approx_dec_rtol`` and :math:`\epsilon` = ``tol``, a trial :math:`\eta` has

    .. math::

        e_{dec} &= \max\big(0,\ \min(\phi(\eta) - \phi(0) - c_1 \eta\, \phi'(0),\ \
            \max(\phi'(\eta) - (2 c_1 - 1)\phi'(0),\ \phi(\eta) - \phi(0) - c_3 |\phi(0)|))\big) \\
        e_{curv} &= \max\big(0,\ |\phi'(\eta)| - c_2 |\phi'(0)|\big)

    (NaN counts as :math:`\infty`; the inner ``max`` is Hager & Zhang's approximate Wolfe
    condition, which resolves decreases below :math:`\sqrt{\varepsilon_{mach}}`; it is left
    out when ``approx_dec_rtol`` is ``None``). The step is accepted when
    :math:`\max(e_{dec}, e_{curv}) \le \epsilon`. The search:

    1. *Bracket*: :math:`\eta_0` is 1 (``initial_guess_strategy="one"``) or the last step
       returned (``"keep"``), then :math:`\eta_{i+1} = \text{increase\_factor}\ \eta_i`
       (capped at ``max_learning_rate``), until :math:`\eta_i` fails the decrease condition,
       does not decrease :math:`\phi` from :math:`\eta_{i-1}`, or has :math:`\phi'(\eta_i)
       \ge 0`: an interval with an acceptable step between :math:`\eta_{i-1}` and
       :math:`\eta_i`.
    2. *Zoom*: try the minimizer of the cubic through both ends and the previous end (if it
       lies in the middle 60% of the interval), else of the quadratic (middle 80%), else the
       midpoint, and keep the half that still brackets an acceptable step.

    After ``max_linesearch_steps`` trials (or once the interval is shorter than
    ``stepsize_precision`` with a sufficient-decrease step in hand) it returns the step of
    least value among those with sufficient decrease, else the last trial. The output is
    :math:`\eta\, u`.

    Args:
      max_linesearch_steps: the most trials (evaluations of :math:`f` and :math:`\nabla f`)
        per search, ``>= 0``.
      max_learning_rate: the largest step tried, ``>= 0``, or ``None`` for no bound.
      tol: :math:`\epsilon`, the error accepted, ``>= 0``.
      increase_factor: the growth of the trial step while bracketing, ``>= 0``.
      slope_rtol: :math:`c_1`, ``>= 0``.
      curv_rtol: :math:`c_2`, ``>= 0`` (``math.inf`` drops the curvature condition).
      approx_dec_rtol: :math:`c_3`, ``>= 0``, or ``None`` for Armijo's condition alone.
      stepsize_precision: the interval length below which a sufficient-decrease step is
        accepted without the curvature condition, ``>= 0``.
      initial_guess_strategy: ``"one"`` (quasi-Newton directions) or ``"keep"`` (gradient
        directions, whose scale is unknown).
      verbose: print the search's numbers when it fails (``jax.debug.print``).

    Returns:
      A transformation with state :class:`ScaleByZoomLinesearchState`, whose ``update(updates,
      state, params, *, value, grad, value_fn, **fn_kwargs)`` calls ``value_fn(params,
      **fn_kwargs)``.

    Raises:
      TypeError: a non-numeric hyperparameter; in ``update``, missing ``value``, ``grad`` or
        ``value_fn``, or keyword arguments ``value_fn`` does not take.
      ValueError: a negative hyperparameter, a fractional ``max_linesearch_steps``, or an
        ``initial_guess_strategy`` other than ``"one"`` and ``"keep"``.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import chain, sgd
    >>> f = lambda w: jnp.sum((w - 1.0) ** 2)  # the exact step along -grad is 1/2
    >>> opt = chain(sgd(1.0), scale_by_zoom_linesearch(max_linesearch_steps=10))
    >>> w = jnp.zeros(2)
    >>> u, state = opt.update(-2 * (1 - w), opt.init(w), w, value=f(w), grad=-2 * (1 - w), value_fn=f)
    >>> (w + u).tolist(), float(state[-1].learning_rate)
    ([1.0, 1.0], 0.5)

    References:
      Nocedal & Wright, *Numerical Optimization*, 2nd ed., Algorithms 3.5 and 3.6, 2006.
      Hager & Zhang, *Algorithm 851: CG_DESCENT*, ACM TOMS 32(1), 2006.
    """
    whole_steps("max_linesearch_steps", max_linesearch_steps)
    if max_learning_rate is not None:
        check_non_negative("max_learning_rate", max_learning_rate)
    for name, value in (
        ("tol", tol),
        ("increase_factor", increase_factor),
        ("slope_rtol", slope_rtol),
        ("curv_rtol", curv_rtol),
        ("stepsize_precision", stepsize_precision),
    ):
        check_non_negative(name, value)
    if approx_dec_rtol is not None:
        check_non_negative("approx_dec_rtol", approx_dec_rtol)
    check_choice("initial_guess_strategy", initial_guess_strategy, ("one", "keep"))
    caller = "scale_by_zoom_linesearch"

    def init(params: PyTree) -> ScaleByZoomLinesearchState:
        dtype = value_dtype(params)
        # the errors, in optax's dtype; one buffer each, so that the state can be donated
        inf = lambda: jnp.full([], jnp.inf, _dtypes.default_float())
        return ScaleByZoomLinesearchState(
            learning_rate=jnp.ones([], dtype),
            value=jnp.full([], jnp.inf, dtype),
            grad=zeros_like(params),
            info=ZoomLinesearchInfo(jnp.zeros([], jnp.int32), inf(), inf()),
        )

    def update(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
        check_line_search_args(caller, params, value, grad, value_fn)
        f = functools.partial(value_fn, **split_value_fn_kwargs(caller, value_fn, extra_args))
        dtype = state.value.dtype

        def real(x: Any) -> jax.Array:  # a hyperparameter or a value in the state's dtype
            return jnp.asarray(x).astype(dtype)

        value0 = real(value)
        slope0 = real(real_vdot(updates, grad))
        max_steps = jnp.asarray(max_linesearch_steps).astype(jnp.int32)
        tol_ = real(tol)

        def on_line(stepsize: jax.Array) -> tuple[jax.Array, PyTree, jax.Array]:
            v, g = jax.value_and_grad(f)(axpy(params, stepsize, updates))
            g = jax.tree.map(lambda a, b: a.astype(b.dtype), g, grad)
            return real(v), g, real(real_vdot(jax.tree.map(jnp.conj, g), updates))

        def decrease_error(stepsize, v, slope):
            e = v - value0 - real(slope_rtol) * stepsize * slope0
            if approx_dec_rtol is not None:
                approx = slope - real(2 * slope_rtol - 1.0) * slope0
                approx = jnp.maximum(approx, v - value0 - real(approx_dec_rtol) * jnp.abs(value0))
                e = jnp.minimum(approx, e)
            e = jnp.maximum(e, 0.0)
            return jnp.where(jnp.isnan(e), jnp.inf, e)

        def curvature_error(slope):
            e = jnp.maximum(jnp.abs(slope) - real(curv_rtol) * jnp.abs(slope0), 0.0)
            return jnp.where(jnp.isnan(e), jnp.inf, e)

        def pick(flag, new, old):
            return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)

        def bracket(s: _Search) -> _Search:  # Algorithm 3.5
            first = s.count == 0
            guess = state.learning_rate if initial_guess_strategy == "keep" else jnp.ones([], dtype)
            step = jnp.where(first, guess, real(increase_factor) * s.stepsize)
            capped = jnp.asarray(False)
            if max_learning_rate is not None:
                capped = step >= real(max_learning_rate)
                step = jnp.minimum(step, real(max_learning_rate))
            v, g, slope = on_line(step)
            e_dec, e_curv = decrease_error(step, v, slope), curvature_error(slope)
            error = jnp.maximum(e_dec, e_curv)
            safe = pick(e_dec <= tol_, (step, v, g), (s.safe_stepsize, s.safe_value, s.safe_grad))
            high_is_new = (e_dec > 0.0) | ((v >= s.value) & ~first)
            low_is_new = (slope >= 0.0) & ~high_is_new
            previous, new = (s.stepsize, s.value, s.slope), (step, v, slope)
            low, high = pick(low_is_new, (new, previous), (previous, new))
            found = high_is_new | low_is_new | (error <= tol_)
            done = (error <= tol_) | (capped & ~found)
            failed = (s.count + 1 >= max_steps) & ~done
            return _Search(
                count=s.count + 1, stepsize=step, value=v, grad=g, slope=slope,
                decrease_error=e_dec, curvature_error=e_curv, interval_found=found, done=done,
                failed=failed, low=low[0], value_low=low[1], slope_low=low[2], high=high[0],
                value_high=high[1], slope_high=high[2], cubic_ref=low[0], value_cubic_ref=low[1],
                safe_stepsize=safe[0], safe_value=safe[1], safe_grad=safe[2],
            )  # fmt: skip

        def zoom(s: _Search) -> _Search:  # Algorithm 3.6
            delta = jnp.abs(s.high - s.low)
            left, right = jnp.minimum(s.high, s.low), jnp.maximum(s.high, s.low)
            cubic = cubic_minimizer(
                s.low, s.value_low, s.slope_low, s.high, s.value_high, s.cubic_ref, s.value_cubic_ref
            )
            use_cubic = (cubic > left + 0.2 * delta) & (cubic < right - 0.2 * delta)
            quadratic = quadratic_minimizer(s.low, s.value_low, s.slope_low, s.high, s.value_high)
            use_quadratic = ~use_cubic & (quadratic > left + 0.1 * delta) & (quadratic < right - 0.1 * delta)
            middle = jnp.where(use_cubic, cubic, s.cubic_ref)
            middle = jnp.where(use_quadratic, quadratic, middle)
            middle = jnp.where(~use_cubic & ~use_quadratic, (s.low + s.high) / 2.0, middle)
            v, g, slope = on_line(middle)
            e_dec, e_curv = decrease_error(middle, v, slope), curvature_error(slope)
            better = (e_dec <= tol_) & (v < s.safe_value)
            safe = pick(better, (middle, v, g), (s.safe_stepsize, s.safe_value, s.safe_grad))
            done = jnp.maximum(e_dec, e_curv) <= tol_
            high_is_middle = (e_dec > 0.0) | (v >= s.value_low)
            high_is_low = (slope * (s.high - s.low) >= 0.0) & ~high_is_middle
            low_, high_, mid = (
                (s.low, s.value_low, s.slope_low),
                (s.high, s.value_high, s.slope_high),
                (middle, v, slope),
            )
            high = pick(high_is_low, low_, pick(high_is_middle, mid, high_))
            low = pick(~high_is_middle, mid, low_)
            ref = pick(high_is_middle | high_is_low, high_[:2], low_[:2])
            stuck = (s.count + 1 >= max_steps) | ((delta <= real(stepsize_precision)) & (safe[0] > 0.0))
            return s._replace(
                count=s.count + 1, stepsize=middle, value=v, grad=g, slope=slope,
                decrease_error=e_dec, curvature_error=e_curv, done=done, failed=stuck & ~done,
                low=low[0], value_low=low[1], slope_low=low[2], high=high[0], value_high=high[1],
                slope_high=high[2], cubic_ref=ref[0], value_cubic_ref=ref[1],
                safe_stepsize=safe[0], safe_value=safe[1], safe_grad=safe[2],
            )  # fmt: skip

        def fall_back(s: _Search) -> _Search:  # failed: the best sufficient-decrease step
            use_safe = (s.safe_stepsize > 0.0) | jnp.isinf(s.decrease_error)
            step, v, g = pick(
                use_safe, (s.safe_stepsize, s.safe_value, s.safe_grad), (s.stepsize, s.value, s.grad)
            )
            if verbose:
                _report_failure(s, value0, slope0)
            return s._replace(stepsize=step, value=v, grad=g)

        def trial(s: _Search) -> _Search:
            s = jax.lax.cond(s.interval_found, zoom, bracket, s)
            return jax.lax.cond(s.failed, fall_back, lambda x: x, s)

        zero, inf, false = jnp.zeros([], dtype), jnp.full([], jnp.inf, dtype), jnp.asarray(False)
        start = _Search(
            jnp.zeros([], jnp.int32), zero, value0, grad, slope0, inf, inf, false, false, false,
            zero, value0, slope0, zero, value0, slope0, zero, value0, zero, value0, grad,
        )  # fmt: skip
        end = jax.lax.while_loop(lambda s: ~(s.done | s.failed), trial, start)
        new_state = ScaleByZoomLinesearchState(
            learning_rate=end.stepsize,
            value=end.value,
            grad=end.grad,
            info=ZoomLinesearchInfo(
                end.count,
                end.decrease_error.astype(state.info.decrease_error.dtype),
                end.curvature_error.astype(state.info.curvature_error.dtype),
            ),
        )
        return scaled(end.stepsize, updates), new_state

    return GradientTransformation(init, update)


def _report_failure(s: _Search, value0: jax.Array, slope0: jax.Array) -> None:
    """Print why the search failed (``verbose=True``)."""
    jax.debug.print(
        "scale_by_zoom_linesearch: no step satisfies both conditions: value {value}, slope {slope}, "
        "last step {step}, decrease error {dec}, curvature error {curv}, best sufficient-decrease "
        "step {safe} (0: none; the step returned is then the last one)",
        value=value0,
        slope=slope0,
        step=s.stepsize,
        dec=s.decrease_error,
        curv=s.curvature_error,
        safe=s.safe_stepsize,
        ordered=True,
    )
