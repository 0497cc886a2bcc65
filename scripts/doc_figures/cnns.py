"""Two edge filters slid over a digit by fdl.nn.Conv2D (feature maps, then ReLU and max pooling),
and the receptive field of one output of a conv stack, read off its gradient."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl

#: Sobel filters: the left-to-right and the top-to-bottom intensity change.
KERNELS = {
    "vertical edges": np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], np.float32),
    "horizontal edges": np.array([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]], np.float32),
}
#: Conv stacks whose receptive field the figure shows, with the size the formula gives.
STACKS = {
    "one 3x3 conv": (["conv"], 3),
    "two 3x3 convs": (["conv", "conv"], 5),
    "three 3x3 convs": (["conv", "conv", "conv"], 7),
    "conv, 2x2 pool, conv": (["conv", "pool", "conv"], 8),
}


def _feature_maps(image: np.ndarray) -> dict[str, np.ndarray]:
    """The digit through Conv2D(2, 3) with the two Sobel kernels, then ReLU and MaxPool2D(2)."""
    weights = np.stack(list(KERNELS.values()), axis=-1)[:, :, None, :]  # (3, 3, 1, 2), HWIO
    conv = fdl.nn.Conv2D(2, 3, padding="SAME", use_bias=False)
    params, state, _ = conv.init(jax.random.key(0), image.shape)
    params = {"w": jnp.asarray(weights)}
    maps, _ = conv.apply(params, state, image)  # (8, 8, 2)
    # The sliding dot product by hand: zero-pad by 1, then one 3x3 window per output pixel.
    padded = np.pad(image[:, :, 0], 1)  # (10, 10)
    for f, kernel in enumerate(KERNELS.values()):
        by_hand = np.array(
            [[np.sum(padded[i : i + 3, j : j + 3] * kernel) for j in range(8)] for i in range(8)]
        )
        np.testing.assert_allclose(maps[:, :, f], by_hand, rtol=1e-5, atol=1e-5)
    pool = fdl.nn.MaxPool2D(2)
    pooled, _ = pool.apply({}, {}, jax.nn.relu(maps))  # (4, 4, 2)
    relu = np.maximum(np.asarray(maps), 0.0)
    np.testing.assert_allclose(pooled, relu.reshape(4, 2, 4, 2, 2).max(axis=(1, 3)), rtol=1e-6)
    return {"maps": np.asarray(maps), "pooled": np.asarray(pooled)}


def _receptive_field(parts: list[str], size: int = 17) -> np.ndarray:
    """|d y_center / d x| for a linear stack of all-ones 3x3 convs and 2x2 average pools."""
    layers = [
        fdl.nn.Conv2D(1, 3, use_bias=False, w_init=fdl.initializers.ones())
        if part == "conv"
        else fdl.nn.AvgPool2D(2)
        for part in parts
    ]
    model = fdl.nn.Serial(*layers)
    params, state, out_shape = model.init(jax.random.key(0), (size, size, 1))
    centre = (out_shape[0] // 2, out_shape[1] // 2)

    def output(x: jax.Array) -> jax.Array:
        y, _ = model.apply(params, state, x)
        return y[centre[0], centre[1], 0]

    return np.asarray(jax.grad(output)(jnp.zeros((size, size, 1))))[:, :, 0]


def compute() -> dict[str, np.ndarray]:
    data = fdl.data.load_digits(flat=False)  # x: (N, 8, 8, 1), NHWC
    image = np.asarray(data.x_test[np.flatnonzero(data.y_test == 3)[0]])  # a 3, (8, 8, 1)
    out = {"image": image[:, :, 0], "kernels": np.stack(list(KERNELS.values()))}
    out.update(_feature_maps(image))
    for i, (parts, expected) in enumerate(STACKS.values()):
        field = _receptive_field(parts)
        rows, cols = np.flatnonzero(field.any(axis=1)), np.flatnonzero(field.any(axis=0))
        # r_l = r_{l-1} + (k_l - 1) j_{l-1}, j_l = j_{l-1} s_l: the formula on the page
        assert rows[-1] - rows[0] + 1 == cols[-1] - cols[0] + 1 == expected, (parts, rows, cols)
        out[f"field_{i}"] = field
    return out


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((14, 6.0), dpi=100)
    left, right = fig.subfigures(1, 2, width_ratios=[1.55, 1.0])
    axes = left.subplots(2, 4)
    for row, name in enumerate(KERNELS):
        image_ax, kernel_ax, map_ax, pool_ax = axes[row]
        image_ax.imshow(data["image"], cmap="gray_r")
        image_ax.set_title("input digit\n8x8x1")
        kernel = data["kernels"][row]
        kernel_ax.imshow(kernel, cmap="RdBu_r", vmin=-2, vmax=2)
        for (i, j), v in np.ndenumerate(kernel):
            kernel_ax.text(
                j,
                i,
                f"{v:g}",
                ha="center",
                va="center",
                fontsize=11,
                color="white" if abs(v) > 1 else "black",
            )
        kernel_ax.set_title(f"3x3 kernel\n{name}")
        limit = float(np.max(np.abs(data["maps"][:, :, row])))
        shown = map_ax.imshow(data["maps"][:, :, row], cmap="RdBu_r", vmin=-limit, vmax=limit)
        left.colorbar(shown, ax=map_ax, shrink=0.8)
        map_ax.set_title("Conv2D output\n8x8 (SAME padding)")
        pool_ax.imshow(data["pooled"][:, :, row], cmap="Reds", vmin=0.0)
        pool_ax.set_title("ReLU, MaxPool2D(2)\n4x4")
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    left.suptitle("One filter, slid over the image: a feature map per output channel")

    for ax, (i, (name, (_, size))) in zip(
        right.subplots(2, 2).ravel(), enumerate(STACKS.items()), strict=True
    ):
        field = data[f"field_{i}"]
        ax.imshow(np.where(field > 0, field, np.nan), cmap="viridis")
        ax.set_title(f"{name}: {size}x{size}")
        ax.set_xticks(np.arange(-0.5, field.shape[1], 1.0), minor=True)
        ax.set_yticks(np.arange(-0.5, field.shape[0], 1.0), minor=True)
        ax.grid(which="minor", color="#dddddd", linewidth=0.5)
        ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    right.suptitle("Receptive field of the centre output: $|\\partial y / \\partial x|$ (all-ones weights)")
    fdl.plot.save_png(fig, path)
