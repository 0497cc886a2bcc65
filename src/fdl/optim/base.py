r"""The optimizer contract, with optax's exact interface.

An optimizer (a *gradient transformation*) is a pair of pure functions:

.. code-block:: text

    init(params)                         -> state
    update(updates, state, params=None)  -> (new_updates, new_state)

``update`` maps a tree of gradients to a tree of *updates* that are **added** to the parameters,
:math:`\theta_{t+1} = \theta_t + u_t` (:func:`apply_updates`). A descent step therefore carries
its minus sign: :func:`scale_by_learning_rate` multiplies by :math:`-\eta`.

fdl's pair *is* optax's interface type: :class:`GradientTransformation` subclasses
``optax.GradientTransformationExtraArgs`` (a ``NamedTuple`` of ``init`` and ``update``), so
``isinstance(fdl.optim.adam(1e-3), optax.GradientTransformation)`` holds and optax's wrappers
treat fdl's transformations as their own. Only the contract is shared; every update rule here is
fdl's own code. fdl's transformations go into ``optax.chain`` and optax's into :func:`chain`, in
either order. Step counts live in the state
as int32 and saturate at :math:`2^{31}-1` (:func:`safe_increment`), never overflow.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import optax

from fdl._checks import check_learning_rate, check_real, check_same_shapes, names_errors
from fdl.tree import floats

__all__ = [
    "GradientTransformation",
    "EmptyState",
    "ScaleByScheduleState",
    "Schedule",
    "ScalarOrSchedule",
    "identity",
    "with_extra_args_support",
    "init_empty_state",
    "safe_int32_increment",
    "ScaleState",
    "GradientTransformationExtraArgs",
    "chain",
    "apply_updates",
    "safe_increment",
    "scale",
    "scale_by_schedule",
    "scale_by_learning_rate",
]

PyTree = Any
#: A learning-rate schedule: the step count in, the value at that step out.
Schedule = Callable[[jax.Array], jax.Array]
#: A hyperparameter given as a constant or as a :data:`Schedule` of the step count.
ScalarOrSchedule = float | jax.Array | Schedule


class GradientTransformation(optax.GradientTransformationExtraArgs):
    """An optimizer: ``init(params) -> state`` and ``update(updates, state, params=None,
    **extra_args)``.

    A subclass of optax's ``GradientTransformationExtraArgs`` (and so of its
    ``GradientTransformation``): the interface is optax's, the update rules are fdl's.
    ``update`` accepts optax's extra keyword arguments (``value``, ``grad``, ``loss``, ...) and
    ignores those it does not need, so an fdl transformation sits inside ``optax.chain`` as it is.
    """

    __slots__ = ()


def takes_extra_args(transformation: Any) -> bool:
    """Whether ``transformation.update`` accepts optax's extra keyword arguments: an ``update``
    with ``**kwargs``, as every fdl transformation's and every optax
    ``GradientTransformationExtraArgs``'s is. optax's plain ``GradientTransformation``
    (``optax.scale_by_adam``, say) and a user's ``update(updates, state, params)`` do not, and
    :func:`chain` calls them without extras, as optax's ``with_extra_args_support`` does. An
    ``update`` whose signature cannot be read counts as taking them if it belongs to optax's
    ``GradientTransformationExtraArgs``."""
    try:
        parameters = inspect.signature(transformation.update).parameters.values()
    except (TypeError, ValueError):  # no signature to read: trust the declared type
        return isinstance(transformation, optax.GradientTransformationExtraArgs)
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def with_extra_args_support(tx: Any) -> GradientTransformation:
    """``tx`` (a transformation) with an ``update`` that accepts optax's extra keyword arguments: as
    it is when it takes them (:func:`takes_extra_args`), else wrapped to drop them (optax's
    plain ``GradientTransformation``, a user's ``update(updates, state, params)``).

    >>> import jax.numpy as jnp, optax
    >>> tx = with_extra_args_support(optax.scale(2.0))
    >>> tx.update(jnp.ones(1), tx.init(jnp.ones(1)), None, loss=3.0)[0].tolist()
    [2.0]
    """
    if isinstance(tx, GradientTransformation):
        return tx
    if takes_extra_args(tx):
        return GradientTransformation(tx.init, tx.update)

    def update(updates, state, params=None, **extra_args):
        del extra_args
        return tx.update(updates, state, params)

    return GradientTransformation(tx.init, update)


GradientTransformationExtraArgs = GradientTransformation
"""optax's name for a transformation whose ``update`` takes extra keyword arguments: every fdl
:class:`GradientTransformation` does."""


EmptyState: TypeAlias = optax.EmptyState
"""The state of a stateless transformation (no leaves): optax's own class, so that the states
of stateless transformations compare equal across the two libraries, structure included."""

ScaleState: TypeAlias = EmptyState
"""The state of :func:`scale` (no leaves), as optax names it."""


def init_empty_state(params: Any) -> EmptyState:
    """The ``init`` of a stateless transformation: ``EmptyState()`` whatever the parameters."""
    del params
    return EmptyState()


class ScaleByScheduleState(NamedTuple):
    """The step count :math:`t` (int32) that the schedule is evaluated at."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count


# ---------------------------------------------------------------------------------- step count


def safe_increment(count: jax.Array) -> jax.Array:
    r"""``count + 1``, saturating at the dtype's maximum instead of wrapping around.

    .. math:: t' = \min(t + 1, t_{\max})

    An integer count saturates at ``iinfo(dtype).max``, a floating one (as optax allows) at
    ``finfo(dtype).max``.

    Raises:
      ValueError: a count whose dtype is neither integer nor floating (a bool, a complex).

    >>> import jax.numpy as jnp
    >>> int(safe_increment(jnp.asarray(2**31 - 1, jnp.int32)))
    2147483647
    >>> float(safe_increment(jnp.asarray(3.0)))
    4.0
    """
    count = jnp.asarray(count)
    if jnp.issubdtype(count.dtype, jnp.integer):
        top = jnp.asarray(jnp.iinfo(count.dtype).max, count.dtype)
    elif jnp.issubdtype(count.dtype, jnp.floating):
        top = jnp.asarray(jnp.finfo(count.dtype).max, count.dtype)
    else:
        raise ValueError(
            f"`count` must have an integer or floating dtype to be incremented, got {count.dtype}"
        )
    return jnp.where(count < top, count + jnp.ones_like(count), top)


# ------------------------------------------------------------------------------------ combinators


def identity() -> GradientTransformation:
    """Pass updates through unchanged: :math:`u = g`.

    >>> import jax.numpy as jnp
    >>> identity().update(jnp.asarray([1.0, -2.0]), EmptyState())[0].tolist()
    [1.0, -2.0]
    """

    def init(params: PyTree) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        del params, extra_args
        return updates, state

    return GradientTransformation(init, update)


def chain(*transformations: Any) -> GradientTransformation:
    r"""Compose transformations: :math:`u = T_n(\cdots T_1(g))`, each with its own state.

    The state is the tuple of the transformations' states, in order (as optax's ``chain``), so
    states of fdl and optax chains compare leaf by leaf. Any object with optax's
    ``init``/``update`` works, optax's own transformations included. Extra keyword arguments
    of ``update`` (optax's protocol: ``value``, ``grad``, ``loss``, ...) reach each member that
    accepts them (:func:`takes_extra_args`); a member without ``**kwargs`` is called without
    them.

    >>> import jax.numpy as jnp
    >>> from fdl.optim import chain, scale
    >>> opt = chain(scale(2.0), scale(-0.5))
    >>> updates, _ = opt.update({"w": jnp.ones(2)}, opt.init({"w": jnp.ones(2)}))
    >>> updates["w"].tolist()
    [-1.0, -1.0]
    """
    for i, t in enumerate(transformations):
        if not (callable(getattr(t, "init", None)) and callable(getattr(t, "update", None))):
            raise TypeError(
                f"chain argument {i} must be a gradient transformation with init and update "
                f"(e.g. fdl.optim.scale(0.1) or optax.scale(0.1)), got {t!r}"
            )

    extras = [takes_extra_args(t) for t in transformations]

    def init(params: PyTree) -> tuple[PyTree, ...]:
        return tuple(t.init(params) for t in transformations)

    def update(updates, state, params=None, **extra_args):
        if not isinstance(state, tuple) or len(state) != len(transformations):
            raise ValueError(
                f"chain of {len(transformations)} transformations expects a state tuple of "
                f"{len(transformations)} entries (as its init returned), got {type(state).__name__}"
            )
        new_state = []
        for t, s, extra in zip(transformations, state, extras, strict=True):
            updates, s = t.update(updates, s, params, **(extra_args if extra else {}))
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def _is_none(x: Any) -> bool:
    return x is None


def none_where(reference: PyTree, tree: PyTree) -> PyTree:
    """``tree`` with ``None`` wherever ``reference`` has a ``None`` (leaf or subtree), as optax
    skips ``None`` parameters and updates; ``tree`` unchanged when ``reference``'s structure is
    not a prefix of it (the caller's shape check then names the paths that differ)."""
    try:
        return jax.tree.map(lambda r, x: None if r is None else x, reference, tree, is_leaf=_is_none)
    except ValueError:
        return tree


def apply_updates(params: PyTree, updates: PyTree) -> PyTree:
    r"""Add the updates to the parameters, keeping each parameter's dtype.

    .. math:: \theta_{t+1} = \theta_t + u_t

    The sum is computed in the promoted dtype of parameter and update, then cast back to the
    parameter's dtype (so bfloat16 parameters stay bfloat16 whatever the update's dtype).
    ``updates`` must have the tree structure of ``params`` and each leaf its parameter's shape;
    a ``None`` parameter (a frozen part, see :func:`fdl.nn.partition`) stays ``None``, whatever
    its update (as in optax).

    Raises:
      ValueError: a tree structure that differs from the parameters' (the message lists the
        paths only one of them has), or an update whose shape differs from its parameter's
        (the message names the leaf path and both shapes). Shapes are static, so under ``jit``
        this is checked once, while tracing.

    >>> import jax.numpy as jnp
    >>> apply_updates({"w": jnp.ones(2)}, {"w": jnp.full(2, -0.5)})["w"].tolist()
    [0.5, 0.5]

    Differs from optax:
      ``optax.apply_updates`` broadcasts: an update of shape ``(1,)`` on a parameter of shape
      ``(3,)`` returns shape ``(3,)``, and per-example gradients of shape ``(B, 3)`` turn the
      parameter into a ``(B, 3)`` array, silently. fdl raises instead.
    """
    seen = none_where(params, updates)  # a None parameter stays None whatever its update
    check_same_shapes("apply_updates", "`updates`", seen, "`params`", params)

    def add(p, u):
        if p is None:
            return None
        p = jnp.asarray(p)
        with jax.numpy_dtype_promotion("standard"):
            total = p + u
        return total.astype(p.dtype)

    return jax.tree.map(add, params, seen, is_leaf=_is_none)


# ------------------------------------------------------------------------------------ scaling


@names_errors("scale")
def scale(step_size: float | jax.Array) -> GradientTransformation:
    r"""Multiply updates by a constant: :math:`u = c\, g`.

    The product keeps the updates' dtype (the constant is cast to it).

    Raises:
      TypeError: a ``step_size`` that is not a real number (a string, a bool, ``None``).

    >>> import jax.numpy as jnp
    >>> u, _ = scale(0.5).update(jnp.asarray([2.0], jnp.bfloat16), EmptyState())
    >>> u.tolist(), u.dtype
    ([1.0], dtype(bfloat16))
    """
    check_real("step_size", step_size)

    def init(params: PyTree) -> EmptyState:
        del params
        return EmptyState()

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        del params, extra_args
        updates = jax.tree.map(lambda g: jnp.asarray(step_size, jnp.result_type(g)) * g, updates)
        return updates, state

    return GradientTransformation(init, update)


@names_errors("scale_by_schedule")
def scale_by_schedule(step_size_fn: Schedule) -> GradientTransformation:
    r"""Multiply updates by a schedule of the step: :math:`u_t = c(t)\, g_t`, :math:`t = 0, 1, \ldots`

    The state holds the step count :math:`t`; the schedule is evaluated at the count *before*
    it is incremented, so the first step uses :math:`c(0)`.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_schedule(lambda t: 1.0 / (1.0 + t.astype(jnp.float32)))  # 1, 1/2, ...
    >>> state = opt.init(jnp.zeros(1))
    >>> u, state = opt.update(jnp.ones(1), state)
    >>> u, state = opt.update(jnp.ones(1), state)
    >>> u.tolist(), int(state.count)
    ([0.5], 2)
    """
    if not callable(step_size_fn):
        raise TypeError(f"`step_size_fn` must be callable, got {step_size_fn!r}")

    def init(params: PyTree) -> ScaleByScheduleState:
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra_args):
        updates = floats(updates)  # integer / Python-number updates as floats
        del params, extra_args
        step_size = step_size_fn(state.count)
        updates = jax.tree.map(lambda g: jnp.asarray(step_size, jnp.result_type(g)) * g, updates)
        return updates, ScaleByScheduleState(count=safe_increment(state.count))

    return GradientTransformation(init, update)


