"""Jitted train step: fdl models against the same models in raw jax.numpy + optax.

All steps run the same math from the same initial values with the same optimizer (optax.adam),
jit-compiled with the params and optimizer state donated. Three candidates:

* ``fdl``: ``fdl.train.make_train_step`` on ``fdl.nn.MLP``, as users call it (a
  ``fdl.train.TrainState`` in and out; parameters in a dict of dicts, named by path:
  ``dense_0/w``);
* ``raw``: the MLP written by hand with its parameters in a list of ``(w, b)`` tuples;
* ``raw_dict``: the same hand-written step with its parameters in the same dict of dicts as fdl's.

Two measurements per case:

* **per call**: each round times ``--steps`` calls of the jitted step from Python and blocks once
  at its end, so it includes JAX's dispatch (flattening the argument trees on every call);
* **compiled**: the step runs ``--steps`` times inside one jitted ``lax.fori_loop``, so only the
  compiled step is timed (what named paths could cost inside XLA).

Timed by the shared method of ``_common.py`` (warm, interleaved rounds, disturbed rounds
dropped); we report medians per step with their interquartile ranges, and the ratios fdl / raw
and fdl / raw_dict with the interquartile range of the per-round ratios.

    python benchmarks/train_step.py                  # writes benchmarks/results/train_step-<platform>.{json,md}
    python benchmarks/train_step.py --rounds 11      # quicker
"""

from __future__ import annotations

import argparse
from pathlib import Path

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

CASES = {
    # name: (layer widths, batch, loss kind)
    "mlp_784-512-512-10_b128": ((784, 512, 512, 10), 128, "xent"),
    "mlp_2-32-32-1_b16": ((2, 32, 32, 1), 16, "mse"),
}


def fdl_step(widths, loss_kind, optimizer):
    model = fdl.nn.MLP(widths[1:])

    def loss(params, batch, key):
        x, y = batch
        out, _ = model.apply(params, {}, x)
        if loss_kind == "xent":
            return fdl.losses.softmax_cross_entropy_with_integer_labels(out, y, reduction="mean")
        return fdl.losses.mse(out, y, reduction="mean")

    loss_fn = fdl.train.simple_loss(loss)
    return (
        model,
        fdl.train.make_train_step(loss_fn, optimizer),
        fdl.train.make_train_step(loss_fn, optimizer, donate=False),
    )


def raw_step(loss_kind, optimizer, as_dict=False):
    """The floor: the same MLP written by hand, jitted with donation. Its parameters are a list
    of ``(w, b)`` pairs, or with ``as_dict`` the dict ``{"dense_i": {"w", "b"}}`` fdl uses."""

    def forward(params, x):
        if as_dict:
            params = [(params[f"dense_{i}"]["w"], params[f"dense_{i}"]["b"]) for i in range(len(params))]
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


def fused(step, steps, batch, key):
    """``steps`` calls of ``step`` inside one jitted loop: no dispatch between them. The carry
    is the step's own: ``(train_state,)`` for fdl, ``(params, opt_state)`` for raw."""

    def run(carry):
        def body(_, loop_carry):
            carry, _ = loop_carry
            *carry, metrics = step(*carry, batch, key)
            return tuple(carry), metrics["loss"]

        return jax.lax.fori_loop(0, steps, body, (tuple(carry), jnp.zeros(())))

    return jax.jit(run, donate_argnums=0)


