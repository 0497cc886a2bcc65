"""Checks of optimizer hyperparameters (a traced value passes unchecked, as in optax), of real
numbers, and the decorator that names a factory in its errors."""

from __future__ import annotations

import contextvars
import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import jax
import numpy as np

# -------------------------------------------------------------------- optimizer hyperparameters
# These accept a traced value (a hyperparameter swept under ``jit`` or ``vmap``) unchecked, as
# optax accepts it.


def is_traced(value: Any) -> bool:
    """Whether ``value`` is an array whose value is unknown while tracing (an argument of a
    ``jit``-compiled or ``vmap``-ped function), so that it cannot be checked in Python."""
    try:
        float(value)
    except jax.errors.ConcretizationTypeError:
        return True
    except (TypeError, ValueError):
        return False
    return False


def concrete_float64(x: Any) -> np.ndarray | None:
    """The values of array ``x`` as float64 NumPy, or ``None`` while it is traced (inside ``jit``,
    ``vmap`` or ``grad``: its values cannot be read, so value checks pass it unchecked)."""
    try:
        return np.asarray(x, dtype=np.float64)
    except jax.errors.TracerArrayConversionError:
        return None


def as_number(value: Any) -> float | None:
    """``value`` as a Python float if it is a concrete real scalar, else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, jax.errors.ConcretizationTypeError):
        return None


def check_non_negative(name: str, value: Any, also: str = "") -> Any:
    """Accept a number >= 0 (eps, weight decay, clipping bounds) or a traced value; raise
    naming ``name`` otherwise (``also``: what else is accepted)."""
    check_real(name, value, also)
    if is_traced(value):
        return value
    number = as_number(value)
    if number is None or not number >= 0.0:
        accepted = "a non-negative number" + (f" {also}" if also else "")
        raise ValueError(f"`{name}` must be {accepted}, got {value!r}")
    return value


def check_learning_rate(name: str, value: Any) -> Any:
    """Accept a non-negative number or a schedule (callable); raise naming ``name`` otherwise."""
    if callable(value):
        return value
    return check_non_negative(name, value, also="or a schedule (a function of the step)")


def check_decay(name: str, value: Any) -> Any:
    """Accept a decay rate in ``[0, 1)`` (b1, b2, momentum, rho) or a traced value; raise naming
    ``name`` otherwise."""
    check_real(name, value)
    if is_traced(value):
        return value
    number = as_number(value)
    if number is None or not 0.0 <= number < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value!r}")
    return value


def check_unit_interval(name: str, value: Any) -> Any:
    """Accept a number in ``[0, 1]`` (dampening) or a traced value; raise naming ``name``."""
    check_real(name, value)
    if is_traced(value):
        return value
    number = as_number(value)
    if number is None or not 0.0 <= number <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {value!r}")
    return value


def check_positive_exponent(name: str, value: Any, why: str) -> Any:
    """Reject a non-numeric exponent or a concrete one <= 0 (``why``: what it would break); a
    traced value passes."""
    check_real(name, value)
    number = as_concrete_number(value)
    if number is not None and not number > 0:
        raise ValueError(f"`{name}` must be > 0 ({why}), got {value!r}")
    return value


def as_concrete_number(value: Any) -> float | None:
    """``value`` as a Python float if it is a concrete real number (not a string, a bool or a
    traced value), else ``None``."""
    if isinstance(value, (str, bytes, bool)):
        return None
    return as_number(value)


def check_concrete_number(name: str, value: Any) -> float:
    """``value`` as a Python float; raise naming ``name`` if it is not a concrete, finite real
    number (schedule lengths and rates, which shape the schedule in Python)."""
    check_real(name, value)
    number = as_concrete_number(value)
    if number is None or not math.isfinite(number):
        raise ValueError(
            f"`{name}` must be a concrete, finite real number (a Python or NumPy number, not a "
            f"traced value), got {value!r}"
        )
    return number


def check_concrete_non_negative(name: str, value: Any, why: str) -> float:
    """As :func:`check_concrete_number`, and >= 0 (``why``: what the number means)."""
    number = check_concrete_number(name, value)
    if number < 0:
        raise ValueError(f"`{name}` must be >= 0 ({why}), got {value!r}")
    return number


def check_whole_steps(name: str, value: Any, why: str) -> int:
    """A whole, non-negative number of steps (``3`` or ``3.0``), as a Python int."""
    number = check_concrete_non_negative(name, value, why)
    if number != int(number):
        raise ValueError(f"`{name}` must be a whole number of steps ({why}), got {value!r}")
    return int(number)


# ------------------------------------------------------- hyperparameter values and factory names


def is_real(value: Any) -> bool:
    """Whether ``value`` is a real number: a Python or NumPy int or float, or an array (JAX,
    NumPy, or traced) of an integer or floating dtype. Not a bool (Python's, NumPy's or an
    array of them), a string, ``None`` or a complex number."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, float, np.integer, np.floating)):
        return True
    dtype = getattr(value, "dtype", None)
    if dtype is None or not hasattr(value, "shape"):
        return False
    try:
        return bool(jax.numpy.issubdtype(dtype, np.integer) or jax.numpy.issubdtype(dtype, np.floating))
    except TypeError:  # a dtype NumPy cannot interpret
        return False


def _kind(value: Any) -> str:
    """What ``value`` is, for a message: ``str``, ``NoneType``, ``bool array``, ..."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and hasattr(value, "shape") and not isinstance(value, np.generic):
        return f"{dtype} array"
    return type(value).__name__


def check_real(name: str, value: Any, also: str = "") -> Any:
    """Return ``value`` if it is a real number (:func:`is_real`; traced values included), else
    raise a ``TypeError`` naming ``name`` and showing the value and its type (``also``: what
    else is accepted, e.g. ``"or a schedule"``).

    Every numeric hyperparameter of an optimizer or schedule goes through this check before
    its range is checked, so ``"0.9"`` or ``True`` is refused where it is given, not when the
    first update fails.
    """
    if not is_real(value):
        accepted = "a real number" + (f" {also}" if also else "")
        raise TypeError(f"`{name}` must be {accepted}, got {value!r} ({_kind(value)})")
    return value


_FACTORY: contextvars.ContextVar[str | None] = contextvars.ContextVar("fdl_factory", default=None)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def names_errors(caller: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a factory (an optimizer, an atom, a schedule) so that a ``ValueError`` or
    ``TypeError`` raised while it builds starts with ``caller``: ``"adam: `b1` must be ..."``.

    Only the outermost decorated call names itself: ``adam`` builds ``scale_by_adam``, whose
    checks then report ``adam``, the function the user called. A call that does not fit the
    signature keeps Python's own message; exceptions of other types (and subclasses, such as
    JAX's errors) pass unchanged.
    """

    def decorate(factory: Callable[_P, _R]) -> Callable[_P, _R]:
        signature = inspect.signature(factory)

        @functools.wraps(factory)
        def named(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            if _FACTORY.get() is not None:  # built by another factory, which names itself
                return factory(*args, **kwargs)
            try:
                signature.bind(*args, **kwargs)
            except TypeError:  # a call that does not fit: Python's own message
                return factory(*args, **kwargs)
            token = _FACTORY.set(caller)
            try:
                return factory(*args, **kwargs)
            except (TypeError, ValueError) as error:
                if type(error) not in (TypeError, ValueError):
                    raise
                named_error = type(error)(f"{caller}: {error}")
                raise named_error.with_traceback(error.__traceback__) from None
            finally:
                _FACTORY.reset(token)

        return named

    return decorate
