r"""Test problems for optimizers: classic 2-D functions and two small problems on real data.

An optimizer is best understood by watching it move. The 2-D functions below are the standard
zoo of optimization benchmarks, each built to expose one difficulty:

* :func:`rosenbrock`: a long, curved, flat-bottomed valley. Finding the valley is easy; following
  it to the minimum is slow for plain gradient descent, whose steps zig-zag across it.
* :func:`beale`: sharp ridges and very flat plateaus, with gradients ranging over several orders
  of magnitude, so a single learning rate is either too large on the ridges or too small on
  the plateaus.
* :func:`himmelblau`: four minima of equal value; which one an optimizer reaches depends on its
  dynamics, not just on where it starts.
* :func:`quadratic`: an ill-conditioned bowl (condition number :math:`\kappa = 100`). Gradient
  descent must take :math:`\eta < 2/\kappa` to stay stable along the steep axis, and then crawls
  along the shallow one; momentum and per-coordinate scaling (Adam, RMSProp) help.
* :func:`saddle`: :math:`x^2 - y^2`, with no minimum at all. It asks how fast an optimizer leaves
  a saddle point, which is where plain gradient descent stalls in high dimensions.

Two problems on the embedded digits data set (:func:`fdl.data.load_digits`) check that what is
seen in 2-D carries over to real parameter trees: multinomial logistic regression (convex) and a
one-hidden-layer MLP (non-convex). Their ``loss`` uses the whole training split as one batch, so
every run is deterministic; they also carry their ``data`` and a ``batch_loss`` for minibatch
gradients.

A :class:`Problem` bundles a loss over a parameter pytree with how to initialise it. The 2-D
problems keep their point as one named leaf, ``{"xy": (2,)}``, and also carry the plain
function :math:`f(x, y)`, a start, a plot window and the known minima, which
:mod:`fdl.compare` uses to draw contour plots. Look problems up by name with
:func:`get_problem`.

References:
    H. H. Rosenbrock, "An automatic method for finding the greatest or least value of a
    function", The Computer Journal 3(3):175–184, 1960.
    E. M. L. Beale, "On an iterative method for finding a local minimum of a function of more
    than one variable", Technical Report 25, Princeton University, 1958.
    D. M. Himmelblau, *Applied Nonlinear Programming*, McGraw-Hill, 1972.
    Y. Dauphin et al., "Identifying and attacking the saddle point problem in high-dimensional
    non-convex optimization", NeurIPS 2014.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from fdl import losses, nn, regularizers
from fdl.data import load_digits
from fdl.initializers import he_normal, zeros

__all__ = [
    "Problem",
    "beale",
    "get_problem",
    "himmelblau",
    "logistic_digits",
    "mlp_digits",
    "problem_names",
    "quadratic",
    "rosenbrock",
    "saddle",
]

PyTree = Any
Window = tuple[tuple[float, float], tuple[float, float]]

CONDITION_NUMBER = 100.0
"""The condition number :math:`\\kappa` of :func:`quadratic`'s default bowl."""


# ------------------------------------------------------------------------------- 2-D functions


def rosenbrock(x: Any, y: Any, a: float = 1.0, b: float = 100.0) -> jax.Array:
    r"""Rosenbrock's banana-shaped valley.

    .. math::

        f(x, y) = (a - x)^2 + b\,(y - x^2)^2

    The only minimum is :math:`f(a, a^2) = 0`; with the defaults, :math:`f(1, 1) = 0`. The
    valley floor :math:`y = x^2` is flat to first order, and the Hessian at the minimum,
    :math:`\begin{psmallmatrix} 802 & -400 \\ -400 & 200 \end{psmallmatrix}`, has condition
    number about 2,500.

    Args:
      x, y: arrays of the same shape (or scalars).
      a, b: the valley's target and steepness.

    >>> float(rosenbrock(1.0, 1.0)), float(rosenbrock(0.0, 0.0))
    (0.0, 1.0)
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    return (a - x) ** 2 + b * (y - x**2) ** 2


def beale(x: Any, y: Any) -> jax.Array:
    r"""Beale's function: flat plateaus cut by steep ridges.

    .. math::

        f(x, y) = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2

    The only minimum is :math:`f(3, \tfrac12) = 0`. It also has a saddle point at
    :math:`(0, 1)`, where :math:`f = 14.203125`.

    >>> float(beale(3.0, 0.5)), float(beale(0.0, 1.0))
    (0.0, 14.203125)
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


