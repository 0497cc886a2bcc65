"""Self-supervised digits: a CNN encoder trained without labels (SimCLR), probed with labels after.

    python examples/contrastive_digits.py            # metrics and two plots, ~1.5 min on a CPU
    python examples/contrastive_digits.py --quick    # a smoke run

1. SimCLR (Chen et al., 2020): each training image gives two random views (``fdl.augment``:
   resized crop of 60-100% of the area, rotation up to 15 degrees, pixel noise); the encoder
   (the body of ``fdl.models.build_model("cnn")``, 128 features) and an MLP projection head are
   trained by ``fdl.fit.fit`` on ``fdl.contrastive.simclr_loss`` (NT-Xent, temperature 0.5).
   The labels are never seen.
2. Four representations are probed with labels, the encoders frozen: k-NN
   (``fdl.neighbors.knn_classify``, cosine, k=5) and a linear probe (logistic regression, a
   ``Dense(10)`` on standardized features trained by ``fit``): the raw pixels, the encoder at its
   random initialization, the SimCLR encoder, and the supervised CNN's penultimate features
   (trained on the labels by ``examples/_common.fit_on_digits``).
3. Saves ``pca_map.png``, a 2-D PCA map of each representation (test set, coloured by label),
   and ``retrievals.png``, the six nearest training digits of a test digit of each class by
   cosine similarity of the SimCLR features.

What it shows (default settings, seed 0, about 40 s on 2 CPU cores): without a label, SimCLR's
features reach 0.975 k-NN and 0.978 linear-probe accuracy, against 0.969 and 0.950 for the
random encoder, 0.978 and 0.955 for the raw pixels and 0.983 and 0.978 for the supervised CNN
(seeds 1 and 2: SimCLR 0.983 and 0.972 k-NN, 0.994 and 0.981 linear; random 0.964 and 0.967
k-NN, 0.958 and 0.953 linear). The linear probe gains most: the classes become linearly
separable, as well as with the supervised features. k-NN on these small, centred digits is
already strong on raw pixels (0.978, 0.994, 0.986 at seeds 0-2), and SimCLR stays under it
there. 57 of the 60 retrievals share the query's digit (a thin 8 finds two 1s, a 1 finds a 7).
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl
import fdl.augment as augment
import fdl.contrastive as contrastive
from _common import fit_on_digits
from fdl.distances import cosine_similarity
from fdl.neighbors import knn_classify
from fdl.pca import fit_pca, transform


def views(args: argparse.Namespace) -> augment.Augmentation:
    """The random view of a digit: a crop of 60-100% of its area, +-15 degrees, a little noise."""
    return augment.compose(
        functools.partial(augment.random_resized_crop, scale=(args.min_crop, 1.0)),
        functools.partial(augment.random_rotation, max_angle=15.0),
        functools.partial(augment.gaussian_noise, std=0.05),
    )


def train_simclr(encoder, data, args):
    """SimCLR on the training images alone; returns the encoder's (params, layer_state)."""
    model = fdl.nn.Serial(encoder, fdl.nn.MLP((128, args.projection), name="projection"))
    params, state, _ = model.init(jax.random.key(args.seed + 2), data.x_train.shape[1:])
    result = fdl.fit.fit(
        contrastive.simclr_loss(model, views(args), temperature=args.temperature),
        fdl.optim.adamw(fdl.optim.cosine_decay_schedule(args.learning_rate, args.steps), weight_decay=1e-4),
        params,
        (data.x_train,),  # no labels
        layer_state=state,
        key=jax.random.key(args.seed + 3),
        batch_size=args.batch_size,
        steps=args.steps,
        logging=fdl.fit.Logging(progress=False),
    )
    last = result.history[-1]
    print(
        f"SimCLR: {args.steps} steps, NT-Xent {last['loss']:.3f}, pair accuracy {last['pair_accuracy']:.3f}"
    )
    return result.params["body"], result.layer_state["body"]


def linear_probe(train, test, args) -> float:
    """Test accuracy of logistic regression on frozen features (standardized), trained by fit."""
    (f_train, y_train), (f_test, y_test) = train, test
    mean, std = f_train.mean(0, keepdims=True), f_train.std(0, keepdims=True) + 1e-6  # (1, F)
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    probe = fdl.nn.Dense(10)
    params, state, _ = probe.init(jax.random.key(args.seed + 4), f_train.shape[1:])
    result = fdl.fit.fit(
        fdl.fit.classification_loss(probe),
        fdl.optim.adamw(1e-2, weight_decay=1e-3),
        params,
        (f_train, y_train),
        key=jax.random.key(args.seed + 5),
        batch_size=128,
        steps=args.probe_steps,
        logging=fdl.fit.Logging(progress=False),
    )
    return float(fdl.fit.classification_eval(probe, f_test, y_test)(result.params, state)["accuracy"])


