"""Freeze masks of the digits CNN and the cost of its train step with each part frozen."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl

#: What trains in each setting (a pattern list for ``trainable=``) and which parts run in
#: evaluation mode (the frozen ones, as ``examples/transfer_digits.py`` runs its frozen body).
SETTINGS = {
    "everything\ntrains": (None, ()),
    "block_1\nfrozen": (["body/block_2", "body/dense_0", "head"], ("body/block_1",)),
    "conv blocks\nfrozen": (["body/dense_0", "head"], ("body/block_1", "body/block_2")),
    "body frozen\n(head trains)": ("head", ("body",)),
}
BATCH = 32


def _flops(fn, *args) -> float:
    """XLA's FLOP count of ``fn`` as JAX lowers it (before XLA's own optimizations)."""
    cost = jax.jit(fn).lower(*args).cost_analysis()
    return float((cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"])


def compute() -> dict[str, np.ndarray]:
    model = fdl.models.build_model("cnn", 5)  # the model of examples/transfer_digits.py, on 8x8 images
    params, state, _ = model.init(jax.random.key(0), (8, 8, 1))
    paths = fdl.nn.leaf_paths(params)
    x = jax.random.normal(jax.random.key(1), (BATCH, 8, 8, 1))
    y = jnp.arange(BATCH, dtype=jnp.int32) % 5
    key = jax.random.key(2)
    optimizer = fdl.optim.adamw(1e-3, weight_decay=1e-2)

    masks, step_flops, forward_flops = [], [], []
    for trainable, frozen_parts in SETTINGS.values():
        mask = jax.tree.leaves(fdl.nn.select(params, "**" if trainable is None else trainable))
        masks.append(mask)
        m = fdl.nn.eval_mode(model, *frozen_parts)
        loss_fn = fdl.fit.classification_loss(m)
        step = fdl.train.make_step(loss_fn, optimizer, trainable=trainable)
        train_state = fdl.train.init_state(params, optimizer, layer_state=state, trainable=trainable)
        step_flops.append(_flops(lambda *a, step=step: step(*a)[:2], train_state, (x, y), key))
        forward_flops.append(
            _flops(lambda p, s, b, k, f=loss_fn: f(p, s, b, k)[0], params, state, (x, y), key)
        )
    masks_array = np.asarray(masks, dtype=bool).T  # (leaves, settings)
    counts = np.asarray([int(np.size(leaf)) for leaf in jax.tree.leaves(params)])
    step_array, forward_array = np.asarray(step_flops), np.asarray(forward_flops)

    # The page's claims: each frozen part removes work from the step; with the body frozen a step
    # costs one forward pass and the head's small backward; training everything about three.
    assert np.all(np.diff(step_array) < 0), step_array
    assert step_array[-1] < 1.01 * forward_array[-1], (step_array, forward_array)
    assert 2.5 * forward_array[0] < step_array[0] < 3.5 * forward_array[0], (step_array, forward_array)
    trainable_counts = masks_array.T.astype(np.int64) @ counts
    assert trainable_counts[-1] == fdl.nn.param_count(params["head"])
    assert trainable_counts[0] == fdl.nn.param_count(params)
    assert len(paths) == len(counts)
    return {
        "mask": masks_array,
        "leaf_size": counts,
        "trainable_params": trainable_counts,
        "step_flops": step_array,
        "forward_flops": forward_array,
    }


def _leaf_labels() -> list[str]:
    model = fdl.models.build_model("cnn", 5)
    shapes = jax.eval_shape(lambda k: model.init(k, (8, 8, 1))[0], jax.random.key(0))
    return fdl.nn.leaf_paths(shapes)


def draw(data: dict[str, np.ndarray], path: Path) -> None:
    fig = fdl.plot.figure((11, 4.6), dpi=110)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1]})
    names = list(SETTINGS)
    mask, sizes = data["mask"], data["leaf_size"]
    labels = [f"{p}  ({n:,})" for p, n in zip(_leaf_labels(), sizes, strict=True)]
    colors = np.where(mask[..., None], np.array([0.17, 0.63, 0.17]), np.array([0.82, 0.82, 0.82]))
    left.imshow(colors, aspect="auto")
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            left.text(
                j,
                i,
                "trains" if mask[i, j] else "frozen",
                ha="center",
                va="center",
                fontsize=7.5,
                color="white" if mask[i, j] else "#555555",
            )
    left.set_yticks(range(len(labels)), labels, fontsize=8)
    totals = [f"{name}\n{int(n):,} trained" for name, n in zip(names, data["trainable_params"], strict=True)]
    left.set_xticks(range(len(names)), totals, fontsize=8)
    left.tick_params(length=0)
    left.set_title("The freeze mask, fdl.nn.select(params, trainable)", fontsize=10)

    positions = np.arange(len(names))
    right.bar(
        positions,
        data["step_flops"] / 1e6,
        color="#1f77b4",
        width=0.6,
        label="train step (forward + backward + AdamW)",
    )
    right.hlines(
        data["forward_flops"] / 1e6,
        positions - 0.3,
        positions + 0.3,
        color="black",
        linewidth=2,
        label="loss alone (forward pass)",
    )
    for p, s, f in zip(positions, data["step_flops"], data["forward_flops"], strict=True):
        right.text(p, s / 1e6 + 0.8, f"{s / f:.2f}× forward", ha="center", fontsize=8)
    right.set_xticks(positions, names, fontsize=8)
    right.set_ylabel(f"MFLOPs per step (batch of {BATCH} 8×8 images)")
    right.set_ylim(0, 1.15 * data["step_flops"].max() / 1e6)
    right.set_title("The step's cost (XLA cost analysis)", fontsize=10)
    right.legend(loc="upper right", fontsize=8)
    fdl.plot.save_png(fig, path)
