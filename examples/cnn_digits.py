"""A small CNN with batch norm on the embedded digits data set (8x8 images, no download).

    python examples/cnn_digits.py                 # >= 98% test accuracy in seconds on a CPU
    python examples/cnn_digits.py --epochs 3      # a quick smoke run

The model is ``fdl.models.build_model("cnn", 10)``: two 3x3 convolution blocks (conv, batch norm,
ReLU, max pool 2: (8, 8, 1) -> (4, 4, 32) -> (2, 2, 64)) and a dense head. Batch norm keeps
its running mean and variance in the layer state, part of the training state
(``fdl.train.init_state``) that each jitted step takes and returns; evaluation uses the running
statistics. Training batches are shifted at random by up to one pixel (``--no-augment`` turns
it off). Prints the final test accuracy and saves a loss/accuracy plot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import fdl
from _common import random_shift, save_plot, train_classifier


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="AdamW step size")
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path("cnn_digits.png"))
    parser.add_argument("--no-augment", action="store_true", help="no random 1-pixel shifts")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    data = fdl.data.load_digits(seed=args.seed, flat=False)  # x: (N, 8, 8, 1), NHWC
    steps = args.epochs * (len(data.y_train) // args.batch_size)
    # Cosine decay to zero: the last epochs take small steps, so the final weights settle.
    schedule = fdl.optim.cosine_decay_schedule(args.learning_rate, decay_steps=steps)
    optimizer = fdl.optim.adamw(schedule, weight_decay=args.weight_decay)
    result = train_classifier(
        fdl.models.build_model("cnn", 10, dropout=args.dropout),
        optimizer,
        data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        quiet=args.quiet,
        augment=None if args.no_augment else random_shift,
    )
    history = result["history"]
    final = history["test_accuracy"][-1]
    print(
        f"test accuracy: {final:.4f} ({len(data.y_test)} test images, {result['seconds']:.1f} s, "
        f"{result['step_seconds'] * 1e3:.2f} ms per step)"
    )
    save_plot({"cnn": history}, args.plot, "CNN with batch norm on digits")
    print(f"plot saved to {args.plot}")
    return {"test_accuracy": final, "seconds": result["seconds"]}


if __name__ == "__main__":
    main()