HIMMELBLAU_MINIMA: tuple[tuple[float, float], ...] = (
    (3.0, 2.0),
    (-2.805118086952745, 3.131312518250573),
    (-3.779310253377747, -3.283185991286170),
    (3.584428340330492, -1.848126526964404),
)
"""Himmelblau's four minima (all of value 0), from Newton's method in float64."""


def himmelblau(x: Any, y: Any) -> jax.Array:
    r"""Himmelblau's function: four minima of equal depth.

    .. math::

        f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2

    Its minima, all with :math:`f = 0`, are :math:`(3, 2)`, :math:`(-2.805118, 3.131313)`,
    :math:`(-3.779310, -3.283186)` and :math:`(3.584428, -1.848127)`
    (:data:`HIMMELBLAU_MINIMA` holds them to float64 precision); a local maximum sits at
    :math:`(-0.270845, -0.923039)`, where :math:`f \approx 181.617`.

    >>> float(himmelblau(3.0, 2.0)), float(himmelblau(0.0, 0.0))
    (0.0, 170.0)
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    return (x**2 + y - 11.0) ** 2 + (x + y**2 - 7.0) ** 2


def quadratic(x: Any, y: Any, condition_number: float = CONDITION_NUMBER) -> jax.Array:
    r"""An ill-conditioned quadratic bowl, the local model of every smooth minimum.

    .. math::

        f(x, y) = \tfrac12 \left(x^2 + \kappa\, y^2\right), \qquad
        \nabla^2 f = \operatorname{diag}(1, \kappa)

    with :math:`\kappa` = ``condition_number`` (default 100). The only minimum is
    :math:`f(0, 0) = 0`. Gradient descent with learning rate :math:`\eta` multiplies :math:`x`
    by :math:`1 - \eta` and :math:`y` by :math:`1 - \eta\kappa` each step, so it is stable only
    for :math:`\eta < 2/\kappa`, and then :math:`x` shrinks by at most :math:`1 - 2/\kappa`
    per step. Its axes are the coordinate axes, which favours the per-coordinate scaling of
    Adam and RMSProp (a rotated bowl would not).

    >>> float(quadratic(0.0, 0.0)), float(quadratic(2.0, 1.0))
    (0.0, 52.0)
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    return 0.5 * (x**2 + condition_number * y**2)


