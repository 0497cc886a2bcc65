"""A small CNN with batch norm on the embedded digits data set (8x8 images, no download).

    python examples/cnn_digits.py                 # >= 98% test accuracy in about a minute on CPU
    python examples/cnn_digits.py --epochs 3      # a quick smoke run

Two 3x3 convolution blocks (conv, batch norm, ReLU, max pool) and a dense head. Batch norm keeps
its running mean and variance in the layer state: each jitted train step takes the state and
returns the updated one (``fdl.train.make_stateful_train_step``); evaluation uses the running
statistics. Prints the final test accuracy and saves a loss/accuracy plot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import save_plot, train_classifier

import fdl
from fdl import nn


def build_model(dropout: float) -> nn.Layer:
    he = fdl.initializers.he_normal()  # Var[W] = 2/fan_in, fan_in = 3*3*channels_in

    def block(features: int) -> nn.Layer:
        return nn.Serial(
            nn.Conv2D(features, 3, padding="SAME", use_bias=False, w_init=he),  # (8, 8, F) ...
            nn.BatchNorm(),
            nn.Relu(),
            nn.MaxPool2D(2),  # halves H and W
        )

    return nn.Serial(
        block(32),  # (8, 8, 1) -> (4, 4, 32)
        block(64),  # -> (2, 2, 64)
        nn.Flatten(3),  # -> (256,)
        nn.Dropout(dropout),
        nn.Dense(128, w_init=he),
        nn.Relu(),
        nn.Dense(10),
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="AdamW step size")
    parser.add_argument("--weight-decay", type=float, default=1e-2)
    parser.add_argument("--dropout", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path("cnn_digits.png"))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    data = fdl.data.load_digits(seed=args.seed, flat=False)  # x: (N, 8, 8, 1), NHWC
    steps = args.epochs * (len(data.y_train) // args.batch_size)
    # Cosine decay to zero: the last epochs take small steps, so the final weights settle.
    schedule = fdl.optim.cosine_decay_schedule(args.learning_rate, decay_steps=steps)
    optimizer = fdl.optim.adamw(schedule, weight_decay=args.weight_decay)
    result = train_classifier(
        build_model(args.dropout), optimizer, data,
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, quiet=args.quiet,
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
