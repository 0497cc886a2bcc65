"""What the ``fdl`` commands share: the one-line usage error, the parser that raises it, and
the parsers of ``--opt`` and of numeric flags (``fdl.cli`` re-exports ``parse_opt`` and
``parse_value``)."""

from __future__ import annotations

import argparse
import math
import re
from typing import Any, NoReturn

from fdl.optim.registry import LIBRARIES

__all__ = [
    "OPT_SYNTAX",
    "Parser",
    "UsageError",
    "finite_float",
    "non_negative_int",
    "parse_opt",
    "parse_value",
    "positive_int",
]


OPT_SYNTAX = "[fdl:|optax:]NAME[:KEY=VALUE[,KEY=VALUE...]]"


class UsageError(Exception):
    """A mistake in the command line; the message says what to do."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (``error: ...``) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}{_flag_hint(message)}; see `{self.prog} --help`\n")


def _flag_hint(message: str) -> str:
    """For ``fdl train cnn`` (a model name where a flag belongs): the flag that takes it."""
    from fdl.models import MODELS

    prefix = "unrecognized arguments: "
    stray = message[len(prefix) :].split() if message.startswith(prefix) else []
    names = [word for word in stray if word in MODELS]
    return f" (a model is chosen with --model {names[0]})" if names else ""


def parse_value(text: str) -> Any:
    """A hyperparameter value: ``true``/``false``, ``none``, an int, or a float.

    >>> [parse_value(v) for v in ["0.01", "1e-3", "10", "true", "None"]]
    [0.01, 0.001, 10, True, None]
    """
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if re.fullmatch(r"[+-]?\d+", lowered):
        return int(lowered)
    try:
        return float(lowered)
    except ValueError:
        raise UsageError(f"value {text!r} is not a number, true/false or none") from None


def parse_opt(text: str) -> tuple[str, dict[str, Any]]:
    """Split an ``--opt`` value into a registry name and its hyperparameters.

    >>> parse_opt("sgd:learning_rate=1e-3,momentum=0.9")
    ('sgd', {'learning_rate': 0.001, 'momentum': 0.9})
    >>> parse_opt("optax:adam:learning_rate=0.01")
    ('optax:adam', {'learning_rate': 0.01})
    """
    malformed = f"malformed --opt {text!r}: expected {OPT_SYNTAX}, e.g. adam:learning_rate=0.01"
    parts = text.split(":")
    library = parts.pop(0) if parts[0] in LIBRARIES else None
    if not parts or not parts[0] or len(parts) > 2:
        raise UsageError(malformed)
    name = parts[0] if library is None else f"{library}:{parts[0]}"
    hyperparams: dict[str, Any] = {}
    if len(parts) == 2:
        for item in parts[1].split(","):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key.isidentifier() or not value.strip():
                raise UsageError(f"{malformed} (bad item {item!r})")
            if key in hyperparams:
                raise UsageError(f"--opt {text!r} sets {key!r} twice")
            try:
                hyperparams[key] = parse_value(value)
            except UsageError as error:
                raise UsageError(f"--opt {text!r}: {key}: {error}") from None
    return name, hyperparams


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value
