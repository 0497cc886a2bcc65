"""GANs on the 8-Gaussians ring: a regularized GAN covers every mode, a plain minimax GAN does not.

    python examples/gan_mixture.py            # about two minutes on a CPU
    python examples/gan_mixture.py --quick    # a smoke run

The data are Metz et al.'s (2017) ring: 8 Gaussians of standard deviation 0.02 whose means lie
on a circle of radius 2. Generator and discriminator are ReLU MLPs with two hidden layers of
128 units; z ~ N(0, I_16). Each GAN trains with ``fdl.gan.make_gan_step`` (Adam, beta1 = 0.5),
all seeds at once: the step is pure, so it is ``jax.vmap``-ed over the seeds and ``lax.scan``-ed
over a chunk of steps, one compiled call per chunk.

Two GANs, each over the same seeds:

* ``minimax``: Goodfellow et al.'s (2014) original game, one discriminator step per generator
  step, no penalty;
* ``non_saturating + R1``: the non-saturating loss, two discriminator steps per generator step
  and the R1 penalty (Mescheder et al., 2018).

Both use Adam with learning rates decayed along a cosine. The second changes three things at
once (loss, critic steps, penalty): it is the recipe that works, not an ablation of one.

Scored with Metz et al.'s metrics (``fdl.gan.mode_coverage``) on 2,500 samples per seed: a
sample is high quality within 3 standard deviations (0.06) of a mode; a mode is covered when
at least 1% of the samples are high quality and nearest to it. Saves the samples of the first
seed over training, one row per GAN.

What it shows (default settings, seeds 0-2, about 100 s): the regularized GAN covers 8/8 modes
on every seed with 87.4%, 83.8% and 84.7% of its samples high quality (mean 85.3%); the
minimax GAN collapses onto 2, 1 and 1 modes (mean 1.33/8), its samples strung along a line.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fdl
import fdl.gan

RADIUS, STD, MODES_COUNT, LATENT = 2.0, 0.02, 8, 16
ANGLES = np.arange(MODES_COUNT) * (2 * np.pi / MODES_COUNT)
MODES = jnp.asarray(RADIUS * np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1), jnp.float32)  # (8, 2)

# name -> settings of make_gan_step (besides the models and optimizers) and the learning rate
GANS = {
    "minimax": {"loss": "minimax", "n_critic": 1, "r1_weight": 0.0},
    "non_saturating + R1": {"loss": "non_saturating", "n_critic": 2, "r1_weight": 0.1},
}


def sample_ring(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``(*shape, 2)`` draws from the mixture: a uniform mode plus N(0, STD^2 I) noise."""
    mode_key, noise_key = jax.random.split(key)
    return MODES[jax.random.randint(mode_key, shape, 0, MODES_COUNT)] + STD * jax.random.normal(
        noise_key, (*shape, 2)
    )


def train(name: str, settings: dict, steps: int, chunk: int, batch: int, seeds: list[int], lr: float):
    """Train one GAN for every seed at once; return the states and seed 0's samples over time."""
    n_critic = settings["n_critic"]
    g_lr = fdl.optim.cosine_decay_schedule(lr, steps, 0.05)  # to 5% of lr at the end
    d_lr = fdl.optim.cosine_decay_schedule(lr, steps * n_critic, 0.05)  # one count per D step
    gan = fdl.gan.make_gan_step(
        fdl.nn.MLP((128, 128, 2)),
        fdl.nn.MLP((128, 128, 1)),
        fdl.optim.adam(g_lr, b1=0.5),
        fdl.optim.adam(d_lr, b1=0.5),
        latent_dim=LATENT,
        loss=settings["loss"],
        n_critic=n_critic,
        r1_weight=settings["r1_weight"],
    )

    def run_chunk(state, key):  # `chunk` steps of one seed
        def one(state, key):
            data_key, step_key = jax.random.split(key)
            real = sample_ring(data_key, (n_critic, batch))  # (n_critic, B, 2)
            return gan.step.pure(state, real, step_key)[0], None

        return jax.lax.scan(one, state, jax.random.split(key, chunk))[0]

    run_chunks = jax.jit(jax.vmap(run_chunk), donate_argnums=0)
    keys = jnp.stack([jax.random.key(s) for s in seeds])  # (S,) one key per seed
    state = jax.vmap(lambda k: gan.init(k, (2,)))(keys)
    snapshots = {}
    start = time.perf_counter()
    for done in range(chunk, steps + 1, chunk):
        keys, chunk_keys = jnp.moveaxis(jax.vmap(lambda k: jax.random.split(k))(keys), 1, 0)
        state = run_chunks(state, chunk_keys)
        snapshots[done] = np.asarray(
            gan.sample(jax.tree.map(lambda a: a[0], state), jax.random.key(done), 500)
        )
    print(f"{name}: {steps} steps x {len(seeds)} seeds in {time.perf_counter() - start:.0f}s")
    return gan, state, snapshots


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6000, help="generator steps")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per GAN")
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=4e-3, help="both learning rates at step 0")
    parser.add_argument("--out", type=Path, default=Path("gan_mixture_out"), help="folder for the plot")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (one seed)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.seeds = 1000, 1
    if args.steps < 4 or args.steps % 4:
        parser.error(f"--steps ({args.steps}) must be a positive multiple of 4: the plot shows 4 snapshots")
    chunk = args.steps // 4
    seeds = list(range(args.seed, args.seed + args.seeds))

    result: dict[str, float] = {}
    snapshots = {}
    for name, settings in GANS.items():
        gan, state, snapshots[name] = train(name, settings, 4 * chunk, chunk, args.batch_size, seeds, args.lr)
        modes, quality = [], []
        for i, seed in enumerate(seeds):
            samples = gan.sample(
                jax.tree.map(lambda a, i=i: a[i], state), jax.random.key(10_000 + seed), 2500
            )
            covered, good = fdl.gan.mode_coverage(samples, MODES, STD)
            modes.append(int(covered))
            quality.append(float(good))
        result[f"{name} modes"] = float(np.mean(modes))
        result[f"{name} min modes"] = float(np.min(modes))
        result[f"{name} high quality"] = float(np.mean(quality))
        result[f"{name} min high quality"] = float(np.min(quality))
        per_seed = ", ".join(f"{m}/8 {100 * q:.1f}%" for m, q in zip(modes, quality, strict=True))
        print(f"  modes covered and high-quality samples per seed: {per_seed}")
        print(f"  mean: {np.mean(modes):.2f}/8 modes, {100 * np.mean(quality):.1f}% high quality")

    steps_shown = sorted(snapshots[next(iter(GANS))])
    fig = fdl.plot.figure((2.6 * len(steps_shown), 2.8 * len(GANS)))
    axes = fig.subplots(len(GANS), len(steps_shown), squeeze=False)
    for row, name in enumerate(GANS):
        for col, step in enumerate(steps_shown):
            ax = axes[row, col]
            points = snapshots[name][step]
            ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, label="generated")
            ax.scatter(MODES[:, 0], MODES[:, 1], s=30, marker="x", color="red", label="modes")
            ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", xticks=[], yticks=[])
            ax.set_title(f"step {step}", fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
        axes[row, 0].legend(fontsize=7, loc="center")
    fig.suptitle(f"samples of the first seed over training ({args.steps} generator steps)", fontsize=10)
    args.out.mkdir(parents=True, exist_ok=True)
    path = fdl.plot.save_png(fig, args.out / "gan_mixture.png")
    print(f"plot saved to {path}")
    return result


if __name__ == "__main__":
    main()
