"""Transfer learning on digits: pretrain on 0-4, then learn 5-9 from 10 labels each.

    python examples/transfer_digits.py            # four test accuracies and a plot, ~1 min on a CPU
    python examples/transfer_digits.py --quick    # a smoke run
    python examples/transfer_digits.py --images train-images-idx3-ubyte.gz \\
        --labels train-labels-idx1-ubyte.gz       # MNIST's 28x28 digits instead of the embedded 8x8

1. Pretrain ``fdl.models.build_model("cnn", 5)`` on the digits 0-4 (all their training images).
2. Swap its ``head`` for a fresh 5-way ``Dense`` (``fdl.nn.swap``: every other parameter and the
   batch-norm statistics are kept bit for bit) and fine-tune on the digits 5-9 with only
   ``--shots`` labelled images per class, four ways:

   * **frozen body**: the gradient is taken with respect to ``head`` alone
     (``fit(..., trainable="head")``: the body's backward pass is never computed), and the body
     runs in evaluation mode (``fdl.nn.eval_mode``), so its batch norms keep their statistics;
   * **frozen conv blocks**: the two conv blocks (the feature extractor) frozen the same way;
     ``body/dense_0`` and the head train, as Keras's MNIST transfer recipe freezes the
     convolutions and retrains the dense layers;
   * **full fine-tuning**: every parameter trains, from the pretrained body;
   * **from scratch**: the same CNN, freshly initialized, trained on the same few images.

Every run trains on images shifted at random by up to a pixel (the loss draws the shifts from
its step key, on the device). Prints the four test accuracies on the held-out 5-9 images and
saves a plot of test accuracy per step.

What it shows depends on the images. On the embedded 8x8 digits transfer does not pay: a small
CNN trained from scratch on the 50 images ends highest (about 0.97, against 0.93 with the conv
blocks frozen and 0.90 with the whole body frozen), because these digits are easy enough that
50 labels suffice for a CNN of this size, and ~720 images of 0-4 teach it little more (nor
do three times as many 8x8 images from all of UCI's optdigits: frozen conv blocks 0.945 against
scratch 0.954 over 8 seeds).

On 28x28 MNIST digits (IDX files, ``--images``/``--labels``) the new classes are harder to learn
from 50 images, and the frozen conv blocks and full fine-tuning both beat training from scratch
on average (a 5,000-image MNIST subset, 8 runs: 0.921 and 0.922 against 0.903; the frozen conv
blocks won 6, tied 1, lost 1); the whole body frozen, ``dense_0``'s 128 features of a 5-way
classifier, stays under scratch there too. docs/design.md ("Issue 9: transfer") records the
numbers and what else was tried.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

import fdl
from _common import random_shift


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
    """The embedded 8x8 digits (a stratified split), or the IDX pair given, split at random as
    ``fdl train`` splits it; ``--test-fraction`` of the images are held out either way."""
    if not 0 < args.test_fraction < 1:
        parser.error(f"--test-fraction {args.test_fraction}: expected a share in (0, 1)")
    if args.images is None and args.labels is None:
        return fdl.data.load_digits(test_fraction=args.test_fraction, seed=args.seed, flat=False)
    if args.images is None or args.labels is None:
        parser.error("give both --images and --labels (MNIST-format IDX files), or neither")
    try:
        x, y = fdl.data.load_idx_dataset(args.images, args.labels, flat=False)  # (N, rows, cols, 1)
    except (OSError, ValueError) as error:
        parser.error(f"--images/--labels: {error}")
    if missing := absent_digits(y):
        parser.error(f"--labels {str(args.labels)!r}: no images of digit(s) {missing}; expected all of 0-9")
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


def train(model, params, state, train_data, test_data, *, steps, learning_rate, seed, trainable=None):
    """``fit`` with AdamW; returns (params, state, [(step, test accuracy), ...])."""
    batch_size = min(32, len(train_data[1]))
    result = fdl.fit.fit(
        shifted_loss(model),
        fdl.optim.adamw(learning_rate, weight_decay=1e-2),
        params,
        train_data,
        layer_state=state,
        key=jax.random.key(seed),
        batch_size=batch_size,
        steps=steps,
        trainable=trainable,
        logging=fdl.fit.Logging(progress=False),
        evaluate=fdl.fit.Eval(fdl.fit.classification_eval(model, *test_data), every=max(1, steps // 20)),
    )
    curve = [(row["step"], row["eval_accuracy"]) for row in result.history if "eval_accuracy" in row]
    return result.params, result.layer_state, curve


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=10, help="labelled images per class of 5-9")
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
        args.pretrain_steps, args.finetune_steps = 120, 30

    if args.shots < 1:
        parser.error(f"--shots {args.shots}: expected a positive number of labelled images per class")
    data = load_data(parser, args)
    first, second = range(0, 5), range(5, 10)
    pretrain_data = subset(data.x_train, data.y_train, first, None, args.seed)
    pretest_data = subset(data.x_test, data.y_test, first, None, args.seed)
    counts = np.bincount(data.y_train, minlength=10)  # (10,): training images per digit
    for c in second:
        if counts[c] < args.shots:
            parser.error(f"--shots {args.shots}: the training images hold only {counts[c]} of digit {c}")
    few_shot = subset(data.x_train, data.y_train, second, args.shots, args.seed)
    test_data = subset(data.x_test, data.y_test, second, None, args.seed)
    shape = data.x_train.shape[1:]

    model = fdl.models.build_model("cnn", 5)
    params, state, _ = model.init(jax.random.key(args.seed), shape)
    params, state, curve = train(
        model,
        params,
        state,
        pretrain_data,
        pretest_data,
        steps=args.pretrain_steps,
        learning_rate=2e-3,
        seed=args.seed,
    )
    print(f"pretrained on 0-4: test accuracy {curve[-1][1]:.4f}")

    head_key, scratch_key = jax.random.split(jax.random.key(args.seed + 1))
    model, params, state = fdl.nn.swap(
        model, params, state, "head", fdl.nn.Dense(5), key=head_key, input_shape=shape
    )
    frozen_model = fdl.nn.eval_mode(model, "body")
    conv_frozen_model = fdl.nn.eval_mode(model, "body/block_1", "body/block_2")
    scratch_params, scratch_state, _ = model.init(scratch_key, shape)
    runs = {
        "frozen body": (frozen_model, params, state, "head", 1e-2),  # the head alone trains
        # the conv features frozen; dense_0 (from its pretrained values) and the head train
        "frozen conv blocks": (conv_frozen_model, params, state, ["body/dense_0/**", "head/**"], 2e-3),
        "full fine-tuning": (model, params, state, None, 1e-3),
        "from scratch": (model, scratch_params, scratch_state, None, 2e-3),
    }
    curves, accuracy = {}, {}
    for label, (m, p, s, trainable, lr) in runs.items():
        _, _, curves[label] = train(
            m,
            p,
            s,
            few_shot,
            test_data,
            steps=args.finetune_steps,
            learning_rate=lr,
            seed=args.seed,
            trainable=trainable,
        )
        accuracy[label] = curves[label][-1][1]
        print(f"{label}: test accuracy on 5-9 from {args.shots} labels per class: {accuracy[label]:.4f}")

    source = "the 8x8 digits" if args.images is None else args.images.name
    fig = fdl.plot.figure((6, 4))
    ax = fig.subplots()
    for label, points in curves.items():
        steps, acc = zip(*points, strict=True)
        ax.plot(steps, acc, "o-", markersize=3, label=f"{label} ({accuracy[label]:.1%})")
    ax.set(
        xlabel="fine-tuning step",
        ylabel="test accuracy on digits 5-9",
        ylim=(0, 1),
        title=f"CNN pretrained on 0-4 of {source}\n{args.shots} labels per class of 5-9",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fdl.plot.save_png(fig, args.plot)
    return accuracy


if __name__ == "__main__":
    main()
