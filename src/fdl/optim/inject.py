r"""Hyperparameters as state: change a learning rate inside a compiled step without recompiling.

A factory such as ``adam(learning_rate=1e-3, b1=0.9)`` bakes its numbers into the program that
``jit`` compiles: a new learning rate means a new program. :func:`inject_hyperparams` wraps the
factory so that its numeric hyperparameters live in the optimizer **state** instead
(``state.hyperparams["learning_rate"]``): the step reads them as traced arrays, so a user (or a
plateau rule, or a population-based search) can overwrite them between steps and the same
compiled program runs on. A hyperparameter given as a schedule is evaluated at the wrapper's own
step count, and its value is stored in ``hyperparams`` too, where it can be read and logged.

Classification of the factory's arguments (after defaults are applied): names in
``static_args`` and bools are passed as given; a *stateful schedule* (an object with
``init()``, ``update(state, **extra_args)`` and ``__call__(state, **extra_args)``) keeps its
own state; any other callable is a schedule of the count (:class:`WrappedSchedule`); ints,
floats and arrays become state; anything else (a mask, a dtype) is passed as given.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fdl.optim.base import GradientTransformation, safe_increment, with_extra_args_support

__all__ = [
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
    "WrappedSchedule",
    "WrappedScheduleState",
]

PyTree = Any


class InjectHyperparamsState(NamedTuple):
    """optax's earlier state of :func:`inject_hyperparams` (without schedule states), kept for
    its name: ``(count, hyperparams, inner_state)``."""

    count: jax.Array  # type: ignore[assignment]  # NamedTuple field shadows tuple.count
    hyperparams: dict[str, Any]
    inner_state: Any


class InjectStatefulHyperparamsState(NamedTuple):
    """:func:`inject_hyperparams`' state.

    Attributes:
      count: the wrapper's step count (int32).
      hyperparams: ``{name: value}``, every numeric and scheduled hyperparameter as an array
        (the value used by the last step; overwrite an entry to change it).
      hyperparams_states: ``{name: schedule state}`` of the scheduled ones.
      inner_state: the wrapped optimizer's state.
    """

    count: jax.Array  # type: ignore[assignment]
    hyperparams: dict[str, Any]
    hyperparams_states: dict[str, Any]
    inner_state: Any


class WrappedScheduleState(NamedTuple):
    """The step count (int32) a :class:`WrappedSchedule` evaluates its schedule at."""

    count: jax.Array  # type: ignore[assignment]


class WrappedSchedule:
    """A schedule of the step count, as a stateful schedule: ``init()`` starts a count at 0,
    ``update`` increments it, ``__call__(state)`` is ``schedule_fn(state.count)``."""

    def __init__(self, schedule_fn: Callable[[jax.Array], Any]):
        if not callable(schedule_fn):
            raise TypeError(
                f"WrappedSchedule: `schedule_fn` must be a function of the step, got {schedule_fn!r}"
            )
        self.schedule_fn = schedule_fn

    def init(self) -> WrappedScheduleState:
        return WrappedScheduleState(count=jnp.zeros([], jnp.int32))

    def update(self, state: WrappedScheduleState, **extra_args: Any) -> WrappedScheduleState:
        del extra_args
        return WrappedScheduleState(count=safe_increment(state.count))

    def __call__(self, state: WrappedScheduleState, **extra_args: Any) -> Any:
        del extra_args
        return self.schedule_fn(state.count)


def _is_stateful_schedule(value: Any) -> bool:
    return all(callable(getattr(value, name, None)) for name in ("init", "update", "__call__"))


def _highest_dtype(tree: PyTree) -> Any:
    """The dtype of ``tree``'s leaves that all others promote to (float32 for no leaves)."""
    dtypes = [jnp.asarray(leaf).dtype for leaf in jax.tree.leaves(tree)]
    if not dtypes:
        return jnp.asarray([]).dtype

    def higher(a, b):
        promoted = jnp.promote_types(a, b)
        if promoted not in (a, b):
            raise ValueError(
                f"inject_hyperparams: the parameters mix {a} and {b}, neither of which holds the "
                "other; pass `hyperparam_dtype`"
            )
        return promoted

    return functools.reduce(higher, dtypes)


def _as_float(value: Any, dtype: Any) -> Any:
    """A float hyperparameter in ``dtype``; a strongly typed JAX array, or an integer, as is."""
    if isinstance(value, jax.Array) and not getattr(value, "weak_type", False):
        return value
    kind = value.dtype if hasattr(value, "dtype") else type(value)
    if jnp.issubdtype(kind, jnp.floating):
        return jnp.asarray(value, dtype)
    return value


