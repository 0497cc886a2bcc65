"""Five attribution maps of a digits MLP, and the model-randomization sanity check."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl

from ._digits import train_mlp

METHODS = ("saliency", "gradient × input", "integrated gradients", "SmoothGrad", "occlusion")
SHOWN = 4  # digits drawn
CHECKED = 100  # digits in the randomization check


def _explain(score_fn, x: jax.Array) -> list[jax.Array]:
    """The five maps of ``score_fn`` on images ``x`` (B, 8, 8, 1), in the order of METHODS."""
    return [
        fdl.attribution.saliency(score_fn, x),
        fdl.attribution.gradient_times_input(score_fn, x),
        fdl.attribution.integrated_gradients(score_fn, x, steps=64),
        fdl.attribution.smoothgrad(score_fn, x, jax.random.key(3), num_samples=50, noise=0.15),
        fdl.attribution.occlusion(score_fn, x, window=(2, 2)),
    ]


def compute() -> dict[str, np.ndarray]:
    data = fdl.data.load_digits(seed=0)  # flat: (N, 64), pixels in [0, 1]
    model = fdl.nn.MLP((64, 10))
    params, state = train_mlp(model, fdl.fit.classification_loss(model), data)
    random_params, _, _ = model.init(jax.random.key(5), (64,))

    def logits_of(params):  # images (B, 8, 8, 1) -> logits (B, 10), evaluation mode
        return jax.jit(lambda x: model.apply(params, state, x.reshape(x.shape[0], 64))[0])

    trained, untrained = logits_of(params), logits_of(random_params)
    x = jnp.asarray(data.x_test).reshape(-1, 8, 8, 1)
    y = jnp.asarray(data.y_test)
    accuracy = float(jnp.mean(jnp.argmax(trained(x), -1) == y))
    assert accuracy > 0.9, accuracy

    x = x[:CHECKED]
    predicted = jnp.argmax(trained(x), -1)  # explain the predicted class, with both models
    trained_score = fdl.attribution.class_score(trained, predicted)
    maps = _explain(trained_score, x)
    random_maps = _explain(fdl.attribution.class_score(untrained, predicted), x)
    correlations = np.array(
        [
            float(jnp.nanmean(fdl.attribution.rank_correlation(jnp.abs(a), jnp.abs(b))))
            for a, b in zip(maps, random_maps, strict=True)
        ]
    )
    # the page's claims: the gradient maps follow the weights, those times the input much less so
    saliency, times_input, ig, smooth, _ = correlations
    assert saliency < 0.5 and smooth < 0.5, correlations
    assert min(times_input, ig) > max(saliency, smooth) + 0.2, correlations
    change = trained_score(x) - trained_score(jnp.zeros_like(x))
    gap = jnp.abs(jnp.sum(maps[2], axis=(1, 2, 3)) - change) / jnp.abs(change)
    assert float(jnp.median(gap)) < 0.01, float(jnp.median(gap))  # completeness at 64 steps

    return {
        "images": np.asarray(x[:SHOWN, :, :, 0]),
        "labels": np.asarray(y[:SHOWN]),
        "predicted": np.asarray(predicted[:SHOWN]),
        "maps": np.stack([np.asarray(m[:SHOWN, :, :, 0]) for m in maps]),  # (5, SHOWN, 8, 8)
        "correlations": correlations,
        "test_accuracy": np.asarray(accuracy),
        "ig_median_gap": np.asarray(float(jnp.median(gap))),
    }


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((12, 5.6), dpi=110)
    grid = fig.add_gridspec(SHOWN, 10, wspace=0.15, hspace=0.25)
    for row in range(SHOWN):
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(data["images"][row], cmap="gray_r", vmin=0, vmax=1)
        ax.set_ylabel(f"predicted {int(data['predicted'][row])}", fontsize=8)
        if row == 0:
            ax.set_title("test digit", fontsize=9)
        for col, name in enumerate(METHODS):
            ax_map = fig.add_subplot(grid[row, col + 1])
            image = data["maps"][col, row]
            scale = float(np.max(np.abs(image))) or 1.0
            ax_map.imshow(image, cmap="bwr", vmin=-scale, vmax=scale)
            if row == 0:
                ax_map.set_title(name.replace(" ", "\n", 1) if len(name) > 10 else name, fontsize=9)
            ax_map.set_xticks([])
            ax_map.set_yticks([])
        ax.set_xticks([])
        ax.set_yticks([])

    bars = fig.add_subplot(grid[:, 7:])
    positions = np.arange(len(METHODS))
    bars.barh(positions, data["correlations"], color=["#1f77b4", "#ff7f0e", "#ff7f0e", "#1f77b4", "#2ca02c"])
    for position, value in zip(positions, data["correlations"], strict=True):
        bars.text(max(value, 0.0) + 0.02, position, f"{value:.2f}", va="center", fontsize=9)
    bars.set_yticks(positions, METHODS, fontsize=9)
    bars.invert_yaxis()
    bars.set_xlim(-0.2, 1.1)
    bars.axvline(0.0, color="black", linewidth=0.8)
    bars.set_xlabel("rank correlation of |map|: trained vs random MLP")
    bars.set_title(
        f"Sanity check on {CHECKED} test digits\n(lower: the map depends on the model)", fontsize=10
    )
    bars.yaxis.tick_right()
    fig.suptitle(
        f"Attributions of a digits MLP (test accuracy {float(data['test_accuracy']):.3f}) for the "
        "predicted class: red raises the logit, blue lowers it",
        fontsize=11,
    )
    fdl.plot.save_png(fig, path)
