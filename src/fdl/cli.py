"""The ``fdl`` command line.

.. code-block:: text

    fdl train --model cnn --opt adamw:learning_rate=2e-3 --epochs 30 --checkpoint-dir ckpt/
    fdl train --model cnn --epochs 30 --checkpoint-dir ckpt/ --resume     # after a crash
    fdl compare --problem rosenbrock --opt adam:learning_rate=0.01 \\
        --opt sgd:learning_rate=1e-3,momentum=0.9 --opt optax:adam:learning_rate=0.01 \\
        --steps 1000 --threshold 1e-3 --out results/

Each command is a subparser registered by an ``_add_<command>`` function that sets the function
to run. Every mistake in the input (an unknown optimizer, model, problem or hyperparameter, a
malformed ``--opt``, a missing data file, a checkpoint of another model) ends the program with
exit status 2 and one line, ``error: ...``, saying what to do, before anything is written.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from fdl.compare import compare
from fdl.optim.registry import LIBRARIES, make_optimizer, optimizer_names
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
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
        "--opt",
        action="append",
        default=[],
        metavar="SPEC",
        help=f"an optimizer, {OPT_SYNTAX}; repeat for each",
    )
    parser.add_argument("--steps", type=_positive_int, default=500, help="steps per run (500)")
    parser.add_argument(
        "--seed", type=_non_negative_int, default=0, help="seed of the initial parameters (0)"
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="gradients on minibatches of this size (problems with data; default: full batch)",
    )
    parser.add_argument(
        "--threshold",
        type=_finite_float,
        default=None,
        help="report the first step with loss <= this",
    )
    parser.add_argument("--out", type=Path, default=None, help="directory to write results to")
    parser.add_argument("--no-twins", action="store_true", help="skip the fdl/optax twin check")
    parser.add_argument("--list", action="store_true", help="list problems and optimizers, then exit")
    parser.set_defaults(run=_run_compare)


def _list_names() -> str:
    fdl_names, optax_names = (optimizer_names(lib, qualified=False) for lib in LIBRARIES)
    return "\n".join(
        [
            f"problems: {', '.join(problem_names())}",
            f"fdl optimizers (NAME or fdl:NAME): {', '.join(fdl_names)}",
            f"optax optimizers (optax:NAME): {', '.join(optax_names)}",
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
            raise UsageError(_as_flags(error)) from None

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


# ------------------------------------------------------------------------------------- train


def _add_train(commands: Any) -> None:
    from fdl.fit import NAN_POLICIES
    from fdl.models import MODELS

    parser = commands.add_parser(
        "train",
        help="train a built-in classifier (digits by default, or MNIST-format IDX files)",
        description=(
            "Train a built-in model with fdl.fit: fused jitted steps, on-device shuffling, "
            "evaluation on the held-out split, optional checkpoints with exact resume."
        ),
        epilog=(
            f"--opt syntax: {OPT_SYNTAX} (see `fdl compare --list` for the names). Data: the "
            "embedded digits (no download) unless --images and --labels name MNIST-format IDX "
            "files (raw or gzip), split by --test-fraction."
        ),
    )
    parser.add_argument("--model", choices=MODELS, default="mlp", help="mlp (default) or cnn")
    parser.add_argument(
        "--hidden", type=_positive_int, nargs="+", default=[256, 256], help="MLP hidden widths (256 256)"
    )
    parser.add_argument("--dropout", type=_rate, default=0.1, help="drop probability (0.1)")
    parser.add_argument("--images", type=Path, help="IDX images file (with --labels)")
    parser.add_argument("--labels", type=Path, help="IDX labels file (with --images)")
    parser.add_argument(
        "--test-fraction", type=_open_rate, default=0.2, help="held-out share, in (0, 1) (0.2)"
    )
    parser.add_argument(
        "--opt",
        default="adam:learning_rate=1e-3",
        metavar="SPEC",
        help=f"the optimizer, {OPT_SYNTAX} (adam:learning_rate=1e-3)",
    )
    parser.add_argument("--epochs", type=_positive_int, default=20, help="epochs (20)")
    parser.add_argument("--batch-size", type=_positive_int, default=32, help="batch size (32)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed of init, split and order (0)")
    parser.add_argument(
        "--steps-per-call", type=_positive_int, default=16, help="steps fused into one XLA call (16)"
    )
    parser.add_argument(
        "--nan-policy",
        choices=NAN_POLICIES,
        default="raise",
        help="on a non-finite loss or gradient: raise (stop) or skip the step",
    )
    parser.add_argument(
        "--compute-dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="compute dtype; parameters and optimizer state stay float32",
    )
    parser.add_argument("--checkpoint-dir", type=Path, help="save checkpoints here")
    parser.add_argument(
        "--checkpoint-every", type=_positive_int, help="steps between checkpoints (default: one per epoch)"
    )
    parser.add_argument("--keep", type=_positive_int, default=3, help="checkpoints to keep (3)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest valid checkpoint in --checkpoint-dir"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a fresh run in --checkpoint-dir, deleting the checkpoints of the run there",
    )
    parser.add_argument("--history", type=Path, help="write the metrics history (.jsonl or .csv)")
    parser.add_argument("--plot", type=Path, help="save the training curves (PNG)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(run=_run_train)


def _rate(text: str) -> float:
    value = _finite_float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _open_rate(text: str) -> float:
    value = _finite_float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text!r}")
    return value


# fit's record fields and the train flags that set them (the same words)
_FLAGS = {
    "dir": "--checkpoint-dir",
    "every": "--checkpoint-every",
    "keep": "--keep",
    "history": "--history",
    "plot": "--plot",
    "steps_per_call": "--steps-per-call",
    "nan_policy": "--nan-policy",
    "out": "--out",
    "resume": "--resume",
    "overwrite": "--overwrite",
}


def _as_flags(error: Exception) -> str:
    """A record's error message with its field names spelled as the flags that set them."""
    text = re.sub(r"^(Checkpoint|Logging|Execution|Eval): ", "", str(error))
    return re.sub(r"`(\w+)`", lambda m: _FLAGS.get(m.group(1), m.group(0)), text)