@names_errors("scale_by_learning_rate")
def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule | None = None, *, flip_sign: bool = True
) -> GradientTransformation:
    r"""Scale by the learning rate, as a descent step: :math:`u = -\eta\, g`.

    ``learning_rate`` is a number (:func:`scale`) or a schedule :math:`\eta(t)`
    (:func:`scale_by_schedule`). ``flip_sign=False`` drops the minus sign (for ascent).
    ``None`` (the default, as optax's) means no scaling at all: :func:`identity`, whatever
    ``flip_sign`` says. (The aliases, such as ``adam``, refuse ``learning_rate=None``: there it
    would turn a descent into an unscaled ascent.)

    Raises:
      TypeError: a learning rate that is neither a real number nor a schedule.
      ValueError: a negative learning rate.

    >>> import jax.numpy as jnp
    >>> opt = scale_by_learning_rate(0.1)
    >>> [round(x, 6) for x in opt.update(jnp.asarray([2.0]), opt.init(jnp.zeros(1)))[0].tolist()]
    [-0.2]
    """
    if learning_rate is None:
        return identity()
    return scale_by_required_learning_rate(learning_rate, flip_sign=flip_sign)


def scale_by_required_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> GradientTransformation:
    """:func:`scale_by_learning_rate` without its ``None`` (no scaling): the last link of every
    alias, which refuses ``learning_rate=None`` instead of taking unscaled ascent steps."""
    check_learning_rate("learning_rate", learning_rate)
    sign = -1.0 if flip_sign else 1.0
    if callable(learning_rate):
        return scale_by_schedule(lambda count: sign * learning_rate(count))
    return scale(sign * learning_rate)


safe_int32_increment = safe_increment
"""optax's older name for :func:`safe_increment`."""