def run_case(name, widths, batch_size, loss_kind, rounds, steps):
    key = jax.random.key(0)
    k_init, k_x, k_y, k_step = jax.random.split(key, 4)
    optimizer = optax.adam(1e-3)
    model, step_fdl, step_keep = fdl_step(widths, loss_kind, optimizer)
    step_raw = raw_step(loss_kind, optimizer)
    step_raw_dict = raw_step(loss_kind, optimizer, as_dict=True)
    params_fdl, _, _ = model.init(k_init, (widths[0],))
    # The raw models start from the very same values, as a list of (w, b) pairs or fdl's dict.
    dense = [params_fdl[f"dense_{i}"] for i in range(len(params_fdl))]  # mlp's layers, in order
    params_raw = [(jnp.array(p["w"]), jnp.array(p["b"])) for p in dense]
    params_raw_dict = jax.tree.map(jnp.array, params_fdl)
    x = jax.random.normal(k_x, (batch_size, widths[0]))
    if loss_kind == "xent":
        y = jax.random.randint(k_y, (batch_size,), 0, widths[-1])
    else:
        y = jax.random.normal(k_y, (batch_size, widths[-1]))
    batch = (x, y)
    steps_of = {"fdl": step_fdl, "raw": step_raw, "raw_dict": step_raw_dict, "fdl_keep": step_keep}
    starts = {"fdl": params_fdl, "raw": params_raw, "raw_dict": params_raw_dict}
    state = {which: [jax.tree.map(jnp.array, p), optimizer.init(p)] for which, p in starts.items()}
    state["fdl"] = [fdl.train.init_state(params_fdl, optimizer)]
    state["fdl_keep"] = [fdl.train.init_state(params_fdl, optimizer)]
    loops = {
        which: fused(getattr(step, "jitted", step), steps, batch, k_step)
        for which, step in steps_of.items()
        if which != "fdl_keep"
    }
    losses = {}

    def per_call(which):
        def run(n):
            step, carry = steps_of[which], state[which]
            for _ in range(n):
                *carry, metrics = step(*carry, batch, k_step)
            jax.block_until_ready((carry, metrics))
            state[which][:] = carry
            losses[which] = metrics["loss"]

        return run

    def compiled(which):
        def run(n):
            assert n == steps, "the fused loop is compiled for `steps` steps"
            carry, loss = loops[which](tuple(state[which]))
            jax.block_until_ready((carry, loss))
            state[which][:] = carry
            losses[which] = loss

        return run

    costs = {
        which: compiled_cost(step.lower(*state[which], batch, k_step).compile())
        for which, step in steps_of.items()
    }
    out = {"case": name, "batch": batch_size, "steps_per_round": steps, "rounds": rounds, "xla_cost": costs}
    for mode, make in (("per_call", per_call), ("compiled", compiled)):
        # fdl_keep (donate=False) only matters per call: inside one loop nothing is donated
        runners = {which: make(which) for which in steps_of if mode == "per_call" or which in loops}
        for run in runners.values():  # compile and warm up
            run(steps)
        timings = interleaved(runners, rounds, steps)
        out[mode] = {
            "timing": timings.record(),
            "timing_summary": timings.describe(),
            "fdl_over_raw": ratios(timings, "fdl", "raw"),
            "fdl_over_raw_dict": ratios(timings, "fdl", "raw_dict"),
        }
        if mode == "per_call":
            out[mode]["donated_over_kept"] = ratios(timings, "fdl", "fdl_keep")
    # Same start, same math, same number of steps: the losses agree.
    out["final_loss"] = {which: float(loss) for which, loss in losses.items()}
    return out


def to_markdown(results: list[dict], info: dict, run: dict) -> str:
    lines = [
        header(info, run),
        "",
        "Jitted train step, fdl vs raw JAX + optax (Adam, donated buffers). `compiled`: the "
        "steps run inside one jitted loop (the compiled step alone); `per call`: each step is "
        "called from Python (adds JAX's dispatch). `raw` keeps its parameters in a list of "
        "tuples, `raw_dict` in fdl's dict of dicts. Donation: fdl's step with `donate=True` (the "
        "default) over `donate=False`, per call.",
        "",
        "| case | timing | fdl µs/step | raw µs/step | raw_dict µs/step | fdl / raw | fdl / raw_dict "
        "| XLA flops fdl / raw | XLA bytes fdl / raw | donated / kept | rounds |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        cost = r["xla_cost"]
        for mode in ("compiled", "per_call"):
            t = r[mode]
            s = t["timing"]["seconds_per_call"]
            donation = fmt_ratio(t["donated_over_kept"]) if "donated_over_kept" in t else ""
            lines.append(
                f"| {r['case']} | {mode.replace('_', ' ')} | {fmt_time(s['fdl'], 1e6)} | "
                f"{fmt_time(s['raw'], 1e6)} | {fmt_time(s['raw_dict'], 1e6)} | "
                f"{fmt_ratio(t['fdl_over_raw'])} | {fmt_ratio(t['fdl_over_raw_dict'])} | "
                f"{cost['fdl']['flops'] / cost['raw']['flops']:.3f} | "
                f"{cost['fdl']['bytes_accessed'] / cost['raw']['bytes_accessed']:.3f} | {donation} | "
                f"{t['timing_summary']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="fdl vs raw JAX jitted train step")
    parser.add_argument(
        "--rounds", type=int, default=15, help="undisturbed rounds to keep per process (>= 11)"
    )
    parser.add_argument("--steps-large", type=int, default=100)
    parser.add_argument("--steps-tiny", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS)
    add_process_options(parser)
    args = parser.parse_args(argv)
    run_processes(args)
    results = []
    for name, (widths, batch, loss_kind) in CASES.items():
        steps = args.steps_large if widths[1] >= 512 else args.steps_tiny
        results.append(run_case(name, widths, batch, loss_kind, args.rounds, steps))
    info, run = machine(), settings(args)
    save("train_step", info, run, results, to_markdown(results, info, run), args.out)


if __name__ == "__main__":
    main()
