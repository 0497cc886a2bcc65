"""The ``fdl train`` command: its flags, their checks, and the run (``fit`` on a built-in model)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from fdl.optim.registry import make_optimizer

__all__ = ["add_train", "as_flags"]


from fdl._cli_args import OPT_SYNTAX, UsageError, finite_float, non_negative_int, parse_opt, positive_int

# ------------------------------------------------------------------------------------- train


def add_train(commands: Any) -> None:
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
        "--hidden", type=positive_int, nargs="+", default=[256, 256], help="MLP hidden widths (256 256)"
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
    parser.add_argument("--epochs", type=positive_int, default=20, help="epochs (20)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="batch size (32)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of init, split and order (0)")
    parser.add_argument(
        "--steps-per-call", type=positive_int, default=16, help="steps fused into one XLA call (16)"
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
        "--checkpoint-every", type=positive_int, help="steps between checkpoints (default: one per epoch)"
    )
    parser.add_argument("--keep", type=positive_int, default=3, help="checkpoints to keep (3)")
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
    parser.set_defaults(run=run_train)


def _rate(text: str) -> float:
    value = finite_float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text!r}")
    return value


def _open_rate(text: str) -> float:
    value = finite_float(text)
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


def as_flags(error: Exception) -> str:
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
        raise UsageError(as_flags(error)) from None


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
    from fdl.data import load_digits, load_idx_dataset, split_examples

    try:
        if args.images is None:
            return load_digits(test_fraction=args.test_fraction, seed=args.seed, flat=flat)
        try:
            x, y = load_idx_dataset(args.images, args.labels, flat=flat)
        except (ValueError, OSError) as error:
            raise UsageError(f"--images/--labels: {error}") from None
        return split_examples(x, y, test_fraction=args.test_fraction, seed=args.seed)
    except ValueError as error:  # a fraction that leaves a part empty
        raise UsageError(f"--test-fraction: {str(error).replace('`test_fraction` ', '')}") from None


def run_train(args: argparse.Namespace) -> int:
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
        raise UsageError(as_flags(error)) from None
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
