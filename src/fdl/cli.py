"""The ``fdl`` command line.

.. code-block:: text

    fdl train --model cnn --opt adamw:learning_rate=2e-3 --epochs 30 --checkpoint-dir ckpt/
    fdl train --model cnn --epochs 30 --checkpoint-dir ckpt/ --resume     # after a crash
    fdl compare --problem rosenbrock --opt adam:learning_rate=0.01 \\
        --opt sgd:learning_rate=1e-3,momentum=0.9 --opt optax:adam:learning_rate=0.01 \\
        --steps 1000 --threshold 1e-3 --out results/

Each command is a subparser registered by an ``add_<command>`` (``_add_<command>`` here) function that sets the function
to run (``fdl train``'s lives in ``fdl._cli_train``, the parsers the commands share in
``fdl._cli_args``). Every mistake in the input (an unknown optimizer, model, problem or hyperparameter, a
malformed ``--opt``, a missing data file, a checkpoint of another model) ends the program with
exit status 2 and one line, ``error: ...``, saying what to do, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fdl.compare import compare
from fdl.optim.registry import LIBRARIES, OPTAX_EXCLUDED, make_optimizer, optimizer_names
from fdl.problems import get_problem, problem_names

__all__ = ["build_parser", "main", "parse_opt", "parse_value"]

from fdl._cli_args import (
    OPT_SYNTAX,
    Parser,
    UsageError,
    finite_float,
    non_negative_int,
    parse_opt,
    parse_value,
    positive_int,
)
from fdl._cli_train import add_train, as_flags

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
        "--opt",
        action="append",
        default=[],
        metavar="SPEC",
        help=f"an optimizer, {OPT_SYNTAX}; repeat for each",
    )
    parser.add_argument("--steps", type=positive_int, default=500, help="steps per run (500)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the initial parameters (0)")
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="gradients on minibatches of this size (problems with data; default: full batch)",
    )
    parser.add_argument(
        "--threshold",
        type=finite_float,
        default=None,
        help="report the first step with loss <= this",
    )
    parser.add_argument("--out", type=Path, default=None, help="directory to write results to")
    parser.add_argument("--no-twins", action="store_true", help="skip the fdl/optax twin check")
    parser.add_argument("--list", action="store_true", help="list problems and optimizers, then exit")
    parser.set_defaults(run=_run_compare)


def _list_names() -> str:
    fdl_names, optax_names = (optimizer_names(lib, qualified=False) for lib in LIBRARIES)
    untwinned = [name for name in optax_names if name not in fdl_names]
    return "\n".join(
        [
            f"problems: {', '.join(problem_names())}",
            f"fdl optimizers (NAME or fdl:NAME): {', '.join(fdl_names)}",
            f"optax optimizers (optax:NAME): {', '.join(optax_names)}",
            f"twinned (in both, compared at every step): {len(optax_names) - len(untwinned)} of "
            f"{len(optax_names)} optax optimizers",
            f"optax optimizers without an fdl twin: {', '.join(untwinned) or 'none'}",
            f"left out of both (and why): {'; '.join(f'{k}: {v}' for k, v in OPTAX_EXCLUDED.items())}",
        ]
    )


def _run_compare(args: argparse.Namespace) -> int:
    if args.list:
        print(_list_names())
        return 0
    if args.problem is None:
        raise UsageError(f"--problem is required; choose one of: {', '.join(problem_names())}")
    try:
        problem = get_problem(args.problem)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if args.batch_size is not None:
        if problem.data is None:
            with_data = [name for name in problem_names() if get_problem(name).data is not None]
            raise UsageError(
                f"--batch-size needs a problem with data ({', '.join(with_data)}); "
                f"{args.problem} is a fixed function"
            )
        examples = len(problem.data[0])
        if args.batch_size > examples:
            raise UsageError(
                f"--batch-size {args.batch_size} exceeds the {examples} examples of {args.problem}"
            )
    if not args.opt:
        raise UsageError(f"give at least one --opt {OPT_SYNTAX}, e.g. --opt adam:learning_rate=0.01")
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
    if args.out is not None:  # last of the checks (it creates --out), before the runs it keeps
        from fdl._checks import prepare_output

        try:
            prepare_output("out", args.out, directory=True)
        except ValueError as error:
            raise UsageError(as_flags(error)) from None

    result = compare(
        optimizers,
        problem,
        args.steps,
        seed=args.seed,
        threshold=args.threshold,
        twins=not args.no_twins,
        batch_size=args.batch_size,
    )
    print(result.table())
    if args.out is not None:
        for path in result.save(args.out):
            print(f"wrote {path}")
    return 0


# -------------------------------------------------------------------------------- summary


def _add_summary(commands: Any) -> None:
    from fdl.models import MODELS

    parser = commands.add_parser(
        "summary",
        help="print a built-in model's parts, output shapes, parameter counts and FLOPs",
        description=(
            "Print, per part of a built-in model (by path), the layer, its output shape, its "
            "parameter count and dtype, the total, and the FLOPs of one example (XLA's cost "
            "analysis)."
        ),
    )
    parser.add_argument(
        "name", nargs="?", choices=MODELS, metavar="MODEL", help="mlp (default) or cnn; or give it as --model"
    )
    parser.add_argument("--model", choices=MODELS, help="the same as MODEL")
    parser.add_argument(
        "--hidden", type=positive_int, nargs="+", default=[256, 256], help="MLP hidden widths (256 256)"
    )
    parser.add_argument("--classes", type=positive_int, default=10, help="output classes (10)")
    parser.add_argument(
        "--input-shape",
        type=positive_int,
        nargs="+",
        metavar="N",
        help="shape of one example (default: the digits, 64 or 8 8 1)",
    )
    parser.set_defaults(run=_run_summary)


def _run_summary(args: argparse.Namespace) -> int:
    from fdl import models, nn

    if args.name is not None and args.model is not None and args.name != args.model:
        raise UsageError(
            f"the model is given twice and differs: MODEL {args.name!r} and --model {args.model!r}"
        )
    name = args.name or args.model or "mlp"
    model = models.build_model(name, args.classes, hidden=args.hidden)
    if args.input_shape is not None:
        shape = tuple(args.input_shape)
    else:
        shape = (64,) if models.wants_flat_input(name) else (8, 8, 1)
    try:
        print(nn.summary(model, shape))
    except ValueError as error:
        raise UsageError(f"--input-shape {' '.join(map(str, shape))}: {error}") from None
    return 0


# ----------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The ``fdl`` parser, with one subparser per command."""
    parser = Parser(
        prog="fdl",
        description="fdl: functional deep learning in JAX. Commands:",
    )
    from fdl import __version__

    parser.add_argument("--version", action="version", version=f"fdl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_train(commands)
    _add_compare(commands)
    _add_summary(commands)
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
