"""Adversarial examples on the embedded digits: a standard CNN against an adversarially trained one.

    python examples/adversarial_digits.py            # two trainings, accuracy against epsilon, a plot
    python examples/adversarial_digits.py --quick    # a smoke run

1. Train ``fdl.models.build_model("cnn", 10)`` on the 8x8 digits (pixels in [0, 1]) as usual.
2. Train the same CNN adversarially (Madry et al., 2018): each step attacks its batch with PGD
   (L-infinity, ``--epsilon``, 5 steps from a random start) and minimizes the loss on the
   attacked images (``fdl.adversarial.adversarial_loss`` as ``fit``'s loss).
3. Attack both on the test images with PGD (20 steps, random start) at a range of epsilons and
   print the clean and the robust accuracy; draw accuracy against epsilon, and a grid of test
   digits next to their adversarial versions for the standard CNN.

What it shows (default settings, about a minute on 2 CPU cores): the standard CNN (0.983
clean) keeps 0.644 of the test digits under PGD at epsilon 0.1 and 0.02 at 0.2; the
adversarially trained CNN gives up almost nothing clean (0.981) and keeps 0.864 at the epsilon it
was trained for. The grid shows why 8x8 digits are easy to attack: a change of 0.1 per pixel
leaves every digit readable to a person, yet turns three of the eight into other digits.
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl
from _common import fit_on_digits
from fdl import adversarial


def train(model, loss_fn, data, *, steps: int, seed: int):
    """The trained model as a jitted ``x -> logits`` in evaluation mode."""
    params, state = fit_on_digits(model, loss_fn, data, steps=steps, seed=seed)
    return jax.jit(lambda x: model.apply(params, state, x)[0])


def accuracies(logits_fn, x, y, epsilons, *, steps: int, seed: int) -> list[float]:
    """Accuracy under PGD (L-infinity, ``steps`` steps, random start) at each epsilon."""
    out = []
    for eps in epsilons:
        attack = functools.partial(adversarial.pgd, epsilon=eps, steps=steps, key=jax.random.key(seed))
        out.append(float(adversarial.robust_accuracy(logits_fn, x, y, attack)))
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilon", type=float, default=0.1, help="the training epsilon (L-infinity)")
    parser.add_argument("--steps", type=int, default=600, help="training steps of each model")
    parser.add_argument("--attack-steps", type=int, default=20, help="PGD steps of the evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path("adversarial_digits.png"))
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.attack_steps = 150, 5

    data = fdl.data.load_digits(seed=args.seed, flat=False)  # x: (N, 8, 8, 1), pixels in [0, 1]
    x, y = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    model = fdl.models.build_model("cnn", 10)
    models = {
        "standard": train(model, fdl.fit.classification_loss(model), data, steps=args.steps, seed=args.seed),
        "adversarially trained": train(
            model,
            adversarial.adversarial_loss(model, args.epsilon, steps=5),
            data,
            steps=args.steps,
            seed=args.seed,
        ),
    }
    epsilons = sorted({0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, args.epsilon})
    curves = {
        name: accuracies(f, x, y, epsilons, steps=args.attack_steps, seed=args.seed)
        for name, f in models.items()
    }
    result = {}
    for name, curve in curves.items():
        clean, robust = curve[0], curve[epsilons.index(args.epsilon)]
        result[f"{name} clean"], result[f"{name} robust"] = clean, robust
        print(
            f"{name}: clean test accuracy {clean:.4f}, under PGD-{args.attack_steps} at "
            f"epsilon {args.epsilon:g}: {robust:.4f}"
        )

    # the standard CNN's adversarial digits at the training epsilon
    standard = models["standard"]
    shown = np.arange(8)
    x_adv = adversarial.pgd(
        standard, x[shown], y[shown], args.epsilon, steps=args.attack_steps, key=jax.random.key(args.seed)
    )
    clean_pred = np.argmax(standard(x[shown]), -1)
    adv_pred = np.argmax(standard(x_adv), -1)

    fig = fdl.plot.figure((11, 4))
    grid = fig.add_gridspec(3, 12)
    ax = fig.add_subplot(grid[:, :4])
    for name, curve in curves.items():
        ax.plot(epsilons, curve, "o-", label=name)
    ax.axvline(args.epsilon, color="gray", ls=":", label=f"training epsilon {args.epsilon:g}")
    ax.set(xlabel="epsilon (L-infinity, pixels in [0, 1])", ylabel="test accuracy under PGD", ylim=(0, 1))
    ax.set_title(f"PGD-{args.attack_steps} on the test digits")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    rows = (
        ("clean", x[shown], clean_pred),
        ("adversarial", x_adv, adv_pred),
        ("difference", x_adv - x[shown], None),
    )
    for r, (label, images, pred) in enumerate(rows):
        for c in range(len(shown)):
            a = fig.add_subplot(grid[r, 4 + c])
            image = np.asarray(images[c, :, :, 0])
            if pred is None:
                a.imshow(image, cmap="coolwarm", vmin=-args.epsilon, vmax=args.epsilon)
            else:
                a.imshow(image, cmap="gray_r", vmin=0, vmax=1)
                a.set_title(f"{int(pred[c])}", fontsize=8, color="black" if pred[c] == y[shown][c] else "red")
            a.set_xticks([])
            a.set_yticks([])
            if c == 0:
                a.set_ylabel(label, fontsize=8)
    fig.suptitle(
        f"standard CNN: test digits, their PGD versions at epsilon {args.epsilon:g} (prediction above)"
    )
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fdl.plot.save_png(fig, args.plot)
    print(f"plot saved to {args.plot}")
    return result


if __name__ == "__main__":
    main()
