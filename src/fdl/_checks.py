"""Validation of static configuration, shared by every module.

Checks run in factories and at trace time on static Python values, never inside traced code, and
never with ``assert``. Each message names the argument, shows the value received and says what is
accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    if shape is None or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise ValueError(f"`{name}` must be a tuple of non-negative ints, got {value!r}")
    return shape
