"""Jitted train steps of a small CNN and an LSTM: fdl layers against the same models in raw JAX.

* CNN: 28x28x1 images, batch 64: conv 3x3-32 (SAME), ReLU, max pool 2, conv 3x3-64, ReLU, max
  pool 2, dense 10; softmax cross-entropy.
* the same CNN with 8 train steps fused in one ``jax.lax.scan`` per call, as ``fdl.fit`` runs
  them: there the raw side's ``conv_general_dilated`` derivatives are what XLA:CPU runs slowly;
* LSTM: 50 steps of 32 features, batch 32, hidden 128, the last hidden state into dense 10;
  softmax cross-entropy. The raw baseline computes the four gates as one matmul on x and one
  on h inside ``lax.scan`` (as fdl's cell does); ``lstm.py`` holds both and also compares
  them with Flax.

Both sides take the very same parameter values (the raw code reads fdl's parameter tree; the
computation is written by hand with ``jax.lax``/``jax.numpy``), the same optimizer (optax.adam)
and donated buffers. Rounds interleave (see ``_common.py``); we report medians, ratios and XLA's
cost model for both programs.

    python benchmarks/layers.py              # writes benchmarks/results/layers-<platform>.{json,md}
    python benchmarks/layers.py --rounds 11  # quicker
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import fdl
from _common import (
    RESULTS,
    add_process_options,
    compiled_cost,
    fmt_ratio,
    fmt_time,
    header,
    interleaved,
    machine,
    ratios,
    run_processes,
    save,
    settings,
)
from fdl import nn
from lstm import fdl_lstm, raw_lstm


def xent(logits, labels):
    logp = jax.nn.log_softmax(logits)  # (B, 10)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


# ------------------------------------------------------------------------------------------ CNN


def fdl_cnn() -> nn.Layer:
    return nn.Serial(
        nn.Conv2D(32, 3, padding="SAME"),
        nn.Relu(),
        nn.MaxPool2D(2),
        nn.Conv2D(64, 3, padding="SAME"),
        nn.Relu(),
        nn.MaxPool2D(2),
        nn.Flatten(3),
        nn.Dense(10),
    )


def raw_cnn(params, x):
    """The same CNN by hand: ``params`` is fdl's tree, ``{"conv2d_0", "conv2d_1", "dense_0"}``."""

    def conv(p, h):
        h = jax.lax.conv_general_dilated(
            h, p["w"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return h + p["b"]

    def pool(h):  # 2x2 max, stride 2
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    h = pool(jax.nn.relu(conv(params["conv2d_0"], x)))  # (B, 14, 14, 32)
    h = pool(jax.nn.relu(conv(params["conv2d_1"], h)))  # (B, 7, 7, 64)
    h = h.reshape(h.shape[0], -1)  # (B, 3136)
    return h @ params["dense_0"]["w"] + params["dense_0"]["b"]


# ----------------------------------------------------------------------------------------- LSTM
# The model and its raw floor live in lstm.py (which also compares them with Flax).


# ------------------------------------------------------------------------------------- the runs


def in_scan(step, carries: int, length: int):
    """``length`` calls of ``step`` (carry..., batch, key) -> (carry..., metrics) in one
    ``jax.lax.scan``, jitted with the carry donated: how ``fdl.fit`` runs its steps."""

    def run(*args):
        carry, (batch, key) = args[:carries], args[carries:]

        def one(c, i):
            *c, metrics = step(*c, batch, jax.random.fold_in(key, i))
            return tuple(c), metrics

        carry, metrics = jax.lax.scan(one, tuple(carry), jnp.arange(length))
        return (*carry, jax.tree.map(lambda m: m[-1], metrics))

    return jax.jit(run, donate_argnums=tuple(range(carries)))


def run_case(name, model, raw_forward, x, y, rounds, steps, fused=1):
    """Time the two train steps; ``fused > 1``: each call runs ``fused`` steps in a scan."""
    optimizer = optax.adam(1e-3)
    params, state, _ = model.init(jax.random.key(0), x.shape[1:])

    def fdl_loss(params, batch, key):
        out, _ = model.apply(params, state, batch[0])
        return fdl.losses.softmax_cross_entropy_with_integer_labels(out, batch[1], reduction="mean")

    def raw_step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(lambda p: xent(raw_forward(p, batch[0]), batch[1]))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss}

    # the jitted step itself (make_train_step's error-explaining wrapper costs ~0.3 µs a call)
    fdl_step = fdl.train.make_train_step(fdl.train.simple_loss(fdl_loss), optimizer).jitted
    steps_fns = {"fdl": fdl_step, "raw": jax.jit(raw_step, donate_argnums=(0, 1))}
    if fused > 1:
        steps_fns = {"fdl": in_scan(fdl_step, 1, fused), "raw": in_scan(raw_step, 2, fused)}
        steps = max(1, steps // fused)
    copy = jax.tree.map(jnp.copy, params)  # each side owns (and donates) its buffers
    carries = {"fdl": (fdl.train.init_state(params, optimizer),), "raw": (copy, optimizer.init(copy))}
    batch, key = (x, y), jax.random.key(1)
    costs = {
        which: compiled_cost(fn.lower(*carries[which], batch, key).compile())
        for which, fn in steps_fns.items()
    }
    losses = {}

    def runner(which):
        def run(n):
            carry = carries[which]  # (train_state,) for fdl, (params, opt_state) for raw
            for _ in range(n):
                *carry, metrics = steps_fns[which](*carry, batch, key)
            jax.block_until_ready(carry)
            carries[which] = tuple(carry)
            losses[which] = float(metrics["loss"])

        return run

    runners = {which: runner(which) for which in steps_fns}
    for run in runners.values():  # compile and warm up
        run(3)
    timings = interleaved(runners, rounds, steps)
    return {
        "case": name,
        "steps_per_call": fused,
        "timing": timings.record(),
        "timing_summary": timings.describe(),
        "fdl_over_raw": ratios(timings, "fdl", "raw"),
        "final_loss": losses,
        "xla_cost": costs,
    }


def to_markdown(results, info, run) -> str:
    lines = [
        header(info, run),
        "",
        "Jitted train step (Adam, donated), fdl layers vs raw JAX.",
        "",
        "| case | fdl ms/step | raw ms/step | fdl / raw | XLA flops fdl / raw | XLA bytes fdl / raw "
        "| rounds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        s, cost, per_step = r["timing"]["seconds_per_call"], r["xla_cost"], 1e3 / r["steps_per_call"]
        lines.append(
            f"| {r['case']} | {fmt_time(s['fdl'], per_step, 3)} | {fmt_time(s['raw'], per_step, 3)} | "
            f"{fmt_ratio(r['fdl_over_raw'])} | "
            f"{cost['fdl']['flops'] / cost['raw']['flops']:.3f} | "
            f"{cost['fdl']['bytes_accessed'] / cost['raw']['bytes_accessed']:.3f} | "
            f"{r['timing_summary']} |"
        )
    lines += [
        "",
        "XLA's cost model counts a loop body once, not once per step, so for the LSTM (and the "
        "fused CNN steps) its flops/bytes are those of one step of the scan plus the code around it.",
        "",
        "`cnn ... in a scan`: 8 train steps in one `jax.lax.scan` per call, as `fdl.fit` runs "
        "them (its `steps_per_call`), timed per step. Inside a loop XLA:CPU runs "
        "`conv_general_dilated`'s own kernel gradient (the raw side) many times slower than at "
        "the top level; fdl's convolutions take their derivatives as channels-last convolutions "
        '(`fdl.nn._convolve`, docs/design.md "Convolutions in a loop").',
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="fdl CNN/LSTM train steps vs raw JAX")
    parser.add_argument("--rounds", type=int, default=11, help="rounds per process (>= 11)")
    parser.add_argument("--steps", type=int, default=10, help="steps per round")
    add_process_options(parser)
    args = parser.parse_args(argv)
    run_processes(args)
    k = jax.random.split(jax.random.key(2), 4)
    images = jax.random.normal(k[0], (64, 28, 28, 1))
    sequences = jax.random.normal(k[1], (32, 50, 32))
    labels = jax.random.randint(k[2], (64,), 0, 10)
    results = [
        run_case(name, fdl_cnn(), raw_cnn, images, labels, args.rounds, args.steps, fused=fused)
        for name, fused in (("cnn_28x28x1_b64", 1), ("cnn_28x28x1_b64, 8 steps in a scan", 8))
    ]
    results.append(
        run_case(
            "lstm_h128_t50_f32_b32",
            fdl_lstm(128),
            raw_lstm,
            sequences,
            jax.random.randint(k[3], (32,), 0, 10),
            args.rounds,
            args.steps,
        )
    )
    info, run = machine(), settings(args)
    save("layers", info, run, results, to_markdown(results, info, run), RESULTS)


if __name__ == "__main__":
    main()
