"""Validation of static configuration, shared by every module.

Checks run in factories and at trace time on static Python values, never inside traced code, and
never with ``assert``. Each message names the argument, shows the value received and says what is
accepted.
"""

from __future__ import annotations

import json
import math
import numbers
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

REDUCTIONS = ("mean", "sum", "none")


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return value


def check_rate(name: str, value: Any) -> float:
    """Return ``value`` if it is a probability in [0, 1), else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise listing them."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {valid}, got {value!r}")
    return value


def check_shape(name: str, value: Any) -> tuple[int, ...]:
    """Return ``value`` as a tuple of non-negative ints, else raise naming ``name``."""
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    if shape is None or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError(f"`{name}` must be a tuple of non-negative ints, got {value!r}")
    return shape


def check_negative_axis(name: str, value: Any) -> int:
    """Return ``value`` if it is a negative int (an axis counted from the end), else raise."""
    if isinstance(value, bool) or not isinstance(value, int) or value >= 0:
        raise ValueError(
            f"`{name}` must be a negative int (counted from the end, so it means the same with "
            f"any number of leading batch axes), got {value!r}"
        )
    return value


def check_non_negative_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an int >= 0, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool, else raise a ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {value!r}")
    return value


def check_finite(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a finite real number, else raise naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
    ):
        raise ValueError(f"`{name}` must be a finite number, got {value!r}")
    return float(value)


def check_non_negative_finite(name: str, value: Any, *, none_means: str | None = None) -> Any:
    """Return ``value`` as a float if it is a finite number >= 0, else raise naming ``name``.

    With ``none_means`` (what ``None`` stands for), ``None`` is accepted and returned as is.
    """
    if value is None and none_means is not None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not math.isfinite(value)
        or value < 0
    ):
        accepted = "a non-negative finite number"
        if none_means is not None:
            accepted += f" or None ({none_means})"
        raise ValueError(f"`{name}` must be {accepted}, got {value!r}")
    return float(value)


def check_fraction(name: str, value: Any, why: str = "") -> float:
    """Return ``value`` as a float if it is a (non-traced) number in [0, 1], else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1]{f' ({why})' if why else ''}, got {value!r}")
    return float(value)


def check_open_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a real number strictly inside (0, 1), else raise."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or not 0.0 < float(value) < 1.0
    ):
        raise ValueError(f"`{name}` must be in (0, 1), got {value!r}")
    return float(value)


def check_seed(name: str, value: Any) -> int:
    """Return ``value`` if it is a non-negative int (what ``numpy.random.default_rng`` accepts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}")
    return int(value)


def check_step(name: str, value: Any) -> int:
    """Return ``value`` as an int if it is a non-negative integer (``operator.index``).

    A non-integer raises ``TypeError``, a negative one ``ValueError``.
    """
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be a non-negative integer, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"`{name}` must be a non-negative integer, got {value!r}") from None
    if number < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}")
    return number


def check_keep(name: str, value: Any) -> int:
    """Return ``value`` if it is a positive int (how many checkpoints to keep)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be a positive integer or None (keep all), got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer or None (keep all), got {value!r}")
    return value