def inject_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    r"""Wrap an optimizer factory so that its numeric hyperparameters are part of its state.

    ``inject_hyperparams(adam)(learning_rate=1e-3)`` is Adam, whose ``init`` stores
    ``hyperparams = {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8,
    "eps_root": 0.0}`` (as arrays) and whose ``update`` builds ``adam(**hyperparams)`` from
    them, traced. Setting ``state.hyperparams["learning_rate"]`` changes the next step; a
    jitted step is not traced again.

    Args:
      inner_factory: the factory, e.g. :func:`~fdl.optim.adam.adam`.
      static_args: names of arguments to keep as Python values (those the factory needs
        concretely, such as a ``nesterov`` flag given as an int).
      hyperparam_dtype: the dtype of float hyperparameters; default the highest-precision
        dtype of the parameters. With bfloat16 parameters pass ``jnp.float32``: in bfloat16
        Adam's default ``b2=0.999`` rounds to 1 (``init`` then refuses it, saying so).

    Returns:
      ``factory(*args, **kwargs) -> GradientTransformation`` with state
      :class:`InjectStatefulHyperparamsState`.

    Raises:
      ValueError: ``static_args`` naming no argument of ``inner_factory`` (listing them); a
        hyperparameter the factory refuses (at construction, or in ``init`` once cast to
        ``hyperparam_dtype``).

    Differs from optax:
      fdl's optimizers keep the gradients' dtype in their updates and their state's dtype in
      their state, so float32 hyperparameters (``hyperparam_dtype``, or a schedule's float32
      values) with bfloat16 parameters give bfloat16 updates; optax's become float32 and its
      moments change dtype after the first step.

    >>> import jax, jax.numpy as jnp
    >>> from fdl.optim import sgd
    >>> opt = inject_hyperparams(sgd)(learning_rate=0.1)
    >>> state = opt.init(jnp.zeros(1))
    >>> step = jax.jit(opt.update)
    >>> u, state = step(jnp.ones(1), state)
    >>> state.hyperparams["learning_rate"] = jnp.asarray(0.5)
    >>> u2, state = step(jnp.ones(1), state)
    >>> [round(x, 4) for x in (u.tolist() + u2.tolist())]
    [-0.1, -0.5]
    """
    names = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    unknown = names - set(signature.parameters)
    if unknown:
        raise ValueError(
            f"inject_hyperparams: `static_args` {sorted(unknown)} are not arguments of "
            f"{getattr(inner_factory, '__name__', inner_factory)!r}, whose arguments are "
            f"{list(signature.parameters)}"
        )

    @functools.wraps(inner_factory)
    def factory(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        fixed: dict[str, Any] = {}
        numbers: dict[str, Any] = {}
        schedules: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            if name in names or isinstance(value, bool | np.bool_):
                fixed[name] = value
            elif _is_stateful_schedule(value):
                schedules[name] = value
            elif callable(value):
                schedules[name] = WrappedSchedule(value)
            elif isinstance(value, int | float | np.number | np.ndarray | jax.Array):
                numbers[name] = value
            else:
                fixed[name] = value
        inner_factory(**bound.arguments)  # the factory's own checks, at construction

        def dtype_for(params):
            return _highest_dtype(params) if hyperparam_dtype is None else hyperparam_dtype

        def init(params: PyTree) -> InjectStatefulHyperparamsState:
            dtype = dtype_for(params)
            hyperparams = {name: jnp.asarray(_as_float(value, dtype)) for name, value in numbers.items()}
            schedule_states = {name: schedule.init() for name, schedule in schedules.items()}
            for name, schedule in schedules.items():
                hyperparams[name] = _as_float(schedule(schedule_states[name]), dtype)
            try:
                inner = inner_factory(**fixed, **hyperparams)
            except ValueError as error:  # a value that rounding in `dtype` made invalid
                shown = ", ".join(f"{name}={float(value)!r}" for name, value in sorted(hyperparams.items()))
                raise ValueError(
                    f"inject_hyperparams: in {jnp.dtype(dtype).name} (the hyperparameters' dtype) they "
                    f"become {shown}, and {error}; pass hyperparam_dtype=jnp.float32 to keep them "
                    "in float32"
                ) from error
            return InjectStatefulHyperparamsState(
                count=jnp.zeros([], jnp.int32),
                hyperparams=hyperparams,
                hyperparams_states=schedule_states,
                inner_state=inner.init(params),
            )

        def update(updates, state, params=None, **extra_args):
            dtype = dtype_for(params)
            hyperparams = {name: _as_float(value, dtype) for name, value in state.hyperparams.items()}
            for name, schedule in schedules.items():
                hyperparams[name] = _as_float(schedule(state.hyperparams_states[name], **extra_args), dtype)
            schedule_states = {
                name: schedule.update(state.hyperparams_states[name], **extra_args)
                for name, schedule in schedules.items()
            }
            inner = with_extra_args_support(inner_factory(**fixed, **hyperparams))
            updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
            return updates, InjectStatefulHyperparamsState(
                count=safe_increment(state.count),
                hyperparams=hyperparams,
                hyperparams_states=schedule_states,
                inner_state=inner_state,
            )

        return GradientTransformation(init, update)

    return factory


def inject_stateful_hyperparams(
    inner_factory: Callable[..., GradientTransformation],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """Deprecated in optax (it is now :func:`inject_hyperparams`, which handles stateful
    schedules itself): the same, with a ``DeprecationWarning``."""
    warnings.warn(
        "inject_stateful_hyperparams is deprecated: use inject_hyperparams", DeprecationWarning, stacklevel=2
    )
    return inject_hyperparams(inner_factory, static_args, hyperparam_dtype)