def save_pca_map(features: dict, labels: np.ndarray, path: Path) -> None:
    fig = fdl.plot.figure((3.8 * len(features), 4.2))
    for ax, (name, f) in zip(fig.subplots(1, len(features)), features.items(), strict=True):
        f = f / jnp.linalg.norm(f, axis=1, keepdims=True)  # on the sphere, as cosines see them
        xy = np.asarray(transform(fit_pca(f, 2), f))  # (N, 2)
        points = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", vmin=-0.5, vmax=9.5, s=8)
        ax.set(title=name, xlabel="PC 1", ylabel="PC 2", xticks=[], yticks=[])
    fig.colorbar(points, ax=fig.axes, ticks=range(10), label="digit (label, not used by SimCLR)")
    fig.suptitle("test-set features (unit length), first two principal components")
    fdl.plot.save_png(fig, path)


def save_retrievals(queries, pool, path: Path, neighbours: int = 6) -> None:
    """``queries``, ``pool``: (features, images, labels); the labels only caption the grid."""
    (z_query, x_query, y_query), (z_pool, x_pool, y_pool) = queries, pool
    similarity = np.asarray(cosine_similarity(z_query, z_pool))  # (Q, N)
    best = np.argsort(-similarity, axis=1)[:, :neighbours]  # (Q, neighbours)
    fig = fdl.plot.figure((1.2 * (neighbours + 1), 1.3 * len(x_query) + 0.5))
    axes = fig.subplots(len(x_query), neighbours + 1, squeeze=False)
    for r in range(len(x_query)):
        images = [x_query[r]] + [x_pool[j] for j in best[r]]
        titles = [f"query ({y_query[r]})"] + [f"{y_pool[j]}, cos {similarity[r, j]:.2f}" for j in best[r]]
        colours = ["black"] + ["black" if y_pool[j] == y_query[r] else "red" for j in best[r]]
        for ax, image, title, colour in zip(axes[r], images, titles, colours, strict=True):
            ax.imshow(np.asarray(image[:, :, 0]), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(title, fontsize=8, color=colour)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        "nearest training digits to test queries by cosine similarity of SimCLR features\n"
        "(captions: true label, red where it differs from the query's; no label was used)",
        fontsize=9,
    )
    fdl.plot.save_png(fig, path)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="SimCLR steps")
    parser.add_argument("--batch-size", type=int, default=128, help="SimCLR images per step (2x views)")
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--projection", type=int, default=64, help="projection head output size")
    parser.add_argument("--min-crop", type=float, default=0.6, help="smallest crop area fraction")
    parser.add_argument("--supervised-steps", type=int, default=600)
    parser.add_argument("--probe-steps", type=int, default=500)
    parser.add_argument("--k", type=int, default=5, help="neighbours that vote in k-NN")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("contrastive_digits"), help="folder for the plots")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.supervised_steps, args.probe_steps = 300, 200, 200

    start = time.perf_counter()
    data = fdl.data.load_digits(seed=args.seed, flat=False)  # x: (N, 8, 8, 1), pixels in [0, 1]
    cnn = fdl.models.build_model("cnn", 10)
    encoder = fdl.nn.layer_at(cnn, "body")  # (8, 8, 1) -> 128 features
    encoders = {
        "random encoder": encoder.init(jax.random.key(args.seed + 7), data.x_train.shape[1:])[:2],
        "SimCLR (no labels)": train_simclr(encoder, data, args),
    }
    params, state = fit_on_digits(
        cnn, fdl.fit.classification_loss(cnn), data, steps=args.supervised_steps, seed=args.seed
    )
    encoders["supervised CNN"] = (params["body"], state["body"])

    embed = jax.jit(lambda p, s, x: encoder.apply(p, s, x)[0])  # evaluation mode: (N, 128)
    representations = {"raw pixels": (data.x_train.reshape(-1, 64), data.x_test.reshape(-1, 64))}  # (N, 64)
    for name, (p, s) in encoders.items():
        representations[name] = (embed(p, s, data.x_train), embed(p, s, data.x_test))
    result, features = {}, {}
    for name, (f_train, f_test) in representations.items():
        features[name] = f_test
        predicted = knn_classify(f_test, f_train, data.y_train, args.k, "cosine", num_classes=10)
        result[f"{name} knn"] = float(jnp.mean(predicted == data.y_test))
        result[f"{name} linear"] = linear_probe((f_train, data.y_train), (f_test, data.y_test), args)
        print(
            f"{name:20s} {args.k}-NN accuracy {result[f'{name} knn']:.3f}, "
            f"linear probe {result[f'{name} linear']:.3f}"
        )

    args.out.mkdir(parents=True, exist_ok=True)
    save_pca_map(features, np.asarray(data.y_test), args.out / "pca_map.png")
    queries = np.array([np.flatnonzero(data.y_test == d)[0] for d in range(10)])  # one of each digit
    save_retrievals(
        (features["SimCLR (no labels)"][queries], data.x_test[queries], data.y_test[queries]),
        (representations["SimCLR (no labels)"][0], data.x_train, data.y_train),
        args.out / "retrievals.png",
    )
    result["seconds"] = time.perf_counter() - start
    print(f"plots saved to {args.out}/ ({result['seconds']:.0f} s in all)")
    return result


if __name__ == "__main__":
    main()
