"""Transfer learning on digits: pretrain on 0-4, then learn 5-9 from 10 labels each.

    python examples/transfer_digits.py                 # ~3 min on 2 CPUs: 5 draws x 4 runs, a plot
    python examples/transfer_digits.py --quick         # a smoke run
    python examples/transfer_digits.py --data digits   # scikit-learn's 8x8 digits instead
    python examples/transfer_digits.py --images train-images-idx3-ubyte.gz \\
        --labels train-labels-idx1-ubyte.gz            # any MNIST-format IDX pair

The images: by default 5,000 MNIST digits (28x28, 500 of each digit) embedded in
``examples/data`` (CC BY-SA 3.0; ``data/README.md`` has the source and the license), 20 % held
out at random for testing, so about 2,000 images of 0-4 to pretrain on.

1. Pretrain ``fdl.models.build_model("cnn", 5)`` on the digits 0-4 (all their training images).
2. For each of ``--draws`` draws of ``--shots`` labelled training images per class of 5-9, swap
   the model's ``head`` for a fresh 5-way ``Dense`` (``fdl.nn.swap``: every other parameter and
   the batch-norm statistics are kept bit for bit) and fine-tune four ways:

   * **frozen body**: the gradient is taken with respect to ``head`` alone
     (``fit(..., trainable="head")``: the body's backward pass is never computed), and the body
     runs in evaluation mode (``fdl.nn.eval_mode``), so its batch norms keep their statistics;
   * **frozen conv blocks**: the two conv blocks (the feature extractor) frozen the same way;
     ``body/dense_0`` and the head train, as Keras's MNIST transfer recipe freezes the
     convolutions and retrains the dense layers;
   * **full fine-tuning**: every parameter trains, from the pretrained body;
   * **from scratch**: the same CNN, freshly initialized, trained on the same few images.

Every run trains on images shifted at random by up to a pixel (the loss draws the shifts from
its step key, on the device). Prints each draw's four test accuracies on the held-out 5-9
images, then each run's mean over the draws and its gain over training from scratch, and saves
a plot (mean accuracy per step; each draw's final accuracy).

What it shows (``--seed 0``, the default, on 2 CPUs; docs/design.md, "Issue 9: transfer",
has every number): with the conv blocks frozen the CNN learns 5-9 from 50 images better than
from scratch, 0.910 against 0.886 on average over the 5 draws, ahead on 4 of them; full
fine-tuning gains as much. Freezing the whole body does not pay: ``dense_0``'s 128 features of a
5-way classifier of 0-4 keep too little of what separates 5-9 (0.838). On scikit-learn's 8x8
digits (``--data digits``) transfer does not pay at all: a CNN trained from scratch on 50 of
those images reaches 0.963 (the frozen conv blocks 0.941, ahead on none of the 5 draws), and
~720 coarse images of 0-4 teach it nothing better.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

import fdl
from _common import random_shift

RUNS = ("frozen body", "frozen conv blocks", "full fine-tuning", "from scratch")
DATA = Path(__file__).resolve().parent / "data"  # the embedded MNIST digits (data/README.md)
EMBEDDED = {
    "mnist5k": (DATA / "mnist5k-images-idx3-ubyte.gz", DATA / "mnist5k-labels-idx1-ubyte.gz"),
}


def subset(x: np.ndarray, y: np.ndarray, classes: range, shots: int | None, seed: int):
    """The examples of ``classes`` (labels shifted to start at 0), ``shots`` per class if given."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in classes:
        idx = np.flatnonzero(y == c)
        picks.append(idx if shots is None else rng.choice(idx, shots, replace=False))
    idx = np.sort(np.concatenate(picks))
    return x[idx], (y[idx] - classes.start).astype(np.int32)


def absent_digits(labels: np.ndarray) -> list[int]:
    """The digits 0-9 that ``labels`` never names."""
    return sorted(set(range(10)) - set(np.unique(labels).tolist()))


