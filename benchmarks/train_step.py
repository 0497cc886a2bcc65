"""Jitted train step: fdl models against the same models in raw jax.numpy + optax.

Both steps run the same math from the same initial values with the same optimizer (optax.adam),
both jit-compiled with the params and optimizer state donated. Rounds interleave the two (the
order alternates each round, see ``_common.py``); each round times ``--steps`` calls and
blocks once at its end.
We report the median seconds per step and the ratio fdl / raw.

    python benchmarks/train_step.py                  # writes benchmarks/results/train_step-<platform>.{json,md}
    python benchmarks/train_step.py --rounds 5       # quicker
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from _common import RESULTS, compiled_cost, interleaved, machine, ratios, save

import fdl

CASES = {
    # name: (layer widths, batch, loss kind)
    "mlp_784-512-512-10_b128": ((784, 512, 512, 10), 128, "xent"),
    "mlp_2-32-32-1_b16": ((2, 32, 32, 1), 16, "mse"),
}


def fdl_step(widths, loss_kind, optimizer):
    model = fdl.nn.mlp(widths[1:])

    def loss_fn(params, batch, key):
        x, y = batch
        out, _ = model.apply(params, None, x)
        if loss_kind == "xent":
            return fdl.losses.softmax_cross_entropy_with_integer_labels(out, y, reduction="mean")
        return fdl.losses.mse(out, y, reduction="mean")

    return model, fdl.train.make_train_step(loss_fn, optimizer)


def raw_step(loss_kind, optimizer):
    """The floor: the same MLP written by hand, jitted with donation."""

    def forward(params, x):
        *hidden, (w_out, b_out) = params
        for w, b in hidden:
            x = jax.nn.relu(x @ w + b)
        return x @ w_out + b_out

    def loss_fn(params, batch, key):
        x, y = batch
        out = forward(params, x)
        if loss_kind == "xent":
            logp = jax.nn.log_softmax(out)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=-1))
        return jnp.mean((out - y) ** 2)

    def step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss}

    return jax.jit(step, donate_argnums=(0, 1))


def run_case(name, widths, batch_size, loss_kind, rounds, steps):
    key = jax.random.key(0)
    k_init, k_x, k_y, k_step = jax.random.split(key, 4)
    optimizer = optax.adam(1e-3)
    model, step_fdl = fdl_step(widths, loss_kind, optimizer)
    step_raw = raw_step(loss_kind, optimizer)
    params_fdl, _, _ = model.init(k_init, (widths[0],))
    # The raw model starts from the very same values, as a list of (w, b) pairs.
    dense = [params_fdl[f"dense_{i}"] for i in range(len(params_fdl))]  # mlp's layers, in order
    params_raw = [(jnp.array(p["w"]), jnp.array(p["b"])) for p in dense]
    x = jax.random.normal(k_x, (batch_size, widths[0]))
    if loss_kind == "xent":
        y = jax.random.randint(k_y, (batch_size,), 0, widths[-1])
    else:
        y = jax.random.normal(k_y, (batch_size, widths[-1]))
    batch = (x, y)
    state = {
        "fdl": [step_fdl, params_fdl, optimizer.init(params_fdl)],
        "raw": [step_raw, params_raw, optimizer.init(params_raw)],
    }

    def runner(which):
        def run(n):
            step, params, opt_state = state[which]
            for _ in range(n):
                params, opt_state, metrics = step(params, opt_state, batch, k_step)
            jax.block_until_ready((params, opt_state, metrics))
            state[which][1:] = [params, opt_state]
            losses[which] = metrics["loss"]

        return run

    costs = {
        which: compiled_cost(step.lower(params, opt_state, batch, k_step).compile())
        for which, (step, params, opt_state) in state.items()
    }
    losses = {}
    runners = {which: runner(which) for which in state}
    for run in runners.values():  # compile and warm up
        run(5)
    times = interleaved(runners, rounds, steps)
    result = ratios(times, "fdl", "raw")
    # Same start, same math: after the same number of steps the losses agree.
    for run in runners.values():
        run(1)
    return {
        "case": name,
        "batch": batch_size,
        "steps_per_round": steps,
        "rounds": rounds,
        "median_s_per_step": result["median_s_per_call"],
        "ratio_fdl_over_raw": result["ratio"],
        "median_of_round_ratios": result["median_of_round_ratios"],
        "final_loss": {which: float(loss) for which, loss in losses.items()},
        "xla_cost": costs,
    }


def to_markdown(results: list[dict], info: dict) -> str:
    lines = [
        f"Jitted train step, fdl vs raw JAX + optax (Adam, donated buffers). Device: "
        f"{info['device']} ({info['platform']}), {info['cpu_count']} CPUs, jax {info['jax']}.",
        "",
        "| case | fdl µs/step | raw µs/step | fdl / raw | median of round ratios "
        "| XLA flops fdl / raw | XLA bytes fdl / raw |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        m, cost = r["median_s_per_step"], r["xla_cost"]
        lines.append(
            f"| {r['case']} | {m['fdl'] * 1e6:.1f} | {m['raw'] * 1e6:.1f} | "
            f"{r['ratio_fdl_over_raw']:.3f} | {r['median_of_round_ratios']:.3f} | "
            f"{cost['fdl']['flops'] / cost['raw']['flops']:.3f} | "
            f"{cost['fdl']['bytes_accessed'] / cost['raw']['bytes_accessed']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="fdl vs raw JAX jitted train step")
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--steps-large", type=int, default=100)
    parser.add_argument("--steps-tiny", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = []
    for name, (widths, batch, loss_kind) in CASES.items():
        steps = args.steps_large if widths[1] >= 512 else args.steps_tiny
        results.append(run_case(name, widths, batch, loss_kind, args.rounds, steps))
    info = machine()
    save("train_step", info, results, to_markdown(results, info), args.out)

if __name__ == "__main__":
    main()
