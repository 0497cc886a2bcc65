"""Accuracy under FGSM and PGD against epsilon for a standard and an adversarially trained
digits MLP; adversarial digits."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl
from fdl import adversarial

from ._digits import train_mlp

EPSILONS = (0.0, 0.05, 0.1, 0.15, 0.2)  # each a compiled attack: five keep compute() short
TRAIN_EPSILON = 0.1
SHOWN = 6


def _train(model: fdl.nn.Layer, loss_fn, data: fdl.data.Split):
    """The model trained by ``train_mlp``, as a jitted ``x -> logits`` (evaluation mode)."""
    params, state = train_mlp(model, loss_fn, data)
    return jax.jit(lambda x: model.apply(params, state, x)[0])


def compute() -> dict[str, np.ndarray]:
    data = fdl.data.load_digits(seed=0)  # flat: (N, 64), pixels in [0, 1]
    model = fdl.nn.MLP((64, 10))
    models = {
        "standard": _train(model, fdl.fit.classification_loss(model), data),
        "robust": _train(model, adversarial.adversarial_loss(model, TRAIN_EPSILON, steps=5), data),
    }
    x, y = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    out: dict[str, np.ndarray] = {"epsilon": np.asarray(EPSILONS)}
    for name, logits_fn in models.items():
        for attack_name, attack in (("fgsm", adversarial.fgsm), ("pgd", adversarial.pgd)):
            curve = []
            for eps in EPSILONS:
                settings = {"steps": 10, "key": jax.random.key(2)} if attack_name == "pgd" else {}
                chosen = functools.partial(attack, epsilon=eps, **settings)
                curve.append(float(adversarial.robust_accuracy(logits_fn, x, y, chosen)))
            out[f"{name}_{attack_name}"] = np.asarray(curve)

    # the page's claims
    for name in models:
        assert np.all(out[f"{name}_pgd"] <= out[f"{name}_fgsm"] + 0.01), name  # PGD finds at least FGSM's
    at = EPSILONS.index(TRAIN_EPSILON)
    assert out["standard_pgd"][0] > 0.9 and out["standard_pgd"][-1] < 0.1
    assert out["robust_pgd"][0] > out["standard_pgd"][0] - 0.03  # a little clean accuracy given up
    assert out["robust_pgd"][at] > out["standard_pgd"][at] + 0.15  # a lot of robust accuracy gained

    standard = models["standard"]
    shown = jnp.arange(SHOWN)
    x_adv = adversarial.pgd(standard, x[shown], y[shown], TRAIN_EPSILON, steps=10, key=jax.random.key(2))
    assert float(jnp.max(jnp.abs(x_adv - x[shown]))) <= TRAIN_EPSILON + 1e-6
    out["images"] = np.asarray(x[shown]).reshape(SHOWN, 8, 8)
    out["adversarial"] = np.asarray(x_adv).reshape(SHOWN, 8, 8)
    out["labels"] = np.asarray(y[shown])
    out["clean_predicted"] = np.asarray(jnp.argmax(standard(x[shown]), -1))
    out["adversarial_predicted"] = np.asarray(jnp.argmax(standard(x_adv), -1))
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((11.5, 4.6), dpi=110)
    fig.set_layout_engine("none")  # two grids placed by hand: the plot left, the digits right
    ax = fig.add_gridspec(1, 1, left=0.07, right=0.44, bottom=0.12, top=0.92).subplots()
    grid = fig.add_gridspec(3, SHOWN, left=0.53, right=0.99, bottom=0.04, top=0.86, wspace=0.1, hspace=0.3)
    colors = {"standard": "#d62728", "robust": "#1f77b4"}
    labels = {"standard": "standard", "robust": f"adversarially trained ($\\varepsilon$ = {TRAIN_EPSILON:g})"}
    for name in ("standard", "robust"):
        ax.plot(
            data["epsilon"], data[f"{name}_pgd"], "o-", color=colors[name], label=f"{labels[name]}, PGD-10"
        )
        ax.plot(data["epsilon"], data[f"{name}_fgsm"], "s--", color=colors[name], alpha=0.7, label="    FGSM")
    ax.axvline(TRAIN_EPSILON, color="gray", linestyle=":")
    ax.set_xlabel("$\\varepsilon$ ($L_\\infty$, pixels in [0, 1])")
    ax.set_ylabel("test accuracy under attack")
    ax.set_ylim(0, 1)
    ax.set_title("Two digits MLPs, 359 test digits")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)

    rows = (
        ("clean", data["images"], data["clean_predicted"]),
        (f"PGD, $\\varepsilon$ = {TRAIN_EPSILON:g}", data["adversarial"], data["adversarial_predicted"]),
        ("difference", data["adversarial"] - data["images"], None),
    )
    for r, (label, images, predicted) in enumerate(rows):
        for c in range(SHOWN):
            a = fig.add_subplot(grid[r, c])
            if predicted is None:
                a.imshow(images[c], cmap="bwr", vmin=-TRAIN_EPSILON, vmax=TRAIN_EPSILON)
            else:
                a.imshow(images[c], cmap="gray_r", vmin=0, vmax=1)
                wrong = int(predicted[c]) != int(data["labels"][c])
                a.set_title(f"{int(predicted[c])}", fontsize=9, color="#d62728" if wrong else "black")
            a.set_xticks([])
            a.set_yticks([])
            if c == 0:
                a.set_ylabel(label, fontsize=8)
    fig.text(
        0.76, 0.98, "The standard MLP's prediction above each test digit", ha="center", va="top", fontsize=11
    )
    fdl.plot.save_png(fig, path)