def load_data(parser: argparse.ArgumentParser, args: argparse.Namespace) -> fdl.data.Split:
    """The IDX pair given, else the ``--data`` embedded: the 8x8 digits as a stratified split,
    an IDX pair (the embedded MNIST digits) split at random as ``fdl train`` splits it;
    ``--test-fraction`` of the images are held out either way."""
    if not 0 < args.test_fraction < 1:
        parser.error(f"--test-fraction {args.test_fraction}: expected a share in (0, 1)")
    if args.images is None and args.labels is None:
        if args.data == "digits":
            return fdl.data.load_digits(test_fraction=args.test_fraction, seed=args.seed, flat=False)
        images, labels = EMBEDDED[args.data]
    elif args.images is None or args.labels is None:
        parser.error("give both --images and --labels (MNIST-format IDX files), or neither")
    else:
        images, labels = args.images, args.labels
    try:
        x, y = fdl.data.load_idx_dataset(images, labels, flat=False)  # (N, rows, cols, 1)
    except (OSError, ValueError) as error:
        parser.error(f"--images/--labels: {error}")
    if missing := absent_digits(y):
        parser.error(f"--labels {str(labels)!r}: no images of digit(s) {missing}; expected all of 0-9")
    try:
        split = fdl.data.split_examples(x, y, test_fraction=args.test_fraction, seed=args.seed)
    except ValueError as error:  # a part left empty
        parser.error(f"--test-fraction {args.test_fraction}: {error}")
    for part, labels in (("test", split.y_test), ("training", split.y_train)):
        if missing := absent_digits(labels):
            parser.error(
                f"--test-fraction {args.test_fraction}: the {part} part of the {len(y)} images "
                f"holds no digit(s) {missing}; give more images or another --test-fraction"
            )
    return split


def shifted_loss(model):
    """The classification loss of ``model`` on randomly shifted images (``fit``'s signature)."""
    loss = fdl.fit.classification_loss(model)

    def loss_fn(params, state, batch, key):
        shift_key, step_key = jax.random.split(key)
        x, y = batch
        return loss(params, state, (random_shift(shift_key, x), y), step_key)

    loss_fn.model = model  # fit reads the model's initial layer state from here
    return loss_fn


def pieces(model, learning_rate, evaluate):
    """What ``fit`` runs: the shifted loss of ``model``, AdamW and the test evaluation. Built once
    per run and reused for every draw, so that ``fit`` reuses its compiled programs too (it
    caches them by these objects)."""
    return shifted_loss(model), fdl.optim.adamw(learning_rate, weight_decay=1e-2), evaluate