def saddle(x: Any, y: Any) -> jax.Array:
    r"""The saddle :math:`x^2 - y^2`: a stationary point that is not a minimum.

    .. math::

        f(x, y) = x^2 - y^2, \qquad \nabla f(0, 0) = 0, \qquad
        \nabla^2 f = \operatorname{diag}(2, -2)

    It has **no minimum**: along :math:`y` it decreases without bound. Within the window
    :math:`|x|, |y| \le 1.5` used for plots it is bounded below by :math:`-2.25`, but an
    optimizer that keeps going leaves the window and its loss goes to :math:`-\infty`. The
    question it asks is how fast an optimizer escapes from near :math:`(0, 0)`: gradient
    descent moves :math:`y` by a factor :math:`1 + 2\eta` per step, so from :math:`y_0` it needs
    about :math:`\ln(1/|y_0|) / (2\eta)` steps to reach :math:`|y| = 1`, whereas Adam-like
    methods, which normalise the step, move at about :math:`\eta` per step from the start.

    >>> float(saddle(0.0, 0.0)), float(saddle(1.0, 2.0))
    (0.0, -3.0)
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    return x**2 - y**2


# ---------------------------------------------------------------------------------- the problem


@dataclass(frozen=True)
class Problem:
    r"""A loss over a parameter pytree, with where to start.

    Attributes:
      name: the name :func:`get_problem` knows it by.
      description: one or two sentences saying what it is and what to expect.
      loss: ``loss(params) -> scalar``, a pure JAX function; any data is fixed inside.
      init_params: ``init_params(key) -> params``, the starting point (2-D problems and
        logistic regression ignore the key: their start is fixed).
      function: 2-D problems only: the plain :math:`f(x, y)` (elementwise over arrays of one
        shape), for contour plots. ``None`` for other problems.
      start: 2-D problems only: the default starting point :math:`(x_0, y_0)`.
      window: 2-D problems only: the plot window ``((x_min, x_max), (y_min, y_max))``.
      minima: 2-D problems only: the known minimizers, ``()`` if there are none.
      min_value: the minimum value :math:`f^*` if known, else ``None`` (no minimum, or a value
        that is not known in closed form).
      bounded_below: ``False`` when the loss decreases without bound (the saddle); then a lower
        loss means "further away", not "closer to a solution".
      data: problems on data only: a tuple of arrays with a leading axis of examples, for
        minibatches (``fdl.compare.compare(..., batch_size=)``). ``None`` for the others.
      batch_loss: with ``data``: ``batch_loss(params, batch) -> scalar`` on a tuple of arrays
        shaped like ``data``; ``loss(params)`` is ``batch_loss(params, data)``.
    """

    name: str
    description: str
    loss: Callable[[PyTree], jax.Array]
    init_params: Callable[[jax.Array], PyTree]
    function: Callable[[Any, Any], jax.Array] | None = None
    start: tuple[float, float] | None = None
    window: Window | None = None
    minima: tuple[tuple[float, float], ...] = ()
    min_value: float | None = None
    bounded_below: bool = True
    data: tuple[jax.Array, ...] | None = None
    batch_loss: Callable[[PyTree, tuple[jax.Array, ...]], jax.Array] | None = None

    def __post_init__(self) -> None:
        if (self.data is None) != (self.batch_loss is None):
            raise ValueError(
                f"Problem {self.name!r}: `data` and `batch_loss` go together (minibatches need "
                f"both), got data={'None' if self.data is None else 'arrays'} and "
                f"batch_loss={self.batch_loss!r}"
            )

    @property
    def is_2d(self) -> bool:
        """Whether the parameters are one 2-D point ``{"xy": (2,)}`` that can be plotted."""
        return self.function is not None

    @classmethod
    def from_2d(
        cls,
        name: str,
        function: Callable[[Any, Any], jax.Array],
        *,
        start: tuple[float, float],
        window: Window,
        minima: tuple[tuple[float, float], ...] = (),
        min_value: float | None = None,
        bounded_below: bool = True,
        description: str = "",
    ) -> Problem:
        r"""A problem over the point ``params = {"xy": [x, y]}`` from a function :math:`f(x, y)`.

        >>> import jax
        >>> p = Problem.from_2d("bowl", lambda x, y: x**2 + y**2, start=(1.0, 2.0),
        ...                     window=((-3.0, 3.0), (-3.0, 3.0)), minima=((0.0, 0.0),),
        ...                     min_value=0.0)
        >>> float(p.loss(p.init_params(jax.random.key(0))))
        5.0
        """
        start_xy = (float(start[0]), float(start[1]))

        def loss(params: PyTree) -> jax.Array:
            xy = params["xy"]
            return function(xy[0], xy[1])

        def init_params(key: jax.Array) -> dict[str, jax.Array]:
            del key  # the start is fixed, so every optimizer begins at the same point
            return {"xy": jnp.asarray(start_xy, jnp.float32)}

        return cls(
            name=name,
            description=description,
            loss=loss,
            init_params=init_params,
            function=function,
            start=start_xy,
            window=window,
            minima=tuple(minima),
            min_value=min_value,
            bounded_below=bounded_below,
        )


# --------------------------------------------------------------------------- the data problems


def logistic_digits(l2: float = 1e-3) -> Problem:
    r"""Multinomial logistic regression on the digits training split, full batch.

    With :math:`X \in \mathbb{R}^{N \times 64}` (``N = 1438``), labels :math:`y_n \in \{0..9\}`
    and parameters ``{"w": (64, 10), "b": (10,)}``:

    .. math::

        L(W, b) = \frac1N \sum_n \Big(\log \sum_c e^{z_{nc}} - z_{n y_n}\Big)
                  + \lambda \cdot \tfrac12 \big(\lVert W \rVert^2 + \lVert b \rVert^2\big),
        \qquad z = X W + b

    with :math:`\lambda` = ``l2``. It is strictly convex (the penalty covers the biases too,
    which removes softmax's invariance to adding a constant to every logit), so it has exactly
    one minimum; its value has no closed form (``min_value`` is ``None``). Parameters start at
    zero, where :math:`L = \log 10`.

    >>> import jax
    >>> p = logistic_digits()
    >>> round(float(p.loss(p.init_params(jax.random.key(0)))), 6)
    2.302585
    """
    data = load_digits()
    x, labels = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    model = nn.Dense(10, w_init=zeros(), name="logistic")
    apply = nn.as_function(model)

    def batch_loss(params: PyTree, batch: tuple[jax.Array, ...]) -> jax.Array:
        inputs, targets = batch  # (B, 64), (B,)
        logits = apply(params, inputs)  # (B, 10)
        per_example = losses.softmax_cross_entropy_with_integer_labels(logits, targets)
        return jnp.mean(per_example) + l2 * regularizers.l2_penalty(params)

    def loss(params: PyTree) -> jax.Array:
        return batch_loss(params, (x, labels))

    def init_params(key: jax.Array) -> PyTree:
        params, _, _ = model.init(key, x.shape[1:])  # zeros: the key draws nothing
        return params

    return Problem(
        name="logistic_digits",
        description=(
            f"softmax regression on the {x.shape[0]} digits training images, full batch, "
            f"L2 {l2:g} on all parameters: strictly convex, one minimum of unknown value"
        ),
        loss=loss,
        init_params=init_params,
        data=(x, labels),
        batch_loss=batch_loss,
    )


def mlp_digits(hidden: int = 32) -> Problem:
    r"""A one-hidden-layer ReLU MLP on the digits training split, full batch.

    .. math::

        L(\theta) = \frac1N \sum_n \Big(\log \sum_c e^{z_{nc}} - z_{n y_n}\Big), \qquad
        z = \operatorname{relu}(X W_1 + b_1)\, W_2 + b_2

    with widths ``64 -> hidden -> 10`` (:func:`fdl.nn.MLP`), He-normal weights drawn from the
    key and zero biases. Non-convex; :math:`L \ge 0`, and with 2,410 parameters for 1,438
    examples a long run drives it towards 0 (memorising the training set), but no finite
    parameters reach 0, so ``min_value`` is ``None``.

    >>> import jax
    >>> p = mlp_digits()
    >>> params = p.init_params(jax.random.key(0))
    >>> [leaf.shape for leaf in jax.tree.leaves(params)]
    [(32,), (64, 32), (10,), (32, 10)]
    """
    data = load_digits()
    x, labels = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    model = nn.MLP((hidden, 10), w_init=he_normal())
    apply = nn.as_function(model)

    def batch_loss(params: PyTree, batch: tuple[jax.Array, ...]) -> jax.Array:
        inputs, targets = batch  # (B, 64), (B,)
        logits = apply(params, inputs)  # (B, 10)
        per_example = losses.softmax_cross_entropy_with_integer_labels(logits, targets)
        return jnp.mean(per_example)

    def loss(params: PyTree) -> jax.Array:
        return batch_loss(params, (x, labels))

    def init_params(key: jax.Array) -> PyTree:
        params, _, _ = model.init(key, x.shape[1:])
        return params

    return Problem(
        name="mlp_digits",
        description=(
            f"ReLU MLP 64-{hidden}-10 on the {x.shape[0]} digits training images, full batch "
            "cross-entropy: non-convex, loss >= 0"
        ),
        loss=loss,
        init_params=init_params,
        data=(x, labels),
        batch_loss=batch_loss,
    )


# ---------------------------------------------------------------------------------- the registry


def _rosenbrock() -> Problem:
    return Problem.from_2d(
        "rosenbrock",
        rosenbrock,
        start=(-1.2, 1.0),
        window=((-2.0, 2.0), (-1.0, 3.0)),
        minima=((1.0, 1.0),),
        min_value=0.0,
        description="Rosenbrock's curved valley (a=1, b=100): minimum f(1, 1) = 0",
    )


def _beale() -> Problem:
    return Problem.from_2d(
        "beale",
        beale,
        start=(1.0, 1.5),
        window=((-4.5, 4.5), (-4.5, 4.5)),
        minima=((3.0, 0.5),),
        min_value=0.0,
        description="Beale's plateaus and ridges: minimum f(3, 0.5) = 0",
    )


def _himmelblau() -> Problem:
    return Problem.from_2d(
        "himmelblau",
        himmelblau,
        start=(0.0, 0.0),
        window=((-5.0, 5.0), (-5.0, 5.0)),
        minima=HIMMELBLAU_MINIMA,
        min_value=0.0,
        description="Himmelblau's function: four minima, all f = 0",
    )


def _quadratic() -> Problem:
    return Problem.from_2d(
        "quadratic",
        quadratic,
        start=(-4.0, 1.0),
        window=((-5.0, 5.0), (-1.5, 1.5)),
        minima=((0.0, 0.0),),
        min_value=0.0,
        description=(
            f"ill-conditioned bowl (x^2 + {CONDITION_NUMBER:g} y^2)/2, condition number "
            f"{CONDITION_NUMBER:g}: minimum f(0, 0) = 0"
        ),
    )


def _saddle() -> Problem:
    return Problem.from_2d(
        "saddle",
        saddle,
        start=(1.0, 0.01),
        window=((-1.5, 1.5), (-1.5, 1.5)),
        minima=(),
        min_value=None,
        bounded_below=False,
        description=(
            "the saddle x^2 - y^2: NO minimum, the loss decreases without bound "
            "(>= -2.25 only inside the plot window); lower loss = escaped further"
        ),
    )


_BUILDERS: dict[str, Callable[[], Problem]] = {
    "rosenbrock": _rosenbrock,
    "beale": _beale,
    "himmelblau": _himmelblau,
    "quadratic": _quadratic,
    "saddle": _saddle,
    "logistic_digits": logistic_digits,
    "mlp_digits": mlp_digits,
}


def problem_names() -> list[str]:
    """The names :func:`get_problem` accepts, 2-D problems first.

    >>> problem_names()[:3]
    ['rosenbrock', 'beale', 'himmelblau']
    """
    return list(_BUILDERS)


def get_problem(name: str) -> Problem:
    """The problem called ``name`` (built once, then cached: the data sets load once).

    Raises:
      ValueError: an unknown name; the message lists the valid ones.

    >>> get_problem("rosenbrock").minima
    ((1.0, 1.0),)
    """
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ValueError(f"unknown problem {name!r}; valid problems: {', '.join(_BUILDERS)}")
    return _build(name)


@functools.cache
def _build(name: str) -> Problem:
    return _BUILDERS[name]()