def check_json_dict(name: str, value: Any) -> dict[str, Any]:
    """``value`` (a mapping or ``None``) as a strict-JSON dict, round-tripped; else raise."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"`{name}` must be a dict (or None), got {type(value).__name__}")
    try:
        text = json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"`{name}` must be strict JSON (str keys; dict, list, str, int, float, bool, None; "
            f"no NaN or infinity): {err}"
        ) from None
    return json.loads(text)


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
    if is_traced(value):
        return value
    number = as_number(value)
    if number is None or not 0.0 <= number < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {value!r}")
    return value


def check_unit_interval(name: str, value: Any) -> Any:
    """Accept a number in ``[0, 1]`` (dampening) or a traced value; raise naming ``name``."""
    if is_traced(value):
        return value
    number = as_number(value)
    if number is None or not 0.0 <= number <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {value!r}")
    return value


def check_positive_exponent(name: str, value: Any, why: str) -> Any:
    """Reject a concrete exponent <= 0 (``why``: what it would break); a traced or non-numeric
    value passes (checked elsewhere)."""
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


# ---------------------------------------------------------------------- training (train, fit, cli)


def check_instance(name: str, value: Any, kind: type, spelled: str) -> Any:
    """Return ``value`` if it is a ``kind``, else a ``TypeError`` showing how to build one."""
    if not isinstance(value, kind):
        raise TypeError(f"`{name}` must be a {spelled}, got {value!r}")
    return value


def check_optimizer(caller: str, optimizer: Any) -> Any:
    """Return ``optimizer`` if it has optax's ``(init, update)`` interface."""
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise TypeError(
            f"{caller}: `optimizer` must have optax's (init, update) interface "
            f"(e.g. fdl.optim.adam(1e-3) or optax.adam(1e-3)), got {optimizer!r}"
        )
    return optimizer


def check_arity(caller: str, name: str, fn: Any, count: int, signature: str, hint: str = "") -> Any:
    """Return ``fn`` if it is callable with ``count`` positional arguments (``signature`` says
    which); a builtin without an inspectable signature is trusted."""
    import inspect

    if not callable(fn):
        raise TypeError(f"{caller}: `{name}` must be callable ({signature}), got {fn!r}")
    try:
        found = inspect.signature(fn)
    except ValueError:
        return fn
    try:
        found.bind(*([None] * count))
    except TypeError:
        label = getattr(fn, "__name__", repr(fn))
        raise TypeError(
            f"{caller}: `{name}` must take {count} arguments, {signature}; got {label!r} with "
            f"signature {found}{hint}"
        ) from None
    return fn


def check_data(data: Any, batch_size: int) -> tuple[Any, ...]:
    """``data`` as a tuple of arrays sharing a leading (example) axis of at least ``batch_size``."""
    if not isinstance(data, (tuple, list)) or not data:
        raise ValueError(
            f"`data` must be a tuple of arrays with the same leading (example) axis, e.g. "
            f"(x_train, y_train), got {type(data).__name__}"
        )
    sizes = [np.shape(a)[0] if np.ndim(a) else None for a in data]
    if sizes[0] is None or any(n != sizes[0] for n in sizes):
        shapes = ", ".join(str(np.shape(a)) for a in data)
        raise ValueError(f"every array of `data` must have the same leading axis, got shapes {shapes}")
    if batch_size > sizes[0]:
        raise ValueError(f"`batch_size` ({batch_size}) must not exceed the number of examples ({sizes[0]})")
    return tuple(data)


def check_duration(steps: Any, epochs: Any) -> None:
    """Exactly one of ``steps`` and ``epochs``, a positive integer."""
    if (steps is None) == (epochs is None):
        raise ValueError(f"give exactly one of `steps` and `epochs`, got steps={steps!r}, epochs={epochs!r}")
    check_positive_int("steps" if steps is not None else "epochs", steps if steps is not None else epochs)


def check_prng_key(name: str, key: Any) -> Any:
    """Return ``key`` if it is a JAX array (a typed or legacy PRNG key)."""
    if not isinstance(key, jax.Array):
        raise ValueError(f"`{name}` must be a JAX PRNG key (jax.random.key(seed)), got {key!r}")
    return key


def check_suffix(name: str, path: Any, suffixes: Sequence[str]) -> Any:
    """Return ``path`` if its suffix is one of ``suffixes``."""
    from pathlib import Path

    if Path(path).suffix not in suffixes:
        allowed = " or ".join(suffixes)
        raise ValueError(f"`{name}` {str(path)!r} must end in {allowed}")
    return path


def check_metric_name(name: str, value: Any) -> str:
    """Return ``value`` if it is a non-empty string (a history key such as ``eval_loss``)."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"`{name}` must be a history key such as 'eval_loss', got {value!r}")
    return value