def train(run_pieces, params, state, train_data, *, steps, key, trainable=None):
    """``fit`` of ``run_pieces`` (:func:`pieces`); returns (params, state, [(step, test accuracy), ...])."""
    loss_fn, optimizer, evaluate = run_pieces
    result = fdl.fit.fit(
        loss_fn,
        optimizer,
        params,
        train_data,
        layer_state=state,
        key=key,
        batch_size=min(32, len(train_data[1])),
        steps=steps,
        trainable=trainable,
        logging=fdl.fit.Logging(progress=False),
        evaluate=fdl.fit.Eval(evaluate, every=max(1, steps // 20)),
    )
    curve = [(row["step"], row["eval_accuracy"]) for row in result.history if "eval_accuracy" in row]
    return result.params, result.layer_state, curve


def few_shot_runs(model, params, state, data, args, shape):
    """Per draw of the labelled 5-9 images, swap in a fresh head and fine-tune four ways; returns
    ``{run: [[(step, test accuracy), ...] per draw]}``."""
    second = range(5, 10)
    test_data = subset(data.x_test, data.y_test, second, None, args.seed)
    head = fdl.nn.Dense(5)
    # the model with the new head (its parameters are drawn per draw below)
    new, _, _ = fdl.nn.swap(model, params, state, "head", head, key=jax.random.key(0), input_shape=shape)
    variants = {  # the model trained, what trains, the learning rate
        "frozen body": (fdl.nn.eval_mode(new, "body"), "head", 1e-2),  # the head alone trains
        # the conv features frozen; dense_0 (from its pretrained values) and the head train
        "frozen conv blocks": (
            fdl.nn.eval_mode(new, "body/block_1", "body/block_2"),
            ["body/dense_0/**", "head/**"],
            2e-3,
        ),
        "full fine-tuning": (new, None, 1e-3),
        "from scratch": (new, None, 2e-3),
    }
    evaluate = fdl.fit.classification_eval(new, *test_data)  # in evaluation mode: one for all runs
    run_pieces = {label: pieces(m, lr, evaluate) for label, (m, _, lr) in variants.items()}
    curves: dict[str, list] = {label: [] for label in RUNS}
    for draw in range(args.draws):
        key = jax.random.fold_in(jax.random.key(args.seed + 1), draw)
        head_key, scratch_key, train_key = jax.random.split(key, 3)
        few_shot = subset(data.x_train, data.y_train, second, args.shots, args.seed * 1000 + draw)
        _, new_params, new_state = fdl.nn.swap(
            model, params, state, "head", head, key=head_key, input_shape=shape
        )
        scratch_params, scratch_state, _ = new.init(scratch_key, shape)
        for label, (_, trainable, _) in variants.items():
            start = (scratch_params, scratch_state) if label == "from scratch" else (new_params, new_state)
            _, _, curve = train(
                run_pieces[label],
                *start,
                few_shot,
                steps=args.finetune_steps,
                key=train_key,
                trainable=trainable,
            )
            curves[label].append(curve)
            accuracy = curve[-1][1]
            print(
                f"draw {draw}: {label}: test accuracy on 5-9 from {args.shots} labels per class: {accuracy:.4f}"
            )
    return curves


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        choices=["mnist5k", "digits"],
        default="mnist5k",
        help="mnist5k: the embedded 5,000 MNIST digits (28x28); digits: scikit-learn's 8x8 digits",
    )
    parser.add_argument("--shots", type=int, default=10, help="labelled images per class of 5-9")
    parser.add_argument(
        "--draws", type=int, default=5, help="draws of the labelled images, each fine-tuned four ways"
    )
    parser.add_argument("--pretrain-steps", type=int, default=1500)
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=Path, help="MNIST-format IDX images file (with --labels)")
    parser.add_argument("--labels", type=Path, help="MNIST-format IDX labels file (with --images)")
    parser.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of the images held out for testing"
    )
    parser.add_argument("--plot", type=Path, default=Path("transfer_digits.png"))
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.pretrain_steps, args.finetune_steps, args.draws = 120, 30, 2

    if args.shots < 1:
        parser.error(f"--shots {args.shots}: expected a positive number of labelled images per class")
    if args.draws < 1:
        parser.error(f"--draws {args.draws}: expected a positive number of draws")
    data = load_data(parser, args)
    first, second = range(0, 5), range(5, 10)
    pretrain_data = subset(data.x_train, data.y_train, first, None, args.seed)
    pretest_data = subset(data.x_test, data.y_test, first, None, args.seed)
    counts = np.bincount(data.y_train, minlength=10)  # (10,): training images per digit
    for c in second:
        if counts[c] < args.shots:
            parser.error(f"--shots {args.shots}: the training images hold only {counts[c]} of digit {c}")
    shape = data.x_train.shape[1:]

    model = fdl.models.build_model("cnn", 5)
    params, state, _ = model.init(jax.random.key(args.seed), shape)
    params, state, curve = train(
        pieces(model, 2e-3, fdl.fit.classification_eval(model, *pretest_data)),
        params,
        state,
        pretrain_data,
        steps=args.pretrain_steps,
        key=jax.random.key(args.seed),
    )
    print(f"pretrained on 0-4: test accuracy {curve[-1][1]:.4f}")

    curves = few_shot_runs(model, params, state, data, args, shape)
    finals = {label: np.array([c[-1][1] for c in runs]) for label, runs in curves.items()}  # (draws,)
    print(f"over {args.draws} draws of {args.shots} labelled images per class of 5-9 (mean, sd, min-max):")
    for label, acc in finals.items():
        print(
            f"  {label}: test accuracy {acc.mean():.4f} (sd {acc.std():.4f}, {acc.min():.4f}-{acc.max():.4f})"
        )
    for label in ("frozen body", "frozen conv blocks", "full fine-tuning"):
        gain = finals[label] - finals["from scratch"]
        wins = int(np.sum(gain > 0))
        print(
            f"  {label} - from scratch: {gain.mean():+.4f} on average, ahead on {wins} of {args.draws} draws"
        )

    source = {"mnist5k": "5,000 MNIST digits", "digits": "the 8x8 digits"}[args.data]
    if args.images is not None:
        source = args.images.name
    save_plot(curves, finals, args, source)
    return {label: float(acc.mean()) for label, acc in finals.items()}


def save_plot(curves, finals, args, source: str) -> None:
    """Left: test accuracy per fine-tuning step, averaged over the draws; right: each draw's
    final test accuracy per run."""
    fig = fdl.plot.figure((10, 4))
    left, right = fig.subplots(1, 2)
    for i, (label, runs) in enumerate(curves.items()):
        steps = [step for step, _ in runs[0]]
        mean = np.mean([[acc for _, acc in run] for run in runs], axis=0)  # (points,)
        left.plot(steps, mean, "o-", markersize=3, label=f"{label} ({finals[label].mean():.1%})")
        right.plot(np.full(len(finals[label]), i), finals[label], "o", alpha=0.6)
        right.plot([i - 0.25, i + 0.25], [finals[label].mean()] * 2, "k-")
    left.set(
        xlabel="fine-tuning step",
        ylabel="test accuracy on digits 5-9",
        ylim=(0, 1),
        title=f"mean over {args.draws} draws of {args.shots} labels per class",
    )
    left.grid(alpha=0.3)
    left.legend(loc="lower right")
    right.set_xticks(range(len(curves)), [label.replace(" ", "\n", 1) for label in curves])
    right.set(ylabel="final test accuracy (each draw; bar: mean)", title="per draw")
    right.grid(alpha=0.3, axis="y")
    fig.suptitle(f"CNN pretrained on 0-4 of {source}, fine-tuned on 5-9")
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fdl.plot.save_png(fig, args.plot)


if __name__ == "__main__":
    main()