def _train_records(args: argparse.Namespace) -> dict[str, Any]:
    """fit's records from the flags, checked by the records themselves (fdl.fit.config)."""
    import jax.numpy as jnp

    from fdl import fit

    try:
        return {
            "checkpoint": None
            if args.checkpoint_dir is None
            else fit.Checkpoint(
                args.checkpoint_dir,
                every=args.checkpoint_every,
                keep=args.keep,
                resume=args.resume,
                overwrite=args.overwrite,
            ),
            "logging": fit.Logging(history=args.history, plot=args.plot, progress=args.progress),
            "execution": fit.Execution(
                steps_per_call=args.steps_per_call,
                nan_policy=args.nan_policy,
                compute_dtype=jnp.bfloat16 if args.compute_dtype == "bfloat16" else None,
            ),
        }
    except (ValueError, TypeError) as error:
        raise UsageError(_as_flags(error)) from None


def _check_train_args(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Every check that needs no computation, before anything is loaded or written. The
    values fit checks are checked by fit's own records (:func:`_train_records`)."""
    if (args.images is None) != (args.labels is None):
        raise UsageError("give both --images and --labels (MNIST-format IDX files), or neither")
    for flag, path in (("--images", args.images), ("--labels", args.labels)):
        if path is not None and not path.is_file():
            raise UsageError(
                f"{flag} {str(path)!r}: no such file; give an MNIST-format IDX file (raw or "
                "gzip), or omit --images/--labels to train on the embedded digits"
            )
    if args.resume and args.checkpoint_dir is None:
        raise UsageError("--resume needs --checkpoint-dir (the directory to resume from)")
    if args.overwrite and args.checkpoint_dir is None:
        raise UsageError("--overwrite needs --checkpoint-dir (the directory to start afresh)")
    if args.checkpoint_every is not None and args.checkpoint_dir is None:
        raise UsageError("--checkpoint-every needs --checkpoint-dir")
    try:
        name, hyperparams = parse_opt(args.opt)
        make_optimizer(name, hyperparams)
    except (ValueError, TypeError) as error:
        raise UsageError(f"--opt: {error}") from None
    return name, hyperparams


def _load_train_data(args: argparse.Namespace, flat: bool):
    """``(x_train, y_train, x_test, y_test)`` from the digits or the IDX files."""
    import numpy as np

    from fdl.data import load_digits, load_idx_dataset

    if args.images is None:
        return load_digits(test_fraction=args.test_fraction, seed=args.seed, flat=flat)
    try:
        x, y = load_idx_dataset(args.images, args.labels, flat=flat)
    except (ValueError, OSError) as error:
        raise UsageError(f"--images/--labels: {error}") from None
    order = np.random.default_rng(args.seed).permutation(len(y))
    n_test = max(1, round(args.test_fraction * len(y)))
    if n_test >= len(y):
        raise UsageError(f"--test-fraction {args.test_fraction} leaves no training examples")
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def _run_train(args: argparse.Namespace) -> int:
    import jax

    from fdl import checkpoint, fit, models

    name, hyperparams = _check_train_args(args)
    records = _train_records(args)
    x_train, y_train, x_test, y_test = _load_train_data(args, models.wants_flat_input(args.model))
    if args.batch_size > len(y_train):
        raise UsageError(f"--batch-size {args.batch_size} exceeds the {len(y_train)} training examples")
    model = models.build_model(
        args.model,
        int(max(y_train.max(), y_test.max())) + 1,
        hidden=args.hidden,
        dropout=args.dropout,
    )
    init_key, run_key = jax.random.split(jax.random.key(args.seed))
    try:
        params, layer_state, _ = model.init(init_key, x_train.shape[1:])
    except ValueError as error:
        shape = "x".join(map(str, x_train.shape[1:]))
        raise UsageError(
            f"--model {args.model} cannot take examples of shape {shape}: {error}; "
            "choose --model mlp or larger images"
        ) from None
    try:  # the last check (it creates the output folders), before the training they keep
        fit.prepare_outputs(records["checkpoint"], records["logging"])
    except ValueError as error:
        raise UsageError(_as_flags(error)) from None
    try:
        result = fit.fit(
            fit.classification_loss(model),
            make_optimizer(name, hyperparams),
            params,
            (x_train, y_train),
            layer_state=layer_state,
            key=run_key,
            batch_size=args.batch_size,
            epochs=args.epochs,
            evaluate=fit.Eval(fit.classification_eval(model, x_test, y_test)),
            **records,
        )
    except (checkpoint.CheckpointError, ValueError) as error:
        if not args.resume:
            raise
        first = str(error).splitlines()[0].rstrip(":")
        raise UsageError(
            f"--resume: {first}; resume with the --model/--hidden/--seed/--batch-size of the run "
            "that wrote it, or use a new --checkpoint-dir"
        ) from None
    except FileExistsError as error:  # a fresh run into another run's checkpoint directory
        text = str(error).replace("resume=True", "--resume").replace("overwrite=True", "--overwrite")
        raise UsageError(f"--checkpoint-dir: {text}") from None
    except fit.NonFiniteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    final = result.history[-1]
    print(
        f"step {result.step}: test accuracy {final['eval_accuracy']:.4f}, "
        f"test loss {final['eval_loss']:.4f}, skipped steps {result.skipped}"
    )
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
    parser.add_argument("--model", choices=MODELS, default="mlp", help="mlp (default) or cnn")
    parser.add_argument(
        "--hidden", type=_positive_int, nargs="+", default=[256, 256], help="MLP hidden widths (256 256)"
    )
    parser.add_argument("--classes", type=_positive_int, default=10, help="output classes (10)")
    parser.add_argument(
        "--input-shape",
        type=_positive_int,
        nargs="+",
        metavar="N",
        help="shape of one example (default: the digits, 64 or 8 8 1)",
    )
    parser.set_defaults(run=_run_summary)


def _run_summary(args: argparse.Namespace) -> int:
    from fdl import models, nn

    model = models.build_model(args.model, args.classes, hidden=args.hidden)
    if args.input_shape is not None:
        shape = tuple(args.input_shape)
    else:
        shape = (64,) if models.wants_flat_input(args.model) else (8, 8, 1)
    try:
        print(nn.summary(model, shape))
    except ValueError as error:
        raise UsageError(f"--input-shape {' '.join(map(str, shape))}: {error}") from None
    return 0


# ----------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The ``fdl`` parser, with one subparser per command."""
    parser = _Parser(
        prog="fdl",
        description="fdl: functional deep learning in JAX. Commands:",
    )
    from fdl import __version__

    parser.add_argument("--version", action="version", version=f"fdl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(commands)
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
