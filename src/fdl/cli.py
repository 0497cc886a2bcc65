"""The ``fdl`` command line.

.. code-block:: text

    fdl compare --problem rosenbrock --opt adam:learning_rate=0.01 \\
        --opt sgd:learning_rate=1e-3,momentum=0.9 --opt optax:adam:learning_rate=0.01 \\
        --steps 1000 --threshold 1e-3 --out results/

Each command is a subparser (``compare`` today; ``train`` is planned), registered by an
``_add_<command>`` function that sets the function to run. Every mistake in the input (an
unknown optimizer, problem or hyperparameter, a malformed ``--opt``) ends the program with exit
status 2 and one line, ``error: ...``, saying what to do, before anything is computed or written.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from fdl.compare import (
    FDL_OPTIMIZERS,
    LIBRARIES,
    OPTAX_OPTIMIZERS,
    compare,
    make_optimizer,
)
from fdl.problems import get_problem, problem_names

__all__ = ["build_parser", "main", "parse_opt", "parse_value"]

OPT_SYNTAX = "[fdl:|optax:]NAME[:KEY=VALUE[,KEY=VALUE...]]"


class UsageError(Exception):
    """A mistake in the command line; the message says what to do."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (``error: ...``) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


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
        raise UsageError(
            f"value {text!r} is not a number, true/false or none"
        ) from None


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


# ----------------------------------------------------------------------------------- compare


def _add_compare(commands: Any) -> None:
    parser = commands.add_parser(
        "compare",
        help="run optimizers side by side on a test problem",
        description=(
            "Run optimizers from the same start on a test problem, print a summary table, and "
            "write tables and plots. A named optimizer that both fdl and optax have is also run "
            "in the other library, and the largest parameter difference is reported."
        ),
        epilog=(
            f"--opt syntax: {OPT_SYNTAX}. A bare NAME is fdl's optimizer; values are numbers, "
            "true/false or none. Example: fdl compare --problem rosenbrock "
            "--opt adam:learning_rate=0.01 --opt sgd:learning_rate=1e-3,momentum=0.9 "
            "--opt optax:adam:learning_rate=0.01 --steps 1000 --threshold 1e-3 --out results. "
            "Files written to --out: table.md, table.csv, table.json (everything), curves.csv, "
            "losses.png, contour.png (2-D problems), divergence.png (when a twin ran)."
        ),
    )
    parser.add_argument("--problem", help=f"one of: {', '.join(problem_names())}")
    parser.add_argument(
        "--opt", action="append", default=[], metavar="SPEC",
        help=f"an optimizer, {OPT_SYNTAX}; repeat for each",
    )
    parser.add_argument("--steps", type=_positive_int, default=500, help="steps per run (500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial parameters (0)")
    parser.add_argument(
        "--threshold", type=_finite_float, default=None,
        help="report the first step with loss <= this",
    )
    parser.add_argument("--out", type=Path, default=None, help="directory to write results to")
    parser.add_argument("--no-twins", action="store_true", help="skip the fdl/optax twin check")
    parser.add_argument(
        "--list", action="store_true", help="list problems and optimizers, then exit"
    )
    parser.set_defaults(run=_run_compare)


def _list_names() -> str:
    return "\n".join([
        f"problems: {', '.join(problem_names())}",
        f"fdl optimizers (NAME or fdl:NAME): {', '.join(FDL_OPTIMIZERS)}",
        f"optax optimizers (optax:NAME): {', '.join(OPTAX_OPTIMIZERS)}",
    ])


def _run_compare(args: argparse.Namespace) -> int:
    if args.list:
        print(_list_names())
        return 0
    if args.problem is None:
        raise UsageError(f"--problem is required; choose one of: {', '.join(problem_names())}")
    try:
        get_problem(args.problem)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if not args.opt:
        raise UsageError(
            f"give at least one --opt {OPT_SYNTAX}, e.g. --opt adam:learning_rate=0.01"
        )
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {str(args.out)!r} exists and is not a directory")
    # Validate everything before computing anything: compare() would raise the same errors,
    # but only what is raised here is a mistake in the command line.
    optimizers: dict[str, tuple[str, dict[str, Any]]] = {}
    try:
        for text in args.opt:
            if text in optimizers:
                raise UsageError(f"--opt {text!r} is given twice")
            name, hyperparams = parse_opt(text)
            make_optimizer(name, hyperparams)
            optimizers[text] = (name, hyperparams)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None

    result = compare(
        optimizers, args.problem, args.steps, seed=args.seed, threshold=args.threshold,
        twins=not args.no_twins,
    )
    print(result.table())
    if args.out is not None:
        for path in result.save(args.out):
            print(f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The ``fdl`` parser, with one subparser per command."""
    parser = _Parser(
        prog="fdl",
        description="fdl: functional deep learning in JAX. Commands:",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_compare(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fdl`` command line; returns the exit status (0 success, 2 usage error).

    >>> main(["compare", "--problem", "nowhere", "--opt", "adam:learning_rate=0.1"])
    2
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or an argparse error (2, message already printed)
        return 0 if stop.code is None else int(stop.code)
    try:
        return args.run(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
