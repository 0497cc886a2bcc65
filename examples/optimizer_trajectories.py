"""Watch seven optimizers cross Rosenbrock's valley and Beale's plateaus, from the same start.

    python examples/optimizer_trajectories.py               # 1000 steps, a few seconds on CPU
    python examples/optimizer_trajectories.py --steps 50    # a quick smoke run

For each problem it prints a summary table (final and best loss, steps to reach the threshold,
and the largest parameter difference between fdl's optimizer and optax's, run as a twin from the
same start) and saves a contour plot with every path, the loss per step, and the fdl-vs-optax
divergence, under --out/<problem>/.

The learning rates are each optimizer's best on a grid 1e-4, 3e-4, ..., 1 after 1000 steps
(rounded towards stability: momentum and Nesterov share one). What to look for:

* Rosenbrock: gradient descent, at the largest rate that does not diverge, bounces across the
  steep valley walls and ends zig-zagging short of the minimum; momentum and Nesterov roll along
  the flat floor; Adam gets there with a large rate; Lion steps by exactly the learning rate per
  coordinate (the sign of its momentum), so it ends circling the minimum at that amplitude: its
  best loss is far below its final one.
* Beale: the gradient spans five orders of magnitude between ridge and plateau. Tuned, the
  plain methods do well from this start; RMSProp and Lion, whose steps do not shrink with the
  gradient, stall around a loss of 1e-3, oscillating at the scale of their learning rates.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fdl.compare import Comparison, compare

# problem -> optimizer label -> (registry name, hyperparameters); bare names are fdl's.
SETTINGS: dict[str, dict[str, tuple[str, dict]]] = {
    "rosenbrock": {
        "sgd": ("sgd", {"learning_rate": 3e-3}),
        "momentum": ("sgd", {"learning_rate": 1e-3, "momentum": 0.9}),
        "nesterov": ("sgd", {"learning_rate": 1e-3, "momentum": 0.9, "nesterov": True}),
        "adam": ("adam", {"learning_rate": 1e-1}),
        "rmsprop": ("rmsprop", {"learning_rate": 1e-2}),
        "adagrad": ("adagrad", {"learning_rate": 1.0}),
        "lion": ("lion", {"learning_rate": 3e-3}),
    },
    "beale": {
        "sgd": ("sgd", {"learning_rate": 3e-2}),
        "momentum": ("sgd", {"learning_rate": 3e-3, "momentum": 0.9}),
        "nesterov": ("sgd", {"learning_rate": 3e-3, "momentum": 0.9, "nesterov": True}),
        "adam": ("adam", {"learning_rate": 1e-1}),
        "rmsprop": ("rmsprop", {"learning_rate": 1e-2}),
        "adagrad": ("adagrad", {"learning_rate": 1.0}),
        "lion": ("lion", {"learning_rate": 1e-2}),
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps per optimizer")
    parser.add_argument(
        "--problems",
        nargs="+",
        choices=sorted(SETTINGS),
        default=list(SETTINGS),
        help="which problems to run",
    )
    parser.add_argument("--threshold", type=float, default=1e-3, help="loss to count steps to")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("optimizer_trajectories"),
        help="directory for the tables and plots (one subdirectory per problem)",
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be a positive integer, got {args.steps}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Comparison]:
    args = parse_args(argv)
    results = {}
    for name in args.problems:
        start = time.perf_counter()
        result = compare(SETTINGS[name], name, args.steps, threshold=args.threshold)
        seconds = time.perf_counter() - start
        print(f"\n## {name} ({args.steps} steps, {seconds:.1f} s for all runs and twins)\n")
        print(result.table())
        written = result.save(args.out / name)
        print("plots: " + ", ".join(str(p) for p in written if p.suffix == ".png"))
        results[name] = result
    return results


if __name__ == "__main__":
    main()
