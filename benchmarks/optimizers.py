"""fdl's optimizers against optax's: the jitted update, and a comparison run end to end.

1. **Update.** For every optimizer, one jitted step ``(params, state, grads) -> (params, state)``
   (``update`` then ``apply_updates``, each library its own), the params and state donated, on
   a pytree of 7 leaves and 1.07M float32 parameters (an MLP's shapes plus a scalar). Both
   libraries' steps run from the same start, timed by the shared method of ``_common.py``
   (warm, interleaved rounds, disturbed rounds dropped); we report median microseconds per step
   with their interquartile range and fdl / optax with the spread of the per-round ratios.
2. **Comparison run.** ``fdl.compare.compare`` with 6 optimizers x 1,000 steps on Rosenbrock,
   each with its optax twin (12 trajectories), timed end to end (tracing, compiling, running,
   building the table), cold and warm.

    python benchmarks/optimizers.py              # writes benchmarks/results/optimizers-<platform>.{json,md}
    python benchmarks/optimizers.py --rounds 11  # quicker
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

import fdl
from _common import (
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
    summary,
)
from fdl.compare import compare

# name: (fdl factory, optax factory, keyword arguments both take)
OPTIMIZERS = {
    "sgd": (fdl.optim.sgd, optax.sgd, {"learning_rate": 1e-2}),
    "sgd momentum": (fdl.optim.sgd, optax.sgd, {"learning_rate": 1e-2, "momentum": 0.9}),
    "sgd nesterov": (
        fdl.optim.sgd,
        optax.sgd,
        {"learning_rate": 1e-2, "momentum": 0.9, "nesterov": True},
    ),
    "adam": (fdl.optim.adam, optax.adam, {"learning_rate": 1e-3}),
    "adamw": (fdl.optim.adamw, optax.adamw, {"learning_rate": 1e-3, "weight_decay": 1e-4}),
    "nadam": (fdl.optim.nadam, optax.nadam, {"learning_rate": 1e-3}),
    "amsgrad": (fdl.optim.amsgrad, optax.amsgrad, {"learning_rate": 1e-3}),
    "adamax": (fdl.optim.adamax, optax.adamax, {"learning_rate": 1e-3}),
    "rmsprop": (fdl.optim.rmsprop, optax.rmsprop, {"learning_rate": 1e-3}),
    "rmsprop centered momentum": (
        fdl.optim.rmsprop,
        optax.rmsprop,
        {"learning_rate": 1e-3, "centered": True, "momentum": 0.9},
    ),
    "adagrad": (fdl.optim.adagrad, optax.adagrad, {"learning_rate": 1e-2}),
    "adadelta": (fdl.optim.adadelta, optax.adadelta, {"learning_rate": 1.0}),
    "lion": (fdl.optim.lion, optax.lion, {"learning_rate": 1e-4, "weight_decay": 1e-3}),
    # issue 12's families
    "adabelief": (fdl.optim.adabelief, optax.adabelief, {"learning_rate": 1e-3}),
    "yogi": (fdl.optim.yogi, optax.yogi, {"learning_rate": 1e-3}),
    "radam": (fdl.optim.radam, optax.radam, {"learning_rate": 1e-3}),
    "signum": (fdl.optim.signum, optax.signum, {"learning_rate": 1e-4}),
    "adamaxw": (fdl.optim.adamaxw, optax.adamaxw, {"learning_rate": 1e-3}),
    "lamb": (fdl.optim.lamb, optax.lamb, {"learning_rate": 1e-3}),
    "lars": (fdl.optim.lars, optax.lars, {"learning_rate": 1e-3}),
    "rprop": (fdl.optim.rprop, optax.rprop, {"learning_rate": 1e-3}),
    "novograd": (fdl.optim.novograd, optax.novograd, {"learning_rate": 1e-3}),
    "adan": (fdl.optim.adan, optax.adan, {"learning_rate": 1e-3}),
    "adafactor": (fdl.optim.adafactor, optax.adafactor, {"learning_rate": 1e-3}),
    "sm3": (fdl.optim.sm3, optax.sm3, {"learning_rate": 1e-2}),
    "fromage": (fdl.optim.fromage, optax.fromage, {"learning_rate": 1e-3}),
    "adopt": (fdl.optim.adopt, optax.contrib.adopt, {"learning_rate": 1e-3}),
    "ademamix": (fdl.optim.ademamix, optax.contrib.ademamix, {"learning_rate": 1e-3}),
    "muon": (fdl.optim.muon, optax.contrib.muon, {"learning_rate": 1e-3}),
    "schedule_free_adamw": (
        fdl.optim.schedule_free_adamw,
        optax.contrib.schedule_free_adamw,
        {"learning_rate": 1e-3},
    ),
    "prodigy": (fdl.optim.prodigy, optax.contrib.prodigy, {"learning_rate": 1.0}),
}

COMPARISON = {
    "sgd": ("sgd", {"learning_rate": 3e-3}),
    "momentum": ("sgd", {"learning_rate": 1e-3, "momentum": 0.9}),
    "adam": ("adam", {"learning_rate": 1e-1}),
    "rmsprop": ("rmsprop", {"learning_rate": 1e-2}),
    "adagrad": ("adagrad", {"learning_rate": 1.0}),
    "lion": ("lion", {"learning_rate": 1e-3}),
}


# SM3 keeps one accumulator per axis, so neither library takes a scalar leaf (optax fails with
# an IndexError, fdl names the leaf): for it the scalar is a 1-vector.
NO_SCALARS = {"sm3"}


def make_params(key: jax.Array, scalar: bool = True) -> dict:
    """7 leaves, 1,070,347 float32 parameters: 784-1024-256-10 dense shapes and a scalar
    (with ``scalar=False`` a 1-vector)."""
    shapes = {
        "hidden1": {"w": (784, 1024), "b": (1024,)},
        "hidden2": {"w": (1024, 256), "b": (256,)},
        "out": {"w": (256, 10), "b": (10,)},
        "temperature": () if scalar else (1,),
    }
    leaves, treedef = jax.tree.flatten(shapes, is_leaf=lambda s: isinstance(s, tuple))
    keys = jax.random.split(key, len(leaves))
    values = [0.05 * jax.random.normal(k, s) for k, s in zip(keys, leaves, strict=True)]
    return jax.tree.unflatten(treedef, values)


def make_step(optimizer, apply_updates):
    def step(params, state, grads):
        updates, state = optimizer.update(grads, state, params)
        return apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def bench_update(name: str, rounds: int, calls: int) -> dict:
    fdl_factory, optax_factory, kwargs = OPTIMIZERS[name]
    key_params, key_grads = jax.random.split(jax.random.key(0))
    scalar = name not in NO_SCALARS
    grads = make_params(key_grads, scalar)
    libraries = {
        "fdl": (fdl_factory(**kwargs), fdl.optim.apply_updates),
        "optax": (optax_factory(**kwargs), optax.apply_updates),
    }
    carries, steps, costs = {}, {}, {}
    for library, (optimizer, apply_updates) in libraries.items():
        params = make_params(key_params, scalar)  # a fresh copy each: the step donates it
        with jax.numpy_dtype_promotion("standard"):  # optax raises b1 to an int32 count
            # a copy: optax's prodigy keeps the params themselves in its state, and a step
            # cannot donate one buffer twice
            carries[library] = (params, jax.tree.map(jnp.copy, optimizer.init(params)))
            compiled = make_step(optimizer, apply_updates).lower(*carries[library], grads).compile()
        steps[library] = compiled
        costs[library] = compiled_cost(compiled)

    def runner(library: str):
        def run(n: int) -> None:
            params, state = carries[library]
            for _ in range(n):
                params, state = steps[library](params, state, grads)
            jax.block_until_ready((params, state))
            carries[library] = (params, state)

        return run

    runners = {library: runner(library) for library in libraries}
    for run in runners.values():  # compile and warm up
        run(3)
    # The same start, the same gradients: after the same number of steps, the same parameters.
    early = _param_difference(carries["fdl"][0], carries["optax"][0])
    timings = interleaved(runners, rounds, calls)
    end = _param_difference(carries["fdl"][0], carries["optax"][0])
    return {
        "optimizer": name,
        "kwargs": kwargs,
        "timing": timings.record(),
        "timing_summary": timings.describe(),
        "fdl_over_optax": ratios(timings, "fdl", "optax"),
        "max_abs_param_difference_after_3_steps": early["max_abs"],
        "max_abs_param_difference": end["max_abs"],
        "nonfinite_params_in_both": end["nonfinite_in_both"],
        "xla_cost": costs,
    }


def _param_difference(a: dict, b: dict) -> dict:
    """Max ``|a - b|`` over the finite entries, and the count of entries non-finite in both
    (the same constant gradient for thousands of steps drives some optimizers, prodigy among
    them, to inf and then NaN in both libraries alike). An entry non-finite in one library
    only counts as an infinite difference."""
    largest, both = 0.0, 0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        fx, fy = np.isfinite(x), np.isfinite(y)
        both += int(np.sum(~fx & ~fy))
        if np.any(fx != fy):
            largest = math.inf
        elif np.any(fx):
            largest = max(largest, float(np.max(np.abs(x[fx] - y[fx]))))
    return {"max_abs": largest, "nonfinite_in_both": both}


def bench_comparison(repeats: int, steps: int) -> dict:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = compare(COMPARISON, "rosenbrock", steps=steps, threshold=1e-3)
        result.table()
        seconds.append(time.perf_counter() - start)
    divergence = max(float(run.divergence.max()) for run in result.runs.values())
    return {
        "optimizers": len(COMPARISON),
        "trajectories": 2 * len(COMPARISON),
        "steps": steps,
        "cold_s": seconds[0],
        "warm_s": summary(seconds[1:]) if repeats > 1 else None,
        "max_twin_divergence": divergence,
    }


def _fmt_difference(r: dict) -> str:
    text = f"{r['max_abs_param_difference_after_3_steps']:.2g} / {r['max_abs_param_difference']:.2g}"
    both = r["nonfinite_params_in_both"]
    return text + (f" ({both:,} entries inf/NaN in both)" if both else "")


def to_markdown(results: list[dict], comparison: dict, info: dict, run: dict) -> str:
    lines = [
        header(info, run),
        "",
        f"Jitted optimizer step (update + apply_updates, donated), fdl vs optax {info['optax']}, "
        "7 leaves / 1,070,347 float32 parameters.",
        "",
        "| optimizer | fdl µs/step | optax µs/step | fdl / optax | max abs param diff after 3 steps / at the end "
        "| XLA bytes fdl / optax | XLA fusions fdl / optax | rounds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        s, cost = r["timing"]["seconds_per_call"], r["xla_cost"]
        lines.append(
            f"| {r['optimizer']} | {fmt_time(s['fdl'], 1e6, 0)} | {fmt_time(s['optax'], 1e6, 0)} | "
            f"{fmt_ratio(r['fdl_over_optax'])} | {_fmt_difference(r)} | "
            f"{cost['fdl']['bytes_accessed'] / cost['optax']['bytes_accessed']:.3f} | "
            f"{cost['fdl']['fusions']} / {cost['optax']['fusions']} | {r['timing_summary']} |"
        )
    ratios_all = [r["fdl_over_optax"]["ratio"] for r in results]
    same_cost = sum(
        abs(r["xla_cost"]["fdl"]["bytes_accessed"] / r["xla_cost"]["optax"]["bytes_accessed"] - 1) <= 0.01
        for r in results
    )
    same_result = sum(
        max(r["max_abs_param_difference"], r["max_abs_param_difference_after_3_steps"]) <= 1e-6
        for r in results
    )
    diverged = [r["optimizer"] for r in results if r["nonfinite_params_in_both"]]
    geomean = math.exp(sum(math.log(x) for x in ratios_all) / len(ratios_all))
    lines += [
        "",
        f"Geometric mean of fdl / optax over the {len(results)} optimizers: {geomean:.3f} "
        f"(range {min(ratios_all):.3f}-{max(ratios_all):.3f}). {same_cost} of the "
        f"{len(results)} pairs compile to programs that XLA's cost model rates alike (bytes "
        f"accessed within 1%); {same_result} agree to 1e-6 on their parameters after 3 steps and "
        "at the end (finite entries)."
        + (
            f" Driven by one constant gradient for every timed step, {', '.join(diverged)} "
            "reached inf/NaN parameters, in both libraries at the same entries."
            if diverged
            else ""
        ),
    ]
    warm = comparison["warm_s"]
    lines += [
        "",
        f"`fdl.compare.compare`: {comparison['optimizers']} optimizers x {comparison['steps']} "
        f"steps on Rosenbrock, each with its optax twin ({comparison['trajectories']} "
        f"trajectories), end to end (tracing and compiling included): {comparison['cold_s']:.2f} s "
        "the first time"
        + (f", {fmt_time(warm, 1, 2)} s the next {warm['n']} times" if warm is not None else "")
        + f"; largest fdl-vs-optax twin divergence {comparison['max_twin_divergence']:.2g}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description="fdl vs optax optimizer updates")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per process (>= 11)")
    parser.add_argument("--calls", type=int, default=60, help="steps per round")
    parser.add_argument("--comparison-repeats", type=int, default=5)
    parser.add_argument("--comparison-steps", type=int, default=1000)
    parser.add_argument("--only", nargs="+", choices=list(OPTIMIZERS), help="a subset")
    add_process_options(parser)
    args = parser.parse_args(argv)
    run_processes(args)
    results = [bench_update(name, args.rounds, args.calls) for name in args.only or OPTIMIZERS]
    # timed once, in the process that writes the results (a worker only hands over its rounds)
    comparison = None if args.worker_out else bench_comparison(args.comparison_repeats, args.comparison_steps)
    info, run = machine(), settings(args)
    table = "" if comparison is None else to_markdown(results, comparison, info, run)
    save("optimizers", info, run, {"updates": results, "comparison": comparison}, table)


if __name__ == "__main__":
    main()
