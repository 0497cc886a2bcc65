"""Digits read row by row: an LSTM and a GRU classify each 8x8 image as a sequence of 8 rows.

    python examples/rnn_digits.py                 # both >= 95% test accuracy in about a minute
    python examples/rnn_digits.py --epochs 3      # a quick smoke run

Each image becomes a sequence of T = 8 steps with 8 features (one pixel row per step). The
recurrent layer scans the rows (``jax.lax.scan``) and its last hidden state feeds a dense
classifier. Prints both models' test accuracy and step time and saves one plot of both curves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import fdl
from _common import save_plot, train_classifier
from fdl import nn


def rows_as_steps(x):
    """Images (N, 8, 8, 1) -> sequences (N, T=8, F=8): time runs down the rows."""
    return x.reshape(x.shape[0], 8, 8)  # (N, T, F)


def build_model(cell: str, hidden: int) -> nn.Layer:
    make_cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell}[cell]
    return nn.Serial(
        nn.Recurrent(make_cell(hidden), return_sequences=False),  # (8, 8) -> (hidden,)
        nn.Dense(10),
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-3, help="Adam step size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path("rnn_digits.png"))
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    data = fdl.data.load_digits(seed=args.seed, flat=False)
    results, histories = {}, {}
    for cell in ("lstm", "gru"):
        optimizer = fdl.optim.chain(fdl.optim.clip_by_global_norm(1.0), fdl.optim.adam(args.learning_rate))
        result = train_classifier(
            build_model(cell, args.hidden),
            optimizer,
            data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            quiet=args.quiet,
            prepare=rows_as_steps,
        )
        histories[cell] = result["history"]
        results[cell] = result["history"]["test_accuracy"][-1]
        print(
            f"{cell}: test accuracy {results[cell]:.4f} ({len(data.y_test)} test images, "
            f"{result['seconds']:.1f} s, {result['step_seconds'] * 1e3:.2f} ms per step)"
        )
    save_plot(histories, args.plot, "digits as 8-step sequences of rows")
    print(f"plot saved to {args.plot}")
    return results


if __name__ == "__main__":
    main()
