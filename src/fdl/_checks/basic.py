"""Checks of plain configuration values: counts, rates, choices, shapes, seeds, JSON."""

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


def is_integer_number(value: Any) -> bool:
    """A Python or NumPy integer (``numbers.Integral``), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real_number(value: Any) -> bool:
    """A Python or NumPy real number (``numbers.Real``), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def check_positive_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is a Python or NumPy integer >= 1, else raise."""
    if not is_integer_number(value) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}")
    return int(value)


def check_rate(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is a (Python or NumPy) probability in [0, 1), else raise."""
    if not is_real_number(value) or not 0.0 <= value < 1.0:
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
    if not is_integer_number(value) or value >= 0:
        raise ValueError(
            f"`{name}` must be a negative int (counted from the end, so it means the same with "
            f"any number of leading batch axes), got {value!r}"
        )
    return int(value)


def check_non_negative_int(name: str, value: Any) -> int:
    """Return ``value`` as an ``int`` if it is a Python or NumPy integer >= 0, else raise."""
    if not is_integer_number(value) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}")
    return int(value)


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


def check_positive_finite(name: str, value: Any, *, none_means: str | None = None) -> Any:
    """Return ``value`` as a float if it is a finite number > 0, else raise naming ``name``.

    A concrete 0-d NumPy or JAX array counts as its number (a traced one fails). With
    ``none_means`` (what ``None`` stands for), ``None`` is accepted and returned as is.
    """
    if value is None and none_means is not None:
        return None
    number = value
    if (
        isinstance(number, (np.ndarray, jax.Array))
        and number.shape == ()
        and not isinstance(number, jax.core.Tracer)
    ):
        number = number.item()
    elif isinstance(number, np.generic):
        number = number.item()  # shown as the number it is, not as np.float64(...)
    if (
        isinstance(number, bool)
        or not isinstance(number, (int, float, np.integer, np.floating))
        or not math.isfinite(number)
        or number <= 0
    ):
        accepted = "a finite number > 0" + (f" or None ({none_means})" if none_means is not None else "")
        raise ValueError(f"`{name}` must be {accepted}, got {number!r}")
    return float(number)


def check_fraction(name: str, value: Any, why: str = "") -> float:
    """Return ``value`` as a float if it is a (non-traced) number in [0, 1], else raise."""
    if not is_real_number(value) or not 0.0 <= value <= 1.0:
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
    if not is_integer_number(value):
        raise TypeError(f"`{name}` must be a positive integer or None (keep all), got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be a positive integer or None (keep all), got {value!r}")
    return int(value)


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
